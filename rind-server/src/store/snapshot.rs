//! Snapshots: a copy of the store in a new directory that `rind-server --data-dir` opens as it
//! is.
//!
//! The copy is logical: a new sled database is written tree by tree from the live one. Copying
//! sled's files while it runs is no backup (its background threads rewrite segments at any
//! time; such copies were seen to open empty or to panic), while a logical copy depends on
//! nothing but sled's API. The caller holds the record writers meanwhile, so the records tree
//! is copied at one point in time; the cache trees are copied as they are, which is all a cache
//! needs.
//!
//! A snapshot is written under a hidden `.snapshot-…partial` name, given a [`MARKER`] file once
//! the copy is on disk, and renamed to `snapshot-YYYYMMDDTHHMMSSZ[-N]`: a directory of that
//! name holding the marker is a whole copy made by rind, the only kind [`list`] finds, a
//! damaged store's error suggests, and [`prune`] removes. A directory someone named the same
//! way by hand has no marker and is left alone.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{dirs, Store, SLED_CACHE_BYTES};

/// The file in a complete snapshot that says rind made it and finished it.
pub const MARKER: &str = "rind-snapshot";

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
        let (dir, done) = loop {
            let name = match attempt {
                1 => format!("snapshot-{stamp}"),
                n => format!("snapshot-{stamp}-{n}"),
            };
            let done = parent.join(&name);
            let dir = parent.join(format!(".{name}.partial"));
            let claimed = if done.exists() {
                Err(io::Error::from(io::ErrorKind::AlreadyExists))
            } else {
                std::fs::create_dir(&dir)
            };
            match claimed {
                Ok(()) => break (dir, done),
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
            // Without the syncs a power loss could take a snapshot that was answered 201.
            Ok(()) => write_marker(&dir)
                .and_then(|()| dirs::sync_below(&dir))
                .and_then(|()| std::fs::rename(&dir, &done))
                .and_then(|()| dirs::sync_created(&done, &existing))
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
        Ok(std::fs::canonicalize(&done).unwrap_or(done))
    }

    fn copy_into(&self, dir: &Path) -> sled::Result<()> {
        let db = self
            .db()
            .map_err(|e| sled::Error::Io(io::Error::other(e.to_string())))?;
        // No background flusher: the copy is flushed once below, then closed.
        let copy = sled::Config::new()
            .path(dir)
            .cache_capacity(SLED_CACHE_BYTES)
            .flush_every_ms(None)
            .open()?;
        for name in db.tree_names() {
            let from = db.open_tree(&name)?;
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

/// Writes and fsyncs [`MARKER`] in `dir`, whose copy is complete and on disk.
fn write_marker(dir: &Path) -> io::Result<()> {
    let mut file = std::fs::File::create(dir.join(MARKER))?;
    file.write_all(b"a complete rind-server snapshot: start rind-server with it as --data-dir\n")?;
    file.sync_all()
}

/// A complete snapshot found in a snapshot directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Its directory.
    pub path: PathBuf,
    /// Its UTC stamp and number (1 for the first of its second), which order snapshots.
    order: (String, u32),
}

/// The complete snapshots in `parent`, oldest first; nothing else there is listed (an
/// unreadable or missing directory has none).
pub fn list(parent: &Path) -> Vec<Snapshot> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<Snapshot> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| e.path().join(MARKER).is_file())
        .filter_map(|e| {
            let order = parse_name(e.file_name().to_str()?)?;
            Some(Snapshot {
                path: e.path(),
                order,
            })
        })
        .collect();
    found.sort_by(|a, b| a.order.cmp(&b.order));
    found
}

/// Removes the oldest complete snapshots in `parent` until `keep` are left, but only ones
/// older than `newest`, the one the caller just wrote: another snapshot may have been
/// written meanwhile (a scheduled one and a `POST`, each pruning once it is complete), and
/// its caller has it or is about to. After a clock was set back, the snapshots named after
/// the future stay until they are the oldest, which errs towards keeping. Returns how many
/// went; a snapshot that cannot be removed is logged and left.
pub fn prune(parent: &Path, keep: usize, newest: &Path) -> usize {
    // One prune at a time: two listing the same snapshots would both remove the oldest.
    static PRUNING: Mutex<()> = Mutex::new(());
    let _alone = PRUNING.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(made) = newest
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_name)
    else {
        tracing::warn!(path = %newest.display(), "not a snapshot name; nothing pruned");
        return 0;
    };
    let snapshots = list(parent);
    let excess = snapshots.len().saturating_sub(keep);
    let mut removed = 0;
    for old in snapshots
        .iter()
        .filter(|s| s.order < made && !same_dir(&s.path, newest))
        .take(excess)
    {
        match std::fs::remove_dir_all(&old.path) {
            Ok(()) => {
                tracing::info!(path = %old.path.display(), "old snapshot removed");
                removed += 1;
            }
            Err(e) => {
                tracing::warn!(path = %old.path.display(), error = %e, "cannot remove an old snapshot")
            }
        }
    }
    removed
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// (stamp, number) of a name [`Store::snapshot`] gives a complete snapshot, else `None`.
fn parse_name(name: &str) -> Option<(String, u32)> {
    let rest = name.strip_prefix("snapshot-")?;
    let (stamp, number) = match rest.split_once('-') {
        Some((stamp, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (stamp, n.parse().ok()?)
        }
        Some(_) => return None,
        None => (rest, 1),
    };
    let b = stamp.as_bytes();
    let shape = b.len() == 16
        && b.get(8) == Some(&b'T')
        && b.get(15) == Some(&b'Z')
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 8 || i == 15 || c.is_ascii_digit());
    shape.then(|| (stamp.to_string(), number))
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
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
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
pub(crate) mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::store::StoreError;

    /// A directory that lists as a complete snapshot.
    pub(crate) fn fake_snapshot(dir: &Path) {
        std::fs::create_dir_all(dir).expect("mkdir");
        write_marker(dir).expect("marker");
    }

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
        let db = store.db().expect("db");
        db.open_tree("cache")
            .expect("tree")
            .insert("k", "v")
            .expect("insert");
        db.insert("default-key", "x").expect("insert");
        let parent = dir.path().join("snaps");
        let first = store.snapshot(&parent).expect("snapshot");
        let second = store.snapshot(&parent).expect("second snapshot");
        assert_ne!(first, second);
        assert!(first.is_absolute());
        let copy = Store::open(&first).expect("snapshot opens");
        let copy = copy.db().expect("db");
        let tree = copy.open_tree("cache").expect("tree");
        assert_eq!(
            tree.get("k").expect("get").as_deref(),
            Some(b"v".as_slice())
        );
        assert!(copy.get("default-key").expect("get").is_some());
        assert_eq!(
            migrations::version(&copy).expect("version"),
            migrations::SCHEMA_VERSION
        );
    }

    #[test]
    fn a_tree_longer_than_one_copy_batch_is_copied_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("data")).expect("open");
        let tree = store.db().expect("db").open_tree("cache").expect("tree");
        let entries = 2 * COPY_BATCH + 7;
        for i in 0..entries {
            tree.insert(format!("k{i:05}"), format!("v{i}").as_bytes())
                .expect("insert");
        }
        let path = store.snapshot(&dir.path().join("snaps")).expect("snapshot");
        // sled lets go of a dropped database's lock from a background thread, a moment later
        // (spacejam/sled#1289): the snapshot's own handle may still hold it.
        let deadline = Instant::now() + Duration::from_secs(5);
        let copy = loop {
            match Store::open(&path) {
                Err(StoreError::Locked(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                opened => break opened.expect("snapshot opens"),
            }
        };
        let copied = copy.db().expect("db").open_tree("cache").expect("tree");
        let original: Vec<_> = tree.iter().collect::<Result<_, _>>().expect("read");
        let copied: Vec<_> = copied.iter().collect::<Result<_, _>>().expect("read copy");
        assert_eq!(copied.len(), entries);
        assert_eq!(copied, original);
    }

    #[test]
    fn only_complete_snapshots_are_listed_and_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("data")).expect("open");
        let parent = dir.path().join("snaps");
        let made: Vec<PathBuf> = (0..3)
            .map(|_| store.snapshot(&parent).expect("snapshot"))
            .collect();
        // Things rind did not make, or did not finish, whatever they look like.
        let foreign = [
            "snapshot-20200101T000000Z.bak",
            "snapshot-2020-01-01",
            "notes",
            ".snapshot-20200101T000000Z.partial",
        ];
        for name in foreign {
            std::fs::create_dir(parent.join(name)).expect("mkdir");
        }
        std::fs::write(parent.join("snapshot-20000101T000000Z"), b"a file").expect("write");
        // Named as rind names its snapshots, but not made (or not finished) by it.
        let unmarked = parent.join("snapshot-20000102T000000Z");
        std::fs::create_dir(&unmarked).expect("mkdir");
        let listed: Vec<PathBuf> = list(&parent).into_iter().map(|s| s.path).collect();
        let canon = |p: &Path| std::fs::canonicalize(p).expect("canonicalize");
        assert_eq!(
            listed.iter().map(|p| canon(p)).collect::<Vec<_>>(),
            made.iter().map(|p| canon(p)).collect::<Vec<_>>()
        );
        assert_eq!(prune(&parent, 1, &made[2]), 2);
        assert!(!made[0].exists() && !made[1].exists() && made[2].exists());
        for name in foreign {
            assert!(parent.join(name).exists(), "{name} was removed");
        }
        assert!(parent.join("snapshot-20000101T000000Z").exists());
        assert!(unmarked.exists());
    }

    #[test]
    fn the_snapshot_just_made_is_kept_even_when_it_sorts_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parent = dir.path().join("snaps");
        for name in ["snapshot-20300101T000000Z", "snapshot-20100101T000000Z"] {
            fake_snapshot(&parent.join(name));
        }
        let newest = parent.join("snapshot-20100101T000000Z");
        assert_eq!(prune(&parent, 1, &newest), 0);
        assert!(newest.exists());
        assert!(parent.join("snapshot-20300101T000000Z").exists());
    }

    /// A scheduled snapshot and a `POST` race: the first one made prunes after the second
    /// is complete, and must not take the second, which its caller was just given.
    #[test]
    fn a_prune_never_removes_a_snapshot_newer_than_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parent = dir.path().join("snaps");
        let names = [
            "snapshot-20261204T030000Z",
            "snapshot-20261204T040000Z",
            "snapshot-20261204T040000Z-2",
        ];
        for name in names {
            fake_snapshot(&parent.join(name));
        }
        let [older, first, second] = names.map(|n| parent.join(n));
        assert_eq!(prune(&parent, 1, &first), 1);
        assert!(!older.exists());
        assert!(first.exists() && second.exists());
        // The second one's own prune then leaves the newest only.
        assert_eq!(prune(&parent, 1, &second), 1);
        assert!(!first.exists() && second.exists());
    }

    #[test]
    fn names_parse_in_order() {
        assert_eq!(
            parse_name("snapshot-20260101T010203Z"),
            Some(("20260101T010203Z".to_string(), 1))
        );
        assert_eq!(
            parse_name("snapshot-20260101T010203Z-12"),
            Some(("20260101T010203Z".to_string(), 12))
        );
        assert_eq!(parse_name("snapshot-20260101T010203Z-"), None);
        assert_eq!(parse_name("snapshot-2026010xT010203Z"), None);
        assert_eq!(parse_name("Snapshot-20260101T010203Z"), None);
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
