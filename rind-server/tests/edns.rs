//! EDNS(0) handling and UDP truncation (behaviour 3).

mod common;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

#[tokio::test]
async fn opt_in_reply_iff_query_had_one() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    let plain = ask_udp(
        server.dns_addr(),
        &query("t3-noopt.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&plain), ResponseCode::NoError);
    assert!(
        plain.edns.is_none(),
        "OPT in a reply to a query without one"
    );

    let with = ask_udp(
        server.dns_addr(),
        &query_edns("t3-opt.example.com.", RecordType::A, 1232),
    )
    .await;
    assert_eq!(rcode(&with), ResponseCode::NoError);
    let edns = with
        .edns
        .as_ref()
        .expect("no OPT in the reply to a query with one");
    assert_eq!(edns.version(), 0);

    // The same for locally answered names, and over TCP.
    let local = ask_udp(
        server.dns_addr(),
        &query_edns("localhost.", RecordType::A, 1232),
    )
    .await;
    assert!(
        local.edns.is_some(),
        "no OPT in a local answer to a query with one"
    );
    let local = ask_udp(server.dns_addr(), &query("localhost.", RecordType::A)).await;
    assert!(
        local.edns.is_none(),
        "OPT in a local answer to a query without one"
    );
    let tcp = ask_tcp(
        server.dns_addr(),
        &query_edns("t3-opt-tcp.example.com.", RecordType::A, 1232),
    )
    .await;
    assert!(
        tcp.edns.is_some(),
        "no OPT in a TCP reply to a query with one"
    );
}

#[tokio::test]
async fn edns_version_1_gets_badvers() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    let mut q = query_edns("t3-badvers.example.com.", RecordType::A, 1232);
    q.edns.as_mut().expect("query has OPT").set_version(1);
    let bytes = udp_query(server.dns_addr(), &q, ANSWER_TIMEOUT)
        .await
        .expect("no reply to an EDNS version 1 query");
    let h = raw_header(&bytes);
    assert!(h.qr);
    assert_eq!(h.id, q.metadata.id);
    // BADVERS is 16: the header holds its low 4 bits (0), the OPT its high 8 bits (1).
    assert_eq!(h.rcode, 0, "header RCODE bits of BADVERS must be 0");
    let reply = parse(&bytes);
    let edns = reply
        .edns
        .as_ref()
        .expect("BADVERS reply must carry an OPT");
    assert_eq!(edns.rcode_high(), 1, "extended RCODE bits in the OPT");
    assert_eq!(
        edns.version(),
        0,
        "the OPT must advertise the version we speak"
    );
    // hickory names the combined code 16 BADSIG (TSIG shares it with BADVERS).
    assert_eq!(
        u16::from(rcode(&reply)),
        16,
        "combined RCODE must be BADVERS (16)"
    );
}

/// Names whose answers hold this many A records, chosen so that, with name compression,
/// they fall in the size bands the limits separate.
const SMALL: (&str, usize) = ("t3-small.example.com.", 15); // ~300 bytes: 100 < n < 512
const MEDIUM: (&str, usize) = ("t3-medium.example.com.", 40); // ~700 bytes: 512 < n < 1232
const FITS: (&str, usize) = ("t3-fits.example.com.", 65); // ~1100 bytes: < 1232
const LARGE: (&str, usize) = ("t3-large.example.com.", 100); // ~1650 bytes: > 1500

/// How a case advertises its UDP size.
#[derive(Debug, Clone, Copy)]
enum Advertise {
    NoEdns,
    /// An OPT with this payload size, written into the bytes (hickory clamps below 512).
    Edns(u16),
}

fn build(qname: &str, adv: Advertise) -> Vec<u8> {
    match adv {
        Advertise::NoEdns => query(qname, RecordType::A).wire(),
        Advertise::Edns(size) => {
            let mut bytes = query_edns(qname, RecordType::A, 4096).wire();
            set_raw_edns_payload(&mut bytes, size);
            bytes
        }
    }
}

/// The effective UDP limit the contract prescribes.
fn limit(adv: Advertise) -> usize {
    match adv {
        Advertise::NoEdns => 512,
        Advertise::Edns(size) => usize::from(size).clamp(512, 1232),
    }
}

fn big_upstream() -> FakeUpstream {
    let up = FakeUpstream::start(Behaviour::Answer);
    for (n, count) in [SMALL, MEDIUM, FITS, LARGE] {
        up.set_rule(n, Behaviour::Big(count));
    }
    up
}

#[tokio::test]
async fn udp_answers_over_the_client_limit_are_truncated() {
    let up = big_upstream();
    let server = Server::start(&["--upstream", &up.arg()]);

    // (name and record count, how the client advertises, whether TC=1 is expected)
    let cases = [
        (SMALL, Advertise::NoEdns, false),
        (MEDIUM, Advertise::NoEdns, true),
        (MEDIUM, Advertise::Edns(1232), false),
        (MEDIUM, Advertise::Edns(512), true),
        // Below 512 counts as 512: a ~300-byte answer fits, a ~700-byte one does not.
        (SMALL, Advertise::Edns(100), false),
        (MEDIUM, Advertise::Edns(100), true),
        // Above 1232 counts as 1232.
        (FITS, Advertise::Edns(4096), false),
        (FITS, Advertise::Edns(1232), false),
        (LARGE, Advertise::Edns(4096), true),
        (LARGE, Advertise::Edns(1232), true),
        (LARGE, Advertise::NoEdns, true),
    ];
    let mut failures = Vec::new();
    for ((qname, count), adv, expect_tc) in cases {
        let what = format!("{qname} ({count} records) {adv:?}");
        let sent = build(qname, adv);

        // Precondition: the whole answer's size is in the band this case is about.
        let full = tcp_query(server.dns_addr(), &sent, ANSWER_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("{what}: no TCP reply"));
        assert_eq!(
            full.len() > limit(adv),
            expect_tc,
            "{what}: test precondition: the full answer is {} bytes, limit {}",
            full.len(),
            limit(adv)
        );

        let Some(bytes) = udp_query(server.dns_addr(), &sent, ANSWER_TIMEOUT).await else {
            failures.push(format!("{what}: no UDP reply"));
            continue;
        };
        let h = raw_header(&bytes);
        let reply = parse(&bytes);
        let mut problems = Vec::new();
        if h.tc != expect_tc {
            problems.push(format!("TC={} (expected {expect_tc})", h.tc));
        }
        if bytes.len() > limit(adv) {
            problems.push(format!(
                "{} bytes over the limit {}",
                bytes.len(),
                limit(adv)
            ));
        }
        if h.id != raw_header(&sent).id || !h.qr {
            problems.push(format!("header {h:?}"));
        }
        if h.qdcount != 1 || question_bytes(&bytes) != question_bytes(&sent) {
            problems.push("question not kept".to_string());
        }
        let expected_answers = if expect_tc { 0 } else { count };
        if reply.answers.len() != expected_answers {
            problems.push(format!(
                "{} answers (expected {expected_answers})",
                reply.answers.len()
            ));
        }
        if reply.edns.is_some() != matches!(adv, Advertise::Edns(_)) {
            problems.push("OPT presence differs from the query's".to_string());
        }
        if !problems.is_empty() {
            failures.push(format!("{what}: {}", problems.join(", ")));
        }
    }
    assert!(
        failures.is_empty(),
        "truncation failures:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn tcp_gets_the_whole_large_answer() {
    let up = big_upstream();
    let server = Server::start(&["--upstream", &up.arg()]);
    let (qname, count) = LARGE;

    // First over UDP: truncated, so a real client would retry over TCP.
    let udp = ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
    assert!(
        udp.metadata.truncation,
        "a large UDP answer must be truncated"
    );

    for q in [
        query(qname, RecordType::A),
        query_edns(qname, RecordType::A, 1232),
    ] {
        let reply: Message = ask_tcp(server.dns_addr(), &q).await;
        assert_eq!(rcode(&reply), ResponseCode::NoError);
        assert!(!reply.metadata.truncation, "TC=1 over TCP");
        assert_eq!(
            a_records(&reply).len(),
            count,
            "TCP must carry every record"
        );
    }
}
