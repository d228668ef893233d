//! A handler built in-process from the real parts, as the fuzz targets build it: local records
//! in a sled store in a temporary directory, a cache on a manual clock holding a few answers,
//! and a forwarder to the given upstream. No client sockets: tests call the handler (or
//! `listener::tcp::serve` over an in-memory stream) directly.
//!
//! Shared by tests/properties.rs and tests/fuzz_regressions.rs; each uses only part of it.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use rind_server::cache::{Cache, Clock};
use rind_server::config::Args;
use rind_server::handler::{Handler, Step};
use rind_server::records::Draft;
use rind_server::request::Transport;
use rind_server::store::Store;
use rind_server::upstream::pool::UdpPool;
use rind_server::{Opened, Pipeline};

/// Unix seconds on the manual clock when the cache is filled.
pub const START: u64 = 1_700_000_000;

/// A client the ACL allows.
pub const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Local records: one of each type, a wildcard, a CNAME chain and a name too big for UDP.
pub const LOCAL: &[(&str, &str, &str)] = &[
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
    ("txt.home.lan", "TXT", "\"v=spf1 -all\""),
];

/// Names with answers in the cache (A): a small one, and one over every UDP limit.
pub const CACHED: &[(&str, usize)] = &[("cached.example.", 3), ("big.example.", 120)];

pub struct InProcess {
    pub handler: Arc<Handler>,
    pub cache: Arc<Cache>,
    pub clock: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("name")
}

/// Builds the handler as the server assembles it; call it inside a tokio runtime (the record
/// store starts a task).
pub async fn build(upstream: SocketAddr) -> InProcess {
    let dir = tempfile::tempdir().expect("tempdir");
    let opened = Opened::load(Store::open(dir.path()).expect("store")).expect("records");
    let upstream_arg = upstream.to_string();
    let argv = [
        "rind-server",
        "--upstream",
        upstream_arg.as_str(),
        "--cache-size",
        "1000",
        "--serve-stale",
        "3600",
    ];
    let config = Args::try_parse_from(argv)
        .expect("flags")
        .validate()
        .expect("config");
    let clock = Arc::new(AtomicU64::new(START));
    let pool = UdpPool::new(4, [upstream]).expect("pool");
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
    let drafts = LOCAL
        .iter()
        .map(|&(n, t, d)| (n, t, d.to_string()))
        .chain((0..12).map(|i| ("big.home.lan", "TXT", format!("{i} {big}"))));
    for (n, t, d) in drafts {
        let draft = Draft::parse(n, t, 300, &d).expect("valid record");
        records.create(draft).await.expect("create");
    }
    for &(owner, count) in CACHED {
        let query = Query::query(name(owner), RecordType::A);
        let mut reply = Message::response(1, OpCode::Query);
        reply.add_query(query.clone());
        for i in 0..count {
            let last = u8::try_from(i % 250).expect("small");
            reply.add_answer(Record::from_rdata(
                name(owner),
                300,
                RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
            ));
        }
        cache.insert(&query, false, &reply).expect("cacheable");
    }
    let query = Query::query(name("nx.example."), RecordType::A);
    let mut reply = Message::response(1, OpCode::Query);
    reply.metadata.response_code = ResponseCode::NXDomain;
    reply.add_query(query.clone());
    reply.add_authority(Record::from_rdata(
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
    ));
    cache.insert(&query, false, &reply).expect("cacheable");
    InProcess {
        handler,
        cache,
        clock,
        _dir: dir,
    }
}

/// Bytes in → reply out through `Handler::begin`, and `Handler::finish` when the answer needs
/// upstream (bounded: the contract's 5 s plus slack).
pub async fn ask(handler: &Handler, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
    match handler.begin(packet, CLIENT, transport) {
        Step::Done(reply) => reply,
        Step::Forward(waiting) => Some(
            tokio::time::timeout(Duration::from_secs(6), handler.finish(waiting))
                .await
                .expect("no reply within 6 s"),
        ),
        Step::Transfer(_) => panic!("a zone transfer is TCP only"),
    }
}
