//! The persistent side of the cache: two sled trees kept in step.
//!
//! - `cache`: key → value, where the key is the cache key (lower-cased wire name, type, class,
//!   and a last byte for answers fetched with CD=1) and the value starts with a format byte and
//!   the absolute expiry (unix seconds, big-endian);
//! - `cache_expiry`: expiry (big-endian `u64`) ++ key → nothing, so expired entries are found
//!   with one range scan and the freshest ones with one reverse scan.
//!
//! sled has no TTL of its own (spacejam/sled#1119); this index is the usual substitute.
//!
//! The trees are written with one `Batch` each, not a transaction: sled's transactions cost
//! more than everything else on the cache-miss path together. Instead, readers tolerate the
//! index being ahead of the values: an index entry counts only if the value it names carries
//! the same expiry. Replacing or deleting a value leaves its old index entry behind, and the
//! janitor removes it when its time comes. Index batches go first, so a crash can leave index
//! entries without values (skipped), never values the janitor cannot find.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{Store, StoreError};

/// Name of the tree holding cached answers.
pub const CACHE_TREE: &str = "cache";
/// Name of the expiry index tree.
pub const EXPIRY_TREE: &str = "cache_expiry";

/// One change to the persistent cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheWrite {
    /// Store `value` under `key`, replacing an older value; `expires_at` indexes it.
    Put {
        /// The cache key.
        key: Vec<u8>,
        /// Unix seconds after which the entry is stale.
        expires_at: u64,
        /// The encoded entry; its bytes 1..9 hold `expires_at` (see [`expiry_of`]).
        value: Vec<u8>,
    },
    /// Forget `key`.
    Delete(Vec<u8>),
    /// Forget `key` only if its stored value expires at `expires_at`: an eviction of that
    /// value, which must not undo a newer put for the same key.
    Evict {
        /// The cache key.
        key: Vec<u8>,
        /// Expiry of the evicted value.
        expires_at: u64,
    },
    /// Forget every key that starts with these bytes: a name's wire form, which no other
    /// name's key starts with (labels are length-prefixed and the root label ends it).
    DeleteName(Vec<u8>),
    /// Forget everything.
    Clear,
}

/// The expiry stored in an encoded entry: bytes 1..9 (after the format byte), big-endian.
pub fn expiry_of(value: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = value.get(1..9)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn index_key(expires_at: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&expires_at.to_be_bytes());
    k.extend_from_slice(key);
    k
}

impl Store {
    /// Applies `writes` in order and flushes, so an answer is on disk about a batch window
    /// after it was cached (the write-behind task batches for a quarter of a second).
    pub fn cache_apply(&self, writes: &[CacheWrite]) -> Result<(), StoreError> {
        let db = self.writable_db()?;
        let written = (|| {
            let cache = db.open_tree(CACHE_TREE)?;
            let expiry = db.open_tree(EXPIRY_TREE)?;
            // Whatever came before the last Clear is wiped by it.
            let run = match writes.iter().rposition(|w| matches!(w, CacheWrite::Clear)) {
                Some(last_clear) => {
                    cache.clear()?;
                    expiry.clear()?;
                    writes.get(last_clear + 1..).unwrap_or_default()
                }
                None => writes,
            };
            if !run.is_empty() {
                apply_run(&cache, &expiry, run)?;
            }
            db.flush()?;
            Ok(())
        })();
        written.map_err(|e| self.write_failed(&e))
    }

    /// Removes every entry whose expiry is before `before`; returns how many went.
    ///
    /// Works in batches of [`EXPIRE_BATCH`] index entries: a minute of expired answers in one
    /// sled batch made the janitor's tick a 40-50 MiB bump in RSS in the soak.
    pub fn cache_expire(&self, before: u64) -> Result<usize, StoreError> {
        let db = self.db()?;
        let expired = (|| {
            let cache = db.open_tree(CACHE_TREE)?;
            let expiry = db.open_tree(EXPIRY_TREE)?;
            let mut removed = 0;
            loop {
                let (seen, gone) = expire_batch(&cache, &expiry, before)?;
                removed += gone;
                if seen < EXPIRE_BATCH {
                    return Ok(removed);
                }
            }
        })();
        expired.map_err(|e| self.write_failed(&e))
    }

    /// Hands `each` up to `limit` entries that expire after `now`, freshest first, as (key,
    /// value), one at a time so a big cache is never all in memory twice; stops early when
    /// `each` returns false. Returns how many it handed over.
    pub fn cache_scan(
        &self,
        now: u64,
        limit: usize,
        mut each: impl FnMut(Vec<u8>, sled::IVec) -> bool,
    ) -> Result<usize, StoreError> {
        let db = self.db()?;
        let cache = db.open_tree(CACHE_TREE)?;
        let expiry = db.open_tree(EXPIRY_TREE)?;
        let mut handed = 0;
        let first_fresh = (now + 1).to_be_bytes().to_vec();
        for item in expiry.range(first_fresh..).rev() {
            if handed >= limit {
                break;
            }
            let (index, _) = item?;
            let (Some(exp), Some(key)) = (index.get(..8), index.get(8..)) else {
                continue;
            };
            let Some(value) = cache.get(key)? else {
                continue;
            };
            if value.get(1..9) == Some(exp) {
                handed += 1;
                if !each(key.to_vec(), value) {
                    break;
                }
            }
        }
        Ok(handed)
    }

    /// Number of entries in the persistent cache.
    pub fn cache_len(&self) -> Result<usize, StoreError> {
        Ok(self.db()?.open_tree(CACHE_TREE)?.len())
    }
}

/// Most index entries the janitor removes in one sled batch.
const EXPIRE_BATCH: usize = 1_024;

/// Removes up to [`EXPIRE_BATCH`] index entries before `before`, and the values they point
/// at; returns how many index entries it saw and how many values went. The index entries are
/// removed either way, so the next call starts past them.
fn expire_batch(
    cache: &sled::Tree,
    expiry: &sled::Tree,
    before: u64,
) -> sled::Result<(usize, usize)> {
    let mut seen = 0;
    let mut removed = 0;
    let mut index_batch = sled::Batch::default();
    let mut cache_batch = sled::Batch::default();
    for item in expiry
        .range(..before.to_be_bytes().to_vec())
        .take(EXPIRE_BATCH)
    {
        let (index, _) = item?;
        seen += 1;
        index_batch.remove(index.clone());
        let (Some(exp), Some(key)) = (
            index.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()),
            index.get(8..),
        ) else {
            continue;
        };
        // Only remove the value if it is the one this index entry points at: a newer put
        // for the same key has its own, later index entry.
        if cache
            .get(key)?
            .is_some_and(|v| expiry_of(&v) == Some(u64::from_be_bytes(exp)))
        {
            cache_batch.remove(key);
            removed += 1;
        }
    }
    // Values first: should the index batch be lost, its entries are simply seen again.
    cache.apply_batch(cache_batch)?;
    expiry.apply_batch(index_batch)?;
    Ok((seen, removed))
}

/// What a batch does to one key in the end.
enum Final<'a> {
    Put {
        expires_at: u64,
        value: &'a [u8],
    },
    Delete,
    /// Delete if the stored value (not touched by this batch) has this expiry.
    DeleteIfStored(u64),
}

fn apply_run(cache: &sled::Tree, expiry: &sled::Tree, run: &[CacheWrite]) -> sled::Result<()> {
    // Keys borrow from the run, except those a DeleteName found on disk.
    let mut last: HashMap<Cow<'_, [u8]>, Final<'_>> = HashMap::with_capacity(run.len());
    // An evicted value's index entry is known without a read; removing it keeps the index as
    // small as the cache instead of one entry per put until the janitor's turn.
    let mut index = sled::Batch::default();
    for write in run {
        match write {
            CacheWrite::Put {
                key,
                expires_at,
                value,
            } => {
                let put = Final::Put {
                    expires_at: *expires_at,
                    value,
                };
                last.insert(Cow::Borrowed(key), put);
            }
            CacheWrite::Delete(key) => {
                last.insert(Cow::Borrowed(key), Final::Delete);
            }
            CacheWrite::DeleteName(prefix) => {
                for end in last.iter_mut().filter(|(k, _)| k.starts_with(prefix)) {
                    *end.1 = Final::Delete;
                }
                for stored in cache.scan_prefix(prefix) {
                    let (key, _) = stored?;
                    last.insert(Cow::Owned(key.to_vec()), Final::Delete);
                }
            }
            CacheWrite::Evict { key, expires_at } => {
                index.remove(index_key(*expires_at, key));
                match last.get(key.as_slice()) {
                    Some(Final::Put { expires_at: e, .. }) if e != expires_at => {}
                    Some(Final::Put { .. }) => {
                        last.insert(Cow::Borrowed(key), Final::Delete);
                    }
                    Some(Final::Delete) | Some(Final::DeleteIfStored(_)) => {}
                    None => {
                        last.insert(Cow::Borrowed(key), Final::DeleteIfStored(*expires_at));
                    }
                }
            }
            CacheWrite::Clear => {}
        }
    }
    let mut values = sled::Batch::default();
    for (key, end) in last {
        let key: &[u8] = &key;
        match end {
            // Inserted after the removals above: in a sled Batch the last operation wins.
            Final::Put { expires_at, value } => {
                index.insert(index_key(expires_at, key), &[]);
                values.insert(key, value);
            }
            Final::Delete => {
                if let Some(old) = cache.get(key)?.as_deref().and_then(expiry_of) {
                    index.remove(index_key(old, key));
                }
                values.remove(key);
            }
            Final::DeleteIfStored(evicted) => {
                if cache
                    .get(key)?
                    .is_some_and(|v| expiry_of(&v) == Some(evicted))
                {
                    values.remove(key);
                }
            }
        }
    }
    expiry.apply_batch(index)?;
    cache.apply_batch(values)?;
    Ok(())
}

/// Writes for tests of the store and of the write-behind queue.
#[cfg(test)]
pub(crate) mod test_writes {
    use super::CacheWrite;

    /// A value as the cache encodes it: version byte, expiry, then `body`.
    pub fn value(expires_at: u64, body: &[u8]) -> Vec<u8> {
        let mut v = vec![1];
        v.extend_from_slice(&expires_at.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// A put of `key` expiring at `expires_at`, with the key as its body.
    pub fn put(key: &[u8], expires_at: u64) -> CacheWrite {
        CacheWrite::Put {
            key: key.to_vec(),
            expires_at,
            value: value(expires_at, key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_writes::put;
    use super::*;

    /// The keys of up to `limit` entries fresh at `now`, freshest first.
    fn fresh_keys(store: &Store, now: u64, limit: usize) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        store
            .cache_scan(now, limit, |key, _| {
                keys.push(key);
                true
            })
            .expect("scan");
        keys
    }

    /// The keys of the fresh entries on disk, freshest first.
    fn stored_keys(store: &Store) -> Vec<Vec<u8>> {
        fresh_keys(store, 0, 10)
    }

    #[test]
    fn load_returns_fresh_entries_freshest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .cache_apply(&[
                put(b"a", 100),
                put(b"b", 300),
                put(b"c", 200),
                put(b"old", 50),
            ])
            .expect("apply");
        assert_eq!(fresh_keys(&store, 100, 10), [b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(fresh_keys(&store, 100, 1), [b"b".to_vec()]);
        let mut handed = 0;
        let stopped = store.cache_scan(0, 10, |_, _| {
            handed += 1;
            false
        });
        assert_eq!(
            (stopped.expect("scan"), handed),
            (1, 1),
            "a scan told to stop went on"
        );
    }

    #[test]
    fn replacing_a_key_moves_its_index_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.cache_apply(&[put(b"k", 100)]).expect("apply");
        store.cache_apply(&[put(b"k", 500)]).expect("apply");
        assert_eq!(store.cache_expire(400).expect("expire"), 0);
        assert_eq!(store.cache_len().expect("len"), 1);
        assert_eq!(store.cache_expire(600).expect("expire"), 1);
        assert_eq!(store.cache_len().expect("len"), 0);
        let expiry = store
            .db()
            .expect("db")
            .open_tree(EXPIRY_TREE)
            .expect("tree");
        assert!(expiry.is_empty());
    }

    #[test]
    fn expiry_works_through_more_than_one_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let old = 2 * EXPIRE_BATCH + 5;
        let mut writes: Vec<CacheWrite> = (0..old)
            .map(|i| put(format!("old{i}").as_bytes(), 100 + (i % 7) as u64))
            .collect();
        writes.push(put(b"fresh", 1_000));
        store.cache_apply(&writes).expect("apply");
        assert_eq!(store.cache_expire(500).expect("expire"), old);
        assert_eq!(store.cache_len().expect("len"), 1);
        let expiry = store
            .db()
            .expect("db")
            .open_tree(EXPIRY_TREE)
            .expect("tree");
        assert_eq!(expiry.len(), 1);
    }

    #[test]
    fn an_eviction_never_undoes_a_newer_put() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let evict = |key: &[u8], expires_at| CacheWrite::Evict {
            key: key.to_vec(),
            expires_at,
        };
        // In one batch, and across batches: the evicted value had expiry 100, the new one 200.
        store
            .cache_apply(&[put(b"a", 200), evict(b"a", 100)])
            .expect("apply");
        store.cache_apply(&[put(b"b", 200)]).expect("apply");
        store.cache_apply(&[evict(b"b", 100)]).expect("apply");
        assert_eq!(store.cache_len().expect("len"), 2);
        // An eviction of the stored value itself removes it.
        store.cache_apply(&[evict(b"b", 200)]).expect("apply");
        store
            .cache_apply(&[put(b"c", 300), evict(b"c", 300)])
            .expect("apply");
        let keys = stored_keys(&store);
        assert_eq!(keys, [b"a".to_vec()]);
    }

    #[test]
    fn evictions_and_deletes_take_their_index_entries_along() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let expiry = store
            .db()
            .expect("db")
            .open_tree(EXPIRY_TREE)
            .expect("tree");
        store
            .cache_apply(&[put(b"a", 100), put(b"b", 100), put(b"c", 100)])
            .expect("apply");
        store
            .cache_apply(&[
                CacheWrite::Evict {
                    key: b"a".to_vec(),
                    expires_at: 100,
                },
                CacheWrite::Delete(b"b".to_vec()),
            ])
            .expect("apply");
        assert_eq!(expiry.len(), 1, "only c's index entry is left");
        // Evicted and put again within the same second: the new entry keeps its index entry.
        store
            .cache_apply(&[
                CacheWrite::Evict {
                    key: b"c".to_vec(),
                    expires_at: 100,
                },
                put(b"c", 100),
            ])
            .expect("apply");
        assert_eq!(expiry.len(), 1);
        assert_eq!(stored_keys(&store).len(), 1);
    }

    #[test]
    fn delete_and_clear() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .cache_apply(&[
                put(b"a", 100),
                put(b"b", 100),
                CacheWrite::Delete(b"a".to_vec()),
            ])
            .expect("apply");
        assert_eq!(store.cache_len().expect("len"), 1);
        store
            .cache_apply(&[put(b"c", 100), CacheWrite::Clear, put(b"d", 100)])
            .expect("apply");
        let keys = stored_keys(&store);
        assert_eq!(keys, [b"d".to_vec()]);
    }

    #[test]
    fn delete_name_removes_that_name_on_disk_and_earlier_in_the_batch_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let name = b"\x01a\x01b\x00".to_vec();
        let key = |wire: &[u8], rtype: u8| [wire, &[0, rtype, 0, 1]].concat();
        let (a_on_disk, a_in_batch) = (key(&name, 1), key(&name, 28));
        let below = key(b"\x01a\x01b\x01c\x00", 1);
        store
            .cache_apply(&[put(&a_on_disk, 500), put(&below, 500)])
            .expect("apply");
        store
            .cache_apply(&[put(&a_in_batch, 500), CacheWrite::DeleteName(name.clone())])
            .expect("apply");
        let left = stored_keys(&store);
        assert_eq!(left, [below]);
        // The index follows: one entry, the survivor's.
        let expiry = store
            .db()
            .expect("db")
            .open_tree(EXPIRY_TREE)
            .expect("tree");
        assert_eq!(expiry.len(), 1);
        assert_eq!(store.cache_expire(600).expect("expire"), 1);

        // A put after the DeleteName in the same batch stays.
        store
            .cache_apply(&[CacheWrite::DeleteName(name), put(&a_on_disk, 700)])
            .expect("apply");
        assert_eq!(store.cache_len().expect("len"), 1);
    }
}
