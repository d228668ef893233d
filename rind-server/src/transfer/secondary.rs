//! Zone transfer in: secondary zones pulled from their primary (rind, Knot, BIND, ...).
//!
//! One task per secondary zone asks the primary for its SOA at start, on every NOTIFY from
//! it, and on the SOA refresh timer (the retry timer after a failure). When the primary's
//! serial is ahead, it transfers the zone: IXFR from the serial it has (the primary may
//! answer with the whole zone instead), AXFR when it has nothing yet. The result is stored
//! in sled and published in one write ([`Records::replace_secondary`]), so a secondary
//! answers after a restart and while its primary is down, until the SOA expire passes
//! without word from the primary.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, Notify};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::serial_at_least;
use crate::records::zone::{self, Zone};
use crate::records::Records;
use crate::tsig::{self, Keyring, Signer};

/// Wait for the answer to one SOA query.
const SOA_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait for the TCP connection to the primary.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait for each message of a transfer.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most records one transfer may bring (a bound on memory against a primary gone wrong).
const MAX_RECORDS: usize = 5_000_000;
/// Shortest wait between checks, whatever the SOA says (a primary with refresh 0 would
/// otherwise be asked without pause).
const MIN_WAIT: Duration = Duration::from_secs(1);

/// Why a refresh failed, in words for the log.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The primary did not answer, or not usably.
    #[error("{0}")]
    Primary(String),
    /// The store refused the new data.
    #[error("cannot store the zone: {0}")]
    Store(#[from] crate::records::WriteError),
}

fn primary_error(what: impl Into<String>) -> RefreshError {
    RefreshError::Primary(what.into())
}

/// The wake-up calls of the secondary zones' tasks, by apex: a NOTIFY rings one.
#[derive(Debug, Default)]
pub struct Wakers {
    by_zone: Mutex<HashMap<Name, Arc<Notify>>>,
}

impl Wakers {
    /// Wakes the task of zone `name`; `false` when there is none.
    pub fn wake(&self, name: &Name) -> bool {
        let by_zone = self.by_zone.lock().unwrap_or_else(PoisonError::into_inner);
        match by_zone.get(name) {
            Some(notify) => {
                notify.notify_one();
                true
            }
            None => false,
        }
    }

    /// The waker of zone `name`, and whether it is new (no task yet).
    fn register(&self, name: &Name) -> (Arc<Notify>, bool) {
        let mut by_zone = self.by_zone.lock().unwrap_or_else(PoisonError::into_inner);
        match by_zone.get(name) {
            Some(notify) => (Arc::clone(notify), false),
            None => {
                let notify = Arc::new(Notify::new());
                by_zone.insert(name.clone(), Arc::clone(&notify));
                (notify, true)
            }
        }
    }

    fn forget(&self, name: &Name) {
        self.by_zone
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }
}

/// Starts a task for every secondary zone, now and whenever one is made, until `shutdown`.
pub fn spawn(
    records: Arc<Records>,
    keys: Keyring,
    wakers: Arc<Wakers>,
    changes: mpsc::UnboundedReceiver<Name>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    let inner = tracker.clone();
    tracker.spawn(async move {
        super::follow_zones(&records, changes, &shutdown.clone(), |name| {
            if !records.zone_named(name).is_some_and(|z| z.is_secondary()) {
                return;
            }
            let (wake, new) = wakers.register(name);
            if new {
                inner.spawn(zone_task(
                    Arc::clone(&records),
                    keys.clone(),
                    Arc::clone(&wakers),
                    name.clone(),
                    wake,
                    shutdown.clone(),
                ));
            }
        })
        .await;
    });
}

/// Keeps zone `name` current until it is deleted or stops being a secondary.
async fn zone_task(
    records: Arc<Records>,
    keys: Keyring,
    wakers: Arc<Wakers>,
    name: Name,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let Some(zone) = records.zone_named(&name).filter(|z| z.is_secondary()) else {
            wakers.forget(&name);
            return;
        };
        let key = match &zone.tsig {
            Some(key_name) => match keys.get(key_name) {
                Some(key) => Some(Arc::clone(key)),
                None => {
                    tracing::error!(zone = %name, key = %key_name, "secondary zone names a TSIG key the server was not given");
                    None
                }
            },
            None => None,
        };
        let wait = match refresh(&records, &zone, key.as_ref()).await {
            Ok(()) => timers(&records, &zone).0,
            Err(e) => {
                tracing::warn!(zone = %name, primary = ?zone.primary, error = %e, "secondary zone refresh failed");
                timers(&records, &zone).1
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait.max(MIN_WAIT)) => {}
        }
    }
}

/// The refresh and retry waits of `zone`: its SOA's once it has data, rind's defaults before.
fn timers(records: &Records, zone: &Zone) -> (Duration, Duration) {
    let soa = records
        .secondary(&zone.name)
        .and_then(|data| match &data.soa.data {
            RData::SOA(soa) => Some((soa.refresh, soa.retry)),
            _ => None,
        });
    let (refresh, retry) = soa.unwrap_or((zone::REFRESH, zone::RETRY));
    let secs = |v: i32| Duration::from_secs(u64::from(v.unsigned_abs()));
    (secs(refresh), secs(retry))
}

/// Asks the primary whether the zone changed, and transfers it when it did.
async fn refresh(
    records: &Arc<Records>,
    zone: &Zone,
    key: Option<&Arc<tsig::Key>>,
) -> Result<(), RefreshError> {
    let primary = zone
        .primary
        .ok_or_else(|| primary_error("the zone has no primary"))?;
    let theirs = soa_serial(primary, &zone.name, key).await?;
    let held = records.secondary(&zone.name);
    let ours = held.as_ref().and_then(|d| d.soa_data().map(|s| s.serial));
    if let Some(ours) = ours.filter(|ours| serial_at_least(*ours, theirs)) {
        tracing::debug!(zone = %zone.name, serial = ours, "secondary zone is current");
        records.secondary_refreshed(&zone.name).await?;
        return Ok(());
    }
    let current = held.map(|d| (d.soa.clone(), d.records.clone()));
    let (soa, content, kind) = transfer(primary, &zone.name, key, current).await?;
    let serial = match &soa.data {
        RData::SOA(soa) => soa.serial,
        _ => return Err(primary_error("the transfer did not start with the SOA")),
    };
    let count = content.len();
    records.replace_secondary(&zone.name, soa, content).await?;
    tracing::info!(zone = %zone.name, %primary, from = ?ours, to = serial, records = count, kind, "secondary zone transferred");
    Ok(())
}

/// The serial of the primary's SOA for `apex` (UDP, TCP when truncated).
async fn soa_serial(
    primary: SocketAddr,
    apex: &Name,
    key: Option<&Arc<tsig::Key>>,
) -> Result<u32, RefreshError> {
    let (id, question, bytes, signer) = request(apex, RecordType::SOA, None, key)?;
    let local: SocketAddr = match primary.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| primary_error(format!("cannot open a UDP socket: {e}")))?;
    socket
        .send_to(&bytes, primary)
        .await
        .map_err(|e| primary_error(format!("cannot send to {primary}: {e}")))?;
    let mut buffer = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + SOA_TIMEOUT;
    let mut signer = signer;
    loop {
        let (len, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buffer))
            .await
            .map_err(|_| primary_error(format!("no answer from {primary} to the SOA query")))?
            .map_err(|e| primary_error(format!("{primary}: {e}")))?;
        let Some(packet) = buffer.get(..len) else {
            continue;
        };
        if from != primary {
            continue;
        }
        let Ok(reply) = Message::from_vec(packet) else {
            continue;
        };
        if reply.metadata.id != id || reply.queries.first() != Some(&question) {
            continue;
        }
        if let Some(signer) = &mut signer {
            if !signer.verify_response(packet, tsig::now()) {
                return Err(primary_error("the SOA answer's TSIG does not verify"));
            }
        }
        if reply.metadata.truncation {
            break;
        }
        return serial_of(&reply, apex);
    }
    // Truncated: once more over TCP.
    let (_, _, bytes, signer) = request(apex, RecordType::SOA, None, key)?;
    let mut stream = connect(primary).await?;
    send(&mut stream, &bytes).await?;
    let packet = receive(&mut stream).await?;
    if let Some(mut signer) = signer {
        if !signer.verify_response(&packet, tsig::now()) {
            return Err(primary_error("the SOA answer's TSIG does not verify"));
        }
    }
    let reply = Message::from_vec(&packet)
        .map_err(|e| primary_error(format!("unreadable SOA answer: {e}")))?;
    serial_of(&reply, apex)
}

fn serial_of(reply: &Message, apex: &Name) -> Result<u32, RefreshError> {
    if reply.metadata.response_code != ResponseCode::NoError || !reply.metadata.authoritative {
        return Err(primary_error(format!(
            "the primary answers {} (AA={}) for the SOA of {apex}: it does not serve the zone",
            reply.metadata.response_code, reply.metadata.authoritative
        )));
    }
    reply
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) if r.name == *apex => Some(soa.serial),
            _ => None,
        })
        .ok_or_else(|| primary_error("the primary's SOA answer holds no SOA"))
}

/// A query for `apex` and `qtype`, with `soa` in the authority section (IXFR), signed with
/// `key`: its ID, question, bytes, and the signer that checks the answer.
fn request(
    apex: &Name,
    qtype: RecordType,
    soa: Option<&Record>,
    key: Option<&Arc<tsig::Key>>,
) -> Result<(u16, Query, Vec<u8>, Option<Signer>), RefreshError> {
    let id: u16 = rand::random();
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    let mut question = Query::query(apex.clone(), qtype);
    question.query_class = DNSClass::IN;
    message.add_query(question.clone());
    if let Some(soa) = soa {
        message.add_authority(soa.clone());
    }
    let mut bytes = message
        .to_vec()
        .map_err(|e| primary_error(format!("cannot encode the query: {e}")))?;
    let signer = key.map(|k| {
        let mut signer = Signer::request(Arc::clone(k));
        signer.sign(&mut bytes, tsig::now());
        signer
    });
    Ok((id, question, bytes, signer))
}

/// Transfers `apex` from `primary`: IXFR from `current` (the SOA and records held) when
/// there is data, else AXFR. Returns the new SOA, the other records, and which kind of
/// transfer the primary sent.
async fn transfer(
    primary: SocketAddr,
    apex: &Name,
    key: Option<&Arc<tsig::Key>>,
    current: Option<(Record, Vec<Record>)>,
) -> Result<(Record, Vec<Record>, &'static str), RefreshError> {
    let qtype = if current.is_some() {
        RecordType::IXFR
    } else {
        RecordType::AXFR
    };
    let (id, _, bytes, mut signer) = request(apex, qtype, current.as_ref().map(|c| &c.0), key)?;
    let mut stream = connect(primary).await?;
    send(&mut stream, &bytes).await?;
    let mut reader = Reader::default();
    while !reader.done {
        let packet = receive(&mut stream).await?;
        if let Some(signer) = &mut signer {
            if !signer.verify_response(&packet, tsig::now()) {
                return Err(primary_error("a transfer message's TSIG does not verify"));
            }
        }
        let reply = Message::from_vec(&packet)
            .map_err(|e| primary_error(format!("unreadable transfer message: {e}")))?;
        if reply.metadata.id != id {
            return Err(primary_error("a transfer message with another ID"));
        }
        if reply.metadata.response_code != ResponseCode::NoError {
            return Err(primary_error(format!(
                "the primary refused the transfer: {}",
                reply.metadata.response_code
            )));
        }
        if reply.answers.is_empty() {
            return Err(primary_error("an empty transfer message"));
        }
        for record in reply.answers {
            reader.take(record)?;
        }
        // "You are current" is one message holding the SOA alone (RFC 1995 §4).
        let held = current.as_ref().and_then(|(soa, _)| serial(soa));
        if reader.records.is_empty() && reader.soa.as_ref().and_then(serial) == held {
            break;
        }
    }
    reader.finish(current)
}

/// Reads the records of an AXFR or IXFR reply as they arrive, and knows when it is over.
#[derive(Default)]
struct Reader {
    /// The first SOA: the zone's new version.
    soa: Option<Record>,
    records: Vec<Record>,
    done: bool,
}

impl Reader {
    fn take(&mut self, record: Record) -> Result<(), RefreshError> {
        if self.done {
            return Ok(());
        }
        let Some(first) = &self.soa else {
            if !matches!(record.data, RData::SOA(_)) {
                return Err(primary_error("the transfer did not start with the SOA"));
            }
            self.soa = Some(record);
            return Ok(());
        };
        let last_soa = matches!(&record.data, RData::SOA(s) if Some(s.serial) == serial(first));
        // AXFR ends with the first SOA again; so does IXFR, after its last additions (an
        // IXFR's inner SOAs carry older serials, or the new one at the start of the last
        // additions, which `ixfr_ends` tells apart).
        if last_soa && self.ixfr_ends() {
            self.done = true;
            return Ok(());
        }
        if self.records.len() >= MAX_RECORDS {
            return Err(primary_error("the transfer is larger than rind accepts"));
        }
        self.records.push(record);
        Ok(())
    }

    /// Whether an SOA with the new serial now ends the transfer: always in AXFR form; in
    /// IXFR form (the second record an SOA) only after an odd number of inner SOAs, when
    /// it closes the additions of the last change rather than opening them.
    fn ixfr_ends(&self) -> bool {
        let Some(second) = self.records.first() else {
            // The SOA alone twice: an empty zone, or "you are current" then the end.
            return true;
        };
        if !matches!(second.data, RData::SOA(_)) {
            return true;
        }
        let inner = self
            .records
            .iter()
            .filter(|r| matches!(r.data, RData::SOA(_)))
            .count();
        inner % 2 == 0
    }

    /// The new SOA, the zone's other records, and which kind of transfer it was.
    fn finish(
        self,
        current: Option<(Record, Vec<Record>)>,
    ) -> Result<(Record, Vec<Record>, &'static str), RefreshError> {
        let soa = self
            .soa
            .ok_or_else(|| primary_error("the transfer was empty"))?;
        let incremental = self
            .records
            .first()
            .is_some_and(|r| matches!(r.data, RData::SOA(_)));
        if !incremental {
            if self.records.is_empty() {
                if let Some((held_soa, held)) = current {
                    // IXFR's "nothing changed" is a lone SOA with the serial held.
                    if serial(&held_soa) == serial(&soa) {
                        return Ok((soa, held, "IXFR (no change)"));
                    }
                }
            }
            return Ok((soa, self.records, "AXFR"));
        }
        let (mut held_soa, mut held) = current
            .ok_or_else(|| primary_error("an incremental transfer with no zone to apply it to"))?;
        // Each change is: the old SOA, what went, the new SOA, what came.
        let mut state = Ixfr::Old;
        for record in self.records {
            if let RData::SOA(_) = record.data {
                state = match state {
                    Ixfr::Old | Ixfr::Adding => {
                        if serial(&record) != serial(&held_soa) {
                            return Err(primary_error(
                                "an IXFR change does not start from the serial held",
                            ));
                        }
                        Ixfr::Deleting
                    }
                    Ixfr::Deleting => {
                        held_soa = record;
                        Ixfr::Adding
                    }
                };
                continue;
            }
            match state {
                Ixfr::Adding => held.push(record),
                Ixfr::Deleting => {
                    match held
                        .iter()
                        .position(|r| *r == record && r.ttl == record.ttl)
                    {
                        Some(at) => {
                            held.swap_remove(at);
                        }
                        None => {
                            return Err(primary_error(format!(
                                "an IXFR deletes a record the zone does not hold: {record}"
                            )))
                        }
                    }
                }
                Ixfr::Old => return Err(primary_error("an IXFR change without its SOA")),
            }
        }
        if serial(&held_soa) != serial(&soa) {
            return Err(primary_error(
                "the IXFR changes do not reach the new serial",
            ));
        }
        Ok((soa, held, "IXFR"))
    }
}

/// Where an IXFR reply is.
#[derive(Clone, Copy)]
enum Ixfr {
    /// Before a change: its old SOA comes next.
    Old,
    /// In a change's deletions.
    Deleting,
    /// In a change's additions.
    Adding,
}

fn serial(record: &Record) -> Option<u32> {
    match &record.data {
        RData::SOA(SOA { serial, .. }) => Some(*serial),
        _ => None,
    }
}

async fn connect(primary: SocketAddr) -> Result<TcpStream, RefreshError> {
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(primary))
        .await
        .map_err(|_| primary_error(format!("no TCP connection to {primary}")))?
        .map_err(|e| primary_error(format!("cannot connect to {primary}: {e}")))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn send(stream: &mut TcpStream, message: &[u8]) -> Result<(), RefreshError> {
    let len = u16::try_from(message.len()).map_err(|_| primary_error("query too large"))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    timeout(MESSAGE_TIMEOUT, stream.write_all(&framed))
        .await
        .map_err(|_| primary_error("the primary does not take the query"))?
        .map_err(|e| primary_error(format!("sending to the primary: {e}")))
}

async fn receive(stream: &mut TcpStream) -> Result<Vec<u8>, RefreshError> {
    let read = async {
        let len = stream.read_u16().await?;
        let mut message = vec![0u8; usize::from(len)];
        stream.read_exact(&mut message).await?;
        Ok::<_, std::io::Error>(message)
    };
    timeout(MESSAGE_TIMEOUT, read)
        .await
        .map_err(|_| primary_error("the primary stopped sending mid-transfer"))?
        .map_err(|e| primary_error(format!("reading from the primary: {e}")))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::rdata::A;

    use super::*;

    fn soa(serial: u32) -> Record {
        Record::from_rdata(
            Name::from_str("z.lan.").expect("name"),
            300,
            RData::SOA(SOA::new(
                Name::from_str("ns.z.lan.").expect("name"),
                Name::from_str("h.z.lan.").expect("name"),
                serial,
                300,
                60,
                600,
                60,
            )),
        )
    }

    fn a(last: u8) -> Record {
        Record::from_rdata(
            Name::from_str("a.z.lan.").expect("name"),
            60,
            RData::A(A::new(10, 0, 0, last)),
        )
    }

    fn read(records: Vec<Record>) -> Reader {
        let mut reader = Reader::default();
        for r in records {
            reader.take(r).expect("take");
        }
        reader
    }

    #[test]
    fn an_axfr_ends_at_the_second_soa() {
        let reader = read(vec![soa(5), a(1), a(2), soa(5)]);
        assert!(reader.done);
        let (s, records, kind) = reader.finish(None).expect("finish");
        assert_eq!(serial(&s), Some(5));
        assert_eq!(records, vec![a(1), a(2)]);
        assert_eq!(kind, "AXFR");
    }

    #[test]
    fn an_ixfr_applies_its_changes_in_order() {
        // 3 → 4 swaps .1 for .2; 4 → 5 adds .3.
        let reader = read(vec![
            soa(5),
            soa(3),
            a(1),
            soa(4),
            a(2),
            soa(4),
            soa(5),
            a(3),
            soa(5),
        ]);
        assert!(reader.done);
        let (s, mut records, kind) = reader
            .finish(Some((soa(3), vec![a(1), a(9)])))
            .expect("finish");
        records.sort_by_key(|r| r.data.to_string());
        assert_eq!(serial(&s), Some(5));
        assert_eq!(records, vec![a(2), a(3), a(9)]);
        assert_eq!(kind, "IXFR");
    }

    #[test]
    fn an_ixfr_is_not_over_until_its_last_soa() {
        let mut reader = read(vec![soa(5), soa(4), a(1), soa(5)]);
        assert!(
            !reader.done,
            "the SOA that opens the additions does not end it"
        );
        reader.take(a(2)).expect("take");
        reader.take(soa(5)).expect("take");
        assert!(reader.done);
    }

    #[test]
    fn an_ixfr_that_deletes_what_is_not_there_fails() {
        let reader = read(vec![soa(5), soa(4), a(7), soa(5), soa(5)]);
        assert!(reader.finish(Some((soa(4), vec![a(1)]))).is_err());
        // A change from a serial other than the one held.
        let reader = read(vec![soa(5), soa(3), soa(5), soa(5)]);
        assert!(reader.finish(Some((soa(4), vec![]))).is_err());
        // Changes that stop short of the new serial.
        let reader = read(vec![soa(5), soa(3), soa(4), soa(5)]);
        assert!(reader.finish(Some((soa(3), vec![]))).is_err());
    }

    #[test]
    fn a_lone_soa_keeps_what_is_held() {
        let mut reader = Reader::default();
        reader.take(soa(4)).expect("take");
        // Over TCP a single-SOA IXFR answer is one message with one record: the caller stops
        // on the message; here the reader sees nothing more.
        let (s, records, kind) = reader.finish(Some((soa(4), vec![a(1)]))).expect("finish");
        assert_eq!(serial(&s), Some(4));
        assert_eq!(records, vec![a(1)]);
        assert_eq!(kind, "IXFR (no change)");
    }
}
