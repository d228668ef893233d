//! Record sets in the formats users already hold: RFC 1035 master files (zone files) in and
//! out, and `/etc/hosts` files in.
//!
//! The readers only turn text into [`Draft`]s, each with the line it starts on; whether a
//! record may be stored (duplicates, CNAME rules, secondary zones) is the write path's
//! question, so an import and a single create refuse the same things.
//!
//! The master-file reader follows RFC 1035 §5.1: `$ORIGIN`, `$TTL` (RFC 2308, with BIND's
//! `1h30m` units), `@`, relative names, an omitted owner (a line starting with a blank),
//! TTL and class in either order, parentheses across lines, `;` comments, quoted strings and
//! `\` escapes. `$INCLUDE` is refused: a file sent over HTTP must not name files on the server.
//! SOA records are skipped and counted: rind makes the SOA of its own zones.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::{Name, Record, RecordType};

use super::rdata::SUPPORTED;
use super::{Draft, LocalRecord, DEFAULT_TTL, MAX_TTL};

/// Why a file cannot be imported, and the line that says so (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SyntaxError {
    /// The line the bad entry starts on.
    pub line: usize,
    /// What is wrong, in words.
    pub message: String,
}

/// The records a file holds, in file order, each with the line it starts on.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The records to store.
    pub drafts: Vec<(usize, Draft)>,
    /// Records read but not stored (SOA: rind makes its own).
    pub skipped: usize,
}

/// One word of a master file; `raw` keeps quotes and escapes, as the RDATA parsers read them.
#[derive(Debug)]
struct Word<'a> {
    raw: &'a str,
    quoted: bool,
}

/// One entry: the words of one line, or of several joined by parentheses.
#[derive(Debug)]
struct Entry<'a> {
    line: usize,
    /// The first line began with a blank: the owner is the previous entry's.
    blank_owner: bool,
    words: Vec<Word<'a>>,
}

fn error<T>(line: usize, message: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError {
        line,
        message: message.into(),
    })
}

/// Splits a master file into entries (RFC 1035 §5.1).
fn entries(text: &str) -> Result<Vec<Entry<'_>>, SyntaxError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let mut depth = 0usize;
    let mut open_line = 0;
    let mut current: Option<Entry<'_>> = None;
    let mut at_line_start = true;
    while let Some(&b) = bytes.get(i) {
        let starts_line = std::mem::replace(&mut at_line_start, false);
        match b {
            b'\n' => {
                line += 1;
                at_line_start = true;
                i += 1;
                if depth == 0 {
                    out.extend(current.take().filter(|e| !e.words.is_empty()));
                }
            }
            b' ' | b'\t' | b'\r' => {
                if starts_line && depth == 0 && current.is_none() {
                    current = Some(Entry {
                        line,
                        blank_owner: true,
                        words: Vec::new(),
                    });
                }
                i += 1;
            }
            b';' => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'(' => {
                if depth == 0 {
                    open_line = line;
                }
                depth += 1;
                i += 1;
            }
            b')' => {
                if depth == 0 {
                    return error(line, "')' without an '(' before it");
                }
                depth -= 1;
                i += 1;
            }
            _ => {
                let entry = current.get_or_insert_with(|| Entry {
                    line,
                    blank_owner: false,
                    words: Vec::new(),
                });
                let (word, end) = word(text, i, line)?;
                entry.words.push(word);
                i = end;
            }
        }
    }
    if depth > 0 {
        return error(open_line, "'(' is never closed");
    }
    out.extend(current.filter(|e| !e.words.is_empty()));
    Ok(out)
}

/// The word starting at byte `start`, and the byte after it.
fn word(text: &str, start: usize, line: usize) -> Result<(Word<'_>, usize), SyntaxError> {
    let bytes = text.as_bytes();
    let quoted = bytes.get(start) == Some(&b'"');
    let mut i = if quoted { start + 1 } else { start };
    loop {
        match bytes.get(i) {
            None | Some(b'\n') if quoted => {
                return error(line, "a quoted string is not closed on its line")
            }
            None => break,
            Some(b'\\') => {
                if matches!(bytes.get(i + 1), None | Some(b'\n')) {
                    return error(line, "'\\' at the end of a line escapes nothing");
                }
                i += 2;
            }
            Some(b'"') if quoted => {
                i += 1;
                break;
            }
            Some(b'"') => return error(line, "a '\"' inside a word; quote the whole string"),
            Some(b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')') if !quoted => break,
            Some(_) => i += 1,
        }
    }
    // Slicing at ASCII bytes (quotes, blanks, escapes' ends) keeps to char boundaries, except
    // after a `\` that escaped a multi-byte character: find the boundary.
    while !text.is_char_boundary(i) {
        i += 1;
    }
    let raw = text.get(start..i).unwrap_or_default();
    Ok((Word { raw, quoted }, i))
}

/// Reads a master file.
pub fn read_master(text: &str) -> Result<Parsed, SyntaxError> {
    let mut origin: Option<Name> = None;
    let mut default_ttl: Option<u32> = None;
    let mut last_ttl: Option<u32> = None;
    let mut owner: Option<String> = None;
    let mut parsed = Parsed::default();
    for entry in entries(text)? {
        let line = entry.line;
        let mut words = entry.words.iter();
        let Some(first) = words.next() else { continue };
        if !entry.blank_owner && first.raw.starts_with('$') {
            let args: Vec<&str> = words.map(|w| w.raw).collect();
            match (first.raw.to_ascii_uppercase().as_str(), args.as_slice()) {
                ("$ORIGIN", [name]) => origin = Some(origin_name(name, origin.as_ref(), line)?),
                ("$TTL", [ttl]) => {
                    default_ttl = Some(parse_ttl(ttl).ok_or_else(|| bad_ttl(ttl, line))?)
                }
                ("$ORIGIN" | "$TTL", _) => {
                    return error(line, format!("{} takes one value", first.raw))
                }
                ("$INCLUDE", _) => {
                    return error(
                        line,
                        "$INCLUDE is not followed: send each file in its own import",
                    )
                }
                (other, _) => return error(line, format!("unknown directive {other}")),
            }
            continue;
        }
        let mut rest: Vec<&Word<'_>> = Vec::new();
        if entry.blank_owner {
            rest.push(first);
        } else {
            owner = Some(absolute(first.raw, origin.as_ref(), "owner name", line)?);
        }
        rest.extend(words);
        let Some(owner) = owner.as_deref() else {
            return error(
                line,
                "the line starts with a blank, so it repeats the owner of the record before it, but there is none",
            );
        };
        let mut ttl = None;
        let mut at = 0;
        // TTL and class come in either order, each at most once (RFC 1035 §5.1).
        while let Some(w) = rest.get(at).filter(|_| at < 2) {
            let starts_with_digit = w.raw.as_bytes().first().is_some_and(u8::is_ascii_digit);
            if starts_with_digit && ttl.is_none() {
                ttl = Some(parse_ttl(w.raw).ok_or_else(|| bad_ttl(w.raw, line))?);
            } else if is_class(w.raw) {
                if !w.raw.eq_ignore_ascii_case("IN") {
                    return error(
                        line,
                        format!("class {}: rind stores class IN records only", w.raw),
                    );
                }
            } else {
                break;
            }
            at += 1;
        }
        let Some(type_word) = rest.get(at) else {
            return error(line, format!("the record for {owner} has no type"));
        };
        let data = rest.get(at + 1..).unwrap_or_default();
        let Some(rtype) = record_type(type_word.raw, line)? else {
            parsed.skipped += 1;
            last_ttl = ttl.or(last_ttl);
            continue;
        };
        if let Some(t) = ttl {
            last_ttl = Some(t);
        }
        // RFC 2308 §4: $TTL for records without one; RFC 1035's last TTL where $TTL is absent.
        let ttl = ttl.or(default_ttl).or(last_ttl).unwrap_or(DEFAULT_TTL);
        let data = rdata_text(rtype, data, origin.as_ref(), line)?;
        let draft = Draft::parse(owner, &rtype.to_string(), i64::from(ttl), &data)
            .or_else(|e| error(line, e.0))?;
        parsed.drafts.push((line, draft));
    }
    Ok(parsed)
}

fn bad_ttl(ttl: &str, line: usize) -> SyntaxError {
    SyntaxError {
        line,
        message: format!("TTL {ttl:?} is not seconds from 0 to {MAX_TTL} (or units such as 1h30m)"),
    }
}

/// A TTL in seconds or BIND's units (`1w2d3h4m5s`, any case); `None` when it is not one.
fn parse_ttl(word: &str) -> Option<u32> {
    if word.is_empty() || !word.as_bytes().first()?.is_ascii_digit() {
        return None;
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in word.chars() {
        if let Some(d) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(u64::from(d))?,
            );
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        total = total.checked_add(number.take()?.checked_mul(unit)?)?;
    }
    total = total.checked_add(number.unwrap_or(0))?;
    u32::try_from(total)
        .ok()
        .filter(|t| i64::from(*t) <= MAX_TTL)
}

fn is_class(word: &str) -> bool {
    let upper = word.to_ascii_uppercase();
    matches!(upper.as_str(), "IN" | "CH" | "CS" | "HS" | "NONE" | "ANY")
        || upper
            .strip_prefix("CLASS")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The type named by `word`: `Some` for one rind stores, `None` for SOA (skipped), an error
/// for the rest.
fn record_type(word: &str, line: usize) -> Result<Option<RecordType>, SyntaxError> {
    if let Some(t) = SUPPORTED
        .iter()
        .find(|t| t.to_string().eq_ignore_ascii_case(word))
    {
        return Ok(Some(*t));
    }
    if word.eq_ignore_ascii_case("SOA") {
        return Ok(None);
    }
    match word.to_ascii_uppercase().parse::<RecordType>() {
        Ok(t) if !matches!(t, RecordType::Unknown(_)) => error(
            line,
            format!("rind does not store {t} records; it stores A, AAAA, CNAME, MX, TXT, SRV, PTR, NS and CAA"),
        ),
        _ => error(line, format!("{word:?} is not a record type")),
    }
}

/// `$ORIGIN`'s name: absolute, or relative to the origin before it.
fn origin_name(word: &str, origin: Option<&Name>, line: usize) -> Result<Name, SyntaxError> {
    let text = absolute(word, origin, "$ORIGIN", line)?;
    if text == "." {
        return Ok(Name::root());
    }
    super::rdata::parse_zone_name(&text).or_else(|e| error(line, e.0))
}

/// `word` as an absolute name: `@` is the origin, a name without a final dot is under it.
fn absolute(
    word: &str,
    origin: Option<&Name>,
    what: &str,
    line: usize,
) -> Result<String, SyntaxError> {
    if word.ends_with('.') && !word.ends_with("\\.") {
        return Ok(word.to_string());
    }
    let Some(origin) = origin else {
        return error(
            line,
            format!("{what} {word:?} is relative, and no $ORIGIN came before it"),
        );
    };
    let origin = origin.to_ascii();
    Ok(match (word, origin.as_str()) {
        ("@", _) => origin,
        (_, ".") => format!("{word}."),
        _ => format!("{word}.{origin}"),
    })
}

/// The RDATA words as the presentation text [`Draft::parse`] reads, with the names in them
/// made absolute and TXT's unquoted words quoted (in a master file each is a string).
fn rdata_text(
    rtype: RecordType,
    words: &[&Word<'_>],
    origin: Option<&Name>,
    line: usize,
) -> Result<String, SyntaxError> {
    let count = |n: usize, form: &str| -> Result<(), SyntaxError> {
        if words.len() == n {
            Ok(())
        } else {
            error(
                line,
                format!(
                    "{rtype} data is {form}; this line has {} words",
                    words.len()
                ),
            )
        }
    };
    let name = |w: &Word<'_>, what: &str| absolute(w.raw, origin, what, line);
    let raw = |i: usize| words.get(i).map_or("", |w| w.raw);
    Ok(match rtype {
        RecordType::A | RecordType::AAAA => {
            count(1, "one address")?;
            raw(0).to_string()
        }
        RecordType::CNAME | RecordType::NS | RecordType::PTR => {
            count(1, "one name")?;
            match words.first() {
                Some(w) => name(w, &format!("{rtype} target"))?,
                None => String::new(),
            }
        }
        RecordType::MX => {
            count(2, "PREFERENCE EXCHANGE")?;
            let exchange = match words.get(1) {
                Some(w) => name(w, "MX exchange")?,
                None => String::new(),
            };
            format!("{} {exchange}", raw(0))
        }
        RecordType::SRV => {
            count(4, "PRIORITY WEIGHT PORT TARGET")?;
            let target = match words.get(3) {
                Some(w) => name(w, "SRV target")?,
                None => String::new(),
            };
            format!("{} {} {} {target}", raw(0), raw(1), raw(2))
        }
        RecordType::TXT => {
            if words.is_empty() {
                return error(line, "TXT data needs at least one string");
            }
            let mut text = String::new();
            for w in words {
                if !text.is_empty() {
                    text.push(' ');
                }
                if w.quoted {
                    text.push_str(w.raw);
                } else {
                    let _ = write!(text, "\"{}\"", w.raw);
                }
            }
            text
        }
        _ => words.iter().map(|w| w.raw).collect::<Vec<_>>().join(" "),
    })
}

/// Reads an `/etc/hosts` file: `ADDRESS NAME [ALIAS...]` per line, `#` comments; each name
/// becomes an A or AAAA record with the default TTL.
pub fn read_hosts(text: &str) -> Result<Parsed, SyntaxError> {
    let mut parsed = Parsed::default();
    for (i, full) in text.lines().enumerate() {
        let line = i + 1;
        let content = full.split('#').next().unwrap_or_default();
        let mut words = content.split_whitespace();
        let Some(address) = words.next() else {
            continue;
        };
        let ip: IpAddr = address.parse().or_else(|_| {
            error(
                line,
                format!(
                    "{address:?} is not an IPv4 or IPv6 address (a hosts line is ADDRESS NAME...)"
                ),
            )
        })?;
        let rtype = if ip.is_ipv4() { "A" } else { "AAAA" };
        let mut names = 0;
        for name in words {
            let draft = Draft::parse(name, rtype, i64::from(DEFAULT_TTL), address)
                .or_else(|e| error(line, e.0))?;
            parsed.drafts.push((line, draft));
            names += 1;
        }
        if names == 0 {
            return error(line, format!("{address} has no name after it"));
        }
    }
    Ok(parsed)
}

/// Writes records as a master file: absolute names, one record per line, sorted by name (in
/// DNSSEC canonical order, so a zone's names come together), type and data; `soa` (a
/// zone's, when one zone is exported) comes first.
pub fn write_master(records: &[Arc<LocalRecord>], soa: Option<&Record>, title: &str) -> String {
    let mut sorted: Vec<(&LocalRecord, String)> =
        records.iter().map(|r| (r.as_ref(), r.text())).collect();
    sorted.sort_by(|(a, a_text), (b, b_text)| {
        (&a.name, u16::from(a.rtype), a_text).cmp(&(&b.name, u16::from(b.rtype), b_text))
    });
    let mut out = String::with_capacity(64 * (sorted.len() + 4));
    let _ = writeln!(out, "; {title}: {} records", sorted.len());
    if let Some(soa) = soa {
        let _ = writeln!(
            out,
            "; rind makes this SOA itself; an import skips it\n{}\t{}\tIN\tSOA\t{}",
            soa.name.to_ascii(),
            soa.ttl,
            soa.data
        );
    }
    for (r, text) in sorted {
        let _ = writeln!(
            out,
            "{}\t{}\tIN\t{}\t{}",
            r.name.to_ascii(),
            r.ttl,
            r.rtype,
            text
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<(usize, String, String, u32, String)> {
        read_master(text)
            .expect("parses")
            .drafts
            .into_iter()
            .map(|(line, d)| {
                (
                    line,
                    d.name().to_ascii(),
                    d.rtype().to_string(),
                    d.ttl(),
                    d.text(),
                )
            })
            .collect()
    }

    fn refused(text: &str) -> SyntaxError {
        read_master(text).expect_err("refused")
    }

    #[test]
    fn a_bind_style_zone() {
        let zone = "$ORIGIN home.lan.\n\
            $TTL 1h\n\
            @   IN SOA ns hostmaster ( 2026120401 ; serial\n\
                    3600 600 604800 60 )\n\
            @       NS   ns\n\
            ns      A    192.168.1.2\n\
            nas  60 IN A 192.168.1.10\n     IN 120 AAAA fd00::10 ; same owner\n\
            www     CNAME nas\n\
            @       MX   10 mail.example.com.\n\
            _sip._tcp SRV 0 5 5060 sip\n\
            txt     TXT  \"hello world\" two ; comment\n\
            @       CAA  0 issue \"letsencrypt.org\"\n\
            *.dev   A    192.168.1.50\n";
        let got = records(zone);
        let want: Vec<(usize, &str, &str, u32, &str)> = vec![
            (5, "home.lan.", "NS", 3600, "ns.home.lan."),
            (6, "ns.home.lan.", "A", 3600, "192.168.1.2"),
            (7, "nas.home.lan.", "A", 60, "192.168.1.10"),
            (8, "nas.home.lan.", "AAAA", 120, "fd00::10"),
            (9, "www.home.lan.", "CNAME", 3600, "nas.home.lan."),
            (10, "home.lan.", "MX", 3600, "10 mail.example.com."),
            (
                11,
                "_sip._tcp.home.lan.",
                "SRV",
                3600,
                "0 5 5060 sip.home.lan.",
            ),
            (12, "txt.home.lan.", "TXT", 3600, "\"hello world\" \"two\""),
            (13, "home.lan.", "CAA", 3600, "0 issue \"letsencrypt.org\""),
            (14, "*.dev.home.lan.", "A", 3600, "192.168.1.50"),
        ];
        let want: Vec<_> = want
            .into_iter()
            .map(|(l, n, t, ttl, d)| (l, n.to_string(), t.to_string(), ttl, d.to_string()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(read_master(zone).expect("parses").skipped, 1);
    }

    #[test]
    fn ttl_falls_back_to_the_last_one_then_the_default() {
        let got = records("a.lan. 30 A 10.0.0.1\nb.lan. A 10.0.0.2\n");
        assert_eq!(got[1].3, 30);
        let got = records("b.lan. A 10.0.0.2\n");
        assert_eq!(got[0].3, DEFAULT_TTL);
        assert_eq!(
            parse_ttl("1w2d3h4m5s"),
            Some(604_800 + 172_800 + 10_800 + 245)
        );
        assert_eq!(parse_ttl("2147483648"), None);
        assert_eq!(parse_ttl("h"), None);
        assert_eq!(parse_ttl("1x"), None);
    }

    #[test]
    fn errors_name_their_line() {
        let e = refused("$ORIGIN lan.\na A 10.0.0.1\nb A 10.0.0.300\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("not an IPv4 address"), "{e}");
        assert_eq!(refused("a A 10.0.0.1\n").line, 1);
        assert!(refused("a A 10.0.0.1\n").message.contains("no $ORIGIN"));
        let e = refused("$ORIGIN lan.\nx ( A\n10.0.0.1\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("never closed"));
        assert!(refused("x.lan. DNSKEY 256 3 8 AwEAAQ==\n")
            .message
            .contains("does not store DNSKEY"));
        assert!(refused("x.lan. CH TXT \"a\"\n")
            .message
            .contains("class IN"));
        assert!(refused("$INCLUDE /etc/passwd\n")
            .message
            .contains("$INCLUDE"));
        assert!(refused(" A 10.0.0.1\n").message.contains("there is none"));
        assert!(refused("x.lan. TXT \"open\n")
            .message
            .contains("not closed"));
        assert!(refused("x.lan. MX 10\n")
            .message
            .contains("PREFERENCE EXCHANGE"));
        assert!(refused("x.lan. A 10.0.0.1 )\n").message.contains("')'"));
    }

    #[test]
    fn escapes_and_comments_inside_quotes() {
        let got = records("t.lan. TXT \"a;b\" \"say \\\"hi\\\"\" c\\;d\n");
        assert_eq!(got[0].4, "\"a;b\" \"say \\\"hi\\\"\" \"c;d\"");
    }

    #[test]
    fn hosts_files() {
        let parsed = read_hosts(
            "# comment\n127.0.0.1 localhost\n\n192.168.1.10  nas nas.home.lan # box\n::1 ip6-localhost\n",
        )
        .expect("parses");
        let got: Vec<_> = parsed
            .drafts
            .iter()
            .map(|(l, d)| (*l, d.name().to_ascii(), d.rtype().to_string(), d.text()))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, "localhost.".into(), "A".into(), "127.0.0.1".into()),
                (4, "nas.".into(), "A".into(), "192.168.1.10".into()),
                (4, "nas.home.lan.".into(), "A".into(), "192.168.1.10".into()),
                (5, "ip6-localhost.".into(), "AAAA".into(), "::1".into()),
            ]
        );
        let e = read_hosts("192.168.1.10 nas\nnas 192.168.1.10\n").expect_err("refused");
        assert_eq!(e.line, 2);
        assert_eq!(read_hosts("10.0.0.1\n").expect_err("no name").line, 1);
        assert_eq!(read_hosts("10.0.0.1 bad name!\n").expect_err("bad").line, 1);
    }

    #[test]
    fn an_export_reads_back_as_the_same_records() {
        let text = "$ORIGIN lan.\n$TTL 60\na A 10.0.0.1\nb TXT \"x y\" z\nc MX 0 .\nd CAA 128 iodef \"mailto:a@b.lan\"\n";
        let parsed = read_master(text).expect("parses");
        let stored: Vec<Arc<LocalRecord>> = parsed
            .drafts
            .into_iter()
            .enumerate()
            .map(|(i, (_, d))| {
                Arc::new(d.into_record(super::super::RecordId::from_stored(&i.to_string())))
            })
            .collect();
        let exported = write_master(&stored, None, "test");
        let again = read_master(&exported).expect("reads back");
        let texts = |p: &[(usize, Draft)]| -> Vec<String> {
            p.iter()
                .map(|(_, d)| format!("{} {} {} {}", d.name(), d.rtype(), d.ttl(), d.text()))
                .collect()
        };
        let first: Vec<String> = stored
            .iter()
            .map(|r| format!("{} {} {} {}", r.name, r.rtype, r.ttl, r.text()))
            .collect();
        assert_eq!(texts(&again.drafts), first);
    }
}
