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

/// fsyncs `dir`, then each of its ancestors up to and including `existing` (from
/// [`nearest_existing`] before `dir` was created), whose entries changed with it.
pub fn sync_created(dir: &Path, existing: &Path) -> io::Result<()> {
    sync_dir(dir)?;
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

/// fsyncs every directory below `dir`; for a tree this process wrote, so all are readable.
pub fn sync_below(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_below(&entry.path())?;
            sync_dir(&entry.path())?;
        }
    }
    Ok(())
}

/// fsyncs `dir` itself, which makes the entries created or renamed in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    match std::fs::File::open(dir)?.sync_all() {
        // Some file systems (FUSE, network mounts) cannot fsync a directory; PostgreSQL
        // ignores the same errors there.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            tracing::debug!(dir = %dir.display(), error = %e, "directory fsync not supported");
            Ok(())
        }
        other => other,
    }
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
        std::fs::create_dir_all(deep.join("blobs").join("x")).expect("create");
        sync_below(&deep).expect("sync below");
        sync_created(&deep, &existing).expect("sync");
        sync_created(&deep, &deep).expect("sync an existing dir");
        let gone = dir.path().join("gone");
        assert!(sync_created(&gone, dir.path()).is_err());
        assert!(sync_below(&gone).is_err());
    }
}
