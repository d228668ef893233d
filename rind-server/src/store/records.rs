//! The `records` tree: record id → the record as JSON, and the group commit that makes writes
//! durable.
//!
//! Durability: sled keeps writes in memory until a flush (or its 500 ms timer), so a write is
//! acknowledged only after a `flush()` that *started after* the write. One flusher task serves
//! every writer: it takes all waiters queued so far, runs one `flush()` on the blocking pool
//! (never `flush_async`, which deadlocks under concurrency in sled 0.34.7), and answers them
//! all, so concurrent writers share one fsync.

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::{Store, StoreError};

/// Name of the tree, created by schema version 1.
const TREE: &str = "records";

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
    fn to_json(&self) -> Vec<u8> {
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

/// A flush that did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlushError {
    /// sled could not write or fsync.
    #[error("cannot flush the store to disk: {0}")]
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
    tree: sled::Tree,
    flusher: mpsc::UnboundedSender<Waiter>,
}

impl RecordStore {
    /// Opens the tree and starts the flusher task; needs a tokio runtime.
    pub fn open(store: &Store) -> Result<RecordStore, StoreError> {
        let tree = store.db.open_tree(TREE)?;
        let (flusher, waiters) = mpsc::unbounded_channel();
        tokio::spawn(flush_loop(store.db.clone(), waiters));
        Ok(RecordStore {
            store: store.clone(),
            tree,
            flusher,
        })
    }

    /// The whole store, for snapshots.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Every stored record with its id; entries that cannot be decoded are logged and left out
    /// (and left on disk, for a later rind that may read them).
    pub fn load(&self) -> Result<Vec<(String, StoredRecord)>, StoreError> {
        let mut records = Vec::with_capacity(self.tree.len());
        for entry in self.tree.iter() {
            let (key, value) = entry?;
            let decoded = std::str::from_utf8(&key)
                .map_err(|e| e.to_string())
                .and_then(|id| {
                    serde_json::from_slice::<StoredRecord>(&value)
                        .map(|r| (id.to_string(), r))
                        .map_err(|e| e.to_string())
                });
            match decoded {
                Ok(record) => records.push(record),
                Err(e) => {
                    tracing::error!(key = %String::from_utf8_lossy(&key), error = %e, "unreadable record in the store; skipped")
                }
            }
        }
        Ok(records)
    }

    /// Stores `record` under `id` (not yet durable: see [`RecordStore::flushed`]).
    pub fn put(&self, id: &str, record: &StoredRecord) -> Result<(), StoreError> {
        self.tree.insert(id.as_bytes(), record.to_json())?;
        Ok(())
    }

    /// Removes the record `id` (not yet durable: see [`RecordStore::flushed`]).
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.tree.remove(id.as_bytes())?;
        Ok(())
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
async fn flush_loop(db: sled::Db, mut waiters: mpsc::UnboundedReceiver<Waiter>) {
    let mut batch = Vec::new();
    while waiters.recv_many(&mut batch, usize::MAX).await > 0 {
        let db = db.clone();
        let result = match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(FlushError::Failed(e.to_string())),
            Err(join) => Err(FlushError::Failed(join.to_string())),
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
        let loaded = again.load().expect("load");
        assert_eq!(loaded, vec![("b".to_string(), record("10.0.0.2"))]);
    }

    #[tokio::test]
    async fn undecodable_entries_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let records = RecordStore::open(&store).expect("tree");
        records
            .tree
            .insert("bad", b"not json".as_slice())
            .expect("insert");
        records.put("good", &record("10.0.0.1")).expect("put");
        let loaded = records.load().expect("load");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].0, "good");
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
        assert_eq!(records.load().expect("load").len(), 64);
    }
}
