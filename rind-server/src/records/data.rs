//! RDATA as the index holds it: addresses as they are, anything else in wire form. A hickory
//! `RData` is 184 bytes whatever it holds, and most local records are a 4- or 16-byte address
//! or a few dozen bytes of TXT, MX or CNAME data; a record is read back as an `RData` when it
//! answers, and printed when the API shows it, exports it, or checks its ETag or an import's
//! duplicates.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, BinEncodable, BinEncoder, Restrict};

/// A record's data, compactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// An A record's address.
    V4(Ipv4Addr),
    /// An AAAA record's address.
    V6(Ipv6Addr),
    /// Any other type, as it goes on the wire; it was read back equal when stored.
    Wire(Box<[u8]>),
    /// Data whose wire form did not read back equal (kept whole rather than changed).
    Whole(Box<RData>),
}

impl Data {
    /// Holds `data`, the RDATA of a record of type `rtype`.
    pub fn new(rtype: RecordType, data: RData) -> Data {
        match data {
            RData::A(a) => Data::V4(a.0),
            RData::AAAA(aaaa) => Data::V6(aaaa.0),
            other => match wire(&other) {
                Some(bytes) if read(rtype, &bytes).as_ref() == Some(&other) => Data::Wire(bytes),
                _ => Data::Whole(Box::new(other)),
            },
        }
    }

    /// The data, as hickory builds answers from it.
    pub fn rdata(&self, rtype: RecordType) -> RData {
        match self {
            Data::V4(ip) => RData::A(A(*ip)),
            Data::V6(ip) => RData::AAAA(AAAA(*ip)),
            // Read back once already, when it was stored: the same bytes read the same way.
            Data::Wire(bytes) => read(rtype, bytes).unwrap_or_else(|| {
                tracing::error!(%rtype, "stored RDATA no longer reads; answered empty");
                RData::Update0(rtype)
            }),
            Data::Whole(data) => (**data).clone(),
        }
    }

    /// The address of an A or AAAA record.
    pub fn address(&self) -> Option<IpAddr> {
        match self {
            Data::V4(ip) => Some(IpAddr::V4(*ip)),
            Data::V6(ip) => Some(IpAddr::V6(*ip)),
            Data::Wire(_) | Data::Whole(_) => None,
        }
    }
}

/// `data` in wire form. A second name may point into the first (SOA); the bytes are only
/// ever read as a whole, which resolves that.
fn wire(data: &RData) -> Option<Box<[u8]>> {
    let mut bytes = Vec::new();
    let mut encoder = BinEncoder::new(&mut bytes);
    data.emit(&mut encoder).ok()?;
    Some(bytes.into_boxed_slice())
}

fn read(rtype: RecordType, bytes: &[u8]) -> Option<RData> {
    let length = u16::try_from(bytes.len()).ok()?;
    let mut decoder = BinDecoder::new(bytes);
    let data = RData::read(&mut decoder, rtype, Restrict::new(length)).ok()?;
    decoder.is_empty().then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::rdata::parse_data;

    #[test]
    fn every_supported_type_reads_back_from_its_compact_form() {
        for (rtype, text) in [
            (RecordType::A, "192.168.1.10"),
            (RecordType::AAAA, "fd00::10"),
            (RecordType::CNAME, "www.home.lan."),
            (RecordType::NS, "ns1.home.lan."),
            (RecordType::PTR, "nas.home.lan."),
            (RecordType::MX, "10 mail.home.lan."),
            (RecordType::MX, "0 ."),
            (RecordType::SRV, "0 5 5060 sip.home.lan."),
            (RecordType::TXT, "\"v=spf1 -all\" \"second\" \"\""),
            (RecordType::CAA, "0 issue \"letsencrypt.org\""),
        ] {
            let rdata = parse_data(rtype, text).expect("valid");
            let data = Data::new(rtype, rdata.clone());
            assert!(
                !matches!(data, Data::Whole(_)),
                "{rtype} {text}: kept whole"
            );
            assert_eq!(data.rdata(rtype), rdata, "{rtype} {text}");
        }
    }

    #[test]
    fn addresses_take_no_heap_and_other_data_a_few_bytes() {
        assert!(std::mem::size_of::<Data>() <= 24);
        let txt = parse_data(RecordType::TXT, "\"host 2\" \"rack 2\"").expect("valid");
        match Data::new(RecordType::TXT, txt) {
            Data::Wire(bytes) => assert_eq!(&bytes[..], b"\x06host 2\x06rack 2"),
            other => panic!("TXT held as {other:?}"),
        }
    }
}
