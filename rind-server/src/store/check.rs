//! The generation check: catches a store that sled opens as an older, self-consistent state
//! of itself (a truncated or partly overwritten `db` file makes sled stop its recovery early,
//! and the records and their integrity data are then both simply older).
//!
//! Every change to the records bumps a generation number kept with the records' integrity
//! data (the [`Ledger`]). After each records flush the generation that flush covered is
//! written to a file of rind's own beside sled's, `rind.check`; sled never rolls that file
//! back. On open, sled's generation may be ahead of the file (a crash between the flush and
//! the file write) but never behind it: behind means acknowledged writes are gone.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub use migrations::integrity::INTEGRITY_KEY;
use migrations::integrity::{entry_hash, Integrity};

/// The check file's name, inside the data dir.
const FILE: &str = "rind.check";
/// Where a new check file is written before it is renamed to [`FILE`].
const NEW_FILE: &str = "rind.check.new";
/// The check file's size: a generation and its hash.
const LEN: usize = 16;

/// What the server keeps under [`INTEGRITY_KEY`] in the `meta` tree: the records' integrity
/// now, as it was before the last change, and the number of changes so far.
///
/// A change is two plain sled inserts, the ledger first and the record second (a transaction
/// would wait for any flush in progress, and so halve the acknowledged writes per second).
/// A crash between the two leaves the ledger one change ahead of the records: that matches
/// `previous`, and is accepted while the check file shows the change was never flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    /// The records with every change so far.
    pub current: Integrity,
    /// The records before the last change.
    pub previous: Integrity,
    /// Changes so far.
    pub generation: u64,
}

impl Ledger {
    /// A ledger with no change pending.
    pub fn settled(integrity: Integrity, generation: u64) -> Ledger {
        Ledger {
            current: integrity,
            previous: integrity,
            generation,
        }
    }

    /// The stored form: current, previous, generation.
    pub fn encode(&self) -> [u8; 40] {
        let mut out = [0; 40];
        let (current, rest) = out.split_at_mut(16);
        let (previous, generation) = rest.split_at_mut(16);
        current.copy_from_slice(&self.current.encode());
        previous.copy_from_slice(&self.previous.encode());
        generation.copy_from_slice(&self.generation.to_be_bytes());
        out
    }

    /// Reads [`Ledger::encode`]'s form, or the bare integrity the schema migration writes (a
    /// store with no change since).
    pub fn decode(bytes: &[u8]) -> Option<Ledger> {
        if bytes.len() == 16 {
            return Integrity::decode(bytes).map(|i| Ledger::settled(i, 0));
        }
        let raw: &[u8; 40] = bytes.try_into().ok()?;
        let (current, rest) = raw.split_at(16);
        let (previous, generation) = rest.split_at(16);
        Some(Ledger {
            current: Integrity::decode(current)?,
            previous: Integrity::decode(previous)?,
            generation: u64::from_be_bytes(generation.try_into().ok()?),
        })
    }
}

/// What the meta tree holds under [`INTEGRITY_KEY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerState {
    /// A ledger.
    Found(Ledger),
    /// None: a store from before the integrity data, or one that lost it.
    Missing,
    /// Bytes that are not a ledger.
    Unreadable,
}

impl LedgerState {
    /// The ledger, when one was found.
    pub fn found(self) -> Option<Ledger> {
        match self {
            LedgerState::Found(ledger) => Some(ledger),
            LedgerState::Missing | LedgerState::Unreadable => None,
        }
    }
}

/// Reads the ledger in `meta`, the one reader of [`INTEGRITY_KEY`].
pub fn load_ledger(meta: &sled::Tree) -> sled::Result<LedgerState> {
    Ok(match meta.get(INTEGRITY_KEY)? {
        None => LedgerState::Missing,
        Some(bytes) => Ledger::decode(&bytes).map_or(LedgerState::Unreadable, LedgerState::Found),
    })
}

/// What the check file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckFile {
    /// There is none (a store from before it existed, or a snapshot), or only the remains of
    /// its creation cut short (see [`read`]): nothing to compare.
    Missing,
    /// It does not hold what rind writes.
    Unreadable,
    /// The generation the last records flush covered.
    Flushed(u64),
}

/// The path of the check file of the store in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Reads the check file of the store in `dir`.
///
/// A file shorter than [`LEN`] counts as [`CheckFile::Missing`], not as damage: once it has
/// its full size, every write is [`LEN`] bytes at offset 0 and never shortens it, so a short
/// one can only be a creation cut short (a power loss while an earlier build, which
/// created it without an fsync, made it), which never promised anything. The open then checks the
/// records against their ledger alone, as for a store from before the file existed, and
/// creates the file again. Any other content is damage.
pub fn read(dir: &Path) -> io::Result<CheckFile> {
    let mut bytes = Vec::new();
    match std::fs::File::open(path(dir)) {
        Ok(mut file) => file.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CheckFile::Missing),
        Err(e) => return Err(e),
    };
    if bytes.len() < LEN {
        tracing::warn!(
            bytes = bytes.len(),
            "{} was never written whole (its creation was cut short); not compared",
            path(dir).display()
        );
        return Ok(CheckFile::Missing);
    }
    let Ok(raw) = <[u8; LEN]>::try_from(bytes.as_slice()) else {
        return Ok(CheckFile::Unreadable);
    };
    let (generation, hash) = raw.split_at(8);
    let intact = entry_hash(FILE.as_bytes(), generation).to_be_bytes() == hash;
    Ok(match (intact, <[u8; 8]>::try_from(generation)) {
        (true, Ok(g)) => CheckFile::Flushed(u64::from_be_bytes(g)),
        _ => CheckFile::Unreadable,
    })
}

/// Writes `generation` into the check file of the store in `dir`.
///
/// An existing file of full size is overwritten in place: sixteen bytes at offset 0 of a file
/// that keeps its size, one sector, written whole or not at all. Not fsynced: it is written
/// only after sled's flush has made `generation` durable, so whatever a power loss leaves in
/// it, old value or new, is never ahead of sled, and a kill -9 keeps the page cache. An fsync
/// here would cost every acknowledged write a second one.
///
/// A new file (or the remains of a creation cut short) is written under another name,
/// fsynced, renamed into place and its directory fsynced: once, on a store's first start or a
/// restored snapshot's, so that the name never stands for a file without its content.
pub fn write(dir: &Path, generation: u64) -> io::Result<()> {
    let g = generation.to_be_bytes();
    let mut bytes = [0; LEN];
    let (head, tail) = bytes.split_at_mut(8);
    head.copy_from_slice(&g);
    tail.copy_from_slice(&entry_hash(FILE.as_bytes(), &g).to_be_bytes());
    match OpenOptions::new().write(true).open(path(dir)) {
        Ok(mut file) if file.metadata()?.len() == LEN as u64 => file.write_all(&bytes),
        Ok(_) => create(dir, &bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(dir, &bytes),
        Err(e) => Err(e),
    }
}

/// Puts a check file holding `bytes` in place durably (see [`write`]).
fn create(dir: &Path, bytes: &[u8; LEN]) -> io::Result<()> {
    let new = dir.join(NEW_FILE);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&new)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&new, path(dir))?;
    super::dirs::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_damage_is_noticed() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path()).expect("read"), CheckFile::Missing);
        write(dir.path(), 41).expect("write");
        write(dir.path(), 42).expect("write");
        assert_eq!(read(dir.path()).expect("read"), CheckFile::Flushed(42));
        let mut bytes = std::fs::read(path(dir.path())).expect("read");
        bytes[3] ^= 1;
        std::fs::write(path(dir.path()), &bytes).expect("write");
        assert_eq!(read(dir.path()).expect("read"), CheckFile::Unreadable);
        std::fs::write(path(dir.path()), [7; LEN + 1]).expect("write");
        assert_eq!(read(dir.path()).expect("read"), CheckFile::Unreadable);
    }

    #[test]
    fn a_creation_cut_short_is_no_damage_and_is_redone_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        for left in [&b""[..], b"short"] {
            std::fs::write(path(dir.path()), left).expect("write");
            assert_eq!(read(dir.path()).expect("read"), CheckFile::Missing);
            write(dir.path(), 7).expect("write");
            assert_eq!(read(dir.path()).expect("read"), CheckFile::Flushed(7));
            assert!(!dir.path().join(NEW_FILE).exists());
        }
    }

    #[test]
    fn ledgers_round_trip_and_read_the_migration_form() {
        let mut current = Integrity::default();
        current.add(b"k", b"v");
        let ledger = Ledger {
            current,
            previous: Integrity::default(),
            generation: 9,
        };
        assert_eq!(Ledger::decode(&ledger.encode()), Some(ledger));
        assert_eq!(
            Ledger::decode(&current.encode()),
            Some(Ledger::settled(current, 0))
        );
        assert_eq!(Ledger::decode(b"odd length"), None);
    }
}
