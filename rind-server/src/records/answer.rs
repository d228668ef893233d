//! Answering from local records (docs/reference.md, "DNS behaviour"):
//!
//! - records of the asked type at the name: AA=1, each with its own TTL;
//! - a name with local records but none of that type: NODATA (NOERROR, no answer, AA=1);
//! - a CNAME at the name is followed: local targets here, a target outside the local data is
//!   handed back as a [`Chase`] for the resolver to finish; more than [`MAX_LINKS`] links, or
//!   a loop, is SERVFAIL;
//! - wildcards and synthesized PTRs come from [`Index::lookup`];
//! - inside a zone rind is the authority: SOA and (unless records give one) NS at the apex,
//!   NXDOMAIN for names the zone lacks and NODATA for types a name lacks, each with the SOA
//!   in the authority section, and never a chase upstream for a name in the zone. Wildcards
//!   apply only from within the name's own zone, and an empty non-terminal (a name with
//!   records only below it) exists: NODATA, not NXDOMAIN or a wildcard (RFC 4592 §2.2.2).

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::index::{Index, Node};
use super::zone::{Secondary, Zone};
use crate::response::Answer;

/// Most CNAME links followed for one question.
pub const MAX_LINKS: usize = 8;

/// What the local records say about a question they know.
#[derive(Debug)]
pub enum Local {
    /// The whole answer.
    Answer(Answer),
    /// A CNAME chain that leaves the local data: resolve [`Chase::target`] elsewhere.
    Chase(Chase),
}

/// The local part of a CNAME chain whose last target is not a local name.
#[derive(Debug)]
pub struct Chase {
    chain: Vec<Record>,
    target: Query,
}

impl Chase {
    /// The question to ask elsewhere: the last target, with the original type.
    pub fn target(&self) -> &Query {
        &self.target
    }

    /// The answer to the original question, given `tail`, the answer for [`Chase::target`]:
    /// the local CNAMEs first, then the tail's records under its rcode. A tail that failed
    /// (SERVFAIL, REFUSED, ...) fails the whole question.
    pub fn finish(self, tail: Answer) -> Answer {
        if !matches!(tail.rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
            return Answer::rcode(tail.rcode);
        }
        let mut answers = self.chain;
        answers.extend(tail.answers);
        Answer {
            rcode: tail.rcode,
            // AA describes the first owner in the answer (RFC 1035 §4.1.1), which is ours.
            authoritative: true,
            // Our own CNAMEs are not signed, so nothing here is validated data.
            authentic_data: false,
            answers,
            authorities: tail.authorities,
            additionals: tail.additionals,
        }
    }
}

/// The answer to `query` from `index`, or `None` when no local record or zone concerns its
/// name.
pub fn answer(index: &Index, query: &Query) -> Option<Local> {
    if query.query_class != DNSClass::IN {
        return None;
    }
    let qtype = query.query_type;
    // The first owner keeps the client's spelling; later ones are the stored targets.
    let mut owner = query.name.clone();
    let mut chain: Vec<Record> = Vec::new();
    loop {
        let zone = match index.zone_of(&owner) {
            None => None,
            Some(zone) => match Authority::of(index, zone) {
                Some(authority) => Some(authority),
                // A secondary zone not yet transferred, or expired: no answer we can stand by.
                None => return Some(Local::Answer(Answer::rcode(ResponseCode::ServFail))),
            },
        };
        let node = match &zone {
            Some(zone) => lookup_in_zone(index, zone, &owner),
            None => index.lookup(&owner).map(Found::Node),
        };
        let Some(found) = node else {
            return match zone {
                Some(zone) => Some(Local::Answer(zone.negative(ResponseCode::NXDomain, chain))),
                None if chain.is_empty() => None,
                None => {
                    let mut target = Query::query(owner, qtype);
                    target.query_class = query.query_class;
                    Some(Local::Chase(Chase { chain, target }))
                }
            };
        };
        let node = match found {
            Found::Node(node) => node,
            Found::Empty => Node::Exact(&[]),
        };
        let mut records = records_of(node, &owner, qtype);
        if let Some(zone) = zone.as_ref().filter(|z| z.zone().name == owner) {
            records.extend(zone.apex_records(node, &owner, qtype));
        }
        let next = match cname_of(node) {
            Some(cname) if records.is_empty() => cname,
            _ => {
                let nodata = records.is_empty();
                chain.extend(records);
                return Some(Local::Answer(match zone {
                    Some(zone) if nodata => zone.negative(ResponseCode::NoError, chain),
                    _ => authoritative(chain),
                }));
            }
        };
        if chain.len() == MAX_LINKS {
            tracing::debug!(name = %query.name, "local CNAME chain longer than {MAX_LINKS} links");
            return Some(Local::Answer(Answer::rcode(ResponseCode::ServFail)));
        }
        let (target, ttl) = next;
        chain.push(Record::from_rdata(
            owner,
            ttl,
            RData::CNAME(CNAME(target.clone())),
        ));
        if chain.iter().any(|r| r.name == target) {
            tracing::debug!(name = %query.name, "local CNAME loop");
            return Some(Local::Answer(Answer::rcode(ResponseCode::ServFail)));
        }
        owner = target;
    }
}

/// The zone a name falls in, with where its data is.
enum Authority<'a> {
    /// A zone of rind's own: its data is the local records.
    Own(&'a Zone),
    /// A secondary zone: its data is what the primary sent.
    Secondary(&'a Zone, &'a Secondary),
}

impl<'a> Authority<'a> {
    /// `zone` as answered from `index`; `None` for a secondary zone with no usable data.
    fn of(index: &'a Index, zone: &'a Zone) -> Option<Authority<'a>> {
        if !zone.is_secondary() {
            return Some(Authority::Own(zone));
        }
        let data = index.secondary(&zone.name)?;
        (!data.expired(crate::tsig::now())).then_some(Authority::Secondary(zone, data))
    }

    fn zone(&self) -> &'a Zone {
        match self {
            Authority::Own(zone) | Authority::Secondary(zone, _) => zone,
        }
    }

    /// Where the zone's records are.
    fn data(&self, local: &'a Index) -> &'a Index {
        match self {
            Authority::Own(_) => local,
            Authority::Secondary(_, data) => &data.index,
        }
    }

    /// The apex's SOA, and for rind's own zones the synthesised NS while no NS record is
    /// there, when asked for.
    fn apex_records(&self, node: Node<'_>, owner: &Name, qtype: RecordType) -> Vec<Record> {
        let wanted = |t: RecordType| qtype == t || qtype == RecordType::ANY;
        let mut records = Vec::new();
        if wanted(RecordType::SOA) {
            let mut soa = match self {
                Authority::Own(zone) => zone.soa(),
                Authority::Secondary(_, data) => data.soa.clone(),
            };
            soa.name = owner.clone();
            records.push(soa);
        }
        let has_ns =
            matches!(node, Node::Exact(own) if own.iter().any(|r| r.rtype == RecordType::NS));
        if let Authority::Own(zone) = self {
            if wanted(RecordType::NS) && !has_ns {
                let mut ns = zone.synthetic_ns();
                ns.name = owner.clone();
                records.push(ns);
            }
        }
        records
    }

    /// NXDOMAIN or NODATA after the CNAMEs of `chain`: AA=1 and the SOA in the authority
    /// section, so resolvers below can cache it (RFC 2308).
    fn negative(&self, rcode: ResponseCode, chain: Vec<Record>) -> Answer {
        let soa = match self {
            Authority::Own(zone) => zone.negative_soa(),
            Authority::Secondary(_, data) => data.negative_soa(),
        };
        Answer {
            rcode,
            authoritative: true,
            answers: chain,
            authorities: vec![soa],
            ..Answer::default()
        }
    }
}

/// What a name in a zone is.
enum Found<'a> {
    /// It has records (its own, reverse, or a wildcard's).
    Node(Node<'a>),
    /// It exists without records: the apex, or an empty non-terminal.
    Empty,
}

/// The records for `owner` inside `zone` (`local` holds the local records and the zones):
/// exact and reverse first, then an empty non-terminal or the apex, then a wildcard from
/// within the zone.
fn lookup_in_zone<'a>(local: &'a Index, zone: &Authority<'a>, owner: &Name) -> Option<Found<'a>> {
    let data = zone.data(local);
    let apex = &zone.zone().name;
    match data.lookup(owner) {
        Some(node @ (Node::Exact(_) | Node::Reverse(_))) => Some(Found::Node(node)),
        _ if owner == apex || data.has_below(owner) => Some(Found::Empty),
        Some(Node::Wildcard(records))
            if records
                .first()
                .is_some_and(|r| local.zone_of(&r.name).is_some_and(|z| z.name == *apex)) =>
        {
            Some(Found::Node(Node::Wildcard(records)))
        }
        _ => None,
    }
}

/// NOERROR, AA=1, with `answers` (none: NODATA).
fn authoritative(answers: Vec<Record>) -> Answer {
    Answer {
        authoritative: true,
        answers,
        ..Answer::default()
    }
}

/// The records of `node` that answer `qtype`, owned by `owner`.
fn records_of(node: Node<'_>, owner: &Name, qtype: RecordType) -> Vec<Record> {
    let wanted = |t: RecordType| qtype == t || qtype == RecordType::ANY;
    match node {
        Node::Exact(records) | Node::Wildcard(records) => records
            .iter()
            .filter(|r| wanted(r.rtype))
            .map(|r| Record::from_rdata(owner.clone(), r.ttl, r.rdata()))
            .collect(),
        Node::Reverse(records) if wanted(RecordType::PTR) => records
            .iter()
            .map(|r| Record::from_rdata(owner.clone(), r.ttl, RData::PTR(PTR(r.name.clone()))))
            .collect(),
        Node::Reverse(_) => Vec::new(),
    }
}

/// The CNAME target and TTL of `node`, if it has one.
fn cname_of(node: Node<'_>) -> Option<(Name, u32)> {
    let (Node::Exact(records) | Node::Wildcard(records)) = node else {
        return None;
    };
    records
        .iter()
        .filter(|r| r.rtype == RecordType::CNAME)
        .find_map(|r| match r.rdata() {
            RData::CNAME(target) => Some((target.0, r.ttl)),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::sync::Arc;

    use super::*;
    use crate::records::index::Change;
    use crate::records::zone::Zone;
    use crate::records::{Draft, RecordId};

    fn index_of(records: &[(&str, &str, &str)]) -> Index {
        let mut index = Index::default();
        for (i, (name, rtype, data)) in records.iter().enumerate() {
            let draft = Draft::parse(name, rtype, 60 + i as i64, data).expect("valid");
            let record = draft.into_record(RecordId::from_stored(&i.to_string()));
            index.apply(&Change::Put(Arc::new(record)));
        }
        index
    }

    fn ask(index: &Index, name: &str, qtype: RecordType) -> Option<Local> {
        answer(
            index,
            &Query::query(Name::from_ascii(name).expect("name"), qtype),
        )
    }

    fn answered(index: &Index, name: &str, qtype: RecordType) -> Answer {
        match ask(index, name, qtype) {
            Some(Local::Answer(a)) => a,
            other => panic!("{name} {qtype}: {other:?}"),
        }
    }

    fn data(answer: &Answer) -> Vec<String> {
        answer.answers.iter().map(|r| r.data.to_string()).collect()
    }

    #[test]
    fn records_of_the_type_with_their_ttl_and_nodata_for_others() {
        let z = index_of(&[
            ("nas.home.lan", "A", "192.168.1.10"),
            ("nas.home.lan", "A", "192.168.1.11"),
            ("nas.home.lan", "TXT", "hi"),
        ]);
        let a = answered(&z, "NAS.home.lan.", RecordType::A);
        assert!(a.authoritative);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert_eq!(data(&a), ["192.168.1.10", "192.168.1.11"]);
        assert_eq!(a.answers[1].ttl, 61);
        // The owner keeps the client's spelling.
        assert_eq!(a.answers[0].name.to_string(), "NAS.home.lan.");
        let nodata = answered(&z, "nas.home.lan.", RecordType::MX);
        assert!(nodata.authoritative && nodata.answers.is_empty());
        assert_eq!(nodata.rcode, ResponseCode::NoError);
        assert_eq!(
            answered(&z, "nas.home.lan.", RecordType::ANY).answers.len(),
            3
        );
        assert!(ask(&z, "other.home.lan.", RecordType::A).is_none());
        let mut chaos = Query::query(
            Name::from_ascii("nas.home.lan.").expect("name"),
            RecordType::A,
        );
        chaos.query_class = DNSClass::CH;
        assert!(answer(&z, &chaos).is_none());
    }

    #[test]
    fn wildcards_synthesize_the_asked_name() {
        let z = index_of(&[
            ("*.home.lan", "A", "10.0.0.1"),
            ("www.home.lan", "TXT", "x"),
        ]);
        let a = answered(&z, "a.b.home.lan.", RecordType::A);
        assert_eq!(data(&a), ["10.0.0.1"]);
        assert_eq!(a.answers[0].name.to_string(), "a.b.home.lan.");
        assert!(answered(&z, "a.b.home.lan.", RecordType::AAAA)
            .answers
            .is_empty());
        // An exact name wins, even without the asked type.
        assert!(answered(&z, "www.home.lan.", RecordType::A)
            .answers
            .is_empty());
        assert!(ask(&z, "home.lan.", RecordType::A).is_none());
    }

    #[test]
    fn cname_chains_are_followed_locally() {
        let z = index_of(&[
            ("a.lan", "CNAME", "b.lan"),
            ("b.lan", "CNAME", "c.lan"),
            ("c.lan", "A", "10.0.0.3"),
        ]);
        let a = answered(&z, "a.lan.", RecordType::A);
        assert_eq!(data(&a), ["b.lan.", "c.lan.", "10.0.0.3"]);
        assert!(a.authoritative);
        // Asked for the CNAME itself: no chasing.
        assert_eq!(data(&answered(&z, "a.lan.", RecordType::CNAME)), ["b.lan."]);
        // A target without the type: the chain, then NODATA.
        assert_eq!(
            data(&answered(&z, "a.lan.", RecordType::MX)),
            ["b.lan.", "c.lan."]
        );
    }

    #[test]
    fn a_chain_leaving_local_data_is_chased() {
        let z = index_of(&[
            ("a.lan", "CNAME", "b.lan"),
            ("b.lan", "CNAME", "www.example.com"),
        ]);
        let Some(Local::Chase(chase)) = ask(&z, "a.lan.", RecordType::A) else {
            panic!("no chase")
        };
        assert_eq!(
            chase.target().name,
            Name::from_str("www.example.com.").expect("name")
        );
        assert_eq!(chase.target().query_type, RecordType::A);
        let tail = Answer {
            answers: vec![Record::from_rdata(
                chase.target().name.clone(),
                30,
                RData::A(hickory_proto::rr::rdata::A::new(93, 184, 216, 34)),
            )],
            ..Answer::default()
        };
        let done = chase.finish(tail);
        assert_eq!(data(&done), ["b.lan.", "www.example.com.", "93.184.216.34"]);
        let Some(Local::Chase(chase)) = ask(&z, "a.lan.", RecordType::A) else {
            panic!("no chase")
        };
        let failed = chase.finish(Answer::rcode(ResponseCode::ServFail));
        assert_eq!(failed.rcode, ResponseCode::ServFail);
        assert!(failed.answers.is_empty());
    }

    #[test]
    fn loops_and_long_chains_fail() {
        let z = index_of(&[("a.lan", "CNAME", "b.lan"), ("b.lan", "CNAME", "a.lan")]);
        assert_eq!(
            answered(&z, "a.lan.", RecordType::A).rcode,
            ResponseCode::ServFail
        );
        let z = index_of(&[("self.lan", "CNAME", "self.lan")]);
        assert_eq!(
            answered(&z, "self.lan.", RecordType::A).rcode,
            ResponseCode::ServFail
        );
        let z = index_of(&[("*.w.lan", "CNAME", "x.w.lan")]);
        assert_eq!(
            answered(&z, "y.w.lan.", RecordType::A).rcode,
            ResponseCode::ServFail
        );

        let chain = |links: usize| {
            let mut records: Vec<(String, String, String)> = (0..links)
                .map(|i| {
                    (
                        format!("n{i}.lan"),
                        "CNAME".into(),
                        format!("n{}.lan", i + 1),
                    )
                })
                .collect();
            records.push((format!("n{links}.lan"), "A".into(), "10.0.0.1".into()));
            let refs: Vec<(&str, &str, &str)> = records
                .iter()
                .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
                .collect();
            answered(&index_of(&refs), "n0.lan.", RecordType::A)
        };
        let eight = chain(MAX_LINKS);
        assert_eq!(eight.rcode, ResponseCode::NoError);
        assert_eq!(eight.answers.len(), MAX_LINKS + 1);
        assert_eq!(chain(MAX_LINKS + 1).rcode, ResponseCode::ServFail);
    }

    #[test]
    fn addresses_answer_ptr() {
        let z = index_of(&[
            ("nas.home.lan", "A", "192.168.1.10"),
            ("files.home.lan", "A", "192.168.1.10"),
            ("nas.home.lan", "AAAA", "fd00::10"),
        ]);
        let ptr = answered(&z, "10.1.168.192.in-addr.arpa.", RecordType::PTR);
        assert!(ptr.authoritative);
        assert_eq!(data(&ptr), ["nas.home.lan.", "files.home.lan."]);
        assert_eq!(ptr.answers[0].ttl, 60);
        let v6 = Name::from(std::net::IpAddr::from_str("fd00::10").expect("ip"));
        let ptr = answered(&z, &v6.to_ascii(), RecordType::PTR);
        assert_eq!(data(&ptr), ["nas.home.lan."]);
        assert!(answered(&z, "10.1.168.192.in-addr.arpa.", RecordType::A)
            .answers
            .is_empty());
    }

    fn zoned(records: &[(&str, &str, &str)], zones: &[&str]) -> Index {
        let mut index = index_of(records);
        for (i, apex) in zones.iter().enumerate() {
            index.apply(&Change::Zone(Arc::new(Zone {
                name: Name::from_ascii(apex).expect("name"),
                serial: 100 + i as u32,
                allow_transfer: Vec::new(),
                notify: Vec::new(),
                tsig: None,
                primary: None,
            })));
        }
        index
    }

    fn soa_serial(records: &[Record]) -> Option<u32> {
        records.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
    }

    #[test]
    fn a_zone_answers_with_authority() {
        let z = zoned(
            &[
                ("nas.home.lan", "A", "192.168.1.10"),
                ("deep.a.b.home.lan", "TXT", "x"),
                ("*.w.home.lan", "A", "10.0.0.9"),
                ("*.lan", "A", "10.9.9.9"),
            ],
            &["home.lan."],
        );
        let soa = answered(&z, "home.lan.", RecordType::SOA);
        assert!(soa.authoritative);
        assert_eq!(soa_serial(&soa.answers), Some(100));
        assert_eq!(
            data(&answered(&z, "home.lan.", RecordType::NS)),
            ["ns.home.lan."]
        );
        let nx = answered(&z, "nope.home.lan.", RecordType::A);
        assert_eq!(nx.rcode, ResponseCode::NXDomain);
        assert!(nx.authoritative && nx.answers.is_empty());
        assert_eq!(soa_serial(&nx.authorities), Some(100));
        assert_eq!(
            nx.authorities[0].ttl, 60,
            "negative TTL: min(SOA TTL, MINIMUM)"
        );
        // NODATA: a type the name lacks, the apex, and an empty non-terminal.
        for (name, qtype) in [
            ("nas.home.lan.", RecordType::MX),
            ("home.lan.", RecordType::A),
            ("a.b.home.lan.", RecordType::A),
            ("b.home.lan.", RecordType::TXT),
        ] {
            let nodata = answered(&z, name, qtype);
            assert_eq!(nodata.rcode, ResponseCode::NoError, "{name}");
            assert!(nodata.answers.is_empty() && nodata.authoritative, "{name}");
            assert_eq!(soa_serial(&nodata.authorities), Some(100), "{name}");
        }
        // The zone's own wildcard applies; one from above the zone does not.
        assert_eq!(
            data(&answered(&z, "x.w.home.lan.", RecordType::A)),
            ["10.0.0.9"]
        );
        assert_eq!(
            answered(&z, "other.home.lan.", RecordType::A).rcode,
            ResponseCode::NXDomain
        );
        // Outside the zone the old rules hold.
        assert_eq!(data(&answered(&z, "x.lan.", RecordType::A)), ["10.9.9.9"]);
        assert!(ask(&z, "example.com.", RecordType::A).is_none());
    }

    #[test]
    fn ns_records_replace_the_synthesised_one_and_chains_end_in_the_target_zone() {
        let z = zoned(
            &[
                ("home.lan", "NS", "dns1.home.lan"),
                ("alias.home.lan", "CNAME", "gone.lab.lan"),
                ("out.home.lan", "CNAME", "www.example.com"),
            ],
            &["home.lan.", "lab.lan."],
        );
        assert_eq!(
            data(&answered(&z, "home.lan.", RecordType::NS)),
            ["dns1.home.lan."]
        );
        let nx = answered(&z, "alias.home.lan.", RecordType::A);
        assert_eq!(nx.rcode, ResponseCode::NXDomain);
        assert_eq!(data(&nx), ["gone.lab.lan."]);
        assert_eq!(
            soa_serial(&nx.authorities),
            Some(101),
            "the SOA of the target's zone"
        );
        assert!(matches!(
            ask(&z, "out.home.lan.", RecordType::A),
            Some(Local::Chase(_))
        ));
    }
}
