//! The blocking trees: `blocklists` (id → the list's settings and fetch state, as JSON),
//! `blocklist_rules` (id, a 0 byte, chunk number → rules, one a line, as
//! [`crate::blocklist::parse`] writes them, deflated) and `allowlist` (domain → nothing).
//!
//! The rules are deflated because sled keeps every value it has read or written in memory
//! while the database is open, whatever its cache capacity: stored as text, a million names
//! would hold about 30 MiB more for as long as the server runs.
//!
//! A list's rules are replaced in one batch, so a crash leaves the old copy or the new one,
//! never a mix; the caller flushes ([`BlocklistStore::flush`]) before it acknowledges.

use std::io::{Read, Write};

use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

const LISTS: &str = migrations::BLOCKLISTS_TREE;
const RULES: &str = migrations::BLOCKLIST_RULES_TREE;
const ALLOW: &str = migrations::ALLOWLIST_TREE;

/// Bytes of rules per stored chunk (sled prefers values well under a MiB).
const CHUNK_BYTES: usize = 256 << 10;

/// The most a stored chunk may inflate to: a chunk ends at the first line end after
/// [`CHUNK_BYTES`], and a rule is a name, at most 256 bytes.
const MAX_CHUNK_BYTES: u64 = (CHUNK_BYTES as u64) + 1024;

/// A blocklist as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredList {
    /// The list's id.
    pub id: String,
    /// A name for people: the one given, else the URL.
    pub name: String,
    /// Where the list is fetched from; `None` for a list given inline.
    #[serde(default)]
    pub url: Option<String>,
    /// Rules in the copy kept.
    pub domains: usize,
    /// Lines of that copy that were not understood.
    pub skipped: usize,
    /// The `ETag` of the copy kept.
    #[serde(default)]
    pub etag: Option<String>,
    /// The `Last-Modified` of the copy kept.
    #[serde(default)]
    pub last_modified: Option<String>,
    /// When the copy kept was fetched or given (seconds since the epoch).
    pub updated: u64,
    /// When a fetch was last tried (seconds since the epoch).
    #[serde(default)]
    pub checked: Option<u64>,
    /// Why the last fetch failed; `None` after one that worked.
    #[serde(default)]
    pub error: Option<String>,
}

/// The blocking trees.
#[derive(Debug, Clone)]
pub struct BlocklistStore {
    store: Store,
}

impl BlocklistStore {
    /// Opens the trees.
    pub fn open(store: &Store) -> Result<BlocklistStore, StoreError> {
        let db = store.db()?;
        for tree in [LISTS, RULES, ALLOW] {
            db.open_tree(tree)?;
        }
        Ok(BlocklistStore {
            store: store.clone(),
        })
    }

    /// A new list id, never given before in this store.
    pub fn new_id(&self) -> Result<String, StoreError> {
        let db = self.store.writable_db()?;
        let id = db.generate_id().map_err(|e| self.store.write_failed(&e))?;
        Ok((id + 1).to_string())
    }

    /// Every stored list; one that cannot be decoded is logged and left on disk.
    pub fn lists(&self) -> Result<Vec<StoredList>, StoreError> {
        let tree = self.store.db()?.open_tree(LISTS)?;
        let mut lists = Vec::new();
        for entry in tree.iter() {
            let (key, value) = entry?;
            match serde_json::from_slice::<StoredList>(&value) {
                Ok(list) => lists.push(list),
                Err(e) => tracing::error!(
                    key = %String::from_utf8_lossy(&key),
                    error = %e,
                    "unreadable blocklist in the store; skipped"
                ),
            }
        }
        Ok(lists)
    }

    /// Stores `list`, and `rules` as its rules when given (else the kept ones stay).
    pub fn put(&self, list: &StoredList, rules: Option<&str>) -> Result<(), StoreError> {
        let value = serde_json::to_vec(list).map_err(|e| self.store.fail(e.to_string()))?;
        self.write(|db| {
            if let Some(rules) = rules {
                let tree = db.open_tree(RULES)?;
                let mut batch = sled::Batch::default();
                for key in tree.scan_prefix(prefix(&list.id)).keys() {
                    batch.remove(key?);
                }
                for (n, chunk) in chunks(rules).enumerate() {
                    let mut key = prefix(&list.id);
                    key.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
                    batch.insert(key, deflate(chunk));
                }
                tree.apply_batch(batch)?;
            }
            db.open_tree(LISTS)?
                .insert(list.id.as_bytes(), value.as_slice())?;
            Ok(())
        })
    }

    /// Removes the list `id` and its rules.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.write(|db| {
            db.open_tree(LISTS)?.remove(id.as_bytes())?;
            let tree = db.open_tree(RULES)?;
            let mut batch = sled::Batch::default();
            for key in tree.scan_prefix(prefix(id)).keys() {
                batch.remove(key?);
            }
            tree.apply_batch(batch)
        })
    }

    /// Calls `each` with every chunk of the rules of list `id`.
    pub fn rules(&self, id: &str, mut each: impl FnMut(&str)) -> Result<(), StoreError> {
        let tree = self.store.db()?.open_tree(RULES)?;
        let mut text = String::new();
        for value in tree.scan_prefix(prefix(id)).values() {
            let value = value?;
            match inflate(&value, &mut text) {
                Ok(()) => each(&text),
                Err(e) => {
                    tracing::error!(list = id, error = %e, "unreadable blocklist rules; skipped")
                }
            }
        }
        Ok(())
    }

    /// The allowlist, sorted.
    pub fn allowlist(&self) -> Result<Vec<String>, StoreError> {
        let tree = self.store.db()?.open_tree(ALLOW)?;
        let mut domains = Vec::new();
        for key in tree.iter().keys() {
            domains.push(String::from_utf8_lossy(&key?).into_owned());
        }
        Ok(domains)
    }

    /// Adds `domain` to the allowlist.
    pub fn allow(&self, domain: &str) -> Result<(), StoreError> {
        self.write(|db| {
            db.open_tree(ALLOW)?
                .insert(domain.as_bytes(), b"".as_slice())?;
            Ok(())
        })
    }

    /// Takes `domain` off the allowlist.
    pub fn disallow(&self, domain: &str) -> Result<(), StoreError> {
        self.write(|db| {
            db.open_tree(ALLOW)?.remove(domain.as_bytes())?;
            Ok(())
        })
    }

    /// Writes every change so far to disk; what a write route waits for before its 2xx.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.flush()).await {
            Ok(result) => result,
            Err(join) => Err(self.store.fail(format!(
                "the store flush in {} failed: {join}",
                self.store.dir().display()
            ))),
        }
    }

    fn write(&self, op: impl FnOnce(&sled::Db) -> sled::Result<()>) -> Result<(), StoreError> {
        let db = self.store.writable_db()?;
        op(&db).map_err(|e| self.store.write_failed(&e))
    }
}

fn prefix(id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(id.len() + 5);
    key.extend_from_slice(id.as_bytes());
    key.push(0);
    key
}

/// `chunk` deflated, at the fastest level: the rules are mostly names, which deflate about
/// three times at any level, and a list of millions is stored in well under a second.
fn deflate(chunk: &str) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::with_capacity(chunk.len() / 3), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(chunk.as_bytes());
    encoder.finish().unwrap_or_default()
}

/// Inflates a stored chunk into `text` (cleared first); refuses one that is not deflate,
/// not UTF-8, or larger than a chunk can be.
fn inflate(stored: &[u8], text: &mut String) -> std::io::Result<()> {
    text.clear();
    let mut decoder = DeflateDecoder::new(stored).take(MAX_CHUNK_BYTES + 1);
    decoder.read_to_string(text)?;
    if text.len() as u64 > MAX_CHUNK_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the chunk inflates past its limit",
        ));
    }
    Ok(())
}

/// `rules` in pieces of about [`CHUNK_BYTES`], each ending at the end of a line.
fn chunks(rules: &str) -> impl Iterator<Item = &str> {
    let mut rest = rules;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = if rest.len() <= CHUNK_BYTES {
            rest.len()
        } else {
            rest.get(CHUNK_BYTES..)
                .and_then(|tail| tail.find('\n'))
                .map_or(rest.len(), |i| CHUNK_BYTES + i + 1)
        };
        let (chunk, tail) = rest.split_at(cut);
        rest = tail;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(id: &str) -> StoredList {
        StoredList {
            id: id.into(),
            name: "test".into(),
            url: None,
            domains: 0,
            skipped: 0,
            etag: None,
            last_modified: None,
            updated: 1,
            checked: None,
            error: None,
        }
    }

    #[test]
    fn stored_chunks_round_trip_and_bad_ones_are_refused() {
        let chunk: String = (0..10_000).map(|i| format!("host{i}.example\n")).collect();
        let stored = deflate(&chunk);
        assert!(stored.len() < chunk.len() / 2, "{} bytes", stored.len());
        let mut text = String::from("left over");
        inflate(&stored, &mut text).expect("inflate");
        assert_eq!(text, chunk);
        assert!(inflate(b"plain text, not deflate", &mut text).is_err());
        let big = "a".repeat(usize::try_from(MAX_CHUNK_BYTES).expect("fits") + 1);
        assert!(inflate(&deflate(&big), &mut text).is_err());
    }

    #[test]
    fn chunks_end_at_line_ends() {
        let rules: String = (0..100_000).map(|i| format!("host{i}.example\n")).collect();
        let pieces: Vec<&str> = chunks(&rules).collect();
        assert!(pieces.len() > 1);
        assert!(pieces.iter().all(|p| p.ends_with('\n')));
        assert_eq!(pieces.concat(), rules);
        assert_eq!(chunks("").count(), 0);
    }

    #[tokio::test]
    async fn lists_rules_and_allowlist_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let lists = BlocklistStore::open(&store).expect("trees");
        let (one, two) = (lists.new_id().expect("id"), lists.new_id().expect("id"));
        assert_ne!(one, two);
        let rules: String = (0..50_000).map(|i| format!("h{i}.example\n")).collect();
        lists.put(&list(&one), Some(&rules)).expect("put");
        lists.put(&list(&two), Some("|b.example\n")).expect("put");
        // Replacing the rules leaves none of the old ones.
        lists.put(&list(&one), Some("a.example\n")).expect("put");
        lists.allow("ok.example").expect("allow");
        lists.flush().await.expect("flush");
        let mut read = String::new();
        lists.rules(&one, |c| read.push_str(c)).expect("rules");
        assert_eq!(read, "a.example\n");
        assert_eq!(lists.lists().expect("lists").len(), 2);
        lists.remove(&one).expect("remove");
        let mut gone = String::new();
        lists.rules(&one, |c| gone.push_str(c)).expect("rules");
        assert_eq!(gone, "");
        assert_eq!(lists.allowlist().expect("allow"), ["ok.example"]);
        lists.disallow("ok.example").expect("disallow");
        assert!(lists.allowlist().expect("allow").is_empty());
    }
}
