//! The in-memory index of local records: by id (for the API), by owner name (exact answers),
//! by the parent of each `*.parent` wildcard, and by the address of each A/AAAA record
//! (synthesized PTR answers); and the zones, by apex. DNS reads only this, never sled.
//!
//! The two big indexes hold only pointers to the records: a name or address group is found by
//! hashing the key and comparing it with the key of the group's first record. Keyed by a
//! `Name` of their own they cost about 1.3 KB per record for 193,534 records, most of it the
//! 80-byte names and their tables, twice over (the writer keeps an index of its own).

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hashbrown::hash_table::{Entry, HashTable};
use hickory_proto::rr::{Name, RecordType};

use super::zone::{Secondary, Zone};
use super::{LocalRecord, RecordId};

/// The hasher of the big indexes: foldhash, seeded per process, not std's SipHash, which took
/// a fifth of a restart's indexing of 193,534 records. Their keys come from the records
/// (written through the API or a zone file), not from queries, which only look keys up.
type Hasher = foldhash::fast::RandomState;

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
#[derive(Debug, Clone, Default)]
pub struct Index {
    by_id: BTreeSet<ById>,
    by_name: Groups<OwnerKey>,
    /// Keyed by `parent` for the records of `*.parent`.
    wildcards: HashMap<Name, Vec<Arc<LocalRecord>>>,
    /// The A and AAAA records of names that are not wildcards, by address.
    reverse: Groups<AddressKey>,
    /// For each name with records below it: how many (empty non-terminals exist, RFC 8020).
    below: HashMap<Name, usize, Hasher>,
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
        address_of(name).map_or(&[], |address| self.reverse.get(&address))
    }

    /// Whether some record is owned by a name below `name` (so `name` exists, RFC 8020).
    pub fn has_below(&self, name: &Name) -> bool {
        self.below.contains_key(name)
    }

    /// Every owner name at or below `apex`: of records, and of synthesised PTRs.
    pub fn names_under(&self, apex: &Name) -> Vec<Name> {
        let mut names: Vec<Name> = self
            .by_name
            .firsts()
            .filter(|r| apex.zone_of(&r.name))
            .map(|r| r.name.clone())
            .collect();
        // Reverse names are only under `arpa.`: not worth printing for any other zone.
        if apex
            .iter()
            .next_back()
            .is_some_and(|l| l.eq_ignore_ascii_case(b"arpa"))
        {
            let reverse = self.reverse.firsts().filter_map(|r| r.address());
            names.extend(reverse.map(Name::from).filter(|name| apex.zone_of(name)));
        }
        names
    }

    /// The record with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<LocalRecord>> {
        self.by_id.get(id).map(|r| &r.0)
    }

    /// Every record, oldest id first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<LocalRecord>> {
        self.by_id.iter().map(|r| &r.0)
    }

    /// The records owned by exactly `name`, oldest first.
    pub fn at(&self, name: &Name) -> &[Arc<LocalRecord>] {
        self.by_name.get(name)
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
        if let Some(same) = others.iter().find(|r| r.same_data(candidate)) {
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
        let records = self.by_name.get(name);
        if !records.is_empty() {
            return Some(Node::Exact(records));
        }
        let records = self.reverse_at(name);
        if !records.is_empty() {
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
        self.by_id.insert(ById(Arc::clone(&record)));
        self.insert_except_by_id(record);
    }

    /// [`Index::insert`] into every index but the one by id.
    fn insert_except_by_id(&mut self, record: Arc<LocalRecord>) {
        for ancestor in ancestors(&record.name) {
            *self.below.entry(ancestor).or_default() += 1;
        }
        self.by_name.add(Arc::clone(&record));
        if let Some(parent) = wildcard_parent(&record.name) {
            self.wildcards.entry(parent).or_default().push(record);
        } else if record.address().is_some() {
            self.reverse.add(record);
        }
    }

    fn remove(&mut self, id: &RecordId) {
        let Some(ById(old)) = self.by_id.take(id.as_str()) else {
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
        self.by_name.drop(&old);
        if let Some(parent) = wildcard_parent(&old.name) {
            drop_from(&mut self.wildcards, &parent, id);
        } else if old.address().is_some() {
            self.reverse.drop(&old);
        }
    }
}

/// An [`Index`] being built from the records read from the store at start, each id once.
///
/// Quicker than a [`Change::Put`] for each: there is no old record to look for, and the id
/// index is built in one pass at the end (the store gives the ids in order) instead of one
/// search down the tree per record, which was a tenth of a restart's indexing.
#[derive(Debug, Default)]
pub struct Loading {
    index: Index,
    ids: Vec<ById>,
}

impl Loading {
    /// Adds a record whose id no record added before has.
    pub fn add(&mut self, record: Arc<LocalRecord>) {
        self.ids.push(ById(Arc::clone(&record)));
        self.index.insert_except_by_id(record);
    }

    /// The index of every record added.
    pub fn finish(self) -> Index {
        let Loading { mut index, ids } = self;
        index.by_id = ids.into_iter().collect();
        index
    }
}

/// A record in the id index: ordered, and found, by its id.
#[derive(Debug, Clone)]
struct ById(Arc<LocalRecord>);

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        self.0.id.as_str()
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &ById) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &ById) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &ById) -> std::cmp::Ordering {
        self.0.id.as_str().cmp(other.0.id.as_str())
    }
}

/// What groups records in a [`Groups`] table, read from the records themselves.
trait GroupKey {
    /// The key type; its `Hash` must agree with its `Eq` (a `Name`'s ignores letter case).
    type Key: Hash + Eq;
    /// Calls `with` on the key of `record`, if it has one (only those are added).
    fn with<T>(record: &LocalRecord, with: impl FnOnce(&Self::Key) -> T) -> Option<T>;
}

/// Records grouped by their owner name.
#[derive(Debug, Clone, Default)]
struct OwnerKey;

impl GroupKey for OwnerKey {
    type Key = Name;
    fn with<T>(record: &LocalRecord, with: impl FnOnce(&Name) -> T) -> Option<T> {
        Some(with(&record.name))
    }
}

/// A and AAAA records grouped by their address.
#[derive(Debug, Clone, Default)]
struct AddressKey;

impl GroupKey for AddressKey {
    type Key = IpAddr;
    fn with<T>(record: &LocalRecord, with: impl FnOnce(&IpAddr) -> T) -> Option<T> {
        record.address().map(|address| with(&address))
    }
}

/// A multimap from a key to the records that have it, in the order added, holding one pointer
/// per record and one list per key: the key is read from a group's first record.
#[derive(Debug, Clone)]
struct Groups<K> {
    table: HashTable<Group>,
    hasher: Hasher,
    key: std::marker::PhantomData<K>,
}

impl<K> Default for Groups<K> {
    fn default() -> Self {
        Groups {
            table: HashTable::new(),
            hasher: Hasher::default(),
            key: std::marker::PhantomData,
        }
    }
}

impl<K: GroupKey> Groups<K> {
    /// The records with key `key`, in the order added.
    fn get<Q>(&self, key: &Q) -> &[Arc<LocalRecord>]
    where
        K::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.table
            .find(self.hasher.hash_one(key), |group| holds::<K, Q>(group, key))
            .map_or(&[], Group::as_slice)
    }

    fn add(&mut self, record: Arc<LocalRecord>) {
        let Groups { table, hasher, .. } = self;
        let slot = K::with(&record, |key| {
            match table.entry(
                hasher.hash_one(key),
                |group| holds::<K, K::Key>(group, key),
                |group| first_key_hash::<K>(hasher, group),
            ) {
                Entry::Occupied(group) => Ok(group.into_mut()),
                Entry::Vacant(slot) => Err(slot),
            }
        });
        match slot {
            Some(Ok(group)) => group.push(record),
            Some(Err(slot)) => {
                slot.insert(Group::One(record));
            }
            None => {}
        }
    }

    /// Removes `record` (by id), and its group when it was the last.
    fn drop(&mut self, record: &LocalRecord) {
        let Groups { table, hasher, .. } = self;
        K::with(record, |key| {
            if let Entry::Occupied(mut group) = table.entry(
                hasher.hash_one(key),
                |group| holds::<K, K::Key>(group, key),
                |group| first_key_hash::<K>(hasher, group),
            ) {
                if group.get_mut().remove(&record.id) {
                    group.remove();
                }
            }
        });
    }

    /// The first record of each group.
    fn firsts(&self) -> impl Iterator<Item = &Arc<LocalRecord>> {
        self.table
            .iter()
            .filter_map(|group| group.as_slice().first())
    }
}

/// The records of one key, in the order added. Most keys have one, which then needs no list
/// of its own (a heap allocation per name).
#[derive(Debug, Clone)]
enum Group {
    One(Arc<LocalRecord>),
    Many(Vec<Arc<LocalRecord>>),
}

impl Group {
    fn as_slice(&self) -> &[Arc<LocalRecord>] {
        match self {
            Group::One(record) => std::slice::from_ref(record),
            Group::Many(records) => records,
        }
    }

    fn push(&mut self, record: Arc<LocalRecord>) {
        match self {
            Group::One(first) => *self = Group::Many(vec![Arc::clone(first), record]),
            Group::Many(records) => records.push(record),
        }
    }

    /// Removes the record `id`; true when none is left.
    fn remove(&mut self, id: &RecordId) -> bool {
        match self {
            Group::One(record) => record.id == *id,
            Group::Many(records) => {
                records.retain(|r| r.id != *id);
                match records.as_slice() {
                    [] => true,
                    [last] => {
                        let last = Arc::clone(last);
                        *self = Group::One(last);
                        false
                    }
                    _ => false,
                }
            }
        }
    }
}

/// Whether `group`'s records have key `key` (groups are never left empty).
fn holds<K: GroupKey, Q>(group: &Group, key: &Q) -> bool
where
    K::Key: Borrow<Q>,
    Q: Eq + ?Sized,
{
    group
        .as_slice()
        .first()
        .and_then(|r| K::with(r, |k| k.borrow() == key))
        .unwrap_or(false)
}

fn first_key_hash<K: GroupKey>(hasher: &Hasher, group: &Group) -> u64 {
    group
        .as_slice()
        .first()
        .and_then(|r| K::with(r, |k| hasher.hash_one(k)))
        .unwrap_or(0)
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

/// The address whose reverse name is `name` (`10.1.168.192.in-addr.arpa.` is 192.168.1.10):
/// the inverse of `Name::from(IpAddr)`, letter case aside. Octets are decimal without leading
/// zeros and nibbles single hex digits, as that form writes them; anything else names no
/// address.
pub(crate) fn address_of(name: &Name) -> Option<IpAddr> {
    if !name.is_fqdn() {
        return None;
    }
    let labels: Vec<&[u8]> = name.iter().collect();
    match labels.as_slice() {
        [d, c, b, a, zone, arpa]
            if zone.eq_ignore_ascii_case(b"in-addr") && arpa.eq_ignore_ascii_case(b"arpa") =>
        {
            let mut octets = [0u8; 4];
            for (octet, label) in octets.iter_mut().zip([a, b, c, d]) {
                *octet = decimal_octet(label)?;
            }
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        [nibbles @ .., zone, arpa]
            if nibbles.len() == 32
                && zone.eq_ignore_ascii_case(b"ip6")
                && arpa.eq_ignore_ascii_case(b"arpa") =>
        {
            let mut bits = 0u128;
            for label in nibbles.iter().rev() {
                let [digit] = label else {
                    return None;
                };
                bits = bits << 4 | u128::from(char::from(*digit).to_digit(16)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bits)))
        }
        _ => None,
    }
}

/// `0` to `255` written the way `Name::from(IpAddr)` writes an octet.
fn decimal_octet(label: &[u8]) -> Option<u8> {
    let canonical = !label.is_empty()
        && label.len() <= 3
        && label.iter().all(u8::is_ascii_digit)
        && (label.len() == 1 || label.first() != Some(&b'0'));
    canonical
        .then(|| std::str::from_utf8(label).ok()?.parse().ok())
        .flatten()
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
    fn an_index_loaded_in_one_pass_answers_like_one_built_by_puts() {
        let records = [
            record("1", "nas.home.lan", "A", "192.168.1.10"),
            record("2", "nas.home.lan", "TXT", "hi"),
            record("3", "*.home.lan", "A", "192.168.1.99"),
            record("4", "a.b.deep.home.lan", "AAAA", "fd00::4"),
        ];
        let built = index_of(&records);
        let mut loading = Loading::default();
        for r in &records {
            loading.add(Arc::clone(r));
        }
        let mut loaded = loading.finish();
        let ids = |z: &Index| z.iter().map(|r| r.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&loaded), ["1", "2", "3", "4"]);
        assert_eq!(ids(&loaded), ids(&built));
        for name in [
            "nas.home.lan.",
            "x.home.lan.",
            "b.deep.home.lan.",
            "10.1.168.192.in-addr.arpa.",
            "home.lan.",
        ] {
            assert_eq!(found(&loaded, name), found(&built, name), "{name}");
        }
        let deep = Name::from_str("deep.home.lan.").expect("name");
        assert!(loaded.has_below(&deep));
        assert_eq!(loaded.get("2").map(|r| r.text()), Some("\"hi\"".into()));
        // Later changes apply to it as to any index.
        loaded.apply(&Change::Delete(RecordId::from_stored("4")));
        assert!(!loaded.has_below(&deep));
        assert_eq!(found(&loaded, "nas.home.lan.").map(|f| f.1.len()), Some(2));
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
        assert_eq!(
            found(&z, "10.1.168.192.IN-ADDR.Arpa."),
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
    fn groups_survive_growth_and_removal() {
        let mut z = Index::default();
        for i in 0..2_000 {
            let name = format!("h{i}.home.lan");
            let ip = format!("10.0.{}.{}", i / 256, i % 256);
            z.apply(&Change::Put(record(&format!("{i}a"), &name, "A", &ip)));
            z.apply(&Change::Put(record(&format!("{i}b"), &name, "TXT", "x")));
        }
        for i in (0..2_000).step_by(2) {
            z.apply(&Change::Delete(RecordId::from_stored(&format!("{i}a"))));
        }
        for i in 0..2_000 {
            let ids: Vec<_> = z
                .at(&Name::from_str(&format!("h{i}.home.lan.")).expect("name"))
                .iter()
                .map(|r| r.id.to_string())
                .collect();
            let ptr = found(&z, &format!("{}.{}.0.10.in-addr.arpa.", i % 256, i / 256));
            if i % 2 == 0 {
                assert_eq!(ids, [format!("{i}b")]);
                assert_eq!(ptr, None);
            } else {
                assert_eq!(ids, [format!("{i}a"), format!("{i}b")]);
                assert_eq!(ptr, Some(("reverse", vec![format!("{i}a")])));
            }
        }
        assert_eq!(z.iter().count(), 3_000);
        for i in (0..2_000).step_by(4) {
            z.apply(&Change::Delete(RecordId::from_stored(&format!("{i}b"))));
            assert_eq!(found(&z, &format!("h{i}.home.lan.")), None);
        }
        z.apply(&Change::Delete(RecordId::from_stored("1b")));
        z.apply(&Change::Delete(RecordId::from_stored("1a")));
        assert_eq!(found(&z, "h1.home.lan."), None);
        assert_eq!(
            found(&z, "h3.home.lan."),
            Some(("exact", vec!["3a".into(), "3b".into()]))
        );
        assert_eq!(z.iter().count(), 2_498);
        z.apply(&Change::Delete(RecordId::from_stored("2b")));
        z.apply(&Change::Delete(RecordId::from_stored("3a")));
        z.apply(&Change::Delete(RecordId::from_stored("3b")));
        assert_eq!(found(&z, "h2.home.lan."), None);
        assert_eq!(found(&z, "h3.home.lan."), None);
        assert_eq!(z.iter().count(), 2_495);
        assert_eq!(
            z.names_under(&Name::from_str("home.lan.").expect("name"))
                .len(),
            1_497
        );
        assert_eq!(
            z.names_under(&Name::from_str("in-addr.arpa.").expect("name"))
                .len(),
            998
        );
    }

    #[test]
    fn reverse_names_map_back_to_their_addresses() {
        for text in [
            "0.0.0.0",
            "10.0.0.1",
            "192.168.1.10",
            "255.255.255.255",
            "::",
            "fd00::10",
            "2001:db8::ffff:1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
        ] {
            let ip = IpAddr::from_str(text).expect("address");
            let name = Name::from(ip);
            assert_eq!(address_of(&name), Some(ip), "{name}");
            let upper = Name::from_ascii(name.to_ascii().to_uppercase()).expect("name");
            assert_eq!(address_of(&upper), Some(ip), "{upper}");
        }
        let six = Name::from(IpAddr::from_str("fd00::10").expect("address")).to_ascii();
        for text in [
            "010.1.168.192.in-addr.arpa.",
            "256.1.168.192.in-addr.arpa.",
            "1.168.192.in-addr.arpa.",
            "x.1.168.192.in-addr.arpa.",
            "1.1.1.1.1.in-addr.arpa.",
            "10.1.168.192.in-addr.arpa.example.",
            "10.1.168.192.in-addr.arpa",
            "10.1.168.192.ip6.arpa.",
            &six[2..],
            &format!("0.{six}"),
            &six.replacen("0.", "00.", 1),
            &six.replacen("0.", "g.", 1),
        ] {
            let name = Name::from_ascii(text).expect("name");
            assert_eq!(address_of(&name), None, "{text}");
        }
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
