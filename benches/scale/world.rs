//! The benchmark's world: per namespace ten workloads with realistic templates (six Deployments,
//! two StatefulSets, two DaemonSets) and one policy that uses every capability, plus the foreign
//! Secrets and ConfigMaps that no policy names.

use serde_json::{Value, json};

/// Label on every workload of the benchmark, so the harness watches only its own.
pub const SCALE_LABEL: &str = "bench.goreal.io/scale";
/// Template annotation the churn phase changes.
pub const CHURN_ANNOTATION: &str = "bench.goreal.io/churn";
/// Workloads per namespace.
pub const WORKLOADS_PER_NAMESPACE: usize = 10;
/// The Deployments of a namespace, the workloads the churn phase changes.
pub const DEPLOYMENTS: [&str; 6] = ["api", "nginx", "worker", "scheduler", "frontend", "admin"];

fn labels(name: &str) -> Value {
    json!({
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": "goreal",
        SCALE_LABEL: "true",
    })
}

fn container(name: &str, image: &str, port: (&str, i32)) -> Value {
    json!({
        "name": name,
        "image": image,
        "ports": [{"name": port.0, "containerPort": port.1}],
        "env": [{"name": "LOG_LEVEL", "value": "info"}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": port.0}, "periodSeconds": 10},
    })
}

/// The pod template of workload `name`, as a user writes it (nothing hardened). `churn` is the
/// value of the churn annotation, absent at setup.
pub fn template(name: &str, churn: Option<u64>) -> Value {
    let (containers, volumes) = match name {
        "api" => {
            let mut api = container("api", "ghcr.io/goreal/api:1.8.3", ("http", 5000));
            if let Some(env) = api["env"].as_array_mut() {
                env.push(json!({"name": "APP_SECRET_KEY", "valueFrom": {"secretKeyRef": {"name": "goreal-app", "key": "APP_SECRET_KEY"}}}));
            }
            api["volumeMounts"] =
                json!([{"name": "config", "mountPath": "/app/config", "readOnly": true}]);
            let proxy = container("proxy", "envoyproxy/envoy:v1.31.2", ("admin", 9901));
            (
                json!([api, proxy]),
                json!([{"name": "config", "configMap": {"name": "api-config"}}]),
            )
        }
        "nginx" => {
            let mut nginx = container("nginx", "nginx:1.27.3", ("http", 8080));
            if let Some(ports) = nginx["ports"].as_array_mut() {
                ports.push(json!({"name": "https", "containerPort": 8443}));
            }
            nginx["volumeMounts"] = json!([{"name": "limits", "mountPath": "/etc/nginx/goreal"}]);
            (
                json!([nginx]),
                json!([{"name": "limits", "configMap": {"name": "goreal-scale-nginx", "optional": true}}]),
            )
        }
        "postgres" => {
            let mut db = container("postgres", "postgres:16.6", ("postgres", 5432));
            db["volumeMounts"] = json!([{"name": "data", "mountPath": "/var/lib/postgresql/data"}]);
            (json!([db]), json!([]))
        }
        "redis" => (
            json!([container("redis", "redis:7.4.1", ("redis", 6379))]),
            json!([]),
        ),
        "node-exporter" => (
            json!([container(
                "node-exporter",
                "prom/node-exporter:v1.8.2",
                ("metrics", 9100)
            )]),
            json!([]),
        ),
        "log-agent" => {
            let mut agent = container("fluent-bit", "fluent/fluent-bit:3.2.2", ("metrics", 2020));
            agent["volumeMounts"] = json!([{"name": "buffer", "mountPath": "/buffer"}]);
            (json!([agent]), json!([{"name": "buffer", "emptyDir": {}}]))
        }
        other => (
            json!([container(
                other,
                &format!("ghcr.io/goreal/{other}:1.8.3"),
                ("http", 8000)
            )]),
            json!([]),
        ),
    };
    let mut metadata = json!({"labels": labels(name)});
    if let Some(churn) = churn {
        metadata["annotations"] = json!({CHURN_ANNOTATION: churn.to_string()});
    }
    json!({
        "metadata": metadata,
        "spec": {"containers": containers, "volumes": volumes},
    })
}

/// The workload `name` of kind `kind` in `namespace`, as a user writes it.
pub fn workload(kind: &str, namespace: &str, name: &str) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        "template": template(name, None),
    });
    match kind {
        "Deployment" => spec["replicas"] = json!(2),
        "StatefulSet" => {
            spec["serviceName"] = json!(name);
            spec["replicas"] = json!(1);
            if name == "postgres" {
                spec["volumeClaimTemplates"] = json!([{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
                }]);
            }
        }
        _ => {}
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
        "spec": spec,
    })
}

/// The ten workloads of one namespace.
pub fn workloads(namespace: &str) -> Vec<Value> {
    let mut all: Vec<Value> = DEPLOYMENTS
        .iter()
        .map(|name| workload("Deployment", namespace, name))
        .collect();
    all.push(workload("StatefulSet", namespace, "postgres"));
    all.push(workload("StatefulSet", namespace, "redis"));
    all.push(workload("DaemonSet", namespace, "node-exporter"));
    all.push(workload("DaemonSet", namespace, "log-agent"));
    all
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// The policy of one namespace: pod hardening, network isolation, rate limiting, alert rules,
/// one generated Secret and the compliance report.
pub fn policy(namespace: &str) -> Value {
    json!({
        "apiVersion": "security.goreal.io/v1alpha1",
        "kind": "GoREALSecurityPolicy",
        "metadata": {"name": "goreal-scale", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/part-of": "goreal"}},
            "podSecurity": {
                "level": "restricted",
                "labelNamespace": true,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "writablePaths": [
                    {"path": "/tmp", "sizeLimit": "100Mi"},
                    {"path": "/app/logs", "sizeLimit": "500Mi"},
                ],
            },
            "networkPolicy": {
                "defaultDeny": ["Ingress", "Egress"],
                "ingress": [
                    {"name": "web", "appliesTo": {"matchLabels": {"app.kubernetes.io/name": "nginx"}},
                     "ports": [{"port": "http"}, {"port": "https"}], "allowAll": true},
                    {"name": "admin-monitoring", "ports": [{"port": 9090}],
                     "from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
                    {"name": "api-from-nginx", "appliesTo": {"matchLabels": {"app.kubernetes.io/name": "api"}},
                     "ports": [{"port": "http"}],
                     "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nginx"}}}]},
                ],
                "egress": [
                    {"name": "api-to-postgres", "appliesTo": {"matchLabels": {"app.kubernetes.io/name": "api"}},
                     "ports": [{"port": 5432}],
                     "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "postgres"}}}]},
                ],
            },
            "rateLimiting": {
                "zones": [
                    {"name": "api", "path": "/api/", "rate": "10r/s", "burst": 20, "nodelay": true},
                    {"name": "login", "path": "/api/auth/login", "rate": "1r/s", "burst": 3, "nodelay": true},
                ],
                "nginx": {"proxyPass": "http://api:5000"},
            },
            "alerting": {"ruleLabels": {"release": "kube-prometheus-stack"}},
            "secretRotation": {"secrets": [{
                "name": "goreal-app",
                "interval": "2160h",
                "keys": [{"key": "APP_SECRET_KEY", "length": 64, "charset": "base64"}],
            }]},
        },
    })
}

/// A Secret or ConfigMap that no policy names.
pub fn foreign(kind: &str, namespace: &str, index: usize) -> Value {
    let data = match kind {
        "Secret" => json!({"token": "Zm9yZWlnbi12YWx1ZS1ub3QtcmVhZC1ieS10aGUtb3BlcmF0b3I="}),
        _ => json!({"settings.yaml": "feature: enabled\nlimit: 100\n"}),
    };
    json!({
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": format!("foreign-{index}"), "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": "someone-else"}},
        "data": data,
    })
}
