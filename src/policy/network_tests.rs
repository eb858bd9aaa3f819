//! Unit tests of the generated NetworkPolicies and the network checks.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::*;
use crate::compliance::{NETWORK_DEFAULT_DENY, NETWORK_RULES_WITHIN_SPEC};
use crate::crd::{CheckResult, ComplianceStatus, GoREALSecurityPolicy};
use crate::model::validate;
use crate::observed::{Observed, WorkloadResource};
use crate::policy::{Desired, Rejection, plan as plan_all, report};

/// A validated policy `p` (uid `u-1`) in namespace `shop` selecting `app: shop`.
fn policy(mode: &str, network: &str) -> ValidatedPolicy {
    let body: String = network.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!(
        "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\n\
         metadata: {{name: p, namespace: shop, uid: u-1}}\n\
         spec:\n  mode: {mode}\n  selector: {{matchLabels: {{app: shop}}}}\n  networkPolicy:\n{body}"
    );
    let raw: GoREALSecurityPolicy = serde_saphyr::from_str(&yaml).expect("policy YAML");
    validate(&raw).expect("valid policy")
}

fn observed() -> Observed {
    let deployment: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "shop" },
        "spec": { "selector": { "matchLabels": { "app": "shop" } },
                  "template": { "metadata": { "labels": { "app": "shop", "tier": "web" } },
                                "spec": { "containers": [{ "name": "c", "image": "i:1" }] } } }
    }))
    .expect("deployment");
    Observed {
        workloads: vec![deployment.to_workload().expect("workload")],
        ..Observed::default()
    }
}

fn object(desired: &Desired, name: &str) -> NetworkPolicy {
    let found = desired
        .generated
        .iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("{name} not generated"));
    serde_json::from_value(found.body.clone()).expect("NetworkPolicy body")
}

fn names_of(desired: &Desired) -> Vec<&str> {
    desired.generated.iter().map(|g| g.name.as_str()).collect()
}

fn check<'a>(status: &'a ComplianceStatus, id: &str) -> &'a crate::crd::CheckStatus {
    status
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id}"))
}

fn compliance(policy: &ValidatedPolicy, desired: &Desired, applied: bool) -> ComplianceStatus {
    report(policy, desired, &|_| applied, &Refusals::default()).0
}

fn dns_service(selector: serde_json::Value, ports: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "kube-dns", "namespace": "kube-system", "labels": { "k8s-app": "kube-dns" } },
        "spec": { "selector": selector, "ports": ports }
    }))
    .expect("service")
}

#[test]
fn default_deny_selects_the_policys_pods_owned_and_labelled() {
    let p = policy("Enforce", "defaultDeny: [Ingress, Egress]\nallowDNS: false");
    let desired = plan_all(&p, &observed());
    assert_eq!(names_of(&desired), ["p-default-deny"]);
    let deny = object(&desired, "p-default-deny");
    let spec = deny.spec.clone().expect("spec");
    assert_eq!(
        spec.policy_types,
        Some(vec!["Ingress".into(), "Egress".into()])
    );
    assert!(spec.ingress.is_none() && spec.egress.is_none());
    assert_eq!(
        spec.pod_selector.and_then(|s| s.match_labels),
        Some(BTreeMap::from([("app".into(), "shop".into())]))
    );
    let labels = deny.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels[names::MANAGED_BY_LABEL], "goreal-operator");
    assert_eq!(labels[names::POLICY_LABEL], "p");
    let owner = &deny.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("GoREALSecurityPolicy", "u-1")
    );
    assert_eq!(owner.controller, Some(true));
}

#[test]
fn each_named_rule_is_one_object_and_allows_come_before_the_deny() {
    let p = policy(
        "Enforce",
        "defaultDeny: [Ingress, Egress]\nallowDNS: false\n\
         ingress:\n- name: web\n  appliesTo: {matchLabels: {tier: web}}\n  ports: [{port: http}]\n  allowAll: true\n\
         - name: admin\n  ports: [{port: 3000}, {port: 9000, endPort: 9100, protocol: UDP}]\n  from: [{ipBlock: {cidr: '2001:db8::/32', except: ['2001:db8:1::/48']}}]\n\
         egress:\n- name: db\n  to: [{namespaceSelector: {matchLabels: {team: data}}, podSelector: {matchLabels: {app: pg}}}]",
    );
    let desired = plan_all(&p, &observed());
    assert_eq!(
        names_of(&desired),
        [
            "p-ingress-web",
            "p-ingress-admin",
            "p-egress-db",
            "p-default-deny"
        ]
    );
    let web = object(&desired, "p-ingress-web").spec.expect("spec");
    assert_eq!(web.policy_types, Some(vec!["Ingress".into()]));
    let rule = &web.ingress.expect("ingress")[0];
    assert!(rule.from.is_none(), "allowAll admits every source");
    assert_eq!(rule.ports.as_ref().map(Vec::len), Some(1));
    let selector = web
        .pod_selector
        .and_then(|s| s.match_labels)
        .unwrap_or_default();
    assert_eq!(
        selector.len(),
        2,
        "policy selector narrowed by appliesTo: {selector:?}"
    );
    let admin = object(&desired, "p-ingress-admin").spec.expect("spec");
    let body = serde_json::to_value(&admin).expect("json");
    assert_eq!(
        body["ingress"][0]["from"],
        json!([{ "ipBlock": { "cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"] } }])
    );
    assert_eq!(
        body["ingress"][0]["ports"],
        json!([{ "port": 3000, "protocol": "TCP" }, { "port": 9000, "endPort": 9100, "protocol": "UDP" }])
    );
    let db = serde_json::to_value(object(&desired, "p-egress-db").spec).expect("json");
    assert_eq!(db["policyTypes"], json!(["Egress"]));
    assert!(
        db["egress"][0].get("ports").is_none(),
        "no ports: every port"
    );
    assert_eq!(
        db["egress"][0]["to"][0]["namespaceSelector"]["matchLabels"]["team"],
        "data"
    );
}

#[test]
fn dns_egress_uses_the_dns_services_selector_and_target_ports() {
    let p = policy("Enforce", "defaultDeny: [Egress]");
    let mut world = observed();
    world.dns_services = vec![dns_service(
        json!({ "k8s-app": "coredns" }),
        json!([{ "name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns" },
               { "name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 5353 },
               { "name": "metrics", "port": 9153 }]),
    )];
    let desired = plan_all(&p, &world);
    let dns = serde_json::to_value(object(&desired, "p-allow-dns").spec).expect("json");
    assert_eq!(
        dns["egress"][0]["ports"],
        json!([{ "port": "dns", "protocol": "UDP" }, { "port": 5353, "protocol": "TCP" }, { "port": 9153, "protocol": "TCP" }])
    );
    assert_eq!(
        dns["egress"][0]["to"][0]["podSelector"]["matchLabels"],
        json!({ "k8s-app": "coredns" })
    );
    assert_eq!(
        dns["egress"][0]["to"][0]["namespaceSelector"]["matchLabels"],
        json!({ "kubernetes.io/metadata.name": "kube-system" })
    );
    let status = compliance(&p, &desired, true);
    let check = check(&status, compliance::NETWORK_DNS_EGRESS);
    assert_eq!(check.result, CheckResult::Pass);
    assert!(
        !check.message.contains("could not be read"),
        "{}",
        check.message
    );
}

#[test]
fn dns_falls_back_to_port_53_with_a_note_when_the_service_is_unknown() {
    let p = policy("Enforce", "defaultDeny: [Egress]");
    for world_dns in [
        vec![],
        vec![dns_service(json!({}), json!([{ "port": 53 }]))],
    ] {
        let mut world = observed();
        world.dns_services = world_dns;
        let desired = plan_all(&p, &world);
        let dns = serde_json::to_value(object(&desired, "p-allow-dns").spec).expect("json");
        assert_eq!(
            dns["egress"][0]["ports"],
            json!([{ "port": 53, "protocol": "UDP" }, { "port": 53, "protocol": "TCP" }])
        );
        assert_eq!(
            dns["egress"][0]["to"][0]["podSelector"]["matchLabels"],
            json!({ "k8s-app": "kube-dns" })
        );
        let status = compliance(&p, &desired, true);
        let check = check(&status, compliance::NETWORK_DNS_EGRESS);
        assert_eq!(check.result, CheckResult::Pass);
        assert!(
            check.message.contains("could not be read"),
            "{}",
            check.message
        );
    }
}

#[test]
fn denying_egress_without_dns_is_flagged() {
    let p = policy("Enforce", "defaultDeny: [Egress]\nallowDNS: false");
    let desired = plan_all(&p, &observed());
    let status = compliance(&p, &desired, true);
    let check = check(&status, compliance::NETWORK_DNS_EGRESS);
    assert_eq!(check.result, CheckResult::Fail);
    assert!(
        check.message.contains("cannot resolve names"),
        "{}",
        check.message
    );
}

#[test]
fn api_server_egress_follows_ready_endpoint_slice_addresses() {
    let p = policy(
        "Enforce",
        "defaultDeny: [Egress]\nallowDNS: false\nallowAPIServer: true",
    );
    let slice = |name: &str, address_type: &str, addresses: serde_json::Value| -> EndpointSlice {
        serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": address_type,
            "metadata": { "name": name, "namespace": "default", "labels": { "kubernetes.io/service-name": "kubernetes" } },
            "endpoints": addresses,
            "ports": [{ "name": "https", "port": 6443, "protocol": "TCP" }]
        }))
        .expect("slice")
    };
    let mut world = observed();
    world.api_server_slices = vec![
        slice(
            "v4",
            "IPv4",
            json!([{ "addresses": ["192.0.2.10"] },
                                   { "addresses": ["192.0.2.11"], "conditions": { "ready": false } }]),
        ),
        slice("v6", "IPv6", json!([{ "addresses": ["2001:db8::10"] }])),
    ];
    let desired = plan_all(&p, &world);
    let api = serde_json::to_value(object(&desired, "p-allow-apiserver").spec).expect("json");
    assert_eq!(
        api["egress"][0]["to"],
        json!([{ "ipBlock": { "cidr": "192.0.2.10/32" } }, { "ipBlock": { "cidr": "2001:db8::10/128" } }])
    );
    assert_eq!(
        api["egress"][0]["ports"],
        json!([{ "port": 6443, "protocol": "TCP" }])
    );
    let status = compliance(&p, &desired, true);
    let passed = check(&status, compliance::NETWORK_API_SERVER_EGRESS);
    assert_eq!(passed.result, CheckResult::Pass);
    assert!(
        passed.message.contains("192.0.2.10/32"),
        "{}",
        passed.message
    );

    let unknown = plan_all(&p, &observed());
    assert!(!names_of(&unknown).contains(&"p-allow-apiserver"));
    let status = compliance(&p, &unknown, true);
    assert_eq!(
        check(&status, compliance::NETWORK_API_SERVER_EGRESS).result,
        CheckResult::Fail
    );
}

/// The generated objects as the API server would return them: with a resourceVersion, a uid and
/// managedFields, which must not make them look out of date.
fn as_live(desired: &Desired) -> Vec<NetworkPolicy> {
    desired
        .generated
        .iter()
        .map(|g| {
            let mut live: NetworkPolicy = serde_json::from_value(g.body.clone()).expect("body");
            live.metadata.resource_version = Some("42".into());
            live.metadata.uid = Some(format!("uid-{}", g.name));
            live
        })
        .collect()
}

#[test]
fn live_objects_that_match_need_no_write_and_edits_are_rewritten() {
    let p = policy(
        "Enforce",
        "ingress:\n- name: web\n  ports: [{port: 80}]\n  allowAll: true",
    );
    let first = plan_all(&p, &observed());
    assert!(first.generated.iter().all(|g| !g.up_to_date && !g.taken));
    let mut world = observed();
    world.network_policies = as_live(&first);
    let second = plan_all(&p, &world);
    assert!(
        second.generated.iter().all(|g| g.up_to_date),
        "{:?}",
        names_of(&second)
    );
    assert!(second.prune.is_empty());
    // Someone opens the web rule to every port by hand: it is no longer current.
    if let Some(spec) = world.network_policies[0].spec.as_mut() {
        spec.ingress = Some(vec![NetworkPolicyIngressRule::default()]);
    }
    let third = plan_all(&p, &world);
    assert!(!third.generated[0].up_to_date);
}

#[test]
fn removed_rules_and_sections_are_pruned_but_foreign_objects_never() {
    let p = policy(
        "Enforce",
        "ingress:\n- {name: web, allowAll: true}\n- {name: old, allowAll: true}",
    );
    let mut world = observed();
    world.network_policies = as_live(&plan_all(&p, &world));
    let foreign: NetworkPolicy = serde_json::from_value(json!({
        "metadata": { "name": "team-policy", "namespace": "shop" },
        "spec": { "podSelector": {}, "policyTypes": ["Ingress"] }
    }))
    .expect("foreign");
    world.network_policies.push(foreign);
    let fewer = policy("Enforce", "ingress:\n- {name: web, allowAll: true}");
    let pruned: Vec<String> = plan_all(&fewer, &world)
        .prune
        .into_iter()
        .map(|r| r.object.name)
        .collect();
    assert_eq!(pruned, ["p-ingress-old"]);
    let mut none = fewer.clone();
    none.network = None;
    let mut pruned: Vec<String> = plan_all(&none, &world)
        .prune
        .into_iter()
        .map(|r| r.object.name)
        .collect();
    pruned.sort();
    assert_eq!(pruned, ["p-default-deny", "p-ingress-old", "p-ingress-web"]);
}

#[test]
fn a_name_held_by_a_foreign_object_is_not_written_and_is_reported() {
    let p = policy("Enforce", "{}");
    let mut world = observed();
    world.network_policies = vec![
        serde_json::from_value(json!({
            "metadata": { "name": "p-default-deny", "namespace": "shop" },
            "spec": { "podSelector": {}, "policyTypes": ["Ingress"] }
        }))
        .expect("foreign"),
    ];
    let desired = plan_all(&p, &world);
    assert!(desired.generated[0].taken);
    assert!(desired.prune.is_empty(), "a foreign object is never pruned");
    let status = compliance(&p, &desired, true);
    let accepted = check(&status, compliance::NETWORK_POLICIES_ACCEPTED);
    assert_eq!(accepted.result, CheckResult::Fail);
    assert!(
        accepted.message.contains("name taken"),
        "{}",
        accepted.message
    );
}

#[test]
fn default_deny_check_judges_what_is_in_force() {
    let p = policy("Enforce", "defaultDeny: [Ingress, Egress]\nallowDNS: false");
    let desired = plan_all(&p, &observed());
    assert_eq!(
        check(&compliance(&p, &desired, true), NETWORK_DEFAULT_DENY).result,
        CheckResult::Pass
    );
    // Rejected by the API server: nothing isolates the pods.
    let refused = report(
        &p,
        &desired,
        &|_| false,
        &Refusals {
            conflicts: vec![],
            rejections: vec![Rejection {
                object: "NetworkPolicy/p-default-deny".into(),
                code: 422,
                reason: "Invalid".into(),
            }],
        },
    )
    .0;
    let deny = check(&refused, NETWORK_DEFAULT_DENY);
    assert_eq!(deny.result, CheckResult::Fail);
    assert!(
        deny.message
            .contains("Deployment/web is not isolated for Ingress"),
        "{}",
        deny.message
    );
    assert_eq!(
        check(&refused, compliance::NETWORK_POLICIES_ACCEPTED).result,
        CheckResult::Fail
    );
    // Audit mode judges the live objects only: none exist.
    let audit = policy("Audit", "defaultDeny: [Ingress, Egress]\nallowDNS: false");
    let status = compliance(&audit, &plan_all(&audit, &observed()), true);
    assert_eq!(
        check(&status, NETWORK_DEFAULT_DENY).result,
        CheckResult::Fail
    );
    assert_eq!(
        check(&status, compliance::NETWORK_POLICIES_ACCEPTED).result,
        CheckResult::Skip
    );
}

#[test]
fn a_foreign_policy_admitting_more_than_the_spec_is_flagged() {
    let p = policy(
        "Enforce",
        "ingress:\n- name: web\n  ports: [{port: 80}]\n  from: [{ipBlock: {cidr: 10.0.0.0/8}}]",
    );
    let foreign =
        |name: &str, selector: serde_json::Value, ingress: serde_json::Value| -> NetworkPolicy {
            serde_json::from_value(json!({
                "metadata": { "name": name, "namespace": "shop" },
                "spec": { "podSelector": selector, "policyTypes": ["Ingress"], "ingress": ingress }
            }))
            .expect("foreign")
        };
    let mut world = observed();
    world.network_policies = vec![
        // Same flow as the spec (protocol left to the default): admitted.
        foreign(
            "same",
            json!({}),
            json!([{ "from": [{ "ipBlock": { "cidr": "10.0.0.0/8" } }], "ports": [{ "port": 80 }] }]),
        ),
        // Selects none of the policy's pods: not its business.
        foreign(
            "elsewhere",
            json!({ "matchLabels": { "app": "other" } }),
            json!([{}]),
        ),
    ];
    let status = compliance(&p, &plan_all(&p, &world), true);
    assert_eq!(
        check(&status, NETWORK_RULES_WITHIN_SPEC).result,
        CheckResult::Pass
    );
    world.network_policies.push(foreign(
        "open-all",
        json!({ "matchLabels": { "tier": "web" } }),
        json!([{ "ports": [{ "port": 80 }] }]),
    ));
    let status = compliance(&p, &plan_all(&p, &world), true);
    let within = check(&status, NETWORK_RULES_WITHIN_SPEC);
    assert_eq!(within.result, CheckResult::Fail);
    assert_eq!(within.objects, ["NetworkPolicy/open-all"]);
    assert!(
        within
            .message
            .contains("admits ingress from anywhere on TCP 80"),
        "{}",
        within.message
    );
}

#[test]
fn generated_rules_admit_exactly_the_spec_peers_and_ports() {
    let p = policy(
        "Enforce",
        "defaultDeny: [Ingress, Egress]\n\
         ingress:\n- name: a\n  ports: [{port: 22}]\n  from: [{ipBlock: {cidr: 192.168.1.0/24}}]\n\
         egress:\n- name: b\n  ports: [{port: 5432}]\n  to: [{podSelector: {matchLabels: {app: pg}}}]",
    );
    let settings = p.network.clone().expect("network");
    let desired = plan_all(&p, &observed());
    for rule in &settings.rules {
        let name = format!("p-{}-{}", rule.direction.as_str().to_lowercase(), rule.name);
        let spec = object(&desired, &name).spec.expect("spec");
        let (peers, ports) = match rule.direction {
            Direction::Ingress => {
                let r = &spec.ingress.expect("ingress")[0];
                (r.from.clone(), r.ports.clone())
            }
            Direction::Egress => {
                let r = &spec.egress.expect("egress")[0];
                (r.to.clone(), r.ports.clone())
            }
        };
        assert_eq!(peers, Some(rule.peers.clone()), "{name}");
        assert_eq!(ports, Some(rule.ports.clone()), "{name}");
    }
}

#[test]
fn network_checks_count_only_network_policies() {
    let raw: GoREALSecurityPolicy = serde_saphyr::from_str(
        "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\n\
         metadata: {name: p, namespace: shop, uid: u-1}\n\
         spec:\n  selector: {matchLabels: {app: shop}}\n  networkPolicy: {}\n  alerting: {}\n",
    )
    .expect("policy");
    let p = validate(&raw).expect("valid");
    let desired = plan_all(&p, &observed());
    assert_eq!(
        desired.generated.len(),
        2,
        "a NetworkPolicy and the rules ConfigMap"
    );
    let refused = report(
        &p,
        &desired,
        &|r| !r.starts_with("ConfigMap/"),
        &Refusals {
            conflicts: vec![],
            rejections: vec![Rejection {
                object: "ConfigMap/p-alert-rules".into(),
                code: 409,
                reason: "AlreadyExists".into(),
            }],
        },
    )
    .0;
    let accepted = check(&refused, compliance::NETWORK_POLICIES_ACCEPTED);
    assert_eq!(accepted.result, CheckResult::Pass, "{}", accepted.message);
    assert!(
        accepted.message.starts_with("1 object(s) checked"),
        "{}",
        accepted.message
    );
    assert_eq!(
        check(&refused, compliance::ALERT_RULES_IN_PLACE).result,
        CheckResult::Fail
    );
}
