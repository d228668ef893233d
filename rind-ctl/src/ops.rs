//! The operations commands: `status`, `log [--follow]` and `man DIR`.

use std::io::{self, Write};
use std::path::Path;
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{Client, RequestError};
use crate::output;

/// How often `log --follow` asks for new entries.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Entries asked for per `--follow` poll: more than a busy home network makes in a second.
const FOLLOW_BATCH: &str = "10000";

/// `GET /api/v1/status`.
#[derive(Debug, Deserialize, Serialize)]
pub struct Status {
    version: String,
    uptime_seconds: u64,
    queries: u64,
    cache: CacheStatus,
    store: StoreStatus,
    upstreams: Vec<UpstreamStatus>,
    query_log: QueryLogStatus,
}

#[derive(Debug, Deserialize, Serialize)]
struct CacheStatus {
    entries: u64,
    hits: u64,
    misses: u64,
    hit_ratio: Option<f64>,
}

#[derive(Debug, Deserialize, Serialize)]
struct StoreStatus {
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    records: u64,
}

#[derive(Debug, Deserialize, Serialize)]
struct UpstreamStatus {
    upstream: String,
    status: String,
    failures_in_a_row: u32,
    queries: u64,
    failures: u64,
}

#[derive(Debug, Deserialize, Serialize)]
struct QueryLogStatus {
    capacity: u64,
    recorded: u64,
}

/// One query log entry as the API returns it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogEntry {
    seq: u64,
    time: String,
    client: String,
    transport: String,
    name: String,
    #[serde(rename = "type")]
    qtype: String,
    rcode: Option<String>,
    source: String,
    latency_us: u64,
}

/// Which entries `rind-ctl log` shows.
#[derive(Debug)]
pub struct LogQuery {
    /// Only this client address or network.
    pub client: Option<String>,
    /// Only this name and the names below it.
    pub name: Option<String>,
    /// How many of the newest entries to show first.
    pub limit: Option<u64>,
}

impl LogQuery {
    fn params(&self, after: Option<u64>, limit: Option<String>) -> Vec<(&'static str, String)> {
        let mut params = Vec::new();
        if let Some(c) = &self.client {
            params.push(("client", c.clone()));
        }
        if let Some(n) = &self.name {
            params.push(("name", n.clone()));
        }
        if let Some(l) = limit {
            params.push(("limit", l));
        }
        if let Some(a) = after {
            params.push(("after", a.to_string()));
        }
        params
    }

    fn filtered(&self) -> bool {
        self.client.is_some() || self.name.is_some()
    }
}

/// Why an operations command stopped.
#[derive(Debug)]
pub enum OpsError {
    /// The request failed.
    Request(RequestError),
    /// Writing the output failed.
    Output(io::Error),
}

impl From<RequestError> for OpsError {
    fn from(e: RequestError) -> Self {
        OpsError::Request(e)
    }
}

impl From<io::Error> for OpsError {
    fn from(e: io::Error) -> Self {
        OpsError::Output(e)
    }
}

/// `rind-ctl status`.
pub fn status(client: &Client, json: bool) -> Result<(), OpsError> {
    let status: Status = client.get("/api/v1/status", &[])?;
    if json {
        return Ok(output::json(&status)?);
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "rind-server {}, up {}",
        status.version,
        uptime(status.uptime_seconds)
    )?;
    writeln!(out, "queries     {}", status.queries)?;
    let ratio = status
        .cache
        .hit_ratio
        .map_or("no lookups yet".to_string(), |r| {
            format!("hit ratio {:.1}%", r * 100.0)
        });
    writeln!(
        out,
        "cache       {} entries, {} hits, {} misses, {ratio}",
        status.cache.entries, status.cache.hits, status.cache.misses
    )?;
    let store = match &status.store.error {
        Some(e) => format!("{}: {e}", status.store.status),
        None => status.store.status.clone(),
    };
    writeln!(out, "store       {store}, {} records", status.store.records)?;
    for u in &status.upstreams {
        let streak = if u.failures_in_a_row > 0 {
            format!("{} failures in a row; ", u.failures_in_a_row)
        } else {
            String::new()
        };
        writeln!(
            out,
            "upstream    {} {} ({streak}{} queries, {} failures)",
            u.upstream, u.status, u.queries, u.failures
        )?;
    }
    let log = if status.query_log.capacity == 0 {
        "off".to_string()
    } else {
        format!(
            "{} queries logged, keeps the last {}",
            status.query_log.recorded, status.query_log.capacity
        )
    };
    writeln!(out, "query log   {log}")?;
    Ok(())
}

/// `3d 4h 5m 6s`, leaving out leading zero units.
fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m {s}s"),
    }
}

/// `rind-ctl log`: the newest entries, oldest first (like `tail`); with `follow`, then every
/// new entry as it comes, until interrupted.
pub fn log(client: &Client, query: &LogQuery, follow: bool, json: bool) -> Result<(), OpsError> {
    let limit = query.limit.map(|l| l.to_string());
    let mut entries: Vec<LogEntry> =
        client.get("/api/v1/querylog", &borrowed(&query.params(None, limit)))?;
    entries.reverse();
    if json && !follow {
        return Ok(output::json(&entries)?);
    }
    let mut out = io::stdout().lock();
    if !json {
        writeln!(out, "{}", header())?;
    }
    print_entries(&mut out, &entries, json)?;
    if !follow {
        return Ok(());
    }
    let mut last = entries.last().map(|e| e.seq);
    loop {
        out.flush()?;
        thread::sleep(FOLLOW_EVERY);
        let params = query.params(last, Some(FOLLOW_BATCH.to_string()));
        let mut new: Vec<LogEntry> = client.get("/api/v1/querylog", &borrowed(&params))?;
        new.reverse();
        if new.is_empty() {
            if restarted(client, last)? {
                last = None;
            }
            continue;
        }
        if let (Some(seen), Some(first), false) = (last, new.first(), query.filtered()) {
            let missed = first.seq.saturating_sub(seen + 1);
            if missed > 0 {
                writeln!(
                    out,
                    "... {missed} queries pushed out of the server's log before they could be shown"
                )?;
            }
        }
        print_entries(&mut out, &new, json)?;
        last = new.last().map(|e| e.seq).or(last);
    }
}

/// Whether the server restarted since entry `last` was seen: its log never shrinks, so a
/// newest entry older than that one (or none at all) means a new log whose numbers started
/// again at 0, to be followed from its start.
fn restarted(client: &Client, last: Option<u64>) -> Result<bool, OpsError> {
    let Some(seen) = last else {
        return Ok(false);
    };
    let newest: Vec<LogEntry> = client.get("/api/v1/querylog", &[("limit", "1")])?;
    Ok(newest.first().is_none_or(|e| e.seq < seen))
}

fn borrowed<'a>(params: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    params.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn header() -> String {
    format!(
        "{:<24}  {:<15}  {:<3}  {:<6}  {:<8}  {:<11}  {:>9}  NAME",
        "TIME", "CLIENT", "VIA", "TYPE", "RCODE", "SOURCE", "LATENCY"
    )
}

fn print_entries(out: &mut impl Write, entries: &[LogEntry], json: bool) -> io::Result<()> {
    for e in entries {
        if json {
            // One object a line (JSON Lines), so `--follow --json` can be piped to jq.
            serde_json::to_writer(&mut *out, e)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", line(e))?;
        }
    }
    Ok(())
}

/// One entry in fixed columns, so lines printed by later polls line up with the first.
fn line(e: &LogEntry) -> String {
    // RFC 3339 with microseconds; milliseconds are enough to read.
    let time = match e.time.get(..23) {
        Some(ms) if e.time.ends_with('Z') => format!("{ms}Z"),
        _ => e.time.clone(),
    };
    format!(
        "{time:<24}  {:<15}  {:<3}  {:<6}  {:<8}  {:<11}  {:>7.2}ms  {}",
        e.client,
        e.transport,
        e.qtype,
        e.rcode.as_deref().unwrap_or("-"),
        e.source,
        e.latency_us as f64 / 1000.0,
        e.name
    )
}

/// `rind-ctl man DIR`: `rind-ctl.1` and one page per subcommand (`rind-ctl-add.1`, ...).
pub fn man(cmd: clap::Command, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_read_naturally() {
        assert_eq!(uptime(5), "5s");
        assert_eq!(uptime(65), "1m 5s");
        assert_eq!(uptime(3_600), "1h 0m 0s");
        assert_eq!(uptime(90_061), "1d 1h 1m 1s");
    }

    #[test]
    fn log_lines_keep_their_columns() {
        let e = LogEntry {
            seq: 1,
            time: "2026-12-04T17:07:47.586496Z".into(),
            client: "192.168.1.10".into(),
            transport: "udp".into(),
            name: "www.example.com.".into(),
            qtype: "AAAA".into(),
            rcode: None,
            source: "ratelimited".into(),
            latency_us: 1234,
        };
        let l = line(&e);
        assert!(
            l.starts_with("2026-12-04T17:07:47.586Z  192.168.1.10 "),
            "{l}"
        );
        assert!(l.ends_with("   1.23ms  www.example.com."), "{l}");
        assert_eq!(l.find("www."), header().find("NAME"), "{l}\n{}", header());
    }
}
