//! Directory durability. sled fsyncs the files it writes but never a directory, and a file
//! whose contents are on disk is still lost after a power loss if the directory entry naming
//! it is not: the store's `db` file on a fresh data dir, or a whole snapshot.

use std::io;
use std::path::{Path, PathBuf};

/// The nearest of `path` and its ancestors that exists: what creating `path` builds on.
pub fn nearest_existing(path: &Path) -> PathBuf {
    path.ancestors()
        .map(non_empty)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// fsyncs `dir` and every directory below it, then each ancestor of `dir` up to and including
/// `existing` (from [`nearest_existing`] before `dir` was created), whose entries changed.
pub fn sync_created(dir: &Path, existing: &Path) -> io::Result<()> {
    sync_tree(dir)?;
    if non_empty(dir) == existing {
        return Ok(());
    }
    for ancestor in dir.ancestors().skip(1).map(non_empty) {
        sync_dir(&ancestor)?;
        if ancestor == existing {
            break;
        }
    }
    Ok(())
}

fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A relative path's last ancestor is "", which names the working directory.
fn non_empty(path: &Path) -> PathBuf {
    if path.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_existing_ancestor_is_found_for_absolute_and_relative_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a").join("b");
        assert_eq!(nearest_existing(&deep), dir.path());
        assert_eq!(nearest_existing(dir.path()), dir.path());
        assert_eq!(
            nearest_existing(Path::new("no-such-dir-for-rind/x")),
            Path::new(".")
        );
    }

    #[test]
    fn created_directories_sync_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a").join("b");
        let existing = nearest_existing(&deep);
        std::fs::create_dir_all(deep.join("blobs")).expect("create");
        sync_created(&deep, &existing).expect("sync");
        sync_created(&deep, &deep).expect("sync an existing dir");
        let gone = dir.path().join("gone");
        assert!(sync_created(&gone, dir.path()).is_err());
    }
}
