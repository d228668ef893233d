//! The `records` tree: record id → the record as JSON, and the group commit that makes writes
//! durable.
//!
//! Durability: sled keeps writes in memory until a flush (or its 500 ms timer), so a write is
//! acknowledged only after a `flush()` that *started after* the write. One flusher task serves
//! every writer: it takes all waiters queued so far, runs one `flush()` on the blocking pool
//! (never `flush_async`, which deadlocks under concurrency in sled 0.34.7), and answers them
//! all, so concurrent writers share one fsync.
//!
//! Every put and remove also updates the records' ledger (count, digest and generation, see
//! [`check::Ledger`]) in the `meta` tree, just before the record itself, so sled and rind's
//! integrity data never disagree beyond one unacknowledged change.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use migrations::integrity::Integrity;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::check::{self, INTEGRITY_KEY};
use super::{Store, StoreError};

/// Name of the tree, created by schema version 1.
const TREE: &str = migrations::integrity::RECORDS_TREE;

/// A record as stored: the API's fields in their normal form, without the id (the key).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredRecord {
    /// Owner name, lower-case and fully qualified.
    pub name: String,
    /// Record type, such as `A`.
    #[serde(rename = "type")]
    pub rtype: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// RDATA in presentation form.
    pub data: String,
}

impl StoredRecord {
    /// The stored bytes; built as a JSON value, whose printing cannot fail.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::json!({
            "name": self.name,
            "type": self.rtype,
            "ttl": self.ttl,
            "data": self.data,
        })
        .to_string()
        .into_bytes()
    }
}

/// A key and its value, as stored.
pub type RawEntry = (Vec<u8>, Vec<u8>);

/// What [`RecordStore::load`] found besides the records it handed over.
#[derive(Debug)]
pub struct Loaded {
    /// The entries that could not be decoded.
    pub undecodable: Vec<RawEntry>,
    /// The integrity of every entry, decoded or not: what [`Store::finish_check`] takes.
    pub integrity: Integrity,
}

/// A flush that did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlushError {
    /// sled could not write or fsync; says why in words.
    #[error("{0}")]
    Failed(String),
    /// The flusher is gone (the server is stopping).
    #[error("the store is shutting down")]
    Stopped,
}

type Waiter = oneshot::Sender<Result<(), FlushError>>;

/// The records tree and its group-committing flusher.
#[derive(Debug, Clone)]
pub struct RecordStore {
    store: Store,
    /// The generation of the last change whose sled inserts are all done: what a flush that
    /// starts now covers.
    generation: Arc<AtomicU64>,
    flusher: mpsc::UnboundedSender<Waiter>,
}

impl RecordStore {
    /// Opens the tree and starts the flusher task; needs a tokio runtime.
    pub fn open(store: &Store) -> Result<RecordStore, StoreError> {
        let db = store.db()?;
        db.open_tree(TREE)?;
        let ledger = check::load_ledger(&db.open_tree(migrations::META_TREE)?)?.found();
        let generation = Arc::new(AtomicU64::new(ledger.map_or(0, |l| l.generation)));
        let (flusher, waiters) = mpsc::unbounded_channel();
        tokio::spawn(flush_loop(store.clone(), Arc::clone(&generation), waiters));
        Ok(RecordStore {
            store: store.clone(),
            generation,
            flusher,
        })
    }

    /// The whole store, for snapshots.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Hands every stored record to `each`, in id order, with its id (one at a time:
    /// nothing holds them all), adding to `progress` every few thousand. Entries that cannot
    /// be decoded are logged and returned, key and value as stored: they stay on disk, for a
    /// later rind that may read them, so a repair must keep them too. Stops early when `each`
    /// breaks (whoever takes the records is gone); what it returns then covers only the
    /// entries read.
    pub fn load(
        &self,
        progress: &AtomicU64,
        mut each: impl FnMut(String, StoredRecord) -> ControlFlow<()>,
    ) -> Result<Loaded, StoreError> {
        let tree = self.store.db()?.open_tree(TREE)?;
        let mut undecodable = Vec::new();
        let mut integrity = Integrity::default();
        for (i, entry) in tree.iter().enumerate() {
            let (key, value) = entry?;
            integrity.add(&key, &value);
            if i % 4096 == 0 {
                progress.fetch_add(1, Ordering::Relaxed);
            }
            let decoded = std::str::from_utf8(&key)
                .map_err(|e| e.to_string())
                .and_then(|id| {
                    serde_json::from_slice::<StoredRecord>(&value)
                        .map(|r| (id.to_string(), r))
                        .map_err(|e| e.to_string())
                });
            match decoded {
                Ok((id, record)) => {
                    if each(id, record).is_break() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(key = %String::from_utf8_lossy(&key), error = %e, "unreadable record in the store; skipped");
                    undecodable.push((key.to_vec(), value.to_vec()));
                }
            }
        }
        Ok(Loaded {
            undecodable,
            integrity,
        })
    }

    /// The stored bytes of record `id`, if there is one.
    pub fn raw(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tree = self.store.db()?.open_tree(TREE)?;
        Ok(tree.get(id.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Stores `record` under `id` (not yet durable: see [`RecordStore::flushed`]).
    pub fn put(&self, id: &str, record: &StoredRecord) -> Result<(), StoreError> {
        self.change(id, Some(record.to_json()))
    }

    /// Removes the record `id` (not yet durable: see [`RecordStore::flushed`]).
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.change(id, None)
    }

    /// Sets (or with `None` removes) `id`: the ledger first, then the record (see
    /// [`check::Ledger`] for why not a transaction). Called by one writer at a time.
    fn change(&self, id: &str, value: Option<Vec<u8>>) -> Result<(), StoreError> {
        let db = self.store.writable_db()?;
        let key = id.as_bytes();
        let written = (|| {
            let records = db.open_tree(TREE)?;
            let meta = db.open_tree(migrations::META_TREE)?;
            let Some(ledger) = check::load_ledger(&meta)?.found() else {
                return Ok(None);
            };
            let mut current = ledger.current;
            if let Some(old) = records.get(key)? {
                current.remove(key, &old);
            }
            if let Some(value) = &value {
                current.add(key, value);
            }
            let next = check::Ledger {
                current,
                previous: ledger.current,
                generation: ledger.generation.wrapping_add(1),
            };
            meta.insert(INTEGRITY_KEY, next.encode().as_slice())?;
            match value {
                Some(value) => records.insert(key, value)?,
                None => records.remove(key)?,
            };
            Ok(Some(next.generation))
        })();
        match written {
            Ok(Some(generation)) => {
                self.generation.store(generation, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => Err(self.store.write_failed(&e)),
            // Checked on open and rewritten by every repair: only damage since then gets here.
            Ok(None) => Err(StoreError::Unwritable(format!(
                "the records' integrity data in {} is gone; the store is damaged",
                self.store.dir().display()
            ))),
        }
    }

    /// Makes the records tree hold exactly `want` (key → stored bytes), with integrity data to
    /// match, and flushes: after a failed write, this undoes whatever part of it sled got to
    /// disk. Blocking. Returns how many entries had to change.
    pub fn reconcile(&self, want: &HashMap<Vec<u8>, Vec<u8>>) -> Result<usize, StoreError> {
        let db = self.store.db()?;
        let fixed = (|| {
            let records = db.open_tree(TREE)?;
            let meta = db.open_tree(migrations::META_TREE)?;
            let mut batch = sled::Batch::default();
            let mut fixed = 0;
            let mut seen = 0;
            for entry in records.iter() {
                let (key, value) = entry?;
                match want.get(key.as_ref()) {
                    Some(w) => {
                        seen += 1;
                        if w.as_slice() != value.as_ref() {
                            batch.insert(key, w.as_slice());
                            fixed += 1;
                        }
                    }
                    None => {
                        batch.remove(key);
                        fixed += 1;
                    }
                }
            }
            if seen < want.len() {
                for (key, value) in want {
                    if !records.contains_key(key)? {
                        batch.insert(key.as_slice(), value.as_slice());
                        fixed += 1;
                    }
                }
            }
            records.apply_batch(batch)?;
            let mut integrity = Integrity::default();
            for (key, value) in want {
                integrity.add(key, value);
            }
            let generation = check::load_ledger(&meta)?
                .found()
                .map_or(0, |l| l.generation)
                .wrapping_add(1);
            meta.insert(
                INTEGRITY_KEY,
                check::Ledger::settled(integrity, generation)
                    .encode()
                    .as_slice(),
            )?;
            db.flush()?;
            check::write(self.store.dir(), generation)?;
            Ok((fixed, generation))
        })();
        let (fixed, generation) = fixed.map_err(|e| self.store.write_failed(&e))?;
        self.generation.store(generation, Ordering::SeqCst);
        Ok(fixed)
    }

    /// Whether the ledger matches the records (for tests and checks).
    pub fn integrity_holds(&self) -> Result<bool, StoreError> {
        let db = self.store.db()?;
        let ledger = check::load_ledger(&db.open_tree(migrations::META_TREE)?)?.found();
        let actual = Integrity::compute(&db.open_tree(TREE)?)?;
        Ok(ledger.is_some_and(|l| l.current == actual))
    }

    /// Resolves once a flush that started after this call has finished: every write made
    /// before the call is then on disk. The waiter is queued now, not when first polled.
    pub fn flushed(&self) -> impl std::future::Future<Output = Result<(), FlushError>> + use<> {
        let (tx, rx) = oneshot::channel();
        let queued = self.flusher.send(tx).is_ok();
        async move {
            if !queued {
                return Err(FlushError::Stopped);
            }
            rx.await.unwrap_or(Err(FlushError::Stopped))
        }
    }
}

/// Runs until every [`RecordStore`] is dropped: one flush per batch of waiters.
async fn flush_loop(
    store: Store,
    generation: Arc<AtomicU64>,
    mut waiters: mpsc::UnboundedReceiver<Waiter>,
) {
    let mut batch = Vec::new();
    while waiters.recv_many(&mut batch, usize::MAX).await > 0 {
        // Read before the flush starts: every change up to it is then in sled, so covered.
        let covered = generation.load(Ordering::SeqCst);
        let flushing = store.clone();
        let result =
            match tokio::task::spawn_blocking(move || flushing.flush_records(covered)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(FlushError::Failed(e.to_string())),
                // Nobody knows what reached the disk: a fault like any failed flush, so that the
                // repair runs before anything else is acknowledged.
                Err(join) => Err(FlushError::Failed(
                    store
                        .fail(format!(
                            "the store flush in {} failed: {join}",
                            store.dir().display()
                        ))
                        .to_string(),
                )),
            };
        if let Err(e) = &result {
            tracing::error!(error = %e, "store flush failed; writes are not acknowledged");
        }
        for waiter in batch.drain(..) {
            // A writer that stopped waiting (its HTTP client left) needs no answer.
            let _ = waiter.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(data: &str) -> StoredRecord {
        StoredRecord {
            name: "www.home.lan.".into(),
            rtype: "A".into(),
            ttl: 300,
            data: data.into(),
        }
    }

    /// Every decodable record, in id order.
    fn all(records: &RecordStore) -> Vec<(String, StoredRecord)> {
        let mut all = Vec::new();
        records
            .load(&AtomicU64::new(0), |id, record| {
                all.push((id, record));
                ControlFlow::Continue(())
            })
            .expect("load");
        all
    }

    #[tokio::test]
    async fn written_records_load_back() {
        // Durability across a real crash is the crash test's (tests/records_crash.rs): sled
        // keeps its lock until its background threads stop, so one process cannot reopen.
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let records = RecordStore::open(&store).expect("tree");
        records.put("a", &record("10.0.0.1")).expect("put");
        records.put("b", &record("10.0.0.2")).expect("put");
        records.remove("a").expect("remove");
        records.flushed().await.expect("flushed");
        let again = RecordStore::open(&store).expect("tree");
        assert_eq!(all(&again), vec![("b".to_string(), record("10.0.0.2"))]);
    }

    #[tokio::test]
    async fn a_load_stops_when_told() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let records = RecordStore::open(&store).expect("tree");
        for (id, data) in [("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")] {
            records.put(id, &record(data)).expect("put");
        }
        let mut seen = Vec::new();
        let loaded = records
            .load(&AtomicU64::new(0), |id, _| {
                seen.push(id);
                if seen.len() == 2 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .expect("load");
        assert_eq!(seen, ["a", "b"]);
        assert_eq!(loaded.integrity.count, 2);
    }

    #[tokio::test]
    async fn undecodable_entries_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let records = RecordStore::open(&store).expect("tree");
        let tree = records
            .store
            .db()
            .expect("db")
            .open_tree(TREE)
            .expect("tree");
        tree.insert("bad", b"not json".as_slice()).expect("insert");
        records.put("good", &record("10.0.0.1")).expect("put");
        let mut good = Vec::new();
        let loaded = records
            .load(&AtomicU64::new(0), |id, _| {
                good.push(id);
                ControlFlow::Continue(())
            })
            .expect("load");
        assert_eq!(good, ["good"]);
        assert_eq!(
            loaded.undecodable,
            vec![(b"bad".to_vec(), b"not json".to_vec())]
        );
        // The records check covers what the load skipped, too.
        assert_eq!(loaded.integrity.count, 2);
        assert_eq!(
            loaded.integrity,
            Integrity::compute(&tree).expect("integrity")
        );
    }

    #[tokio::test]
    async fn concurrent_waiters_share_flushes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let records = RecordStore::open(&store).expect("tree");
        let mut tasks = Vec::new();
        for i in 0..64 {
            let records = records.clone();
            tasks.push(tokio::spawn(async move {
                records
                    .put(&i.to_string(), &record("10.0.0.1"))
                    .expect("put");
                records.flushed().await
            }));
        }
        for task in tasks {
            task.await.expect("task").expect("flushed");
        }
        assert_eq!(all(&records).len(), 64);
        assert!(records.integrity_holds().expect("check"));
    }

    #[tokio::test]
    async fn puts_and_removes_keep_the_integrity_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let records = RecordStore::open(&store).expect("tree");
        records.put("a", &record("10.0.0.1")).expect("put");
        records.put("b", &record("10.0.0.2")).expect("put");
        records.put("a", &record("10.0.0.3")).expect("replace");
        records.remove("b").expect("remove");
        records.remove("never-there").expect("remove a missing id");
        assert!(records.integrity_holds().expect("check"));
        // A record sled loses behind rind's back breaks it.
        let tree = store.db().expect("db").open_tree(TREE).expect("tree");
        tree.remove("a").expect("remove behind rind's back");
        assert!(!records.integrity_holds().expect("check"));
    }

    #[tokio::test]
    async fn nothing_is_written_or_flushed_while_a_fault_is_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let records = RecordStore::open(&store).expect("tree");
        records.put("a", &record("10.0.0.1")).expect("put");
        records.flushed().await.expect("flushed");
        // A flush fails (the check file cannot be written), then the cause goes away.
        let check = check::path(dir.path());
        std::fs::remove_file(&check).expect("remove check file");
        std::fs::create_dir(&check).expect("a directory in its place");
        records.put("b", &record("10.0.0.2")).expect("put");
        assert!(records.flushed().await.is_err());
        std::fs::remove_dir(&check).expect("remove the directory");
        // Until a repair clears the fault, a flush would acknowledge what followed `b`.
        assert!(records.put("c", &record("10.0.0.3")).is_err());
        assert!(records.flushed().await.is_err());
        assert!(store.flush().is_err());
        assert!(store.clear_fault(store.fault_mark()));
        records
            .flushed()
            .await
            .expect("flushed after the fault is cleared");
    }

    #[tokio::test]
    async fn reconcile_makes_the_tree_exactly_what_is_wanted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let records = RecordStore::open(&store).expect("tree");
        records.put("keep", &record("10.0.0.1")).expect("put");
        records.put("changed", &record("10.0.0.2")).expect("put");
        records.put("extra", &record("10.0.0.3")).expect("put");
        let want: HashMap<Vec<u8>, Vec<u8>> = [
            ("keep", record("10.0.0.1")),
            ("changed", record("10.0.0.9")),
            ("missing", record("10.0.0.4")),
        ]
        .into_iter()
        .map(|(id, r)| (id.as_bytes().to_vec(), r.to_json()))
        .collect();
        assert_eq!(records.reconcile(&want).expect("reconcile"), 3);
        let loaded = all(&records);
        assert_eq!(
            loaded,
            vec![
                ("changed".to_string(), record("10.0.0.9")),
                ("keep".to_string(), record("10.0.0.1")),
                ("missing".to_string(), record("10.0.0.4")),
            ]
        );
        assert!(records.integrity_holds().expect("check"));
        assert_eq!(records.reconcile(&want).expect("again"), 0);
    }
}
