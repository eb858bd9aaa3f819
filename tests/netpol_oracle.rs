//! The NetworkPolicies rendered for the example namespace, checked by an independent oracle:
//! np-guard's connectivity analyser (`netpolicy list`, built by `hack/netpol-analyzer/build.sh`)
//! computes every allowed flow between the example workloads, a DNS server in kube-system, a
//! client in another namespace and external addresses; a table of flows states what the example
//! policy (`examples/goreal/10-policy.yaml`) means to allow and deny.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use goreal_operator::render;
use serde_json::Value;

const NGINX: &str = "goreal/nginx[Deployment]";
const API: &str = "goreal/api[Deployment]";
const POSTGRES: &str = "goreal/postgres[StatefulSet]";
const REDIS: &str = "goreal/redis[Deployment]";
const COREDNS: &str = "kube-system/coredns[Deployment]";
const CLIENT: &str = "other/client[Deployment]";

const INTERNET: &str = "203.0.113.7";
const ADMIN_NET: &str = "10.1.2.3"; // in 10.0.0.0/8
const PRIVATE_NOT_ADMIN: &str = "172.16.0.1";
const ADMIN_HOST: &str = "192.168.1.10"; // in 192.168.1.0/24
const NEAR_ADMIN_HOST: &str = "192.168.2.10";
const PUBLIC_DNS: &str = "8.8.8.8";

const ALLOW: bool = true;
const DENY: bool = false;

/// (source, destination, protocol, port, allowed?). A peer is a workload as the analyser names
/// it (`namespace/name[Kind]`) or an IPv4 address.
const FLOWS: &[(&str, &str, &str, u16, bool)] = &[
    // Web ports (nginx's named ports http/https = 8080/8443) from anywhere, nothing else.
    (INTERNET, NGINX, "TCP", 8080, ALLOW),
    (INTERNET, NGINX, "TCP", 8443, ALLOW),
    (INTERNET, NGINX, "TCP", 5000, DENY),
    (INTERNET, API, "TCP", 5000, DENY),
    (INTERNET, POSTGRES, "TCP", 5432, DENY),
    (CLIENT, NGINX, "TCP", 8080, ALLOW),
    // Monitoring (3000, 9090) only from the admin network; SSH (22) only from the admin hosts.
    (ADMIN_NET, API, "TCP", 3000, ALLOW),
    (ADMIN_NET, API, "TCP", 9090, ALLOW),
    (ADMIN_NET, API, "TCP", 22, DENY),
    (PRIVATE_NOT_ADMIN, API, "TCP", 3000, DENY),
    (ADMIN_NET, POSTGRES, "TCP", 9090, ALLOW),
    (ADMIN_HOST, API, "TCP", 22, ALLOW),
    (NEAR_ADMIN_HOST, API, "TCP", 22, DENY),
    // Application paths, both directions must agree (egress of the source, ingress of the
    // destination).
    (NGINX, API, "TCP", 5000, ALLOW),
    (NGINX, API, "UDP", 5000, DENY),
    (NGINX, POSTGRES, "TCP", 5432, DENY),
    (API, POSTGRES, "TCP", 5432, ALLOW),
    (API, POSTGRES, "TCP", 6379, DENY),
    (API, REDIS, "TCP", 6379, ALLOW),
    (API, REDIS, "TCP", 5432, DENY),
    (REDIS, POSTGRES, "TCP", 5432, DENY),
    (POSTGRES, API, "TCP", 5000, DENY),
    (CLIENT, POSTGRES, "TCP", 5432, DENY),
    (CLIENT, API, "TCP", 5000, DENY),
    // DNS to the cluster DNS pods only, and no other egress.
    (API, COREDNS, "UDP", 53, ALLOW),
    (API, COREDNS, "TCP", 53, ALLOW),
    (API, COREDNS, "UDP", 54, DENY),
    (POSTGRES, COREDNS, "UDP", 53, ALLOW),
    (API, PUBLIC_DNS, "TCP", 443, DENY),
    (NGINX, PUBLIC_DNS, "TCP", 53, DENY),
    (NGINX, PUBLIC_DNS, "UDP", 53, DENY),
];

/// The analyser, built by its script (a no-op once cached).
fn analyser() -> PathBuf {
    common::go_tool("netpol-analyzer", "netpolicy")
}

fn read_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn write_docs(path: &Path, docs: &[Value]) {
    let yaml = serde_saphyr::to_string_multiple(docs).expect("serialize YAML");
    std::fs::write(path, yaml).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The analyser's input: the rendered NetworkPolicies, the example manifests and the cluster
/// fixture. Returns the number of NetworkPolicies written.
fn write_inputs(dir: &Path) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples = root.join("examples/goreal");
    let manifests = render::load(std::slice::from_ref(&examples)).expect("load examples/goreal");
    let rendered = render::render(&manifests, jiff::Timestamp::UNIX_EPOCH).expect("render");
    let policies: Vec<Value> = serde_saphyr::from_multiple::<Value>(&rendered.yaml)
        .expect("split rendered YAML")
        .into_iter()
        .filter(|d| d["kind"] == "NetworkPolicy")
        .collect();
    write_docs(&dir.join("rendered-networkpolicies.yaml"), &policies);

    // The example files as they are (the analyser skips the GoREALSecurityPolicy with a log
    // line and ignores Services), except that Namespaces get the name label the API server
    // sets, which namespaceSelectors match on.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&examples)
        .expect("list examples/goreal")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.push(root.join("tests/fixtures/netpol/cluster.yaml"));
    for file in files {
        let mut docs = read_docs(&file);
        for doc in &mut docs {
            if doc["kind"] == "Namespace" {
                let name = doc["metadata"]["name"].clone();
                let metadata = doc["metadata"].as_object_mut().expect("Namespace metadata");
                let labels = metadata
                    .entry("labels")
                    .or_insert_with(|| Value::Object(Default::default()));
                labels
                    .as_object_mut()
                    .expect("labels map")
                    .entry("kubernetes.io/metadata.name")
                    .or_insert(name);
            }
        }
        let out = dir.join(file.file_name().expect("file name"));
        assert!(!out.exists(), "two inputs named {}", out.display());
        write_docs(&out, &docs);
    }
    policies.len()
}

/// One line of `netpolicy list -o json`.
#[derive(Debug, serde::Deserialize)]
struct Flow {
    src: String,
    dst: String,
    conn: String,
}

/// A parsed `conn`: `All Connections`, `No Connections`, or protocol sections joined by `,`, each
/// `PROTO ports` with further ports following as `,port` / `,lo-hi` (e.g. `TCP 53,UDP 53`,
/// `TCP 3000,8080,8443,9090`, `TCP 8000-8100,9000`).
#[derive(Debug, PartialEq)]
enum Conn {
    All,
    Some(Vec<(String, u16, u16)>),
}

fn parse_conn(conn: &str) -> Result<Conn, String> {
    match conn.trim() {
        "All Connections" => return Ok(Conn::All),
        "No Connections" => return Ok(Conn::Some(Vec::new())),
        _ => {}
    }
    let mut ranges = Vec::new();
    let mut protocol: Option<String> = None;
    for item in conn.split(',') {
        let item = item.trim();
        let ports = match item.split_once(' ') {
            Some((proto, ports)) => {
                protocol = Some(proto.to_owned());
                ports.trim()
            }
            None => item,
        };
        let proto = protocol
            .clone()
            .ok_or_else(|| format!("{conn:?}: ports before a protocol"))?;
        let port = |s: &str| {
            s.parse::<u16>().map_err(|_| {
                format!("{conn:?}: {s:?} is not a port number (unresolved named port?)")
            })
        };
        let (lo, hi) = match ports.split_once('-') {
            Some((lo, hi)) => (port(lo)?, port(hi)?),
            None => (port(ports)?, port(ports)?),
        };
        ranges.push((proto, lo, hi));
    }
    Ok(Conn::Some(ranges))
}

impl Conn {
    fn allows(&self, protocol: &str, port: u16) -> bool {
        match self {
            Conn::All => true,
            Conn::Some(ranges) => ranges
                .iter()
                .any(|(p, lo, hi)| p == protocol && (*lo..=*hi).contains(&port)),
        }
    }
}

/// Whether an analyser peer (`ns/name[Kind]`, or IPv4 ranges `a-b` joined by `,`) is `peer`.
fn peer_matches(listed: &str, peer: &str) -> bool {
    let Ok(ip) = peer.parse::<Ipv4Addr>() else {
        return listed == peer;
    };
    listed.split(',').any(|range| {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        match (lo.trim().parse::<Ipv4Addr>(), hi.trim().parse::<Ipv4Addr>()) {
            (Ok(lo), Ok(hi)) => lo <= ip && ip <= hi,
            _ => false,
        }
    })
}

/// The list lines about (src, dst).
fn lines_for<'a>(flows: &'a [Flow], src: &str, dst: &str) -> Vec<&'a Flow> {
    flows
        .iter()
        .filter(|f| peer_matches(&f.src, src) && peer_matches(&f.dst, dst))
        .collect()
}

/// Whether the analyser allows `protocol`/`port` from `src` to `dst`.
fn allowed(
    flows: &[Flow],
    src: &str,
    dst: &str,
    protocol: &str,
    port: u16,
) -> Result<bool, String> {
    for flow in lines_for(flows, src, dst) {
        if parse_conn(&flow.conn)?.allows(protocol, port) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Guards the table against typos: a peer that occurs in no line would make every row about it
/// pass as "denied".
fn known_peer(flows: &[Flow], peer: &str) -> bool {
    flows
        .iter()
        .any(|f| peer_matches(&f.src, peer) || peer_matches(&f.dst, peer))
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "denied" }
}

#[test]
fn conn_strings_parse() {
    assert_eq!(parse_conn("All Connections"), Ok(Conn::All));
    let c = parse_conn("TCP 53,UDP 53").unwrap();
    assert!(
        c.allows("TCP", 53) && c.allows("UDP", 53) && !c.allows("UDP", 54) && !c.allows("SCTP", 53)
    );
    let c = parse_conn("TCP 22,8000-8100,9090,UDP 1-2").unwrap();
    assert!(
        c.allows("TCP", 22)
            && c.allows("TCP", 8000)
            && c.allows("TCP", 8100)
            && c.allows("TCP", 9090)
    );
    assert!(
        !c.allows("TCP", 7999)
            && !c.allows("TCP", 8101)
            && c.allows("UDP", 2)
            && !c.allows("UDP", 22)
    );
    assert!(parse_conn("TCP http").is_err());
    assert!(peer_matches("10.0.0.0-10.255.255.255", "10.1.2.3"));
    assert!(peer_matches(
        "1.0.0.0-1.0.0.255,10.0.0.0-10.255.255.255",
        "10.1.2.3"
    ));
    assert!(!peer_matches("11.0.0.0-192.168.0.255", "10.1.2.3"));
    assert!(peer_matches(API, API) && !peer_matches(API, NGINX));
}

#[test]
fn the_analyser_finds_exactly_the_flows_the_example_policy_allows() {
    let netpolicy = analyser();
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = write_inputs(dir.path());
    assert!(policies >= 8, "only {policies} NetworkPolicies rendered");

    let output = Command::new(&netpolicy)
        .args(["list", "--dirpath"])
        .arg(dir.path())
        .args(["-o", "json"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", netpolicy.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "netpolicy list failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let flows: Vec<Flow> = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("netpolicy output is not a JSON list of flows: {e}\n{stdout}"));

    let mut table = String::new();
    let mut mismatches = Vec::new();
    for &(src, dst, protocol, port, expected) in FLOWS {
        for peer in [src, dst] {
            assert!(
                known_peer(&flows, peer),
                "{peer} occurs in no analyser line:\n{stdout}"
            );
        }
        let actual =
            allowed(&flows, src, dst, protocol, port).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
        let mark = if actual == expected { "ok" } else { "MISMATCH" };
        let row = format!(
            "{src:>30} -> {dst:<32} {protocol} {port:<5} expected {:<7} analyser {:<7} {mark}",
            verdict(expected),
            verdict(actual)
        );
        writeln!(table, "{row}").unwrap();
        if actual != expected {
            let lines: Vec<String> = lines_for(&flows, src, dst)
                .iter()
                .map(|f| format!("    {} -> {}: {}", f.src, f.dst, f.conn))
                .collect();
            let lines = if lines.is_empty() {
                "    (no line for this pair)".to_owned()
            } else {
                lines.join("\n")
            };
            mismatches.push(format!("{row}\n{lines}"));
        }
    }
    println!("{table}");
    assert!(
        mismatches.is_empty(),
        "{} flow(s) differ from the spec:\n{}\n\nall flows:\n{table}\nanalyser output:\n{stdout}\nanalyser log:\n{stderr}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
