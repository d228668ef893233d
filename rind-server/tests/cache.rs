//! The answer cache seen from outside: hits, TTL countdown and clamps, negative caching
//! (RFC 2308), what is never cached, the size bound, serve-stale (RFC 8767), prefetch and the
//! `/api/v1/cache` routes. Restarts are in `cache_persistence.rs`.
//!
//! Every test gets its own server and fake upstream and asks names that only it uses, so the
//! upstream's per-name counts say exactly how often the cache let a question through.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Record, RecordType};
use serde_json::Value;

/// How long to wait for a background refresh (prefetch, stale refresh) to reach upstream.
const BACKGROUND_WAIT: Duration = Duration::from_millis(1500);
/// TTL of an answer served stale (RFC 8767 §4).
const STALE_TTL: u32 = 30;
/// Extended DNS Error option code (RFC 8914) and its "Stale Answer" info-code.
const EDE_OPTION: u16 = 15;
const EDE_STALE_ANSWER: u16 = 3;

fn ttls(records: &[Record]) -> Vec<u32> {
    records.iter().map(|r| r.ttl).collect()
}

/// The one answer TTL of a reply that must carry exactly one answer record.
fn answer_ttl(reply: &Message) -> u32 {
    assert_eq!(reply.answers.len(), 1, "answers: {:?}", reply.answers);
    reply.answers[0].ttl
}

/// The TTL of the SOA in the authority section; panics when there is none.
fn soa_ttl(reply: &Message) -> u32 {
    reply
        .authorities
        .iter()
        .find(|r| r.record_type() == RecordType::SOA)
        .unwrap_or_else(|| panic!("no SOA in the authority section: {reply:?}"))
        .ttl
}

/// The info-codes of every Extended DNS Error option in the reply's OPT.
fn ede_codes(reply: &Message) -> Vec<u16> {
    let Some(edns) = reply.edns.as_ref() else {
        return Vec::new();
    };
    edns.options()
        .as_ref()
        .iter()
        .filter(|(code, _)| u16::from(*code) == EDE_OPTION)
        .map(|(_, option)| match option {
            EdnsOption::Unknown(_, data) if data.len() >= 2 => {
                u16::from_be_bytes([data[0], data[1]])
            }
            other => panic!("EDE option with unexpected content: {other:?}"),
        })
        .collect()
}

async fn cache_list(server: &Server, query: &str) -> Vec<Value> {
    let reply = http_get(server.http_addr(), &format!("/api/v1/cache{query}"), None).await;
    assert_eq!(
        reply.status, 200,
        "GET /api/v1/cache{query}: {}",
        reply.body
    );
    match reply.json() {
        Value::Array(entries) => entries,
        other => panic!("GET /api/v1/cache{query} is not an array: {other}"),
    }
}

async fn cache_metric(server: &Server, series: &str) -> f64 {
    metric(server.http_addr(), series, None).await
}

// ---------------------------------------------------------------------------------------
// 1. Hits, letter case, type

#[tokio::test]
async fn second_identical_query_is_a_cache_hit_in_any_letter_case() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);
    let addr = server.dns_addr();
    let qname = "c1-hit.example.com.";

    let first = ask_udp(addr, &query(qname, RecordType::A)).await;
    assert_eq!(rcode(&first), ResponseCode::NoError);
    assert_eq!(a_records(&first), vec![ANSWER_V4]);
    assert_eq!(up.count(qname), 1);

    let second = ask_udp(addr, &query(qname, RecordType::A)).await;
    assert_eq!(rcode(&second), ResponseCode::NoError);
    assert_eq!(a_records(&second), vec![ANSWER_V4]);
    assert_eq!(
        up.count(qname),
        1,
        "the second identical query went upstream"
    );

    // Another letter case is the same cache key; the reply echoes this query's case.
    let mixed = "C1-Hit.ExAmPlE.CoM.";
    let third = ask_udp(addr, &query(mixed, RecordType::A)).await;
    assert_eq!(a_records(&third), vec![ANSWER_V4]);
    assert_eq!(third.queries.len(), 1);
    assert_eq!(
        third.queries[0].name().to_ascii(),
        mixed,
        "the cached reply does not keep the client's letter case"
    );
    assert_eq!(up.count(qname), 1, "a different letter case went upstream");

    // Over TCP the same entry answers.
    let tcp = ask_tcp(addr, &query(qname, RecordType::A)).await;
    assert_eq!(a_records(&tcp), vec![ANSWER_V4]);
    assert_eq!(
        up.count(qname),
        1,
        "a TCP query for a cached name went upstream"
    );

    // A different type is a different key: a miss, then a hit.
    let aaaa = ask_udp(addr, &query(qname, RecordType::AAAA)).await;
    assert_eq!(aaaa_records(&aaaa), vec![ANSWER_V6]);
    assert_eq!(up.count(qname), 2, "AAAA must be a miss after A was cached");
    let aaaa2 = ask_udp(addr, &query("C1-HIT.example.com.", RecordType::AAAA)).await;
    assert_eq!(aaaa_records(&aaaa2), vec![ANSWER_V6]);
    assert_eq!(up.count(qname), 2);
    let types: Vec<RecordType> = up.seen().iter().map(|s| s.qtype).collect();
    assert_eq!(types, [RecordType::A, RecordType::AAAA]);

    // Misses: first A and first AAAA; hits: the other four.
    assert_eq!(cache_metric(&server, "rind_cache_hits_total").await, 4.0);
    assert_eq!(cache_metric(&server, "rind_cache_misses_total").await, 2.0);
    assert_eq!(cache_metric(&server, "rind_cache_entries").await, 2.0);
}

#[tokio::test]
async fn a_name_first_asked_in_mixed_case_is_cached_under_its_lower_case_key() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);
    let addr = server.dns_addr();

    let mixed = "C1-Mixed.Example.COM.";
    let first = ask_udp(addr, &query(mixed, RecordType::A)).await;
    assert_eq!(first.queries[0].name().to_ascii(), mixed);
    assert_eq!(a_records(&first), vec![ANSWER_V4]);

    let lower = "c1-mixed.example.com.";
    let second = ask_udp(addr, &query(lower, RecordType::A)).await;
    assert_eq!(a_records(&second), vec![ANSWER_V4]);
    assert_eq!(
        second.queries[0].name().to_ascii(),
        lower,
        "a hit must not replay the letter case of the query that filled the cache"
    );
    assert_eq!(up.count(lower), 1);
}

#[tokio::test]
async fn cache_size_zero_disables_caching() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg(), "--cache-size", "0"]);
    let qname = "c1-nocache.example.com.";
    for _ in 0..2 {
        let reply = ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
        assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    }
    assert_eq!(up.count(qname), 2, "--cache-size 0 still cached");
    assert!(cache_list(&server, "").await.is_empty());
}

// ---------------------------------------------------------------------------------------
// 2. TTL countdown

#[tokio::test]
async fn cached_ttl_counts_down_in_whole_seconds() {
    let up = FakeUpstream::start(Behaviour::AnswerTtl(300));
    let server = Server::start(&["--upstream", &up.arg()]);
    let qname = "c2-countdown.example.com.";

    let first = ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
    assert_eq!(answer_ttl(&first), 300, "the miss reply changed the TTL");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let second = ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
    let ttl = answer_ttl(&second);
    assert!(
        (296..=298).contains(&ttl),
        "TTL {ttl} after 2.1 s, expected 296..=298"
    );
    assert_eq!(up.count(qname), 1);
}

// ---------------------------------------------------------------------------------------
// 3. Clamps

#[tokio::test]
async fn min_and_max_ttl_clamp_what_clients_see_from_the_first_reply_on() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let low = "c3-low.example.com.";
    let high = "c3-high.example.com.";
    let zero = "c3-zero.example.com.";
    up.set_rule(low, Behaviour::AnswerTtl(5));
    up.set_rule(high, Behaviour::AnswerTtl(100_000));
    up.set_rule(zero, Behaviour::AnswerTtl(0));
    let server = Server::start(&[
        "--upstream",
        &up.arg(),
        "--min-ttl",
        "60",
        "--max-ttl",
        "1000",
    ]);
    let addr = server.dns_addr();

    for (qname, want) in [(low, 60), (high, 1000), (zero, 60)] {
        let first = ask_udp(addr, &query(qname, RecordType::A)).await;
        assert_eq!(answer_ttl(&first), want, "{qname}: first (miss) reply");
        let second = ask_udp(addr, &query(qname, RecordType::A)).await;
        let ttl = answer_ttl(&second);
        assert!(
            (want - 1..=want).contains(&ttl),
            "{qname}: cached TTL {ttl}, expected {want} (or one less)"
        );
        // TTL 0 raised by --min-ttl is no longer 0, so it is cached too.
        assert_eq!(up.count(qname), 1, "{qname} was not cached");
    }
}

// ---------------------------------------------------------------------------------------
// 4. Negative caching

#[tokio::test]
async fn negative_answers_are_cached_for_the_soa_minimum() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let nx = "c4-nx.example.com.";
    let nodata = "c4-nodata.example.com.";
    let nosoa = "c4-nosoa.example.com.";
    // min(SOA TTL, MINIMUM) = 2 either way round.
    up.set_rule(
        nx,
        Behaviour::NxDomainSoa {
            ttl: 3600,
            minimum: 2,
        },
    );
    up.set_rule(
        nodata,
        Behaviour::NoDataSoa {
            ttl: 2,
            minimum: 3600,
        },
    );
    up.set_rule(nosoa, Behaviour::NxDomainNoSoa);
    let server = Server::start(&["--upstream", &up.arg()]);

    let capped_up = FakeUpstream::start(Behaviour::NxDomainSoa {
        ttl: 3600,
        minimum: 3600,
    });
    let capped = "c4-capped.example.com.";
    let capped_server = Server::start(&["--upstream", &capped_up.arg(), "--max-negative-ttl", "1"]);

    let (addr, caddr) = (server.dns_addr(), capped_server.dns_addr());
    let s = next_second_start().await;
    let cases = [
        (addr, nx, ResponseCode::NXDomain, 2),
        (addr, nodata, ResponseCode::NoError, 2),
        (caddr, capped, ResponseCode::NXDomain, 1),
    ];
    for (a, qname, want_rcode, want_ttl) in cases {
        let first = ask_udp(a, &query(qname, RecordType::A)).await;
        assert_eq!(rcode(&first), want_rcode, "{qname}");
        assert!(first.answers.is_empty(), "{qname}: {:?}", first.answers);
        assert_eq!(
            soa_ttl(&first),
            want_ttl,
            "{qname}: the miss reply's SOA TTL is not the negative TTL"
        );
        let second = ask_udp(a, &query(qname, RecordType::A)).await;
        assert_eq!(rcode(&second), want_rcode, "{qname}: cached rcode");
        assert!(second.answers.is_empty());
        assert!(
            soa_ttl(&second) <= want_ttl,
            "{qname}: cached SOA TTL {} > {want_ttl}",
            soa_ttl(&second)
        );
    }
    assert_still_in_second(s, "negative answers asked twice");
    assert_eq!(up.count(nx), 1, "NXDOMAIN with SOA was not cached");
    assert_eq!(up.count(nodata), 1, "NODATA with SOA was not cached");
    assert_eq!(capped_up.count(capped), 1, "capped NXDOMAIN was not cached");

    // Without an SOA there is no negative TTL: never cached (RFC 2308 §5).
    for _ in 0..2 {
        let reply = ask_udp(addr, &query(nosoa, RecordType::A)).await;
        assert_eq!(rcode(&reply), ResponseCode::NXDomain);
    }
    assert_eq!(up.count(nosoa), 2, "NXDOMAIN without SOA was cached");

    // --max-negative-ttl 1: stored at second s, gone from s+1 although the SOA says 3600.
    sleep_until_unix(s as f64 + 2.2).await;
    let again = ask_udp(caddr, &query(capped, RecordType::A)).await;
    assert_eq!(rcode(&again), ResponseCode::NXDomain);
    assert_eq!(
        capped_up.count(capped),
        2,
        "--max-negative-ttl 1 did not cap the negative TTL (entry still cached after 2 s)"
    );

    // TTL 2: gone from s+2.
    sleep_until_unix(s as f64 + 3.2).await;
    for qname in [nx, nodata] {
        ask_udp(addr, &query(qname, RecordType::A)).await;
        assert_eq!(up.count(qname), 2, "{qname} still cached after 3 s");
    }
}

// ---------------------------------------------------------------------------------------
// 5. Never cached

#[tokio::test]
async fn servfail_and_refused_are_not_cached() {
    let up = FakeUpstream::start(Behaviour::ServFail);
    let refused = "c5-refused.example.com.";
    up.set_rule(refused, Behaviour::Refused);
    let server = Server::start(&["--upstream", &up.arg()]);
    let addr = server.dns_addr();
    let sf = "c5-servfail.example.com.";

    for i in 1..=2 {
        let reply = ask_udp(addr, &query(sf, RecordType::A)).await;
        assert_eq!(rcode(&reply), ResponseCode::ServFail);
        assert_eq!(up.count(sf), i, "SERVFAIL was answered from the cache");
        let reply = ask_udp(addr, &query(refused, RecordType::A)).await;
        assert!(reply.answers.is_empty());
        assert_eq!(up.count(refused), i, "REFUSED was answered from the cache");
    }
    assert!(cache_list(&server, "").await.is_empty());

    // Once the upstream answers, the next query gets the answer (no cached failure).
    up.set_default(Behaviour::Answer);
    let reply = ask_udp(addr, &query(sf, RecordType::A)).await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    assert_eq!(up.count(sf), 3);
}

#[tokio::test]
async fn a_timeout_is_not_cached() {
    let up = FakeUpstream::start(Behaviour::Silent);
    let server = Server::start(&["--upstream", &up.arg()]);
    let qname = "c5-timeout.example.com.";

    let reply = ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
    assert_eq!(rcode(&reply), ResponseCode::ServFail);
    let asked = up.count(qname);
    assert!(asked >= 1);

    up.set_default(Behaviour::Answer);
    let started = Instant::now();
    let reply = ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
    assert_eq!(
        rcode(&reply),
        ResponseCode::NoError,
        "the timeout was cached"
    );
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    assert_eq!(up.count(qname), asked + 1);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn ttl_zero_answers_are_not_reused() {
    let up = FakeUpstream::start(Behaviour::AnswerTtl(0));
    let server = Server::start(&["--upstream", &up.arg()]);
    let qname = "c5-ttl0.example.com.";
    for i in 1..=3 {
        let reply = ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
        assert_eq!(a_records(&reply), vec![ANSWER_V4]);
        assert_eq!(answer_ttl(&reply), 0);
        assert_eq!(up.count(qname), i, "a TTL 0 answer was reused");
    }
    assert!(cache_list(&server, "?name=c5-ttl0.example.com")
        .await
        .is_empty());
}

// ---------------------------------------------------------------------------------------
// 7. Size bound

#[tokio::test]
async fn cache_size_bounds_the_entries_and_evicts() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg(), "--cache-size", "50"]);
    let addr = server.dns_addr();
    let popular = "c7-popular.example.com.";

    ask_udp(addr, &query(popular, RecordType::A)).await;
    for i in 0..500 {
        let qname = format!("c7-{i}.example.com.");
        let reply = ask_udp(addr, &query(&qname, RecordType::A)).await;
        assert_eq!(a_records(&reply), vec![ANSWER_V4], "{qname}");
        if i % 10 == 9 {
            // A name asked all the time is not the least recently used.
            ask_udp(addr, &query(popular, RecordType::A)).await;
        }
    }
    assert_eq!(up.total(), 501, "every distinct name is one miss");

    let listed = cache_list(&server, "").await;
    assert!(
        !listed.is_empty() && listed.len() <= 50,
        "GET /api/v1/cache lists {} entries with --cache-size 50",
        listed.len()
    );
    let entries = cache_metric(&server, "rind_cache_entries").await;
    assert!(
        (1.0..=50.0).contains(&entries),
        "rind_cache_entries {entries}"
    );
    let evictions = cache_metric(&server, "rind_cache_evictions_total").await;
    assert!(evictions >= 450.0, "rind_cache_evictions_total {evictions}");

    // The last name asked and the popular one are still there.
    let last = "c7-499.example.com.";
    ask_udp(addr, &query(last, RecordType::A)).await;
    assert_eq!(
        up.count(last),
        1,
        "the most recently added entry was evicted"
    );
    ask_udp(addr, &query(popular, RecordType::A)).await;
    assert_eq!(up.count(popular), 1, "a frequently used entry was evicted");
}

// ---------------------------------------------------------------------------------------
// 8. Serve-stale

#[tokio::test]
async fn serve_stale_answers_with_ttl_30_and_ede_3_when_upstream_is_silent() {
    let up = FakeUpstream::start(Behaviour::AnswerTtl(1));
    let server = Server::start(&["--upstream", &up.arg(), "--serve-stale", "60"]);
    let addr = server.dns_addr();
    let qname = "c8-stale.example.com.";

    let stored = unix_now().floor();
    let first = ask_udp(addr, &query_edns(qname, RecordType::A, 1232)).await;
    assert_eq!(answer_ttl(&first), 1);
    assert!(
        ede_codes(&first).is_empty(),
        "a fresh answer carries an EDE"
    );
    // Expired at stored+1 (or +2 if the second turned over meanwhile).
    sleep_until_unix(stored + 2.1).await;
    up.set_default(Behaviour::Silent);

    let started = Instant::now();
    let stale = ask_udp(addr, &query_edns(qname, RecordType::A, 1232)).await;
    let waited = started.elapsed();
    assert_eq!(
        rcode(&stale),
        ResponseCode::NoError,
        "no stale answer after {waited:?}"
    );
    assert_eq!(a_records(&stale), vec![ANSWER_V4]);
    assert_eq!(ttls(&stale.answers), [STALE_TTL]);
    assert_eq!(ede_codes(&stale), [EDE_STALE_ANSWER], "{:?}", stale.edns);
    assert!(
        waited < Duration::from_secs(5),
        "stale answer after {waited:?}"
    );
    // One query stored the answer, one try (with its resends) found the upstream silent.
    assert_eq!(up.queries(qname), 2);

    // Upstream failed moments ago: the stale answer comes at once, and a refresh runs behind it.
    let started = Instant::now();
    let again = ask_udp(addr, &query_edns(qname, RecordType::A, 1232)).await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "second stale answer took {waited:?}"
    );
    assert_eq!(rcode(&again), ResponseCode::NoError);
    assert_eq!(ttls(&again.answers), [STALE_TTL]);
    assert_eq!(ede_codes(&again), [EDE_STALE_ANSWER]);
    assert!(
        up.wait_for_queries(qname, 3, BACKGROUND_WAIT).await,
        "no background refresh after the stale answer"
    );

    // A client without EDNS gets the stale answer without an OPT.
    let plain = ask_udp(addr, &query(qname, RecordType::A)).await;
    assert_eq!(ttls(&plain.answers), [STALE_TTL]);
    assert!(plain.edns.is_none(), "OPT sent to a client without EDNS");

    assert_eq!(
        cache_metric(&server, "rind_cache_stale_served_total").await,
        3.0
    );
}

#[tokio::test]
async fn without_serve_stale_an_expired_entry_gives_servfail() {
    let up = FakeUpstream::start(Behaviour::AnswerTtl(1));
    let server = Server::start(&["--upstream", &up.arg()]);
    let addr = server.dns_addr();
    let qname = "c8-nostale.example.com.";

    let stored = unix_now().floor();
    ask_udp(addr, &query_edns(qname, RecordType::A, 1232)).await;
    sleep_until_unix(stored + 2.1).await;
    up.set_default(Behaviour::Silent);
    let reply = ask_udp(addr, &query_edns(qname, RecordType::A, 1232)).await;
    assert_eq!(rcode(&reply), ResponseCode::ServFail);
    assert!(reply.answers.is_empty(), "{:?}", reply.answers);
    assert_eq!(
        cache_metric(&server, "rind_cache_stale_served_total").await,
        0.0
    );
}

/// Clients asking the same question at once share one upstream query (see forwarder.rs);
/// the answer is one entry, and nothing is evicted to store it.
#[tokio::test]
async fn concurrent_identical_misses_store_one_entry_without_evictions() {
    let up = FakeUpstream::start(Behaviour::Delay(Duration::from_millis(300)));
    let server = Server::start(&["--upstream", &up.arg()]);
    let qname = "c1-together.example.com.";

    let mut set = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let addr = server.dns_addr();
        set.spawn(async move { ask_udp(addr, &query(qname, RecordType::A)).await });
    }
    while let Some(done) = set.join_next().await {
        assert_eq!(a_records(&done.expect("query task")), vec![ANSWER_V4]);
    }
    assert_eq!(up.count(qname), 1, "not coalesced");
    ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
    assert_eq!(up.count(qname), 1, "not cached");
    assert_eq!(cache_metric(&server, "rind_cache_entries").await, 1.0);
    assert_eq!(
        cache_metric(&server, "rind_cache_evictions_total").await,
        0.0,
        "storing one answer for 5 waiting clients counted evictions"
    );
}

/// Refreshing an entry that is still held (here: expired but inside the serve-stale window)
/// replaces it; nothing was evicted to make room.
#[tokio::test]
async fn replacing_an_expired_entry_is_not_counted_as_an_eviction() {
    let up = FakeUpstream::start(Behaviour::AnswerTtl(1));
    let server = Server::start(&["--upstream", &up.arg(), "--serve-stale", "60"]);
    let qname = "c8-replace.example.com.";

    let stored = unix_now().floor();
    ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
    sleep_until_unix(stored + 2.1).await;
    up.set_default(Behaviour::AnswerTtl(300));
    let reply = ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
    assert_eq!(
        answer_ttl(&reply),
        300,
        "the upstream answers again: no stale answer"
    );
    assert_eq!(up.count(qname), 2);
    assert_eq!(cache_metric(&server, "rind_cache_entries").await, 1.0);
    assert_eq!(
        cache_metric(&server, "rind_cache_evictions_total").await,
        0.0,
        "one entry in a cache of 100000 replaced by its refresh was counted as an eviction"
    );
}

// ---------------------------------------------------------------------------------------
// 9. Prefetch

/// Stores `qname` (TTL `ttl`) at the start of a second on each server, sleeps until
/// `left` seconds before it expires, and sends `hits` queries to each; returns the second
/// it was stored at.
async fn hit_near_expiry(
    servers: &[&Server],
    qname: &str,
    ttl: u32,
    left: f64,
    hits: usize,
) -> u64 {
    let s = next_second_start().await;
    for server in servers {
        let first = ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
        assert_eq!(answer_ttl(&first), ttl);
    }
    assert_still_in_second(s, "storing the entries");
    let expires = (s + u64::from(ttl)) as f64;
    sleep_until_unix(expires - left).await;
    for server in servers {
        for _ in 0..hits {
            let reply = ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
            assert_eq!(a_records(&reply), vec![ANSWER_V4]);
            // The old entry in its last second, or (once a prefetch has landed) the new one.
            let shown = answer_ttl(&reply);
            assert!(
                shown == 1 || shown >= ttl - 1,
                "a hit in the last second shows TTL {shown}"
            );
        }
    }
    assert!(
        unix_now() < expires,
        "the hits took too long and reached expiry; machine too slow?"
    );
    s
}

#[tokio::test]
async fn prefetch_refreshes_a_nearly_expired_entry_exactly_once() {
    let ttl = 12;
    let up = FakeUpstream::start(Behaviour::AnswerTtl(ttl));
    let server = Server::start(&["--upstream", &up.arg(), "--prefetch"]);
    let plain_up = FakeUpstream::start(Behaviour::AnswerTtl(ttl));
    let plain = Server::start(&["--upstream", &plain_up.arg()]);
    let qname = "c9-prefetch.example.com.";

    // 0.4 s of 12 left: under 10 %.
    let stored = hit_near_expiry(&[&server, &plain], qname, ttl, 0.4, 5).await;
    let expires = (stored + u64::from(ttl)) as f64;

    assert!(
        up.wait_for_count(qname, 2, BACKGROUND_WAIT).await,
        "no prefetch after 5 hits with under 10% of the TTL left"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(up.count(qname), 2, "more than one prefetch for 5 hits");
    assert_eq!(
        cache_metric(&server, "rind_cache_prefetches_total").await,
        1.0
    );
    assert_eq!(cache_metric(&server, "rind_cache_hits_total").await, 5.0);

    // The refreshed entry answers after the old one would have expired.
    sleep_until_unix(expires + 0.2).await;
    let reply = ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
    assert!(
        answer_ttl(&reply) >= ttl - 2,
        "TTL {} after the prefetch",
        answer_ttl(&reply)
    );
    assert_eq!(up.count(qname), 2, "the prefetched answer was not cached");

    // Without --prefetch the hits never reach upstream.
    assert_eq!(plain_up.count(qname), 1, "refresh without --prefetch");
    assert_eq!(cache_metric(&plain, "rind_cache_hits_total").await, 5.0);
    assert_eq!(
        cache_metric(&plain, "rind_cache_prefetches_total").await,
        0.0
    );
}

#[tokio::test]
async fn prefetch_also_works_for_short_ttls() {
    // TTL 5, hit with 0.3 s left (6 % of the TTL): the brief's "less than 10 % left".
    let ttl = 5;
    let up = FakeUpstream::start(Behaviour::AnswerTtl(ttl));
    let server = Server::start(&["--upstream", &up.arg(), "--prefetch"]);
    let qname = "c9-short.example.com.";

    hit_near_expiry(&[&server], qname, ttl, 0.3, 5).await;
    assert!(
        up.wait_for_count(qname, 2, BACKGROUND_WAIT).await,
        "no prefetch for a TTL {ttl} entry hit 5 times with 0.3 s left \
         (rind_cache_prefetches_total {})",
        cache_metric(&server, "rind_cache_prefetches_total").await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(up.count(qname), 2);
    assert_eq!(
        cache_metric(&server, "rind_cache_prefetches_total").await,
        1.0
    );
}

// ---------------------------------------------------------------------------------------
// 10. The API

fn find<'a>(entries: &'a [Value], name: &str, rtype: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| e["name"] == name && e["type"] == rtype)
        .unwrap_or_else(|| panic!("no {name} {rtype} in {entries:?}"))
}

#[tokio::test]
async fn api_lists_filters_and_flushes_the_cache() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let nx = "c10-nx.example.com.";
    up.set_rule(
        nx,
        Behaviour::NxDomainSoa {
            ttl: 60,
            minimum: 60,
        },
    );
    let server = Server::start(&["--upstream", &up.arg()]);
    let addr = server.dns_addr();
    let a = "c10-a.example.com.";
    let b = "c10-b.example.com.";

    ask_udp(addr, &query("C10-A.Example.com.", RecordType::A)).await;
    ask_udp(addr, &query(a, RecordType::AAAA)).await;
    ask_udp(addr, &query(b, RecordType::A)).await;
    ask_udp(addr, &query(nx, RecordType::A)).await;

    let all = cache_list(&server, "").await;
    assert_eq!(all.len(), 4, "{all:?}");
    let entry = find(&all, a, "A");
    assert_eq!(entry["rcode"], "NOERROR");
    let ttl = entry["ttl"].as_u64().expect("ttl is a number");
    assert!((298..=300).contains(&ttl), "ttl {ttl}");
    assert_eq!(find(&all, a, "AAAA")["rcode"], "NOERROR");
    let nx_entry = find(&all, nx, "A");
    assert_eq!(nx_entry["rcode"], "NXDOMAIN");
    let nx_ttl = nx_entry["ttl"].as_u64().expect("ttl is a number");
    assert!((58..=60).contains(&nx_ttl), "negative ttl {nx_ttl}");

    // ?name= is normalised like stored names: any case, trailing dot optional.
    for filter in [
        "c10-a.example.com",
        "c10-a.example.com.",
        "C10-A.Example.COM",
        "WWW.nothing.example.com",
    ] {
        let listed = cache_list(&server, &format!("?name={filter}")).await;
        if filter.starts_with("WWW") {
            assert!(listed.is_empty(), "?name={filter}: {listed:?}");
            continue;
        }
        assert_eq!(listed.len(), 2, "?name={filter}: {listed:?}");
        assert!(listed.iter().all(|e| e["name"] == a), "{listed:?}");
    }

    // Flush one name (any case): both its types go, the others stay.
    let deleted = http_delete(
        server.http_addr(),
        "/api/v1/cache?name=C10-A.example.COM",
        None,
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert!(cache_list(&server, "?name=c10-a.example.com")
        .await
        .is_empty());
    assert_eq!(cache_list(&server, "").await.len(), 2);
    ask_udp(addr, &query(a, RecordType::A)).await;
    ask_udp(addr, &query(b, RecordType::A)).await;
    ask_udp(addr, &query(nx, RecordType::A)).await;
    assert_eq!(
        up.count(a),
        3,
        "the flushed name was not asked upstream again"
    );
    assert_eq!(up.count(b), 1, "flushing one name flushed another");
    assert_eq!(up.count(nx), 1, "flushing one name flushed another");

    // Flush everything.
    let deleted = http_delete(server.http_addr(), "/api/v1/cache", None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert!(cache_list(&server, "").await.is_empty());
    assert_eq!(cache_metric(&server, "rind_cache_entries").await, 0.0);
    for qname in [a, b, nx] {
        ask_udp(addr, &query(qname, RecordType::A)).await;
    }
    assert_eq!(up.count(a), 4);
    assert_eq!(up.count(b), 2, "still cached after flushing all");
    assert_eq!(up.count(nx), 2, "still cached after flushing all");
}

#[tokio::test]
async fn cache_api_needs_the_token_when_one_is_set() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let token = "c10-secret";
    let server = Server::start(&["--upstream", &up.arg(), "--api-token", token]);
    let qname = "c10-token.example.com.";
    ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
    let http = server.http_addr();

    for given in [None, Some("wrong")] {
        let list = http_get(http, "/api/v1/cache", given).await;
        assert_eq!(list.status, 401, "GET with token {given:?}: {}", list.body);
        assert!(list.json()["error"].is_string(), "{}", list.body);
        let flush = http_delete(http, "/api/v1/cache", given).await;
        assert_eq!(
            flush.status, 401,
            "DELETE with token {given:?}: {}",
            flush.body
        );
        assert!(flush.json()["error"].is_string(), "{}", flush.body);
    }
    // The refused flush did nothing.
    ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
    assert_eq!(
        up.count(qname),
        1,
        "a DELETE without token flushed the cache"
    );

    let list = http_get(http, "/api/v1/cache", Some(token)).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json().as_array().map(Vec::len), Some(1));
}
