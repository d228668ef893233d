//! Malformed and unusual packets (behaviour 1) and what a reply keeps from its query
//! (behaviour 2).

mod common;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// RCODE values as they appear in the header.
const NOERROR: u8 = 0;
const FORMERR: u8 = 1;
const NOTIMP: u8 = 4;
const NOTAUTH: u8 = 9;

/// Header flag words: opcode in bits 11..14, QR in bit 15, RD in bit 8.
const RD: u16 = 0x0100;
const QR: u16 = 0x8000;
fn opcode(op: u16) -> u16 {
    op << 11
}

struct Case {
    what: &'static str,
    packet: Vec<u8>,
    /// None: the server must not reply. Some(rcode): it replies with that RCODE.
    expect: Option<u8>,
}

fn with_body(header: Vec<u8>, body: &[u8]) -> Vec<u8> {
    let mut v = header;
    v.extend_from_slice(body);
    v
}

fn cases() -> Vec<Case> {
    let q = raw_question("t1-pkt.example.com.", RecordType::A);
    let one_q = [1, 0, 0, 0];
    vec![
        Case {
            what: "empty datagram",
            packet: vec![],
            expect: None,
        },
        Case {
            what: "11 bytes (shorter than a header)",
            packet: raw_query_header(0x1111, RD, one_q)[..11].to_vec(),
            expect: None,
        },
        Case {
            what: "QR=1 (a response sent to the server)",
            packet: with_body(raw_query_header(0x1112, QR | RD, one_q), &q),
            expect: None,
        },
        Case {
            what: "QR=1 wins over a bad opcode",
            packet: with_body(raw_query_header(0x1113, QR | opcode(5), one_q), &q),
            expect: None,
        },
        Case {
            what: "QR=1 wins over a broken body",
            packet: with_body(raw_query_header(0x1114, QR, one_q), &[0x3f, b'a']),
            expect: None,
        },
        Case {
            what: "opcode STATUS (2)",
            packet: with_body(raw_query_header(0x2222, opcode(2), one_q), &q),
            expect: Some(NOTIMP),
        },
        Case {
            // NOTIFY is read (secondary zones take it), but this name is no zone of ours.
            what: "opcode NOTIFY (4) for a name that is not a secondary zone here",
            packet: with_body(raw_query_header(0x2223, opcode(4), one_q), &q),
            expect: Some(NOTAUTH),
        },
        Case {
            what: "opcode UPDATE (5)",
            packet: with_body(raw_query_header(0x2224, opcode(5), one_q), &q),
            expect: Some(NOTIMP),
        },
        Case {
            what: "opcode NOTIFY with QDCOUNT 0",
            packet: raw_query_header(0x2225, opcode(4), [0, 0, 0, 0]),
            expect: Some(FORMERR),
        },
        Case {
            what: "opcode STATUS wins over a broken body",
            packet: with_body(raw_query_header(0x2226, opcode(2), one_q), &[0x3f, b'a']),
            expect: Some(NOTIMP),
        },
        Case {
            what: "QDCOUNT 0",
            packet: raw_query_header(0x3333, RD, [0, 0, 0, 0]),
            expect: Some(FORMERR),
        },
        Case {
            what: "QDCOUNT 2 (two well-formed questions)",
            packet: with_body(
                raw_query_header(0x3334, RD, [2, 0, 0, 0]),
                &[
                    q.clone(),
                    raw_question("t1-pkt2.example.com.", RecordType::A),
                ]
                .concat(),
            ),
            expect: Some(FORMERR),
        },
        Case {
            what: "QDCOUNT 1 but no question bytes",
            packet: raw_query_header(0x4444, RD, one_q),
            expect: Some(FORMERR),
        },
        Case {
            what: "question cut inside the name",
            packet: with_body(raw_query_header(0x4445, RD, one_q), &q[..6]),
            expect: Some(FORMERR),
        },
        Case {
            what: "question without type and class",
            packet: with_body(raw_query_header(0x4446, RD, one_q), &q[..q.len() - 4]),
            expect: Some(FORMERR),
        },
        Case {
            what: "compression pointer pointing at itself",
            packet: with_body(raw_query_header(0x4447, RD, one_q), &[0xc0, 12, 0, 1, 0, 1]),
            expect: Some(FORMERR),
        },
        Case {
            what: "ANCOUNT 1 with no answer bytes",
            packet: with_body(raw_query_header(0x4448, RD, [1, 1, 0, 0]), &q),
            expect: Some(FORMERR),
        },
        Case {
            what: "garbage after the header",
            packet: with_body(raw_query_header(0x4449, RD, one_q), &[0xff; 40]),
            expect: Some(FORMERR),
        },
    ]
}

#[tokio::test]
async fn malformed_packets_get_the_right_reply_or_none() {
    let server = Server::start(&[]);
    let mut failures = Vec::new();
    for case in cases() {
        let reply = udp_query(server.dns_addr(), &case.packet, SILENCE_TIMEOUT).await;
        match (case.expect, reply) {
            (None, None) => {}
            (None, Some(r)) => {
                failures.push(format!("{}: expected no reply, got {r:02x?}", case.what))
            }
            (Some(rc), None) => {
                failures.push(format!("{}: expected RCODE {rc}, got no reply", case.what))
            }
            (Some(rc), Some(r)) => {
                if r.len() < 12 {
                    failures.push(format!(
                        "{}: reply shorter than a header: {r:02x?}",
                        case.what
                    ));
                    continue;
                }
                let h = raw_header(&r);
                let sent_id = u16::from_be_bytes([case.packet[0], case.packet[1]]);
                if h.rcode != rc || !h.qr || h.id != sent_id {
                    failures.push(format!(
                        "{}: expected QR=1 id={sent_id:#06x} RCODE {rc}, got {h:?}",
                        case.what
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "packet checks failed:\n{}",
        failures.join("\n")
    );

    // The garbage did not take the server down: a normal query still gets an answer.
    let reply = ask_udp(server.dns_addr(), &query("localhost.", RecordType::A)).await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
}

/// Sends `q` over UDP or TCP and checks what the reply must keep from it.
async fn assert_reply_mirrors_query(server: &Server, q: &hickory_proto::op::Message, tcp: bool) {
    let sent = q.wire();
    let bytes = if tcp {
        tcp_query(server.dns_addr(), &sent, ANSWER_TIMEOUT).await
    } else {
        udp_query(server.dns_addr(), &sent, ANSWER_TIMEOUT).await
    }
    .unwrap_or_else(|| panic!("no reply (tcp={tcp})"));
    let h = raw_header(&bytes);
    let sent_h = raw_header(&sent);
    assert_eq!(h.id, sent_h.id, "ID not kept (tcp={tcp})");
    assert_eq!(h.rd, sent_h.rd, "RD not kept (tcp={tcp})");
    assert!(h.qr, "QR not set (tcp={tcp})");
    assert!(h.ra, "RA not set (tcp={tcp})");
    assert!(!h.aa, "AA set on a forwarded answer (tcp={tcp})");
    assert_eq!(h.rcode, NOERROR, "(tcp={tcp}) {h:?}");
    assert_eq!(h.qdcount, 1);
    assert_eq!(
        question_bytes(&bytes),
        question_bytes(&sent),
        "question (with its letter case) not kept byte for byte (tcp={tcp})"
    );
    let reply = parse(&bytes);
    assert_eq!(a_records(&reply), vec![ANSWER_V4]);
}

#[tokio::test]
async fn reply_keeps_id_rd_and_question_bytes() {
    let up = FakeUpstream::start(Behaviour::Answer);
    let server = Server::start(&["--upstream", &up.arg()]);

    assert_reply_mirrors_query(
        &server,
        &query("WwW.t2-CaSe.ExAmPlE.CoM.", RecordType::A),
        false,
    )
    .await;
    assert_reply_mirrors_query(
        &server,
        &query("WwW.t2-CaSe-TcP.ExAmPlE.CoM.", RecordType::A),
        true,
    )
    .await;

    // RD=0 is mirrored too.
    let mut no_rd = query("WwW.t2-NoRd.ExAmPlE.CoM.", RecordType::A);
    no_rd.metadata.recursion_desired = false;
    assert_reply_mirrors_query(&server, &no_rd, false).await;
}
