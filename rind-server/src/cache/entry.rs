//! One cached answer, kept in the form that makes a hit cheap: the reply's wire bytes (a
//! "template" with ID 0 and the question in lower case) and the offsets of every TTL in it.
//!
//! A hit copies the template once and patches it in place: the client's ID and RD/CD bits,
//! the question labels in the client's letter case (same length, so compression pointers stay
//! valid), each TTL minus the seconds since the answer was stored, and an OPT record when the
//! client sent one. No parsing, no name compression, one allocation.
//!
//! Negative answers (RFC 2308) keep only the SOA in the authority section, with its TTL set to
//! min(SOA TTL, SOA MINIMUM) capped by `--max-negative-ttl`, so it counts down to zero as the
//! entry expires.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::request::{Request, Transport, MAX_UDP_PAYLOAD};
use crate::response::Answer;

/// TTL of an answer served stale (RFC 8767 §4).
pub const STALE_TTL: u32 = 30;
/// Extended DNS Error info-code "Stale Answer" (RFC 8914 §4.4).
const EDE_STALE_ANSWER: u16 = 3;
/// Format byte of an encoded entry; bump it when the layout changes.
const FORMAT: u8 = 1;
/// Offset of the four section counts in a DNS header.
const ANCOUNT: usize = 6;
const ARCOUNT: usize = 10;
const HEADER_LEN: usize = 12;
/// Longest key: a 255-byte wire name, type and class.
const MAX_KEY: usize = 255 + 4;

/// The TTL rules applied when an answer is stored.
#[derive(Debug, Clone, Copy)]
pub struct TtlPolicy {
    /// Lower clamp on positive TTLs.
    pub min_ttl: u32,
    /// Upper clamp on positive TTLs.
    pub max_ttl: u32,
    /// Cap on negative TTLs.
    pub max_negative_ttl: u32,
}

/// The cache key of a question: its wire name in lower case, type and class, built on the
/// stack so a lookup allocates nothing.
#[derive(Clone)]
pub struct Key {
    buf: [u8; MAX_KEY],
    len: usize,
}

impl Key {
    /// The key of `query`.
    pub fn of(query: &Query) -> Key {
        let mut key = Key::EMPTY;
        key.push_name(&query.name);
        for b in u16::from(query.query_type)
            .to_be_bytes()
            .into_iter()
            .chain(u16::from(query.query_class).to_be_bytes())
        {
            key.push(b);
        }
        key
    }

    /// What the key of every question for `name` starts with, and no other key does: the
    /// name's wire form in lower case (length-prefixed labels, ended by the root's 0).
    pub fn name_prefix(name: &Name) -> Vec<u8> {
        let mut key = Key::EMPTY;
        key.push_name(name);
        key.as_bytes().to_vec()
    }

    const EMPTY: Key = Key {
        buf: [0; MAX_KEY],
        len: 0,
    };

    fn push_name(&mut self, name: &Name) {
        for label in name.iter() {
            // A parsed Name never exceeds 255 bytes, so these pushes stay in bounds.
            self.push(label.len() as u8);
            for b in label {
                self.push(b.to_ascii_lowercase());
            }
        }
        self.push(0);
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// One cached answer, kept to two allocations (this struct behind its `Arc`, and `bytes`):
/// a full cache holds `--cache-size` of them, and they are most of the server's memory.
#[derive(Debug)]
pub struct Entry {
    /// The TTL offsets (big-endian u16 each) followed by the reply template.
    bytes: Box<[u8]>,
    /// Where the template starts in `bytes`.
    template_at: u16,
    /// Where the question ends in the template.
    question_end: u16,
    stored_at: u64,
    expires_at: u64,
    /// Set while a prefetch or stale refresh runs, so there is never a second one.
    refreshing: AtomicBool,
    /// Unix seconds of the last failed refresh (0: none); a stale entry that failed recently
    /// is served at once instead of making the client wait for upstream again.
    refresh_failed_at: AtomicU64,
}

impl Entry {
    /// Builds the entry for an upstream `reply` to `query`, or `None` when it must not be
    /// cached (truncated, SERVFAIL and other errors, negative without SOA, TTL 0).
    pub fn from_upstream(
        query: &Query,
        reply: &Message,
        policy: &TtlPolicy,
        now: u64,
    ) -> Option<Entry> {
        if reply.metadata.truncation {
            return None;
        }
        let rcode = reply.metadata.response_code;
        let negative = match rcode {
            ResponseCode::NXDomain => true,
            ResponseCode::NoError => reply.answers.is_empty(),
            _ => return None,
        };
        let mut msg = Message::response(0, OpCode::Query);
        msg.metadata.recursion_available = true;
        msg.metadata.response_code = rcode;
        let mut question = Query::query(query.name.to_lowercase(), query.query_type);
        question.query_class = query.query_class;
        msg.add_query(question);
        msg.answers = reply.answers.clone();
        let ttl = if negative {
            let soa = reply
                .authorities
                .iter()
                .find(|r| r.record_type() == RecordType::SOA)?;
            let RData::SOA(data) = &soa.data else {
                return None;
            };
            let negative_ttl = soa.ttl.min(data.minimum).min(policy.max_negative_ttl);
            let mut soa = soa.clone();
            soa.ttl = negative_ttl;
            msg.authorities = vec![soa];
            for record in &mut msg.answers {
                record.ttl = record.ttl.min(negative_ttl);
            }
            negative_ttl
        } else {
            msg.authorities = reply.authorities.clone();
            msg.additionals = reply.additionals.clone();
            for record in msg
                .answers
                .iter_mut()
                .chain(msg.authorities.iter_mut())
                .chain(msg.additionals.iter_mut())
            {
                record.ttl = record.ttl.clamp(policy.min_ttl, policy.max_ttl);
            }
            msg.answers.iter().map(|r| r.ttl).min()?
        };
        if ttl == 0 {
            return None;
        }
        let template = msg.to_vec().ok()?;
        Entry::from_template(template, now, now + u64::from(ttl))
    }

    fn from_template(template: Vec<u8>, stored_at: u64, expires_at: u64) -> Option<Entry> {
        let (question_end, ttl_offsets) = walk(&template)?;
        let template_at = 2 * ttl_offsets.len();
        let mut bytes = Vec::with_capacity(template_at + template.len());
        for offset in ttl_offsets {
            bytes.extend_from_slice(&offset.to_be_bytes());
        }
        bytes.extend_from_slice(&template);
        Some(Entry {
            bytes: bytes.into_boxed_slice(),
            template_at: u16::try_from(template_at).ok()?,
            question_end: u16::try_from(question_end).ok()?,
            stored_at,
            expires_at,
            refreshing: AtomicBool::new(false),
            refresh_failed_at: AtomicU64::new(0),
        })
    }

    /// The reply template: ID 0, the question in lower case, the TTLs as stored.
    fn template(&self) -> &[u8] {
        self.bytes
            .get(usize::from(self.template_at)..)
            .unwrap_or_default()
    }

    /// Offsets of the TTLs in the template.
    fn ttl_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        self.bytes
            .get(..usize::from(self.template_at))
            .unwrap_or_default()
            .chunks_exact(2)
            .filter_map(|pair| pair.try_into().ok())
            .map(|pair| usize::from(u16::from_be_bytes(pair)))
    }

    /// The cache key of the entry's question, the same bytes as [`Key::of`] gives: the
    /// template's question is already in lower case.
    pub fn key(&self) -> &[u8] {
        self.template()
            .get(HEADER_LEN..usize::from(self.question_end))
            .unwrap_or_default()
    }

    /// The bytes kept on disk: format, expiry, store time, template.
    pub fn encode(&self) -> Vec<u8> {
        let template = self.template();
        let mut out = Vec::with_capacity(17 + template.len());
        out.push(FORMAT);
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.stored_at.to_be_bytes());
        out.extend_from_slice(template);
        out
    }

    /// Reads bytes written by [`Entry::encode`]; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        if *bytes.first()? != FORMAT {
            return None;
        }
        let expires_at = u64::from_be_bytes(bytes.get(1..9)?.try_into().ok()?);
        let stored_at = u64::from_be_bytes(bytes.get(9..17)?.try_into().ok()?);
        if stored_at > expires_at {
            return None;
        }
        Entry::from_template(bytes.get(17..)?.to_vec(), stored_at, expires_at)
    }

    /// Response code of the cached answer.
    pub fn rcode(&self) -> ResponseCode {
        ResponseCode::from_low(self.template().get(3).map_or(0, |b| b & 0x0f))
    }

    /// Unix seconds after which the entry is stale.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// Whether the entry may be served as fresh at `now`.
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.expires_at
    }

    /// Whether less than a tenth of the entry's lifetime may be left (the prefetch trigger).
    /// `now` is in whole seconds, so the time left is somewhere above `expires_at - now - 1`;
    /// using that lower bound lets entries of 10 s and less trigger in their last second.
    pub fn nearly_expired(&self, now: u64) -> bool {
        let total = self.expires_at - self.stored_at;
        self.expires_at.saturating_sub(now).saturating_sub(1) * 10 < total
    }

    /// Claims the entry's one refresh; false when another is already running.
    pub fn start_refresh(&self) -> bool {
        !self.refreshing.swap(true, Ordering::AcqRel)
    }

    /// Records that a refresh found no upstream, and frees the refresh slot.
    pub fn refresh_failed(&self, now: u64) {
        self.refresh_failed_at.store(now, Ordering::Relaxed);
        self.refreshing.store(false, Ordering::Release);
    }

    /// Whether a refresh failed within the last `window` seconds.
    pub fn failed_within(&self, now: u64, window: u64) -> bool {
        let at = self.refresh_failed_at.load(Ordering::Relaxed);
        at != 0 && now.saturating_sub(at) < window
    }

    /// The question of the entry (lower case), for listings.
    pub fn question(&self) -> Option<Query> {
        Query::read(&mut BinDecoder::new(self.key())).ok()
    }

    /// The cached answer as records, TTLs counted down to `now` (for a local CNAME's target,
    /// which is written together with the local records).
    pub fn answer(&self, now: u64) -> Option<Answer> {
        let request = Request {
            metadata: Metadata::new(0, MessageType::Query, OpCode::Query),
            query: self.question()?,
            edns: false,
            max_size: u16::MAX,
            transport: Transport::Tcp,
        };
        let msg = Message::from_vec(&self.reply(&request, now, false)?).ok()?;
        Some(Answer {
            rcode: msg.metadata.response_code,
            authoritative: false,
            answers: msg.answers,
            authorities: msg.authorities,
            additionals: msg.additionals,
        })
    }

    /// The reply to `request` at `now`, TTLs counted down, or with the stale TTL and an
    /// Extended DNS Error when `stale`. `None` if the question does not fit the template,
    /// which a matching key rules out.
    pub fn reply(&self, request: &Request, now: u64, stale: bool) -> Option<Vec<u8>> {
        let elapsed = u32::try_from(now.saturating_sub(self.stored_at)).unwrap_or(u32::MAX);
        let template = self.template();
        let question_end = usize::from(self.question_end);
        let mut out = Vec::with_capacity(template.len() + OPT_LEN + EDE_LEN);
        out.extend_from_slice(template);

        let meta = &request.metadata;
        put(&mut out, 0, &meta.id.to_be_bytes())?;
        // QR=1, opcode QUERY, AA=0, TC=0, RD copied; RA=1, CD copied, rcode.
        let flags = [
            0x80 | u8::from(meta.recursion_desired),
            0x80 | u8::from(meta.checking_disabled) << 4 | self.rcode().low(),
        ];
        put(&mut out, 2, &flags)?;

        let mut pos = HEADER_LEN;
        for label in request.query.name.iter() {
            put(&mut out, pos, &[label.len() as u8])?;
            put(&mut out, pos + 1, label)?;
            pos += 1 + label.len();
        }
        if pos + 1 + 4 != question_end {
            return None;
        }

        for offset in self.ttl_offsets() {
            let stored = u32::from_be_bytes(template.get(offset..offset + 4)?.try_into().ok()?);
            let ttl = if stale {
                STALE_TTL
            } else {
                stored.saturating_sub(elapsed)
            };
            put(&mut out, offset, &ttl.to_be_bytes())?;
        }

        if request.edns {
            push_opt(&mut out, stale)?;
        }
        if out.len() > usize::from(request.max_size) {
            out.truncate(question_end);
            put(&mut out, ANCOUNT, &[0; 6])?;
            put(&mut out, 2, &[flags[0] | 0x02])?;
            if request.edns {
                push_opt(&mut out, stale)?;
            }
        }
        Some(out)
    }
}

/// OPT pseudo-record: root name, type 41, our payload size, version 0, no flags.
const OPT_LEN: usize = 11;
/// EDNS option code of Extended DNS Errors (RFC 8914) with a two-byte info-code.
const EDE_LEN: usize = 6;

fn push_opt(out: &mut Vec<u8>, stale: bool) -> Option<()> {
    let rdlen: u16 = if stale { EDE_LEN as u16 } else { 0 };
    out.push(0);
    out.extend_from_slice(&41u16.to_be_bytes());
    out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&rdlen.to_be_bytes());
    if stale {
        out.extend_from_slice(&15u16.to_be_bytes());
        out.extend_from_slice(&2u16.to_be_bytes());
        out.extend_from_slice(&EDE_STALE_ANSWER.to_be_bytes());
    }
    let arcount = u16::from_be_bytes(out.get(ARCOUNT..ARCOUNT + 2)?.try_into().ok()?);
    put(out, ARCOUNT, &(arcount + 1).to_be_bytes())
}

fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> Option<()> {
    out.get_mut(at..at + bytes.len())?.copy_from_slice(bytes);
    Some(())
}

/// Walks a template: returns where the question ends and the offset of every record's TTL.
/// `None` unless it is one question followed by exactly the records its header counts.
fn walk(t: &[u8]) -> Option<(usize, Vec<u16>)> {
    let count = |at: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes(
            t.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    if count(4)? != 1 {
        return None;
    }
    let records = count(6)? + count(8)? + count(10)?;
    let question_end = skip_name(t, HEADER_LEN)? + 4;
    let mut pos = question_end;
    let mut offsets = Vec::with_capacity(records);
    for _ in 0..records {
        let ttl_at = skip_name(t, pos)? + 4;
        let rdlen = count(ttl_at + 4)?;
        offsets.push(u16::try_from(ttl_at).ok()?);
        pos = ttl_at + 6 + rdlen;
    }
    (pos == t.len()).then_some((question_end, offsets))
}

/// Returns the offset just past the (possibly compressed) name at `pos`.
fn skip_name(t: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *t.get(pos)?;
        match len & 0xC0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + usize::from(len),
            0xC0 => {
                t.get(pos + 1)?;
                return Some(pos + 2);
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::{MessageType, Metadata};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, Record};

    use super::*;
    use crate::request::Transport;

    const POLICY: TtlPolicy = TtlPolicy {
        min_ttl: 0,
        max_ttl: 86_400,
        max_negative_ttl: 3_600,
    };

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn request(qname: &str, edns: bool, max_size: u16) -> Request {
        let mut metadata = Metadata::new(0x1234, MessageType::Query, OpCode::Query);
        metadata.recursion_desired = true;
        Request {
            metadata,
            query: Query::query(name(qname), RecordType::A),
            edns,
            max_size,
            transport: Transport::Udp,
        }
    }

    fn upstream_reply(qname: &str, ttls: &[u32]) -> Message {
        let mut m = Message::response(99, OpCode::Query);
        m.add_query(Query::query(name(qname), RecordType::A));
        for (i, ttl) in ttls.iter().enumerate() {
            m.add_answer(Record::from_rdata(
                name(qname),
                *ttl,
                RData::A(A(Ipv4Addr::new(192, 0, 2, i as u8))),
            ));
        }
        m
    }

    fn nxdomain(qname: &str, soa_ttl: u32, minimum: u32) -> Message {
        let mut m = Message::response(99, OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        m.add_query(Query::query(name(qname), RecordType::A));
        let soa = SOA::new(
            name("ns.example."),
            name("host.example."),
            1,
            1,
            1,
            1,
            minimum,
        );
        m.add_authority(Record::from_rdata(
            name("example."),
            soa_ttl,
            RData::SOA(soa),
        ));
        m
    }

    fn parse(bytes: &[u8]) -> Message {
        Message::from_vec(bytes).expect("reply parses")
    }

    #[test]
    fn hit_patches_id_case_and_ttls() {
        let q = Query::query(name("www.example.com."), RecordType::A);
        let entry = Entry::from_upstream(
            &q,
            &upstream_reply("www.example.com.", &[300, 200]),
            &POLICY,
            1_000,
        )
        .expect("cacheable");
        let bytes = entry
            .reply(&request("WwW.ExAmple.COM.", false, 512), 1_050, false)
            .expect("reply");
        let msg = parse(&bytes);
        assert_eq!(msg.metadata.id, 0x1234);
        assert!(msg.metadata.recursion_desired && msg.metadata.recursion_available);
        assert!(!msg.metadata.authoritative);
        assert!(msg.queries[0].name.eq_case(&name("WwW.ExAmple.COM.")));
        let ttls: Vec<u32> = msg.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, [250, 150]);
        assert!(msg.edns.is_none());
        assert_eq!(entry.expires_at(), 1_200);
    }

    #[test]
    fn edns_clients_get_an_opt_and_stale_answers_carry_ede_3() {
        let q = Query::query(name("a.example."), RecordType::A);
        let entry = Entry::from_upstream(&q, &upstream_reply("a.example.", &[60]), &POLICY, 0)
            .expect("cacheable");
        let msg = parse(
            &entry
                .reply(&request("a.example.", true, 1232), 10, false)
                .expect("reply"),
        );
        let edns = msg.edns.expect("opt echoed");
        assert_eq!(edns.max_payload(), MAX_UDP_PAYLOAD);
        assert!(edns.options().as_ref().is_empty());

        let stale = entry
            .reply(&request("a.example.", true, 1232), 100, true)
            .expect("reply");
        let msg = parse(&stale);
        assert_eq!(msg.answers[0].ttl, STALE_TTL);
        let ede = msg.edns.expect("opt").options().as_ref().first().cloned();
        let (code, option) = ede.expect("an EDE option");
        assert_eq!(u16::from(code), 15);
        assert_eq!(
            option,
            hickory_proto::rr::rdata::opt::EdnsOption::Unknown(15, vec![0, 3])
        );
    }

    #[test]
    fn negative_ttl_is_min_of_soa_ttl_and_minimum_capped() {
        let q = Query::query(name("nx.example."), RecordType::A);
        let e = Entry::from_upstream(&q, &nxdomain("nx.example.", 900, 60), &POLICY, 0)
            .expect("cacheable");
        assert_eq!(e.expires_at(), 60);
        let msg = parse(
            &e.reply(&request("nx.example.", false, 512), 20, false)
                .expect("reply"),
        );
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(msg.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(msg.authorities[0].ttl, 40);

        let capped = TtlPolicy {
            max_negative_ttl: 10,
            ..POLICY
        };
        let e = Entry::from_upstream(&q, &nxdomain("nx.example.", 900, 600), &capped, 0)
            .expect("cacheable");
        assert_eq!(e.expires_at(), 10);
    }

    #[test]
    fn uncacheable_answers() {
        let q = Query::query(name("x.example."), RecordType::A);
        let mut servfail = upstream_reply("x.example.", &[60]);
        servfail.metadata.response_code = ResponseCode::ServFail;
        assert!(Entry::from_upstream(&q, &servfail, &POLICY, 0).is_none());
        let mut nosoa = nxdomain("x.example.", 60, 60);
        nosoa.authorities.clear();
        assert!(Entry::from_upstream(&q, &nosoa, &POLICY, 0).is_none());
        assert!(
            Entry::from_upstream(&q, &upstream_reply("x.example.", &[0]), &POLICY, 0).is_none()
        );
        let mut truncated = upstream_reply("x.example.", &[60]);
        truncated.metadata.truncation = true;
        assert!(Entry::from_upstream(&q, &truncated, &POLICY, 0).is_none());
    }

    #[test]
    fn ttl_clamps() {
        let q = Query::query(name("c.example."), RecordType::A);
        let policy = TtlPolicy {
            min_ttl: 100,
            max_ttl: 1_000,
            ..POLICY
        };
        let low = Entry::from_upstream(&q, &upstream_reply("c.example.", &[5]), &policy, 0)
            .expect("cacheable");
        assert_eq!(low.expires_at(), 100);
        let high = Entry::from_upstream(&q, &upstream_reply("c.example.", &[9_999]), &policy, 0)
            .expect("cacheable");
        assert_eq!(high.expires_at(), 1_000);
        let zero = Entry::from_upstream(&q, &upstream_reply("c.example.", &[0]), &policy, 0)
            .expect("clamped up");
        assert_eq!(zero.expires_at(), 100);
    }

    #[test]
    fn too_big_for_the_client_is_truncated() {
        let q = Query::query(name("big.example."), RecordType::A);
        let ttls = vec![300; 60];
        let entry = Entry::from_upstream(&q, &upstream_reply("big.example.", &ttls), &POLICY, 0)
            .expect("cacheable");
        let small = parse(
            &entry
                .reply(&request("big.example.", true, 512), 0, false)
                .expect("reply"),
        );
        assert!(small.metadata.truncation);
        assert!(small.answers.is_empty());
        assert!(small.edns.is_some());
        let tcp = parse(
            &entry
                .reply(&request("big.example.", false, u16::MAX), 0, false)
                .expect("reply"),
        );
        assert_eq!(tcp.answers.len(), 60);
    }

    #[test]
    fn encode_decode_round_trip_and_garbage() {
        let q = Query::query(name("r.example."), RecordType::A);
        let entry = Entry::from_upstream(&q, &upstream_reply("r.example.", &[60]), &POLICY, 5)
            .expect("cacheable");
        let back = Entry::decode(&entry.encode()).expect("decodes");
        assert_eq!(back.expires_at(), 65);
        assert_eq!(
            back.question().map(|q| q.name.to_string()),
            Some("r.example.".into())
        );
        for bad in [&[][..], &[2, 0, 0], &entry.encode()[..20]] {
            assert!(Entry::decode(bad).is_none());
        }
    }

    #[test]
    fn answer_gives_records_with_counted_down_ttls() {
        let q = Query::query(name("t.example."), RecordType::A);
        let entry = Entry::from_upstream(&q, &upstream_reply("t.example.", &[100]), &POLICY, 0)
            .expect("cacheable");
        let answer = entry.answer(30).expect("answer");
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.answers[0].ttl, 70);
        assert!(!answer.authoritative);
    }

    #[test]
    fn keys_ignore_case() {
        let a = Key::of(&Query::query(name("WWW.Example.com."), RecordType::A));
        let b = Key::of(&Query::query(name("www.example.COM."), RecordType::A));
        let c = Key::of(&Query::query(name("www.example.com."), RecordType::AAAA));
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert_ne!(a.as_bytes(), c.as_bytes());
    }

    #[test]
    fn an_entry_knows_its_own_key() {
        // The memory cache finds entries by a hash and then compares this: it must be the
        // exact key of the question, whatever the letter case it was asked in.
        let q = Query::query(name("MiXeD.Example."), RecordType::A);
        let entry = Entry::from_upstream(&q, &upstream_reply("MiXeD.Example.", &[60]), &POLICY, 0)
            .expect("cacheable");
        assert_eq!(entry.key(), Key::of(&q).as_bytes());
        let back = Entry::decode(&entry.encode()).expect("decodes");
        assert_eq!(back.key(), Key::of(&q).as_bytes());
        let other = Query::query(name("mixed.example."), RecordType::AAAA);
        assert_ne!(entry.key(), Key::of(&other).as_bytes());
    }

    #[test]
    fn a_name_prefix_starts_the_keys_of_that_name_only() {
        let prefix = Key::name_prefix(&name("WWW.example.com."));
        for rtype in [RecordType::A, RecordType::AAAA, RecordType::MX] {
            let key = Key::of(&Query::query(name("www.Example.com."), rtype));
            assert!(key.as_bytes().starts_with(&prefix), "{rtype}");
        }
        for other in ["www.example.com.evil.", "www.example.co.", "example.com."] {
            let key = Key::of(&Query::query(name(other), RecordType::A));
            assert!(!key.as_bytes().starts_with(&prefix), "{other}");
        }
    }
}
