//! Snapshots: a copy of the store in a new directory that `rind-server --data-dir` opens as it
//! is.
//!
//! The copy is logical: a new sled database is written tree by tree from the live one. Copying
//! sled's files while it runs is no backup (its background threads rewrite segments at any
//! time; such copies were seen to open empty or to panic), while a logical copy depends on
//! nothing but sled's API. The caller holds the record writers meanwhile, so the records tree
//! is copied at one point in time; the cache trees are copied as they are, which is all a cache
//! needs.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{dirs, Store, SLED_CACHE_BYTES};

/// Entries per sled batch when copying a tree: one batch for a full cache tree cost 60 MiB
/// of RSS for the length of jemalloc's decay.
const COPY_BATCH: usize = 1_024;

/// Why a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The snapshot directory could not be made.
    #[error("cannot create snapshot directory {}: {source}", .path.display())]
    Create {
        /// The directory.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// Reading the store or writing the copy failed.
    #[error("cannot write snapshot {}: {source}", .path.display())]
    Copy {
        /// The snapshot directory (removed again).
        path: PathBuf,
        /// What sled said.
        source: sled::Error,
    },
    /// The copy was written but its directory entries could not be made durable.
    #[error("cannot sync snapshot {} to disk: {source}", .path.display())]
    Sync {
        /// The snapshot directory (removed again).
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
}

impl Store {
    /// Copies every tree into a new directory under `parent` (created when missing) and
    /// returns the new directory's path. Blocking: call it off the runtime.
    pub fn snapshot(&self, parent: &Path) -> Result<PathBuf, SnapshotError> {
        let created = |path: &Path, source| SnapshotError::Create {
            path: path.to_path_buf(),
            source,
        };
        let existing = dirs::nearest_existing(parent);
        std::fs::create_dir_all(parent).map_err(|e| created(parent, e))?;
        let stamp = utc_stamp(SystemTime::now());
        let mut attempt = 1;
        let dir = loop {
            let name = match attempt {
                1 => format!("snapshot-{stamp}"),
                n => format!("snapshot-{stamp}-{n}"),
            };
            let dir = parent.join(name);
            match std::fs::create_dir(&dir) {
                Ok(()) => break dir,
                // Two snapshots in one second: number the later one.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => {
                    attempt += 1;
                }
                Err(e) => return Err(created(&dir, e)),
            }
        };
        let written = match self.copy_into(&dir) {
            Err(source) => Err(SnapshotError::Copy {
                path: dir.clone(),
                source,
            }),
            // Without this a power loss could take a snapshot that was answered 201.
            Ok(()) => dirs::sync_below(&dir)
                .and_then(|()| dirs::sync_created(&dir, &existing))
                .map_err(|source| SnapshotError::Sync {
                    path: dir.clone(),
                    source,
                }),
        };
        if let Err(e) = written {
            if let Err(rm) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %rm, "cannot remove a failed snapshot");
            }
            return Err(e);
        }
        // An absolute path means the same to a client in another working directory.
        Ok(std::fs::canonicalize(&dir).unwrap_or(dir))
    }

    fn copy_into(&self, dir: &Path) -> sled::Result<()> {
        // No background flusher: the copy is flushed once below, then closed.
        let copy = sled::Config::new()
            .path(dir)
            .cache_capacity(SLED_CACHE_BYTES)
            .flush_every_ms(None)
            .open()?;
        for name in self.db.tree_names() {
            let from = self.db.open_tree(&name)?;
            let to = copy.open_tree(&name)?;
            let mut batch = sled::Batch::default();
            let mut in_batch = 0;
            for entry in from.iter() {
                let (key, value) = entry?;
                batch.insert(key, value);
                in_batch += 1;
                if in_batch == COPY_BATCH {
                    to.apply_batch(std::mem::take(&mut batch))?;
                    in_batch = 0;
                }
            }
            to.apply_batch(batch)?;
        }
        copy.flush()?;
        Ok(())
    }
}

/// `YYYYMMDDTHHMMSSZ` for `time`, in UTC.
fn utc_stamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Year, month, day of the day `days` after 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn stamps_are_utc_dates() {
        let at = |secs| utc_stamp(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(1_780_000_000), "20260528T202640Z");
    }

    #[test]
    fn a_snapshot_opens_as_a_store_with_every_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("data")).expect("open");
        let tree = store.db.open_tree("records").expect("tree");
        tree.insert("k", "v").expect("insert");
        store.db.insert("default-key", "x").expect("insert");
        let parent = dir.path().join("snaps");
        let first = store.snapshot(&parent).expect("snapshot");
        let second = store.snapshot(&parent).expect("second snapshot");
        assert_ne!(first, second);
        assert!(first.is_absolute());
        let copy = Store::open(&first).expect("snapshot opens");
        let tree = copy.db.open_tree("records").expect("tree");
        assert_eq!(
            tree.get("k").expect("get").as_deref(),
            Some(b"v".as_slice())
        );
        assert!(copy.db.get("default-key").expect("get").is_some());
        assert_eq!(
            migrations::version(&copy.db).expect("version"),
            migrations::SCHEMA_VERSION
        );
    }

    #[test]
    fn a_tree_longer_than_one_copy_batch_is_copied_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("data")).expect("open");
        let tree = store.db.open_tree("cache").expect("tree");
        let entries = 2 * COPY_BATCH + 7;
        for i in 0..entries {
            tree.insert(format!("k{i:05}"), format!("v{i}").as_bytes())
                .expect("insert");
        }
        let path = store.snapshot(&dir.path().join("snaps")).expect("snapshot");
        let copy = Store::open(&path).expect("snapshot opens");
        let copied = copy.db.open_tree("cache").expect("tree");
        let original: Vec<_> = tree.iter().collect::<Result<_, _>>().expect("read");
        let copied: Vec<_> = copied.iter().collect::<Result<_, _>>().expect("read copy");
        assert_eq!(copied.len(), entries);
        assert_eq!(copied, original);
    }

    #[test]
    fn an_unwritable_parent_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("data")).expect("open");
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").expect("write");
        let err = store
            .snapshot(&file.join("snaps"))
            .expect_err("under a file");
        assert!(
            err.to_string().contains("cannot create snapshot directory"),
            "{err}"
        );
    }
}
