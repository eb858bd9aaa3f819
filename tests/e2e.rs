//! End-to-end behaviour of the operator against a real kube-apiserver and etcd: hardening, Pod
//! Security Admission as the oracle, audit mode, release on delete, zero writes when converged,
//! conflicts with other field managers, and validation in the API server and in the operator.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{
    Operator, check, condition, condition_message, create_policy, setup, wait_status, wait_until,
    yaml,
};
use goreal_operator::crd::{CheckResult, GoREALSecurityPolicy};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, PodTemplateSpec};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const INSECURE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: insecure
spec:
  selector:
    matchLabels: {app: insecure}
  template:
    metadata:
      labels: {app: insecure}
    spec:
      initContainers:
        - name: setup
          image: busybox:1.36.1
          command: [sh, -c, "true"]
          resources: {limits: {cpu: 100m, memory: 64Mi}}
      containers:
        - name: app
          image: nginx:1.27.3
          ports:
            - containerPort: 80
          # Limits are the one thing the operator checks but cannot set for a workload.
          resources: {limits: {cpu: 500m, memory: 128Mi}}
"#;

fn policy(name: &str, extra: &str) -> GoREALSecurityPolicy {
    yaml(&format!(
        "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\nmetadata:\n  name: {name}\nspec:\n  podSecurity: {{}}\n{extra}"
    ))
}

async fn create_deployment(client: &Client, namespace: &str, text: &str) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &yaml(text))
        .await
        .expect("create deployment")
}

async fn deployment(client: &Client, namespace: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .expect("get deployment")
}

fn is_hardened(deployment: &Deployment) -> bool {
    let spec = deployment.spec.template.spec.as_ref();
    spec.is_some_and(|spec| {
        spec.security_context
            .as_ref()
            .and_then(|s| s.run_as_non_root)
            == Some(true)
            && spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .all(|c| {
                    c.security_context
                        .as_ref()
                        .and_then(|s| s.allow_privilege_escalation)
                        == Some(false)
                })
    })
}

/// Server-side dry run of a Pod built from a template: `Ok` when admission admits it.
async fn admit(client: &Client, namespace: &str, template: &PodTemplateSpec) -> Result<(), String> {
    let pod = Pod {
        metadata: kube::api::ObjectMeta {
            name: Some("probe".into()),
            ..Default::default()
        },
        spec: template.spec.clone(),
        ..Default::default()
    };
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&params, &pod)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn namespace_labels(client: &Client, namespace: &str) -> BTreeMap<String, String> {
    Api::<Namespace>::all(client.clone())
        .get(namespace)
        .await
        .expect("namespace")
        .labels()
        .clone()
}

#[tokio::test]
async fn insecure_deployment_is_hardened_and_admitted_by_restricted_pod_security() {
    let (client, ns) = setup("harden").await;
    let original = create_deployment(&client, &ns, INSECURE).await;
    let _operator = Operator::start(&ns).await;
    create_policy(&client, &ns, &policy("baseline", "")).await;

    let status = wait_status(&client, &ns, "baseline", "Ready and Compliant", |s| {
        condition(s, "Ready") == Some(("True", "Reconciled"))
            && condition(s, "Compliant") == Some(("True", "AllChecksPass"))
    })
    .await;
    assert_eq!(status.compliance.as_ref().map(|c| c.score), Some(100));
    assert_eq!(
        status.workloads.as_ref().map(|w| (w.matched, w.hardened)),
        Some((1, 1))
    );

    let hardened = deployment(&client, &ns, "insecure").await;
    assert!(is_hardened(&hardened), "not hardened: {:?}", hardened.spec);
    let labels = namespace_labels(&client, &ns).await;
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );

    // The real Pod Security Admission is the oracle: the namespace now enforces restricted.
    let hardened_template = hardened.spec.template;
    admit(&client, &ns, &hardened_template)
        .await
        .expect("hardened pod admitted");
    let refused = admit(&client, &ns, &original.spec.template).await;
    let message = refused.expect_err("original pod must be refused");
    assert!(message.contains("violates PodSecurity"), "{message}");
}

#[tokio::test]
async fn audit_mode_changes_no_workload_but_reports_failing_checks() {
    let (client, ns) = setup("audit").await;
    let original = create_deployment(&client, &ns, INSECURE).await;
    let _operator = Operator::start(&ns).await;
    create_policy(&client, &ns, &policy("audit", "  mode: Audit\n")).await;

    let status = wait_status(&client, &ns, "audit", "Audit report", |s| {
        condition(s, "Ready") == Some(("True", "Auditing"))
    })
    .await;
    assert_eq!(
        condition(&status, "Compliant"),
        Some(("False", "ChecksFailing"))
    );
    let non_root = check(&status, "pod.run-as-non-root");
    assert_eq!(non_root.result, CheckResult::Fail);
    assert!(
        non_root
            .objects
            .contains(&"Deployment/insecure container app".to_string())
    );
    assert!(
        non_root
            .objects
            .contains(&"Deployment/insecure init container setup".to_string())
    );
    assert_eq!(
        check(&status, "pod.seccomp-profile").result,
        CheckResult::Fail
    );

    let now = deployment(&client, &ns, "insecure").await;
    assert_eq!(
        now.resource_version(),
        original.resource_version(),
        "audit must not write"
    );
    assert!(
        !namespace_labels(&client, &ns)
            .await
            .contains_key("pod-security.kubernetes.io/enforce")
    );
}

#[tokio::test]
async fn deleting_the_policy_releases_applied_fields_and_namespace_labels() {
    let (client, ns) = setup("release").await;
    create_deployment(&client, &ns, INSECURE).await;
    let _operator = Operator::start(&ns).await;
    create_policy(&client, &ns, &policy("baseline", "")).await;
    wait_status(&client, &ns, "baseline", "Ready", |s| {
        condition(s, "Ready") == Some(("True", "Reconciled"))
    })
    .await;
    assert!(is_hardened(&deployment(&client, &ns, "insecure").await));

    let policies: Api<GoREALSecurityPolicy> = Api::namespaced(client.clone(), &ns);
    policies
        .delete("baseline", &DeleteParams::default())
        .await
        .expect("delete policy");
    wait_until("policy gone after finalizer", || async {
        policies.get_opt("baseline").await.ok().flatten().is_none()
    })
    .await;

    let released = deployment(&client, &ns, "insecure").await;
    let spec = released.spec.template.spec.clone().expect("pod spec");
    assert!(
        spec.security_context
            .as_ref()
            .and_then(|s| s.run_as_non_root)
            .is_none()
    );
    assert!(
        spec.volumes.unwrap_or_default().is_empty(),
        "writable volumes released"
    );
    assert!(
        spec.containers[0].security_context.is_none(),
        "{:?}",
        spec.containers[0].security_context
    );
    assert!(
        !released
            .annotations()
            .contains_key("security.goreal.io/hardened-by")
    );
    let labels = namespace_labels(&client, &ns).await;
    assert!(
        !labels
            .keys()
            .any(|k| k.starts_with("pod-security.kubernetes.io/")),
        "{labels:?}"
    );
}

#[tokio::test]
async fn a_converged_world_is_reconciled_without_any_write() {
    let (client, ns) = setup("quiet").await;
    create_deployment(&client, &ns, INSECURE).await;
    let operator = Operator::start(&ns).await;
    // 1024Mi comes back from the API server as 1Gi: still converged.
    // Network policies too: their live form (with the API server's defaults) must count as
    // current.
    let mut quiet = policy(
        "baseline",
        "  networkPolicy:\n    defaultDeny: [Ingress, Egress]\n    ingress:\n    - name: web\n      ports: [{port: 80}, {port: http, protocol: TCP}]\n      from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}, {namespaceSelector: {}, podSelector: {matchLabels: {a: b}}}]\n    - name: any\n      ports: [{port: 8000, endPort: 8100}]\n      allowAll: true\n",
    );
    quiet
        .spec
        .pod_security
        .as_mut()
        .expect("pod security")
        .writable_paths[0]
        .size_limit = "1024Mi".into();
    create_policy(&client, &ns, &quiet).await;
    wait_status(&client, &ns, "baseline", "Ready", |s| {
        condition(s, "Ready") == Some(("True", "Reconciled"))
    })
    .await;
    wait_until("hardened", || async {
        is_hardened(&deployment(&client, &ns, "insecure").await)
    })
    .await;

    operator.reconcile_all_and_wait().await;
    let converging = operator.take_writes();
    assert!(
        converging.iter().any(|w| w.contains("/networkpolicies/")),
        "the first pass must have written the network policies: {converging:?}"
    );
    operator.reconcile_all_and_wait().await;
    operator.reconcile_all_and_wait().await;
    // Not even reads: the namespace and the workloads come from the watch caches.
    assert_eq!(
        operator.take_requests(),
        Vec::<String>::new(),
        "requests in a converged world"
    );
}

#[tokio::test]
async fn a_workload_created_after_the_policy_is_hardened() {
    let (client, ns) = setup("later").await;
    let _operator = Operator::start(&ns).await;
    create_policy(&client, &ns, &policy("baseline", "")).await;
    wait_status(&client, &ns, "baseline", "Ready", |s| {
        condition(s, "Ready") == Some(("True", "Reconciled"))
    })
    .await;
    create_deployment(&client, &ns, INSECURE).await;
    wait_until("late workload hardened", || async {
        is_hardened(&deployment(&client, &ns, "insecure").await)
    })
    .await;
    wait_status(&client, &ns, "baseline", "one hardened workload", |s| {
        s.workloads
            .as_ref()
            .is_some_and(|w| w.matched == 1 && w.hardened == 1)
    })
    .await;
}

/// Creates the insecure Deployment through another field manager that holds
/// `runAsNonRoot: false`, as a GitOps tool applying its manifest would.
async fn apply_as_gitops_tool(client: &Client, namespace: &str) -> Api<Deployment> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let mut owned: Value = serde_json::to_value(yaml::<Deployment>(INSECURE)).expect("json");
    owned["spec"]["template"]["spec"]["securityContext"] = json!({ "runAsNonRoot": false });
    let params = PatchParams::apply("gitops-tool");
    api.patch("insecure", &params, &Patch::Apply(&owned))
        .await
        .expect("apply as gitops-tool");
    api
}

#[tokio::test]
async fn a_field_held_by_another_manager_is_reported_not_fought_over() {
    let (client, ns) = setup("conflict").await;
    apply_as_gitops_tool(&client, &ns).await;
    let operator = Operator::start(&ns).await;
    create_policy(&client, &ns, &policy("baseline", "")).await;

    let status = wait_status(&client, &ns, "baseline", "conflict reported", |s| {
        condition(s, "Ready") == Some(("False", "FieldConflict"))
    })
    .await;
    let ownership = check(&status, "pod.field-ownership");
    assert_eq!(ownership.result, CheckResult::Fail);
    assert!(
        ownership.message.contains("gitops-tool"),
        "{}",
        ownership.message
    );
    assert!(
        ownership.message.contains("runAsNonRoot"),
        "{}",
        ownership.message
    );
    assert_eq!(
        check(&status, "pod.run-as-non-root").result,
        CheckResult::Fail
    );
    let live = deployment(&client, &ns, "insecure").await;
    assert!(
        !is_hardened(&live),
        "nothing of a conflicting apply is written"
    );

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    wait_until("FieldConflict event", || async {
        events.list(&ListParams::default()).await.is_ok_and(|list| {
            list.items.iter().any(|e| {
                e.reason.as_deref() == Some("FieldConflict")
                    && e.message
                        .as_deref()
                        .is_some_and(|m| m.contains("gitops-tool"))
            })
        })
    })
    .await;

    // No retry loop: reconciling the unchanged world again sends nothing at all.
    operator.reconcile_all_and_wait().await;
    operator.take_writes();
    operator.reconcile_all_and_wait().await;
    assert_eq!(operator.take_writes(), Vec::<String>::new());

    // `force: true` takes the field over.
    let policies: Api<GoREALSecurityPolicy> = Api::namespaced(client.clone(), &ns);
    policies
        .patch(
            "baseline",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "force": true } })),
        )
        .await
        .expect("set force");
    wait_status(&client, &ns, "baseline", "forced", |s| {
        condition(s, "Ready") == Some(("True", "Reconciled"))
    })
    .await;
    assert!(is_hardened(&deployment(&client, &ns, "insecure").await));
}

#[tokio::test]
async fn the_api_server_refuses_specs_the_schema_rules_out() {
    let (client, ns) = setup("schema").await;
    let cases = [
        ("mode: Sometimes", "spec.mode"),
        (
            "podSecurity: {capabilities: {add: [SYS_ADMIN]}}",
            "spec.podSecurity.capabilities.add",
        ),
        (
            "podSecurity: {capabilities: {add: [ALL]}}",
            "spec.podSecurity.capabilities.add",
        ),
        (
            "podSecurity: {capabilities: {drop: [net_raw]}}",
            "spec.podSecurity.capabilities.drop[0]",
        ),
        (
            "podSecurity: {exemptions: [{workload: legacy, reason: ' '}]}",
            "spec.podSecurity.exemptions[0].reason",
        ),
        (
            "podSecurity: {exemptions: [{workload: legacy}]}",
            "spec.podSecurity.exemptions[0].reason",
        ),
        (
            "podSecurity: {writablePaths: [{path: /var/../etc}]}",
            "path must be clean",
        ),
        (
            "podSecurity: {writablePaths: [{path: tmp}]}",
            "path must be absolute",
        ),
        (
            "podSecurity: {writablePaths: [{path: /tmp, sizeLimit: lots}]}",
            "positive quantity",
        ),
        (
            "podSecurity: {level: restricted, allowPrivilegeEscalation: true}",
            "allowPrivilegeEscalation must be false",
        ),
        (
            "podSecurity: {seccompProfile: {type: Localhost}}",
            "localhostProfile is required",
        ),
        (
            "networkPolicy: {ingress: [{name: a, from: [{ipBlock: {cidr: 10.0.0.1/8}}]}]}",
            "must have no host bits set",
        ),
        (
            "networkPolicy: {ingress: [{name: a, from: [{ipBlock: {cidr: '2001:db8::/32', except: [10.0.0.0/8]}}]}]}",
            "every except must be a network address",
        ),
        (
            "networkPolicy: {ingress: [{name: a, ports: [{port: 80}]}]}",
            "from is empty, which admits every source",
        ),
        (
            "networkPolicy: {ingress: [{name: a, allowAll: true, ports: [{port: http, endPort: 90}]}]}",
            "endPort needs a numeric port",
        ),
        (
            "networkPolicy: {ingress: [{name: a, allowAll: true, ports: [{port: 70000}]}]}",
            "port must be between 1 and 65535",
        ),
        (
            "networkPolicy: {defaultDeny: [Ingress], egress: [{name: a, allowAll: true}]}",
            "egress rules need Egress in defaultDeny",
        ),
        (
            "networkPolicy: {ingress: [{name: a, allowAll: true}, {name: a, allowAll: true}]}",
            "ingress rule names must be unique",
        ),
        (
            "networkPolicy: {ingress: [{name: a, from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
            "a peer is either an ipBlock",
        ),
        (
            "networkPolicy: {defaultDeny: [Egress], egress: [{name: a, ports: [{port: https}], to: [{ipBlock: {cidr: 10.0.0.0/8}}]}]}",
            "an ipBlock destination cannot resolve a port name",
        ),
        (
            "secretRotation: {secrets: [{name: db, keys: [{key: a}]}, {name: db, keys: [{key: b}]}]}",
            "secret names must be unique",
        ),
        (
            "secretRotation: {secrets: [{name: db, keys: [{key: a}, {key: a}]}]}",
            "keys must be unique",
        ),
        (
            "secretRotation: {secrets: [{name: db, keys: [{key: a, length: 8}]}]}",
            "spec.secretRotation.secrets[0].keys[0].length",
        ),
        (
            "secretRotation: {secrets: [{name: db, keys: [{key: a.previous}]}]}",
            "keys ending in .previous hold previous values",
        ),
        (
            "secretRotation: {secrets: [{name: db, keys: [{key: a}], interval: 90 days}]}",
            "spec.secretRotation.secrets[0].interval",
        ),
        (
            "secretRotation: {secrets: [{name: db, keys: [{key: a}], restart: {strategy: Selector}}]}",
            "selector is required for strategy Selector",
        ),
        (
            "secretRotation: {secrets: [{name: db, keys: [{key: a, charset: emoji}]}]}",
            "spec.secretRotation.secrets[0].keys[0].charset",
        ),
        (
            "secretRotation: {secrets: [{name: DB, keys: [{key: a}]}]}",
            "spec.secretRotation.secrets[0].name",
        ),
    ];
    let cases: Vec<(String, &str)> = cases
        .iter()
        .map(|(spec, expected)| (spec.to_string(), *expected))
        .collect();
    common::assert_schema_refuses(&client, &ns, &cases).await;
}

#[tokio::test]
async fn an_invalid_policy_is_not_ready_and_applies_nothing() {
    let (client, ns) = setup("invalid").await;
    let original = create_deployment(&client, &ns, INSECURE).await;
    let _operator = Operator::start(&ns).await;
    let bad = policy(
        "bad",
        "  selector:\n    matchLabels:\n      'bad key!': api\n",
    );
    create_policy(&client, &ns, &bad).await;

    let status = wait_status(&client, &ns, "bad", "InvalidSpec", |s| {
        condition(s, "Ready") == Some(("False", "InvalidSpec"))
    })
    .await;
    let message = condition_message(&status, "Ready");
    assert!(message.contains("spec.selector.matchLabels"), "{message}");
    assert!(status.compliance.is_none());
    let now = deployment(&client, &ns, "insecure").await;
    assert_eq!(now.resource_version(), original.resource_version());
    assert!(
        !namespace_labels(&client, &ns)
            .await
            .contains_key("pod-security.kubernetes.io/enforce")
    );
}

/// Every field present in `expected` has the same value in `actual`.
fn assert_subset(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                let found = a
                    .get(key)
                    .unwrap_or_else(|| panic!("{path}.{key} lost in round trip"));
                assert_subset(value, found, &format!("{path}.{key}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{path} length");
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                assert_subset(ev, av, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(expected, actual, "{path}"),
    }
}

#[tokio::test]
async fn every_field_of_the_example_policy_survives_the_api_server() {
    let (client, ns) = setup("roundtrip").await;
    let text = std::fs::read_to_string("examples/goreal/10-policy.yaml").expect("example");
    let mut written: Value = yaml(&text);
    written["metadata"]["namespace"] = json!(ns);
    let api: Api<GoREALSecurityPolicy> = Api::namespaced(client.clone(), &ns);
    let typed: GoREALSecurityPolicy = serde_json::from_value(written.clone()).expect("typed");
    let created = api
        .create(&PostParams::default(), &typed)
        .await
        .expect("create example");
    let read_back =
        serde_json::to_value(api.get(&created.name_any()).await.expect("get")).expect("json");
    assert_subset(&written["spec"], &read_back["spec"], "spec");
    assert_eq!(created.spec, typed.spec);
}

#[tokio::test]
async fn two_policies_selecting_one_workload_do_not_fight() {
    let (client, ns) = setup("two").await;
    create_deployment(&client, &ns, INSECURE).await;
    let operator = Operator::start(&ns).await;
    create_policy(&client, &ns, &policy("first", "")).await;
    wait_status(&client, &ns, "first", "first Ready", |s| {
        condition(s, "Ready") == Some(("True", "Reconciled"))
    })
    .await;
    let mut second_policy = policy("second", "");
    second_policy
        .spec
        .pod_security
        .as_mut()
        .expect("pod security")
        .run_as_user = Some(2000);
    create_policy(&client, &ns, &second_policy).await;

    let status = wait_status(&client, &ns, "second", "second reports the first", |s| {
        s.compliance.is_some()
    })
    .await;
    let ownership = check(&status, "pod.field-ownership");
    assert_eq!(ownership.result, CheckResult::Fail);
    assert!(
        ownership.message.contains("policy first"),
        "{}",
        ownership.message
    );

    operator.reconcile_all_and_wait().await;
    operator.take_writes();
    operator.reconcile_all_and_wait().await;
    operator.reconcile_all_and_wait().await;
    assert_eq!(
        operator.take_writes(),
        Vec::<String>::new(),
        "the policies must not take turns"
    );
    let live = deployment(&client, &ns, "insecure").await;
    assert_eq!(
        live.annotations()
            .get("security.goreal.io/hardened-by")
            .map(String::as_str),
        Some("first")
    );
    let pod = live
        .spec
        .template
        .spec
        .expect("pod spec")
        .security_context
        .expect("context");
    assert_eq!(
        pod.run_as_user, None,
        "the second policy's runAsUser was not applied"
    );
}

const MIXED: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: postgres, image: "postgres:16.6-alpine", resources: {limits: {cpu: 1, memory: 1Gi}}}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: backup}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: backup}}
        spec:
          restartPolicy: OnFailure
          containers: [{name: dump, image: "postgres:16.6-alpine", resources: {limits: {cpu: 1, memory: 1Gi}}}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    metadata: {labels: {app: migrate}}
    spec:
      restartPolicy: Never
      containers: [{name: run, image: "ghcr.io/goreal/api:1.8.3", resources: {limits: {cpu: 1, memory: 1Gi}}}]
"#;

#[tokio::test]
async fn stateful_sets_and_cron_jobs_are_hardened_and_jobs_only_checked() {
    let (client, ns) = setup("kinds").await;
    for document in MIXED.split("\n---\n") {
        let object: DynamicObject = yaml(document);
        let kind = object.types.as_ref().expect("types").kind.clone();
        let (group, version) = match kind.as_str() {
            "StatefulSet" => ("apps", "v1"),
            _ => ("batch", "v1"),
        };
        let resource = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            group, version, &kind,
        ));
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &resource)
            .create(&PostParams::default(), &object)
            .await
            .expect("create workload");
    }
    let _operator = Operator::start(&ns).await;
    create_policy(&client, &ns, &policy("baseline", "")).await;

    let status = wait_status(
        &client,
        &ns,
        "baseline",
        "Ready with three workloads",
        |s| {
            condition(s, "Ready") == Some(("True", "Reconciled"))
                && s.workloads.as_ref().is_some_and(|w| w.matched == 3)
        },
    )
    .await;
    let workloads = status.workloads.clone().expect("workloads");
    assert_eq!(workloads.immutable, vec!["Job/migrate".to_string()]);
    assert_eq!(workloads.hardened, 2);
    let sts: k8s_openapi::api::apps::v1::StatefulSet = Api::namespaced(client.clone(), &ns)
        .get("db")
        .await
        .expect("sts");
    let pod = sts.spec.template.spec.expect("pod spec");
    assert_eq!(
        pod.security_context.and_then(|s| s.run_as_non_root),
        Some(true)
    );
    let cron: k8s_openapi::api::batch::v1::CronJob = Api::namespaced(client.clone(), &ns)
        .get("backup")
        .await
        .expect("cronjob");
    let template = cron.spec.job_template.spec.expect("job").template;
    let container = &template.spec.expect("pod spec").containers[0];
    let context = container
        .security_context
        .as_ref()
        .expect("container context");
    assert_eq!(context.allow_privilege_escalation, Some(false));
    assert_eq!(
        check(&status, "pod.hardening-accepted").result,
        CheckResult::Pass
    );
}

#[tokio::test]
async fn namespace_labels_held_by_another_manager_are_reported_once_not_retried() {
    let (client, ns) = setup("nslabels").await;
    let labels = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns,
        "labels": { "pod-security.kubernetes.io/enforce": "baseline" } } });
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &PatchParams::apply("platform-gitops"),
            &Patch::Apply(&labels),
        )
        .await
        .expect("label as another manager");
    create_deployment(&client, &ns, INSECURE).await;
    let operator = Operator::start(&ns).await;
    create_policy(&client, &ns, &policy("baseline", "")).await;

    let status = wait_status(&client, &ns, "baseline", "namespace conflict", |s| {
        condition(s, "Ready") == Some(("False", "FieldConflict"))
    })
    .await;
    assert!(
        check(&status, "pod.field-ownership")
            .message
            .contains("platform-gitops")
    );
    assert!(
        is_hardened(&deployment(&client, &ns, "insecure").await),
        "workloads still applied"
    );
    operator.reconcile_all_and_wait().await;
    operator.take_writes();
    operator.reconcile_all_and_wait().await;
    assert_eq!(operator.take_writes(), Vec::<String>::new());
}

#[tokio::test]
async fn workload_status_updates_do_not_retry_a_refused_apply() {
    let (client, ns) = setup("churn").await;
    let api = apply_as_gitops_tool(&client, &ns).await;
    let operator = Operator::start(&ns).await;
    create_policy(&client, &ns, &policy("baseline", "")).await;
    wait_status(&client, &ns, "baseline", "conflict", |s| {
        condition(s, "Ready") == Some(("False", "FieldConflict"))
    })
    .await;
    operator.reconcile_all_and_wait().await;
    operator.take_writes();

    // What the Deployment controller does during a rollout: status changes, spec does not.
    for observed in 1..=3 {
        let status = json!({ "status": { "observedGeneration": observed, "replicas": observed } });
        api.patch_status("insecure", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("status update");
    }
    operator.reconcile_all_and_wait().await;
    let writes = operator.take_writes();
    assert!(
        !writes.iter().any(|w| w.contains("/deployments/")),
        "{writes:?}"
    );
}

#[tokio::test]
async fn a_namespace_label_removed_by_hand_is_restored() {
    let (client, ns) = setup("relabel").await;
    let _operator = Operator::start(&ns).await;
    create_policy(&client, &ns, &policy("baseline", "")).await;
    let enforce = "pod-security.kubernetes.io/enforce";
    wait_until("namespace labelled", || async {
        namespace_labels(&client, &ns).await.contains_key(enforce)
    })
    .await;
    let removal = json!({ "metadata": { "labels": { enforce: null } } });
    Api::<Namespace>::all(client.clone())
        .patch(&ns, &PatchParams::default(), &Patch::Merge(&removal))
        .await
        .expect("remove label");
    wait_until("label restored", || async {
        namespace_labels(&client, &ns)
            .await
            .get(enforce)
            .map(String::as_str)
            == Some("restricted")
    })
    .await;
}

#[tokio::test]
async fn a_foreign_config_map_holding_the_rules_name_is_left_alone() {
    // The operator's ConfigMap cache holds only its own objects; this one it must read first.
    let (client, ns) = setup("foreigncm").await;
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &ns);
    let foreign: k8s_openapi::api::core::v1::ConfigMap = yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: team-alert-rules\ndata:\n  keep.yaml: precious\n",
    );
    let created = config_maps
        .create(&PostParams::default(), &foreign)
        .await
        .expect("create foreign ConfigMap");
    let operator = Operator::start(&ns).await;
    let policy: GoREALSecurityPolicy = yaml(
        "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\nmetadata:\n  name: team\nspec:\n  alerting: {}\n",
    );
    create_policy(&client, &ns, &policy).await;
    let status = wait_status(&client, &ns, "team", "rules not in place", |s| {
        condition(s, "AlertRules").is_some()
    })
    .await;
    assert_eq!(
        condition(&status, "AlertRules"),
        Some(("False", "NotInPlace"))
    );
    assert_eq!(
        condition(&status, "Ready"),
        Some(("False", "ApplyRejected"))
    );
    let in_place = check(&status, "alerting.rules-in-place");
    assert_eq!(in_place.result, CheckResult::Fail);
    assert!(
        in_place.message.contains("409 AlreadyExists"),
        "{}",
        in_place.message
    );
    let now = config_maps.get("team-alert-rules").await.expect("foreign");
    assert_eq!(now.resource_version(), created.resource_version());
    assert!(now.labels().is_empty() && now.owner_references().is_empty());

    // Each later look reads the name again (no watch reports on foreign ConfigMaps) but writes
    // nothing: no apply, no repeated event, no status patch.
    operator.reconcile_all_and_wait().await;
    operator.take_requests();
    operator.reconcile_all_and_wait().await;
    assert_eq!(
        operator.take_requests(),
        [format!(
            "GET /api/v1/namespaces/{ns}/configmaps/team-alert-rules"
        )]
    );

    // Once the name is free, the policy's own ConfigMap goes in at the next look (30 s later,
    // or at once here, where the test asks for a reconcile).
    config_maps
        .delete("team-alert-rules", &DeleteParams::default())
        .await
        .expect("delete foreign");
    operator.reconcile_all_and_wait().await;
    wait_until("the policy's own ConfigMap", || async {
        config_maps
            .get_opt("team-alert-rules")
            .await
            .ok()
            .flatten()
            .is_some_and(|c| !c.labels().is_empty())
    })
    .await;
}
