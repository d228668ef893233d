//! Resource limits: the per-client rate limit and the cap on questions waiting on upstreams.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::net::{TcpStream, UdpSocket};

#[tokio::test]
async fn over_the_rate_limit_udp_is_dropped_or_truncated_and_tcp_refused() {
    let server = Server::start(&["--rate-limit", "5"]);
    // One socket sends a burst of 20 at once; the bucket holds 5.
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.connect(server.dns_addr()).await.expect("connect");
    for i in 0..20u16 {
        let mut q = query("localhost.", RecordType::A);
        q.metadata.id = 1000 + i;
        sock.send(&q.to_vec().expect("encode")).await.expect("send");
    }
    let (mut answered, mut truncated) = (0, 0);
    while let Some(bytes) = udp_recv(&sock, Duration::from_millis(500)).await {
        let reply = parse(&bytes);
        if reply.metadata.truncation {
            assert!(reply.answers.is_empty());
            assert_eq!(
                reply.queries.len(),
                1,
                "a truncated reply keeps the question"
            );
            truncated += 1;
        } else {
            assert_eq!(a_records(&reply).len(), 1);
            answered += 1;
        }
    }
    let dropped = 20 - answered - truncated;
    assert!(
        (5..=6).contains(&answered),
        "answered {answered} of a burst of 20 with --rate-limit 5"
    );
    assert!(
        truncated >= 5,
        "only {truncated} TC=1 replies (one in two over the limit)"
    );
    assert!(dropped >= 5, "only {dropped} dropped");

    // Over TCP, a pipelined burst of 20 on one connection: the excess is REFUSED.
    let mut stream = TcpStream::connect(server.dns_addr())
        .await
        .expect("connect");
    for i in 0..20u16 {
        let mut q = query("localhost.", RecordType::A);
        q.metadata.id = 2000 + i;
        write_frame(&mut stream, &q.to_vec().expect("encode"))
            .await
            .expect("write");
    }
    let mut refused = 0;
    for _ in 0..20 {
        let frame = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut stream))
            .await
            .expect("a reply within 5 s")
            .expect("read")
            .expect("a frame, not EOF");
        if rcode(&parse(&frame)) == ResponseCode::Refused {
            refused += 1;
        }
    }
    assert!(refused >= 10, "only {refused} of 20 over TCP were REFUSED");

    let metrics = server.http_addr();
    assert!(
        metric(
            metrics,
            "rind_rate_limited_total{action=\"truncate\"}",
            None
        )
        .await
            >= 5.0
    );
    assert!(metric(metrics, "rind_rate_limited_total{action=\"drop\"}", None).await >= 5.0);
    assert!(metric(metrics, "rind_rate_limited_total{action=\"refuse\"}", None).await >= 1.0);

    // A second later the bucket has refilled.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = ask_udp(server.dns_addr(), &query("localhost.", RecordType::A)).await;
    assert_eq!(a_records(&again).len(), 1);
}

#[tokio::test]
async fn without_a_rate_limit_a_burst_is_answered() {
    let server = Server::start(&[]);
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.connect(server.dns_addr()).await.expect("connect");
    for i in 0..50u16 {
        let mut q = query("localhost.", RecordType::A);
        q.metadata.id = i;
        sock.send(&q.to_vec().expect("encode")).await.expect("send");
    }
    let mut answered = 0;
    while let Some(bytes) = udp_recv(&sock, Duration::from_millis(500)).await {
        assert!(!parse(&bytes).metadata.truncation);
        answered += 1;
    }
    assert_eq!(answered, 50);
}

/// The receive loop reads up to 32 queries in one call and sends their answers together:
/// bursts from several clients at once, more than a batch each, half of them forwarded,
/// must each get every answer, to the right client, for the right question.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_from_many_clients_each_get_their_own_answers() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);
    let clients = 4;
    let per_client = 80u16;
    let mut sockets = Vec::new();
    for _ in 0..clients {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        sock.connect(server.dns_addr()).await.expect("connect");
        sockets.push(sock);
    }
    // Every client sends its whole burst before any reads, so queries from all of them wait
    // in the server's socket together.
    for (c, sock) in sockets.iter().enumerate() {
        for i in 0..per_client {
            let name = if i % 2 == 0 {
                format!("c{c}-q{i}.localhost.")
            } else {
                format!("c{c}-q{i}.example.")
            };
            let mut q = query(&name, RecordType::A);
            q.metadata.id = i;
            sock.send(&q.to_vec().expect("encode")).await.expect("send");
        }
    }
    for (c, sock) in sockets.iter().enumerate() {
        let mut ids = Vec::new();
        while let Some(bytes) = udp_recv(sock, Duration::from_secs(2)).await {
            let reply = parse(&bytes);
            let id = reply.metadata.id;
            let asked = reply.queries.first().expect("question").name.to_ascii();
            assert!(
                asked.starts_with(&format!("c{c}-q{id}.")),
                "client {c} got the answer to {asked} for ID {id}"
            );
            assert_eq!(rcode(&reply), ResponseCode::NoError, "{asked}");
            assert!(!reply.answers.is_empty(), "{asked} has no answer");
            ids.push(id);
            if ids.len() == usize::from(per_client) {
                break;
            }
        }
        ids.sort_unstable();
        assert_eq!(ids, (0..per_client).collect::<Vec<_>>(), "client {c}");
    }
}

/// A UDP flood that keeps the server's sockets full must not take the runtime: the receive
/// loops read in batches and would never wait on readiness again, so they have to give way
/// to other tasks (here the TCP listener and the HTTP API) on their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_flood_leaves_room_for_tcp_and_http() {
    let server = Server::start(&[]);
    let addr = server.dns_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let mut flooders = Vec::new();
    for f in 0..4u16 {
        let stop = Arc::clone(&stop);
        flooders.push(std::thread::spawn(move || {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            sock.connect(addr).expect("connect");
            let mut q = query("localhost.", RecordType::A);
            q.metadata.id = f;
            let bytes = q.to_vec().expect("encode");
            // Bounded: at most 20 s or 50 million datagrams, whichever comes first.
            let until = Instant::now() + Duration::from_secs(20);
            for _ in 0..50_000_000u32 {
                if stop.load(Ordering::Relaxed) || Instant::now() > until {
                    break;
                }
                let _ = sock.send(&bytes);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let over_tcp = tokio::time::timeout(
        Duration::from_secs(5),
        ask_tcp(addr, &query("localhost.", RecordType::A)),
    )
    .await;
    let tcp_took = started.elapsed();
    let status = tokio::time::timeout(
        Duration::from_secs(5),
        http_get(server.http_addr(), "/api/v1/status", None),
    )
    .await;
    let http_took = started.elapsed() - tcp_took;
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.join().expect("flooder");
    }
    let over_tcp = over_tcp.expect("a TCP query went unanswered during the UDP flood");
    assert_eq!(a_records(&over_tcp), vec![std::net::Ipv4Addr::LOCALHOST]);
    let status = status.expect("the HTTP API did not answer during the UDP flood");
    assert_eq!(status.status, 200);
    assert!(
        tcp_took < Duration::from_secs(2) && http_took < Duration::from_secs(2),
        "TCP took {tcp_took:?}, HTTP {http_took:?} during the flood"
    );
}

#[tokio::test]
async fn questions_over_the_upstream_cap_get_servfail_at_once() {
    let up = FakeUpstream::start(Behaviour::Silent);
    let server = Server::start(&["--upstream", &up.arg(), "--max-upstream-queries", "2"]);
    let addr = server.dns_addr();
    // Two distinct questions take both slots and wait on the silent upstream.
    let waiting: Vec<_> = ["t-cap-1.example.", "t-cap-2.example."]
        .into_iter()
        .map(|n| tokio::spawn(async move { ask_udp(addr, &query(n, RecordType::A)).await }))
        .collect();
    // Let both reach the forwarder before the third arrives.
    let deadline = Instant::now() + Duration::from_secs(2);
    while up.queries("t-cap-1.example.") + up.queries("t-cap-2.example.") < 2 {
        assert!(
            Instant::now() < deadline,
            "the first two never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let third = ask_udp(addr, &query("t-cap-3.example.", RecordType::A)).await;
    assert_eq!(rcode(&third), ResponseCode::ServFail);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        up.count("t-cap-3.example."),
        0,
        "the third was forwarded anyway"
    );
    assert_eq!(
        metric(server.http_addr(), "rind_upstream_overloaded_total", None).await,
        1.0
    );
    // A question already waiting is joined, not refused: coalescing needs no new slot.
    let joined = ask_udp(addr, &query("t-cap-1.example.", RecordType::A)).await;
    assert_eq!(rcode(&joined), ResponseCode::ServFail);
    assert_eq!(
        metric(server.http_addr(), "rind_upstream_overloaded_total", None).await,
        1.0,
        "a coalesced question was counted as over the cap"
    );
    for w in waiting {
        assert_eq!(rcode(&w.await.expect("task")), ResponseCode::ServFail);
    }
}
