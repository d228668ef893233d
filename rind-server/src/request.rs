//! Request checks: turns the bytes of one packet into a [`Request`] the resolver can answer,
//! or into a drop or an error reply, in the contract's order (first match wins):
//!
//! 1. no readable 12-byte header → dropped;
//! 2. QR=1 → dropped (answering responses lets two servers reflect packets at each other);
//! 3. opcode other than QUERY (or NOTIFY, which the handler gives to the secondary zones)
//!    → NOTIMP;
//! 4. a body that does not parse, or not exactly one question → FORMERR;
//! 5. a client outside `--allow` → REFUSED (nothing is forwarded for it);
//! 6. EDNS version above 0 → BADVERS (RFC 6891 §6.1.3).
//!
//! Each error reply echoes the question when it could be read, and the DO bit when the OPT
//! record could be read. A [`Request`] carries what the reply depends on besides the question:
//! the OPT record (size limit, DO) and the header's CD and AD bits.

use std::net::IpAddr;

use hickory_proto::op::{
    Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use ipnet::IpNet;

use crate::metrics::DropReason;
use crate::response;

/// The transport a query arrived on; it decides the size limit of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: replies are limited to the client's advertised size.
    Udp,
    /// TCP: replies may use the full 64 KiB.
    Tcp,
    /// DNS over TLS (RFC 7858): TCP's framing and limits inside TLS.
    Tls,
    /// DNS over HTTPS (RFC 8484): one reply per HTTP request, up to 64 KiB.
    Https,
}

impl Transport {
    /// Every transport, in the order of [`Transport::index`].
    pub const ALL: [Transport; 4] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Tls,
        Transport::Https,
    ];

    /// The name in metrics labels and the query log.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Https => "https",
        }
    }

    /// A small index, for per-transport counters.
    pub fn index(self) -> usize {
        match self {
            Transport::Udp => 0,
            Transport::Tcp => 1,
            Transport::Tls => 2,
            Transport::Https => 3,
        }
    }

    /// Whether one query may get a series of messages back (a zone transfer): a byte
    /// stream may, a datagram or an HTTP response carries one.
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }
}

/// The smallest UDP payload every client must accept (RFC 1035 §4.2.1).
pub const MIN_UDP_PAYLOAD: u16 = 512;
/// The largest UDP payload rind sends and advertises: avoids IP fragmentation (DNS Flag Day 2020).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// A query that passed every check.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request header as received; the reply copies ID, opcode, RD and CD from it.
    pub metadata: Metadata,
    /// The one question, with the client's letter case.
    pub query: Query,
    /// The query's OPT record, when it had one; the reply carries one iff it did.
    pub edns: Option<ClientEdns>,
    /// Size limit of the reply in bytes.
    pub max_size: u16,
    /// Where the query came from.
    pub transport: Transport,
    /// Whether it carries a TSIG record (RFC 8945): its reply is signed too.
    pub signed: bool,
}

/// What a client's OPT record asks of the reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientEdns {
    /// DO: the client wants DNSSEC records (RFC 3225); the reply's OPT echoes it.
    pub dnssec_ok: bool,
}

impl From<&Edns> for ClientEdns {
    fn from(edns: &Edns) -> Self {
        ClientEdns {
            dnssec_ok: edns.flags().dnssec_ok,
        }
    }
}

impl Request {
    /// Whether the client set DO, so it gets RRSIG, NSEC and NSEC3 records.
    pub fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|e| e.dnssec_ok)
    }

    /// Whether the reply may carry the upstream's AD bit: only for a client that set DO or
    /// AD, which says it understands it (RFC 6840 §5.7, §5.8).
    pub fn wants_ad(&self) -> bool {
        self.dnssec_ok() || self.metadata.authentic_data
    }

    /// CD: the client validates itself and wants answers its upstream did not check.
    pub fn checking_disabled(&self) -> bool {
        self.metadata.checking_disabled
    }
}

/// What the checks decided about one packet.
#[derive(Debug)]
pub enum Checked {
    /// Send nothing back.
    Drop(DropReason),
    /// Send this error reply (already encoded) with this response code.
    Reject(Vec<u8>, ResponseCode),
    /// A query to resolve.
    Query(Request),
}

/// Client networks allowed to query (`--allow`).
#[derive(Debug, Clone)]
pub struct Acl {
    nets: Vec<IpNet>,
}

impl Acl {
    /// Builds the list from the configured networks.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Acl { nets }
    }

    /// Whether `client` may query; IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.nets.iter().any(|net| net.contains(&client))
    }
}

/// Runs the checks on one packet from `client`.
pub fn check(packet: &[u8], client: IpAddr, transport: Transport, acl: &Acl) -> Checked {
    let mut decoder = BinDecoder::new(packet);
    let Ok(header) = Header::read(&mut decoder) else {
        return Checked::Drop(DropReason::Short);
    };
    let metadata = header.metadata;
    if metadata.message_type == MessageType::Response {
        return Checked::Drop(DropReason::Response);
    }
    // NOTIFY (RFC 1996) is checked like a query, for the secondary zones.
    if !matches!(metadata.op_code, OpCode::Query | OpCode::Notify) {
        let question = first_question(&mut decoder, header.counts.queries);
        // RFC 6891 §7 and RFC 3225: an OPT (with DO copied) whenever the query's could be read.
        let edns = Message::from_vec(packet)
            .ok()
            .and_then(|m| m.edns.as_ref().map(ClientEdns::from));
        return reject(&metadata, question.as_ref(), edns, ResponseCode::NotImp);
    }
    let (query, edns, signed) = match simple_query(&mut decoder, &header) {
        Some((query, edns)) => (query, edns, false),
        None => match full_parse(packet) {
            Ok(parsed) => parsed,
            Err(edns) => {
                let question = first_question(
                    &mut BinDecoder::new(packet.get(12..).unwrap_or_default()),
                    header.counts.queries,
                );
                return reject(&metadata, question.as_ref(), edns, ResponseCode::FormErr);
            }
        },
    };
    let client_edns = edns.map(|e| e.client);
    if !acl.allows(client) {
        return reject(&metadata, Some(&query), client_edns, ResponseCode::Refused);
    }
    if edns.is_some_and(|e| e.version > 0) {
        return reject(&metadata, Some(&query), client_edns, ResponseCode::BADVERS);
    }
    let max_size = match transport {
        Transport::Tcp | Transport::Tls | Transport::Https => u16::MAX,
        Transport::Udp => edns.map_or(MIN_UDP_PAYLOAD, |e| {
            e.payload.clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
        }),
    };
    Checked::Query(Request {
        metadata,
        query,
        edns: client_edns,
        max_size,
        transport,
        signed,
    })
}

/// What the checks need from a query's OPT record.
#[derive(Debug, Clone, Copy)]
struct EdnsInfo {
    version: u8,
    payload: u16,
    client: ClientEdns,
}

/// The fast path for the usual query: one question and at most an OPT record, read straight
/// off the wire without building a whole `Message`. `None` for anything else, which then
/// takes [`full_parse`] (and gets its exact error handling).
fn simple_query(
    decoder: &mut BinDecoder<'_>,
    header: &Header,
) -> Option<(Query, Option<EdnsInfo>)> {
    let counts = header.counts;
    if counts.queries != 1
        || counts.answers != 0
        || counts.authorities != 0
        || counts.additionals > 1
    {
        return None;
    }
    let query = Query::read(decoder).ok()?;
    let edns = if counts.additionals == 1 {
        Some(simple_opt(decoder)?)
    } else {
        None
    };
    decoder.is_empty().then_some((query, edns))
}

/// Reads an OPT record whose options are well framed; `None` for any other record.
fn simple_opt(decoder: &mut BinDecoder<'_>) -> Option<EdnsInfo> {
    let u16_at = |d: &mut BinDecoder<'_>| d.read_u16().ok().map(|v| v.unverified());
    // Owner must be the root name, type OPT (41).
    if decoder.pop().ok()?.unverified() != 0 || u16_at(decoder)? != 41 {
        return None;
    }
    let payload = u16_at(decoder)?;
    let _extended_rcode = decoder.pop().ok()?.unverified();
    let version = decoder.pop().ok()?.unverified();
    let flags = u16_at(decoder)?;
    let mut left = usize::from(u16_at(decoder)?);
    while left > 0 {
        let _code = u16_at(decoder)?;
        let len = usize::from(u16_at(decoder)?);
        decoder.read_slice(len).ok()?;
        left = left.checked_sub(4 + len)?;
    }
    Some(EdnsInfo {
        version,
        payload,
        client: ClientEdns {
            dnssec_ok: flags & 0x8000 != 0,
        },
    })
}

/// The general path: hickory's full parse. Err carries the OPT record when one was read, for
/// the FORMERR reply.
fn full_parse(packet: &[u8]) -> Result<(Query, Option<EdnsInfo>, bool), Option<ClientEdns>> {
    let Message {
        queries,
        edns,
        additionals,
        ..
    } = Message::from_vec(packet).map_err(|_| None)?;
    // hickory keeps a TSIG among the additional records (it sets it apart only with its
    // DNSSEC feature); RFC 8945 §5.1 puts it last.
    let signed = additionals
        .last()
        .is_some_and(|r| r.record_type() == RecordType::TSIG);
    let info = edns.as_ref().map(|e| EdnsInfo {
        version: e.version(),
        payload: e.max_payload(),
        client: ClientEdns::from(e),
    });
    match <[Query; 1]>::try_from(queries) {
        Ok([q]) => Ok((q, info, signed)),
        Err(_) => Err(info.map(|i| i.client)),
    }
}

/// Reads the question for an error reply, when there is exactly one and it parses.
fn first_question(decoder: &mut BinDecoder<'_>, count: u16) -> Option<Query> {
    if count != 1 {
        return None;
    }
    Query::read(decoder).ok()
}

fn reject(
    metadata: &Metadata,
    question: Option<&Query>,
    edns: Option<ClientEdns>,
    rcode: ResponseCode,
) -> Checked {
    Checked::Reject(response::error(metadata, question, edns, rcode), rcode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_maps_ipv4_in_ipv6() {
        let acl = Acl::new(vec!["10.0.0.0/8".parse().expect("net")]);
        assert!(acl.allows("10.1.2.3".parse().expect("ip")));
        assert!(acl.allows("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!acl.allows("127.0.0.1".parse().expect("ip")));
        assert!(!acl.allows("::1".parse().expect("ip")));
    }
}
