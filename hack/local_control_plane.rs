//! `cargo run --example local-control-plane`: starts a real etcd and kube-apiserver on loopback,
//! installs the CRD, applies the GoREAL example namespace, and runs the operator against it
//! until Ctrl-C, printing the policy's compliance as it changes. Everything stops on exit.
#![allow(clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use goreal_operator::controller::{self, RunOptions};
use goreal_operator::crd::GoREALSecurityPolicy;
use goreal_operator::metrics::Metrics;
use goreal_operator::{http, telemetry};
use goreal_testenv::ControlPlane;

#[tokio::main]
async fn main() {
    telemetry::init(false);
    let plane = ControlPlane::shared();
    println!("kubeconfig: {}", plane.kubeconfig_path().display());
    let kubectl = |args: &[&str]| {
        let status = plane.kubectl().args(args).status().expect("run kubectl");
        assert!(status.success(), "kubectl {args:?} failed");
    };
    kubectl(&["apply", "--server-side", "-f", "crds/"]);
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/gorealsecuritypolicies.security.goreal.io",
    ]);
    kubectl(&["apply", "--server-side", "-f", "examples/goreal/"]);

    let client = plane.client().await;
    let metrics = Metrics::new().expect("metrics");
    let ready = Arc::new(AtomicBool::new(false));
    match tokio::net::TcpListener::bind("127.0.0.1:8080").await {
        Ok(listener) => {
            println!("metrics: http://127.0.0.1:8080/metrics");
            tokio::spawn(http::serve(listener, metrics.clone(), ready.clone()));
        }
        Err(error) => println!("metrics: not served, 127.0.0.1:8080 is unavailable ({error})"),
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        println!("stopping the operator, the API server and etcd");
    };
    let operator = tokio::spawn(controller::run(
        client.clone(),
        RunOptions {
            namespace: None,
            concurrency: 4,
            leader_election: None,
        },
        metrics,
        ready,
        futures::stream::pending(),
        shutdown,
    ));

    let policies: kube::Api<GoREALSecurityPolicy> = kube::Api::namespaced(client, "goreal");
    let mut last = String::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    while !operator.is_finished() {
        ticker.tick().await;
        let Ok(policy) = policies.get("goreal-baseline").await else {
            continue;
        };
        let Some(status) = policy.status else {
            continue;
        };
        let line = serde_saphyr::to_string(&status).unwrap_or_default();
        if line != last {
            println!("--- status of goreal/goreal-baseline ---\n{line}");
            let kubectl = plane.kubectl().get_program().to_string_lossy().into_owned();
            println!(
                "try: {kubectl} --kubeconfig {} -n goreal get gsp,deploy,sts,netpol,cm",
                plane.kubeconfig_path().display()
            );
            println!("press Ctrl-C to stop");
            last = line;
        }
    }
}
