//! Secrets: which Secret to create, adopt, rotate or complete, when the next rotation falls due,
//! which workloads read each Secret and which of them still have to restart onto its current
//! version, and the checks. Pure: the clock is `Observed::now`, and values come from a closure.
//!
//! The restart marker on a consumer's pod template is the Secret's content version, so it changes
//! only when the Secret's values do: restarting the operator or re-listing never rolls anything,
//! and a reconcile interrupted between the Secret update and the restarts finishes them later.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{PodSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use crate::compliance::{self, Evaluation, Violation};
use crate::crd::{Mode, SecretStatus};
use crate::model::{
    KeySpec, ManagedSecret, PREVIOUS_SUFFIX, Restart, SecretSettings, ValidatedPolicy,
};
use crate::names;
use crate::observed::{Observed, SecretMeta, Workload, WorkloadKind};
use crate::secret_value::{RandomSourceError, SecretValue};

/// Component label value of the Secrets.
pub const COMPONENT: &str = "secrets";

/// What the secrets capability wants, per Secret and per consumer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecretsPlan {
    /// One entry per managed Secret, in spec order.
    pub secrets: Vec<SecretPlan>,
    /// Restart-marker applies for consumers that still run an older version.
    pub restarts: Vec<RestartPatch>,
    /// The workloads the policy selects, for the checks on how they read secrets.
    pub selected: Vec<Workload>,
    /// The time the plan was made at.
    pub now: Timestamp,
}

impl SecretsPlan {
    /// The earliest scheduled rotation still ahead of `now`, to requeue for.
    pub fn next_due(&self, now: Timestamp) -> Option<Timestamp> {
        self.secrets
            .iter()
            .filter_map(|s| s.next_rotation)
            .filter(|t| *t > now)
            .min()
    }
}

/// One Secret's state and the write it needs.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretPlan {
    /// Secret name.
    pub name: String,
    /// Who holds the name.
    pub state: SecretState,
    /// The write needed now, if any (never for a conflict).
    pub action: Option<SecretAction>,
    /// Content version of the live Secret.
    pub version: Option<u64>,
    /// When the live values were generated or adopted.
    pub rotated_at: Option<Timestamp>,
    /// When the next scheduled rotation falls due.
    pub next_rotation: Option<Timestamp>,
    /// The interval, for the overdue check.
    pub interval: jiff::SignedDuration,
    /// Consumers that run the current version.
    pub restarted: Vec<String>,
    /// Consumers that still have to restart onto it.
    pub pending: Vec<String>,
    /// Consumers controlled by another operator: never restarted.
    pub unmanaged: Vec<String>,
}

/// Who holds a Secret's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretState {
    /// The policy's own Secret.
    Managed,
    /// No Secret of that name exists.
    Missing,
    /// A Secret the policy may not take holds the name; the text says whose.
    Conflict(String),
}

/// A write to a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretAction {
    /// Generate every key into a new Secret.
    Create,
    /// Take over a foreign Secret, keeping its values (missing keys are generated).
    Adopt,
    /// Generate every key anew, keeping the old values as `.previous` when configured.
    Rotate(RotationCause),
    /// Generate keys the spec names that the Secret lacks; version unchanged, nothing restarts.
    AddKeys(Vec<String>),
}

/// Why a rotation happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationCause {
    /// The interval has passed.
    Due,
    /// The rotate-now annotation carries a value not acted on yet.
    Requested,
}

impl RotationCause {
    /// Lower-case word for events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RotationCause::Due => "scheduled",
            RotationCause::Requested => "requested",
        }
    }
}

/// A server-side apply of restart markers on one workload.
#[derive(Clone, Debug, PartialEq)]
pub struct RestartPatch {
    /// Workload kind.
    pub kind: WorkloadKind,
    /// Workload name.
    pub name: String,
    /// The apply body: the pod template's marker annotations only.
    pub body: Value,
}

impl RestartPatch {
    /// `Kind/name`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.name)
    }
}

/// Plans every Secret of the section against the observed Secrets' metadata and workloads.
pub fn plan(
    policy: &ValidatedPolicy,
    settings: &SecretSettings,
    observed: &Observed,
    selected: Vec<Workload>,
) -> SecretsPlan {
    let mut secrets: Vec<SecretPlan> = settings
        .secrets
        .iter()
        .map(|secret| {
            let live = observed.secrets.iter().find(|s| s.name == secret.name);
            plan_one(policy, secret, live, observed.now)
        })
        .collect();
    let restarts = restarts(policy, settings, observed, &mut secrets);
    SecretsPlan {
        secrets,
        restarts,
        selected,
        now: observed.now,
    }
}

/// Plans one Secret against its live metadata (`None`: no Secret of that name), without its
/// consumers: what the controller checks again against a freshly read Secret before writing.
pub fn plan_one(
    policy: &ValidatedPolicy,
    secret: &ManagedSecret,
    live: Option<&SecretMeta>,
    now: Timestamp,
) -> SecretPlan {
    let mut plan = SecretPlan {
        name: secret.name.clone(),
        state: SecretState::Missing,
        action: None,
        version: None,
        rotated_at: None,
        next_rotation: None,
        interval: secret.interval,
        restarted: Vec::new(),
        pending: Vec::new(),
        unmanaged: Vec::new(),
    };
    let Some(live) = live else {
        plan.action = Some(SecretAction::Create);
        return plan;
    };
    match holder(&policy.name, live) {
        Holder::This => {}
        Holder::OtherPolicy(other) => {
            plan.state = SecretState::Conflict(format!("managed by policy {other}"));
            return plan;
        }
        Holder::Foreign if secret.adopt => {
            plan.action = Some(SecretAction::Adopt);
            return plan;
        }
        Holder::Foreign => {
            plan.state = SecretState::Conflict(
                "exists and is not managed by the operator: left untouched (set adopt: true to take it over)"
                    .into(),
            );
            return plan;
        }
    }
    plan.state = SecretState::Managed;
    plan.version = Some(version_of(live));
    let rotated_at = live
        .annotations
        .get(names::ROTATED_AT_ANNOTATION)
        .and_then(|t| t.parse::<Timestamp>().ok())
        .or(live.created);
    plan.rotated_at = rotated_at;
    plan.next_rotation = rotated_at.and_then(|t| t.checked_add(secret.interval).ok());
    let requested = policy.rotate_request.as_ref().is_some_and(|request| {
        request.concerns(&secret.name)
            && live.annotations.get(names::ROTATION_REQUEST_ANNOTATION) != Some(&request.value)
    });
    let due = plan.next_rotation.is_none_or(|due| now >= due);
    let recorded: Vec<&str> = live
        .annotations
        .get(names::SECRET_KEYS_ANNOTATION)
        .map(|keys| keys.split(',').collect())
        .unwrap_or_default();
    let missing: Vec<String> = secret
        .keys
        .iter()
        .map(|k| k.key.clone())
        .filter(|k| !recorded.contains(&k.as_str()))
        .collect();
    plan.action = if requested {
        Some(SecretAction::Rotate(RotationCause::Requested))
    } else if due {
        Some(SecretAction::Rotate(RotationCause::Due))
    } else if !missing.is_empty() {
        Some(SecretAction::AddKeys(missing))
    } else {
        None
    };
    plan
}

enum Holder {
    This,
    OtherPolicy(String),
    Foreign,
}

fn holder(policy: &str, live: &SecretMeta) -> Holder {
    let label = |key: &str| live.labels.get(key).map(String::as_str);
    let ours = label(names::MANAGED_BY_LABEL) == Some(names::MANAGED_BY_VALUE)
        && label(names::COMPONENT_LABEL) == Some(COMPONENT);
    match label(names::POLICY_LABEL) {
        Some(owner) if ours && owner == names::policy_label_value(policy) => Holder::This,
        Some(owner) if ours => Holder::OtherPolicy(owner.to_string()),
        _ => Holder::Foreign,
    }
}

/// The content version a Secret's annotation records; 1 when absent or unreadable.
fn version_of(live: &SecretMeta) -> u64 {
    live.annotations
        .get(names::SECRET_VERSION_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The pod-template annotation that carries a Secret's version on its consumers.
pub fn marker_key(secret: &str) -> String {
    format!("{}{secret}", names::RESTART_MARKER_PREFIX)
}

/// Finds consumers of each managed Secret, sorts them into restarted, pending and unmanaged, and
/// builds one marker apply per workload with something pending.
fn restarts(
    policy: &ValidatedPolicy,
    settings: &SecretSettings,
    observed: &Observed,
    plans: &mut [SecretPlan],
) -> Vec<RestartPatch> {
    let mut markers: BTreeMap<(WorkloadKind, String), (bool, BTreeMap<String, String>)> =
        BTreeMap::new();
    for (secret, plan) in settings.secrets.iter().zip(plans.iter_mut()) {
        let (Some(version), SecretState::Managed) = (plan.version, &plan.state) else {
            continue;
        };
        for workload in observed.workloads.iter().filter(|w| restartable(w)) {
            if !restarts_for(secret, workload) {
                continue;
            }
            let reference = workload.reference();
            if workload.is_unmanaged() {
                plan.unmanaged.push(reference);
                continue;
            }
            let key = marker_key(&secret.name);
            let current = template_annotation(workload, &key);
            let marked = current.and_then(|v| v.parse::<u64>().ok());
            // Version 1 values were there before any consumer could read them, and a workload
            // created after the last rotation started with the current values.
            let started_current = current.is_none()
                && (version <= 1
                    || matches!((workload.created, plan.rotated_at), (Some(c), Some(r)) if c > r));
            // A marker ahead of the version means the Secret cache lags behind a rotation just
            // made: the workload is current, and its marker must never go back.
            let pending = marked.is_none_or(|m| m < version) && !started_current;
            let marker = marked.map_or(version, |m| m.max(version));
            if pending {
                plan.pending.push(reference);
            } else {
                plan.restarted.push(reference);
            }
            if pending || current.is_some() {
                let entry = markers
                    .entry((workload.kind, workload.name.clone()))
                    .or_default();
                entry.0 |= pending;
                entry.1.insert(key, marker.to_string());
            }
        }
    }
    if policy.mode == Mode::Audit {
        return Vec::new();
    }
    markers
        .into_iter()
        .filter(|(_, (pending, _))| *pending)
        .map(|((kind, name), (_, annotations))| RestartPatch {
            body: json!({
                "apiVersion": kind.api_version(),
                "kind": kind.as_str(),
                "metadata": { "name": name, "namespace": policy.namespace },
                "spec": kind.nest_template(json!({ "metadata": { "annotations": annotations } })),
            }),
            kind,
            name,
        })
        .collect()
}

/// Records an applied restart patch on the observed workload, as the API server now has it.
pub fn mark_restarted(workloads: &mut [Workload], patch: &RestartPatch) {
    let annotations = patch
        .body
        .pointer("/spec/template/metadata/annotations")
        .or_else(|| {
            patch
                .body
                .pointer("/spec/jobTemplate/spec/template/metadata/annotations")
        })
        .and_then(Value::as_object);
    let Some(annotations) = annotations else {
        return;
    };
    for workload in workloads
        .iter_mut()
        .filter(|w| w.kind == patch.kind && w.name == patch.name)
    {
        let live = workload
            .template
            .metadata
            .get_or_insert_with(Default::default)
            .annotations
            .get_or_insert_with(BTreeMap::new);
        for (key, value) in annotations {
            if let Some(value) = value.as_str() {
                live.insert(key.clone(), value.to_string());
            }
        }
    }
}

/// Kinds whose pod templates can be rolled by changing them (not Jobs, not ReplicaSets a
/// Deployment owns).
fn restartable(workload: &Workload) -> bool {
    matches!(
        workload.kind,
        WorkloadKind::Deployment
            | WorkloadKind::StatefulSet
            | WorkloadKind::DaemonSet
            | WorkloadKind::CronJob
    )
}

fn restarts_for(secret: &ManagedSecret, workload: &Workload) -> bool {
    match &secret.restart {
        Restart::None => false,
        Restart::Selector(selector) => selector.matches(&workload.template_labels()),
        Restart::Auto => {
            let keys = secret.key_names();
            workload.template.spec.as_ref().is_some_and(|spec| {
                references(spec, &secret.name)
                    .iter()
                    .any(|read| match read {
                        SecretRead::Whole => true,
                        SecretRead::Key(key) => keys.contains(key.as_str()),
                    })
            })
        }
    }
}

fn template_annotation<'a>(workload: &'a Workload, key: &str) -> Option<&'a str> {
    workload
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// How a pod reads a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRead {
    /// Every key (envFrom, or a volume without items).
    Whole,
    /// One key.
    Key(String),
}

/// Every read of the Secret `name` in a pod spec: env `secretKeyRef`, `envFrom` `secretRef`,
/// secret volumes and projected volume sources, in every kind of container.
pub fn references(spec: &PodSpec, name: &str) -> Vec<SecretRead> {
    let mut reads = Vec::new();
    // Ephemeral containers are another type with the same env fields.
    let environments = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| (c.env.as_ref(), c.env_from.as_ref()))
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|e| (e.env.as_ref(), e.env_from.as_ref())),
        );
    for (env, env_from) in environments {
        for env in env.into_iter().flatten() {
            if let Some(reference) = env
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                && reference.name == name
            {
                reads.push(SecretRead::Key(reference.key.clone()));
            }
        }
        for source in env_from.into_iter().flatten() {
            if source.secret_ref.as_ref().is_some_and(|r| r.name == name) {
                reads.push(SecretRead::Whole);
            }
        }
    }
    let mut by_items = |items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>| match items {
        Some(items) if !items.is_empty() => {
            reads.extend(items.iter().map(|i| SecretRead::Key(i.key.clone())));
        }
        _ => reads.push(SecretRead::Whole),
    };
    for volume in spec.volumes.iter().flatten() {
        if let Some(secret) = &volume.secret
            && secret.secret_name.as_deref() == Some(name)
        {
            by_items(secret.items.as_ref());
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(secret) = &source.secret
                && secret.name == name
            {
                by_items(secret.items.as_ref());
            }
        }
    }
    reads
}

/// The Secret to write for `action`: the live Secret (read fresh, so its resourceVersion guards
/// the update) with only the operator's keys and marks changed, or a new Secret. Values come from
/// `generate`; keys the spec does not name are never touched.
pub fn secret_content(
    policy: &ValidatedPolicy,
    secret: &ManagedSecret,
    live: Option<&Secret>,
    action: &SecretAction,
    now: Timestamp,
    generate: &mut dyn FnMut(&KeySpec) -> Result<SecretValue, RandomSourceError>,
) -> Result<Secret, RandomSourceError> {
    let mut next = live.cloned().unwrap_or_else(|| Secret {
        type_: Some("Opaque".into()),
        ..Secret::default()
    });
    next.metadata.name = Some(secret.name.clone());
    next.metadata.namespace = Some(policy.namespace.clone());
    next.metadata.managed_fields = None;
    let data = next.data.get_or_insert_with(BTreeMap::new);
    let live_version = live
        .map(|l| SecretMeta::from_meta(&l.metadata))
        .map(|meta| version_of(&meta));
    let version = match action {
        SecretAction::Create | SecretAction::Adopt => 1,
        SecretAction::Rotate(_) => live_version.unwrap_or(0) + 1,
        SecretAction::AddKeys(_) => live_version.unwrap_or(1),
    };
    for key in &secret.keys {
        let previous_key = format!("{}{PREVIOUS_SUFFIX}", key.key);
        match action {
            SecretAction::Rotate(_) => {
                let old = data.insert(key.key.clone(), bytes(&generate(key)?));
                match old {
                    Some(old) if secret.keep_previous => {
                        data.insert(previous_key, old);
                    }
                    // Without keepPrevious, an earlier previous value would now be two behind
                    // while calling itself the previous one.
                    _ if !secret.keep_previous => {
                        data.remove(&previous_key);
                    }
                    _ => {}
                }
            }
            SecretAction::Create | SecretAction::Adopt | SecretAction::AddKeys(_) => {
                if !data.contains_key(&key.key) {
                    data.insert(key.key.clone(), bytes(&generate(key)?));
                }
            }
        }
    }
    let labels = next.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(
        names::MANAGED_BY_LABEL.into(),
        names::MANAGED_BY_VALUE.into(),
    );
    labels.insert(
        names::POLICY_LABEL.into(),
        names::policy_label_value(&policy.name),
    );
    labels.insert(names::COMPONENT_LABEL.into(), COMPONENT.into());
    let annotations = next.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(names::SECRET_VERSION_ANNOTATION.into(), version.to_string());
    if !matches!(action, SecretAction::AddKeys(_)) {
        annotations.insert(
            names::ROTATED_AT_ANNOTATION.into(),
            now.round(jiff::Unit::Second).unwrap_or(now).to_string(),
        );
    }
    let keys: Vec<&str> = secret.keys.iter().map(|k| k.key.as_str()).collect();
    annotations.insert(names::SECRET_KEYS_ANNOTATION.into(), keys.join(","));
    // A new or adopted Secret has seen the current request; a rotation for another Secret's
    // request leaves the mark as it was.
    if let Some(request) = &policy.rotate_request
        && (request.concerns(&secret.name) || live.is_none())
    {
        annotations.insert(
            names::ROTATION_REQUEST_ANNOTATION.into(),
            request.value.clone(),
        );
    }
    if let Some(uid) = &policy.uid {
        let owners = next.metadata.owner_references.get_or_insert_with(Vec::new);
        if !owners.iter().any(|o| o.uid == *uid) {
            // Adopting into a Secret another controller owns must not make two controllers.
            let controller = !owners.iter().any(|o| o.controller == Some(true));
            owners.push(OwnerReference {
                api_version: format!("{}/v1alpha1", names::GROUP),
                kind: "GoREALSecurityPolicy".into(),
                name: policy.name.clone(),
                uid: uid.clone(),
                controller: Some(controller),
                block_owner_deletion: Some(true),
            });
        }
    }
    Ok(next)
}

/// A Secret as a status resource entry.
pub fn secret_reference(secret: &Secret) -> crate::crd::ResourceRef {
    crate::crd::ResourceRef {
        api_version: "v1".into(),
        kind: "Secret".into(),
        name: secret.metadata.name.clone().unwrap_or_default(),
    }
}

fn bytes(value: &SecretValue) -> ByteString {
    ByteString(value.expose().to_vec())
}

/// The status entries: versions, times and consumers, never values.
pub fn status(plan: &SecretsPlan) -> Vec<SecretStatus> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let listed = |names: &[String]| {
        names
            .iter()
            .take(compliance::MAX_LISTED_OBJECTS)
            .cloned()
            .collect::<Vec<_>>()
    };
    plan.secrets
        .iter()
        .map(|s| {
            let (state, message) = match &s.state {
                SecretState::Managed => ("Managed", String::new()),
                SecretState::Missing => ("Missing", "not created".to_string()),
                SecretState::Conflict(why) => ("Conflict", why.clone()),
            };
            SecretStatus {
                name: s.name.clone(),
                state: state.into(),
                version: s.version.and_then(|v| i64::try_from(v).ok()),
                last_rotation_time: s.rotated_at.map(Time),
                next_rotation_time: s.next_rotation.map(Time),
                restarted: listed(&s.restarted),
                pending: listed(&s.pending),
                pending_total: compliance::saturating_i32(s.pending.len()),
                unmanaged: listed(&s.unmanaged),
                message,
            }
        })
        .collect()
}

/// Names that mark an environment variable as secret-like.
const SECRET_LIKE: [&str; 8] = [
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "API_KEY",
    "APIKEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
];

/// Widest permission a mounted secret file may have: read for owner and group.
const WIDEST_SECRET_MODE: i32 = 0o440;
/// The kubelet's mode for secret files when none is set.
const DEFAULT_SECRET_MODE: i32 = 0o644;

/// The checks: every managed Secret rotated within its interval; no secret-like literal env
/// values; secret volumes no wider than 0440, on the workloads the policy selects.
pub fn evaluate(plan: &SecretsPlan) -> Vec<Evaluation> {
    let now = plan.now;
    let workloads = &plan.selected;
    let mut evaluations: Vec<Evaluation> = plan
        .secrets
        .iter()
        .map(|secret| {
            let detail = match (&secret.state, secret.next_rotation) {
                (SecretState::Conflict(why), _) => Some(format!("is not managed: {why}")),
                (SecretState::Missing, _) => Some("does not exist".to_string()),
                (SecretState::Managed, Some(due)) if now > due => Some(format!(
                    "is overdue: last rotated {}, due {due}",
                    secret
                        .rotated_at
                        .map_or("never".to_string(), |t| t.to_string())
                )),
                _ => None,
            };
            let violations = detail.map(|detail| Violation {
                object: format!("Secret/{}", secret.name),
                detail,
                exempt: None,
            });
            Evaluation::of(
                compliance::SECRETS_ROTATED,
                violations.into_iter().collect(),
            )
        })
        .collect();
    if plan.secrets.is_empty() {
        evaluations.push(Evaluation::skipped(
            compliance::SECRETS_ROTATED,
            "no Secret is managed",
        ));
    }
    if workloads.is_empty() {
        evaluations.push(Evaluation::skipped(
            compliance::SECRETS_NOT_LITERAL,
            "no workload selected",
        ));
        evaluations.push(Evaluation::skipped(
            compliance::SECRET_FILE_MODE,
            "no workload selected",
        ));
        return evaluations;
    }
    for workload in workloads {
        let Some(spec) = workload.template.spec.as_ref() else {
            continue;
        };
        evaluations.push(Evaluation::of(
            compliance::SECRETS_NOT_LITERAL,
            literal_secrets(workload, spec),
        ));
        evaluations.push(Evaluation::of(
            compliance::SECRET_FILE_MODE,
            wide_secret_files(workload, spec),
        ));
    }
    evaluations
}

fn literal_secrets(workload: &Workload, spec: &PodSpec) -> Vec<Violation> {
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let mut found = Vec::new();
    for container in containers {
        for env in container.env.iter().flatten() {
            let upper = env.name.to_ascii_uppercase();
            let literal = env.value.as_deref().is_some_and(|v| !v.is_empty());
            if literal && SECRET_LIKE.iter().any(|word| upper.contains(word)) {
                // The value itself is never quoted.
                found.push(Violation {
                    object: format!("{} container {}", workload.reference(), container.name),
                    detail: format!(
                        "sets {} as a literal value instead of a secretKeyRef",
                        env.name
                    ),
                    exempt: None,
                });
            }
        }
    }
    found
}

fn wide_secret_files(workload: &Workload, spec: &PodSpec) -> Vec<Violation> {
    let mut found = Vec::new();
    let too_wide = |mode: i32| mode & !WIDEST_SECRET_MODE != 0;
    let mut report = |volume: &str, mode: i32, what: &str| {
        if too_wide(mode) {
            found.push(Violation {
                object: format!("{} volume {volume}", workload.reference()),
                detail: format!("mounts secret files with mode {mode:04o}{what} (at most 0440)"),
                exempt: None,
            });
        }
    };
    for volume in spec.volumes.iter().flatten() {
        if let Some(secret) = &volume.secret {
            let default = secret.default_mode.unwrap_or(DEFAULT_SECRET_MODE);
            report(
                &volume.name,
                default,
                if secret.default_mode.is_none() {
                    ", the default"
                } else {
                    ""
                },
            );
            for item in secret.items.iter().flatten() {
                if let Some(mode) = item.mode {
                    report(&volume.name, mode, &format!(" for key {}", item.key));
                }
            }
        }
        if let Some(projected) = &volume.projected {
            let sources = projected.sources.iter().flatten();
            let secrets: Vec<_> = sources.filter_map(|s| s.secret.as_ref()).collect();
            if secrets.is_empty() {
                continue;
            }
            let default = projected.default_mode.unwrap_or(DEFAULT_SECRET_MODE);
            report(
                &volume.name,
                default,
                if projected.default_mode.is_none() {
                    ", the default"
                } else {
                    ""
                },
            );
            for item in secrets.iter().flat_map(|s| s.items.iter().flatten()) {
                if let Some(mode) = item.mode {
                    report(&volume.name, mode, &format!(" for key {}", item.key));
                }
            }
        }
    }
    found
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;
