//! One cached answer, kept in the form that makes a hit cheap: the reply's wire bytes (a
//! "template" with ID 0 and the question in lower case) and the offsets of every TTL in it.
//!
//! A hit copies the template once and patches it in place: the client's ID and RD/CD bits,
//! the question labels in the client's letter case (same length, so compression pointers stay
//! valid), each TTL minus the seconds since the answer was stored, and an OPT record when the
//! client sent one. No parsing, no name compression, one allocation.
//!
//! Negative answers (RFC 2308) keep the SOA in the authority section, with its TTL set to
//! min(SOA TTL, SOA MINIMUM) capped by `--max-negative-ttl`, so it counts down to zero as the
//! entry expires; the NSEC/NSEC3 records that prove them and their RRSIGs stay beside it.
//!
//! DNSSEC: answers are fetched with DO=1, so one entry serves every client. When the answer
//! holds RRSIG, NSEC or NSEC3 records, the entry also keeps a second template without them for
//! DO=0 clients (RFC 4035 §3.2.1), so that a hit is still one copy whatever the client asked.
//! An answer fetched with CD=1 was not checked by the upstream: its key carries [`CD_MARK`],
//! and only CD=1 clients ever look it up. Entries stored before rind fetched with DO=1 (format
//! 1 on disk) serve DO=0 clients only.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use triomphe::ThinArc;

use crate::request::{Request, Transport, MAX_UDP_PAYLOAD};
use crate::response::{is_dnssec_only, Answer};

/// TTL of an answer served stale (RFC 8767 §4).
pub const STALE_TTL: u32 = 30;
/// Extended DNS Error info-code "Stale Answer" (RFC 8914 §4.4).
const EDE_STALE_ANSWER: u16 = 3;
/// Format byte of an entry written before DNSSEC records were kept: fetched with DO=0.
const FORMAT_V1: u8 = 1;
/// Format byte of an encoded entry; bump it when the layout changes.
const FORMAT: u8 = 2;
/// Flag bits of format 2.
const FLAG_DNSSEC_OK: u8 = 1;
const FLAG_CHECKING_DISABLED: u8 = 2;
/// Offset of the four section counts in a DNS header.
const ANCOUNT: usize = 6;
const ARCOUNT: usize = 10;
const HEADER_LEN: usize = 12;
/// The AD bit in the second flags byte of a header.
const AD_BIT: u8 = 0x20;
/// Last byte of the key of an answer fetched with CD=1. A question's wire form ends in type
/// and class after a self-delimiting name, so a longer key never equals another question's.
const CD_MARK: u8 = 1;
/// Longest key: a 255-byte wire name, type, class and the CD mark.
const MAX_KEY: usize = 255 + 4 + 1;

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

/// How an answer was asked of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// With DO=1: it holds the DNSSEC records a DO=1 client needs.
    pub dnssec_ok: bool,
    /// With CD=1: the upstream did not validate it, so it is for CD=1 clients only.
    pub checking_disabled: bool,
}

/// The cache key of a question: its wire name in lower case, type and class (and a last
/// byte, the CD mark, for answers fetched with CD=1), built on the stack so a lookup
/// allocates nothing.
#[derive(Clone)]
pub struct Key {
    buf: [u8; MAX_KEY],
    len: usize,
}

impl Key {
    /// The key of `query`, for the answer fetched with CD as given.
    pub fn of(query: &Query, checking_disabled: bool) -> Key {
        let mut key = Key::EMPTY;
        key.push_name(&query.name);
        for b in u16::from(query.query_type)
            .to_be_bytes()
            .into_iter()
            .chain(u16::from(query.query_class).to_be_bytes())
        {
            key.push(b);
        }
        if checking_disabled {
            key.push(CD_MARK);
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

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// A reply template and the offsets of its TTLs, laid out in one byte string: where the
/// template starts and where its question ends, relative to the template (big-endian u16
/// each), then the TTL offsets (big-endian u16 each), then the reply template.
#[derive(Debug, Clone, Copy)]
struct Template<'a> {
    bytes: &'a [u8],
}

/// Bytes before a template's TTL offsets: its two positions.
const POSITIONS_LEN: usize = 4;

/// Lays out `wire` as a [`Template`]'s bytes; also says whether it holds records a DO=0
/// client must not get.
fn lay_out(wire: &[u8]) -> Option<(Vec<u8>, bool)> {
    let walked = walk(wire)?;
    let template_at = POSITIONS_LEN + 2 * walked.ttl_offsets.len();
    let mut bytes = Vec::with_capacity(template_at + wire.len());
    bytes.extend_from_slice(&u16::try_from(template_at).ok()?.to_be_bytes());
    bytes.extend_from_slice(&u16::try_from(walked.question_end).ok()?.to_be_bytes());
    for offset in walked.ttl_offsets {
        bytes.extend_from_slice(&offset.to_be_bytes());
    }
    bytes.extend_from_slice(wire);
    Some((bytes, walked.dnssec_only))
}

impl<'a> Template<'a> {
    /// Where the template starts in `bytes`.
    fn template_at(self) -> usize {
        match *self.bytes {
            [high, low, ..] => usize::from(u16::from_be_bytes([high, low])),
            _ => 0,
        }
    }

    /// Where the question ends in the template.
    fn question_end(self) -> usize {
        match *self.bytes {
            [_, _, high, low, ..] => usize::from(u16::from_be_bytes([high, low])),
            _ => 0,
        }
    }

    /// The reply template: ID 0, the question in lower case, the TTLs as stored.
    fn wire(self) -> &'a [u8] {
        self.bytes.get(self.template_at()..).unwrap_or_default()
    }

    /// The question's wire form (lower case), which is also the start of its key.
    fn question(self) -> &'a [u8] {
        self.wire()
            .get(HEADER_LEN..self.question_end())
            .unwrap_or_default()
    }

    /// Offsets of the TTLs in the template.
    fn ttl_offsets(self) -> impl Iterator<Item = usize> + 'a {
        self.bytes
            .get(POSITIONS_LEN..self.template_at())
            .unwrap_or_default()
            .chunks_exact(2)
            .filter_map(|pair| pair.try_into().ok())
            .map(|pair| usize::from(u16::from_be_bytes(pair)))
    }
}

/// One cached answer, shared by reference count: cloning it is cheap.
///
/// An unsigned answer is one allocation: the count, [`Meta`], and the template of the answer
/// as fetched, DNSSEC records included. A full cache holds `--cache-size` of them and they are
/// most of the server's memory, so every field is as small as it can be (a separate `Arc` and
/// template cost 16 to 32 bytes more per entry).
#[derive(Debug, Clone)]
pub struct Entry(ThinArc<Meta, u8>);

/// An entry's fields besides its full template.
#[derive(Debug)]
struct Meta {
    /// The answer without RRSIG/NSEC/NSEC3, for DO=0 clients, laid out as a [`Template`];
    /// `None` when it would equal the full one. Boxed twice, for a thin pointer: only signed
    /// answers have one, and a slice's fat pointer would take the size class up a step.
    plain: Option<Box<Box<[u8]>>>,
    fetched: Fetched,
    /// Unix seconds when it was fetched.
    stored_at: u64,
    /// Seconds from `stored_at` to expiry: a DNS TTL, so a u32.
    lifetime: u32,
    /// Set while a prefetch or stale refresh runs, so there is never a second one.
    refreshing: AtomicBool,
    /// When the last refresh failed, as seconds after `stored_at` plus one (0: none); a stale
    /// entry that failed recently is served at once instead of making the client wait for
    /// upstream again.
    refresh_failed: AtomicU32,
}

impl Entry {
    /// Builds the entry for an upstream `reply` to `query`, or `None` when it must not be
    /// cached (truncated, SERVFAIL and other errors, negative without SOA, TTL 0, a signature
    /// already expired).
    pub fn from_upstream(
        query: &Query,
        reply: &Message,
        fetched: Fetched,
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
        msg.metadata.authentic_data = reply.metadata.authentic_data;
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
            msg.authorities = reply
                .authorities
                .iter()
                .filter(|r| proves_negative(r))
                .cloned()
                .collect();
            for record in msg.answers.iter_mut().chain(msg.authorities.iter_mut()) {
                record.ttl = match record.record_type() {
                    RecordType::SOA => negative_ttl,
                    _ => record.ttl.min(negative_ttl),
                };
            }
            negative_ttl
        } else {
            msg.authorities = reply.authorities.clone();
            msg.additionals = reply.additionals.clone();
            for record in records_mut(&mut msg) {
                record.ttl = record.ttl.clamp(policy.min_ttl, policy.max_ttl);
            }
            // A wildcard answer's NSEC/NSEC3 proof is part of it: it must not reach TTL 0
            // while the entry is still served.
            let proofs = msg.authorities.iter().filter(|r| is_denial(r));
            msg.answers.iter().chain(proofs).map(|r| r.ttl).min()?
        };
        // A validator rejects a signature past its expiration, so the answer is kept no longer
        // than its first signature lasts (RFC 4035 §5.3.3), and every TTL counts down with it.
        let signed_for = signatures_valid_for(&msg, now)?;
        if signed_for < ttl {
            for record in records_mut(&mut msg) {
                record.ttl = record.ttl.min(signed_for);
            }
        }
        let ttl = ttl.min(signed_for);
        if ttl == 0 {
            return None;
        }
        Entry::from_wire(&msg.to_vec().ok()?, fetched, now, ttl)
    }

    /// The entry for a template; the DO=0 view is derived from it when it differs.
    fn from_wire(wire: &[u8], fetched: Fetched, stored_at: u64, lifetime: u32) -> Option<Entry> {
        let (full, has_dnssec_records) = lay_out(wire)?;
        let plain = if has_dnssec_records {
            Some(Box::new(
                lay_out(&without_dnssec(wire)?)?.0.into_boxed_slice(),
            ))
        } else {
            None
        };
        let meta = Meta {
            plain,
            fetched,
            stored_at,
            lifetime,
            refreshing: AtomicBool::new(false),
            refresh_failed: AtomicU32::new(0),
        };
        Some(Entry(ThinArc::from_header_and_slice(meta, &full)))
    }

    fn meta(&self) -> &Meta {
        &self.0.header.header
    }

    /// The answer as fetched, DNSSEC records included.
    fn full(&self) -> Template<'_> {
        Template {
            bytes: &self.0.slice,
        }
    }

    /// Whether `other` is this very entry, not just an equal one.
    pub fn same(&self, other: &Entry) -> bool {
        std::ptr::eq(self.0.ptr(), other.0.ptr())
    }

    /// The cache key of the entry, the same bytes as [`Key::of`] gives for its question: the
    /// template's question is already in lower case.
    pub fn key(&self) -> Key {
        let mut key = Key::EMPTY;
        for &b in self.full().question() {
            key.push(b);
        }
        if self.meta().fetched.checking_disabled {
            key.push(CD_MARK);
        }
        key
    }

    /// Whether `key` is this entry's key, without building it (the hit path).
    pub fn has_key(&self, key: &Key) -> bool {
        let question = self.full().question();
        match key.as_bytes().split_at_checked(question.len()) {
            Some((head, [])) => head == question && !self.meta().fetched.checking_disabled,
            Some((head, [CD_MARK])) => head == question && self.meta().fetched.checking_disabled,
            _ => false,
        }
    }

    /// Whether the entry has what a client needs that set DO as given: DNSSEC records for
    /// DO=1, which entries fetched without DO (by an older rind) lack.
    pub fn serves(&self, dnssec_ok: bool) -> bool {
        self.meta().fetched.dnssec_ok || !dnssec_ok
    }

    /// How the answer was asked of the upstream.
    pub fn fetched(&self) -> Fetched {
        self.meta().fetched
    }

    /// The bytes kept on disk: format, expiry, store time, flags, template. The store reads
    /// the expiry at bytes 1..9 of every format.
    pub fn encode(&self) -> Vec<u8> {
        let template = self.full().wire();
        let mut flags = 0;
        if self.meta().fetched.dnssec_ok {
            flags |= FLAG_DNSSEC_OK;
        }
        if self.meta().fetched.checking_disabled {
            flags |= FLAG_CHECKING_DISABLED;
        }
        let mut out = Vec::with_capacity(18 + template.len());
        out.push(FORMAT);
        out.extend_from_slice(&self.expires_at().to_be_bytes());
        out.extend_from_slice(&self.meta().stored_at.to_be_bytes());
        out.push(flags);
        out.extend_from_slice(template);
        out
    }

    /// Reads bytes written by [`Entry::encode`], now or before DNSSEC records were kept
    /// (format 1: no flags byte); `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let expires_at = u64::from_be_bytes(bytes.get(1..9)?.try_into().ok()?);
        let stored_at = u64::from_be_bytes(bytes.get(9..17)?.try_into().ok()?);
        // No TTL rind caches is longer (nor is any DNS TTL).
        let lifetime = u32::try_from(expires_at.checked_sub(stored_at)?).ok()?;
        let (fetched, template) = match *bytes.first()? {
            FORMAT_V1 => {
                let fetched = Fetched {
                    dnssec_ok: false,
                    checking_disabled: false,
                };
                (fetched, bytes.get(17..)?)
            }
            FORMAT => {
                let flags = *bytes.get(17)?;
                let fetched = Fetched {
                    dnssec_ok: flags & FLAG_DNSSEC_OK != 0,
                    checking_disabled: flags & FLAG_CHECKING_DISABLED != 0,
                };
                (fetched, bytes.get(18..)?)
            }
            _ => return None,
        };
        Entry::from_wire(template, fetched, stored_at, lifetime)
    }

    /// Response code of the cached answer.
    pub fn rcode(&self) -> ResponseCode {
        ResponseCode::from_low(self.full().wire().get(3).map_or(0, |b| b & 0x0f))
    }

    /// Unix seconds after which the entry is stale.
    pub fn expires_at(&self) -> u64 {
        self.meta().stored_at + u64::from(self.meta().lifetime)
    }

    /// Whether the entry may be served as fresh at `now`.
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.expires_at()
    }

    /// Whether less than a tenth of the entry's lifetime may be left (the prefetch trigger).
    /// `now` is in whole seconds, so the time left is somewhere above `expires_at - now - 1`;
    /// using that lower bound lets entries of 10 s and less trigger in their last second.
    pub fn nearly_expired(&self, now: u64) -> bool {
        let left = self.expires_at().saturating_sub(now).saturating_sub(1);
        left * 10 < u64::from(self.meta().lifetime)
    }

    /// Claims the entry's one refresh; false when another is already running.
    pub fn start_refresh(&self) -> bool {
        !self.meta().refreshing.swap(true, Ordering::AcqRel)
    }

    /// Records that a refresh found no upstream, and frees the refresh slot.
    pub fn refresh_failed(&self, now: u64) {
        let after = now.saturating_sub(self.meta().stored_at).saturating_add(1);
        let after = u32::try_from(after).unwrap_or(u32::MAX);
        self.meta().refresh_failed.store(after, Ordering::Relaxed);
        self.meta().refreshing.store(false, Ordering::Release);
    }

    /// Whether a refresh failed within the last `window` seconds.
    pub fn failed_within(&self, now: u64, window: u64) -> bool {
        match self.meta().refresh_failed.load(Ordering::Relaxed) {
            0 => false,
            after => now.saturating_sub(self.meta().stored_at + u64::from(after - 1)) < window,
        }
    }

    /// The question of the entry (lower case), for listings.
    pub fn question(&self) -> Option<Query> {
        Query::read(&mut BinDecoder::new(self.full().question())).ok()
    }

    /// The cached answer as records without DNSSEC records, TTLs counted down to `now` (for a
    /// local CNAME's target, which is written together with the unsigned local records).
    pub fn answer(&self, now: u64) -> Option<Answer> {
        let request = Request {
            metadata: Metadata::new(0, MessageType::Query, OpCode::Query),
            query: self.question()?,
            edns: None,
            max_size: u16::MAX,
            transport: Transport::Tcp,
            signed: false,
        };
        let msg = Message::from_vec(&self.reply(&request, now, false)?).ok()?;
        Some(Answer {
            rcode: msg.metadata.response_code,
            authoritative: false,
            authentic_data: false,
            answers: msg.answers,
            authorities: msg.authorities,
            additionals: msg.additionals,
        })
    }

    /// The reply to `request` at `now`, TTLs counted down, or with the stale TTL and an
    /// Extended DNS Error when `stale`. `None` if the question does not fit the template,
    /// which a matching key rules out.
    pub fn reply(&self, request: &Request, now: u64, stale: bool) -> Option<Vec<u8>> {
        let elapsed = u32::try_from(now.saturating_sub(self.meta().stored_at)).unwrap_or(u32::MAX);
        let view = match &self.meta().plain {
            Some(plain) if !request.dnssec_ok() => Template { bytes: plain },
            _ => self.full(),
        };
        let template = view.wire();
        let question_end = view.question_end();
        let mut out = Vec::with_capacity(template.len() + OPT_LEN + EDE_LEN);
        out.extend_from_slice(template);

        let meta = &request.metadata;
        put(&mut out, 0, &meta.id.to_be_bytes())?;
        // QR=1, opcode QUERY, AA=0, TC=0, RD copied; RA=1, AD as fetched for clients that
        // understand it (never on a stale answer: its signatures may have expired since), CD
        // copied, rcode.
        let fetched_ad = template.get(3).is_some_and(|b| b & AD_BIT != 0);
        let ad = if fetched_ad && request.wants_ad() && !stale {
            AD_BIT
        } else {
            0
        };
        let flags = [
            0x80 | u8::from(meta.recursion_desired),
            0x80 | ad | u8::from(meta.checking_disabled) << 4 | self.rcode().low(),
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

        for offset in view.ttl_offsets() {
            let stored = u32::from_be_bytes(template.get(offset..offset + 4)?.try_into().ok()?);
            let ttl = if stale {
                STALE_TTL
            } else {
                stored.saturating_sub(elapsed)
            };
            put(&mut out, offset, &ttl.to_be_bytes())?;
        }

        let dnssec_ok = request.dnssec_ok();
        if request.edns.is_some() {
            push_opt(&mut out, stale, dnssec_ok)?;
        }
        if out.len() > usize::from(request.max_size) {
            out.truncate(question_end);
            put(&mut out, ANCOUNT, &[0; 6])?;
            put(&mut out, 2, &[flags[0] | 0x02])?;
            if request.edns.is_some() {
                push_opt(&mut out, stale, dnssec_ok)?;
            }
        }
        Some(out)
    }
}

/// Every record of `msg`, in all three sections.
fn records_mut(msg: &mut Message) -> impl Iterator<Item = &mut Record> {
    msg.answers
        .iter_mut()
        .chain(msg.authorities.iter_mut())
        .chain(msg.additionals.iter_mut())
}

/// Whether an authority record belongs with a negative answer: the SOA, the NSEC/NSEC3
/// records that prove the name or type absent, and their signatures (RFC 4035 §3.1.3).
fn proves_negative(record: &Record) -> bool {
    match record.record_type() {
        RecordType::SOA => true,
        RecordType::RRSIG if type_covered(record) == Some(RecordType::SOA) => true,
        _ => is_denial(record),
    }
}

/// Whether a record is an NSEC or NSEC3 record, or a signature over one.
fn is_denial(record: &Record) -> bool {
    match record.record_type() {
        RecordType::NSEC | RecordType::NSEC3 => true,
        RecordType::RRSIG => matches!(
            type_covered(record),
            Some(RecordType::NSEC | RecordType::NSEC3)
        ),
        _ => false,
    }
}

/// The RDATA of an RRSIG record: hickory keeps it opaque without its DNSSEC feature.
fn rrsig_rdata(record: &Record) -> Option<&[u8]> {
    match &record.data {
        RData::Unknown { rdata, .. } => Some(&rdata.anything),
        _ => None,
    }
}

/// The type an RRSIG record signs (RFC 4034 §3.1: its first two bytes).
fn type_covered(record: &Record) -> Option<RecordType> {
    let rdata = rrsig_rdata(record)?;
    Some(RecordType::from(u16::from_be_bytes(
        rdata.get(0..2)?.try_into().ok()?,
    )))
}

/// Seconds until the first valid RRSIG in `msg` expires (`u32::MAX` when it has none);
/// `None` when some RRset's signatures have all expired, or one cannot be read. An expired
/// signature beside a valid one over the same RRset (a key rollover) is ignored: the
/// validator uses the valid one. Expiration is serial-number time, 32 bits that wrap
/// (RFC 4034 §3.1.5).
fn signatures_valid_for(msg: &Message, now: u64) -> Option<u32> {
    let now = now as u32;
    let mut least = u32::MAX;
    // (owner, type covered, signed by at least one valid signature)
    let mut rrsets: Vec<(&Name, RecordType, bool)> = Vec::new();
    for record in msg
        .answers
        .iter()
        .chain(&msg.authorities)
        .chain(&msg.additionals)
        .filter(|r| r.record_type() == RecordType::RRSIG)
    {
        let rdata = rrsig_rdata(record)?;
        let covered = type_covered(record)?;
        let expiration = u32::from_be_bytes(rdata.get(8..12)?.try_into().ok()?);
        // Serial-number arithmetic: the wrapped difference read as signed.
        let left = u32::try_from(expiration.wrapping_sub(now) as i32)
            .ok()
            .filter(|&s| s > 0);
        if let Some(left) = left {
            least = least.min(left);
        }
        match rrsets
            .iter_mut()
            .find(|(owner, rtype, _)| *rtype == covered && **owner == record.name)
        {
            Some((_, _, valid)) => *valid |= left.is_some(),
            None => rrsets.push((&record.name, covered, left.is_some())),
        }
    }
    rrsets.iter().all(|&(_, _, valid)| valid).then_some(least)
}

/// `wire` re-encoded without the records a DO=0 client must not get.
fn without_dnssec(wire: &[u8]) -> Option<Vec<u8>> {
    let mut msg = Message::from_vec(wire).ok()?;
    let qtype = Some(msg.queries.first()?.query_type);
    let keep = |asked| move |r: &Record| !is_dnssec_only(r.record_type(), asked);
    msg.answers.retain(keep(qtype));
    msg.authorities.retain(keep(None));
    msg.additionals.retain(keep(None));
    msg.to_vec().ok()
}

/// OPT pseudo-record: root name, type 41, our payload size, version 0, DO as the client's.
const OPT_LEN: usize = 11;
/// EDNS option code of Extended DNS Errors (RFC 8914) with a two-byte info-code.
const EDE_LEN: usize = 6;

fn push_opt(out: &mut Vec<u8>, stale: bool, dnssec_ok: bool) -> Option<()> {
    let rdlen: u16 = if stale { EDE_LEN as u16 } else { 0 };
    out.push(0);
    out.extend_from_slice(&41u16.to_be_bytes());
    out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
    // Extended rcode, version 0, then the flags: DO is their top bit (RFC 3225).
    out.extend_from_slice(&[0, 0, u8::from(dnssec_ok) << 7, 0]);
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

/// What [`walk`] learns of a template.
struct Walked {
    /// Where the question ends.
    question_end: usize,
    /// The offset of every record's TTL.
    ttl_offsets: Vec<u16>,
    /// Whether a record is one a DO=0 client must not get.
    dnssec_only: bool,
}

/// Walks a template. `None` unless it is one question followed by exactly the records its
/// header counts.
fn walk(t: &[u8]) -> Option<Walked> {
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(t.get(at..at + 2)?.try_into().ok()?))
    };
    let count = |at: usize| u16_at(at).map(usize::from);
    if count(4)? != 1 {
        return None;
    }
    let answers = count(6)?;
    let records = answers + count(8)? + count(10)?;
    let question_end = skip_name(t, HEADER_LEN)? + 4;
    let qtype = RecordType::from(u16_at(question_end - 4)?);
    let mut pos = question_end;
    let mut ttl_offsets = Vec::with_capacity(records);
    let mut dnssec_only = false;
    for index in 0..records {
        let type_at = skip_name(t, pos)?;
        let asked = (index < answers).then_some(qtype);
        dnssec_only |= is_dnssec_only(RecordType::from(u16_at(type_at)?), asked);
        let ttl_at = type_at + 4;
        let rdlen = count(ttl_at + 4)?;
        ttl_offsets.push(u16::try_from(ttl_at).ok()?);
        pos = ttl_at + 6 + rdlen;
    }
    (pos == t.len()).then_some(Walked {
        question_end,
        ttl_offsets,
        dnssec_only,
    })
}

/// Returns the offset just past the (possibly compressed) name at `pos`.
pub(crate) fn skip_name(t: &[u8], mut pos: usize) -> Option<usize> {
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
    use crate::request::{ClientEdns, Transport};

    const FETCHED: Fetched = Fetched {
        dnssec_ok: true,
        checking_disabled: false,
    };

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
            edns: edns.then_some(ClientEdns::default()),
            max_size,
            transport: Transport::Udp,
            signed: false,
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

    /// The entry for `reply` to `q`, fetched with DO=1 at `now`; it must be cacheable.
    fn cached(q: &Query, reply: &Message, now: u64) -> Entry {
        Entry::from_upstream(q, reply, FETCHED, &POLICY, now).expect("cacheable")
    }

    fn parse(bytes: &[u8]) -> Message {
        Message::from_vec(bytes).expect("reply parses")
    }

    #[test]
    fn an_entry_is_a_pointer_to_a_32_byte_head_and_its_template() {
        // One allocation: the count, `Meta`, the slice's length, the template. A million
        // cached answers of ~64 template bytes then sit in jemalloc's 112-byte class (they took
        // 128: a 64-byte `Arc<Entry>` and a separate template).
        assert_eq!(std::mem::size_of::<Entry>(), 8);
        assert!(
            std::mem::size_of::<Meta>() <= 32,
            "Meta is {} bytes",
            std::mem::size_of::<Meta>()
        );
    }

    #[test]
    fn hit_patches_id_case_and_ttls() {
        let q = Query::query(name("www.example.com."), RecordType::A);
        let entry = cached(&q, &upstream_reply("www.example.com.", &[300, 200]), 1_000);
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
        let entry = cached(&q, &upstream_reply("a.example.", &[60]), 0);
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
        let e = cached(&q, &nxdomain("nx.example.", 900, 60), 0);
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
        let e = Entry::from_upstream(&q, &nxdomain("nx.example.", 900, 600), FETCHED, &capped, 0)
            .expect("cacheable");
        assert_eq!(e.expires_at(), 10);
    }

    #[test]
    fn uncacheable_answers() {
        let q = Query::query(name("x.example."), RecordType::A);
        let mut servfail = upstream_reply("x.example.", &[60]);
        servfail.metadata.response_code = ResponseCode::ServFail;
        assert!(Entry::from_upstream(&q, &servfail, FETCHED, &POLICY, 0).is_none());
        let mut nosoa = nxdomain("x.example.", 60, 60);
        nosoa.authorities.clear();
        assert!(Entry::from_upstream(&q, &nosoa, FETCHED, &POLICY, 0).is_none());
        assert!(
            Entry::from_upstream(&q, &upstream_reply("x.example.", &[0]), FETCHED, &POLICY, 0)
                .is_none()
        );
        let mut truncated = upstream_reply("x.example.", &[60]);
        truncated.metadata.truncation = true;
        assert!(Entry::from_upstream(&q, &truncated, FETCHED, &POLICY, 0).is_none());
    }

    #[test]
    fn ttl_clamps() {
        let q = Query::query(name("c.example."), RecordType::A);
        let policy = TtlPolicy {
            min_ttl: 100,
            max_ttl: 1_000,
            ..POLICY
        };
        let low =
            Entry::from_upstream(&q, &upstream_reply("c.example.", &[5]), FETCHED, &policy, 0)
                .expect("cacheable");
        assert_eq!(low.expires_at(), 100);
        let high = Entry::from_upstream(
            &q,
            &upstream_reply("c.example.", &[9_999]),
            FETCHED,
            &policy,
            0,
        )
        .expect("cacheable");
        assert_eq!(high.expires_at(), 1_000);
        let zero =
            Entry::from_upstream(&q, &upstream_reply("c.example.", &[0]), FETCHED, &policy, 0)
                .expect("clamped up");
        assert_eq!(zero.expires_at(), 100);
    }

    #[test]
    fn too_big_for_the_client_is_truncated() {
        let q = Query::query(name("big.example."), RecordType::A);
        let ttls = vec![300; 60];
        let entry = cached(&q, &upstream_reply("big.example.", &ttls), 0);
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
        let entry = cached(&q, &upstream_reply("r.example.", &[60]), 5);
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
        let entry = cached(&q, &upstream_reply("t.example.", &[100]), 0);
        let answer = entry.answer(30).expect("answer");
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.answers[0].ttl, 70);
        assert!(!answer.authoritative);
    }

    #[test]
    fn keys_ignore_case() {
        let a = Key::of(
            &Query::query(name("WWW.Example.com."), RecordType::A),
            false,
        );
        let b = Key::of(
            &Query::query(name("www.example.COM."), RecordType::A),
            false,
        );
        let c = Key::of(
            &Query::query(name("www.example.com."), RecordType::AAAA),
            false,
        );
        let d = Key::of(&Query::query(name("www.example.com."), RecordType::A), true);
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert_ne!(a.as_bytes(), c.as_bytes());
        assert_ne!(a.as_bytes(), d.as_bytes());
    }

    #[test]
    fn an_entry_knows_its_own_key() {
        // The memory cache finds entries by a hash and then compares this: it must be the
        // exact key of the question, whatever the letter case it was asked in.
        let q = Query::query(name("MiXeD.Example."), RecordType::A);
        let entry = cached(&q, &upstream_reply("MiXeD.Example.", &[60]), 0);
        assert!(entry.key() == Key::of(&q, false));
        assert!(entry.has_key(&Key::of(&q, false)));
        assert!(!entry.has_key(&Key::of(&q, true)));
        let back = Entry::decode(&entry.encode()).expect("decodes");
        assert!(back.key() == Key::of(&q, false));
        let other = Query::query(name("mixed.example."), RecordType::AAAA);
        assert!(entry.key() != Key::of(&other, false));
        assert!(!entry.has_key(&Key::of(&other, false)));

        let unchecked = Fetched {
            checking_disabled: true,
            ..FETCHED
        };
        let reply = upstream_reply("MiXeD.Example.", &[60]);
        let cd = Entry::from_upstream(&q, &reply, unchecked, &POLICY, 0).expect("cacheable");
        assert!(cd.key() == Key::of(&q, true));
        assert!(cd.has_key(&Key::of(&q, true)));
        assert!(!cd.has_key(&Key::of(&q, false)));
        let back = Entry::decode(&cd.encode()).expect("decodes");
        assert!(back.key() == Key::of(&q, true));
    }

    #[test]
    fn a_name_prefix_starts_the_keys_of_that_name_only() {
        let prefix = Key::name_prefix(&name("WWW.example.com."));
        for rtype in [RecordType::A, RecordType::AAAA, RecordType::MX] {
            for cd in [false, true] {
                let key = Key::of(&Query::query(name("www.Example.com."), rtype), cd);
                assert!(key.as_bytes().starts_with(&prefix), "{rtype}");
            }
        }
        for other in ["www.example.com.evil.", "www.example.co.", "example.com."] {
            let key = Key::of(&Query::query(name(other), RecordType::A), true);
            assert!(!key.as_bytes().starts_with(&prefix), "{other}");
        }
    }

    /// An RRSIG over `covered`, expiring at `expiration` (opaque RDATA, as hickory reads it
    /// here: its DNSSEC feature is off).
    fn rrsig(owner: &str, covered: RecordType, expiration: u32, ttl: u32) -> Record {
        let mut rdata = u16::from(covered).to_be_bytes().to_vec();
        rdata.extend_from_slice(&[13, 2]);
        rdata.extend_from_slice(&ttl.to_be_bytes());
        rdata.extend_from_slice(&expiration.to_be_bytes());
        rdata.extend_from_slice(&0u32.to_be_bytes());
        rdata.extend_from_slice(&[0x12, 0x34, 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0]);
        rdata.extend_from_slice(&[0xab; 64]);
        let data = RData::Unknown {
            code: RecordType::RRSIG,
            rdata: hickory_proto::rr::rdata::NULL::with(rdata),
        };
        Record::from_rdata(name(owner), ttl, data)
    }

    fn nsec(owner: &str, ttl: u32) -> Record {
        let data = RData::Unknown {
            code: RecordType::NSEC,
            rdata: hickory_proto::rr::rdata::NULL::with(vec![
                1, b'z', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 0, 1, 0x40,
            ]),
        };
        Record::from_rdata(name(owner), ttl, data)
    }

    fn types(records: &[Record]) -> Vec<RecordType> {
        records.iter().map(Record::record_type).collect()
    }

    fn with_do(mut request: Request) -> Request {
        request.edns = Some(ClientEdns { dnssec_ok: true });
        request
    }

    /// Far enough ahead that no test's clock reaches it.
    const NEVER: u32 = 2_000_000_000;

    #[test]
    fn one_entry_serves_do_0_without_and_do_1_with_signatures() {
        let q = Query::query(name("s.example."), RecordType::A);
        let mut reply = upstream_reply("s.example.", &[300]);
        reply.metadata.authentic_data = true;
        reply.add_answer(rrsig("s.example.", RecordType::A, NEVER, 300));
        let entry = cached(&q, &reply, 1_000);

        let plain = parse(
            &entry
                .reply(&request("S.example.", true, 1232), 1_010, false)
                .expect("reply"),
        );
        assert_eq!(types(&plain.answers), [RecordType::A]);
        assert!(
            !plain.metadata.authentic_data,
            "no DO, no AD: AD stays clear"
        );
        assert_eq!(plain.edns.map(|e| e.flags().dnssec_ok), Some(false));

        let signed = parse(
            &entry
                .reply(&with_do(request("S.example.", true, 1232)), 1_010, false)
                .expect("reply"),
        );
        assert_eq!(types(&signed.answers), [RecordType::A, RecordType::RRSIG]);
        assert!(signed.answers.iter().all(|r| r.ttl == 290));
        assert!(signed.metadata.authentic_data);
        assert_eq!(signed.edns.map(|e| e.flags().dnssec_ok), Some(true));
        // The signature's bytes go out exactly as they came in.
        assert_eq!(signed.answers[1].data, reply.answers[1].data);

        let mut ad_only = request("s.example.", false, 512);
        ad_only.metadata.authentic_data = true;
        let msg = parse(&entry.reply(&ad_only, 1_010, false).expect("reply"));
        assert!(msg.metadata.authentic_data);
        assert_eq!(types(&msg.answers), [RecordType::A]);

        // The disk copy gives back both views.
        let back = Entry::decode(&entry.encode()).expect("decodes");
        let msg = parse(
            &back
                .reply(&request("s.example.", false, 512), 1_010, false)
                .expect("reply"),
        );
        assert_eq!(types(&msg.answers), [RecordType::A]);
        let msg = parse(
            &back
                .reply(&with_do(request("s.example.", true, 1232)), 1_010, false)
                .expect("reply"),
        );
        assert_eq!(types(&msg.answers), [RecordType::A, RecordType::RRSIG]);
    }

    #[test]
    fn negative_answers_keep_their_proofs_for_do_1_only() {
        let q = Query::query(name("nx.example."), RecordType::A);
        let mut reply = nxdomain("nx.example.", 900, 60);
        reply.add_authority(rrsig("example.", RecordType::SOA, NEVER, 900));
        reply.add_authority(nsec("example.", 900));
        reply.add_authority(rrsig("example.", RecordType::NSEC, NEVER, 900));
        // A referral-style NS with its signature proves nothing here and is not kept.
        reply.add_authority(Record::from_rdata(
            name("example."),
            900,
            RData::NS(hickory_proto::rr::rdata::NS(name("ns.example."))),
        ));
        reply.add_authority(rrsig("example.", RecordType::NS, NEVER, 900));
        let entry = cached(&q, &reply, 0);
        assert_eq!(entry.expires_at(), 60);

        let signed = parse(
            &entry
                .reply(&with_do(request("nx.example.", true, 1232)), 20, false)
                .expect("reply"),
        );
        assert_eq!(signed.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(
            types(&signed.authorities),
            [
                RecordType::SOA,
                RecordType::RRSIG,
                RecordType::NSEC,
                RecordType::RRSIG
            ]
        );
        assert!(
            signed.authorities.iter().all(|r| r.ttl == 40),
            "all count down with the SOA"
        );

        let plain = parse(
            &entry
                .reply(&request("nx.example.", true, 1232), 20, false)
                .expect("reply"),
        );
        assert_eq!(types(&plain.authorities), [RecordType::SOA]);
    }

    #[test]
    fn an_answer_is_kept_no_longer_than_its_signatures() {
        let q = Query::query(name("e.example."), RecordType::A);
        let mut reply = upstream_reply("e.example.", &[3_600]);
        reply.add_answer(rrsig("e.example.", RecordType::A, 1_100, 3_600));
        let entry = cached(&q, &reply, 1_000);
        assert_eq!(entry.expires_at(), 1_100);
        let msg = parse(
            &entry
                .reply(&with_do(request("e.example.", true, 1232)), 1_000, false)
                .expect("reply"),
        );
        assert!(msg.answers.iter().all(|r| r.ttl == 100));

        // Already expired, or read wrapped around the 32-bit clock: not cached at all.
        for expiration in [999, 1_000, 1_000u32.wrapping_sub(1 << 31)] {
            let mut reply = upstream_reply("e.example.", &[3_600]);
            reply.add_answer(rrsig("e.example.", RecordType::A, expiration, 3_600));
            assert!(
                Entry::from_upstream(&q, &reply, FETCHED, &POLICY, 1_000).is_none(),
                "{expiration}"
            );
        }
    }

    #[test]
    fn entries_from_before_dnssec_serve_do_0_clients_only() {
        let q = Query::query(name("old.example."), RecordType::A);
        let entry = cached(&q, &upstream_reply("old.example.", &[60]), 5);
        // Format 1: no flags byte, otherwise the same layout.
        let encoded = entry.encode();
        let mut v1 = vec![FORMAT_V1];
        v1.extend_from_slice(&encoded[1..17]);
        v1.extend_from_slice(&encoded[18..]);
        let old = Entry::decode(&v1).expect("format 1 still reads");
        assert_eq!(old.expires_at(), 65);
        assert!(old.serves(false));
        assert!(!old.serves(true));
        assert!(entry.serves(true));
    }

    #[test]
    fn a_stale_answer_never_claims_ad() {
        let q = Query::query(name("st.example."), RecordType::A);
        let mut reply = upstream_reply("st.example.", &[60]);
        reply.metadata.authentic_data = true;
        reply.add_answer(rrsig("st.example.", RecordType::A, NEVER, 60));
        let entry = cached(&q, &reply, 0);
        let client = with_do(request("st.example.", true, 1232));
        assert!(
            parse(&entry.reply(&client, 10, false).expect("fresh"))
                .metadata
                .authentic_data
        );
        let stale = parse(&entry.reply(&client, 100, true).expect("stale"));
        assert!(!stale.metadata.authentic_data);
        assert_eq!(types(&stale.answers), [RecordType::A, RecordType::RRSIG]);
    }

    #[test]
    fn a_signed_answer_too_big_for_udp_is_truncated_for_do_1_only() {
        let q = Query::query(name("tc.example."), RecordType::A);
        let mut reply = upstream_reply("tc.example.", &[300; 20]);
        for _ in 0..6 {
            reply.add_answer(rrsig("tc.example.", RecordType::A, NEVER, 300));
        }
        let entry = cached(&q, &reply, 0);
        let signed = parse(
            &entry
                .reply(&with_do(request("tc.example.", true, 512)), 0, false)
                .expect("reply"),
        );
        assert!(
            signed.metadata.truncation,
            "the signed answer does not fit 512 bytes"
        );
        assert!(signed.answers.is_empty());
        assert_eq!(signed.edns.map(|e| e.flags().dnssec_ok), Some(true));
        let plain = parse(
            &entry
                .reply(&request("tc.example.", true, 512), 0, false)
                .expect("reply"),
        );
        assert!(!plain.metadata.truncation, "the DO=0 view fits");
        assert_eq!(plain.answers.len(), 20);
    }

    #[test]
    fn a_wildcard_answer_keeps_its_proof_and_lives_no_longer_than_it() {
        // A wildcard expansion: the NSEC in authority proves no closer name exists.
        let q = Query::query(name("x.wild.example."), RecordType::A);
        let mut reply = upstream_reply("x.wild.example.", &[300]);
        reply.add_answer(rrsig("x.wild.example.", RecordType::A, NEVER, 300));
        reply.add_authority(nsec("w.example.", 30));
        reply.add_authority(rrsig("w.example.", RecordType::NSEC, NEVER, 30));
        let entry = cached(&q, &reply, 0);
        assert_eq!(entry.expires_at(), 30, "the proof's TTL bounds the entry");
        let signed = parse(
            &entry
                .reply(&with_do(request("x.wild.example.", true, 1232)), 10, false)
                .expect("reply"),
        );
        assert_eq!(
            types(&signed.authorities),
            [RecordType::NSEC, RecordType::RRSIG]
        );
        assert!(signed.authorities.iter().all(|r| r.ttl == 20));
        let plain = parse(
            &entry
                .reply(&request("x.wild.example.", true, 1232), 10, false)
                .expect("reply"),
        );
        assert!(plain.authorities.is_empty());
    }

    #[test]
    fn asked_for_by_type_spares_the_answer_section_only() {
        // An RRSIG question whose answer is NODATA: the signatures in authority are not what
        // the client asked for, so a DO=0 client gets the SOA alone.
        let mut q = Query::query(name("nd.example."), RecordType::A);
        q.query_type = RecordType::RRSIG;
        let mut reply = nxdomain("nd.example.", 300, 300);
        reply.metadata.response_code = ResponseCode::NoError;
        reply.queries[0].query_type = RecordType::RRSIG;
        reply.add_authority(rrsig("example.", RecordType::SOA, NEVER, 300));
        reply.add_authority(nsec("example.", 300));
        reply.add_authority(rrsig("example.", RecordType::NSEC, NEVER, 300));
        let entry = cached(&q, &reply, 0);
        let mut client = request("nd.example.", true, 1232);
        client.query.query_type = RecordType::RRSIG;
        let plain = parse(&entry.reply(&client, 0, false).expect("reply"));
        assert_eq!(types(&plain.authorities), [RecordType::SOA]);
    }

    #[test]
    fn an_expired_signature_beside_a_valid_one_does_not_stop_caching() {
        // A key rollover: the old key's signature has expired, the new one's has not.
        let q = Query::query(name("roll.example."), RecordType::A);
        let mut reply = upstream_reply("roll.example.", &[3_600]);
        reply.add_answer(rrsig("roll.example.", RecordType::A, 900, 3_600));
        reply.add_answer(rrsig("roll.example.", RecordType::A, 1_500, 3_600));
        let entry = cached(&q, &reply, 1_000);
        assert_eq!(entry.expires_at(), 1_500);

        // But an RRset whose signatures have all expired is not cached, even beside a valid
        // one over another RRset.
        let mut reply = upstream_reply("roll.example.", &[3_600]);
        reply.add_answer(rrsig("roll.example.", RecordType::A, 900, 3_600));
        reply.add_authority(nsec("example.", 3_600));
        reply.add_authority(rrsig("example.", RecordType::NSEC, 1_500, 3_600));
        assert!(Entry::from_upstream(&q, &reply, FETCHED, &POLICY, 1_000).is_none());
    }
}
