//! Schema migrations for rind's sled store.
//!
//! The store's schema version lives in the `meta` tree under [`VERSION_KEY`] as a big-endian
//! `u32`. [`migrate`] runs the steps from the stored version up to [`SCHEMA_VERSION`] in
//! order, writing the new version after each step, so a crash between steps resumes where it
//! stopped; every step is idempotent, so a crash inside one is repaired by running it again.
//! A store newer than this binary is refused: an old binary must not touch data it does not
//! understand.
//!
//! [`integrity`] is here rather than in the server because step 2 computes it for stores
//! written before it existed, and the server must compute it the same way.

pub mod integrity;

use sled::Db;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 4;
/// Tree holding store-wide metadata.
pub const META_TREE: &str = "meta";
/// Key of the schema version in [`META_TREE`].
pub const VERSION_KEY: &[u8] = b"schema_version";
/// Tree of the zones: apex → settings and serial.
pub const ZONES_TREE: &str = "zones";
/// Tree of the zones' change journal (IXFR): apex, 0, serial → the change that led to it.
pub const JOURNAL_TREE: &str = "zone_journal";
/// Tree of the secondary zones' data: apex, 0, chunk number → records as transferred.
pub const SECONDARY_TREE: &str = "secondary_zones";
/// Tree of the blocklists: id → the list's settings and fetch state.
pub const BLOCKLISTS_TREE: &str = "blocklists";
/// Tree of the blocklists' rules: id, 0, chunk number → rules, one a line.
pub const BLOCKLIST_RULES_TREE: &str = "blocklist_rules";
/// Tree of the allowlist: domain → nothing.
pub const ALLOWLIST_TREE: &str = "allowlist";

/// One step: brings a store from version `n` to `n + 1` (`n` is its index in [`STEPS`]).
type Step = fn(&Db) -> sled::Result<()>;

/// The steps, in order; `STEPS.len()` equals [`SCHEMA_VERSION`].
const STEPS: [Step; SCHEMA_VERSION as usize] = [v0_to_v1, v1_to_v2, v2_to_v3, v3_to_v4];

/// What went wrong while migrating.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The store was written by a newer rind.
    #[error("the store's schema version {found} is newer than this rind-server knows ({known}); use a newer rind-server")]
    TooNew {
        /// Version found in the store.
        found: u32,
        /// Newest version this build knows.
        known: u32,
    },
    /// The stored version is not a 4-byte integer.
    #[error("the store's schema version is unreadable ({0} bytes); the store is damaged")]
    Unreadable(usize),
    /// sled failed.
    #[error("store error during migration: {0}")]
    Sled(#[from] sled::Error),
}

/// The schema version stored in `db` (0 for a new, empty store).
pub fn version(db: &Db) -> Result<u32, MigrationError> {
    let meta = db.open_tree(META_TREE)?;
    match meta.get(VERSION_KEY)? {
        None => Ok(0),
        Some(bytes) => {
            let raw: [u8; 4] = bytes
                .as_ref()
                .try_into()
                .map_err(|_| MigrationError::Unreadable(bytes.len()))?;
            Ok(u32::from_be_bytes(raw))
        }
    }
}

/// Brings `db` to [`SCHEMA_VERSION`]; returns the version it had before. Flushes when it
/// changed anything.
pub fn migrate(db: &Db) -> Result<u32, MigrationError> {
    let start = version(db)?;
    if start > SCHEMA_VERSION {
        return Err(MigrationError::TooNew {
            found: start,
            known: SCHEMA_VERSION,
        });
    }
    let meta = db.open_tree(META_TREE)?;
    for (from, step) in STEPS.iter().enumerate().skip(start as usize) {
        step(db)?;
        let to = from as u32 + 1;
        meta.insert(VERSION_KEY, &to.to_be_bytes())?;
        db.flush()?;
    }
    Ok(start)
}

/// Version 1: the trees of the first schema exist.
fn v0_to_v1(db: &Db) -> sled::Result<()> {
    for tree in ["records", "cache", "cache_expiry"] {
        db.open_tree(tree)?;
    }
    Ok(())
}

/// Version 2: the records tree's count and digest are kept in [`META_TREE`], computed here
/// from the records as they are.
fn v1_to_v2(db: &Db) -> sled::Result<()> {
    let records = db.open_tree(integrity::RECORDS_TREE)?;
    let meta = db.open_tree(META_TREE)?;
    integrity::Integrity::compute(&records)?.store(&meta)?;
    Ok(())
}

/// Version 3: zones. A rind from before zones must not open the store: it would change
/// records under a zone without moving its serial, and secondaries would miss the change.
fn v2_to_v3(db: &Db) -> sled::Result<()> {
    for tree in [ZONES_TREE, JOURNAL_TREE, SECONDARY_TREE] {
        db.open_tree(tree)?;
    }
    Ok(())
}

/// Version 4: blocklists and the allowlist. A rind from before them must not open the store:
/// it would forward the names the operator asked to block.
fn v3_to_v4(db: &Db) -> sled::Result<()> {
    for tree in [BLOCKLISTS_TREE, BLOCKLIST_RULES_TREE, ALLOWLIST_TREE] {
        db.open_tree(tree)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> Db {
        sled::Config::new().path(dir).open().expect("open store")
    }

    #[test]
    fn new_store_is_brought_to_the_current_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        assert_eq!(migrate(&db).expect("migrate"), 0);
        assert_eq!(version(&db).expect("version"), SCHEMA_VERSION);
        assert!(db.tree_names().iter().any(|n| n.as_ref() == b"records"));
        // Running again is a no-op.
        assert_eq!(migrate(&db).expect("migrate"), SCHEMA_VERSION);
    }

    #[test]
    fn a_version_1_store_gets_the_integrity_of_its_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        let records = db.open_tree(integrity::RECORDS_TREE).expect("tree");
        for i in 0..50 {
            records
                .insert(format!("id{i}"), format!("{{\"n\":{i}}}").as_bytes())
                .expect("insert");
        }
        db.open_tree(META_TREE)
            .expect("meta")
            .insert(VERSION_KEY, &1u32.to_be_bytes())
            .expect("insert");
        assert_eq!(migrate(&db).expect("migrate"), 1);
        let meta = db.open_tree(META_TREE).expect("meta");
        let bytes = meta
            .get(integrity::INTEGRITY_KEY)
            .expect("read")
            .expect("no integrity data after the migration");
        let stored = integrity::Integrity::decode(&bytes).expect("integrity data decodes");
        assert_eq!(stored.count, 50);
        assert_eq!(
            stored,
            integrity::Integrity::compute(&records).expect("compute")
        );
        records.remove("id7").expect("remove");
        assert_ne!(
            stored,
            integrity::Integrity::compute(&records).expect("compute")
        );
    }

    #[test]
    fn newer_store_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        db.open_tree(META_TREE)
            .expect("meta")
            .insert(VERSION_KEY, &(SCHEMA_VERSION + 1).to_be_bytes())
            .expect("insert");
        let err = migrate(&db).expect_err("too new");
        assert!(matches!(err, MigrationError::TooNew { .. }));
        assert!(err.to_string().contains("newer"));
    }

    #[test]
    fn damaged_version_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        db.open_tree(META_TREE)
            .expect("meta")
            .insert(VERSION_KEY, b"x".as_slice())
            .expect("insert");
        assert!(matches!(migrate(&db), Err(MigrationError::Unreadable(1))));
    }
}
