//! Every `rind-server` option: a clap flag with its environment twin, and the checks that
//! turn raw flags into a [`Config`] the rest of the server can trust.
//!
//! Flags and defaults are documented in `docs/reference.md` ("rind-server flags"); the
//! operations flags (query log, log format) are flattened in from [`crate::operations`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ipnet::IpNet;

use crate::blocklist::BlockMode;
use crate::operations::{Operations, OperationsArgs, OperationsError};

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

    /// Upstream resolver: IP[:port] (UDP, TCP when truncated) or tcp://IP[:port] (TCP only).
    #[arg(
        long = "upstream",
        env = "RIND_UPSTREAMS",
        value_delimiter = ',',
        default_value = "1.1.1.1:53,1.0.0.1:53"
    )]
    pub upstreams: Vec<Upstream>,

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// UDP, retried over TCP when the reply is truncated.
    Udp,
    /// TCP only.
    Tcp,
}

/// One `--upstream` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upstream {
    /// Address and port of the resolver.
    pub addr: SocketAddr,
    /// Transport used to reach it.
    pub protocol: Protocol,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Protocol::Udp => write!(f, "{}", self.addr),
            Protocol::Tcp => write!(f, "tcp://{}", self.addr),
        }
    }
}

impl FromStr for Upstream {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (protocol, rest) = match s.strip_prefix("tcp://") {
            Some(rest) => (Protocol::Tcp, rest),
            None if s.contains("://") => {
                return Err(format!(
                    "upstream {s:?}: only IP[:port] and tcp://IP[:port] are supported"
                ))
            }
            None => (Protocol::Udp, s),
        };
        // A bare IPv6 address has colons but no port; try it before IP:port.
        let addr = if let Ok(ip) = rest.parse::<IpAddr>() {
            SocketAddr::new(ip, 53)
        } else if let Ok(addr) = rest.parse::<SocketAddr>() {
            addr
        } else {
            return Err(format!(
                "upstream {s:?} is not IP[:port] (a name cannot be used: rind would need a resolver to find it)"
            ));
        };
        if addr.port() == 0 {
            return Err(format!("upstream {s:?}: port 0 is not a port to send to"));
        }
        Ok(Upstream { addr, protocol })
    }
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
    /// An operations flag out of range.
    #[error(transparent)]
    Operations(#[from] OperationsError),
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
        let operations = self.operations.validate()?;
        let snapshot_dir = self.snapshot_dir.unwrap_or_else(|| {
            let mut dir = self.data_dir.clone().into_os_string();
            dir.push("-snapshots");
            PathBuf::from(dir)
        });
        Ok(Config {
            dns_addr: self.dns_addr,
            http_addr: self.http_addr,
            upstreams: self.upstreams,
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
        ];
        for (input, shown) in cases {
            let u: Upstream = input.parse().expect(input);
            assert_eq!(u.to_string(), shown, "{input}");
        }
        for bad in [
            "dns.google",
            "udp://1.1.1.1",
            "1.1.1.1:0",
            "tls://1.1.1.1",
            "",
        ] {
            assert!(bad.parse::<Upstream>().is_err(), "{bad:?} accepted");
        }
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
