//! Client access control (behaviour 4).

mod common;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

#[tokio::test]
async fn clients_outside_allow_get_refused_and_nothing_is_forwarded() {
    let up = FakeUpstream::start(Behaviour::Answer);
    // Loopback is not in 10/8, so our own queries come from a disallowed network.
    let server = Server::start(&["--upstream", &up.arg(), "--allow", "10.0.0.0/8"]);

    let udp = ask_udp(
        server.dns_addr(),
        &query("t4-udp.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&udp), ResponseCode::Refused, "UDP");
    assert!(udp.answers.is_empty());

    let tcp = ask_tcp(
        server.dns_addr(),
        &query("t4-tcp.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&tcp), ResponseCode::Refused, "TCP");
    assert!(tcp.answers.is_empty());

    assert_eq!(
        up.total(),
        0,
        "a refused client's query reached the upstream"
    );
}

#[tokio::test]
async fn loopback_is_allowed_by_default() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    let reply = ask_udp(
        server.dns_addr(),
        &query("t4-default.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
}

#[tokio::test]
async fn an_allow_list_that_includes_loopback_answers() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&[
        "--upstream",
        &up.arg(),
        "--allow",
        "10.0.0.0/8",
        "--allow",
        "127.0.0.0/8",
    ]);

    let reply = ask_udp(
        server.dns_addr(),
        &query("t4-listed.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
}
