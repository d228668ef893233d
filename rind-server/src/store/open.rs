//! Opening the store at start-up, where sled is at its least trustworthy.
//!
//! On a damaged data dir sled 0.34.7 may spin forever (an overwritten file head), panic, or
//! open with data missing. So the open runs on a thread of its own: the server waits for it
//! with a deadline (and for SIGTERM), can abandon it when it is stuck, and a panic on it is
//! caught and reported as damage instead of killing the process with a backtrace. The server
//! loads its local records on that thread too ([`crate::Opened::open`]): the load is the pass
//! that checks them against their integrity data, and reads every page of their tree.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use super::{one_line, snapshot, Store, StoreError};

/// How long the open may go without progress before it counts as stuck on damage. Each step
/// (sled's own open, the migration, every few thousand records loaded and checked, each zone)
/// gets this long, so a big store is never mistaken for a stuck one: 200 000 records take
/// about 4 s in all in a debug build (the `store_faults` tests). A store sled spins or blocks
/// on is reported within 15 s of start, as the contract asks.
pub const OPEN_DEADLINE: Duration = Duration::from_secs(10);

/// How often the waiter looks at the opener's progress.
const PROGRESS_POLL: Duration = Duration::from_millis(100);

/// Name of the opening thread: its panics are reported as damage, not printed.
pub(crate) const OPENER_THREAD: &str = "rind-store-open";

/// What a damaged store can be restored from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// Not looked up (the store was opened without a snapshot directory).
    Unknown,
    /// The snapshot directory holds no complete snapshot.
    Nothing {
        /// The snapshot directory.
        snapshot_dir: PathBuf,
    },
    /// The newest complete snapshot.
    Newest {
        /// The snapshot.
        snapshot: PathBuf,
        /// The damaged data directory.
        data_dir: PathBuf,
    },
}

impl Restore {
    /// The newest snapshot under `snapshot_dir` to restore `data_dir` from, if any.
    pub fn find(data_dir: &Path, snapshot_dir: &Path) -> Restore {
        match snapshot::list(snapshot_dir).pop() {
            Some(newest) => Restore::Newest {
                snapshot: newest.path,
                data_dir: data_dir.to_path_buf(),
            },
            None => Restore::Nothing {
                snapshot_dir: snapshot_dir.to_path_buf(),
            },
        }
    }
}

impl fmt::Display for Restore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restore::Unknown => write!(f, "restore it from a snapshot"),
            Restore::Nothing { snapshot_dir } => write!(
                f,
                "there is no snapshot under {} to restore from; move the data dir aside to start with an empty store",
                snapshot_dir.display()
            ),
            Restore::Newest { snapshot, data_dir } => write!(
                f,
                "restore from the newest snapshot, {}: move {} aside and copy the snapshot in its place",
                snapshot.display(),
                data_dir.display()
            ),
        }
    }
}

/// `reopen` ([`Store::reopen_unchanged`] at start, [`Store::reopen_once`] at stop) under the
/// same guard as the first open: sled's recovery runs again, and may spin or panic on damage
/// the first open got past.
pub async fn reopen_with_deadline(
    store: &Store,
    snapshot_dir: &Path,
    deadline: Duration,
    reopen: fn(&Store) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let reopening = store.clone();
    guarded(store.dir(), snapshot_dir, deadline, move |_| {
        reopen(&reopening)
    })
    .await
}

/// Runs `open` on a thread of its own and waits for it until `progress` (which `open` adds
/// to as it gets on) stands still for `deadline`; a stall, or a panic in sled's code, is
/// damage, whose error names the newest snapshot under `snapshot_dir`. Any other panic is a
/// bug in rind, not in the store: it goes on, with its message and location printed. A stuck
/// thread is left behind: the caller exits.
pub async fn guarded<T: Send + 'static>(
    dir: &Path,
    snapshot_dir: &Path,
    deadline: Duration,
    open: impl FnOnce(&AtomicU64) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    quiet_opener_panics();
    let sled_panics = SLED_PANICS.load(Ordering::SeqCst);
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let progress = Arc::new(AtomicU64::new(0));
    let reporting = Arc::clone(&progress);
    let spawned = std::thread::Builder::new()
        .name(OPENER_THREAD.to_string())
        .spawn(move || {
            let opened =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| open(&reporting)));
            // The server may have stopped waiting; then what it opened is simply dropped.
            let _ = tx.send(opened);
        });
    if let Err(source) = spawned {
        return Err(StoreError::Open {
            path: dir.to_path_buf(),
            source: sled::Error::Io(source),
        });
    }
    let mut seen = 0;
    let mut last_change = Instant::now();
    let outcome = loop {
        match tokio::time::timeout(PROGRESS_POLL, &mut rx).await {
            Ok(outcome) => break Some(outcome),
            Err(_) => {
                let now = progress.load(Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    last_change = Instant::now();
                } else if last_change.elapsed() >= deadline {
                    break None;
                }
            }
        }
    };
    let reason = match outcome {
        Some(Ok(Ok(Ok(opened)))) => return Ok(opened),
        Some(Ok(Ok(Err(StoreError::Damaged { reason, .. })))) => reason,
        Some(Ok(Ok(Err(other)))) => return Err(other),
        Some(Ok(Err(panic))) if SLED_PANICS.load(Ordering::SeqCst) != sled_panics => {
            format!("sled failed reading it ({})", panic_text(&*panic))
        }
        Some(Ok(Err(panic))) => std::panic::resume_unwind(panic),
        Some(Err(_)) => "the thread opening it stopped without an answer".to_string(),
        None => format!(
            "sled got stuck opening it (no progress for {} s)",
            deadline.as_secs()
        ),
    };
    Err(StoreError::Damaged {
        path: dir.to_path_buf(),
        reason,
        restore: Restore::find(dir, snapshot_dir),
    })
}

/// `e`, from reading the store once it is open (loading the records or the cache at start), as
/// the start-up refusal: a read sled fails is damage ([`super::after_open`]) and, like damage
/// found while opening, names the snapshot under `snapshot_dir` to restore from.
pub fn refusal(e: StoreError, data_dir: &Path, snapshot_dir: &Path) -> StoreError {
    let e = match e {
        StoreError::Sled(source) => super::after_open(data_dir, source),
        other => other,
    };
    match e {
        StoreError::Damaged {
            path,
            reason,
            restore: Restore::Unknown,
        } => StoreError::Damaged {
            path,
            reason,
            restore: Restore::find(data_dir, snapshot_dir),
        },
        other => other,
    }
}

/// Panics raised in sled's code on an opening thread so far. sled panics on some data it
/// cannot read, so such a panic is damage; a panic elsewhere (rind's own load) is a bug, and
/// reporting it as damage would send the operator to restore a snapshot that has the same
/// records. One count for the process: the server opens one store at a time.
static SLED_PANICS: AtomicU64 = AtomicU64::new(0);

/// Keeps the default panic message (several lines and a backtrace hint) off stderr for sled's
/// panics on an opening thread, which become one line of [`StoreError::Damaged`], and counts
/// them in [`SLED_PANICS`].
fn quiet_opener_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let opener = std::thread::current().name() == Some(OPENER_THREAD);
            if opener && info.location().is_some_and(|at| in_sled(at.file())) {
                SLED_PANICS.fetch_add(1, Ordering::SeqCst);
            } else {
                previous(info);
            }
        }));
    });
}

/// Whether `file`, where a panic was raised, is in sled's source (`.../sled-0.34.7/src/...`).
fn in_sled(file: &str) -> bool {
    file.split(['/', '\\']).any(|part| {
        part.strip_prefix("sled-")
            .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// The message a panic was raised with.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    one_line(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The panic tests share [`SLED_PANICS`]: one at a time.
    static PANICS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// `guarded` around `open` in a data dir with a snapshot: its error, or the panic it went on
    /// with.
    async fn guard(open: fn() -> Result<(), StoreError>) -> Result<Result<(), StoreError>, String> {
        let _one = PANICS.lock().await;
        let root = tempfile::tempdir().expect("tempdir");
        let data = root.path().join("data");
        let snapshots = root.path().join("snapshots");
        snapshot::tests::fake_snapshot(&snapshots.join("snapshot-20261204T030000Z"));
        let guarding = tokio::spawn(async move {
            guarded(&data, &snapshots, OPEN_DEADLINE, move |_| open()).await
        });
        guarding.await.map_err(|e| {
            assert!(e.is_panic(), "{e}");
            panic_text(&*e.into_panic())
        })
    }

    #[tokio::test]
    async fn a_panic_in_sled_is_damage_and_any_other_a_bug() {
        let from_sled = guard(|| {
            // sled asserts the range inside its own code.
            let _ = sled::IVec::from(&b"ab"[..]).subslice(0, 5);
            Ok(())
        })
        .await
        .expect("no panic goes on from sled's")
        .expect_err("damage");
        assert!(
            matches!(&from_sled, StoreError::Damaged { reason, .. } if reason.starts_with("sled failed reading it")),
            "{from_sled:?}"
        );
        assert!(
            from_sled.to_string().contains("snapshot-20261204T030000Z"),
            "{from_sled}"
        );
        let bug = guard(|| panic!("a bug in the load"))
            .await
            .expect_err("the panic goes on");
        assert_eq!(bug, "a bug in the load");
    }

    #[test]
    fn only_sleds_own_files_count_as_sled() {
        assert!(in_sled(
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/sled-0.34.7/src/ivec.rs"
        ));
        assert!(!in_sled("rind-server/src/records/mod.rs"));
        assert!(!in_sled("/home/me/sled-notes/rind/src/lib.rs"));
    }

    #[test]
    fn a_read_failing_after_the_open_is_refused_as_damage_with_the_snapshot() {
        let root = tempfile::tempdir().expect("tempdir");
        let data = root.path().join("data");
        let snapshots = root.path().join("snapshots");
        let newest = snapshots.join("snapshot-20261204T030000Z");
        snapshot::tests::fake_snapshot(&newest);
        let e = refusal(
            StoreError::Sled(sled::Error::Io(std::io::Error::other("Input/output error"))),
            &data,
            &snapshots,
        );
        let line = e.to_string();
        assert!(
            line.contains(&format!("{} is damaged", data.display())),
            "{line}"
        );
        assert!(line.contains(&newest.display().to_string()), "{line}");
        // A store written by a newer rind is not damaged.
        let newer = refusal(
            StoreError::Migrate {
                path: data.clone(),
                source: migrations::MigrationError::TooNew { found: 9, known: 2 },
            },
            &data,
            &snapshots,
        );
        assert!(!newer.to_string().contains("damaged"), "{newer}");
    }
}
