//! Reading a blocklist's text into rules.
//!
//! Understood, one rule a line:
//! - hosts files: `0.0.0.0 ads.example` or `127.0.0.1 a.example b.example` (any IP first;
//!   every name after it): those names exactly;
//! - plain domains, one a line: that name exactly;
//! - AdBlock-style `||ads.example^`: that name and every name below it.
//!
//! Comments (`#` and `!` lines, `# ...` after a hosts entry, `[Adblock Plus 2.0]` headers) and
//! blank lines are passed over. Everything else is skipped and counted: other AdBlock syntax
//! (`@@` exceptions, `$` options, paths, wildcards, regular expressions, cosmetic `##`
//! rules), names that are not host names, single-label names (`localhost`, `broadcasthost`),
//! and IP addresses where a name should be.
//!
//! The rules come out as text, one a line, `|` before a rule that covers the names below it:
//! the form the store keeps and [`super::set::DomainSet`] is built from.

use std::net::IpAddr;

/// Longest host name (RFC 1035, without the trailing dot).
const MAX_NAME: usize = 253;

/// What a list's text holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The rules, one a line (see the module doc).
    pub rules: String,
    /// How many rules.
    pub count: usize,
    /// Lines (or names on a hosts line) that were not understood.
    pub skipped: usize,
}

impl Parsed {
    /// Adds what one line of a list holds.
    pub fn line(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', '!', '[']) {
            return;
        }
        if let Some(rest) = line.strip_prefix("||") {
            match rest
                .strip_suffix("^|")
                .or_else(|| rest.strip_suffix('^'))
                .and_then(normalize)
            {
                Some(name) => self.push(&name, true),
                None => self.skipped += 1,
            }
            return;
        }
        // A hosts entry may end in a comment.
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else {
            return;
        };
        if first.parse::<IpAddr>().is_ok() {
            let mut names = 0;
            for word in words {
                names += 1;
                match normalize(word) {
                    Some(name) => self.push(&name, false),
                    None => self.skipped += 1,
                }
            }
            if names == 0 {
                self.skipped += 1;
            }
            return;
        }
        match (normalize(first), words.next()) {
            (Some(name), None) => self.push(&name, false),
            _ => self.skipped += 1,
        }
    }

    fn push(&mut self, name: &str, subtree: bool) {
        if subtree {
            self.rules.push('|');
        }
        self.rules.push_str(name);
        self.rules.push('\n');
        self.count += 1;
    }
}

/// Reads a whole list.
pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    for line in text.lines() {
        parsed.line(line);
    }
    parsed
}

/// One rule line as [`Parsed::rules`] holds it: the name and whether names below it count.
pub fn rule(line: &str) -> Option<(&str, bool)> {
    match line.strip_prefix('|') {
        Some(name) if !name.is_empty() => Some((name, true)),
        Some(_) => None,
        None if !line.is_empty() => Some((line, false)),
        None => None,
    }
}

/// `raw` as a lower-case host name without a trailing dot, or `None` when it is not one, is a
/// single label, or is an IP address.
pub fn normalize(raw: &str) -> Option<String> {
    let name = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if name.is_empty() || name.len() > MAX_NAME || name.parse::<IpAddr>().is_ok() {
        return None;
    }
    let mut labels = 0;
    for label in name.split('.') {
        let good = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !good {
            return None;
        }
        labels += 1;
    }
    (labels >= 2).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_formats_and_what_is_skipped() {
        let text = "\
# a hosts file
127.0.0.1 localhost
0.0.0.0 0.0.0.0
0.0.0.0 Ads.Example.com # banner
::1 tracker.example.net  metrics.example.net
! AdBlock
[Adblock Plus 2.0]
||doubleclick.example^
||pixel.example^$third-party
@@||good.example^
example.org/path
plain.example.

not a domain
||bad_^^
";
        let parsed = parse(text);
        assert_eq!(
            parsed.rules,
            "ads.example.com\ntracker.example.net\nmetrics.example.net\n|doubleclick.example\nplain.example\n"
        );
        assert_eq!(parsed.count, 5);
        // localhost, the name 0.0.0.0, the $ option, @@, the path, "not a domain", "bad_^".
        assert_eq!(parsed.skipped, 7);
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(
            normalize("WWW.Example.COM."),
            Some("www.example.com".into())
        );
        for bad in [
            "",
            "com",
            "a..b",
            "-",
            "x.",
            "10.0.0.1",
            "ä.example",
            "a b.c",
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
        assert_eq!(normalize(&format!("{}.example", "a".repeat(64))), None);
    }

    #[test]
    fn rule_lines_read_back() {
        assert_eq!(rule("|ads.example"), Some(("ads.example", true)));
        assert_eq!(rule("ads.example"), Some(("ads.example", false)));
        assert_eq!(rule(""), None);
        assert_eq!(rule("|"), None);
    }
}
