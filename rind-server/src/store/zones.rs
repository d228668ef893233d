//! The zones trees: `zones` (apex → settings and serial, as JSON), `zone_journal` (apex,
//! a 0 byte, serial → the change that led to that serial), IXFR's memory, and
//! `secondary_zones` (apex, a 0 byte, chunk number → the records of a secondary zone as
//! last transferred, its SOA first).
//!
//! Writes here go with the records change that caused them, before the same group-committed
//! flush ([`super::records::RecordStore::flushed`]), so a serial and its journal entry are on
//! disk exactly when the change is.

use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder, NameEncoding,
};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::records::zone::Diff;

const ZONES: &str = migrations::ZONES_TREE;
const JOURNAL: &str = migrations::JOURNAL_TREE;
const SECONDARY: &str = migrations::SECONDARY_TREE;

/// Records per stored chunk of a secondary zone (sled prefers values well under a MiB).
const CHUNK_RECORDS: usize = 1000;

/// Most journal entries kept per zone; an IXFR from further back gets the whole zone.
pub const JOURNAL_LIMIT: u32 = 1000;

/// Format byte of a journal entry.
const DIFF_FORMAT: u8 = 1;

/// A zone as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredZone {
    /// Apex, lower-case and fully qualified.
    pub name: String,
    /// The serial.
    pub serial: u32,
    /// Networks allowed to transfer the zone (CIDR).
    #[serde(default)]
    pub allow_transfer: Vec<String>,
    /// NOTIFY targets (`IP:port`).
    #[serde(default)]
    pub notify: Vec<String>,
    /// TSIG key name.
    #[serde(default)]
    pub tsig: Option<String>,
    /// The primary of a secondary zone (`IP:port`).
    #[serde(default)]
    pub primary: Option<String>,
    /// For a secondary zone: when the primary last confirmed its data (seconds since the
    /// epoch), which the SOA expire counts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed: Option<u64>,
}

/// The zones trees.
#[derive(Debug, Clone)]
pub struct ZoneStore {
    store: Store,
}

impl ZoneStore {
    /// Opens the trees.
    pub fn open(store: &Store) -> Result<ZoneStore, StoreError> {
        let db = store.db()?;
        db.open_tree(ZONES)?;
        db.open_tree(JOURNAL)?;
        Ok(ZoneStore {
            store: store.clone(),
        })
    }

    /// Every stored zone; one that cannot be decoded is logged and left on disk.
    pub fn load(&self) -> Result<Vec<StoredZone>, StoreError> {
        let tree = self.store.db()?.open_tree(ZONES)?;
        let mut zones = Vec::new();
        for entry in tree.iter() {
            let (key, value) = entry?;
            if key.first() == Some(&0) {
                // The serial of a deleted zone (`ended_key`), not a zone.
                continue;
            }
            match serde_json::from_slice::<StoredZone>(&value) {
                Ok(zone) => zones.push(zone),
                Err(e) => tracing::error!(
                    key = %String::from_utf8_lossy(&key),
                    error = %e,
                    "unreadable zone in the store; skipped"
                ),
            }
        }
        Ok(zones)
    }

    /// Stores `zone` (not yet durable: the records' flush makes it so).
    pub fn put(&self, zone: &StoredZone) -> Result<(), StoreError> {
        let value = serde_json::to_vec(zone).map_err(|e| self.store.fail(e.to_string()))?;
        self.write(|db| {
            db.open_tree(ZONES)?
                .insert(zone.name.as_bytes(), value.as_slice())?;
            Ok(())
        })
    }

    /// Removes the zone `apex`, its journal and its secondary data, and remembers the
    /// serial it ended at (see [`ZoneStore::last_serial`]).
    pub fn remove(&self, apex: &str, serial: u32) -> Result<(), StoreError> {
        self.write(|db| {
            let zones = db.open_tree(ZONES)?;
            zones.remove(apex.as_bytes())?;
            zones.insert(ended_key(apex), &serial.to_be_bytes())?;
            clear_journal(db, apex)?;
            let tree = db.open_tree(SECONDARY)?;
            for key in tree.scan_prefix(prefix(apex)).keys() {
                tree.remove(key?)?;
            }
            Ok(())
        })
    }

    /// Replaces the data of the secondary zone `apex` with `records` (its SOA first), in one
    /// batch: a crash leaves the old data or the new, never a mix.
    pub fn put_secondary(&self, apex: &str, records: &[Record]) -> Result<(), StoreError> {
        let mut chunks = Vec::new();
        for chunk in records.chunks(CHUNK_RECORDS) {
            let bytes = encode_records(chunk).map_err(|e| self.store.fail(e.to_string()))?;
            chunks.push(bytes);
        }
        self.write(|db| {
            let tree = db.open_tree(SECONDARY)?;
            let mut batch = sled::Batch::default();
            for key in tree.scan_prefix(prefix(apex)).keys() {
                batch.remove(key?);
            }
            for (n, bytes) in chunks.iter().enumerate() {
                let mut key = prefix(apex);
                key.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
                batch.insert(key, bytes.as_slice());
            }
            tree.apply_batch(batch)
        })
    }

    /// The records of the secondary zone `apex` as last stored, its SOA first; empty when it
    /// has none yet (or they cannot be read: the next refresh transfers them again).
    pub fn load_secondary(&self, apex: &str) -> Result<Vec<Record>, StoreError> {
        let tree = self.store.db()?.open_tree(SECONDARY)?;
        let mut records = Vec::new();
        for value in tree.scan_prefix(prefix(apex)).values() {
            match decode_records(&mut BinDecoder::new(&value?)) {
                Some(chunk) => records.extend(chunk),
                None => {
                    tracing::warn!(
                        zone = apex,
                        "stored secondary zone data unreadable; it will be transferred again"
                    );
                    return Ok(Vec::new());
                }
            }
        }
        Ok(records)
    }

    /// The serial the last deleted zone named `apex` ended at, so a new one starts past it.
    pub fn last_serial(&self, apex: &str) -> Result<Option<u32>, StoreError> {
        let zones = self.store.db()?.open_tree(ZONES)?;
        Ok(zones
            .get(ended_key(apex))?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
            .map(u32::from_be_bytes))
    }

    /// Starts the journal of `apex` afresh (a new zone: nothing from an older zone of the
    /// same name may answer its IXFRs).
    pub fn clear_journal(&self, apex: &str) -> Result<(), StoreError> {
        self.write(|db| clear_journal(db, apex))
    }

    /// Records `diff` (the change to serial `diff.to`) and forgets the entry
    /// [`JOURNAL_LIMIT`] serials back.
    pub fn journal(&self, apex: &str, diff: &Diff) -> Result<(), StoreError> {
        let value = encode_diff(diff).map_err(|e| self.store.fail(e.to_string()))?;
        self.write(|db| {
            let tree = db.open_tree(JOURNAL)?;
            tree.insert(journal_key(apex, diff.to), value.as_slice())?;
            tree.remove(journal_key(apex, diff.to.wrapping_sub(JOURNAL_LIMIT)))?;
            Ok(())
        })
    }

    /// The change that led `apex` to `serial`, if the journal has it.
    pub fn diff_to(&self, apex: &str, serial: u32) -> Result<Option<Diff>, StoreError> {
        let tree = self.store.db()?.open_tree(JOURNAL)?;
        let Some(bytes) = tree.get(journal_key(apex, serial))? else {
            return Ok(None);
        };
        match decode_diff(&bytes) {
            Some(diff) => Ok(Some(diff)),
            None => {
                tracing::warn!(
                    zone = apex,
                    serial,
                    "unreadable zone journal entry; sending the whole zone"
                );
                Ok(None)
            }
        }
    }

    /// Makes the zones tree hold exactly `want` (after a failed write), not yet flushed.
    pub fn reconcile(&self, want: &[StoredZone]) -> Result<(), StoreError> {
        let db = self.store.db()?;
        let tree = db.open_tree(ZONES)?;
        let done = (|| {
            for entry in tree.iter() {
                let (key, value) = entry?;
                let decodes = serde_json::from_slice::<StoredZone>(&value).is_ok();
                if decodes && !want.iter().any(|z| z.name.as_bytes() == key.as_ref()) {
                    tree.remove(key)?;
                }
            }
            for zone in want {
                let value = serde_json::to_vec(zone).unwrap_or_default();
                tree.insert(zone.name.as_bytes(), value)?;
            }
            Ok(())
        })();
        done.map_err(|e| self.store.write_failed(&e))
    }

    fn write(&self, op: impl FnOnce(&sled::Db) -> sled::Result<()>) -> Result<(), StoreError> {
        let db = self.store.writable_db()?;
        op(&db).map_err(|e| self.store.write_failed(&e))
    }
}

fn clear_journal(db: &sled::Db, apex: &str) -> sled::Result<()> {
    let tree = db.open_tree(JOURNAL)?;
    for key in tree.scan_prefix(prefix(apex)).keys() {
        tree.remove(key?)?;
    }
    Ok(())
}

/// Where the serial of a deleted zone is kept, in the zones tree: a 0 byte (no zone name
/// starts with one), then the apex.
fn ended_key(apex: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(apex.len() + 1);
    key.push(0);
    key.extend_from_slice(apex.as_bytes());
    key
}

fn prefix(apex: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(apex.len() + 5);
    key.extend_from_slice(apex.as_bytes());
    key.push(0);
    key
}

fn journal_key(apex: &str, serial: u32) -> Vec<u8> {
    let mut key = prefix(apex);
    key.extend_from_slice(&serial.to_be_bytes());
    key
}

/// `[format][from][to][removed count][records][added count][records]`, records in wire form
/// without name compression.
fn encode_diff(diff: &Diff) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    let mut bytes = vec![DIFF_FORMAT];
    bytes.extend_from_slice(&diff.from.to_be_bytes());
    bytes.extend_from_slice(&diff.to.to_be_bytes());
    for records in [&diff.removed, &diff.added] {
        bytes.extend_from_slice(&encode_records(records)?);
    }
    Ok(bytes)
}

/// `[count][records]`, records in wire form without name compression.
fn encode_records(records: &[Record]) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    let count = u32::try_from(records.len()).unwrap_or(u32::MAX);
    let mut bytes = count.to_be_bytes().to_vec();
    // An encoder writes from the start of its buffer, so the records get their own.
    let mut wire = Vec::new();
    {
        let mut outer = BinEncoder::new(&mut wire);
        // Compression pointers would point into this buffer, not into the stored bytes.
        let mut encoder = outer.with_name_encoding(NameEncoding::Uncompressed);
        for record in records {
            record.emit(&mut encoder)?;
        }
    }
    bytes.extend_from_slice(&wire);
    Ok(bytes)
}

/// Reads what [`encode_records`] wrote.
fn decode_records(decoder: &mut BinDecoder<'_>) -> Option<Vec<Record>> {
    let count = decoder.read_u32().ok()?.unverified();
    let mut records = Vec::new();
    for _ in 0..count {
        records.push(Record::read(decoder).ok()?);
    }
    Some(records)
}

fn decode_diff(bytes: &[u8]) -> Option<Diff> {
    let mut decoder = BinDecoder::new(bytes);
    if decoder.read_u8().ok()?.unverified() != DIFF_FORMAT {
        return None;
    }
    let from = decoder.read_u32().ok()?.unverified();
    let to = decoder.read_u32().ok()?.unverified();
    let removed = decode_records(&mut decoder)?;
    let added = decode_records(&mut decoder)?;
    Some(Diff {
        from,
        to,
        removed,
        added,
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData};

    use super::*;

    #[test]
    fn diffs_come_back_as_written() {
        let record = |ip: [u8; 4], ttl| {
            Record::from_rdata(
                Name::from_str("a.home.lan.").expect("name"),
                ttl,
                RData::A(A::from(std::net::Ipv4Addr::from(ip))),
            )
        };
        let diff = Diff {
            from: 7,
            to: 8,
            removed: vec![record([10, 0, 0, 1], 60)],
            added: vec![record([10, 0, 0, 2], 60), record([10, 0, 0, 3], 30)],
        };
        let decoded = decode_diff(&encode_diff(&diff).expect("encode")).expect("decode");
        assert_eq!(decoded, diff);
        assert_eq!(decoded.added[1].ttl, 30);
        assert!(decode_diff(&[2, 0, 0]).is_none());
        let bytes = encode_diff(&diff).expect("encode");
        assert!(decode_diff(&bytes[..bytes.len() - 1]).is_none());
    }

    #[test]
    fn the_journal_keeps_the_last_entries_per_zone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let zones = ZoneStore::open(&store).expect("trees");
        let diff = |to: u32| Diff {
            from: to.wrapping_sub(1),
            to,
            removed: Vec::new(),
            added: Vec::new(),
        };
        for to in 1..=JOURNAL_LIMIT + 5 {
            zones.journal("a.lan.", &diff(to)).expect("journal");
        }
        zones.journal("b.lan.", &diff(3)).expect("journal");
        assert!(zones.diff_to("a.lan.", 5).expect("read").is_none());
        assert_eq!(zones.diff_to("a.lan.", 6).expect("read"), Some(diff(6)));
        assert!(zones
            .diff_to("a.lan.", JOURNAL_LIMIT + 5)
            .expect("read")
            .is_some());
        zones.clear_journal("a.lan.").expect("clear");
        assert!(zones.diff_to("a.lan.", 6).expect("read").is_none());
        assert_eq!(zones.diff_to("b.lan.", 3).expect("read"), Some(diff(3)));
    }
}
