//! DNS client helpers: building queries, sending them over UDP/TCP, and reading replies.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// How long a test waits for an answer that the contract says must come (SERVFAIL at the
/// latest after 5 s, plus slack).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(6);
/// How long a test waits before concluding that no reply is coming.
pub const SILENCE_TIMEOUT: Duration = Duration::from_millis(700);

/// Anything that can be put on the wire as a DNS message.
pub trait Wire {
    fn wire(&self) -> Vec<u8>;
}

impl Wire for Message {
    fn wire(&self) -> Vec<u8> {
        self.to_vec().expect("encode test query")
    }
}

impl Wire for [u8] {
    fn wire(&self) -> Vec<u8> {
        self.to_vec()
    }
}

impl Wire for Vec<u8> {
    fn wire(&self) -> Vec<u8> {
        self.clone()
    }
}

pub fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|e| panic!("bad test name {s:?}: {e}"))
}

/// A standard query for `qname`/`rtype` with RD=1, a random ID and no EDNS.
pub fn query(qname: &str, rtype: RecordType) -> Message {
    // Message::query picks a random ID.
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name(qname), rtype));
    msg
}

/// Like [`query`], with an EDNS(0) OPT advertising `payload` bytes (at least 512: hickory
/// clamps; use [`set_raw_edns_payload`] for smaller values).
pub fn query_edns(qname: &str, rtype: RecordType, payload: u16) -> Message {
    let mut msg = query(qname, rtype);
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    msg.set_edns(edns);
    msg
}

/// Overwrites the CLASS (UDP payload size) of the OPT record that ends `wire`; the query
/// must have been built by [`query_edns`] (OPT last, empty RDATA).
pub fn set_raw_edns_payload(wire: &mut [u8], payload: u16) {
    let n = wire.len();
    assert!(n >= 12 + 11, "message too short to end in an OPT record");
    let opt = &wire[n - 11..];
    assert!(
        opt[0] == 0 && opt[1..3] == [0, 41] && opt[9..11] == [0, 0],
        "message does not end in an empty OPT record"
    );
    wire[n - 8..n - 6].copy_from_slice(&payload.to_be_bytes());
}

/// Parses a reply, panicking with its bytes when it is not a DNS message.
pub fn parse(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap_or_else(|e| panic!("reply does not parse ({e}): {bytes:02x?}"))
}

/// Sends one datagram from a fresh socket and returns the first datagram that comes back,
/// or None after `wait`.
pub async fn udp_query<W: Wire + ?Sized>(
    addr: SocketAddr,
    msg: &W,
    wait: Duration,
) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind UDP client");
    // Connected: only datagrams from the server are delivered to us.
    sock.connect(addr).await.expect("connect UDP client");
    sock.send(&msg.wire()).await.expect("send UDP query");
    udp_recv(&sock, wait).await
}

/// Receives one datagram on a connected socket, None after `wait`.
pub async fn udp_recv(sock: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65535];
    match timeout(wait, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        // ICMP port unreachable surfaces as an error on a connected socket: no reply.
        Ok(Err(_)) | Err(_) => None,
    }
}

/// Asks over UDP and parses the reply; panics when none arrives within [`ANSWER_TIMEOUT`].
pub async fn ask_udp(addr: SocketAddr, msg: &Message) -> Message {
    let bytes = udp_query(addr, msg, ANSWER_TIMEOUT)
        .await
        .unwrap_or_else(|| {
            panic!(
                "no UDP reply within {ANSWER_TIMEOUT:?} to {:?}",
                msg.queries
            )
        });
    let reply = parse(&bytes);
    assert_eq!(
        reply.metadata.id, msg.metadata.id,
        "reply ID differs from query ID"
    );
    reply
}

/// Asks over a fresh TCP connection (2-byte length framing); None on timeout or EOF.
pub async fn tcp_query<W: Wire + ?Sized>(
    addr: SocketAddr,
    msg: &W,
    wait: Duration,
) -> Option<Vec<u8>> {
    let msg = msg.wire();
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        write_frame(&mut stream, &msg).await.ok()?;
        read_frame(&mut stream).await.ok()?
    };
    timeout(wait, exchange).await.ok().flatten()
}

/// Asks over TCP and parses the reply; panics when none arrives within [`ANSWER_TIMEOUT`].
pub async fn ask_tcp(addr: SocketAddr, msg: &Message) -> Message {
    let bytes = tcp_query(addr, msg, ANSWER_TIMEOUT)
        .await
        .unwrap_or_else(|| {
            panic!(
                "no TCP reply within {ANSWER_TIMEOUT:?} to {:?}",
                msg.queries
            )
        });
    let reply = parse(&bytes);
    assert_eq!(
        reply.metadata.id, msg.metadata.id,
        "reply ID differs from query ID"
    );
    reply
}

/// Writes one length-prefixed DNS message.
pub async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, msg: &[u8]) -> std::io::Result<()> {
    stream.write_all(&framed(msg)).await
}

/// `msg` with its two-byte length prefix, as DNS over TCP and TLS carry it.
pub fn framed(msg: &[u8]) -> Vec<u8> {
    let len = u16::try_from(msg.len()).expect("message fits a TCP frame");
    let mut buf = Vec::with_capacity(msg.len() + 2);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(msg);
    buf
}

/// Reads one length-prefixed DNS message; Ok(None) on a clean EOF before the prefix.
pub async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Header fields read straight from the bytes (independent of hickory's parser).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    pub id: u16,
    pub qr: bool,
    pub opcode: u8,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    /// The 4 low bits of the RCODE, as in the header.
    pub rcode: u8,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

pub fn raw_header(b: &[u8]) -> RawHeader {
    assert!(b.len() >= 12, "reply shorter than a DNS header: {b:02x?}");
    let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    RawHeader {
        id: u16_at(0),
        qr: b[2] & 0x80 != 0,
        opcode: (b[2] >> 3) & 0x0f,
        aa: b[2] & 0x04 != 0,
        tc: b[2] & 0x02 != 0,
        rd: b[2] & 0x01 != 0,
        ra: b[3] & 0x80 != 0,
        rcode: b[3] & 0x0f,
        qdcount: u16_at(4),
        ancount: u16_at(6),
        nscount: u16_at(8),
        arcount: u16_at(10),
    }
}

/// The bytes of the first question (name, type, class) of an uncompressed message start.
pub fn question_bytes(b: &[u8]) -> &[u8] {
    let mut i = 12;
    loop {
        let len = usize::from(*b.get(i).expect("question name runs past the end"));
        assert!(
            len < 64,
            "compressed or invalid label in the question at {i}"
        );
        i += 1 + len;
        if len == 0 {
            break;
        }
    }
    &b[12..i + 4]
}

/// A query's 12-byte header from its fields.
pub fn raw_query_header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        v.extend_from_slice(&c.to_be_bytes());
    }
    v
}

/// `name` in wire format, uncompressed.
pub fn raw_name(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        v.push(u8::try_from(label.len()).expect("short label"));
        v.extend_from_slice(label.as_bytes());
    }
    v.push(0);
    v
}

/// A question (name, type, class IN) in wire format.
pub fn raw_question(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut v = raw_name(name);
    v.extend_from_slice(&u16::from(rtype).to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v
}

pub fn rcode(msg: &Message) -> ResponseCode {
    msg.metadata.response_code
}

/// The IPv4 addresses in the answer section.
pub fn a_records(msg: &Message) -> Vec<Ipv4Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The IPv6 addresses in the answer section.
pub fn aaaa_records(msg: &Message) -> Vec<Ipv6Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The PTR targets in the answer section.
pub fn ptr_records(msg: &Message) -> Vec<Name> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.clone()),
            _ => None,
        })
        .collect()
}

pub fn has_soa_authority(msg: &Message) -> bool {
    msg.authorities
        .iter()
        .any(|r: &Record| r.record_type() == RecordType::SOA)
}

/// `in-addr.arpa.` name of an IPv4 address.
pub fn reverse_v4(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
}

/// `ip6.arpa.` name (32 nibbles) of an IPv6 address.
pub fn reverse_v6(ip: Ipv6Addr) -> String {
    let mut s = String::new();
    for byte in ip.octets().iter().rev() {
        s.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
    }
    s.push_str("ip6.arpa.");
    s
}

/// Whether the message is a response to a query (QR=1, opcode QUERY).
pub fn is_response(msg: &Message) -> bool {
    msg.metadata.message_type == MessageType::Response && msg.metadata.op_code == OpCode::Query
}
