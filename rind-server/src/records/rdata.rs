//! Names, types and RDATA in zone-file presentation form: parsing, with every refusal saying in
//! words what is wrong, and printing in one normal form, so that two spellings of the same data
//! (`hello` and `"hello"`, `FD00::0010` and `fd00::10`) are stored alike and compare equal.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::caa::{read_iodef, read_issuer};
use hickory_proto::rr::rdata::{A, AAAA, CAA, CNAME, MX, NS, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, RecordType};

/// The record types rind serves from its local data.
pub const SUPPORTED: [RecordType; 9] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::NS,
    RecordType::CAA,
];

/// Longest RDATA accepted, in wire bytes: the record, its owner and the question must still fit
/// in one 64 KiB DNS message over TCP.
const MAX_RDATA: usize = 65_000;
/// Longest `<character-string>` (RFC 1035 §3.3).
const MAX_STRING: usize = 255;

/// Input that cannot be a record, with the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid<T>(message: String) -> Result<T, Invalid> {
    Err(Invalid(message))
}

/// Parses a record type such as `A` or `mx` (any letter case).
pub fn parse_type(text: &str) -> Result<RecordType, Invalid> {
    let wanted = text.trim();
    SUPPORTED
        .iter()
        .find(|t| t.to_string().eq_ignore_ascii_case(wanted))
        .copied()
        .ok_or_else(|| {
            Invalid(format!(
                "unknown record type {text:?}; rind serves A, AAAA, CNAME, MX, TXT, SRV, PTR, NS and CAA"
            ))
        })
}

/// Parses a record's owner name: lower-cased and fully qualified; `*` may be the whole first
/// label (a wildcard, RFC 4592).
pub fn parse_owner(text: &str) -> Result<Name, Invalid> {
    parse_name(text, "name", Wildcard::Allowed, Root::Refused)
}

/// Parses a zone's apex (or a TSIG key's name) like an owner name, without wildcards.
pub fn parse_zone_name(text: &str) -> Result<Name, Invalid> {
    parse_name(text, "zone name", Wildcard::Refused, Root::Refused)
}

/// Whether a `*` first label is accepted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wildcard {
    Allowed,
    Refused,
}

/// Whether `.` alone is accepted (MX and SRV use it for "no service", RFC 7505 and RFC 2782).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Root {
    Allowed,
    Refused,
}

/// Parses a domain name: letters, digits, `-` and `_` in labels of 1 to 63 bytes, at most 255
/// bytes in all; a missing trailing dot is added, letters are lower-cased, and non-ASCII names
/// become their IDNA (`xn--`) form.
fn parse_name(text: &str, what: &str, wildcard: Wildcard, root: Root) -> Result<Name, Invalid> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return invalid(format!("{what} is empty"));
    }
    if trimmed == "." {
        return match root {
            Root::Allowed => Ok(Name::root()),
            Root::Refused => invalid(format!("{what} cannot be the root \".\"")),
        };
    }
    let mut ascii = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        match Name::from_utf8(trimmed) {
            Ok(name) => name.to_ascii().to_ascii_lowercase(),
            Err(e) => return invalid(format!("{what} {text:?} is not a valid name: {e}")),
        }
    };
    // Made fully qualified in place: a restart parses every stored name, and a second
    // string for each showed in its profile.
    if !ascii.ends_with('.') {
        ascii.push('.');
    }
    let relative = ascii.strip_suffix('.').unwrap_or(&ascii);
    let mut wire_len = 1;
    for (i, label) in relative.split('.').enumerate() {
        if label.is_empty() {
            return invalid(format!(
                "{what} {text:?} has an empty label (two dots in a row, or a leading dot)"
            ));
        }
        if label.len() > 63 {
            return invalid(format!(
                "{what} {text:?} has a label of {} bytes; a label holds at most 63",
                label.len()
            ));
        }
        if label == "*" {
            if i > 0 || wildcard == Wildcard::Refused {
                return invalid(format!(
                    "{what} {text:?}: '*' is allowed only as the whole first label of a record's name (a wildcard)"
                ));
            }
        } else if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return invalid(format!(
                "{what} {text:?} has the character {bad:?}; labels may hold only letters, digits, '-' and '_'"
            ));
        }
        wire_len += label.len() + 1;
    }
    if wire_len > 255 {
        return invalid(format!(
            "{what} {text:?} is {wire_len} bytes long; a name holds at most 255"
        ));
    }
    Name::from_ascii(&ascii).or_else(|e| invalid(format!("{what} {text:?}: {e}")))
}

/// Parses `text` as the RDATA of `rtype` ([`print`] gives its normal form).
pub fn parse_data(rtype: RecordType, text: &str) -> Result<RData, Invalid> {
    let data = match rtype {
        RecordType::A => RData::A(A(text.trim().parse::<Ipv4Addr>().or_else(|_| {
            invalid(format!(
                "A data {text:?} is not an IPv4 address such as 192.168.1.10"
            ))
        })?)),
        RecordType::AAAA => RData::AAAA(AAAA(text.trim().parse::<Ipv6Addr>().or_else(|_| {
            invalid(format!(
                "AAAA data {text:?} is not an IPv6 address such as fd00::10"
            ))
        })?)),
        RecordType::CNAME => RData::CNAME(CNAME(target(text, "CNAME target", Root::Refused)?)),
        RecordType::NS => RData::NS(NS(target(text, "NS server name", Root::Refused)?)),
        RecordType::PTR => RData::PTR(PTR(target(text, "PTR target", Root::Refused)?)),
        RecordType::MX => parse_mx(text)?,
        RecordType::SRV => parse_srv(text)?,
        RecordType::TXT => parse_txt(text)?,
        RecordType::CAA => parse_caa(text)?,
        other => return invalid(format!("record type {other} is not served by rind")),
    };
    Ok(data)
}

fn target(text: &str, what: &str, root: Root) -> Result<Name, Invalid> {
    parse_name(text, what, Wildcard::Refused, root)
}

fn number(field: &str, what: &str, rtype: &str) -> Result<u16, Invalid> {
    field.parse::<u16>().or_else(|_| {
        invalid(format!(
            "{rtype} {what} {field:?} is not a whole number from 0 to 65535"
        ))
    })
}

fn parse_mx(text: &str) -> Result<RData, Invalid> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [preference, exchange] = fields[..] else {
        return invalid(format!(
            "MX data {text:?} must be \"PREFERENCE EXCHANGE\", such as \"10 mail.home.lan.\""
        ));
    };
    Ok(RData::MX(MX::new(
        number(preference, "preference", "MX")?,
        target(exchange, "MX exchange", Root::Allowed)?,
    )))
}

fn parse_srv(text: &str) -> Result<RData, Invalid> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [priority, weight, port, host] = fields[..] else {
        return invalid(format!(
            "SRV data {text:?} must be \"PRIORITY WEIGHT PORT TARGET\", such as \"10 5 5060 sip.home.lan.\""
        ));
    };
    Ok(RData::SRV(SRV::new(
        number(priority, "priority", "SRV")?,
        number(weight, "weight", "SRV")?,
        number(port, "port", "SRV")?,
        target(host, "SRV target", Root::Allowed)?,
    )))
}

/// TXT: quoted strings are separate character-strings; unquoted text is one string, cut into
/// 255-byte pieces when longer (as one long SPF or DKIM value is usually written).
fn parse_txt(text: &str) -> Result<RData, Invalid> {
    let trimmed = text.trim();
    let strings: Vec<Vec<u8>> = if trimmed.starts_with('"') {
        let mut rest = trimmed;
        let mut strings = Vec::new();
        while !rest.is_empty() {
            if !rest.starts_with('"') {
                return invalid(format!(
                    "TXT data {text:?} has text outside quotes; quote every string, or quote none"
                ));
            }
            let (string, after) = quoted(rest, "TXT")?;
            if string.len() > MAX_STRING {
                return invalid(format!(
                    "TXT string {} is {} bytes; a quoted string holds at most 255 (split it into several quoted strings)",
                    strings.len() + 1,
                    string.len()
                ));
            }
            strings.push(string);
            rest = after.trim_start();
        }
        strings
    } else if trimmed.is_empty() {
        return invalid("TXT data is empty; send \"\\\"\\\"\" for one empty string".to_string());
    } else {
        trimmed
            .as_bytes()
            .chunks(MAX_STRING)
            .map(<[u8]>::to_vec)
            .collect()
    };
    let wire: usize = strings.iter().map(|s| s.len() + 1).sum();
    if wire > MAX_RDATA {
        return invalid(format!(
            "TXT data is {wire} bytes on the wire; at most {MAX_RDATA}"
        ));
    }
    Ok(RData::TXT(TXT::from_bytes(
        strings.iter().map(Vec::as_slice).collect(),
    )))
}

/// Reads one `"..."` string at the start of `text` (which starts with `"`), with `\"`, `\\`
/// and `\DDD` escapes; returns its bytes and the text after the closing quote.
fn quoted<'a>(text: &'a str, rtype: &str) -> Result<(Vec<u8>, &'a str), Invalid> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => return Ok((out, text.get(i + 1..).unwrap_or(""))),
            b'\\' => {
                let digits = bytes
                    .get(i + 1..i + 4)
                    .filter(|d| d.iter().all(u8::is_ascii_digit));
                if let Some(digits) = digits {
                    let value = digits
                        .iter()
                        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
                    let Ok(byte) = u8::try_from(value) else {
                        return invalid(format!(
                            "{rtype} data has the escape \\{value}; \\DDD must be at most \\255"
                        ));
                    };
                    out.push(byte);
                    i += 4;
                } else if let Some(&next) = bytes.get(i + 1) {
                    out.push(next);
                    i += 2;
                } else {
                    break;
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    invalid(format!(
        "{rtype} data {text:?} has a quote that is never closed"
    ))
}

/// CAA (RFC 8659): `FLAGS TAG VALUE`, such as `0 issue "letsencrypt.org"`.
fn parse_caa(text: &str) -> Result<RData, Invalid> {
    let usage = || {
        Invalid(format!(
            "CAA data {text:?} must be \"FLAGS TAG VALUE\", such as \"0 issue \\\"letsencrypt.org\\\"\""
        ))
    };
    let trimmed = text.trim_start();
    let (flags, rest) = trimmed.split_once(char::is_whitespace).ok_or_else(usage)?;
    let (tag, value) = rest
        .trim_start()
        .split_once(char::is_whitespace)
        .ok_or_else(usage)?;
    let flags = flags.parse::<u8>().or_else(|_| {
        invalid(format!(
            "CAA flags {flags:?} is not a whole number from 0 to 255"
        ))
    })?;
    if tag.is_empty() || tag.len() > 15 || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
        return invalid(format!(
            "CAA tag {tag:?} must be 1 to 15 letters and digits, such as issue, issuewild or iodef"
        ));
    }
    // Tags match without regard to case (RFC 8659 §4.1); one spelling keeps duplicates out.
    let tag = tag.to_ascii_lowercase();
    let value = value.trim();
    let value = if value.starts_with('"') {
        let (bytes, after) = quoted(value, "CAA")?;
        if !after.trim().is_empty() {
            return invalid(format!("CAA data {text:?} has text after the quoted value"));
        }
        bytes
    } else {
        value.as_bytes().to_vec()
    };
    match tag.as_str() {
        "issue" | "issuewild" => {
            if let Err(e) = read_issuer(&value) {
                return invalid(format!(
                    "CAA {tag} value {:?} is not an issuer domain with optional \"; key=value\" parameters: {e}",
                    String::from_utf8_lossy(&value)
                ));
            }
        }
        "iodef" if read_iodef(&value).is_err() => {
            return invalid(format!(
                "CAA iodef value {:?} is not a URL such as mailto:security@home.lan",
                String::from_utf8_lossy(&value)
            ));
        }
        _ => {}
    }
    if value.len() + tag.len() + 2 > MAX_RDATA {
        return invalid(format!("CAA value is longer than {MAX_RDATA} bytes"));
    }
    // CAA's fields are public but the struct is non-exhaustive: start from a constructor.
    let mut caa = CAA::new_issue(false, None, Vec::new());
    caa.issuer_critical = flags & 0x80 != 0;
    caa.reserved_flags = flags & 0x7f;
    caa.tag = tag;
    caa.value = value;
    Ok(RData::CAA(caa))
}

/// The normal presentation form of the data of the [`SUPPORTED`] types.
pub fn print(data: &RData) -> String {
    match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(aaaa) => aaaa.0.to_string(),
        RData::CNAME(name) => name.0.to_ascii(),
        RData::NS(name) => name.0.to_ascii(),
        RData::PTR(name) => name.0.to_ascii(),
        RData::MX(mx) => format!("{} {}", mx.preference, mx.exchange.to_ascii()),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority,
            srv.weight,
            srv.port,
            srv.target.to_ascii()
        ),
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| quote(s))
            .collect::<Vec<_>>()
            .join(" "),
        RData::CAA(caa) => format!("{} {} {}", caa.flags(), caa.tag, quote(&caa.value)),
        other => other.to_string(),
    }
}

/// A `<character-string>` in quotes: `"` and `\` escaped, control bytes and bytes that are not
/// UTF-8 as `\DDD`; other text, non-ASCII letters included, as it is.
fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c if c.is_control() && c.is_ascii() => {
                    let _ = write!(out, "\\{:03}", c as u8);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\{b:03}");
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(rtype: RecordType, text: &str) -> String {
        print(&parse_data(rtype, text).unwrap_or_else(|e| panic!("{rtype} {text:?}: {e}")))
    }

    fn refused(rtype: RecordType, text: &str) -> String {
        match parse_data(rtype, text) {
            Ok(data) => panic!("{rtype} {text:?} accepted as {:?}", print(&data)),
            Err(e) => e.0,
        }
    }

    #[test]
    fn types_any_case() {
        assert_eq!(parse_type("a"), Ok(RecordType::A));
        assert_eq!(parse_type(" Caa "), Ok(RecordType::CAA));
        let e = parse_type("SOA").expect_err("SOA is not served");
        assert!(e.0.contains("unknown record type \"SOA\""), "{e}");
    }

    #[test]
    fn owner_names_are_normalised() {
        let name = |s| parse_owner(s).map(|n| n.to_ascii());
        assert_eq!(name("WWW.Home.LAN"), Ok("www.home.lan.".to_string()));
        assert_eq!(name("www.home.lan."), Ok("www.home.lan.".to_string()));
        assert_eq!(name("*.home.lan"), Ok("*.home.lan.".to_string()));
        assert_eq!(
            name("_sip._tcp.home.lan"),
            Ok("_sip._tcp.home.lan.".to_string())
        );
        assert_eq!(name("bücher.lan"), Ok("xn--bcher-kva.lan.".to_string()));
        for (bad, why) in [
            ("", "empty"),
            (".", "root"),
            ("a..b", "empty label"),
            ("a b.lan", "character ' '"),
            ("www.*.lan", "'*' is allowed only"),
            ("a*.lan", "character '*'"),
        ] {
            let e = parse_owner(bad).expect_err(bad);
            assert!(e.0.contains(why), "{bad:?}: {e}");
        }
        let long_label = format!("{}.lan", "x".repeat(64));
        assert!(parse_owner(&long_label)
            .expect_err("64")
            .0
            .contains("at most 63"));
        let long_name = vec!["x".repeat(60); 5].join(".");
        assert!(parse_owner(&long_name)
            .expect_err("long")
            .0
            .contains("at most 255"));
    }

    #[test]
    fn addresses() {
        assert_eq!(ok(RecordType::A, " 192.168.1.10 "), "192.168.1.10");
        assert_eq!(ok(RecordType::AAAA, "FD00:0:0::0010"), "fd00::10");
        assert!(refused(RecordType::A, "192.168.1").contains("not an IPv4 address"));
        assert!(refused(RecordType::A, "010.0.0.1").contains("not an IPv4 address"));
        assert!(refused(RecordType::AAAA, "192.168.1.1").contains("not an IPv6 address"));
    }

    #[test]
    fn names_in_data() {
        assert_eq!(ok(RecordType::CNAME, "Web.Home.Lan"), "web.home.lan.");
        assert_eq!(ok(RecordType::NS, "ns1.home.lan."), "ns1.home.lan.");
        assert_eq!(ok(RecordType::PTR, "nas.home.lan"), "nas.home.lan.");
        assert!(refused(RecordType::CNAME, "*.home.lan").contains("'*'"));
        assert!(refused(RecordType::CNAME, ".").contains("root"));
        assert!(refused(RecordType::PTR, "two words").contains("character ' '"));
    }

    #[test]
    fn mx_and_srv() {
        assert_eq!(
            ok(RecordType::MX, "10   Mail.Home.Lan"),
            "10 mail.home.lan."
        );
        assert_eq!(ok(RecordType::MX, "0 ."), "0 .");
        assert!(refused(RecordType::MX, "mail.home.lan").contains("PREFERENCE EXCHANGE"));
        assert!(refused(RecordType::MX, "70000 mail.home.lan").contains("0 to 65535"));
        assert_eq!(
            ok(RecordType::SRV, "10 5 5060 sip.home.lan"),
            "10 5 5060 sip.home.lan."
        );
        assert!(
            refused(RecordType::SRV, "10 5 sip.home.lan").contains("PRIORITY WEIGHT PORT TARGET")
        );
        assert!(refused(RecordType::SRV, "10 5 -1 sip.home.lan").contains("SRV port"));
    }

    #[test]
    fn txt_strings() {
        assert_eq!(ok(RecordType::TXT, "hello world"), "\"hello world\"");
        assert_eq!(
            ok(RecordType::TXT, "\"hello\" \"world\""),
            "\"hello\" \"world\""
        );
        assert_eq!(ok(RecordType::TXT, "\"\""), "\"\"");
        assert_eq!(
            ok(RecordType::TXT, r#""say \"hi\"" "a\\b" "\065""#),
            r#""say \"hi\"" "a\\b" "A""#
        );
        assert_eq!(ok(RecordType::TXT, "\"caf\u{e9}\""), "\"caf\u{e9}\"");
        assert_eq!(ok(RecordType::TXT, "\"tab\\009\""), "\"tab\\009\"");
        let long = "x".repeat(300);
        let data = parse_data(RecordType::TXT, &long).expect("long unquoted");
        let printed = print(&data);
        let RData::TXT(txt) = data else {
            panic!("not TXT")
        };
        assert_eq!(txt.txt_data.len(), 2);
        assert_eq!(
            printed,
            format!("\"{}\" \"{}\"", "x".repeat(255), "x".repeat(45))
        );
        assert!(refused(RecordType::TXT, "").contains("empty"));
        assert!(refused(RecordType::TXT, "\"open").contains("never closed"));
        assert!(refused(RecordType::TXT, "\"a\" b").contains("outside quotes"));
        assert!(refused(RecordType::TXT, &format!("\"{long}\"")).contains("at most 255"));
        assert!(refused(RecordType::TXT, "\"\\300\"").contains("at most \\255"));
    }

    #[test]
    fn the_normal_form_parses_to_itself() {
        // Stored records are parsed again at start, from their printed form.
        for (rtype, text) in [
            (RecordType::A, "10.0.0.1"),
            (RecordType::AAAA, "FD00::1"),
            (RecordType::CNAME, "Web.Lan"),
            (RecordType::MX, "0 ."),
            (RecordType::SRV, "1 2 3 sip.lan"),
            (RecordType::TXT, "say \"hi\" \\ now"),
            (RecordType::TXT, "\"\\200\\007\" \"caf\u{e9}\" \"\""),
            (RecordType::CAA, "128 issue \"ca.org; account=1\""),
            (RecordType::CAA, "0 tbs \"a \\\"b\\\"\""),
        ] {
            let printed = ok(rtype, text);
            assert_eq!(ok(rtype, &printed), printed, "{rtype} {text:?}");
            let first = parse_data(rtype, text).expect("parses");
            let again = parse_data(rtype, &printed).expect("parses");
            assert_eq!(first, again, "{rtype} {text:?}");
        }
    }

    #[test]
    fn caa() {
        assert_eq!(
            ok(RecordType::CAA, "0 issue \"letsencrypt.org\""),
            "0 issue \"letsencrypt.org\""
        );
        assert_eq!(
            ok(RecordType::CAA, "128 ISSUEWILD letsencrypt.org"),
            "128 issuewild \"letsencrypt.org\""
        );
        assert_eq!(
            ok(RecordType::CAA, "0 iodef \"mailto:sec@home.lan\""),
            "0 iodef \"mailto:sec@home.lan\""
        );
        assert_eq!(ok(RecordType::CAA, "0 issue \";\""), "0 issue \";\"");
        assert!(refused(RecordType::CAA, "0 issue").contains("FLAGS TAG VALUE"));
        assert!(refused(RecordType::CAA, "256 issue \"ca.org\"").contains("0 to 255"));
        assert!(refused(RecordType::CAA, "0 is-sue \"ca.org\"").contains("letters and digits"));
        assert!(refused(RecordType::CAA, "0 iodef \"not a url\"").contains("not a URL"));
        assert!(refused(RecordType::CAA, "0 issue \"bad ca\"").contains("issuer domain"));
    }
}
