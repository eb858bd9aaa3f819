//! Reconcile benchmark on the local control plane: one policy over N workloads (default 100).
//! Measures cold convergence (policy created until every workload is hardened and the status
//! says so), steady-state reconcile latency p50/p99 over repeated reconciles of the converged
//! world, writes per phase, and this process's resident memory (the operator runs in-process;
//! the API server and etcd are separate processes). `cargo bench --bench reconcile [-- N]`.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Operator, setup, wait_until, yaml};
use goreal_operator::crd::GoREALSecurityPolicy;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};

const ITERATIONS: usize = 200;

fn deployment(i: usize) -> Deployment {
    yaml(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app-{i}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: app-{i}}}}}\n  template:\n    metadata: {{labels: {{app: app-{i}, app.kubernetes.io/part-of: goreal}}}}\n    spec:\n      initContainers: [{{name: migrate, image: 'ghcr.io/goreal/api:1.8.3', command: [flask, db, upgrade], resources: {{limits: {{cpu: 500m, memory: 256Mi}}}}}}]\n      containers:\n        - name: api\n          image: ghcr.io/goreal/api:1.8.3\n          ports: [{{name: http, containerPort: 5000}}]\n          resources: {{requests: {{cpu: 250m, memory: 256Mi}}, limits: {{cpu: '1', memory: 512Mi}}}}\n        - name: proxy\n          image: envoyproxy/envoy:v1.31.2\n          ports: [{{containerPort: 9901}}]\n          resources: {{limits: {{cpu: 200m, memory: 128Mi}}}}\n"
    ))
}

fn status_memory(field: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l.trim_start_matches(field).trim().to_string())
        .unwrap_or_else(|| "n/a".into())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::main]
async fn main() {
    let size: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    let (client, ns) = setup("bench").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for i in 0..size {
        deployments
            .create(&PostParams::default(), &deployment(i))
            .await
            .expect("create");
    }
    let operator = Operator::start(&ns).await;
    let policies: Api<GoREALSecurityPolicy> = Api::namespaced(client.clone(), &ns);
    let policy: GoREALSecurityPolicy = yaml(&format!(
        "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\nmetadata: {{name: bench, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app.kubernetes.io/part-of: goreal}}}}\n  podSecurity: {{runAsUser: 10001, writablePaths: [{{path: /tmp, sizeLimit: 100Mi}}, {{path: /app/logs, sizeLimit: 500Mi}}]}}\n  networkPolicy: {{defaultDeny: [Ingress, Egress], ingress: [{{name: web, ports: [{{port: http}}], allowAll: true}}], egress: [{{name: db, ports: [{{port: 5432}}], to: [{{podSelector: {{matchLabels: {{app: db}}}}}}]}}]}}\n"
    ));

    let started = Instant::now();
    policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("policy");
    wait_until("convergence", || async {
        policies
            .get("bench")
            .await
            .ok()
            .and_then(|p| p.status)
            .is_some_and(|s| {
                s.workloads.is_some_and(|w| w.hardened as usize == size)
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            })
    })
    .await;
    let converged = started.elapsed();
    // Settle: the status write and the workload updates trigger a few more reconciles.
    operator.reconcile_all_and_wait().await;
    let convergence_writes = operator.take_writes();

    let histogram = &operator.metrics.reconcile_duration;
    let mut latencies = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let (count, sum) = (histogram.get_sample_count(), histogram.get_sample_sum());
        operator.trigger();
        while histogram.get_sample_count() == count {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(Duration::from_secs_f64(histogram.get_sample_sum() - sum));
    }
    let steady_writes = operator.take_writes();
    latencies.sort();

    println!(
        "reconcile benchmark: 1 policy, {size} Deployments (2 containers + 1 init container each)"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| cold convergence (policy created to all {size} hardened, Ready) | {:.2} s |",
        converged.as_secs_f64()
    );
    println!(
        "| writes during convergence (SSA, status, events, finalizer) | {} |",
        convergence_writes.len()
    );
    println!(
        "| steady-state reconcile p50 ({ITERATIONS} runs) | {:.2} ms |",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3
    );
    println!(
        "| steady-state reconcile p99 | {:.2} ms |",
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "| writes in {ITERATIONS} steady-state reconciles | {} |",
        steady_writes.len()
    );
    println!(
        "| resident memory now / peak (process) | {} / {} |",
        status_memory("VmRSS:"),
        status_memory("VmHWM:")
    );
    assert!(
        steady_writes.is_empty(),
        "a converged world must not be written: {steady_writes:?}"
    );
}
