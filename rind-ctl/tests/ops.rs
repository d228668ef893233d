//! `rind-ctl status`, `log [--follow]` and `man` against a real rind-server (in-process,
//! ephemeral 127.0.0.1 ports), after real DNS queries.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use serde_json::Value;

use common::{dns_query, FakeUpstream, TestServer};

const CTL: &str = env!("CARGO_BIN_EXE_rind-ctl");

#[test]
fn status_shows_version_counters_and_health() {
    let upstream = FakeUpstream::start();
    let server = TestServer::with_args(&["--upstream", &upstream.arg()]);
    server.add("nas.home.arpa", "A", "192.168.1.20");
    for _ in 0..3 {
        dns_query(server.dns, "www.example.com.", RecordType::A);
    }
    let text = server.ok(&["status"]);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.starts_with(&format!("rind-server {version}, up ")),
        "{text}"
    );
    for needle in [
        "\nqueries     3\n",
        "\ncache       1 entries, 2 hits, 1 misses, hit ratio 66.7%\n",
        "\nstore       ok, 1 records\n",
        &format!(
            "\nupstream    {} ok (1 queries, 0 failures)\n",
            upstream.arg()
        ),
        "\nquery log   3 queries logged, keeps the last 10000\n",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    let json = server.json(&["status"]);
    assert_eq!(json["version"], version);
    assert_eq!(json["cache"]["hits"], 2);
    assert_eq!(json["upstreams"][0]["status"], "ok");
}

#[test]
fn status_reports_a_dead_upstream() {
    let server = TestServer::start();
    for name in ["a.example.", "b.example.", "c.example."] {
        dns_query(server.dns, name, RecordType::A);
    }
    let text = server.ok(&["status"]);
    assert!(
        text.contains("upstream    127.0.0.1:9 down (3 failures in a row; 3 queries, 3 failures)"),
        "{text}"
    );
}

/// The NAME column of each table row (after the header).
fn names(table: &str) -> Vec<String> {
    let mut lines = table.lines();
    let header = lines.next().expect("a header");
    let at = header.find("NAME").expect("a NAME column");
    lines.map(|l| l[at..].to_string()).collect()
}

#[test]
fn log_lists_queries_oldest_first_with_filters() {
    let server = TestServer::start();
    server.add("nas.home.arpa", "A", "192.168.1.20");
    for name in ["nas.home.arpa.", "localhost.", "printer.home.arpa."] {
        dns_query(server.dns, name, RecordType::A);
    }
    let table = server.ok(&["log"]);
    assert_eq!(
        names(&table),
        ["nas.home.arpa.", "localhost.", "printer.home.arpa."]
    );
    let first = table.lines().nth(1).expect("a row");
    for cell in ["127.0.0.1", "udp", " A ", "NOERROR", "local", "ms"] {
        assert!(first.contains(cell), "{cell:?} not in {first:?}");
    }
    let nx = table.lines().nth(3).expect("a row");
    assert!(nx.contains("NXDOMAIN") && nx.contains("special"), "{nx}");

    let home = server.ok(&["log", "--name", "home.arpa", "--limit", "1"]);
    assert_eq!(names(&home), ["printer.home.arpa."]);
    assert_eq!(
        names(&server.ok(&["log", "--client", "127.0.0.2"])),
        Vec::<String>::new()
    );
    let json = server.json(&["log", "--client", "127.0.0.0/8"]);
    let entries = json.as_array().expect("an array");
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["name"], "nas.home.arpa.");
    assert_eq!(entries[2]["source"], "special");

    server.ctl(&["log", "--limit", "0"]).assert_usage_error();
    let bad = server.ctl(&["log", "--client", "printer"]);
    let line = bad.assert_refused();
    assert!(line.contains("not an IP address"), "{line}");
}

#[test]
fn log_says_when_the_server_keeps_none() {
    let server = TestServer::with_args(&["--query-log", "0"]);
    let out = server.ctl(&["log"]);
    let line = out.assert_refused();
    assert!(line.contains("--query-log 0"), "{line}");
}

#[test]
fn log_follow_prints_only_new_queries() {
    let server = TestServer::start();
    dns_query(server.dns, "before.home.arpa.", RecordType::A);
    let mut child = Command::new(CTL)
        .args(["--server", &server.url(), "log", "--follow"])
        .env_remove("RIND_API_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rind-ctl log --follow");
    let stdout = child.stdout.take().expect("piped");
    let (tx, lines) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| -> String {
        lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("no {what} line from --follow within 10 s: {e}"))
    };
    assert!(next("header").starts_with("TIME"));
    assert!(next("first").ends_with("before.home.arpa."));
    for name in ["after1.home.arpa.", "after2.home.arpa."] {
        dns_query(server.dns, name, RecordType::AAAA);
    }
    let one = next("new");
    let two = next("second new");
    assert!(
        one.ends_with("after1.home.arpa.") && one.contains("AAAA"),
        "{one}"
    );
    assert!(two.ends_with("after2.home.arpa."), "{two}");
    // Nothing printed twice: another poll brings no line.
    assert!(lines.recv_timeout(Duration::from_millis(2500)).is_err());
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
}

#[test]
fn man_pages_cover_every_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = common::Ctl::new()
        .args(&["man", &dir.path().join("man1").to_string_lossy()])
        .run();
    out.assert_ok(&["man"]);
    for page in [
        "rind-ctl.1",
        "rind-ctl-log.1",
        "rind-ctl-status.1",
        "rind-ctl-add.1",
    ] {
        let path = dir.path().join("man1").join(page);
        assert!(path.is_file(), "{page} not written");
    }
    let log = std::fs::read_to_string(dir.path().join("man1/rind-ctl-log.1")).expect("page");
    assert!(log.contains("\\-\\-follow"), "{log}");
    let top = std::fs::read_to_string(dir.path().join("man1/rind-ctl.1")).expect("page");
    assert!(top.contains("RIND_SERVER"), "env twins are documented");
}

#[test]
fn status_json_is_the_api_body() {
    let server = TestServer::start();
    let body: Value = server.json(&["status"]);
    for key in [
        "version",
        "uptime_seconds",
        "queries",
        "cache",
        "store",
        "upstreams",
        "query_log",
    ] {
        assert!(body.get(key).is_some(), "{key} missing: {body}");
    }
}
