//! Special-use names that are answered here and never forwarded: a leak of `printer.local.`
//! or of a private reverse name tells the upstream about the home network and cannot get a
//! useful answer anyway.
//!
//! - `localhost.` and every name below it: A 127.0.0.1, AAAA ::1 (RFC 6761 §6.3);
//! - `home.arpa.` (RFC 8375), `local.` (RFC 6762), `invalid.` (RFC 6761 §6.4) and the reverse
//!   zones of private and link-local space (RFC 6303; RFC 6598 for 100.64/10): NXDOMAIN, with
//!   the zone's SOA so clients can cache the denial (RFC 2308), and PTR `localhost.` for the
//!   loopback addresses.
//!
//! Local records, when a later stage adds them, are consulted before this module. A forward
//! zone at or below one of these zones (`--forward-zone 168.192.in-addr.arpa=192.168.1.1`)
//! takes its names over: the resolver asks [`SpecialNames::zone_of`] and forwards them.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::response::Answer;

/// TTL of the synthesized answers and SOA: short, so a record added later shows up soon.
const TTL: u32 = 60;

/// Top-level labels under which every special-use zone sits; anything else is rejected by
/// looking at one label.
const TOP_LABELS: [&[u8]; 4] = [b"localhost", b"arpa", b"local", b"invalid"];

/// The special-use zones, parsed once.
#[derive(Debug)]
pub struct SpecialNames {
    localhost: Name,
    zones: Vec<Name>,
    loopback_ptr: [Name; 2],
}

impl Default for SpecialNames {
    fn default() -> Self {
        Self::new()
    }
}

impl SpecialNames {
    /// Builds the zone list of the contract.
    pub fn new() -> Self {
        let mut zones: Vec<String> = [
            "home.arpa.",
            "local.",
            "invalid.",
            "10.in-addr.arpa.",
            "168.192.in-addr.arpa.",
            "127.in-addr.arpa.",
            "254.169.in-addr.arpa.",
            "c.f.ip6.arpa.",
            "d.f.ip6.arpa.",
            "8.e.f.ip6.arpa.",
            "9.e.f.ip6.arpa.",
            "a.e.f.ip6.arpa.",
            "b.e.f.ip6.arpa.",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        zones.extend((16..=31).map(|n| format!("{n}.172.in-addr.arpa.")));
        zones.extend((64..=127).map(|n| format!("{n}.100.in-addr.arpa.")));
        SpecialNames {
            localhost: fixed_name("localhost."),
            zones: zones.iter().map(|z| fixed_name(z)).collect(),
            loopback_ptr: [
                fixed_name("1.0.0.127.in-addr.arpa."),
                fixed_name(
                    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
                ),
            ],
        }
    }

    /// The special-use zone `name` is in that a forward zone may take over (all but
    /// `localhost.`, which always means this host, RFC 6761 §6.3).
    pub fn zone_of(&self, name: &Name) -> Option<&Name> {
        self.zones.iter().find(|z| z.zone_of(name))
    }

    /// The answer for a special-use name, or `None` when the name is not special.
    pub fn answer(&self, query: &Query) -> Option<Answer> {
        if query.query_class != DNSClass::IN {
            return None;
        }
        let name = &query.name;
        let top = name.iter().next_back()?;
        if !TOP_LABELS.iter().any(|t| t.eq_ignore_ascii_case(top)) {
            return None;
        }
        if self.localhost.zone_of(name) {
            return Some(self.localhost_answer(query));
        }
        if self.loopback_ptr.iter().any(|p| p == name) {
            return Some(self.loopback_ptr_answer(query));
        }
        let zone = self.zones.iter().find(|z| z.zone_of(name))?;
        let soa = soa(zone);
        let at_apex = zone == name;
        Some(match (at_apex, query.query_type) {
            (true, RecordType::SOA) => Answer {
                authoritative: true,
                answers: vec![soa],
                ..Answer::default()
            },
            (true, _) => negative(ResponseCode::NoError, soa),
            (false, _) => negative(ResponseCode::NXDomain, soa),
        })
    }

    fn localhost_answer(&self, query: &Query) -> Answer {
        let owner = query.name.clone();
        let data = match query.query_type {
            RecordType::A => RData::A(A(Ipv4Addr::LOCALHOST)),
            RecordType::AAAA => RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
            _ => return negative(ResponseCode::NoError, soa(&self.localhost)),
        };
        positive(Record::from_rdata(owner, TTL, data))
    }

    fn loopback_ptr_answer(&self, query: &Query) -> Answer {
        let zone = self.zones.iter().find(|z| z.zone_of(&query.name));
        match query.query_type {
            RecordType::PTR => positive(Record::from_rdata(
                query.name.clone(),
                TTL,
                RData::PTR(PTR(self.localhost.clone())),
            )),
            // ::1's reverse name sits in no zone of ours; its NODATA still needs an SOA owner.
            _ => negative(ResponseCode::NoError, soa(zone.unwrap_or(&self.localhost))),
        }
    }
}

fn positive(record: Record) -> Answer {
    Answer {
        authoritative: true,
        answers: vec![record],
        ..Answer::default()
    }
}

fn negative(rcode: ResponseCode, soa: Record) -> Answer {
    Answer {
        rcode,
        authoritative: true,
        authorities: vec![soa],
        ..Answer::default()
    }
}

fn soa(zone: &Name) -> Record {
    let data = SOA::new(
        fixed_name("localhost."),
        fixed_name("nobody.invalid."),
        1,
        3600,
        1200,
        604_800,
        TTL,
    );
    Record::from_rdata(zone.clone(), TTL, RData::SOA(data))
}

/// Parses one of the literal names above.
fn fixed_name(s: &str) -> Name {
    // Only called on the literals of this module, which are valid names; the unit tests
    // below parse every one of them.
    #[allow(clippy::expect_used)]
    Name::from_str(s).expect("literal special-use name")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(name: &str, qtype: RecordType) -> Option<Answer> {
        let query = Query::query(Name::from_str(name).expect("name"), qtype);
        SpecialNames::new().answer(&query)
    }

    #[test]
    fn localhost_answers_loopback() {
        let a = ask("LocalHost.", RecordType::A).expect("special");
        assert_eq!(a.answers[0].data, RData::A(A(Ipv4Addr::LOCALHOST)));
        assert!(a.authoritative);
        let aaaa = ask("db.localhost.", RecordType::AAAA).expect("special");
        assert_eq!(aaaa.answers[0].data, RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)));
        let mx = ask("localhost.", RecordType::MX).expect("special");
        assert!(mx.answers.is_empty() && mx.rcode == ResponseCode::NoError);
    }

    #[test]
    fn private_names_are_nxdomain_with_soa() {
        for name in [
            "nas.home.arpa.",
            "printer.local.",
            "x.invalid.",
            "4.3.2.10.in-addr.arpa.",
            "1.1.20.172.in-addr.arpa.",
            "9.9.168.192.in-addr.arpa.",
            "7.7.254.169.in-addr.arpa.",
            "1.2.64.100.in-addr.arpa.",
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa.",
        ] {
            let a = ask(name, RecordType::PTR).unwrap_or_else(|| panic!("{name} forwarded"));
            assert_eq!(a.rcode, ResponseCode::NXDomain, "{name}");
            assert_eq!(a.authorities[0].record_type(), RecordType::SOA, "{name}");
        }
    }

    #[test]
    fn public_names_are_not_special() {
        for name in [
            "example.com.",
            "arpa.",
            "in-addr.arpa.",
            "1.1.1.1.in-addr.arpa.",
            "1.2.32.172.in-addr.arpa.",
            "1.2.128.100.in-addr.arpa.",
            "localhost.example.com.",
            ".",
        ] {
            assert!(ask(name, RecordType::A).is_none(), "{name} is special");
        }
    }

    #[test]
    fn loopback_reverse_is_localhost() {
        let a = ask("1.0.0.127.in-addr.arpa.", RecordType::PTR).expect("special");
        assert_eq!(a.answers[0].data, RData::PTR(PTR(fixed_name("localhost."))));
        let v6 = ask(
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
            RecordType::PTR,
        )
        .expect("special");
        assert_eq!(v6.answers.len(), 1);
    }

    #[test]
    fn apex_soa_and_nodata() {
        let soa = ask("home.arpa.", RecordType::SOA).expect("special");
        assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
        let a = ask("home.arpa.", RecordType::A).expect("special");
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert!(a.answers.is_empty());
    }
}
