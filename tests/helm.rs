//! The Helm chart, checked by Helm itself (built by `hack/helm/build.sh`) and by the real API
//! server: lint and render with default and non-default values, values the chart refuses, a
//! server-side dry run of everything it renders, Pod Security Admission admitting the operator's
//! own pod, an install, and least-privilege RBAC proven twice: the rendered rules equal the
//! documented mapping, and the operator binary, running with a token of the chart's
//! ServiceAccount, converges the example scenario. Leader election is tested with two operator
//! processes on one API server.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{condition, wait_for, wait_status, wait_until};
use goreal_operator::crd::GoREALSecurityPolicy;
use goreal_testenv::ControlPlane;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

/// The chart's integration tests each run operator processes that watch what the other test
/// creates; they take turns.
static ONE_SCENARIO_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const RELEASE: &str = "goreal-operator";

/// Values that change every switch of the chart from its defaults.
const NON_DEFAULT_VALUES: &str = "\
replicaCount: 1
watchNamespace: team-a
leaderElection: {enabled: false}
logJson: false
concurrency: 2
image: {repository: registry.example/goreal-operator, tag: v0.1.0-test, pullPolicy: Always}
serviceAccount: {name: goreal-custom, annotations: {team: platform}}
metrics:
  port: 9100
  service: {port: 9100}
  serviceMonitor: {enabled: true, interval: 15s, labels: {release: kube-prometheus-stack}}
podDisruptionBudget: {enabled: false}
podLabels: {team: platform}
priorityClassName: system-cluster-critical
";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    root().join("charts/goreal-operator")
}

fn helm_path() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| common::go_tool("helm", "helm"))
}

/// Helm's own cache, config and data in a directory of this test binary, never in `$HOME`.
fn helm_home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| tempfile::tempdir().expect("helm home"))
        .path()
}

fn helm(args: &[&str]) -> Output {
    let home = helm_home();
    Command::new(helm_path())
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run helm: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn succeed(what: &str, output: Output) -> String {
    assert!(output.status.success(), "{what} failed: {}", text(&output));
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn values_file(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("values file");
    file.write_all(contents.as_bytes()).expect("write values");
    file
}

/// `helm template` of the chart into `namespace`, with extra arguments.
fn template(namespace: &str, extra: &[&str]) -> Output {
    let chart = chart();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().expect("chart path"),
        "--namespace",
        namespace,
    ];
    args.extend_from_slice(extra);
    helm(&args)
}

/// The documents of a multi-document YAML stream, empty ones dropped.
fn documents(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("rendered YAML");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn kind_named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} rendered"))
}

fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = ControlPlane::shared().kubectl();
    command.args(args);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("kubectl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write to kubectl");
    }
    child.wait_with_output().expect("kubectl output")
}

fn install_crd_fixture(file: &str) {
    let path = root().join("tests/fixtures").join(file);
    succeed(
        "installing a CRD fixture",
        kubectl(
            &["apply", "--server-side", "-f", path.to_str().unwrap()],
            None,
        ),
    );
    succeed(
        "waiting for the CRD",
        kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "-f",
                path.to_str().unwrap(),
            ],
            None,
        ),
    );
}

fn ensure_namespace(name: &str) {
    let yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n");
    succeed(
        "creating a namespace",
        kubectl(&["apply", "--server-side", "-f", "-"], Some(&yaml)),
    );
}

#[test]
fn the_chart_lints_and_renders_with_default_and_non_default_values() {
    let chart = chart();
    let chart = chart.to_str().unwrap();
    succeed("helm lint", helm(&["lint", "--strict", chart]));
    let values = values_file(NON_DEFAULT_VALUES);
    let values = values.path().to_str().unwrap();
    succeed(
        "helm lint with non-default values",
        helm(&["lint", "--strict", chart, "-f", values]),
    );

    let defaults = documents(&succeed("helm template", template("goreal-system", &[])));
    let deployment = kind_named(&defaults, "Deployment", RELEASE);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    for expected in [
        "run",
        "--leader-elect",
        "--lease-name=goreal-operator",
        "--log-json",
    ] {
        assert!(
            args.as_array().unwrap().iter().any(|a| a == expected),
            "{expected} missing in {args}"
        );
    }
    kind_named(&defaults, "PodDisruptionBudget", RELEASE);
    kind_named(&defaults, "Role", "goreal-operator-leader-election");
    kind_named(&defaults, "Service", "goreal-operator-metrics");
    assert!(
        !defaults.iter().any(|d| d["kind"] == "ServiceMonitor"),
        "no ServiceMonitor by default"
    );
    let sa = kind_named(&defaults, "ServiceAccount", RELEASE);
    assert_eq!(sa["automountServiceAccountToken"], false);

    let custom = documents(&succeed(
        "helm template with non-default values",
        template("goreal-system", &["-f", values]),
    ));
    let deployment = kind_named(&custom, "Deployment", RELEASE);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(pod["serviceAccountName"], "goreal-custom");
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        pod["containers"][0]["image"],
        "registry.example/goreal-operator:v0.1.0-test"
    );
    let args = pod["containers"][0]["args"].as_array().unwrap();
    assert!(args.iter().any(|a| a == "--namespace=team-a"));
    assert!(args.iter().any(|a| a == "--http-addr=0.0.0.0:9100"));
    assert!(
        !args
            .iter()
            .any(|a| a == "--leader-elect" || a == "--log-json")
    );
    let role = kind_named(&custom, "Role", RELEASE);
    assert_eq!(role["metadata"]["namespace"], "team-a");
    let monitor = kind_named(&custom, "ServiceMonitor", RELEASE);
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert!(!custom.iter().any(|d| d["kind"] == "PodDisruptionBudget"));
    assert!(
        !custom
            .iter()
            .any(|d| d["metadata"]["name"] == "goreal-operator-leader-election")
    );
}

#[test]
fn values_the_operator_cannot_run_with_are_refused() {
    for (values, expected) in [
        (
            "replicaCount: 3\nleaderElection: {enabled: false}\n",
            "needs leaderElection.enabled",
        ),
        (
            "leaderElection: {leaseDurationSeconds: 5, renewGraceSeconds: 5}\n",
            "renewGraceSeconds must be shorter",
        ),
        ("replicas: 2\n", "replicas"),
        ("watchNamespace: Team_A\n", "watchNamespace"),
        ("image: {pullPolicy: Sometimes}\n", "pullPolicy"),
        (
            "metrics: {service: {enabled: false}, serviceMonitor: {enabled: true}}\n",
            "needs metrics.service.enabled",
        ),
        (
            "serviceAccount: {create: false}\n",
            "serviceAccount.name is required",
        ),
    ] {
        let file = values_file(values);
        let output = template("goreal-system", &["-f", file.path().to_str().unwrap()]);
        assert!(
            !output.status.success(),
            "{values} rendered: {}",
            text(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected),
            "{values}: expected {expected:?} in {stderr}"
        );
    }
}

#[test]
fn the_chart_follows_the_crate_version_and_carries_the_generated_crds() {
    let chart_yaml: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart_yaml["appVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart_yaml["version"], env!("CARGO_PKG_VERSION"));
    let names = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let generated = root().join("crds");
    let copied = chart().join("crds");
    assert_eq!(
        names(&generated),
        names(&copied),
        "run hack/chart/sync-crds.sh"
    );
    for name in names(&generated) {
        assert_eq!(
            std::fs::read(generated.join(&name)).unwrap(),
            std::fs::read(copied.join(&name)).unwrap(),
            "charts/goreal-operator/crds/{name} is stale: run hack/chart/sync-crds.sh"
        );
    }
}

/// One permission: where it is granted, API group, resource and verb.
type Permission = (String, String, String, String);

/// The permissions of the mapping table in the chart README.
fn documented_permissions() -> BTreeSet<Permission> {
    let readme = std::fs::read_to_string(chart().join("README.md")).unwrap();
    let section = readme
        .split("## Permissions")
        .nth(1)
        .expect("a Permissions section");
    let mut permissions = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells[0] == "scope" || cells[0].starts_with("---") {
            continue;
        }
        let group = cells[1].trim_matches('`').replace("\"\"", "");
        for resource in cells[2].split(',').map(str::trim) {
            for verb in cells[3].split(',').map(str::trim) {
                permissions.insert((
                    cells[0].to_string(),
                    group.clone(),
                    resource.to_string(),
                    verb.to_string(),
                ));
            }
        }
    }
    assert!(!permissions.is_empty(), "no permission rows found");
    permissions
}

/// Every permission the rendered roles grant, by the documented scope names, failing on a
/// wildcard anywhere.
fn granted_permissions(docs: &[Value], release_namespace: &str) -> BTreeSet<Permission> {
    let mut permissions = BTreeSet::new();
    for doc in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        let namespace = doc["metadata"]["namespace"].as_str();
        for rule in doc["rules"].as_array().unwrap() {
            let list = |field: &str| -> Vec<String> {
                rule[field]
                    .as_array()
                    .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default()
            };
            for field in [
                "apiGroups",
                "resources",
                "verbs",
                "resourceNames",
                "nonResourceURLs",
            ] {
                assert!(
                    !list(field).iter().any(|v| v.contains('*')),
                    "wildcard in {} {}: {rule}",
                    doc["kind"],
                    doc["metadata"]["name"]
                );
            }
            assert!(
                list("nonResourceURLs").is_empty(),
                "non-resource URL granted: {rule}"
            );
            for group in list("apiGroups") {
                for resource in list("resources") {
                    let scope = match namespace {
                        None if resource == "namespaces"
                            || resource == "customresourcedefinitions" =>
                        {
                            "cluster"
                        }
                        None => "watched",
                        Some("kube-system") => "kube-system",
                        Some("default") => "default",
                        Some(ns) if ns == release_namespace => "release",
                        Some(_) => "watched",
                    };
                    for verb in list("verbs") {
                        permissions.insert((
                            scope.to_string(),
                            group.clone(),
                            resource.clone(),
                            verb,
                        ));
                    }
                }
            }
        }
    }
    permissions
}

#[test]
fn the_rendered_rbac_grants_exactly_the_documented_permissions() {
    let documented = documented_permissions();
    let cluster_wide = documents(&succeed("helm template", template("goreal-system", &[])));
    assert_eq!(
        granted_permissions(&cluster_wide, "goreal-system"),
        documented
    );

    // Namespaced mode moves the watched permissions into a Role of that namespace; the
    // cluster-scoped rules are narrowed to that namespace's name.
    let values = values_file("watchNamespace: team-a\n");
    let namespaced = documents(&succeed(
        "helm template, namespaced",
        template("goreal-system", &["-f", values.path().to_str().unwrap()]),
    ));
    assert_eq!(
        granted_permissions(&namespaced, "goreal-system"),
        documented
    );
    let cluster_role = kind_named(&namespaced, "ClusterRole", RELEASE);
    for rule in cluster_role["rules"].as_array().unwrap() {
        assert!(
            rule["resourceNames"].is_array(),
            "namespaced mode grants an unnamed cluster-wide rule: {rule}"
        );
    }
    assert_eq!(cluster_role["rules"][0]["resourceNames"], json!(["team-a"]));
}

#[tokio::test]
async fn everything_the_chart_renders_passes_a_server_side_dry_run() {
    let _turn = ONE_SCENARIO_AT_A_TIME.lock().await;
    let client = ControlPlane::shared().client().await;
    common::install_crd(&client).await;
    install_crd_fixture("prometheus/monitoring.coreos.com_servicemonitors.yaml");
    for namespace in ["goreal-dry-run", "team-a"] {
        ensure_namespace(namespace);
    }
    let values = values_file(NON_DEFAULT_VALUES);
    for extra in [vec![], vec!["-f", values.path().to_str().unwrap()]] {
        let mut args = vec!["--include-crds"];
        args.extend(extra.iter().copied());
        let rendered = succeed("helm template", template("goreal-dry-run", &args));
        succeed(
            "server-side dry run of the rendered chart",
            kubectl(
                &["apply", "--server-side", "--dry-run=server", "-f", "-"],
                Some(&rendered),
            ),
        );
    }

    // The operator's own pod, as the Deployment's template creates it, is admitted by Pod
    // Security Admission at `restricted` (it meets the level it enforces).
    let rendered = documents(&succeed("helm template", template("goreal-dry-run", &[])));
    let deployment = kind_named(&rendered, "Deployment", RELEASE);
    let restricted = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: goreal-restricted\n  \
                      labels: {pod-security.kubernetes.io/enforce: restricted}\n";
    succeed(
        "a restricted namespace",
        kubectl(&["apply", "--server-side", "-f", "-"], Some(restricted)),
    );
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator-pod", "namespace": "goreal-restricted"},
        "spec": deployment["spec"]["template"]["spec"],
    });
    let output = kubectl(
        &["create", "--dry-run=server", "-f", "-"],
        Some(&pod.to_string()),
    );
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "restricted Pod Security Admission refused or warned about the operator pod: {}",
        text(&output)
    );
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `goreal-operator run` process; killed when dropped.
struct OperatorProcess {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl OperatorProcess {
    fn start(kubeconfig: &Path, identity: &str, extra: &[&str]) -> OperatorProcess {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operator.log");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_goreal-operator"))
            .arg("run")
            .arg(format!("--http-addr=127.0.0.1:{port}"))
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env("RUST_LOG", "info,goreal_operator=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the operator binary");
        OperatorProcess {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// A plain HTTP GET of one of the operator's endpoints: status code and body. Fails the test
    /// at once, with the process's log, if the process has exited.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        // `try_wait` needs `&mut`; the pid's /proc entry says the same without it.
        let alive = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .is_ok_and(|stat| !stat.contains(") Z "));
        assert!(
            alive,
            "the operator process exited; its log:\n{}",
            self.logs()
        );
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let code = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_string();
        Some((code, body))
    }

    /// A sample of the operator's metrics without labels, 0 when absent.
    fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        Some(
            body.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or(0.0),
        )
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as the kubelet stops a pod, and wait for the process to exit.
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the operator did not exit on SIGTERM; log:\n{}",
            self.logs()
        );
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- log of the operator process ---\n{}", self.logs());
        }
    }
}

/// A kubeconfig for the API server with a token of the given ServiceAccount (TokenRequest).
fn service_account_kubeconfig(namespace: &str, account: &str, dir: &Path) -> PathBuf {
    let token = succeed(
        "a ServiceAccount token",
        kubectl(
            &["create", "token", account, "-n", namespace, "--duration=2h"],
            None,
        ),
    );
    let admin = std::fs::read_to_string(ControlPlane::shared().kubeconfig_path()).unwrap();
    let mut config: Value = serde_saphyr::from_str(&admin).unwrap();
    config["users"] = json!([{"name": account, "user": {"token": token.trim()}}]);
    config["contexts"][0]["context"]["user"] = json!(account);
    let path = dir.join(format!("{account}.kubeconfig"));
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    path
}

fn dynamic(
    client: &kube::Client,
    namespace: &str,
    (group, version, kind): (&str, &str, &str),
) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

async fn secret_version(secrets: &Api<Secret>, name: &str) -> Option<String> {
    let secret = secrets.get_opt(name).await.ok()??;
    secret
        .metadata
        .annotations?
        .get("security.goreal.io/secret-version")
        .cloned()
}

#[tokio::test]
async fn the_operator_with_the_charts_service_account_converges_the_example() {
    let _turn = ONE_SCENARIO_AT_A_TIME.lock().await;
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let release_ns = "goreal-system";
    ensure_namespace(release_ns);

    // Helm 4 installs with server-side apply; nothing runs the Deployment on a bare API server,
    // so the operator binary runs here, as the chart's ServiceAccount.
    let kubeconfig = plane.kubeconfig_path().to_str().unwrap();
    let chart = chart();
    succeed(
        "helm install",
        helm(&[
            "install",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            release_ns,
            "--kubeconfig",
            kubeconfig,
        ]),
    );
    succeed(
        "the CRD established",
        kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/gorealsecuritypolicies.security.goreal.io",
            ],
            None,
        ),
    );
    for object in [
        format!("-n {release_ns} deployment/{RELEASE}"),
        format!("-n {release_ns} serviceaccount/{RELEASE}"),
        format!("-n {release_ns} service/{RELEASE}-metrics"),
        format!("-n {release_ns} poddisruptionbudget/{RELEASE}"),
        format!("-n {release_ns} role/{RELEASE}-leader-election"),
        format!("-n kube-system role/{RELEASE}-cluster-dns"),
        format!("-n default rolebinding/{RELEASE}-api-server-endpoints"),
        format!("clusterrole/{RELEASE}"),
        format!("clusterrolebinding/{RELEASE}"),
    ] {
        let args: Vec<&str> = std::iter::once("get").chain(object.split(' ')).collect();
        succeed(&format!("{object} installed"), kubectl(&args, None));
    }

    let dir = tempfile::tempdir().unwrap();
    let token_config = service_account_kubeconfig(release_ns, RELEASE, dir.path());
    let operator = OperatorProcess::start(
        &token_config,
        "rbac-proof",
        &[
            "--leader-elect",
            &format!("--lease-name={RELEASE}"),
            &format!("--lease-namespace={release_ns}"),
        ],
    );
    let example = root().join("examples/goreal");
    succeed(
        "applying the example",
        kubectl(
            &["apply", "--server-side", "-f", example.to_str().unwrap()],
            None,
        ),
    );

    // Every capability converges: hardened workloads, NetworkPolicies, generated Secrets, alert
    // rules as a ConfigMap (no PrometheusRule CRD yet).
    let status = wait_status(
        &client,
        "goreal",
        "goreal-baseline",
        "the example Ready",
        |s| condition(s, "Ready").is_some_and(|(status, _)| status == "True"),
    )
    .await;
    assert_eq!(
        condition(&status, "AlertRules"),
        Some(("True", "ConfigMap"))
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "goreal");
    let api = deployments.get("api").await.unwrap();
    let pod = api.spec.template.spec.unwrap();
    assert_eq!(
        pod.security_context.and_then(|s| s.run_as_non_root),
        Some(true),
        "the api Deployment is hardened"
    );
    let network: Api<NetworkPolicy> = Api::namespaced(client.clone(), "goreal");
    network
        .get("goreal-baseline-default-deny")
        .await
        .expect("default deny written");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "goreal");
    assert_eq!(
        secret_version(&secrets, "goreal-db").await.as_deref(),
        Some("1")
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "goreal");
    config_maps
        .get("goreal-baseline-alert-rules")
        .await
        .expect("rules ConfigMap written");
    let leases: Api<Lease> = Api::namespaced(client.clone(), release_ns);
    let lease = leases.get(RELEASE).await.expect("the leader Lease");
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("rbac-proof")
    );

    // The PrometheusRule CRD appearing switches the output and prunes the ConfigMap.
    install_crd_fixture("prometheus/monitoring.coreos.com_prometheusrules.yaml");
    let rules = dynamic(
        &client,
        "goreal",
        ("monitoring.coreos.com", "v1", "PrometheusRule"),
    );
    wait_for(
        "a PrometheusRule",
        || async { rules.get_opt("goreal-baseline-alert-rules").await.ok() },
        |found: &Option<DynamicObject>| found.as_ref().map(|_| ()),
    )
    .await;
    wait_for(
        "the rules ConfigMap pruned",
        || async {
            config_maps
                .get_opt("goreal-baseline-alert-rules")
                .await
                .ok()
        },
        |found: &Option<ConfigMap>| found.is_none().then_some(()),
    )
    .await;

    // The example's Ingress carries the ingress-nginx limits; with the Gateway API CRDs and a
    // matching HTTPRoute, an Envoy Gateway policy is written too.
    wait_until("the Ingress annotated", || async {
        let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> =
            Api::namespaced(client.clone(), "goreal");
        ingresses.get("goreal").await.ok().is_some_and(|i| {
            i.metadata
                .annotations
                .unwrap_or_default()
                .get("nginx.ingress.kubernetes.io/limit-rps")
                == Some(&"10".to_string())
        })
    })
    .await;
    install_crd_fixture("gateway/gateway.networking.k8s.io_httproutes.yaml");
    install_crd_fixture("gateway/gateway.envoyproxy.io_backendtrafficpolicies.yaml");
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
                 metadata: {name: goreal, namespace: goreal, labels: {app.kubernetes.io/part-of: goreal}}\n\
                 spec:\n  parentRefs: [{name: eg}]\n  rules:\n    - backendRefs: [{name: nginx, port: 80}]\n";
    succeed(
        "an HTTPRoute",
        kubectl(&["apply", "--server-side", "-f", "-"], Some(route)),
    );
    let traffic_policies = dynamic(
        &client,
        "goreal",
        ("gateway.envoyproxy.io", "v1alpha1", "BackendTrafficPolicy"),
    );
    wait_for(
        "a BackendTrafficPolicy",
        || async {
            traffic_policies
                .get_opt("goreal-baseline-rate-limits")
                .await
                .ok()
        },
        |found: &Option<DynamicObject>| found.as_ref().map(|_| ()),
    )
    .await;

    // And the compliance report as a PolicyReport once its CRD exists.
    install_crd_fixture("policyreport/wgpolicyk8s.io_policyreports.yaml");
    let policy_reports = dynamic(
        &client,
        "goreal",
        ("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
    );
    wait_for(
        "a PolicyReport",
        || async { policy_reports.get_opt("goreal-baseline-report").await.ok() },
        |found: &Option<DynamicObject>| found.as_ref().map(|_| ()),
    )
    .await;

    // A requested rotation: the Secret is updated and its consumers restarted.
    let policies: Api<GoREALSecurityPolicy> = Api::namespaced(client.clone(), "goreal");
    policies
        .patch(
            "goreal-baseline",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "security.goreal.io/rotate-now": "goreal-db@rbac-proof"
            }}})),
        )
        .await
        .unwrap();
    wait_until("goreal-db rotated", || async {
        secret_version(&secrets, "goreal-db").await.as_deref() == Some("2")
    })
    .await;
    wait_until(
        "the PostgreSQL StatefulSet restarted onto version 2",
        || async {
            let sts: Api<k8s_openapi::api::apps::v1::StatefulSet> =
                Api::namespaced(client.clone(), "goreal");
            sts.get("postgres").await.ok().is_some_and(|s| {
                s.spec
                    .template
                    .metadata
                    .and_then(|m| m.annotations)
                    .is_some_and(|a| {
                        a.get("secrets.security.goreal.io/goreal-db")
                            .map(String::as_str)
                            == Some("2")
                    })
            })
        },
    )
    .await;

    // Deleting the policy releases what it changed (the finalizer runs, then goes).
    policies
        .delete("goreal-baseline", &DeleteParams::default())
        .await
        .unwrap();
    wait_until("the policy deleted", || async {
        policies
            .get_opt("goreal-baseline")
            .await
            .ok()
            .flatten()
            .is_none()
    })
    .await;
    let api = deployments.get("api").await.unwrap();
    let pod = api.spec.template.spec.unwrap();
    assert_eq!(
        pod.security_context.and_then(|s| s.run_as_non_root),
        None,
        "released on delete"
    );

    let logs = operator.logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "the operator met a permission it lacks:\n{logs}"
    );
    let workloads = deployments.list(&ListParams::default()).await.unwrap();
    assert!(!workloads.items.is_empty());
}

/// Waits until exactly the named process reports itself leader on `/metrics`.
async fn wait_leader(processes: &[&OperatorProcess], leader: usize, what: &str) {
    wait_until(what, || async {
        processes
            .iter()
            .enumerate()
            .all(|(i, p)| p.metric("goreal_leader") == Some(if i == leader { 1.0 } else { 0.0 }))
    })
    .await;
}

#[tokio::test]
async fn one_of_two_operator_processes_writes_and_the_other_takes_over() {
    let _turn = ONE_SCENARIO_AT_A_TIME.lock().await;
    let (client, ns) = common::setup("leader").await;
    let lease_ns = goreal_testenv::temp_namespace(&client, "leases").await;
    let kubeconfig = ControlPlane::shared().kubeconfig_path();
    // Short, but with room for a renewal delayed by a loaded machine: a renewal later than the
    // grace would hand the Lease over mid-test.
    let lease_duration = 6;
    let flags = [
        format!("--namespace={ns}"),
        "--leader-elect".to_string(),
        "--lease-name=goreal-operator".to_string(),
        format!("--lease-namespace={lease_ns}"),
        format!("--lease-duration={lease_duration}"),
        "--lease-renew-grace=3".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut first = OperatorProcess::start(kubeconfig, "first", &flags);
    wait_leader(&[&first], 0, "the first process to lead").await;
    let second = OperatorProcess::start(kubeconfig, "second", &flags);
    wait_until("the follower ready with synced caches", || async {
        second.get("/readyz").is_some_and(|(code, _)| code == 200)
    })
    .await;
    wait_leader(&[&first, &second], 0, "one leader, one follower").await;

    let deployment = |name: &str| -> Deployment {
        common::yaml(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  \
             selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    \
             metadata: {{labels: {{app: {name}}}}}\n    \
             spec: {{containers: [{{name: app, image: nginx:1.27}}]}}\n"
        ))
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let hardened = |name: &'static str| {
        let deployments = deployments.clone();
        async move {
            deployments.get(name).await.ok().is_some_and(|d| {
                d.spec
                    .template
                    .spec
                    .and_then(|p| p.security_context)
                    .and_then(|s| s.run_as_non_root)
                    == Some(true)
            })
        }
    };
    deployments
        .create(&Default::default(), &deployment("web"))
        .await
        .unwrap();
    let policy: GoREALSecurityPolicy = common::yaml(
        "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\n\
         metadata: {name: baseline}\nspec:\n  podSecurity: {level: restricted}\n",
    );
    common::create_policy(&client, &ns, &policy).await;
    wait_status(&client, &ns, "baseline", "Ready", |s| {
        condition(s, "Ready").is_some_and(|(status, _)| status == "True")
    })
    .await;
    wait_until("web hardened", || hardened("web")).await;

    // Only the leader reconciled and wrote; the follower only watched.
    assert!(first.metric("goreal_reconcile_total").unwrap() >= 1.0);
    assert_eq!(second.metric("goreal_reconcile_total"), Some(0.0));
    let writes = |p: &OperatorProcess| {
        let (_, body) = p.get("/metrics").unwrap();
        body.lines()
            .filter(|l| l.starts_with("goreal_applied_objects_total{"))
            .count()
    };
    assert!(writes(&first) > 0, "the leader applied objects");
    assert_eq!(writes(&second), 0, "the follower applied nothing");

    // The leader dies without releasing the Lease: the follower takes over once it expires.
    let stopped = Instant::now();
    first.kill();
    wait_leader(&[&second], 0, "the follower to take over").await;
    let takeover = stopped.elapsed();
    eprintln!("takeover after {takeover:?} (lease duration {lease_duration} s)");
    assert!(
        takeover < Duration::from_secs(lease_duration + 3),
        "took {takeover:?}: the lease duration is {lease_duration} s (3 s allowed for polling)"
    );
    deployments
        .create(&Default::default(), &deployment("late"))
        .await
        .unwrap();
    wait_until("the new leader hardens a new workload", || hardened("late")).await;
    assert!(second.metric("goreal_reconcile_total").unwrap() >= 1.0);

    // A leader stopped with SIGTERM releases the Lease: a third process takes over at once.
    let third = OperatorProcess::start(kubeconfig, "third", &flags);
    wait_until("the third process ready", || async {
        third.get("/readyz").is_some_and(|(code, _)| code == 200)
    })
    .await;
    let mut second = second;
    second.terminate();
    // Released on the way out, not left to expire: nobody or the third process holds it now.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &lease_ns);
    let holder = leases
        .get("goreal-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_ne!(
        holder.as_deref(),
        Some("second"),
        "the stopped leader still holds the Lease"
    );
    wait_leader(
        &[&third],
        0,
        "the third process to take over the released Lease",
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &lease_ns);
    let lease = leases.get("goreal-operator").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("third")
    );
}

/// A policy with every section, for the namespaced-mode proof.
const EVERY_SECTION: &str = "apiVersion: security.goreal.io/v1alpha1
kind: GoREALSecurityPolicy
metadata: {name: all, namespace: team-ns}
spec:
  selector: {matchLabels: {app: web}}
  podSecurity: {level: restricted}
  networkPolicy:
    defaultDeny: [Ingress, Egress]
    ingress: [{name: web, ports: [{port: 8080}], allowAll: true}]
  rateLimiting:
    zones: [{name: api, path: /api/, rate: 10r/s, burst: 20}]
    ingressSelector: {matchLabels: {app: web}}
  alerting: {}
  secretRotation:
    secrets: [{name: web-key, keys: [{key: token}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: team-ns}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: web-key, key: token}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: team-ns, labels: {app: web}}
spec:
  rules:
    - http:
        paths:
          - {path: /api/, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
";

#[tokio::test]
async fn in_namespaced_mode_the_operator_converges_its_namespace_with_roles_only_there() {
    let _turn = ONE_SCENARIO_AT_A_TIME.lock().await;
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    for namespace in ["goreal-ns-system", "team-ns"] {
        ensure_namespace(namespace);
    }
    let chart = chart();
    succeed(
        "helm install in namespaced mode",
        helm(&[
            "install",
            "goreal-ns",
            chart.to_str().unwrap(),
            "--namespace",
            "goreal-ns-system",
            "--set",
            "watchNamespace=team-ns",
            "--kubeconfig",
            plane.kubeconfig_path().to_str().unwrap(),
        ]),
    );
    let dir = tempfile::tempdir().unwrap();
    let account = "goreal-ns-goreal-operator";
    let token_config = service_account_kubeconfig("goreal-ns-system", account, dir.path());
    let operator = OperatorProcess::start(
        &token_config,
        "namespaced-proof",
        &[
            "--namespace=team-ns",
            "--leader-elect",
            &format!("--lease-name={account}"),
            "--lease-namespace=goreal-ns-system",
        ],
    );
    succeed(
        "applying a policy with every section",
        kubectl(&["apply", "--server-side", "-f", "-"], Some(EVERY_SECTION)),
    );
    // Ready, with every kind the sections write among its resources (an Ingress or Secret seen
    // after the first pass is in a later one).
    let kinds = [
        "ConfigMap",
        "NetworkPolicy",
        "Secret",
        "Deployment",
        "Ingress",
        "Namespace",
    ];
    wait_status(&client, "team-ns", "all", "Ready with every output", |s| {
        condition(s, "Ready").is_some_and(|(status, _)| status == "True")
            && kinds
                .iter()
                .all(|kind| s.resources.iter().any(|r| r.kind == *kind))
    })
    .await;
    let logs = operator.logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "the operator met a permission it lacks:\n{logs}"
    );
    Api::<GoREALSecurityPolicy>::namespaced(client.clone(), "team-ns")
        .delete("all", &DeleteParams::default())
        .await
        .unwrap();
    let policies: Api<GoREALSecurityPolicy> = Api::namespaced(client.clone(), "team-ns");
    wait_until("the policy released and deleted", || async {
        policies.get_opt("all").await.ok().flatten().is_none()
    })
    .await;
}
