//! The cache across real restarts of the binary on one data dir: after `kill -9` (entries
//! written behind at least [`WRITE_BEHIND`] before the crash) and after SIGTERM (everything,
//! flushed on the way out); flushed entries stay flushed; expired ones are not served.
//!
//! Each restart gets a fresh fake upstream, so its counts show what the new process could
//! not answer from disk.

mod common;

use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::Value;

/// How long a test waits after the last cache write before it kills the server: the cache is
/// written to sled in batches at least every 250 ms, so 0.6 s leaves room for one batch.
const WRITE_BEHIND: Duration = Duration::from_millis(600);
/// How long a SIGTERM'd server may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

fn answer_ttl(reply: &Message) -> u32 {
    assert_eq!(reply.answers.len(), 1, "answers: {:?}", reply.answers);
    reply.answers[0].ttl
}

async fn cache_list(server: &Server, query: &str) -> Vec<Value> {
    let reply = http_get(server.http_addr(), &format!("/api/v1/cache{query}"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json().as_array().cloned().expect("an array")
}

async fn flush(server: &Server, query: &str) {
    let reply = http_delete(server.http_addr(), &format!("/api/v1/cache{query}"), None).await;
    assert_eq!(
        reply.status, 204,
        "DELETE /api/v1/cache{query}: {}",
        reply.body
    );
}

#[tokio::test]
async fn kill9_restart_serves_fresh_entries_from_disk_and_drops_expired_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let fresh = ["p6-fresh-1.example.com.", "p6-fresh-2.example.com."];
    let nx = "p6-nx.example.com.";
    let short = "p6-short.example.com.";

    let up = FakeUpstream::start(Behaviour::AnswerTtl(300));
    up.set_rule(short, Behaviour::AnswerTtl(2));
    up.set_rule(
        nx,
        Behaviour::NxDomainSoa {
            ttl: 300,
            minimum: 300,
        },
    );
    let mut first = Server::start_on(&data, &up, &[]);
    let stored = unix_now().floor();
    for qname in fresh.iter().chain([&nx, &short]) {
        ask_udp(first.dns_addr(), &query(qname, RecordType::A)).await;
    }
    assert_eq!(up.total(), 4);
    tokio::time::sleep(WRITE_BEHIND).await;
    first.kill9();

    // The 2 s entry has expired (stored at second `stored` or the next) before the restart
    // loads the disk copy; the others have about 297 s left.
    sleep_until_unix(stored + 3.1).await;
    let up2 = FakeUpstream::start(Behaviour::Answer);
    let second = Server::start_on(&data, &up2, &[]);
    let addr = second.dns_addr();

    for qname in fresh {
        let reply = ask_udp(addr, &query(qname, RecordType::A)).await;
        assert_eq!(a_records(&reply), vec![ANSWER_V4], "{qname}");
        let ttl = answer_ttl(&reply);
        assert!(
            (290..300).contains(&ttl),
            "{qname}: TTL {ttl} after a restart 3 s later"
        );
    }
    let reply = ask_udp(addr, &query(nx, RecordType::A)).await;
    assert_eq!(rcode(&reply), ResponseCode::NXDomain);
    assert!(has_soa_authority(&reply), "negative entry lost its SOA");
    assert_eq!(
        up2.total(),
        0,
        "entries written {WRITE_BEHIND:?} before kill -9 were not served from disk: {:?}",
        up2.seen().iter().map(|s| &s.qname).collect::<Vec<_>>()
    );

    let reply = ask_udp(addr, &query(short, RecordType::A)).await;
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    assert_eq!(up2.count(short), 1, "an expired entry was served from disk");
    assert_eq!(answer_ttl(&reply), ANSWER_TTL, "the new answer's TTL");

    let listed = cache_list(&second, "").await;
    assert_eq!(listed.len(), 4, "{listed:?}");
}

#[tokio::test]
async fn sigterm_restart_keeps_entries_written_just_before_shutdown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let early = "p6-term-early.example.com.";
    let late = "p6-term-late.example.com.";

    let up = FakeUpstream::start(Behaviour::Answer);
    let mut first = Server::start_on(&data, &up, &[]);
    ask_udp(first.dns_addr(), &query(early, RecordType::A)).await;
    tokio::time::sleep(WRITE_BEHIND).await;
    // No wait after this one: a clean shutdown writes what is still queued.
    ask_udp(first.dns_addr(), &query(late, RecordType::AAAA)).await;
    first.sigterm();
    let status = first.wait_exit(EXIT_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM exit status {status:?}; stderr:\n{}",
        first.stderr_text()
    );

    let up2 = FakeUpstream::start(Behaviour::Answer);
    let second = Server::start_on(&data, &up2, &[]);
    let reply = ask_udp(second.dns_addr(), &query(early, RecordType::A)).await;
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    let reply = ask_udp(second.dns_addr(), &query(late, RecordType::AAAA)).await;
    assert_eq!(aaaa_records(&reply), vec![ANSWER_V6]);
    assert_eq!(
        up2.total(),
        0,
        "after a clean restart these went upstream: {:?}",
        up2.seen().iter().map(|s| &s.qname).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_flushed_name_is_not_reloaded_after_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let kept = "p10-kept.example.com.";
    let flushed = "p10-flushed.example.com.";

    let up = FakeUpstream::start(Behaviour::Answer);
    let mut first = Server::start_on(&data, &up, &[]);
    for qname in [kept, flushed] {
        ask_udp(first.dns_addr(), &query(qname, RecordType::A)).await;
    }
    // The puts reach the disk before the flush does.
    tokio::time::sleep(WRITE_BEHIND).await;
    flush(&first, "?name=P10-Flushed.Example.com").await;
    assert!(cache_list(&first, "?name=p10-flushed.example.com")
        .await
        .is_empty());
    // No wait: a 204 means the flush is already on disk.
    first.kill9();

    let up2 = FakeUpstream::start(Behaviour::Answer);
    let second = Server::start_on(&data, &up2, &[]);
    let listed = cache_list(&second, "").await;
    assert_eq!(listed.len(), 1, "after restart: {listed:?}");
    assert_eq!(listed[0]["name"], kept);
    for qname in [kept, flushed] {
        ask_udp(second.dns_addr(), &query(qname, RecordType::A)).await;
    }
    assert_eq!(up2.count(kept), 0, "the kept entry was not reloaded");
    assert_eq!(
        up2.count(flushed),
        1,
        "the flushed entry came back from disk"
    );
}

#[tokio::test]
async fn flush_all_is_not_undone_by_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let names = ["p10-all-1.example.com.", "p10-all-2.example.com."];
    let after = "p10-after.example.com.";

    let up = FakeUpstream::start(Behaviour::Answer);
    let mut first = Server::start_on(&data, &up, &[]);
    for qname in names {
        ask_udp(first.dns_addr(), &query(qname, RecordType::A)).await;
    }
    tokio::time::sleep(WRITE_BEHIND).await;
    flush(&first, "").await;
    // No wait: a 204 means the flush is already on disk.
    first.kill9();

    let up2 = FakeUpstream::start(Behaviour::Answer);
    let mut second = Server::start_on(&data, &up2, &[]);
    let listed = cache_list(&second, "").await;
    assert!(listed.is_empty(), "after restart: {listed:?}");
    for qname in names {
        ask_udp(second.dns_addr(), &query(qname, RecordType::A)).await;
        assert_eq!(
            up2.count(qname),
            1,
            "{qname} came back from disk after DELETE all"
        );
    }
    flush(&second, "").await;
    // Cached after the flush: this one must survive it.
    ask_udp(second.dns_addr(), &query(after, RecordType::A)).await;
    tokio::time::sleep(WRITE_BEHIND).await;
    second.kill9();

    let up3 = FakeUpstream::start(Behaviour::Answer);
    let third = Server::start_on(&data, &up3, &[]);
    let listed = cache_list(&third, "").await;
    assert_eq!(listed.len(), 1, "after the second restart: {listed:?}");
    assert_eq!(listed[0]["name"], after);
    ask_udp(third.dns_addr(), &query(after, RecordType::A)).await;
    assert_eq!(
        up3.count(after),
        0,
        "an entry cached after the flush was lost"
    );
}

#[tokio::test]
async fn flushing_a_name_also_removes_its_entries_that_only_the_disk_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    // Shorter-lived, so a warm start with room for one entry loads the other one.
    let flushed = "p10-disk-only.example.com.";
    let kept = "p10-in-memory.example.com.";

    let up = FakeUpstream::start(Behaviour::AnswerTtl(3600));
    up.set_rule(flushed, Behaviour::AnswerTtl(600));
    let mut first = Server::start_on(&data, &up, &[]);
    for qname in [flushed, kept] {
        ask_udp(first.dns_addr(), &query(qname, RecordType::A)).await;
        ask_udp(first.dns_addr(), &query(qname, RecordType::AAAA)).await;
    }
    tokio::time::sleep(WRITE_BEHIND).await;
    first.kill9();

    let up2 = FakeUpstream::start(Behaviour::AnswerTtl(3600));
    let mut second = Server::start_on(&data, &up2, &["--cache-size", "2"]);
    let names: Vec<Value> = cache_list(&second, "")
        .await
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(
        names,
        [kept, kept],
        "the warm start loaded the wrong entries"
    );
    flush(&second, "?name=p10-disk-only.example.com").await;
    second.kill9();

    let up3 = FakeUpstream::start(Behaviour::AnswerTtl(3600));
    let third = Server::start_on(&data, &up3, &[]);
    let listed = cache_list(&third, "").await;
    assert!(
        listed.iter().all(|e| e["name"] != flushed),
        "a flushed name came back from disk: {listed:?}"
    );
    assert_eq!(listed.len(), 2, "after restart: {listed:?}");
}

#[tokio::test]
async fn warm_start_loads_at_most_cache_size_entries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");

    let up = FakeUpstream::start(Behaviour::Answer);
    let mut first = Server::start_on(&data, &up, &[]);
    for i in 0..40 {
        let qname = format!("p7-{i}.example.com.");
        ask_udp(first.dns_addr(), &query(&qname, RecordType::A)).await;
    }
    first.sigterm();
    assert!(first.wait_exit(EXIT_TIMEOUT).is_some());

    let up2 = FakeUpstream::start(Behaviour::Answer);
    let second = Server::start_on(&data, &up2, &["--cache-size", "10"]);
    let listed = cache_list(&second, "").await;
    assert!(
        !listed.is_empty() && listed.len() <= 10,
        "--cache-size 10 loaded {} entries",
        listed.len()
    );
    let entries = metric(second.http_addr(), "rind_cache_entries", None).await;
    assert!(entries <= 10.0, "rind_cache_entries {entries}");
}

/// An entry refreshed from upstream while the old one is still held (expired, inside the
/// serve-stale window) is the one on disk afterwards: a clean restart serves it.
#[tokio::test]
async fn an_entry_refreshed_in_place_survives_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let qname = "p6-refreshed.example.com.";

    let up = FakeUpstream::start(Behaviour::AnswerTtl(1));
    let mut first = Server::start_on(&data, &up, &["--serve-stale", "60"]);
    let stored = unix_now().floor();
    ask_udp(first.dns_addr(), &query(qname, RecordType::A)).await;
    sleep_until_unix(stored + 2.1).await;
    up.set_default(Behaviour::AnswerTtl(300));
    let reply = ask_udp(first.dns_addr(), &query(qname, RecordType::A)).await;
    assert_eq!(answer_ttl(&reply), 300);
    assert_eq!(up.count(qname), 2);
    tokio::time::sleep(WRITE_BEHIND).await;
    first.sigterm();
    assert!(first.wait_exit(EXIT_TIMEOUT).is_some_and(|s| s.success()));

    let up2 = FakeUpstream::start(Behaviour::Answer);
    let second = Server::start_on(&data, &up2, &["--serve-stale", "60"]);
    let listed = cache_list(&second, "").await;
    let reply = ask_udp(second.dns_addr(), &query(qname, RecordType::A)).await;
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    assert_eq!(
        up2.count(qname),
        0,
        "the refreshed entry (TTL 300) was not on disk after a clean restart; \
         GET /api/v1/cache after restart: {listed:?}"
    );
}

/// An answer that several clients waited for together is on disk like any other.
#[tokio::test]
async fn an_answer_shared_by_concurrent_clients_survives_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let qname = "p6-together.example.com.";

    let up = FakeUpstream::start(Behaviour::Delay(Duration::from_millis(300)));
    let mut first = Server::start_on(&data, &up, &[]);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let addr = first.dns_addr();
        set.spawn(async move { ask_udp(addr, &query(qname, RecordType::A)).await });
    }
    while let Some(done) = set.join_next().await {
        assert_eq!(a_records(&done.expect("query task")), vec![ANSWER_V4]);
    }
    assert_eq!(up.count(qname), 1);
    first.sigterm();
    assert!(first.wait_exit(EXIT_TIMEOUT).is_some_and(|s| s.success()));

    let up2 = FakeUpstream::start(Behaviour::Answer);
    let second = Server::start_on(&data, &up2, &[]);
    let listed = cache_list(&second, "").await;
    ask_udp(second.dns_addr(), &query(qname, RecordType::A)).await;
    assert_eq!(
        up2.count(qname),
        0,
        "an answer 5 clients waited for was not on disk after a clean restart; \
         GET /api/v1/cache after restart: {listed:?}"
    );
}

/// The write-behind window holds whatever the phase of the server's internal timers: an
/// entry cached [`WRITE_BEHIND`] before `kill -9` survives, whether it was cached right after
/// start or a few hundred milliseconds later. Five servers, one per phase, run side by side,
/// each driven by its own thread (starting a server blocks the calling thread).
#[test]
fn kill9_keeps_entries_cached_600ms_before_whatever_the_timer_phase() {
    async fn one(delay_ms: u64) -> bool {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let qname = format!("p6-phase-{delay_ms}.example.com.");
        let up = FakeUpstream::start(Behaviour::Answer);
        let mut first = Server::start_on(&data, &up, &[]);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        ask_udp(first.dns_addr(), &query(&qname, RecordType::A)).await;
        tokio::time::sleep(WRITE_BEHIND).await;
        first.kill9();

        let up2 = FakeUpstream::start(Behaviour::Answer);
        let second = Server::start_on(&data, &up2, &[]);
        ask_udp(second.dns_addr(), &query(&qname, RecordType::A)).await;
        up2.count(&qname) == 0
    }
    let delays = [0u64, 100, 200, 300, 400];
    let kept: Vec<bool> = std::thread::scope(|scope| {
        let threads: Vec<_> = delays
            .iter()
            .map(|&delay| {
                scope.spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime")
                        .block_on(one(delay))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("phase thread"))
            .collect()
    });
    let lost: Vec<u64> = delays
        .iter()
        .zip(&kept)
        .filter(|(_, kept)| !**kept)
        .map(|(d, _)| *d)
        .collect();
    assert!(
        lost.is_empty(),
        "entries cached {WRITE_BEHIND:?} before kill -9 were lost when cached this many ms \
         after the server started: {lost:?} (of {delays:?})"
    );
}

/// The address the disk's entries in [`a_big_cache_loads_while_the_server_answers`] carry,
/// unlike the fake upstream's [`ANSWER_V4`].
const DISK_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(203, 0, 113, 7);

/// Writes `count` fresh answers for `host{i}.big.example.` (A, [`DISK_V4`], a day) into the
/// store in `dir`, as a long-running server would have left them.
fn fill_store(dir: &std::path::Path, count: usize) {
    use hickory_proto::op::{OpCode, Query};
    use hickory_proto::rr::{rdata::A, RData, Record};
    use rind_server::cache::{Entry, Fetched, TtlPolicy};
    use rind_server::store::{cache::CacheWrite, Store};

    let store = Store::open(dir).expect("open the store");
    let policy = TtlPolicy {
        min_ttl: 0,
        max_ttl: 86_400,
        max_negative_ttl: 3_600,
    };
    let fetched = Fetched {
        dnssec_ok: true,
        checking_disabled: false,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let writes: Vec<CacheWrite> = (0..count)
        .map(|i| {
            let question = Query::query(name(&format!("host{i}.big.example.")), RecordType::A);
            let mut reply = Message::response(0, OpCode::Query);
            reply.add_query(question.clone());
            let record = Record::from_rdata(question.name.clone(), 86_400, RData::A(A(DISK_V4)));
            reply.add_answer(record);
            let entry =
                Entry::from_upstream(&question, &reply, fetched, &policy, now).expect("cacheable");
            CacheWrite::Put {
                key: entry.key().as_bytes().to_vec(),
                expires_at: entry.expires_at(),
                value: entry.encode(),
            }
        })
        .collect();
    store.cache_apply(&writes).expect("write the entries");
    store.flush().expect("flush");
}

/// With a big cache on disk the server answers from the `listening` line on, before the cache
/// has loaded: a name not loaded yet goes upstream, and that newer answer is what the cache
/// keeps, not the older one the warm-up reads afterwards. At the end every entry is there.
#[tokio::test]
async fn a_big_cache_loads_while_the_server_answers() {
    const COUNT: usize = 100_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    fill_store(&data, COUNT);

    let up = FakeUpstream::start(Behaviour::Answer);
    let mut server = ServerBuilder::new()
        .args(&["--upstream", &up.arg(), "--cache-size", &COUNT.to_string()])
        .data_dir(&data)
        .during_warm_up()
        .start();
    // The warm-up goes freshest first, then by key from the last: host0 … host9 have the
    // shortest keys, so they come last.
    let early = "host0.big.example.";
    let first = a_records(&ask_udp(server.dns_addr(), &query(early, RecordType::A)).await);
    // Read from the fake upstream, not the disk: the server answered before the warm-up
    // reached host0 (a debug build loads 100,000 entries in about a second).
    assert_eq!(
        up.count(early),
        1,
        "{early} was not asked upstream during the warm-up"
    );
    assert_eq!(first, [ANSWER_V4]);
    server.wait_warm_up(Duration::from_secs(120));
    let finished = server
        .stderr_lines()
        .into_iter()
        .find(|l| l.contains("cache warm-up finished"))
        .expect("the warm-up finished");
    // COUNT when the warm-up put host0 in between the miss and the upstream answer, which
    // then replaced it.
    let loaded = [COUNT - 1, COUNT].map(|n| format!("loaded={n} "));
    assert!(
        loaded.iter().any(|l| finished.contains(l.as_str())),
        "expected {loaded:?}: {finished}"
    );

    let again = a_records(&ask_udp(server.dns_addr(), &query(early, RecordType::A)).await);
    assert_eq!(
        again, first,
        "the answer to {early} changed when the warm-up reached it"
    );
    assert_eq!(up.count(early), 1, "{early} asked upstream again");
    for i in [1, 500, 99_999] {
        let qname = format!("host{i}.big.example.");
        let reply = ask_udp(server.dns_addr(), &query(&qname, RecordType::A)).await;
        assert_eq!(a_records(&reply), [DISK_V4], "{qname}");
    }
    assert_eq!(up.total(), 1, "loaded names went upstream");
}
