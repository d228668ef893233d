//! Write-behind for the cache: a queue of [`CacheWrite`]s applied to sled in batches by one
//! task, and a janitor that removes expired entries from disk.
//!
//! The hot path only does a `try_send`; sled work happens in `spawn_blocking`, at most one
//! batch at a time, so a slow disk delays the warm-start copy and never an answer.
//!
//! The disk copy is paced: at most `BATCH_MAX` writes every `BATCH_WINDOW`. sled's CPU
//! and memory grow with its write rate (measured with a flood of unique names for 4 minutes:
//! 42 MiB RSS with no disk copy, ~150 MiB at 1024 writes/s, ~400 MiB at 4096 writes/s), and a
//! home resolver's cache churns far below this pace. Beyond it the queue fills
//! and further inserts reach memory only.
//!
//! Flushes from the API are different: their 204 promises the disk. They wait for room, go
//! through the same queue (so no put queued before them lands after them), end the batch
//! they fall in, and get the outcome of its sled flush back; while one waits, the writer
//! skips its pacing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;

use super::Clock;
use crate::store::cache::CacheWrite;
use crate::store::{Store, StoreError};

/// Writes queued before the hot path starts dropping them.
pub const QUEUE_LEN: usize = 8_192;
/// Longest a write waits in memory before its batch goes to sled.
const BATCH_WINDOW: Duration = Duration::from_millis(250);
/// Most writes in one batch; with [`BATCH_WINDOW`] this paces the disk at 1024 writes/s.
const BATCH_MAX: usize = 256;
/// How often the janitor looks for expired entries on disk.
const JANITOR_PERIOD: Duration = Duration::from_secs(60);

/// Why a synced write is not known to be on disk.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// sled refused the batch or its flush.
    #[error("writing the cache to disk failed: {0}")]
    Store(#[from] StoreError),
    /// The blocking task that ran the batch died.
    #[error("the cache writer task failed: {0}")]
    Task(#[from] JoinError),
    /// The writer has stopped (shutdown), so the write was never applied.
    #[error("the cache writer has stopped")]
    Stopped,
}

/// One item of the writer's queue.
#[derive(Debug)]
enum Job {
    /// Best effort: applied with the next batch, or lost with a full queue or a crash.
    Write(CacheWrite),
    /// Applied and flushed before `done` hears back; ends the batch it falls in.
    Synced {
        /// The writes, kept together so no batch boundary falls between them.
        writes: Vec<CacheWrite>,
        /// Gets the outcome of the batch's sled flush.
        done: oneshot::Sender<Result<(), SyncError>>,
    },
}

/// What the two ends share besides the channel.
#[derive(Debug, Default)]
struct Syncs {
    /// Synced jobs sent and not yet applied; the writer does not pace while there are any.
    waiting: AtomicUsize,
    /// Wakes the writer from its pacing sleep when a synced job is sent.
    sent: Notify,
}

/// The cache's end of the writer's queue.
#[derive(Debug, Clone)]
pub struct Queue {
    jobs: mpsc::Sender<Job>,
    syncs: Arc<Syncs>,
}

/// The writer's end of the queue.
#[derive(Debug)]
pub struct Receiver {
    jobs: mpsc::Receiver<Job>,
    syncs: Arc<Syncs>,
}

/// The queue the cache writes into, and the end [`spawn_writer`] reads.
pub fn queue() -> (Queue, Receiver) {
    let (tx, rx) = mpsc::channel(QUEUE_LEN);
    let syncs = Arc::new(Syncs::default());
    (
        Queue {
            jobs: tx,
            syncs: Arc::clone(&syncs),
        },
        Receiver { jobs: rx, syncs },
    )
}

impl Queue {
    /// Queues `write` unless the queue is full; returns whether it was queued.
    pub fn try_write(&self, write: CacheWrite) -> bool {
        self.jobs.try_send(Job::Write(write)).is_ok()
    }

    /// Queues `writes`, waiting for room, and returns once they are on disk.
    ///
    /// The work runs in a task of its own: an HTTP client that hangs up drops this future,
    /// and that must not leave the writes half done (the memory side is already flushed) or
    /// the waiting count raised (the writer would stop pacing for good).
    pub async fn write_synced(&self, writes: Vec<CacheWrite>) -> Result<(), SyncError> {
        let queue = self.clone();
        tokio::spawn(async move { queue.send_synced(writes).await }).await?
    }

    async fn send_synced(&self, writes: Vec<CacheWrite>) -> Result<(), SyncError> {
        let (done, outcome) = oneshot::channel();
        self.syncs.waiting.fetch_add(1, Ordering::SeqCst);
        if self.jobs.send(Job::Synced { writes, done }).await.is_err() {
            self.syncs.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(SyncError::Stopped);
        }
        self.syncs.sent.notify_one();
        outcome.await.unwrap_or(Err(SyncError::Stopped))
    }
}

/// Writes collected for one trip to sled.
#[derive(Default)]
struct Batch {
    writes: Vec<CacheWrite>,
    done: Option<oneshot::Sender<Result<(), SyncError>>>,
}

impl Batch {
    /// Adds `job`; returns true when the batch must go now (full, or a synced job).
    fn push(&mut self, job: Job, syncs: &Syncs) -> bool {
        match job {
            Job::Write(w) => {
                self.writes.push(w);
                self.writes.len() >= BATCH_MAX
            }
            Job::Synced { writes, done } => {
                syncs.waiting.fetch_sub(1, Ordering::SeqCst);
                self.writes.extend(writes);
                self.done = Some(done);
                true
            }
        }
    }

    /// Applies the writes and flushes; a synced job hears the outcome, others a log line.
    async fn apply(self, store: &Store) {
        let Batch { writes, done } = self;
        let outcome = if writes.is_empty() {
            Ok(())
        } else {
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.cache_apply(&writes)).await {
                Ok(result) => result.map_err(SyncError::from),
                Err(join) => Err(SyncError::from(join)),
            }
        };
        match done {
            // The API logs and reports the error; an asker that went away needs nothing.
            Some(done) => {
                let _ = done.send(outcome);
            }
            None => {
                if let Err(e) = outcome {
                    tracing::error!(error = %e, "writing the cache to disk failed");
                }
            }
        }
    }
}

/// Applies queued writes until `shutdown`, then applies what is still queued and returns.
pub fn spawn_writer(store: Store, queue: Receiver, shutdown: CancellationToken) -> JoinHandle<()> {
    let Receiver { mut jobs, syncs } = queue;
    tokio::spawn(async move {
        loop {
            let mut job = tokio::select! {
                job = jobs.recv() => match job {
                    Some(j) => j,
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            };
            let mut batch = Batch::default();
            let next_batch = Instant::now() + BATCH_WINDOW;
            while !batch.push(job, &syncs) {
                match timeout_at(next_batch, jobs.recv()).await {
                    Ok(Some(next)) => job = next,
                    _ => break,
                }
            }
            batch.apply(&store).await;
            if syncs.waiting.load(Ordering::SeqCst) > 0 {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next_batch) => {}
                _ = syncs.sent.notified() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        // Shutdown: the rest without pacing.
        let mut batch = Batch::default();
        while let Ok(job) = jobs.try_recv() {
            if batch.push(job, &syncs) {
                std::mem::take(&mut batch).apply(&store).await;
            }
        }
        batch.apply(&store).await;
    })
}

/// Removes entries expired more than `keep_stale` seconds ago, now and every minute.
pub fn spawn_janitor(
    store: Store,
    clock: Clock,
    keep_stale: u64,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(JANITOR_PERIOD);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let before = clock.now().saturating_sub(keep_stale);
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.cache_expire(before)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(removed)) => {
                    tracing::debug!(removed, "expired cache entries removed from disk")
                }
                Ok(Err(e)) => tracing::error!(error = %e, "cache janitor failed"),
                Err(e) => tracing::error!(error = %e, "cache janitor task failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::cache::test_writes;

    fn put(i: usize) -> CacheWrite {
        test_writes::put(format!("k{i}").as_bytes(), u64::MAX / 2)
    }

    /// Queues puts of k0, k1, ... k(n-1) without waiting; each must find room.
    fn fill(queue: &Queue, n: usize) {
        for i in 0..n {
            assert!(queue.try_write(put(i)), "queue full at {i}");
        }
    }

    /// A store in a temporary directory, its queue, and the writer once started.
    struct Rig {
        store: Store,
        queue: Queue,
        receiver: Option<Receiver>,
        stop: CancellationToken,
        writer: Option<JoinHandle<()>>,
        _dir: tempfile::TempDir,
    }

    impl Rig {
        fn new() -> Rig {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path()).expect("open");
            let (queue, receiver) = queue();
            Rig {
                store,
                queue,
                receiver: Some(receiver),
                stop: CancellationToken::new(),
                writer: None,
                _dir: dir,
            }
        }

        fn start_writer(&mut self) {
            let receiver = self.receiver.take().expect("writer started once");
            let writer = spawn_writer(self.store.clone(), receiver, self.stop.clone());
            self.writer = Some(writer);
        }

        async fn stop_writer(&mut self) {
            self.stop.cancel();
            let writer = self.writer.take().expect("writer started");
            writer.await.expect("writer");
        }
    }

    /// Three batches' worth of puts: paced, they would take two batch windows.
    const BACKLOG: usize = 2 * BATCH_MAX + 88;

    // The clock is paused and only moves when every task waits on a timer, so the elapsed
    // time below is the writer's pacing sleeps and nothing else.
    #[tokio::test(start_paused = true)]
    async fn a_synced_write_returns_with_it_and_all_queued_before_it_on_disk_unpaced() {
        let mut rig = Rig::new();
        rig.start_writer();
        let (queue, store) = (&rig.queue, &rig.store);

        fill(queue, BACKLOG);
        let asked = Instant::now();
        queue
            .write_synced(vec![CacheWrite::Delete(b"k0".to_vec())])
            .await
            .expect("synced write");
        assert!(
            asked.elapsed() < BATCH_WINDOW,
            "a waiting sync was paced: {:?}",
            asked.elapsed()
        );
        assert_eq!(store.cache_len().expect("len"), BACKLOG - 1);

        rig.stop_writer().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_sync_sent_while_the_writer_paces_does_not_wait_for_the_pace() {
        let mut rig = Rig::new();
        rig.start_writer();
        let (queue, store) = (&rig.queue, &rig.store);

        // A full batch goes at once, and the writer then sleeps out the window.
        fill(queue, BATCH_MAX);
        // The clock stands still while the batch is applied, so this wakes inside that sleep.
        tokio::time::sleep(BATCH_WINDOW / 2).await;
        let asked = Instant::now();
        queue
            .write_synced(vec![CacheWrite::Delete(b"k0".to_vec())])
            .await
            .expect("synced write");
        assert_eq!(
            asked.elapsed(),
            Duration::ZERO,
            "the sync waited for the pacing sleep"
        );
        assert_eq!(store.cache_len().expect("len"), BATCH_MAX - 1);

        rig.stop_writer().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_synced_write_whose_caller_gives_up_still_lands_and_is_counted_out() {
        let mut rig = Rig::new();
        let (queue, store) = (rig.queue.clone(), rig.store.clone());
        fill(&queue, QUEUE_LEN);
        // No writer yet: the queue stays full and the caller gives up (a client hanging up).
        let gave_up = tokio::time::timeout(
            Duration::from_secs(1),
            queue.write_synced(vec![CacheWrite::Delete(b"k0".to_vec())]),
        )
        .await;
        assert!(gave_up.is_err(), "the synced write did not wait for room");

        rig.start_writer();
        // Bounded: the paced backlog takes QUEUE_LEN / BATCH_MAX windows.
        for _ in 0..2 * QUEUE_LEN / BATCH_MAX {
            if store.cache_len().expect("len") == QUEUE_LEN - 1 {
                break;
            }
            tokio::time::sleep(BATCH_WINDOW).await;
        }
        assert_eq!(store.cache_len().expect("len"), QUEUE_LEN - 1);
        assert_eq!(queue.syncs.waiting.load(Ordering::SeqCst), 0);

        rig.stop_writer().await;
    }

    #[tokio::test]
    async fn a_synced_write_after_the_writer_stopped_is_an_error() {
        let mut rig = Rig::new();
        rig.start_writer();
        rig.stop_writer().await;

        let outcome = rig.queue.write_synced(vec![CacheWrite::Clear]).await;
        assert!(
            matches!(outcome, Err(SyncError::Stopped)),
            "got {outcome:?}"
        );
    }
}
