//! DNS over TCP: pipelining, slow or broken clients, idle and connection limits
//! (behaviour 7).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How fast a query must be answered while other connections misbehave.
const PROMPT: Duration = Duration::from_secs(1);

async fn connect(server: &Server) -> TcpStream {
    timeout(ANSWER_TIMEOUT, TcpStream::connect(server.dns_addr()))
        .await
        .expect("TCP connect timed out")
        .expect("TCP connect failed")
}

/// Sends `q` on an open connection and reads one reply.
async fn ask_on(stream: &mut TcpStream, q: &Message) -> Message {
    write_frame(stream, &q.wire()).await.expect("write query");
    let bytes = timeout(ANSWER_TIMEOUT, read_frame(stream))
        .await
        .expect("no reply on the connection in time")
        .expect("read reply")
        .expect("connection closed instead of replying");
    let reply = parse(&bytes);
    assert_eq!(reply.metadata.id, q.metadata.id);
    reply
}

/// Waits up to `wait` for the server to close `stream`: true on EOF or reset, false when
/// it stays open; panics if the server sends data instead.
async fn closed_by_server(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    match timeout(wait, stream.read(&mut buf)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("expected the connection to be closed, got {n} bytes"),
    }
}

#[tokio::test]
async fn pipelined_queries_are_all_answered() {
    let up = FakeUpstream::start(Behaviour::Answer);
    // The first answer is slow, so a server that answers in order holds up the rest but
    // must still answer them all; one that answers out of order may send it last.
    up.set_rule(
        "t7-pipe-0.example.com.",
        Behaviour::Delay(Duration::from_millis(500)),
    );
    let server = Server::start(&["--upstream", &up.arg()]);

    let mut stream = connect(&server).await;
    let mut sent: HashMap<u16, String> = HashMap::new();
    let mut burst = Vec::new();
    for i in 0..10u16 {
        let qname = format!("t7-pipe-{i}.example.com.");
        let mut q = query(&qname, RecordType::A);
        q.metadata.id = 7000 + i;
        let wire = q.wire();
        burst.extend_from_slice(&u16::try_from(wire.len()).expect("small").to_be_bytes());
        burst.extend_from_slice(&wire);
        sent.insert(q.metadata.id, qname);
    }
    // All ten back to back, in one write.
    stream
        .write_all(&burst)
        .await
        .expect("write pipelined queries");

    let mut got = HashSet::new();
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    for _ in 0..10 {
        let left = deadline.saturating_duration_since(Instant::now());
        let bytes = timeout(left, read_frame(&mut stream))
            .await
            .unwrap_or_else(|_| panic!("only {} of 10 replies: {got:?}", got.len()))
            .expect("read reply")
            .unwrap_or_else(|| panic!("connection closed after {} replies", got.len()));
        let reply = parse(&bytes);
        let id = reply.metadata.id;
        let qname = sent
            .get(&id)
            .unwrap_or_else(|| panic!("reply with unknown ID {id}"));
        assert_eq!(
            reply
                .queries
                .first()
                .map(|q| normalize(&q.name().to_ascii())),
            Some(normalize(qname)),
            "reply {id} answers another question"
        );
        assert_eq!(a_records(&reply), vec![ANSWER_V4], "{qname}");
        assert!(got.insert(id), "two replies with ID {id}");
    }
    assert_eq!(got.len(), 10);
}

#[tokio::test]
async fn a_byte_at_a_time_sender_does_not_delay_other_connections() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    let mut slow = connect(&server).await;
    let slow_frame = {
        let wire = query("t7-slow.example.com.", RecordType::A).wire();
        let mut f = u16::try_from(wire.len())
            .expect("small")
            .to_be_bytes()
            .to_vec();
        f.extend_from_slice(&wire);
        f
    };
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let trickle = tokio::spawn(async move {
        let mut started_tx = Some(started_tx);
        // One byte per 100 ms: about 4 s for the whole query, bounded by its length.
        for (i, b) in slow_frame.into_iter().enumerate() {
            if slow.write_all(&[b]).await.is_err() {
                break;
            }
            if i == 2 {
                // The length prefix and a byte of the body are out: the server is
                // now mid-read on this connection.
                if let Some(tx) = started_tx.take() {
                    let _ = tx.send(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        slow
    });
    timeout(ANSWER_TIMEOUT, started_rx)
        .await
        .expect("trickle did not start")
        .expect("trickle ended early");

    for i in 0..3 {
        let q = query(&format!("t7-fast-{i}.example.com."), RecordType::A);
        let started = Instant::now();
        let reply = ask_tcp(server.dns_addr(), &q).await;
        assert_eq!(a_records(&reply), vec![ANSWER_V4]);
        assert!(
            started.elapsed() < PROMPT,
            "answer took {:?}",
            started.elapsed()
        );
    }
    trickle.abort();
}

#[tokio::test]
async fn bogus_length_prefixes_do_not_block_others() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    // A frame of 5 junk bytes, and a frame announcing 65535 bytes that never come.
    let mut junk = connect(&server).await;
    junk.write_all(&[0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00])
        .await
        .expect("write junk frame");
    let mut short = connect(&server).await;
    short
        .write_all(&[0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        .await
        .expect("write short frame");

    for i in 0..3 {
        let q = query(&format!("t7-bogus-{i}.example.com."), RecordType::A);
        let started = Instant::now();
        let reply = ask_tcp(server.dns_addr(), &q).await;
        assert_eq!(a_records(&reply), vec![ANSWER_V4]);
        assert!(
            started.elapsed() < PROMPT,
            "answer took {:?}",
            started.elapsed()
        );
    }
    // UDP is unaffected too.
    let reply = ask_udp(
        server.dns_addr(),
        &query("t7-bogus-udp.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    drop((junk, short));
}

#[tokio::test]
async fn half_closed_connection_still_gets_its_answer() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    let mut stream = connect(&server).await;
    let q = query("t7-halfclose.example.com.", RecordType::A);
    write_frame(&mut stream, &q.wire())
        .await
        .expect("write query");
    stream.shutdown().await.expect("shutdown(Write)");

    let bytes = timeout(ANSWER_TIMEOUT, read_frame(&mut stream))
        .await
        .expect("no reply after half-close")
        .expect("read reply")
        .expect("closed without replying after half-close");
    let reply = parse(&bytes);
    assert_eq!(reply.metadata.id, q.metadata.id);
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_timeout() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg(), "--tcp-idle-timeout", "1"]);

    // A connection that never sends anything.
    let mut silent = connect(&server).await;
    // A connection that asks once, then goes quiet.
    let mut used = connect(&server).await;
    let reply = ask_on(&mut used, &query("t7-idle.example.com.", RecordType::A)).await;
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);

    let started = Instant::now();
    assert!(
        closed_by_server(&mut silent, Duration::from_secs(3)).await,
        "a connection that never sent anything is still open after 3 s"
    );
    let left = Duration::from_secs(3).saturating_sub(started.elapsed());
    assert!(
        closed_by_server(&mut used, left).await,
        "an idle connection is still open 3 s after its last answer"
    );
}

#[tokio::test]
async fn connections_over_the_limit_are_closed() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg(), "--max-tcp-connections", "2"]);

    let mut first = connect(&server).await;
    let mut second = connect(&server).await;
    // Asking on both makes sure the server has accepted and counts them.
    ask_on(&mut first, &query("t7-limit-1.example.com.", RecordType::A)).await;
    ask_on(
        &mut second,
        &query("t7-limit-2.example.com.", RecordType::A),
    )
    .await;

    let mut third = connect(&server).await;
    // The write may already fail if the server reset the connection; the read decides.
    let _ = write_frame(
        &mut third,
        &query("t7-limit-3.example.com.", RecordType::A).wire(),
    )
    .await;
    assert!(
        closed_by_server(&mut third, Duration::from_secs(2)).await,
        "a third connection over --max-tcp-connections 2 was not closed within 2 s"
    );

    // The first two still work.
    let r1 = ask_on(
        &mut first,
        &query("t7-limit-1b.example.com.", RecordType::A),
    )
    .await;
    let r2 = ask_on(
        &mut second,
        &query("t7-limit-2b.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(a_records(&r1), vec![ANSWER_V4]);
    assert_eq!(a_records(&r2), vec![ANSWER_V4]);

    // Once one closes, a new connection is served again (the server notices the close
    // asynchronously, so retry for a bounded time).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut served = false;
    for i in 0..30 {
        let q = query(&format!("t7-limit-again-{i}.example.com."), RecordType::A);
        if let Some(bytes) = tcp_query(server.dns_addr(), &q, Duration::from_millis(500)).await {
            assert_eq!(a_records(&parse(&bytes)), vec![ANSWER_V4]);
            served = true;
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served,
        "no new connection was served after one of the two closed"
    );
}
