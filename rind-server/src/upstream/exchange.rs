//! One question, one upstream, one try: the wire exchange over UDP or TCP (DoT and DoH have
//! their own modules, [`super::tls`] and [`super::https`]) and the rules for which reply
//! counts.
//!
//! Spoofing defences (RFC 5452): every try uses a fresh random ID and a socket drawn at random
//! from the [`UdpPool`] (each on its own kernel-chosen random port), connected to the upstream
//! so the kernel itself discards datagrams from any other address or port. A reply counts only
//! if it comes from the upstream, is a response with the same ID, opcode QUERY and the same
//! question (name compared case-insensitively); anything else is ignored and the wait goes on
//! until the try's deadline.
//!
//! A UDP query with no reply is sent again, unchanged (same ID, same socket, so a late reply
//! to the first copy still counts), after the upstream's retransmission timeout and then after
//! twice the previous wait, until the try's deadline.

use std::io;
use std::net::SocketAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::pool::UdpPool;
use super::rtt::Rtt;
use super::TRY_TIMEOUT;
use crate::config::{Protocol, Upstream};
use crate::request::MAX_UDP_PAYLOAD;

/// Why a try gave no reply.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// No matching reply before the deadline.
    #[error("no matching reply in time")]
    Timeout,
    /// A socket error (refused, unreachable, reset).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The query could not be encoded (a name too long for the wire, say).
    #[error("cannot encode the query: {0}")]
    Encode(&'static str),
    /// The connection ended before the reply came.
    #[error("the connection closed before the reply")]
    Closed,
    /// Connecting failed moments ago; the next attempt waits out a backoff.
    #[error("not reconnecting yet: the last connect failed {0:?} ago")]
    Backoff(std::time::Duration),
    /// A DoH reply that is not a DNS answer (HTTP status, content type, HTTP/2 error).
    #[error("{0}")]
    Http(String),
}

/// How one upstream is reached: plain DNS through the shared UDP pool or a fresh TCP
/// connection, or a client holding its encrypted connections.
#[derive(Debug)]
pub enum Transport {
    /// UDP (TCP when truncated) or TCP only, as the upstream's protocol says.
    Plain,
    /// DNS over TLS.
    Tls(super::tls::DotClient),
    /// DNS over HTTPS.
    Https(super::https::DohClient),
}

/// What one exchange asks: the question, with DO=1 always and CD as the client set it.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// The question.
    pub query: &'a Query,
    /// CD: ask the upstream not to validate.
    pub checking_disabled: bool,
}

/// The upstream's round-trip estimate, which sets when a UDP query is sent again and learns
/// from each UDP exchange.
pub struct Resend<'a> {
    /// The estimate.
    pub rtt: &'a Rtt,
    /// Called once per resend (it counts them).
    pub on_resend: &'a (dyn Fn() + Sync),
}

/// Asks `upstream` the question once, retrying over TCP when a UDP reply is truncated.
pub async fn exchange(
    pool: &UdpPool,
    upstream: &Upstream,
    transport: &Transport,
    question: Question<'_>,
    deadline: Instant,
    resend: Resend<'_>,
) -> Result<Message, ExchangeError> {
    // The HTTP/2 client's future is boxed: at over 5 KiB it would otherwise size every
    // forwarded query's task, which tokio copies on spawn.
    match (transport, &upstream.protocol) {
        (Transport::Tls(client), _) => client.exchange(question, deadline).await,
        (Transport::Https(client), _) => Box::pin(client.exchange(question, deadline)).await,
        (Transport::Plain, Protocol::Udp) => {
            let reply = udp(pool, upstream.addr, question, deadline, resend).await?;
            if reply.metadata.truncation {
                tcp(upstream.addr, question, deadline).await
            } else {
                Ok(reply)
            }
        }
        (Transport::Plain, _) => tcp(upstream.addr, question, deadline).await,
    }
}

/// Encodes the question with a fresh random ID; returns the ID and the bytes.
fn encode(question: Question<'_>) -> Result<(u16, Vec<u8>), ExchangeError> {
    let id: u16 = rand::random();
    Ok((id, encode_with_id(question, id)?))
}

/// The question's bytes with message ID `id`, RD=1, CD as asked and an OPT record with DO=1
/// and our UDP payload size.
///
/// Written by hand rather than through a hickory `Message`: this runs once per cache miss, and
/// building and emitting a whole message took about 7% of the miss path's user time.
pub fn encode_with_id(question: Question<'_>, id: u16) -> Result<Vec<u8>, ExchangeError> {
    // Header: RD, and CD in the second flags byte; one question, one additional (the OPT).
    let flags = [0x01, if question.checking_disabled { 0x10 } else { 0 }];
    let mut out = Vec::with_capacity(12 + 255 + 4 + 11);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags);
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
    let name_start = out.len();
    for label in question.query.name.iter() {
        // A label from a parsed name is at most 63 bytes; a longer one is no name to send.
        let len = u8::try_from(label.len())
            .ok()
            .filter(|&len| len <= 63)
            .ok_or(ExchangeError::Encode("a label over 63 bytes"))?;
        out.push(len);
        out.extend_from_slice(label);
    }
    out.push(0);
    if out.len() - name_start > 255 {
        return Err(ExchangeError::Encode("a name over 255 bytes"));
    }
    out.extend_from_slice(&u16::from(question.query.query_type).to_be_bytes());
    out.extend_from_slice(&u16::from(question.query.query_class).to_be_bytes());
    // OPT (RFC 6891): root owner, TYPE 41, CLASS = payload size, TTL = extended rcode 0,
    // version 0, DO; no options.
    out.extend_from_slice(&[0, 0, 41]);
    out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x80, 0, 0, 0]);
    Ok(out)
}

/// The message with the two-byte length in front that DNS over TCP and TLS use.
pub fn frame(bytes: &[u8]) -> Result<Vec<u8>, ExchangeError> {
    let len = u16::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query over 64 KiB"))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    Ok(framed)
}

/// Whether `reply` answers the question we sent with `id`.
///
/// The opcode must be QUERY, as in the question: hickory reads the records of an UPDATE
/// message by other rules (an empty RDATA is allowed there), and records read that way, copied
/// into our reply, would make a packet the client cannot parse (found by the `handler` fuzz
/// target).
pub fn matches(reply: &Message, id: u16, query: &Query) -> bool {
    reply.metadata.id == id
        && reply.metadata.message_type == MessageType::Response
        && reply.metadata.op_code == OpCode::Query
        && matches!(reply.queries.as_slice(), [q] if q.query_type == query.query_type
            && q.query_class == query.query_class
            && q.name == query.name)
}

async fn udp(
    pool: &UdpPool,
    addr: SocketAddr,
    question: Question<'_>,
    deadline: Instant,
    resend: Resend<'_>,
) -> Result<Message, ExchangeError> {
    let (id, bytes) = encode(question)?;
    let query = question.query;
    let lease = pool.lease(addr).await?;
    let socket = lease.socket();
    let first_sent = Instant::now();
    socket.send(&bytes).await?;
    let mut wait = resend.rtt.timeout(TRY_TIMEOUT);
    let mut resend_at = first_sent + wait;
    // We advertise 1232 bytes; an upstream that sends more than this gets cut, fails to
    // parse, and is ignored like any other unusable datagram.
    // On the heap, not in the future: every forwarded query's task would carry it.
    let mut buf = Vec::with_capacity(4096);
    loop {
        let until = resend_at.min(deadline);
        buf.clear();
        let Ok(received) = timeout_at(until, socket.recv_buf_from(&mut buf)).await else {
            if until >= deadline {
                resend.rtt.back_off();
                return Err(ExchangeError::Timeout);
            }
            // A failed resend is not the end of the try: the first copy may still be answered.
            match timeout_at(deadline, socket.send(&bytes)).await {
                Ok(Ok(_)) => (resend.on_resend)(),
                Ok(Err(e)) => tracing::debug!(upstream = %addr, error = %e, "resend failed"),
                Err(_) => {}
            }
            wait *= 2;
            resend_at = Instant::now() + wait;
            continue;
        };
        let (len, from) = received?;
        // The socket is connected, so the kernel filters already; this also rejects a datagram
        // left queued from the socket's previous lease to another upstream.
        let (true, Some(packet)) = (from == addr, buf.get(..len)) else {
            continue;
        };
        match Message::from_vec(packet) {
            Ok(reply) if matches(&reply, id, query) => {
                resend.rtt.sample(first_sent.elapsed());
                return Ok(reply);
            }
            _ => tracing::debug!(upstream = %addr, "ignored a reply that does not match"),
        }
    }
}

async fn tcp(
    addr: SocketAddr,
    question: Question<'_>,
    deadline: Instant,
) -> Result<Message, ExchangeError> {
    let (id, bytes) = encode(question)?;
    let query = question.query;
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&frame(&bytes)?).await?;
        loop {
            let len = stream.read_u16().await?;
            let mut buf = vec![0u8; usize::from(len)];
            stream.read_exact(&mut buf).await?;
            match Message::from_vec(&buf) {
                Ok(reply) if matches(&reply, id, query) => return Ok(reply),
                _ => tracing::debug!(upstream = %addr, "ignored a TCP reply that does not match"),
            }
        }
    };
    timeout_at(deadline, exchange)
        .await
        .map_err(|_| ExchangeError::Timeout)?
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::{Name, RecordType};

    use super::*;

    fn reply_to(id: u16, name: &str, qtype: RecordType) -> Message {
        let mut msg = Message::response(id, hickory_proto::op::OpCode::Query);
        msg.add_query(Query::query(Name::from_str(name).expect("name"), qtype));
        msg
    }

    /// The query as hickory would build and emit it.
    fn encoded_by_hickory(question: Question<'_>, id: u16) -> Vec<u8> {
        let mut msg = Message::query();
        msg.metadata.id = id;
        msg.metadata.recursion_desired = true;
        msg.metadata.checking_disabled = question.checking_disabled;
        msg.add_query(question.query.clone());
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        edns.set_dnssec_ok(true);
        msg.set_edns(edns);
        msg.to_vec().expect("encode")
    }

    #[test]
    fn queries_are_encoded_as_hickory_would() {
        let long = format!(
            "{}.{}.{}.example.",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(60)
        );
        for (name, qtype, cd, id) in [
            ("www.Example.COM.", RecordType::A, false, 0x1234),
            ("example.net.", RecordType::DNSKEY, true, 0),
            (".", RecordType::NS, false, 0xffff),
            (long.as_str(), RecordType::TXT, true, 7),
        ] {
            let query = Query::query(Name::from_str(name).expect("name"), qtype);
            let question = Question {
                query: &query,
                checking_disabled: cd,
            };
            let ours = encode_with_id(question, id).expect("encode");
            assert_eq!(
                ours,
                encoded_by_hickory(question, id),
                "{name} {qtype} cd={cd}"
            );
            let back = Message::from_vec(&ours).expect("parse");
            assert_eq!(back.queries, vec![query.clone()]);
            assert!(back.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
        }
    }

    #[test]
    fn matching_rules() {
        let q = Query::query(
            Name::from_str("www.example.com.").expect("name"),
            RecordType::A,
        );
        assert!(matches(
            &reply_to(7, "WWW.Example.COM.", RecordType::A),
            7,
            &q
        ));
        assert!(!matches(
            &reply_to(8, "www.example.com.", RecordType::A),
            7,
            &q
        ));
        assert!(!matches(
            &reply_to(7, "www.example.net.", RecordType::A),
            7,
            &q
        ));
        assert!(!matches(
            &reply_to(7, "www.example.com.", RecordType::AAAA),
            7,
            &q
        ));
        let mut as_query = reply_to(7, "www.example.com.", RecordType::A);
        as_query.metadata.message_type = MessageType::Query;
        assert!(!matches(&as_query, 7, &q));
        let mut update = reply_to(7, "www.example.com.", RecordType::A);
        update.metadata.op_code = OpCode::Update;
        assert!(!matches(&update, 7, &q));
        let mut two = reply_to(7, "www.example.com.", RecordType::A);
        two.add_query(q.clone());
        assert!(!matches(&two, 7, &q));
    }
}
