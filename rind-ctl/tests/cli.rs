//! The real `rind-ctl` binary against a real rind-server (in-process, ephemeral 127.0.0.1
//! ports): every command's round trip, `--json` parsed back, and each error path.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;

use common::{
    a_answers, dead_port, dns_query, Ctl, FakeUpstream, TestServer, UPSTREAM_TTL, UPSTREAM_V4,
};

const TOKEN: &str = "s3cret-token";

fn field<'a>(record: &'a Value, key: &str) -> &'a Value {
    record
        .get(key)
        .unwrap_or_else(|| panic!("record has no {key:?}: {record}"))
}

fn id_of(record: &Value) -> String {
    field(record, "id")
        .as_str()
        .expect("id is a string")
        .to_string()
}

/// The (name, type, ttl, data) of a record, for comparisons that ignore ids.
fn shape(record: &Value) -> (String, String, u64, String) {
    (
        field(record, "name").as_str().expect("name").to_string(),
        field(record, "type").as_str().expect("type").to_string(),
        field(record, "ttl").as_u64().expect("ttl"),
        field(record, "data").as_str().expect("data").to_string(),
    )
}

fn shapes(records: &[Value]) -> BTreeSet<(String, String, u64, String)> {
    records.iter().map(shape).collect()
}

fn array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => panic!("expected a JSON array, got {other}"),
    }
}

/// Splits a table into its header cells' start columns and checks that every cell of every
/// row starts in its header's column (the last column may hold spaces, e.g. TXT data).
fn assert_aligned(table: &str, header: &[&str]) -> Vec<Vec<String>> {
    let lines: Vec<&str> = table.lines().collect();
    assert!(!lines.is_empty(), "no table printed");
    let head = lines[0];
    let got: Vec<&str> = head.split_whitespace().collect();
    assert_eq!(got, header, "table header: {head:?}");
    let starts: Vec<usize> = header
        .iter()
        .map(|h| head.find(h).expect("header cell"))
        .collect();
    let mut rows = Vec::new();
    for line in &lines[1..] {
        let mut cells = Vec::new();
        for (i, &start) in starts.iter().enumerate() {
            assert!(
                line.len() > start,
                "row {line:?} ends before column {}\n{table}",
                header[i]
            );
            assert!(
                start == 0 || line.as_bytes()[start - 1] == b' ',
                "row {line:?}: column {} does not start at {start}\n{table}",
                header[i]
            );
            assert_ne!(
                line.as_bytes()[start],
                b' ',
                "row {line:?}: column {} is empty or misaligned\n{table}",
                header[i]
            );
            let end = starts.get(i + 1).copied().unwrap_or(line.len());
            cells.push(line[start..end].trim().to_string());
        }
        rows.push(cells);
    }
    rows
}

const RECORD_HEADER: [&str; 5] = ["ID", "NAME", "TYPE", "TTL", "DATA"];

// ---- add ----------------------------------------------------------------------------------

#[test]
fn add_prints_the_record_as_a_table() {
    let server = TestServer::start();
    let out = server.ok(&["add", "NAS.Home.Arpa", "A", "192.168.1.20"]);
    let rows = assert_aligned(&out, &RECORD_HEADER);
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0][1..], ["nas.home.arpa.", "A", "300", "192.168.1.20"]);
    let listed = server.records();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        rows[0][0],
        id_of(&listed[0]),
        "the table shows the stored id"
    );
}

#[test]
fn add_json_is_the_api_record() {
    let server = TestServer::start();
    let record = server.json(&["add", "nas.home.arpa", "A", "192.168.1.20"]);
    let keys: BTreeSet<&str> = record
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["id", "name", "type", "ttl", "data"]),
        "{record}"
    );
    assert!(!id_of(&record).is_empty());
    assert_eq!(
        shape(&record),
        (
            "nas.home.arpa.".into(),
            "A".into(),
            300,
            "192.168.1.20".into()
        )
    );
    // What `get --json` returns for it is the same object.
    assert_eq!(server.json(&["get", &id_of(&record)]), record);
}

#[test]
fn add_with_ttl_and_other_types() {
    let server = TestServer::start();
    let mx = server.json(&[
        "add",
        "home.arpa",
        "MX",
        "10 mail.home.arpa",
        "--ttl",
        "3600",
    ]);
    assert_eq!(
        shape(&mx),
        (
            "home.arpa.".into(),
            "MX".into(),
            3600,
            "10 mail.home.arpa.".into()
        )
    );
    let txt = server.json(&["add", "home.arpa", "TXT", "hello world", "--ttl", "0"]);
    assert_eq!(field(&txt, "ttl"), 0);
    assert_eq!(field(&txt, "data"), "\"hello world\"");
    let aaaa = server.json(&["add", "nas.home.arpa", "aaaa", "2001:DB8::1"]);
    assert_eq!(field(&aaaa, "type"), "AAAA");
    assert_eq!(field(&aaaa, "data"), "2001:db8::1");
    assert_eq!(server.records().len(), 3);
}

#[test]
fn added_record_is_answered_over_dns() {
    let server = TestServer::start();
    server.json(&["add", "nas.home.arpa", "A", "192.168.1.20", "--ttl", "120"]);
    let reply = dns_query(server.dns, "nas.home.arpa.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative, "local answers carry AA=1");
    assert_eq!(
        a_answers(&reply),
        [(Ipv4Addr::new(192, 168, 1, 20), 120)],
        "{reply:?}"
    );
}

// ---- list ---------------------------------------------------------------------------------

#[test]
fn list_is_an_aligned_table() {
    let server = TestServer::start();
    server.add("a.lan", "A", "10.0.0.1");
    server.add("a-much-longer-name.home.arpa", "AAAA", "2001:db8::1");
    server.add("home.arpa", "TXT", "two words");
    let out = server.ok(&["list"]);
    let rows = assert_aligned(&out, &RECORD_HEADER);
    assert_eq!(rows.len(), 3, "{out}");
    let listed: BTreeSet<(String, String, String, String)> = rows
        .iter()
        .map(|r| (r[1].clone(), r[2].clone(), r[3].clone(), r[4].clone()))
        .collect();
    let want: BTreeSet<(String, String, String, String)> = [
        ("a.lan.", "A", "300", "10.0.0.1"),
        (
            "a-much-longer-name.home.arpa.",
            "AAAA",
            "300",
            "2001:db8::1",
        ),
        ("home.arpa.", "TXT", "300", "\"two words\""),
    ]
    .iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
    .collect();
    assert_eq!(listed, want, "{out}");
}

#[test]
fn list_of_nothing_is_a_header_or_an_empty_array() {
    let server = TestServer::start();
    let out = server.ok(&["list"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), RECORD_HEADER);
    assert_eq!(server.json(&["list"]), Value::Array(Vec::new()));
}

#[test]
fn list_json_and_filters() {
    let server = TestServer::start();
    server.add("nas.home.arpa", "A", "192.168.1.20");
    server.add("nas.home.arpa", "A", "192.168.1.21");
    server.add("nas.home.arpa", "AAAA", "2001:db8::20");
    server.add("printer.home.arpa", "A", "192.168.1.30");

    let all = server.records();
    assert_eq!(all.len(), 4);
    for record in &all {
        assert!(!id_of(record).is_empty());
    }

    // The name filter is normalised like stored names: case, trailing dot.
    for name in ["nas.home.arpa", "NAS.Home.Arpa.", "nas.home.arpa."] {
        let got = array(server.json(&["list", "--name", name]));
        assert_eq!(got.len(), 3, "--name {name}: {got:?}");
        assert!(got.iter().all(|r| field(r, "name") == "nas.home.arpa."));
    }
    let a = array(server.json(&["list", "--type", "a"]));
    assert_eq!(a.len(), 3, "{a:?}");
    assert!(a.iter().all(|r| field(r, "type") == "A"));
    let both = array(server.json(&["list", "--name", "NAS.home.arpa", "--type", "AAAA"]));
    assert_eq!(shapes(&both).len(), 1);
    assert_eq!(field(&both[0], "data"), "2001:db8::20");

    // The table honours the filters too.
    let out = server.ok(&["list", "--type", "A", "--name", "printer.home.arpa"]);
    let rows = assert_aligned(&out, &RECORD_HEADER);
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0][4], "192.168.1.30");

    let none = array(server.json(&["list", "--name", "nowhere.home.arpa"]));
    assert!(none.is_empty());
}

// ---- get ----------------------------------------------------------------------------------

#[test]
fn get_shows_one_record() {
    let server = TestServer::start();
    let id = server.add("nas.home.arpa", "A", "192.168.1.20");
    server.add("other.home.arpa", "A", "192.168.1.99");
    let out = server.ok(&["get", &id]);
    let rows = assert_aligned(&out, &RECORD_HEADER);
    assert_eq!(
        rows,
        [vec![
            id.clone(),
            "nas.home.arpa.".into(),
            "A".into(),
            "300".into(),
            "192.168.1.20".into()
        ]]
    );
    let json = server.json(&["get", &id]);
    assert_eq!(id_of(&json), id);
}

// ---- update -------------------------------------------------------------------------------

#[test]
fn update_each_flag_keeps_the_other_fields() {
    let server = TestServer::start();
    let id = server.add("nas.home.arpa", "A", "192.168.1.20");

    let r = server.json(&["update", &id, "--data", "192.168.1.21"]);
    assert_eq!(id_of(&r), id, "ids do not change");
    assert_eq!(
        shape(&r),
        (
            "nas.home.arpa.".into(),
            "A".into(),
            300,
            "192.168.1.21".into()
        )
    );

    let r = server.json(&["update", &id, "--ttl", "60"]);
    assert_eq!(
        shape(&r),
        (
            "nas.home.arpa.".into(),
            "A".into(),
            60,
            "192.168.1.21".into()
        )
    );

    let r = server.json(&["update", &id, "--name", "NAS2.home.arpa"]);
    assert_eq!(
        shape(&r),
        (
            "nas2.home.arpa.".into(),
            "A".into(),
            60,
            "192.168.1.21".into()
        )
    );

    // The stored record is what update printed.
    assert_eq!(server.json(&["get", &id]), r);

    // The table form of update.
    let out = server.ok(&["update", &id, "--data", "192.168.1.22", "--ttl", "90"]);
    let rows = assert_aligned(&out, &RECORD_HEADER);
    assert_eq!(rows[0][1..], ["nas2.home.arpa.", "A", "90", "192.168.1.22"]);

    // DNS sees the change at once.
    let reply = dns_query(server.dns, "nas2.home.arpa.", RecordType::A);
    assert_eq!(a_answers(&reply), [(Ipv4Addr::new(192, 168, 1, 22), 90)]);
    assert_eq!(server.records().len(), 1);
}

#[test]
fn update_type_alone_keeps_name_data_and_ttl() {
    let server = TestServer::start();
    let added = server.json(&[
        "add",
        "alias.home.arpa",
        "CNAME",
        "target.home.arpa",
        "--ttl",
        "77",
    ]);
    let id = id_of(&added);
    let r = server.json(&["update", &id, "--type", "NS"]);
    assert_eq!(
        shape(&r),
        (
            "alias.home.arpa.".into(),
            "NS".into(),
            77,
            "target.home.arpa.".into()
        )
    );
}

#[test]
fn update_without_flags_is_refused() {
    let server = TestServer::start();
    let id = server.add("nas.home.arpa", "A", "192.168.1.20");
    let out = server.ctl(&["update", &id]);
    let line = out.assert_refused();
    assert!(line.contains("nothing to change"), "{line}");
    assert_eq!(
        shape(&server.json(&["get", &id])).3,
        "192.168.1.20",
        "unchanged"
    );
}

#[test]
fn update_errors_carry_the_servers_message() {
    let server = TestServer::start();
    let id = server.add("nas.home.arpa", "A", "192.168.1.20");
    server.add("nas.home.arpa", "A", "192.168.1.21");

    let out = server.ctl(&["update", &id, "--data", "not-an-ip"]);
    let line = out.assert_refused();
    assert!(
        line.contains("not-an-ip") && line.contains("HTTP 400"),
        "{line}"
    );

    let out = server.ctl(&["update", &id, "--data", "192.168.1.21"]);
    let line = out.assert_refused();
    assert!(line.contains("HTTP 409"), "{line}");

    let out = server.ctl(&["update", "no-such-id", "--ttl", "5"]);
    let line = out.assert_refused();
    assert!(
        line.contains("no-such-id") && line.contains("HTTP 404"),
        "{line}"
    );

    assert_eq!(
        shapes(&server.records()),
        BTreeSet::from([
            (
                "nas.home.arpa.".into(),
                "A".into(),
                300,
                "192.168.1.20".into()
            ),
            (
                "nas.home.arpa.".into(),
                "A".into(),
                300,
                "192.168.1.21".into()
            ),
        ])
    );
}

// ---- rm -----------------------------------------------------------------------------------

#[test]
fn rm_by_id() {
    let server = TestServer::start();
    let id = server.add("nas.home.arpa", "A", "192.168.1.20");
    let keep = server.add("other.home.arpa", "A", "192.168.1.21");
    let out = server.ok(&["rm", &id]);
    assert!(out.is_empty(), "rm prints nothing: {out:?}");
    let left = server.records();
    assert_eq!(left.len(), 1);
    assert_eq!(id_of(&left[0]), keep);
    let line = server.ctl(&["get", &id]).assert_refused().to_string();
    assert!(line.contains("HTTP 404"), "{line}");
    // Gone from DNS too: home.arpa is never forwarded, so NXDOMAIN.
    let reply = dns_query(server.dns, "nas.home.arpa.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn rm_by_name_and_type_deletes_the_one_match() {
    let server = TestServer::start();
    server.add("nas.home.arpa", "A", "192.168.1.20");
    let aaaa = server.add("nas.home.arpa", "AAAA", "2001:db8::20");
    server.ok(&["rm", "NAS.Home.Arpa.", "a"]);
    let left = server.records();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(id_of(&left[0]), aaaa);
}

#[test]
fn rm_by_name_refuses_when_several_match() {
    let server = TestServer::start();
    let first = server.add("nas.home.arpa", "A", "192.168.1.20");
    let second = server.add("nas.home.arpa", "A", "192.168.1.21");
    let out = server.ctl(&["rm", "nas.home.arpa", "A"]);
    let line = out.assert_refused();
    for needle in [
        "2 records match",
        &first,
        &second,
        "192.168.1.20",
        "192.168.1.21",
    ] {
        assert!(line.contains(needle), "{needle:?} missing from {line}");
    }
    assert_eq!(server.records().len(), 2, "nothing deleted");

    // DATA picks one, in the forgiving spellings a person types.
    server.ok(&["rm", "nas.home.arpa", "A", "192.168.1.21"]);
    let left = server.records();
    assert_eq!(left.len(), 1);
    assert_eq!(id_of(&left[0]), first);
}

#[test]
fn rm_by_name_with_data_matches_like_the_server_prints() {
    let server = TestServer::start();
    server.add("home.arpa", "MX", "10 mail.home.arpa");
    server.add("home.arpa", "MX", "20 backup.home.arpa");
    server.add("home.arpa", "TXT", "hello world");
    server.add("home.arpa", "TXT", "Hello world");
    server.add("nas.home.arpa", "AAAA", "2001:db8::1");
    server.add("nas.home.arpa", "AAAA", "2001:db8::2");
    server.ok(&["rm", "home.arpa", "MX", "10 Mail.Home.Arpa."]);
    server.ok(&["rm", "home.arpa", "txt", "hello world"]);
    server.ok(&["rm", "nas.home.arpa", "AAAA", "2001:DB8:0::2"]);
    assert_eq!(
        shapes(&server.records()),
        BTreeSet::from([
            (
                "home.arpa.".into(),
                "MX".into(),
                300,
                "20 backup.home.arpa.".into()
            ),
            (
                "home.arpa.".into(),
                "TXT".into(),
                300,
                "\"Hello world\"".into()
            ),
            (
                "nas.home.arpa.".into(),
                "AAAA".into(),
                300,
                "2001:db8::1".into()
            ),
        ])
    );
}

#[test]
fn rm_without_a_match_is_refused() {
    let server = TestServer::start();
    server.add("nas.home.arpa", "A", "192.168.1.20");
    for args in [
        &["rm", "nas.home.arpa", "AAAA"][..],
        &["rm", "other.home.arpa", "A"],
        &["rm", "nas.home.arpa", "A", "192.168.1.99"],
    ] {
        let out = server.ctl(args);
        let line = out.assert_refused();
        assert!(line.contains("no record matches"), "{args:?}: {line}");
    }
    let line = server
        .ctl(&["rm", "no-such-id"])
        .assert_refused()
        .to_string();
    assert!(
        line.contains("no-such-id") && line.contains("HTTP 404"),
        "{line}"
    );
    assert_eq!(server.records().len(), 1);
}

// ---- cache --------------------------------------------------------------------------------

/// Polls `cache list --json` until `done` holds (the cache is filled as the answer goes
/// out), at most 5 s.
fn cache_until(server: &TestServer, args: &[&str], done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let entries = array(server.json(args));
        if done(&entries) {
            return entries;
        }
        assert!(
            Instant::now() < deadline,
            "cache never became as expected: {entries:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn cached_names(entries: &[Value]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|e| field(e, "name").as_str().expect("name").to_string())
        .collect()
}

#[test]
fn cache_list_and_flush() {
    let upstream = FakeUpstream::start();
    let server = TestServer::with_args(&["--upstream", &upstream.arg()]);
    let empty = server.ok(&["cache", "list"]);
    assert_eq!(
        empty.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "TYPE", "RCODE", "TTL"]
    );

    for name in ["www.example.com.", "api.example.org."] {
        let reply = dns_query(server.dns, name, RecordType::A);
        assert_eq!(a_answers(&reply), [(UPSTREAM_V4, UPSTREAM_TTL)], "{name}");
    }
    let entries = cache_until(&server, &["cache", "list"], |e| e.len() == 2);
    let www = entries
        .iter()
        .find(|e| field(e, "name") == "www.example.com.")
        .expect("www.example.com. cached");
    assert_eq!(field(www, "type"), "A");
    assert_eq!(field(www, "rcode"), "NOERROR");
    let ttl = field(www, "ttl").as_u64().expect("ttl");
    assert!(
        (1..=u64::from(UPSTREAM_TTL)).contains(&ttl),
        "ttl {ttl} counts down from {UPSTREAM_TTL}"
    );

    // The table.
    let out = server.ok(&["cache", "list"]);
    let rows = assert_aligned(&out, &["NAME", "TYPE", "RCODE", "TTL"]);
    let names: BTreeSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["api.example.org.", "www.example.com."])
    );
    assert!(rows.iter().all(|r| r[1] == "A" && r[2] == "NOERROR"));

    // --name, normalised like the records filter.
    let only = array(server.json(&["cache", "list", "--name", "WWW.Example.COM"]));
    assert_eq!(
        cached_names(&only),
        BTreeSet::from(["www.example.com.".to_string()])
    );

    // Flush one name, then everything.
    let out = server.ok(&["cache", "flush", "www.example.com"]);
    assert!(out.is_empty(), "{out:?}");
    let left = array(server.json(&["cache", "list"]));
    assert_eq!(
        cached_names(&left),
        BTreeSet::from(["api.example.org.".to_string()])
    );
    server.ok(&["cache", "flush"]);
    assert!(array(server.json(&["cache", "list"])).is_empty());
}

// ---- snapshot -----------------------------------------------------------------------------

#[test]
fn snapshot_prints_a_directory_that_a_server_can_open() {
    let server = TestServer::start();
    server.add("nas.home.arpa", "A", "192.168.1.20");
    let out = server.ok(&["snapshot"]);
    let path = out.trim_end_matches('\n');
    assert!(
        !path.is_empty() && !path.contains('\n'),
        "one path: {out:?}"
    );
    assert!(Path::new(path).is_dir(), "{path} is not a directory");

    let json = server.json(&["snapshot"]);
    let object = json.as_object().expect("an object");
    assert_eq!(object.keys().collect::<Vec<_>>(), ["path"], "{json}");
    let second = json["path"].as_str().expect("path is a string");
    assert!(Path::new(second).is_dir(), "{second} is not a directory");
    assert_ne!(second, path, "each snapshot is a new directory");

    // The copy is a data dir of its own, with the record in it. (It lives in the first
    // server's temp dir, so that server stays up meanwhile; the copy has its own lock.)
    let restored = TestServer::on_data_dir(Path::new(path));
    let records = restored.records();
    assert_eq!(
        shapes(&records),
        BTreeSet::from([(
            "nas.home.arpa.".into(),
            "A".into(),
            300,
            "192.168.1.20".into()
        )])
    );
}

// ---- completions and help -----------------------------------------------------------------

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Ctl::new().args(&["completions", shell]).run();
        out.assert_ok(&["completions", shell]);
        assert!(
            out.stdout.contains("rind-ctl"),
            "{shell} script does not mention rind-ctl"
        );
        for sub in ["add", "list", "snapshot", "cache"] {
            assert!(
                out.stdout.contains(sub),
                "{shell} script lacks the {sub} command"
            );
        }
    }
    let bash = Ctl::new().args(&["completions", "bash"]).run().stdout;
    if let Ok(check) = std::process::Command::new("bash")
        .args(["-n", "-c", &bash])
        .output()
    {
        assert!(
            check.status.success(),
            "bash -n rejects the script: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

#[test]
fn completions_need_no_server() {
    // Works with a dead --server: completions never talk to the server.
    let url = format!("http://127.0.0.1:{}", dead_port());
    let out = Ctl::new().server(&url).args(&["completions", "fish"]).run();
    out.assert_ok(&["completions", "fish"]);
    assert!(!out.stdout.is_empty());
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in [
        &["add"][..],
        &["list"],
        &["get"],
        &["update"],
        &["rm"],
        &["zone", "add"],
        &["zone", "list"],
        &["zone", "get"],
        &["zone", "update"],
        &["zone", "rm"],
        &["cache", "list"],
        &["cache", "flush"],
        &["snapshot"],
        &["completions"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = Ctl::new().args(&args).run();
        out.assert_ok(&args);
        assert!(
            out.stdout.contains("Example"),
            "{cmd:?} --help has no example:\n{}",
            out.stdout
        );
        assert!(out.stdout.contains("rind-ctl "), "{cmd:?}");
    }
}

// ---- errors -------------------------------------------------------------------------------

#[test]
fn dead_server_is_one_line_and_exit_1() {
    let url = format!("http://127.0.0.1:{}", dead_port());
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["add", "nas.home.arpa", "A", "192.168.1.20"],
        &["get", "x"],
        &["update", "x", "--ttl", "5"],
        &["rm", "x"],
        &["rm", "nas.home.arpa", "A"],
        &["cache", "list"],
        &["cache", "flush"],
        &["snapshot"],
    ] {
        let out = Ctl::new().server(&url).args(args).run();
        let line = out.assert_refused();
        assert!(
            line.contains(&format!("cannot reach rind-server at {url}")),
            "{args:?}: {line}"
        );
        assert!(line.contains("connection refused"), "{args:?}: {line}");
        assert!(line.contains("is it running?"), "{args:?}: {line}");
    }
}

#[test]
fn rind_server_env_names_the_server() {
    let server = TestServer::start();
    server.add("nas.home.arpa", "A", "192.168.1.20");
    let out = Ctl::new()
        .env("RIND_SERVER", &server.url())
        .args(&["list", "--json"])
        .run();
    out.assert_ok(&["list"]);
    assert_eq!(
        array(serde_json::from_str(&out.stdout).expect("JSON")).len(),
        1
    );

    // --server wins over the environment.
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let out = Ctl::new()
        .env("RIND_SERVER", &dead)
        .server(&server.url())
        .args(&["list"])
        .run();
    out.assert_ok(&["list"]);

    // And the env alone, pointing at a dead server, names that server.
    let out = Ctl::new().env("RIND_SERVER", &dead).args(&["list"]).run();
    assert!(out.assert_refused().contains(&dead));

    // host:port without a scheme means http://host:port.
    let bare = server.http.to_string();
    let out = Ctl::new().server(&bare).args(&["list"]).run();
    out.assert_ok(&["list", "--server", &bare]);
}

#[test]
fn token_missing_or_wrong_is_refused() {
    let server = TestServer::with_args(&["--api-token", TOKEN]);
    for args in [
        &["list"][..],
        &["add", "nas.home.arpa", "A", "192.168.1.20"],
        &["cache", "list"],
        &["cache", "flush"],
        &["snapshot"],
    ] {
        let out = server.ctl(args);
        let line = out.assert_refused();
        assert!(line.contains("HTTP 401"), "{args:?}: {line}");
        assert!(line.contains("missing API token"), "{args:?}: {line}");
        assert!(
            line.contains("RIND_API_TOKEN"),
            "the hint names the env: {line}"
        );

        let mut with_wrong = vec!["--token", "wrong"];
        with_wrong.extend_from_slice(args);
        let out = server.ctl(&with_wrong);
        let line = out.assert_refused();
        assert!(
            line.contains("HTTP 401") && line.contains("wrong API token"),
            "{args:?}: {line}"
        );
    }
    // Nothing was written without the token.
    let out = Ctl::new()
        .server(&server.url())
        .args(&["--token", TOKEN, "list", "--json"])
        .run();
    out.assert_ok(&["list"]);
    assert_eq!(out.stdout.trim(), "[]");
}

#[test]
fn token_from_flag_or_env() {
    let server = TestServer::with_args(&["--api-token", TOKEN]);
    let out = Ctl::new()
        .server(&server.url())
        .args(&[
            "--token",
            TOKEN,
            "add",
            "nas.home.arpa",
            "A",
            "192.168.1.20",
        ])
        .run();
    out.assert_ok(&["add", "--token"]);

    let out = Ctl::new()
        .server(&server.url())
        .env("RIND_API_TOKEN", TOKEN)
        .args(&["list", "--json"])
        .run();
    out.assert_ok(&["list", "RIND_API_TOKEN"]);
    let records = array(serde_json::from_str(&out.stdout).expect("JSON"));
    assert_eq!(records.len(), 1);

    // The token flag also works after the subcommand (it is global).
    let out = Ctl::new()
        .server(&server.url())
        .args(&["snapshot", "--token", TOKEN])
        .run();
    out.assert_ok(&["snapshot", "--token"]);
    assert!(Path::new(out.stdout.trim()).is_dir());

    // --token wins over a wrong RIND_API_TOKEN.
    let out = Ctl::new()
        .server(&server.url())
        .env("RIND_API_TOKEN", "wrong")
        .args(&["--token", TOKEN, "cache", "list"])
        .run();
    out.assert_ok(&["cache", "list", "--token over env"]);
}

#[test]
fn not_found_get_and_rm() {
    let server = TestServer::start();
    for args in [&["get", "01nosuchid"][..], &["rm", "01nosuchid"]] {
        let out = server.ctl(args);
        let line = out.assert_refused();
        assert!(
            line.contains("HTTP 404") && line.contains("01nosuchid"),
            "{args:?}: {line}"
        );
    }
    // An id that is not URL-safe stays one path segment: still a 404, not another route.
    let line = server
        .ctl(&["get", "../records"])
        .assert_refused()
        .to_string();
    assert!(line.contains("HTTP 404"), "{line}");
}

#[test]
fn duplicate_add_is_409_with_the_servers_message() {
    let server = TestServer::start();
    let id = server.add("nas.home.arpa", "A", "192.168.1.20");
    let out = server.ctl(&["add", "NAS.home.arpa.", "A", "192.168.1.20"]);
    let line = out.assert_refused();
    assert!(line.contains("HTTP 409"), "{line}");
    assert!(
        line.contains(&id),
        "the message names the existing record: {line}"
    );
    assert_eq!(server.records().len(), 1);

    // A CNAME beside other data is a conflict too.
    let line = server
        .ctl(&["add", "nas.home.arpa", "CNAME", "other.home.arpa"])
        .assert_refused()
        .to_string();
    assert!(line.contains("HTTP 409"), "{line}");
}

#[test]
fn bad_input_is_400_with_the_servers_message() {
    let server = TestServer::start();
    let cases: [(&[&str], &str); 5] = [
        (&["add", "x.lan", "A", "not-an-ip"], "not-an-ip"),
        (&["add", "x.lan", "BOGUS", "1.2.3.4"], "BOGUS"),
        (&["add", "bad..name", "A", "1.2.3.4"], "bad..name"),
        (
            &["add", "x.lan", "A", "1.2.3.4", "--ttl", "2147483648"],
            "2147483648",
        ),
        (&["list", "--type", "BOGUS"], "BOGUS"),
    ];
    for (args, needle) in cases {
        let out = server.ctl(args);
        let line = out.assert_refused();
        assert!(line.contains("HTTP 400"), "{args:?}: {line}");
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    // --json does not change where errors go.
    let out = server.ctl(&["add", "x.lan", "A", "not-an-ip", "--json"]);
    out.assert_refused();
    assert!(server.records().is_empty());
}

#[test]
fn usage_errors_exit_2() {
    let server = TestServer::start();
    for args in [
        &["frobnicate"][..],
        &[],
        &["add", "x.lan", "A"],
        &["add"],
        &["get"],
        &["update"],
        &["rm"],
        &["cache"],
        &["cache", "drop"],
        &["completions"],
        &["completions", "tcsh"],
        &["add", "x.lan", "A", "1.2.3.4", "--ttl", "soon"],
        &["list", "--bogus"],
    ] {
        let out = server.ctl(args);
        let err = out.assert_usage_error();
        // clap's own words: an error, or the usage of an incomplete command.
        assert!(
            err.starts_with("error: ") || err.contains("Usage: rind-ctl"),
            "{args:?}: {err}"
        );
    }
    for url in ["https://127.0.0.1:8053", "ftp://127.0.0.1"] {
        let out = Ctl::new().server(url).args(&["list"]).run();
        let err = out.assert_usage_error();
        assert!(err.contains("--server"), "{url}: {err}");
    }
    // Usage errors never reach the server.
    assert!(server.records().is_empty());
}

#[test]
fn closed_stdout_is_not_a_crash() {
    // `rind-ctl ... | head` closes the pipe early: no panic, no error, exit 0.
    let server = TestServer::start();
    server.add("nas.home.arpa", "A", "192.168.1.20");
    for args in [&["completions", "bash"][..], &["list"], &["list", "--json"]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rind-ctl"))
            .args(["--server", &server.url()])
            .args(args)
            .env_remove("RUST_BACKTRACE")
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .output()
            .expect("run rind-ctl");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// Serves `response` to every connection on a 127.0.0.1 port, for `count` connections.
fn fake_http(response: &'static str, count: usize) -> (String, thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake HTTP");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let handle = thread::spawn(move || {
        for _ in 0..count {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            // Read the request head, then answer and close.
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (url, handle)
}

#[test]
fn something_else_on_the_port_gets_one_line() {
    let (url, handle) = fake_http(
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        1,
    );
    let out = Ctl::new().server(&url).args(&["list"]).run();
    let line = out.assert_refused();
    assert!(line.contains("404") && line.contains("--server"), "{line}");
    let _ = handle.join();

    let page = "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 50\r\nConnection: close\r\n\r\n<html>\n<body>\n<h1>Bad gateway</h1>\n</body>\n</html>";
    let (url, handle) = fake_http(page, 1);
    let out = Ctl::new().server(&url).args(&["list"]).run();
    let line = out.assert_refused();
    assert!(
        line.contains("Bad gateway") && line.contains("502"),
        "{line}"
    );
    let _ = handle.join();
}
