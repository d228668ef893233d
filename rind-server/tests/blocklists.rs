//! Blocklists and the allowlist against the real binary: lists fetched from a fake HTTP
//! server the test runs on 127.0.0.1, blocked names answered over DNS and never forwarded,
//! the allowlist and local records winning, lists kept across a restart without the network,
//! failed refreshes keeping the last copy, and the refresh interval.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};

/// Longest a test waits for a background refresh to show.
const REFRESH_WAIT: Duration = Duration::from_secs(20);

const HOSTS: &str = "\
# a hosts file, as StevenBlack's starts
127.0.0.1 localhost
0.0.0.0 ads.example.com
0.0.0.0 cached.example.com # asked before the list came
||tracker.example.net^
plain.example.org
@@||not-understood.example^
";

async fn ask(server: &Server, name: &str, rtype: RecordType) -> Message {
    ask_udp(server.dns_addr(), &query(name, rtype)).await
}

fn ttls(msg: &Message) -> Vec<u32> {
    msg.answers.iter().map(|r| r.ttl).collect()
}

async fn add(server: &Server, body: Value) -> HttpReply {
    http_post(server.http_addr(), "/api/v1/blocklists", &body, None).await
}

async fn lists(server: &Server) -> Vec<Value> {
    let reply = http_get(server.http_addr(), "/api/v1/blocklists", None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json().as_array().expect("an array").clone()
}

/// Polls `check` every 100 ms until it holds or `wait` is over.
async fn eventually(wait: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn is_null_blocked(server: &Server, name: &str) -> bool {
    a_records(&ask(server, name, RecordType::A).await) == [Ipv4Addr::UNSPECIFIED]
}

#[tokio::test]
async fn a_fetched_list_blocks_over_dns_and_nothing_blocked_reaches_upstream() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let lists_http = ListServer::start();
    lists_http.serve("/hosts.txt", HOSTS);
    let server = Server::start(&["--upstream", &up.arg()]);

    // Cached before the list: the list must win over the cache.
    let before = ask(&server, "cached.example.com.", RecordType::A).await;
    assert_eq!(a_records(&before), [ANSWER_V4]);

    let created = add(&server, json!({"url": lists_http.url("/hosts.txt")})).await;
    assert_eq!(created.status, 201, "{created:?}");
    let list = created.json();
    assert_eq!(list["domains"], 4, "{list}");
    // localhost (one label) and the @@ exception.
    assert_eq!(list["skipped"], 2, "{list}");
    assert_eq!(list["url"], lists_http.url("/hosts.txt"));
    assert_eq!(lists_http.requests("/hosts.txt"), 1);

    for name in [
        "ads.example.com.",
        "ADS.Example.COM.",
        "cached.example.com.",
    ] {
        let a = ask(&server, name, RecordType::A).await;
        assert_eq!(rcode(&a), ResponseCode::NoError, "{name}");
        assert_eq!(a_records(&a), [Ipv4Addr::UNSPECIFIED], "{name}");
        assert_eq!(ttls(&a), [60], "{name}");
    }
    let aaaa = ask(&server, "ads.example.com.", RecordType::AAAA).await;
    assert_eq!(aaaa_records(&aaaa), [Ipv6Addr::UNSPECIFIED]);
    assert_eq!(ttls(&aaaa), [60]);
    let mx = ask(&server, "ads.example.com.", RecordType::MX).await;
    assert_eq!(rcode(&mx), ResponseCode::NoError);
    assert!(mx.answers.is_empty(), "{mx:?}");
    let tcp = ask_tcp(
        server.dns_addr(),
        &query("plain.example.org.", RecordType::A),
    )
    .await;
    assert_eq!(a_records(&tcp), [Ipv4Addr::UNSPECIFIED]);

    // `||` rules cover the names below; hosts and plain lines only the name itself.
    assert!(is_null_blocked(&server, "tracker.example.net.").await);
    assert!(is_null_blocked(&server, "a.b.tracker.example.net.").await);
    let below_hosts = ask(&server, "www.ads.example.com.", RecordType::A).await;
    assert_eq!(a_records(&below_hosts), [ANSWER_V4]);
    let beside = ask(&server, "nottracker.example.net.", RecordType::A).await;
    assert_eq!(a_records(&beside), [ANSWER_V4]);

    for blocked in [
        "ads.example.com.",
        "plain.example.org.",
        "tracker.example.net.",
        "a.b.tracker.example.net.",
    ] {
        assert_eq!(up.count(blocked), 0, "{blocked} was forwarded");
    }
    assert_eq!(
        up.count("cached.example.com."),
        1,
        "asked once, before the list"
    );

    let blocked = metric(server.http_addr(), "rind_blocked_total", None).await;
    assert_eq!(blocked, 8.0);
    let names = metric(server.http_addr(), "rind_blocklist_domains", None).await;
    assert_eq!(names, 4.0);
    let log = http_get(server.http_addr(), "/api/v1/querylog?limit=100", None).await;
    let entries = log.json();
    let sources: Vec<(&str, &str)> = entries
        .as_array()
        .expect("array")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default(),
                e["source"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        sources.contains(&("tracker.example.net.", "blocked")),
        "{sources:?}"
    );
    assert!(
        sources.contains(&("www.ads.example.com.", "upstream")),
        "{sources:?}"
    );
}

#[tokio::test]
async fn nxdomain_mode_answers_every_type_nxdomain() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg(), "--block-mode", "nxdomain"]);
    let created = add(
        &server,
        json!({"name": "mine", "domains": ["||ads.example^", "one.example", "not a name"]}),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.json()["domains"], 2);
    assert_eq!(created.json()["skipped"], 1);
    for (name, rtype) in [
        ("ads.example.", RecordType::A),
        ("x.ads.example.", RecordType::AAAA),
        ("one.example.", RecordType::TXT),
    ] {
        let reply = ask(&server, name, rtype).await;
        assert_eq!(rcode(&reply), ResponseCode::NXDomain, "{name} {rtype}");
        assert!(reply.answers.is_empty());
        assert!(has_soa_authority(&reply), "{reply:?}");
    }
    assert_eq!(up.total(), 0);
    // The env twin works the same.
    let env = ServerBuilder::new()
        .args(&["--upstream", &up.arg()])
        .env("RIND_BLOCK_MODE", "nxdomain")
        .start();
    add(&env, json!({"name": "mine", "domains": ["two.example"]})).await;
    let reply = ask(&env, "two.example.", RecordType::A).await;
    assert_eq!(rcode(&reply), ResponseCode::NXDomain);
}

#[tokio::test]
async fn the_allowlist_and_local_records_win() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);
    let http = server.http_addr();
    let created = add(
        &server,
        json!({"name": "all", "domains": ["||example.com^"]}),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert!(is_null_blocked(&server, "cdn.example.com.").await);

    let allowed = http_post(
        http,
        "/api/v1/allowlist",
        &json!({"domain": "CDN.example.com."}),
        None,
    )
    .await;
    assert_eq!(allowed.status, 201, "{allowed:?}");
    assert_eq!(allowed.json()["domain"], "cdn.example.com");
    for name in ["cdn.example.com.", "img.cdn.example.com."] {
        let reply = ask(&server, name, RecordType::A).await;
        assert_eq!(a_records(&reply), [ANSWER_V4], "{name}");
    }
    assert!(is_null_blocked(&server, "ads.example.com.").await);
    let again = http_post(
        http,
        "/api/v1/allowlist",
        &json!({"domain": "cdn.example.com"}),
        None,
    )
    .await;
    assert_eq!(again.status, 409, "{again:?}");
    let bad = http_post(
        http,
        "/api/v1/allowlist",
        &json!({"domain": "not a name"}),
        None,
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.json()["error"]
        .as_str()
        .unwrap_or_default()
        .contains("not a domain"));
    let listed = http_get(http, "/api/v1/allowlist", None).await;
    assert_eq!(listed.json(), json!([{"domain": "cdn.example.com"}]));

    // A local record wins over the list.
    let record = http_post(
        http,
        "/api/v1/records",
        &json!({"name": "nas.example.com", "type": "A", "data": "192.168.1.5"}),
        None,
    )
    .await;
    assert_eq!(record.status, 201, "{record:?}");
    let nas = ask(&server, "nas.example.com.", RecordType::A).await;
    assert_eq!(a_records(&nas), [Ipv4Addr::new(192, 168, 1, 5)]);

    let removed = http_delete(http, "/api/v1/allowlist/cdn.example.com.", None).await;
    assert_eq!(removed.status, 204, "{removed:?}");
    assert!(is_null_blocked(&server, "cdn.example.com.").await);
    let gone = http_delete(http, "/api/v1/allowlist/cdn.example.com", None).await;
    assert_eq!(gone.status, 404, "{gone:?}");
}

#[tokio::test]
async fn lists_outlive_the_network_a_failed_refresh_keeps_the_copy_and_delete_unblocks() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let mut lists_http = ListServer::start();
    lists_http.serve("/list", "||ads.example^\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start_on(&data, &up, &[]);
    let created = add(
        &server,
        json!({"url": lists_http.url("/list"), "name": "ads"}),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_str().expect("id").to_string();
    assert_eq!(created.json()["name"], "ads");

    // An unchanged list costs a 304.
    let refresh = format!("/api/v1/blocklists/{id}/refresh");
    let same = http_post(server.http_addr(), &refresh, &json!(null), None).await;
    assert_eq!(same.status, 200, "{same:?}");
    assert_eq!(lists_http.not_modified(), 1);

    // The list's server fails: the copy kept stays in use, and the list says why.
    lists_http.fail("/list", 500);
    let failed = http_post(server.http_addr(), &refresh, &json!(null), None).await;
    assert_eq!(failed.status, 502, "{failed:?}");
    assert!(failed.json()["error"]
        .as_str()
        .unwrap_or_default()
        .contains("500"));
    assert!(is_null_blocked(&server, "x.ads.example.").await);
    let shown = lists(&server).await;
    assert!(
        shown[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("HTTP 500"),
        "{shown:?}"
    );
    assert_eq!(shown[0]["domains"], 1);

    // Restarted with the list's server gone altogether: blocking goes on from the store.
    lists_http.stop();
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
    drop(server);
    let server = Server::start_on(&data, &up, &[]);
    assert!(is_null_blocked(&server, "ads.example.").await);
    assert!(is_null_blocked(&server, "www.ads.example.").await);
    let unreachable = http_post(server.http_addr(), &refresh, &json!(null), None).await;
    assert_eq!(unreachable.status, 502, "{unreachable:?}");
    assert!(is_null_blocked(&server, "ads.example.").await);
    assert_eq!(up.count("ads.example."), 0);

    let deleted = http_delete(
        server.http_addr(),
        &format!("/api/v1/blocklists/{id}"),
        None,
    )
    .await;
    assert_eq!(deleted.status, 204, "{deleted:?}");
    let open = ask(&server, "ads.example.", RecordType::A).await;
    assert_eq!(a_records(&open), [ANSWER_V4]);
    assert!(lists(&server).await.is_empty());
    let again = http_delete(
        server.http_addr(),
        &format!("/api/v1/blocklists/{id}"),
        None,
    )
    .await;
    assert_eq!(again.status, 404, "{again:?}");
}

#[tokio::test]
async fn lists_are_refreshed_every_interval_and_not_before() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let lists_http = ListServer::start();
    lists_http.serve("/fast", "one.example\n");
    lists_http.serve("/slow", "slow.example\n");
    let fast = Server::start(&["--upstream", &up.arg(), "--blocklist-refresh", "1"]);
    let slow = ServerBuilder::new()
        .args(&["--upstream", &up.arg()])
        .env("RIND_BLOCKLIST_REFRESH", "3600")
        .start();
    assert_eq!(
        add(&fast, json!({"url": lists_http.url("/fast")}))
            .await
            .status,
        201
    );
    assert_eq!(
        add(&slow, json!({"url": lists_http.url("/slow")}))
            .await
            .status,
        201
    );

    // The list changes upstream: the next refresh brings the new name in, by itself.
    lists_http.serve("/fast", "one.example\ntwo.example\n");
    let refreshed = eventually(REFRESH_WAIT, async || {
        is_null_blocked(&fast, "two.example.").await
    })
    .await;
    assert!(
        refreshed,
        "the list was not refreshed: {}",
        fast.stderr_text()
    );
    assert!(lists_http.requests("/fast") >= 2);
    // A refresh seen after the change, and one of an unchanged list, which costs a 304.
    let more = eventually(REFRESH_WAIT, async || lists_http.not_modified() >= 1).await;
    assert!(more, "no conditional refresh");

    // An hour's interval: the list fetched when it was added is the only fetch.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lists_http.requests("/slow"), 1);
}

#[tokio::test]
async fn bad_lists_and_requests_get_clear_errors() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let lists_http = ListServer::start();
    lists_http.serve("/garbage", "<html>\n<body>not a list</body>\n</html>\n");
    let server = Server::start(&["--upstream", &up.arg()]);
    let cases = [
        (json!({"url": lists_http.url("/garbage")}), 400, "no domain"),
        (json!({"url": lists_http.url("/missing")}), 502, "HTTP 404"),
        (json!({"url": "ftp://127.0.0.1/list"}), 400, "http"),
        (json!({"url": "not a url"}), 400, "not a URL"),
        (
            json!({"name": "x", "domains": ["not a name"]}),
            400,
            "no domain",
        ),
        (json!({"domains": ["a.example"]}), 400, "needs a \"name\""),
        (json!({}), 400, "missing field"),
        (
            json!({"url": "http://127.0.0.1:9/x", "domains": []}),
            400,
            "not both",
        ),
        (
            json!({"url": "http://127.0.0.1:9/x", "colour": "red"}),
            400,
            "unknown field",
        ),
    ];
    for (body, status, says) in cases {
        let reply = add(&server, body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {reply:?}");
        let error = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(error.contains(says), "{body}: {error}");
    }
    let unreachable = add(&server, json!({"url": "http://127.0.0.1:9/list"})).await;
    assert_eq!(unreachable.status, 502, "{unreachable:?}");
    let huge: Vec<String> = (0..10_000).map(|i| format!("host{i}.example")).collect();
    let too_big = add(&server, json!({"name": "big", "domains": huge})).await;
    assert_eq!(too_big.status, 413, "{too_big:?}");
    assert!(lists(&server).await.is_empty());

    lists_http.serve("/dup", "a.example\n");
    let first = add(&server, json!({"url": lists_http.url("/dup")})).await;
    assert_eq!(first.status, 201, "{first:?}");
    let second = add(&server, json!({"url": lists_http.url("/dup")})).await;
    assert_eq!(second.status, 409, "{second:?}");
    let missing = http_post(
        server.http_addr(),
        "/api/v1/blocklists/999/refresh",
        &json!(null),
        None,
    )
    .await;
    assert_eq!(missing.status, 404, "{missing:?}");
    let inline = add(&server, json!({"name": "inline", "domains": ["b.example"]})).await;
    let id = inline.json()["id"].as_str().expect("id").to_string();
    let nothing = http_post(
        server.http_addr(),
        &format!("/api/v1/blocklists/{id}/refresh"),
        &json!(null),
        None,
    )
    .await;
    assert_eq!(nothing.status, 400, "{nothing:?}");
}

#[tokio::test]
async fn the_routes_need_the_token_when_one_is_set() {
    let server = Server::start(&["--api-token", "t0ken"]);
    for path in ["/api/v1/blocklists", "/api/v1/allowlist"] {
        let reply = http_get(server.http_addr(), path, None).await;
        assert_eq!(reply.status, 401, "{path}: {reply:?}");
        let ok = http_get(server.http_addr(), path, Some("t0ken")).await;
        assert_eq!(ok.status, 200, "{path}: {ok:?}");
    }
}

/// Cache hits skip the blocking lookup, which holds only while the cache never keeps a
/// blocked name: a list added drops the cached answers it blocks (memory and disk), and one
/// removed lets the name go upstream again instead of being served an old answer.
#[tokio::test]
async fn a_list_change_drops_the_cached_answers_it_blocks_also_across_a_crash() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let dir = tempfile::tempdir().expect("dir");
    let mut server = Server::start_on(dir.path(), &up, &[]);
    let name = "cached-then-blocked.example.com.";

    assert_eq!(
        a_records(&ask(&server, name, RecordType::A).await),
        [ANSWER_V4]
    );
    assert_eq!(
        a_records(&ask(&server, name, RecordType::A).await),
        [ANSWER_V4]
    );
    assert_eq!(up.queries(name), 1, "the second answer came from the cache");

    let created = add(
        &server,
        json!({"name": "one", "domains": ["cached-then-blocked.example.com"]}),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_str().expect("id").to_string();
    assert!(is_null_blocked(&server, name).await);
    let cached = http_get(server.http_addr(), "/api/v1/cache", None).await;
    assert!(!cached.body.contains("cached-then-blocked"), "{cached:?}");

    // A crash right after: the list is on disk; whether or not the cache's deletion got
    // there too, the restarted server must not answer from the old cached copy.
    server.kill9();
    let server = Server::start_on(dir.path(), &up, &[]);
    assert!(is_null_blocked(&server, name).await);
    let cached = http_get(server.http_addr(), "/api/v1/cache", None).await;
    assert!(!cached.body.contains("cached-then-blocked"), "{cached:?}");
    assert_eq!(up.queries(name), 1, "blocked names are not forwarded");

    let removed = http_delete(
        server.http_addr(),
        &format!("/api/v1/blocklists/{id}"),
        None,
    )
    .await;
    assert_eq!(removed.status, 204, "{removed:?}");
    assert_eq!(
        a_records(&ask(&server, name, RecordType::A).await),
        [ANSWER_V4]
    );
    assert_eq!(
        up.queries(name),
        2,
        "unblocked, the name went upstream again"
    );
}
