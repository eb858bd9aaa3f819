//! Pod-security capability: the partial pod template that hardens a workload, and the checks
//! that evaluate a pod template against the policy. Pure: no API calls, no clock.
//!
//! The patch is a function of the policy and of the user's own intent in the template, never of
//! the operator's earlier writes, so applying it twice yields the same patch (and no write).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, PodSecurityContext, PodSpec, PodTemplateSpec, SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{Map, Value, json};

use crate::compliance::{self as c, Evaluation, Violation};
use crate::crd::{AppArmorProfileType, SeccompProfileType};
use crate::model::PodSecuritySettings;
use crate::observed::Workload;

const WINDOWS_SKIP: &str = "not applicable to Windows pods";

/// Whether the pod template declares a Windows pod (`spec.os.name: windows`).
pub fn is_windows(spec: &PodSpec) -> bool {
    spec.os.as_ref().is_some_and(|os| os.name == "windows")
}

/// The exemption reason covering `check` for a workload (and container), if any.
pub fn exemption<'a>(
    settings: &'a PodSecuritySettings,
    workload: &str,
    container: Option<&str>,
    check: &str,
) -> Option<&'a str> {
    settings
        .exemptions
        .iter()
        .find(|e| {
            e.workload == workload
                && (e.container.is_none() || e.container.as_deref() == container)
                && (e.checks.is_empty() || e.checks.iter().any(|id| id == check))
        })
        .map(|e| e.reason.as_str())
}

/// The partial pod template (`{"spec": {...}}`) holding exactly the fields the operator owns on
/// this workload. `None` when the workload has no pod spec.
pub fn harden(workload: &Workload, settings: &PodSecuritySettings) -> Option<Value> {
    let spec = workload.template.spec.as_ref()?;
    let windows = is_windows(spec);
    let exempt = |check: &str| {
        exemption(settings, &workload.name, None, check).is_some()
            || kept_by_annotation(&workload.template, check)
    };
    let mut pod = Map::new();

    let mut pod_context = Map::new();
    if settings.run_as_non_root && !exempt(c::RUN_AS_NON_ROOT) {
        pod_context.insert("runAsNonRoot".into(), json!(true));
    }
    if !windows {
        if !exempt(c::RUN_AS_USER) {
            for (field, value) in [
                ("runAsUser", settings.run_as_user),
                ("runAsGroup", settings.run_as_group),
                ("fsGroup", settings.fs_group),
            ] {
                if let Some(value) = value {
                    pod_context.insert(field.into(), json!(value));
                }
            }
        }
        let own = spec.security_context.as_ref();
        // A live profile equal to the one recorded as ours is ours, not the author's.
        let written = applied_pod_profiles(workload);
        let own_seccomp = own
            .and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| profile_json(&p.type_, p.localhost_profile.as_ref()))
            .filter(|p| written.get("seccompProfile") != Some(p));
        let ours = seccomp_profile(settings);
        if !exempt(c::SECCOMP_PROFILE) && !keeps_own_localhost(own_seccomp.as_ref(), &ours) {
            pod_context.insert("seccompProfile".into(), ours);
        }
        let own_app_armor = own
            .and_then(|s| s.app_armor_profile.as_ref())
            .map(|p| profile_json(&p.type_, p.localhost_profile.as_ref()))
            .filter(|p| written.get("appArmorProfile") != Some(p));
        if let (Some(ours), false) = (app_armor_profile(settings), exempt(c::APPARMOR_PROFILE))
            && !keeps_own_localhost(own_app_armor.as_ref(), &ours)
        {
            pod_context.insert("appArmorProfile".into(), ours);
        }
    }
    if !pod_context.is_empty() {
        pod.insert("securityContext".into(), Value::Object(pod_context));
    }
    if let (Some(automount), false) = (
        settings.automount_service_account_token,
        exempt(c::AUTOMOUNT_SERVICE_ACCOUNT_TOKEN),
    ) {
        pod.insert("automountServiceAccountToken".into(), json!(automount));
    }

    let mut used_volumes = BTreeSet::new();
    let lists = [
        ("containers", Some(&spec.containers)),
        ("initContainers", spec.init_containers.as_ref()),
    ];
    for (field, containers) in lists {
        let patches: Vec<Value> = containers
            .into_iter()
            .flatten()
            .filter_map(|container| {
                harden_container(workload, container, settings, windows, &mut used_volumes)
            })
            .collect();
        if !patches.is_empty() {
            pod.insert(field.into(), Value::Array(patches));
        }
    }
    let volumes: Vec<Value> = settings
        .writable_paths
        .iter()
        .filter(|w| used_volumes.contains(&w.volume_name))
        .map(|w| json!({ "name": w.volume_name, "emptyDir": { "sizeLimit": w.size_limit } }))
        .collect();
    if !volumes.is_empty() {
        pod.insert("volumes".into(), Value::Array(volumes));
    }
    Some(json!({ "spec": pod }))
}

fn seccomp_profile(settings: &PodSecuritySettings) -> Value {
    match settings.seccomp.type_ {
        SeccompProfileType::RuntimeDefault => json!({ "type": "RuntimeDefault" }),
        SeccompProfileType::Localhost => json!({
            "type": "Localhost",
            "localhostProfile": settings.seccomp.localhost_profile,
        }),
    }
}

/// Profiles set through the legacy annotations must match the fields, so the API server refuses
/// a field of ours next to them: the workload's own annotation wins.
fn kept_by_annotation(template: &PodTemplateSpec, check: &str) -> bool {
    let prefixes: &[&str] = match check {
        c::SECCOMP_PROFILE => &[
            "seccomp.security.alpha.kubernetes.io/",
            "container.seccomp.security.alpha.kubernetes.io/",
        ],
        c::APPARMOR_PROFILE => &["container.apparmor.security.beta.kubernetes.io/"],
        _ => return false,
    };
    let annotations = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref());
    annotations.is_some_and(|a| a.keys().any(|k| prefixes.iter().any(|p| k.starts_with(p))))
}

/// The pod-level profiles a template patch writes, as recorded on the workload.
pub fn pod_profiles_of(template_patch: &Value) -> Value {
    let context = &template_patch["spec"]["securityContext"];
    let mut profiles = Map::new();
    for field in ["seccompProfile", "appArmorProfile"] {
        if let Some(profile) = context.get(field) {
            profiles.insert(field.into(), profile.clone());
        }
    }
    Value::Object(profiles)
}

fn applied_pod_profiles(workload: &Workload) -> Value {
    workload
        .annotations
        .get(crate::names::APPLIED_PROFILES_ANNOTATION)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null)
}

/// A profile as JSON, in the shape the patch writes.
fn profile_json(type_: &str, localhost_profile: Option<&String>) -> Value {
    match localhost_profile {
        Some(profile) => json!({ "type": type_, "localhostProfile": profile }),
        None => json!({ "type": type_ }),
    }
}

/// A workload's own Localhost profile already confines it; writing ours over it would mix our
/// type with its `localhostProfile` (refused by the API server) or fight its author. The choice
/// depends only on the user's value, so the patch stays the same once applied.
fn keeps_own_localhost(own: Option<&Value>, ours: &Value) -> bool {
    own.is_some_and(|own| own["type"] == "Localhost" && own != ours)
}

fn app_armor_profile(settings: &PodSecuritySettings) -> Option<Value> {
    settings
        .app_armor
        .as_ref()
        .map(|profile| match profile.type_ {
            AppArmorProfileType::RuntimeDefault => json!({ "type": "RuntimeDefault" }),
            AppArmorProfileType::Localhost => json!({
                "type": "Localhost",
                "localhostProfile": profile.localhost_profile,
            }),
        })
}

/// Container-level fields. Fields that the pod level already covers are written here only when
/// the container overrides them, so that its own value cannot undo the pod's.
fn harden_container(
    workload: &Workload,
    container: &Container,
    settings: &PodSecuritySettings,
    windows: bool,
    used_volumes: &mut BTreeSet<String>,
) -> Option<Value> {
    let exempt = |check: &str| {
        exemption(settings, &workload.name, Some(&container.name), check).is_some()
            || kept_by_annotation(&workload.template, check)
    };
    let own = container.security_context.clone().unwrap_or_default();
    let mut context = Map::new();
    if own.run_as_non_root.is_some() && settings.run_as_non_root && !exempt(c::RUN_AS_NON_ROOT) {
        context.insert("runAsNonRoot".into(), json!(true));
    }
    let mut mounts = Vec::new();
    if !windows {
        // A policy that allows escalation leaves the field to the workload. The API server
        // refuses `allowPrivilegeEscalation: false` next to a privileged container or an added
        // SYS_ADMIN, which an exemption may keep.
        let stays_privileged = own.privileged == Some(true) && exempt(c::PRIVILEGED);
        let keeps_sys_admin = exempt(c::CAPABILITIES_ADD)
            && own
                .capabilities
                .iter()
                .flat_map(|caps| caps.add.iter().flatten())
                .any(|cap| cap == "SYS_ADMIN" || cap == "CAP_SYS_ADMIN");
        if !settings.allow_privilege_escalation
            && !exempt(c::ALLOW_PRIVILEGE_ESCALATION)
            && !stays_privileged
            && !keeps_sys_admin
        {
            context.insert("allowPrivilegeEscalation".into(), json!(false));
        }
        if !exempt(c::PRIVILEGED) {
            context.insert("privileged".into(), json!(false));
        }
        if settings.read_only_root_filesystem && !exempt(c::READ_ONLY_ROOT_FILESYSTEM) {
            context.insert("readOnlyRootFilesystem".into(), json!(true));
        }
        let mut capabilities = Map::new();
        if !exempt(c::CAPABILITIES_DROP_ALL) {
            capabilities.insert("drop".into(), json!(settings.drop_capabilities));
        }
        let requested = own.capabilities.as_ref().and_then(|caps| caps.add.as_ref());
        if let (Some(requested), false) = (requested, exempt(c::CAPABILITIES_ADD)) {
            let mut seen = BTreeSet::new();
            let kept: Vec<&String> = requested
                .iter()
                .filter(|cap| settings.allowed_add.contains(*cap) && seen.insert(*cap))
                .collect();
            capabilities.insert("add".into(), json!(kept));
        }
        if !capabilities.is_empty() {
            context.insert("capabilities".into(), Value::Object(capabilities));
        }
        // Container-level profiles are rewritten only where the container sets its own.
        if let (Some(profile), false) = (&own.seccomp_profile, exempt(c::SECCOMP_PROFILE)) {
            let ours = seccomp_profile(settings);
            let own = profile_json(&profile.type_, profile.localhost_profile.as_ref());
            if !keeps_own_localhost(Some(&own), &ours) {
                context.insert("seccompProfile".into(), ours);
            }
        }
        if let (Some(profile), Some(ours), false) = (
            &own.app_armor_profile,
            app_armor_profile(settings),
            exempt(c::APPARMOR_PROFILE),
        ) {
            let own = profile_json(&profile.type_, profile.localhost_profile.as_ref());
            if !keeps_own_localhost(Some(&own), &ours) {
                context.insert("appArmorProfile".into(), ours);
            }
        }
        if !exempt(c::RUN_AS_USER) {
            if let (Some(_), Some(user)) = (own.run_as_user, settings.run_as_user) {
                context.insert("runAsUser".into(), json!(user));
            }
            if let (Some(_), Some(group)) = (own.run_as_group, settings.run_as_group) {
                context.insert("runAsGroup".into(), json!(group));
            }
        }
        if settings.read_only_root_filesystem && !exempt(c::WRITABLE_PATHS) {
            for writable in &settings.writable_paths {
                let existing = mounts_of(container).find(|m| m.mount_path == writable.path);
                // Never a second mount at a path the container already mounts; a mount of our
                // own volume is kept so that the patch stays the same after it is applied.
                if existing.is_some_and(|m| m.name != writable.volume_name) {
                    continue;
                }
                used_volumes.insert(writable.volume_name.clone());
                mounts.push(json!({ "name": writable.volume_name, "mountPath": writable.path }));
            }
        }
    }
    if context.is_empty() && mounts.is_empty() {
        return None;
    }
    let mut patch = Map::new();
    patch.insert("name".into(), json!(container.name));
    if !context.is_empty() {
        patch.insert("securityContext".into(), Value::Object(context));
    }
    if !mounts.is_empty() {
        patch.insert("volumeMounts".into(), Value::Array(mounts));
    }
    Some(Value::Object(patch))
}

fn mounts_of(container: &Container) -> impl Iterator<Item = &VolumeMount> {
    container.volume_mounts.iter().flatten()
}

/// Merges a partial object into a full one the way server-side apply does for the fields this
/// capability writes: maps merge, lists of containers and volumes merge by `name`, volume mounts
/// by `mountPath`, every other list is replaced whole (capabilities lists are atomic).
pub fn merge(live: &mut Value, patch: &Value) {
    match (live, patch) {
        (Value::Object(live), Value::Object(patch)) => {
            for (key, value) in patch {
                match live.get_mut(key) {
                    Some(existing) if !existing.is_null() => merge(existing, value),
                    _ => {
                        live.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(live), Value::Array(patch)) => match list_key(patch) {
            Some(key) => {
                for item in patch {
                    let position = live.iter().position(|l| l.get(key) == item.get(key));
                    match position {
                        Some(i) => merge(&mut live[i], item),
                        None => live.push(item.clone()),
                    }
                }
            }
            None => *live = patch.clone(),
        },
        (live, patch) => *live = patch.clone(),
    }
}

fn list_key(items: &[Value]) -> Option<&'static str> {
    let first = items.first()?;
    ["mountPath", "name"]
        .into_iter()
        .find(|key| first.get(key).is_some())
}

/// The template as it will be once the patch is applied.
pub fn hardened_template(template: &PodTemplateSpec, patch: &Value) -> PodTemplateSpec {
    let Ok(mut live) = serde_json::to_value(template) else {
        return template.clone();
    };
    merge(&mut live, patch);
    serde_json::from_value(live).unwrap_or_else(|_| template.clone())
}

/// Whether two templates are equal once emptyDir size limits are compared by value: the API
/// server stores quantities in canonical form (`1024Mi` comes back as `1Gi`), and that must not
/// make an applied patch look unapplied forever.
pub fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn canonical(template: &PodTemplateSpec) -> PodTemplateSpec {
        let mut template = template.clone();
        let volumes = template
            .spec
            .iter_mut()
            .flat_map(|s| s.volumes.iter_mut().flatten());
        for volume in volumes {
            let limit = volume
                .empty_dir
                .as_mut()
                .and_then(|e| e.size_limit.as_mut());
            if let Some(limit) = limit
                && let Some((digits, exponent)) = crate::model::quantity_value(&limit.0)
            {
                limit.0 = format!("{digits}e{exponent}");
            }
        }
        template
    }
    a == b || canonical(a) == canonical(b)
}

/// One container of any kind, as the checks see it.
struct ContainerView<'a> {
    role: &'static str,
    name: &'a str,
    context: Option<&'a SecurityContext>,
    mounts: Vec<&'a str>,
    image: Option<&'a str>,
    /// Resource limits; `None` for ephemeral containers, which may not set resources.
    limits: Option<BTreeMap<String, Quantity>>,
}

fn containers(spec: &PodSpec) -> Vec<ContainerView<'_>> {
    let mut views = Vec::new();
    for (role, list) in [
        ("container", Some(&spec.containers)),
        ("init container", spec.init_containers.as_ref()),
    ] {
        for container in list.into_iter().flatten() {
            views.push(ContainerView {
                role,
                name: &container.name,
                context: container.security_context.as_ref(),
                mounts: mounts_of(container)
                    .map(|m| m.mount_path.as_str())
                    .collect(),
                image: container.image.as_deref(),
                limits: Some(
                    container
                        .resources
                        .as_ref()
                        .and_then(|r| r.limits.clone())
                        .unwrap_or_default(),
                ),
            });
        }
    }
    // Ephemeral containers are checked, never patched: they are added to running pods only.
    for container in spec.ephemeral_containers.iter().flatten() {
        views.push(ContainerView {
            role: "ephemeral container",
            name: &container.name,
            context: container.security_context.as_ref(),
            mounts: container
                .volume_mounts
                .iter()
                .flatten()
                .map(|m| m.mount_path.as_str())
                .collect(),
            image: container.image.as_deref(),
            limits: None,
        });
    }
    views
}

/// Evaluates every pod-security check on one workload's template.
pub fn evaluate(
    workload: &Workload,
    template: &PodTemplateSpec,
    settings: &PodSecuritySettings,
) -> Vec<Evaluation> {
    let Some(spec) = template.spec.as_ref() else {
        return Vec::new();
    };
    let windows = is_windows(spec);
    let pod = spec.security_context.clone().unwrap_or_default();
    let views = containers(spec);
    let reference = workload.reference();
    let violation = |container: Option<&ContainerView>, check: &str, detail: String| Violation {
        object: match container {
            Some(view) => format!("{reference} {} {}", view.role, view.name),
            None => reference.clone(),
        },
        detail,
        exempt: exemption(settings, &workload.name, container.map(|v| v.name), check)
            .map(str::to_string),
    };
    let per_container = |check: &'static str, test: &dyn Fn(&ContainerView) -> Option<String>| {
        let found = views
            .iter()
            .filter_map(|view| test(view).map(|detail| violation(Some(view), check, detail)))
            .collect();
        Evaluation::of(check, found)
    };
    let linux_only = |check: &'static str, evaluation: &dyn Fn() -> Evaluation| {
        if windows {
            Evaluation::skipped(check, WINDOWS_SKIP)
        } else {
            evaluation()
        }
    };
    let context = |view: &ContainerView| view.context.cloned().unwrap_or_default();

    let mut evaluations = Vec::new();
    evaluations.push(if settings.run_as_non_root {
        per_container(c::RUN_AS_NON_ROOT, &|view| {
            run_as_non_root_problem(&pod, &context(view))
        })
    } else {
        Evaluation::skipped(
            c::RUN_AS_NON_ROOT,
            "runAsNonRoot is not required by the policy",
        )
    });
    let ids_configured = settings.run_as_user.is_some()
        || settings.run_as_group.is_some()
        || settings.fs_group.is_some();
    evaluations.push(if !ids_configured {
        Evaluation::skipped(c::RUN_AS_USER, "no user, group or fsGroup configured")
    } else {
        linux_only(c::RUN_AS_USER, &|| {
            let mut found = Vec::new();
            for (field, want, have) in [
                ("runAsUser", settings.run_as_user, pod.run_as_user),
                ("runAsGroup", settings.run_as_group, pod.run_as_group),
                ("fsGroup", settings.fs_group, pod.fs_group),
            ] {
                if want.is_some() && want != have {
                    found.push(violation(
                        None,
                        c::RUN_AS_USER,
                        format!("has pod {field} {}", show(have)),
                    ));
                }
            }
            for view in &views {
                let own = context(view);
                for (field, want, have) in [
                    ("runAsUser", settings.run_as_user, own.run_as_user),
                    ("runAsGroup", settings.run_as_group, own.run_as_group),
                ] {
                    if want.is_some() && have.is_some() && want != have {
                        found.push(violation(
                            Some(view),
                            c::RUN_AS_USER,
                            format!("overrides {field} with {}", show(have)),
                        ));
                    }
                }
            }
            Evaluation::of(c::RUN_AS_USER, found)
        })
    });
    evaluations.push(linux_only(c::SECCOMP_PROFILE, &|| {
        per_container(c::SECCOMP_PROFILE, &|view| {
            let effective = context(view)
                .seccomp_profile
                .or_else(|| pod.seccomp_profile.clone());
            match effective.as_ref().map(|p| p.type_.as_str()) {
                Some("RuntimeDefault" | "Localhost") => None,
                Some(other) => Some(format!("has seccomp profile {other}")),
                None => Some("has no seccomp profile".into()),
            }
        })
    }));
    evaluations.push(if settings.app_armor.is_none() {
        Evaluation::skipped(c::APPARMOR_PROFILE, "no AppArmor profile configured")
    } else {
        linux_only(c::APPARMOR_PROFILE, &|| {
            per_container(c::APPARMOR_PROFILE, &|view| {
                let effective = context(view)
                    .app_armor_profile
                    .or_else(|| pod.app_armor_profile.clone());
                match effective.as_ref().map(|p| p.type_.as_str()) {
                    Some("RuntimeDefault" | "Localhost") => None,
                    Some(other) => Some(format!("has AppArmor profile {other}")),
                    None => Some("has no AppArmor profile".into()),
                }
            })
        })
    });
    evaluations.push(linux_only(c::ALLOW_PRIVILEGE_ESCALATION, &|| {
        per_container(c::ALLOW_PRIVILEGE_ESCALATION, &|view| {
            let allowed = context(view).allow_privilege_escalation;
            (!settings.allow_privilege_escalation && allowed != Some(false))
                .then(|| format!("has allowPrivilegeEscalation {}", show(allowed)))
        })
    }));
    evaluations.push(linux_only(c::PRIVILEGED, &|| {
        per_container(c::PRIVILEGED, &|view| {
            (context(view).privileged == Some(true)).then(|| "is privileged".to_string())
        })
    }));
    evaluations.push(linux_only(c::CAPABILITIES_DROP_ALL, &|| {
        per_container(c::CAPABILITIES_DROP_ALL, &|view| {
            let dropped = context(view)
                .capabilities
                .and_then(|caps| caps.drop)
                .unwrap_or_default();
            let missing: Vec<&String> = settings
                .drop_capabilities
                .iter()
                .filter(|cap| !dropped.contains(cap))
                .collect();
            (!missing.is_empty()).then(|| format!("does not drop {}", join(&missing)))
        })
    }));
    evaluations.push(linux_only(c::CAPABILITIES_ADD, &|| {
        per_container(c::CAPABILITIES_ADD, &|view| {
            let added = context(view)
                .capabilities
                .and_then(|caps| caps.add)
                .unwrap_or_default();
            let extra: Vec<&String> = added
                .iter()
                .filter(|cap| !settings.allowed_add.contains(*cap))
                .collect();
            (!extra.is_empty()).then(|| format!("adds {}", join(&extra)))
        })
    }));
    evaluations.push(if !settings.read_only_root_filesystem {
        Evaluation::skipped(
            c::READ_ONLY_ROOT_FILESYSTEM,
            "read-only root filesystem not required",
        )
    } else {
        linux_only(c::READ_ONLY_ROOT_FILESYSTEM, &|| {
            per_container(c::READ_ONLY_ROOT_FILESYSTEM, &|view| {
                (context(view).read_only_root_filesystem != Some(true))
                    .then(|| "has a writable root filesystem".to_string())
            })
        })
    });
    evaluations.push(
        if !settings.read_only_root_filesystem || settings.writable_paths.is_empty() {
            Evaluation::skipped(c::WRITABLE_PATHS, "no writable paths configured")
        } else {
            linux_only(c::WRITABLE_PATHS, &|| {
                per_container(c::WRITABLE_PATHS, &|view| {
                    let missing: Vec<&String> = settings
                        .writable_paths
                        .iter()
                        .map(|w| &w.path)
                        .filter(|path| !view.mounts.contains(&path.as_str()))
                        .collect();
                    (!missing.is_empty()).then(|| format!("does not mount {}", join(&missing)))
                })
            })
        },
    );
    evaluations.push(match settings.automount_service_account_token {
        None => Evaluation::skipped(
            c::AUTOMOUNT_SERVICE_ACCOUNT_TOKEN,
            "automountServiceAccountToken not configured",
        ),
        Some(want) => {
            let have = spec.automount_service_account_token;
            // Kubernetes mounts the token unless told otherwise.
            let effective = have.unwrap_or(true);
            let found = (effective != want)
                .then(|| {
                    violation(
                        None,
                        c::AUTOMOUNT_SERVICE_ACCOUNT_TOKEN,
                        format!("has automountServiceAccountToken {}", show(have)),
                    )
                })
                .into_iter()
                .collect();
            Evaluation::of(c::AUTOMOUNT_SERVICE_ACCOUNT_TOKEN, found)
        }
    });
    let shared: Vec<&str> = [
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
    ]
    .into_iter()
    .filter(|(_, on)| *on == Some(true))
    .map(|(name, _)| name)
    .collect();
    let found = (!shared.is_empty())
        .then(|| {
            violation(
                None,
                c::HOST_NAMESPACES,
                format!("sets {}", shared.join(", ")),
            )
        })
        .into_iter()
        .collect();
    evaluations.push(Evaluation::of(c::HOST_NAMESPACES, found));
    // A container without limits can take the node's CPU and memory (the guide's DoS item).
    evaluations.push(per_container(c::RESOURCE_LIMITS, &|view| {
        let limits = view.limits.as_ref()?;
        let missing: Vec<&str> = ["cpu", "memory"]
            .into_iter()
            .filter(|resource| !limits.contains_key(*resource))
            .collect();
        (!missing.is_empty()).then(|| format!("sets no {} limit", missing.join(" or ")))
    }));
    evaluations.push(per_container(c::IMAGE_PINNED, &|view| {
        image_pin_problem(view.image.unwrap_or_default())
    }));
    evaluations
}

/// Why an image reference is not pinned, if it is not: a digest pins it; otherwise its tag must
/// be there and not `latest`. The tag is after the last `:` of the last path segment (a
/// registry port is not a tag).
pub fn image_pin_problem(image: &str) -> Option<String> {
    if image.contains('@') {
        return None;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) => Some(format!("image {image} uses the latest tag")),
        Some((_, tag)) if !tag.is_empty() => None,
        _ => Some(format!(
            "image {image:?} has no tag, so it runs whatever latest is"
        )),
    }
}

fn run_as_non_root_problem(pod: &PodSecurityContext, own: &SecurityContext) -> Option<String> {
    let non_root = own.run_as_non_root.or(pod.run_as_non_root);
    let user = own.run_as_user.or(pod.run_as_user);
    if user == Some(0) {
        Some("runs as user 0".into())
    } else if non_root != Some(true) {
        Some(format!("has runAsNonRoot {}", show(non_root)))
    } else {
        None
    }
}

fn show<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "unset".to_string(), |v| v.to_string())
}

fn join(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "pod_security_tests.rs"]
mod tests;
