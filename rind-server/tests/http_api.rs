//! Health and metrics endpoints, and the API token (behaviour 8).

mod common;

use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;

#[tokio::test]
async fn healthz_is_open_with_or_without_a_token() {
    let open = Server::start(&[]);
    assert_eq!(
        http_get(open.http_addr(), "/healthz", None).await.status,
        200
    );

    let guarded = Server::start(&["--api-token", "s3cret"]);
    let reply = http_get(guarded.http_addr(), "/healthz", None).await;
    assert_eq!(
        reply.status, 200,
        "/healthz must never need the token: {reply:?}"
    );
}

#[tokio::test]
async fn metrics_count_queries_responses_and_upstreams() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    const SENT: usize = 3;
    for i in 0..SENT {
        let q = query(&format!("t8-metrics-{i}.example.com."), RecordType::A);
        let reply = ask_udp(server.dns_addr(), &q).await;
        assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    }

    // Counters may be updated after the reply is sent: poll for a bounded time.
    let series = r#"rind_queries_total{transport="udp",type="A"}"#;
    let deadline = Instant::now() + Duration::from_secs(3);
    let text = loop {
        let reply = http_get(server.http_addr(), "/metrics", None).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let count = metric_value(&reply.body, series).unwrap_or(0.0);
        if count >= SENT as f64 || Instant::now() >= deadline {
            break reply.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let count =
        metric_value(&text, series).unwrap_or_else(|| panic!("no sample for {series} in:\n{text}"));
    assert!(count >= SENT as f64, "{series} = {count}, sent {SENT}");
    for needle in [
        r#"rind_responses_total{rcode="NOERROR"}"#,
        "rind_upstream_queries_total",
        "rind_upstream_latency_seconds_bucket",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set() {
    let server = Server::start(&["--api-token", "s3cret"]);
    let addr = server.http_addr();

    let missing = http_get(addr, "/metrics", None).await;
    assert_eq!(missing.status, 401, "{missing:?}");
    let error = missing.json();
    assert!(
        error
            .get("error")
            .and_then(|e| e.as_str())
            .is_some_and(|e| !e.is_empty()),
        "401 body must be JSON with an \"error\" string: {error}"
    );

    let wrong = http_get(addr, "/metrics", Some("wrong")).await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(wrong.json().get("error").is_some(), "{wrong:?}");

    let right = http_get(addr, "/metrics", Some("s3cret")).await;
    assert_eq!(right.status, 200, "{right:?}");
    assert!(
        right.body.contains("rind_"),
        "metrics body: {:?}",
        right.body
    );
}
