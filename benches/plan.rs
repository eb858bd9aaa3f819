//! Criterion benchmark of the pure pipeline: validate, plan and report one policy over a
//! namespace of realistic workloads (sizes 10, 100, 1000), with the example policy (every
//! capability).
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use goreal_operator::crd::GoREALSecurityPolicy;
use goreal_operator::observed::{NamespaceState, Observed, WorkloadResource};
use goreal_operator::{model, policy};
use k8s_openapi::api::apps::v1::Deployment;

fn workloads(count: usize) -> Vec<goreal_operator::observed::Workload> {
    (0..count)
        .map(|i| {
            let text = format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app-{i}, namespace: bench}}\nspec:\n  selector: {{matchLabels: {{app: app-{i}}}}}\n  template:\n    metadata: {{labels: {{app: app-{i}, tier: web}}}}\n    spec:\n      initContainers: [{{name: init, image: busybox:1.36.1}}]\n      containers:\n        - name: app\n          image: ghcr.io/goreal/api:1.8.3\n          securityContext: {{capabilities: {{add: [NET_ADMIN, NET_BIND_SERVICE]}}}}\n          volumeMounts: [{{name: data, mountPath: /data}}]\n        - name: sidecar\n          image: envoyproxy/envoy:v1.31.2\n      volumes: [{{name: data, emptyDir: {{}}}}]\n"
            );
            let deployment: Deployment = serde_saphyr::from_str(&text).expect("fixture");
            deployment.to_workload().expect("workload")
        })
        .collect()
}

fn bench_plan(c: &mut Criterion) {
    let raw: GoREALSecurityPolicy = serde_saphyr::from_str(
        &std::fs::read_to_string("examples/goreal/10-policy.yaml").expect("example policy"),
    )
    .expect("policy");
    let mut raw = raw;
    raw.spec.selector = None;
    let validated = model::validate(&raw).expect("valid");
    let mut group = c.benchmark_group("plan_and_report");
    for size in [10usize, 100, 1000] {
        let observed = Observed {
            namespace: NamespaceState {
                name: "goreal".into(),
                ..Default::default()
            },
            workloads: workloads(size),
            policies: ["goreal-baseline".to_string()].into(),
            ..Default::default()
        };
        group.bench_with_input(
            BenchmarkId::from_parameter(size),
            &observed,
            |b, observed| {
                b.iter(|| {
                    let desired = policy::plan(black_box(&validated), black_box(observed));
                    black_box(policy::report(
                        &validated,
                        &desired,
                        &|_| true,
                        &policy::Refusals::default(),
                    ))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_plan);
criterion_main!(benches);
