//! The `secretRotation` section of the spec: Secrets the operator generates, rotates on a
//! schedule or on request, and whose consumers it restarts. Durations are parsed by the operator
//! (`model::secrets`); the schema bounds what it can.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Generated and rotated Secrets of the policy's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretRotationSpec {
    /// The Secrets, each named once.
    #[serde(default)]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t.name == s.name))").message("secret names must be unique"))]
    pub secrets: Vec<ManagedSecretSpec>,
}

/// One Secret the operator generates and rotates.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedSecretSpec {
    /// Name of the Secret in the policy's namespace (at most 63 characters: it also names the
    /// restart marker on consumers' pod templates).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The keys the operator generates; other keys of the Secret are never touched.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.all(k, self.exists_one(l, l.key == k.key))").message("keys must be unique"))]
    pub keys: Vec<SecretKeySpec>,
    /// Time between rotations, as hours (`2160h`), days (`90d`) or a sum such as `1d12h`; at
    /// least one hour. Defaults to the guide's quarter (`2160h`).
    #[serde(default = "default_interval")]
    #[schemars(length(min = 2, max = 32), regex(pattern = r"^([0-9]+(d|h|m|s))+$"))]
    pub interval: String,
    /// Keep each key's last value under `<key>.previous`, so that consumers can accept both
    /// while they roll.
    #[serde(default = "yes")]
    pub keep_previous: bool,
    /// Which workloads restart after a rotation.
    #[serde(default)]
    pub restart: RestartSpec,
    /// Take over a Secret of this name that exists and is not the operator's, keeping its values
    /// until the first rotation. Without it such a Secret is left untouched and reported.
    #[serde(default, skip_serializing_if = "is_false")]
    pub adopt: bool,
}

fn default_interval() -> String {
    "2160h".into()
}

fn yes() -> bool {
    true
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// One generated key of a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySpec {
    /// Key in the Secret's data (`.previous` is reserved for previous values).
    #[schemars(length(min = 1, max = 244), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    #[x_kube(validation = Rule::new("!self.endsWith('.previous')").message("keys ending in .previous hold previous values"))]
    #[x_kube(validation = Rule::new("self != '.' && self != '..'").message("key must not be . or .."))]
    pub key: String,
    /// Number of characters.
    #[serde(default = "default_length")]
    #[schemars(range(min = 16, max = 4096))]
    pub length: u32,
    /// Characters the value is drawn from, uniformly.
    #[serde(default)]
    pub charset: Charset,
}

fn default_length() -> u32 {
    32
}

/// Alphabets a generated value is drawn from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Charset {
    /// `A-Z`, `a-z`, `0-9`.
    #[default]
    #[serde(rename = "alphanumeric")]
    Alphanumeric,
    /// The base64 alphabet: `A-Z`, `a-z`, `0-9`, `+`, `/` (each character drawn uniformly; not
    /// the encoding of random bytes, so no padding).
    #[serde(rename = "base64")]
    Base64,
    /// Lower-case hexadecimal digits.
    #[serde(rename = "hex")]
    Hex,
    /// Printable ASCII without the space (`!` to `~`).
    #[serde(rename = "ascii-printable")]
    AsciiPrintable,
}

/// How consumers are restarted after a rotation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.strategy == 'Selector') == has(self.selector)").message("selector is required for strategy Selector and only allowed there"))]
pub struct RestartSpec {
    /// `Auto` restarts the workloads that read a rotated key; `Selector` those whose pod
    /// template labels match `selector`; `None` none.
    #[serde(default)]
    pub strategy: RestartStrategy,
    /// Pod template labels of the workloads to restart (strategy `Selector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Restart strategies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RestartStrategy {
    /// Workloads whose pod templates read a rotated key or the whole Secret.
    #[default]
    Auto,
    /// No restarts: consumers pick up values themselves (mounted files update in place).
    None,
    /// Workloads whose pod template labels match the selector.
    Selector,
}
