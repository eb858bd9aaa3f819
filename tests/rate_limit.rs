//! Rate limiting against a real kube-apiserver: the schema refuses what could inject into the
//! generated nginx files; the nginx ConfigMap is applied, owned, left alone once current and
//! pruned when its output or the section goes; ingress-nginx annotations are applied to the
//! selected Ingresses and released with the policy.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{
    Operator, check, condition, create_policy, setup, wait_for, wait_status, wait_until, yaml,
};
use goreal_operator::crd::{CheckResult, GoREALSecurityPolicy};
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const GUIDE: &str = "    zones:
      - {name: api, path: /api/, rate: 10r/s, burst: 20, nodelay: true}
      - {name: login, path: /api/auth/login, rate: 1r/s, burst: 3, nodelay: true}
      - {name: general, path: /, rate: 30r/s, burst: 50, nodelay: true}
";

fn policy(name: &str, rate_limiting: &str) -> GoREALSecurityPolicy {
    yaml(&format!(
        "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\nmetadata:\n  name: {name}\n\
         spec:\n  rateLimiting:\n{rate_limiting}"
    ))
}

async fn config_map(client: &Client, namespace: &str, name: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .expect("read ConfigMap")
}

#[tokio::test]
async fn the_api_server_refuses_rate_limits_that_could_inject_into_nginx() {
    let (client, ns) = setup("rl-schema").await;
    let zone = "zones: [{name: a, path: /a, rate: 1r/s}]";
    let cases = [
        (
            "zones: [{name: a, path: /a, rate: 10r/h}]".to_string(),
            "spec.rateLimiting.zones[0].rate",
        ),
        (
            "zones: [{name: a, path: /a, rate: 0r/s}]".into(),
            "spec.rateLimiting.zones[0].rate",
        ),
        (
            "zones: [{name: a, path: '/a;}', rate: 1r/s}]".into(),
            "spec.rateLimiting.zones[0].path",
        ),
        (
            "zones: [{name: a-b, path: /a, rate: 1r/s}]".into(),
            "spec.rateLimiting.zones[0].name",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s, burst: -1}]".into(),
            "spec.rateLimiting.zones[0].burst",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s, key: '$a;'}]".into(),
            "spec.rateLimiting.zones[0].key",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}, {name: a, path: /b, rate: 1r/s}]".into(),
            "zone names must be unique",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}, {name: b, path: /a, rate: 1r/s}]".into(),
            "zone paths must be unique",
        ),
        (
            format!("{zone}, statusCode: 200"),
            "spec.rateLimiting.statusCode",
        ),
        (
            format!("{zone}, securityHeaders: {{hsts: \"max-age=1\\r\\nSet-Cookie: x=1\"}}"),
            "spec.rateLimiting.securityHeaders.hsts",
        ),
        (
            format!("{zone}, securityHeaders: {{frameOptions: '$host'}}"),
            "spec.rateLimiting.securityHeaders.frameOptions",
        ),
        (
            format!("{zone}, tls: {{protocols: [SSLv3]}}"),
            "spec.rateLimiting.tls.protocols[0]",
        ),
        (
            format!("{zone}, realIP: {{trustedProxies: [0.0.0.0/0]}}"),
            "lets any client choose its own address",
        ),
        (
            format!("{zone}, realIP: {{trustedProxies: ['::/0']}}"),
            "lets any client choose its own address",
        ),
        (
            format!("{zone}, realIP: {{trustedProxies: [proxy.local]}}"),
            "must be a CIDR",
        ),
        (
            format!("{zone}, nginx: {{proxyPass: 'http://api;'}}"),
            "spec.rateLimiting.nginx.proxyPass",
        ),
        (
            format!("{zone}, outputs: [Nginx, Nginx]"),
            "outputs must be unique",
        ),
    ];
    let cases: Vec<(String, &str)> = cases
        .into_iter()
        .map(|(spec, expected)| (format!("rateLimiting: {{{spec}}}"), expected))
        .collect();
    common::assert_schema_refuses(&client, &ns, &cases).await;
}

#[tokio::test]
async fn the_nginx_config_map_is_applied_owned_kept_and_pruned() {
    let (client, ns) = setup("rl-nginx").await;
    let operator = Operator::start(&ns).await;
    create_policy(&client, &ns, &policy("edge", GUIDE)).await;
    let status = wait_status(&client, &ns, "edge", "RateLimits written", |s| {
        condition(s, "RateLimits") == Some(("True", "Written"))
    })
    .await;
    for id in [
        "ratelimit.paths-limited",
        "ratelimit.login-stricter-than-api",
        "ratelimit.security-headers",
        "ratelimit.tls-floor",
    ] {
        assert_eq!(check(&status, id).result, CheckResult::Pass, "{id}");
    }
    let written = config_map(&client, &ns, "edge-nginx")
        .await
        .expect("ConfigMap");
    let uid = Api::<GoREALSecurityPolicy>::namespaced(client.clone(), &ns)
        .get("edge")
        .await
        .unwrap()
        .uid();
    let owner = &written.owner_references()[0];
    assert_eq!(owner.kind, "GoREALSecurityPolicy");
    assert_eq!(Some(owner.uid.clone()), uid);
    assert_eq!(
        written.labels()["security.goreal.io/component"],
        "rate-limits"
    );
    let data = written.data.clone().unwrap_or_default();
    assert!(data["goreal-http.conf"].contains(&format!(
        "limit_req_zone $binary_remote_addr zone=goreal.{ns}.edge.login:10m rate=1r/s;"
    )));
    assert!(data["goreal-server.conf"].contains("location /api/auth/login {"));
    assert!(
        status
            .resources
            .iter()
            .any(|r| r.kind == "ConfigMap" && r.name == "edge-nginx")
    );

    // Converged: another reconcile writes nothing.
    operator.reconcile_all_and_wait().await;
    operator.take_writes();
    operator.reconcile_all_and_wait().await;
    assert_eq!(operator.take_writes(), Vec::<String>::new());
    let failed = |text: &str| {
        let series = format!(
            "goreal_policy_check_failed{{check=\"ratelimit.paths-limited\",namespace=\"{ns}\",policy=\"edge\"}}"
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&series)?.trim().parse::<i64>().ok())
    };
    assert_eq!(
        failed(&operator.metrics.encode()),
        Some(0),
        "the check's metric agrees with status"
    );

    // A changed rate reaches the file.
    let policies: Api<GoREALSecurityPolicy> = Api::namespaced(client.clone(), &ns);
    let patch = |spec: serde_json::Value| {
        let policies = policies.clone();
        async move {
            policies
                .patch(
                    "edge",
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "spec": spec })),
                )
                .await
                .expect("patch policy");
        }
    };
    patch(json!({"rateLimiting": {"zones": [{"name": "api", "path": "/api/", "rate": "5r/s"}]}}))
        .await;
    wait_for(
        "the new rate in the ConfigMap",
        || async { config_map(&client, &ns, "edge-nginx").await },
        |cm: &ConfigMap| {
            let http = cm.data.as_ref()?.get("goreal-http.conf")?;
            (http.contains("rate=5r/s;") && !http.contains("login")).then_some(())
        },
    )
    .await;

    // The nginx output switched off, then the whole section removed: the ConfigMap goes, and
    // the RateLimits condition with the section.
    patch(json!({"rateLimiting": {"outputs": ["IngressNginx"]}})).await;
    wait_for(
        "the ConfigMap pruned",
        || async { Some(config_map(&client, &ns, "edge-nginx").await) },
        |cm: &Option<ConfigMap>| cm.is_none().then_some(()),
    )
    .await;
    let status = wait_status(&client, &ns, "edge", "no output in place", |s| {
        condition(s, "RateLimits").is_some_and(|(status, _)| status == "False")
    })
    .await;
    assert_eq!(
        check(&status, "ratelimit.paths-limited").result,
        CheckResult::Fail
    );
    assert_eq!(failed(&operator.metrics.encode()), Some(1));
    patch(json!({"rateLimiting": null})).await;
    let status = wait_status(&client, &ns, "edge", "section gone", |s| {
        condition(s, "RateLimits").is_none()
    })
    .await;
    assert!(
        status
            .compliance
            .unwrap()
            .checks
            .iter()
            .all(|c| !c.id.starts_with("ratelimit."))
    );
}

#[tokio::test]
async fn a_foreign_config_map_holding_the_nginx_name_is_left_alone() {
    let (client, ns) = setup("rl-foreign").await;
    let foreign: ConfigMap = yaml("metadata: {name: edge-nginx}\ndata: {nginx.conf: mine}\n");
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let _operator = Operator::start(&ns).await;
    create_policy(&client, &ns, &policy("edge", GUIDE)).await;
    let status = wait_status(&client, &ns, "edge", "the name reported taken", |s| {
        condition(s, "Ready").is_some_and(|(status, _)| status == "False")
    })
    .await;
    assert_eq!(
        check(&status, "ratelimit.paths-limited").result,
        CheckResult::Fail
    );
    let left = config_map(&client, &ns, "edge-nginx").await.unwrap();
    assert_eq!(left.data.unwrap()["nginx.conf"], "mine");
}

async fn ingress_annotations(
    client: &Client,
    namespace: &str,
    name: &str,
) -> BTreeMap<String, String> {
    Api::<Ingress>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .expect("read Ingress")
        .metadata
        .annotations
        .unwrap_or_default()
}

#[tokio::test]
async fn ingress_annotations_are_applied_to_matched_ingresses_and_released_with_the_policy() {
    let (client, ns) = setup("rl-ingress").await;
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    for (name, edge) in [("web", "public"), ("admin", "private")] {
        let ingress: Ingress = yaml(&format!(
            "metadata: {{name: {name}, labels: {{edge: {edge}}}, annotations: {{team: web}}}}\n\
             spec:\n  rules:\n    - http:\n        paths:\n          - path: /api/\n            pathType: Prefix\n            \
             backend: {{service: {{name: web, port: {{number: 80}}}}}}\n"
        ));
        ingresses
            .create(&PostParams::default(), &ingress)
            .await
            .unwrap();
    }
    let operator = Operator::start(&ns).await;
    let spec = format!("{GUIDE}    ingressSelector: {{matchLabels: {{edge: public}}}}\n");
    create_policy(&client, &ns, &policy("edge", &spec)).await;
    let status = wait_status(&client, &ns, "edge", "RateLimits written", |s| {
        condition(s, "RateLimits") == Some(("True", "Written"))
    })
    .await;
    assert!(
        status.conditions.iter().any(|c| c.type_ == "RateLimits"
            && c.message
                .contains("ingress-nginx annotations on Ingress/web")
            && c.message.contains("limit status 429")),
        "{:?}",
        status.conditions
    );
    let web = ingress_annotations(&client, &ns, "web").await;
    assert_eq!(web["nginx.ingress.kubernetes.io/limit-rps"], "10");
    assert_eq!(
        web["nginx.ingress.kubernetes.io/limit-burst-multiplier"],
        "2"
    );
    assert_eq!(web["security.goreal.io/rate-limited-by"], "edge");
    assert_eq!(web["team"], "web", "the owner's annotations stay");
    assert!(web.keys().all(|k| !k.contains("snippet")));
    let admin = ingress_annotations(&client, &ns, "admin").await;
    assert!(
        admin
            .keys()
            .all(|k| !k.starts_with("nginx.ingress.kubernetes.io/"))
    );

    // Converged: nothing more is written.
    operator.reconcile_all_and_wait().await;
    operator.take_writes();
    operator.reconcile_all_and_wait().await;
    assert_eq!(operator.take_writes(), Vec::<String>::new());

    // The section removed: the annotations go, the Ingress's own stay.
    let policies: Api<GoREALSecurityPolicy> = Api::namespaced(client.clone(), &ns);
    let merge = |spec: serde_json::Value| Patch::Merge(json!({ "spec": spec }));
    policies
        .patch(
            "edge",
            &PatchParams::default(),
            &merge(json!({"rateLimiting": null})),
        )
        .await
        .unwrap();
    wait_for(
        "the annotations released with the section",
        || async { Some(ingress_annotations(&client, &ns, "web").await) },
        |annotations: &BTreeMap<String, String>| {
            (!annotations.contains_key("nginx.ingress.kubernetes.io/limit-rps")
                && annotations.get("team").map(String::as_str) == Some("web"))
            .then_some(())
        },
    )
    .await;
    let section = json!({"rateLimiting": {
        "zones": [{"name": "api", "path": "/api/", "rate": "10r/s", "burst": 20}],
        "ingressSelector": {"matchLabels": {"edge": "public"}},
    }});
    policies
        .patch("edge", &PatchParams::default(), &merge(section))
        .await
        .unwrap();
    wait_for(
        "the annotations back",
        || async { Some(ingress_annotations(&client, &ns, "web").await) },
        |annotations: &BTreeMap<String, String>| {
            annotations
                .contains_key("nginx.ingress.kubernetes.io/limit-rps")
                .then_some(())
        },
    )
    .await;

    // Deleting the policy releases the annotations; the Ingress's own stay.
    Api::<GoREALSecurityPolicy>::namespaced(client.clone(), &ns)
        .delete("edge", &Default::default())
        .await
        .unwrap();
    wait_for(
        "the annotations released",
        || async { Some(ingress_annotations(&client, &ns, "web").await) },
        |annotations: &BTreeMap<String, String>| {
            (!annotations.contains_key("nginx.ingress.kubernetes.io/limit-rps")
                && !annotations.contains_key("security.goreal.io/rate-limited-by")
                && annotations.get("team").map(String::as_str) == Some("web"))
            .then_some(())
        },
    )
    .await;
}

fn traffic_policies(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let resource = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "gateway.envoyproxy.io",
        "v1alpha1",
        "BackendTrafficPolicy",
    ));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

#[tokio::test]
async fn the_backend_traffic_policy_waits_for_its_crd_and_is_accepted_by_its_schema() {
    let (client, ns) = setup("rl-gateway").await;
    let operator = Operator::start(&ns).await;
    let spec = format!(
        "{GUIDE}    ingressSelector: {{matchLabels: {{edge: public}}}}\n    outputs: [GatewayAPI]\n"
    );
    create_policy(&client, &ns, &policy("edge", &spec)).await;
    let status = wait_status(&client, &ns, "edge", "the output skipped", |s| {
        s.conditions.iter().any(|c| {
            c.type_ == "RateLimits"
                && c.message
                    .contains("BackendTrafficPolicy CRD is not installed")
        })
    })
    .await;
    assert_eq!(
        check(&status, "ratelimit.paths-limited").result,
        CheckResult::Fail
    );

    // Both CRDs appear (their published schemas), then a matching HTTPRoute.
    common::install_crd_fixture("gateway/gateway.networking.k8s.io_httproutes.yaml");
    common::install_crd_fixture("gateway/gateway.envoyproxy.io_backendtrafficpolicies.yaml");
    let route_resource = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ));
    let routes: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &route_resource);
    let route: DynamicObject = yaml(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: web, namespace: {ns}, labels: {{edge: public}}}}\n\
         spec:\n  parentRefs: [{{name: eg}}]\n  rules:\n    - backendRefs: [{{name: web, port: 80}}]\n"
    ));
    routes.create(&PostParams::default(), &route).await.unwrap();
    let written = wait_for(
        "a BackendTrafficPolicy",
        || async {
            traffic_policies(&client, &ns)
                .get_opt("edge-rate-limits")
                .await
                .ok()
                .flatten()
        },
        |object: &DynamicObject| Some(object.clone()),
    )
    .await;
    assert_eq!(written.data["spec"]["targetRefs"][0]["name"], "web");
    assert_eq!(written.owner_references()[0].kind, "GoREALSecurityPolicy");
    let rules = written.data["spec"]["rateLimit"]["global"]["rules"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), 6);
    let status = wait_status(&client, &ns, "edge", "the policy written", |s| {
        condition(s, "RateLimits") == Some(("True", "Written"))
    })
    .await;
    assert_eq!(
        check(&status, "ratelimit.paths-limited").result,
        CheckResult::Pass
    );
    // What the API server stored (its schema defaults filled in) counts as current.
    wait_until("a reconcile without writes", || async {
        operator.take_writes();
        operator.reconcile_all_and_wait().await;
        operator.take_writes().is_empty()
    })
    .await;

    // The route no longer selected: the policy object is pruned.
    routes
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"edge": "private"}}})),
        )
        .await
        .unwrap();
    wait_for(
        "the BackendTrafficPolicy pruned",
        || async {
            Some(
                traffic_policies(&client, &ns)
                    .get_opt("edge-rate-limits")
                    .await
                    .ok()
                    .flatten(),
            )
        },
        |found: &Option<DynamicObject>| found.is_none().then_some(()),
    )
    .await;
}
