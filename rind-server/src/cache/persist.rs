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
//! and further inserts reach memory only; flushes from the API wait for room and are never
//! dropped.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;

use super::Clock;
use crate::store::cache::CacheWrite;
use crate::store::Store;

/// Writes queued before the hot path starts dropping them.
pub const QUEUE_LEN: usize = 8_192;
/// Longest a write waits in memory before its batch goes to sled.
const BATCH_WINDOW: Duration = Duration::from_millis(250);
/// Most writes in one batch; with [`BATCH_WINDOW`] this paces the disk at 1024 writes/s.
const BATCH_MAX: usize = 256;
/// How often the janitor looks for expired entries on disk.
const JANITOR_PERIOD: Duration = Duration::from_secs(60);

/// The queue the cache writes into.
pub fn queue() -> (mpsc::Sender<CacheWrite>, mpsc::Receiver<CacheWrite>) {
    mpsc::channel(QUEUE_LEN)
}

/// Applies queued writes until `shutdown`, then applies what is still queued and returns.
pub fn spawn_writer(
    store: Store,
    mut writes: mpsc::Receiver<CacheWrite>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                write = writes.recv() => match write {
                    Some(w) => w,
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            };
            let mut batch = vec![first];
            let next_batch = Instant::now() + BATCH_WINDOW;
            while batch.len() < BATCH_MAX {
                match timeout_at(next_batch, writes.recv()).await {
                    Ok(Some(w)) => batch.push(w),
                    _ => break,
                }
            }
            apply(&store, batch).await;
            tokio::select! {
                _ = tokio::time::sleep_until(next_batch) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let mut rest = Vec::new();
        while let Ok(w) = writes.try_recv() {
            rest.push(w);
        }
        if !rest.is_empty() {
            apply(&store, rest).await;
        }
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

async fn apply(store: &Store, batch: Vec<CacheWrite>) {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.cache_apply(&batch)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "writing the cache to disk failed"),
        Err(e) => tracing::error!(error = %e, "cache writer task failed"),
    }
}
