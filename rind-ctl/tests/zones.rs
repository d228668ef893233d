//! `rind-ctl zone ...` against a real rind-server (in-process, ephemeral 127.0.0.1 ports):
//! each command's table and `--json`, the update rules, the errors, and that a zone made from
//! the command line is answered with authority over DNS.

mod common;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use serde_json::{json, Value};

use common::{dead_port, dns_query, Ctl, TestServer};

const KEY: &str = "xfr:hmac-sha256:c2VjcmV0c2VjcmV0";
const HEADER: [&str; 7] = [
    "NAME",
    "SERIAL",
    "RECORDS",
    "ALLOW_TRANSFER",
    "NOTIFY",
    "TSIG",
    "PRIMARY",
];

/// The rows of a zones table under its header, each cell starting in its header's column.
fn table(out: &str) -> Vec<Vec<String>> {
    let mut lines = out.lines();
    let head = lines.next().expect("a header line");
    assert_eq!(head.split_whitespace().collect::<Vec<_>>(), HEADER, "{out}");
    let starts: Vec<usize> = HEADER
        .iter()
        .map(|h| head.find(h).expect("header cell"))
        .collect();
    lines
        .map(|line| {
            let cells: Vec<String> = line.split_whitespace().map(String::from).collect();
            assert_eq!(cells.len(), HEADER.len(), "row {line:?}\n{out}");
            for (cell, start) in cells.iter().zip(&starts) {
                assert_eq!(
                    line.get(*start..*start + cell.len()),
                    Some(cell.as_str()),
                    "cell {cell:?} not in its column\n{out}"
                );
            }
            cells
        })
        .collect()
}

/// The API's own view of a zone, to compare the CLI's output with.
fn api_zone(server: &TestServer, zone: &str) -> Value {
    let out = server.json(&["zone", "get", zone]);
    assert_eq!(out["name"], zone, "{out}");
    out
}

#[test]
fn zone_add_list_get_and_rm() {
    let server = TestServer::with_args(&["--tsig-key", KEY]);
    let out = server.ok(&[
        "zone",
        "add",
        "Home.Arpa",
        "--allow-transfer",
        "127.0.0.1",
        "--allow-transfer",
        "10.0.0.0/8",
        "--notify",
        "127.0.0.1:5301",
        "--tsig",
        "xfr",
    ]);
    let rows = table(&out);
    assert_eq!(rows.len(), 1, "{out}");
    let zone = api_zone(&server, "home.arpa.");
    let serial = zone["serial"].as_u64().expect("serial");
    assert_eq!(
        rows[0],
        [
            "home.arpa.",
            &serial.to_string(),
            "0",
            "127.0.0.1/32,10.0.0.0/8",
            "127.0.0.1:5301",
            "xfr.",
            "-"
        ]
    );
    assert_eq!(
        zone["allow_transfer"],
        json!(["127.0.0.1/32", "10.0.0.0/8"])
    );
    assert_eq!(zone["notify"], json!(["127.0.0.1:5301"]));
    assert_eq!(zone["tsig"], "xfr.");
    assert_eq!(zone["primary"], Value::Null);

    // --json on add is the API's object, every field.
    let lab = server.json(&["zone", "add", "lab.test"]);
    assert_eq!(
        lab,
        json!({"name": "lab.test.", "serial": lab["serial"], "records": 0,
               "allow_transfer": [], "notify": [], "tsig": null, "primary": null})
    );
    assert!(lab["serial"].as_u64().is_some_and(|s| s > 0), "{lab}");

    server.ok(&["add", "nas.home.arpa", "A", "192.168.1.20"]);
    server.ok(&["add", "tv.home.arpa", "A", "192.168.1.21"]);
    let rows = table(&server.ok(&["zone", "list"]));
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["home.arpa.", "lab.test."]);
    assert_eq!(
        rows[0][1],
        (serial + 2).to_string(),
        "two writes, two serials"
    );
    assert_eq!(rows[0][2], "2");
    assert_eq!(rows[1][3..], ["-", "-", "-", "-"]);
    let listed = server.json(&["zone", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert_eq!(listed[0], api_zone(&server, "home.arpa."));

    let rows = table(&server.ok(&["zone", "get", "home.arpa"]));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][2], "2");

    // rm refuses a zone with records and says how to go on; --force takes them too.
    let out = server.ctl(&["zone", "rm", "home.arpa"]);
    let line = out.assert_refused();
    assert!(line.contains("HTTP 409"), "{line}");
    assert!(line.contains("--force"), "{line}");
    assert_eq!(api_zone(&server, "home.arpa.")["records"], 2);
    let out = server.ok(&["zone", "rm", "home.arpa", "--force"]);
    assert_eq!(out, "");
    assert!(server.records().is_empty(), "{:?}", server.records());
    let line = server
        .ctl(&["zone", "get", "home.arpa"])
        .assert_refused()
        .to_string();
    assert!(line.contains("HTTP 404"), "{line}");
    server.ok(&["zone", "rm", "lab.test"]);
    assert_eq!(
        server.ok(&["zone", "list"]).lines().count(),
        1,
        "header only"
    );
    assert_eq!(server.json(&["zone", "list"]), json!([]));
}

#[test]
fn zone_update_replaces_only_the_settings_given() {
    let server = TestServer::with_args(&["--tsig-key", KEY]);
    server.ok(&[
        "zone",
        "add",
        "home.arpa",
        "--allow-transfer",
        "192.168.1.0/24",
        "--notify",
        "192.168.1.3",
        "--tsig",
        "xfr",
    ]);
    server.ok(&["add", "nas.home.arpa", "A", "192.168.1.20"]);
    let before = api_zone(&server, "home.arpa.");

    let after = server.json(&[
        "zone",
        "update",
        "home.arpa",
        "--notify",
        "192.168.1.4:5353",
        "--notify",
        "192.168.1.5:53",
    ]);
    assert_eq!(
        after["notify"],
        json!(["192.168.1.4:5353", "192.168.1.5:53"])
    );
    assert_eq!(after["allow_transfer"], before["allow_transfer"]);
    assert_eq!(after["tsig"], "xfr.");
    // Settings are not content: the serial and the records stay.
    assert_eq!(after["serial"], before["serial"]);
    assert_eq!(after["records"], 1);

    let after = server.json(&["zone", "update", "home.arpa", "--clear-notify", "--no-tsig"]);
    assert_eq!(after["notify"], json!([]));
    assert_eq!(after["tsig"], Value::Null);
    assert_eq!(after["allow_transfer"], json!(["192.168.1.0/24"]));
    let after = server.json(&[
        "zone",
        "update",
        "home.arpa",
        "--allow-transfer",
        "10.1.2.3",
        "--tsig",
        "xfr",
    ]);
    assert_eq!(after["allow_transfer"], json!(["10.1.2.3/32"]));
    assert_eq!(after["tsig"], "xfr.");
    let after = server.json(&["zone", "update", "home.arpa", "--clear-allow-transfer"]);
    assert_eq!(after["allow_transfer"], json!([]));
    assert_eq!(api_zone(&server, "home.arpa."), after);

    // Nothing to change, or contradicting flags: refused before any request.
    let line = server
        .ctl(&["zone", "update", "home.arpa"])
        .assert_refused()
        .to_string();
    assert!(line.contains("nothing to change"), "{line}");
    server
        .ctl(&["zone", "update", "home.arpa", "--tsig", "xfr", "--no-tsig"])
        .assert_usage_error();
    let line = server
        .ctl(&["zone", "update", "nothere.arpa", "--clear-notify"])
        .assert_refused()
        .to_string();
    assert!(line.contains("HTTP 404"), "{line}");
}

#[test]
fn zone_errors_are_the_servers_message_on_one_line() {
    let server = TestServer::with_args(&["--tsig-key", KEY]);
    server.ok(&["zone", "add", "home.arpa"]);
    for (args, words) in [
        (&["zone", "add", "home.arpa"][..], "already exists"),
        (
            &["zone", "add", "x.arpa", "--allow-transfer", "10.0.0.0/99"],
            "allow_transfer",
        ),
        (&["zone", "add", "x.arpa", "--notify", "nowhere"], "notify"),
        (&["zone", "add", "x.arpa", "--tsig", "nokey"], "--tsig-key"),
        (&["zone", "add", "bad..name"], "HTTP 400"),
        (&["zone", "get", "nothere.arpa"], "no zone"),
        (&["zone", "rm", "nothere.arpa"], "HTTP 404"),
    ] {
        let out = server.ctl(args);
        let line = out.assert_refused();
        assert!(line.contains(words), "{args:?}: {line}");
    }
    assert_eq!(
        server.json(&["zone", "list"]).as_array().map(Vec::len),
        Some(1)
    );

    let url = format!("http://127.0.0.1:{}", dead_port());
    for args in [
        &["zone", "list"][..],
        &["zone", "add", "x.arpa"],
        &["zone", "rm", "x.arpa"],
    ] {
        let out = Ctl::new().server(&url).args(args).run();
        let line = out.assert_refused();
        assert!(
            line.contains("cannot reach rind-server"),
            "{args:?}: {line}"
        );
    }
}

#[test]
fn a_zone_added_from_the_command_line_is_answered_with_authority() {
    let server = TestServer::start();
    server.ok(&["zone", "add", "home.arpa"]);
    server.ok(&["add", "nas.home.arpa", "A", "192.168.1.20"]);
    let serial = api_zone(&server, "home.arpa.")["serial"]
        .as_u64()
        .expect("serial");

    let soa = dns_query(server.dns, "home.arpa.", RecordType::SOA);
    assert!(soa.metadata.authoritative);
    let [record] = soa.answers.as_slice() else {
        panic!("one SOA expected: {soa:?}")
    };
    let RData::SOA(data) = &record.data else {
        panic!("not a SOA: {record:?}")
    };
    assert_eq!(u64::from(data.serial), serial);

    let missing = dns_query(server.dns, "tv.home.arpa.", RecordType::A);
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert!(missing.metadata.authoritative);
    assert_eq!(missing.authorities.len(), 1, "{missing:?}");
    assert_eq!(missing.authorities[0].record_type(), RecordType::SOA);
}
