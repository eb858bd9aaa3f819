//! Alert rules against a real kube-apiserver: a ConfigMap while the PrometheusRule API is
//! missing; installing its CRD (the published schema, as test data) switches the output to a
//! PrometheusRule the API server accepts and prunes the ConfigMap; invalid PromQL applies
//! nothing. One test installs the CRD, so the other checks only what holds either way.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{
    Operator, condition, condition_message, create_policy, setup, wait_for, wait_status,
    wait_until, yaml,
};
use goreal_operator::crd::GoREALSecurityPolicy;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::json;

const PROMETHEUS_RULE_CRD: &str =
    include_str!("fixtures/prometheus/monitoring.coreos.com_prometheusrules.yaml");

fn policy(name: &str, alerting: &str) -> GoREALSecurityPolicy {
    yaml(&format!(
        "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\nmetadata:\n  name: {name}\n\
         spec:\n  alerting:\n{alerting}"
    ))
}

fn prometheus_rules(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "PrometheusRule",
    ));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

async fn install_prometheus_rule_crd(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = yaml(PROMETHEUS_RULE_CRD);
    api.patch(
        &crd.name_any(),
        &PatchParams::apply("goreal-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("install the PrometheusRule CRD");
}

#[tokio::test]
async fn rules_move_from_a_config_map_to_a_prometheus_rule_when_the_crd_appears() {
    let (client, ns) = setup("alerts").await;
    let operator = Operator::start(&ns).await;
    let alerting =
        "    ruleLabels: {release: kube-prometheus-stack}\n    failedLogins: {threshold: 0.2}\n";
    create_policy(&client, &ns, &policy("alerts", alerting)).await;

    let status = wait_status(&client, &ns, "alerts", "rules in a ConfigMap", |s| {
        condition(s, "AlertRules") == Some(("True", "ConfigMap"))
    })
    .await;
    assert_eq!(condition(&status, "Ready"), Some(("True", "Reconciled")));
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let config_map = config_maps
        .get("alerts-alert-rules")
        .await
        .expect("rules ConfigMap");
    assert_eq!(config_map.labels()["release"], "kube-prometheus-stack");
    let file = &config_map.data.as_ref().expect("data")["goreal-security.rules.yaml"];
    assert!(
        file.contains(&format!(
            "rate(goreal_failed_login_attempts_total{{namespace=\"{ns}\"}}[5m]) > 0.2"
        )),
        "{file}"
    );
    assert!(status.resources.iter().any(|r| r.kind == "ConfigMap"));

    install_prometheus_rule_crd(&client).await;
    let rules = prometheus_rules(&client, &ns);
    let rule = wait_for(
        "a PrometheusRule",
        || async { rules.get_opt("alerts-alert-rules").await.ok().flatten() },
        |rule: &DynamicObject| Some(rule.clone()),
    )
    .await;
    assert_eq!(rule.labels()["release"], "kube-prometheus-stack");
    assert_eq!(
        rule.data["spec"]["groups"][0]["rules"][0]["alert"],
        "HighFailedLoginAttempts"
    );
    assert_eq!(
        rule.owner_references()[0].kind,
        "GoREALSecurityPolicy",
        "owned by the policy"
    );
    wait_for(
        "the ConfigMap pruned",
        || async { config_maps.get_opt("alerts-alert-rules").await.ok() },
        |found: &Option<ConfigMap>| found.is_none().then_some(()),
    )
    .await;
    let status = wait_status(&client, &ns, "alerts", "rules in a PrometheusRule", |s| {
        condition(s, "AlertRules") == Some(("True", "PrometheusRule"))
    })
    .await;
    assert!(status.resources.iter().all(|r| r.kind != "ConfigMap"));

    // A changed threshold reaches the PrometheusRule.
    let policies: Api<GoREALSecurityPolicy> = Api::namespaced(client.clone(), &ns);
    policies
        .patch(
            "alerts",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "spec": { "alerting": { "failedLogins": { "threshold": 0.5 } } } }),
            ),
        )
        .await
        .expect("patch policy");
    wait_for(
        "the new threshold",
        || async { rules.get_opt("alerts-alert-rules").await.ok().flatten() },
        |rule: &DynamicObject| {
            let expr = rule.data["spec"]["groups"][0]["rules"][0]["expr"].as_str()?;
            expr.ends_with("> 0.5").then_some(())
        },
    )
    .await;
    wait_status(&client, &ns, "alerts", "Ready", |s| {
        condition(s, "Ready") == Some(("True", "Reconciled"))
    })
    .await;

    // Converged (once the operator's PrometheusRule watch, started when the CRD appeared, has
    // synced): the PrometheusRule as the API server returns it counts as current.
    wait_until("a reconcile without requests", || async {
        operator.take_requests();
        operator.reconcile_all_and_wait().await;
        operator.take_requests().is_empty()
    })
    .await;
    for _ in 0..2 {
        operator.reconcile_all_and_wait().await;
        assert_eq!(operator.take_requests(), Vec::<String>::new());
    }
}

#[tokio::test]
async fn invalid_promql_is_reported_and_nothing_is_written() {
    let (client, ns) = setup("badalerts").await;
    let _operator = Operator::start(&ns).await;
    let alerting =
        "    custom:\n    - name: Broken\n      expr: 'rate(http_requests_total[5m] > 1'\n";
    create_policy(&client, &ns, &policy("bad", alerting)).await;
    let status = wait_status(&client, &ns, "bad", "InvalidSpec", |s| {
        condition(s, "Ready") == Some(("False", "InvalidSpec"))
    })
    .await;
    let message = condition_message(&status, "Ready");
    assert!(
        message.contains("rule Broken: not valid PromQL"),
        "{message}"
    );
    assert!(condition(&status, "AlertRules").is_none());
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    assert!(
        config_maps
            .get_opt("bad-alert-rules")
            .await
            .expect("get")
            .is_none()
    );
    // Whether or not the other test installed the CRD by now, no PrometheusRule exists.
    let rules = prometheus_rules(&client, &ns);
    assert!(
        rules
            .get_opt("bad-alert-rules")
            .await
            .map_or(true, |r| r.is_none())
    );
}
