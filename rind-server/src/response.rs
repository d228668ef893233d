//! The response writer: turns an [`Answer`] for a [`Request`] into reply bytes.
//!
//! It owns the RFC hygiene every reply shares, whatever produced the answer:
//! - ID, opcode, RD and CD copied from the query, QR and RA set (RFC 1035 §4.1.1);
//! - the question echoed exactly as received, letter case included (DNS 0x20);
//! - an OPT record iff the query had one, advertising [`MAX_UDP_PAYLOAD`] (RFC 6891 §7), with
//!   the query's DO bit copied (RFC 3225);
//! - RRSIG, NSEC and NSEC3 records only for a client that set DO or asked for that type
//!   (RFC 4035 §3.2.1); AD only when the upstream set it and the client set DO or AD
//!   (RFC 6840 §5.7, §5.8);
//! - a reply over the client's size limit is replaced by the question alone with TC=1
//!   (RFC 1035 §4.2.1, RFC 7766 §5), so the client asks again over TCP.

use std::iter;

use hickory_proto::op::{emit_message_parts, Edns, MessageType, Metadata, Query, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;

use crate::request::{ClientEdns, Request, MAX_UDP_PAYLOAD};

/// What the resolver found for one question, before it is written for a particular client.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// Response code of the reply.
    pub rcode: ResponseCode,
    /// AA: set for local records and special-use names, never for forwarded answers.
    pub authoritative: bool,
    /// AD as the upstream set it; answers rind makes itself never have it.
    pub authentic_data: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (the SOA of a negative answer; NSEC/NSEC3 proofs and RRSIGs).
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

/// Whether a record of `rtype` is DNSSEC material a DO=0 client must not get (RFC 4035
/// §3.2.1): RRSIG, NSEC and NSEC3, unless they are what the query asked for. `asked` is the
/// question's type for a record in the answer section, `None` in the other sections. DNSKEY
/// and DS are ordinary data to such a client.
pub fn is_dnssec_only(rtype: RecordType, asked: Option<RecordType>) -> bool {
    matches!(
        rtype,
        RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3
    ) && Some(rtype) != asked
}

/// Writes the reply to `request`, truncated to its size limit.
pub fn write(request: &Request, answer: &Answer) -> Vec<u8> {
    let mut metadata = reply_metadata(&request.metadata, answer.rcode);
    metadata.authoritative = answer.authoritative;
    metadata.authentic_data = answer.authentic_data && request.wants_ad();
    let edns = request.edns.map(our_edns);
    let qtype = Some(request.query.query_type);
    let dnssec_ok = request.dnssec_ok();
    let keep = |asked| move |r: &&Record| dnssec_ok || !is_dnssec_only(r.record_type(), asked);
    let full = encode(
        &metadata,
        &request.query,
        &mut answer.answers.iter().filter(keep(qtype)),
        &mut answer.authorities.iter().filter(keep(None)),
        &mut answer.additionals.iter().filter(keep(None)),
        edns.as_ref(),
    );
    if full.len() <= usize::from(request.max_size) {
        return full;
    }
    metadata.truncation = true;
    question_only(&metadata, &request.query, edns.as_ref())
}

/// An empty reply with TC=1: "ask again over TCP".
pub fn truncated(request: &Request) -> Vec<u8> {
    let mut metadata = reply_metadata(&request.metadata, ResponseCode::NoError);
    metadata.truncation = true;
    let edns = request.edns.map(our_edns);
    question_only(&metadata, &request.query, edns.as_ref())
}

/// Writes an error reply from what could be read of a rejected query.
pub fn error(
    request: &Metadata,
    question: Option<&Query>,
    edns: Option<ClientEdns>,
    rcode: ResponseCode,
) -> Vec<u8> {
    let metadata = reply_metadata(request, rcode);
    let edns = edns.map(our_edns);
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

/// Our OPT record for a client that sent `client`.
fn our_edns(client: ClientEdns) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD);
    edns.set_version(0);
    edns.set_dnssec_ok(client.dnssec_ok);
    edns
}

fn question_only(metadata: &Metadata, query: &Query, edns: Option<&Edns>) -> Vec<u8> {
    let none = &mut iter::empty::<&Record>();
    encode(
        metadata,
        query,
        none,
        &mut iter::empty(),
        &mut iter::empty(),
        edns,
    )
}

fn encode<'r>(
    metadata: &Metadata,
    query: &Query,
    answers: &mut impl Iterator<Item = &'r Record>,
    authorities: &mut impl Iterator<Item = &'r Record>,
    additionals: &mut impl Iterator<Item = &'r Record>,
    edns: Option<&Edns>,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut buf);
    let emitted = emit_message_parts(
        metadata,
        &mut iter::once(query),
        answers,
        authorities,
        additionals,
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
            error(
                &failed,
                Some(query),
                edns.map(ClientEdns::from),
                ResponseCode::ServFail,
            )
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
    use hickory_proto::rr::rdata::NULL;

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
            edns: edns.then_some(ClientEdns::default()),
            max_size,
            transport: Transport::Udp,
            signed: false,
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
        let do_bit = Some(ClientEdns { dnssec_ok: true });
        let bytes = error(
            &req.metadata,
            Some(&req.query),
            do_bit,
            ResponseCode::BADVERS,
        );
        assert_eq!(bytes[3] & 0x0f, 0, "low bits of BADVERS are zero");
        let msg = Message::from_vec(&bytes).expect("parses");
        // 16 is both BADVERS and BADSIG; hickory decodes it as the latter.
        assert_eq!(u16::from(msg.metadata.response_code), 16);
        assert_eq!(msg.edns.as_ref().map(|e| e.version()), Some(0));
        assert_eq!(msg.edns.map(|e| e.flags().dnssec_ok), Some(true));
    }

    /// An A record with its RRSIG (opaque RDATA, as hickory reads it here) and, in
    /// authority, an NSEC record, as a signed upstream answer to a DO=1 query has them.
    fn signed_answer() -> Answer {
        let name = Name::from_str("www.example.com.").expect("name");
        let rrsig = RData::Unknown {
            code: RecordType::RRSIG,
            rdata: NULL::with(vec![0, 1, 13, 3, 0, 0, 0, 60, 0xff, 0, 0, 0, 0, 0, 0, 0]),
        };
        let nsec = RData::Unknown {
            code: RecordType::NSEC,
            rdata: NULL::with(vec![0, 0, 1, 0x40]),
        };
        Answer {
            authentic_data: true,
            answers: vec![
                Record::from_rdata(name.clone(), 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))),
                Record::from_rdata(name.clone(), 60, rrsig),
            ],
            authorities: vec![Record::from_rdata(name, 60, nsec)],
            ..Answer::default()
        }
    }

    fn types(records: &[Record]) -> Vec<RecordType> {
        records.iter().map(Record::record_type).collect()
    }

    #[test]
    fn dnssec_records_and_ad_only_for_clients_that_set_do() {
        let mut plain = request(u16::MAX, true);
        let msg = Message::from_vec(&write(&plain, &signed_answer())).expect("parses");
        assert_eq!(types(&msg.answers), [RecordType::A]);
        assert!(msg.authorities.is_empty());
        assert!(!msg.metadata.authentic_data);
        assert_eq!(msg.edns.map(|e| e.flags().dnssec_ok), Some(false));

        // AD=1 without DO: the AD bit, but still no DNSSEC records (RFC 6840 §5.7).
        plain.metadata.authentic_data = true;
        let msg = Message::from_vec(&write(&plain, &signed_answer())).expect("parses");
        assert_eq!(types(&msg.answers), [RecordType::A]);
        assert!(msg.metadata.authentic_data);

        let mut dnssec = request(u16::MAX, true);
        dnssec.edns = Some(ClientEdns { dnssec_ok: true });
        let msg = Message::from_vec(&write(&dnssec, &signed_answer())).expect("parses");
        assert_eq!(types(&msg.answers), [RecordType::A, RecordType::RRSIG]);
        assert_eq!(types(&msg.authorities), [RecordType::NSEC]);
        assert!(msg.metadata.authentic_data);
        assert_eq!(msg.edns.map(|e| e.flags().dnssec_ok), Some(true));

        // Asked for by type, an RRSIG is ordinary data even without DO.
        let mut by_type = request(u16::MAX, false);
        by_type.query.query_type = RecordType::RRSIG;
        let msg = Message::from_vec(&write(&by_type, &signed_answer())).expect("parses");
        assert_eq!(types(&msg.answers), [RecordType::A, RecordType::RRSIG]);
        assert!(msg.authorities.is_empty());
    }
}
