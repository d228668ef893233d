//! Zone transfer out: AXFR (RFC 5936) and IXFR (RFC 1995) for the zones rind serves, and
//! NOTIFY (RFC 1996) to their secondaries ([`notify`]).
//!
//! A transfer is allowed when the client's address is in the zone's `allow_transfer` and,
//! for a zone with a `tsig` key, the request is signed with that key; a signed request gets
//! signed responses whatever the zone says. Refusals are REFUSED; a bad signature is NOTAUTH
//! with the TSIG error (RFC 8945 §5.2); a zone rind does not serve is NOTAUTH.
//!
//! AXFR and IXFR go over TCP only, as a series of messages (about [`MESSAGE_BYTES`] each);
//! over UDP an IXFR gets the zone's SOA alone (RFC 1995 §2: "use TCP"), an AXFR NOTIMP.

pub mod notify;
pub mod secondary;

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use crate::records::zone::{Diff, Zone};
use crate::records::Records;
use crate::request::{Acl, Request};
use crate::response::{self, Answer};
use crate::tsig::{self, Keyring, Signer, Verdict};

/// Records are packed into messages of about this many bytes (TCP allows 64 KiB; smaller
/// messages keep the first bytes flowing early and memory flat).
pub const MESSAGE_BYTES: usize = 16 * 1024;

/// Serves AXFR and IXFR from the local zones.
#[derive(Debug)]
pub struct Transfers {
    records: Arc<Records>,
    keys: Keyring,
    wakers: Arc<secondary::Wakers>,
}

/// How a transfer request is to be answered.
#[derive(Debug)]
pub enum Plan {
    /// One reply, already encoded.
    Reply(Vec<u8>),
    /// The zone (or its changes) as a series of messages: run [`Transfers::send`].
    Stream(Box<Stream>),
}

/// A transfer that was allowed, ready to stream.
#[derive(Debug)]
pub struct Stream {
    request: Request,
    zone: Arc<Zone>,
    /// The zone's SOA (the primary's, for a secondary zone).
    soa: Record,
    signer: Option<Signer>,
    /// For IXFR: the serial the client has.
    since: Option<u32>,
}

impl Transfers {
    /// Transfers of the zones in `records`, with `keys` for TSIG.
    pub fn new(records: Arc<Records>, keys: Keyring) -> Self {
        Transfers {
            records,
            keys,
            wakers: Arc::default(),
        }
    }

    /// The wake-up calls of the secondary zones' refresh tasks, which NOTIFY rings.
    pub fn wakers(&self) -> &Arc<secondary::Wakers> {
        &self.wakers
    }

    /// Answers a NOTIFY (RFC 1996 §3.7): from the primary of a secondary zone (signed with
    /// its key, when it has one) it wakes that zone's refresh and gets NOERROR; from anyone
    /// else REFUSED; for a name that is not a secondary zone here NOTAUTH.
    pub fn notified(&self, request: &Request, packet: &[u8], client: IpAddr) -> Vec<u8> {
        let now = tsig::now();
        let signer = match self.signature(request, packet, client, now) {
            Ok(signer) => signer,
            Err(reply) => return reply,
        };
        let zone = self
            .records
            .zone_named(&request.query.name)
            .filter(|z| z.is_secondary());
        let rcode = match &zone {
            None => ResponseCode::NotAuth,
            Some(zone) => {
                let from_primary = zone.primary.is_some_and(|p| same_host(p.ip(), client));
                let key_ok = match (&zone.tsig, &signer) {
                    (None, _) => true,
                    (Some(wanted), Some((_, key))) => key.name == *wanted,
                    (Some(_), None) => false,
                };
                if from_primary && key_ok {
                    tracing::debug!(zone = %zone.name, %client, "NOTIFY from the primary");
                    self.wakers.wake(&zone.name);
                    ResponseCode::NoError
                } else {
                    tracing::info!(zone = %zone.name, %client, "NOTIFY refused: not from the zone's primary, or without its key");
                    ResponseCode::Refused
                }
            }
        };
        let answer = Answer {
            rcode,
            authoritative: rcode == ResponseCode::NoError,
            ..Answer::default()
        };
        let mut reply = response::write(request, &answer);
        if let Some((mut signer, _)) = signer {
            signer.sign(&mut reply, now);
        }
        reply
    }

    /// Checks the TSIG of `request` (whose bytes are `packet`): `None` when it has none, the
    /// signer of its reply and the key when it verifies, else the NOTAUTH reply with the
    /// TSIG error (RFC 8945 §5.2) to send instead.
    pub fn signature(
        &self,
        request: &Request,
        packet: &[u8],
        client: IpAddr,
        now: u64,
    ) -> Result<Option<(Signer, Arc<tsig::Key>)>, Vec<u8>> {
        match tsig::verify_request(&self.keys, packet, now) {
            Verdict::Unsigned => Ok(None),
            Verdict::Signed { key, mac } => {
                Ok(Some((Signer::response(Arc::clone(&key), mac), key)))
            }
            Verdict::Failed { error, key_name } => {
                tracing::info!(%client, key = %key_name, error, "request with a bad TSIG");
                let mut reply = response::write(request, &Answer::rcode(ResponseCode::NotAuth));
                tsig::append_error(&mut reply, &key_name, error, now);
                Err(reply)
            }
        }
    }

    /// Decides what an AXFR or IXFR `request` (whose bytes are `packet`) from `client` gets.
    pub fn plan(&self, request: Request, packet: &[u8], client: IpAddr) -> Plan {
        let now = tsig::now();
        let signer = match self.signature(&request, packet, client, now) {
            Ok(signer) => signer,
            Err(reply) => return Plan::Reply(reply),
        };
        let qtype = request.query.query_type;
        let zone = self.records.zone_named(&request.query.name);
        let refuse = |rcode: ResponseCode, signer: Option<(Signer, _)>| {
            let mut reply = response::write(&request, &Answer::rcode(rcode));
            if let Some((mut signer, _)) = signer {
                signer.sign(&mut reply, now);
            }
            Plan::Reply(reply)
        };
        let Some(zone) = zone else {
            return refuse(ResponseCode::NotAuth, signer);
        };
        let address_ok = Acl::new(zone.allow_transfer.clone()).allows(client);
        let key_ok = match (&zone.tsig, &signer) {
            (None, _) => true,
            (Some(wanted), Some((_, key))) => key.name == *wanted,
            (Some(_), None) => false,
        };
        if !address_ok || !key_ok {
            tracing::info!(%client, zone = %zone.name, signed = signer.is_some(), "zone transfer refused");
            return refuse(ResponseCode::Refused, signer);
        }
        // A secondary zone with no data yet, or expired, has nothing to give.
        let Some(soa) = self.records.zone_soa(&zone.name) else {
            return refuse(ResponseCode::ServFail, signer);
        };
        let since = if qtype == RecordType::IXFR {
            match client_serial(packet) {
                Some(serial) => Some(serial),
                None => return refuse(ResponseCode::FormErr, signer),
            }
        } else {
            None
        };
        let signer = signer.map(|(s, _)| s);
        if !request.transport.is_stream() {
            return match since {
                // RFC 1995 §2: a reply that does not fit UDP is the SOA alone.
                Some(_) => {
                    let mut stream = Stream {
                        request,
                        zone,
                        soa: soa.clone(),
                        signer,
                        since,
                    };
                    Plan::Reply(stream.message(vec![soa], true, now))
                }
                None => refuse(ResponseCode::NotImp, None),
            };
        }
        Plan::Stream(Box::new(Stream {
            request,
            zone,
            soa,
            signer,
            since,
        }))
    }

    /// Sends the messages of `stream` to `out` in order; stops when `out` is closed.
    pub async fn send(&self, mut stream: Box<Stream>, out: &tokio::sync::mpsc::Sender<Vec<u8>>) {
        let now = tsig::now();
        let records = match self.changes_for(&stream).await {
            Some(records) => records,
            None => match self.records.zone_content(&stream.zone.name) {
                Some((zone, soa, content)) => {
                    stream.zone = zone;
                    let mut all = Vec::with_capacity(content.len() + 2);
                    all.push(soa.clone());
                    all.extend(content);
                    all.push(soa);
                    all
                }
                None => {
                    // Deleted since the plan was made.
                    let reply = stream.message(Vec::new(), true, now);
                    let _ = out.send(reply).await;
                    return;
                }
            },
        };
        tracing::info!(
            zone = %stream.zone.name,
            serial = stream.zone.serial,
            kind = %stream.request.query.query_type,
            records = records.len(),
            "zone transfer"
        );
        let mut first = true;
        let mut batch: Vec<Record> = Vec::new();
        let mut bytes = 0;
        for record in records {
            let size = encoded_len(&record);
            if !batch.is_empty() && bytes + size > MESSAGE_BYTES {
                let message = stream.message(std::mem::take(&mut batch), first, now);
                first = false;
                bytes = 0;
                if out.send(message).await.is_err() {
                    return;
                }
            }
            bytes += size;
            batch.push(record);
        }
        let message = stream.message(batch, first, now);
        let _ = out.send(message).await;
    }

    /// For an IXFR: the records of the IXFR reply (RFC 1995 §4) when the client is current
    /// (the SOA alone) or the journal reaches back to its serial; `None` for a whole zone.
    async fn changes_for(&self, stream: &Stream) -> Option<Vec<Record>> {
        let since = stream.since?;
        let zone = &stream.zone;
        if serial_at_least(since, zone.serial) {
            return Some(vec![stream.soa.clone()]);
        }
        let diffs = match self
            .records
            .zone_journal(&zone.name, since, zone.serial)
            .await
        {
            Ok(Some(diffs)) => diffs,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(zone = %zone.name, error = %e, "zone journal unreadable; sending the whole zone");
                return None;
            }
        };
        Some(ixfr_records(zone, &diffs))
    }
}

/// The IXFR sequence: the current SOA, then for each change the old SOA, what went, the new
/// SOA, what came, and the current SOA again.
fn ixfr_records(zone: &Zone, diffs: &[Diff]) -> Vec<Record> {
    let current = zone.soa();
    let at = |serial: u32| {
        Zone {
            serial,
            ..zone.clone()
        }
        .soa()
    };
    let mut records = vec![current.clone()];
    for diff in diffs {
        records.push(at(diff.from));
        records.extend(diff.removed.iter().cloned());
        records.push(at(diff.to));
        records.extend(diff.added.iter().cloned());
    }
    records.push(current);
    records
}

impl Stream {
    /// One message of the transfer: AA=1, the question in the first one only (RFC 5936
    /// §2.2.1), signed when the request was.
    fn message(&mut self, answers: Vec<Record>, first: bool, now: u64) -> Vec<u8> {
        let mut metadata = Metadata::new(
            self.request.metadata.id,
            MessageType::Response,
            OpCode::Query,
        );
        metadata.authoritative = true;
        metadata.response_code = ResponseCode::NoError;
        let mut message = Message::new(
            self.request.metadata.id,
            MessageType::Response,
            OpCode::Query,
        );
        message.metadata = metadata;
        if first {
            message.add_query(self.request.query.clone());
        }
        message.add_answers(answers);
        let mut bytes = message.to_vec().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot encode a zone transfer message");
            response::write(&self.request, &Answer::rcode(ResponseCode::ServFail))
        });
        if let Some(signer) = &mut self.signer {
            signer.sign(&mut bytes, now);
        }
        bytes
    }
}

/// The serial in the SOA of an IXFR request's authority section.
fn client_serial(packet: &[u8]) -> Option<u32> {
    let message = Message::from_vec(packet).ok()?;
    message.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

/// Calls `each` with the apex of every zone now, then of every zone that changes, until
/// `shutdown` (the NOTIFY sender and the secondary refresher both follow the zones so).
pub async fn follow_zones(
    records: &Records,
    mut changes: tokio::sync::mpsc::UnboundedReceiver<hickory_proto::rr::Name>,
    shutdown: &tokio_util::sync::CancellationToken,
    mut each: impl FnMut(&hickory_proto::rr::Name),
) {
    for zone in records.zones() {
        each(&zone.name);
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = changes.recv() => match changed {
                Some(name) => each(&name),
                None => return,
            },
        }
    }
}

/// Whether two addresses are one host (an IPv4 address and its IPv6-mapped form are).
fn same_host(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// `a >= b` in serial number arithmetic (RFC 1982).
pub fn serial_at_least(a: u32, b: u32) -> bool {
    a == b || crate::records::zone::serial_after(a, b)
}

/// The bytes `record` takes uncompressed (an upper bound of what it takes in a message).
fn encoded_len(record: &Record) -> usize {
    let mut bytes = Vec::with_capacity(64);
    let emitted = {
        let mut outer = BinEncoder::new(&mut bytes);
        let mut encoder = outer.with_name_encoding(NameEncoding::Uncompressed);
        record.emit(&mut encoder)
    };
    match emitted {
        Ok(()) => bytes.len(),
        Err(_) => MESSAGE_BYTES,
    }
}

/// Whether a question of `qtype` asks for a zone transfer.
pub fn is_transfer(qtype: RecordType) -> bool {
    matches!(qtype, RecordType::AXFR | RecordType::IXFR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(serial_at_least(5, 5));
        assert!(serial_at_least(6, 5));
        assert!(!serial_at_least(5, 6));
        assert!(serial_at_least(2, u32::MAX));
        assert!(!serial_at_least(u32::MAX, 2));
    }
}
