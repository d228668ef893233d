//! Forwarding: which upstream to ask, in what order, for how long, and sharing one upstream
//! query between clients that ask the same question at the same time.
//!
//! - Each try waits at most [`TRY_TIMEOUT`] (over UDP resending the query after the
//!   upstream's [`rtt`] timeout, doubling), then the next upstream is asked; the whole
//!   question gives up after [`TOTAL_BUDGET`] so the client gets SERVFAIL within the
//!   contract's 5 seconds.
//! - SERVFAIL, REFUSED, NOTIMP and FORMERR from an upstream count as failures: another upstream
//!   may well answer.
//! - An upstream that failed [`DEMOTE_AFTER`] tries in a row is tried last for
//!   [`DEMOTE_FOR`]; one success restores it.
//! - Every question goes up with DO=1, whatever the client set, so its answer keeps the
//!   DNSSEC records and one cache entry serves DO=0 and DO=1 clients (as Unbound does); CD
//!   goes up as the client set it.
//! - Split DNS: a name at or below a forward zone goes only to that zone's upstreams (the
//!   zone with the most labels wins), never to the default ones. Each zone's upstreams have
//!   their own health, even when the same server is also a default upstream.
//! - Upstreams are reached over UDP/TCP ([`exchange`]), TLS ([`tls`]) or HTTPS ([`https`]);
//!   the rules above are the same for all.

mod exchange;
pub mod https;
pub mod pool;
mod rtt;
pub mod tls;
pub mod trust;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use rustls::pki_types::ServerName;
use tokio::sync::{oneshot, Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::config::{Config, ForwardZone, Protocol, Upstream};
use crate::metrics::Metrics;
use exchange::{ExchangeError, Resend, Transport};
use pool::UdpPool;
use rtt::Rtt;
use trust::UpstreamTls;

/// Longest wait for one upstream.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for all upstreams together; below the contract's 5 s so SERVFAIL leaves in time.
pub const TOTAL_BUDGET: Duration = Duration::from_millis(4_500);
/// Failures in a row after which an upstream is tried last.
pub const DEMOTE_AFTER: u32 = 3;
/// How long a failing upstream stays at the back of the line.
pub const DEMOTE_FOR: Duration = Duration::from_secs(30);

/// Why no upstream answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// Every upstream failed or the time budget ran out.
    #[error("no upstream answered")]
    NoAnswer,
    /// The task asking upstream went away (only during shutdown).
    #[error("the upstream query was abandoned")]
    Abandoned,
    /// `--max-upstream-queries` questions are already waiting on upstreams.
    #[error("too many questions waiting on upstreams")]
    Overloaded,
}

type Outcome = Result<Arc<Message>, ForwardError>;

/// The asker doing the upstream query for a key; hands the outcome to the others waiting.
struct Leader<'a> {
    forwarder: &'a Forwarder,
    /// Taken once the outcome is handed over.
    key: Option<Key>,
    _permit: Option<SemaphorePermit<'a>>,
}

impl Leader<'_> {
    fn finish(&mut self, outcome: &Outcome) {
        let Some(key) = self.key.take() else {
            return;
        };
        let waiters = self
            .forwarder
            .lock_in_flight()
            .remove(&key)
            .unwrap_or_default();
        for waiter in waiters {
            // A waiter that stopped listening needs no answer.
            let _ = waiter.send(outcome.clone());
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.finish(&Err(ForwardError::Abandoned));
    }
}

/// The coalescing key: one upstream query per (lower-cased name, type, class, CD) in flight.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key(Name, RecordType, DNSClass, bool);

/// The upstream resolvers with their health, and the questions in flight.
#[derive(Debug)]
pub struct Forwarder {
    /// The default upstreams first, then each forward zone's; an upstream's index here is its
    /// index in the metrics.
    upstreams: Vec<Health>,
    /// The default upstreams' range in `upstreams`.
    default: Range<usize>,
    /// Forward zones, most labels first, so the first zone that holds a name is the most
    /// specific one.
    zones: Vec<(Name, Range<usize>)>,
    in_flight: Mutex<HashMap<Key, Vec<oneshot::Sender<Outcome>>>>,
    /// One permit per distinct question waiting on upstreams (`--max-upstream-queries`).
    slots: Semaphore,
    pool: UdpPool,
    metrics: Arc<Metrics>,
    /// Time zero for the demotion deadlines kept in atomics.
    epoch: Instant,
}

#[derive(Debug)]
struct Health {
    upstream: Upstream,
    /// The forward zone it serves; `None` for a default upstream.
    zone: Option<Name>,
    /// How it is reached (an encrypted one's client holds its connections).
    transport: Transport,
    failures_in_a_row: AtomicU32,
    /// Milliseconds after `epoch` until which this upstream is tried last.
    demoted_until_ms: AtomicU64,
    /// When the operator was told it is failing (milliseconds after `epoch`, 0: not told).
    /// Flapping upstreams would otherwise fill the log with failing/answering pairs.
    reported_down_ms: AtomicU64,
    /// Round-trip estimate, for the UDP resend timeout.
    rtt: Rtt,
}

/// Every upstream of `config` with the forward zone it serves, in the order the forwarder
/// and the metrics number them: the default upstreams, then each zone's.
pub fn numbered(config: &Config) -> Vec<(Option<&Name>, &Upstream)> {
    config
        .upstreams
        .iter()
        .map(|u| (None, u))
        .chain(
            config
                .forward_zones
                .iter()
                .flat_map(|z| z.upstreams.iter().map(move |u| (Some(&z.zone), u))),
        )
        .collect()
}

impl Forwarder {
    /// A forwarder over `upstreams` and the `zones`' upstreams, asked in the order given while
    /// they are healthy, with UDP sockets from `pool`, encrypted ones connecting with `tls`,
    /// and at most `max_in_flight` distinct questions at once.
    pub fn new(
        upstreams: &[Upstream],
        zones: &[ForwardZone],
        tls: &UpstreamTls,
        pool: UdpPool,
        max_in_flight: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut all = Vec::new();
        for upstream in upstreams {
            all.push(Health::new(upstream, None, all.len(), tls, &metrics));
        }
        let default = 0..all.len();
        let mut ranges = Vec::new();
        for zone in zones {
            let start = all.len();
            for upstream in &zone.upstreams {
                let health = Health::new(upstream, Some(&zone.zone), all.len(), tls, &metrics);
                all.push(health);
            }
            ranges.push((zone.zone.clone(), start..all.len()));
        }
        ranges.sort_by_key(|(zone, _)| std::cmp::Reverse(zone.num_labels()));
        Forwarder {
            upstreams: all,
            default,
            zones: ranges,
            in_flight: Mutex::new(HashMap::new()),
            slots: Semaphore::new(max_in_flight),
            pool,
            metrics,
            epoch: Instant::now(),
        }
    }

    /// The forward zone `name` is at or below (the most specific one), if any.
    pub fn zone_of(&self, name: &Name) -> Option<&Name> {
        self.zones
            .iter()
            .find(|(zone, _)| zone.zone_of(name))
            .map(|(zone, _)| zone)
    }

    /// Asks the upstreams `query` with CD as given; identical questions in flight share one
    /// upstream query.
    ///
    /// The first asker (the leader) does the asking in its own task, runs `on_answer` with the
    /// reply (the cache insert: done once, and done before the others wake, so they can read
    /// it back) and hands the outcome to the others, whose `on_answer` is not called. Should
    /// the leader's future be dropped first, they get [`ForwardError::Abandoned`] rather than
    /// waiting forever.
    pub async fn forward(
        &self,
        query: &Query,
        checking_disabled: bool,
        on_answer: impl FnOnce(&Message),
    ) -> Outcome {
        let key = Key(
            query.name.to_lowercase(),
            query.query_type,
            query.query_class,
            checking_disabled,
        );
        let waiting = {
            let mut in_flight = self.lock_in_flight();
            match in_flight.entry(key.clone()) {
                Entry::Occupied(mut waiting) => {
                    let (tx, rx) = oneshot::channel();
                    waiting.get_mut().push(tx);
                    Some(rx)
                }
                Entry::Vacant(slot) => {
                    slot.insert(Vec::new());
                    None
                }
            }
        };
        if let Some(waiting) = waiting {
            return waiting.await.unwrap_or(Err(ForwardError::Abandoned));
        }
        // Refusing fast keeps memory and sockets bounded when upstreams are slow and clients
        // keep asking new questions.
        let Ok(permit) = self.slots.try_acquire() else {
            self.metrics.upstream_overloaded();
            let outcome = Err(ForwardError::Overloaded);
            Leader {
                forwarder: self,
                key: Some(key),
                _permit: None,
            }
            .finish(&outcome);
            return outcome;
        };
        let mut leader = Leader {
            forwarder: self,
            key: Some(key),
            _permit: Some(permit),
        };
        let outcome = self.ask_upstreams(query, checking_disabled).await;
        if let Ok(reply) = &outcome {
            on_answer(reply);
        }
        leader.finish(&outcome);
        outcome
    }

    fn lock_in_flight(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<oneshot::Sender<Outcome>>>> {
        // The map stays consistent even if a holder panicked: every change is one insert or
        // one remove.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn ask_upstreams(&self, query: &Query, checking_disabled: bool) -> Outcome {
        let give_up = Instant::now() + TOTAL_BUDGET;
        let group = self
            .zones
            .iter()
            .find(|(zone, _)| zone.zone_of(&query.name))
            .map_or_else(|| self.default.clone(), |(_, range)| range.clone());
        for index in self.order(group) {
            let now = Instant::now();
            if now >= give_up {
                break;
            }
            let Some(health) = self.upstreams.get(index) else {
                continue;
            };
            let deadline = (now + TRY_TIMEOUT).min(give_up);
            self.metrics.upstream_query(index);
            let resend = Resend {
                rtt: &health.rtt,
                on_resend: &|| self.metrics.upstream_resend(index),
            };
            let question = exchange::Question {
                query,
                checking_disabled,
            };
            let reply = exchange::exchange(
                &self.pool,
                &health.upstream,
                &health.transport,
                question,
                deadline,
                resend,
            );
            match reply.await {
                Ok(reply) if usable(reply.metadata.response_code) => {
                    self.metrics.upstream_latency(index, now.elapsed());
                    self.succeeded(index);
                    return Ok(Arc::new(reply));
                }
                Ok(reply) => {
                    tracing::debug!(upstream = %health.upstream, rcode = %reply.metadata.response_code, name = %query.name, "upstream refused to answer");
                    self.failed(index);
                }
                Err(e) => {
                    tracing::debug!(upstream = %health.upstream, error = %e, name = %query.name, "upstream try failed");
                    self.failed(index);
                }
            }
        }
        Err(ForwardError::NoAnswer)
    }

    /// Upstream indexes of `group` to try: healthy ones in configured order, then demoted
    /// ones.
    fn order(&self, group: Range<usize>) -> Vec<usize> {
        let now = self.now_ms();
        let (healthy, demoted): (Vec<usize>, Vec<usize>) = group.partition(|&i| {
            self.upstreams
                .get(i)
                .is_some_and(|h| h.demoted_until_ms.load(Ordering::Relaxed) <= now)
        });
        healthy.into_iter().chain(demoted).collect()
    }

    fn succeeded(&self, index: usize) {
        let Some(h) = self.upstreams.get(index) else {
            return;
        };
        if h.failures_in_a_row.swap(0, Ordering::Relaxed) >= DEMOTE_AFTER {
            h.demoted_until_ms.store(0, Ordering::Relaxed);
        }
        let reported = h.reported_down_ms.load(Ordering::Relaxed);
        let quiet_since = self.now_ms().saturating_sub(reported);
        if reported != 0
            && quiet_since >= DEMOTE_FOR.as_millis() as u64
            && h.reported_down_ms
                .compare_exchange(reported, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::info!(upstream = %h.upstream, "upstream answers again");
        }
    }

    fn failed(&self, index: usize) {
        let Some(h) = self.upstreams.get(index) else {
            return;
        };
        self.metrics.upstream_failure(index);
        let failures = h.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= DEMOTE_AFTER {
            let until = self.now_ms() + DEMOTE_FOR.as_millis() as u64;
            h.demoted_until_ms.store(until, Ordering::Relaxed);
            // `max(1)`: 0 means "not reported", and the epoch's first millisecond is not.
            let now = self.now_ms().max(1);
            if h.reported_down_ms
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                tracing::warn!(upstream = %h.upstream, failures, "upstream keeps failing; trying it last for {}s", DEMOTE_FOR.as_secs());
            }
        }
    }

    /// How each upstream is doing, in configured order (for `GET /api/v1/status`).
    pub fn health(&self) -> Vec<UpstreamHealth> {
        let now = self.now_ms();
        self.upstreams
            .iter()
            .map(|h| UpstreamHealth {
                upstream: h.upstream.to_string(),
                zone: h.zone.as_ref().map(Name::to_ascii),
                failures_in_a_row: h.failures_in_a_row.load(Ordering::Relaxed),
                tried_last: h.demoted_until_ms.load(Ordering::Relaxed) > now,
            })
            .collect()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// One upstream's health as [`Forwarder::health`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHealth {
    /// The upstream as configured (`IP:port`, `tcp://IP:port`, `tls://…`, `https://…`).
    pub upstream: String,
    /// The forward zone it serves; `None` for a default upstream.
    pub zone: Option<String>,
    /// Tries in a row that gave no usable answer; 0 after one that did.
    pub failures_in_a_row: u32,
    /// Whether it failed [`DEMOTE_AFTER`] tries in a row and is tried after the others.
    pub tried_last: bool,
}

impl Health {
    fn new(
        upstream: &Upstream,
        zone: Option<&Name>,
        index: usize,
        tls: &UpstreamTls,
        metrics: &Arc<Metrics>,
    ) -> Self {
        let on_connect = {
            let metrics = Arc::clone(metrics);
            Box::new(move || metrics.upstream_connection(index))
        };
        let transport = match &upstream.protocol {
            Protocol::Udp | Protocol::Tcp => Transport::Plain,
            Protocol::Tls { name } => Transport::Tls(tls::DotClient::new(
                upstream.to_string(),
                upstream.addr,
                server_name(name.as_deref(), upstream),
                Arc::clone(&tls.dot),
                on_connect,
            )),
            Protocol::Https { host, path, .. } => Transport::Https(https::DohClient::new(
                upstream.to_string(),
                upstream.addr,
                server_name(Some(host), upstream),
                format!("https://{host}:{}{path}", upstream.addr.port()),
                Arc::clone(&tls.doh),
                on_connect,
            )),
        };
        Health {
            upstream: upstream.clone(),
            zone: zone.cloned(),
            transport,
            failures_in_a_row: AtomicU32::new(0),
            demoted_until_ms: AtomicU64::new(0),
            reported_down_ms: AtomicU64::new(0),
            rtt: Rtt::default(),
        }
    }
}

/// The name an upstream's certificate must carry: `name` (a host name or an IP literal), else
/// the upstream's IP.
fn server_name(name: Option<&str>, upstream: &Upstream) -> ServerName<'static> {
    // config.rs accepts only names rustls accepts; were one refused here, the IP (which no
    // public certificate names) fails closed rather than skipping the check.
    name.and_then(crate::config::certificate_name)
        .unwrap_or_else(|| ServerName::IpAddress(upstream.addr.ip().into()))
}

/// When an encrypted upstream may be connected to again after failed connects: the wait
/// doubles from `min` to `max` and ends on a success.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// The upstream, as logs show it.
    label: String,
    min: Duration,
    max: Duration,
    state: Mutex<BackoffState>,
}

#[derive(Debug, Default)]
struct BackoffState {
    /// When the last connect failed, and the wait before the next.
    failed: Option<(Instant, Duration)>,
}

impl Backoff {
    pub(crate) fn new(label: String, min: Duration, max: Duration) -> Self {
        Backoff {
            label,
            min,
            max,
            state: Mutex::new(BackoffState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BackoffState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a connect may be tried now.
    pub(crate) fn check(&self) -> Result<(), ExchangeError> {
        match self.lock().failed {
            Some((at, wait)) if at.elapsed() < wait => Err(ExchangeError::Backoff(at.elapsed())),
            _ => Ok(()),
        }
    }

    /// Records a failed connect; the first of a run is logged as a warning with its cause
    /// (a certificate that does not check out is something the operator must see).
    pub(crate) fn failed(&self, error: &dyn std::fmt::Display) {
        let upstream = &self.label;
        let mut state = self.lock();
        let wait = match state.failed {
            Some((_, wait)) => (wait * 2).min(self.max),
            None => {
                tracing::warn!(upstream = %upstream, error = %error, "cannot connect to the encrypted upstream");
                self.min
            }
        };
        tracing::debug!(upstream = %upstream, error = %error, retry_in = ?wait, "connect failed");
        state.failed = Some((Instant::now(), wait));
    }

    /// Records a successful connect.
    pub(crate) fn succeeded(&self) {
        self.lock().failed = None;
    }
}

/// Whether a reply with this rcode ends the search; the rest mean "ask someone else".
fn usable(rcode: ResponseCode) -> bool {
    matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain)
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::str::FromStr;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use hickory_proto::op::OpCode;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::Record;

    use super::*;
    use crate::config::Protocol;

    /// A UDP upstream on loopback that answers every query with one A record after `delay`.
    fn slow_upstream(delay: Duration) -> std::net::SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            // Ends when no query came for 10 s (the test is long over by then).
            while let Ok((len, from)) = socket.recv_from(&mut buf) {
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let mut reply = Message::response(query.metadata.id, OpCode::Query);
                for q in &query.queries {
                    reply.add_query(q.clone());
                    reply.add_answer(Record::from_rdata(
                        q.name.clone(),
                        60,
                        hickory_proto::rr::RData::A(A::new(192, 0, 2, 1)),
                    ));
                }
                std::thread::sleep(delay);
                let _ = socket.send_to(&reply.to_vec().expect("encode"), from);
            }
        });
        addr
    }

    // Several workers, so a waiter woken too early would run while on_answer still sleeps.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn only_the_leader_runs_on_answer_and_before_the_others_wake() {
        let addr = slow_upstream(Duration::from_millis(200));
        let upstream = Upstream {
            addr,
            protocol: Protocol::Udp,
        };
        let pool = UdpPool::new(8, [addr]).expect("pool");
        let forwarder = Arc::new(Forwarder::new(
            &[upstream],
            &[],
            &UpstreamTls::new(Arc::new(rustls::RootCertStore::empty())).expect("settings"),
            pool,
            16,
            Arc::new(Metrics::new([(addr.to_string(), None)])),
        ));
        let query = Query::query(
            Name::from_str("herd.example.").expect("name"),
            RecordType::A,
        );
        let answered = Arc::new(AtomicUsize::new(0));
        let mut askers = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (forwarder, query, answered) =
                (Arc::clone(&forwarder), query.clone(), Arc::clone(&answered));
            askers.spawn(async move {
                let outcome = forwarder
                    .forward(&query, false, |_| {
                        std::thread::sleep(Duration::from_millis(50));
                        answered.fetch_add(1, Ordering::SeqCst);
                    })
                    .await;
                // Whoever wakes finds on_answer already done.
                (outcome.is_ok(), answered.load(Ordering::SeqCst))
            });
        }
        while let Some(done) = askers.join_next().await {
            assert_eq!(done.expect("asker"), (true, 1));
        }
        assert_eq!(answered.load(Ordering::SeqCst), 1);
    }
}
