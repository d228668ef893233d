//! The records REST API against the real server: every route, every error status.

mod records_common;

use std::io::{Read, Write};

use hickory_proto::rr::RecordType;
use records_common::{no_upstream, Server};
use serde_json::{json, Value};

fn server(dir: &tempfile::TempDir, extra: &[&str]) -> Server {
    Server::start(&dir.path().join("data"), no_upstream(), extra)
}

#[test]
fn create_read_list_replace_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir, &[]);

    let created = s.call(
        "POST",
        "/api/v1/records",
        Some(r#"{"name": "WWW.Home.Lan", "type": "a", "data": "192.168.1.10"}"#),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json["id"].as_str().expect("id").to_string();
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
    assert_eq!(
        created.location.as_deref(),
        Some(format!("/api/v1/records/{id}").as_str())
    );
    assert_eq!(
        created.json,
        json!({"id": id, "name": "www.home.lan.", "type": "A", "ttl": 300, "data": "192.168.1.10"})
    );

    let read = s.call("GET", &format!("/api/v1/records/{id}"), None);
    assert_eq!((read.status, &read.json), (200, &created.json));

    s.create("www.home.lan", "TXT", 60, "hello");
    s.create("mail.home.lan", "MX", 60, "10 mx.home.lan");
    let all = s.call("GET", "/api/v1/records", None);
    assert_eq!(all.status, 200);
    assert_eq!(all.json.as_array().expect("array").len(), 3);
    assert_eq!(all.json[0], created.json, "oldest first");
    let www = s.call("GET", "/api/v1/records?name=WWW.HOME.LAN", None);
    assert_eq!(www.json.as_array().expect("array").len(), 2);
    let www_a = s.call("GET", "/api/v1/records?name=www.home.lan.&type=a", None);
    assert_eq!(www_a.json, json!([created.json]));
    let mx = s.call("GET", "/api/v1/records?type=MX", None);
    assert_eq!(mx.json[0]["data"], "10 mx.home.lan.");
    let none = s.call("GET", "/api/v1/records?name=nothing.lan", None);
    assert_eq!((none.status, none.json), (200, json!([])));

    let replaced = s.call(
        "PUT",
        &format!("/api/v1/records/{id}"),
        Some(r#"{"name": "nas.home.lan", "type": "AAAA", "ttl": 120, "data": "FD00::10"}"#),
    );
    assert_eq!(replaced.status, 200, "{replaced:?}");
    assert_eq!(
        replaced.json,
        json!({"id": id, "name": "nas.home.lan.", "type": "AAAA", "ttl": 120, "data": "fd00::10"})
    );
    // A record read from the API can be sent back as it is.
    let same = s.call(
        "PUT",
        &format!("/api/v1/records/{id}"),
        Some(&replaced.json.to_string()),
    );
    assert_eq!((same.status, &same.json), (200, &replaced.json));
    let read = s.call("GET", &format!("/api/v1/records/{id}"), None);
    assert_eq!(read.json, replaced.json);

    let deleted = s.call("DELETE", &format!("/api/v1/records/{id}"), None);
    assert_eq!((deleted.status, deleted.json), (204, Value::Null));
    let gone = s.call("GET", &format!("/api/v1/records/{id}"), None);
    assert_eq!(gone.status, 404);
    assert_eq!(
        s.call("GET", "/api/v1/records", None)
            .json
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[test]
fn seed_aliases_and_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir, &[]);
    let seeded = s.call(
        "POST",
        "/api/v1/records",
        Some(r#"{"Host": "printer.home.lan", "Type": "A", "TTL": 60, "Data": "192.168.1.20"}"#),
    );
    assert_eq!(seeded.status, 201, "{seeded:?}");
    assert_eq!(seeded.json["name"], "printer.home.lan.");
    assert_eq!(seeded.json["ttl"], 60);
    let text_ttl = s.call(
        "POST",
        "/api/v1/records",
        Some(r#"{"Host": "tv.home.lan", "Type": "A", "TTL": "90", "Data": "192.168.1.21"}"#),
    );
    assert_eq!((text_ttl.status, &text_ttl.json["ttl"]), (201, &json!(90)));
    let bounds = s.create("zero.home.lan", "A", 0, "192.168.1.22");
    assert_eq!(bounds["ttl"], 0);
    let max = s.call(
        "POST",
        "/api/v1/records",
        Some(r#"{"name": "max.home.lan", "type": "A", "ttl": 2147483647, "data": "192.168.1.23"}"#),
    );
    assert_eq!((max.status, &max.json["ttl"]), (201, &json!(2147483647)));
}

#[test]
fn every_type_in_presentation_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir, &[]);
    for (name, rtype, given, stored) in [
        ("a.lan", "A", "10.0.0.1", "10.0.0.1"),
        ("a.lan", "AAAA", "fd00:0::1", "fd00::1"),
        ("alias.lan", "CNAME", "a.lan", "a.lan."),
        ("a.lan", "MX", "10 mail.lan", "10 mail.lan."),
        ("a.lan", "TXT", "v=spf1 -all", "\"v=spf1 -all\""),
        (
            "b.lan",
            "TXT",
            "\"one\" \"two \\\"2\\\"\"",
            "\"one\" \"two \\\"2\\\"\"",
        ),
        (
            "_sip._tcp.a.lan",
            "SRV",
            "10 5 5060 sip.a.lan",
            "10 5 5060 sip.a.lan.",
        ),
        ("1.0.0.10.in-addr.arpa", "PTR", "a.lan", "a.lan."),
        ("a.lan", "NS", "ns1.a.lan", "ns1.a.lan."),
        (
            "a.lan",
            "CAA",
            "0 issue letsencrypt.org",
            "0 issue \"letsencrypt.org\"",
        ),
    ] {
        let created = s.create(name, rtype, 300, given);
        assert_eq!(created["data"], stored, "{rtype} {given:?}");
        assert_eq!(created["type"], rtype);
    }
}

#[test]
fn bad_requests_are_400_and_say_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir, &[]);
    let record = |fields: Value| fields.to_string();
    let cases: Vec<(String, &str)> = vec![
        ("{not json".to_string(), "bad JSON"),
        ("".to_string(), "body is empty"),
        ("[1, 2]".to_string(), "bad JSON"),
        (
            record(json!({"name": "a.lan", "type": "A", "data": "10.0.0.1", "colour": "red"})),
            "unknown field `colour`",
        ),
        (
            record(json!({"type": "A", "data": "10.0.0.1"})),
            "missing field \"name\"",
        ),
        (
            record(json!({"name": "a.lan", "data": "10.0.0.1"})),
            "missing field \"type\"",
        ),
        (
            record(json!({"name": "a.lan", "type": "A"})),
            "missing field \"data\"",
        ),
        (
            record(json!({"name": "a.lan", "type": "SOA", "data": "x"})),
            "unknown record type \"SOA\"",
        ),
        (
            record(json!({"name": "a.lan", "type": "A", "data": "10.0.0.256"})),
            "not an IPv4 address",
        ),
        (
            record(json!({"name": "a.lan", "type": "AAAA", "data": "10.0.0.1"})),
            "not an IPv6 address",
        ),
        (
            record(json!({"name": "a.lan", "type": "MX", "data": "mail.lan"})),
            "PREFERENCE EXCHANGE",
        ),
        (
            record(json!({"name": "a.lan", "type": "SRV", "data": "1 2 mail.lan"})),
            "PRIORITY WEIGHT PORT TARGET",
        ),
        (
            record(json!({"name": "a.lan", "type": "TXT", "data": "\"open"})),
            "never closed",
        ),
        (
            record(json!({"name": "a.lan", "type": "CAA", "data": "0 issue"})),
            "FLAGS TAG VALUE",
        ),
        (
            record(json!({"name": "a.lan", "type": "CNAME", "data": "bad name.lan"})),
            "character ' '",
        ),
        (
            record(json!({"name": "bad_name!.lan", "type": "A", "data": "10.0.0.1"})),
            "character '!'",
        ),
        (
            record(json!({"name": "a..lan", "type": "A", "data": "10.0.0.1"})),
            "empty label",
        ),
        (
            record(json!({"name": "a.lan", "type": "A", "ttl": -1, "data": "10.0.0.1"})),
            "out of range",
        ),
        (
            record(json!({"name": "a.lan", "type": "A", "ttl": 2147483648i64, "data": "10.0.0.1"})),
            "out of range",
        ),
        (
            record(json!({"name": "a.lan", "type": "A", "ttl": 1.5, "data": "10.0.0.1"})),
            "not a whole number",
        ),
        (
            record(json!({"id": "x", "name": "a.lan", "type": "A", "data": "10.0.0.1"})),
            "chosen by the server",
        ),
    ];
    for (body, why) in &cases {
        let reply = s.call("POST", "/api/v1/records", Some(body));
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
        assert!(
            reply.error().contains(why),
            "{body}: {:?} lacks {why:?}",
            reply.error()
        );
    }
    for query in ["?name=a..lan", "?type=BOGUS", "?colour=red"] {
        let reply = s.call("GET", &format!("/api/v1/records{query}"), None);
        assert_eq!(reply.status, 400, "{query}: {reply:?}");
        assert!(!reply.error().is_empty());
    }
    let a = s.create("a.lan", "A", 300, "10.0.0.1");
    let id = a["id"].as_str().expect("id");
    let bad_put = s.call(
        "PUT",
        &format!("/api/v1/records/{id}"),
        Some(&record(
            json!({"name": "a.lan", "type": "A", "data": "nope"}),
        )),
    );
    assert_eq!(bad_put.status, 400);
    let other_id = s.call(
        "PUT",
        &format!("/api/v1/records/{id}"),
        Some(&record(
            json!({"id": "other", "name": "a.lan", "type": "A", "data": "10.0.0.2"}),
        )),
    );
    assert_eq!(other_id.status, 400);
    assert!(other_id.error().contains("differs"), "{other_id:?}");
    // Nothing the refused writes carried was stored.
    assert_eq!(s.call("GET", "/api/v1/records", None).json, json!([a]));
}

#[test]
fn unknown_ids_are_404() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir, &[]);
    let body = json!({"name": "a.lan", "type": "A", "data": "10.0.0.1"}).to_string();
    for (method, body) in [
        ("GET", None),
        ("PUT", Some(body.as_str())),
        ("DELETE", None),
    ] {
        let reply = s.call(method, "/api/v1/records/01nosuchid000000000000000", body);
        assert_eq!(reply.status, 404, "{method}: {reply:?}");
        assert!(reply.error().contains("no record with id"), "{reply:?}");
    }
    let route = s.call("GET", "/api/v1/nothing", None);
    assert_eq!(route.status, 404);
    assert!(!route.error().is_empty());
    assert_eq!(s.call("GET", "/api/v1/records", None).json, json!([]));
}

#[test]
fn conflicts_are_409_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir, &[]);
    let www = s.create("www.home.lan", "A", 300, "10.0.0.1");
    let alias = s.create("alias.home.lan", "CNAME", 300, "www.home.lan");
    let txt = s.create("t.home.lan", "TXT", 300, "hello");
    let conflicts = [
        json!({"name": "www.home.lan", "type": "CNAME", "data": "x.lan"}),
        json!({"name": "alias.home.lan", "type": "A", "data": "10.0.0.9"}),
        json!({"name": "alias.home.lan", "type": "CNAME", "data": "other.lan"}),
        json!({"name": "WWW.home.lan.", "type": "A", "data": "10.0.0.1"}),
        // The same data spelt another way is still a duplicate.
        json!({"name": "t.home.lan", "type": "TXT", "data": "\"hello\""}),
    ];
    for body in &conflicts {
        let reply = s.call("POST", "/api/v1/records", Some(&body.to_string()));
        assert_eq!(reply.status, 409, "{body}: {reply:?}");
        assert!(!reply.error().is_empty());
    }
    let id = txt["id"].as_str().expect("id");
    for body in [
        json!({"name": "www.home.lan", "type": "A", "data": "10.0.0.1"}),
        json!({"name": "alias.home.lan", "type": "TXT", "data": "x"}),
    ] {
        let reply = s.call(
            "PUT",
            &format!("/api/v1/records/{id}"),
            Some(&body.to_string()),
        );
        assert_eq!(reply.status, 409, "{body}: {reply:?}");
    }
    assert_eq!(
        s.call("GET", "/api/v1/records", None).json,
        json!([www, alias, txt])
    );
    let dns = s.ask("t.home.lan", RecordType::TXT);
    assert_eq!(dns.answers.len(), 1);
}

#[test]
fn bodies_over_64_kib_are_413() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir, &[]);
    let big = json!({"name": "big.lan", "type": "TXT", "data": "x".repeat(70 * 1024)}).to_string();
    let declared = s.call("POST", "/api/v1/records", Some(&big));
    assert_eq!(declared.status, 413, "{declared:?}");
    assert!(declared.error().contains("64 KiB"), "{declared:?}");

    // Without a Content-Length (chunked), the limit holds as the bytes arrive.
    let chunked = post_chunked(&s, big.as_bytes());
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.contains("64 KiB"), "{chunked}");

    // Just under the limit is fine.
    let fits = json!({"name": "big.lan", "type": "TXT", "data": "x".repeat(60 * 1024)}).to_string();
    let chunked_fits = post_chunked(&s, fits.as_bytes());
    assert!(chunked_fits.starts_with("HTTP/1.1 201"), "{chunked_fits}");
    assert_eq!(
        s.call("GET", "/api/v1/records", None)
            .json
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// POSTs `body` to the records route in 8 KiB chunks (`Transfer-Encoding: chunked`, no
/// `Content-Length`) over a raw connection; returns the reply's head and body as text.
fn post_chunked(s: &Server, body: &[u8]) -> String {
    let mut conn = std::net::TcpStream::connect(s.http).expect("connect");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let head = "POST /api/v1/records HTTP/1.1\r\nHost: rind\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    conn.write_all(head.as_bytes()).expect("head");
    for chunk in body.chunks(8 * 1024) {
        // The server may answer 413 and close before the rest is sent.
        if conn
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .is_err()
            || conn.write_all(chunk).is_err()
            || conn.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n");
    let mut reply = Vec::new();
    let _ = conn.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn the_token_guards_the_api_but_not_healthz() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = server(&dir, &["--api-token", "s3cret"]);
    rind_server::upstream::trust::install_ring_default();
    let client = reqwest::blocking::Client::new();
    let body = json!({"name": "a.lan", "type": "A", "data": "10.0.0.1"}).to_string();
    for (method, path) in [
        ("GET", "/api/v1/records"),
        ("POST", "/api/v1/records"),
        ("GET", "/api/v1/records/x"),
        ("PUT", "/api/v1/records/x"),
        ("DELETE", "/api/v1/records/x"),
        ("POST", "/api/v1/snapshot"),
        ("GET", "/metrics"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        for auth in [None, Some("Bearer wrong"), Some("s3cret")] {
            let mut request = client
                .request(method.clone(), s.url(path))
                .body(body.clone());
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let reply = records_common::Reply::from(request.send().expect("send"));
            assert_eq!(reply.status, 401, "{method} {path} {auth:?}: {reply:?}");
            assert!(reply.error().contains("token"), "{reply:?}");
        }
    }
    assert_eq!(s.call("POST", "/api/v1/records", Some(&body)).status, 201);
    assert_eq!(s.call("GET", "/api/v1/records", None).status, 200);
    let health = client.get(s.url("/healthz")).send().expect("send");
    assert_eq!(health.status().as_u16(), 200);
}

#[test]
fn a_snapshot_opens_with_every_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshots = dir.path().join("snaps");
    let snapshot_flag = snapshots.to_str().expect("utf-8 path");
    let s = server(&dir, &["--snapshot-dir", snapshot_flag]);
    let mut records = Vec::new();
    for i in 0..50 {
        records.push(s.create(
            &format!("host{i}.home.lan"),
            "A",
            300,
            &format!("10.0.1.{i}"),
        ));
    }
    let alias = s.create("alias.home.lan", "CNAME", 60, "host1.home.lan");
    let deleted = s.create("gone.home.lan", "A", 300, "10.0.2.1");
    let id = deleted["id"].as_str().expect("id");
    assert_eq!(
        s.call("DELETE", &format!("/api/v1/records/{id}"), None)
            .status,
        204
    );
    records.push(alias);

    let reply = s.call("POST", "/api/v1/snapshot", None);
    assert_eq!(reply.status, 201, "{reply:?}");
    let path = reply.json["path"].as_str().expect("path").to_string();
    assert!(
        std::path::Path::new(&path).starts_with(snapshots.canonicalize().expect("dir")),
        "{path}"
    );
    // A write after the snapshot is not in it.
    s.create("later.home.lan", "A", 300, "10.0.3.1");

    // The live server keeps running while the copy is opened by another.
    let restored = Server::start(std::path::Path::new(&path), no_upstream(), &[]);
    let listed = restored.call("GET", "/api/v1/records", None);
    assert_eq!(listed.json, Value::Array(records));
    let answer = restored.ask("alias.home.lan", RecordType::A);
    assert_eq!(answer.answers.len(), 2);
    assert!(restored
        .ask("later.home.lan", RecordType::A)
        .answers
        .is_empty());
    let second = s.call("POST", "/api/v1/snapshot", None);
    assert_eq!(second.status, 201);
    assert_ne!(second.json["path"], reply.json["path"]);
}
