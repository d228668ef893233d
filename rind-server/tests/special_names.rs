//! Special-use names answered locally and never forwarded (behaviour 5).

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

#[tokio::test]
async fn localhost_answers_loopback_authoritatively() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    let a = ask_udp(server.dns_addr(), &query("localhost.", RecordType::A)).await;
    assert_eq!(rcode(&a), ResponseCode::NoError);
    assert!(a.metadata.authoritative, "localhost. A must be AA=1");
    assert_eq!(a_records(&a), vec![Ipv4Addr::LOCALHOST]);

    let aaaa = ask_udp(
        server.dns_addr(),
        &query("foo.localhost.", RecordType::AAAA),
    )
    .await;
    assert_eq!(rcode(&aaaa), ResponseCode::NoError);
    assert!(
        aaaa.metadata.authoritative,
        "foo.localhost. AAAA must be AA=1"
    );
    assert_eq!(aaaa_records(&aaaa), vec![Ipv6Addr::LOCALHOST]);

    let sub_a = ask_udp(server.dns_addr(), &query("a.b.LocalHost.", RecordType::A)).await;
    assert_eq!(
        a_records(&sub_a),
        vec![Ipv4Addr::LOCALHOST],
        "names below localhost., any case"
    );

    let ptr = ask_udp(
        server.dns_addr(),
        &query("1.0.0.127.in-addr.arpa.", RecordType::PTR),
    )
    .await;
    assert_eq!(rcode(&ptr), ResponseCode::NoError);
    assert_eq!(ptr_records(&ptr), vec![name("localhost.")]);

    assert_eq!(
        up.total(),
        0,
        "a localhost query was forwarded: {:?}",
        up.seen()
    );
}

#[tokio::test]
async fn private_and_special_names_get_nxdomain_without_forwarding() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    let v4 = |a, b, c, d| reverse_v4(Ipv4Addr::new(a, b, c, d));
    let v6 = |s: &str| reverse_v6(s.parse().expect("literal IPv6"));
    let cases: Vec<(String, RecordType)> = vec![
        ("x.home.arpa.".into(), RecordType::A),
        ("printer.local.".into(), RecordType::A),
        ("a.invalid.".into(), RecordType::A),
        (v4(10, 2, 3, 4), RecordType::PTR),
        (v4(192, 168, 1, 1), RecordType::PTR),
        (v4(172, 20, 0, 1), RecordType::PTR),
        (v4(172, 16, 0, 1), RecordType::PTR),
        (v4(172, 31, 255, 254), RecordType::PTR),
        (v4(169, 254, 1, 2), RecordType::PTR),
        (v4(100, 64, 0, 1), RecordType::PTR),
        (v4(100, 127, 255, 254), RecordType::PTR),
        (v6("fd00::1"), RecordType::PTR),
        (v6("fc00::1"), RecordType::PTR),
        (v6("fe80::1"), RecordType::PTR),
    ];
    assert_eq!(
        reverse_v4(Ipv4Addr::new(10, 2, 3, 4)),
        "4.3.2.10.in-addr.arpa."
    );
    assert!(v6("fe80::1").ends_with(".0.8.e.f.ip6.arpa."));
    assert!(v6("fd00::1").ends_with(".0.0.d.f.ip6.arpa."));

    let mut failures = Vec::new();
    for (qname, rtype) in &cases {
        let reply = ask_udp(server.dns_addr(), &query(qname, *rtype)).await;
        if rcode(&reply) != ResponseCode::NXDomain {
            failures.push(format!(
                "{qname} {rtype}: RCODE {:?}, expected NXDOMAIN",
                rcode(&reply)
            ));
        } else if !has_soa_authority(&reply) {
            failures.push(format!(
                "{qname} {rtype}: NXDOMAIN without an SOA in authority"
            ));
        }
        if !reply.answers.is_empty() {
            failures.push(format!("{qname} {rtype}: answers {:?}", reply.answers));
        }
    }
    assert!(
        failures.is_empty(),
        "special names:\n{}",
        failures.join("\n")
    );
    let forwarded: Vec<String> = up.seen().into_iter().map(|s| s.qname).collect();
    assert!(
        forwarded.is_empty(),
        "special names were forwarded: {forwarded:?}"
    );
}

#[tokio::test]
async fn public_neighbours_of_private_ranges_are_forwarded() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    // Just outside 172.16/12, 100.64/10 and 10/8, and a global IPv6 address: these are
    // ordinary names, so they must reach the upstream.
    let names = [
        reverse_v4(Ipv4Addr::new(172, 32, 0, 1)),
        reverse_v4(Ipv4Addr::new(100, 128, 0, 1)),
        reverse_v4(Ipv4Addr::new(11, 0, 0, 1)),
        reverse_v6("2001:db8::1".parse().expect("literal IPv6")),
    ];
    for qname in &names {
        let reply = ask_udp(server.dns_addr(), &query(qname, RecordType::PTR)).await;
        assert_eq!(rcode(&reply), ResponseCode::NoError, "{qname}");
        assert_eq!(up.count(qname), 1, "{qname} was not forwarded");
    }
}
