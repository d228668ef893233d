//! DNS zones over the local records (docs/reference.md, "Zones and zone transfer").
//!
//! A zone makes rind the authority for a subtree: names in it without records get NXDOMAIN,
//! types a name lacks get NODATA, both with the zone's SOA, and nothing under it is forwarded.
//! The SOA is always rind's (the serial is rind's to count); NS at the apex is synthesised
//! while no NS record is there.
//!
//! A zone's content is what AXFR sends: every record whose name falls in the zone (and not in
//! a more specific zone), the PTRs synthesised from A/AAAA records for reverse names in it,
//! and the apex NS and SOA. Each write that changes that content adds one to the serial and
//! leaves a [`Diff`] in the journal IXFR reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::rdata::{NS, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ipnet::IpNet;

use super::index::{Change, Index};
use super::{LocalRecord, RecordId};

/// TTL of the synthesised SOA and NS records.
pub const SOA_TTL: u32 = 300;
/// SOA refresh: how often a secondary without NOTIFY asks whether the zone changed.
pub const REFRESH: i32 = 300;
/// SOA retry: how soon a secondary asks again after a failed refresh.
pub const RETRY: i32 = 60;
/// SOA expire: how long a secondary keeps answering without reaching the primary (a week).
pub const EXPIRE: i32 = 604_800;
/// SOA minimum: the negative-caching TTL (RFC 2308); short, since home records change often.
pub const MINIMUM: u32 = 60;

/// One zone and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// The apex, lower-case and fully qualified.
    pub name: Name,
    /// Grows by one with every change to the zone's content.
    pub serial: u32,
    /// Clients that may transfer the zone.
    pub allow_transfer: Vec<IpNet>,
    /// Servers told by NOTIFY after each change.
    pub notify: Vec<SocketAddr>,
    /// The TSIG key transfers and NOTIFYs of this zone must be signed with.
    pub tsig: Option<Name>,
    /// For a secondary zone: the primary it is pulled from.
    pub primary: Option<SocketAddr>,
}

impl Zone {
    /// The serial a new zone starts at: the time, or one past `last`, the serial a deleted
    /// zone of the same name ended at, when that is later (a busy zone runs ahead of the
    /// clock). Secondaries only take a serial larger than theirs (RFC 1982), so a zone made
    /// again must never start behind the old one.
    pub fn first_serial(last: Option<u32>) -> u32 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        match last {
            Some(last) if !serial_after(now, last) => last.wrapping_add(1),
            _ => now,
        }
    }

    /// The name of the primary server in the SOA and of the synthesised NS: `ns.<apex>`.
    pub fn server_name(&self) -> Name {
        Name::from_labels(std::iter::once(&b"ns"[..]).chain(self.name.iter()))
            .map(|mut n| {
                n.set_fqdn(true);
                n
            })
            .unwrap_or_else(|_| self.name.clone())
    }

    /// The zone's SOA record.
    pub fn soa(&self) -> Record {
        let rname = Name::from_labels(std::iter::once(&b"hostmaster"[..]).chain(self.name.iter()))
            .map(|mut n| {
                n.set_fqdn(true);
                n
            })
            .unwrap_or_else(|_| self.name.clone());
        let soa = SOA::new(
            self.server_name(),
            rname,
            self.serial,
            REFRESH,
            RETRY,
            EXPIRE,
            MINIMUM,
        );
        Record::from_rdata(self.name.clone(), SOA_TTL, RData::SOA(soa))
    }

    /// The SOA for a negative answer: its TTL is the negative-caching TTL (RFC 2308 §3).
    pub fn negative_soa(&self) -> Record {
        let mut soa = self.soa();
        soa.ttl = SOA_TTL.min(MINIMUM);
        soa
    }

    /// The apex NS rind synthesises while no NS record is at the apex.
    pub fn synthetic_ns(&self) -> Record {
        Record::from_rdata(
            self.name.clone(),
            SOA_TTL,
            RData::NS(NS(self.server_name())),
        )
    }

    /// Whether this is a secondary zone (its data comes from a primary).
    pub fn is_secondary(&self) -> bool {
        self.primary.is_some()
    }
}

/// A secondary zone's data as last transferred from its primary.
#[derive(Debug)]
pub struct Secondary {
    /// The primary's SOA.
    pub soa: Record,
    /// The other records in the order transferred (for AXFR out and applying IXFR).
    pub records: Vec<Record>,
    /// The same records, indexed for answering.
    pub index: Index,
    /// When the primary last confirmed the data (seconds since the epoch); moves on with
    /// each refresh that finds the data current, without copying it.
    pub refreshed: AtomicU64,
}

impl Secondary {
    /// Indexes `records` (SOA apart) under the primary's `soa`.
    pub fn new(soa: Record, records: Vec<Record>, refreshed: u64) -> Secondary {
        let mut index = Index::default();
        for (n, record) in records.iter().enumerate() {
            let local = LocalRecord::new(
                RecordId::from_stored(&n.to_string()),
                record.name.to_lowercase(),
                record.record_type(),
                record.ttl,
                record.data.clone(),
            );
            index.apply(&Change::Put(Arc::new(local)));
        }
        Secondary {
            soa,
            records,
            index,
            refreshed: AtomicU64::new(refreshed),
        }
    }

    /// The primary's SOA data.
    pub fn soa_data(&self) -> Option<&SOA> {
        match &self.soa.data {
            RData::SOA(soa) => Some(soa),
            _ => None,
        }
    }

    /// Whether the data is past the SOA expire without word from the primary (RFC 1035
    /// §3.3.13): it is then no longer answered.
    pub fn expired(&self, now: u64) -> bool {
        let expire = self
            .soa_data()
            .map_or(u64::from(EXPIRE.unsigned_abs()), |s| {
                u64::from(s.expire.unsigned_abs())
            });
        now > self
            .refreshed
            .load(Ordering::Relaxed)
            .saturating_add(expire)
    }

    /// The SOA for a negative answer (RFC 2308 §3: TTL the lesser of its TTL and MINIMUM).
    pub fn negative_soa(&self) -> Record {
        let mut soa = self.soa.clone();
        if let Some(data) = self.soa_data() {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        soa
    }
}

/// `a > b` in serial number arithmetic (RFC 1982).
pub fn serial_after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

/// What one change did to a zone's content: IXFR's unit (RFC 1995).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The serial before.
    pub from: u32,
    /// The serial after.
    pub to: u32,
    /// Records gone.
    pub removed: Vec<Record>,
    /// Records new.
    pub added: Vec<Record>,
}

/// The records of the zone `zone` owned by `owner` (as AXFR sends them, SOA apart): its own
/// records, PTRs synthesised from addresses whose reverse name it is, and at the apex the
/// synthesised NS when no NS record is there. Empty when `owner` is not in that zone.
pub fn content_at(index: &Index, zone: &Zone, owner: &Name) -> Vec<Record> {
    if index.zone_of(owner).is_none_or(|z| z.name != zone.name) {
        return Vec::new();
    }
    let own = index.at(owner);
    let mut records: Vec<Record> = own
        .iter()
        .map(|r| Record::from_rdata(owner.clone(), r.ttl, r.rdata()))
        .collect();
    records.extend(
        index
            .reverse_at(owner)
            .iter()
            .map(|r| Record::from_rdata(owner.clone(), r.ttl, RData::PTR(PTR(r.name.clone())))),
    );
    if *owner == zone.name && !own.iter().any(|r| r.rtype == RecordType::NS) {
        records.push(zone.synthetic_ns());
    }
    records
}

/// The whole content of `zone`, SOA apart, apex first.
pub fn content(index: &Index, zone: &Zone) -> Vec<Record> {
    let mut records = content_at(index, zone, &zone.name);
    for owner in index.names_under(&zone.name) {
        if owner != zone.name {
            records.extend(content_at(index, zone, &owner));
        }
    }
    records
}

/// The records in `before` that are not in `after`, and the other way round. A TTL change
/// counts as a change (hickory's record equality leaves TTLs out, as RFC 2136 does).
pub fn difference(before: &[Record], after: &[Record]) -> (Vec<Record>, Vec<Record>) {
    let missing_from = |from: &[Record], r: &Record| !from.iter().any(|o| o == r && o.ttl == r.ttl);
    let removed = before
        .iter()
        .filter(|r| missing_from(after, r))
        .cloned()
        .collect();
    let added = after
        .iter()
        .filter(|r| missing_from(before, r))
        .cloned()
        .collect();
    (removed, added)
}
