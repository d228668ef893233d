//! The query log (`--query-log`, `GET /api/v1/querylog`) and the status route, against the
//! real binary: entries appear for real DNS queries with what a user looks for in them.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use serde_json::Value;
use tokio::net::UdpSocket;

/// GET the query log with `query` (e.g. `?limit=3`) and return the entries.
async fn querylog(server: &Server, query: &str) -> Vec<Value> {
    let reply = http_get(
        server.http_addr(),
        &format!("/api/v1/querylog{query}"),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json().as_array().expect("an array").clone()
}

fn field<'a>(entry: &'a Value, key: &str) -> &'a str {
    entry[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {entry}"))
}

/// Asks over UDP from `source` (any 127/8 address: all are loopback on Linux).
async fn ask_from(source: &str, server: SocketAddr, msg: &Message) -> Message {
    let sock = UdpSocket::bind(format!("{source}:0"))
        .await
        .expect("bind client");
    sock.connect(server).await.expect("connect");
    sock.send(&msg.to_vec().expect("encode"))
        .await
        .expect("send");
    let bytes = udp_recv(&sock, ANSWER_TIMEOUT)
        .await
        .expect("a reply in time");
    parse(&bytes)
}

#[tokio::test]
async fn every_answer_source_is_logged_newest_first() {
    let up = FakeUpstream::start(Behaviour::Answer);
    up.set_rule("gone.example.", Behaviour::NxDomain);
    let server = Server::start(&["--upstream", &up.arg()]);
    let created = http_post(
        server.http_addr(),
        "/api/v1/records",
        &serde_json::json!({"name": "nas.home.arpa", "type": "A", "data": "192.168.1.20"}),
        None,
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");

    let dns = server.dns_addr();
    ask_udp(dns, &query("NAS.home.arpa.", RecordType::A)).await;
    ask_udp(dns, &query("localhost.", RecordType::AAAA)).await;
    ask_udp(dns, &query("www.example.com.", RecordType::A)).await;
    ask_udp(dns, &query("www.example.com.", RecordType::A)).await;
    ask_tcp(dns, &query("gone.example.", RecordType::MX)).await;

    let log = querylog(&server, "").await;
    let seen: Vec<(&str, &str, &str, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                field(e, "name"),
                field(e, "type"),
                field(e, "rcode"),
                field(e, "source"),
                field(e, "transport"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("gone.example.", "MX", "NXDOMAIN", "upstream", "tcp"),
            ("www.example.com.", "A", "NOERROR", "cache", "udp"),
            ("www.example.com.", "A", "NOERROR", "upstream", "udp"),
            ("localhost.", "AAAA", "NOERROR", "special", "udp"),
            ("nas.home.arpa.", "A", "NOERROR", "local", "udp"),
        ]
    );
    for entry in &log {
        assert_eq!(field(entry, "client"), "127.0.0.1", "{entry}");
        assert!(entry["latency_us"].is_u64(), "{entry}");
        let time = field(entry, "time");
        assert!(time.len() == 27 && time.ends_with('Z'), "{time}");
    }
    let seqs: Vec<u64> = log
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
}

#[tokio::test]
async fn failures_say_so() {
    let up = FakeUpstream::start(Behaviour::ServFail);
    let server = Server::start(&["--upstream", &up.arg()]);
    let reply = ask_udp(server.dns_addr(), &query("broken.example.", RecordType::A)).await;
    assert_eq!(rcode(&reply), hickory_proto::op::ResponseCode::ServFail);
    let log = querylog(&server, "").await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(field(&log[0], "rcode"), "SERVFAIL");
    assert_eq!(field(&log[0], "source"), "failed");
}

#[tokio::test]
async fn filters_by_client_and_name_with_limit_and_after() {
    let server = Server::start(&[]);
    let dns = server.dns_addr();
    for (client, name) in [
        ("127.0.0.1", "a.home.arpa."),
        ("127.0.0.2", "b.home.arpa."),
        ("127.0.0.2", "x.b.home.arpa."),
        ("127.0.0.1", "localhost."),
    ] {
        ask_from(client, dns, &query(name, RecordType::A)).await;
    }
    let names = |log: &[Value]| -> Vec<String> {
        log.iter().map(|e| field(e, "name").to_string()).collect()
    };
    let from_two = querylog(&server, "?client=127.0.0.2").await;
    assert_eq!(names(&from_two), ["x.b.home.arpa.", "b.home.arpa."]);
    assert!(from_two.iter().all(|e| field(e, "client") == "127.0.0.2"));
    let net = querylog(&server, "?client=127.0.0.0/30").await;
    assert_eq!(net.len(), 4);
    let below_b = querylog(&server, "?name=B.home.arpa").await;
    assert_eq!(names(&below_b), ["x.b.home.arpa.", "b.home.arpa."]);
    let home = querylog(&server, "?name=home.arpa&limit=2").await;
    assert_eq!(names(&home), ["x.b.home.arpa.", "b.home.arpa."]);
    let newest = querylog(&server, "?limit=1").await;
    assert_eq!(names(&newest), ["localhost."]);
    let seq = newest[0]["seq"].as_u64().expect("seq");
    assert!(querylog(&server, &format!("?after={seq}")).await.is_empty());
    let after_first = querylog(&server, &format!("?after={}", seq - 3)).await;
    assert_eq!(after_first.len(), 3);

    for bad in [
        "?client=nas",
        "?limit=0",
        "?name=a..b",
        "?after=x",
        "?colour=red",
    ] {
        let reply = http_get(server.http_addr(), &format!("/api/v1/querylog{bad}"), None).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
        assert!(reply.json()["error"].is_string(), "{bad}: {reply:?}");
    }
}

#[tokio::test]
async fn the_ring_keeps_only_the_last_n() {
    let server = Server::start(&["--query-log", "5"]);
    for i in 0..12 {
        ask_udp(
            server.dns_addr(),
            &query(&format!("q{i}.home.arpa."), RecordType::A),
        )
        .await;
    }
    let log = querylog(&server, "?limit=100").await;
    let names: Vec<&str> = log.iter().map(|e| field(e, "name")).collect();
    assert_eq!(
        names,
        [
            "q11.home.arpa.",
            "q10.home.arpa.",
            "q9.home.arpa.",
            "q8.home.arpa.",
            "q7.home.arpa."
        ]
    );
    let status = http_get(server.http_addr(), "/api/v1/status", None)
        .await
        .json();
    assert_eq!(status["query_log"]["capacity"], 5);
    assert_eq!(status["query_log"]["recorded"], 12);
}

#[tokio::test]
async fn off_means_404_with_the_reason() {
    let server = ServerBuilder::new().env("RIND_QUERY_LOG", "0").start();
    ask_udp(server.dns_addr(), &query("localhost.", RecordType::A)).await;
    let reply = http_get(server.http_addr(), "/api/v1/querylog", None).await;
    assert_eq!(reply.status, 404, "{reply:?}");
    let error = reply.json()["error"].as_str().expect("error").to_string();
    assert!(error.contains("--query-log 0"), "{error}");
    let status = http_get(server.http_addr(), "/api/v1/status", None)
        .await
        .json();
    assert_eq!(status["query_log"]["capacity"], 0);
}

#[tokio::test]
async fn both_routes_need_the_token() {
    let server = Server::start(&["--api-token", "s3cret"]);
    for path in ["/api/v1/querylog", "/api/v1/status"] {
        assert_eq!(http_get(server.http_addr(), path, None).await.status, 401);
        assert_eq!(
            http_get(server.http_addr(), path, Some("wrong"))
                .await
                .status,
            401
        );
        let reply = http_get(server.http_addr(), path, Some("s3cret")).await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
    }
}

#[tokio::test]
async fn status_reports_counters_and_health() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg(), "--upstream", "127.0.0.1:9"]);
    for _ in 0..4 {
        ask_udp(server.dns_addr(), &query("www.example.com.", RecordType::A)).await;
    }
    let status = http_get(server.http_addr(), "/api/v1/status", None)
        .await
        .json();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!(status["uptime_seconds"].is_u64(), "{status}");
    assert_eq!(status["queries"], 4);
    assert_eq!(status["cache"]["hits"], 3);
    assert_eq!(status["cache"]["misses"], 1);
    assert_eq!(status["cache"]["hit_ratio"], 0.75);
    assert_eq!(status["cache"]["entries"], 1);
    assert_eq!(status["store"]["status"], "ok");
    assert_eq!(status["store"]["records"], 0);
    let upstreams = status["upstreams"].as_array().expect("upstreams");
    assert_eq!(upstreams.len(), 2, "{status}");
    assert_eq!(upstreams[0]["upstream"], up.arg().as_str());
    assert_eq!(upstreams[0]["status"], "ok");
    assert_eq!(upstreams[0]["queries"], 1);
    assert_eq!(upstreams[1]["queries"], 0);
}

#[tokio::test]
async fn a_dead_upstream_shows_as_failing_then_down() {
    let server = Server::start(&["--upstream", "127.0.0.1:9"]);
    let statuses = |v: &Value| v["upstreams"][0]["status"].as_str().map(str::to_string);
    ask_udp(server.dns_addr(), &query("a.example.", RecordType::A)).await;
    let status = http_get(server.http_addr(), "/api/v1/status", None)
        .await
        .json();
    assert_eq!(statuses(&status).as_deref(), Some("failing"), "{status}");
    for name in ["b.example.", "c.example."] {
        ask_udp(server.dns_addr(), &query(name, RecordType::A)).await;
    }
    let status = http_get(server.http_addr(), "/api/v1/status", None)
        .await
        .json();
    assert_eq!(statuses(&status).as_deref(), Some("down"), "{status}");
    assert!(
        status["upstreams"][0]["failures"].as_u64() >= Some(3),
        "{status}"
    );
}

#[test]
fn json_log_lines_parse() {
    let mut server = ServerBuilder::new().args(&["--log-format", "json"]).start();
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
    let lines = server.stderr_lines();
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        assert!(v["timestamp"].is_string(), "{line}");
    }
    assert!(lines
        .iter()
        .any(|l| l.contains("\"message\":\"listening dns=")));
}

#[test]
fn bad_operations_flags_are_refused_in_one_line() {
    for (args, env, needle) in [
        (&["--query-log", "1000001"][..], None, "--query-log 1000001"),
        (
            &[][..],
            Some(("RIND_QUERY_LOG", "2000000")),
            "--query-log 2000000",
        ),
    ] {
        let mut builder = ServerBuilder::new().args(args);
        if let Some((k, v)) = env {
            builder = builder.env(k, v);
        }
        let (code, stderr) = builder.run_expect_exit();
        let line = assert_refusal(code, &stderr);
        assert!(line.contains(needle), "{line}");
    }
    for (args, env) in [
        (&["--log-format", "xml"][..], None),
        (&[][..], Some(("RIND_LOG_FORMAT", "yaml"))),
        (&[][..], Some(("RIND_QUERY_LOG", "many"))),
    ] {
        let mut builder = ServerBuilder::new().args(args);
        if let Some((k, v)) = env {
            builder = builder.env(k, v);
        }
        let (code, stderr) = builder.run_expect_exit();
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.starts_with("error: invalid value"), "{stderr}");
    }
}

#[tokio::test]
async fn rate_limited_queries_are_logged_as_such() {
    let server = Server::start(&["--rate-limit", "2"]);
    // Sent back to back from one socket: the bucket holds two queries, and the eight after
    // them arrive before it refills.
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    sock.connect(server.dns_addr()).await.expect("connect");
    for i in 0..10 {
        let q = query(&format!("r{i}.home.arpa."), RecordType::A);
        sock.send(&q.to_vec().expect("encode")).await.expect("send");
    }
    let mut replies = 0;
    while replies < 10 && udp_recv(&sock, Duration::from_millis(500)).await.is_some() {
        replies += 1;
    }
    let log = querylog(&server, "").await;
    assert_eq!(log.len(), 10, "every query is logged: {log:?}");
    let limited: Vec<&Value> = log
        .iter()
        .filter(|e| field(e, "source") == "ratelimited")
        .collect();
    assert!(limited.len() >= 7, "{log:?}");
    let dropped = limited.iter().filter(|e| e["rcode"].is_null()).count();
    let truncated = limited.iter().filter(|e| e["rcode"] == "NOERROR").count();
    assert_eq!(dropped + truncated, limited.len(), "{limited:?}");
    assert!(dropped >= 1 && truncated >= 1, "{limited:?}");
    assert_eq!(replies, 10 - dropped, "a dropped query gets no reply");
}
