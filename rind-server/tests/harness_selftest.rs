//! Checks of the test harness itself, without rind-server: the fake upstream really does
//! what the other tests rely on, so they cannot pass by accident.

mod common;

use std::time::Duration;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

#[tokio::test]
async fn fake_upstream_answers_and_counts() {
    let up = FakeUpstream::start(Behaviour::Answer);
    up.set_rule("nx.example.com.", Behaviour::NxDomain);

    let reply = ask_udp(up.addr(), &query("OK.Example.Com.", RecordType::A)).await;
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    let nx = ask_tcp(up.addr(), &query("nx.example.com.", RecordType::A)).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain);
    assert!(has_soa_authority(&nx));

    assert_eq!(
        up.count("ok.example.com"),
        1,
        "counts are by lower-case name"
    );
    assert_eq!(up.udp_count(), 1);
    assert_eq!(up.tcp_count(), 1);
}

#[tokio::test]
async fn fake_upstream_sends_each_lie_before_the_truth() {
    let up = FakeUpstream::start(Behaviour::Answer);
    for (i, lie) in [Lie::Id, Lie::SourcePort, Lie::Question]
        .into_iter()
        .enumerate()
    {
        let qname = format!("lie-{i}.example.com.");
        up.set_rule(
            &qname,
            Behaviour::Lie {
                lie,
                then_answer: Some(Duration::from_millis(100)),
            },
        );
        // Unconnected, so that a reply from another port is seen too.
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let q = query(&qname, RecordType::A);
        sock.send_to(&q.wire(), up.addr()).await.expect("send");
        let mut buf = vec![0u8; 4096];
        let mut replies = Vec::new();
        for _ in 0..2 {
            let got = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await;
            let (n, from) = got.expect("reply in time").expect("recv");
            replies.push((parse(&buf[..n]), from));
        }
        let (lie_msg, lie_from) = &replies[0];
        let (truth, truth_from) = &replies[1];
        assert_eq!(
            a_records(lie_msg),
            vec![LIE_V4],
            "{lie:?}: first reply is the lie"
        );
        assert_eq!(a_records(truth), vec![ANSWER_V4], "{lie:?}: then the truth");
        assert_eq!(*truth_from, up.addr());
        assert_eq!(truth.metadata.id, q.metadata.id);
        match lie {
            Lie::Id => assert_ne!(lie_msg.metadata.id, q.metadata.id),
            Lie::SourcePort => assert_ne!(*lie_from, up.addr()),
            Lie::Question => assert_ne!(lie_msg.queries, q.queries),
        }
    }
}

#[tokio::test]
async fn fake_upstream_truncates_over_udp_only() {
    let up = FakeUpstream::start(Behaviour::Truncate);
    up.set_rule("big.example.com.", Behaviour::Big(100));

    let udp = ask_udp(up.addr(), &query("tc.example.com.", RecordType::A)).await;
    assert!(udp.metadata.truncation && udp.answers.is_empty());
    let tcp = ask_tcp(up.addr(), &query("tc.example.com.", RecordType::A)).await;
    assert_eq!(a_records(&tcp).len(), TRUNCATE_FULL_RECORDS);

    // Big: over the asker's UDP limit it is truncated; over TCP it is whole and large.
    let udp = ask_udp(
        up.addr(),
        &query_edns("big.example.com.", RecordType::A, 1232),
    )
    .await;
    assert!(udp.metadata.truncation);
    let bytes = tcp_query(
        up.addr(),
        &query("big.example.com.", RecordType::A),
        ANSWER_TIMEOUT,
    )
    .await
    .expect("TCP reply");
    assert!(bytes.len() > 1500, "100 records are {} bytes", bytes.len());
    assert_eq!(a_records(&parse(&bytes)).len(), 100);
}

#[tokio::test]
async fn fake_upstream_silence_and_delay() {
    let up = FakeUpstream::start(Behaviour::Silent);
    up.set_rule(
        "slow.example.com.",
        Behaviour::Delay(Duration::from_millis(300)),
    );

    let q = query("quiet.example.com.", RecordType::A);
    assert!(udp_query(up.addr(), &q, SILENCE_TIMEOUT).await.is_none());
    assert!(tcp_query(up.addr(), &q, SILENCE_TIMEOUT).await.is_none());

    let started = std::time::Instant::now();
    let reply = ask_udp(up.addr(), &query("slow.example.com.", RecordType::A)).await;
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn listening_line_is_parsed() {
    let line =
        "2026-01-01T00:00:00Z  INFO rind_server: listening dns=127.0.0.1:5353 http=127.0.0.1:8053";
    let (dns, http) = parse_listening(line).expect("parsed");
    assert_eq!(dns.port(), 5353);
    assert_eq!(http.port(), 8053);
    let colored = "\u{1b}[2mlistening\u{1b}[0m \u{1b}[3mdns\u{1b}[0m=127.0.0.1:1 http=127.0.0.1:2";
    assert!(parse_listening(&strip_ansi(colored)).is_some());
}
