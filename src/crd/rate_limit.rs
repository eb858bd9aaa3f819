//! The `rateLimiting` section of the spec: request limits per path, the response security
//! headers, the TLS floor and the trusted proxies, written once and rendered for nginx,
//! ingress-nginx and Envoy Gateway (`policy::rate_limit`). The schema refuses everything that
//! could end up as something other than a value in a generated nginx file.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Rate limits and response hardening for the policy's HTTP entry points.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitingSpec {
    /// Limited paths, each with its own bucket per client.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.all(z, self.exists_one(y, y.name == z.name))").message("zone names must be unique"))]
    #[x_kube(validation = Rule::new("self.all(z, self.exists_one(y, y.path == z.path))").message("zone paths must be unique: one location per path"))]
    pub zones: Vec<RateLimitZoneSpec>,
    /// Status of a request past its zone's rate and burst (default 429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 400, max = 599))]
    pub status_code: Option<u16>,
    /// Response headers sent on every response, errors and limited requests included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_headers: Option<SecurityHeadersSpec>,
    /// TLS protocols and ciphers of the proxy (default TLSv1.2 and TLSv1.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Proxies whose forwarded client address is trusted and becomes the limiting key.
    #[serde(default, rename = "realIP", skip_serializing_if = "Option::is_none")]
    pub real_ip: Option<RealIpSpec>,
    /// Ingresses (ingress-nginx annotations) and HTTPRoutes (Envoy Gateway policy) of the
    /// namespace that get the limits, by their labels; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_selector: Option<LabelSelector>,
    /// Which outputs to write (default all three; each is written only where it applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(validation = Rule::new("self.all(o, self.exists_one(p, p == o))").message("outputs must be unique"))]
    pub outputs: Option<Vec<RateLimitOutput>>,
    /// Settings of the nginx include files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxSpec>,
}

/// One limited path.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitZoneSpec {
    /// Zone name, such as `api` or `login`: lower-case letters, digits and underscores.
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub name: String,
    /// Path prefix the zone limits, such as `/api/` (an nginx prefix location).
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^/[A-Za-z0-9._~!&()*+,=:@%/-]*$")
    )]
    pub path: String,
    /// Sustained rate per client: `N r/s` or `N r/m` written without spaces, such as `10r/s`.
    #[schemars(length(min = 4, max = 10), regex(pattern = r"^[1-9][0-9]{0,5}r/[sm]$"))]
    pub rate: String,
    /// Requests above the rate that are still served (queued, or at once with `nodelay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100000))]
    pub burst: Option<u32>,
    /// Serve the burst at once instead of spacing it out at the rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodelay: Option<bool>,
    /// The nginx variable that tells clients apart (default `$binary_remote_addr`): one nginx
    /// always knows (`$remote_addr`, `$host`, `$uri`, ...) or `$http_NAME`, `$cookie_NAME`,
    /// `$arg_NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), regex(pattern = r"^\$[a-z_][a-z0-9_]*$"))]
    pub key: Option<String>,
    /// Shared memory for the zone's client states, 32k to 1g, such as `10m` (default; about
    /// 160,000 clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 8), regex(pattern = r"^[1-9][0-9]{0,5}[km]$"))]
    pub zone_size: Option<String>,
}

/// Response headers; an absent header takes the guide's value, an empty one is not sent.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecurityHeadersSpec {
    /// `Strict-Transport-Security` (default `max-age=63072000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r#"^[^\x00-\x1f\x7f"\\$]*$"#))]
    pub hsts: Option<String>,
    /// `X-Frame-Options` (default `DENY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r#"^[^\x00-\x1f\x7f"\\$]*$"#))]
    pub frame_options: Option<String>,
    /// `X-Content-Type-Options` (default `nosniff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r#"^[^\x00-\x1f\x7f"\\$]*$"#))]
    pub content_type_options: Option<String>,
    /// `Referrer-Policy` (default `strict-origin-when-cross-origin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r#"^[^\x00-\x1f\x7f"\\$]*$"#))]
    pub referrer_policy: Option<String>,
    /// `Content-Security-Policy` (not sent by default: it depends on the application).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096), regex(pattern = r#"^[^\x00-\x1f\x7f"\\$]*$"#))]
    pub content_security_policy: Option<String>,
}

/// TLS settings of the proxy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Protocols offered (default TLSv1.2 and TLSv1.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q == p))").message("protocols must be unique"))]
    pub protocols: Option<Vec<TlsProtocol>>,
    /// OpenSSL cipher list for TLSv1.2 (default the guide's ECDHE/DHE AES-GCM list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 1024),
        regex(pattern = r"^[A-Za-z0-9_:+!@=.-]+$")
    )]
    pub ciphers: Option<String>,
}

/// TLS protocol versions as nginx names them.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum TlsProtocol {
    /// TLS 1.0 (obsolete; fails the TLS floor check).
    #[serde(rename = "TLSv1")]
    Tls10,
    /// TLS 1.1 (obsolete; fails the TLS floor check).
    #[serde(rename = "TLSv1.1")]
    Tls11,
    /// TLS 1.2.
    #[serde(rename = "TLSv1.2")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

impl TlsProtocol {
    /// The nginx name.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsProtocol::Tls10 => "TLSv1",
            TlsProtocol::Tls11 => "TLSv1.1",
            TlsProtocol::Tls12 => "TLSv1.2",
            TlsProtocol::Tls13 => "TLSv1.3",
        }
    }
}

/// Trusted proxies in front of nginx.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RealIpSpec {
    /// Address blocks of the proxies whose forwarded address is believed, such as
    /// `10.0.0.0/8`; never everyone (`0.0.0.0/0`, `::/0`).
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 64)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("every trusted proxy must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32"))]
    #[x_kube(validation = Rule::new("self.all(c, !isCIDR(c) || cidr(c).prefixLength() > 0)").message("a trusted range of everyone (0.0.0.0/0 or ::/0) lets any client choose its own address"))]
    pub trusted_proxies: Vec<String>,
    /// The header carrying the client address (default `X-Forwarded-For`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<RealIpHeader>,
}

/// Headers that carry the client address.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RealIpHeader {
    /// `X-Forwarded-For`, the last address not of a trusted proxy.
    #[default]
    #[serde(rename = "X-Forwarded-For")]
    XForwardedFor,
    /// `X-Real-IP`.
    #[serde(rename = "X-Real-IP")]
    XRealIp,
}

impl RealIpHeader {
    /// The header name.
    pub fn as_str(self) -> &'static str {
        match self {
            RealIpHeader::XForwardedFor => "X-Forwarded-For",
            RealIpHeader::XRealIp => "X-Real-IP",
        }
    }
}

/// The places rate limits are written to.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum RateLimitOutput {
    /// A ConfigMap of nginx include files for the GoREAL reverse proxy.
    Nginx,
    /// ingress-nginx annotations on the Ingresses `ingressSelector` matches.
    IngressNginx,
    /// An Envoy Gateway BackendTrafficPolicy for the HTTPRoutes `ingressSelector` matches, when
    /// its CRD is installed.
    #[serde(rename = "GatewayAPI")]
    GatewayApi,
}

/// The nginx include files.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NginxSpec {
    /// An existing directory for nginx's temp directories and pid file, writable with a
    /// read-only root filesystem (default `/tmp`, the default writable path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 200), regex(pattern = r"^(/[A-Za-z0-9._-]+)+$"))]
    pub temp_path: Option<String>,
    /// Where each location passes requests, such as `http://api:5000`; absent, a location
    /// serves what the including server's `root` holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 8, max = 256),
        regex(pattern = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")
    )]
    pub proxy_pass: Option<String>,
}
