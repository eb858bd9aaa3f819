//! Unit tests of pod-security hardening, merging and checks, on short YAML fixtures.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::de::DeserializeOwned;

use super::*;
use crate::compliance::{Capability, report as compliance_report};
use crate::crd::{CheckResult, CheckStatus, ComplianceStatus, GoREALSecurityPolicy};
use crate::model::{ValidatedPolicy, validate, writable_volume_name};
use crate::names;
use crate::observed::{Observed, WorkloadResource};
use crate::policy::{Desired, NamespacePlan, Refusals, plan, report};

// ---------------------------------------------------------------------------------------------
// Fixtures

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|line| format!("{pad}{line}\n")).collect()
}

/// A validated policy `hardening` in namespace `shop` selecting `app: shop`, whose
/// `spec.podSecurity` is the given YAML (so every default comes from serde, as in production).
fn policy(pod_security: &str) -> ValidatedPolicy {
    let pod_security = match pod_security.trim() {
        "" => " {}\n".to_string(),
        _ => format!("\n{}", indent(pod_security, 4)),
    };
    let yaml = format!(
        "apiVersion: security.goreal.io/v1alpha1\n\
         kind: GoREALSecurityPolicy\n\
         metadata: {{name: hardening, namespace: shop}}\n\
         spec:\n  \
           selector: {{matchLabels: {{app: shop}}}}\n  \
           podSecurity:{pod_security}"
    );
    let raw: GoREALSecurityPolicy = serde_saphyr::from_str(&yaml).expect("policy YAML parses");
    validate(&raw).expect("policy is valid")
}

fn settings(pod_security: &str) -> PodSecuritySettings {
    policy(pod_security)
        .pod_security
        .expect("pod security is managed")
}

fn parse_raw<K: DeserializeOwned + WorkloadResource>(yaml: &str) -> Workload {
    let object: K = serde_saphyr::from_str(yaml).expect("workload YAML parses");
    object.to_workload().expect("workload has a template")
}

/// A workload from YAML, made well-behaved where the fixtures are silent on it: untagged images
/// get a version tag and containers without limits get some, so that the checks each test is
/// about stand out (`parse_raw` keeps the YAML as written).
fn parse<K: DeserializeOwned + WorkloadResource>(yaml: &str) -> Workload {
    let mut workload = parse_raw::<K>(yaml);
    if let Some(spec) = workload.template.spec.as_mut() {
        let lists = [Some(&mut spec.containers), spec.init_containers.as_mut()];
        for container in lists.into_iter().flatten().flatten() {
            if let Some(image) = container.image.as_mut()
                && !image.rsplit('/').next().unwrap_or_default().contains(':')
            {
                image.push_str(":1.0");
            }
            let resources = container.resources.get_or_insert_with(Default::default);
            resources.limits.get_or_insert_with(|| {
                [("cpu", "1"), ("memory", "1Gi")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            });
        }
    }
    workload
}

/// A Deployment whose pod template is labelled `app: shop` and has the given pod spec.
fn deployment(name: &str, pod_spec: &str) -> Workload {
    parse::<Deployment>(&format!(
        "apiVersion: apps/v1\n\
         kind: Deployment\n\
         metadata: {{name: {name}}}\n\
         spec:\n  \
           selector: {{matchLabels: {{app: shop}}}}\n  \
           template:\n    \
             metadata: {{labels: {{app: shop}}}}\n    \
             spec:\n{}",
        indent(pod_spec, 6)
    ))
}

fn controlled_by(api_version: &str, kind: &str) -> Vec<OwnerReference> {
    vec![OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: "owner".into(),
        uid: "0b6f2a52".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]
}

fn observed(workloads: Vec<Workload>) -> Observed {
    Observed {
        workloads,
        ..Observed::default()
    }
}

fn patch(workload: &Workload, settings: &PodSecuritySettings) -> Value {
    harden(workload, settings).expect("workload has a pod spec")
}

/// The patch entry of the container `name` in `list` (`containers` or `initContainers`).
fn entry<'a>(patch: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    patch["spec"][list]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn hardened(workload: &Workload, settings: &PodSecuritySettings) -> PodTemplateSpec {
    hardened_template(&workload.template, &patch(workload, settings))
}

/// Offending (non-exempt) objects per check that has any.
fn offenders(evaluations: &[Evaluation]) -> BTreeMap<&'static str, Vec<String>> {
    let mut found: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for evaluation in evaluations {
        for violation in evaluation.violations.iter().filter(|v| v.exempt.is_none()) {
            found
                .entry(evaluation.check)
                .or_default()
                .push(violation.object.clone());
        }
    }
    found
}

fn patched(desired: &Desired) -> Vec<String> {
    desired
        .workload_patches
        .iter()
        .map(|p| p.target.reference())
        .collect()
}

fn released(desired: &Desired) -> Vec<String> {
    desired
        .workload_releases
        .iter()
        .map(|t| t.reference())
        .collect()
}

fn check<'a>(status: &'a ComplianceStatus, id: &str) -> &'a CheckStatus {
    status
        .checks
        .iter()
        .find(|c| c.id == id)
        .expect("check is in the report")
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const PLAIN: &str = "
containers:
  - name: app
    image: shop/app
";

/// Runs as root, privileged, on the host network, adding capabilities, without seccomp, with an
/// init container that sets nothing.
const INSECURE: &str = "
hostNetwork: true
securityContext: {runAsUser: 0}
initContainers:
  - name: migrate
    image: shop/migrate
containers:
  - name: app
    image: shop/app
    securityContext:
      privileged: true
      capabilities: {add: [NET_ADMIN, NET_BIND_SERVICE]}
";

/// Configures every optional setting so that every check applies.
const FULL: &str = "
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
appArmorProfile: {type: RuntimeDefault}
capabilities: {add: [NET_BIND_SERVICE]}
";

// ---------------------------------------------------------------------------------------------
// Pod level

#[test]
fn default_policy_requires_non_root_runtime_default_seccomp_and_no_token() {
    let patch = patch(&deployment("web", PLAIN), &settings(""));
    assert_eq!(
        patch["spec"]["securityContext"],
        json!({ "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } })
    );
    assert_eq!(patch["spec"]["automountServiceAccountToken"], json!(false));
}

#[test]
fn localhost_seccomp_profile_names_its_profile_file() {
    let settings =
        settings("seccompProfile: {type: Localhost, localhostProfile: profiles/shop.json}");
    let patch = patch(&deployment("web", PLAIN), &settings);
    assert_eq!(
        patch["spec"]["securityContext"]["seccompProfile"],
        json!({ "type": "Localhost", "localhostProfile": "profiles/shop.json" })
    );
}

#[test]
fn configured_ids_and_app_armor_profile_are_written_at_pod_level() {
    let settings = settings(
        "runAsUser: 10001\nrunAsGroup: 10002\nfsGroup: 10003\n\
         appArmorProfile: {type: Localhost, localhostProfile: shop-app}",
    );
    let context = &patch(&deployment("web", PLAIN), &settings)["spec"]["securityContext"];
    assert_eq!(context["runAsUser"], json!(10001));
    assert_eq!(context["runAsGroup"], json!(10002));
    assert_eq!(context["fsGroup"], json!(10003));
    assert_eq!(
        context["appArmorProfile"],
        json!({ "type": "Localhost", "localhostProfile": "shop-app" })
    );
}

#[test]
fn only_the_configured_ids_are_written() {
    let context =
        &patch(&deployment("web", PLAIN), &settings("runAsGroup: 3000"))["spec"]["securityContext"];
    assert_eq!(context["runAsGroup"], json!(3000));
    assert!(context.get("runAsUser").is_none() && context.get("fsGroup").is_none());
    assert!(context.get("appArmorProfile").is_none());
}

#[test]
fn run_as_non_root_is_not_written_when_the_policy_does_not_require_it() {
    let settings = settings("level: baseline\nrunAsNonRoot: false");
    let patch = patch(&deployment("web", PLAIN), &settings);
    assert!(
        patch["spec"]["securityContext"]
            .get("runAsNonRoot")
            .is_none()
    );
}

#[test]
fn automount_service_account_token_is_written_as_configured() {
    let patch = patch(
        &deployment("web", PLAIN),
        &settings("automountServiceAccountToken: true"),
    );
    assert_eq!(patch["spec"]["automountServiceAccountToken"], json!(true));
}

#[test]
fn explicit_null_automount_leaves_the_token_to_the_workload() {
    // A missing key defaults to false; an explicit null (the CRD marks it nullable) means
    // "not managed": no field in the patch and the check is skipped.
    let settings = settings("automountServiceAccountToken: null");
    assert_eq!(settings.automount_service_account_token, None);
    let workload = deployment("web", PLAIN);
    assert!(
        patch(&workload, &settings)["spec"]
            .get("automountServiceAccountToken")
            .is_none()
    );
    let evaluation = evaluate(&workload, &workload.template, &settings)
        .into_iter()
        .find(|e| e.check == c::AUTOMOUNT_SERVICE_ACCOUNT_TOKEN)
        .expect("evaluated");
    assert!(!evaluation.applicable);
}

// ---------------------------------------------------------------------------------------------
// Containers

#[test]
fn every_container_and_init_container_gets_the_hardened_context() {
    let workload = deployment(
        "web",
        "
initContainers:
  - name: migrate
    image: shop/migrate
containers:
  - name: app
    image: shop/app
  - name: proxy
    image: shop/proxy
",
    );
    let patch = patch(&workload, &settings(""));
    let expected = json!({
        "allowPrivilegeEscalation": false,
        "privileged": false,
        "readOnlyRootFilesystem": true,
        "capabilities": { "drop": ["ALL"] },
    });
    for (list, name) in [
        ("containers", "app"),
        ("containers", "proxy"),
        ("initContainers", "migrate"),
    ] {
        let entry = entry(&patch, list, name).expect("container is patched");
        assert_eq!(entry["securityContext"], expected, "{list} {name}");
    }
}

#[test]
fn requested_capabilities_are_filtered_to_the_allow_list() {
    let workload = deployment(
        "web",
        "
containers:
  - name: app
    image: shop/app
    securityContext: {capabilities: {add: [NET_ADMIN, NET_BIND_SERVICE]}}
  - name: sniffer
    image: shop/sniffer
    securityContext: {capabilities: {add: [NET_RAW]}}
",
    );
    let patch = patch(
        &workload,
        &settings("capabilities: {add: [NET_BIND_SERVICE]}"),
    );
    let capabilities = |name| {
        &entry(&patch, "containers", name).expect("patched")["securityContext"]["capabilities"]
    };
    assert_eq!(
        capabilities("app"),
        &json!({ "drop": ["ALL"], "add": ["NET_BIND_SERVICE"] })
    );
    // Nothing allowed remains: the list is still written, so the request is removed.
    assert_eq!(
        capabilities("sniffer"),
        &json!({ "drop": ["ALL"], "add": [] })
    );
}

#[test]
fn a_capability_requested_twice_is_added_once() {
    let workload = deployment(
        "web",
        "
containers:
  - name: app
    image: shop/app
    securityContext: {capabilities: {add: [NET_BIND_SERVICE, CHOWN, NET_BIND_SERVICE]}}
",
    );
    let settings = settings("level: baseline\ncapabilities: {add: [NET_BIND_SERVICE, CHOWN]}");
    let patch = patch(&workload, &settings);
    let entry = entry(&patch, "containers", "app").expect("patched");
    assert_eq!(
        entry["securityContext"]["capabilities"]["add"],
        json!(["NET_BIND_SERVICE", "CHOWN"])
    );
}

#[test]
fn container_overrides_are_rewritten_only_where_the_container_sets_them() {
    let workload = deployment(
        "web",
        "
initContainers:
  - name: setup
    image: shop/setup
    securityContext:
      runAsNonRoot: false
      runAsUser: 0
      seccompProfile: {type: Unconfined}
      appArmorProfile: {type: Unconfined}
containers:
  - name: app
    image: shop/app
",
    );
    let settings = settings(FULL);
    let patch = patch(&workload, &settings);
    let setup = &entry(&patch, "initContainers", "setup").expect("patched")["securityContext"];
    assert_eq!(setup["runAsNonRoot"], json!(true));
    assert_eq!(setup["runAsUser"], json!(10001));
    assert_eq!(setup["seccompProfile"], json!({ "type": "RuntimeDefault" }));
    assert_eq!(
        setup["appArmorProfile"],
        json!({ "type": "RuntimeDefault" })
    );
    assert!(
        setup.get("runAsGroup").is_none(),
        "the container did not set runAsGroup"
    );
    let app = &entry(&patch, "containers", "app").expect("patched")["securityContext"];
    for field in [
        "runAsNonRoot",
        "runAsUser",
        "runAsGroup",
        "seccompProfile",
        "appArmorProfile",
    ] {
        assert!(
            app.get(field).is_none(),
            "{field} is covered by the pod level"
        );
    }
}

#[test]
fn a_container_user_is_kept_when_the_policy_configures_none() {
    let workload = deployment(
        "web",
        "
containers:
  - name: app
    image: shop/app
    securityContext: {runAsUser: 1000}
",
    );
    let patch = patch(&workload, &settings(""));
    let entry = entry(&patch, "containers", "app").expect("patched");
    assert!(entry["securityContext"].get("runAsUser").is_none());
}

#[test]
fn a_localhost_seccomp_profile_stays_valid_under_a_runtime_default_policy() {
    let workload = deployment(
        "web",
        "
securityContext:
  seccompProfile: {type: Localhost, localhostProfile: profiles/pod.json}
containers:
  - name: app
    image: shop/app
    securityContext:
      seccompProfile: {type: Localhost, localhostProfile: profiles/app.json}
",
    );
    let spec = hardened(&workload, &settings("")).spec.expect("pod spec");
    let pod = spec
        .security_context
        .and_then(|s| s.seccomp_profile)
        .expect("pod profile");
    let app = spec.containers[0]
        .security_context
        .clone()
        .and_then(|s| s.seccomp_profile);
    let app = app.expect("container profile");
    // The API server accepts localhostProfile only with type Localhost.
    for profile in [pod, app] {
        assert!(
            profile.type_ == "Localhost" || profile.localhost_profile.is_none(),
            "{profile:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Writable paths

const TWO_PATHS: &str = "
writablePaths:
  - {path: /tmp, sizeLimit: 100Mi}
  - {path: /app/logs, sizeLimit: 500Mi}
";

#[test]
fn writable_paths_become_size_limited_empty_dirs_mounted_in_every_container() {
    let workload = deployment(
        "web",
        "
initContainers:
  - name: migrate
    image: shop/migrate
containers:
  - name: app
    image: shop/app
",
    );
    let (tmp, logs) = (
        writable_volume_name("/tmp"),
        writable_volume_name("/app/logs"),
    );
    let patch = patch(&workload, &settings(TWO_PATHS));
    assert_eq!(
        patch["spec"]["volumes"],
        json!([
            { "name": tmp, "emptyDir": { "sizeLimit": "100Mi" } },
            { "name": logs, "emptyDir": { "sizeLimit": "500Mi" } },
        ])
    );
    let mounts = json!([
        { "name": tmp, "mountPath": "/tmp" },
        { "name": logs, "mountPath": "/app/logs" },
    ]);
    for (list, name) in [("containers", "app"), ("initContainers", "migrate")] {
        assert_eq!(
            entry(&patch, list, name).expect("patched")["volumeMounts"],
            mounts,
            "{name}"
        );
    }
}

#[test]
fn a_path_the_container_already_mounts_gets_no_second_mount() {
    let workload = deployment(
        "web",
        "
volumes:
  - {name: scratch, emptyDir: {}}
containers:
  - name: app
    image: shop/app
    volumeMounts:
      - {name: scratch, mountPath: /tmp}
  - name: proxy
    image: shop/proxy
",
    );
    let tmp = writable_volume_name("/tmp");
    let patch = patch(&workload, &settings(""));
    assert!(
        entry(&patch, "containers", "app")
            .expect("patched")
            .get("volumeMounts")
            .is_none()
    );
    assert_eq!(
        entry(&patch, "containers", "proxy").expect("patched")["volumeMounts"],
        json!([{ "name": tmp, "mountPath": "/tmp" }])
    );
    assert_eq!(
        patch["spec"]["volumes"],
        json!([{ "name": tmp, "emptyDir": { "sizeLimit": "100Mi" } }])
    );
}

#[test]
fn the_writable_volume_is_omitted_when_no_container_needs_it() {
    let workload = deployment(
        "web",
        "
volumes:
  - {name: scratch, emptyDir: {}}
containers:
  - name: app
    image: shop/app
    volumeMounts:
      - {name: scratch, mountPath: /tmp}
",
    );
    assert!(
        patch(&workload, &settings(""))["spec"]
            .get("volumes")
            .is_none()
    );
}

#[test]
fn a_writable_root_filesystem_gets_no_writable_mounts() {
    let patch = patch(
        &deployment("web", PLAIN),
        &settings("readOnlyRootFilesystem: false"),
    );
    assert!(patch["spec"].get("volumes").is_none());
    let app = entry(&patch, "containers", "app").expect("patched");
    assert!(app.get("volumeMounts").is_none());
    assert!(
        app["securityContext"]
            .get("readOnlyRootFilesystem")
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// Merging and idempotence

#[test]
fn merge_keys_containers_by_name_and_mounts_by_path_and_replaces_other_lists() {
    let mut live = json!({ "spec": { "containers": [
        { "name": "a", "image": "a", "volumeMounts": [{ "name": "x", "mountPath": "/x" }],
          "securityContext": { "capabilities": { "add": ["NET_ADMIN", "CHOWN"] } } },
        { "name": "b", "image": "b" },
    ]}});
    let patch = json!({ "spec": { "containers": [
        { "name": "a", "volumeMounts": [{ "name": "t", "mountPath": "/tmp" }],
          "securityContext": { "capabilities": { "add": ["CHOWN"], "drop": ["ALL"] } } },
        { "name": "c", "securityContext": { "privileged": false } },
    ]}});
    merge(&mut live, &patch);
    assert_eq!(
        live,
        json!({ "spec": { "containers": [
            { "name": "a", "image": "a",
              "volumeMounts": [{ "name": "x", "mountPath": "/x" }, { "name": "t", "mountPath": "/tmp" }],
              "securityContext": { "capabilities": { "add": ["CHOWN"], "drop": ["ALL"] } } },
            { "name": "b", "image": "b" },
            { "name": "c", "securityContext": { "privileged": false } },
        ]}})
    );
}

#[test]
fn hardening_the_hardened_template_yields_the_same_patch() {
    let fixtures = [
        (PLAIN, ""),
        (INSECURE, FULL),
        (
            "
initContainers:
  - name: setup
    image: shop/setup
    securityContext: {runAsNonRoot: false, runAsUser: 0, seccompProfile: {type: Unconfined}}
containers:
  - name: app
    image: shop/app
    securityContext: {capabilities: {add: [NET_ADMIN, NET_BIND_SERVICE]}}
  - name: sniffer
    image: shop/sniffer
    securityContext: {capabilities: {add: [NET_RAW]}}
",
            FULL,
        ),
        (
            "
volumes:
  - {name: scratch, emptyDir: {}}
containers:
  - name: app
    image: shop/app
    volumeMounts:
      - {name: scratch, mountPath: /tmp}
  - name: proxy
    image: shop/proxy
",
            TWO_PATHS,
        ),
        (
            "os: {name: windows}\ncontainers:\n  - {name: app, image: shop/win}",
            FULL,
        ),
    ];
    for (pod_spec, pod_security) in fixtures {
        let settings = settings(pod_security);
        let mut workload = deployment("web", pod_spec);
        let first = patch(&workload, &settings);
        workload.template = hardened_template(&workload.template, &first);
        assert_eq!(patch(&workload, &settings), first, "{pod_spec}");
        assert_eq!(
            hardened_template(&workload.template, &first),
            workload.template,
            "{pod_spec}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Checks

#[test]
fn insecure_template_fails_the_expected_checks_per_container() {
    let workload = deployment("web", INSECURE);
    let found = offenders(&evaluate(&workload, &workload.template, &settings(FULL)));
    let (pod, app, init) = (
        "Deployment/web",
        "Deployment/web container app",
        "Deployment/web init container migrate",
    );
    let expected: BTreeMap<&str, Vec<String>> = [
        (c::ALLOW_PRIVILEGE_ESCALATION, strings(&[app, init])),
        (c::APPARMOR_PROFILE, strings(&[app, init])),
        (c::AUTOMOUNT_SERVICE_ACCOUNT_TOKEN, strings(&[pod])),
        (c::CAPABILITIES_ADD, strings(&[app])),
        (c::CAPABILITIES_DROP_ALL, strings(&[app, init])),
        (c::HOST_NAMESPACES, strings(&[pod])),
        (c::PRIVILEGED, strings(&[app])),
        (c::READ_ONLY_ROOT_FILESYSTEM, strings(&[app, init])),
        (c::RUN_AS_NON_ROOT, strings(&[app, init])),
        (c::RUN_AS_USER, strings(&[pod, pod, pod])),
        (c::SECCOMP_PROFILE, strings(&[app, init])),
        (c::WRITABLE_PATHS, strings(&[app, init])),
    ]
    .into_iter()
    .collect();
    assert_eq!(found, expected);
}

#[test]
fn violations_say_what_is_wrong() {
    let workload = deployment("web", INSECURE);
    let evaluations = evaluate(&workload, &workload.template, &settings(FULL));
    let details = |check: &str| -> Vec<String> {
        let evaluation = evaluations
            .iter()
            .find(|e| e.check == check)
            .expect("evaluated");
        evaluation
            .violations
            .iter()
            .map(|v| v.detail.clone())
            .collect()
    };
    assert_eq!(details(c::CAPABILITIES_ADD), ["adds NET_ADMIN"]);
    assert_eq!(details(c::HOST_NAMESPACES), ["sets hostNetwork"]);
    assert_eq!(
        details(c::RUN_AS_NON_ROOT),
        ["runs as user 0", "runs as user 0"]
    );
    assert_eq!(
        details(c::WRITABLE_PATHS),
        ["does not mount /tmp", "does not mount /tmp"]
    );
    assert_eq!(
        details(c::RUN_AS_USER),
        [
            "has pod runAsUser 0",
            "has pod runAsGroup unset",
            "has pod fsGroup unset"
        ]
    );
}

#[test]
fn hardened_template_passes_every_check_the_patch_covers() {
    let settings = settings(FULL);
    let plain = deployment("web", PLAIN);
    let evaluations = evaluate(&plain, &hardened(&plain, &settings), &settings);
    assert!(evaluations.iter().all(|e| e.applicable), "{evaluations:?}");
    assert_eq!(offenders(&evaluations), BTreeMap::new());

    // Host namespaces are reported, never rewritten: they are all that remains.
    let insecure = deployment("web", INSECURE);
    let found = offenders(&evaluate(
        &insecure,
        &hardened(&insecure, &settings),
        &settings,
    ));
    assert_eq!(found.into_keys().collect::<Vec<_>>(), [c::HOST_NAMESPACES]);
}

#[test]
fn ephemeral_containers_are_evaluated_but_never_patched() {
    let workload = deployment(
        "web",
        "
containers:
  - name: app
    image: shop/app
ephemeralContainers:
  - name: debug
    image: busybox
    securityContext: {privileged: true}
",
    );
    let settings = settings("");
    let patch = patch(&workload, &settings);
    assert!(patch["spec"].get("ephemeralContainers").is_none());
    assert!(entry(&patch, "containers", "debug").is_none());
    let found = offenders(&evaluate(
        &workload,
        &hardened(&workload, &settings),
        &settings,
    ));
    // Only the unpatched ephemeral container still offends.
    assert!(found.contains_key(c::PRIVILEGED));
    for (check, objects) in found {
        assert_eq!(
            objects,
            ["Deployment/web ephemeral container debug"],
            "{check}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Windows pods

const WINDOWS: &str = "
os: {name: windows}
containers:
  - name: app
    image: shop/win
    securityContext: {runAsNonRoot: false}
";

#[test]
fn windows_pods_get_no_linux_only_fields() {
    let patch = patch(
        &deployment("web", WINDOWS),
        &settings(&format!("{FULL}{TWO_PATHS}")),
    );
    assert_eq!(
        patch,
        json!({ "spec": {
            "securityContext": { "runAsNonRoot": true },
            "automountServiceAccountToken": false,
            "containers": [{ "name": "app", "securityContext": { "runAsNonRoot": true } }],
        }})
    );
}

#[test]
fn linux_only_checks_are_skipped_for_windows_pods() {
    let settings = settings(FULL);
    let workload = deployment("web", WINDOWS);
    let status = compliance_report(
        &[Capability::PodSecurity],
        &evaluate(&workload, &workload.template, &settings),
    );
    for id in [
        c::ALLOW_PRIVILEGE_ESCALATION,
        c::APPARMOR_PROFILE,
        c::CAPABILITIES_ADD,
        c::CAPABILITIES_DROP_ALL,
        c::PRIVILEGED,
        c::READ_ONLY_ROOT_FILESYSTEM,
        c::RUN_AS_USER,
        c::SECCOMP_PROFILE,
        c::WRITABLE_PATHS,
    ] {
        let check = check(&status, id);
        assert_eq!(
            (check.result, check.message.as_str()),
            (CheckResult::Skip, WINDOWS_SKIP),
            "{id}"
        );
    }
    assert_eq!(check(&status, c::RUN_AS_NON_ROOT).result, CheckResult::Fail);
    assert_eq!(
        check(&status, c::AUTOMOUNT_SERVICE_ACCOUNT_TOKEN).result,
        CheckResult::Fail
    );
    assert_eq!(check(&status, c::HOST_NAMESPACES).result, CheckResult::Pass);
}

// ---------------------------------------------------------------------------------------------
// Exemptions

const VPN: &str = "
containers:
  - name: app
    image: shop/app
  - name: vpn
    image: shop/vpn
    securityContext:
      privileged: true
      capabilities: {add: [NET_ADMIN]}
";

#[test]
fn an_exempt_workload_gets_no_patch_and_its_violations_are_exempt() {
    let policy = policy("exemptions:\n  - {workload: legacy, reason: vendor image replaced in Q3}");
    let mut legacy = deployment("legacy", VPN);
    legacy
        .annotations
        .insert(names::HARDENED_BY_ANNOTATION.into(), "hardening".into());
    let desired = plan(&policy, &observed(vec![legacy, deployment("web", PLAIN)]));
    assert_eq!(patched(&desired), ["Deployment/web"]);
    // Hardened by this policy before the exemption: its fields are released.
    assert_eq!(released(&desired), ["Deployment/legacy"]);

    let (status, workloads) = report(&policy, &desired, &|_| true, &Refusals::default());
    let privileged = check(&status, c::PRIVILEGED);
    assert_eq!(privileged.result, CheckResult::Pass);
    assert_eq!(
        privileged.exemptions,
        ["Deployment/legacy container vpn: vendor image replaced in Q3"]
    );
    assert_eq!(status.failed, 0, "{status:?}");
    assert_eq!(
        (workloads.matched, workloads.hardened, workloads.failing),
        (2, 2, 0)
    );
}

#[test]
fn an_exempt_container_is_left_alone_and_reported_exempt() {
    let settings = settings(
        "exemptions:\n  - {workload: web, container: vpn, reason: the VPN sidecar needs the tun device}",
    );
    let workload = deployment("web", VPN);
    let patch = patch(&workload, &settings);
    assert!(entry(&patch, "containers", "vpn").is_none());
    assert!(entry(&patch, "containers", "app").is_some());
    assert_eq!(
        patch["spec"]["securityContext"]["runAsNonRoot"],
        json!(true)
    );

    let evaluations = evaluate(
        &workload,
        &hardened_template(&workload.template, &patch),
        &settings,
    );
    let privileged = evaluations
        .iter()
        .find(|e| e.check == c::PRIVILEGED)
        .expect("evaluated");
    assert_eq!(
        privileged.violations,
        [Violation {
            object: "Deployment/web container vpn".into(),
            detail: "is privileged".into(),
            exempt: Some("the VPN sidecar needs the tun device".into()),
        }]
    );
    let status = compliance_report(&[Capability::PodSecurity], &evaluations);
    assert_eq!(check(&status, c::PRIVILEGED).result, CheckResult::Pass);
    assert_eq!(status.failed, 0, "{status:?}");
}

#[test]
fn a_check_exemption_skips_only_its_field_group() {
    let settings = settings(
        "exemptions:\n  - {workload: web, checks: [pod.read-only-root-filesystem], reason: writes its cache}",
    );
    let workload = deployment("web", PLAIN);
    let patch = patch(&workload, &settings);
    let app = entry(&patch, "containers", "app").expect("patched");
    assert!(
        app["securityContext"]
            .get("readOnlyRootFilesystem")
            .is_none()
    );
    assert_eq!(app["securityContext"]["privileged"], json!(false));
    assert_eq!(
        app["securityContext"]["capabilities"],
        json!({ "drop": ["ALL"] })
    );
    assert!(
        app.get("volumeMounts").is_some(),
        "writable paths are another check"
    );

    let evaluations = evaluate(
        &workload,
        &hardened_template(&workload.template, &patch),
        &settings,
    );
    let status = compliance_report(&[Capability::PodSecurity], &evaluations);
    let read_only = check(&status, c::READ_ONLY_ROOT_FILESYSTEM);
    assert_eq!(read_only.result, CheckResult::Pass);
    assert_eq!(
        read_only.exemptions,
        ["Deployment/web container app: writes its cache"]
    );
    assert_eq!(status.failed, 0, "{status:?}");
}

#[test]
fn a_pod_level_check_exemption_keeps_the_other_pod_fields() {
    let settings = settings(&format!(
        "{FULL}exemptions:\n  - {{workload: web, checks: [pod.run-as-user], reason: image owns uid 70}}"
    ));
    let context = &patch(&deployment("web", PLAIN), &settings)["spec"]["securityContext"];
    for field in ["runAsUser", "runAsGroup", "fsGroup"] {
        assert!(context.get(field).is_none(), "{field}");
    }
    assert_eq!(context["runAsNonRoot"], json!(true));
    assert_eq!(
        context["seccompProfile"],
        json!({ "type": "RuntimeDefault" })
    );
}

#[test]
fn a_container_check_exemption_keeps_that_containers_own_value() {
    let settings = settings(
        "exemptions:\n  - {workload: web, container: vpn, checks: [pod.capabilities-add], reason: needs NET_ADMIN}",
    );
    let workload = deployment("web", VPN);
    let patch = patch(&workload, &settings);
    let vpn = &entry(&patch, "containers", "vpn").expect("patched")["securityContext"];
    assert_eq!(vpn["capabilities"], json!({ "drop": ["ALL"] }));
    assert_eq!(vpn["privileged"], json!(false));

    let evaluations = evaluate(
        &workload,
        &hardened_template(&workload.template, &patch),
        &settings,
    );
    let status = compliance_report(&[Capability::PodSecurity], &evaluations);
    assert_eq!(
        check(&status, c::CAPABILITIES_ADD).exemptions,
        ["Deployment/web container vpn: needs NET_ADMIN"]
    );
    assert_eq!(status.failed, 0, "{status:?}");
}

#[test]
fn an_exemption_for_another_workload_changes_nothing() {
    let exempting_legacy = settings("exemptions:\n  - {workload: legacy, reason: vendor image}");
    let workload = deployment("web", PLAIN);
    assert_eq!(
        patch(&workload, &exempting_legacy),
        patch(&workload, &settings(""))
    );
}

// ---------------------------------------------------------------------------------------------
// Planning across workloads

#[test]
fn a_workload_controlled_by_another_operator_is_checked_but_not_patched() {
    let policy = policy("");
    let mut rollout_child = deployment("web", PLAIN);
    rollout_child.owner_references = controlled_by("argoproj.io/v1alpha1", "Rollout");
    let desired = plan(&policy, &observed(vec![rollout_child]));
    assert!(desired.workload_patches.is_empty());
    assert_eq!(desired.selected.len(), 1);
    assert!(desired.selected[0].unmanaged && desired.selected[0].hardened.is_none());

    let (status, workloads) = report(&policy, &desired, &|_| true, &Refusals::default());
    assert_eq!(workloads.unmanaged, ["Deployment/web"]);
    assert_eq!((workloads.matched, workloads.failing), (1, 1));
    assert_eq!(check(&status, c::PRIVILEGED).result, CheckResult::Pass);
    assert_eq!(
        check(&status, c::SECCOMP_PROFILE).objects,
        ["Deployment/web container app"]
    );
}

fn replica_set_of_web(annotations: &str) -> Workload {
    let mut workload = parse::<ReplicaSet>(&format!(
        "apiVersion: apps/v1\n\
         kind: ReplicaSet\n\
         metadata: {{name: web-5d8f7c, annotations: {{{annotations}}}}}\n\
         spec:\n  \
           selector: {{matchLabels: {{app: shop}}}}\n  \
           template:\n    \
             metadata: {{labels: {{app: shop}}}}\n    \
             spec:\n{}",
        indent(PLAIN, 6)
    ));
    workload.owner_references = controlled_by("apps/v1", "Deployment");
    workload
}

#[test]
fn a_replica_set_owned_by_a_deployment_is_not_governed() {
    let desired = plan(&policy(""), &observed(vec![replica_set_of_web("")]));
    assert!(desired.workload_patches.is_empty());
    assert!(desired.selected.is_empty());
    assert!(desired.workload_releases.is_empty());
}

#[test]
fn a_replica_set_with_the_annotation_copied_from_its_deployment_is_not_released() {
    let policy = policy("");
    let mut web = deployment("web", PLAIN);
    web.annotations
        .insert(names::HARDENED_BY_ANNOTATION.into(), "hardening".into());
    let replica_set = replica_set_of_web(&format!("{}: hardening", names::HARDENED_BY_ANNOTATION));
    let desired = plan(&policy, &observed(vec![web, replica_set]));
    assert_eq!(patched(&desired), ["Deployment/web"]);
    assert_eq!(released(&desired), Vec::<String>::new());
}

#[test]
fn a_workload_created_before_the_policy_is_patched_until_the_patch_is_applied() {
    let policy = policy(FULL);
    let mut web = deployment("web", INSECURE);
    let first = plan(&policy, &observed(vec![web.clone()]));
    assert_eq!(first.workload_patches.len(), 1);
    let patch = &first.workload_patches[0];
    assert!(!patch.up_to_date);
    assert_eq!(patch.body["apiVersion"], "apps/v1");
    assert_eq!(patch.body["kind"], "Deployment");
    assert_eq!(patch.body["metadata"]["name"], "web");
    assert_eq!(patch.body["metadata"]["namespace"], "shop");
    assert_eq!(
        patch.body["metadata"]["annotations"][names::HARDENED_BY_ANNOTATION],
        "hardening"
    );

    // The marks alone do not make it current: the template must carry the fields too.
    web.annotations = serde_json::from_value(patch.body["metadata"]["annotations"].clone())
        .expect("annotations are strings");
    let marked_only = plan(&policy, &observed(vec![web.clone()]));
    assert!(!marked_only.workload_patches[0].up_to_date);

    web.template = first.selected[0]
        .hardened
        .clone()
        .expect("hardened template");
    let second = plan(&policy, &observed(vec![web]));
    assert!(second.workload_patches[0].up_to_date);
    assert_eq!(second.workload_patches[0].body, patch.body);
    assert!(second.workload_releases.is_empty());
}

#[test]
fn report_judges_the_hardened_template_only_once_applied() {
    let policy = policy(FULL);
    let desired = plan(&policy, &observed(vec![deployment("web", PLAIN)]));
    let (applied, _) = report(&policy, &desired, &|_| true, &Refusals::default());
    assert_eq!(applied.failed, 0, "{applied:?}");
    let (pending, workloads) = report(&policy, &desired, &|_| false, &Refusals::default());
    assert_eq!(check(&pending, c::PRIVILEGED).result, CheckResult::Pass);
    assert_eq!(
        check(&pending, c::SECCOMP_PROFILE).result,
        CheckResult::Fail
    );
    assert_eq!(workloads.failing, 1);
}

#[test]
fn a_workload_hardened_by_this_policy_but_no_longer_selected_is_released() {
    let relabel = |mut workload: Workload, hardened_by: &str| {
        let labels = BTreeMap::from([("app".to_string(), "other".to_string())]);
        workload.template.metadata.get_or_insert_default().labels = Some(labels);
        workload
            .annotations
            .insert(names::HARDENED_BY_ANNOTATION.into(), hardened_by.into());
        workload
    };
    let workloads = vec![
        relabel(deployment("old", PLAIN), "hardening"),
        relabel(deployment("theirs", PLAIN), "another-policy"),
        deployment("web", PLAIN),
    ];
    let desired = plan(&policy(""), &observed(workloads));
    assert_eq!(patched(&desired), ["Deployment/web"]);
    assert_eq!(released(&desired), ["Deployment/old"]);
}

#[test]
fn namespace_gets_pod_security_admission_labels_at_the_policy_level() {
    let labels = |pod_security: &str| plan(&policy(pod_security), &observed(vec![])).namespace;
    let at = |level: &str| {
        NamespacePlan::Apply(
            ["enforce", "audit", "warn"]
                .map(|mode| {
                    (
                        format!("pod-security.kubernetes.io/{mode}"),
                        level.to_string(),
                    )
                })
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
        )
    };
    assert_eq!(labels(""), at("restricted"));
    assert_eq!(
        labels("level: baseline\ncapabilities: {add: [CHOWN]}"),
        at("baseline")
    );
    assert_eq!(labels("labelNamespace: false"), NamespacePlan::Leave);
}

/// Marks a (still selected) workload as hardened by `policy`.
fn hardened_by(mut workload: Workload, policy: &str) -> Workload {
    workload
        .annotations
        .insert(names::HARDENED_BY_ANNOTATION.into(), policy.into());
    workload
}

#[test]
fn namespace_labels_set_by_this_policy_are_released_when_it_stops_labelling() {
    let mut world = observed(vec![]);
    world.namespace.labelled_by = Some("hardening".into());
    let desired = plan(&policy("labelNamespace: false"), &world);
    assert_eq!(desired.namespace, NamespacePlan::Release);
}

#[test]
fn a_second_policy_leaves_namespace_labels_and_workloads_of_the_first_alone() {
    let mut world = observed(vec![hardened_by(deployment("web", PLAIN), "first")]);
    world.namespace.labelled_by = Some("first".into());
    world.policies = ["first".to_string(), "hardening".to_string()].into();
    let desired = plan(&policy(""), &world);
    assert_eq!(desired.namespace, NamespacePlan::Leave);
    assert!(desired.workload_patches.is_empty());
    assert!(desired.workload_releases.is_empty());
    let elsewhere: Vec<&str> = desired
        .governed_elsewhere
        .iter()
        .map(|(o, _)| o.as_str())
        .collect();
    assert_eq!(elsewhere, ["Deployment/web", "Namespace/shop"]);
    let (compliance, _) = report(&policy(""), &desired, &|_| true, &Refusals::default());
    let ownership = compliance
        .checks
        .iter()
        .find(|c| c.id == c::FIELD_OWNERSHIP)
        .expect("check");
    assert_eq!(ownership.result, CheckResult::Fail);
    assert!(
        ownership.message.contains("policy first"),
        "{}",
        ownership.message
    );
}

#[test]
fn a_policy_that_no_longer_exists_does_not_keep_its_workloads() {
    let mut world = observed(vec![hardened_by(deployment("web", PLAIN), "gone")]);
    world.namespace.labelled_by = Some("gone".into());
    world.policies = ["hardening".to_string()].into();
    let desired = plan(&policy(""), &world);
    assert!(matches!(desired.namespace, NamespacePlan::Apply(_)));
    assert_eq!(patched(&desired), ["Deployment/web"]);
}

#[test]
fn cron_job_patches_nest_under_the_job_template() {
    let nightly = parse::<CronJob>(&format!(
        "apiVersion: batch/v1\n\
         kind: CronJob\n\
         metadata: {{name: nightly}}\n\
         spec:\n  \
           schedule: '0 3 * * *'\n  \
           jobTemplate:\n    \
             spec:\n      \
               template:\n        \
                 metadata: {{labels: {{app: shop}}}}\n        \
                 spec:\n{}",
        indent(
            "restartPolicy: OnFailure\ncontainers:\n  - {name: report, image: shop/report}",
            10
        )
    ));
    let desired = plan(&policy(""), &observed(vec![nightly.clone()]));
    let body = &desired.workload_patches[0].body;
    assert_eq!(
        (&body["apiVersion"], &body["kind"]),
        (&json!("batch/v1"), &json!("CronJob"))
    );
    assert!(body["spec"].get("template").is_none());
    assert_eq!(
        body["spec"]["jobTemplate"]["spec"]["template"],
        patch(&nightly, &settings(""))
    );
}

#[test]
fn a_size_limit_the_api_server_canonicalised_still_counts_as_applied() {
    let written = settings("writablePaths: [{path: /tmp, sizeLimit: 1024Mi}]");
    let workload = deployment("web", PLAIN);
    let hardened = hardened_template(&workload.template, &patch(&workload, &written));
    let mut stored = hardened.clone();
    let volume = stored
        .spec
        .as_mut()
        .and_then(|s| s.volumes.as_mut())
        .expect("volumes");
    volume[0].empty_dir.as_mut().expect("emptyDir").size_limit = Some(
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into()),
    );
    assert_ne!(hardened, stored);
    assert!(same_template(&hardened, &stored));
    volume_limit_changes_are_still_seen(&hardened);
}

fn volume_limit_changes_are_still_seen(hardened: &PodTemplateSpec) {
    let mut other = hardened.clone();
    let volume = other
        .spec
        .as_mut()
        .and_then(|s| s.volumes.as_mut())
        .expect("volumes");
    volume[0].empty_dir.as_mut().expect("emptyDir").size_limit = Some(
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("2Gi".into()),
    );
    assert!(!same_template(hardened, &other));
}

#[test]
fn a_legacy_profile_annotation_keeps_the_workloads_own_profile() {
    let mut workload = deployment("web", PLAIN);
    let annotations = BTreeMap::from([(
        "container.apparmor.security.beta.kubernetes.io/app".to_string(),
        "localhost/app".to_string(),
    )]);
    workload
        .template
        .metadata
        .get_or_insert_default()
        .annotations = Some(annotations);
    let patched = patch(
        &workload,
        &settings("appArmorProfile: {type: RuntimeDefault}"),
    );
    let pod = &patched["spec"]["securityContext"];
    assert!(pod.get("appArmorProfile").is_none(), "{pod}");
    assert!(
        pod.get("seccompProfile").is_some(),
        "seccomp is still ours: {pod}"
    );
}

#[test]
fn escalation_is_left_alone_where_an_exemption_keeps_a_container_privileged() {
    let workload = deployment(
        "cni",
        "
containers:
  - name: agent
    image: cni/agent:1.0
    securityContext: {privileged: true}
",
    );
    let exempt = settings(
        "level: baseline\nexemptions: [{workload: cni, checks: [pod.privileged], reason: node agent}]",
    );
    let patched = patch(&workload, &exempt);
    let agent = entry(&patched, "containers", "agent").expect("patched");
    assert!(
        agent["securityContext"]
            .get("allowPrivilegeEscalation")
            .is_none(),
        "{agent}"
    );
    assert!(
        agent["securityContext"].get("privileged").is_none(),
        "{agent}"
    );
}

#[test]
fn jobs_are_checked_but_never_patched() {
    let job: k8s_openapi::api::batch::v1::Job = serde_saphyr::from_str(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: once, namespace: shop}\nspec:\n  template:\n    metadata: {labels: {app: shop}}\n    spec:\n      restartPolicy: Never\n      containers: [{name: run, image: shop/task:1}]\n",
    )
    .expect("job");
    let workload = job.to_workload().expect("workload");
    let desired = plan(&policy(""), &observed(vec![workload]));
    assert!(desired.workload_patches.is_empty());
    let (compliance, workloads) = report(&policy(""), &desired, &|_| true, &Refusals::default());
    assert_eq!(workloads.immutable, vec!["Job/once".to_string()]);
    let non_root = compliance
        .checks
        .iter()
        .find(|c| c.id == c::RUN_AS_NON_ROOT)
        .expect("check");
    assert_eq!(non_root.result, CheckResult::Fail);
}

#[test]
fn a_policy_changing_its_own_localhost_profile_rewrites_it() {
    let workload = deployment("web", PLAIN);
    let first = settings("seccompProfile: {type: Localhost, localhostProfile: profiles/a.json}");
    let desired = plan(
        &policy("seccompProfile: {type: Localhost, localhostProfile: profiles/a.json}"),
        &observed(vec![workload.clone()]),
    );
    let body = &desired.workload_patches[0].body;
    // Simulate the apply: hardened template plus the body's annotations.
    let mut applied = workload.clone();
    applied.template = hardened_template(&workload.template, &patch(&workload, &first));
    for (key, value) in body["metadata"]["annotations"]
        .as_object()
        .expect("annotations")
    {
        applied
            .annotations
            .insert(key.clone(), value.as_str().expect("string").to_string());
    }
    let second = settings("seccompProfile: {type: Localhost, localhostProfile: profiles/b.json}");
    let rewritten = patch(&applied, &second);
    assert_eq!(
        rewritten["spec"]["securityContext"]["seccompProfile"],
        serde_json::json!({"type": "Localhost", "localhostProfile": "profiles/b.json"})
    );
    let back = patch(&applied, &settings(""));
    assert_eq!(
        back["spec"]["securityContext"]["seccompProfile"],
        serde_json::json!({"type": "RuntimeDefault"})
    );
}

#[test]
fn containers_without_cpu_or_memory_limits_fail_the_resource_limits_check() {
    let workload = parse_raw::<Deployment>(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  \
         selector: {matchLabels: {app: shop}}\n  template:\n    metadata: {labels: {app: shop}}\n    \
         spec:\n      initContainers: [{name: init, image: shop/init:1, resources: {limits: {cpu: 100m}}}]\n      \
         containers: [{name: app, image: shop/app:1, resources: {limits: {cpu: 1, memory: 1Gi}}}]\n      \
         ephemeralContainers: [{name: debug, image: busybox:1.36}]\n",
    );
    let evaluations = evaluate(&workload, &workload.template, &settings(""));
    let limits = evaluations
        .iter()
        .find(|e| e.check == c::RESOURCE_LIMITS)
        .expect("evaluated");
    let found: Vec<(&str, &str)> = limits
        .violations
        .iter()
        .map(|v| (v.object.as_str(), v.detail.as_str()))
        .collect();
    // Ephemeral containers may not set resources: not held against the workload.
    assert_eq!(
        found,
        [("Deployment/web init container init", "sets no memory limit")]
    );
}

#[test]
fn images_pass_with_a_version_tag_or_digest_and_fail_untagged_or_latest() {
    for (image, pinned) in [
        ("nginx:1.27.3", true),
        ("registry.local:5000/shop/app:2.1", true),
        ("shop/app@sha256:0123456789abcdef", true),
        ("nginx", false),
        ("nginx:latest", false),
        ("registry.local:5000/shop/app", false),
        ("", false),
    ] {
        assert_eq!(image_pin_problem(image).is_none(), pinned, "{image:?}");
    }
    let workload = parse_raw::<Deployment>(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  \
         selector: {matchLabels: {app: shop}}\n  template:\n    metadata: {labels: {app: shop}}\n    \
         spec:\n      containers: [{name: app, image: 'shop/app:latest'}, {name: side, image: 'shop/side:3'}]\n",
    );
    let evaluations = evaluate(&workload, &workload.template, &settings(""));
    let pinned = evaluations
        .iter()
        .find(|e| e.check == c::IMAGE_PINNED)
        .expect("evaluated");
    assert_eq!(pinned.violations.len(), 1);
    assert_eq!(pinned.violations[0].object, "Deployment/web container app");
    assert!(pinned.violations[0].detail.contains("latest"));
}
