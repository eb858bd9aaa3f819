//! The nginx include files the operator writes (`goreal-main.conf`, `goreal-http.conf`,
//! `goreal-server.conf`), checked by an independent oracle: nginx itself (Debian's package,
//! installed by `hack/nginx/install.sh`). `nginx -t` loads every rendered file the way
//! `examples/goreal/30-nginx.yaml` includes them, and refuses a broken one; a live nginx on
//! loopback then shows the limits, the limit status, the security headers and the trusted
//! proxies doing what the policy says. The live nginx runs as `nobody` with the root filesystem
//! read-only except the policy's `tempPath` (when the tests run as root and may create a mount
//! namespace), so it also shows nginx writes nothing outside the declared writable path.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use goreal_operator::crd::GoREALSecurityPolicy;
use goreal_operator::model::{self, RateLimitSettings, ValidatedPolicy, Zone};
use goreal_operator::policy::rate_limit::{self, HTTP_FILE, MAIN_FILE, SERVER_FILE};
use goreal_operator::render;
use serde_json::Value;

/// How long nginx may take to start, answer or stop before the test fails.
const WAIT: Duration = Duration::from_secs(30);
/// The unprivileged user and group the live nginx runs as (`nobody`/`nogroup` on Debian).
const NOBODY: &str = "65534";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// nginx's path, from `hack/nginx/install.sh`: it installs Debian's package when nginx is
/// missing (as the other oracles' scripts build theirs), and the test fails, never skips, when
/// that cannot be done.
fn nginx() -> &'static Path {
    static NGINX: OnceLock<PathBuf> = OnceLock::new();
    NGINX.get_or_init(|| {
        let script = root().join("hack/nginx/install.sh");
        let output = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed (it installs Debian's nginx and needs root or sudo): {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        assert!(
            path.is_file(),
            "{} printed no nginx binary",
            script.display()
        );
        path
    })
}

fn parse_policy(yaml: &str) -> GoREALSecurityPolicy {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("policy YAML: {e}\n{yaml}"))
}

fn example_policy() -> GoREALSecurityPolicy {
    let path = root().join("examples/goreal/10-policy.yaml");
    parse_policy(&std::fs::read_to_string(&path).expect("read example policy"))
}

fn validate(policy: &GoREALSecurityPolicy) -> (ValidatedPolicy, RateLimitSettings) {
    let validated = model::validate(policy).unwrap_or_else(|errors| {
        panic!("policy invalid: {}", model::describe(&errors));
    });
    let settings = validated
        .rate_limit
        .clone()
        .expect("the policy has a rateLimiting section");
    (validated, settings)
}

/// The three include files, by name, of a valid policy.
fn include_files(
    policy: &GoREALSecurityPolicy,
) -> ([(&'static str, String); 3], RateLimitSettings) {
    let (validated, settings) = validate(policy);
    (rate_limit::nginx_files(&validated, &settings), settings)
}

/// `N` distinct free loopback ports (another process may take one before nginx binds it; nginx
/// then exits and the test says so).
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local addr").port())
}

/// An nginx prefix directory: the test's `nginx.conf` and the include files, read-only to
/// nginx, and `writable/` (mode 0777), the policy's `tempPath`. The front server (the policy's
/// server block) and the backend (`return 200 "ok\n"`, the policy's `proxyPass`) listen on free
/// loopback ports.
struct Site {
    dir: tempfile::TempDir,
    front: u16,
    backend: u16,
}

impl Site {
    fn new() -> Site {
        // Under /tmp whatever TMPDIR says: the example policy's tempPath must stay under its
        // writable path /tmp.
        let dir = tempfile::Builder::new()
            .prefix("goreal-nginx.")
            .tempdir_in("/tmp")
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod prefix");
        let writable = dir.path().join("writable");
        std::fs::create_dir(&writable).expect("mkdir writable");
        std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o777))
            .expect("chmod writable");
        let [front, backend] = free_ports();
        Site {
            dir,
            front,
            backend,
        }
    }

    fn prefix(&self) -> &Path {
        self.dir.path()
    }

    fn writable(&self) -> PathBuf {
        self.prefix().join("writable")
    }

    fn temp_path(&self) -> String {
        self.writable().display().to_string()
    }

    fn upstream(&self) -> String {
        format!("http://127.0.0.1:{}", self.backend)
    }

    fn conf(&self) -> PathBuf {
        self.prefix().join("nginx.conf")
    }

    /// Replaces the placeholders of a policy template with this site's paths and ports.
    fn policy(&self, template: &str) -> GoREALSecurityPolicy {
        parse_policy(
            &template
                .replace("@TEMP@", &self.temp_path())
                .replace("@UPSTREAM@", &self.upstream()),
        )
    }

    /// Points a parsed policy's nginx settings at this site.
    fn adopt(&self, mut policy: GoREALSecurityPolicy) -> GoREALSecurityPolicy {
        let rate_limiting = policy
            .spec
            .rate_limiting
            .as_mut()
            .expect("the policy has a rateLimiting section");
        let nginx = rate_limiting.nginx.get_or_insert_with(Default::default);
        nginx.temp_path = Some(self.temp_path());
        nginx.proxy_pass = Some(self.upstream());
        policy
    }

    /// Writes the include files and an `nginx.conf` that includes them as
    /// `examples/goreal/30-nginx.yaml` does, plus the backend server.
    fn write(&self, files: &[(&str, String)]) {
        for (name, text) in files {
            let path = self.prefix().join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        let file = |name: &str| self.prefix().join(name).display().to_string();
        let conf = format!(
            "include {main};\n\
             daemon off;\n\
             master_process on;\n\
             worker_processes 1;\n\
             error_log stderr warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             \x20 access_log off;\n\
             \x20 include {http};\n\
             \x20 server {{\n\
             \x20   listen 127.0.0.1:{front};\n\
             \x20   server_name _;\n\
             \x20   include {server};\n\
             \x20 }}\n\
             \x20 server {{\n\
             \x20   listen 127.0.0.1:{backend};\n\
             \x20   location / {{ return 200 \"ok\\n\"; }}\n\
             \x20 }}\n\
             }}\n",
            main = file(MAIN_FILE),
            http = file(HTTP_FILE),
            server = file(SERVER_FILE),
            front = self.front,
            backend = self.backend,
        );
        std::fs::write(self.conf(), conf).expect("write nginx.conf");
    }

    /// Every file nginx was given, for failure messages.
    fn files_report(&self) -> String {
        let mut text = String::new();
        for name in ["nginx.conf", MAIN_FILE, HTTP_FILE, SERVER_FILE] {
            let content = std::fs::read_to_string(self.prefix().join(name)).unwrap_or_default();
            let _ = write!(text, "--- {name} ---\n{content}\n");
        }
        text
    }

    /// `nginx -t` on the site.
    fn test_config(&self) -> Output {
        Command::new(nginx())
            .arg("-t")
            .args(self.nginx_args())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", nginx().display()))
    }

    fn nginx_args(&self) -> [String; 6] {
        [
            "-p".into(),
            format!("{}/", self.prefix().display()),
            "-c".into(),
            self.conf().display().to_string(),
            "-e".into(),
            "stderr".into(),
        ]
    }
}

fn output_report(output: &Output) -> String {
    format!(
        "nginx exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts `nginx -t` accepts the files.
fn assert_accepted(site: &Site, files: &[(&str, String)]) {
    site.write(files);
    let output = site.test_config();
    assert!(
        output.status.success(),
        "nginx -t refused the rendered files\n{}{}",
        output_report(&output),
        site.files_report()
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("test is successful") && !stderr.contains("[warn]"),
        "nginx -t warned about the rendered files\n{}{}",
        output_report(&output),
        site.files_report()
    );
}

/// The ConfigMap's include files in the offline render of the example namespace.
fn rendered_nginx_config_map() -> serde_json::Map<String, Value> {
    let manifests = render::load(&[root().join("examples/goreal")]).expect("load examples/goreal");
    let rendered = render::render(&manifests, jiff::Timestamp::UNIX_EPOCH).expect("render");
    serde_saphyr::from_multiple::<Value>(&rendered.yaml)
        .expect("split rendered YAML")
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "goreal-baseline-nginx")
        .and_then(|d| d["data"].as_object().cloned())
        .expect("ConfigMap goreal-baseline-nginx in the render")
}

#[test]
fn nginx_accepts_the_include_files_of_the_guides_policy() {
    let (files, settings) = include_files(&example_policy());
    let config_map = rendered_nginx_config_map();
    for (name, text) in &files {
        assert_eq!(
            config_map.get(*name).and_then(Value::as_str),
            Some(text.as_str()),
            "{name} differs from the ConfigMap of `render`"
        );
    }
    let zones: Vec<(&str, &str, String, u32, bool)> = settings
        .zones
        .iter()
        .map(|z| {
            (
                z.name.as_str(),
                z.path.as_str(),
                z.rate.nginx(),
                z.burst,
                z.nodelay,
            )
        })
        .collect();
    assert_eq!(
        zones,
        [
            ("api", "/api/", "10r/s".to_string(), 20, true),
            ("login", "/api/auth/login", "1r/s".to_string(), 3, true),
            ("general", "/", "30r/s".to_string(), 50, true),
        ],
        "the guide's zones"
    );

    // The example's tempPath (/tmp) and upstream (http://api:5000, resolved when nginx loads
    // its configuration) point at this test's directory and backend instead; nothing else
    // changes.
    let site = Site::new();
    let (files, _) = include_files(&site.adopt(example_policy()));
    assert_accepted(&site, &files);
}

const EVERY_OPTION: &str = r#"
apiVersion: security.goreal.io/v1alpha1
kind: GoREALSecurityPolicy
metadata:
  name: every-option
  namespace: goreal-edge
spec:
  rateLimiting:
    zones:
      - {name: api, path: /api/, rate: 600r/m, burst: 20, nodelay: true, key: $http_x_api_key, zoneSize: 64k}
      - {name: login, path: /api/auth/login, rate: 1r/s, burst: 0, nodelay: false}
      - {name: general, path: /, rate: 30r/s, burst: 50, zoneSize: 1m}
      - {name: odd_path_2, path: "/static/v1.2/~user_(x)!*+,=:@%&-/", rate: 999999r/s, burst: 100000, nodelay: true, key: $remote_addr, zoneSize: 32k}
    statusCode: 503
    securityHeaders:
      hsts: max-age=31536000; includeSubDomains; preload
      frameOptions: SAMEORIGIN
      contentTypeOptions: nosniff
      referrerPolicy: no-referrer
      contentSecurityPolicy: "default-src 'self'; img-src 'self' data: https:; frame-ancestors 'none'; report-uri /csp"
    tls:
      protocols: [TLSv1.3]
      ciphers: ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:!aNULL
    realIP:
      trustedProxies: [10.0.0.0/8, 192.168.1.7/32, "2001:db8::/32", "fd00::1/128"]
      header: X-Real-IP
    nginx:
      tempPath: @TEMP@
      proxyPass: "@UPSTREAM@/backend/"
    outputs: [Nginx]
"#;

#[test]
fn nginx_accepts_the_include_files_of_a_policy_using_every_option() {
    let site = Site::new();
    let (files, settings) = include_files(&site.policy(EVERY_OPTION));
    // The options reached the files (so nginx judged them, not defaults).
    let [(_, main), (_, http), (_, server)] = &files;
    assert!(
        main.contains(&format!("pid {}/nginx.pid;", site.temp_path())),
        "{main}"
    );
    for expected in [
        "limit_req_zone $http_x_api_key zone=goreal.goreal-edge.every-option.api:64k rate=600r/m;",
        "limit_req_status 503;",
        "set_real_ip_from 2001:db8::/32;",
        "set_real_ip_from fd00::1/128;",
        "real_ip_header X-Real-IP;",
    ] {
        assert!(http.contains(expected), "{expected:?} missing:\n{http}");
    }
    for expected in [
        "limit_req zone=goreal.goreal-edge.every-option.login;",
        "ssl_protocols TLSv1.3;",
        "add_header Content-Security-Policy \"default-src 'self'",
    ] {
        assert!(server.contains(expected), "{expected:?} missing:\n{server}");
    }
    assert_eq!(settings.status_code, 503);
    assert_accepted(&site, &files);

    // The same with the default limit status.
    let site = Site::new();
    let policy = site.policy(&EVERY_OPTION.replace("statusCode: 503", "statusCode: 429"));
    let (files, settings) = include_files(&policy);
    assert_eq!(settings.status_code, 429);
    assert_accepted(&site, &files);
}

#[test]
fn nginx_t_refuses_a_hand_written_zone_smaller_than_nginx_can_hold() {
    // The oracle can fail: the guide's files plus one zone of 16k (nginx needs eight pages).
    let site = Site::new();
    let (mut files, _) = include_files(&site.adopt(example_policy()));
    files[1].1.push_str(
        "limit_req_zone $binary_remote_addr zone=goreal.hand.written.tiny:16k rate=1r/s;\n",
    );
    site.write(&files);
    let output = site.test_config();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("is too small") && stderr.contains("[emerg]"),
        "nginx -t should refuse a 16k zone\n{}{}",
        output_report(&output),
        site.files_report()
    );
}

// ---------------------------------------------------------------------------------------------
// A live nginx.

/// How the live nginx is confined, strongest first.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Confinement {
    /// As `nobody`, in a mount namespace where every mount but `tempPath` is read-only.
    ReadOnlyRoot,
    /// As `nobody` (no mount namespace allowed).
    Nobody,
    /// As the user running the tests (not root).
    TestUser,
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next().map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn confinement() -> Confinement {
    static CONFINEMENT: OnceLock<Confinement> = OnceLock::new();
    *CONFINEMENT.get_or_init(|| {
        if !is_root() {
            return Confinement::TestUser;
        }
        assert!(
            succeeds("setpriv", &["--version"]),
            "setpriv (util-linux) is needed to run nginx as nobody"
        );
        // A throwaway private mount namespace: does a read-only bind remount of / work here?
        let read_only = succeeds(
            "unshare",
            &[
                "--mount",
                "--propagation",
                "private",
                "mount",
                "-o",
                "remount,bind,ro",
                "/",
            ],
        );
        // CI runs as root where mount namespaces work: there the read-only root is required,
        // not silently dropped.
        assert!(
            read_only || std::env::var_os("CI").is_none(),
            "CI must run the live nginx with a read-only root, but a private mount namespace with a read-only / could not be made"
        );
        if read_only {
            Confinement::ReadOnlyRoot
        } else {
            Confinement::Nobody
        }
    })
}

/// Run by `sh` inside the new mount namespace: keeps `$1` (tempPath) writable as a mount of
/// its own, makes every other mount read-only, proves the prefix `$2` is no longer writable,
/// then execs the rest of the arguments.
const READ_ONLY_ROOT: &str = r#"set -eu
writable=$1 prefix=$2
shift 2
mount --bind "$writable" "$writable"
for m in $(awk '{print $2}' /proc/self/mounts | sort -u); do
  [ "$m" = "$writable" ] || mount -o remount,bind,ro "$m" 2>/dev/null || true
done
if (: > "$prefix/.write-probe") 2>/dev/null; then
  echo "the root filesystem is still writable" >&2
  exit 1
fi
exec "$@""#;

/// A running nginx, stopped (TERM, then KILL for it and its workers) when dropped.
struct Nginx {
    site: Site,
    child: Child,
    exit: Option<ExitStatus>,
}

impl Nginx {
    /// Starts nginx in the foreground on the site and waits until both servers accept
    /// connections.
    fn start(site: Site, files: &[(&str, String)]) -> Nginx {
        site.write(files);
        let stderr = File::create(site.prefix().join("nginx.stderr")).expect("create nginx.stderr");
        let nginx_args = site.nginx_args();
        let setpriv = [
            "setpriv".to_string(),
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
            "--".into(),
        ];
        let mut command = match confinement() {
            Confinement::ReadOnlyRoot => {
                let mut c = Command::new("unshare");
                c.args([
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    READ_ONLY_ROOT,
                    "sh",
                ])
                .arg(site.writable())
                .arg(site.prefix())
                .args(setpriv)
                .arg(nginx());
                c
            }
            Confinement::Nobody => {
                let mut c = Command::new("setpriv");
                c.args(&setpriv[1..]).arg(nginx());
                c
            }
            Confinement::TestUser => Command::new(nginx()),
        };
        command
            .args(nginx_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = command.spawn().expect("spawn nginx");
        let mut nginx = Nginx {
            site,
            child,
            exit: None,
        };
        nginx.wait_until_listening();
        nginx
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + WAIT;
        let ports = [self.site.front, self.site.backend];
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait nginx") {
                self.exit = Some(status);
                panic!(
                    "nginx exited at start with {status}\n{}{}",
                    self.stderr(),
                    self.site.files_report()
                );
            }
            let listening = ports.iter().all(|port| {
                TcpStream::connect_timeout(
                    &SocketAddr::from((Ipv4Addr::LOCALHOST, *port)),
                    Duration::from_secs(1),
                )
                .is_ok()
            });
            if listening {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {ports:?} within {WAIT:?}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        let text =
            std::fs::read_to_string(self.site.prefix().join("nginx.stderr")).unwrap_or_default();
        format!("--- nginx stderr ---\n{text}\n")
    }

    /// Stops nginx (fast shutdown), killing it and its workers if it does not exit in time.
    fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let pid = self.child.id();
        let workers = children_of(pid);
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    break self.child.wait().expect("wait for killed nginx");
                }
            }
        };
        // Workers outlive a killed master; none should be left either way.
        for worker in workers {
            let comm = std::fs::read_to_string(format!("/proc/{worker}/comm")).unwrap_or_default();
            if comm.trim() == "nginx" {
                let _ = Command::new("kill")
                    .args(["-KILL", &worker.to_string()])
                    .status();
            }
        }
        self.exit = Some(status);
        status
    }

    /// Stops nginx and checks it ran cleanly and wrote nothing outside `tempPath`.
    fn stop_and_check(mut self) {
        let status = self.stop();
        let stderr = self.stderr();
        assert!(status.success(), "nginx exited with {status}\n{stderr}");
        for bad in [
            "[emerg]",
            "[alert]",
            "[crit]",
            "Permission denied",
            "Read-only file system",
        ] {
            assert!(!stderr.contains(bad), "nginx logged {bad:?}\n{stderr}");
        }
        let entries: BTreeSet<String> = std::fs::read_dir(self.site.prefix())
            .expect("read prefix")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        let expected: BTreeSet<String> = [
            "nginx.conf",
            MAIN_FILE,
            HTTP_FILE,
            SERVER_FILE,
            "nginx.stderr",
            "writable",
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        assert_eq!(entries, expected, "nginx wrote outside its tempPath");
        let temp: BTreeSet<String> = std::fs::read_dir(self.site.writable())
            .expect("read tempPath")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            temp.contains("nginx-client-body") && temp.contains("nginx-proxy"),
            "nginx's temp directories are not under tempPath: {temp:?}"
        );
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Direct children of a process, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                .and_then(|stat| {
                    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// One HTTP response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` over a fresh connection from 127.0.0.1, with `Connection: close`.
fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to nginx");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.set_write_timeout(Some(WAIT)).expect("write timeout");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}

/// One line of the outcome table.
struct Outcome {
    zone: String,
    limit: String,
    client: String,
    sent: usize,
    ok: usize,
    limited: usize,
    elapsed: Duration,
}

fn print_table(title: &str, outcomes: &[Outcome], status: u16) {
    let mut table = format!(
        "\n{title} (nginx as {:?})\n{:<8} {:<13} {:<34} {:>4} {:>4} {:>4} {:>8}\n",
        confinement(),
        "zone",
        "rate/burst",
        "client",
        "sent",
        "200",
        status,
        "elapsed"
    );
    for o in outcomes {
        let _ = writeln!(
            table,
            "{:<8} {:<13} {:<34} {:>4} {:>4} {:>4} {:>6}ms",
            o.zone,
            o.limit,
            o.client,
            o.sent,
            o.ok,
            o.limited,
            o.elapsed.as_millis()
        );
    }
    eprintln!("{table}");
}

fn zone<'a>(settings: &'a RateLimitSettings, name: &str) -> &'a Zone {
    settings
        .zones
        .iter()
        .find(|z| z.name == name)
        .unwrap_or_else(|| panic!("no zone {name}"))
}

/// Checks the statuses of requests sent as fast as possible to one bucket: only 200 and the
/// limit status (never nginx's default 503); the first `burst + 1` are served (the bucket only
/// fills during the run); at most one more, plus what the rate refills in the elapsed time.
fn outcome(zone: &Zone, client: &str, statuses: &[u16], status: u16, elapsed: Duration) -> Outcome {
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == status).count();
    let what = format!("zone {} ({client}): {statuses:?}", zone.name);
    assert_eq!(
        ok + limited,
        statuses.len(),
        "only 200 and {status}: {what}"
    );
    let served = usize::try_from(zone.burst).expect("burst") + 1;
    let per_second = f64::from(zone.rate.count) / if zone.rate.per_minute { 60.0 } else { 1.0 };
    // Whole requests refilled.
    let refilled = (per_second * elapsed.as_secs_f64()).floor() as usize;
    assert!(
        statuses.iter().take(served).all(|s| *s == 200),
        "the first {served} must be served: {what}"
    );
    assert!(
        ok <= served + 1 + refilled,
        "at most {} served in {elapsed:?}: {what}",
        served + 1 + refilled
    );
    Outcome {
        zone: zone.name.clone(),
        limit: format!("{}/{}", zone.rate.nginx(), zone.burst),
        client: client.to_string(),
        sent: statuses.len(),
        ok,
        limited,
        elapsed,
    }
}

fn assert_security_headers(response: &Response, settings: &RateLimitSettings, what: &str) {
    for (name, value) in &settings.headers {
        assert_eq!(
            response.header(name),
            Some(value.as_str()),
            "{name} on the {} response of {what}: {response:?}",
            response.status
        );
    }
}

#[test]
fn live_nginx_serves_within_the_guides_limits_and_answers_429_with_the_security_headers_past_them()
{
    let site = Site::new();
    let mut policy = site.adopt(example_policy());
    let headers = policy
        .spec
        .rate_limiting
        .as_mut()
        .expect("rateLimiting")
        .security_headers
        .get_or_insert_with(Default::default);
    headers.content_security_policy = Some("default-src 'none'; frame-ancestors 'none'".into());
    let (files, settings) = include_files(&policy);
    assert_eq!(settings.status_code, 429);
    assert!(
        settings
            .headers
            .iter()
            .any(|(n, _)| *n == "Content-Security-Policy"),
        "the CSP is sent"
    );
    let nginx = Nginx::start(site, &files);
    let port = nginx.site.front;

    let mut outcomes = Vec::new();
    for (name, path, sent) in [
        ("login", "/api/auth/login", 10),
        ("api", "/api/items", 30),
        ("general", "/", 60),
    ] {
        let started = Instant::now();
        let responses: Vec<Response> = (0..sent).map(|_| get(port, path, &[])).collect();
        let elapsed = started.elapsed();
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        let outcome = outcome(zone(&settings, name), "127.0.0.1", &statuses, 429, elapsed);
        let served = responses.iter().find(|r| r.status == 200).expect("a 200");
        let limited = responses
            .iter()
            .find(|r| r.status == 429)
            .unwrap_or_else(|| panic!("zone {name}: no 429 after {sent} requests: {statuses:?}"));
        assert_eq!(
            served.body, "ok\n",
            "zone {name}: the 200 comes from the upstream"
        );
        assert_security_headers(served, &settings, name);
        assert_security_headers(limited, &settings, name);
        outcomes.push(outcome);
    }
    let login = &outcomes[0];
    assert!(
        login.ok >= 4 && login.limited >= 5,
        "login: 4 served, at least 5 limited"
    );
    print_table(
        "guide zones, one client, requests back to back",
        &outcomes,
        settings.status_code,
    );
    nginx.stop_and_check();
}

const TRUSTING: &str = r#"
apiVersion: security.goreal.io/v1alpha1
kind: GoREALSecurityPolicy
metadata:
  name: behind-proxy
  namespace: goreal
spec:
  rateLimiting:
    zones:
      - {name: login, path: /api/auth/login, rate: 1r/s, burst: 3, nodelay: true}
    realIP:
      trustedProxies: [@TRUSTED@]
    nginx: {tempPath: @TEMP@, proxyPass: "@UPSTREAM@"}
    outputs: [Nginx]
"#;

#[test]
fn behind_a_trusted_proxy_each_forwarded_client_gets_its_own_bucket() {
    let site = Site::new();
    let (files, settings) =
        include_files(&site.policy(&TRUSTING.replace("@TRUSTED@", "127.0.0.1/32")));
    let nginx = Nginx::start(site, &files);
    let port = nginx.site.front;
    let login = zone(&settings, "login");

    // Two clients behind the proxy (this test, on 127.0.0.1), requests interleaved.
    let clients = ["203.0.113.10", "203.0.113.20"];
    let mut statuses = [Vec::new(), Vec::new()];
    let started = Instant::now();
    for _ in 0..10 {
        for (client, seen) in clients.iter().zip(statuses.iter_mut()) {
            let response = get(port, "/api/auth/login", &[("X-Forwarded-For", client)]);
            assert_security_headers(&response, &settings, client);
            seen.push(response.status);
        }
    }
    let elapsed = started.elapsed();
    let outcomes: Vec<Outcome> = clients
        .iter()
        .zip(&statuses)
        .map(|(client, seen)| {
            let outcome = outcome(
                login,
                &format!("X-Forwarded-For {client}"),
                seen,
                429,
                elapsed,
            );
            assert!(
                outcome.ok >= 4 && outcome.limited >= 5,
                "{client}: own burst: {seen:?}"
            );
            outcome
        })
        .collect();
    print_table(
        "realIP trusts 127.0.0.1/32; requests from 127.0.0.1",
        &outcomes,
        settings.status_code,
    );
    nginx.stop_and_check();
}

#[test]
fn forwarded_addresses_from_an_untrusted_source_are_ignored_and_share_one_bucket() {
    // The tests connect from 127.0.0.1 (std cannot bind a client socket before connecting), so
    // the trusted proxy is another address and 127.0.0.1 is the untrusted source.
    let site = Site::new();
    let (files, settings) =
        include_files(&site.policy(&TRUSTING.replace("@TRUSTED@", "127.0.0.2/32")));
    let nginx = Nginx::start(site, &files);
    let port = nginx.site.front;

    let started = Instant::now();
    let statuses: Vec<u16> = (1..=10)
        .map(|i| {
            let forwarded = format!("203.0.113.{i}");
            get(port, "/api/auth/login", &[("X-Forwarded-For", &forwarded)]).status
        })
        .collect();
    let elapsed = started.elapsed();
    let outcome = outcome(
        zone(&settings, "login"),
        "X-Forwarded-For 203.0.113.1 .. .10",
        &statuses,
        429,
        elapsed,
    );
    assert!(
        outcome.ok >= 4 && outcome.limited >= 5,
        "one bucket for all ten forwarded addresses: {statuses:?}"
    );
    print_table(
        "realIP trusts only 127.0.0.2/32; requests from 127.0.0.1",
        &[outcome],
        settings.status_code,
    );
    nginx.stop_and_check();
}
