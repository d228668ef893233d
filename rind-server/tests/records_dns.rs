//! DNS answers from local records, over UDP against the real server (docs/reference.md, "DNS
//! behaviour"): every type, AA and TTL, NODATA, wildcards, CNAME chains, PTR, precedence.

mod records_common;

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, RecordType};
use records_common::{FakeUpstream, Server};

fn data(msg: &Message) -> Vec<String> {
    msg.answers.iter().map(|r| r.data.to_string()).collect()
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("name")
}

/// NOERROR, AA=1, and exactly the answers given (as hickory prints their data).
fn assert_authoritative(msg: &Message, expected: &[&str]) {
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{msg:?}");
    assert!(msg.metadata.authoritative, "AA unset: {msg:?}");
    assert_eq!(data(msg), expected, "{msg:?}");
}

#[test]
fn every_type_is_answered_with_aa_and_its_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = Server::start(&dir.path().join("data"), upstream.addr, &[]);
    s.create("nas.home.lan", "A", 111, "192.168.1.10");
    s.create("nas.home.lan", "AAAA", 112, "fd00::10");
    s.create("web.home.lan", "CNAME", 113, "nas.home.lan");
    s.create("home.lan", "MX", 114, "10 mail.home.lan");
    s.create("home.lan", "TXT", 115, "\"v=spf1 -all\" \"second string\"");
    s.create("_sip._tcp.home.lan", "SRV", 116, "10 5 5060 sip.home.lan");
    s.create("5.0.0.10.in-addr.arpa", "PTR", 117, "five.home.lan");
    s.create("home.lan", "NS", 118, "ns1.home.lan");
    s.create("home.lan", "CAA", 119, "0 issue \"letsencrypt.org\"");

    let cases: [(&str, RecordType, u32); 9] = [
        ("nas.home.lan.", RecordType::A, 111),
        ("nas.home.lan.", RecordType::AAAA, 112),
        ("web.home.lan.", RecordType::CNAME, 113),
        ("home.lan.", RecordType::MX, 114),
        ("home.lan.", RecordType::TXT, 115),
        ("_sip._tcp.home.lan.", RecordType::SRV, 116),
        ("5.0.0.10.in-addr.arpa.", RecordType::PTR, 117),
        ("home.lan.", RecordType::NS, 118),
        ("home.lan.", RecordType::CAA, 119),
    ];
    for (qname, qtype, ttl) in cases {
        let msg = s.ask(qname, qtype);
        assert_eq!(
            msg.metadata.response_code,
            ResponseCode::NoError,
            "{qname} {qtype}"
        );
        assert!(msg.metadata.authoritative, "{qname} {qtype}");
        assert_eq!(msg.answers.len(), 1, "{qname} {qtype}: {msg:?}");
        let record = &msg.answers[0];
        assert_eq!(record.record_type(), qtype);
        assert_eq!(record.ttl, ttl, "{qname} {qtype}");
        assert_eq!(record.name, name(qname));
    }
    assert_eq!(
        s.ask("nas.home.lan.", RecordType::A).answers[0].data,
        RData::A(A(Ipv4Addr::new(192, 168, 1, 10)))
    );
    assert_eq!(
        s.ask("nas.home.lan.", RecordType::AAAA).answers[0].data,
        RData::AAAA(AAAA("fd00::10".parse::<Ipv6Addr>().expect("ip")))
    );
    let txt = s.ask("home.lan.", RecordType::TXT);
    let RData::TXT(strings) = &txt.answers[0].data else {
        panic!("not TXT: {txt:?}")
    };
    let strings: Vec<&[u8]> = strings.txt_data.iter().map(|s| &s[..]).collect();
    assert_eq!(
        strings,
        [b"v=spf1 -all".as_slice(), b"second string".as_slice()]
    );
    assert_eq!(
        data(&s.ask("home.lan.", RecordType::MX)),
        ["10 mail.home.lan."]
    );
    assert_eq!(
        data(&s.ask("_sip._tcp.home.lan.", RecordType::SRV)),
        ["10 5 5060 sip.home.lan."]
    );
    let caa = s.ask("home.lan.", RecordType::CAA);
    let RData::CAA(caa) = &caa.answers[0].data else {
        panic!("not CAA")
    };
    assert_eq!(
        (caa.tag.as_str(), caa.value.as_slice()),
        ("issue", b"letsencrypt.org".as_slice())
    );
    // The client's letter case comes back in the question and the answer's owner.
    let mixed = s.ask("NaS.HoMe.LaN.", RecordType::A);
    assert_eq!(mixed.queries[0].name.to_string(), "NaS.HoMe.LaN.");
    assert_eq!(upstream.queries(), 0, "a local name was forwarded");
}

#[test]
fn other_types_at_a_local_name_get_nodata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = Server::start(&dir.path().join("data"), upstream.addr, &[]);
    s.create("nas.home.lan", "A", 300, "192.168.1.10");
    for qtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
        assert_authoritative(&s.ask("nas.home.lan.", qtype), &[]);
    }
    assert_eq!(upstream.queries(), 0, "NODATA must not come from upstream");
    // A name without local records is forwarded.
    let forwarded = s.ask("www.example.com.", RecordType::A);
    assert!(!forwarded.metadata.authoritative);
    assert_eq!(data(&forwarded), [FakeUpstream::ADDRESS.to_string()]);
}

#[test]
fn wildcards_answer_names_below_at_any_depth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = Server::start(&dir.path().join("data"), upstream.addr, &[]);
    s.create("*.dev.lan", "A", 60, "10.9.9.9");
    s.create("exact.dev.lan", "TXT", 60, "mine");
    s.create("*.deeper.dev.lan", "A", 60, "10.8.8.8");

    let one = s.ask("app.dev.lan.", RecordType::A);
    assert_authoritative(&one, &["10.9.9.9"]);
    assert_eq!(one.answers[0].name, name("app.dev.lan."));
    assert_authoritative(&s.ask("a.b.c.dev.lan.", RecordType::A), &["10.9.9.9"]);
    // The nearest wildcard wins.
    assert_authoritative(&s.ask("x.deeper.dev.lan.", RecordType::A), &["10.8.8.8"]);
    // Other types at a matched name: NODATA.
    assert_authoritative(&s.ask("app.dev.lan.", RecordType::AAAA), &[]);
    // A name with records of its own is not matched, whatever the type.
    assert_authoritative(&s.ask("exact.dev.lan.", RecordType::A), &[]);
    assert_authoritative(&s.ask("exact.dev.lan.", RecordType::TXT), &["mine"]);
    assert_eq!(upstream.queries(), 0);
    // The wildcard's own parent is not below it.
    let parent = s.ask("dev.lan.", RecordType::A);
    assert!(!parent.metadata.authoritative);
    assert_eq!(upstream.queries(), 1);
}

#[test]
fn local_cname_chains_are_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = Server::start(&dir.path().join("data"), upstream.addr, &[]);
    s.create("a.lan", "CNAME", 10, "b.lan");
    s.create("b.lan", "CNAME", 20, "c.lan");
    s.create("c.lan", "A", 30, "10.0.0.3");

    let msg = s.ask("a.lan.", RecordType::A);
    assert_authoritative(&msg, &["b.lan.", "c.lan.", "10.0.0.3"]);
    let ttls: Vec<u32> = msg.answers.iter().map(|r| r.ttl).collect();
    assert_eq!(ttls, [10, 20, 30]);
    assert_eq!(msg.answers[0].data, RData::CNAME(CNAME(name("b.lan."))));
    // The chain ends at a local name without the type: the CNAMEs and NODATA.
    assert_authoritative(&s.ask("a.lan.", RecordType::AAAA), &["b.lan.", "c.lan."]);
    assert_eq!(upstream.queries(), 0);
}

#[test]
fn a_cname_leaving_the_local_data_goes_upstream_for_its_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = Server::start(&dir.path().join("data"), upstream.addr, &[]);
    s.create("cdn.home.lan", "CNAME", 60, "hop.home.lan");
    s.create("hop.home.lan", "CNAME", 60, "www.example.com");
    s.create("nas-alias.home.lan", "CNAME", 60, "nas.home.arpa");

    let msg = s.ask("cdn.home.lan.", RecordType::A);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    assert_eq!(
        data(&msg),
        [
            "hop.home.lan.",
            "www.example.com.",
            &FakeUpstream::ADDRESS.to_string()
        ]
    );
    assert_eq!(upstream.asked(), ["www.example.com. A"]);

    // A special-use target is answered locally, never forwarded.
    let special = s.ask("nas-alias.home.lan.", RecordType::A);
    assert_eq!(special.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(data(&special), ["nas.home.arpa."]);
    assert_eq!(upstream.queries(), 1);
}

#[test]
fn loops_and_chains_over_eight_links_are_servfail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = Server::start(&dir.path().join("data"), upstream.addr, &[]);
    s.create("ping.lan", "CNAME", 60, "pong.lan");
    s.create("pong.lan", "CNAME", 60, "ping.lan");
    for i in 0..9 {
        s.create(
            &format!("l{i}.lan"),
            "CNAME",
            60,
            &format!("l{}.lan", i + 1),
        );
    }
    s.create("l9.lan", "A", 60, "10.0.0.9");

    let looped = s.ask("ping.lan.", RecordType::A);
    assert_eq!(looped.metadata.response_code, ResponseCode::ServFail);
    assert!(looped.answers.is_empty());
    // l1 → … → l9: 8 links, answered; l0 → … → l9: 9 links, SERVFAIL.
    let eight = s.ask("l1.lan.", RecordType::A);
    assert_eq!(eight.metadata.response_code, ResponseCode::NoError);
    assert_eq!(eight.answers.len(), 9);
    let nine = s.ask("l0.lan.", RecordType::A);
    assert_eq!(nine.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(upstream.queries(), 0);
}

#[test]
fn local_addresses_answer_ptr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = Server::start(&dir.path().join("data"), upstream.addr, &[]);
    s.create("nas.home.lan", "A", 77, "192.168.1.10");
    s.create("nas.home.lan", "AAAA", 78, "fd00::10");
    s.create("public.home.lan", "A", 79, "198.51.100.4");

    let v4 = s.ask("10.1.168.192.in-addr.arpa.", RecordType::PTR);
    assert_authoritative(&v4, &["nas.home.lan."]);
    assert_eq!(v4.answers[0].ttl, 77);
    let v6_name = Name::from(std::net::IpAddr::V6("fd00::10".parse().expect("ip"))).to_ascii();
    let v6 = s.ask(&v6_name, RecordType::PTR);
    assert_authoritative(&v6, &["nas.home.lan."]);
    assert_eq!(v6.answers[0].ttl, 78);
    assert_authoritative(
        &s.ask("4.100.51.198.in-addr.arpa.", RecordType::PTR),
        &["public.home.lan."],
    );
    // Another private address is still the special-use NXDOMAIN.
    let other = s.ask("11.1.168.192.in-addr.arpa.", RecordType::PTR);
    assert_eq!(other.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(upstream.queries(), 0);
}

#[test]
fn local_records_beat_special_use_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(&dir.path().join("data"), records_common::no_upstream(), &[]);
    s.create("nas.home.arpa", "A", 300, "192.168.1.10");
    s.create("db.localhost", "A", 300, "10.1.1.1");
    assert_authoritative(&s.ask("nas.home.arpa.", RecordType::A), &["192.168.1.10"]);
    assert_authoritative(&s.ask("nas.home.arpa.", RecordType::AAAA), &[]);
    assert_authoritative(&s.ask("db.localhost.", RecordType::A), &["10.1.1.1"]);
    let other = s.ask("tv.home.arpa.", RecordType::A);
    assert_eq!(other.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn changes_are_visible_when_the_api_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = Server::start(&dir.path().join("data"), upstream.addr, &[]);
    for round in 0..20 {
        let ip = format!("10.0.0.{round}");
        let created = s.create("fresh.home.lan", "A", 300, &ip);
        assert_authoritative(&s.ask("fresh.home.lan.", RecordType::A), &[&ip]);
        let id = created["id"].as_str().expect("id");
        let moved = format!("10.0.1.{round}");
        let body = serde_json::json!({"name": "fresh.home.lan", "type": "A", "data": moved});
        let put = s.call(
            "PUT",
            &format!("/api/v1/records/{id}"),
            Some(&body.to_string()),
        );
        assert_eq!(put.status, 200);
        assert_authoritative(&s.ask("fresh.home.lan.", RecordType::A), &[&moved]);
        assert_eq!(
            s.call("DELETE", &format!("/api/v1/records/{id}"), None)
                .status,
            204
        );
        let after = s.ask("fresh.home.lan.", RecordType::A);
        assert!(
            !after.metadata.authoritative,
            "still local after delete: {after:?}"
        );
    }
}
