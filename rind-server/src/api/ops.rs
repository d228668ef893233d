//! `GET /api/v1/querylog` (the last queries, from the in-memory ring) and
//! `GET /api/v1/status` (version, uptime, totals, store and upstream health), both behind
//! the token like every `/api/` route.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use ipnet::IpNet;
use serde::Serialize;
use warp::http::StatusCode;
use warp::reject::Rejection;
use warp::reply::Reply;
use warp::Filter;

use super::{authorized, ApiError, ApiState};
use crate::metrics::rcode_label;
use crate::querylog::{Filter as LogFilter, Logged, QueryLog};
use crate::store::snapshot::civil_from_days;
use crate::upstream::Forwarder;

/// Entries `GET /api/v1/querylog` returns when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// What the status and query log routes read, besides the rest of [`ApiState`].
#[derive(Debug)]
pub struct OpsState {
    /// The query log; `None` with `--query-log 0`.
    pub query_log: Option<Arc<QueryLog>>,
    /// The upstreams and their health.
    pub forwarder: Arc<Forwarder>,
    /// When the server started.
    pub started: Instant,
}

/// The two routes.
pub fn routes(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let querylog = warp::path!("api" / "v1" / "querylog")
        .and(warp::get())
        .and(authorized(Arc::clone(&state)))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(Arc::clone(&state)))
        .and_then(querylog);
    let status = warp::path!("api" / "v1" / "status")
        .and(warp::get())
        .and(authorized(Arc::clone(&state)))
        .and(with_state(state))
        .map(|state: Arc<ApiState>| warp::reply::json(&status(&state)));
    querylog.or(status)
}

fn with_state(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (Arc<ApiState>,), Error = Infallible> + Clone {
    warp::any().map(move || Arc::clone(&state))
}

/// One query log entry as JSON.
#[derive(Debug, Serialize)]
struct LogEntry {
    seq: u64,
    /// RFC 3339, UTC, microseconds.
    time: String,
    client: IpAddr,
    transport: &'static str,
    name: String,
    #[serde(rename = "type")]
    qtype: String,
    /// `null` when nothing was sent back.
    rcode: Option<String>,
    source: &'static str,
    latency_us: u64,
}

impl From<Logged> for LogEntry {
    fn from(e: Logged) -> Self {
        LogEntry {
            seq: e.seq,
            time: rfc3339_micros(e.unix_micros),
            client: e.client,
            transport: e.transport.label(),
            name: e.name,
            qtype: e.qtype.to_string(),
            rcode: e.rcode.map(rcode_text),
            source: e.source.label(),
            latency_us: u64::try_from(e.latency.as_micros()).unwrap_or(u64::MAX),
        }
    }
}

async fn querylog(
    query: HashMap<String, String>,
    state: Arc<ApiState>,
) -> Result<impl Reply, Rejection> {
    let Some(log) = &state.ops.query_log else {
        return Err(bad(
            StatusCode::NOT_FOUND,
            "the query log is off (the server runs with --query-log 0)".into(),
        ));
    };
    let filter = log_filter(&query)?;
    let entries: Vec<LogEntry> = log.read(&filter).into_iter().map(LogEntry::from).collect();
    Ok(warp::reply::json(&entries))
}

/// The query string's filters: `client` (an address or a network), `name` (that name and
/// the names below it), `after` (a `seq`), `limit` (at least 1, default [`DEFAULT_LIMIT`];
/// more than the log holds is the whole log).
fn log_filter(query: &HashMap<String, String>) -> Result<LogFilter, Rejection> {
    const KNOWN: [&str; 4] = ["client", "name", "limit", "after"];
    if let Some(unknown) = query.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            format!("unknown query parameter {unknown:?}; use client, name, limit or after"),
        ));
    }
    let client = query
        .get("client")
        .map(|raw| parse_client(raw))
        .transpose()?;
    let name = query
        .get("name")
        .map(|raw| super::normalize_name(raw))
        .transpose()
        .map_err(warp::reject::custom)?;
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(bad(
                    StatusCode::BAD_REQUEST,
                    format!("limit {raw:?} is not a whole number of at least 1"),
                ))
            }
        },
    };
    let after = query
        .get("after")
        .map(|raw| {
            raw.trim().parse::<u64>().map_err(|_| {
                bad(
                    StatusCode::BAD_REQUEST,
                    format!("after {raw:?} is not an entry's seq number"),
                )
            })
        })
        .transpose()?;
    Ok(LogFilter {
        client,
        name,
        after,
        limit,
    })
}

/// `192.168.1.10`, `fd00::1` or a network such as `192.168.1.0/24`.
fn parse_client(raw: &str) -> Result<IpNet, Rejection> {
    let raw = raw.trim();
    raw.parse::<IpAddr>()
        .map(IpNet::from)
        .or_else(|_| raw.parse::<IpNet>())
        .map_err(|_| {
            bad(
                StatusCode::BAD_REQUEST,
                format!("client {raw:?} is not an IP address or a network such as 192.168.1.0/24"),
            )
        })
}

fn bad(status: StatusCode, message: String) -> Rejection {
    warp::reject::custom(ApiError::new(status, message))
}

/// NOERROR, NXDOMAIN, ...; `RCODE<n>` for codes without a usual name here.
fn rcode_text(rcode: ResponseCode) -> String {
    match rcode_label(rcode) {
        "other" => format!("RCODE{}", u16::from(rcode)),
        label => label.to_string(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn rfc3339_micros(unix_micros: u64) -> String {
    let secs = unix_micros / 1_000_000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        unix_micros % 1_000_000
    )
}

/// The body of `GET /api/v1/status`.
#[derive(Debug, Serialize)]
struct Status {
    version: &'static str,
    uptime_seconds: u64,
    queries: u64,
    cache: CacheStatus,
    store: StoreStatus,
    upstreams: Vec<UpstreamStatus>,
    query_log: QueryLogStatus,
}

#[derive(Debug, Serialize)]
struct CacheStatus {
    entries: usize,
    hits: u64,
    misses: u64,
    /// hits / (hits + misses); `null` before the first lookup.
    hit_ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
struct StoreStatus {
    /// `ok`, or `unavailable` while the store cannot write.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    records: usize,
}

#[derive(Debug, Serialize)]
struct UpstreamStatus {
    upstream: String,
    /// The forward zone it serves; left out for a default upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    zone: Option<String>,
    /// `ok`, `failing` (its last try failed) or `down` (failed often enough to be tried last).
    status: &'static str,
    failures_in_a_row: u32,
    queries: u64,
    failures: u64,
}

#[derive(Debug, Serialize)]
struct QueryLogStatus {
    /// Entries kept; 0 when the log is off.
    capacity: usize,
    /// Queries logged since start, also those since pushed out.
    recorded: u64,
}

fn status(state: &ApiState) -> Status {
    let summary = state.metrics.summary();
    let lookups = summary.cache_hits + summary.cache_misses;
    let fault = state.records.fault();
    let upstreams = state
        .ops
        .forwarder
        .health()
        .into_iter()
        .zip(
            summary
                .upstreams
                .iter()
                .cloned()
                .map(Some)
                .chain(std::iter::repeat(None)),
        )
        .map(|(health, totals)| UpstreamStatus {
            upstream: health.upstream,
            zone: health.zone,
            status: if health.tried_last {
                "down"
            } else if health.failures_in_a_row > 0 {
                "failing"
            } else {
                "ok"
            },
            failures_in_a_row: health.failures_in_a_row,
            queries: totals.as_ref().map_or(0, |t| t.queries),
            failures: totals.as_ref().map_or(0, |t| t.failures),
        })
        .collect();
    Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.ops.started.elapsed().as_secs(),
        queries: summary.queries,
        cache: CacheStatus {
            entries: state.cache.len(),
            hits: summary.cache_hits,
            misses: summary.cache_misses,
            hit_ratio: (lookups > 0).then(|| summary.cache_hits as f64 / lookups as f64),
        },
        store: StoreStatus {
            status: if fault.is_some() { "unavailable" } else { "ok" },
            error: fault,
            records: state.records.list(None, None).len(),
        },
        upstreams,
        query_log: QueryLogStatus {
            capacity: state.ops.query_log.as_ref().map_or(0, |l| l.capacity()),
            recorded: state.ops.query_log.as_ref().map_or(0, |l| l.recorded()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(1_796_310_245_123_456),
            "2026-12-03T15:04:05.123456Z"
        );
    }

    #[test]
    fn filters_are_checked() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let f = log_filter(&q(&[])).expect("defaults");
        assert_eq!((f.limit, f.after), (DEFAULT_LIMIT, None));
        let f = log_filter(&q(&[("client", "192.168.1.0/24"), ("limit", "7")])).expect("valid");
        assert_eq!(f.limit, 7);
        assert!(f
            .client
            .is_some_and(|n| n.contains(&"192.168.1.9".parse::<IpAddr>().expect("ip"))));
        for bad in [
            [("limit", "0")],
            [("limit", "x")],
            [("client", "nas")],
            [("after", "-1")],
            [("color", "red")],
        ] {
            assert!(log_filter(&q(&bad)).is_err(), "{bad:?}");
        }
    }
}
