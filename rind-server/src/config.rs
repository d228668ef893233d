//! Every `rind-server` option: a clap flag with its environment twin, and the checks that
//! turn raw flags into a [`Config`] the rest of the server can trust.
//!
//! Flags and defaults are documented in `docs/reference.md` ("rind-server flags"); the
//! operations flags (query log, log format) are flattened in from [`crate::operations`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use hickory_proto::rr::Name;
use ipnet::IpNet;
use rustls::RootCertStore;

use crate::blocklist::BlockMode;
use crate::operations::{Operations, OperationsArgs, OperationsError};
use crate::upstream::trust::{self, TrustError};

/// The contract's default client networks: loopback, RFC 1918, RFC 6598, ULA, link-local.
const DEFAULT_ALLOW: &str =
    "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7,fe80::/10";

/// Command-line flags of `rind-server`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "rind-server",
    version,
    about = "A local DNS forwarder and cache with records managed over a REST API",
    after_help = "Example:\n  rind-server --dns-addr 127.0.0.1:5353 --upstream 9.9.9.9 --data-dir ./rind-data"
)]
pub struct Args {
    /// UDP and TCP address the DNS server listens on.
    #[arg(long, env = "RIND_DNS_ADDR", default_value = "0.0.0.0:53")]
    pub dns_addr: SocketAddr,

    /// Address of the REST API and /metrics.
    #[arg(long, env = "RIND_HTTP_ADDR", default_value = "127.0.0.1:8053")]
    pub http_addr: SocketAddr,

    /// Upstream resolver: IP[:port] (UDP, TCP when truncated), tcp://IP[:port] (TCP only),
    /// tls://IP[:port][#NAME] (DNS over TLS) or https://HOST[:port]/PATH[#IP] (DNS over HTTPS).
    #[arg(
        long = "upstream",
        env = "RIND_UPSTREAMS",
        value_delimiter = ',',
        default_value = "1.1.1.1:53,1.0.0.1:53"
    )]
    // Parsed in `validate`, so a bad value is refused in one line (clap's message has three).
    pub upstreams: Vec<String>,

    /// PEM file of the CA certificates that tls:// and https:// upstreams are checked against,
    /// instead of the system's.
    #[arg(long, env = "RIND_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,

    /// Split DNS: ZONE=UPSTREAM[,UPSTREAM...] sends names at or below ZONE only to those
    /// upstreams (the most specific zone wins).
    #[arg(
        long = "forward-zone",
        env = "RIND_FORWARD_ZONES",
        value_delimiter = ';'
    )]
    pub forward_zones: Vec<String>,

    /// The sled directory holding local records and the persistent cache.
    #[arg(long, env = "RIND_DATA_DIR", default_value = "./rind-data")]
    pub data_dir: PathBuf,

    /// Bearer token required on every /api/ request and on /metrics.
    #[arg(long, env = "RIND_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Client network (CIDR) that gets answers; others get REFUSED.
    #[arg(long = "allow", env = "RIND_ALLOW", value_delimiter = ',', default_value = DEFAULT_ALLOW)]
    pub allow: Vec<IpNet>,

    /// Most cached answers kept; least recently used go first.
    #[arg(long, env = "RIND_CACHE_SIZE", default_value_t = 100_000)]
    pub cache_size: usize,

    /// Log level.
    #[arg(long, env = "RIND_LOG", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Lower clamp on cached TTLs, in seconds.
    #[arg(long, env = "RIND_MIN_TTL", default_value_t = 0)]
    pub min_ttl: u32,

    /// Upper clamp on cached TTLs, in seconds.
    #[arg(long, env = "RIND_MAX_TTL", default_value_t = 86_400)]
    pub max_ttl: u32,

    /// Cap on how long NXDOMAIN/NODATA answers are cached, in seconds.
    #[arg(long, env = "RIND_MAX_NEGATIVE_TTL", default_value_t = 3_600)]
    pub max_negative_ttl: u32,

    /// Seconds past expiry an answer may still be served when no upstream answers (0 = off).
    #[arg(long, env = "RIND_SERVE_STALE", default_value_t = 0)]
    pub serve_stale: u32,

    /// Refresh popular entries in the background before they expire.
    #[arg(long, env = "RIND_PREFETCH")]
    pub prefetch: bool,

    /// Where POST /api/v1/snapshot writes copies of the store [default: <data-dir>-snapshots]
    #[arg(long, env = "RIND_SNAPSHOT_DIR")]
    pub snapshot_dir: Option<PathBuf>,

    /// Seconds between scheduled snapshots into --snapshot-dir (0 = none).
    #[arg(long, env = "RIND_SNAPSHOT_INTERVAL", default_value_t = 86_400)]
    pub snapshot_interval: u64,

    /// Snapshots kept in --snapshot-dir; older ones are removed once a new one is complete.
    #[arg(long, env = "RIND_SNAPSHOT_KEEP", default_value_t = 7)]
    pub snapshot_keep: usize,

    /// Most DNS-over-TCP connections open at once; more are closed on accept.
    #[arg(long, env = "RIND_MAX_TCP_CONNECTIONS", default_value_t = 256)]
    pub max_tcp_connections: usize,

    /// Seconds a DNS-over-TCP connection may stay idle before the server closes it.
    #[arg(long, env = "RIND_TCP_IDLE_TIMEOUT", default_value_t = 10)]
    pub tcp_idle_timeout: u64,

    /// Most distinct questions waiting on upstreams at once; more get SERVFAIL at once.
    #[arg(long, env = "RIND_MAX_UPSTREAM_QUERIES", default_value_t = 4096)]
    pub max_upstream_queries: usize,

    /// Queries per second allowed per client (IPv4 address or IPv6 /64); 0 = no limit.
    /// Over it, UDP queries are dropped or (one in two) answered TC=1, TCP gets REFUSED.
    #[arg(long, env = "RIND_RATE_LIMIT", default_value_t = 0)]
    pub rate_limit: u32,

    /// TSIG key for zone transfers and NOTIFY: NAME:ALGORITHM:BASE64 (hmac-sha256,
    /// hmac-sha384, hmac-sha512); a zone's "tsig" names one.
    #[arg(
        long = "tsig-key",
        env = "RIND_TSIG_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub tsig_keys: Vec<crate::tsig::Key>,

    /// Address for DNS over TLS (RFC 7858), usually port 853; needs --tls-cert and --tls-key.
    #[arg(long, env = "RIND_DOT_ADDR")]
    pub dot_addr: Option<SocketAddr>,

    /// Address for DNS over HTTPS (RFC 8484, path /dns-query), usually port 443; needs
    /// --tls-cert and --tls-key.
    #[arg(long, env = "RIND_DOH_ADDR")]
    pub doh_addr: Option<SocketAddr>,

    /// PEM certificate chain for --dot-addr and --doh-addr, leaf first; reread on SIGHUP.
    #[arg(long, env = "RIND_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert; reread on SIGHUP.
    #[arg(long, env = "RIND_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// How a name on a blocklist is answered: null (A 0.0.0.0, AAAA ::, other types NODATA)
    /// or nxdomain.
    #[arg(long, env = "RIND_BLOCK_MODE", value_enum, default_value_t = BlockMode::Null)]
    pub block_mode: BlockMode,

    /// Seconds between refreshes of each blocklist fetched by URL.
    #[arg(long, env = "RIND_BLOCKLIST_REFRESH", default_value_t = 86_400)]
    pub blocklist_refresh: u64,

    /// The query log and the log format (see [`crate::operations`]).
    #[command(flatten)]
    pub operations: OperationsArgs,
}

/// The `--log-level` values.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// Operator-relevant events (the default).
    Info,
    /// Per-query detail.
    Debug,
    /// Everything.
    Trace,
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        })
    }
}

/// How rind talks to one upstream resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// UDP, retried over TCP when the reply is truncated.
    Udp,
    /// TCP only.
    Tcp,
    /// DNS over TLS (RFC 7858); the certificate must be valid for `name`, else for the IP.
    Tls {
        /// The `#NAME` part.
        name: Option<String>,
    },
    /// DNS over HTTPS (RFC 8484): HTTP/2 POSTs to `https://host:port/path`.
    Https {
        /// The host of the URL, which the certificate must be valid for.
        host: String,
        /// The path of the URL, with its leading `/` (and query string, if any).
        path: String,
        /// Whether the address came from `#IP` rather than from resolving `host`.
        pinned: bool,
    },
}

impl Protocol {
    /// Whether the transport is encrypted (and so needs trusted certificates).
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Protocol::Tls { .. } | Protocol::Https { .. })
    }
}

/// One upstream resolver, its address known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Address and port of the resolver.
    pub addr: SocketAddr,
    /// Transport used to reach it.
    pub protocol: Protocol,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.protocol {
            Protocol::Udp => write!(f, "{}", self.addr),
            Protocol::Tcp => write!(f, "tcp://{}", self.addr),
            Protocol::Tls { name: None } => write!(f, "tls://{}", self.addr),
            Protocol::Tls { name: Some(name) } => write!(f, "tls://{}#{name}", self.addr),
            Protocol::Https { host, path, pinned } => {
                let port = self.addr.port();
                write!(f, "https://{host}:{port}{path}")?;
                if *pinned {
                    write!(f, "#{}", self.addr.ip())?;
                }
                Ok(())
            }
        }
    }
}

/// One `--upstream` value as written: an [`Upstream`], or an `https://` URL whose host is
/// still to be resolved (done once, at start, by [`Args::validate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamArg {
    /// The address is known.
    Ready(Upstream),
    /// `https://HOST[:port]/PATH` without `#IP`.
    Resolve {
        /// The URL's host name.
        host: String,
        /// The URL's port (443 when left out).
        port: u16,
        /// The URL's path.
        path: String,
    },
}

impl UpstreamArg {
    /// The upstream, resolving an `https://` host through the system resolver when needed.
    fn resolve(self) -> Result<Upstream, ConfigError> {
        let (host, port, path) = match self {
            UpstreamArg::Ready(upstream) => return Ok(upstream),
            UpstreamArg::Resolve { host, port, path } => (host, port, path),
        };
        let shown = format!("https://{host}:{port}{path}");
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .map_err(|e| ConfigError::Unresolved(shown.clone(), e.to_string()))?
            .next()
            .ok_or_else(|| ConfigError::Unresolved(shown, "no address".to_string()))?;
        Ok(Upstream {
            addr,
            protocol: Protocol::Https {
                host,
                path,
                pinned: false,
            },
        })
    }
}

impl fmt::Display for UpstreamArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamArg::Ready(upstream) => upstream.fmt(f),
            UpstreamArg::Resolve { host, port, path } => write!(f, "https://{host}:{port}{path}"),
        }
    }
}

/// `IP` or `IP:port`; a bare IPv6 address has colons but no port, so it is tried first.
fn ip_and_port(s: &str, default_port: u16) -> Option<SocketAddr> {
    let addr = match s.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, default_port),
        Err(_) => s.parse::<SocketAddr>().ok()?,
    };
    (addr.port() != 0).then_some(addr)
}

/// The name a certificate is checked against: `name` (trailing dot dropped) as rustls reads it.
pub fn certificate_name(name: &str) -> Option<rustls::pki_types::ServerName<'static>> {
    rustls::pki_types::ServerName::try_from(name.trim_end_matches('.').to_string()).ok()
}

/// Whether `s` is a host name a certificate can name: LDH labels separated by dots.
fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl FromStr for UpstreamArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let not_ip = || {
            format!(
                "upstream {s:?} is not IP[:port] (a name cannot be used: rind would need a resolver to find it)"
            )
        };
        let ready = |addr, protocol| Ok(UpstreamArg::Ready(Upstream { addr, protocol }));
        if let Some(rest) = s.strip_prefix("tcp://") {
            return ready(ip_and_port(rest, 53).ok_or_else(not_ip)?, Protocol::Tcp);
        }
        if let Some(rest) = s.strip_prefix("tls://") {
            let (addr, name) = match rest.split_once('#') {
                Some((addr, name)) => (addr, Some(name)),
                None => (rest, None),
            };
            let addr = ip_and_port(addr, 853).ok_or_else(|| {
                format!("upstream {s:?}: a tls:// upstream is tls://IP[:port][#NAME]")
            })?;
            if let Some(name) = name.filter(|n| !is_host_name(n) || certificate_name(n).is_none()) {
                return Err(format!(
                    "upstream {s:?}: {name:?} is not a host name to check the certificate against"
                ));
            }
            let name = name.map(|n| n.trim_end_matches('.').to_ascii_lowercase());
            return ready(addr, Protocol::Tls { name });
        }
        if let Some(rest) = s.strip_prefix("https://") {
            return parse_https(s, rest);
        }
        if s.contains("://") {
            return Err(format!(
                "upstream {s:?}: the schemes are tcp://, tls:// and https:// (plain IP[:port] is UDP)"
            ));
        }
        ready(ip_and_port(s, 53).ok_or_else(not_ip)?, Protocol::Udp)
    }
}

/// The part of an `https://` upstream after the scheme: `HOST[:port]/PATH[#IP]`.
fn parse_https(whole: &str, rest: &str) -> Result<UpstreamArg, String> {
    let bad = |why: &str| format!("upstream {whole:?}: {why} (https://HOST[:port]/PATH[#IP])");
    let (url, pin) = match rest.split_once('#') {
        Some((url, pin)) => (url, Some(pin)),
        None => (rest, None),
    };
    let slash = url.find('/').ok_or_else(|| bad("no path"))?;
    let (authority, path) = url.split_at(slash);
    // The path goes into a metrics label and a request line: no quotes, spaces or escapes.
    if path
        .bytes()
        .any(|b| b.is_ascii_control() || b" \"\\<>`{}|^".contains(&b))
    {
        return Err(bad("the path has characters a URL cannot carry"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (ip, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(bad("junk after ]")),
        };
        (ip, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 443,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(bad("bad port")),
        },
    };
    let host_ip = host.parse::<IpAddr>().ok();
    if host_ip.is_none() && !(is_host_name(host) && certificate_name(host).is_some()) {
        return Err(bad("bad host"));
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ip = match (pin, host_ip) {
        (Some(pin), _) => Some(
            pin.parse::<IpAddr>()
                .map_err(|_| bad("#IP is not an IP address"))?,
        ),
        (None, ip) => ip,
    };
    let path = path.to_string();
    Ok(match ip {
        Some(ip) => UpstreamArg::Ready(Upstream {
            addr: SocketAddr::new(ip, port),
            protocol: Protocol::Https {
                host,
                path,
                pinned: pin.is_some(),
            },
        }),
        None => UpstreamArg::Resolve { host, port, path },
    })
}

/// One `--forward-zone ZONE=UPSTREAM[,UPSTREAM...]` as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardZoneArg {
    /// The zone, lower-cased and fully qualified.
    pub zone: Name,
    /// Its upstreams, in the order given.
    pub upstreams: Vec<UpstreamArg>,
}

impl FromStr for ForwardZoneArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (zone, list) = s
            .split_once('=')
            .ok_or_else(|| format!("forward zone {s:?} is not ZONE=UPSTREAM[,UPSTREAM...]"))?;
        let zone = zone.trim();
        let mut name = Name::from_str(zone)
            .map_err(|e| format!("forward zone {s:?}: {zone:?} is not a domain name: {e}"))?
            .to_lowercase();
        name.set_fqdn(true);
        if name.is_root() {
            return Err(format!(
                "forward zone {s:?}: the root zone is what --upstream is for"
            ));
        }
        let upstreams = list
            .split(',')
            .filter(|u| !u.trim().is_empty())
            .map(UpstreamArg::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("forward zone {zone}: {e}"))?;
        if upstreams.is_empty() {
            return Err(format!("forward zone {s:?} names no upstream"));
        }
        Ok(ForwardZoneArg {
            zone: name,
            upstreams,
        })
    }
}

/// A forward zone with its upstreams' addresses known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardZone {
    /// The zone, lower-cased and fully qualified.
    pub zone: Name,
    /// Its upstreams, in the order given.
    pub upstreams: Vec<Upstream>,
}

/// Validated settings: what [`Args`] becomes once every cross-flag rule holds.
#[derive(Debug, Clone)]
pub struct Config {
    /// UDP and TCP listen address.
    pub dns_addr: SocketAddr,
    /// HTTP listen address.
    pub http_addr: SocketAddr,
    /// Upstream resolvers in the order given.
    pub upstreams: Vec<Upstream>,
    /// Forward zones, each with its own upstreams.
    pub forward_zones: Vec<ForwardZone>,
    /// The client settings for encrypted upstreams (with no CA at all when none is
    /// encrypted and no `--upstream-ca` was given: every certificate would fail).
    pub upstream_tls: trust::UpstreamTls,
    /// The sled directory.
    pub data_dir: PathBuf,
    /// API token, never empty when set.
    pub api_token: Option<String>,
    /// Client networks answered.
    pub allow: Vec<IpNet>,
    /// Cache capacity in entries.
    pub cache_size: usize,
    /// Log level.
    pub log_level: LogLevel,
    /// Lower TTL clamp for cached answers.
    pub min_ttl: u32,
    /// Upper TTL clamp for cached answers.
    pub max_ttl: u32,
    /// Cap on negative-cache TTLs.
    pub max_negative_ttl: u32,
    /// Serve-stale window in seconds (0 = off).
    pub serve_stale: u32,
    /// Whether popular entries are refreshed before they expire.
    pub prefetch: bool,
    /// Where snapshots are written.
    pub snapshot_dir: PathBuf,
    /// Time between scheduled snapshots (`None`: no schedule).
    pub snapshot_interval: Option<Duration>,
    /// Snapshots kept, at least 1.
    pub snapshot_keep: usize,
    /// Cap on simultaneous DNS-over-TCP connections.
    pub max_tcp_connections: usize,
    /// Idle timeout of a DNS-over-TCP connection.
    pub tcp_idle_timeout: Duration,
    /// Cap on questions waiting on upstreams.
    pub max_upstream_queries: usize,
    /// Per-client queries per second (0: off).
    pub rate_limit: u32,
    /// The TSIG keys zones may name.
    pub tsig_keys: crate::tsig::Keyring,
    /// How a blocked name is answered.
    pub block_mode: BlockMode,
    /// Time between refreshes of each fetched blocklist.
    pub blocklist_refresh: Duration,
    /// The query log and the log format.
    pub operations: Operations,
    /// The encrypted listeners, when `--dot-addr` or `--doh-addr` is given.
    pub encrypted: Option<Encrypted>,
}

/// The DNS-over-TLS and DNS-over-HTTPS listeners and the certificate they share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// DNS over TLS listen address.
    pub dot_addr: Option<SocketAddr>,
    /// DNS over HTTPS listen address.
    pub doh_addr: Option<SocketAddr>,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// A flag combination the server refuses to start with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The API would be reachable from other hosts without a token.
    #[error("--http-addr {0} is not a loopback address: set --api-token (RIND_API_TOKEN) so the API is not open to the network")]
    OpenApi(SocketAddr),
    /// `--api-token ""`.
    #[error("--api-token is empty: give a token, or leave the flag out")]
    EmptyToken,
    /// No upstream at all.
    #[error("no --upstream given: rind needs at least one resolver to forward to")]
    NoUpstream,
    /// `--min-ttl` above `--max-ttl`.
    #[error("--min-ttl {min} is greater than --max-ttl {max}")]
    TtlRange {
        /// The lower clamp.
        min: u32,
        /// The upper clamp.
        max: u32,
    },
    /// A zero limit that would stop the listener from serving anyone.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// Two `--tsig-key`s with one name.
    #[error("--tsig-key {0} is given twice; key names must differ")]
    DuplicateKey(String),
    /// `--dot-addr` or `--doh-addr` without a certificate or key to serve.
    #[error("{0} needs --tls-cert and --tls-key (PEM files)")]
    NoCertificate(&'static str),
    /// An operations flag out of range.
    #[error(transparent)]
    Operations(#[from] OperationsError),
    /// An `https://` upstream's host has no address.
    #[error(
        "upstream {0}: cannot resolve its host ({1}); give the address as https://HOST/PATH#IP"
    )]
    Unresolved(String, String),
    /// An `--upstream` or `--forward-zone` value that does not parse.
    #[error("{0}")]
    BadValue(String),
    /// Two `--forward-zone`s for one zone.
    #[error("--forward-zone {0} is given twice; give all its upstreams in one")]
    DuplicateZone(String),
    /// No usable CA certificates for the encrypted upstreams.
    #[error(transparent)]
    Trust(#[from] TrustError),
}

impl Args {
    /// Checks the rules that span several flags and fills in derived defaults.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let api_token = match self.api_token {
            Some(t) if t.is_empty() => return Err(ConfigError::EmptyToken),
            other => other,
        };
        if api_token.is_none() && !self.http_addr.ip().is_loopback() {
            return Err(ConfigError::OpenApi(self.http_addr));
        }
        if self.upstreams.is_empty() {
            return Err(ConfigError::NoUpstream);
        }
        if self.min_ttl > self.max_ttl {
            return Err(ConfigError::TtlRange {
                min: self.min_ttl,
                max: self.max_ttl,
            });
        }
        if self.max_tcp_connections == 0 {
            return Err(ConfigError::Zero("--max-tcp-connections"));
        }
        if self.tcp_idle_timeout == 0 {
            return Err(ConfigError::Zero("--tcp-idle-timeout"));
        }
        if self.max_upstream_queries == 0 {
            return Err(ConfigError::Zero("--max-upstream-queries"));
        }
        if self.snapshot_keep == 0 {
            return Err(ConfigError::Zero("--snapshot-keep"));
        }
        if self.blocklist_refresh == 0 {
            return Err(ConfigError::Zero("--blocklist-refresh"));
        }
        for (i, key) in self.tsig_keys.iter().enumerate() {
            if self.tsig_keys.iter().take(i).any(|k| k.name == key.name) {
                return Err(ConfigError::DuplicateKey(key.name.to_ascii()));
            }
        }
        let mut forward_zones: Vec<ForwardZone> = Vec::with_capacity(self.forward_zones.len());
        for arg in &self.forward_zones {
            let arg = arg
                .parse::<ForwardZoneArg>()
                .map_err(ConfigError::BadValue)?;
            if forward_zones.iter().any(|z| z.zone == arg.zone) {
                return Err(ConfigError::DuplicateZone(arg.zone.to_ascii()));
            }
            let upstreams = arg
                .upstreams
                .into_iter()
                .map(UpstreamArg::resolve)
                .collect::<Result<_, _>>()?;
            forward_zones.push(ForwardZone {
                zone: arg.zone,
                upstreams,
            });
        }
        let upstreams: Vec<Upstream> = self
            .upstreams
            .iter()
            .map(|u| {
                u.parse::<UpstreamArg>()
                    .map_err(ConfigError::BadValue)?
                    .resolve()
            })
            .collect::<Result<_, _>>()?;
        let encrypted = upstreams
            .iter()
            .chain(forward_zones.iter().flat_map(|z| &z.upstreams))
            .any(|u| u.protocol.is_encrypted());
        // A CA file that cannot be read is refused even with no encrypted upstream: the
        // operator meant something by it.
        let roots = match (&self.upstream_ca, encrypted) {
            (Some(file), _) => trust::roots_from_file(file)?,
            (None, true) => trust::system_roots()?,
            (None, false) => Arc::new(RootCertStore::empty()),
        };
        let upstream_tls = trust::UpstreamTls::new(roots)?;
        let operations = self.operations.validate()?;
        let encrypted = match (self.dot_addr, self.doh_addr, self.tls_cert, self.tls_key) {
            (None, None, _, _) => None,
            (dot_addr, doh_addr, Some(cert), Some(key)) => Some(Encrypted {
                dot_addr,
                doh_addr,
                cert,
                key,
            }),
            (Some(_), _, _, _) => return Err(ConfigError::NoCertificate("--dot-addr")),
            (None, Some(_), _, _) => return Err(ConfigError::NoCertificate("--doh-addr")),
        };
        let snapshot_dir = self.snapshot_dir.unwrap_or_else(|| {
            let mut dir = self.data_dir.clone().into_os_string();
            dir.push("-snapshots");
            PathBuf::from(dir)
        });
        Ok(Config {
            dns_addr: self.dns_addr,
            http_addr: self.http_addr,
            upstreams,
            forward_zones,
            upstream_tls,
            data_dir: self.data_dir,
            api_token,
            allow: self.allow,
            cache_size: self.cache_size,
            log_level: self.log_level,
            min_ttl: self.min_ttl,
            max_ttl: self.max_ttl,
            max_negative_ttl: self.max_negative_ttl,
            serve_stale: self.serve_stale,
            prefetch: self.prefetch,
            snapshot_dir,
            snapshot_interval: (self.snapshot_interval > 0)
                .then(|| Duration::from_secs(self.snapshot_interval)),
            snapshot_keep: self.snapshot_keep,
            max_tcp_connections: self.max_tcp_connections,
            tcp_idle_timeout: Duration::from_secs(self.tcp_idle_timeout),
            max_upstream_queries: self.max_upstream_queries,
            rate_limit: self.rate_limit,
            tsig_keys: crate::tsig::Keyring::new(self.tsig_keys),
            block_mode: self.block_mode,
            blocklist_refresh: Duration::from_secs(self.blocklist_refresh),
            operations,
            encrypted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operations::LogFormat;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["rind-server"];
        argv.extend_from_slice(args);
        Args::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .validate()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = parse(&[]).expect("defaults are valid");
        assert_eq!(c.dns_addr, "0.0.0.0:53".parse().expect("addr"));
        assert_eq!(c.http_addr, "127.0.0.1:8053".parse().expect("addr"));
        assert_eq!(c.upstreams.len(), 2);
        assert_eq!(c.upstreams[0].to_string(), "1.1.1.1:53");
        assert_eq!(c.cache_size, 100_000);
        assert_eq!(
            (c.min_ttl, c.max_ttl, c.max_negative_ttl),
            (0, 86_400, 3_600)
        );
        assert_eq!(c.snapshot_dir, PathBuf::from("./rind-data-snapshots"));
        assert_eq!(c.snapshot_interval, Some(Duration::from_secs(86_400)));
        assert_eq!(c.snapshot_keep, 7);
        assert_eq!(c.allow.len(), 8);
        assert_eq!(c.block_mode, BlockMode::Null);
        assert_eq!(c.blocklist_refresh, Duration::from_secs(86_400));
    }

    #[test]
    fn blocking_flags() {
        let c = parse(&["--block-mode", "nxdomain", "--blocklist-refresh", "60"]).expect("valid");
        assert_eq!(c.block_mode, BlockMode::Nxdomain);
        assert_eq!(c.blocklist_refresh, Duration::from_secs(60));
        let zero = parse(&["--blocklist-refresh", "0"]).expect_err("refresh 0");
        assert!(zero.contains("--blocklist-refresh"), "{zero}");
        assert!(parse(&["--block-mode", "refused"]).is_err());
        assert!(parse(&["--blocklist-refresh", "-5"]).is_err());
    }

    #[test]
    fn snapshot_schedule_flags() {
        let c = parse(&["--snapshot-interval", "0", "--snapshot-keep", "2"]).expect("valid");
        assert_eq!((c.snapshot_interval, c.snapshot_keep), (None, 2));
        let keep_none = parse(&["--snapshot-keep", "0"]).expect_err("keep 0");
        assert!(keep_none.contains("--snapshot-keep"), "{keep_none}");
        assert!(parse(&["--snapshot-interval", "-1"]).is_err());
    }

    #[test]
    fn upstream_forms() {
        let cases = [
            ("9.9.9.9", "9.9.9.9:53"),
            ("9.9.9.9:5353", "9.9.9.9:5353"),
            ("2620:fe::fe", "[2620:fe::fe]:53"),
            ("[2620:fe::fe]:54", "[2620:fe::fe]:54"),
            ("tcp://9.9.9.9", "tcp://9.9.9.9:53"),
            ("tcp://[::1]:5300", "tcp://[::1]:5300"),
            ("tls://9.9.9.9", "tls://9.9.9.9:853"),
            (
                "tls://9.9.9.9#Dns.Quad9.net.",
                "tls://9.9.9.9:853#dns.quad9.net",
            ),
            ("tls://[::1]:8853#dns.test", "tls://[::1]:8853#dns.test"),
            (
                "https://cloudflare-dns.com/dns-query#1.1.1.1",
                "https://cloudflare-dns.com:443/dns-query#1.1.1.1",
            ),
            (
                "https://dns.test:8443/q?x=1#::1",
                "https://dns.test:8443/q?x=1#::1",
            ),
            (
                "https://127.0.0.1/dns-query",
                "https://127.0.0.1:443/dns-query",
            ),
        ];
        for (input, shown) in cases {
            let u: UpstreamArg = input.parse().expect(input);
            assert!(
                matches!(u, UpstreamArg::Ready(_)),
                "{input} needs no lookup"
            );
            assert_eq!(u.to_string(), shown, "{input}");
        }
        let unresolved: UpstreamArg = "https://dns.test/dns-query".parse().expect("parses");
        assert!(matches!(unresolved, UpstreamArg::Resolve { port: 443, .. }));
        for bad in [
            "dns.google",
            "udp://1.1.1.1",
            "quic://1.1.1.1",
            "1.1.1.1:0",
            "tls://dns.google",
            "tls://1.1.1.1#not a name",
            "tls://1.1.1.1:0",
            "https://dns.test",
            "https://dns.test:0/q",
            "https://dns test/q",
            "https://dns.test/q#not-an-ip",
            "https://dns.test/a\"b",
            "",
        ] {
            assert!(bad.parse::<UpstreamArg>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn forward_zones() {
        let c = parse(&[
            "--forward-zone",
            "Corp.Example=10.8.0.1,tls://10.8.0.2#ns.corp.example",
            "--forward-zone",
            "168.192.in-addr.arpa.=192.168.1.1",
        ])
        .expect("valid");
        assert_eq!(c.forward_zones.len(), 2);
        assert_eq!(c.forward_zones[0].zone.to_ascii(), "corp.example.");
        let shown: Vec<String> = c.forward_zones[0]
            .upstreams
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["10.8.0.1:53", "tls://10.8.0.2:853#ns.corp.example"]);
        for bad in [
            "corp.example",
            "corp.example=",
            ".=1.1.1.1",
            "a..b=1.1.1.1",
            "x=quic://1.1.1.1",
        ] {
            let e = parse(&["--forward-zone", bad]).expect_err(bad);
            assert!(!e.contains('\n'), "{e}");
        }
        let twice = parse(&[
            "--forward-zone",
            "a.test=1.1.1.1",
            "--forward-zone",
            "A.test.=1.1.1.2",
        ])
        .expect_err("twice");
        assert!(twice.contains("given twice"), "{twice}");
    }

    #[test]
    fn refusals() {
        let open = parse(&["--http-addr", "0.0.0.0:8053"]).expect_err("open api");
        assert!(open.contains("--api-token"), "{open}");
        assert!(parse(&["--http-addr", "0.0.0.0:8053", "--api-token", "x"]).is_ok());
        assert!(parse(&["--api-token", ""]).is_err());
        assert!(parse(&["--min-ttl", "10", "--max-ttl", "5"]).is_err());
        assert!(parse(&["--allow", "300.1.2.3/8"]).is_err());
        assert!(parse(&["--max-tcp-connections", "0"]).is_err());
        assert!(parse(&["--log-level", "loud"]).is_err());
    }

    #[test]
    fn operations_flags() {
        let c = parse(&[]).expect("defaults are valid");
        assert_eq!(c.operations.query_log, 10_000);
        assert_eq!(c.operations.log_format, LogFormat::Text);
        let c = parse(&["--query-log", "0", "--log-format", "json"]).expect("valid");
        assert_eq!(c.operations.query_log, 0);
        assert_eq!(c.operations.log_format, LogFormat::Json);
        let big = parse(&["--query-log", "1000001"]).expect_err("too big");
        assert!(big.starts_with("--query-log 1000001 is more than"), "{big}");
        assert!(!big.contains('\n'), "{big}");
        assert!(parse(&["--query-log", "-1"]).is_err());
        assert!(parse(&["--log-format", "xml"]).is_err());
    }

    #[test]
    fn encrypted_listeners_need_a_certificate() {
        assert_eq!(parse(&[]).expect("defaults").encrypted, None);
        let c = parse(&[
            "--doh-addr",
            "127.0.0.1:8443",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ])
        .expect("valid");
        let encrypted = c.encrypted.expect("doh configured");
        assert_eq!(encrypted.dot_addr, None);
        assert_eq!(encrypted.doh_addr, "127.0.0.1:8443".parse().ok());
        let no_key =
            parse(&["--dot-addr", "127.0.0.1:853", "--tls-cert", "c.pem"]).expect_err("no key");
        assert_eq!(
            no_key,
            "--dot-addr needs --tls-cert and --tls-key (PEM files)"
        );
        let no_cert = parse(&["--doh-addr", "127.0.0.1:443"]).expect_err("no cert");
        assert!(no_cert.starts_with("--doh-addr needs"), "{no_cert}");
        assert!(parse(&["--dot-addr", "localhost:853"]).is_err());
    }

    #[test]
    fn repeated_and_comma_separated_lists() {
        let c = parse(&[
            "--upstream",
            "127.0.0.1:1",
            "--upstream",
            "tcp://127.0.0.1:2,::1",
        ])
        .expect("valid");
        let shown: Vec<String> = c.upstreams.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.1:1", "tcp://127.0.0.1:2", "[::1]:53"]);
    }
}
