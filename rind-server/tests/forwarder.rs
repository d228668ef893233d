//! Forwarding to upstreams: answers, failures, lies, retries and coalescing (behaviour 6).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::task::JoinSet;

/// The contract: SERVFAIL at the latest 5 s after asking; slack for a loaded machine.
const SERVFAIL_DEADLINE: Duration = Duration::from_millis(5500);

#[tokio::test]
async fn forwards_and_returns_the_upstream_answer() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    let reply = ask_udp(
        server.dns_addr(),
        &query("t6-fwd.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    assert!(!reply.metadata.authoritative, "AA=1 on a forwarded answer");
    assert!(reply.metadata.recursion_available);
    let ttl = reply.answers[0].ttl;
    assert!(
        ttl > 0 && ttl <= ANSWER_TTL,
        "TTL {ttl} not in 1..={ANSWER_TTL}"
    );
    assert_eq!(up.count("t6-fwd.example.com."), 1);

    let aaaa = ask_udp(
        server.dns_addr(),
        &query("t6-fwd6.example.com.", RecordType::AAAA),
    )
    .await;
    assert_eq!(aaaa_records(&aaaa), vec![ANSWER_V6]);
}

#[tokio::test]
async fn nxdomain_from_upstream_passes_through() {
    let up = FakeUpstream::start(Behaviour::Answer);
    up.set_rule("t6-nx.example.com.", Behaviour::NxDomain);
    let server = Server::start(&["--upstream", &up.arg()]);

    let reply = ask_udp(
        server.dns_addr(),
        &query("t6-nx.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&reply), ResponseCode::NXDomain);
    assert!(reply.answers.is_empty());
    assert!(
        has_soa_authority(&reply),
        "the upstream's SOA must be in the authority section"
    );
}

const LIES: [Lie; 3] = [Lie::Id, Lie::SourcePort, Lie::Question];

#[tokio::test]
async fn upstream_lies_are_ignored_and_the_true_answer_is_used() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    for (i, lie) in LIES.into_iter().enumerate() {
        let qname = format!("t6-lie-{i}.example.com.");
        up.set_rule(
            &qname,
            Behaviour::Lie {
                lie,
                then_answer: Some(Duration::from_millis(100)),
            },
        );
        let started = Instant::now();
        let reply = ask_udp(server.dns_addr(), &query(&qname, RecordType::A)).await;
        let elapsed = started.elapsed();
        assert_eq!(rcode(&reply), ResponseCode::NoError, "{lie:?}");
        assert_eq!(
            a_records(&reply),
            vec![ANSWER_V4],
            "{lie:?}: the lie was accepted"
        );
        // The wait went on after the lie, rather than giving up on that upstream.
        assert!(
            elapsed < Duration::from_millis(1500),
            "{lie:?}: took {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn only_lies_end_in_servfail() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    // The three cases run at once: each takes up to 5 s.
    let mut set = JoinSet::new();
    for (i, lie) in LIES.into_iter().enumerate() {
        let qname = format!("t6-onlylie-{i}.example.com.");
        up.set_rule(
            &qname,
            Behaviour::Lie {
                lie,
                then_answer: None,
            },
        );
        let addr = server.dns_addr();
        set.spawn(async move {
            let started = Instant::now();
            let reply = ask_udp(addr, &query(&qname, RecordType::A)).await;
            (lie, reply, started.elapsed())
        });
    }
    while let Some(done) = set.join_next().await {
        let (lie, reply, elapsed) = done.expect("query task");
        assert_eq!(rcode(&reply), ResponseCode::ServFail, "{lie:?}");
        assert!(reply.answers.is_empty(), "{lie:?}: {:?}", reply.answers);
        assert!(
            elapsed <= SERVFAIL_DEADLINE,
            "{lie:?}: SERVFAIL after {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn silent_upstream_gives_servfail_within_5s() {
    let up = FakeUpstream::start(Behaviour::Silent);
    let server = Server::start(&["--upstream", &up.arg()]);

    let started = Instant::now();
    let reply = ask_udp(
        server.dns_addr(),
        &query("t6-silent.example.com.", RecordType::A),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(rcode(&reply), ResponseCode::ServFail);
    assert!(elapsed <= SERVFAIL_DEADLINE, "SERVFAIL after {elapsed:?}");
    // At least one full 2 s try happened before giving up.
    assert!(
        elapsed >= Duration::from_millis(1900),
        "gave up after only {elapsed:?}"
    );
    assert!(up.count("t6-silent.example.com.") >= 1);
}

#[tokio::test]
async fn second_upstream_answers_when_the_first_is_silent() {
    let silent = FakeUpstream::start(Behaviour::Silent);
    let good = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &silent.arg(), "--upstream", &good.arg()]);

    let started = Instant::now();
    let reply = ask_udp(
        server.dns_addr(),
        &query("t6-second.example.com.", RecordType::A),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    assert!(elapsed <= SERVFAIL_DEADLINE, "answer after {elapsed:?}");
    // Asked first, and once more when the first resend timeout (1 s before any round trip
    // was measured) ran out; the next would have been after the 2 s try.
    assert_eq!(
        silent.count("t6-second.example.com."),
        2,
        "the first upstream is asked first, and sent the query again once"
    );
    assert_eq!(good.count("t6-second.example.com."), 1);
}

/// Makes `socket` refuse: connected to itself, it is handed nothing from anyone else, so the
/// kernel answers every datagram to its port with ICMP port unreachable, as for a closed port;
/// but the port stays taken. A port merely closed could be bound again by any socket made
/// after it (one of rind's 1024 upstream sockets took it in about one run in ten).
fn refuse(socket: &std::net::UdpSocket) {
    let own = socket.local_addr().expect("addr");
    socket.connect(own).expect("connect to itself");
}

/// An upstream whose port is closed (a local resolver that is down) answers with ICMP port
/// unreachable; the try fails on it at once instead of waiting out its 2 s.
#[tokio::test]
async fn a_closed_upstream_port_fails_over_at_once() {
    let refusing = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    refuse(&refusing);
    let closed = refusing.local_addr().expect("addr");
    let good = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &closed.to_string(), "--upstream", &good.arg()]);

    // Several questions: each draws its own socket from the pool, fresh or used before.
    for i in 0..3 {
        let qname = format!("t6-closed-{i}.example.com.");
        let started = Instant::now();
        let reply = ask_udp(server.dns_addr(), &query(&qname, RecordType::A)).await;
        let elapsed = started.elapsed();
        assert_eq!(a_records(&reply), vec![ANSWER_V4], "{qname}");
        assert!(
            elapsed < Duration::from_millis(500),
            "{qname} answered after {elapsed:?}: the refused try should end at once"
        );
        assert_eq!(good.count(&qname), 1, "{qname}");
    }
}

/// An upstream that goes away after a query reached it: the resend draws ICMP port
/// unreachable while the try is already waiting for a reply, and that ends the try then,
/// not at its 2 s deadline.
#[tokio::test]
async fn an_upstream_that_goes_away_mid_try_fails_over_at_the_resend() {
    let going = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    going
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let going_addr = going.local_addr().expect("addr");
    let good = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&[
        "--upstream",
        &going_addr.to_string(),
        "--upstream",
        &good.arg(),
    ]);

    let qname = "t6-gone.example.com.";
    let dns = server.dns_addr();
    let started = Instant::now();
    let asking = tokio::spawn(async move { ask_udp(dns, &query(qname, RecordType::A)).await });
    // Take the query, then refuse: the resend (1 s later, before any round trip is known)
    // finds the port closed.
    let mut buf = [0u8; 512];
    let (going, received) = tokio::task::spawn_blocking(move || {
        let received = going.recv_from(&mut buf);
        refuse(&going);
        (going, received)
    })
    .await
    .expect("join");
    let (len, _) = received.expect("the query reached the first upstream");
    assert!(len > 12);
    let reply = asking.await.expect("join");
    let elapsed = started.elapsed();
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    assert_eq!(good.count(qname), 1);
    assert!(
        elapsed < Duration::from_millis(1600),
        "answered after {elapsed:?}: the refused resend should end the try"
    );
    drop(going);
}

#[tokio::test]
async fn a_lost_upstream_datagram_is_sent_again_well_before_the_try_ends() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);
    // Answered queries give rind a round-trip estimate: on loopback, the 100 ms floor.
    for i in 0..5 {
        let qname = format!("t6-rtt-{i}.example.com.");
        let reply = ask_udp(server.dns_addr(), &query(&qname, RecordType::A)).await;
        assert_eq!(a_records(&reply), vec![ANSWER_V4], "{qname}");
    }
    let qname = "t6-lost.example.com.";
    up.set_rule(qname, Behaviour::LoseFirst);

    let started = Instant::now();
    let reply = ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
    let elapsed = started.elapsed();
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    assert!(
        elapsed >= Duration::from_millis(90) && elapsed < Duration::from_secs(1),
        "answered after {elapsed:?}: the resend should follow the 100 ms timeout"
    );
    let seen: Vec<Seen> = up.seen().into_iter().filter(|s| s.qname == qname).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    // The same query again: same ID from the same socket, so a late reply to the first copy
    // would have counted as well.
    assert_eq!((seen[0].id, seen[0].src), (seen[1].id, seen[1].src));
    let resends = metric(
        server.http_addr(),
        &format!("rind_upstream_resends_total{{upstream=\"{}\"}}", up.arg()),
        None,
    )
    .await;
    assert_eq!(resends, 1.0);
}

#[tokio::test]
async fn servfail_from_the_first_upstream_asks_the_second() {
    let failing = FakeUpstream::start(Behaviour::ServFail);
    let good = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &failing.arg(), "--upstream", &good.arg()]);

    let started = Instant::now();
    let reply = ask_udp(
        server.dns_addr(),
        &query("t6-sf.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    assert_eq!(failing.count("t6-sf.example.com."), 1);
    assert_eq!(good.count("t6-sf.example.com."), 1);
    // A SERVFAIL is an answer: no need to sit out the 2 s timeout.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn refused_from_the_only_upstream_is_not_turned_into_an_answer() {
    let up = FakeUpstream::start(Behaviour::Refused);
    let server = Server::start(&["--upstream", &up.arg()]);

    let reply = ask_udp(
        server.dns_addr(),
        &query("t6-refused.example.com.", RecordType::A),
    )
    .await;
    assert!(
        matches!(
            rcode(&reply),
            ResponseCode::Refused | ResponseCode::ServFail
        ),
        "RCODE {:?}",
        rcode(&reply)
    );
    assert!(reply.answers.is_empty());
}

#[tokio::test]
async fn truncated_udp_reply_is_retried_over_tcp() {
    let up = FakeUpstream::start(Behaviour::Truncate);
    let server = Server::start(&["--upstream", &up.arg()]);
    let qname = "t6-tc.example.com.";

    let reply = ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert!(
        !reply.metadata.truncation,
        "the full answer fits the client's 512 bytes"
    );
    assert_eq!(
        a_records(&reply).len(),
        TRUNCATE_FULL_RECORDS,
        "{:?}",
        reply.answers
    );
    assert_eq!(up.count_on(qname, Transport::Udp), 1);
    assert_eq!(
        up.count_on(qname, Transport::Tcp),
        1,
        "no TCP retry after TC=1"
    );
}

#[tokio::test]
async fn tcp_only_upstream_gets_no_udp() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.tcp_arg()]);

    for i in 0..3 {
        let qname = format!("t6-tcponly-{i}.example.com.");
        let reply = ask_udp(server.dns_addr(), &query(&qname, RecordType::A)).await;
        assert_eq!(a_records(&reply), vec![ANSWER_V4], "{qname}");
    }
    assert_eq!(up.udp_count(), 0, "UDP query sent to a tcp:// upstream");
    assert!(up.tcp_count() >= 3, "TCP queries: {}", up.tcp_count());
}

#[tokio::test]
async fn upstream_queries_use_random_ids_and_source_ports() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    let mut client_ids = Vec::new();
    for i in 0..20 {
        let q = query(&format!("t6-rand-{i}.example.com."), RecordType::A);
        let reply = ask_udp(server.dns_addr(), &q).await;
        assert_eq!(rcode(&reply), ResponseCode::NoError);
        client_ids.push(q.metadata.id);
    }

    let mut ids = Vec::new();
    let mut ports = HashSet::new();
    let mut same_as_client = 0;
    for (i, client_id) in client_ids.iter().enumerate() {
        let qname = format!("t6-rand-{i}.example.com.");
        let seen: Vec<Seen> = up.seen().into_iter().filter(|s| s.qname == qname).collect();
        assert_eq!(seen.len(), 1, "{qname} asked {} times", seen.len());
        ids.push(seen[0].id);
        ports.insert(seen[0].src.port());
        if seen[0].id == *client_id {
            same_as_client += 1;
        }
    }
    let distinct_ids: HashSet<u16> = ids.iter().copied().collect();
    assert!(
        distinct_ids.len() > 1,
        "every upstream query used ID {:?}",
        ids[0]
    );
    // A random ID matches the client's with probability 1/65536; allow one coincidence.
    assert!(
        same_as_client <= 1,
        "upstream IDs copy the client IDs: {ids:?} vs {client_ids:?}"
    );
    assert!(
        ports.len() >= 10,
        "only {} distinct source ports: {ports:?}",
        ports.len()
    );
}

#[tokio::test]
async fn concurrent_identical_queries_are_coalesced() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let qname = "t6-coalesce.example.com.";
    up.set_rule(qname, Behaviour::Delay(Duration::from_millis(500)));
    let server = Server::start(&["--upstream", &up.arg()]);

    let mut set = JoinSet::new();
    for i in 0..10u16 {
        let mut q = query(qname, RecordType::A);
        q.metadata.id = 1000 + i;
        let addr = server.dns_addr();
        set.spawn(async move { (q.metadata.id, ask_udp(addr, &q).await) });
    }
    let mut answered = HashSet::new();
    while let Some(done) = set.join_next().await {
        // ask_udp already checked that the reply carries this client's ID.
        let (id, reply): (u16, Message) = done.expect("query task");
        assert_eq!(a_records(&reply), vec![ANSWER_V4], "client {id}");
        answered.insert(id);
    }
    assert_eq!(answered.len(), 10);
    assert_eq!(
        up.count(qname),
        1,
        "identical in-flight queries were not coalesced"
    );
}

#[tokio::test]
async fn a_failing_upstream_is_tried_last_for_a_while() {
    let silent = FakeUpstream::start(Behaviour::Silent);
    let good = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &silent.arg(), "--upstream", &good.arg()]);

    for i in 0..3 {
        let qname = format!("t6-demote-{i}.example.com.");
        let reply = ask_udp(server.dns_addr(), &query(&qname, RecordType::A)).await;
        assert_eq!(a_records(&reply), vec![ANSWER_V4], "{qname}");
    }
    let started = Instant::now();
    let reply = ask_udp(
        server.dns_addr(),
        &query("t6-demote-3.example.com.", RecordType::A),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    assert!(
        elapsed < Duration::from_secs(1),
        "the silent upstream was still asked first: {elapsed:?}"
    );
    // The operator hears about it once, not once per failure.
    let warnings = server
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("upstream keeps failing") && l.contains(&silent.arg()))
        .count();
    assert_eq!(warnings, 1, "{}", server.stderr_text());
}
