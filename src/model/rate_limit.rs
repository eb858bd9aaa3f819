//! Validation of the `rateLimiting` section. It repeats every schema rule (a policy read by
//! `render` never met the API server) and adds what the schema cannot say: zone sizes nginx can
//! hold, a temp directory that stays writable with a read-only root filesystem.

use std::collections::BTreeSet;
use std::str::FromStr;

use ipnet::IpNet;

use super::{PodSecuritySettings, Problems, Selector, parse_selector};
use crate::crd::{RateLimitOutput, RateLimitingSpec, RealIpHeader, TlsProtocol};

/// The guide's HSTS value.
pub const DEFAULT_HSTS: &str = "max-age=63072000";
/// The guide's TLSv1.2 cipher list.
pub const DEFAULT_CIPHERS: &str =
    "ECDHE-RSA-AES256-GCM-SHA512:DHE-RSA-AES256-GCM-SHA512:ECDHE-RSA-AES256-GCM-SHA384";
/// Where nginx keeps temp files and its pid by default: the default writable path. nginx
/// creates its temp directories there (one level only, so the directory itself must exist).
pub const DEFAULT_TEMP_PATH: &str = "/tmp";
/// nginx refuses a shared zone smaller than eight pages.
const MIN_ZONE_BYTES: u64 = 32 * 1024;
/// A zone is shared memory of every nginx worker: beyond 1g it is a typo, not a need (10m holds
/// about 160,000 clients).
const MAX_ZONE_BYTES: u64 = 1024 * 1024 * 1024;

/// The headers the guide asks for, in the order they are written.
pub const HEADER_NAMES: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Content-Security-Policy",
];

/// Validated rate limiting settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimitSettings {
    /// Limited paths, in spec order.
    pub zones: Vec<Zone>,
    /// Status of a limited request.
    pub status_code: u16,
    /// Headers sent, as (name, value), in [`HEADER_NAMES`] order.
    pub headers: Vec<(&'static str, String)>,
    /// TLS protocols, oldest first.
    pub tls_protocols: Vec<TlsProtocol>,
    /// TLSv1.2 ciphers.
    pub ciphers: String,
    /// Trusted proxies, when configured.
    pub real_ip: Option<RealIp>,
    /// Ingresses and HTTPRoutes that get the limits; `None` selects none.
    pub ingress_selector: Option<Selector>,
    /// Outputs to write.
    pub outputs: BTreeSet<RateLimitOutput>,
    /// nginx temp and pid directory.
    pub temp_path: String,
    /// Upstream of every location, when configured.
    pub proxy_pass: Option<String>,
}

/// One limited path.
#[derive(Clone, Debug, PartialEq)]
pub struct Zone {
    /// Zone name, unique in the policy.
    pub name: String,
    /// Path prefix.
    pub path: String,
    /// Sustained rate.
    pub rate: Rate,
    /// Requests above the rate still served.
    pub burst: u32,
    /// Serve the burst at once.
    pub nodelay: bool,
    /// nginx variable keying the clients.
    pub key: String,
    /// Shared memory size as written, such as `10m`.
    pub size: String,
}

/// A rate: `count` requests per second or per minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests.
    pub count: u32,
    /// Per minute (else per second).
    pub per_minute: bool,
}

impl Rate {
    /// Parses `10r/s` or `60r/m`.
    pub fn parse(text: &str) -> Option<Rate> {
        let (count, unit) = text.split_once("r/")?;
        let per_minute = match unit {
            "s" => false,
            "m" => true,
            _ => return None,
        };
        if !plain_number(count) {
            return None;
        }
        let count = count.parse().ok()?;
        Some(Rate { count, per_minute })
    }

    /// Requests per minute, for comparing rates of either unit exactly.
    pub fn per_minute_count(self) -> u64 {
        if self.per_minute {
            u64::from(self.count)
        } else {
            u64::from(self.count) * 60
        }
    }

    /// As nginx writes it.
    pub fn nginx(self) -> String {
        format!(
            "{}r/{}",
            self.count,
            if self.per_minute { "m" } else { "s" }
        )
    }
}

/// Trusted proxies.
#[derive(Clone, Debug, PartialEq)]
pub struct RealIp {
    /// Their address blocks.
    pub trusted: Vec<IpNet>,
    /// The header carrying the client address.
    pub header: RealIpHeader,
}

fn valid_zone_name(name: &str) -> bool {
    let mut chars = name.chars();
    (1..=32).contains(&name.len())
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn valid_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= 256
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._~!&()*+,=:@%/-".contains(c))
}

/// Variables nginx always knows; `$http_*`, `$cookie_*` and `$arg_*` exist for any name. An
/// unknown variable would stop nginx from loading the configuration.
const KEY_VARIABLES: [&str; 7] = [
    "binary_remote_addr",
    "remote_addr",
    "realip_remote_addr",
    "host",
    "server_name",
    "uri",
    "request_uri",
];
const KEY_PREFIXES: [&str; 3] = ["http_", "cookie_", "arg_"];

fn valid_key(key: &str) -> bool {
    let Some(name) = key.strip_prefix('$') else {
        return false;
    };
    let mut chars = name.chars();
    let shaped = key.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    shaped
        && (KEY_VARIABLES.contains(&name)
            || KEY_PREFIXES
                .iter()
                .any(|p| name.strip_prefix(p).is_some_and(|rest| !rest.is_empty())))
}

/// One to six ASCII digits without a leading zero (`parse` alone would take `+1`).
fn plain_number(text: &str) -> bool {
    (1..=6).contains(&text.len())
        && !text.starts_with('0')
        && text.bytes().all(|b| b.is_ascii_digit())
}

/// Bytes of a size like `10m` or `512k`.
fn zone_bytes(size: &str) -> Option<u64> {
    let (number, unit) = if let Some(number) = size.strip_suffix('k') {
        (number, 1024)
    } else {
        (size.strip_suffix('m')?, 1024 * 1024)
    };
    if !plain_number(number) {
        return None;
    }
    number.parse::<u64>().ok().map(|n| n * unit)
}

/// Why a header value cannot go into an nginx `add_header` line, if it cannot; `max` is the
/// schema's length limit for that header.
fn header_value_problem(value: &str, max: usize) -> Option<String> {
    if value.chars().any(|c| c.is_control()) {
        Some("must not contain control characters such as CR or LF (header injection)".into())
    } else if value.contains(['"', '\\', '$']) {
        Some("must not contain \", \\ or $ (nginx would read them as quoting or variables)".into())
    } else if value.len() > max {
        Some(format!("must be at most {max} characters"))
    } else {
        None
    }
}

pub(super) fn validate_rate_limiting(
    spec: &RateLimitingSpec,
    pod_security: Option<&PodSecuritySettings>,
    problems: &mut Problems,
) -> RateLimitSettings {
    let field = "spec.rateLimiting";
    if spec.zones.is_empty() {
        problems.add(format!("{field}.zones"), "at least one zone is required");
    }
    let mut names = BTreeSet::new();
    let mut paths = BTreeSet::new();
    let mut zones = Vec::new();
    for (i, zone) in spec.zones.iter().enumerate() {
        let at = format!("{field}.zones[{i}]");
        if !valid_zone_name(&zone.name) {
            problems.add(
                format!("{at}.name"),
                format!(
                    "{:?} is not a zone name: 1 to 32 lower-case letters, digits and underscores, starting with a letter",
                    zone.name
                ),
            );
        } else if !names.insert(zone.name.clone()) {
            problems.add(
                format!("{at}.name"),
                format!("zone {:?} is declared twice", zone.name),
            );
        }
        if !valid_path(&zone.path) {
            problems.add(
                format!("{at}.path"),
                format!(
                    "{:?} is not a path prefix: it must start with / and use only URL path characters (no spaces, quotes, braces, ; or $)",
                    zone.path
                ),
            );
        } else if !paths.insert(zone.path.clone()) {
            problems.add(
                format!("{at}.path"),
                format!("path {:?} has two zones", zone.path),
            );
        }
        let rate = Rate::parse(&zone.rate);
        if rate.is_none() {
            problems.add(
                format!("{at}.rate"),
                format!("{:?} is not a rate such as 10r/s or 60r/m (a positive integer, at most 999999)", zone.rate),
            );
        }
        let burst = zone.burst.unwrap_or(0);
        if burst > 100_000 {
            problems.add(format!("{at}.burst"), "must be at most 100000");
        }
        let key = zone
            .key
            .clone()
            .unwrap_or_else(|| "$binary_remote_addr".into());
        if !valid_key(&key) {
            problems.add(
                format!("{at}.key"),
                format!(
                    "{key:?} is not a variable nginx knows: one of ${} or $http_NAME, $cookie_NAME, $arg_NAME",
                    KEY_VARIABLES.join(", $")
                ),
            );
        }
        let size = zone.zone_size.clone().unwrap_or_else(|| "10m".into());
        match zone_bytes(&size) {
            None => problems.add(
                format!("{at}.zoneSize"),
                format!("{size:?} is not a size such as 10m or 512k"),
            ),
            Some(bytes) if bytes < MIN_ZONE_BYTES => problems.add(
                format!("{at}.zoneSize"),
                format!("{size} is smaller than the 32k nginx needs for a zone"),
            ),
            Some(bytes) if bytes > MAX_ZONE_BYTES => problems.add(
                format!("{at}.zoneSize"),
                format!(
                    "{size} is more than 1g of shared memory (10m holds about 160,000 clients)"
                ),
            ),
            Some(_) => {}
        }
        if let Some(rate) = rate {
            zones.push(Zone {
                name: zone.name.clone(),
                path: zone.path.clone(),
                rate,
                burst,
                nodelay: zone.nodelay.unwrap_or(false),
                key,
                size,
            });
        }
    }

    let status_code = spec.status_code.unwrap_or(429);
    if !(400..=599).contains(&status_code) {
        problems.add(
            format!("{field}.statusCode"),
            format!("{status_code} is not an error status (400 to 599)"),
        );
    }

    let given = spec.security_headers.clone().unwrap_or_default();
    let values = [
        (given.hsts, Some(DEFAULT_HSTS)),
        (given.frame_options, Some("DENY")),
        (given.content_type_options, Some("nosniff")),
        (
            given.referrer_policy,
            Some("strict-origin-when-cross-origin"),
        ),
        (given.content_security_policy, None),
    ];
    let fields = [
        "hsts",
        "frameOptions",
        "contentTypeOptions",
        "referrerPolicy",
        "contentSecurityPolicy",
    ];
    let mut headers = Vec::new();
    for ((name, field_name), (value, default)) in HEADER_NAMES.into_iter().zip(fields).zip(values) {
        let Some(value) = value.or(default.map(str::to_string)) else {
            continue;
        };
        let max = if name == "Content-Security-Policy" {
            4096
        } else {
            1024
        };
        if let Some(problem) = header_value_problem(&value, max) {
            // Never quote the value: it is what is wrong, and may be long or unprintable.
            problems.add(format!("{field}.securityHeaders.{field_name}"), problem);
        } else if !value.is_empty() {
            headers.push((name, value));
        }
    }

    let tls = spec.tls.clone().unwrap_or_default();
    let mut tls_protocols = tls
        .protocols
        .unwrap_or_else(|| vec![TlsProtocol::Tls12, TlsProtocol::Tls13]);
    let count = tls_protocols.len();
    tls_protocols.sort();
    tls_protocols.dedup();
    if tls_protocols.len() != count {
        problems.add(format!("{field}.tls.protocols"), "protocols must be unique");
    }
    if tls_protocols.is_empty() {
        problems.add(
            format!("{field}.tls.protocols"),
            "at least one protocol is required",
        );
    }
    let ciphers = tls.ciphers.unwrap_or_else(|| DEFAULT_CIPHERS.into());
    if ciphers.is_empty()
        || ciphers.len() > 1024
        || !ciphers
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_:+!@=.-".contains(c))
    {
        problems.add(
            format!("{field}.tls.ciphers"),
            "is not an OpenSSL cipher list (letters, digits and _:+!@=.- only)",
        );
    }

    let real_ip = spec.real_ip.as_ref().map(|real_ip| {
        if real_ip.trusted_proxies.is_empty() {
            problems.add(
                format!("{field}.realIP.trustedProxies"),
                "at least one trusted proxy range is required",
            );
        }
        let mut trusted = Vec::new();
        for (i, text) in real_ip.trusted_proxies.iter().enumerate() {
            let at = format!("{field}.realIP.trustedProxies[{i}]");
            match IpNet::from_str(text) {
                Err(_) => problems.add(
                    at,
                    format!("{text:?} is not a CIDR such as 10.0.0.0/8 or 2001:db8::/32"),
                ),
                Ok(net) if net.prefix_len() == 0 => problems.add(
                    at,
                    format!("{text} trusts every address: any client could choose its own address and bucket"),
                ),
                Ok(net) => trusted.push(net.trunc()),
            }
        }
        RealIp {
            trusted,
            header: real_ip.header.unwrap_or_default(),
        }
    });

    let ingress_selector = spec.ingress_selector.as_ref().map(|selector| {
        parse_selector(
            Some(selector),
            &format!("{field}.ingressSelector"),
            problems,
        )
    });

    let outputs_given = spec.outputs.clone().unwrap_or_else(|| {
        vec![
            RateLimitOutput::Nginx,
            RateLimitOutput::IngressNginx,
            RateLimitOutput::GatewayApi,
        ]
    });
    let outputs: BTreeSet<RateLimitOutput> = outputs_given.iter().copied().collect();
    if outputs.len() != outputs_given.len() {
        problems.add(format!("{field}.outputs"), "outputs must be unique");
    }

    let nginx = spec.nginx.clone().unwrap_or_default();
    let temp_path = nginx.temp_path.unwrap_or_else(|| DEFAULT_TEMP_PATH.into());
    let clean = temp_path.starts_with('/')
        && temp_path.len() <= 200
        && temp_path.split('/').skip(1).all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        });
    if !clean {
        problems.add(
            format!("{field}.nginx.tempPath"),
            format!("{temp_path:?} is not a clean absolute directory path"),
        );
    } else if let Some(pod) = pod_security.filter(|p| p.read_only_root_filesystem) {
        let writable = pod.writable_paths.iter().any(|w| {
            temp_path == w.path
                || temp_path.starts_with(&format!("{}/", w.path.trim_end_matches('/')))
        });
        if !writable {
            problems.add(
                format!("{field}.nginx.tempPath"),
                format!(
                    "{temp_path} is not under any of podSecurity.writablePaths, so nginx could not write its temp files with a read-only root filesystem"
                ),
            );
        }
    }
    let proxy_pass = nginx.proxy_pass;
    if let Some(upstream) = &proxy_pass {
        let rest = upstream
            .strip_prefix("http://")
            .or_else(|| upstream.strip_prefix("https://"));
        let fine = rest.is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._~/:-".contains(c))
        });
        if !fine {
            problems.add(
                format!("{field}.nginx.proxyPass"),
                format!("{upstream:?} is not an upstream URL such as http://api:5000"),
            );
        }
    }

    RateLimitSettings {
        zones,
        status_code,
        headers,
        tls_protocols,
        ciphers,
        real_ip,
        ingress_selector,
        outputs,
        temp_path,
        proxy_pass,
    }
}
