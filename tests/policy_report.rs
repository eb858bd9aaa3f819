//! The compliance report on a real kube-apiserver: as a `wgpolicyk8s.io/v1alpha2` PolicyReport
//! with the published CRD (test data), absent without the CRD, written once it appears and
//! accepted by its schema, in step with the policy's status, updated on change, and left alone
//! by a reconcile of an unchanged world; and status and metrics agreeing with `audit` on the
//! same objects.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{Operator, create_policy, setup, wait_for, wait_status, wait_until, yaml};
use goreal_operator::crd::GoREALSecurityPolicy;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::json;

fn reports(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "wgpolicyk8s.io",
        "v1alpha2",
        "PolicyReport",
    ));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

#[tokio::test]
async fn the_policy_report_follows_the_status_once_its_crd_exists() {
    let (client, ns) = setup("report").await;
    let deployment: Deployment = yaml(
        "metadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    \
         metadata: {labels: {app: web}}\n    spec:\n      containers:\n        - \
         {name: web, image: 'nginx:latest', resources: {limits: {cpu: 100m, memory: 64Mi}}}\n",
    );
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let operator = Operator::start(&ns).await;
    let policy: GoREALSecurityPolicy = yaml(
        "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\n\
         metadata: {name: baseline}\nspec: {podSecurity: {}}\n",
    );
    create_policy(&client, &ns, &policy).await;
    wait_status(&client, &ns, "baseline", "evaluated", |s| {
        s.compliance.is_some()
    })
    .await;
    // Without the CRD there is no API to write to.
    operator.reconcile_all_and_wait().await;
    let writes = operator.take_writes();
    assert!(
        writes.iter().all(|w| !w.contains("policyreports")),
        "no PolicyReport is written without its API: {writes:?}"
    );

    common::install_crd_fixture("policyreport/wgpolicyk8s.io_policyreports.yaml");
    let report = wait_for(
        "a PolicyReport",
        || async {
            reports(&client, &ns)
                .get_opt("baseline-report")
                .await
                .ok()
                .flatten()
        },
        |report: &DynamicObject| Some(report.clone()),
    )
    .await;
    assert_eq!(report.owner_references()[0].kind, "GoREALSecurityPolicy");
    let status = wait_status(&client, &ns, "baseline", "the report listed", |s| {
        s.resources.iter().any(|r| r.kind == "PolicyReport")
    })
    .await;
    let compliance = status.compliance.unwrap();
    let summary = &report.data["summary"];
    assert_eq!(summary["pass"], compliance.passed);
    assert_eq!(summary["fail"], compliance.failed);
    assert_eq!(summary["skip"], compliance.skipped);
    let results = report.data["results"].as_array().unwrap();
    let pinned = results
        .iter()
        .find(|r| r["rule"] == "pod.image-pinned")
        .expect("an image-pinned result");
    assert_eq!(pinned["result"], "fail");
    assert_eq!(pinned["resources"][0]["kind"], "Deployment");
    assert_eq!(pinned["resources"][0]["name"], "web");

    // Converged: nothing is written again.
    wait_until("a reconcile without writes", || async {
        operator.take_writes();
        operator.reconcile_all_and_wait().await;
        operator.take_writes().is_empty()
    })
    .await;

    // The image pinned: the report follows.
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.27.3"}
            ]}}}})),
        )
        .await
        .unwrap();
    wait_for(
        "the report updated",
        || async {
            reports(&client, &ns)
                .get_opt("baseline-report")
                .await
                .ok()
                .flatten()
        },
        |report: &DynamicObject| {
            report.data["results"]
                .as_array()?
                .iter()
                .any(|r| r["rule"] == "pod.image-pinned" && r["result"] == "pass")
                .then_some(())
        },
    )
    .await;
}

/// Per check: its id, and its result with the offending objects.
fn results(compliance: &goreal_operator::crd::ComplianceStatus) -> Vec<(String, String)> {
    compliance
        .checks
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                format!("{:?} {}", c.result, c.objects.join(", ")),
            )
        })
        .collect()
}

#[tokio::test]
async fn status_and_metrics_agree_with_audit_on_the_same_objects() {
    let (client, ns) = setup("agree").await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/goreal/20-api.yaml")).unwrap();
    // The example's API workload, in this test's namespace.
    let text = text.replace("namespace: goreal", &format!("namespace: {ns}"));
    for document in text.split("\n---\n") {
        let object: DynamicObject = yaml(document);
        if object.types.as_ref().unwrap().kind != "Deployment" {
            continue;
        }
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"));
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &resource)
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
    }
    let policy_yaml = format!(
        "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\n\
         metadata: {{name: audited, namespace: {ns}}}\nspec:\n  mode: Audit\n  \
         podSecurity: {{}}\n  secretRotation: {{secrets: [{{name: goreal-db, keys: [{{key: password}}]}}]}}\n"
    );
    let operator = Operator::start(&ns).await;
    create_policy(&client, &ns, &yaml(&policy_yaml)).await;
    let status = wait_status(&client, &ns, "audited", "evaluated", |s| {
        s.compliance.is_some()
    })
    .await;
    let from_status = results(&status.compliance.unwrap());

    // The same objects, offline.
    let mut manifests = goreal_operator::render::Manifests::default();
    goreal_operator::render::parse_into(
        std::path::Path::new("policy.yaml"),
        &format!("{policy_yaml}---\n{text}"),
        &mut manifests,
    )
    .unwrap();
    let audits = goreal_operator::audit::audit(&manifests, jiff::Timestamp::now());
    let from_audit = results(audits[0].report.as_ref().unwrap());
    // Audit skips what only the cluster can show (the Secrets the operator generates there);
    // every other check agrees.
    let cluster_only = |(id, _): &&(String, String)| id == "secrets.rotated-within-interval";
    let comparable = |results: &[(String, String)]| -> Vec<(String, String)> {
        results
            .iter()
            .filter(|r| !cluster_only(r))
            .cloned()
            .collect()
    };
    assert_eq!(comparable(&from_status), comparable(&from_audit));
    assert!(
        from_audit
            .iter()
            .any(|(id, r)| id == "secrets.rotated-within-interval" && r.starts_with("Skip"))
    );

    // And the metrics say the same per check.
    let metrics = operator.metrics.encode();
    for (id, result) in &from_status {
        let series = format!(
            "goreal_policy_check_failed{{check=\"{id}\",namespace=\"{ns}\",policy=\"audited\"}}"
        );
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.trim().parse::<i64>().ok());
        let expected = match result.split(' ').next() {
            Some("Fail") => Some(1),
            Some("Pass") => Some(0),
            _ => None,
        };
        assert_eq!(value, expected, "{id}: {result}");
    }
}
