//! A fake upstream resolver on 127.0.0.1 with scriptable behaviour per query name.
//!
//! It listens on UDP and TCP on the same port, answers from its own thread and tokio
//! runtime (so tests may block their own thread without stalling it), records every query
//! it receives, and stops when dropped.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NULL, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;

use super::dns::read_frame;

/// The address every normal answer carries.
pub const ANSWER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const ANSWER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The address carried by replies that must be ignored (see [`Lie`]).
pub const LIE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);
pub const ANSWER_TTL: u32 = 300;
/// Records in the full answer behind [`Behaviour::Truncate`].
pub const TRUNCATE_FULL_RECORDS: usize = 3;
/// Cap on the remembered queries, so a runaway server cannot exhaust memory.
const MAX_SEEN: usize = 10_000;

/// A reply that a correct client must ignore: what it lies about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lie {
    /// Right question, wrong message ID.
    Id,
    /// Right ID and question, but sent from another source port.
    SourcePort,
    /// Right ID, but the question names another domain.
    Question,
}

/// What the fake upstream does with a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// NOERROR with A 192.0.2.1 (AAAA 2001:db8::1 for AAAA; NODATA for other types).
    Answer,
    /// NXDOMAIN with an SOA in the authority section.
    NxDomain,
    /// Like [`Behaviour::Answer`], but the A/AAAA record carries this TTL.
    AnswerTtl(u32),
    /// NXDOMAIN with an SOA whose record TTL is `ttl` and whose MINIMUM field is `minimum`.
    NxDomainSoa {
        ttl: u32,
        minimum: u32,
    },
    /// NOERROR with no answer (NODATA) and an SOA with record TTL `ttl` and MINIMUM `minimum`.
    NoDataSoa {
        ttl: u32,
        minimum: u32,
    },
    /// NXDOMAIN with an empty authority section (not cacheable, RFC 2308 §5).
    NxDomainNoSoa,
    /// Waits, then behaves like [`Behaviour::Answer`].
    Delay(Duration),
    /// Never replies (a TCP connection is kept open but never answered).
    Silent,
    /// Over UDP: drops the first query for a name (a lost datagram), answers like
    /// [`Behaviour::Answer`] from then on.
    LoseFirst,
    /// Over UDP: TC=1 and no answers. Over TCP: [`TRUNCATE_FULL_RECORDS`] A records.
    Truncate,
    /// NOERROR with this many distinct A records. Over UDP, when that exceeds the size the
    /// asker advertised (512 without EDNS), TC=1 like a real server.
    Big(usize),
    ServFail,
    Refused,
    /// Over UDP: a lie (carrying [`LIE_V4`]), then, if set, the true answer after the delay
    /// from the right socket. Over TCP: the true answer.
    Lie {
        lie: Lie,
        then_answer: Option<Duration>,
    },
    /// A validating resolver in front of a signed zone: like [`Behaviour::Answer`], and to a
    /// DO=1 query also an RRSIG over each answer (over the SOA of a NODATA), AD=1 and DO
    /// echoed. An RRSIG question gets an RRSIG record whatever DO says.
    Signed,
    /// Signed NXDOMAIN: the SOA, and to a DO=1 query also its RRSIG, an NSEC and the NSEC's
    /// RRSIG, with AD=1.
    SignedNxDomain,
    /// A validating resolver that finds the zone's signatures bogus: SERVFAIL, unless the
    /// query has CD=1, which gets [`Behaviour::Signed`] with AD=0.
    Bogus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One query received by the fake upstream.
#[derive(Clone, Debug)]
pub struct Seen {
    pub transport: Transport,
    pub id: u16,
    pub src: SocketAddr,
    /// Lower-case, fully qualified.
    pub qname: String,
    pub qtype: RecordType,
    pub at: Instant,
    pub message: Message,
}

struct State {
    default: Behaviour,
    rules: HashMap<String, Behaviour>,
    seen: Vec<Seen>,
}

impl State {
    fn behaviour_for(&self, qname: &str) -> Behaviour {
        self.rules.get(qname).unwrap_or(&self.default).clone()
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lower-case, fully qualified form used as the key for rules and counts.
pub fn normalize(name: &str) -> String {
    let mut s = name.to_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

pub struct FakeUpstream {
    addr: SocketAddr,
    state: Shared,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts a fake upstream whose default behaviour is `default`.
    pub fn start(default: Behaviour) -> FakeUpstream {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().expect("fake upstream UDP addr");
        let state: Shared = Arc::new(Mutex::new(State {
            default,
            rules: HashMap::new(),
            seen: Vec::new(),
        }));
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = {
            let state = Arc::clone(&state);
            thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake upstream runtime");
                rt.block_on(async move {
                    let udp = Arc::new(UdpSocket::from_std(udp).expect("tokio UDP socket"));
                    let tcp = TcpListener::from_std(tcp).expect("tokio TCP listener");
                    tokio::select! {
                        _ = serve_udp(udp, Arc::clone(&state)) => {}
                        _ = serve_tcp(tcp, state) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here cancels every pending reply task.
            })
        };
        FakeUpstream {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `IP:port`, as given to `--upstream`.
    pub fn arg(&self) -> String {
        self.addr.to_string()
    }

    /// `tcp://IP:port`, a TCP-only upstream.
    pub fn tcp_arg(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    pub fn set_default(&self, behaviour: Behaviour) {
        lock(&self.state).default = behaviour;
    }

    /// Behaviour for one query name (any case, trailing dot optional).
    pub fn set_rule(&self, name: &str, behaviour: Behaviour) {
        lock(&self.state).rules.insert(normalize(name), behaviour);
    }

    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state).seen.clone()
    }

    pub fn total(&self) -> usize {
        lock(&self.state).seen.len()
    }

    pub fn udp_count(&self) -> usize {
        self.count_where(|s| s.transport == Transport::Udp)
    }

    pub fn tcp_count(&self) -> usize {
        self.count_where(|s| s.transport == Transport::Tcp)
    }

    /// Queries for `name` over either transport.
    pub fn count(&self, name: &str) -> usize {
        let n = normalize(name);
        self.count_where(|s| s.qname == n)
    }

    /// Distinct queries for `name`: a resend of the same query (same ID from the same
    /// socket) counts once.
    pub fn queries(&self, name: &str) -> usize {
        let n = normalize(name);
        let st = lock(&self.state);
        let distinct: HashSet<(Transport, u16, SocketAddr)> = st
            .seen
            .iter()
            .filter(|s| s.qname == n)
            .map(|s| (s.transport, s.id, s.src))
            .collect();
        distinct.len()
    }

    /// Polls until `name` has been asked at least `n` distinct queries; false after `wait`.
    pub async fn wait_for_queries(&self, name: &str, n: usize, wait: Duration) -> bool {
        poll_until(wait, || self.queries(name) >= n).await
    }

    pub fn count_on(&self, name: &str, transport: Transport) -> usize {
        let n = normalize(name);
        self.count_where(|s| s.qname == n && s.transport == transport)
    }

    fn count_where(&self, f: impl Fn(&Seen) -> bool) -> usize {
        lock(&self.state).seen.iter().filter(|s| f(s)).count()
    }

    /// Polls until `name` has been asked at least `n` times; false after `wait`.
    pub async fn wait_for_count(&self, name: &str, n: usize, wait: Duration) -> bool {
        poll_until(wait, || self.count(name) >= n).await
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The receiver is gone only if the thread already ended.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Checks `done` every 10 ms until it holds (true) or `wait` has passed (false).
async fn poll_until(wait: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Binds UDP on an ephemeral port, then TCP on the same port; retries when another
/// process holds that TCP port.
fn bind_pair() -> (std::net::UdpSocket, std::net::TcpListener) {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind fake upstream UDP");
        let addr = udp.local_addr().expect("fake upstream UDP addr");
        if let Ok(tcp) = std::net::TcpListener::bind(addr) {
            udp.set_nonblocking(true).expect("nonblocking UDP");
            tcp.set_nonblocking(true).expect("nonblocking TCP");
            return (udp, tcp);
        }
    }
    panic!("could not bind UDP and TCP on one port in 50 tries");
}

/// Records the query and returns what to do with it; None when it is not a query.
fn note(
    state: &Shared,
    transport: Transport,
    src: SocketAddr,
    bytes: &[u8],
) -> Option<(Message, Behaviour)> {
    let msg = Message::from_vec(bytes).ok()?;
    let q = msg.queries.first()?;
    let qname = normalize(&q.name().to_ascii());
    let mut st = lock(state);
    let behaviour = match st.behaviour_for(&qname) {
        Behaviour::LoseFirst if transport == Transport::Udp => {
            let earlier = st
                .seen
                .iter()
                .any(|s| s.qname == qname && s.transport == Transport::Udp);
            if earlier {
                Behaviour::Answer
            } else {
                Behaviour::Silent
            }
        }
        Behaviour::LoseFirst => Behaviour::Answer,
        other => other,
    };
    if st.seen.len() < MAX_SEEN {
        st.seen.push(Seen {
            transport,
            id: msg.metadata.id,
            src,
            qname,
            qtype: q.query_type(),
            at: Instant::now(),
            message: msg.clone(),
        });
    }
    Some((msg, behaviour))
}

async fn serve_udp(sock: Arc<UdpSocket>, state: Shared) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, src)) = sock.recv_from(&mut buf).await else {
            // Transient (e.g. an ICMP error); pause so a persistent one cannot spin.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let Some((req, behaviour)) = note(&state, Transport::Udp, src, &buf[..n]) else {
            continue;
        };
        // One task per query, so a delayed answer does not hold up the others.
        tokio::spawn(udp_reply(Arc::clone(&sock), src, req, behaviour));
    }
}

async fn udp_reply(sock: Arc<UdpSocket>, src: SocketAddr, req: Message, behaviour: Behaviour) {
    let reply = match behaviour {
        Behaviour::Silent => return,
        Behaviour::Delay(d) => {
            tokio::time::sleep(d).await;
            answer(&req)
        }
        Behaviour::Truncate => truncated(&req),
        Behaviour::Lie { lie, then_answer } => {
            send_lie(&sock, src, &req, lie).await;
            let Some(d) = then_answer else { return };
            tokio::time::sleep(d).await;
            answer(&req)
        }
        other => reply_for(&req, &other),
    };
    let bytes = fit_udp(&req, reply);
    // A send error only means the asker went away.
    let _ = sock.send_to(&bytes, src).await;
}

async fn send_lie(sock: &UdpSocket, src: SocketAddr, req: &Message, lie: Lie) {
    let mut msg = answer_with(req, LIE_V4);
    match lie {
        Lie::Id => msg.metadata.id = req.metadata.id ^ 0x8001,
        Lie::Question => {
            let asked = req
                .queries
                .first()
                .map(|q| q.name().clone())
                .unwrap_or_default();
            let other = asked.prepend_label("lie").expect("lie name");
            for q in &mut msg.queries {
                q.set_name(other.clone());
            }
            for r in &mut msg.answers {
                r.name = other.clone();
            }
        }
        Lie::SourcePort => {
            let Ok(other) = UdpSocket::bind("127.0.0.1:0").await else {
                return;
            };
            let _ = other.send_to(&encode(&msg), src).await;
            return;
        }
    }
    let _ = sock.send_to(&encode(&msg), src).await;
}

async fn serve_tcp(listener: TcpListener, state: Shared) {
    loop {
        let Ok((stream, src)) = listener.accept().await else {
            // E.g. out of file descriptors; pause so a persistent error cannot spin.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        tokio::spawn(tcp_conn(stream, src, Arc::clone(&state)));
    }
}

async fn tcp_conn(stream: TcpStream, src: SocketAddr, state: Shared) {
    let (mut rd, wr) = stream.into_split();
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    // Bounded by the connection: ends at EOF, on an error, or when the runtime stops.
    while let Ok(Some(bytes)) = read_frame(&mut rd).await {
        let Some((req, behaviour)) = note(&state, Transport::Tcp, src, &bytes) else {
            continue;
        };
        tokio::spawn(tcp_reply(Arc::clone(&wr), req, behaviour));
    }
}

async fn tcp_reply(
    wr: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    req: Message,
    behaviour: Behaviour,
) {
    let reply = match behaviour {
        Behaviour::Silent => return,
        Behaviour::Delay(d) => {
            tokio::time::sleep(d).await;
            answer(&req)
        }
        Behaviour::Truncate => full_truncated_answer(&req),
        Behaviour::Lie { .. } => answer(&req),
        other => reply_for(&req, &other),
    };
    let bytes = encode(&reply);
    let len = u16::try_from(bytes.len()).expect("reply fits a TCP frame");
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(&bytes);
    let _ = wr.lock().await.write_all(&frame).await;
}

/// Replies that are the same over UDP and TCP.
fn reply_for(req: &Message, behaviour: &Behaviour) -> Message {
    match behaviour {
        Behaviour::NxDomain => {
            let mut m = response_to(req);
            m.metadata.response_code = ResponseCode::NXDomain;
            m.add_authority(soa_for(req));
            m
        }
        Behaviour::AnswerTtl(ttl) => {
            let mut m = answer(req);
            for r in &mut m.answers {
                r.ttl = *ttl;
            }
            m
        }
        Behaviour::NxDomainSoa { ttl, minimum } => {
            let mut m = response_to(req);
            m.metadata.response_code = ResponseCode::NXDomain;
            m.add_authority(soa_with(req, *ttl, *minimum));
            m
        }
        Behaviour::NoDataSoa { ttl, minimum } => {
            let mut m = response_to(req);
            m.add_authority(soa_with(req, *ttl, *minimum));
            m
        }
        Behaviour::NxDomainNoSoa => {
            let mut m = response_to(req);
            m.metadata.response_code = ResponseCode::NXDomain;
            m
        }
        Behaviour::Big(n) => {
            let mut m = response_to(req);
            for i in 0..*n {
                let i = u32::try_from(i).expect("record index fits u32");
                let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + i);
                m.add_answer(Record::from_rdata(qname(req), ANSWER_TTL, RData::A(A(ip))));
            }
            m
        }
        Behaviour::ServFail => {
            let mut m = response_to(req);
            m.metadata.response_code = ResponseCode::ServFail;
            m
        }
        Behaviour::Refused => {
            let mut m = response_to(req);
            m.metadata.response_code = ResponseCode::Refused;
            m
        }
        Behaviour::Signed => signed(req),
        Behaviour::SignedNxDomain => {
            let mut m = response_to(req);
            m.metadata.response_code = ResponseCode::NXDomain;
            let soa = soa_for(req);
            let zone = soa.name.clone();
            m.add_authority(soa);
            if dnssec_ok(req) {
                m.metadata.authentic_data = true;
                m.add_authority(rrsig(&zone, RecordType::SOA));
                m.add_authority(nsec(&zone));
                m.add_authority(rrsig(&zone, RecordType::NSEC));
            }
            m
        }
        Behaviour::Bogus if req.metadata.checking_disabled => {
            let mut m = signed(req);
            m.metadata.authentic_data = false;
            m
        }
        Behaviour::Bogus => {
            let mut m = response_to(req);
            m.metadata.response_code = ResponseCode::ServFail;
            m
        }
        _ => answer(req),
    }
}

/// Whether the query set DO.
pub fn dnssec_ok(req: &Message) -> bool {
    req.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok)
}

/// [`Behaviour::Signed`]'s reply.
fn signed(req: &Message) -> Message {
    let mut m = answer(req);
    let qtype = req.queries.first().map(|q| q.query_type());
    if qtype == Some(RecordType::RRSIG) {
        m.authorities.clear();
        m.add_answer(rrsig(&qname(req), RecordType::A));
    }
    if dnssec_ok(req) {
        m.metadata.authentic_data = true;
        let covered: Vec<(Name, RecordType)> = m
            .answers
            .iter()
            .chain(&m.authorities)
            .filter(|r| r.record_type() != RecordType::RRSIG)
            .map(|r| (r.name.clone(), r.record_type()))
            .collect();
        for (owner, rtype) in covered {
            let sig = rrsig(&owner, rtype);
            if rtype == RecordType::SOA {
                m.add_authority(sig);
            } else {
                m.add_answer(sig);
            }
        }
    }
    m
}

/// An RRSIG over `covered` (ECDSA-sized, valid for a day from now), as opaque RDATA: the
/// way rind itself reads it.
pub fn rrsig(owner: &Name, covered: RecordType) -> Record {
    let now = u32::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs(),
    )
    .expect("seconds fit u32 until 2106");
    let mut rdata = u16::from(covered).to_be_bytes().to_vec();
    rdata.extend_from_slice(&[13, 3]);
    rdata.extend_from_slice(&ANSWER_TTL.to_be_bytes());
    rdata.extend_from_slice(&(now + 86_400).to_be_bytes());
    rdata.extend_from_slice(&(now - 3_600).to_be_bytes());
    rdata.extend_from_slice(&[0x12, 0x34]);
    rdata.extend_from_slice(&owner.to_lowercase().to_bytes().expect("signer name"));
    rdata.extend_from_slice(&[0x5a; 64]);
    opaque(owner, RecordType::RRSIG, rdata)
}

/// An NSEC at `owner` saying only "SOA, RRSIG, NSEC" exist there.
fn nsec(owner: &Name) -> Record {
    let mut rdata = owner
        .prepend_label("zz")
        .expect("next name")
        .to_bytes()
        .expect("next name bytes");
    rdata.extend_from_slice(&[0, 6, 0x02, 0, 0, 0, 0, 0x03]);
    opaque(owner, RecordType::NSEC, rdata)
}

fn opaque(owner: &Name, rtype: RecordType, rdata: Vec<u8>) -> Record {
    let data = RData::Unknown {
        code: rtype,
        rdata: NULL::with(rdata),
    };
    Record::from_rdata(owner.clone(), ANSWER_TTL, data)
}

fn qname(req: &Message) -> Name {
    req.queries
        .first()
        .map(|q| q.name().clone())
        .unwrap_or_default()
}

/// The response skeleton: same ID, RD and question, QR=1, RA=1, OPT iff the query had one.
fn response_to(req: &Message) -> Message {
    let mut m = Message::response(req.metadata.id, req.metadata.op_code);
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_queries(req.queries.clone());
    if req.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(dnssec_ok(req));
        m.set_edns(edns);
    }
    m
}

fn answer(req: &Message) -> Message {
    answer_with(req, ANSWER_V4)
}

fn answer_with(req: &Message, v4: Ipv4Addr) -> Message {
    let mut m = response_to(req);
    let name = qname(req);
    match req.queries.first().map(|q| q.query_type()) {
        Some(RecordType::A) => {
            m.add_answer(Record::from_rdata(name, ANSWER_TTL, RData::A(A(v4))));
        }
        Some(RecordType::AAAA) => {
            m.add_answer(Record::from_rdata(
                name,
                ANSWER_TTL,
                RData::AAAA(AAAA(ANSWER_V6)),
            ));
        }
        // NODATA for any other type.
        _ => {
            m.add_authority(soa_for(req));
        }
    }
    m
}

fn full_truncated_answer(req: &Message) -> Message {
    let mut m = response_to(req);
    for i in 0..TRUNCATE_FULL_RECORDS {
        let last = u8::try_from(i + 1).expect("few records");
        let ip = Ipv4Addr::new(192, 0, 2, last);
        m.add_answer(Record::from_rdata(qname(req), ANSWER_TTL, RData::A(A(ip))));
    }
    m
}

fn truncated(req: &Message) -> Message {
    let mut m = response_to(req);
    m.metadata.truncation = true;
    m
}

/// SOA of the query name's two-label parent ("example.com." for "x.example.com.").
fn soa_for(req: &Message) -> Record {
    soa_with(req, 60, 60)
}

/// Like [`soa_for`], with the given record TTL and MINIMUM field.
fn soa_with(req: &Message, ttl: u32, minimum: u32) -> Record {
    let name = qname(req);
    let zone = if name.num_labels() > 2 {
        name.trim_to(2)
    } else {
        name
    };
    let mname = zone.prepend_label("ns").expect("SOA mname");
    let rname = zone.prepend_label("hostmaster").expect("SOA rname");
    let soa = SOA::new(mname, rname, 1, 3600, 600, 86400, minimum);
    Record::from_rdata(zone, ttl, RData::SOA(soa))
}

/// Encodes a UDP reply, replacing it by a TC=1 reply when it exceeds the asker's limit.
fn fit_udp(req: &Message, reply: Message) -> Vec<u8> {
    let limit = req
        .edns
        .as_ref()
        .map_or(512, |e| usize::from(e.max_payload().max(512)));
    let bytes = encode(&reply);
    if bytes.len() <= limit {
        return bytes;
    }
    encode(&truncated(req))
}

fn encode(msg: &Message) -> Vec<u8> {
    msg.to_vec().expect("encode fake upstream reply")
}
