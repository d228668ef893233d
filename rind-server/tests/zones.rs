//! Zones and zone transfer against the real server (docs/reference.md, "Zones and zone
//! transfer"): the zones API, authoritative answers inside a zone, the serial, AXFR and
//! IXFR over TCP, `allow_transfer`, TSIG and NOTIFY, each checked on the bytes a secondary or
//! a resolver would see. Every wait is bounded; everything listens on 127.0.0.1 only.

mod records_common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use records_common::{FakeUpstream, Server};
use rind_server::tsig::{self, Key, Signer};
use serde_json::{json, Value};

/// The key the TSIG tests give the server (`xfr`, hmac-sha256, secret "secretsecret").
const KEY: &str = "xfr:hmac-sha256:c2VjcmV0c2VjcmV0";
/// Same name and algorithm, another secret ("wrongwrong").
const WRONG_KEY: &str = "xfr:hmac-sha256:d3Jvbmd3cm9uZw==";
/// How long one transfer may take before the test gives up on it.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(20);
/// Most messages read for one transfer (a runaway stream is a failure, not a hang).
const MAX_MESSAGES: usize = 1000;

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("name")
}

fn start(dir: &tempfile::TempDir, upstream: &FakeUpstream, extra: &[&str]) -> Server {
    Server::start(&dir.path().join("data"), upstream.addr, extra)
}

/// Creates a zone; panics unless 201.
fn create_zone(s: &Server, body: Value) -> Value {
    let reply = s.call("POST", "/api/v1/zones", Some(&body.to_string()));
    assert_eq!(reply.status, 201, "create zone {body}: {reply:?}");
    reply.json
}

fn get_zone(s: &Server, zone: &str) -> Value {
    let reply = s.call("GET", &format!("/api/v1/zones/{zone}"), None);
    assert_eq!(reply.status, 200, "GET zone {zone}: {reply:?}");
    reply.json
}

fn serial_of(s: &Server, zone: &str) -> u32 {
    let zone = get_zone(s, zone);
    u32::try_from(zone["serial"].as_u64().expect("serial is a number")).expect("serial fits u32")
}

/// The serial of the SOA a DNS query for the apex returns.
fn soa_serial(s: &Server, zone: &str) -> u32 {
    let reply = s.ask(zone, RecordType::SOA);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    match reply.answers.as_slice() {
        [Record {
            data: RData::SOA(soa),
            ..
        }] => soa.serial,
        other => panic!("SOA query for {zone} answered {other:?}"),
    }
}

fn soa_record(zone: &str, serial: u32) -> Record {
    Record::from_rdata(
        name(zone),
        0,
        RData::SOA(SOA::new(name(zone), name(zone), serial, 0, 0, 0, 0)),
    )
}

fn the_soa(record: &Record) -> &SOA {
    match &record.data {
        RData::SOA(soa) => soa,
        other => panic!("expected a SOA, got {other:?}"),
    }
}

/// A transfer question (AXFR, or IXFR from `since`), encoded.
fn transfer_query(zone: &str, since: Option<u32>) -> Message {
    let mut msg = Message::query();
    msg.metadata.id = rand::random();
    let qtype = if since.is_some() {
        RecordType::IXFR
    } else {
        RecordType::AXFR
    };
    msg.add_query(Query::query(name(zone), qtype));
    if let Some(serial) = since {
        msg.add_authority(soa_record(zone, serial));
    }
    msg
}

/// Sends `request` over a fresh TCP connection and reads messages until `done` says the
/// records so far make a whole transfer, a message is not NOERROR, or the server closes.
fn tcp_exchange(
    addr: SocketAddr,
    request: &[u8],
    done: impl Fn(&[Record]) -> bool,
) -> Vec<(Vec<u8>, Message)> {
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    let mut stream = TcpStream::connect(addr).expect("connect over TCP");
    stream
        .set_read_timeout(Some(TRANSFER_TIMEOUT))
        .expect("read timeout");
    let mut frame = u16::try_from(request.len())
        .expect("request fits a frame")
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(request);
    stream.write_all(&frame).expect("send the request");
    let mut messages = Vec::new();
    let mut records = Vec::new();
    while messages.len() < MAX_MESSAGES {
        assert!(
            Instant::now() < deadline,
            "transfer took over {TRANSFER_TIMEOUT:?}"
        );
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            break;
        }
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut body).expect("a whole message");
        let message = Message::from_vec(&body).expect("the message parses");
        let stop = message.metadata.response_code != ResponseCode::NoError;
        records.extend(message.answers.iter().cloned());
        messages.push((body, message));
        if stop || done(&records) {
            return messages;
        }
    }
    messages
}

/// Whether `records` is a whole AXFR: SOA, content, SOA.
fn axfr_complete(records: &[Record]) -> bool {
    records.len() >= 2
        && records
            .last()
            .is_some_and(|r| r.record_type() == RecordType::SOA)
}

/// Whether `records` is a whole IXFR reply (RFC 1995 §4): one SOA (up to date); SOA then
/// AXFR-style content then SOA; or SOA new, then (SOA old, deletions, SOA next, additions)
/// per change, then SOA new again where the next "SOA old" would be.
fn ixfr_complete(records: &[Record]) -> bool {
    let is_soa = |r: &Record| r.record_type() == RecordType::SOA;
    let Some(first) = records.first() else {
        return false;
    };
    let newest = the_soa(first).serial;
    match records.get(1) {
        None => true,
        Some(second) if !is_soa(second) => axfr_complete(records),
        Some(_) => {
            let mut i = 1;
            // Each round: an SOA (old, or the closing one), deletions, SOA, additions.
            while let Some(old) = records.get(i) {
                if the_soa(old).serial == newest {
                    return i == records.len() - 1;
                }
                i += 1;
                while records.get(i).is_some_and(|r| !is_soa(r)) {
                    i += 1;
                }
                if records.get(i).is_none() {
                    return false;
                }
                i += 1;
                while records.get(i).is_some_and(|r| !is_soa(r)) {
                    i += 1;
                }
            }
            false
        }
    }
}

/// Every answer record of `messages`, in order.
fn all_records(messages: &[(Vec<u8>, Message)]) -> Vec<Record> {
    messages
        .iter()
        .flat_map(|(_, m)| m.answers.iter().cloned())
        .collect()
}

fn axfr(addr: SocketAddr, zone: &str) -> Vec<(Vec<u8>, Message)> {
    let request = transfer_query(zone, None).to_vec().expect("encode");
    tcp_exchange(addr, &request, axfr_complete)
}

fn ixfr(addr: SocketAddr, zone: &str, since: u32) -> Vec<Record> {
    let request = transfer_query(zone, Some(since)).to_vec().expect("encode");
    let messages = tcp_exchange(addr, &request, ixfr_complete);
    for (_, m) in &messages {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
        assert!(m.metadata.authoritative, "IXFR message without AA: {m:?}");
    }
    let records = all_records(&messages);
    assert!(ixfr_complete(&records), "IXFR cut short: {records:?}");
    records
}

/// One-message rcode of a transfer request over TCP.
fn transfer_rcode(addr: SocketAddr, request: &[u8]) -> (ResponseCode, Message) {
    let messages = tcp_exchange(addr, request, |_| true);
    let (_, reply) = messages.into_iter().next().expect("a reply");
    (reply.metadata.response_code, reply)
}

/// A record as `name TYPE TTL data`, for comparing sets of records.
fn show(r: &Record) -> String {
    format!(
        "{} {} {} {}",
        r.name.to_ascii().to_lowercase(),
        r.record_type(),
        r.ttl,
        r.data
    )
}

fn shown(records: &[Record]) -> Vec<String> {
    records.iter().map(show).collect()
}

/// The type and RDATA of the last resource record in `packet` (the TSIG, when signed), read
/// straight from the bytes: hickory's parser is not trusted with TSIG here.
fn last_record(packet: &[u8]) -> (u16, Vec<u8>) {
    let u16_at = |i: usize| u16::from_be_bytes([packet[i], packet[i + 1]]);
    let skip_name = |mut i: usize| loop {
        let len = packet[i];
        if len & 0xc0 == 0xc0 {
            return i + 2;
        }
        i += 1 + usize::from(len);
        if len == 0 {
            return i;
        }
    };
    let questions = u16_at(4);
    let records = u16_at(6) + u16_at(8) + u16_at(10);
    assert!(records > 0, "no resource records in {packet:02x?}");
    let mut i = 12;
    for _ in 0..questions {
        i = skip_name(i) + 4;
    }
    let mut last = (0, Vec::new());
    for _ in 0..records {
        i = skip_name(i);
        let rtype = u16_at(i);
        let rdlen = usize::from(u16_at(i + 8));
        let start = i + 10;
        last = (rtype, packet[start..start + rdlen].to_vec());
        i = start + rdlen;
    }
    assert_eq!(i, packet.len(), "trailing bytes after the last record");
    last
}

/// The error field of a TSIG record's RDATA (after the algorithm name, time, fudge, MAC and
/// original ID).
fn tsig_error(rdata: &[u8]) -> u16 {
    let mut i = 0;
    while rdata[i] != 0 {
        i += 1 + usize::from(rdata[i]);
    }
    i += 1 + 6 + 2; // root label, time signed, fudge
    let mac_len = usize::from(u16::from_be_bytes([rdata[i], rdata[i + 1]]));
    i += 2 + mac_len + 2; // MAC size, MAC, original ID
    u16::from_be_bytes([rdata[i], rdata[i + 1]])
}

/// Creates `count` A records `h{i}.{zone}` from a few threads at once (the server group-commits
/// concurrent writes, so this is much faster than one by one).
fn fill(s: &Arc<Server>, zone: &str, count: usize) {
    const THREADS: usize = 8;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let s = Arc::clone(s);
            let zone = zone.to_string();
            std::thread::spawn(move || {
                for i in (t..count).step_by(THREADS) {
                    let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
                    s.create(&format!("h{i}.{zone}"), "A", 300, &ip);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
}

// ---------------------------------------------------------------------------------------
// The zones API

#[test]
fn zone_api_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = start(&dir, &upstream, &["--tsig-key", KEY]);
    let before = u32::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("u32 seconds");

    let reply = s.call(
        "POST",
        "/api/v1/zones",
        Some(
            &json!({"name": "Home.LAN", "allow_transfer": ["127.0.0.1/32", "10.0.0.0/8"],
                    "notify": ["127.0.0.1:5301"], "tsig": "xfr"})
            .to_string(),
        ),
    );
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.location.as_deref(), Some("/api/v1/zones/home.lan."));
    let created = reply.json;
    assert_eq!(created["name"], "home.lan.");
    assert_eq!(created["records"], 0);
    assert_eq!(
        created["allow_transfer"],
        json!(["127.0.0.1/32", "10.0.0.0/8"])
    );
    assert_eq!(created["notify"], json!(["127.0.0.1:5301"]));
    assert_eq!(created["tsig"], "xfr.");
    assert_eq!(created["primary"], Value::Null);
    // A new zone's serial is the time, so a zone made again starts past old secondaries.
    let serial = u32::try_from(created["serial"].as_u64().expect("serial")).expect("u32");
    assert!(
        serial >= before && serial <= before + 60,
        "serial {serial} is not the time of creation ({before})"
    );

    // The lists default to empty; the location and the name round-trip.
    let plain = create_zone(&s, json!({"name": "lab.test"}));
    assert_eq!(plain["allow_transfer"], json!([]));
    assert_eq!(plain["notify"], json!([]));
    assert_eq!(plain["tsig"], Value::Null);

    s.create("nas.home.lan", "A", 300, "192.168.1.10");
    s.create("nas.home.lan", "AAAA", 300, "fd00::10");
    s.create("www.example.org", "A", 300, "192.0.2.1");
    let got = get_zone(&s, "home.lan");
    assert_eq!(got["records"], 2, "records counts only the zone's: {got}");
    assert_eq!(got["serial"], serial + 2);

    let list = s.call("GET", "/api/v1/zones", None);
    assert_eq!(list.status, 200);
    let names: Vec<&str> = list
        .json
        .as_array()
        .expect("an array")
        .iter()
        .map(|z| z["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["home.lan.", "lab.test."]);

    // Errors: 409 duplicate (any spelling), 400 for each bad field, 404 for no such zone.
    let dup = s.call("POST", "/api/v1/zones", Some(r#"{"name": "HOME.lan."}"#));
    assert_eq!(dup.status, 409, "{dup:?}");
    assert!(dup.error().contains("already exists"), "{dup:?}");
    for (body, words) in [
        (r#"{"name": "bad..name"}"#, ""),
        (r#"{"name": ""}"#, ""),
        (r#"{}"#, "name"),
        ("", "empty"),
        ("{not json", "JSON"),
        (
            r#"{"name": "x.lan", "allow_transfer": ["10.0.0.0/33"]}"#,
            "allow_transfer",
        ),
        (
            r#"{"name": "x.lan", "allow_transfer": ["not-a-net"]}"#,
            "allow_transfer",
        ),
        (r#"{"name": "x.lan", "notify": ["127.0.0.1:0"]}"#, "notify"),
        (r#"{"name": "x.lan", "notify": ["nowhere"]}"#, "notify"),
        (r#"{"name": "x.lan", "tsig": "nokey"}"#, "tsig"),
        (r#"{"name": "x.lan", "colour": "blue"}"#, "colour"),
    ] {
        let reply = s.call("POST", "/api/v1/zones", Some(body));
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
        assert!(reply.error().contains(words), "{body}: {reply:?}");
    }
    assert_eq!(
        s.call("GET", "/api/v1/zones", None)
            .json
            .as_array()
            .expect("array")
            .len(),
        2,
        "a refused create left a zone behind"
    );
    for method in ["GET", "DELETE"] {
        let reply = s.call(method, "/api/v1/zones/nothere.lan", None);
        assert_eq!(reply.status, 404, "{method}: {reply:?}");
    }
    let reply = s.call("PUT", "/api/v1/zones/nothere.lan", Some("{}"));
    assert_eq!(reply.status, 404, "PUT: {reply:?}");

    // PUT replaces the settings and keeps the serial and the records; it cannot rename.
    let put = s.call(
        "PUT",
        "/api/v1/zones/home.lan",
        Some(&json!({"allow_transfer": ["192.168.0.0/16"]}).to_string()),
    );
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(put.json["serial"], serial + 2);
    assert_eq!(put.json["records"], 2);
    assert_eq!(put.json["allow_transfer"], json!(["192.168.0.0/16"]));
    assert_eq!(put.json["notify"], json!([]), "PUT replaces, not merges");
    assert_eq!(put.json["tsig"], Value::Null);
    // What GET shows can be sent back as it is.
    let echoed = s.call(
        "PUT",
        "/api/v1/zones/home.lan",
        Some(&get_zone(&s, "home.lan").to_string()),
    );
    assert_eq!(echoed.status, 200, "{echoed:?}");
    let rename = s.call(
        "PUT",
        "/api/v1/zones/home.lan",
        Some(r#"{"name": "other.lan"}"#),
    );
    assert_eq!(rename.status, 400, "{rename:?}");
    assert_eq!(serial_of(&s, "home.lan"), serial + 2);

    // DELETE: refused while records are there, then forced (records go too), then gone.
    let refused = s.call("DELETE", "/api/v1/zones/home.lan", None);
    assert_eq!(refused.status, 409, "{refused:?}");
    assert!(refused.error().contains("force=true"), "{refused:?}");
    assert_eq!(get_zone(&s, "home.lan")["records"], 2);
    let bad = s.call("DELETE", "/api/v1/zones/home.lan?force=yes", None);
    assert_eq!(bad.status, 400, "{bad:?}");
    let forced = s.call("DELETE", "/api/v1/zones/home.lan?force=true", None);
    assert_eq!(forced.status, 204, "{forced:?}");
    assert_eq!(
        s.call("GET", "/api/v1/zones/home.lan", None).status,
        404,
        "a deleted zone is still there"
    );
    let left = s.call("GET", "/api/v1/records", None);
    let left: Vec<&str> = left
        .json
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(left, ["www.example.org."], "force must delete the records");
    // An empty zone goes without force.
    assert_eq!(s.call("DELETE", "/api/v1/zones/lab.test", None).status, 204);
}

// ---------------------------------------------------------------------------------------
// Authority

#[test]
fn apex_has_soa_and_ns_until_records_give_ns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = start(&dir, &upstream, &[]);
    let serial = create_zone(&s, json!({"name": "home.lan"}))["serial"]
        .as_u64()
        .expect("serial");

    let reply = s.ask("home.lan.", RecordType::SOA);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative, "{reply:?}");
    assert_eq!(reply.answers.len(), 1, "{reply:?}");
    assert_eq!(reply.answers[0].ttl, 300);
    let soa = the_soa(&reply.answers[0]);
    assert_eq!(soa.mname, name("ns.home.lan."));
    assert_eq!(soa.rname, name("hostmaster.home.lan."));
    assert_eq!(u64::from(soa.serial), serial);
    assert_eq!(
        (soa.refresh, soa.retry, soa.expire, soa.minimum),
        (300, 60, 604_800, 60)
    );

    let ns = s.ask("home.lan.", RecordType::NS);
    assert!(ns.metadata.authoritative);
    assert_eq!(shown(&ns.answers), ["home.lan. NS 300 ns.home.lan."]);

    // A record's NS replaces the synthesised one (and moves the serial).
    s.create("home.lan", "NS", 3600, "ns1.home.lan");
    let ns = s.ask("home.lan.", RecordType::NS);
    assert_eq!(shown(&ns.answers), ["home.lan. NS 3600 ns1.home.lan."]);
    assert_eq!(u64::from(soa_serial(&s, "home.lan.")), serial + 1);
    assert_eq!(upstream.queries(), 0, "a zone question was forwarded");
}

#[test]
fn names_in_a_zone_get_negative_answers_with_the_soa_and_are_never_forwarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = start(&dir, &upstream, &[]);
    create_zone(&s, json!({"name": "home.lan"}));
    s.create("nas.home.lan", "A", 300, "192.168.1.10");
    s.create("host.deep.sub.home.lan", "A", 300, "192.168.1.11");
    s.create("*.wild.home.lan", "A", 120, "192.168.1.99");
    // A local name outside every zone: the old rules (no SOA anywhere).
    s.create("printer.office.lan", "A", 300, "192.168.2.5");
    let serial = soa_serial(&s, "home.lan.");

    let negative = |qname: &str, qtype: RecordType, rcode: ResponseCode| {
        let reply = s.ask(qname, qtype);
        assert_eq!(
            reply.metadata.response_code, rcode,
            "{qname} {qtype}: {reply:?}"
        );
        assert!(reply.metadata.authoritative, "{qname} {qtype}: AA unset");
        assert!(reply.answers.is_empty(), "{qname} {qtype}: {reply:?}");
        assert_eq!(reply.authorities.len(), 1, "{qname} {qtype}: {reply:?}");
        let soa = &reply.authorities[0];
        assert_eq!(soa.name, name("home.lan."), "{qname} {qtype}");
        // RFC 2308 §3: the negative TTL is min(SOA TTL, MINIMUM).
        assert_eq!(soa.ttl, 60, "{qname} {qtype}");
        assert_eq!(the_soa(soa).serial, serial, "{qname} {qtype}");
    };
    negative("nothere.home.lan.", RecordType::A, ResponseCode::NXDomain);
    negative("a.b.c.home.lan.", RecordType::AAAA, ResponseCode::NXDomain);
    negative("nas.home.lan.", RecordType::MX, ResponseCode::NoError);
    negative("home.lan.", RecordType::A, ResponseCode::NoError);
    // Empty non-terminals exist: NODATA, not NXDOMAIN.
    negative("deep.sub.home.lan.", RecordType::A, ResponseCode::NoError);
    negative("sub.home.lan.", RecordType::A, ResponseCode::NoError);
    // The wildcard's own empty parent, and a type the wildcard lacks.
    negative("x.wild.home.lan.", RecordType::TXT, ResponseCode::NoError);

    let wild = s.ask("anything.wild.home.lan.", RecordType::A);
    assert_eq!(wild.metadata.response_code, ResponseCode::NoError);
    assert!(wild.metadata.authoritative);
    assert_eq!(
        shown(&wild.answers),
        ["anything.wild.home.lan. A 120 192.168.1.99"]
    );
    let nas = s.ask("nas.home.lan.", RecordType::A);
    assert!(nas.metadata.authoritative);
    assert_eq!(shown(&nas.answers), ["nas.home.lan. A 300 192.168.1.10"]);
    assert!(nas.authorities.is_empty(), "{nas:?}");
    assert_eq!(upstream.queries(), 0, "names under a zone were forwarded");

    // Outside every zone: local names NODATA without SOA, others forwarded.
    let outside = s.ask("printer.office.lan.", RecordType::MX);
    assert_eq!(outside.metadata.response_code, ResponseCode::NoError);
    assert!(outside.metadata.authoritative);
    assert!(outside.answers.is_empty() && outside.authorities.is_empty());
    let forwarded = s.ask("www.example.com.", RecordType::A);
    assert!(!forwarded.metadata.authoritative);
    assert_eq!(forwarded.answers.len(), 1, "{forwarded:?}");
    assert_eq!(upstream.asked(), ["www.example.com. A"]);
}

// ---------------------------------------------------------------------------------------
// The serial

#[test]
fn serial_moves_by_one_per_change_under_the_zone_and_survives_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = start(&dir, &upstream, &[]);
    let created = create_zone(&s, json!({"name": "home.lan"}));
    let first = u32::try_from(created["serial"].as_u64().expect("serial")).expect("u32");
    // Another zone, and names outside every zone: their writes leave home.lan alone.
    create_zone(&s, json!({"name": "lab.test"}));
    s.create("www.example.org", "A", 300, "192.0.2.1");
    s.create("x.lab.test", "A", 300, "192.0.2.2");
    assert_eq!(serial_of(&s, "home.lan"), first);

    let nas = s.create("nas.home.lan", "A", 300, "192.168.1.10");
    assert_eq!(serial_of(&s, "home.lan"), first + 1);
    s.create("nas.home.lan", "A", 300, "192.168.1.11");
    assert_eq!(serial_of(&s, "home.lan"), first + 2);
    let id = nas["id"].as_str().expect("id");
    let replaced = s.call(
        "PUT",
        &format!("/api/v1/records/{id}"),
        Some(
            &json!({"name": "nas.home.lan", "type": "A", "ttl": 60, "data": "192.168.1.12"})
                .to_string(),
        ),
    );
    assert_eq!(replaced.status, 200, "{replaced:?}");
    assert_eq!(serial_of(&s, "home.lan"), first + 3);
    // A PUT that changes only the TTL changes the zone too (a secondary must see it).
    let ttl_only = s.call(
        "PUT",
        &format!("/api/v1/records/{id}"),
        Some(
            &json!({"name": "nas.home.lan", "type": "A", "ttl": 61, "data": "192.168.1.12"})
                .to_string(),
        ),
    );
    assert_eq!(ttl_only.status, 200, "{ttl_only:?}");
    assert_eq!(serial_of(&s, "home.lan"), first + 4);
    let deleted = s.call("DELETE", &format!("/api/v1/records/{id}"), None);
    assert_eq!(deleted.status, 204, "{deleted:?}");
    assert_eq!(serial_of(&s, "home.lan"), first + 5);
    // Settings are not content.
    let put = s.call(
        "PUT",
        "/api/v1/zones/home.lan",
        Some(r#"{"allow_transfer": ["127.0.0.1"]}"#),
    );
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(serial_of(&s, "home.lan"), first + 5);
    assert_eq!(soa_serial(&s, "home.lan."), first + 5);

    // A clean restart keeps it.
    drop(s);
    let s = start(&dir, &upstream, &[]);
    assert_eq!(serial_of(&s, "home.lan"), first + 5);
    assert_eq!(soa_serial(&s, "home.lan."), first + 5);
    assert_eq!(
        get_zone(&s, "home.lan")["allow_transfer"],
        json!(["127.0.0.1/32"])
    );

    // kill -9 right after a 201: the acknowledged write and its serial are on disk.
    s.create("tv.home.lan", "A", 300, "192.168.1.20");
    s.kill();
    let s = start(&dir, &upstream, &[]);
    assert_eq!(serial_of(&s, "home.lan"), first + 6);
    assert_eq!(soa_serial(&s, "home.lan."), first + 6);
    assert_eq!(
        shown(&s.ask("tv.home.lan.", RecordType::A).answers),
        ["tv.home.lan. A 300 192.168.1.20"]
    );
    // And its journal entry: an IXFR from the serial before gets exactly that change.
    let changes = ixfr(s.dns, "home.lan.", first + 5);
    assert_eq!(
        shown(&changes),
        [
            format!(
                "home.lan. SOA 300 ns.home.lan. hostmaster.home.lan. {} 300 60 604800 60",
                first + 6
            ),
            format!(
                "home.lan. SOA 300 ns.home.lan. hostmaster.home.lan. {} 300 60 604800 60",
                first + 5
            ),
            format!(
                "home.lan. SOA 300 ns.home.lan. hostmaster.home.lan. {} 300 60 604800 60",
                first + 6
            ),
            "tv.home.lan. A 300 192.168.1.20".to_string(),
            format!(
                "home.lan. SOA 300 ns.home.lan. hostmaster.home.lan. {} 300 60 604800 60",
                first + 6
            ),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// AXFR

#[test]
fn axfr_sends_the_records_the_apex_ns_and_the_soa_first_and_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = start(&dir, &upstream, &[]);
    create_zone(
        &s,
        json!({"name": "home.lan", "allow_transfer": ["127.0.0.0/8"]}),
    );
    s.create("nas.home.lan", "A", 300, "192.168.1.10");
    s.create("nas.home.lan", "AAAA", 600, "fd00::10");
    s.create("home.lan", "MX", 3600, "10 nas.home.lan");
    s.create("www.home.lan", "CNAME", 300, "nas.home.lan");
    s.create("*.wild.home.lan", "TXT", 300, "\"any\"");
    // Not in the zone: never in its transfer.
    s.create("www.example.org", "A", 300, "192.0.2.1");
    let serial = serial_of(&s, "home.lan");

    let request = transfer_query("home.lan.", None);
    let messages = tcp_exchange(s.dns, &request.to_vec().expect("encode"), axfr_complete);
    for (i, (_, m)) in messages.iter().enumerate() {
        assert_eq!(m.metadata.id, request.metadata.id);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative, "message {i} without AA");
        // RFC 5936 §2.2.1: the question in the first message only (may be left out later).
        if i == 0 {
            assert_eq!(m.queries.len(), 1);
            assert_eq!(m.queries[0].query_type, RecordType::AXFR);
        }
    }
    let records = all_records(&messages);
    let soa =
        format!("home.lan. SOA 300 ns.home.lan. hostmaster.home.lan. {serial} 300 60 604800 60");
    assert_eq!(show(&records[0]), soa);
    assert_eq!(show(records.last().expect("records")), soa);
    let middle: BTreeSet<String> = shown(&records[1..records.len() - 1]).into_iter().collect();
    let want: BTreeSet<String> = [
        "home.lan. NS 300 ns.home.lan.",
        "home.lan. MX 3600 10 nas.home.lan.",
        "nas.home.lan. A 300 192.168.1.10",
        "nas.home.lan. AAAA 600 fd00::10",
        "www.home.lan. CNAME 300 nas.home.lan.",
        "*.wild.home.lan. TXT 300 any", // hickory prints TXT unquoted
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(middle, want);
    assert_eq!(
        records.len(),
        want.len() + 2,
        "a record came twice: {records:?}"
    );
}

#[test]
fn a_large_zone_is_sent_in_several_messages_with_every_record() {
    const COUNT: usize = 2000;
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = Arc::new(start(&dir, &upstream, &[]));
    let created = create_zone(
        &s,
        json!({"name": "big.lan", "allow_transfer": ["127.0.0.1"]}),
    );
    let first = created["serial"].as_u64().expect("serial");
    fill(&s, "big.lan", COUNT);
    let zone = get_zone(&s, "big.lan");
    assert_eq!(zone["records"], COUNT);
    // Concurrent writes may share a commit, but each record is its own change.
    assert_eq!(zone["serial"].as_u64(), Some(first + COUNT as u64));

    let messages = axfr(s.dns, "big.lan.");
    assert!(
        messages.len() > 2,
        "{COUNT} records in {} messages",
        messages.len()
    );
    for (bytes, m) in &messages {
        assert!(bytes.len() <= 65_535);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
    }
    let records = all_records(&messages);
    assert_eq!(records.len(), COUNT + 3, "SOA, NS, {COUNT} A, SOA");
    let names: BTreeSet<String> = records
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .map(|r| r.name.to_ascii())
        .collect();
    let want: BTreeSet<String> = (0..COUNT).map(|i| format!("h{i}.big.lan.")).collect();
    assert_eq!(names, want);
    assert_eq!(
        records
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count(),
        2
    );

    // The journal keeps the last 1000 changes: from 1000 back, IXFR has every one of them
    // (each: old SOA, new SOA, the A record it added); from 1001 back, the whole zone.
    let now = u32::try_from(first).expect("u32") + COUNT as u32;
    let changes = ixfr(s.dns, "big.lan.", now - 1000);
    assert_eq!(changes.len(), 1 + 1000 * 3 + 1);
    assert_eq!(changes[1].record_type(), RecordType::SOA);
    assert_eq!(the_soa(&changes[1]).serial, now - 1000);
    let added: BTreeSet<String> = changes
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .map(|r| r.name.to_ascii())
        .collect();
    assert_eq!(added.len(), 1000, "each of the last 1000 records once");
    let full = ixfr(s.dns, "big.lan.", now - 1001);
    assert_eq!(full.len(), COUNT + 3, "AXFR-style: SOA, NS, {COUNT} A, SOA");
    assert_ne!(full[1].record_type(), RecordType::SOA, "not IXFR-style");
}

#[test]
fn transfers_are_refused_outside_allow_transfer_and_need_tcp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = start(&dir, &upstream, &[]);
    // Only another network may transfer: 127.0.0.1 is refused.
    create_zone(
        &s,
        json!({"name": "closed.lan", "allow_transfer": ["192.0.2.0/24"]}),
    );
    // The lists default to empty: nobody may transfer.
    create_zone(&s, json!({"name": "default.lan"}));
    create_zone(
        &s,
        json!({"name": "open.lan", "allow_transfer": ["127.0.0.1/32"]}),
    );
    s.create("nas.closed.lan", "A", 300, "192.168.1.10");
    s.create("nas.open.lan", "A", 300, "192.168.1.10");

    for zone in ["closed.lan.", "default.lan."] {
        for since in [None, Some(1)] {
            let request = transfer_query(zone, since).to_vec().expect("encode");
            let (rcode, reply) = transfer_rcode(s.dns, &request);
            assert_eq!(rcode, ResponseCode::Refused, "{zone} {since:?}: {reply:?}");
            assert!(reply.answers.is_empty(), "{zone}: {reply:?}");
        }
    }
    // A name that is not a zone (inside one, or nowhere): NOTAUTH.
    for zone in ["nas.open.lan.", "example.org."] {
        let request = transfer_query(zone, None).to_vec().expect("encode");
        let (rcode, reply) = transfer_rcode(s.dns, &request);
        assert_eq!(rcode, ResponseCode::NotAuth, "{zone}: {reply:?}");
    }

    // Over UDP: AXFR is NOTIMP; IXFR gets the SOA alone (RFC 1995 §2), which tells a
    // secondary whether to come back over TCP.
    let serial = serial_of(&s, "open.lan");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    udp.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    let mut over_udp = |msg: &Message| {
        udp.send_to(&msg.to_vec().expect("encode"), s.dns)
            .expect("send");
        let (len, _) = udp.recv_from(&mut buf).expect("a UDP reply");
        let reply = Message::from_vec(&buf[..len]).expect("parse");
        assert_eq!(reply.metadata.id, msg.metadata.id);
        reply
    };
    let reply = over_udp(&transfer_query("open.lan.", None));
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NotImp,
        "{reply:?}"
    );
    assert!(reply.answers.is_empty());
    let reply = over_udp(&transfer_query("open.lan.", Some(serial - 1)));
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NoError,
        "{reply:?}"
    );
    assert!(reply.metadata.authoritative);
    assert_eq!(reply.answers.len(), 1, "{reply:?}");
    assert_eq!(the_soa(&reply.answers[0]).serial, serial);
    let reply = over_udp(&transfer_query("closed.lan.", Some(1)));
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::Refused,
        "{reply:?}"
    );

    // The allowed zone transfers over TCP, whatever the letter case of the question.
    let records = all_records(&axfr(s.dns, "open.lan."));
    assert_eq!(records.len(), 4, "SOA NS A SOA: {records:?}");
    let records = all_records(&axfr(s.dns, "OPEN.Lan."));
    assert_eq!(records.len(), 4, "SOA NS A SOA: {records:?}");
}

// ---------------------------------------------------------------------------------------
// IXFR

#[test]
fn ixfr_sends_each_change_since_the_clients_serial() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = start(&dir, &upstream, &[]);
    create_zone(
        &s,
        json!({"name": "home.lan", "allow_transfer": ["127.0.0.1"]}),
    );
    let nas = s.create("nas.home.lan", "A", 300, "192.168.1.10");
    let base = serial_of(&s, "home.lan");
    // Three changes: an add, a replace (delete + add), a delete.
    s.create("tv.home.lan", "A", 300, "192.168.1.20");
    let id = nas["id"].as_str().expect("id");
    let put = s.call(
        "PUT",
        &format!("/api/v1/records/{id}"),
        Some(
            &json!({"name": "nas.home.lan", "type": "A", "ttl": 300, "data": "192.168.1.11"})
                .to_string(),
        ),
    );
    assert_eq!(put.status, 200, "{put:?}");
    let tv_id = s.call("GET", "/api/v1/records?name=tv.home.lan", None).json[0]["id"]
        .as_str()
        .expect("tv id")
        .to_string();
    assert_eq!(
        s.call("DELETE", &format!("/api/v1/records/{tv_id}"), None)
            .status,
        204
    );
    let now = serial_of(&s, "home.lan");
    assert_eq!(now, base + 3);
    let soa = |serial: u32| {
        format!("home.lan. SOA 300 ns.home.lan. hostmaster.home.lan. {serial} 300 60 604800 60")
    };

    let changes = shown(&ixfr(s.dns, "home.lan.", base));
    let want = [
        soa(now),
        soa(base),
        soa(base + 1),
        "tv.home.lan. A 300 192.168.1.20".into(),
        soa(base + 1),
        "nas.home.lan. A 300 192.168.1.10".into(),
        soa(base + 2),
        "nas.home.lan. A 300 192.168.1.11".into(),
        soa(base + 2),
        "tv.home.lan. A 300 192.168.1.20".into(),
        soa(base + 3),
        soa(now),
    ];
    assert_eq!(changes, want);
    // From the middle of the journal: only the later changes.
    let changes = shown(&ixfr(s.dns, "home.lan.", base + 2));
    assert_eq!(
        changes,
        want[0..1]
            .iter()
            .chain(&want[8..])
            .cloned()
            .collect::<Vec<_>>()
    );

    // Up to date (or ahead): the SOA alone.
    assert_eq!(shown(&ixfr(s.dns, "home.lan.", now)), [soa(now)]);
    assert_eq!(shown(&ixfr(s.dns, "home.lan.", now + 5)), [soa(now)]);

    // From before the journal (older than the zone itself): the whole zone, AXFR-style.
    let full = shown(&ixfr(s.dns, "home.lan.", base - 1000));
    assert_eq!(
        full.first(),
        Some(&soa(now)),
        "a full zone starts with the SOA: {full:?}"
    );
    assert_eq!(full.last(), Some(&soa(now)));
    let middle: BTreeSet<&str> = full[1..full.len() - 1].iter().map(String::as_str).collect();
    assert_eq!(
        middle,
        BTreeSet::from([
            "home.lan. NS 300 ns.home.lan.",
            "nas.home.lan. A 300 192.168.1.11"
        ])
    );
    assert_eq!(full.len(), 4);
}

// ---------------------------------------------------------------------------------------
// TSIG

/// A TSIG-signed transfer request with `key` (as `NAME:ALG:BASE64`), and its signer.
fn signed(zone: &str, since: Option<u32>, key: &str) -> (Vec<u8>, Signer) {
    let key: Key = key.parse().expect("test key");
    let mut signer = Signer::request(Arc::new(key));
    let mut bytes = transfer_query(zone, since).to_vec().expect("encode");
    signer.sign(&mut bytes, tsig::now());
    (bytes, signer)
}

#[test]
fn a_tsig_zone_transfers_only_signed_and_signs_every_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let s = Arc::new(start(&dir, &upstream, &["--tsig-key", KEY]));
    create_zone(
        &s,
        json!({"name": "home.lan", "allow_transfer": ["127.0.0.1"], "tsig": "xfr"}),
    );
    // Enough records for several messages: each one's signature chains on the last.
    fill(&s, "home.lan", 600);
    let serial = serial_of(&s, "home.lan");

    // Unsigned: REFUSED.
    for since in [None, Some(serial - 1)] {
        let request = transfer_query("home.lan.", since).to_vec().expect("encode");
        let (rcode, reply) = transfer_rcode(s.dns, &request);
        assert_eq!(rcode, ResponseCode::Refused, "{since:?}: {reply:?}");
    }

    // Signed with the key: the whole zone, and every message verifies in order.
    let (request, mut signer) = signed("home.lan.", None, KEY);
    let messages = tcp_exchange(s.dns, &request, axfr_complete);
    assert!(messages.len() > 1, "600 records fit one message?");
    for (i, (bytes, m)) in messages.iter().enumerate() {
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{i}: {m:?}"
        );
        assert_eq!(
            last_record(bytes).0,
            u16::from(RecordType::TSIG),
            "message {i} unsigned"
        );
        assert!(
            signer.verify_response(bytes, tsig::now()),
            "message {i} of {} does not verify",
            messages.len()
        );
    }
    assert_eq!(all_records(&messages).len(), 600 + 3);
    // A tampered message does not verify (the check above can fail).
    let (request, mut signer) = signed("home.lan.", None, KEY);
    let messages = tcp_exchange(s.dns, &request, axfr_complete);
    let mut tampered = messages[0].0.clone();
    tampered[20] ^= 1;
    assert!(!signer.verify_response(&tampered, tsig::now()));

    // A signed IXFR is signed back.
    let (request, mut signer) = signed("home.lan.", Some(serial - 1), KEY);
    let messages = tcp_exchange(s.dns, &request, ixfr_complete);
    assert_eq!(
        all_records(&messages).len(),
        5,
        "SOA, SOA old, SOA new, A, SOA"
    );
    for (bytes, _) in &messages {
        assert!(signer.verify_response(bytes, tsig::now()));
    }

    // The right name with another secret: NOTAUTH, TSIG error BADSIG, unsigned (no MAC).
    let (request, _) = signed("home.lan.", None, WRONG_KEY);
    let messages = tcp_exchange(s.dns, &request, |_| true);
    let (bytes, reply) = &messages[0];
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NotAuth,
        "{reply:?}"
    );
    assert!(reply.answers.is_empty());
    let (rtype, rdata) = last_record(bytes);
    assert_eq!(rtype, u16::from(RecordType::TSIG));
    assert_eq!(tsig_error(&rdata), tsig::BADSIG);
    // A key the server does not know: BADKEY.
    let (request, _) = signed("home.lan.", None, "other:hmac-sha256:c2VjcmV0c2VjcmV0");
    let messages = tcp_exchange(s.dns, &request, |_| true);
    let (bytes, reply) = &messages[0];
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NotAuth,
        "{reply:?}"
    );
    assert_eq!(tsig_error(&last_record(bytes).1), tsig::BADKEY);

    // A signed ordinary query gets a signed answer.
    let mut query = Message::query();
    query.metadata.id = rand::random();
    query.add_query(Query::query(name("h1.home.lan."), RecordType::A));
    let mut bytes = query.to_vec().expect("encode");
    let mut signer = Signer::request(Arc::new(KEY.parse::<Key>().expect("key")));
    signer.sign(&mut bytes, tsig::now());
    let messages = tcp_exchange(s.dns, &bytes, |_| true);
    let (bytes, reply) = &messages[0];
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(shown(&reply.answers), ["h1.home.lan. A 300 10.0.0.1"]);
    assert!(signer.verify_response(bytes, tsig::now()));
}

// ---------------------------------------------------------------------------------------
// NOTIFY

/// The next packet on `socket` within `wait`, which must be a NOTIFY for `zone`: (when it
/// came, from where, the message).
fn next_notify(
    socket: &UdpSocket,
    zone: &str,
    wait: Duration,
) -> Option<(Instant, SocketAddr, Message)> {
    let mut buf = [0u8; 4096];
    socket
        .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
        .expect("timeout");
    let (len, from) = socket.recv_from(&mut buf).ok()?;
    let at = Instant::now();
    let msg = Message::from_vec(&buf[..len]).expect("NOTIFY parses");
    assert_eq!(msg.metadata.op_code, OpCode::Notify, "{msg:?}");
    assert_eq!(msg.metadata.message_type, MessageType::Query, "{msg:?}");
    assert!(msg.metadata.authoritative, "NOTIFY without AA: {msg:?}");
    assert_eq!(msg.queries.len(), 1, "{msg:?}");
    let q = &msg.queries[0];
    assert_eq!(q.query_type, RecordType::SOA);
    assert_eq!(q.query_class, DNSClass::IN);
    assert_eq!(q.name, name(zone));
    Some((at, from, msg))
}

/// Acknowledges `notify` as a secondary does (RFC 1996 §4.7).
fn acknowledge(socket: &UdpSocket, to: SocketAddr, notify: &Message) {
    let mut reply = Message::new(notify.metadata.id, MessageType::Response, OpCode::Notify);
    reply.metadata.authoritative = true;
    reply.add_query(notify.queries[0].clone());
    socket
        .send_to(&reply.to_vec().expect("encode"), to)
        .expect("send the acknowledgement");
}

#[test]
fn notify_follows_each_change_and_is_retried_until_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let secondary = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let target = secondary.local_addr().expect("addr");
    let s = start(&dir, &upstream, &[]);
    create_zone(
        &s,
        json!({"name": "home.lan", "notify": [target.to_string()]}),
    );
    // Creating the zone announces it; acknowledged at once, it is not sent again.
    let (_, from, first) =
        next_notify(&secondary, "home.lan.", Duration::from_secs(3)).expect("NOTIFY on create");
    acknowledge(&secondary, from, &first);
    assert!(
        next_notify(&secondary, "home.lan.", Duration::from_millis(1500)).is_none(),
        "an acknowledged NOTIFY was sent again"
    );

    // A record write: NOTIFY again; unanswered, it comes back after 0.5 s, then 1 s.
    let written = Instant::now();
    s.create("nas.home.lan", "A", 300, "192.168.1.10");
    let (t1, from, n1) =
        next_notify(&secondary, "home.lan.", Duration::from_secs(3)).expect("NOTIFY after a write");
    assert!(
        t1 - written < Duration::from_secs(1),
        "NOTIFY {:?} after the write",
        t1 - written
    );
    let (t2, _, n2) =
        next_notify(&secondary, "home.lan.", Duration::from_secs(3)).expect("a first retry");
    let (t3, _, n3) =
        next_notify(&secondary, "home.lan.", Duration::from_secs(4)).expect("a second retry");
    let (gap1, gap2) = (t2 - t1, t3 - t2);
    assert!(
        gap1 >= Duration::from_millis(400) && gap1 < Duration::from_millis(1500),
        "first retry after {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(800) && gap2 < Duration::from_millis(2500),
        "second retry after {gap2:?} (the wait doubles)"
    );
    // Each try is a new query (a late answer to an old one is not taken for this one).
    assert_ne!(n1.metadata.id, n2.metadata.id);
    assert_ne!(n2.metadata.id, n3.metadata.id);
    // An answer with the wrong ID does not count: the retries go on.
    let mut wrong = n3.clone();
    wrong.metadata.id = n3.metadata.id.wrapping_add(1);
    acknowledge(&secondary, from, &wrong);
    let (_, _, n4) =
        next_notify(&secondary, "home.lan.", Duration::from_secs(6)).expect("a third retry");
    // Acknowledged: no more for this serial.
    acknowledge(&secondary, from, &n4);
    assert!(
        next_notify(&secondary, "home.lan.", Duration::from_secs(5)).is_none(),
        "NOTIFY went on after it was acknowledged"
    );
}

#[test]
fn notify_stops_for_a_target_taken_off_the_list_and_for_a_deleted_zone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = FakeUpstream::start();
    let secondary = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let target = secondary.local_addr().expect("addr");
    let s = start(&dir, &upstream, &[]);
    create_zone(
        &s,
        json!({"name": "home.lan", "notify": [target.to_string()]}),
    );
    // Unanswered: the first NOTIFY and a retry come...
    next_notify(&secondary, "home.lan.", Duration::from_secs(3)).expect("NOTIFY on create");
    next_notify(&secondary, "home.lan.", Duration::from_secs(3)).expect("a retry");
    // ...until the target is taken off the list (the next retry was due within 2 s).
    let put = s.call("PUT", "/api/v1/zones/home.lan", Some(r#"{"notify": []}"#));
    assert_eq!(put.status, 200, "{}", put.json);
    assert!(
        next_notify(&secondary, "home.lan.", Duration::from_secs(4)).is_none(),
        "NOTIFY went on to a target no longer listed"
    );
    // Listed again: NOTIFY again; then the zone is deleted and the retries stop.
    let relist = json!({"notify": [target.to_string()]}).to_string();
    let put = s.call("PUT", "/api/v1/zones/home.lan", Some(&relist));
    assert_eq!(put.status, 200, "{}", put.json);
    next_notify(&secondary, "home.lan.", Duration::from_secs(3)).expect("NOTIFY when relisted");
    let deleted = s.call("DELETE", "/api/v1/zones/home.lan", None);
    assert_eq!(deleted.status, 204, "{}", deleted.json);
    assert!(
        next_notify(&secondary, "home.lan.", Duration::from_secs(4)).is_none(),
        "NOTIFY went on for a deleted zone"
    );
}
