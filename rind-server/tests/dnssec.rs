//! DNSSEC-transparent forwarding (docs/reference.md, "DNSSEC"): the DO echo,
//! DNSSEC records for DO=1 clients only (from upstream, the cache and the disk), negative
//! proofs, CD and AD. The fake upstream signs like a validating resolver in front of a signed
//! zone; tests/external/dnssec.sh checks the same with Knot and delv.

mod common;

use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use serde_json::json;

/// Long enough for the cache's write-behind batch (at most every 250 ms) to reach the disk.
const WRITE_BEHIND: Duration = Duration::from_millis(600);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// An EDNS query with DO as given.
fn dnssec_query(qname: &str, rtype: RecordType, dnssec_ok: bool) -> Message {
    let mut msg = query_edns(qname, rtype, 1232);
    if let Some(edns) = msg.edns.as_mut() {
        edns.set_dnssec_ok(dnssec_ok);
    }
    msg
}

/// The DO bit of a reply's OPT record; `None` without one.
fn do_bit(reply: &Message) -> Option<bool> {
    reply.edns.as_ref().map(|e| e.flags().dnssec_ok)
}

fn types(records: &[Record]) -> Vec<RecordType> {
    records.iter().map(Record::record_type).collect()
}

/// Creates the local record `host.home.lan. A 192.168.1.10`.
async fn add_local_record(server: &Server) {
    let created = http_post(
        server.http_addr(),
        "/api/v1/records",
        &json!({"name": "host.home.lan", "type": "A", "data": "192.168.1.10"}),
        None,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
}

/// The upstream queries seen for `qname` (any type): DO and CD of each.
fn upstream_bits(up: &FakeUpstream, qname: &str) -> Vec<(bool, bool)> {
    let qname = normalize(qname);
    up.seen()
        .iter()
        .filter(|s| s.qname == qname)
        .map(|s| (dnssec_ok(&s.message), s.message.metadata.checking_disabled))
        .collect()
}

#[tokio::test]
async fn do_is_echoed_on_every_kind_of_answer() {
    let up = FakeUpstream::start(Behaviour::Signed);
    up.set_rule("nx-true.example.com.", Behaviour::SignedNxDomain);
    up.set_rule("nx-false.example.com.", Behaviour::SignedNxDomain);
    up.set_rule("fail-true.example.com.", Behaviour::ServFail);
    up.set_rule("fail-false.example.com.", Behaviour::ServFail);
    let server = Server::start(&["--upstream", &up.arg()]);
    add_local_record(&server).await;

    for dnssec_ok in [true, false] {
        let cases = [
            (
                "forwarded",
                format!("fwd-{dnssec_ok}.example.com."),
                ResponseCode::NoError,
            ),
            (
                "cached",
                format!("fwd-{dnssec_ok}.example.com."),
                ResponseCode::NoError,
            ),
            ("local", "host.home.lan.".to_string(), ResponseCode::NoError),
            (
                "local NODATA",
                "host.home.lan.".to_string(),
                ResponseCode::NoError,
            ),
            (
                "special-use",
                "localhost.".to_string(),
                ResponseCode::NoError,
            ),
            (
                "special-use NXDOMAIN",
                "x.home.arpa.".to_string(),
                ResponseCode::NXDomain,
            ),
            (
                "negative",
                format!("nx-{dnssec_ok}.example.com."),
                ResponseCode::NXDomain,
            ),
            (
                "negative, cached",
                format!("nx-{dnssec_ok}.example.com."),
                ResponseCode::NXDomain,
            ),
            (
                "SERVFAIL",
                format!("fail-{dnssec_ok}.example.com."),
                ResponseCode::ServFail,
            ),
        ];
        for (kind, qname, rcode) in cases {
            let rtype = if kind == "local NODATA" {
                RecordType::MX
            } else {
                RecordType::A
            };
            let reply = ask_udp(server.dns_addr(), &dnssec_query(&qname, rtype, dnssec_ok)).await;
            assert_eq!(
                reply.metadata.response_code, rcode,
                "{kind} {qname}: {reply:?}"
            );
            assert_eq!(do_bit(&reply), Some(dnssec_ok), "{kind} {qname}: {reply:?}");
        }
    }

    // REFUSED (a client outside --allow) echoes DO too.
    let strict = Server::start(&["--upstream", &up.arg(), "--allow", "10.0.0.0/8"]);
    for dnssec_ok in [true, false] {
        let q = dnssec_query("refused.example.com.", RecordType::A, dnssec_ok);
        let reply = ask_udp(strict.dns_addr(), &q).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        assert_eq!(do_bit(&reply), Some(dnssec_ok), "{reply:?}");
    }
    assert_eq!(up.count("refused.example.com."), 0);
}

#[tokio::test]
async fn signatures_reach_do_clients_only_from_upstream_cache_and_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let qname = "www.signed.example.";
    let up = FakeUpstream::start(Behaviour::Signed);
    let mut first = Server::start_on(&data, &up, &[]);

    // A DO=0 client first: the upstream is still asked with DO=1, the client gets no RRSIG.
    let plain = ask_udp(first.dns_addr(), &dnssec_query(qname, RecordType::A, false)).await;
    assert_eq!(types(&plain.answers), [RecordType::A]);
    assert_eq!(upstream_bits(&up, qname), [(true, false)]);

    // A DO=1 client is served the same entry, signature included, without a new query.
    let signed = ask_udp(first.dns_addr(), &dnssec_query(qname, RecordType::A, true)).await;
    assert_eq!(types(&signed.answers), [RecordType::A, RecordType::RRSIG]);
    let again = ask_udp(first.dns_addr(), &dnssec_query(qname, RecordType::A, false)).await;
    assert_eq!(types(&again.answers), [RecordType::A]);
    // Without EDNS at all, the same.
    let bare = ask_udp(first.dns_addr(), &query(qname, RecordType::A)).await;
    assert_eq!(types(&bare.answers), [RecordType::A]);
    assert_eq!(
        up.queries(qname),
        1,
        "one upstream query serves both kinds of client"
    );

    tokio::time::sleep(WRITE_BEHIND).await;
    first.sigterm();
    assert!(first.wait_exit(EXIT_TIMEOUT).is_some_and(|s| s.success()));

    let up2 = FakeUpstream::start(Behaviour::Signed);
    let second = Server::start_on(&data, &up2, &[]);
    let signed = ask_udp(second.dns_addr(), &dnssec_query(qname, RecordType::A, true)).await;
    assert_eq!(types(&signed.answers), [RecordType::A, RecordType::RRSIG]);
    assert_eq!(do_bit(&signed), Some(true));
    let plain = ask_udp(
        second.dns_addr(),
        &dnssec_query(qname, RecordType::A, false),
    )
    .await;
    assert_eq!(types(&plain.answers), [RecordType::A]);
    assert_eq!(up2.total(), 0, "after restart: {:?}", up2.seen());
}

#[tokio::test]
async fn negative_answers_keep_their_proofs_for_do_clients() {
    let up = FakeUpstream::start(Behaviour::SignedNxDomain);
    let server = Server::start(&["--upstream", &up.arg()]);
    let qname = "nope.signed.example.";
    let proofs = [
        RecordType::SOA,
        RecordType::RRSIG,
        RecordType::NSEC,
        RecordType::RRSIG,
    ];

    let signed = ask_udp(server.dns_addr(), &dnssec_query(qname, RecordType::A, true)).await;
    assert_eq!(signed.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(types(&signed.authorities), proofs);
    // The SOA's TTL is min(SOA TTL, MINIMUM) = 60 (RFC 2308); its proofs go no higher.
    assert!(signed.authorities.iter().all(|r| r.ttl <= 60), "{signed:?}");

    let plain = ask_udp(
        server.dns_addr(),
        &dnssec_query(qname, RecordType::A, false),
    )
    .await;
    assert_eq!(plain.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(types(&plain.authorities), [RecordType::SOA]);

    let cached = ask_udp(server.dns_addr(), &dnssec_query(qname, RecordType::A, true)).await;
    assert_eq!(types(&cached.authorities), proofs);
    assert_eq!(
        up.queries(qname),
        1,
        "the negative answer was cached for both"
    );
}

#[tokio::test]
async fn ad_only_for_clients_that_set_do_or_ad() {
    let up = FakeUpstream::start(Behaviour::Signed);
    let server = Server::start(&["--upstream", &up.arg()]);
    add_local_record(&server).await;

    // (DO, AD) of the client → AD in the reply, first from upstream, then from the cache.
    for (i, (dnssec_ok, ad, expected)) in [
        (false, false, false),
        (false, true, true),
        (true, false, true),
        (true, true, true),
    ]
    .into_iter()
    .enumerate()
    {
        let qname = format!("ad-{i}.signed.example.");
        for source in ["upstream", "cache"] {
            let mut q = dnssec_query(&qname, RecordType::A, dnssec_ok);
            q.metadata.authentic_data = ad;
            let reply = ask_udp(server.dns_addr(), &q).await;
            assert_eq!(
                reply.metadata.authentic_data, expected,
                "DO={dnssec_ok} AD={ad}, from the {source}: {reply:?}"
            );
        }
        assert_eq!(up.queries(&qname), 1);
    }

    // Answers rind makes itself never claim AD.
    for qname in ["host.home.lan.", "localhost."] {
        let mut q = dnssec_query(qname, RecordType::A, true);
        q.metadata.authentic_data = true;
        let reply = ask_udp(server.dns_addr(), &q).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(!reply.metadata.authentic_data, "{qname}: {reply:?}");
    }
}

#[tokio::test]
async fn an_answer_fetched_with_cd_never_reaches_a_cd_0_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let up = FakeUpstream::start(Behaviour::Bogus);
    let mut server = Server::start_on(&data, &up, &[]);
    let bogus = "www.bogus.example.";
    let dns = server.dns_addr();
    let ask = |qname: &'static str, cd: bool| async move {
        let mut q = dnssec_query(qname, RecordType::A, true);
        q.metadata.checking_disabled = cd;
        ask_udp(dns, &q).await
    };

    let unchecked = ask(bogus, true).await;
    assert_eq!(unchecked.metadata.response_code, ResponseCode::NoError);
    assert!(unchecked.metadata.checking_disabled, "CD echoed");
    assert_eq!(a_records(&unchecked), [ANSWER_V4]);
    assert_eq!(upstream_bits(&up, bogus), [(true, true)]);

    // A CD=0 client must not get what the upstream did not check: it asks with CD=0 and
    // gets the upstream's SERVFAIL, each time (SERVFAIL is not cached).
    for asked in [2, 3] {
        let checked = ask(bogus, false).await;
        assert_eq!(checked.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(up.queries(bogus), asked);
    }
    assert_eq!(
        upstream_bits(&up, bogus)[1..],
        [(true, false), (true, false)]
    );

    // The CD=1 answer is still cached for CD=1 clients.
    let cached = ask(bogus, true).await;
    assert_eq!(a_records(&cached), [ANSWER_V4]);
    assert_eq!(up.queries(bogus), 3);

    // A CD=1 client is served a validated (CD=0) answer from the cache.
    let good = "www.good.example.";
    up.set_rule(good, Behaviour::Signed);
    let validated = ask(good, false).await;
    assert_eq!(a_records(&validated), [ANSWER_V4]);
    let unchecked = ask(good, true).await;
    assert_eq!(a_records(&unchecked), [ANSWER_V4]);
    assert_eq!(
        types(&unchecked.answers),
        [RecordType::A, RecordType::RRSIG]
    );
    assert_eq!(upstream_bits(&up, good), [(true, false)]);

    // The same after a restart, from the disk: the CD=1 answer for CD=1 clients only.
    tokio::time::sleep(WRITE_BEHIND).await;
    server.sigterm();
    assert!(server.wait_exit(EXIT_TIMEOUT).is_some_and(|s| s.success()));
    let up2 = FakeUpstream::start(Behaviour::Bogus);
    let server = Server::start_on(&data, &up2, &[]);
    let mut q = dnssec_query(bogus, RecordType::A, true);
    q.metadata.checking_disabled = true;
    let cached = ask_udp(server.dns_addr(), &q).await;
    assert_eq!(a_records(&cached), [ANSWER_V4]);
    assert_eq!(up2.total(), 0, "the CD=1 answer came back from disk");
    q.metadata.checking_disabled = false;
    let checked = ask_udp(server.dns_addr(), &q).await;
    assert_eq!(checked.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(upstream_bits(&up2, bogus), [(true, false)]);
}

#[tokio::test]
async fn dnssec_types_are_forwarded_like_any_other() {
    let up = FakeUpstream::start(Behaviour::Signed);
    let server = Server::start(&["--upstream", &up.arg()]);
    for rtype in [
        RecordType::DNSKEY,
        RecordType::DS,
        RecordType::RRSIG,
        RecordType::NSEC,
        RecordType::NSEC3,
        RecordType::NSEC3PARAM,
    ] {
        let qname = format!("{}.types.example.", rtype.to_string().to_lowercase());
        let reply = ask_udp(server.dns_addr(), &dnssec_query(&qname, rtype, false)).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{rtype}"
        );
        let seen = up.seen();
        let asked: Vec<RecordType> = seen
            .iter()
            .filter(|s| s.qname == qname)
            .map(|s| s.qtype)
            .collect();
        assert_eq!(asked, [rtype], "{rtype} was not forwarded as asked");
        if rtype == RecordType::RRSIG {
            // Asked for by type, RRSIGs are the answer even without DO (RFC 4035 §3.2.1).
            assert_eq!(types(&reply.answers), [RecordType::RRSIG]);
        }
    }
}
