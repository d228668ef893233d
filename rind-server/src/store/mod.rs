//! The store: the only code that touches sled.
//!
//! One sled database per data directory, opened with an explicit cache size (sled's default
//! of 1 GiB is far more than rind needs) and brought to the current schema by the
//! `migrations` crate before anything is served.
//!
//! - [`records`]: the local records tree and the group-committed flush behind every write;
//! - [`snapshot`]: consistent copies of the whole store;
//! - [`dirs`]: the directory fsyncs sled leaves out.

mod dirs;
pub mod records;
pub mod snapshot;

pub mod cache;

use std::path::{Path, PathBuf};

use migrations::MigrationError;

/// sled's page cache: the hot data lives in rind's own memory structures, and sled only
/// reads at start (records, warm cache), so a small cache costs nothing on the query path.
const SLED_CACHE_BYTES: u64 = 8 << 20;

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error("data dir {} is locked by another rind-server; stop it or use another --data-dir", .0.display())]
    Locked(PathBuf),
    /// sled could not open the directory.
    #[error("cannot open data dir {}: {source}", .path.display())]
    Open {
        /// The data directory.
        path: PathBuf,
        /// What sled said.
        source: sled::Error,
    },
    /// The schema could not be brought up to date.
    #[error("data dir {}: {source}", .path.display())]
    Migrate {
        /// The data directory.
        path: PathBuf,
        /// What the migration said.
        source: MigrationError,
    },
    /// The directories holding the store could not be fsynced.
    #[error("cannot sync data dir {} to disk: {source}", .path.display())]
    SyncDir {
        /// The data directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// A read, write or flush failed.
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
}

/// The open sled database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
}

impl Store {
    /// Opens (creating when needed) the store in `dir` and migrates it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let existing = dirs::nearest_existing(dir);
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(SLED_CACHE_BYTES)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|source| {
                if is_lock_error(&source) {
                    StoreError::Locked(dir.to_path_buf())
                } else {
                    StoreError::Open {
                        path: dir.to_path_buf(),
                        source,
                    }
                }
            })?;
        // Only what sled made: anything else in the data dir (a root-owned lost+found on a
        // mount of its own) may not even be readable.
        dirs::sync_created(&dir.join("blobs"), &existing).map_err(|source| {
            StoreError::SyncDir {
                path: dir.to_path_buf(),
                source,
            }
        })?;
        let from = migrations::migrate(&db).map_err(|source| StoreError::Migrate {
            path: dir.to_path_buf(),
            source,
        })?;
        if from != migrations::SCHEMA_VERSION {
            tracing::info!(
                from,
                to = migrations::SCHEMA_VERSION,
                "store schema migrated"
            );
        }
        Ok(Store { db })
    }

    /// Writes every buffered change to disk and fsyncs; blocking, so call it off the runtime.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

/// sled 0.34.7 reports a held lock only as an I/O error with this message (src/config.rs,
/// `try_lock`); the version is pinned, and a unit test below holds it to that.
fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_reports_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Store::open(dir.path()).expect("first open");
        let second = Store::open(dir.path()).expect_err("second open must fail");
        assert!(matches!(second, StoreError::Locked(_)), "{second}");
        assert!(second.to_string().contains("locked"));
        drop(first);
    }
}
