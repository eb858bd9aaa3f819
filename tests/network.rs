//! Network isolation against a real kube-apiserver: generated NetworkPolicies accepted by
//! server-side apply, owned by the policy and pruned with their rules; DNS and API server egress
//! following the cluster's own objects; foreign objects never overwritten; invalid input
//! applying nothing.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{
    Operator, check, condition, condition_message, create_policy, setup, wait_for, wait_status,
    wait_until, yaml,
};
use goreal_operator::crd::{CheckResult, GoREALSecurityPolicy};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web, tier: front}
    spec:
      containers:
        - name: web
          image: nginx:1.27.3
          ports:
            - {name: http, containerPort: 8080}
"#;

/// A policy selecting `app: web` with the given `networkPolicy` section (YAML, indented by 4).
fn policy(name: &str, network: &str) -> GoREALSecurityPolicy {
    yaml(&format!(
        "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\nmetadata:\n  name: {name}\n\
         spec:\n  selector:\n    matchLabels: {{app: web}}\n  networkPolicy:\n{network}"
    ))
}

async fn create_web(client: &Client, namespace: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &yaml(WEB))
        .await
        .expect("create deployment")
}

/// Names of the NetworkPolicies in the namespace, sorted.
async fn network_policy_names(client: &Client, namespace: &str) -> Vec<String> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
    let mut names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("list network policies")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    names
}

async fn network_policy(client: &Client, namespace: &str, name: &str) -> Option<Value> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
    let object = api.get_opt(name).await.expect("get network policy")?;
    Some(serde_json::to_value(object).expect("json"))
}

async fn patch_spec(client: &Client, namespace: &str, name: &str, spec: Value) {
    let api: Api<GoREALSecurityPolicy> = Api::namespaced(client.clone(), namespace);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": spec })),
    )
    .await
    .expect("patch policy");
}

#[tokio::test]
async fn network_policies_are_applied_owned_and_pruned_with_their_rules() {
    let (client, ns) = setup("netpol").await;
    create_web(&client, &ns).await;
    let _operator = Operator::start(&ns).await;
    let spec = "    defaultDeny: [Ingress, Egress]\n    allowDNS: false\n    ingress:\n\
        \x20   - name: web\n      ports: [{port: http}, {port: 8443}]\n      allowAll: true\n\
        \x20   - name: admin\n      ports: [{port: 9000, endPort: 9100}]\n      from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}, {ipBlock: {cidr: 'fd00::/8', except: ['fd00:1::/32']}}]\n\
        \x20   egress:\n    - name: db\n      ports: [{port: 5432}]\n      to: [{namespaceSelector: {matchLabels: {team: data}}, podSelector: {matchLabels: {app: pg}}}]\n";
    create_policy(&client, &ns, &policy("isolate", spec)).await;
    let status = wait_status(&client, &ns, "isolate", "Ready", |s| {
        condition(s, "Ready") == Some(("True", "Reconciled"))
    })
    .await;
    let expected = [
        "isolate-default-deny",
        "isolate-egress-db",
        "isolate-ingress-admin",
        "isolate-ingress-web",
    ];
    assert_eq!(network_policy_names(&client, &ns).await, expected);
    let listed: Vec<&str> = status
        .resources
        .iter()
        .filter(|r| r.kind == "NetworkPolicy")
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(listed, expected);
    for check_id in [
        "network.default-deny",
        "network.policies-accepted",
        "network.rules-within-spec",
    ] {
        assert_eq!(
            check(&status, check_id).result,
            CheckResult::Pass,
            "{check_id}"
        );
    }

    let uid = Api::<GoREALSecurityPolicy>::namespaced(client.clone(), &ns)
        .get("isolate")
        .await
        .expect("policy")
        .uid();
    let deny = network_policy(&client, &ns, "isolate-default-deny")
        .await
        .expect("default deny");
    let owner = &deny["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "GoREALSecurityPolicy");
    assert_eq!(owner["uid"].as_str(), uid.as_deref());
    assert_eq!(owner["controller"], true);
    assert_eq!(
        deny["metadata"]["labels"]["security.goreal.io/policy"],
        "isolate"
    );
    assert_eq!(deny["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        deny["spec"]["podSelector"],
        json!({ "matchLabels": { "app": "web" } })
    );
    let admin = network_policy(&client, &ns, "isolate-ingress-admin")
        .await
        .expect("admin rule");
    assert_eq!(
        admin["spec"]["ingress"][0]["from"][1]["ipBlock"],
        json!({ "cidr": "fd00::/8", "except": ["fd00:1::/32"] })
    );
    assert_eq!(admin["spec"]["ingress"][0]["ports"][0]["endPort"], 9100);

    // Dropping a rule prunes its object; dropping the section prunes them all.
    patch_spec(
        &client,
        &ns,
        "isolate",
        json!({ "networkPolicy": { "egress": null, "defaultDeny": ["Ingress"], "allowDNS": null } }),
    )
    .await;
    wait_until("egress rule pruned", || async {
        network_policy_names(&client, &ns).await
            == [
                "isolate-default-deny",
                "isolate-ingress-admin",
                "isolate-ingress-web",
            ]
    })
    .await;
    patch_spec(&client, &ns, "isolate", json!({ "networkPolicy": null })).await;
    wait_until("every network policy pruned", || async {
        network_policy_names(&client, &ns).await.is_empty()
    })
    .await;
    let status = wait_status(&client, &ns, "isolate", "Ready without resources", |s| {
        condition(s, "Ready") == Some(("True", "Reconciled"))
    })
    .await;
    assert!(status.resources.iter().all(|r| r.kind != "NetworkPolicy"));
}

#[tokio::test]
async fn dns_and_api_server_egress_follow_the_clusters_own_objects() {
    let (client, ns) = setup("netfacts").await;
    create_web(&client, &ns).await;
    let _operator = Operator::start(&ns).await;
    let spec = "    defaultDeny: [Egress]\n    allowAPIServer: true\n";
    create_policy(&client, &ns, &policy("facts", spec)).await;
    // A bare API server publishes neither a DNS Service nor endpoints for itself (loopback).
    let status = wait_status(&client, &ns, "facts", "Ready", |s| {
        condition(s, "Ready") == Some(("True", "Reconciled"))
    })
    .await;
    let dns = check(&status, "network.dns-egress");
    assert!(dns.message.contains("could not be read"), "{}", dns.message);
    assert_eq!(
        check(&status, "network.api-server-egress").result,
        CheckResult::Fail
    );
    let fallback = network_policy(&client, &ns, "facts-allow-dns")
        .await
        .expect("dns");
    assert_eq!(fallback["spec"]["egress"][0]["ports"][0]["port"], 53);
    assert!(
        network_policy(&client, &ns, "facts-allow-apiserver")
            .await
            .is_none()
    );

    let services: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let dns_service: Service = yaml(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: kube-dns\n  labels: {k8s-app: kube-dns}\n\
         spec:\n  selector: {k8s-app: kube-dns}\n  ports:\n\
         \x20 - {name: dns, port: 53, protocol: UDP, targetPort: 5353}\n\
         \x20 - {name: dns-tcp, port: 53, protocol: TCP, targetPort: dns-tcp}\n",
    );
    services
        .create(&PostParams::default(), &dns_service)
        .await
        .expect("create DNS service");
    // Each fact is awaited before the next changes, so that each watch is shown to work alone.
    wait_for(
        "DNS egress on the Service's target ports",
        || network_policy(&client, &ns, "facts-allow-dns"),
        |np: &Value| {
            (np["spec"]["egress"][0]["ports"]
                == json!([{ "port": 5353, "protocol": "UDP" }, { "port": "dns-tcp", "protocol": "TCP" }]))
            .then_some(())
        },
    )
    .await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = |address: &str| -> EndpointSlice {
        yaml(&format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: kubernetes\n\
             \x20 labels: {{kubernetes.io/service-name: kubernetes}}\naddressType: IPv4\n\
             endpoints:\n  - addresses: [{address}]\nports:\n  - {{name: https, port: 6443, protocol: TCP}}\n"
        ))
    };
    slices
        .create(&PostParams::default(), &slice("192.0.2.10"))
        .await
        .expect("create EndpointSlice");

    let api_rule = |cidr: &'static str| {
        move |np: &Value| {
            (np["spec"]["egress"][0]["to"] == json!([{ "ipBlock": { "cidr": cidr } }])
                && np["spec"]["egress"][0]["ports"] == json!([{ "port": 6443, "protocol": "TCP" }]))
            .then_some(())
        }
    };
    wait_for(
        "API server egress",
        || network_policy(&client, &ns, "facts-allow-apiserver"),
        api_rule("192.0.2.10/32"),
    )
    .await;
    // The API server moves: the rule follows.
    let mut moved = slices.get("kubernetes").await.expect("slice");
    moved.endpoints = Some(vec![yaml("addresses: [192.0.2.20]")]);
    slices
        .replace("kubernetes", &PostParams::default(), &moved)
        .await
        .expect("move API server");
    wait_for(
        "API server egress to the new address",
        || network_policy(&client, &ns, "facts-allow-apiserver"),
        api_rule("192.0.2.20/32"),
    )
    .await;
    let status = wait_status(&client, &ns, "facts", "API server check passes", |s| {
        s.compliance.as_ref().is_some_and(|c| {
            c.checks
                .iter()
                .any(|c| c.id == "network.api-server-egress" && c.result == CheckResult::Pass)
        })
    })
    .await;
    assert!(
        !check(&status, "network.dns-egress")
            .message
            .contains("could not be read")
    );
    let _ = services.delete("kube-dns", &DeleteParams::default()).await;
    let _ = slices.delete("kubernetes", &DeleteParams::default()).await;
}

#[tokio::test]
async fn a_foreign_network_policy_holding_a_generated_name_is_left_alone() {
    let (client, ns) = setup("netforeign").await;
    create_web(&client, &ns).await;
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let foreign: NetworkPolicy = yaml(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: mine-default-deny\n\
         spec:\n  podSelector: {}\n  policyTypes: [Ingress]\n  ingress: [{}]\n",
    );
    let created = api
        .create(&PostParams::default(), &foreign)
        .await
        .expect("create foreign");
    let _operator = Operator::start(&ns).await;
    create_policy(
        &client,
        &ns,
        &policy("mine", "    defaultDeny: [Ingress]\n"),
    )
    .await;
    let status = wait_status(&client, &ns, "mine", "reported", |s| s.compliance.is_some()).await;
    let accepted = check(&status, "network.policies-accepted");
    assert_eq!(accepted.result, CheckResult::Fail);
    assert!(
        accepted.message.contains("name taken"),
        "{}",
        accepted.message
    );
    // The foreign object admits everything to the selected pods: more than the spec says.
    let within = check(&status, "network.rules-within-spec");
    assert_eq!(within.result, CheckResult::Fail);
    assert_eq!(within.objects, ["NetworkPolicy/mine-default-deny"]);
    let now = api.get("mine-default-deny").await.expect("foreign");
    assert_eq!(now.resource_version(), created.resource_version());
    assert!(now.labels().is_empty());
}

#[tokio::test]
async fn audit_mode_and_invalid_sections_write_no_network_policy() {
    let (client, ns) = setup("netquiet").await;
    create_web(&client, &ns).await;
    let _operator = Operator::start(&ns).await;
    let mut audit = policy("audit", "    defaultDeny: [Ingress]\n");
    audit.spec.mode = goreal_operator::crd::Mode::Audit;
    create_policy(&client, &ns, &audit).await;
    let status = wait_status(&client, &ns, "audit", "reported", |s| {
        s.compliance.is_some()
    })
    .await;
    let deny = check(&status, "network.default-deny");
    assert_eq!(deny.result, CheckResult::Fail);
    assert!(
        deny.message
            .contains("Deployment/web is not isolated for Ingress"),
        "{}",
        deny.message
    );

    // The API server cannot see that appliesTo contradicts the selector; the operator refuses.
    let invalid = policy(
        "contradiction",
        "    ingress:\n    - name: web\n      appliesTo: {matchLabels: {app: other}}\n      allowAll: true\n",
    );
    create_policy(&client, &ns, &invalid).await;
    let status = wait_status(&client, &ns, "contradiction", "InvalidSpec", |s| {
        condition(s, "Ready") == Some(("False", "InvalidSpec"))
    })
    .await;
    let message = condition_message(&status, "Ready");
    assert!(
        message.contains("contradicts the policy's selector"),
        "{message}"
    );
    assert!(network_policy_names(&client, &ns).await.is_empty());
}
