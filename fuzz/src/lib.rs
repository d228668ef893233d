//! The rig shared by the fuzz targets: rind-server's real [`Handler`] built in-process, with
//! local records in a sled store in a temporary directory, a cache holding a few answers, and
//! a fake upstream on loopback whose reply each input may script.
//!
//! The fake upstream is a UDP socket served by a task on the rig's own (current-thread) tokio
//! runtime, so a forwarded query is a real exchange through rind's forwarder, coalescing and
//! reply matching, yet takes microseconds: the fake always sends a reply the forwarder accepts
//! (the scripted one when it encodes and parses back, else SERVFAIL, which the forwarder
//! takes as "no upstream answered"), so no iteration waits for a try's 2-second timeout.
//!
//! Each input gets a fresh [`Cache`] (refilled with the same entries, on a manual clock the
//! input may move), so a crash found with a corpus reproduces from the one input.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use clap::Parser;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NULL, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::runtime::Runtime;

use rind_server::cache::{Cache, Clock};
use rind_server::config::Args;
use rind_server::handler::Handler;
use rind_server::records::Draft;
use rind_server::request::{Transport, MAX_UDP_PAYLOAD, MIN_UDP_PAYLOAD};
use rind_server::store::Store;
use rind_server::upstream::pool::UdpPool;
use rind_server::{Opened, Pipeline};

/// A client the ACL allows.
pub const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// A client the ACL refuses.
pub const OUTSIDER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
/// The manual clock's time when an input starts (Unix seconds).
pub const START: u64 = 1_700_000_000;

/// Local records every input sees: each supported type, a wildcard, CNAME chains that end
/// locally, in the cache and upstream, and a name whose answer is too big for UDP.
const LOCAL: &[(&str, &str, &str)] = &[
    ("www.home.lan", "A", "192.168.1.10"),
    ("www.home.lan", "AAAA", "fd00::10"),
    ("*.wild.home.lan", "A", "10.0.0.1"),
    ("alias.home.lan", "CNAME", "www.home.lan"),
    ("out.home.lan", "CNAME", "cached.example"),
    ("far.home.lan", "CNAME", "far.example"),
    ("home.lan", "MX", "10 mail.home.lan"),
    ("home.lan", "NS", "ns.home.lan"),
    ("home.lan", "CAA", "0 issue \"letsencrypt.org\""),
    ("_sip._tcp.home.lan", "SRV", "10 5 5060 sip.home.lan"),
    ("10.1.168.192.in-addr.arpa", "PTR", "www.home.lan"),
    ("txt.home.lan", "TXT", "\"v=spf1 -all\" \"second string\""),
];

/// TXT records at `big.home.lan.`: together well over [`MAX_UDP_PAYLOAD`].
const BIG_TXT: usize = 12;

/// The shared parts: built once per process.
pub struct Rig {
    runtime: Runtime,
    handler: Arc<Handler>,
    cache: Arc<Cache>,
    clock: Arc<AtomicU64>,
    cached: Vec<(Query, Message)>,
    script: Arc<Mutex<Vec<u8>>>,
    /// Tasks that live as long as the rig (the fake upstream, the record store's flusher).
    resident_tasks: usize,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// The process's rig.
    pub fn get() -> &'static Rig {
        static RIG: OnceLock<Rig> = OnceLock::new();
        RIG.get_or_init(Rig::new)
    }

    fn new() -> Rig {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // The record store, the upstream sockets and the fake upstream start tasks of their own.
        let entered = runtime.enter();
        let dir = tempfile::tempdir().expect("tempdir");
        let opened = Opened::load(Store::open(dir.path()).expect("store")).expect("records");
        let script = Arc::new(Mutex::new(Vec::new()));
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        socket.set_nonblocking(true).expect("nonblocking");
        let upstream_addr = socket.local_addr().expect("addr");
        let socket = UdpSocket::from_std(socket).expect("tokio socket");
        runtime.spawn(fake_upstream(socket, Arc::clone(&script)));
        let upstream_arg = upstream_addr.to_string();
        let argv = [
            "rind-server",
            "--upstream",
            upstream_arg.as_str(),
            "--cache-size",
            "64",
            "--serve-stale",
            "3600",
            "--prefetch",
            "--max-upstream-queries",
            "64",
        ];
        let config = Args::try_parse_from(argv)
            .expect("flags")
            .validate()
            .expect("config");
        let clock = Arc::new(AtomicU64::new(START));
        let pool = UdpPool::new(4, [upstream_addr]).expect("pool");
        let Pipeline {
            handler,
            cache,
            records,
            ..
        } = Pipeline::assemble(
            &config,
            &opened,
            Clock::manual(Arc::clone(&clock)),
            None,
            pool,
        )
        .expect("pipeline");
        let big = "x".repeat(200);
        runtime.block_on(async {
            let drafts = LOCAL
                .iter()
                .map(|&(name, rtype, data)| (name, rtype, data.to_string()))
                .chain((0..BIG_TXT).map(|i| ("big.home.lan", "TXT", format!("{i} {big}"))));
            for (name, rtype, data) in drafts {
                let draft = Draft::parse(name, rtype, 300, &data).expect("valid record");
                records.create(draft).await.expect("create");
            }
        });
        drop(entered);
        let resident_tasks = runtime.metrics().num_alive_tasks();
        Rig {
            runtime,
            handler,
            cache,
            clock,
            cached: cached(),
            script,
            resident_tasks,
            _dir: dir,
        }
    }

    /// The handler, over the shared local records and forwarder, with its cache emptied and
    /// refilled with the entries of [`cached`] (inserted at [`START`]) and the clock set to
    /// `now` (Unix seconds): every input starts from the same state.
    pub fn handler(&self, now: u64) -> Arc<Handler> {
        self.settle();
        self.clock.store(START, Ordering::Relaxed);
        self.block_on(self.cache.flush(None))
            .expect("the fixture cache has no disk copy to fail");
        for (query, reply) in &self.cached {
            // Each answer as if fetched with CD=0, and again with CD=1 for CD=1 clients.
            for checking_disabled in [false, true] {
                self.cache
                    .insert(query, checking_disabled, reply)
                    .expect("cacheable");
            }
        }
        self.clock.store(now, Ordering::Relaxed);
        Arc::clone(&self.handler)
    }

    /// Lets tasks the last input left behind (a background refresh) finish, so they cannot
    /// change the state the next input starts from.
    fn settle(&self) {
        for _ in 0..100 {
            if self.runtime.metrics().num_alive_tasks() <= self.resident_tasks {
                return;
            }
            self.block_on(tokio::time::sleep(std::time::Duration::from_millis(1)));
        }
    }

    /// What the fake upstream answers from now on: this message (any bytes; see
    /// [`scripted_reply`]), or its default answer when empty.
    pub fn script(&self, reply: &[u8]) {
        let mut script = self.script.lock().unwrap_or_else(PoisonError::into_inner);
        script.clear();
        script.extend_from_slice(reply);
    }

    /// Runs `future` to completion on the rig's runtime (which also runs the fake upstream).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Enters the rig's runtime, as a listener's task would be, for synchronous calls.
    pub fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.runtime.enter()
    }
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("name")
}

/// Upstream replies put in each fresh cache: (question, reply).
fn cached() -> Vec<(Query, Message)> {
    let reply = |qname: &str, qtype, rcode, answers: Vec<Record>, authorities: Vec<Record>| {
        let query = Query::query(name(qname), qtype);
        let mut msg = Message::response(1, OpCode::Query);
        msg.metadata.response_code = rcode;
        msg.add_query(query.clone());
        msg.add_answers(answers);
        msg.add_authorities(authorities);
        (query, msg)
    };
    let a = |owner: &str, ttl, last| {
        Record::from_rdata(
            name(owner),
            ttl,
            RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
        )
    };
    let soa = Record::from_rdata(
        name("example."),
        600,
        RData::SOA(SOA::new(
            name("ns.example."),
            name("admin.example."),
            1,
            3_600,
            600,
            86_400,
            300,
        )),
    );
    // Signed answers, as an upstream sends them to a DO=1 query; opaque RDATA, as hickory
    // reads it without its DNSSEC feature.
    let opaque = |owner: &str, rtype: RecordType, rdata: Vec<u8>| {
        let data = RData::Unknown {
            code: rtype,
            rdata: NULL::with(rdata),
        };
        Record::from_rdata(name(owner), 300, data)
    };
    let rrsig = |owner: &str, covered: RecordType| {
        let mut rdata = u16::from(covered).to_be_bytes().to_vec();
        rdata.extend_from_slice(&[13, 2, 0, 0, 1, 44]);
        let expiration = u32::try_from(START + 864_000).expect("fits");
        rdata.extend_from_slice(&expiration.to_be_bytes());
        rdata.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 7]);
        rdata.extend_from_slice(b"example");
        rdata.push(0);
        rdata.extend_from_slice(&[0xab; 64]);
        opaque(owner, RecordType::RRSIG, rdata)
    };
    let nsec = opaque(
        "example.",
        RecordType::NSEC,
        vec![
            1, b'z', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 0, 1, 0x40,
        ],
    );
    vec![
        reply(
            "signed.example.",
            RecordType::A,
            ResponseCode::NoError,
            vec![
                a("signed.example.", 300, 7),
                rrsig("signed.example.", RecordType::A),
            ],
            vec![],
        ),
        reply(
            "signed-nx.example.",
            RecordType::A,
            ResponseCode::NXDomain,
            vec![],
            vec![
                soa.clone(),
                rrsig("example.", RecordType::SOA),
                nsec,
                rrsig("example.", RecordType::NSEC),
            ],
        ),
        reply(
            "cached.example.",
            RecordType::A,
            ResponseCode::NoError,
            (1..=3).map(|i| a("cached.example.", 300, i)).collect(),
            vec![],
        ),
        reply(
            "cached.example.",
            RecordType::AAAA,
            ResponseCode::NoError,
            vec![Record::from_rdata(
                name("cached.example."),
                60,
                RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
            )],
            vec![],
        ),
        reply(
            "big.example.",
            RecordType::A,
            ResponseCode::NoError,
            (0..120).map(|i| a("big.example.", 300, i)).collect(),
            vec![],
        ),
        reply(
            "chain.example.",
            RecordType::A,
            ResponseCode::NoError,
            vec![
                Record::from_rdata(
                    name("chain.example."),
                    120,
                    RData::CNAME(CNAME(name("cached.example."))),
                ),
                a("cached.example.", 30, 1),
            ],
            vec![],
        ),
        reply(
            "nx.example.",
            RecordType::A,
            ResponseCode::NXDomain,
            vec![],
            vec![soa.clone()],
        ),
        reply(
            "nodata.example.",
            RecordType::MX,
            ResponseCode::NoError,
            vec![],
            vec![soa],
        ),
    ]
}

/// The fake upstream: answers every query it can read from the current script.
async fn fake_upstream(socket: UdpSocket, script: Arc<Mutex<Vec<u8>>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        let reply = {
            let script = script.lock().unwrap_or_else(PoisonError::into_inner);
            scripted_reply(&query, &script)
        };
        let _ = socket.send_to(&reply, from).await;
    }
}

/// The reply to `query`: `script` parsed as a DNS message and made to answer `query` (its ID,
/// QR=1, its opcode and its question), when that encodes in at most 4096 bytes and parses back; an empty
/// script gets a plain answer (A 192.0.2.53 for A queries, NODATA otherwise); anything else
/// gets SERVFAIL.
pub fn scripted_reply(query: &Message, script: &[u8]) -> Vec<u8> {
    let mut msg = if script.is_empty() {
        let mut msg = Message::response(0, OpCode::Query);
        for q in &query.queries {
            if q.query_type == RecordType::A {
                msg.add_answer(Record::from_rdata(
                    q.name.clone(),
                    300,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 53))),
                ));
            }
        }
        Some(msg)
    } else {
        Message::from_vec(script).ok()
    };
    if let Some(msg) = &mut msg {
        // What rind's forwarder checks (anything else it ignores until the try times out).
        msg.metadata.id = query.metadata.id;
        msg.metadata.message_type = MessageType::Response;
        msg.metadata.op_code = query.metadata.op_code;
        msg.queries.clone_from(&query.queries);
        let accepted = msg.to_vec().ok().filter(|bytes| {
            bytes.len() <= 4096
                && Message::from_vec(bytes).is_ok_and(|back| {
                    back.metadata.id == query.metadata.id && back.queries == query.queries
                })
        });
        if let Some(bytes) = accepted {
            return bytes;
        }
    }
    let mut failed = Message::error_msg(query.metadata.id, OpCode::Query, ResponseCode::ServFail);
    failed.queries.clone_from(&query.queries);
    failed.to_vec().unwrap_or_default()
}

/// The most a client will take over UDP for `query`: 512 bytes without EDNS, else its
/// advertised size clamped to 512..=1232.
pub fn udp_limit(query: &[u8]) -> usize {
    let payload = Message::from_vec(query)
        .ok()
        .and_then(|m| m.edns.map(|e| e.max_payload()))
        .map_or(MIN_UDP_PAYLOAD, |p| {
            p.clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
        });
    usize::from(payload)
}

/// Checks one reply to `query` received over `transport`: it parses, is a response, carries
/// the query's ID, fits the client's limit over UDP, and echoes the question exactly (letter
/// case included) when it echoes one; and DNSSEC's rules: DO echoed, no RRSIG/NSEC/NSEC3 the
/// client did not ask for (by DO or by type), no AD for a client that set neither DO nor AD.
pub fn check_reply(query: &[u8], reply: &[u8], transport: Transport) {
    if let Some(problem) = reply_problem(query, reply, transport) {
        panic!("{problem}\nquery: {query:?}\nreply: {reply:?}");
    }
}

/// What is wrong with `reply` as the reply to `query` (see [`check_reply`]), if anything.
pub fn reply_problem(query: &[u8], reply: &[u8], transport: Transport) -> Option<String> {
    let msg = match Message::from_vec(reply) {
        Ok(msg) => msg,
        Err(e) => return Some(format!("the reply does not parse: {e}")),
    };
    if reply.get(..2) != query.get(..2) {
        return Some("the reply ID differs from the query ID".to_string());
    }
    if msg.metadata.message_type != MessageType::Response {
        return Some("QR=0 in a reply".to_string());
    }
    if transport == Transport::Udp {
        let limit = udp_limit(query);
        if reply.len() > limit {
            return Some(format!(
                "a {}-byte UDP reply to a client that takes {limit}",
                reply.len()
            ));
        }
    }
    // A query hickory reads whole gets its one question echoed, or none when it has another
    // number of questions. (Of a query it cannot read, the server may echo what it could.)
    if let Ok(sent) = Message::from_vec(query) {
        let expected = match sent.queries.as_slice() {
            [one] => Some(one),
            _ => None,
        };
        let same = match (expected, msg.queries.as_slice()) {
            (None, []) => true,
            (Some(asked), [echoed]) => {
                asked.name.eq_case(&echoed.name)
                    && asked.query_type == echoed.query_type
                    && asked.query_class == echoed.query_class
            }
            _ => false,
        };
        if !same {
            return Some(format!(
                "the reply's question {:?} is not the query's {expected:?}",
                msg.queries
            ));
        }
        if let Some(problem) = dnssec_problem(&sent, &msg) {
            return Some(problem);
        }
    }
    None
}

/// What `reply` does against the DNSSEC rules for `query` (RFC 3225, RFC 4035 §3.2.1, RFC
/// 6840 §5.7-5.8), if anything.
fn dnssec_problem(query: &Message, reply: &Message) -> Option<String> {
    let asked_do = query.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    if let (Some(_), Some(edns)) = (&query.edns, &reply.edns) {
        if edns.flags().dnssec_ok != asked_do {
            return Some(format!("DO={asked_do} in the query, not echoed"));
        }
    }
    if !asked_do && !query.metadata.authentic_data && reply.metadata.authentic_data {
        return Some("AD=1 for a client that set neither DO nor AD".to_string());
    }
    let qtype = query.queries.first().map(|q| q.query_type);
    let unasked = reply
        .answers
        .iter()
        .chain(&reply.authorities)
        .chain(&reply.additionals)
        .map(|r| r.record_type())
        .find(|&t| {
            matches!(t, RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3)
                && Some(t) != qtype
        });
    match unasked {
        Some(rtype) if !asked_do => Some(format!("a DO=0 client got a {rtype} record")),
        _ => None,
    }
}

/// The address a fuzzed TCP connection comes from.
pub fn peer() -> SocketAddr {
    SocketAddr::new(CLIENT, 53_000)
}
