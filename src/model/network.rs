//! Validation of the `networkPolicy` section: the CRD's schema and CEL rules repeated for
//! `render`, plus what CEL cannot say (selector merging). Produces rules ready for planning.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Problems, parse_selector};
use crate::crd::{Direction, NetworkPolicySpec, Peer, PortSpec};

/// Validated network settings.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSettings {
    /// Isolate the selected pods for incoming traffic.
    pub deny_ingress: bool,
    /// Isolate the selected pods for outgoing traffic.
    pub deny_egress: bool,
    /// Allow egress to the cluster DNS pods.
    pub allow_dns: bool,
    /// Allow egress to the kube-apiserver endpoints.
    pub allow_api_server: bool,
    /// Named allow rules, ingress first, in spec order.
    pub rules: Vec<NetworkRule>,
}

impl NetworkSettings {
    /// The directions in which the selected pods are isolated.
    pub fn denied(&self) -> Vec<Direction> {
        [
            (self.deny_ingress, Direction::Ingress),
            (self.deny_egress, Direction::Egress),
        ]
        .into_iter()
        .filter_map(|(on, direction)| on.then_some(direction))
        .collect()
    }
}

/// One named allow rule, in NetworkPolicy terms.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkRule {
    /// Ingress or egress.
    pub direction: Direction,
    /// Rule name, unique within its direction.
    pub name: String,
    /// The pods the rule applies to: the policy's selector narrowed by `appliesTo`.
    pub pod_selector: LabelSelector,
    /// Ports; every port when empty.
    pub ports: Vec<NetworkPolicyPort>,
    /// Peers; every peer when empty (only written as `allowAll: true`).
    pub peers: Vec<NetworkPolicyPeer>,
}

const MAX_RULES: usize = 32;
const MAX_PORTS: usize = 16;
const MAX_PEERS: usize = 16;
const MAX_EXCEPTS: usize = 8;

/// A rule of either direction, as the spec writes it.
struct RawRule<'a> {
    name: &'a str,
    applies_to: Option<&'a LabelSelector>,
    ports: &'a [PortSpec],
    peers: &'a [Peer],
    allow_all: bool,
}

/// Validates the section against the policy's own selector.
pub(super) fn validate_network(
    spec: &NetworkPolicySpec,
    policy_selector: Option<&LabelSelector>,
    problems: &mut Problems,
) -> NetworkSettings {
    const F: &str = "spec.networkPolicy";
    if spec.default_deny.is_empty() {
        problems.add(
            format!("{F}.defaultDeny"),
            "must name Ingress, Egress or both",
        );
    }
    for (i, direction) in spec.default_deny.iter().enumerate() {
        if spec.default_deny[..i].contains(direction) {
            problems.add(
                format!("{F}.defaultDeny[{i}]"),
                format!("{} is listed twice", direction.as_str()),
            );
        }
    }
    let deny_ingress = spec.default_deny.contains(&Direction::Ingress);
    let deny_egress = spec.default_deny.contains(&Direction::Egress);
    for (denied, rules, direction) in [
        (deny_ingress, spec.ingress.len(), Direction::Ingress),
        (deny_egress, spec.egress.len(), Direction::Egress),
    ] {
        let (name, key) = (direction.as_str(), direction.as_str().to_lowercase());
        if !denied && rules > 0 {
            problems.add(
                format!("{F}.{key}"),
                format!(
                    "{key} rules need {name} in defaultDeny: any {key} rule already isolates the pods it selects"
                ),
            );
        }
        if rules > MAX_RULES {
            problems.add(format!("{F}.{key}"), format!("at most {MAX_RULES} rules"));
        }
    }
    if !deny_egress && spec.allow_dns == Some(true) {
        problems.add(format!("{F}.allowDNS"), "needs Egress in defaultDeny");
    }
    if !deny_egress && spec.allow_api_server {
        problems.add(format!("{F}.allowAPIServer"), "needs Egress in defaultDeny");
    }
    let ingress: Vec<RawRule> = spec
        .ingress
        .iter()
        .map(|r| RawRule {
            name: &r.name,
            applies_to: r.applies_to.as_ref(),
            ports: &r.ports,
            peers: &r.from,
            allow_all: r.allow_all,
        })
        .collect();
    let egress: Vec<RawRule> = spec
        .egress
        .iter()
        .map(|r| RawRule {
            name: &r.name,
            applies_to: r.applies_to.as_ref(),
            ports: &r.ports,
            peers: &r.to,
            allow_all: r.allow_all,
        })
        .collect();
    let mut rules = Vec::new();
    for (direction, list, peers_key) in [
        (Direction::Ingress, ingress, "from"),
        (Direction::Egress, egress, "to"),
    ] {
        let key = direction.as_str().to_lowercase();
        for (i, rule) in list.iter().enumerate() {
            let field = format!("{F}.{key}[{i}]");
            rules.push(validate_rule(
                direction,
                rule,
                &list[..i],
                policy_selector,
                (&field, peers_key),
                problems,
            ));
        }
    }
    NetworkSettings {
        deny_ingress,
        deny_egress,
        allow_dns: deny_egress && spec.allow_dns.unwrap_or(true),
        allow_api_server: spec.allow_api_server,
        rules,
    }
}

fn validate_rule(
    direction: Direction,
    rule: &RawRule,
    earlier: &[RawRule],
    policy_selector: Option<&LabelSelector>,
    (field, peers_key): (&str, &str),
    problems: &mut Problems,
) -> NetworkRule {
    let name = rule.name;
    if !is_dns_label(name) {
        problems.add(
            format!("{field}.name"),
            format!("{name:?} is not a DNS label (lower-case letters, digits and '-', at most 63)"),
        );
    }
    if earlier.iter().any(|e| e.name == name) {
        problems.add(
            format!("{field}.name"),
            format!("rule {name:?} is defined twice"),
        );
    }
    match (rule.peers.is_empty(), rule.allow_all) {
        (true, false) => problems.add(
            format!("{field}.{peers_key}"),
            "is empty, which admits every peer: list the peers, or set allowAll: true to mean it",
        ),
        (false, true) => problems.add(
            format!("{field}.allowAll"),
            format!("admits every peer: it cannot be combined with {peers_key}"),
        ),
        _ => {}
    }
    if rule.ports.len() > MAX_PORTS {
        problems.add(
            format!("{field}.ports"),
            format!("at most {MAX_PORTS} ports"),
        );
    }
    if rule.peers.len() > MAX_PEERS {
        problems.add(
            format!("{field}.{peers_key}"),
            format!("at most {MAX_PEERS} peers"),
        );
    }
    // An egress port name is resolved on the destination pod: an address block has none.
    if direction == Direction::Egress && rule.peers.iter().any(|p| p.ip_block.is_some()) {
        for (j, port) in rule.ports.iter().enumerate() {
            if let Some(IntOrString::String(name)) = &port.port {
                problems.add(
                    format!("{field}.ports[{j}].port"),
                    format!("{name:?} is a port name, which an ipBlock destination cannot resolve: use the number"),
                );
            }
        }
    }
    let ports = rule
        .ports
        .iter()
        .enumerate()
        .map(|(j, port)| validate_port(port, &format!("{field}.ports[{j}]"), problems))
        .collect();
    let peers = rule
        .peers
        .iter()
        .enumerate()
        .map(|(j, peer)| validate_peer(peer, &format!("{field}.{peers_key}[{j}]"), problems))
        .collect();
    parse_selector(rule.applies_to, &format!("{field}.appliesTo"), problems);
    let pod_selector = narrow(policy_selector, rule.applies_to).unwrap_or_else(|key| {
        problems.add(
            format!("{field}.appliesTo.matchLabels"),
            format!("{key:?} contradicts the policy's selector, so the rule would select no pod"),
        );
        LabelSelector::default()
    });
    NetworkRule {
        direction,
        name: name.to_string(),
        pod_selector,
        ports,
        peers,
    }
}

/// The policy's selector AND the rule's `appliesTo`, as one selector; `Err(key)` when both set
/// the same label to different values.
fn narrow(
    base: Option<&LabelSelector>,
    narrower: Option<&LabelSelector>,
) -> Result<LabelSelector, String> {
    let mut merged = base.cloned().unwrap_or_default();
    let Some(narrower) = narrower else {
        return Ok(merged);
    };
    for (key, value) in narrower.match_labels.iter().flatten() {
        let labels = merged.match_labels.get_or_insert_default();
        match labels.get(key) {
            Some(existing) if existing != value => return Err(key.clone()),
            _ => {
                labels.insert(key.clone(), value.clone());
            }
        }
    }
    if let Some(expressions) = &narrower.match_expressions {
        merged
            .match_expressions
            .get_or_insert_default()
            .extend(expressions.iter().cloned());
    }
    Ok(merged)
}

fn validate_port(port: &PortSpec, field: &str, problems: &mut Problems) -> NetworkPolicyPort {
    match &port.port {
        Some(IntOrString::Int(number)) if !(1..=65535).contains(number) => {
            problems.add(format!("{field}.port"), "must be between 1 and 65535");
        }
        Some(IntOrString::String(name)) if !is_port_name(name) => problems.add(
            format!("{field}.port"),
            format!(
                "{name:?} is not a port name: 1 to 15 lower-case letters, digits and single hyphens, with at least one letter"
            ),
        ),
        _ => {}
    }
    if let Some(end) = port.end_port {
        match &port.port {
            Some(IntOrString::Int(start)) if end >= *start && end <= 65535 => {}
            Some(IntOrString::Int(_)) => problems.add(
                format!("{field}.endPort"),
                "must be at least port and at most 65535",
            ),
            _ => problems.add(format!("{field}.endPort"), "needs a numeric port"),
        }
    }
    NetworkPolicyPort {
        protocol: Some(port.protocol.as_str().to_string()),
        port: port.port.clone(),
        end_port: port.end_port,
    }
}

fn validate_peer(peer: &Peer, field: &str, problems: &mut Problems) -> NetworkPolicyPeer {
    let selectors = peer.namespace_selector.is_some() || peer.pod_selector.is_some();
    if peer.ip_block.is_some() == selectors {
        problems.add(
            field,
            "a peer is either an ipBlock or namespace and pod selectors, not both and not neither",
        );
    }
    parse_selector(
        peer.namespace_selector.as_ref(),
        &format!("{field}.namespaceSelector"),
        problems,
    );
    parse_selector(
        peer.pod_selector.as_ref(),
        &format!("{field}.podSelector"),
        problems,
    );
    let ip_block = peer.ip_block.as_ref().map(|block| {
        let field = format!("{field}.ipBlock");
        let cidr = parse_cidr(&block.cidr, &format!("{field}.cidr"), problems);
        if block.except.len() > MAX_EXCEPTS {
            problems.add(
                format!("{field}.except"),
                format!("at most {MAX_EXCEPTS} entries"),
            );
        }
        for (k, except) in block.except.iter().enumerate() {
            let efield = format!("{field}.except[{k}]");
            let inner = parse_cidr(except, &efield, problems);
            let (Some(outer), Some(inner)) = (cidr, inner) else {
                continue;
            };
            if !same_family(outer, inner) {
                problems.add(
                    efield,
                    format!(
                        "{except} is not of the same address family as {}",
                        block.cidr
                    ),
                );
            } else if !(outer.contains(&inner) && inner.prefix_len() > outer.prefix_len()) {
                problems.add(
                    efield,
                    format!("{except} is not strictly inside {}", block.cidr),
                );
            }
        }
        IPBlock {
            cidr: block.cidr.clone(),
            except: (!block.except.is_empty()).then(|| block.except.clone()),
        }
    });
    NetworkPolicyPeer {
        ip_block,
        namespace_selector: peer.namespace_selector.clone(),
        pod_selector: peer.pod_selector.clone(),
    }
}

fn same_family(a: IpNet, b: IpNet) -> bool {
    matches!(
        (a, b),
        (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
    )
}

/// A CIDR with no host bits set; IPv4-mapped IPv6 blocks are refused, as the API server does.
fn parse_cidr(text: &str, field: &str, problems: &mut Problems) -> Option<IpNet> {
    let Ok(net) = IpNet::from_str(text) else {
        problems.add(
            field,
            format!("{text:?} is not a CIDR such as 10.0.0.0/8 or 2001:db8::/32"),
        );
        return None;
    };
    if let IpAddr::V6(address) = net.addr()
        && address.to_ipv4_mapped().is_some()
    {
        problems.add(
            field,
            format!("{text:?} is an IPv4-mapped IPv6 block: write the IPv4 block instead"),
        );
        return None;
    }
    if net.trunc() != net {
        problems.add(
            field,
            format!("{text:?} has host bits set: the block is {}", net.trunc()),
        );
        return None;
    }
    Some(net)
}

/// A DNS label: 1 to 63 lower-case alphanumerics or '-', alphanumeric at both ends.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A container port name (IANA service name): 1 to 15 lower-case alphanumerics and single
/// hyphens, at least one letter, no hyphen at either end.
pub fn is_port_name(name: &str) -> bool {
    is_dns_label(name)
        && name.len() <= 15
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.contains("--")
}

#[cfg(test)]
mod tests {
    use crate::crd::GoREALSecurityPolicy;
    use crate::model::{NetworkSettings, validate};

    /// Validates a policy in namespace `shop` selecting `app: shop` with the given
    /// `spec.networkPolicy` YAML; returns the settings or every error message.
    #[allow(clippy::unwrap_in_result)]
    fn check(network: &str) -> Result<NetworkSettings, Vec<String>> {
        let body: String = network.lines().map(|l| format!("    {l}\n")).collect();
        let yaml = format!(
            "apiVersion: security.goreal.io/v1alpha1\nkind: GoREALSecurityPolicy\n\
             metadata: {{name: p, namespace: shop}}\n\
             spec:\n  selector: {{matchLabels: {{app: shop}}}}\n  networkPolicy:\n{body}"
        );
        let raw: GoREALSecurityPolicy = serde_saphyr::from_str(&yaml).expect("policy YAML");
        validate(&raw)
            .map(|v| v.network.expect("network settings"))
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    fn errors(network: &str) -> String {
        check(network).expect_err("must be refused").join("\n")
    }

    #[test]
    fn defaults_deny_ingress_only_without_dns() {
        let settings = check("{}").expect("valid");
        assert!(settings.deny_ingress && !settings.deny_egress);
        assert!(!settings.allow_dns && !settings.allow_api_server);
    }

    #[test]
    fn dns_is_allowed_by_default_when_egress_is_denied_and_can_be_turned_off() {
        assert!(check("defaultDeny: [Egress]").expect("valid").allow_dns);
        let off = check("defaultDeny: [Egress]\nallowDNS: false").expect("valid");
        assert!(!off.allow_dns);
    }

    #[test]
    fn full_rule_shapes_are_accepted_ipv4_and_ipv6() {
        let settings = check(
            "defaultDeny: [Ingress, Egress]\n\
             ingress:\n\
             - name: web\n  ports: [{port: 80}, {port: http}, {port: 8000, endPort: 8080, protocol: UDP}, {protocol: SCTP}]\n  \
               from:\n  - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}\n  \
               - ipBlock: {cidr: '2001:db8::/32', except: ['2001:db8:1::/48']}\n  \
               - namespaceSelector: {matchLabels: {team: a}}\n    podSelector: {matchLabels: {app: b}}\n\
             egress:\n- name: out\n  allowAll: true",
        )
        .expect("valid");
        assert_eq!(settings.rules.len(), 2);
        let web = &settings.rules[0];
        assert_eq!(web.ports.len(), 4);
        assert_eq!(web.ports[3].protocol.as_deref(), Some("SCTP"));
        assert!(web.ports[3].port.is_none());
        assert_eq!(web.peers.len(), 3);
        assert!(settings.rules[1].peers.is_empty());
    }

    #[test]
    fn cidrs_must_parse_and_have_no_host_bits() {
        let e = errors(
            "ingress:\n- name: a\n  from: [{ipBlock: {cidr: 10.0.0.1/8}}, {ipBlock: {cidr: nope}}, {ipBlock: {cidr: '::ffff:10.0.0.0/104'}}, {ipBlock: {cidr: '2001:db8::1/32'}}]",
        );
        assert!(
            e.contains(
                "from[0].ipBlock.cidr: \"10.0.0.1/8\" has host bits set: the block is 10.0.0.0/8"
            ),
            "{e}"
        );
        assert!(
            e.contains("from[1].ipBlock.cidr: \"nope\" is not a CIDR"),
            "{e}"
        );
        assert!(
            e.contains("from[2].ipBlock.cidr: \"::ffff:10.0.0.0/104\" is an IPv4-mapped"),
            "{e}"
        );
        assert!(e.contains("from[3].ipBlock.cidr: \"2001:db8::1/32\" has host bits set: the block is 2001:db8::/32"), "{e}");
    }

    #[test]
    fn excepts_must_be_strictly_inside_and_of_the_same_family() {
        let e = errors(
            "ingress:\n- name: a\n  from:\n  - ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16, '::/64', 10.0.0.0/8, 10.1.0.1/16]}\n  \
             - ipBlock: {cidr: 'fd00::/8', except: ['fe00::/16', 'fd00:1::/32']}",
        );
        assert!(
            e.contains("except[0]: 11.0.0.0/16 is not strictly inside 10.0.0.0/8"),
            "{e}"
        );
        assert!(
            e.contains("except[1]: ::/64 is not of the same address family as 10.0.0.0/8"),
            "{e}"
        );
        assert!(
            e.contains("except[2]: 10.0.0.0/8 is not strictly inside 10.0.0.0/8"),
            "{e}"
        );
        assert!(
            e.contains("except[3]: \"10.1.0.1/16\" has host bits set"),
            "{e}"
        );
        assert!(
            e.contains("from[1].ipBlock.except[0]: fe00::/16 is not strictly inside fd00::/8"),
            "{e}"
        );
        assert!(
            !e.contains("fd00:1::/32"),
            "an IPv6 except inside its block is fine: {e}"
        );
    }

    #[test]
    fn ports_are_checked() {
        let e = errors(
            "ingress:\n- name: a\n  allowAll: true\n  ports: [{port: 0}, {port: 65536}, {port: Http}, {port: a--b}, {port: '123'}, {port: http, endPort: 90}, {port: 100, endPort: 90}, {endPort: 5}, {port: 65535, endPort: 65535}]",
        );
        for (i, wanted) in [
            (0, "must be between 1 and 65535"),
            (1, "must be between 1 and 65535"),
            (2, "is not a port name"),
            (3, "is not a port name"),
            (4, "is not a port name"),
            (5, "endPort: needs a numeric port"),
            (6, "endPort: must be at least port"),
            (7, "endPort: needs a numeric port"),
        ] {
            assert!(
                e.contains(&format!("ports[{i}].")) && e.contains(wanted),
                "{i}: {e}"
            );
        }
        assert!(!e.contains("ports[8]"), "{e}");
    }

    #[test]
    fn an_empty_peer_list_must_be_written_as_allow_all() {
        let e = errors("ingress:\n- name: a\n  ports: [{port: 80}]");
        assert!(
            e.contains("ingress[0].from: is empty, which admits every peer"),
            "{e}"
        );
        let e = errors(
            "defaultDeny: [Egress]\negress:\n- name: a\n  allowAll: true\n  to: [{podSelector: {}}]",
        );
        assert!(
            e.contains("egress[0].allowAll: admits every peer: it cannot be combined with to"),
            "{e}"
        );
    }

    #[test]
    fn names_are_dns_labels_unique_per_direction() {
        let e = errors(
            "ingress:\n- {name: A_b, allowAll: true}\n- {name: web, allowAll: true}\n- {name: web, allowAll: true}",
        );
        assert!(
            e.contains("ingress[0].name: \"A_b\" is not a DNS label"),
            "{e}"
        );
        assert!(
            e.contains("ingress[2].name: rule \"web\" is defined twice"),
            "{e}"
        );
        let same_name_both_ways = "defaultDeny: [Ingress, Egress]\ningress: [{name: web, allowAll: true}]\negress: [{name: web, allowAll: true}]";
        assert!(check(same_name_both_ways).is_ok());
    }

    #[test]
    fn rules_and_egress_allowances_need_their_direction_denied() {
        let e = errors(
            "defaultDeny: [Ingress]\negress: [{name: a, allowAll: true}]\nallowDNS: true\nallowAPIServer: true",
        );
        assert!(
            e.contains("spec.networkPolicy.egress: egress rules need Egress in defaultDeny"),
            "{e}"
        );
        assert!(e.contains("allowDNS: needs Egress"), "{e}");
        assert!(e.contains("allowAPIServer: needs Egress"), "{e}");
        let e = errors("defaultDeny: [Egress]\ningress: [{name: a, allowAll: true}]");
        assert!(
            e.contains("ingress rules need Ingress in defaultDeny"),
            "{e}"
        );
        let e = errors("defaultDeny: [Ingress, Ingress]");
        assert!(e.contains("defaultDeny[1]: Ingress is listed twice"), "{e}");
        assert!(errors("defaultDeny: []").contains("must name Ingress, Egress or both"));
    }

    #[test]
    fn peers_are_one_kind_and_selectors_are_checked() {
        let e = errors(
            "ingress:\n- name: a\n  from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}, {}, {podSelector: {matchLabels: {'bad key!': x}}}]",
        );
        assert!(e.contains("from[0]: a peer is either"), "{e}");
        assert!(e.contains("from[1]: a peer is either"), "{e}");
        assert!(e.contains("from[2].podSelector.matchLabels"), "{e}");
    }

    #[test]
    fn applies_to_narrows_the_policy_selector_and_contradictions_are_refused() {
        let settings = check(
            "ingress:\n- name: a\n  allowAll: true\n  appliesTo: {matchLabels: {tier: web}, matchExpressions: [{key: x, operator: Exists}]}",
        )
        .expect("valid");
        let selector = &settings.rules[0].pod_selector;
        let labels = selector.match_labels.clone().unwrap_or_default();
        assert_eq!(labels.get("app").map(String::as_str), Some("shop"));
        assert_eq!(labels.get("tier").map(String::as_str), Some("web"));
        assert_eq!(selector.match_expressions.as_ref().map(Vec::len), Some(1));
        let e = errors(
            "ingress:\n- name: a\n  allowAll: true\n  appliesTo: {matchLabels: {app: other}}",
        );
        assert!(
            e.contains("\"app\" contradicts the policy's selector"),
            "{e}"
        );
    }

    #[test]
    fn egress_to_an_address_block_needs_port_numbers() {
        let e = errors(
            "defaultDeny: [Egress]\negress:\n- name: out\n  ports: [{port: https}, {port: 443}]\n  to: [{ipBlock: {cidr: 203.0.113.0/24}}]",
        );
        assert!(
            e.contains("egress[0].ports[0].port: \"https\" is a port name"),
            "{e}"
        );
        assert!(!e.contains("ports[1]"), "{e}");
        let to_pods = "defaultDeny: [Egress]\negress:\n- name: db\n  ports: [{port: postgres}]\n  to: [{podSelector: {}}]";
        assert!(check(to_pods).is_ok());
    }

    #[test]
    fn list_sizes_are_bounded_as_in_the_schema() {
        let peers: String = (0..17)
            .map(|i| format!("{{ipBlock: {{cidr: 10.{i}.0.0/16}}}}, "))
            .collect();
        let e = errors(&format!("ingress:\n- name: a\n  from: [{peers}]"));
        assert!(e.contains("at most 16 peers"), "{e}");
    }
}
