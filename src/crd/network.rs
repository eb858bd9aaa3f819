//! The `networkPolicy` section of the spec: default deny, DNS and API server egress, and named
//! allow rules. Schema and CEL rules only; `model::network` repeats them for `render`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::is_false;

/// Network isolation of the selected pods and what may still reach them or be reached.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.ingress) || size(self.ingress) == 0 || self.defaultDeny.exists(d, d == 'Ingress')").message("ingress rules need Ingress in defaultDeny: any ingress rule already isolates the pods it selects"))]
#[x_kube(validation = Rule::new("!has(self.egress) || size(self.egress) == 0 || self.defaultDeny.exists(d, d == 'Egress')").message("egress rules need Egress in defaultDeny: any egress rule already isolates the pods it selects"))]
#[x_kube(validation = Rule::new("!has(self.allowDNS) || !self.allowDNS || self.defaultDeny.exists(d, d == 'Egress')").message("allowDNS needs Egress in defaultDeny"))]
#[x_kube(validation = Rule::new("!has(self.allowAPIServer) || !self.allowAPIServer || self.defaultDeny.exists(d, d == 'Egress')").message("allowAPIServer needs Egress in defaultDeny"))]
pub struct NetworkPolicySpec {
    /// Directions in which the selected pods are isolated: nothing gets in (Ingress) or out
    /// (Egress) unless a rule allows it. The guide denies incoming traffic only.
    #[serde(default = "default_deny")]
    #[schemars(length(min = 1, max = 2), extend("x-kubernetes-list-type" = "set"))]
    pub default_deny: Vec<Direction>,
    /// Allow egress to the cluster DNS pods on the ports they serve; on by default when egress is
    /// denied.
    #[serde(default, rename = "allowDNS", skip_serializing_if = "Option::is_none")]
    pub allow_dns: Option<bool>,
    /// Allow egress to the kube-apiserver endpoints (read from the `kubernetes` Service's
    /// EndpointSlices and kept current).
    #[serde(default, rename = "allowAPIServer", skip_serializing_if = "is_false")]
    pub allow_api_server: bool,
    /// Named rules admitting incoming traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(s, s.name == r.name))").message("ingress rule names must be unique"))]
    pub ingress: Vec<IngressRule>,
    /// Named rules admitting outgoing traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(s, s.name == r.name))").message("egress rule names must be unique"))]
    pub egress: Vec<EgressRule>,
}

fn default_deny() -> Vec<Direction> {
    vec![Direction::Ingress]
}

/// A traffic direction, as NetworkPolicy `policyTypes` names it.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum Direction {
    /// Traffic to the selected pods.
    Ingress,
    /// Traffic from the selected pods.
    Egress,
}

impl Direction {
    /// The name NetworkPolicy uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
}

/// A named rule admitting traffic to the selected pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.from) && size(self.from) > 0) || (has(self.allowAll) && self.allowAll)").message("from is empty, which admits every source: list the peers, or set allowAll: true to mean it"))]
#[x_kube(validation = Rule::new("!has(self.allowAll) || !self.allowAll || !has(self.from) || size(self.from) == 0").message("allowAll admits every source: it cannot be combined with from"))]
pub struct IngressRule {
    /// Rule name, a DNS label unique among the ingress rules; part of the generated object's name.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Narrows the pods the rule applies to, within the policy's selector; all selected pods
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applies_to: Option<LabelSelector>,
    /// Ports the rule opens; every port when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub ports: Vec<PortSpec>,
    /// Sources admitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub from: Vec<Peer>,
    /// Admit every source; required instead of an empty `from`, so that "from anywhere" is
    /// always written on purpose.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_all: bool,
}

/// A named rule admitting traffic from the selected pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.to) && size(self.to) > 0) || (has(self.allowAll) && self.allowAll)").message("to is empty, which admits every destination: list the peers, or set allowAll: true to mean it"))]
#[x_kube(validation = Rule::new("!has(self.allowAll) || !self.allowAll || !has(self.to) || size(self.to) == 0").message("allowAll admits every destination: it cannot be combined with to"))]
#[x_kube(validation = Rule::new("!has(self.to) || !self.to.exists(t, has(t.ipBlock)) || !has(self.ports) || self.ports.all(p, !has(p.port) || type(p.port) == int)").message("an ipBlock destination cannot resolve a port name: use port numbers"))]
pub struct EgressRule {
    /// Rule name, a DNS label unique among the egress rules; part of the generated object's name.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Narrows the pods the rule applies to, within the policy's selector; all selected pods
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applies_to: Option<LabelSelector>,
    /// Ports the rule opens; every port when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub ports: Vec<PortSpec>,
    /// Destinations admitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub to: Vec<Peer>,
    /// Admit every destination; required instead of an empty `to`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_all: bool,
}

/// Transport protocols NetworkPolicy filters.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Protocol {
    /// TCP.
    #[default]
    TCP,
    /// UDP.
    UDP,
    /// SCTP.
    SCTP,
}

impl Protocol {
    /// The name NetworkPolicy uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::TCP => "TCP",
            Protocol::UDP => "UDP",
            Protocol::SCTP => "SCTP",
        }
    }
}

/// A port or port range on the destination pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.port) || type(self.port) != int || (self.port >= 1 && self.port <= 65535)").message("port must be between 1 and 65535"))]
#[x_kube(validation = Rule::new("!has(self.port) || type(self.port) == int || self.port.matches('^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$') && self.port.matches('[a-z]') && !self.port.contains('--')").message("a named port is 1 to 15 lower-case letters, digits and single hyphens, with at least one letter"))]
#[x_kube(validation = Rule::new("!has(self.endPort) || (has(self.port) && type(self.port) == int && self.endPort >= self.port)").message("endPort needs a numeric port no greater than it"))]
pub struct PortSpec {
    /// TCP (default), UDP or SCTP.
    #[serde(default)]
    pub protocol: Protocol,
    /// Port number or container port name; every port of the protocol when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 15))]
    pub port: Option<IntOrString>,
    /// Last port of a range starting at `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub end_port: Option<i32>,
}

/// One source or destination: an address block, or pods chosen by namespace and pod labels.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.ipBlock) != (has(self.namespaceSelector) || has(self.podSelector))").message("a peer is either an ipBlock or namespace and pod selectors, not both and not neither"))]
pub struct Peer {
    /// Addresses outside the cluster's pods, IPv4 or IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlockSpec>,
    /// Namespaces whose pods are admitted; with `podSelector`, only those pods. Absent: the
    /// policy's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Pods admitted (in the policy's namespace unless `namespaceSelector` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// An address block with optional holes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!isCIDR(self.cidr) || !has(self.except) || self.except.all(e, isCIDR(e) && cidr(e).masked() == cidr(e) && cidr(e).ip().family() == cidr(self.cidr).ip().family() && cidr(self.cidr).containsCIDR(cidr(e)) && cidr(e).prefixLength() > cidr(self.cidr).prefixLength())").message("every except must be a network address (no host bits) strictly inside cidr, of the same address family"))]
pub struct IpBlockSpec {
    /// Address block such as `10.0.0.0/8` or `2001:db8::/32`, with no host bits set.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32"))]
    #[x_kube(validation = Rule::new("!isCIDR(self) || cidr(self).masked() == cidr(self)").message("must have no host bits set (the network address, such as 10.0.0.0/8)"))]
    pub cidr: String,
    /// Blocks inside `cidr` that stay excluded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 64)))]
    pub except: Vec<String>,
}
