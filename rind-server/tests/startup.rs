//! Refusals to start, bad flags and environment twins (behaviour 9).

mod common;

use std::net::{TcpListener, UdpSocket};

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

#[test]
fn public_http_without_token_is_refused() {
    let (code, stderr) = Server::run_expect_exit(&["--http-addr", "0.0.0.0:0"]);
    let line = assert_refusal(code, &stderr);
    assert!(
        line.contains("api-token"),
        "the reason should name --api-token: {line}"
    );
}

#[tokio::test]
async fn public_http_with_token_starts() {
    let server = Server::start(&["--http-addr", "0.0.0.0:0", "--api-token", "s3cret"]);
    // Reached over loopback, which a wildcard address includes.
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], server.http_addr().port()));
    assert_eq!(http_get(loopback, "/healthz", None).await.status, 200);
}

#[test]
fn busy_dns_udp_port_is_refused_with_a_hint() {
    let holder = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    let addr = holder.local_addr().expect("UDP addr").to_string();
    let (code, stderr) = Server::run_expect_exit(&["--dns-addr", &addr]);
    let line = assert_refusal(code, &stderr);
    assert!(
        line.contains(&addr),
        "the reason should name {addr}: {line}"
    );
    assert!(
        line.contains("--dns-addr 127.0.0.1:5353"),
        "the reason should suggest --dns-addr 127.0.0.1:5353: {line}"
    );
}

#[test]
fn busy_dns_tcp_port_is_refused_with_a_hint() {
    // Only TCP is taken: the UDP bind succeeds and the TCP one must still be checked.
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind TCP");
    let addr = holder.local_addr().expect("TCP addr").to_string();
    let (code, stderr) = Server::run_expect_exit(&["--dns-addr", &addr]);
    let line = assert_refusal(code, &stderr);
    assert!(
        line.contains(&addr),
        "the reason should name {addr}: {line}"
    );
    assert!(
        line.contains("--dns-addr 127.0.0.1:5353"),
        "no hint: {line}"
    );
}

#[test]
fn busy_http_port_is_refused() {
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind TCP");
    let addr = holder.local_addr().expect("TCP addr").to_string();
    let (code, stderr) = Server::run_expect_exit(&["--http-addr", &addr]);
    let line = assert_refusal(code, &stderr);
    assert!(
        line.contains(&addr),
        "the reason should name {addr}: {line}"
    );
}

#[tokio::test]
async fn locked_data_dir_is_refused() {
    let first = Server::start(&[]);
    let (code, stderr) = ServerBuilder::new()
        .data_dir(first.data_dir())
        .run_expect_exit();
    let line = assert_refusal(code, &stderr);
    assert!(
        line.to_lowercase().contains("locked"),
        "the reason should say the data dir is locked: {line}"
    );
    // The first server is unaffected.
    let reply = ask_udp(first.dns_addr(), &query("localhost.", RecordType::A)).await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
}

#[test]
fn bad_flag_values_exit_2() {
    let cases: [&[&str]; 5] = [
        &["--upstream", "not-an-ip"],
        &["--upstream", "127.0.0.1:99999"],
        &["--allow", "300.1.2.3/8"],
        &["--allow", "10.0.0.0/33"],
        &["--min-ttl", "10", "--max-ttl", "5"],
    ];
    let mut failures = Vec::new();
    for args in cases {
        let (code, stderr) = Server::run_expect_exit(args);
        if code != Some(2) || stderr.contains("panicked") || stderr.trim().is_empty() {
            failures.push(format!("{args:?}: exit {code:?}, stderr:\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "bad flags:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn rind_upstreams_env_replaces_the_flag() {
    let failing = FakeUpstream::start(Behaviour::ServFail);
    let good = FakeUpstream::start(Behaviour::Answer);
    // Comma separated, in order: the first answers SERVFAIL, so the second is asked.
    let list = format!("{},{}", failing.arg(), good.arg());
    let server = ServerBuilder::new().env("RIND_UPSTREAMS", &list).start();

    let qname = "t9-env.example.com.";
    let reply = ask_udp(server.dns_addr(), &query(qname, RecordType::A)).await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
    assert_eq!(
        failing.count(qname),
        1,
        "first upstream from RIND_UPSTREAMS not asked"
    );
    assert_eq!(
        good.count(qname),
        1,
        "second upstream from RIND_UPSTREAMS not asked"
    );
}

#[tokio::test]
async fn rind_allow_env_replaces_the_flag() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = ServerBuilder::new()
        .args(&["--upstream", &up.arg()])
        .env("RIND_ALLOW", "10.0.0.0/8,192.168.0.0/16")
        .start();

    let reply = ask_udp(
        server.dns_addr(),
        &query("t9-allow-env.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&reply), ResponseCode::Refused);
    assert_eq!(up.total(), 0);
}
