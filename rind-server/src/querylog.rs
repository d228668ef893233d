//! The query log (`--query-log N`): the last N queries, kept in memory for
//! `GET /api/v1/querylog` and `rind-ctl log`.
//!
//! A ring of N preallocated slots of fixed size (the name is kept as its wire-form labels
//! in a 255-byte array, the most a DNS name can take), so the log's memory is set at start
//! and recording allocates nothing. A writer takes the next sequence number with one atomic
//! `fetch_add` and then locks only its own slot: writers on different slots never meet, and
//! a reader copying the log holds one slot at a time. Nothing here is on disk; a restart
//! starts an empty log.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use ipnet::IpNet;

use crate::request::Transport;

/// The largest `--query-log`: about 300 MB of slots.
pub const MAX_ENTRIES: usize = 1_000_000;

/// Longest DNS name in wire form (RFC 1035 §2.3.4).
const NAME_MAX: usize = 255;

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Local records (also a local CNAME chain whose target was found elsewhere).
    Local,
    /// Special-use names (`localhost.`, `home.arpa.`, private reverse zones).
    Special,
    /// A fresh answer from the cache.
    Cache,
    /// An upstream's answer (also one shared with a concurrent identical question).
    Upstream,
    /// An expired answer served because no upstream answered (`--serve-stale`).
    Stale,
    /// No upstream answered, nor was a stale answer at hand: rind made the SERVFAIL.
    Failed,
    /// Over `--rate-limit`: dropped, answered TC=1, or REFUSED.
    RateLimited,
    /// On a blocklist (and not on the allowlist): answered `0.0.0.0`/`::`, NODATA or NXDOMAIN.
    Blocked,
}

impl Source {
    /// The label the API and `rind-ctl log` show.
    pub fn label(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Special => "special",
            Source::Cache => "cache",
            Source::Upstream => "upstream",
            Source::Stale => "stale",
            Source::Failed => "failed",
            Source::RateLimited => "ratelimited",
            Source::Blocked => "blocked",
        }
    }
}

/// One query as the log keeps it: plain values only, no heap.
#[derive(Clone, Copy)]
struct Slot {
    /// Sequence number plus one; 0 marks a slot never written.
    seq_plus_one: u64,
    /// When the query arrived and when its reply was ready (`None` only in a slot never
    /// written). Kept as read, so the hot path does no arithmetic on them: a read turns them
    /// into a latency, and into a wall-clock time with the wall clock of that moment, so a
    /// clock set after start (a router without a battery-backed clock, set by NTP after
    /// boot) shows right in entries recorded before it was set.
    times: Option<(Instant, Instant)>,
    client: [u8; 16],
    client_v4: bool,
    transport: Transport,
    qtype: u16,
    /// `None`: nothing was sent back (a rate-limited UDP query dropped).
    rcode: Option<u16>,
    source: Source,
    /// The name's labels in wire form (length byte, label bytes), without the root label, in
    /// the client's letter case (lower-cased when read).
    name: [u8; NAME_MAX],
    name_len: u8,
}

impl Slot {
    const EMPTY: Slot = Slot {
        seq_plus_one: 0,
        times: None,
        client: [0; 16],
        client_v4: false,
        transport: Transport::Udp,
        qtype: 0,
        rcode: None,
        source: Source::Local,
        name: [0; NAME_MAX],
        name_len: 0,
    };

    fn client(&self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.client);
        match v6.to_ipv4_mapped() {
            Some(v4) if self.client_v4 => IpAddr::V4(v4),
            _ => IpAddr::V6(v6),
        }
    }

    /// The labels stored in `name`, first label first.
    fn labels(&self) -> Vec<&[u8]> {
        let mut labels = Vec::new();
        let mut rest = self.name.get(..usize::from(self.name_len)).unwrap_or(&[]);
        while let Some((&len, tail)) = rest.split_first() {
            let Some((label, after)) = tail.split_at_checked(usize::from(len)) else {
                break;
            };
            labels.push(label);
            rest = after;
        }
        labels
    }
}

/// A question's name, as the handler hands it to [`QueryLog::record`].
#[derive(Debug, Clone, Copy)]
pub enum LoggedName<'a> {
    /// Its labels straight from the packet ([`question_labels`]): one copy, the cheap way
    /// taken on the cache-hit path.
    Wire(&'a [u8]),
    /// The parsed name, copied label by label (when the packet is gone or the name was
    /// compressed).
    Parsed(&'a Name),
}

/// What a query got, as the handler reports it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// The response code sent; `None` when nothing was sent.
    pub rcode: Option<ResponseCode>,
    /// Where the answer came from.
    pub source: Source,
}

/// One logged query, for the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Order of arrival in the log: grows by one per query, never reused while the server runs.
    pub seq: u64,
    /// When the reply left, in microseconds since the Unix epoch.
    pub unix_micros: u64,
    /// The client's address.
    pub client: IpAddr,
    /// UDP or TCP.
    pub transport: Transport,
    /// The question's name, lower case, fully qualified.
    pub name: String,
    /// The question's type.
    pub qtype: RecordType,
    /// The response code sent; `None` when nothing was sent.
    pub rcode: Option<ResponseCode>,
    /// Where the answer came from.
    pub source: Source,
    /// Time from receiving the query to the reply being ready.
    pub latency: Duration,
}

/// Which entries a read returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only queries from this address or network.
    pub client: Option<IpNet>,
    /// Only queries for this name or names below it (lower case, fully qualified).
    pub name: Option<Name>,
    /// Only entries with a sequence number above this one (what `--follow` has seen).
    pub after: Option<u64>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// The ring.
pub struct QueryLog {
    slots: Box<[Mutex<Slot>]>,
    next: AtomicU64,
}

impl std::fmt::Debug for QueryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryLog")
            .field("capacity", &self.slots.len())
            .field("next", &self.next.load(Ordering::Relaxed))
            .finish()
    }
}

impl QueryLog {
    /// A log of the last `capacity` queries; `None` when `capacity` is 0 (the log is off).
    pub fn new(capacity: usize) -> Option<QueryLog> {
        if capacity == 0 {
            return None;
        }
        Some(QueryLog {
            slots: (0..capacity).map(|_| Mutex::new(Slot::EMPTY)).collect(),
            next: AtomicU64::new(0),
        })
    }

    /// How many entries the log keeps.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// How many queries were recorded since start (also those since pushed out).
    pub fn recorded(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// Records one query that arrived at `started` and is answered now.
    pub fn record(
        &self,
        started: Instant,
        client: IpAddr,
        transport: Transport,
        name: LoggedName<'_>,
        qtype: RecordType,
        outcome: Outcome,
    ) {
        let answered = Instant::now();
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let index = usize::try_from(seq % self.slots.len() as u64).unwrap_or(0);
        let Some(slot) = self.slots.get(index) else {
            return;
        };
        let mut slot = lock(slot);
        // With more writers in flight than slots, a later query may already hold this slot.
        if slot.seq_plus_one > seq {
            return;
        }
        slot.seq_plus_one = seq + 1;
        slot.times = Some((started, answered));
        (slot.client, slot.client_v4) = match client {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), true),
            IpAddr::V6(v6) => (v6.octets(), false),
        };
        slot.transport = transport;
        slot.qtype = u16::from(qtype);
        slot.rcode = outcome.rcode.map(u16::from);
        slot.source = outcome.source;
        slot.name_len = match name {
            LoggedName::Wire(labels) => copy_wire(&mut slot.name, labels),
            LoggedName::Parsed(name) => write_labels(&mut slot.name, name),
        };
    }

    /// The entries that pass `filter`, newest first.
    pub fn read(&self, filter: &Filter) -> Vec<Logged> {
        let now_unix_micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, micros);
        let now = Instant::now();
        let next = self.next.load(Ordering::Acquire);
        let oldest = next.saturating_sub(self.slots.len() as u64);
        let floor = filter
            .after
            .map_or(oldest, |a| a.saturating_add(1).max(oldest));
        let mut out = Vec::new();
        for seq in (floor..next).rev() {
            if out.len() >= filter.limit {
                break;
            }
            let index = usize::try_from(seq % self.slots.len() as u64).unwrap_or(0);
            let Some(slot) = self.slots.get(index) else {
                continue;
            };
            // Copied out so the slot is held for a memcpy, not for the filtering.
            let copy = *lock(slot);
            // Not yet written by its writer, or already overwritten by a newer query.
            let (Some((started, answered)), true) = (copy.times, copy.seq_plus_one == seq + 1)
            else {
                continue;
            };
            if filter
                .client
                .is_some_and(|net| !net.contains(&copy.client()))
            {
                continue;
            }
            let Ok(name) = Name::from_labels(copy.labels()).map(|n| n.to_lowercase()) else {
                continue;
            };
            if filter.name.as_ref().is_some_and(|n| !n.zone_of(&name)) {
                continue;
            }
            out.push(Logged {
                seq,
                unix_micros: now_unix_micros
                    .saturating_sub(micros(now.saturating_duration_since(answered))),
                client: copy.client(),
                transport: copy.transport,
                name: name.to_string(),
                qtype: RecordType::from(copy.qtype),
                rcode: copy.rcode.map(<ResponseCode as From<u16>>::from),
                source: copy.source,
                latency: answered.saturating_duration_since(started),
            });
        }
        out
    }
}

/// The question's name in a query packet, as its wire-form labels without the root label;
/// `None` when it is not there as plain labels (a compression pointer, a cut packet), for
/// the caller to log the parsed name instead.
pub fn question_labels(packet: &[u8]) -> Option<&[u8]> {
    let name = packet.get(12..)?;
    let mut at = 0usize;
    loop {
        let len = usize::from(*name.get(at)?);
        if len == 0 {
            return name.get(..at);
        }
        // Above 63 is a compression pointer or an extended label type.
        if len > 63 || at + 1 + len >= NAME_MAX {
            return None;
        }
        at += 1 + len;
    }
}

/// Copies wire-form labels into `buf`; returns the length used (0 if they do not fit).
fn copy_wire(buf: &mut [u8; NAME_MAX], labels: &[u8]) -> u8 {
    match (buf.get_mut(..labels.len()), u8::try_from(labels.len())) {
        (Some(dest), Ok(len)) => {
            dest.copy_from_slice(labels);
            len
        }
        _ => 0,
    }
}

/// Copies `name`'s labels into `buf`; returns the length used.
fn write_labels(buf: &mut [u8; NAME_MAX], name: &Name) -> u8 {
    let mut at = 0usize;
    for label in name.iter() {
        let end = at + 1 + label.len();
        // A parsed name fits in 255 bytes; stop rather than panic should one not.
        let Some(dest) = buf.get_mut(at..end) else {
            break;
        };
        if let Some((len, bytes)) = dest.split_first_mut() {
            *len = u8::try_from(label.len()).unwrap_or(0);
            bytes.copy_from_slice(label);
        }
        at = end;
    }
    u8::try_from(at).unwrap_or(0)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // A slot holds plain values written in one go; a panicking holder cannot leave it broken.
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(source: Source) -> Outcome {
        Outcome {
            rcode: Some(ResponseCode::NoError),
            source,
        }
    }

    fn all() -> Filter {
        Filter {
            limit: usize::MAX,
            ..Filter::default()
        }
    }

    fn record(log: &QueryLog, client: &str, name: &str) {
        log.record(
            Instant::now(),
            client.parse().expect("ip"),
            Transport::Udp,
            LoggedName::Parsed(&Name::from_ascii(name).expect("name")),
            RecordType::A,
            answered(Source::Cache),
        );
    }

    #[test]
    fn wire_and_parsed_names_log_the_same() {
        use hickory_proto::op::{Message, Query};
        let name = Name::from_ascii("WwW.Example.com.").expect("name");
        let mut msg = Message::query();
        msg.add_query(Query::query(name.clone(), RecordType::A));
        let packet = msg.to_vec().expect("encode");
        let labels = question_labels(&packet).expect("plain labels");
        assert_eq!(labels, b"\x03WwW\x07Example\x03com");
        let log = QueryLog::new(2).expect("on");
        for logged in [LoggedName::Wire(labels), LoggedName::Parsed(&name)] {
            log.record(
                Instant::now(),
                "192.0.2.1".parse().expect("ip"),
                Transport::Udp,
                logged,
                RecordType::A,
                answered(Source::Cache),
            );
        }
        let got: Vec<String> = log.read(&all()).into_iter().map(|e| e.name).collect();
        assert_eq!(got, ["www.example.com.", "www.example.com."]);
    }

    #[test]
    fn odd_question_names_fall_back_to_the_parsed_name() {
        let header = [0u8; 12];
        let with = |tail: &[u8]| [&header[..], tail].concat();
        assert_eq!(question_labels(&with(&[0])), Some(&[][..]), "the root");
        assert_eq!(question_labels(&with(&[0xc0, 0x0c])), None, "a pointer");
        assert_eq!(question_labels(&with(&[3, b'a', b'b'])), None, "cut short");
        assert_eq!(question_labels(&header[..5]), None, "no question");
        let long: Vec<u8> = std::iter::repeat_n([63u8; 64], 5).flatten().collect();
        assert_eq!(question_labels(&with(&long)), None, "over 255 bytes");
    }

    #[test]
    fn zero_turns_the_log_off() {
        assert!(QueryLog::new(0).is_none());
    }

    #[test]
    fn keeps_the_newest_n_newest_first() {
        let log = QueryLog::new(3).expect("on");
        for i in 0..5 {
            record(&log, "192.0.2.1", &format!("n{i}.example."));
        }
        let names: Vec<String> = log.read(&all()).into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["n4.example.", "n3.example.", "n2.example."]);
        assert_eq!(log.recorded(), 5);
    }

    #[test]
    fn names_are_lower_case_and_clients_keep_their_family() {
        let log = QueryLog::new(4).expect("on");
        record(&log, "192.0.2.1", "WwW.Example.COM.");
        record(&log, "2001:db8::1", "a\\.b.example.");
        let got = log.read(&all());
        assert_eq!(got[1].name, "www.example.com.");
        assert_eq!(got[1].client, "192.0.2.1".parse::<IpAddr>().expect("ip"));
        assert_eq!(got[0].name, "a\\.b.example.");
        assert_eq!(got[0].client, "2001:db8::1".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn a_longest_name_fits() {
        let log = QueryLog::new(1).expect("on");
        let label = "a".repeat(63);
        let long = format!("{label}.{label}.{label}.{}.", "b".repeat(61));
        record(&log, "192.0.2.1", &long);
        assert_eq!(log.read(&all())[0].name, long);
    }

    #[test]
    fn filters_by_client_name_after_and_limit() {
        let log = QueryLog::new(10).expect("on");
        record(&log, "192.0.2.1", "www.example.com.");
        record(&log, "192.0.2.2", "example.com.");
        record(&log, "192.0.2.1", "notexample.com.");
        record(&log, "192.0.2.1", "mail.example.com.");
        let by_client = Filter {
            client: Some("192.0.2.2/32".parse().expect("net")),
            ..all()
        };
        assert_eq!(log.read(&by_client).len(), 1);
        let by_name = Filter {
            name: Some(Name::from_ascii("example.com.").expect("name")),
            ..all()
        };
        let names: Vec<String> = log.read(&by_name).into_iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            ["mail.example.com.", "example.com.", "www.example.com."]
        );
        let after = Filter {
            after: Some(1),
            ..all()
        };
        let seqs: Vec<u64> = log.read(&after).into_iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 2]);
        let limited = Filter { limit: 2, ..all() };
        assert_eq!(log.read(&limited).len(), 2);
    }

    #[test]
    fn concurrent_writers_leave_whole_entries() {
        let log = std::sync::Arc::new(QueryLog::new(64).expect("on"));
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let log = std::sync::Arc::clone(&log);
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        record(&log, &format!("192.0.2.{t}"), &format!("t{t}-{i}.example."));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        let got = log.read(&all());
        assert_eq!(got.len(), 64);
        for e in got {
            let IpAddr::V4(v4) = e.client else {
                panic!("family changed: {e:?}");
            };
            let t = v4.octets()[3];
            assert!(e.name.starts_with(&format!("t{t}-")), "{e:?}");
        }
    }
}
