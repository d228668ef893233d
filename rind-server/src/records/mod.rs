//! Local records: what they are, how they change, and how DNS reads them.
//!
//! - [`rdata`]: names, types and RDATA in presentation form, parsed and printed;
//! - [`data`]: RDATA as the index holds it, compactly;
//! - [`index`]: the in-memory index DNS answers from (exact names, wildcards, reverse names);
//! - [`answer`]: the answering rules (AA, NODATA, CNAME chains, PTR);
//! - [`Records`]: the write path. Writers take turns on a lock only long enough to check the
//!   change against every earlier one, hand it to sled and queue it; each then waits for a
//!   flush that started after its write (shared with the writers around it, see
//!   [`crate::store::records`]), and publishes to the index DNS reads every queued change up
//!   to its own, in write order, before the API answers. DNS never sees a change sled could
//!   still lose, and sees every acknowledged one.
//!
//! Zones ([`zone`]) live in the same index and go through the same write path: a record write
//! that changes a zone's content also stores the zone's next serial and the change for IXFR,
//! before the same flush, and zones whose serial moved are announced (for NOTIFY) once the
//! write is published.
//!
//! A write that fails (a full disk) changes nothing: the index DNS reads never had it, and
//! [`Records::repair`] (run by the next write and by a background task) reopens the store and
//! makes the records on disk exactly the acknowledged ones again, undoing whatever part of a
//! failed write sled got to disk.

pub mod answer;
pub mod data;
pub mod index;
pub mod master;
pub mod rdata;
pub mod zone;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::Query;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ipnet::IpNet;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::store::records::{FlushError, RecordStore, StoredRecord};
use crate::store::snapshot::SnapshotError;
use crate::store::zones::{StoredZone, ZoneStore};
use crate::store::{RecordsCheck, StoreError};
use answer::Local;
use index::{Change, Conflict, Index};
use rdata::Invalid;
use zone::{Diff, Zone};

/// TTL of a record created without one.
pub const DEFAULT_TTL: u32 = 300;
/// Largest TTL (RFC 2181 §8: 2^31 - 1).
pub const MAX_TTL: i64 = 2_147_483_647;

/// A record id: 26 characters of Crockford base32 for 48 bits of creation time in milliseconds
/// and 80 random bits (the ULID layout).
///
/// Random bits make ids that are never reused, with no counter to keep: not after a crash, nor
/// when a snapshot is restored and the restored server creates records the original also
/// created ids for after the snapshot (a persisted counter would hand those ids out again).
/// The time prefix lists records in creation order; within one millisecond an id is the
/// previous one plus one (the ULID "monotonic" rule), so that order holds there too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(Box<str>);

impl RecordId {
    fn generate() -> RecordId {
        const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let random: u128 = rand::random();
        let fresh = (millis & ((1 << 48) - 1)) << 80 | (random & ((1 << 80) - 1));
        static LAST: Mutex<u128> = Mutex::new(0);
        let bits = {
            let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
            *last = fresh.max(last.wrapping_add(1));
            *last
        };
        let id: String = (0..26)
            .rev()
            // A 5-bit value always indexes the 32-letter alphabet.
            .filter_map(|i| {
                ALPHABET
                    .get(((bits >> (i * 5)) & 31) as usize)
                    .map(|&b| char::from(b))
            })
            .collect();
        RecordId(id.into())
    }

    /// An id as read back from the store.
    pub fn from_stored(id: &str) -> RecordId {
        RecordId(id.into())
    }

    /// The id as text (it is URL-safe as it is).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for RecordId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One local record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRecord {
    /// Stable id.
    pub id: RecordId,
    /// Owner name, lower-case and fully qualified.
    pub name: Name,
    /// Record type, one of [`rdata::SUPPORTED`].
    pub rtype: RecordType,
    /// TTL in seconds, answered as it is.
    pub ttl: u32,
    data: data::Data,
}

impl LocalRecord {
    /// The record `id` with these fields; `data` must be of type `rtype`.
    pub fn new(id: RecordId, name: Name, rtype: RecordType, ttl: u32, data: RData) -> LocalRecord {
        LocalRecord {
            id,
            name,
            rtype,
            ttl,
            data: data::Data::new(rtype, data),
        }
    }

    /// The data, ready for answers.
    pub fn rdata(&self) -> RData {
        self.data.rdata(self.rtype)
    }

    /// The data in its normal presentation form (what the API shows and exports).
    pub fn text(&self) -> String {
        rdata::print(&self.rdata())
    }

    /// Whether `other` has the same type and data (a duplicate, TTL aside).
    pub fn same_data(&self, other: &LocalRecord) -> bool {
        self.rtype == other.rtype && self.data == other.data
    }

    /// The address of an A or AAAA record.
    pub fn address(&self) -> Option<IpAddr> {
        self.data.address()
    }

    /// A strong ETag (RFC 9110 §8.8.3) for this version of the record: a digest of its id,
    /// name, type, TTL and data, so it is the same after a restart and changes with any field.
    pub fn etag(&self) -> String {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        for part in [
            self.id.as_str(),
            &self.name.to_ascii(),
            &self.rtype.to_string(),
            &self.ttl.to_string(),
            &self.text(),
        ] {
            digest.update(part.as_bytes());
            digest.update([0]);
        }
        let hash = digest.finalize();
        let hex: String = hash.iter().take(12).map(|b| format!("{b:02x}")).collect();
        format!("\"{hex}\"")
    }
}

/// An `If-Match` precondition (RFC 9110 §13.1.1): the write goes ahead only when the record's
/// current ETag is one of these, or, for `Any`, when the record exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `If-Match: *`.
    Any,
    /// `If-Match: "tag1", "tag2"`.
    Tags(Vec<String>),
}

impl IfMatch {
    /// Parses an `If-Match` header value; `None` when it is not a list of quoted strong tags
    /// or `*` (a weak tag never matches for a write, RFC 9110 §13.1.1).
    pub fn parse(value: &str) -> Option<IfMatch> {
        let value = value.trim();
        if value == "*" {
            return Some(IfMatch::Any);
        }
        let tags: Vec<String> = value
            .split(',')
            .map(str::trim)
            .map(|t| {
                let inner = t.strip_prefix('"')?.strip_suffix('"')?;
                (!inner.contains('"')).then(|| t.to_string())
            })
            .collect::<Option<_>>()?;
        (!tags.is_empty()).then_some(IfMatch::Tags(tags))
    }

    fn holds(&self, current: &LocalRecord) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Tags(tags) => {
                let etag = current.etag();
                tags.contains(&etag)
            }
        }
    }
}

/// A valid record that has no id yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    name: Name,
    rtype: RecordType,
    ttl: u32,
    data: RData,
}

impl Draft {
    /// Validates the fields of a record as given over the API.
    pub fn parse(name: &str, rtype: &str, ttl: i64, data: &str) -> Result<Draft, Invalid> {
        let rtype = rdata::parse_type(rtype)?;
        let name = rdata::parse_owner(name)?;
        let ttl = u32::try_from(ttl)
            .ok()
            .filter(|t| i64::from(*t) <= MAX_TTL)
            .ok_or_else(|| {
                Invalid(format!(
                    "ttl {ttl} is out of range: it must be 0 to {MAX_TTL} seconds"
                ))
            })?;
        // Not printed here: a restart parses every stored record, and needs no text back.
        let data = rdata::parse_data(rtype, data)?;
        Ok(Draft {
            name,
            rtype,
            ttl,
            data,
        })
    }

    /// Owner name, lower-case and fully qualified.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Record type.
    pub fn rtype(&self) -> RecordType {
        self.rtype
    }

    /// TTL in seconds.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// The data in its normal presentation form (parsed again, it gives the same data).
    pub fn text(&self) -> String {
        rdata::print(&self.data)
    }

    /// The record this draft becomes under `id`.
    pub fn into_record(self, id: RecordId) -> LocalRecord {
        LocalRecord::new(id, self.name, self.rtype, self.ttl, self.data)
    }
}

/// Why a write or snapshot was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No record has the id.
    #[error("no record with id {0:?}")]
    NotFound(String),
    /// No zone has the name.
    #[error("no zone named {0}")]
    NoZone(String),
    /// `If-Match` did not hold: the record changed since the client read it.
    #[error(
        "record {id} changed since it was read: its ETag is now {current}; read it again and retry"
    )]
    Changed {
        /// The record.
        id: String,
        /// Its ETag now.
        current: String,
    },
    /// The change would break a rule of the name's data.
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// sled refused the write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The write may not be on disk.
    #[error(transparent)]
    Flush(#[from] FlushError),
    /// The snapshot could not be written.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// An import's record at this line of its file was refused.
    #[error("line {line}: {error}")]
    AtLine {
        /// The line, from 1.
        line: usize,
        /// Why.
        error: Box<WriteError>,
    },
    /// The task finishing the write or snapshot died.
    #[error("the write task failed: {0}")]
    Task(String),
}

/// The writer's side: the index with every change handed to sled, flushed or not.
#[derive(Debug)]
struct Writer {
    index: Index,
    next_seq: u64,
}

/// The local records: the index DNS reads, and the write path that keeps it and sled in step.
#[derive(Debug)]
pub struct Records {
    /// Durable changes only; what DNS and the API's reads see.
    live: RwLock<Index>,
    /// Holding it makes one the writer; also held for a snapshot.
    writer: tokio::sync::Mutex<Writer>,
    /// Writes handed to sled but not yet in `live`, with their sequence numbers.
    unpublished: Mutex<VecDeque<(u64, Vec<Change>)>>,
    /// Held shared by each write from its sled change until it is published or has failed;
    /// a repair holds it alone, so it sees no write half done.
    in_flight: Arc<tokio::sync::RwLock<()>>,
    /// The entries on disk this build skipped at load (key → stored bytes): no write can reach
    /// them, and a repair keeps them for a later rind that may read them.
    skipped: HashMap<Vec<u8>, Vec<u8>>,
    /// Entries the load read: the records tree's and the secondary zones' data.
    loaded: u64,
    store: RecordStore,
    zone_store: ZoneStore,
    /// Told the apex of each zone that changed (settings, serial, data), once the change is
    /// published.
    zone_changes: Mutex<Vec<UnboundedSender<Name>>>,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    /// Records stored.
    pub created: usize,
    /// Records left alone: already stored, or earlier in the same file.
    pub unchanged: usize,
}

/// A zone's settings as given over the API, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneDraft {
    /// The apex.
    pub name: Name,
    /// Clients that may transfer the zone.
    pub allow_transfer: Vec<IpNet>,
    /// Servers to NOTIFY after each change.
    pub notify: Vec<SocketAddr>,
    /// The TSIG key its transfers need.
    pub tsig: Option<Name>,
    /// The primary, for a secondary zone.
    pub primary: Option<SocketAddr>,
}

impl ZoneDraft {
    fn into_zone(self, serial: u32) -> Zone {
        Zone {
            name: self.name,
            serial,
            allow_transfer: self.allow_transfer,
            notify: self.notify,
            tsig: self.tsig,
            primary: self.primary,
        }
    }
}

impl Records {
    /// Loads every record from `store`, whose records check is done (records that no longer
    /// parse are logged and skipped).
    pub fn load(store: RecordStore) -> Result<Records, StoreError> {
        Records::read(store, None, &AtomicU64::new(0))
    }

    /// [`Records::load`] that also ends the records check of a store opened with
    /// [`Store::open_leaving_check`], from the same pass over the records: a store whose records
    /// are not the ones written is refused before its zones are read. Adds to `progress` every
    /// few thousand records, for the open's deadline.
    ///
    /// [`Store::open_leaving_check`]: crate::store::Store::open_leaving_check
    pub fn load_checking(
        store: RecordStore,
        check: RecordsCheck,
        progress: &AtomicU64,
    ) -> Result<Records, StoreError> {
        Records::read(store, Some(check), progress)
    }

    /// [`Records::load`], and [`Records::load_checking`] with `check`.
    fn read(
        store: RecordStore,
        check: Option<RecordsCheck>,
        progress: &AtomicU64,
    ) -> Result<Records, StoreError> {
        let mut loading = index::Loading::default();
        // Three stages on three threads, so that a restart on two cores takes about half
        // their sum: reading the stored records (sled, the integrity sum, JSON), checking each
        // one's fields, and building its data and indexing it. With two stages (the checks in
        // the first) the first took 0.38 s of CPU and the second 0.27 s for 193,534 records,
        // and the first set the pace. Batches keep the channels' cost per record small.
        const BATCH: usize = 1024;
        let (loaded, invalid) = std::thread::scope(|scope| {
            let (stored_tx, stored_rx) = std::sync::mpsc::sync_channel::<Vec<_>>(8);
            let (draft_tx, draft_rx) = std::sync::mpsc::sync_channel::<Vec<_>>(8);
            let store = &store;
            // Each stage owns the sender to the next, so every loop ends when the one before
            // it does.
            let read = move || {
                let mut batch = Vec::with_capacity(BATCH);
                let loaded = store.load(progress, |id, stored| {
                    batch.push((id, stored));
                    if batch.len() == BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        // The next stage is gone (a panic), and with it the load: reading the
                        // rest would only delay its report.
                        if stored_tx.send(full).is_err() {
                            return ControlFlow::Break(());
                        }
                    }
                    ControlFlow::Continue(())
                });
                let _ = stored_tx.send(batch);
                loaded
            };
            let check = move || {
                let mut invalid = Vec::new();
                for batch in stored_rx {
                    let drafts: Vec<(String, Draft)> = batch
                        .into_iter()
                        .filter_map(|(id, stored): (String, StoredRecord)| {
                            match Draft::parse(
                                &stored.name,
                                &stored.rtype,
                                stored.ttl.into(),
                                &stored.data,
                            ) {
                                Ok(draft) => Some((id, draft)),
                                Err(e) => {
                                    tracing::error!(%id, error = %e, "stored record no longer valid; skipped");
                                    invalid.push(id);
                                    None
                                }
                            }
                        })
                        .collect();
                    // Dropping `stored_rx` stops the reader too.
                    if draft_tx.send(drafts).is_err() {
                        break;
                    }
                }
                invalid
            };
            let spawn_error = |source| StoreError::Open {
                path: store.store().dir().to_path_buf(),
                source: sled::Error::Io(source),
            };
            // Named as the opening thread: a panic in sled here is damage, and the open's
            // guard reports it in one line.
            let reader = std::thread::Builder::new()
                .name(crate::store::open::OPENER_THREAD.to_string())
                .spawn_scoped(scope, read)
                .map_err(spawn_error)?;
            let checker = std::thread::Builder::new()
                .name("rind-load-check".to_string())
                .spawn_scoped(scope, check)
                .map_err(spawn_error)?;
            for batch in draft_rx {
                for (id, draft) in batch {
                    loading.add(Arc::new(draft.into_record(RecordId(id.into()))));
                }
            }
            let invalid = checker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                .map(|loaded| (loaded, invalid))
        })?;
        // Their bytes as stored, which printing the parsed fields again need not give back;
        // read again here, as the reader keeps no copy of what it hands on.
        let mut invalid_raw = Vec::with_capacity(invalid.len());
        for id in invalid {
            if let Some(raw) = store.raw(&id)? {
                invalid_raw.push((id.into_bytes(), raw));
            }
        }
        let mut live = loading.finish();
        let mut entries = loaded.integrity.count;
        if let Some(check) = check {
            store.store().finish_check(check, loaded.integrity)?;
        }
        let skipped: HashMap<Vec<u8>, Vec<u8>> =
            loaded.undecodable.into_iter().chain(invalid_raw).collect();
        let zone_store = ZoneStore::open(store.store())?;
        for stored in zone_store.load()? {
            progress.fetch_add(1, Ordering::Relaxed);
            match zone_from_stored(&stored) {
                Ok(zone) => {
                    let mut changes = Vec::new();
                    if zone.is_secondary() {
                        let data = zone_store.load_secondary(&stored.name)?;
                        entries = entries.saturating_add(data.len().try_into().unwrap_or(u64::MAX));
                        let mut data = data.into_iter();
                        if let Some(soa) = data.next() {
                            let secondary = zone::Secondary::new(
                                soa,
                                data.collect(),
                                stored.refreshed.unwrap_or(0),
                            );
                            changes.push(Change::Secondary(zone.name.clone(), Arc::new(secondary)));
                        }
                    }
                    // A big secondary zone takes a step of its own.
                    progress.fetch_add(1, Ordering::Relaxed);
                    changes.insert(0, Change::Zone(Arc::new(zone)));
                    for change in &changes {
                        live.apply(change);
                    }
                }
                Err(e) => {
                    tracing::error!(zone = %stored.name, error = %e, "stored zone no longer valid; skipped")
                }
            }
        }
        progress.fetch_add(1, Ordering::Relaxed);
        // A copy (it shares the records), not built again: that is most of the load's time.
        let writer = live.clone();
        tracing::info!(
            records = live.iter().count(),
            zones = live.zones().count(),
            "local records loaded"
        );
        Ok(Records {
            live: RwLock::new(live),
            writer: tokio::sync::Mutex::new(Writer {
                index: writer,
                next_seq: 0,
            }),
            unpublished: Mutex::new(VecDeque::new()),
            in_flight: Arc::new(tokio::sync::RwLock::new(())),
            skipped,
            loaded: entries,
            store,
            zone_store,
            zone_changes: Mutex::new(Vec::new()),
        })
    }

    /// Entries the load read, from the records tree (those it skipped included) and the
    /// secondary zones' data: sled keeps its pages of them until it is opened again.
    pub fn loaded(&self) -> u64 {
        self.loaded
    }

    /// The apex of every zone that changes from now on (created, deleted, new settings, new
    /// serial, new data), each once its change is published: the NOTIFY sender and the
    /// secondary refresher listen.
    pub fn zone_changes(&self) -> UnboundedReceiver<Name> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.zone_changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        rx
    }

    /// Why writes fail, while they do (a full disk, an I/O error).
    pub fn fault(&self) -> Option<String> {
        self.store.store().fault()
    }

    /// When a write has failed since the last repair: reopens the store and makes the records
    /// on disk the acknowledged ones again. Writes wait meanwhile. `Ok` when the store can be
    /// written again (or never failed).
    pub async fn repair(self: &Arc<Self>) -> Result<(), WriteError> {
        let mut writer = self.writer.lock().await;
        self.repair_locked(&mut writer).await
    }

    async fn repair_locked(self: &Arc<Self>, writer: &mut Writer) -> Result<(), WriteError> {
        if self.fault().is_none() {
            return Ok(());
        }
        let _alone = self.in_flight.write().await;
        // Every write still queued failed with the store: the acknowledged ones are in `live`.
        self.unpublished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let mut index = Index::default();
        // What this build skipped at load stays as it is: the repair undoes failed writes, and
        // none of them can have touched a skipped entry.
        let mut want = self.skipped.clone();
        let mut want_zones = Vec::new();
        {
            let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
            for record in live.iter() {
                index.apply(&Change::Put(Arc::clone(record)));
                want.insert(
                    record.id.as_str().as_bytes().to_vec(),
                    stored_form(record).to_json(),
                );
            }
            for zone in live.zones() {
                index.apply(&Change::Zone(Arc::clone(zone)));
                let secondary = live.secondary(&zone.name);
                if let Some(data) = secondary {
                    index.apply(&Change::Secondary(zone.name.clone(), Arc::clone(data)));
                }
                want_zones.push(stored_zone(zone, secondary.map(|s| refreshed_at(s))));
            }
        }
        writer.index = index;
        let store = self.store.clone();
        let zone_store = self.zone_store.clone();
        let repaired = finish(tokio::task::spawn_blocking(move || {
            // Taken first: a write that fails from here on (the cache's) keeps its fault.
            let mark = store.store().fault_mark();
            store.store().reopen()?;
            // Before the records' reconcile, whose flush covers it.
            zone_store.reconcile(&want_zones)?;
            let fixed = store.reconcile(&want)?;
            if !store.store().clear_fault(mark) {
                return Err(WriteError::Store(StoreError::Unwritable(
                    "a write failed again while the store was repaired".to_string(),
                )));
            }
            tracing::info!(
                undone = fixed,
                "store reopened after a write error; writes work again"
            );
            Ok(())
        }))
        .await;
        // The writer hears the first failure's reason ("the disk holding ... is full"), not
        // how this attempt to get past it failed.
        repaired.map_err(|e| {
            tracing::debug!(error = %e, "store repair failed");
            match self.fault() {
                Some(reason) => WriteError::Store(StoreError::Unwritable(reason)),
                None => e,
            }
        })
    }

    /// What the local records say about `query`, if its name has any.
    pub fn answer(&self, query: &Query) -> Option<Local> {
        answer::answer(
            &self.live.read().unwrap_or_else(PoisonError::into_inner),
            query,
        )
    }

    /// The records, oldest first, optionally only those owned by `name` and of `rtype`.
    pub fn list(&self, name: Option<&Name>, rtype: Option<RecordType>) -> Vec<Arc<LocalRecord>> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        let wanted = |r: &&Arc<LocalRecord>| rtype.is_none_or(|t| r.rtype == t);
        match name {
            Some(name) => {
                let mut found: Vec<_> = live.at(name).iter().filter(wanted).cloned().collect();
                found.sort_by(|a, b| a.id.cmp(&b.id));
                found
            }
            None => live.iter().filter(wanted).cloned().collect(),
        }
    }

    /// The record with `id`.
    pub fn get(&self, id: &str) -> Option<Arc<LocalRecord>> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        live.get(id).cloned()
    }

    /// Creates a record from `draft`; returns it once it is on disk and visible to DNS.
    pub async fn create(self: &Arc<Self>, draft: Draft) -> Result<Arc<LocalRecord>, WriteError> {
        self.write(|index| {
            // 80 random bits make a clash all but impossible; checking costs nothing.
            let mut id = RecordId::generate();
            while index.get(id.as_str()).is_some() {
                id = RecordId::generate();
            }
            let record = Arc::new(draft.into_record(id));
            writable(index, &record.name)?;
            index.check(&record)?;
            Ok((vec![Change::Put(Arc::clone(&record))], record))
        })
        .await
    }

    /// Creates every record of an import that is not stored already (same name, type and
    /// data, TTL aside), in one write: all of them or, when one is refused, none.
    pub async fn import(
        self: &Arc<Self>,
        drafts: Vec<(usize, Draft)>,
    ) -> Result<Imported, WriteError> {
        self.write(|index| {
            let mut added: HashMap<Name, Vec<Arc<LocalRecord>>> = HashMap::new();
            let mut changes = Vec::new();
            let mut unchanged = 0;
            for (line, draft) in drafts {
                let at_line = |error: WriteError| WriteError::AtLine {
                    line,
                    error: Box::new(error),
                };
                let pending = added.get(&draft.name).map_or(&[][..], Vec::as_slice);
                // Printed only for a name that has records of the type already.
                let mut text = None;
                let present = index
                    .at(&draft.name)
                    .iter()
                    .chain(pending)
                    .filter(|r| r.rtype == draft.rtype)
                    .any(|r| r.text() == *text.get_or_insert_with(|| draft.text()));
                if present {
                    unchanged += 1;
                    continue;
                }
                let mut id = RecordId::generate();
                while index.get(id.as_str()).is_some() {
                    id = RecordId::generate();
                }
                let record = Arc::new(draft.into_record(id));
                writable(index, &record.name).map_err(at_line)?;
                index
                    .check_beside(&record, pending)
                    .map_err(|c| at_line(c.into()))?;
                added
                    .entry(record.name.clone())
                    .or_default()
                    .push(Arc::clone(&record));
                changes.push(Change::Put(record));
            }
            let created = changes.len();
            Ok((changes, Imported { created, unchanged }))
        })
        .await
    }

    /// Replaces the name, type, TTL and data of record `id`, when `if_match` (if any) holds.
    pub async fn update(
        self: &Arc<Self>,
        id: &str,
        draft: Draft,
        if_match: Option<&IfMatch>,
    ) -> Result<Arc<LocalRecord>, WriteError> {
        self.write(|index| {
            let old = index
                .get(id)
                .ok_or_else(|| WriteError::NotFound(id.to_string()))?;
            precondition(old, if_match)?;
            writable(index, &old.name)?;
            let record = Arc::new(draft.into_record(old.id.clone()));
            writable(index, &record.name)?;
            index.check(&record)?;
            Ok((vec![Change::Put(Arc::clone(&record))], record))
        })
        .await
    }

    /// Deletes record `id`, when `if_match` (if any) holds.
    pub async fn delete(
        self: &Arc<Self>,
        id: &str,
        if_match: Option<&IfMatch>,
    ) -> Result<(), WriteError> {
        self.write(|index| {
            let old = index
                .get(id)
                .ok_or_else(|| WriteError::NotFound(id.to_string()))?;
            precondition(old, if_match)?;
            writable(index, &old.name)?;
            Ok((vec![Change::Delete(old.id.clone())], ()))
        })
        .await
    }

    /// Every zone, by name.
    pub fn zones(&self) -> Vec<Arc<Zone>> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        let mut zones: Vec<_> = live.zones().cloned().collect();
        zones.sort_by(|a, b| a.name.cmp(&b.name));
        zones
    }

    /// The zone with apex `name` (a few map lookups; [`Records::zone`] also counts).
    pub fn zone_named(&self, name: &Name) -> Option<Arc<Zone>> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        live.zone(name).cloned()
    }

    /// The zone with apex `name`, and how many records it holds (a scan of every record: for
    /// the API, not for anything that runs per write).
    pub fn zone(&self, name: &Name) -> Option<(Arc<Zone>, usize)> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        let zone = Arc::clone(live.zone(name)?);
        let count = match live.secondary(name) {
            Some(data) if zone.is_secondary() => data.records.len(),
            _ => records_in(&live, &zone).len(),
        };
        Some((zone, count))
    }

    /// The zone with apex `name` and the local records in it (not in a zone below it).
    pub fn zone_records(&self, name: &Name) -> Option<(Arc<Zone>, Vec<Arc<LocalRecord>>)> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        let zone = Arc::clone(live.zone(name)?);
        let records = records_in(&live, &zone).into_iter().cloned().collect();
        Some((zone, records))
    }

    /// The zone `name` falls in, if any.
    pub fn zone_of(&self, name: &Name) -> Option<Arc<Zone>> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        live.zone_of(name).cloned()
    }

    /// What AXFR sends for the zone `name`: the zone, its SOA, and the rest of its content.
    /// `None` also for a secondary zone with no data yet.
    pub fn zone_content(&self, name: &Name) -> Option<(Arc<Zone>, Record, Vec<Record>)> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        let zone = Arc::clone(live.zone(name)?);
        if zone.is_secondary() {
            let data = live.secondary(name)?;
            return Some((zone, data.soa.clone(), data.records.clone()));
        }
        let content = zone::content(&live, &zone);
        Some((Arc::clone(&zone), zone.soa(), content))
    }

    /// The SOA of the zone `name` as answered: rind's for its own zones, the primary's for a
    /// secondary (`None` until its first transfer, or when it is expired).
    pub fn zone_soa(&self, name: &Name) -> Option<Record> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        let zone = live.zone(name)?;
        if zone.is_secondary() {
            let data = live.secondary(name)?;
            return (!data.expired(crate::tsig::now())).then(|| data.soa.clone());
        }
        Some(zone.soa())
    }

    /// The data of the secondary zone `name`, once it has some.
    pub fn secondary(&self, name: &Name) -> Option<Arc<zone::Secondary>> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        live.secondary(name).cloned()
    }

    /// Stores what a transfer brought for the secondary zone `name`: the primary's `soa` and
    /// the zone's other `records`; the zone's serial becomes the SOA's. Refused when the zone
    /// is gone or no longer a secondary (changed while the transfer ran).
    pub async fn replace_secondary(
        self: &Arc<Self>,
        name: &Name,
        soa: Record,
        records: Vec<Record>,
    ) -> Result<(), WriteError> {
        let serial = match &soa.data {
            RData::SOA(data) => data.serial,
            _ => {
                return Err(Conflict("a zone transfer must start with the SOA".to_string()).into())
            }
        };
        let data = Arc::new(zone::Secondary::new(soa, records, crate::tsig::now()));
        self.write(|index| {
            let zone = index
                .zone(name)
                .filter(|z| z.is_secondary())
                .ok_or_else(|| WriteError::NoZone(name.to_string()))?;
            let next = Arc::new(Zone {
                serial,
                ..(**zone).clone()
            });
            Ok((
                vec![Change::Zone(next), Change::Secondary(name.clone(), data)],
                (),
            ))
        })
        .await
    }

    /// Records that the primary confirmed the data of the secondary zone `name` just now.
    pub async fn secondary_refreshed(self: &Arc<Self>, name: &Name) -> Result<(), WriteError> {
        let now = crate::tsig::now();
        self.write(|index| {
            index
                .secondary(name)
                .ok_or_else(|| WriteError::NoZone(name.to_string()))?;
            Ok((vec![Change::Refreshed(name.clone(), now)], ()))
        })
        .await
    }

    /// The changes that lead the zone `name` from serial `from` to `to`, in order, when the
    /// journal still holds every one of them.
    pub async fn zone_journal(
        &self,
        name: &Name,
        from: u32,
        to: u32,
    ) -> Result<Option<Vec<Diff>>, WriteError> {
        let store = self.zone_store.clone();
        let apex = name.to_ascii();
        finish(tokio::task::spawn_blocking(move || {
            let mut diffs = Vec::new();
            let mut serial = from;
            while serial != to {
                if diffs.len() > crate::store::zones::JOURNAL_LIMIT as usize {
                    return Ok(None);
                }
                match store.diff_to(&apex, serial.wrapping_add(1))? {
                    Some(diff) if diff.from == serial => {
                        serial = diff.to;
                        diffs.push(diff);
                    }
                    _ => return Ok(None),
                }
            }
            Ok(Some(diffs))
        }))
        .await
    }

    /// Creates a zone; refused when one with its name exists.
    pub async fn create_zone(self: &Arc<Self>, draft: ZoneDraft) -> Result<Arc<Zone>, WriteError> {
        let zone_store = self.zone_store.clone();
        self.write(|index| {
            if index.zone(&draft.name).is_some() {
                return Err(Conflict(format!("zone {} already exists", draft.name)).into());
            }
            if draft.primary.is_some() {
                // Records that would fall in the new zone: under its apex, and not in a zone
                // further down.
                let held = index
                    .iter()
                    .filter(|r| {
                        draft.name.zone_of(&r.name)
                            && index
                                .zone_of(&r.name)
                                .is_none_or(|z| z.name.zone_of(&draft.name))
                    })
                    .count();
                if held > 0 {
                    return Err(Conflict(format!(
                        "{held} local records are under {}; a secondary zone's data comes from its primary, so delete them first",
                        draft.name
                    ))
                    .into());
                }
            }
            // A secondary's serial is its primary's, unknown until the first transfer.
            let serial = if draft.primary.is_some() {
                0
            } else {
                Zone::first_serial(zone_store.last_serial(&draft.name.to_ascii())?)
            };
            let zone = Arc::new(draft.into_zone(serial));
            let mut changes = parent_bump(index, &zone.name);
            changes.push(Change::Zone(Arc::clone(&zone)));
            Ok((changes, zone))
        })
        .await
    }

    /// Replaces the settings of the zone `draft.name`; its serial and records stay.
    pub async fn update_zone(self: &Arc<Self>, draft: ZoneDraft) -> Result<Arc<Zone>, WriteError> {
        self.write(|index| {
            let old = index
                .zone(&draft.name)
                .ok_or_else(|| WriteError::NoZone(draft.name.to_string()))?;
            if old.is_secondary() != draft.primary.is_some() {
                return Err(Conflict(format!(
                    "zone {} is {}; a zone cannot change between primary and secondary: delete it and create it again",
                    draft.name,
                    if old.is_secondary() { "a secondary" } else { "rind's own (no primary)" }
                ))
                .into());
            }
            let zone = Arc::new(draft.into_zone(old.serial));
            Ok((vec![Change::Zone(Arc::clone(&zone))], zone))
        })
        .await
    }

    /// Deletes the zone `name`; one that still holds records only with `force`, which
    /// deletes them too.
    pub async fn delete_zone(self: &Arc<Self>, name: &Name, force: bool) -> Result<(), WriteError> {
        self.write(|index| {
            let zone = index
                .zone(name)
                .ok_or_else(|| WriteError::NoZone(name.to_string()))?;
            let held = records_in(index, zone);
            if !held.is_empty() && !force {
                return Err(Conflict(format!(
                    "zone {name} still holds {} records; delete them first, or delete with ?force=true to delete them too",
                    held.len()
                ))
                .into());
            }
            let mut changes = vec![Change::DropZone(name.clone())];
            changes.extend(held.into_iter().map(|r| Change::Delete(r.id.clone())));
            changes.extend(parent_bump(index, name));
            Ok((changes, ()))
        })
        .await
    }

    /// Holds the writers, waits for every write so far to be on disk, and copies the store into
    /// a new directory under `parent`; then, with the writers free again, removes the oldest
    /// snapshots there beyond `keep` (never the new one, nor one made after it). Returns the new one's path. Both
    /// `POST /api/v1/snapshot` and the scheduled snapshots come here.
    pub async fn snapshot(
        self: &Arc<Self>,
        parent: &Path,
        keep: usize,
    ) -> Result<PathBuf, WriteError> {
        let this = Arc::clone(self);
        let parent = parent.to_path_buf();
        // In a task of its own, so writers stay held until the copy is done even if the caller
        // goes away, and pruning never starts before the copy is complete.
        finish(tokio::spawn(async move {
            let made = {
                let mut writers = this.writer.lock().await;
                this.repair_locked(&mut writers).await?;
                this.store.flushed().await?;
                let store = this.store.store().clone();
                let parent = parent.clone();
                finish(tokio::task::spawn_blocking(move || {
                    store.snapshot(&parent).map_err(WriteError::from)
                }))
                .await?
            };
            let newest = made.clone();
            finish(tokio::task::spawn_blocking(move || {
                crate::store::snapshot::prune(&parent, keep, &newest);
                Ok(())
            }))
            .await?;
            Ok(made)
        }))
        .await
    }

    /// The write path: `change` builds the changes (and what the caller returns) from the
    /// writer's index, or refuses, which leaves everything as it was; the changes, with the
    /// serials and journal entries of the zones whose content they change, are then written to
    /// sled, made durable and published.
    async fn write<T>(
        self: &Arc<Self>,
        change: impl FnOnce(&Index) -> Result<(Vec<Change>, T), WriteError>,
    ) -> Result<T, WriteError> {
        let (seq, flushed, done, in_flight) = {
            let mut writer = self.writer.lock().await;
            self.repair_locked(&mut writer).await?;
            let (mut changes, done) = change(&writer.index)?;
            let in_flight = Arc::clone(&self.in_flight).read_owned().await;
            // A failure from here on sets the store's fault, and the repair that must follow
            // rebuilds the writer's index from the published one.
            // Writes that change zones themselves set their serials as they go.
            let watched = if changes
                .iter()
                .any(|c| !matches!(c, Change::Put(_) | Change::Delete(_)))
            {
                Vec::new()
            } else {
                watched_owners(&writer.index, &changes)
            };
            let before = zone_content_at(&writer.index, &watched);
            for change in &changes {
                self.store_change(&writer.index, change)?;
                writer.index.apply(change);
            }
            let after = zone_content_at(&writer.index, &watched);
            for (zone, diff) in zone_diffs(&watched, before, after) {
                let next = Arc::new(Zone {
                    serial: diff.to,
                    ..(*zone).clone()
                });
                self.zone_store.journal(&zone.name.to_ascii(), &diff)?;
                let change = Change::Zone(next);
                self.store_change(&writer.index, &change)?;
                writer.index.apply(&change);
                changes.push(change);
            }
            let seq = writer.next_seq;
            writer.next_seq += 1;
            self.unpublished
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back((seq, changes));
            // Queued while still the writer: the flush it waits for starts after this write.
            (seq, self.store.flushed(), done, in_flight)
        };
        // The change is in sled now, so it must reach the index DNS reads even if the caller
        // goes away (an HTTP client that hangs up): waiting and publishing get a task.
        let this = Arc::clone(self);
        finish(tokio::spawn(async move {
            let _in_flight = in_flight;
            if let Err(e) = flushed.await {
                // Refused: a later write's flush must not publish it with its own.
                this.unpublished
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|(s, _)| *s != seq);
                return Err(e.into());
            }
            this.publish_through(seq);
            Ok(())
        }))
        .await?;
        Ok(done)
    }

    /// Hands one change to sled (not yet durable); `index` is the writer's, before it.
    fn store_change(&self, index: &Index, change: &Change) -> Result<(), StoreError> {
        match change {
            Change::Put(record) => self.store.put(record.id.as_str(), &stored_form(record)),
            Change::Delete(id) => self.store.remove(id.as_str()),
            Change::Zone(zone) => {
                // A new zone's journal starts empty, whatever an older zone of its name left.
                if index.zone(&zone.name).is_none() {
                    self.zone_store.clear_journal(&zone.name.to_ascii())?;
                }
                let refreshed = index.secondary(&zone.name).map(|s| refreshed_at(s));
                self.zone_store.put(&stored_zone(zone, refreshed))
            }
            Change::DropZone(name) => {
                let serial = index.zone(name).map_or(0, |z| z.serial);
                self.zone_store.remove(&name.to_ascii(), serial)
            }
            Change::Secondary(name, data) => {
                let apex = name.to_ascii();
                let mut all = Vec::with_capacity(data.records.len() + 1);
                all.push(data.soa.clone());
                all.extend(data.records.iter().cloned());
                self.zone_store.put_secondary(&apex, &all)?;
                self.store_refreshed(index, name, refreshed_at(data))
            }
            Change::Refreshed(name, at) => self.store_refreshed(index, name, *at),
        }
    }

    /// Rewrites the stored zone `name` with the time its primary last confirmed its data.
    fn store_refreshed(&self, index: &Index, name: &Name, at: u64) -> Result<(), StoreError> {
        match index.zone(name) {
            Some(zone) => self.zone_store.put(&stored_zone(zone, Some(at))),
            None => Ok(()),
        }
    }

    /// Moves every queued change up to `seq` into the index DNS reads, in write order. A
    /// flush covers every write before it, so they are all on disk.
    fn publish_through(&self, seq: u64) {
        let mut queue = self
            .unpublished
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
        let mut moved = Vec::new();
        while queue.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, changes)) = queue.pop_front() {
                for change in &changes {
                    live.apply(change);
                    match change {
                        Change::Zone(zone) => moved.push(zone.name.clone()),
                        Change::DropZone(name) => moved.push(name.clone()),
                        _ => {}
                    }
                }
            }
        }
        drop(live);
        drop(queue);
        if !moved.is_empty() {
            let mut listeners = self
                .zone_changes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // A listener that went away is forgotten.
            listeners.retain(|tx| moved.iter().all(|name| tx.send(name.clone()).is_ok()));
        }
    }
}

/// The result of a task that returns one.
async fn finish<T>(task: tokio::task::JoinHandle<Result<T, WriteError>>) -> Result<T, WriteError> {
    task.await
        .unwrap_or_else(|join| Err(WriteError::Task(join.to_string())))
}

/// Refuses a write to `current` whose `If-Match` does not hold (checked under the writer's
/// lock, so no other write can come between the check and the change).
fn precondition(current: &LocalRecord, if_match: Option<&IfMatch>) -> Result<(), WriteError> {
    match if_match {
        Some(expected) if !expected.holds(current) => Err(WriteError::Changed {
            id: current.id.to_string(),
            current: current.etag(),
        }),
        _ => Ok(()),
    }
}

/// Refuses a record write at `name` when it falls in a secondary zone (its data is the
/// primary's).
fn writable(index: &Index, name: &Name) -> Result<(), WriteError> {
    match index.zone_of(name) {
        Some(zone) if zone.is_secondary() => {
            let primary = zone.primary.map(|p| p.to_string()).unwrap_or_default();
            Err(Conflict(format!("{} is a secondary of {primary}", zone.name)).into())
        }
        _ => Ok(()),
    }
}

/// The records whose owner falls in `zone` (not in a more specific zone).
fn records_in<'a>(index: &'a Index, zone: &Zone) -> Vec<&'a Arc<LocalRecord>> {
    index
        .iter()
        .filter(|r| index.zone_of(&r.name).is_some_and(|z| z.name == zone.name))
        .collect()
}

/// When a zone is made or dropped below another zone, names move between the two: the outer
/// zone's serial moves on with no journal entry, so its secondaries fetch it whole.
fn parent_bump(index: &Index, apex: &Name) -> Vec<Change> {
    let parent = apex.base_name();
    match index.zone_of(&parent) {
        // A secondary's serial is its primary's to move.
        Some(outer) if !apex.is_root() && parent.num_labels() > 0 && !outer.is_secondary() => {
            vec![Change::Zone(Arc::new(Zone {
                serial: outer.serial.wrapping_add(1),
                ..(**outer).clone()
            }))]
        }
        _ => Vec::new(),
    }
}

/// The owner names whose zone content `changes` may change, with the zone each is in: the
/// old and new owners of each record and their reverse names (synthesised PTRs), and the
/// apex (its synthesised NS comes and goes with NS records).
fn watched_owners(index: &Index, changes: &[Change]) -> Vec<(Arc<Zone>, Name)> {
    let mut owners: Vec<Name> = Vec::new();
    let mut add = |record: &LocalRecord| {
        owners.push(record.name.clone());
        if let Some(address) = record.address() {
            owners.push(Name::from(address));
        }
    };
    for change in changes {
        match change {
            Change::Put(record) => {
                add(record);
                if let Some(old) = index.get(record.id.as_str()) {
                    add(old);
                }
            }
            Change::Delete(id) => {
                if let Some(old) = index.get(id.as_str()) {
                    add(old);
                }
            }
            _ => {}
        }
    }
    let mut watched: Vec<(Arc<Zone>, Name)> = Vec::new();
    for owner in owners {
        let Some(zone) = index.zone_of(&owner) else {
            continue;
        };
        for name in [owner, zone.name.clone()] {
            if !watched.iter().any(|(_, n)| *n == name) {
                watched.push((Arc::clone(zone), name));
            }
        }
    }
    watched
}

/// The zone content at each watched owner.
fn zone_content_at(index: &Index, watched: &[(Arc<Zone>, Name)]) -> Vec<Vec<Record>> {
    watched
        .iter()
        .map(|(zone, owner)| zone::content_at(index, zone, owner))
        .collect()
}

/// One diff per zone whose content changed between `before` and `after` (taken at the
/// `watched` owners), numbered on from the zone's serial.
fn zone_diffs(
    watched: &[(Arc<Zone>, Name)],
    before: Vec<Vec<Record>>,
    after: Vec<Vec<Record>>,
) -> Vec<(Arc<Zone>, Diff)> {
    let mut diffs: Vec<(Arc<Zone>, Diff)> = Vec::new();
    for (((zone, _), old), new) in watched.iter().zip(before).zip(after) {
        let (removed, added) = zone::difference(&old, &new);
        if removed.is_empty() && added.is_empty() {
            continue;
        }
        match diffs.iter_mut().find(|(z, _)| z.name == zone.name) {
            Some((_, diff)) => {
                diff.removed.extend(removed);
                diff.added.extend(added);
            }
            None => diffs.push((
                Arc::clone(zone),
                Diff {
                    from: zone.serial,
                    to: zone.serial.wrapping_add(1),
                    removed,
                    added,
                },
            )),
        }
    }
    diffs
}

/// When the primary last confirmed `data`.
fn refreshed_at(data: &zone::Secondary) -> u64 {
    data.refreshed.load(Ordering::Relaxed)
}

fn stored_zone(zone: &Zone, refreshed: Option<u64>) -> StoredZone {
    StoredZone {
        refreshed,
        name: zone.name.to_ascii(),
        serial: zone.serial,
        allow_transfer: zone
            .allow_transfer
            .iter()
            .map(ToString::to_string)
            .collect(),
        notify: zone.notify.iter().map(ToString::to_string).collect(),
        tsig: zone.tsig.as_ref().map(Name::to_ascii),
        primary: zone.primary.map(|p| p.to_string()),
    }
}

fn zone_from_stored(stored: &StoredZone) -> Result<Zone, String> {
    let name = rdata::parse_zone_name(&stored.name).map_err(|e| e.0)?;
    let allow_transfer = stored
        .allow_transfer
        .iter()
        .map(|n| n.parse::<IpNet>().map_err(|e| format!("{n}: {e}")))
        .collect::<Result<_, _>>()?;
    let notify = stored
        .notify
        .iter()
        .map(|a| a.parse::<SocketAddr>().map_err(|e| format!("{a}: {e}")))
        .collect::<Result<_, _>>()?;
    let tsig = stored
        .tsig
        .as_deref()
        .map(|k| rdata::parse_zone_name(k).map_err(|e| e.0))
        .transpose()?;
    let primary = stored
        .primary
        .as_deref()
        .map(|a| a.parse::<SocketAddr>().map_err(|e| format!("{a}: {e}")))
        .transpose()?;
    Ok(Zone {
        name,
        serial: stored.serial,
        allow_transfer,
        notify,
        tsig,
        primary,
    })
}

fn stored_form(record: &LocalRecord) -> StoredRecord {
    StoredRecord {
        name: record.name.to_ascii(),
        rtype: record.rtype.to_string(),
        ttl: record.ttl,
        data: record.text(),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::store::Store;

    fn records(dir: &Path) -> Arc<Records> {
        let store = Store::open(dir).expect("open");
        Arc::new(Records::load(RecordStore::open(&store).expect("tree")).expect("load"))
    }

    #[test]
    fn ids_made_in_one_millisecond_still_sort_in_creation_order() {
        let ids: Vec<RecordId> = (0..1_000).map(|_| RecordId::generate()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
            assert_eq!(pair[1].as_str().len(), 26);
        }
    }

    fn draft(name: &str, rtype: &str, data: &str) -> Draft {
        Draft::parse(name, rtype, 300, data).expect("valid")
    }

    fn visible(records: &Records, name: &str) -> usize {
        let query = Query::query(Name::from_str(name).expect("name"), RecordType::A);
        match records.answer(&query) {
            Some(Local::Answer(a)) => a.answers.len(),
            _ => 0,
        }
    }

    #[test]
    fn ids_are_url_safe_ordered_and_distinct() {
        let a = RecordId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = RecordId::generate();
        assert_eq!(a.as_str().len(), 26);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert!(a < b, "{a} then {b}");
    }

    #[test]
    fn ttl_range() {
        assert!(Draft::parse("a.lan", "A", 0, "10.0.0.1").is_ok());
        assert!(Draft::parse("a.lan", "A", MAX_TTL, "10.0.0.1").is_ok());
        for bad in [-1, MAX_TTL + 1] {
            let e = Draft::parse("a.lan", "A", bad, "10.0.0.1").expect_err("out of range");
            assert!(e.0.contains("out of range"), "{e}");
        }
    }

    #[tokio::test]
    async fn writes_are_visible_when_they_return() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = records(dir.path());
        let created = records
            .create(draft("nas.home.lan", "A", "10.0.0.1"))
            .await
            .expect("create");
        assert_eq!(visible(&records, "nas.home.lan."), 1);
        assert_eq!(records.get(created.id.as_str()), Some(Arc::clone(&created)));

        let moved = records
            .update(
                created.id.as_str(),
                draft("files.home.lan", "A", "10.0.0.2"),
                None,
            )
            .await
            .expect("update");
        assert_eq!(moved.id, created.id);
        assert_eq!(visible(&records, "nas.home.lan."), 0);
        assert_eq!(visible(&records, "files.home.lan."), 1);

        records
            .delete(created.id.as_str(), None)
            .await
            .expect("delete");
        assert_eq!(visible(&records, "files.home.lan."), 0);
        assert!(matches!(
            records.delete(created.id.as_str(), None).await,
            Err(WriteError::NotFound(_))
        ));
        assert!(matches!(
            records
                .update("nope", draft("x.lan", "A", "10.0.0.1"), None)
                .await,
            Err(WriteError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_refused_write_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = records(dir.path());
        let a = records
            .create(draft("www.home.lan", "A", "10.0.0.1"))
            .await
            .expect("create");
        let conflict = records
            .create(draft("www.home.lan", "CNAME", "other.lan"))
            .await;
        assert!(
            matches!(conflict, Err(WriteError::Conflict(_))),
            "{conflict:?}"
        );
        let other = records
            .create(draft("other.home.lan", "A", "10.0.0.1"))
            .await
            .expect("create");
        let duplicate = records
            .update(
                other.id.as_str(),
                draft("www.home.lan", "A", "10.0.0.1"),
                None,
            )
            .await;
        assert!(
            matches!(duplicate, Err(WriteError::Conflict(_))),
            "{duplicate:?}"
        );
        assert_eq!(records.list(None, None), vec![a, other]);
    }

    #[tokio::test]
    async fn a_write_whose_caller_left_is_still_published() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = records(dir.path());
        // Polled once: the record reaches sled, then the caller gives up waiting for the flush.
        // (On a fast disk the flush may already be done by then; the record must show either
        // way, so the outcome of the one poll is not asserted.)
        let _ = tokio::time::timeout(
            std::time::Duration::ZERO,
            records.create(draft("left.lan", "A", "10.0.0.1")),
        )
        .await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while visible(&records, "left.lan.") == 0 {
            assert!(tokio::time::Instant::now() < deadline, "never published");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(records.list(None, None).len(), 1);
    }

    #[tokio::test]
    async fn concurrent_duplicates_have_one_winner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = records(dir.path());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let records = Arc::clone(&records);
                tokio::spawn(async move { records.create(draft("x.lan", "A", "10.0.0.1")).await })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(_) => won += 1,
                Err(WriteError::Conflict(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(won, 1);
        assert_eq!(records.list(None, None).len(), 1);
    }

    #[tokio::test]
    async fn a_load_reads_every_record_and_skips_the_invalid_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let record_store = RecordStore::open(&store).expect("tree");
        // More than two of the load's batches, with an invalid entry inside the first and one
        // name in the first batch and the last.
        let mut seeded: HashMap<Vec<u8>, Vec<u8>> = (0..2500u32)
            .map(|i| {
                let name = if i == 2400 { 10 } else { i };
                let stored = StoredRecord {
                    name: format!("h{name}.lan."),
                    rtype: "A".into(),
                    ttl: 60 + i,
                    data: format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                };
                (format!("{i:08}").into_bytes(), stored.to_json())
            })
            .collect();
        let invalid = StoredRecord {
            name: "bad.lan.".into(),
            rtype: "A".into(),
            ttl: 60,
            data: "not-an-address".into(),
        };
        seeded.insert(b"00000500x".to_vec(), invalid.to_json());
        record_store.reconcile(&seeded).expect("seed");
        let records = Records::load(record_store).expect("load");
        let listed = records.list(None, None);
        assert_eq!(listed.len(), 2500);
        for record in &listed {
            let i: u32 = record.id.as_str().parse().expect("a seeded id");
            let name = if i == 2400 { 10 } else { i };
            assert_eq!(
                record.name,
                Name::from_str(&format!("h{name}.lan.")).expect("name")
            );
            assert_eq!(record.ttl, 60 + i);
            assert_eq!(
                record.text(),
                format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)
            );
        }
        let twice = Name::from_str("h10.lan.").expect("name");
        assert_eq!(records.list(Some(&twice), None).len(), 2);
        assert_eq!(
            records.skipped.keys().collect::<Vec<_>>(),
            vec![&b"00000500x".to_vec()]
        );
        // Kept byte for byte, for a later build that may read it.
        assert_eq!(
            records.skipped.get(b"00000500x".as_slice()),
            Some(&invalid.to_json())
        );
    }

    #[tokio::test]
    async fn a_repair_keeps_the_entries_this_build_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let record_store = RecordStore::open(&store).expect("tree");
        // One entry that is not a record at all, one whose type this build does not know.
        let unknown = StoredRecord {
            name: "x.lan.".into(),
            rtype: "TYPE-FROM-THE-FUTURE".into(),
            ttl: 300,
            data: "?".into(),
        };
        let seeded: HashMap<Vec<u8>, Vec<u8>> = [
            (b"garbled".to_vec(), b"not json".to_vec()),
            (b"future".to_vec(), unknown.to_json()),
        ]
        .into_iter()
        .collect();
        record_store.reconcile(&seeded).expect("seed");
        let records = Arc::new(Records::load(record_store.clone()).expect("load"));
        assert!(records.list(None, None).is_empty());
        let kept = records
            .create(draft("kept.lan", "A", "10.0.0.1"))
            .await
            .expect("create");
        // A write fails: the check file cannot be written (a directory in its place).
        let check = crate::store::check::path(dir.path());
        std::fs::remove_file(&check).expect("remove check file");
        std::fs::create_dir(&check).expect("a directory in its place");
        let failed = records.create(draft("failed.lan", "A", "10.0.0.2")).await;
        assert!(failed.is_err(), "{failed:?}");
        assert!(records.fault().is_some());
        // Refused, so no later flush may publish it.
        assert!(records
            .unpublished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty());
        std::fs::remove_dir(&check).expect("remove the directory");
        records.repair().await.expect("repair");
        assert!(records.fault().is_none());
        assert_eq!(records.list(None, None), vec![kept]);
        for (key, value) in &seeded {
            let id = std::str::from_utf8(key).expect("utf-8");
            assert_eq!(
                record_store.raw(id).expect("read").as_ref(),
                Some(value),
                "{id} was removed by the repair"
            );
        }
        assert!(record_store.integrity_holds().expect("check"));
    }

    #[tokio::test]
    async fn list_filters_by_name_and_type() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = records(dir.path());
        for (name, rtype, data) in [
            ("a.lan", "A", "10.0.0.1"),
            ("a.lan", "TXT", "x"),
            ("b.lan", "A", "10.0.0.2"),
        ] {
            records
                .create(draft(name, rtype, data))
                .await
                .expect("create");
        }
        let a = Name::from_str("a.lan.").expect("name");
        assert_eq!(records.list(Some(&a), None).len(), 2);
        assert_eq!(records.list(Some(&a), Some(RecordType::TXT)).len(), 1);
        assert_eq!(records.list(None, Some(RecordType::A)).len(), 2);
        assert_eq!(records.list(None, None).len(), 3);
    }

    fn zone_draft(name: &str) -> ZoneDraft {
        ZoneDraft {
            name: rdata::parse_zone_name(name).expect("name"),
            allow_transfer: Vec::new(),
            notify: Vec::new(),
            tsig: None,
            primary: None,
        }
    }

    #[tokio::test]
    async fn writes_under_a_zone_move_its_serial_and_leave_their_diff_in_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = records(dir.path());
        let home = Name::from_str("home.lan.").expect("name");
        let reverse = Name::from_str("1.168.192.in-addr.arpa.").expect("name");
        let first = records
            .create_zone(zone_draft("home.lan"))
            .await
            .expect("zone");
        records
            .create_zone(zone_draft("1.168.192.in-addr.arpa"))
            .await
            .expect("zone");
        let rev0 = records.zone(&reverse).expect("zone").0.serial;

        let nas = records
            .create(draft("nas.home.lan", "A", "192.168.1.10"))
            .await
            .expect("create");
        records
            .create(draft("x.other.lan", "A", "10.0.0.1"))
            .await
            .expect("create");
        let (zone, count) = records.zone(&home).expect("zone");
        assert_eq!(
            (zone.serial, count),
            (first.serial + 1, 1),
            "one write, one serial"
        );
        // The A record's synthesised PTR is content of the reverse zone.
        assert_eq!(records.zone(&reverse).expect("zone").0.serial, rev0 + 1);
        let (_, _, content) = records.zone_content(&reverse).expect("content");
        let ptrs: Vec<String> = content
            .iter()
            .filter(|r| r.record_type() == RecordType::PTR)
            .map(|r| format!("{} {}", r.name, r.data))
            .collect();
        assert_eq!(ptrs, ["10.1.168.192.in-addr.arpa. nas.home.lan."]);

        records
            .update(
                nas.id.as_str(),
                draft("nas.home.lan", "A", "192.168.1.11"),
                None,
            )
            .await
            .expect("update");
        let diffs = records
            .zone_journal(&home, first.serial, first.serial + 2)
            .await
            .expect("journal")
            .expect("the journal reaches back");
        assert_eq!(diffs.len(), 2);
        assert!(diffs[0].removed.is_empty());
        assert_eq!(diffs[0].added.len(), 1);
        assert_eq!(diffs[1].removed[0].data.to_string(), "192.168.1.10");
        assert_eq!(diffs[1].added[0].data.to_string(), "192.168.1.11");
        assert_eq!(
            (diffs[1].from, diffs[1].to),
            (first.serial + 1, first.serial + 2)
        );
        // A serial the journal never had: the whole zone, not a guess.
        assert!(records
            .zone_journal(&home, first.serial - 5, first.serial + 2)
            .await
            .expect("journal")
            .is_none());

        // An NS record at the apex replaces the synthesised one: one diff, both sides.
        records
            .create(draft("home.lan", "NS", "dns1.home.lan"))
            .await
            .expect("ns");
        let diff = records
            .zone_journal(&home, first.serial + 2, first.serial + 3)
            .await
            .expect("journal")
            .expect("diff");
        assert_eq!(diff[0].removed[0].data.to_string(), "ns.home.lan.");
        assert_eq!(diff[0].added[0].data.to_string(), "dns1.home.lan.");

        // The serial survives a restart.
        drop(records);
        let again = reopen(dir.path()).await;
        assert_eq!(again.zone(&home).expect("zone").0.serial, first.serial + 3);
    }

    async fn reopen(dir: &Path) -> Arc<Records> {
        // The first store's flusher task holds sled's lock until it has seen its channel close.
        for _ in 0..100 {
            if let Ok(store) = Store::open(dir) {
                return Arc::new(
                    Records::load(RecordStore::open(&store).expect("tree")).expect("load"),
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("store stays locked");
    }

    #[tokio::test]
    async fn a_zone_made_again_starts_past_the_serial_the_old_one_ended_at() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = records(dir.path());
        let home = Name::from_str("home.lan.").expect("name");
        records
            .create_zone(zone_draft("home.lan"))
            .await
            .expect("zone");
        for i in 0..5 {
            let d = draft(&format!("h{i}.home.lan"), "A", "10.0.0.1");
            records.create(d).await.expect("create");
        }
        let ended = records.zone(&home).expect("zone").0.serial;
        records.delete_zone(&home, true).await.expect("delete");
        let again = records
            .create_zone(zone_draft("home.lan"))
            .await
            .expect("zone");
        assert!(
            zone::serial_after(again.serial, ended),
            "{} does not follow {ended}",
            again.serial
        );
        // Also after a restart: the old serial is in the store.
        records.delete_zone(&home, false).await.expect("delete");
        drop(records);
        let reopened = reopen(dir.path()).await;
        let third = reopened
            .create_zone(zone_draft("home.lan"))
            .await
            .expect("zone");
        assert!(zone::serial_after(third.serial, again.serial));
    }

    #[test]
    fn first_serials_follow_the_clock_unless_an_old_zone_ran_ahead() {
        let now = Zone::first_serial(None);
        assert!(Zone::first_serial(Some(now - 100)) >= now);
        assert_eq!(Zone::first_serial(Some(now + 100)), now + 101);
        // Serial arithmetic: u32::MAX is just behind the clock, now + 2^30 far ahead of it.
        assert!(Zone::first_serial(Some(u32::MAX)) >= now);
        let far = now.wrapping_add(1 << 30);
        assert_eq!(Zone::first_serial(Some(far)), far.wrapping_add(1));
    }

    #[tokio::test]
    async fn zones_refuse_what_would_lose_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = records(dir.path());
        let home = Name::from_str("home.lan.").expect("name");
        records
            .create_zone(zone_draft("home.lan"))
            .await
            .expect("zone");
        assert!(matches!(
            records.create_zone(zone_draft("home.lan")).await,
            Err(WriteError::Conflict(_))
        ));
        records
            .create(draft("a.home.lan", "A", "10.0.0.1"))
            .await
            .expect("create");
        let held = records.delete_zone(&home, false).await;
        assert!(matches!(held, Err(WriteError::Conflict(_))), "{held:?}");
        let mut secondary = zone_draft("home.lan");
        secondary.primary = Some("127.0.0.1:53".parse().expect("addr"));
        assert!(matches!(
            records.update_zone(secondary.clone()).await,
            Err(WriteError::Conflict(_))
        ));
        records.delete_zone(&home, true).await.expect("forced");
        assert!(
            records.list(None, None).is_empty(),
            "force deletes the records too"
        );
        assert!(records.zone(&home).is_none());
        // Local records under a new secondary zone would be hidden by its data: refused.
        records
            .create(draft("b.home.lan", "A", "10.0.0.2"))
            .await
            .expect("create");
        assert!(matches!(
            records.create_zone(secondary).await,
            Err(WriteError::Conflict(_))
        ));
    }
}
