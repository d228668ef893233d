//! The generation check: catches a store that sled opens as an older, self-consistent state
//! of itself (a truncated or partly overwritten `db` file makes sled stop its recovery early,
//! and the records and their integrity data are then both simply older).
//!
//! Every change to the records bumps a generation number in the `meta` tree, in the same
//! transaction as the record. After each records flush the generation that flush covered is
//! written to a file of rind's own beside sled's, `rind.check`; sled never rolls that file
//! back. On open, sled's generation may be ahead of the file (a crash between the flush and
//! the file write) but never behind it: behind means acknowledged writes are gone.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use migrations::integrity::entry_hash;

/// Key of the records' generation in the `meta` tree.
pub const GENERATION_KEY: &[u8] = b"records_generation";
/// The check file's name, inside the data dir.
const FILE: &str = "rind.check";

/// What the check file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckFile {
    /// There is none (a store from before it existed, or a snapshot): nothing to compare.
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

/// The generation stored in `value` (a missing value is generation 0).
pub fn decode_generation(value: Option<&[u8]>) -> Option<u64> {
    match value {
        None => Some(0),
        Some(bytes) => Some(u64::from_be_bytes(bytes.try_into().ok()?)),
    }
}

/// Reads the check file of the store in `dir`.
pub fn read(dir: &Path) -> io::Result<CheckFile> {
    let mut bytes = Vec::new();
    match std::fs::File::open(path(dir)) {
        Ok(mut file) => file.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CheckFile::Missing),
        Err(e) => return Err(e),
    };
    let Ok(raw) = <[u8; 16]>::try_from(bytes.as_slice()) else {
        return Ok(CheckFile::Unreadable);
    };
    let (generation, hash) = raw.split_at(8);
    let intact = entry_hash(FILE.as_bytes(), generation).to_be_bytes() == hash;
    Ok(match (intact, <[u8; 8]>::try_from(generation)) {
        (true, Ok(g)) => CheckFile::Flushed(u64::from_be_bytes(g)),
        _ => CheckFile::Unreadable,
    })
}

/// Writes `generation` into the check file of the store in `dir`: sixteen bytes at offset 0
/// of a file that keeps its size, one sector, written whole or not at all.
///
/// Not fsynced: it is written only after sled's flush has made `generation` durable, so
/// whatever a power loss leaves in it, old value or new, is never ahead of sled, and a kill -9
/// keeps the page cache. An fsync here would cost every acknowledged write a second one.
pub fn write(dir: &Path, generation: u64) -> io::Result<()> {
    let g = generation.to_be_bytes();
    let mut bytes = [0; 16];
    let (head, tail) = bytes.split_at_mut(8);
    head.copy_from_slice(&g);
    tail.copy_from_slice(&entry_hash(FILE.as_bytes(), &g).to_be_bytes());
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path(dir))?;
    file.write_all(&bytes)
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
        std::fs::write(path(dir.path()), b"short").expect("write");
        assert_eq!(read(dir.path()).expect("read"), CheckFile::Unreadable);
    }

    #[test]
    fn generations_decode() {
        assert_eq!(decode_generation(None), Some(0));
        assert_eq!(decode_generation(Some(&7u64.to_be_bytes())), Some(7));
        assert_eq!(decode_generation(Some(b"bad")), None);
    }
}
