//! `rind-ctl import` and `rind-ctl export` against a real rind-server (in-process, ephemeral
//! 127.0.0.1 ports): a zone file and a hosts file in, the summary line, the refused file, and
//! an export that another server imports as the same records.

mod common;

use hickory_proto::rr::RecordType;

use common::{a_answers, dns_query, TestServer};

fn sorted_records(server: &TestServer) -> Vec<String> {
    let mut all: Vec<String> = server
        .records()
        .iter()
        .map(|r| format!("{} {} {} {}", r["name"], r["type"], r["ttl"], r["data"]))
        .collect();
    all.sort();
    all
}

#[test]
fn import_a_zone_file_and_a_hosts_file_then_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zone = dir.path().join("home.arpa.zone");
    std::fs::write(
        &zone,
        "$ORIGIN home.arpa.\n$TTL 600\n@ SOA ns hostmaster 1 2 3 4 5\nnas A 192.168.1.10\nwww CNAME nas\n",
    )
    .expect("write zone");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "192.168.1.30 printer.home.arpa\n").expect("write hosts");

    let server = TestServer::start();
    let out = server.ok(&["import", zone.to_str().expect("utf-8 path")]);
    assert_eq!(
        out,
        "2 created, 0 already there, 1 SOA skipped (rind makes its own)\n"
    );
    // Named `hosts`, so read as a hosts file without --format.
    let out = server.ok(&["import", hosts.to_str().expect("utf-8 path")]);
    assert_eq!(out, "1 created, 0 already there\n");
    let again = server.json(&["import", zone.to_str().expect("utf-8 path")]);
    assert_eq!(again["created"], 0);
    assert_eq!(again["unchanged"], 2);

    let reply = dns_query(server.dns, "printer.home.arpa.", RecordType::A);
    assert_eq!(
        a_answers(&reply),
        vec![("192.168.1.30".parse().expect("ip"), 300)]
    );
    let reply = dns_query(server.dns, "www.home.arpa.", RecordType::A);
    assert_eq!(
        a_answers(&reply),
        vec![("192.168.1.10".parse().expect("ip"), 600)]
    );

    let exported = server.ok(&["export"]);
    assert!(
        exported.contains("www.home.arpa.\t600\tIN\tCNAME\tnas.home.arpa.\n"),
        "{exported}"
    );
    let copy_file = dir.path().join("copy.zone");
    std::fs::write(&copy_file, &exported).expect("write export");
    let copy = TestServer::start();
    let out = copy.ok(&["import", copy_file.to_str().expect("utf-8 path")]);
    assert_eq!(out, "3 created, 0 already there\n");
    assert_eq!(sorted_records(&server), sorted_records(&copy));
}

#[test]
fn a_refused_file_is_one_line_naming_the_line_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.zone");
    std::fs::write(&bad, "a.home.arpa. A 10.0.0.1\nb.home.arpa. A 10.0.0.1.1\n").expect("write");
    let server = TestServer::start();
    let out = server.ctl(&["import", bad.to_str().expect("utf-8 path")]);
    let line = out.assert_refused();
    assert!(
        line.contains("line 2:") && line.contains("(HTTP 400)"),
        "{line}"
    );
    assert!(server.records().is_empty());

    let hosts_as_zone = server.ctl(&[
        "import",
        bad.to_str().expect("utf-8 path"),
        "--format",
        "hosts",
    ]);
    assert!(hosts_as_zone.assert_refused().contains("line 1:"));

    let missing = server.ctl(&["import", "/nonexistent/rind.zone"]);
    assert!(missing
        .assert_refused()
        .contains("cannot read /nonexistent/rind.zone"));
    let unknown = server.ctl(&["export", "--zone", "nowhere.arpa"]);
    let line = unknown.assert_refused();
    assert!(
        line.contains("no zone named nowhere.arpa.") && line.contains("HTTP 404"),
        "{line}"
    );
}
