//! A real etcd and kube-apiserver on loopback for the integration tests, started once per test
//! binary: this module owns their certificates, kubeconfig, ports, log files and temp directory,
//! and the watchdog process that stops them and removes the directory when the binary exits.

// A test harness reports a broken environment by panicking with a message; that is its job.
#![allow(clippy::panic, clippy::expect_used)]

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// How long one start attempt may take before the harness gives up with the servers' logs.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Start attempts; only a port taken between choosing it and the server binding it is retried.
const START_ATTEMPTS: u32 = 3;
/// Lines of each server log quoted in a start failure.
const LOG_TAIL_LINES: usize = 40;

/// Stops the servers once the test process is gone, however it ended. Statics are never dropped,
/// so no in-process destructor can do this. Runs as `sh -c SCRIPT watchdog PARENT_PID DIR`.
///
/// The parent is recognised by its pid plus its start time (field 22 of /proc/PID/stat), so a
/// recycled pid does not keep the servers alive, and a zombie counts as gone. Server pids are read
/// from DIR/pids (in start order) only at cleanup time, because they are written after the
/// watchdog starts. Each server gets SIGTERM, up to 10 s to exit, then SIGKILL.
const WATCHDOG_SCRIPT: &str = r#"
parent=$1
dir=$2
# "STATE STARTTIME" of a pid. The command name in parentheses may contain spaces, so fields are
# counted from its closing parenthesis: state is field 3 of the file, start time field 22.
stat_of() {
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  set -- ${s##*) }
  echo "$1 ${20}"
}
if [ -d /proc/self ]; then
  running() { st=$(stat_of "$1") && [ "${st%% *}" != Z ]; }
else
  running() { kill -0 "$1" 2>/dev/null; }
fi
parent_start=$(stat_of "$parent")
parent_start=${parent_start#* }
parent_alive() {
  running "$parent" || return 1
  [ -z "$parent_start" ] || [ "$(stat_of "$parent" | cut -d' ' -f2)" = "$parent_start" ]
}
while parent_alive; do sleep 0.5; done
stop() {
  kill -TERM "$1" 2>/dev/null || return 0
  i=0
  while running "$1" && [ "$i" -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
  running "$1" && kill -KILL "$1" 2>/dev/null
}
# Newest first: the API server shuts down in about a second while etcd still answers, but hangs
# until SIGKILL if etcd goes away under it.
reversed=
for p in $(cat "$dir/pids" 2>/dev/null); do reversed="$p $reversed"; done
for p in $reversed; do stop "$p"; done
rm -rf "$dir"
"#;

/// A running etcd + kube-apiserver pair with an admin identity. Obtain it with
/// [`ControlPlane::shared`]; it lives until the test binary exits.
pub struct ControlPlane {
    dir: PathBuf,
    bin_dir: PathBuf,
    kubeconfig: PathBuf,
    base_url: String,
    config: kube::Config,
}

impl ControlPlane {
    /// The control plane of this test binary, started synchronously by the first caller (a few
    /// seconds once the binaries are built); later and concurrent callers wait for it. A failed start panics in every
    /// caller with the same message instead of starting again.
    pub fn shared() -> &'static ControlPlane {
        static PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        match PLANE.get_or_init(ControlPlane::start) {
            Ok(plane) => plane,
            Err(message) => panic!("{message}"),
        }
    }

    /// A client for the admin user (group `system:masters`). Each call builds a new one, because
    /// a `kube::Client` belongs to the tokio runtime that created it and every `#[tokio::test]`
    /// runs its own runtime.
    pub async fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("building a kube client for the control plane")
    }

    /// The admin user's configuration with inline certificates, for building clients by hand.
    pub fn config(&self) -> kube::Config {
        self.config.clone()
    }

    /// A kubeconfig file for the admin user, with the certificates inline.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `kubectl` of the same Kubernetes version, already pointed at this control plane.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.bin_dir.join("kubectl"));
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            // Discovery cache in the temp dir: nothing lands in $HOME and nothing stale is reused.
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"));
        command
    }

    /// The API server's address, `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    fn start() -> Result<ControlPlane, String> {
        let began = Instant::now();
        let bin_dir = binary_dir()?;
        for name in ["etcd", "kube-apiserver", "kubectl"] {
            if !bin_dir.join(name).is_file() {
                return Err(format!(
                    "control plane: {} is missing",
                    bin_dir.join(name).display()
                ));
            }
        }
        // Kept on purpose: the watchdog removes it after the servers have stopped, which is
        // after this process is gone.
        let dir = tempfile::Builder::new()
            .prefix("goreal-control-plane-")
            .tempdir()
            .map_err(|e| format!("control plane: creating the temp dir: {e}"))?
            .keep();
        spawn_watchdog(&dir)?;
        let certs = Certificates::write(&dir.join("certs"))
            .map_err(|e| format!("control plane: writing certificates: {e}"))?;

        let mut attempt = 1;
        loop {
            match start_servers(&bin_dir, &dir, &certs, attempt) {
                Ok(port) => {
                    let base_url = format!("https://127.0.0.1:{port}");
                    eprintln!(
                        "control plane ready at {base_url} after {:.1} s (files and logs in {})",
                        began.elapsed().as_secs_f64(),
                        dir.display()
                    );
                    return Ok(ControlPlane {
                        kubeconfig: dir.join("kubeconfig"),
                        config: certs.config(&base_url),
                        dir,
                        bin_dir,
                        base_url,
                    });
                }
                Err(StartError::PortClash(_)) if attempt < START_ATTEMPTS => {
                    eprintln!("control plane: a chosen port was taken meanwhile, starting again");
                    attempt += 1;
                }
                Err(StartError::PortClash(message) | StartError::Fatal(message)) => {
                    return Err(format!("control plane did not start: {message}"));
                }
            }
        }
    }
}

/// Creates a namespace named `PREFIX-SUFFIX` with a random suffix and returns the name. Each test
/// takes its own: a bare API server never finishes deleting a namespace (that is the namespace
/// controller's work), so namespaces are left behind with the rest of the control plane.
pub async fn temp_namespace(client: &kube::Client, prefix: &str) -> String {
    let api: Api<Namespace> = Api::all(client.clone());
    // A namespace name is a DNS label: at most 63 characters, the suffix takes 9 of them.
    let prefix: String = prefix.chars().take(54).collect();
    loop {
        let name = format!("{prefix}-{}", random_suffix());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        match api.create(&PostParams::default(), &namespace).await {
            Ok(_) => return name,
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => panic!("creating namespace {name}: {error}"),
        }
    }
}

/// Eight lowercase base-36 characters. std's hasher keys are random per process, and the counter
/// keeps successive calls apart.
fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut value = hasher.finish();
    let mut suffix = String::with_capacity(8);
    for _ in 0..8 {
        let digit = (value % 36) as u32;
        suffix.push(char::from_digit(digit, 36).unwrap_or('0'));
        value /= 36;
    }
    suffix
}

/// `$GOREAL_CONTROL_PLANE_BIN`, else the last line printed by the project's build script, which
/// builds the binaries on first use and only prints the cached directory afterwards.
fn binary_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("GOREAL_CONTROL_PLANE_BIN").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    // The script lives at the workspace root, one level above this crate.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/control-plane/build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("control plane: running {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last_line = stdout.lines().rev().find(|line| !line.trim().is_empty());
    match last_line {
        Some(line) if output.status.success() => Ok(PathBuf::from(line.trim())),
        _ => Err(format!(
            "control plane: {} failed ({}); set GOREAL_CONTROL_PLANE_BIN to a directory holding etcd, \
             kube-apiserver and kubectl to skip it",
            script.display(),
            output.status
        )),
    }
}

/// Starts the watchdog in a session of its own, so that Ctrl-C in the terminal (sent to the whole
/// foreground process group) or a closing terminal does not stop it before it has cleaned up.
fn spawn_watchdog(dir: &Path) -> Result<(), String> {
    let watchdog = |program: &str| {
        let mut command = Command::new(program);
        if program == "setsid" {
            command.arg("sh");
        }
        command
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("goreal-control-plane-watchdog")
            .arg(std::process::id().to_string())
            .arg(dir)
            // Holding the test's stdout or stderr open would keep a reader of a pipe waiting.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    // The child is never waited for: it outlives this process by design.
    match watchdog("setsid").spawn() {
        Ok(_) => Ok(()),
        // Without setsid a process group of its own still keeps it out of Ctrl-C's reach.
        Err(_) => watchdog("sh")
            .process_group(0)
            .spawn()
            .map(drop)
            .map_err(|e| format!("control plane: starting the watchdog: {e}")),
    }
}

enum StartError {
    /// A chosen port was taken by someone else before the server bound it: worth another try.
    PortClash(String),
    Fatal(String),
}

/// The servers of one start attempt. Dropping it (a failed attempt) kills them; a successful
/// attempt forgets them and leaves stopping them to the watchdog.
struct Servers {
    dir: PathBuf,
    pid_file: PathBuf,
    children: Vec<(&'static str, Child, PathBuf)>,
}

impl Servers {
    fn spawn(&mut self, name: &'static str, mut command: Command) -> Result<(), StartError> {
        let log_path = self.dir.join(format!("{name}.log"));
        let log = fs::File::create(&log_path)
            .map_err(|e| StartError::Fatal(format!("creating {}: {e}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| StartError::Fatal(format!("cloning a log handle: {e}")))?;
        // A process group of its own: Ctrl-C in a terminal must not kill etcd before the API
        // server (which then hangs); this process stops them in order.
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| StartError::Fatal(format!("starting {name}: {e}")))?;
        self.children.push((name, child, log_path));
        // The watchdog reads this file only after the test process is gone.
        let pids: Vec<String> = self
            .children
            .iter()
            .map(|(_, c, _)| c.id().to_string())
            .collect();
        fs::write(&self.pid_file, pids.join(" "))
            .map_err(|e| StartError::Fatal(format!("writing the pid file: {e}")))
    }

    /// Fails if a server has exited, classifying a bind failure as a port clash.
    fn check_running(&mut self) -> Result<(), StartError> {
        let exited = self
            .children
            .iter_mut()
            .find_map(|(name, child, log_path)| {
                let status = child.try_wait().ok()??;
                Some((*name, status, log_path.clone()))
            });
        let Some((name, status, log_path)) = exited else {
            return Ok(());
        };
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        let message = format!("{name} exited with {status}\n{}", self.logs_tail());
        Err(if log.contains("address already in use") {
            StartError::PortClash(message)
        } else {
            StartError::Fatal(message)
        })
    }

    fn logs_tail(&self) -> String {
        let mut text = String::new();
        for (_, _, log_path) in &self.children {
            let log = fs::read_to_string(log_path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            text.push_str(&format!(
                "--- last lines of {} ---\n{}\n",
                log_path.display(),
                tail.join("\n")
            ));
        }
        text
    }

    fn timed_out(&self, what: &str) -> StartError {
        StartError::Fatal(format!(
            "{what} was not ready within {} s\n{}",
            START_TIMEOUT.as_secs(),
            self.logs_tail()
        ))
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        for (_, child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // So that the watchdog does not signal pids the system may hand out again.
        let _ = fs::write(&self.pid_file, "");
    }
}

/// One attempt: fresh ports and a fresh etcd data dir; returns the API server's port once it is
/// ready.
fn start_servers(
    bin_dir: &Path,
    dir: &Path,
    certs: &Certificates,
    attempt: u32,
) -> Result<u16, StartError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let attempt_dir = dir.join(format!("attempt-{attempt}"));
    fs::create_dir_all(&attempt_dir)
        .map_err(|e| StartError::Fatal(format!("creating {}: {e}", attempt_dir.display())))?;
    let mut servers = Servers {
        dir: attempt_dir.clone(),
        pid_file: dir.join("pids"),
        children: Vec::new(),
    };
    let [etcd_port, peer_port, api_port] = free_ports()?;

    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let mut etcd = Command::new(bin_dir.join("etcd"));
    etcd.arg(format!("--data-dir={}", attempt_dir.join("etcd").display()))
        .arg(format!("--listen-client-urls={etcd_url}"))
        .arg(format!("--advertise-client-urls={etcd_url}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
        // The member's advertised peer URL defaults to localhost:2380; keep it to the real port.
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
        ))
        .arg(format!(
            "--initial-cluster=default=http://127.0.0.1:{peer_port}"
        ))
        .arg("--unsafe-no-fsync=true")
        .arg("--log-level=warn");
    servers.spawn("etcd", etcd)?;
    while !etcd_healthy(etcd_port) {
        servers.check_running()?;
        if Instant::now() > deadline {
            return Err(servers.timed_out("etcd"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let cert_dir = &certs.dir;
    let mut apiserver = Command::new(bin_dir.join("kube-apiserver"));
    apiserver
        .arg(format!("--etcd-servers={etcd_url}"))
        .arg("--bind-address=127.0.0.1")
        // Otherwise the server advertises the default route's address, which a sandbox may not
        // have. The endpoint reconciler refuses a loopback address, and with no pods to reach
        // the API server through the `kubernetes` Service its endpoints serve no purpose.
        .arg("--advertise-address=127.0.0.1")
        .arg("--endpoint-reconciler-type=none")
        .arg(format!("--secure-port={api_port}"))
        .arg(format!("--cert-dir={}", cert_dir.display()))
        .arg(format!(
            "--client-ca-file={}",
            cert_dir.join("client-ca.crt").display()
        ))
        .arg(format!(
            "--service-account-issuer=https://127.0.0.1:{api_port}/"
        ))
        .arg(format!(
            "--service-account-key-file={}",
            cert_dir.join("sa.pub").display()
        ))
        .arg(format!(
            "--service-account-signing-key-file={}",
            cert_dir.join("sa.key").display()
        ))
        .arg("--service-cluster-ip-range=10.0.0.0/24")
        .arg("--authorization-mode=RBAC")
        .arg("--allow-privileged=true")
        .arg("--disable-admission-plugins=ServiceAccount");
    servers.spawn("kube-apiserver", apiserver)?;

    // The kubeconfig names the port, so it is written per attempt, before polling through it.
    let kubeconfig = dir.join("kubeconfig");
    fs::write(
        &kubeconfig,
        certs.kubeconfig(&format!("https://127.0.0.1:{api_port}")),
    )
    .map_err(|e| StartError::Fatal(format!("writing {}: {e}", kubeconfig.display())))?;
    let kubectl = |args: &[&str]| {
        Command::new(bin_dir.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(dir.join("kubectl-cache"))
            .arg("--request-timeout=5s")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    // /readyz covers etcd, RBAC bootstrap and the other post-start hooks; namespace `default` is
    // created by a controller shortly after, and tests may rely on it.
    while !(kubectl(&["get", "--raw", "/readyz"]) && kubectl(&["get", "namespace", "default"])) {
        servers.check_running()?;
        if Instant::now() > deadline {
            return Err(servers.timed_out("kube-apiserver"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // From here on the watchdog owns the processes.
    servers.children.clear();
    Ok(api_port)
}

/// Three distinct ports the kernel just handed out. They are released before the servers bind
/// them, so another process can take one in between; the caller retries then.
fn free_ports() -> Result<[u16; 3], StartError> {
    let bind = || {
        TcpListener::bind("127.0.0.1:0")
            .map_err(|e| StartError::Fatal(format!("binding a loopback port: {e}")))
    };
    // Held together so the kernel cannot hand out the same port twice.
    let listeners = [bind()?, bind()?, bind()?];
    let mut ports = [0u16; 3];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(|e| StartError::Fatal(format!("reading a bound port: {e}")))?
            .port();
    }
    Ok(ports)
}

/// etcd's `/health` over plain HTTP/1.0, which is all it takes without an HTTP client crate.
fn etcd_healthy(port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.") && response.contains(" 200 ") && response.contains("\"true\"")
}

/// The PEM files of the control plane and the admin identity.
struct Certificates {
    dir: PathBuf,
    serving_ca_pem: String,
    serving_ca_der: Vec<u8>,
    admin_cert_pem: String,
    admin_key_pem: String,
}

impl Certificates {
    /// Writes, in `dir` (the API server's `--cert-dir`): `apiserver.crt`/`apiserver.key` signed
    /// by a serving CA (`ca.crt`), `client-ca.crt` that signed the admin's certificate, and the
    /// service-account key pair `sa.key`/`sa.pub`. All keys are ECDSA P-256.
    fn write(dir: &Path) -> Result<Certificates, String> {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let err = |e: rcgen::Error| e.to_string();

        let (serving_ca_params, serving_ca_key) = ca_params("goreal-control-plane-serving-ca")?;
        let serving_ca = serving_ca_params
            .self_signed(&serving_ca_key)
            .map_err(err)?;
        let serving_issuer = Issuer::new(serving_ca_params, serving_ca_key);
        let mut serving =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).map_err(err)?;
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_key = KeyPair::generate().map_err(err)?;
        let serving_cert = serving
            .signed_by(&serving_key, &serving_issuer)
            .map_err(err)?;

        let (client_ca_params, client_ca_key) = ca_params("goreal-control-plane-client-ca")?;
        let client_ca = client_ca_params.self_signed(&client_ca_key).map_err(err)?;
        let client_issuer = Issuer::new(client_ca_params, client_ca_key);
        let mut admin = CertificateParams::default();
        admin.distinguished_name.push(DnType::CommonName, "admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_key = KeyPair::generate().map_err(err)?;
        let admin_cert = admin.signed_by(&admin_key, &client_issuer).map_err(err)?;

        let sa_key = KeyPair::generate().map_err(err)?;

        let files = [
            ("ca.crt", serving_ca.pem()),
            ("apiserver.crt", serving_cert.pem()),
            ("apiserver.key", serving_key.serialize_pem()),
            ("client-ca.crt", client_ca.pem()),
            ("sa.key", sa_key.serialize_pem()),
            ("sa.pub", sa_key.public_key_pem()),
        ];
        for (name, contents) in files {
            fs::write(dir.join(name), contents).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(Certificates {
            dir: dir.to_path_buf(),
            serving_ca_pem: serving_ca.pem(),
            serving_ca_der: serving_ca.der().to_vec(),
            admin_cert_pem: admin_cert.pem(),
            admin_key_pem: admin_key.serialize_pem(),
        })
    }

    fn kubeconfig(&self, server: &str) -> String {
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: goreal-control-plane\n  \
               cluster:\n    \
                 server: {server}\n    \
                 certificate-authority-data: {ca}\n\
             users:\n\
             - name: admin\n  \
               user:\n    \
                 client-certificate-data: {cert}\n    \
                 client-key-data: {key}\n\
             contexts:\n\
             - name: goreal-control-plane\n  \
               context:\n    \
                 cluster: goreal-control-plane\n    \
                 user: admin\n    \
                 namespace: default\n\
             current-context: goreal-control-plane\n",
            ca = base64(self.serving_ca_pem.as_bytes()),
            cert = base64(self.admin_cert_pem.as_bytes()),
            key = base64(self.admin_key_pem.as_bytes()),
        )
    }

    fn config(&self, server: &str) -> kube::Config {
        let url = server
            .parse()
            .expect("the control plane URL is a valid URI");
        let mut config = kube::Config::new(url);
        config.root_cert = Some(vec![self.serving_ca_der.clone()]);
        // Through serde because the key field is a secrecy::SecretString, a crate the project
        // does not depend on directly.
        config.auth_info = serde_json::from_value(serde_json::json!({
            "client-certificate-data": base64(self.admin_cert_pem.as_bytes()),
            "client-key-data": base64(self.admin_key_pem.as_bytes()),
        }))
        .expect("an AuthInfo with client certificate data");
        config
    }
}

fn ca_params(common_name: &str) -> Result<(CertificateParams, KeyPair), String> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    Ok((params, key))
}

/// Standard base64 with padding, as kubeconfig `*-data` fields expect.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
