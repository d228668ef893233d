//! The cache-hit path, bytes in → bytes out: a query for a cached name through the whole
//! handler (checks, special-name test, cache lookup, reply patching), no sockets. An unsigned
//! answer, asked without and with EDNS, and a signed one (A + RRSIG) asked by a DO=0 client
//! (served the template without the RRSIG) and by a DO=1 client.
//!
//! Also counts heap allocations per hit with a counting global allocator and prints them,
//! because "a hit allocates as little as possible" is a claim to measure, not to assume.
//!
//! The server's flags come from the environment as for `rind-server`: the query log is on
//! (its default); `RIND_QUERY_LOG=0` measures without it. `HIT_CASES=cache_hit_udp,...`
//! runs only those cases, so `valgrind --tool=callgrind` counts one case at a time.
//! `HIT_BLOCKLIST=N` loads a blocklist of N names (half of them `||name^` rules) before the
//! hits: a hit should cost the same with one, since blocklists are looked up on misses only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion};
use hickory_proto::op::{Edns, Message, OpCode, Query};
use hickory_proto::rr::rdata::{A, NULL};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use rind_server::cache::Clock;
use rind_server::config::Args;
use rind_server::handler::{Handler, Step};
use rind_server::request::Transport;
use rind_server::store::blocklists::{BlocklistStore, StoredList};
use rind_server::store::Store;
use rind_server::upstream::pool::UdpPool;
use rind_server::{Opened, Pipeline};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn handler_with_cached(name: &Name, signed: &Name, data_dir: &std::path::Path) -> Arc<Handler> {
    let argv = [
        "rind-server",
        "--upstream",
        "127.0.0.1:9",
        "--cache-size",
        "1000",
    ];
    let config = Args::try_parse_from(argv)
        .expect("flags")
        .validate()
        .expect("config");
    // The local records come first on every query, so the bench pays for that lookup too.
    let store = Store::open(data_dir).expect("store");
    if let Some(names) = std::env::var("HIT_BLOCKLIST")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        store_blocklist(&store, names);
    }
    let pool = UdpPool::new(1, config.upstreams.iter().map(|u| u.addr)).expect("pool");
    let opened = Opened::load(store).expect("records");
    let pipeline =
        Pipeline::assemble(&config, &opened, Clock::default(), None, pool).expect("pipeline");
    let a = |owner: &Name, last| {
        Record::from_rdata(
            owner.clone(),
            3_600,
            RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
        )
    };
    for (owner, answers) in [
        (name, vec![a(name, 1)]),
        (signed, vec![a(signed, 2), rrsig(signed)]),
    ] {
        let query = Query::query(owner.clone(), RecordType::A);
        let mut upstream = Message::response(1, OpCode::Query);
        upstream.add_query(query.clone());
        upstream.add_answers(answers);
        pipeline
            .cache
            .insert(&query, false, &upstream)
            .expect("cacheable");
    }
    pipeline.handler
}

/// Stores a list of `names` generated names, as if fetched, for the pipeline to load.
fn store_blocklist(store: &Store, names: usize) {
    let mut rules = String::with_capacity(names * 32);
    for i in 0..names {
        let subtree = if i % 2 == 0 { "|" } else { "" };
        rules.push_str(&format!("{subtree}ads{i}.tracker{}.example\n", i % 1000));
    }
    let lists = BlocklistStore::open(store).expect("blocklist trees");
    let list = StoredList {
        id: "1".into(),
        name: "bench".into(),
        url: None,
        domains: names,
        skipped: 0,
        etag: None,
        last_modified: None,
        updated: 0,
        checked: None,
        error: None,
    };
    lists.put(&list, Some(&rules)).expect("store the list");
    println!("blocklist: {names} names");
}

/// An ECDSA-sized RRSIG over A records, expiring in 2065 (opaque RDATA, as rind reads it).
fn rrsig(owner: &Name) -> Record {
    let mut rdata = vec![0, 1, 13, 3, 0, 0, 14, 16];
    rdata.extend_from_slice(&3_000_000_000u32.to_be_bytes());
    rdata.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 7]);
    rdata.extend_from_slice(b"example\x03com\x00");
    rdata.extend_from_slice(&[0xab; 64]);
    let data = RData::Unknown {
        code: RecordType::RRSIG,
        rdata: NULL::with(rdata),
    };
    Record::from_rdata(owner.clone(), 3_600, data)
}

fn query_bytes(name: &Name, edns: bool, dnssec_ok: bool) -> Vec<u8> {
    let mut msg = Message::query();
    msg.metadata.id = 0x4242;
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name.clone(), RecordType::A));
    if edns {
        let mut edns = Edns::new();
        edns.set_dnssec_ok(dnssec_ok);
        msg.set_edns(edns);
    }
    msg.to_vec().expect("encodes")
}

fn hit(handler: &Handler, packet: &[u8]) -> Vec<u8> {
    match handler.begin(packet, CLIENT, Transport::Udp) {
        Step::Done(Some(reply)) => reply,
        other => panic!("expected a cache hit, got {other:?}"),
    }
}

fn bench_hit(c: &mut Criterion) {
    let name = Name::from_ascii("www.Example.com.").expect("name");
    let signed = Name::from_ascii("signed.Example.com.").expect("name");
    // The upstream sockets register with tokio's reactor; nothing here runs a task.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();
    let data_dir = tempfile::tempdir().expect("tempdir");
    let handler = handler_with_cached(&name, &signed, data_dir.path());
    let only = std::env::var("HIT_CASES").ok();
    let wanted = |label: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|c| c == label))
    };
    println!(
        "query log: {}",
        std::env::var("RIND_QUERY_LOG").unwrap_or_else(|_| "on (default size)".into())
    );
    let cases = [
        ("cache_hit_udp", &name, false, false, 1),
        ("cache_hit_udp_edns", &name, true, false, 1),
        ("cache_hit_signed_do0", &signed, true, false, 1),
        ("cache_hit_signed_do1", &signed, true, true, 2),
    ];
    for (label, qname, edns, dnssec_ok, answers) in cases {
        if !wanted(label) {
            continue;
        }
        let packet = query_bytes(qname, edns, dnssec_ok);
        let reply = hit(&handler, &packet);
        assert!(Message::from_vec(&reply).is_ok_and(|m| m.answers.len() == answers));

        const HITS: u64 = 10_000;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..HITS {
            black_box(hit(&handler, black_box(&packet)));
        }
        let per_hit = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / HITS as f64;
        println!("{label}: {per_hit:.2} heap allocations per hit");

        c.bench_function(label, |b| b.iter(|| hit(&handler, black_box(&packet))));
    }
}

criterion_group!(benches, bench_hit);
criterion_main!(benches);
