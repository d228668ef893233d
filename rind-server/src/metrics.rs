//! Counters and histograms, rendered in the Prometheus text format for `GET /metrics`.
//!
//! Plain atomics in fixed arrays: counting a query is one relaxed `fetch_add`, with no lock,
//! no allocation and no label lookup on the hot path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::request::Transport;

/// Query types counted by name; everything else is counted as `other`.
const QTYPES: [RecordType; 14] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::NS,
    RecordType::SOA,
    RecordType::CAA,
    RecordType::HTTPS,
    RecordType::SVCB,
    RecordType::ANY,
    RecordType::DS,
];
const QTYPE_SLOTS: usize = QTYPES.len() + 1;

/// Response codes counted by name; anything else is `other`.
const RCODES: [(ResponseCode, &str); 7] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::BADVERS, "BADVERS"),
];
const RCODE_SLOTS: usize = RCODES.len() + 1;

/// The usual spelling of a response code (NOERROR, NXDOMAIN, ...); `other` for the rest.
pub fn rcode_label(rcode: ResponseCode) -> &'static str {
    RCODES
        .iter()
        .find(|(r, _)| *r == rcode)
        .map_or("other", |(_, label)| label)
}

/// Upper bounds of the upstream latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
];

/// Something the cache did, for the `rind_cache_*` counters.
#[derive(Debug, Clone, Copy)]
pub enum CacheEvent {
    /// A fresh answer served from memory.
    Hit,
    /// No fresh answer in memory.
    Miss,
    /// An entry pushed out to make room.
    Eviction,
    /// An expired answer served because no upstream answered (RFC 8767).
    StaleServed,
    /// A background refresh of a nearly expired entry started.
    Prefetch,
    /// A write to the disk copy dropped because the paced writer was behind.
    DiskWriteDropped,
}

const CACHE_EVENTS: [(&str, &str); 6] = [
    (
        "rind_cache_hits_total",
        "Answers served fresh from the cache.",
    ),
    (
        "rind_cache_misses_total",
        "Queries the cache had no fresh answer for.",
    ),
    (
        "rind_cache_evictions_total",
        "Entries evicted to keep the cache within --cache-size.",
    ),
    (
        "rind_cache_stale_served_total",
        "Expired answers served because no upstream answered.",
    ),
    (
        "rind_cache_prefetches_total",
        "Background refreshes of nearly expired entries.",
    ),
    (
        "rind_cache_disk_writes_dropped_total",
        "Cache writes that did not reach disk because the paced writer was behind.",
    ),
];

/// What a resource limit did.
#[derive(Debug, Clone, Copy)]
pub enum LimitEvent {
    /// A UDP query over the rate limit, dropped.
    RateDropped,
    /// A UDP query over the rate limit, answered TC=1.
    RateTruncated,
    /// A TCP query over the rate limit, answered REFUSED.
    RateRefused,
}

/// Why a packet got no reply at all.
#[derive(Debug, Clone, Copy)]
pub enum DropReason {
    /// Shorter than a DNS header.
    Short,
    /// QR=1: answering responses enables reflection loops.
    Response,
}

/// Totals since start, for the status route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Well-formed queries received, over every transport.
    pub queries: u64,
    /// Answers served fresh from the cache.
    pub cache_hits: u64,
    /// Lookups the cache had no fresh answer for.
    pub cache_misses: u64,
    /// Per upstream, in configured order.
    pub upstreams: Vec<UpstreamSummary>,
}

/// One upstream's totals since start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSummary {
    /// Queries sent to it.
    pub queries: u64,
    /// Tries that gave no usable answer.
    pub failures: u64,
}

/// Everything `/metrics` shows.
#[derive(Debug)]
pub struct Metrics {
    queries: [[AtomicU64; QTYPE_SLOTS]; Transport::ALL.len()],
    responses: [AtomicU64; RCODE_SLOTS],
    dropped: [AtomicU64; 2],
    cache: [AtomicU64; CACHE_EVENTS.len()],
    rate_limited: [AtomicU64; 3],
    upstream_overloaded: AtomicU64,
    blocked: AtomicU64,
    blocklist_domains: AtomicU64,
    upstreams: Vec<UpstreamMetrics>,
}

#[derive(Debug)]
struct UpstreamMetrics {
    /// The series' labels: `upstream="…"`, and `zone="…"` for a forward zone's upstream.
    labels: String,
    queries: AtomicU64,
    connections: AtomicU64,
    resends: AtomicU64,
    failures: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    /// Creates zeroed metrics with one set of series per upstream, each given as the
    /// upstream's text and the forward zone it serves (`None` for a default upstream).
    pub fn new(upstream_labels: impl IntoIterator<Item = (String, Option<String>)>) -> Self {
        Metrics {
            queries: Default::default(),
            responses: Default::default(),
            dropped: Default::default(),
            cache: Default::default(),
            rate_limited: Default::default(),
            upstream_overloaded: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            blocklist_domains: AtomicU64::new(0),
            upstreams: upstream_labels
                .into_iter()
                .map(|(upstream, zone)| UpstreamMetrics {
                    // Upstream texts and zone names carry no quote or backslash (config.rs
                    // refuses them), so they need no escaping.
                    labels: match zone {
                        Some(zone) => format!("upstream=\"{upstream}\",zone=\"{zone}\""),
                        None => format!("upstream=\"{upstream}\""),
                    },
                    queries: AtomicU64::new(0),
                    connections: AtomicU64::new(0),
                    resends: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    latency_buckets: Default::default(),
                    latency_count: AtomicU64::new(0),
                    latency_sum_micros: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// Counts one well-formed query.
    pub fn query(&self, transport: Transport, qtype: RecordType) {
        let slot = QTYPES
            .iter()
            .position(|t| *t == qtype)
            .unwrap_or(QTYPES.len());
        if let Some(c) = self
            .queries
            .get(transport.index())
            .and_then(|row| row.get(slot))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one reply sent, by its response code.
    pub fn response(&self, rcode: ResponseCode) {
        let slot = RCODES
            .iter()
            .position(|(r, _)| *r == rcode)
            .unwrap_or(RCODES.len());
        if let Some(c) = self.responses.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one packet dropped without a reply.
    pub fn dropped(&self, reason: DropReason) {
        if let Some(c) = self.dropped.get(reason as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one cache event.
    pub fn cache(&self, event: CacheEvent) {
        if let Some(c) = self.cache.get(event as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one action of a resource limit.
    pub fn limit(&self, event: LimitEvent) {
        if let Some(c) = self.rate_limited.get(event as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one question refused because `--max-upstream-queries` were in flight.
    pub fn upstream_overloaded(&self) {
        self.upstream_overloaded.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one query answered as blocked.
    pub fn blocked(&self) {
        self.blocked.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets how many names the blocklists hold (the set in use).
    pub fn blocklist_domains(&self, names: usize) {
        self.blocklist_domains
            .store(names as u64, Ordering::Relaxed);
    }

    /// Counts one query sent to upstream number `index`.
    pub fn upstream_query(&self, index: usize) {
        if let Some(u) = self.upstreams.get(index) {
            u.queries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one connection (TLS handshake) opened to encrypted upstream `index`.
    pub fn upstream_connection(&self, index: usize) {
        if let Some(u) = self.upstreams.get(index) {
            u.connections.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one UDP query sent again to upstream `index` after no reply came in time.
    pub fn upstream_resend(&self, index: usize) {
        if let Some(u) = self.upstreams.get(index) {
            u.resends.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one failed try (timeout, network error, SERVFAIL or REFUSED) at upstream `index`.
    pub fn upstream_failure(&self, index: usize) {
        if let Some(u) = self.upstreams.get(index) {
            u.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records how long upstream `index` took to give a usable answer.
    pub fn upstream_latency(&self, index: usize, took: Duration) {
        let Some(u) = self.upstreams.get(index) else {
            return;
        };
        let secs = took.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&u.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        u.latency_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        u.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The totals `GET /api/v1/status` shows.
    pub fn summary(&self) -> Summary {
        let sum = |row: &[AtomicU64]| row.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>();
        let cache = |event: CacheEvent| {
            self.cache
                .get(event as usize)
                .map_or(0, |c| c.load(Ordering::Relaxed))
        };
        Summary {
            queries: self.queries.iter().map(|row| sum(row)).sum(),
            cache_hits: cache(CacheEvent::Hit),
            cache_misses: cache(CacheEvent::Miss),
            upstreams: self
                .upstreams
                .iter()
                .map(|u| UpstreamSummary {
                    queries: u.queries.load(Ordering::Relaxed),
                    failures: u.failures.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }

    /// Renders every series in the Prometheus text exposition format (version 0.0.4);
    /// `cache_entries` is the cache's current size.
    pub fn render(&self, cache_entries: usize) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail; the results are ignored on purpose.
        let _ = self.render_into(&mut out, cache_entries);
        out
    }

    /// Writes one counter with a sample per upstream, read by `value`.
    fn upstream_counter(
        &self,
        out: &mut String,
        name: &str,
        help: &str,
        value: impl Fn(&UpstreamMetrics) -> &AtomicU64,
    ) -> std::fmt::Result {
        writeln!(out, "# HELP {name} {help}")?;
        writeln!(out, "# TYPE {name} counter")?;
        for u in &self.upstreams {
            writeln!(
                out,
                "{name}{{{}}} {}",
                u.labels,
                value(u).load(Ordering::Relaxed)
            )?;
        }
        Ok(())
    }

    fn render_into(&self, out: &mut String, cache_entries: usize) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP rind_cache_entries Answers held in the memory cache."
        )?;
        writeln!(out, "# TYPE rind_cache_entries gauge")?;
        writeln!(out, "rind_cache_entries {cache_entries}")?;
        for ((name, help), count) in CACHE_EVENTS.iter().zip(&self.cache) {
            writeln!(out, "# HELP {name} {help}")?;
            writeln!(out, "# TYPE {name} counter")?;
            writeln!(out, "{name} {}", count.load(Ordering::Relaxed))?;
        }
        writeln!(
            out,
            "# HELP rind_queries_total DNS queries received, by transport and query type."
        )?;
        writeln!(out, "# TYPE rind_queries_total counter")?;
        for (transport, row) in Transport::ALL.iter().map(|t| t.label()).zip(&self.queries) {
            for (slot, count) in row.iter().enumerate() {
                let qtype = QTYPES
                    .get(slot)
                    .map_or("other".to_string(), |t| t.to_string());
                writeln!(
                    out,
                    "rind_queries_total{{transport=\"{transport}\",type=\"{qtype}\"}} {}",
                    count.load(Ordering::Relaxed)
                )?;
            }
        }
        writeln!(
            out,
            "# HELP rind_responses_total DNS replies sent, by response code."
        )?;
        writeln!(out, "# TYPE rind_responses_total counter")?;
        for (slot, count) in self.responses.iter().enumerate() {
            let rcode = RCODES.get(slot).map_or("other", |(_, label)| *label);
            writeln!(
                out,
                "rind_responses_total{{rcode=\"{rcode}\"}} {}",
                count.load(Ordering::Relaxed)
            )?;
        }
        writeln!(
            out,
            "# HELP rind_dropped_total Packets dropped without a reply."
        )?;
        writeln!(out, "# TYPE rind_dropped_total counter")?;
        for (reason, count) in ["short", "response"].iter().zip(&self.dropped) {
            writeln!(
                out,
                "rind_dropped_total{{reason=\"{reason}\"}} {}",
                count.load(Ordering::Relaxed)
            )?;
        }
        writeln!(
            out,
            "# HELP rind_rate_limited_total Queries over --rate-limit, by what was done."
        )?;
        writeln!(out, "# TYPE rind_rate_limited_total counter")?;
        for (action, count) in ["drop", "truncate", "refuse"]
            .iter()
            .zip(&self.rate_limited)
        {
            writeln!(
                out,
                "rind_rate_limited_total{{action=\"{action}\"}} {}",
                count.load(Ordering::Relaxed)
            )?;
        }
        writeln!(
            out,
            "# HELP rind_upstream_overloaded_total Questions answered SERVFAIL because --max-upstream-queries were waiting."
        )?;
        writeln!(out, "# TYPE rind_upstream_overloaded_total counter")?;
        writeln!(
            out,
            "rind_upstream_overloaded_total {}",
            self.upstream_overloaded.load(Ordering::Relaxed)
        )?;
        writeln!(
            out,
            "# HELP rind_blocked_total Queries answered as blocked by a blocklist."
        )?;
        writeln!(out, "# TYPE rind_blocked_total counter")?;
        writeln!(
            out,
            "rind_blocked_total {}",
            self.blocked.load(Ordering::Relaxed)
        )?;
        writeln!(
            out,
            "# HELP rind_blocklist_domains Distinct names in the blocklists in use."
        )?;
        writeln!(out, "# TYPE rind_blocklist_domains gauge")?;
        writeln!(
            out,
            "rind_blocklist_domains {}",
            self.blocklist_domains.load(Ordering::Relaxed)
        )?;
        self.upstream_counter(
            out,
            "rind_upstream_queries_total",
            "Queries sent to each upstream.",
            |u| &u.queries,
        )?;
        self.upstream_counter(
            out,
            "rind_upstream_resends_total",
            "UDP queries sent again to each upstream after no reply came in time.",
            |u| &u.resends,
        )?;
        self.upstream_counter(
            out,
            "rind_upstream_failures_total",
            "Upstream tries that gave no usable answer.",
            |u| &u.failures,
        )?;
        self.upstream_counter(
            out,
            "rind_upstream_connections_total",
            "Connections (TLS handshakes) opened to each tls:// and https:// upstream.",
            |u| &u.connections,
        )?;
        writeln!(
            out,
            "# HELP rind_upstream_latency_seconds Time to a usable upstream answer."
        )?;
        writeln!(out, "# TYPE rind_upstream_latency_seconds histogram")?;
        for u in &self.upstreams {
            for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&u.latency_buckets) {
                writeln!(
                    out,
                    "rind_upstream_latency_seconds_bucket{{{},le=\"{bound}\"}} {}",
                    u.labels,
                    bucket.load(Ordering::Relaxed)
                )?;
            }
            let count = u.latency_count.load(Ordering::Relaxed);
            writeln!(
                out,
                "rind_upstream_latency_seconds_bucket{{{},le=\"+Inf\"}} {count}",
                u.labels
            )?;
            let sum = u.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            writeln!(
                out,
                "rind_upstream_latency_seconds_sum{{{}}} {sum}",
                u.labels
            )?;
            writeln!(
                out,
                "rind_upstream_latency_seconds_count{{{}}} {count}",
                u.labels
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counted_series() {
        let m = Metrics::new([("127.0.0.1:53".to_string(), None)]);
        m.query(Transport::Udp, RecordType::A);
        m.query(Transport::Udp, RecordType::A);
        m.query(Transport::Tcp, RecordType::NULL);
        m.response(ResponseCode::NXDomain);
        m.upstream_query(0);
        m.upstream_latency(0, Duration::from_millis(3));
        m.cache(CacheEvent::Hit);
        let text = m.render(7);
        assert!(text.contains("rind_cache_entries 7\n"));
        assert!(text.contains("rind_cache_hits_total 1\n"));
        assert!(
            text.contains("rind_queries_total{transport=\"udp\",type=\"A\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("rind_queries_total{transport=\"tcp\",type=\"other\"} 1\n"));
        assert!(
            text.contains("rind_responses_total{rcode=\"NXDOMAIN\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("rind_upstream_queries_total{upstream=\"127.0.0.1:53\"} 1\n"));
        assert!(text.contains(
            "rind_upstream_latency_seconds_bucket{upstream=\"127.0.0.1:53\",le=\"0.0025\"} 0\n"
        ));
        assert!(text.contains(
            "rind_upstream_latency_seconds_bucket{upstream=\"127.0.0.1:53\",le=\"0.005\"} 1\n"
        ));
        assert!(text.contains("rind_upstream_latency_seconds_count{upstream=\"127.0.0.1:53\"} 1\n"));
    }
}
