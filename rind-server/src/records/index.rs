//! The in-memory index of local records: by id (for the API), by owner name (exact answers),
//! by the parent of each `*.parent` wildcard, and by the reverse name of each A/AAAA address
//! (synthesized PTR answers); and the zones, by apex. DNS reads only this, never sled.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::{Name, RData, RecordType};

use super::zone::{Secondary, Zone};
use super::{LocalRecord, RecordId};

/// One change to the local records or zones, applied in the order it was written.
#[derive(Debug, Clone)]
pub enum Change {
    /// Create the record, or replace the one with its id.
    Put(Arc<LocalRecord>),
    /// Remove the record with this id.
    Delete(RecordId),
    /// Create the zone, or replace the one with its apex (a new serial, new settings).
    Zone(Arc<Zone>),
    /// Remove the zone with this apex (and its secondary data).
    DropZone(Name),
    /// Set the data of the secondary zone with this apex.
    Secondary(Name, Arc<Secondary>),
    /// The primary confirmed the data of this secondary zone at this time.
    Refreshed(Name, u64),
}

/// A write that would break the rules of a name's data (RFC 1034 §3.6.2) or repeat a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Conflict(pub String);

/// Where the records for a name come from.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    /// Records owned by the name itself.
    Exact(&'a [Arc<LocalRecord>]),
    /// A and AAAA records whose address has this reverse name; they answer PTR.
    Reverse(&'a [Arc<LocalRecord>]),
    /// The records of the nearest `*.ancestor` wildcard.
    Wildcard(&'a [Arc<LocalRecord>]),
}

/// The local records, indexed for answering.
#[derive(Debug, Default)]
pub struct Index {
    by_id: BTreeMap<RecordId, Arc<LocalRecord>>,
    by_name: HashMap<Name, Vec<Arc<LocalRecord>>>,
    /// Keyed by `parent` for the records of `*.parent`.
    wildcards: HashMap<Name, Vec<Arc<LocalRecord>>>,
    /// Keyed by the `in-addr.arpa.`/`ip6.arpa.` name of the address.
    reverse: HashMap<Name, Vec<Arc<LocalRecord>>>,
    /// For each name with records below it: how many (empty non-terminals exist, RFC 8020).
    below: HashMap<Name, usize>,
    /// The zones, by apex.
    zones: HashMap<Name, Arc<Zone>>,
    /// The data of the secondary zones that have some, by apex.
    secondaries: HashMap<Name, Arc<Secondary>>,
}

impl Index {
    /// Applies one change.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Put(record) => {
                self.remove(&record.id);
                self.insert(Arc::clone(record));
            }
            Change::Delete(id) => self.remove(id),
            Change::Zone(zone) => {
                self.zones.insert(zone.name.clone(), Arc::clone(zone));
            }
            Change::DropZone(name) => {
                self.zones.remove(name);
                self.secondaries.remove(name);
            }
            Change::Secondary(name, data) => {
                self.secondaries.insert(name.clone(), Arc::clone(data));
            }
            Change::Refreshed(name, at) => {
                if let Some(data) = self.secondaries.get(name) {
                    data.refreshed
                        .store(*at, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    /// The data of the secondary zone `name`, once it has been transferred.
    pub fn secondary(&self, name: &Name) -> Option<&Arc<Secondary>> {
        self.secondaries.get(name)
    }

    /// The zone `name` falls in: the one with the longest apex at or above it.
    pub fn zone_of(&self, name: &Name) -> Option<&Arc<Zone>> {
        if self.zones.is_empty() {
            return None;
        }
        let labels = name.iter().count();
        (1..=labels)
            .rev()
            .find_map(|keep| self.zones.get(&name.trim_to(keep)))
    }

    /// The zone with apex `name`.
    pub fn zone(&self, name: &Name) -> Option<&Arc<Zone>> {
        self.zones.get(name)
    }

    /// Every zone, in no particular order.
    pub fn zones(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.zones.values()
    }

    /// The A/AAAA records whose address has the reverse name `name`.
    pub fn reverse_at(&self, name: &Name) -> &[Arc<LocalRecord>] {
        self.reverse.get(name).map_or(&[], Vec::as_slice)
    }

    /// Whether some record is owned by a name below `name` (so `name` exists, RFC 8020).
    pub fn has_below(&self, name: &Name) -> bool {
        self.below.contains_key(name)
    }

    /// Every owner name at or below `apex`: of records, and of synthesised PTRs.
    pub fn names_under(&self, apex: &Name) -> Vec<Name> {
        self.by_name
            .keys()
            .chain(self.reverse.keys())
            .filter(|name| apex.zone_of(name))
            .cloned()
            .collect()
    }

    /// The record with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<LocalRecord>> {
        self.by_id.get(id)
    }

    /// Every record, oldest id first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<LocalRecord>> {
        self.by_id.values()
    }

    /// The records owned by exactly `name`, oldest first.
    pub fn at(&self, name: &Name) -> &[Arc<LocalRecord>] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// Checks that `candidate` may be stored (replacing the record with its id, if any): no
    /// duplicate of its name, type and data, and no CNAME beside other data at its name.
    pub fn check(&self, candidate: &LocalRecord) -> Result<(), Conflict> {
        self.check_beside(candidate, &[])
    }

    /// [`Index::check`], as if `pending` (records about to be stored with `candidate`, at
    /// its name) were stored already.
    pub fn check_beside(
        &self,
        candidate: &LocalRecord,
        pending: &[Arc<LocalRecord>],
    ) -> Result<(), Conflict> {
        let others: Vec<&Arc<LocalRecord>> = self
            .at(&candidate.name)
            .iter()
            .chain(pending)
            .filter(|r| r.id != candidate.id)
            .collect();
        let name = candidate.name.to_ascii();
        if let Some(same) = others
            .iter()
            .find(|r| r.rtype == candidate.rtype && r.text == candidate.text)
        {
            return Err(Conflict(format!(
                "{name} already has this {} record (id {}): same name, type and data",
                candidate.rtype, same.id
            )));
        }
        let cname = others.iter().find(|r| r.rtype == RecordType::CNAME);
        match (candidate.rtype == RecordType::CNAME, cname, others.first()) {
            (true, Some(c), _) => Err(Conflict(format!(
                "{name} already has a CNAME (id {}); a name has at most one CNAME",
                c.id
            ))),
            (true, None, Some(other)) => Err(Conflict(format!(
                "{name} already has {} data (id {}); a CNAME cannot sit beside other data at the same name (RFC 1034 §3.6.2)",
                other.rtype, other.id
            ))),
            (false, Some(c), _) => Err(Conflict(format!(
                "{name} has a CNAME (id {}); no other data can sit beside a CNAME at the same name (RFC 1034 §3.6.2)",
                c.id
            ))),
            _ => Ok(()),
        }
    }

    /// The records that answer for `name`: its own, else those of the address it is the reverse
    /// name of, else the nearest wildcard above it (RFC 4592: an exact name wins).
    pub fn lookup(&self, name: &Name) -> Option<Node<'_>> {
        if let Some(records) = self.by_name.get(name) {
            return Some(Node::Exact(records));
        }
        if let Some(records) = self.reverse.get(name) {
            return Some(Node::Reverse(records));
        }
        if self.wildcards.is_empty() {
            return None;
        }
        let labels = name.iter().count();
        (0..labels)
            .rev()
            .find_map(|keep| self.wildcards.get(&name.trim_to(keep)))
            .map(|records| Node::Wildcard(records))
    }

    fn insert(&mut self, record: Arc<LocalRecord>) {
        for ancestor in ancestors(&record.name) {
            *self.below.entry(ancestor).or_default() += 1;
        }
        self.by_id.insert(record.id.clone(), Arc::clone(&record));
        self.by_name
            .entry(record.name.clone())
            .or_default()
            .push(Arc::clone(&record));
        if let Some(parent) = wildcard_parent(&record.name) {
            self.wildcards
                .entry(parent)
                .or_default()
                .push(Arc::clone(&record));
        } else if let Some(reverse) = reverse_name(&record.data) {
            self.reverse.entry(reverse).or_default().push(record);
        }
    }

    fn remove(&mut self, id: &RecordId) {
        let Some(old) = self.by_id.remove(id) else {
            return;
        };
        for ancestor in ancestors(&old.name) {
            if let Some(count) = self.below.get_mut(&ancestor) {
                *count -= 1;
                if *count == 0 {
                    self.below.remove(&ancestor);
                }
            }
        }
        drop_from(&mut self.by_name, &old.name, id);
        if let Some(parent) = wildcard_parent(&old.name) {
            drop_from(&mut self.wildcards, &parent, id);
        } else if let Some(reverse) = reverse_name(&old.data) {
            drop_from(&mut self.reverse, &reverse, id);
        }
    }
}

/// Removes the record `id` from the list under `key`, and the list when it is left empty.
fn drop_from(map: &mut HashMap<Name, Vec<Arc<LocalRecord>>>, key: &Name, id: &RecordId) {
    if let Some(list) = map.get_mut(key) {
        list.retain(|r| r.id != *id);
        if list.is_empty() {
            map.remove(key);
        }
    }
}

/// The names above `name`, root excluded.
fn ancestors(name: &Name) -> impl Iterator<Item = Name> + '_ {
    (1..name.iter().count()).map(|keep| name.trim_to(keep))
}

/// `parent` for a name `*.parent`.
fn wildcard_parent(name: &Name) -> Option<Name> {
    let labels = name.iter().count();
    name.is_wildcard().then(|| name.trim_to(labels - 1))
}

/// The reverse name of an A or AAAA record's address.
pub(crate) fn reverse_name(data: &RData) -> Option<Name> {
    match data {
        RData::A(a) => Some(Name::from(IpAddr::V4(a.0))),
        RData::AAAA(aaaa) => Some(Name::from(IpAddr::V6(aaaa.0))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::records::Draft;

    fn record(id: &str, name: &str, rtype: &str, data: &str) -> Arc<LocalRecord> {
        let draft = Draft::parse(name, rtype, 300, data).expect("valid record");
        Arc::new(draft.into_record(RecordId::from_stored(id)))
    }

    fn index_of(records: &[Arc<LocalRecord>]) -> Index {
        let mut index = Index::default();
        for r in records {
            index.apply(&Change::Put(Arc::clone(r)));
        }
        index
    }

    fn found(index: &Index, name: &str) -> Option<(&'static str, Vec<String>)> {
        let name = Name::from_str(name).expect("name");
        index.lookup(&name).map(|node| {
            let (kind, records) = match node {
                Node::Exact(r) => ("exact", r),
                Node::Reverse(r) => ("reverse", r),
                Node::Wildcard(r) => ("wildcard", r),
            };
            (kind, records.iter().map(|r| r.id.to_string()).collect())
        })
    }

    #[test]
    fn exact_wins_over_wildcard_at_any_depth() {
        let z = index_of(&[
            record("1", "*.home.lan", "A", "10.0.0.1"),
            record("2", "www.home.lan", "TXT", "hi"),
            record("3", "*.deep.home.lan", "A", "10.0.0.3"),
        ]);
        assert_eq!(
            found(&z, "www.home.lan."),
            Some(("exact", vec!["2".into()]))
        );
        assert_eq!(
            found(&z, "a.home.lan."),
            Some(("wildcard", vec!["1".into()]))
        );
        assert_eq!(
            found(&z, "a.b.c.home.lan."),
            Some(("wildcard", vec!["1".into()]))
        );
        assert_eq!(
            found(&z, "x.deep.home.lan."),
            Some(("wildcard", vec!["3".into()]))
        );
        assert_eq!(
            found(&z, "deep.home.lan."),
            Some(("wildcard", vec!["1".into()]))
        );
        assert_eq!(found(&z, "*.home.lan."), Some(("exact", vec!["1".into()])));
        assert_eq!(found(&z, "home.lan."), None);
        assert_eq!(found(&z, "example.com."), None);
    }

    #[test]
    fn reverse_names_follow_addresses() {
        let mut z = index_of(&[
            record("1", "nas.home.lan", "A", "192.168.1.10"),
            record("2", "nas.home.lan", "AAAA", "fd00::10"),
            record("3", "*.home.lan", "A", "192.168.1.99"),
        ]);
        assert_eq!(
            found(&z, "10.1.168.192.in-addr.arpa."),
            Some(("reverse", vec!["1".into()]))
        );
        let v6 = Name::from(IpAddr::from_str("fd00::10").expect("ip")).to_ascii();
        assert_eq!(found(&z, &v6), Some(("reverse", vec!["2".into()])));
        // A wildcard owner names no host, so its address gets no PTR.
        assert_eq!(found(&z, "99.1.168.192.in-addr.arpa."), None);
        z.apply(&Change::Delete(RecordId::from_stored("1")));
        assert_eq!(found(&z, "10.1.168.192.in-addr.arpa."), None);
        assert_eq!(z.iter().count(), 2);
    }

    #[test]
    fn put_replaces_and_moves_the_indexes() {
        let mut z = index_of(&[record("1", "a.home.lan", "A", "10.0.0.1")]);
        z.apply(&Change::Put(record("1", "b.home.lan", "A", "10.0.0.2")));
        assert_eq!(found(&z, "a.home.lan."), None);
        assert_eq!(found(&z, "b.home.lan."), Some(("exact", vec!["1".into()])));
        assert_eq!(found(&z, "1.0.0.10.in-addr.arpa."), None);
        assert!(found(&z, "2.0.0.10.in-addr.arpa.").is_some());
    }

    #[test]
    fn conflicts() {
        let z = index_of(&[
            record("1", "www.home.lan", "A", "10.0.0.1"),
            record("2", "alias.home.lan", "CNAME", "www.home.lan"),
        ]);
        let check = |r: Arc<LocalRecord>| z.check(&r).map_err(|e| e.0);
        assert!(check(record("9", "WWW.home.lan.", "A", "10.0.0.1"))
            .expect_err("duplicate")
            .contains("same name, type and data"));
        assert!(check(record("9", "www.home.lan", "A", "10.0.0.2")).is_ok());
        assert!(check(record("9", "www.home.lan", "CNAME", "x.lan"))
            .expect_err("cname beside A")
            .contains("cannot sit beside"));
        assert!(check(record("9", "alias.home.lan", "TXT", "x"))
            .expect_err("A beside cname")
            .contains("has a CNAME"));
        assert!(check(record("9", "alias.home.lan", "CNAME", "other.lan"))
            .expect_err("two cnames")
            .contains("at most one CNAME"));
        // Replacing a record is checked against the others only.
        assert!(check(record("2", "alias.home.lan", "CNAME", "other.lan")).is_ok());
        assert!(check(record("1", "www.home.lan", "CNAME", "other.lan")).is_ok());
    }
}
