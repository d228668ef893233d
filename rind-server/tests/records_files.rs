//! Records API 2.0, import and export (issue 14): master files and `/etc/hosts` files in,
//! all-or-nothing with the bad line named; master files out, which read back as the same
//! records; against the real binary.

mod records_common;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use records_common::{no_upstream, Server};
use serde_json::Value;

const ZONE: &str = "$ORIGIN home.lan.\n\
$TTL 1h\n\
@    IN SOA ns hostmaster ( 1 3600 600 604800 60 ) ; rind makes its own\n\
nas  60 IN A 192.168.1.10\n     IN AAAA fd00::10\n\
www  CNAME nas\n\
@    MX 10 mail\n\
mail A 192.168.1.20\n\
txt  TXT \"hello world\" two\n\
_sip._tcp SRV 0 5 5060 nas\n";

/// Raw text of a GET, with its content type.
fn get_text(s: &Server, path: &str) -> (u16, String, String) {
    rind_server::upstream::trust::install_ring_default();
    let r = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(s.url(path))
        .send()
        .expect("GET");
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ctype, r.text().expect("body"))
}

fn records(s: &Server) -> Vec<Value> {
    let reply = s.call("GET", "/api/v1/records", None);
    assert_eq!(reply.status, 200);
    reply.json.as_array().expect("array").clone()
}

#[test]
fn a_zone_file_imports_once_answers_over_dns_and_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), no_upstream(), &[]);
    let reply = s.call("POST", "/api/v1/records/import", Some(ZONE));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["created"], 7, "{reply:?}");
    assert_eq!(reply.json["unchanged"], 0);
    assert_eq!(reply.json["skipped"], 1, "the SOA");

    let answer = s.ask("www.home.lan.", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    let data: Vec<String> = answer.answers.iter().map(|r| r.data.to_string()).collect();
    assert!(data.contains(&"nas.home.lan.".to_string()), "{data:?}");
    assert!(data.contains(&"192.168.1.10".to_string()), "{data:?}");
    let nas = answer
        .answers
        .iter()
        .find(|r| r.record_type() == RecordType::A)
        .expect("A");
    assert_eq!(nas.ttl, 60, "the record's own TTL");
    let txt = s.ask("txt.home.lan.", RecordType::TXT);
    assert_eq!(txt.answers.len(), 1);
    assert_eq!(txt.answers[0].ttl, 3600, "$TTL");

    // The same file again changes nothing.
    let again = s.call("POST", "/api/v1/records/import", Some(ZONE));
    assert_eq!(again.status, 200);
    assert_eq!(again.json["created"], 0);
    assert_eq!(again.json["unchanged"], 7);
    assert_eq!(records(&s).len(), 7);

    // Acknowledged means on disk.
    s.kill();
    let s = Server::start(dir.path(), no_upstream(), &[]);
    assert_eq!(records(&s).len(), 7);
    let mx = s.ask("home.lan.", RecordType::MX);
    assert_eq!(mx.answers.len(), 1);
    assert_eq!(mx.answers[0].data.to_string(), "10 mail.home.lan.");
}

#[test]
fn a_bad_line_refuses_the_whole_file_and_names_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), no_upstream(), &[]);
    s.create("kept.home.lan", "A", 300, "10.0.0.1");

    let bad = "$ORIGIN home.lan.\na A 10.0.0.2\nb A 10.0.0.3\nc A 10.0.0.999\n";
    let reply = s.call("POST", "/api/v1/records/import", Some(bad));
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.error().starts_with("line 4:"), "{reply:?}");
    assert!(reply.error().contains("10.0.0.999"), "{reply:?}");

    // A conflict with what is stored: 409, also by line, also nothing stored.
    let clash = "$ORIGIN home.lan.\nd A 10.0.0.4\nkept CNAME d\n";
    let reply = s.call("POST", "/api/v1/records/import", Some(clash));
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(reply.error().starts_with("line 3:"), "{reply:?}");

    // And a conflict inside the file itself.
    let inner = "e.home.lan. CNAME kept.home.lan.\ne.home.lan. A 10.0.0.5\n";
    let reply = s.call("POST", "/api/v1/records/import", Some(inner));
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(reply.error().starts_with("line 2:"), "{reply:?}");

    let names: Vec<String> = records(&s)
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, vec!["kept.home.lan."]);
    assert_eq!(
        s.ask("a.home.lan.", RecordType::A).metadata.response_code,
        ResponseCode::ServFail,
        "not stored, so forwarded to the dead upstream"
    );

    let reply = s.call("POST", "/api/v1/records/import?format=csv", Some("x"));
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("zone or hosts"), "{reply:?}");
}

#[test]
fn hosts_files_import_as_a_and_aaaa() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), no_upstream(), &[]);
    let hosts = "# /etc/hosts\n192.168.1.10\tnas.home.lan nas\nfd00::10 nas.home.lan\n192.168.1.10 nas.home.lan\n";
    let reply = s.call("POST", "/api/v1/records/import?format=hosts", Some(hosts));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["created"], 3);
    assert_eq!(reply.json["unchanged"], 1, "the repeated line");
    let aaaa = s.ask("nas.home.lan.", RecordType::AAAA);
    assert_eq!(aaaa.answers.len(), 1);
    assert_eq!(aaaa.answers[0].data.to_string(), "fd00::10");

    let reply = s.call(
        "POST",
        "/api/v1/records/import?format=hosts",
        Some("10.0.0.1 ok\nnas.home.lan 10.0.0.2\n"),
    );
    assert_eq!(reply.status, 400);
    assert!(reply.error().starts_with("line 2:"), "{reply:?}");
}

#[test]
fn an_export_is_a_master_file_that_imports_as_the_same_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), no_upstream(), &[]);
    let zone = s.call("POST", "/api/v1/zones", Some(r#"{"name": "home.lan"}"#));
    assert_eq!(zone.status, 201, "{zone:?}");
    assert_eq!(
        s.call("POST", "/api/v1/records/import", Some(ZONE)).status,
        200
    );
    s.create("other.example", "TXT", 30, "outside \"the\" zone");

    let (status, ctype, all) = get_text(&s, "/api/v1/records/export");
    assert_eq!(status, 200);
    assert_eq!(ctype, "text/dns");
    assert!(
        all.contains("other.example.\t30\tIN\tTXT\t\"outside \\\"the\\\" zone\"\n"),
        "{all}"
    );
    assert!(
        all.contains("www.home.lan.\t3600\tIN\tCNAME\tnas.home.lan.\n"),
        "{all}"
    );

    let (status, _, one) = get_text(&s, "/api/v1/records/export?zone=home.lan");
    assert_eq!(status, 200);
    assert!(!one.contains("other.example"), "{one}");
    let soa = one
        .lines()
        .find(|l| !l.starts_with(';'))
        .expect("a record line");
    assert!(
        soa.starts_with("home.lan.\t300\tIN\tSOA\tns.home.lan. hostmaster.home.lan. "),
        "{soa}"
    );
    let (status, _, body) = get_text(&s, "/api/v1/records/export?zone=nowhere.lan");
    assert_eq!(status, 404);
    assert!(body.contains("no zone named nowhere.lan."), "{body}");

    // Into a second, empty server: the same records, field for field.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let copy = Server::start(dir2.path(), no_upstream(), &[]);
    let reply = copy.call("POST", "/api/v1/records/import", Some(&all));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["created"], 8);
    let fields = |list: Vec<Value>| {
        let mut v: Vec<String> = list
            .iter()
            .map(|r| format!("{} {} {} {}", r["name"], r["type"], r["ttl"], r["data"]))
            .collect();
        v.sort();
        v
    };
    assert_eq!(fields(records(&s)), fields(records(&copy)));
}

#[test]
fn an_import_body_may_be_32_mib_but_no_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), no_upstream(), &[]);
    // 100 KiB of comments and one record: past the 64 KiB of a single record, well within 32 MiB.
    let mut body = "; padding padding padding padding padding padding padding\n".repeat(1_800);
    body.push_str("big.home.lan. A 10.0.0.1\n");
    assert!(body.len() > 64 * 1024);
    let reply = s.call("POST", "/api/v1/records/import", Some(&body));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["created"], 1);

    // Refused from the declared length, before the body is read. Sent by hand with no body:
    // a client still writing 32 MiB when the 413 comes and the connection closes may see a
    // broken pipe instead of the answer.
    let mut raw = std::net::TcpStream::connect(s.http).expect("connect");
    raw.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "POST /api/v1/records/import HTTP/1.1\r\nHost: rind\r\nContent-Length: {}\r\n\r\n",
        32 * 1024 * 1024 + 1
    );
    std::io::Write::write_all(&mut raw, head.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("32 MiB") {
        match std::io::Read::read(&mut raw, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("32 MiB"), "{answer}");

    let reply = s.call("POST", "/api/v1/records/import", Some("\u{0}\u{0}"));
    assert_eq!(reply.status, 400, "{reply:?}");
}
