//! TSIG (RFC 8945): shared-key signatures on zone transfers and NOTIFY.
//!
//! Written here on RustCrypto's HMAC rather than taken from hickory-proto, whose TSIG code
//! needs its DNSSEC feature, and that feature makes hickory parse (and re-encode) RRSIG and
//! NSEC records that rind must pass through byte for byte.
//!
//! A signature covers the message as it was before the TSIG record was added (its ID the
//! original one, its ARCOUNT without the TSIG), then the TSIG variables. A response's covers
//! the request's MAC first; each later message of a multi-message response (AXFR) covers the
//! previous message's MAC, the message, and only the timers (§5.3.1).

use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::Header;
use hickory_proto::op::Query;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};

/// Seconds a signature's time may be off from ours (RFC 8945 §10 recommends 300).
pub const FUDGE: u16 = 300;

/// TSIG error: the key is not known (RFC 8945 §3).
pub const BADKEY: u16 = 17;
/// TSIG error: the MAC does not verify.
pub const BADSIG: u16 = 16;
/// TSIG error: the signature's time is outside the fudge.
pub const BADTIME: u16 = 18;

/// The MAC algorithms rind signs and checks with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// hmac-sha256, the one every implementation has.
    HmacSha256,
    /// hmac-sha384.
    HmacSha384,
    /// hmac-sha512.
    HmacSha512,
}

impl Algorithm {
    /// The algorithm's name as it goes on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256.",
            Algorithm::HmacSha384 => "hmac-sha384.",
            Algorithm::HmacSha512 => "hmac-sha512.",
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        match name.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" => Some(Algorithm::HmacSha256),
            "hmac-sha384" => Some(Algorithm::HmacSha384),
            "hmac-sha512" => Some(Algorithm::HmacSha512),
            _ => None,
        }
    }

    fn mac(self, secret: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(secret: &[u8], data: &[u8]) -> Vec<u8> {
            // HMAC takes a key of any length, so this never fails.
            match <M as hmac::digest::KeyInit>::new_from_slice(secret) {
                Ok(mut mac) => {
                    mac.update(data);
                    mac.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        }
        match self {
            Algorithm::HmacSha256 => run::<Hmac<Sha256>>(secret, data),
            Algorithm::HmacSha384 => run::<Hmac<Sha384>>(secret, data),
            Algorithm::HmacSha512 => run::<Hmac<Sha512>>(secret, data),
        }
    }

    fn verify(self, secret: &[u8], data: &[u8], tag: &[u8]) -> bool {
        let expected = self.mac(secret, data);
        // Truncated MACs (RFC 8945 §5.2.2.1) are refused: they are weaker, and nothing needs them.
        !expected.is_empty() && bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_slice(), tag))
    }
}

/// One shared key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// The key's name, as both sides know it.
    pub name: Name,
    /// Its algorithm.
    pub algorithm: Algorithm,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret, not even in a debug log.
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl FromStr for Key {
    type Err = String;

    /// `NAME:ALGORITHM:BASE64`, as `--tsig-key` takes it.
    fn from_str(s: &str) -> Result<Key, String> {
        let mut parts = s.splitn(3, ':');
        let (Some(name), Some(algorithm), Some(secret)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(
                "a TSIG key is NAME:ALGORITHM:BASE64, such as transfer:hmac-sha256:c2VjcmV0"
                    .to_string(),
            );
        };
        let name = crate::records::rdata::parse_zone_name(name)
            .map_err(|e| format!("TSIG key name: {}", e.0))?;
        let algorithm = Algorithm::from_name(algorithm).ok_or_else(|| {
            format!(
                "TSIG algorithm {algorithm:?} is not one of hmac-sha256, hmac-sha384, hmac-sha512"
            )
        })?;
        let secret = data_encoding::BASE64
            .decode(secret.trim().as_bytes())
            .map_err(|e| format!("TSIG key {name}: the secret is not base64 ({e})"))?;
        if secret.is_empty() {
            return Err(format!("TSIG key {name}: the secret is empty"));
        }
        Ok(Key {
            name,
            algorithm,
            secret,
        })
    }
}

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<Arc<Key>>,
}

impl Keyring {
    /// A keyring of `keys`.
    pub fn new(keys: Vec<Key>) -> Keyring {
        Keyring {
            keys: keys.into_iter().map(Arc::new).collect(),
        }
    }

    /// The key named `name`.
    pub fn get(&self, name: &Name) -> Option<&Arc<Key>> {
        self.keys.iter().find(|k| k.name == *name)
    }
}

/// What the TSIG of a request says.
#[derive(Debug)]
pub enum Verdict {
    /// No TSIG record.
    Unsigned,
    /// Signed with `key`; a response is signed over `mac`.
    Signed {
        /// The key.
        key: Arc<Key>,
        /// The request's MAC.
        mac: Vec<u8>,
    },
    /// Signed, but not acceptably: answer NOTAUTH with this TSIG error (RFC 8945 §5.2).
    Failed {
        /// BADKEY, BADSIG or BADTIME.
        error: u16,
        /// The key it named.
        key_name: Name,
    },
}

/// The parts of a signed message that verification needs.
struct Signed<'a> {
    /// The message as it was signed: ID restored, ARCOUNT without the TSIG.
    unsigned: Vec<u8>,
    key_name: Name,
    algorithm: String,
    time: u64,
    fudge: u16,
    mac: &'a [u8],
    error: u16,
    other: &'a [u8],
}

/// Checks the TSIG of `packet` (a request) against `keyring`.
pub fn verify_request(keyring: &Keyring, packet: &[u8], now: u64) -> Verdict {
    let Some(signed) = split(packet) else {
        return Verdict::Unsigned;
    };
    let Some(key) = keyring
        .get(&signed.key_name)
        .filter(|k| Algorithm::from_name(&signed.algorithm) == Some(k.algorithm))
    else {
        return Verdict::Failed {
            error: BADKEY,
            key_name: signed.key_name,
        };
    };
    let mut tbs = signed.unsigned.clone();
    variables(&mut tbs, &signed, true);
    if !key.algorithm.verify(&key.secret, &tbs, signed.mac) {
        return Verdict::Failed {
            error: BADSIG,
            key_name: signed.key_name,
        };
    }
    if now.abs_diff(signed.time) > u64::from(signed.fudge) {
        return Verdict::Failed {
            error: BADTIME,
            key_name: signed.key_name,
        };
    }
    Verdict::Signed {
        key: Arc::clone(key),
        mac: signed.mac.to_vec(),
    }
}

/// Signs messages one after another: a request, or the messages of one response.
#[derive(Debug)]
pub struct Signer {
    key: Arc<Key>,
    /// The MAC the next signature covers first: the request's for a response's first
    /// message, the previous message's after that, none for a request.
    previous: Option<Vec<u8>>,
    first: bool,
    error: u16,
}

impl Signer {
    /// Signs a request (NOTIFY, SOA, IXFR/AXFR) with `key`.
    pub fn request(key: Arc<Key>) -> Signer {
        Signer {
            key,
            previous: None,
            first: true,
            error: 0,
        }
    }

    /// Signs the response to a request that carried `request_mac`.
    pub fn response(key: Arc<Key>, request_mac: Vec<u8>) -> Signer {
        Signer {
            key,
            previous: Some(request_mac),
            first: true,
            error: 0,
        }
    }

    /// Adds a TSIG record to the encoded message `message` (after everything else in it).
    pub fn sign(&mut self, message: &mut Vec<u8>, now: u64) {
        let mut tbs = Vec::with_capacity(message.len() + 128);
        if let Some(previous) = &self.previous {
            tbs.extend_from_slice(&u16_len(previous.len()).to_be_bytes());
            tbs.extend_from_slice(previous);
        }
        tbs.extend_from_slice(message);
        let parts = Signed {
            unsigned: Vec::new(),
            key_name: self.key.name.clone(),
            algorithm: self.key.algorithm.name().to_string(),
            time: now,
            fudge: FUDGE,
            mac: &[],
            error: self.error,
            other: &[],
        };
        variables(&mut tbs, &parts, self.first);
        let mac = self.key.algorithm.mac(&self.key.secret, &tbs);
        append_tsig(message, &parts, &mac, message_id(message));
        // A request's signer next checks the first message of the response, which carries
        // the full variables; a response's later messages carry only the timers.
        self.first = self.previous.is_none();
        self.previous = Some(mac);
    }

    /// Checks the TSIG of `packet`, a message of the response to what this signer signed
    /// (the first one must be signed; RFC 8945 §5.3.1 lets later ones skip, which rind's
    /// peers do not). Returns whether it verifies.
    pub fn verify_response(&mut self, packet: &[u8], now: u64) -> bool {
        let Some(signed) = split(packet) else {
            return false;
        };
        if signed.key_name != self.key.name
            || Algorithm::from_name(&signed.algorithm) != Some(self.key.algorithm)
            || signed.error != 0
        {
            return false;
        }
        let mut tbs = Vec::with_capacity(packet.len() + 64);
        if let Some(previous) = &self.previous {
            tbs.extend_from_slice(&u16_len(previous.len()).to_be_bytes());
            tbs.extend_from_slice(previous);
        }
        tbs.extend_from_slice(&signed.unsigned);
        let first = self.first;
        variables(&mut tbs, &signed, first);
        if !self
            .key
            .algorithm
            .verify(&self.key.secret, &tbs, signed.mac)
            || now.abs_diff(signed.time) > u64::from(signed.fudge)
        {
            return false;
        }
        self.previous = Some(signed.mac.to_vec());
        self.first = false;
        true
    }
}

/// A TSIG error response: `reply` (already encoded, rcode NOTAUTH) gets an unsigned TSIG
/// naming `key_name` with `error` (RFC 8945 §5.2: BADKEY and BADSIG replies are unsigned).
pub fn append_error(reply: &mut Vec<u8>, key_name: &Name, error: u16, now: u64) {
    let id = message_id(reply);
    let parts = Signed {
        unsigned: Vec::new(),
        key_name: key_name.clone(),
        algorithm: Algorithm::HmacSha256.name().to_string(),
        time: now,
        fudge: FUDGE,
        mac: &[],
        error,
        other: &[],
    };
    append_tsig(reply, &parts, &[], id);
}

/// Seconds since the epoch, TSIG's clock.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The message without its TSIG (the last additional record) and the TSIG's fields, or
/// `None` when the message carries no TSIG or does not parse.
fn split(packet: &[u8]) -> Option<Signed<'_>> {
    let mut decoder = BinDecoder::new(packet);
    let header = Header::read(&mut decoder).ok()?;
    let counts = header.counts;
    if counts.additionals == 0 {
        return None;
    }
    for _ in 0..counts.queries {
        Query::read(&mut decoder).ok()?;
    }
    let before = usize::from(counts.answers)
        + usize::from(counts.authorities)
        + usize::from(counts.additionals)
        - 1;
    for _ in 0..before {
        Record::read(&mut decoder).ok()?;
    }
    let start = packet.len() - decoder.len();
    let key_name = Name::read(&mut decoder).ok()?;
    if decoder.read_u16().ok()?.unverified() != u16::from(RecordType::TSIG) {
        return None;
    }
    let _class = decoder.read_u16().ok()?.unverified();
    let _ttl = decoder.read_u32().ok()?.unverified();
    let _rdlength = decoder.read_u16().ok()?.unverified();
    let algorithm = Name::read(&mut decoder).ok()?.to_ascii();
    let high = u64::from(decoder.read_u16().ok()?.unverified());
    let low = u64::from(decoder.read_u32().ok()?.unverified());
    let fudge = decoder.read_u16().ok()?.unverified();
    let mac_len = decoder.read_u16().ok()?.unverified();
    let mac = decoder.read_slice(usize::from(mac_len)).ok()?.unverified();
    let original_id = decoder.read_u16().ok()?.unverified();
    let error = decoder.read_u16().ok()?.unverified();
    let other_len = decoder.read_u16().ok()?.unverified();
    let other = decoder
        .read_slice(usize::from(other_len))
        .ok()?
        .unverified();
    if !decoder.is_empty() {
        return None;
    }
    let mut unsigned = packet.get(..start)?.to_vec();
    unsigned
        .get_mut(..2)?
        .copy_from_slice(&original_id.to_be_bytes());
    unsigned
        .get_mut(10..12)?
        .copy_from_slice(&(counts.additionals - 1).to_be_bytes());
    Some(Signed {
        unsigned,
        key_name,
        algorithm,
        time: high << 32 | low,
        fudge,
        mac,
        error,
        other,
    })
}

/// Appends the TSIG variables (RFC 8945 §4.3.3), or only the timers for a later message of a
/// multi-message response.
fn variables(tbs: &mut Vec<u8>, parts: &Signed<'_>, all: bool) {
    if all {
        canonical_name(tbs, &parts.key_name.to_ascii());
        tbs.extend_from_slice(&255u16.to_be_bytes()); // class ANY
        tbs.extend_from_slice(&0u32.to_be_bytes()); // TTL
        canonical_name(tbs, &parts.algorithm);
    }
    time48(tbs, parts.time);
    tbs.extend_from_slice(&parts.fudge.to_be_bytes());
    if all {
        tbs.extend_from_slice(&parts.error.to_be_bytes());
        tbs.extend_from_slice(&u16_len(parts.other.len()).to_be_bytes());
        tbs.extend_from_slice(parts.other);
    }
}

/// Appends the TSIG record and counts it in ARCOUNT.
fn append_tsig(message: &mut Vec<u8>, parts: &Signed<'_>, mac: &[u8], original_id: u16) {
    let mut rdata = Vec::with_capacity(64 + mac.len());
    canonical_name(&mut rdata, &parts.algorithm);
    time48(&mut rdata, parts.time);
    rdata.extend_from_slice(&parts.fudge.to_be_bytes());
    rdata.extend_from_slice(&u16_len(mac.len()).to_be_bytes());
    rdata.extend_from_slice(mac);
    rdata.extend_from_slice(&original_id.to_be_bytes());
    rdata.extend_from_slice(&parts.error.to_be_bytes());
    rdata.extend_from_slice(&u16_len(parts.other.len()).to_be_bytes());
    rdata.extend_from_slice(parts.other);
    canonical_name(message, &parts.key_name.to_ascii());
    message.extend_from_slice(&u16::from(RecordType::TSIG).to_be_bytes());
    message.extend_from_slice(&255u16.to_be_bytes());
    message.extend_from_slice(&0u32.to_be_bytes());
    message.extend_from_slice(&u16_len(rdata.len()).to_be_bytes());
    message.extend_from_slice(&rdata);
    if let Some([high, low]) = message.get_mut(10..12) {
        let arcount = u16::from_be_bytes([*high, *low]).wrapping_add(1);
        [*high, *low] = arcount.to_be_bytes();
    }
}

/// A name in canonical wire form: lower-case labels, no compression.
fn canonical_name(out: &mut Vec<u8>, name: &str) {
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(u8::try_from(label.len()).unwrap_or(63));
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
}

/// The ID of an encoded message (its first two bytes).
fn message_id(message: &[u8]) -> u16 {
    match message {
        [high, low, ..] => u16::from_be_bytes([*high, *low]),
        _ => 0,
    }
}

fn time48(out: &mut Vec<u8>, time: u64) {
    out.extend_from_slice(time.to_be_bytes().get(2..).unwrap_or_default());
}

fn u16_len(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, MessageType, OpCode};

    use super::*;

    fn key(text: &str) -> Key {
        text.parse().expect("key")
    }

    fn query() -> Vec<u8> {
        let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
        message.add_query(Query::query(
            Name::from_ascii("home.lan.").expect("name"),
            RecordType::AXFR,
        ));
        message.to_vec().expect("encode")
    }

    #[test]
    fn keys_parse_from_the_flag_form() {
        let k = key("Transfer:hmac-sha256:c2VjcmV0");
        assert_eq!(k.name.to_ascii(), "transfer.");
        assert_eq!(k.algorithm, Algorithm::HmacSha256);
        assert!(!format!("{k:?}").contains("c2VjcmV0"));
        for bad in [
            "x",
            "x:hmac-md5:c2VjcmV0",
            "x:hmac-sha256:***",
            "x:hmac-sha256:",
        ] {
            assert!(bad.parse::<Key>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_signed_request_verifies_and_a_changed_one_does_not() {
        let k = Arc::new(key("t:hmac-sha256:c2VjcmV0"));
        let ring = Keyring::new(vec![(*k).clone()]);
        let mut packet = query();
        Signer::request(Arc::clone(&k)).sign(&mut packet, 1_000_000);
        assert!(matches!(
            verify_request(&ring, &packet, 1_000_100),
            Verdict::Signed { .. }
        ));
        assert!(matches!(
            verify_request(&ring, &packet, 1_000_400),
            Verdict::Failed { error: BADTIME, .. }
        ));
        let mut changed = packet.clone();
        changed[3] ^= 1;
        assert!(matches!(
            verify_request(&ring, &changed, 1_000_000),
            Verdict::Failed { error: BADSIG, .. }
        ));
        let other = Keyring::new(vec![key("u:hmac-sha256:c2VjcmV0")]);
        assert!(matches!(
            verify_request(&other, &packet, 1_000_000),
            Verdict::Failed { error: BADKEY, .. }
        ));
        assert!(matches!(
            verify_request(&ring, &query(), 1_000_000),
            Verdict::Unsigned
        ));
    }

    #[test]
    fn a_chain_of_response_messages_verifies_in_order_only() {
        let k = Arc::new(key("t:hmac-sha512:c2VjcmV0"));
        let mut request = query();
        let mut client = Signer::request(Arc::clone(&k));
        client.sign(&mut request, 500);
        let Verdict::Signed { mac, .. } =
            verify_request(&Keyring::new(vec![(*k).clone()]), &request, 500)
        else {
            panic!("request does not verify");
        };
        let mut server = Signer::response(Arc::clone(&k), mac);
        let mut messages = vec![query(), query(), query()];
        for m in &mut messages {
            m[2] |= 0x80; // QR
            server.sign(m, 501);
        }
        // A second client that signed the same request: it must see the messages in order.
        let mut skipping = Signer::request(Arc::clone(&k));
        skipping.sign(&mut query(), 500);
        assert!(!skipping.verify_response(&messages[1], 501));
        // The client's signer continues from the MAC of its own request.
        for m in &messages {
            assert!(client.verify_response(m, 501));
        }
        let mut tampered = messages[0].clone();
        tampered[7] ^= 1;
        let mut fresh = Signer::request(Arc::clone(&k));
        fresh.sign(&mut query(), 500);
        assert!(!fresh.verify_response(&tampered, 501));
    }
}
