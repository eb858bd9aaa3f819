//! Unit tests of rate limit validation, the nginx include files and the rate limit checks.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::compliance::{RATE_LIMIT_LOGIN_STRICTER, RATE_LIMIT_PATHS, SECURITY_HEADERS, TLS_FLOOR};
use crate::crd::{CheckResult, CheckStatus, GoREALSecurityPolicy};
use crate::model::{ValidationError, validate};
use crate::policy::{GeneratedObject, Rejection, plan as plan_all, report};

/// The guide's three zones.
const GUIDE_ZONES: &str = "zones:
  - {name: api, path: /api/, rate: 10r/s, burst: 20, nodelay: true}
  - {name: login, path: /api/auth/login, rate: 1r/s, burst: 3, nodelay: true}
  - {name: general, path: /, rate: 30r/s, burst: 50, nodelay: true}
";

fn raw(mode: &str, extra_spec: &str, rate_limiting: &str) -> GoREALSecurityPolicy {
    let body: String = rate_limiting
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let yaml = format!(
        "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\n\
         metadata: {{name: p, namespace: shop, uid: u-1}}\n\
         spec:\n  mode: {mode}\n{extra_spec}  rateLimiting:\n{body}"
    );
    serde_saphyr::from_str(&yaml).expect("policy YAML")
}

fn policy(rate_limiting: &str) -> ValidatedPolicy {
    validate(&raw("Enforce", "", rate_limiting)).expect("valid policy")
}

fn errors(rate_limiting: &str) -> Vec<ValidationError> {
    validate(&raw("Enforce", "", rate_limiting)).expect_err("invalid policy")
}

fn files(policy: &ValidatedPolicy) -> BTreeMap<&'static str, String> {
    let settings = policy.rate_limit.as_ref().expect("rate limiting");
    nginx_files(policy, settings).into_iter().collect()
}

#[test]
fn the_guides_zones_render_to_the_golden_files() {
    let rendered = files(&policy(GUIDE_ZONES));
    let dir = format!("{}/tests/fixtures/nginx/golden", env!("CARGO_MANIFEST_DIR"));
    for name in [MAIN_FILE, HTTP_FILE, SERVER_FILE] {
        let path = format!("{dir}/{name}");
        // UPDATE_GOLDEN=1 rewrites the files; review the diff before committing it.
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &rendered[name]).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            rendered[name], golden,
            "{name} differs from its golden file"
        );
    }
}

#[test]
fn rendering_is_deterministic_and_names_zones_by_namespace_policy_and_zone() {
    let a = files(&policy(GUIDE_ZONES));
    let b = files(&policy(GUIDE_ZONES));
    assert_eq!(a, b);
    assert!(a[HTTP_FILE].contains("zone=goreal.shop.p.api:10m rate=10r/s;"));
    // Another policy's zone of the same name never shares the nginx zone.
    let mut other = policy(GUIDE_ZONES);
    other.name = "q".into();
    assert!(files(&other)[HTTP_FILE].contains("zone=goreal.shop.q.api:10m"));
}

#[test]
fn zero_burst_renders_a_limit_without_burst_or_nodelay() {
    let server = &files(&policy("zones: [{name: api, path: /api/, rate: 60r/m}]"))[SERVER_FILE];
    assert!(
        server.contains("    limit_req zone=goreal.shop.p.api;\n"),
        "{server}"
    );
    assert!(server.contains("    limit_req_status 429;\n"));
    assert!(
        !server.contains("proxy_pass"),
        "no upstream configured: {server}"
    );
}

#[test]
fn every_limiting_directive_gets_the_configured_status() {
    let rendered = files(&policy(&format!("{GUIDE_ZONES}statusCode: 503\n")));
    assert!(rendered[HTTP_FILE].contains("limit_req_status 503;\n"));
    assert_eq!(
        rendered[SERVER_FILE]
            .matches("limit_req_status 503;")
            .count(),
        3
    );
}

#[test]
fn headers_are_sent_always_with_the_guides_defaults_and_empty_ones_dropped() {
    let server = &files(&policy(GUIDE_ZONES))[SERVER_FILE];
    for line in [
        "add_header Strict-Transport-Security \"max-age=63072000\" always;",
        "add_header X-Frame-Options \"DENY\" always;",
        "add_header X-Content-Type-Options \"nosniff\" always;",
        "add_header Referrer-Policy \"strict-origin-when-cross-origin\" always;",
        "ssl_protocols TLSv1.2 TLSv1.3;",
    ] {
        assert!(server.contains(line), "{line} missing in\n{server}");
    }
    assert!(
        !server.contains("Content-Security-Policy"),
        "no CSP by default"
    );
    let custom = policy(&format!(
        "{GUIDE_ZONES}securityHeaders: {{frameOptions: '', contentSecurityPolicy: \"default-src 'self'\"}}\n"
    ));
    let server = &files(&custom)[SERVER_FILE];
    assert!(!server.contains("X-Frame-Options"));
    assert!(server.contains("add_header Content-Security-Policy \"default-src 'self'\" always;"));
}

#[test]
fn trusted_proxies_and_temp_paths_go_to_the_http_block() {
    let rendered = files(&policy(&format!(
        "{GUIDE_ZONES}realIP: {{trustedProxies: [10.0.0.0/8, 'fd00::/8'], header: X-Real-IP}}\n\
         nginx: {{tempPath: /var/run/nginx}}\n"
    )));
    let http = &rendered[HTTP_FILE];
    for line in [
        "set_real_ip_from 10.0.0.0/8;",
        "set_real_ip_from fd00::/8;",
        "real_ip_header X-Real-IP;",
        "client_body_temp_path /var/run/nginx/nginx-client-body;",
    ] {
        assert!(http.contains(line), "{line} missing in\n{http}");
    }
    assert!(rendered[MAIN_FILE].contains("pid /var/run/nginx/nginx.pid;"));
}

fn fields(errors: &[ValidationError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn each_invalid_setting_is_refused_with_its_field() {
    for (spec, field) in [
        (
            "zones: [{name: Api, path: /a, rate: 1r/s}]",
            "spec.rateLimiting.zones[0].name",
        ),
        (
            "zones: [{name: 'a;b', path: /a, rate: 1r/s}]",
            "spec.rateLimiting.zones[0].name",
        ),
        (
            "zones: [{name: a, path: a, rate: 1r/s}]",
            "spec.rateLimiting.zones[0].path",
        ),
        (
            "zones: [{name: a, path: '/a b', rate: 1r/s}]",
            "spec.rateLimiting.zones[0].path",
        ),
        (
            "zones: [{name: a, path: '/a;}', rate: 1r/s}]",
            "spec.rateLimiting.zones[0].path",
        ),
        (
            "zones: [{name: a, path: /a, rate: 0r/s}]",
            "spec.rateLimiting.zones[0].rate",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1.5r/s}]",
            "spec.rateLimiting.zones[0].rate",
        ),
        (
            "zones: [{name: a, path: /a, rate: 10r/h}]",
            "spec.rateLimiting.zones[0].rate",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s, burst: 100001}]",
            "spec.rateLimiting.zones[0].burst",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s, key: 'x'}]",
            "spec.rateLimiting.zones[0].key",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s, key: '$a $b'}]",
            "spec.rateLimiting.zones[0].key",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s, zoneSize: 10g}]",
            "spec.rateLimiting.zones[0].zoneSize",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s, zoneSize: 16k}]",
            "spec.rateLimiting.zones[0].zoneSize",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s, zoneSize: 2000m}]",
            "spec.rateLimiting.zones[0].zoneSize",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s, zoneSize: +1m}]",
            "spec.rateLimiting.zones[0].zoneSize",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s, zoneSize: \"1\u{00e9}\"}]",
            "spec.rateLimiting.zones[0].zoneSize",
        ),
        (
            "zones: [{name: a, path: /a, rate: +5r/s}]",
            "spec.rateLimiting.zones[0].rate",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s, key: $nosuchvar}]",
            "spec.rateLimiting.zones[0].key",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s, key: $http_}]",
            "spec.rateLimiting.zones[0].key",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}]\nsecurityHeaders: {hsts: \"{long}\"}",
            "spec.rateLimiting.securityHeaders.hsts",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}, {name: a, path: /b, rate: 1r/s}]",
            "spec.rateLimiting.zones[1].name",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}, {name: b, path: /a, rate: 1r/s}]",
            "spec.rateLimiting.zones[1].path",
        ),
        ("zones: []", "spec.rateLimiting.zones"),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}]\nstatusCode: 302",
            "spec.rateLimiting.statusCode",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}]\nsecurityHeaders: {hsts: \"max-age=1\\r\\nSet-Cookie: x\"}",
            "spec.rateLimiting.securityHeaders.hsts",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}]\nsecurityHeaders: {contentSecurityPolicy: 'a \"b'}",
            "spec.rateLimiting.securityHeaders.contentSecurityPolicy",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}]\nsecurityHeaders: {referrerPolicy: '$host'}",
            "spec.rateLimiting.securityHeaders.referrerPolicy",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}]\ntls: {ciphers: 'A B'}",
            "spec.rateLimiting.tls.ciphers",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}]\nrealIP: {trustedProxies: [0.0.0.0/0]}",
            "spec.rateLimiting.realIP.trustedProxies[0]",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}]\nrealIP: {trustedProxies: ['::/0']}",
            "spec.rateLimiting.realIP.trustedProxies[0]",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}]\nrealIP: {trustedProxies: [10.0.0.300/8]}",
            "spec.rateLimiting.realIP.trustedProxies[0]",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}]\nrealIP: {trustedProxies: []}",
            "spec.rateLimiting.realIP.trustedProxies",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}]\nnginx: {tempPath: /tmp/../etc}",
            "spec.rateLimiting.nginx.tempPath",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}]\nnginx: {proxyPass: 'http://a;b'}",
            "spec.rateLimiting.nginx.proxyPass",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}]\noutputs: [Nginx, Nginx]",
            "spec.rateLimiting.outputs",
        ),
        (
            "zones: [{name: a, path: /a, rate: 1r/s}]\ningressSelector: {matchLabels: {'a b': c}}",
            "spec.rateLimiting.ingressSelector",
        ),
    ] {
        let spec = spec.replace("{long}", &"a".repeat(1025));
        let found = errors(&spec);
        assert!(
            found.iter().any(|e| e.field.starts_with(field)),
            "{spec}: expected an error on {field}, got {:?}",
            fields(&found)
        );
    }
}

#[test]
fn keys_nginx_knows_are_accepted() {
    for key in [
        "$binary_remote_addr",
        "$remote_addr",
        "$http_x_api_key",
        "$cookie_session",
        "$arg_token",
    ] {
        let spec = format!("zones: [{{name: a, path: /a, rate: 1r/s, key: '{key}'}}]");
        assert!(validate(&raw("Enforce", "", &spec)).is_ok(), "{key}");
    }
}

#[test]
fn a_header_value_with_a_line_break_is_refused_without_quoting_it() {
    let found = errors(
        "zones: [{name: a, path: /a, rate: 1r/s}]\nsecurityHeaders: {hsts: \"x\\r\\nSet-Cookie: stolen\"}",
    );
    let text = crate::model::describe(&found);
    assert!(text.contains("header injection"), "{text}");
    assert!(!text.contains("stolen"), "the value is quoted: {text}");
}

#[test]
fn a_temp_path_outside_every_writable_path_is_refused_with_a_read_only_root() {
    let pod = "  podSecurity: {writablePaths: [{path: /tmp, sizeLimit: 10Mi}]}\n";
    let spec = "zones: [{name: a, path: /a, rate: 1r/s}]\nnginx: {tempPath: /var/cache/nginx}";
    let found = validate(&raw("Enforce", pod, spec)).expect_err("refused");
    assert_eq!(fields(&found), ["spec.rateLimiting.nginx.tempPath"]);
    let under = "zones: [{name: a, path: /a, rate: 1r/s}]\nnginx: {tempPath: /tmp/nginx}";
    assert!(validate(&raw("Enforce", pod, under)).is_ok());
    // The default /tmp is the default writable path.
    assert!(
        validate(&raw(
            "Enforce",
            pod,
            "zones: [{name: a, path: /a, rate: 1r/s}]"
        ))
        .is_ok()
    );
}

fn check<'a>(status: &'a crate::crd::ComplianceStatus, id: &str) -> &'a CheckStatus {
    status
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id}"))
}

fn checks(policy: &ValidatedPolicy, in_effect: bool) -> crate::crd::ComplianceStatus {
    let desired = plan_all(policy, &Observed::default());
    report(policy, &desired, &|_| in_effect, &Refusals::default()).0
}

#[test]
fn the_guides_settings_pass_every_check_once_the_config_map_is_in_place() {
    let p = policy(GUIDE_ZONES);
    let status = checks(&p, true);
    for id in [
        RATE_LIMIT_PATHS,
        RATE_LIMIT_LOGIN_STRICTER,
        SECURITY_HEADERS,
        TLS_FLOOR,
    ] {
        assert_eq!(check(&status, id).result, CheckResult::Pass, "{id}");
    }
    assert!(
        check(&status, RATE_LIMIT_PATHS)
            .message
            .contains("per proxy replica")
    );
    let unapplied = checks(&p, false);
    let paths = check(&unapplied, RATE_LIMIT_PATHS);
    assert_eq!(paths.result, CheckResult::Fail);
    assert_eq!(paths.objects.len(), 3, "one per zone: {:?}", paths.objects);
}

#[test]
fn a_login_zone_looser_than_the_api_zone_fails_and_without_both_the_check_skips() {
    let looser = policy(
        "zones:\n  - {name: api, path: /api/, rate: 10r/s, burst: 5}\n  - {name: login, path: /login, rate: 11r/s}",
    );
    assert_eq!(
        check(&checks(&looser, true), RATE_LIMIT_LOGIN_STRICTER).result,
        CheckResult::Fail
    );
    // 600 per minute is the same as 10 per second: not looser.
    let same = policy(
        "zones:\n  - {name: api, path: /api/, rate: 10r/s, burst: 5}\n  - {name: login, path: /login, rate: 600r/m, burst: 5}",
    );
    assert_eq!(
        check(&checks(&same, true), RATE_LIMIT_LOGIN_STRICTER).result,
        CheckResult::Pass
    );
    let alone = policy("zones: [{name: api, path: /api/, rate: 10r/s}]");
    assert_eq!(
        check(&checks(&alone, true), RATE_LIMIT_LOGIN_STRICTER).result,
        CheckResult::Skip
    );
}

#[test]
fn dropped_headers_and_old_tls_protocols_fail_their_checks() {
    let p = policy(&format!(
        "{GUIDE_ZONES}securityHeaders: {{hsts: ''}}\ntls: {{protocols: [TLSv1.1, TLSv1.2]}}\n"
    ));
    let status = checks(&p, true);
    let headers = check(&status, SECURITY_HEADERS);
    assert_eq!(headers.result, CheckResult::Fail);
    assert!(
        headers.objects[0].starts_with("header/Strict-Transport-Security"),
        "{:?}",
        headers.objects
    );
    let tls = check(&status, TLS_FLOOR);
    assert_eq!(tls.result, CheckResult::Fail);
    assert!(
        tls.objects[0].starts_with("tls/TLSv1.1"),
        "{:?}",
        tls.objects
    );
}

#[test]
fn audit_mode_skips_the_paths_check_and_writes_nothing_in_place() {
    let p = validate(&raw("Audit", "", GUIDE_ZONES)).expect("valid");
    let desired = plan_all(&p, &Observed::default());
    let status = report(&p, &desired, &|_| true, &Refusals::default()).0;
    assert_eq!(check(&status, RATE_LIMIT_PATHS).result, CheckResult::Skip);
    let state = desired.rate_limits_state(&p, &|_| true).expect("state");
    assert!(!state.in_place);
    assert!(state.message.starts_with("Audit mode writes nothing"));
}

#[test]
fn the_config_map_is_owned_current_when_live_matches_and_pruned_when_the_section_goes() {
    let p = policy(GUIDE_ZONES);
    let desired = plan_all(&p, &Observed::default());
    let object = desired
        .generated
        .iter()
        .find(|g| g.kind == "ConfigMap")
        .expect("nginx ConfigMap");
    assert_eq!(object.name, "p-nginx");
    assert_eq!(
        object.body["metadata"]["labels"]["security.goreal.io/component"],
        COMPONENT
    );
    assert_eq!(object.body["metadata"]["ownerReferences"][0]["uid"], "u-1");
    assert!(!object.up_to_date);

    let mut live = object.body.clone();
    live["metadata"]["uid"] = json!("cm-1");
    let world = Observed {
        generated_objects: vec![live.clone()],
        ..Observed::default()
    };
    let again = plan_all(&p, &world);
    assert!(again.generated.iter().all(|g| g.up_to_date));
    assert!(again.prune.is_empty());

    // Nginx output switched off: the ConfigMap goes, with its uid as the precondition.
    let off = policy(&format!("{GUIDE_ZONES}outputs: [IngressNginx]\n"));
    let pruned = plan_all(&off, &world).prune;
    assert_eq!(pruned.len(), 1);
    assert_eq!(pruned[0].object.name, "p-nginx");
    assert_eq!(pruned[0].uid.as_deref(), Some("cm-1"));
}

#[test]
fn a_rejected_config_map_fails_the_paths_check_naming_it() {
    let p = policy(GUIDE_ZONES);
    let desired = plan_all(&p, &Observed::default());
    let refusals = Refusals {
        rejections: vec![Rejection {
            object: "ConfigMap/p-nginx".into(),
            code: 422,
            reason: "Invalid".into(),
        }],
        ..Refusals::default()
    };
    let status = report(&p, &desired, &|o| o != "ConfigMap/p-nginx", &refusals).0;
    let paths = check(&status, RATE_LIMIT_PATHS);
    assert_eq!(paths.result, CheckResult::Fail);
    assert_eq!(paths.objects, ["zone/api", "zone/login", "zone/general"]);
    assert!(
        paths.message.contains("ConfigMap/p-nginx is not in place"),
        "{}",
        paths.message
    );
}

fn ingress(name: &str, labels: &[(&str, &str)], paths: &[&str]) -> crate::observed::IngressInfo {
    crate::observed::IngressInfo {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    }
}

fn with_ingresses(ingresses: Vec<crate::observed::IngressInfo>) -> Observed {
    Observed {
        ingresses,
        policies: ["p".to_string()].into(),
        ..Observed::default()
    }
}

const INGRESS_POLICY: &str = "zones:
  - {name: api, path: /api/, rate: 10r/s, burst: 20, nodelay: true}
  - {name: login, path: /api/auth/login, rate: 1r/s, burst: 3, nodelay: true}
  - {name: general, path: /, rate: 60r/m, burst: 50}
ingressSelector: {matchLabels: {edge: public}}
";

#[test]
fn matched_ingresses_get_their_zones_limits_as_ingress_nginx_annotations() {
    let p = policy(INGRESS_POLICY);
    let world = with_ingresses(vec![
        ingress("api", &[("edge", "public")], &["/api/v1"]),
        ingress("site", &[("edge", "public")], &["/", "/static"]),
        ingress("internal", &[("edge", "private")], &["/api/"]),
    ]);
    let plan = plan_all(&p, &world).rate_limit.expect("plan");
    let names: Vec<&str> = plan
        .ingress_patches
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, ["api", "site"], "only the selected Ingresses");
    let api = &plan.ingress_patches[0];
    assert_eq!(api.zone, "api");
    let annotations = &api.body["metadata"]["annotations"];
    assert_eq!(annotations["nginx.ingress.kubernetes.io/limit-rps"], "10");
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/limit-burst-multiplier"],
        "2"
    );
    assert_eq!(annotations["security.goreal.io/rate-limited-by"], "p");
    assert!(api.notes.is_empty(), "{:?}", api.notes);
    // Per-minute rates use limit-rpm; a burst that is no whole multiple is rounded down and
    // said, as is the nodelay ingress-nginx always applies.
    let site = &plan.ingress_patches[1];
    let annotations = &site.body["metadata"]["annotations"];
    assert_eq!(annotations["nginx.ingress.kubernetes.io/limit-rpm"], "60");
    assert!(
        annotations
            .get("nginx.ingress.kubernetes.io/limit-rps")
            .is_none()
    );
    assert!(
        site.notes.iter().any(|n| n.contains("always uses nodelay")),
        "{:?}",
        site.notes
    );
    // No snippet annotation, ever.
    for patch in &plan.ingress_patches {
        let annotations = patch.body["metadata"]["annotations"].as_object().unwrap();
        assert!(annotations.keys().all(|k| !k.contains("snippet")));
    }
    assert!(
        plan.ingress_not_applied
            .iter()
            .any(|n| n.contains("limit status 429"))
    );
}

#[test]
fn an_ingress_spanning_zones_gets_the_strictest_and_says_so() {
    let p = policy(INGRESS_POLICY);
    let world = with_ingresses(vec![ingress(
        "app",
        &[("edge", "public")],
        &["/api/auth/login", "/api/v1", "/"],
    )]);
    let plan = plan_all(&p, &world).rate_limit.expect("plan");
    let patch = &plan.ingress_patches[0];
    assert_eq!(patch.zone, "login");
    assert_eq!(patch.covers, ["api", "general", "login"]);
    assert_eq!(
        patch.body["metadata"]["annotations"]["nginx.ingress.kubernetes.io/limit-rps"],
        "1"
    );
    assert_eq!(
        patch.body["metadata"]["annotations"]["nginx.ingress.kubernetes.io/limit-burst-multiplier"],
        "3"
    );
    assert!(
        patch.notes[0].contains("zone login's limit"),
        "{:?}",
        patch.notes
    );
}

#[test]
fn ingress_annotations_are_current_released_when_deselected_and_kept_from_other_policies() {
    let p = policy(INGRESS_POLICY);
    let first = plan_all(
        &p,
        &with_ingresses(vec![ingress("api", &[("edge", "public")], &["/api/"])]),
    )
    .rate_limit
    .expect("plan");
    let mut live = ingress("api", &[("edge", "public")], &["/api/"]);
    live.annotations = first.ingress_patches[0].body["metadata"]["annotations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let again = plan_all(&p, &with_ingresses(vec![live.clone()]))
        .rate_limit
        .unwrap();
    assert!(again.ingress_patches[0].up_to_date);

    // Deselected (label changed): released.
    let mut moved = live.clone();
    moved.labels.insert("edge".into(), "private".into());
    let released = plan_all(&p, &with_ingresses(vec![moved.clone()]));
    assert!(released.rate_limit.unwrap().ingress_patches.is_empty());
    assert_eq!(released.ingress_releases, ["api"]);
    // The whole section gone: released too.
    let mut without = p.clone();
    without.rate_limit = None;
    let mut selected = moved;
    selected.labels.insert("edge".into(), "public".into());
    assert_eq!(
        plan_all(&without, &with_ingresses(vec![selected])).ingress_releases,
        ["api"]
    );

    // Annotated first by another existing policy: left alone and reported.
    let mut theirs = live;
    theirs
        .annotations
        .insert("security.goreal.io/rate-limited-by".into(), "other".into());
    let mut world = with_ingresses(vec![theirs]);
    world.policies.insert("other".into());
    let desired = plan_all(&p, &world);
    assert!(desired.ingress_releases.is_empty());
    let plan = desired.rate_limit.unwrap();
    assert!(plan.ingress_patches.is_empty());
    assert!(plan.ingresses_skipped[0].1.contains("policy other"));
}

#[test]
fn an_ingress_no_zone_covers_is_reported_and_the_paths_check_counts_ingress_limits() {
    let p = policy(
        "zones: [{name: api, path: /api/, rate: 10r/s, burst: 20}]\n\
         ingressSelector: {}\noutputs: [IngressNginx]\n",
    );
    let world = with_ingresses(vec![
        ingress("api", &[], &["/api/"]),
        ingress("docs", &[], &["/docs"]),
    ]);
    let desired = plan_all(&p, &world);
    let plan = desired.rate_limit.as_ref().unwrap();
    assert_eq!(plan.ingresses_skipped[0].0, "docs");
    let status = report(&p, &desired, &|_| true, &Refusals::default()).0;
    assert_eq!(check(&status, RATE_LIMIT_PATHS).result, CheckResult::Pass);
    let state = desired.rate_limits_state(&p, &|_| true).unwrap();
    assert!(
        state
            .message
            .contains("ingress-nginx annotations on Ingress/api"),
        "{}",
        state.message
    );
    assert!(
        state.message.contains("Ingress/docs left alone"),
        "{}",
        state.message
    );
    // Without the annotations in effect nothing limits the api path.
    let status = report(&p, &desired, &|o| o != "Ingress/api", &Refusals::default()).0;
    assert_eq!(check(&status, RATE_LIMIT_PATHS).result, CheckResult::Fail);
}

fn route(name: &str, labels: &[(&str, &str)]) -> crate::observed::RouteInfo {
    crate::observed::RouteInfo {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn traffic_policy(desired: &crate::policy::Desired) -> Option<&GeneratedObject> {
    desired
        .generated
        .iter()
        .find(|g| g.kind == "BackendTrafficPolicy")
}

#[test]
fn without_the_backend_traffic_policy_api_the_gateway_output_is_skipped_and_said() {
    let p = policy(INGRESS_POLICY);
    let mut world = with_ingresses(vec![]);
    world.http_routes = vec![route("web", &[("edge", "public")])];
    let desired = plan_all(&p, &world);
    assert!(traffic_policy(&desired).is_none());
    let plan = desired.rate_limit.as_ref().unwrap();
    assert_eq!(
        plan.gateway,
        GatewayOutput::Skipped("Envoy Gateway's BackendTrafficPolicy CRD is not installed".into())
    );
    let state = desired.rate_limits_state(&p, &|_| true).unwrap();
    assert!(
        state.in_place,
        "a skipped output does not fail the others: {}",
        state.message
    );
    assert!(
        state.message.contains("Gateway API output skipped"),
        "{}",
        state.message
    );
}

#[test]
fn the_backend_traffic_policy_targets_the_selected_routes_with_one_rule_per_zone_and_family() {
    let p = policy(INGRESS_POLICY);
    let mut world = with_ingresses(vec![]);
    world.traffic_policy_api = true;
    world.http_routes = vec![
        route("web", &[("edge", "public")]),
        route("internal", &[("edge", "private")]),
    ];
    let desired = plan_all(&p, &world);
    let object = traffic_policy(&desired).expect("BackendTrafficPolicy");
    assert_eq!(object.name, "p-rate-limits");
    assert_eq!(object.api_version, "gateway.envoyproxy.io/v1alpha1");
    let spec = &object.body["spec"];
    assert_eq!(
        spec["targetRefs"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "web"}])
    );
    let rules = spec["rateLimit"]["global"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 6, "three zones, IPv4 and IPv6");
    // The api zone excludes the login path inside it, as nginx's longest prefix does.
    assert_eq!(
        rules[0]["clientSelectors"],
        json!([
            {"path": {"type": "PathPrefix", "value": "/api/", "invert": false}},
            {"path": {"type": "PathPrefix", "value": "/api/auth/login", "invert": true}},
            {"sourceCIDR": {"type": "Distinct", "value": "0.0.0.0/0", "invert": false}},
        ])
    );
    assert_eq!(rules[0]["limit"], json!({"requests": 10, "unit": "Second"}));
    assert_eq!(
        rules[1]["clientSelectors"][2]["sourceCIDR"]["value"],
        "::/0"
    );
    assert_eq!(rules[4]["limit"], json!({"requests": 60, "unit": "Minute"}));
    assert_eq!(
        rules[4]["clientSelectors"].as_array().unwrap().len(),
        4,
        "/ excludes both"
    );
    let GatewayOutput::Written { not_applied, .. } = &desired.rate_limit.as_ref().unwrap().gateway
    else {
        panic!("written");
    };
    assert!(
        not_applied.iter().any(|n| n.starts_with("burst")),
        "{not_applied:?}"
    );

    // No matching route: skipped, and an earlier policy is pruned.
    let mut live = object.body.clone();
    live["metadata"]["uid"] = json!("btp-1");
    world.http_routes.retain(|r| r.name == "internal");
    world.generated_objects = vec![live];
    let desired = plan_all(&p, &world);
    assert!(traffic_policy(&desired).is_none());
    assert_eq!(desired.prune.len(), 1);
    assert_eq!(desired.prune[0].object.kind, "BackendTrafficPolicy");
}

#[test]
fn without_the_nginx_output_the_header_and_tls_checks_skip() {
    let p = policy(&format!("{INGRESS_POLICY}outputs: [IngressNginx]\n"));
    let world = with_ingresses(vec![ingress("api", &[("edge", "public")], &["/api/"])]);
    let desired = plan_all(&p, &world);
    let status = report(&p, &desired, &|_| true, &Refusals::default()).0;
    for id in [SECURITY_HEADERS, TLS_FLOOR] {
        assert_eq!(check(&status, id).result, CheckResult::Skip, "{id}");
    }
    // Only the api zone's path is covered by an Ingress.
    assert_eq!(check(&status, RATE_LIMIT_PATHS).result, CheckResult::Fail);
}

#[test]
fn an_ingress_path_in_no_zone_is_said_to_get_the_covering_zones_limit() {
    let p =
        policy("zones: [{name: api, path: /api/, rate: 10r/s, burst: 20}]\ningressSelector: {}\n");
    let world = with_ingresses(vec![ingress("app", &[], &["/api/", "/docs"])]);
    let plan = plan_all(&p, &world).rate_limit.unwrap();
    let notes = &plan.ingress_patches[0].notes;
    assert!(
        notes.iter().any(|n| n.contains("/docs fall in no zone")),
        "{notes:?}"
    );
}
