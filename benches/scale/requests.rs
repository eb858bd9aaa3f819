//! API requests as the API server counts them: `apiserver_request_total` from its `/metrics`,
//! summed by verb and resource, and the difference between two readings.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Verbs that change state.
const WRITE_VERBS: [&str; 6] = [
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

/// Resources only the API server itself uses while nothing else runs: its identity Leases,
/// renewed every few seconds. The operator runs without leader election here, so it uses none;
/// they are left out of every count.
const BACKGROUND: [&str; 1] = ["coordination.k8s.io/leases"];

/// Request counts keyed by (verb, resource), resource as `group/resource[/subresource]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts(pub BTreeMap<(String, String), u64>);

impl Counts {
    /// Reads the counters once the writes have stopped: the same write counts over two
    /// readings a second apart (at most a minute), so that a window ends after the writes the
    /// previous step caused, however slow the machine.
    pub async fn settled(client: &kube::Client) -> Counts {
        let mut last = Counts::read(client).await;
        for _ in 0..60 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let now = Counts::read(client).await;
            if now.writes() == last.writes() {
                return now;
            }
            last = now;
        }
        last
    }

    /// Reads the API server's counters.
    pub async fn read(client: &kube::Client) -> Counts {
        let request = http::Request::get("/metrics")
            .body(Vec::new())
            .expect("metrics request");
        let text = client
            .request_text(request)
            .await
            .expect("reading the API server's /metrics");
        Counts::parse(&text)
    }

    /// Parses the Prometheus text format, keeping `apiserver_request_total` of resources (not
    /// of non-resource paths such as /metrics itself).
    pub fn parse(text: &str) -> Counts {
        let mut counts = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let labels = parse_labels(labels);
            let label = |name: &str| labels.get(name).map(String::as_str).unwrap_or("");
            if label("resource").is_empty() {
                continue;
            }
            let mut resource = format!("{}/{}", label("group"), label("resource"));
            if BACKGROUND.contains(&resource.as_str()) {
                continue;
            }
            if !label("subresource").is_empty() {
                resource = format!("{resource}/{}", label("subresource"));
            }
            let value: f64 = value.trim().parse().unwrap_or(0.0);
            *counts
                .entry((label("verb").to_string(), resource))
                .or_insert(0) += value as u64;
        }
        Counts(counts)
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        let mut delta = BTreeMap::new();
        for (key, value) in &self.0 {
            let before = earlier.0.get(key).copied().unwrap_or(0);
            if *value > before {
                delta.insert(key.clone(), value - before);
            }
        }
        Counts(delta)
    }

    /// Removes `count` requests of (verb, resource), the harness's own.
    pub fn subtract(&mut self, verb: &str, resource: &str, count: u64) {
        let key = (verb.to_string(), resource.to_string());
        if let Some(value) = self.0.get_mut(&key) {
            *value = value.saturating_sub(count);
            if *value == 0 {
                self.0.remove(&key);
            }
        }
    }

    /// Write requests.
    pub fn writes(&self) -> Counts {
        Counts(
            self.0
                .iter()
                .filter(|((verb, _), _)| WRITE_VERBS.contains(&verb.as_str()))
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        )
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// One line per (verb, resource): `VERB group/resource: N`.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for ((verb, resource), count) in &self.0 {
            let resource = resource.trim_start_matches('/');
            let _ = writeln!(out, "| {verb} | {resource} | {count} |");
        }
        out
    }
}

/// `name="value",...` with backslash escapes in values.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(name.trim_start_matches(',').trim().to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}
