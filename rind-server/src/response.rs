//! The response writer: turns an [`Answer`] for a [`Request`] into reply bytes.
//!
//! It owns the RFC hygiene every reply shares, whatever produced the answer:
//! - ID, opcode, RD and CD copied from the query, QR and RA set (RFC 1035 §4.1.1);
//! - the question echoed exactly as received, letter case included (DNS 0x20);
//! - an OPT record iff the query had one, advertising [`MAX_UDP_PAYLOAD`] (RFC 6891 §7);
//! - a reply over the client's size limit is replaced by the question alone with TC=1
//!   (RFC 1035 §4.2.1, RFC 7766 §5), so the client asks again over TCP.

use std::iter;

use hickory_proto::op::{emit_message_parts, Edns, MessageType, Metadata, Query, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;

use crate::request::{Request, MAX_UDP_PAYLOAD};

/// What the resolver found for one question, before it is written for a particular client.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// Response code of the reply.
    pub rcode: ResponseCode,
    /// AA: set for local records and special-use names, never for forwarded answers.
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (the SOA of a negative answer).
    pub authorities: Vec<Record>,
    /// Additional section, without OPT.
    pub additionals: Vec<Record>,
}

impl Answer {
    /// An answer that carries only a response code, such as SERVFAIL.
    pub fn rcode(rcode: ResponseCode) -> Self {
        Answer {
            rcode,
            ..Answer::default()
        }
    }
}

/// Writes the reply to `request`, truncated to its size limit.
pub fn write(request: &Request, answer: &Answer) -> Vec<u8> {
    let mut metadata = reply_metadata(&request.metadata, answer.rcode);
    metadata.authoritative = answer.authoritative;
    let edns = request.edns.then(our_edns);
    let full = encode(
        &metadata,
        &request.query,
        &answer.answers,
        &answer.authorities,
        &answer.additionals,
        edns.as_ref(),
    );
    if full.len() <= usize::from(request.max_size) {
        return full;
    }
    metadata.truncation = true;
    encode(&metadata, &request.query, &[], &[], &[], edns.as_ref())
}

/// An empty reply with TC=1: "ask again over TCP".
pub fn truncated(request: &Request) -> Vec<u8> {
    let mut metadata = reply_metadata(&request.metadata, ResponseCode::NoError);
    metadata.truncation = true;
    let edns = request.edns.then(our_edns);
    encode(&metadata, &request.query, &[], &[], &[], edns.as_ref())
}

/// Writes an error reply from what could be read of a rejected query.
pub fn error(
    request: &Metadata,
    question: Option<&Query>,
    edns: bool,
    rcode: ResponseCode,
) -> Vec<u8> {
    let metadata = reply_metadata(request, rcode);
    let edns = edns.then(our_edns);
    let mut buf = Vec::with_capacity(64);
    let mut encoder = BinEncoder::new(&mut buf);
    let emitted = emit_message_parts(
        &metadata,
        &mut question.into_iter(),
        &mut iter::empty::<&Record>(),
        &mut iter::empty::<&Record>(),
        &mut iter::empty::<&Record>(),
        edns.as_ref(),
        None,
        &mut encoder,
    );
    match emitted {
        Ok(_) => buf,
        // A question that fit in the query always fits in its error reply; should encoding
        // still fail, a bare header with the rcode is the most we can honestly say.
        Err(_) => header_only(&metadata),
    }
}

fn reply_metadata(request: &Metadata, rcode: ResponseCode) -> Metadata {
    let mut metadata = Metadata::response_from_request(request);
    metadata.message_type = MessageType::Response;
    metadata.recursion_available = true;
    metadata.response_code = rcode;
    metadata
}

fn our_edns() -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD);
    edns.set_version(0);
    edns
}

fn encode(
    metadata: &Metadata,
    query: &Query,
    answers: &[Record],
    authorities: &[Record],
    additionals: &[Record],
    edns: Option<&Edns>,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut buf);
    let emitted = emit_message_parts(
        metadata,
        &mut iter::once(query),
        &mut answers.iter(),
        &mut authorities.iter(),
        &mut additionals.iter(),
        edns,
        None,
        &mut encoder,
    );
    match emitted {
        Ok(_) => buf,
        Err(_) => {
            // Records that cannot be encoded (over 65535 bytes in all, say) become SERVFAIL
            // with the question, never a half-written packet.
            let mut failed = *metadata;
            failed.response_code = ResponseCode::ServFail;
            error(&failed, Some(query), edns.is_some(), ResponseCode::ServFail)
        }
    }
}

/// Twelve bytes: the ID, flags and rcode, all counts zero.
fn header_only(metadata: &Metadata) -> Vec<u8> {
    let [id_hi, id_lo] = metadata.id.to_be_bytes();
    let flags1 = 0x80
        | (u8::from(metadata.op_code) << 3)
        | u8::from(metadata.authoritative) << 2
        | u8::from(metadata.recursion_desired);
    let flags2 = 0x80 | (metadata.response_code.low() & 0x0f);
    vec![id_hi, id_lo, flags1, flags2, 0, 0, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::str::FromStr;

    use hickory_proto::op::{Message, OpCode};
    use hickory_proto::rr::{rdata::A, Name, RData, RecordType};

    use super::*;
    use crate::request::Transport;

    fn request(max_size: u16, edns: bool) -> Request {
        let mut metadata = Metadata::new(0xbeef, MessageType::Query, OpCode::Query);
        metadata.recursion_desired = true;
        Request {
            metadata,
            query: Query::query(
                Name::from_ascii("WwW.ExAmPle.CoM.").expect("name"),
                RecordType::A,
            ),
            edns,
            max_size,
            transport: Transport::Udp,
        }
    }

    fn many_a(n: u8) -> Answer {
        let name = Name::from_str("www.example.com.").expect("name");
        Answer {
            answers: (0..n)
                .map(|i| {
                    Record::from_rdata(name.clone(), 60, RData::A(A(Ipv4Addr::new(192, 0, 2, i))))
                })
                .collect(),
            ..Answer::default()
        }
    }

    #[test]
    fn reply_copies_id_rd_and_question_case() {
        let bytes = write(&request(512, false), &many_a(1));
        let msg = Message::from_vec(&bytes).expect("parses");
        assert_eq!(msg.metadata.id, 0xbeef);
        assert!(msg.metadata.recursion_desired && msg.metadata.recursion_available);
        assert_eq!(msg.metadata.message_type, MessageType::Response);
        assert_eq!(msg.queries[0].name.to_string(), "WwW.ExAmPle.CoM.");
        assert!(msg.edns.is_none());
        assert_eq!(msg.answers.len(), 1);
    }

    #[test]
    fn oversized_reply_is_truncated_to_the_question() {
        let bytes = write(&request(512, true), &many_a(60));
        assert!(bytes.len() <= 512);
        let msg = Message::from_vec(&bytes).expect("parses");
        assert!(msg.metadata.truncation);
        assert!(msg.answers.is_empty());
        assert_eq!(msg.queries.len(), 1);
        assert!(msg.edns.is_some());

        let whole = write(&request(u16::MAX, true), &many_a(60));
        let msg = Message::from_vec(&whole).expect("parses");
        assert!(!msg.metadata.truncation);
        assert_eq!(msg.answers.len(), 60);
    }

    #[test]
    fn badvers_goes_in_the_opt_record() {
        let req = request(512, true);
        let bytes = error(&req.metadata, Some(&req.query), true, ResponseCode::BADVERS);
        assert_eq!(bytes[3] & 0x0f, 0, "low bits of BADVERS are zero");
        let msg = Message::from_vec(&bytes).expect("parses");
        // 16 is both BADVERS and BADSIG; hickory decodes it as the latter.
        assert_eq!(u16::from(msg.metadata.response_code), 16);
        assert_eq!(msg.edns.as_ref().map(|e| e.version()), Some(0));
    }
}
