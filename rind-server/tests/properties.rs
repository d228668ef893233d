//! Properties of the fuzzed entry points, checked with proptest on every `cargo test` (the
//! fuzz targets in `fuzz/` explore the same entry points for longer; see the README's
//! "Fuzzing" section):
//!
//! - the handler, bytes in → reply out, for well-formed queries (random name, letter case,
//!   type, ID, RD, EDNS or not, any advertised size, UDP or TCP) over local records, cached
//!   answers and a fake upstream: a reply always comes, with the query's ID and RD, QR=1, the
//!   question's exact bytes, and over UDP at most the client's limit;
//! - the handler and the TCP framing on arbitrary bytes: no panic, and any reply well formed;
//! - the REST record parser: for every record type, valid data parses, and its printed form
//!   (as the API shows and the store keeps it) parses to the same record.

mod common;
mod inprocess;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use common::{question_bytes, set_raw_edns_payload, Behaviour, FakeUpstream};
use inprocess::{ask, InProcess};
use rind_server::api::records::{record_from_json, IdRule};
use rind_server::listener::tcp;
use rind_server::records::Draft;
use rind_server::request::{Transport, MAX_UDP_PAYLOAD, MIN_UDP_PAYLOAD};

const CASES: u32 = 256;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The in-process handler over a fake upstream that answers everything at once.
fn rig(rt: &Runtime) -> (InProcess, FakeUpstream) {
    let upstream = FakeUpstream::start(Behaviour::Answer);
    let rig = rt.block_on(inprocess::build(upstream.addr()));
    (rig, upstream)
}

// ---- queries ----

/// Names that reach every answer source, and random ones (forwarded).
fn qname() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "www.home.lan",
        "alias.home.lan",
        "out.home.lan",
        "far.home.lan",
        "x.wild.home.lan",
        "home.lan",
        "_sip._tcp.home.lan",
        "10.1.168.192.in-addr.arpa",
        "txt.home.lan",
        "big.home.lan",
        "cached.example",
        "big.example",
        "nx.example",
        "localhost",
        "1.0.168.192.in-addr.arpa",
        "test",
    ])
    .prop_map(String::from);
    let random = prop::collection::vec("[a-z0-9_][a-z0-9_-]{0,19}", 1..5).prop_map(|l| l.join("."));
    (prop_oneof![known, random], any::<u64>()).prop_map(|(name, case)| {
        // DNS 0x20: random letter case, which the reply must echo as sent.
        name.chars()
            .enumerate()
            .map(|(i, c)| {
                if case >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    })
}

fn qtype() -> impl Strategy<Value = RecordType> {
    prop_oneof![
        4 => prop::sample::select(vec![
            RecordType::A,
            RecordType::AAAA,
            RecordType::CNAME,
            RecordType::MX,
            RecordType::TXT,
            RecordType::SRV,
            RecordType::PTR,
            RecordType::NS,
            RecordType::CAA,
            RecordType::SOA,
            RecordType::ANY,
        ]),
        1 => any::<u16>().prop_map(RecordType::from),
    ]
}

#[derive(Debug, Clone)]
struct WellFormed {
    bytes: Vec<u8>,
    id: u16,
    rd: bool,
    /// The advertised UDP payload size, when the query has an OPT record.
    edns: Option<u16>,
    transport: Transport,
}

fn well_formed() -> impl Strategy<Value = WellFormed> {
    (
        qname(),
        qtype(),
        any::<u16>(),
        any::<bool>(),
        prop::option::of(any::<u16>()),
        any::<bool>(),
    )
        .prop_map(|(qname, qtype, id, rd, edns, tcp)| {
            let mut msg = Message::query();
            msg.metadata.id = id;
            msg.metadata.recursion_desired = rd;
            let name = Name::from_ascii(format!("{qname}.")).expect("valid name");
            msg.add_query(Query::query(name, qtype));
            if edns.is_some() {
                msg.set_edns(Edns::new());
            }
            let mut bytes = msg.to_vec().expect("encodes");
            if let Some(payload) = edns {
                // Any size at all, below 512 included (hickory would raise it when encoding).
                set_raw_edns_payload(&mut bytes, payload);
            }
            WellFormed {
                bytes,
                id,
                rd,
                edns,
                transport: if tcp { Transport::Tcp } else { Transport::Udp },
            }
        })
}

/// The most a UDP client takes: 512 without EDNS, else its size clamped to 512..=1232.
fn udp_limit(edns: Option<u16>) -> usize {
    usize::from(edns.map_or(MIN_UDP_PAYLOAD, |p| {
        p.clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
    }))
}

#[test]
fn replies_to_well_formed_queries() {
    let rt = runtime();
    let (rig, _upstream) = rig(&rt);
    proptest!(ProptestConfig::with_cases(CASES), |(query in well_formed())| {
        let reply = rt
            .block_on(ask(&rig.handler, &query.bytes, query.transport))
            .ok_or_else(|| TestCaseError::fail("no reply to a well-formed query"))?;
        let header = common::raw_header(&reply);
        prop_assert_eq!(header.id, query.id, "reply ID");
        prop_assert!(header.qr, "QR=0 in a reply");
        prop_assert_eq!(header.rd, query.rd, "RD not echoed");
        prop_assert_eq!(header.qdcount, 1);
        prop_assert_eq!(question_bytes(&reply), question_bytes(&query.bytes), "question bytes");
        if query.transport == Transport::Udp {
            prop_assert!(
                reply.len() <= udp_limit(query.edns),
                "{} bytes over UDP to a client that takes {}", reply.len(), udp_limit(query.edns)
            );
        }
        let msg = Message::from_vec(&reply)
            .map_err(|e| TestCaseError::fail(format!("reply does not parse: {e}")))?;
        prop_assert_eq!(msg.edns.is_some(), query.edns.is_some(), "OPT iff the query had one");
    });
}

// ---- arbitrary bytes ----

/// Arbitrary bytes, and well-formed queries with a few bytes overwritten (which get further
/// into the checks than noise does).
fn packet() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        (
            well_formed(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
        )
            .prop_map(|(query, edits)| {
                let mut bytes = query.bytes;
                for (at, byte) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                bytes
            }),
    ]
}

/// What a client over UDP takes for `query`, as far as hickory can read it.
fn udp_limit_of(query: &[u8]) -> usize {
    let edns = Message::from_vec(query)
        .ok()
        .and_then(|m| m.edns.map(|e| e.max_payload()));
    udp_limit(edns)
}

#[test]
fn arbitrary_packets_never_panic() {
    let rt = runtime();
    let (rig, _upstream) = rig(&rt);
    proptest!(ProptestConfig::with_cases(CASES), |(bytes in packet(), tcp in any::<bool>())| {
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        if let Some(reply) = rt.block_on(ask(&rig.handler, &bytes, transport)) {
            let msg = Message::from_vec(&reply)
                .map_err(|e| TestCaseError::fail(format!("reply does not parse: {e}")))?;
            prop_assert!(msg.metadata.message_type == hickory_proto::op::MessageType::Response);
            prop_assert_eq!(reply.get(..2), bytes.get(..2), "reply ID");
            if transport == Transport::Udp {
                prop_assert!(reply.len() <= udp_limit_of(&bytes));
            }
        }
    });
}

/// A client's byte stream: frames of packets, each with its true length prefix or, now and
/// then, a wrong one.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((packet(), prop::option::weighted(0.1, any::<u16>())), 0..6).prop_map(
        |frames| {
            let mut out = Vec::new();
            for (packet, wrong_len) in frames {
                let len = wrong_len.unwrap_or(u16::try_from(packet.len()).expect("short"));
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&packet);
            }
            out
        },
    )
}

/// Complete frames of 12 bytes or more, up to the first that is not.
fn frames(mut stream: &[u8]) -> usize {
    let mut n = 0;
    while let Some((len, rest)) = stream.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len));
        if len < 12 || rest.len() < len {
            break;
        }
        stream = &rest[len..];
        n += 1;
    }
    n
}

#[test]
fn tcp_streams_get_framed_replies() {
    let rt = runtime();
    let (rig, _upstream) = rig(&rt);
    let peer = SocketAddr::new(inprocess::CLIENT, 53_000);
    proptest!(ProptestConfig::with_cases(CASES / 2), |(input in stream())| {
        let handler = std::sync::Arc::clone(&rig.handler);
        let received = rt.block_on(async {
            let (client, server) = tokio::io::duplex(4096);
            let (reader, writer) = tokio::io::split(server);
            let serving = tokio::spawn(tcp::serve(
                reader,
                writer,
                peer,
                Duration::from_secs(1),
                handler,
                CancellationToken::new(),
            ));
            let (mut from_server, mut to_server) = tokio::io::split(client);
            let send = async {
                let _ = to_server.write_all(&input).await;
                let _ = to_server.shutdown().await;
            };
            let mut received = Vec::new();
            let exchange = async {
                let ((), read) = tokio::join!(send, from_server.read_to_end(&mut received));
                read
            };
            tokio::time::timeout(Duration::from_secs(10), exchange)
                .await
                .expect("the connection ends")
                .expect("reading replies");
            tokio::time::timeout(Duration::from_secs(10), serving)
                .await
                .expect("serve returns")
                .expect("serve does not panic");
            received
        });
        let mut rest = received.as_slice();
        let mut replies = 0;
        while let Some((len, tail)) = rest.split_first_chunk::<2>() {
            let len = usize::from(u16::from_be_bytes(*len));
            prop_assert!(tail.len() >= len, "a reply frame cut short");
            let msg = Message::from_vec(&tail[..len])
                .map_err(|e| TestCaseError::fail(format!("reply does not parse: {e}")))?;
            prop_assert!(msg.metadata.message_type == hickory_proto::op::MessageType::Response);
            rest = &tail[len..];
            replies += 1;
        }
        prop_assert!(rest.is_empty(), "a reply cut inside its length prefix");
        prop_assert!(replies <= frames(&input), "{} replies to {} queries", replies, frames(&input));
    });
}

#[test]
fn arbitrary_json_bodies_never_panic() {
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        "\\{\"(name|type|ttl|data|id|Host|TTL)\": (\"[ -~]{0,30}\"|-?[0-9]{1,12}|null|\\[\\]), \"(name|type|data)\": \"[ -~]{0,30}\"\\}"
            .prop_map(String::into_bytes),
    ];
    proptest!(ProptestConfig::with_cases(CASES), |(bytes in body)| {
        let _ = record_from_json(&bytes, IdRule::New);
        let _ = record_from_json(&bytes, IdRule::Replaces("01hzy8k5d1v7r3c2x9m4n6q8tb"));
    });
}

// ---- records: parse → print → parse, for every type ----

/// A valid domain name in any letter case, with or without the trailing dot.
fn domain() -> impl Strategy<Value = String> {
    (
        prop::collection::vec("[a-zA-Z0-9_][a-zA-Z0-9_-]{0,29}", 1..5),
        any::<bool>(),
    )
        .prop_map(|(labels, dot)| {
            let name = labels.join(".");
            if dot {
                format!("{name}.")
            } else {
                name
            }
        })
}

fn owner() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => domain(),
        1 => domain().prop_map(|d| format!("*.{d}")),
    ]
}

/// A `<character-string>` in quotes, every byte that needs it as `\DDD` or `\"`.
fn quoted(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b' '..=b'~' => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

fn txt_data() -> impl Strategy<Value = String> {
    prop_oneof![
        // Unquoted: one string, cut into 255-byte pieces when longer.
        "[a-zA-Z0-9=;:._-][ -~]{0,600}",
        // Quoted strings with any bytes.
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..=255), 1..4).prop_map(
            |strings| strings
                .iter()
                .map(|s| quoted(s))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    ]
}

fn caa_data() -> impl Strategy<Value = String> {
    let case = |tag: &'static str| {
        any::<u16>().prop_map(move |bits| {
            tag.chars()
                .enumerate()
                .map(|(i, c)| {
                    if bits >> i & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect::<String>()
        })
    };
    let issuer = (
        prop::option::of("[a-z0-9]{1,20}(\\.[a-z0-9]{1,20}){0,2}"),
        // RFC 8659 §4.2: "tag=value" parameters, separated by ";".
        prop::collection::vec(("[a-zA-Z0-9]{1,8}", "[!-:<-~]{1,12}"), 0..3),
    )
        .prop_map(|(domain, params)| {
            let params: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut value = domain.unwrap_or_default();
            if !params.is_empty() || value.is_empty() {
                value.push_str("; ");
                value.push_str(&params.join("; "));
            }
            quoted(value.trim_end().as_bytes())
        });
    let iodef = prop_oneof![
        "[a-z]{1,10}@[a-z]{1,10}\\.[a-z]{2,5}".prop_map(|m| format!("mailto:{m}")),
        "[a-z]{1,10}\\.[a-z]{2,5}/[a-z0-9]{0,10}".prop_map(|u| format!("https://{u}")),
    ]
    .prop_map(|url| quoted(url.as_bytes()));
    let other_tag = "[a-zA-Z0-9]{1,15}".prop_filter("a tag with rules of its own", |t| {
        !["issue", "issuewild", "iodef"].contains(&t.to_ascii_lowercase().as_str())
    });
    let other = (
        other_tag,
        prop::collection::vec(any::<u8>(), 0..100).prop_map(|v| quoted(&v)),
    );
    (
        any::<u8>(),
        prop_oneof![
            (prop_oneof![case("issue"), case("issuewild")], issuer),
            (case("iodef"), iodef),
            other,
        ],
    )
        .prop_map(|(flags, (tag, value))| format!("{flags} {tag} {value}"))
}

/// A record type with valid data for it, in the API's presentation form.
fn typed_data() -> impl Strategy<Value = (RecordType, String)> {
    let target = || prop_oneof![3 => domain(), 1 => Just(".".to_string())];
    prop_oneof![
        any::<Ipv4Addr>().prop_map(|a| (RecordType::A, a.to_string())),
        any::<Ipv6Addr>().prop_map(|a| (RecordType::AAAA, a.to_string())),
        domain().prop_map(|d| (RecordType::CNAME, d)),
        (any::<u16>(), target()).prop_map(|(p, t)| (RecordType::MX, format!("{p} {t}"))),
        txt_data().prop_map(|d| (RecordType::TXT, d)),
        (any::<u16>(), any::<u16>(), any::<u16>(), target())
            .prop_map(|(p, w, port, t)| (RecordType::SRV, format!("{p} {w} {port} {t}"))),
        domain().prop_map(|d| (RecordType::PTR, d)),
        domain().prop_map(|d| (RecordType::NS, d)),
        caa_data().prop_map(|d| (RecordType::CAA, d)),
    ]
}

#[test]
fn every_record_type_round_trips() {
    let seen = std::cell::RefCell::new(std::collections::HashSet::new());
    proptest!(ProptestConfig::with_cases(CASES * 4), |(
        owner in owner(),
        (rtype, data) in typed_data(),
        ttl in 0..=rind_server::records::MAX_TTL,
        lower in any::<bool>(),
    )| {
        seen.borrow_mut().insert(rtype);
        let type_text = if lower { rtype.to_string().to_lowercase() } else { rtype.to_string() };
        let draft = Draft::parse(&owner, &type_text, ttl, &data)
            .map_err(|e| TestCaseError::fail(format!("{owner} {rtype} {data:?} refused: {e}")))?;
        prop_assert_eq!(draft.rtype(), rtype);
        // The printed form (what the API shows and the store keeps) parses to the same record.
        let name = draft.name().to_ascii();
        let again = Draft::parse(&name, &rtype.to_string(), draft.ttl().into(), &draft.text())
            .map_err(|e| TestCaseError::fail(format!("printed {:?} refused: {e}", draft.text())))?;
        prop_assert_eq!(&again, &draft);
        prop_assert_eq!(again.text(), draft.text());
        // And so does the JSON the API shows, sent back.
        let shown = serde_json::json!({
            "name": name, "type": rtype.to_string(), "ttl": draft.ttl(), "data": draft.text(),
        });
        let from_json = record_from_json(shown.to_string().as_bytes(), IdRule::New)
            .map_err(|e| TestCaseError::fail(format!("{shown} refused: {e}")))?;
        prop_assert_eq!(&from_json, &draft);
    });
    let seen = seen.into_inner();
    assert_eq!(
        seen.len(),
        rind_server::records::rdata::SUPPORTED.len(),
        "every record type generated: {seen:?}"
    );
}
