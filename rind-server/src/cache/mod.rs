//! The answer cache: a bounded in-memory map for the hot path, written behind to sled so a
//! restart (clean or `kill -9`) comes back warm.
//!
//! - Memory: `quick_cache` (sharded, S3-FIFO eviction, lock-free reads), at most
//!   `--cache-size` entries for (lower-cased name, type, class). A hit never touches sled.
//! - DNSSEC: every answer is fetched with DO=1 and one entry serves DO=0 and DO=1 clients
//!   alike (an entry keeps a view without DNSSEC records); answers fetched with CD=1 have
//!   keys of their own, which CD=0 clients never look up.
//! - Expiry: absolute wall-clock seconds in each entry, checked on every read; an entry past
//!   its expiry but within `--serve-stale` seconds is kept for RFC 8767 stale answers.
//! - Disk: every insert, eviction and flush is queued to [`persist`], which applies them to
//!   sled in batches off the hot path and flushes each batch, so an answer cached a batch
//!   window (a quarter of a second) before a crash is there after restart; an API flush
//!   waits for its batch, since its 204 promises the disk; a janitor removes expired entries
//!   from disk; on start [`Cache::warm`] loads the freshest entries.

mod entry;
pub mod persist;

pub(crate) use entry::skip_name;

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::Name;
use quick_cache::sync::Cache as QuickCache;
use quick_cache::{DefaultHashBuilder, Lifecycle, UnitWeighter};
use serde::Serialize;

pub use entry::{Entry, Fetched, Key, TtlPolicy, STALE_TTL};
pub use persist::SyncError;

use crate::metrics::{rcode_label, CacheEvent, Metrics};
use crate::request::Request;
use crate::response::Answer;
use crate::store::cache::CacheWrite;
use crate::store::{Store, StoreError};

/// After a failed refresh, a stale entry is served at once for this many seconds (RFC 8767
/// §5 "failure recheck timer") instead of making every client wait for upstream again.
const FAILURE_RECHECK_SECS: u64 = 30;

/// The memory map is keyed by a 64-bit keyed hash of the [`Key`] instead of the key bytes: the
/// bytes are already in the entry (its question), so a stored copy would only cost memory.
/// Every read compares the entry's question with the key, so two names with the same hash
/// (vanishingly rare, and not steerable by a client without the random seed) only ever
/// replace each other, never answer for each other.
type Memory = QuickCache<u64, Arc<Entry>, UnitWeighter, BuildHasherDefault<Prehashed>, Evictions>;

/// Passes a key that is already a hash through unchanged, so it is not hashed twice.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; this keeps the trait complete for anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Settings of the cache, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Most entries kept in memory (0: no caching).
    pub capacity: usize,
    /// TTL clamps.
    pub ttl: TtlPolicy,
    /// Seconds past expiry an entry may be served stale.
    pub serve_stale: u32,
    /// Whether hits on nearly expired entries start a refresh.
    pub prefetch: bool,
}

/// Wall-clock seconds; tests swap in a clock they move by hand.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// A clock that reads a value the test moves by hand.
    pub fn manual(now: Arc<AtomicU64>) -> Clock {
        Clock { manual: Some(now) }
    }

    /// Unix seconds now.
    pub fn now(&self) -> u64 {
        match &self.manual {
            Some(now) => now.load(Ordering::Relaxed),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// A fresh answer, already written for the client.
    Hit {
        /// The reply bytes.
        reply: Vec<u8>,
        /// Its response code.
        rcode: ResponseCode,
        /// The entry, when it is nearly expired and this caller won the right to refresh it.
        refresh: Option<Arc<Entry>>,
    },
    /// An expired entry still inside the serve-stale window.
    Stale(Arc<Entry>),
    /// Nothing usable.
    Miss,
}

/// What a client can be served, from its query's DO and CD bits.
#[derive(Debug, Clone, Copy, Default)]
struct Wants {
    /// DO=1: only entries fetched with DO=1 hold the records it needs.
    dnssec_ok: bool,
    /// CD=1: answers fetched with CD=1 may serve it.
    checking_disabled: bool,
}

impl Wants {
    fn of(request: &Request) -> Wants {
        Wants {
            dnssec_ok: request.dnssec_ok(),
            checking_disabled: request.checking_disabled(),
        }
    }
}

/// Every answer rind stores was asked with DO=1 (see [`crate::upstream`]).
fn fetched(checking_disabled: bool) -> Fetched {
    Fetched {
        dnssec_ok: true,
        checking_disabled,
    }
}

/// One line of `GET /api/v1/cache`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Listed {
    /// Owner name, lower case, fully qualified.
    pub name: String,
    /// Record type.
    #[serde(rename = "type")]
    pub rtype: String,
    /// Response code of the cached answer.
    pub rcode: String,
    /// Seconds left.
    pub ttl: u64,
}

/// Collects what an insert pushed out, so [`Cache::insert`] can tell evictions (counted, and
/// forgotten on disk so the store stays as small as the memory cache) from the replacement of
/// the key it inserted, which quick_cache reports the same way.
#[derive(Clone, Default)]
struct Evictions;

impl Lifecycle<u64, Arc<Entry>> for Evictions {
    type RequestState = Vec<Arc<Entry>>;

    fn on_evict(&self, evicted: &mut Self::RequestState, _hash: u64, entry: Arc<Entry>) {
        evicted.push(entry);
    }
}

/// The cache.
pub struct Cache {
    memory: Option<Memory>,
    /// Seeded at random, so clients cannot choose names that share a hash.
    hasher: DefaultHashBuilder,
    config: CacheConfig,
    clock: Clock,
    persist: Option<persist::Queue>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.len())
            .field("config", &self.config)
            .finish()
    }
}

impl Cache {
    /// A cache with `config`; writes go to `persist` when given.
    pub fn new(
        config: CacheConfig,
        clock: Clock,
        persist: Option<persist::Queue>,
        metrics: Arc<Metrics>,
    ) -> Cache {
        let memory = (config.capacity > 0).then(|| {
            QuickCache::with(
                config.capacity,
                config.capacity as u64,
                UnitWeighter,
                BuildHasherDefault::default(),
                Evictions,
            )
        });
        Cache {
            memory,
            hasher: DefaultHashBuilder::default(),
            config,
            clock,
            persist,
            metrics,
        }
    }

    /// Unix seconds by the cache's clock.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Entries in memory.
    pub fn len(&self) -> usize {
        self.memory.as_ref().map_or(0, |m| m.len())
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks `request` up; a fresh entry comes back as the finished reply.
    pub fn lookup(&self, request: &Request) -> Lookup {
        let Some(memory) = &self.memory else {
            return Lookup::Miss;
        };
        let now = self.clock.now();
        let Some((hash, entry)) = self.get(&request.query, Wants::of(request), now) else {
            self.metrics.cache(CacheEvent::Miss);
            return Lookup::Miss;
        };
        if entry.is_fresh(now) {
            if let Some(reply) = entry.reply(request, now, false) {
                self.metrics.cache(CacheEvent::Hit);
                let rcode = entry.rcode();
                let refresh =
                    (self.config.prefetch && entry.nearly_expired(now) && entry.start_refresh())
                        .then_some(entry);
                if refresh.is_some() {
                    self.metrics.cache(CacheEvent::Prefetch);
                }
                return Lookup::Hit {
                    reply,
                    rcode,
                    refresh,
                };
            }
        } else if now < entry.expires_at() + u64::from(self.config.serve_stale) {
            self.metrics.cache(CacheEvent::Miss);
            return Lookup::Stale(entry);
        } else {
            memory.remove_if(&hash, |e| Arc::ptr_eq(e, &entry));
        }
        self.metrics.cache(CacheEvent::Miss);
        Lookup::Miss
    }

    /// The fresh entry for `request`, if there is one.
    pub fn fresh_entry(&self, request: &Request) -> Option<Arc<Entry>> {
        let now = self.clock.now();
        self.get(&request.query, Wants::of(request), now)
            .map(|(_, entry)| entry)
            .filter(|e| e.is_fresh(now))
    }

    /// The entry `reply` would make, without storing it: for a client that shared another
    /// asker's upstream query and finds that asker's entry already gone (evicted, flushed).
    pub fn entry_for(
        &self,
        query: &Query,
        checking_disabled: bool,
        reply: &Message,
    ) -> Option<Arc<Entry>> {
        let now = self.clock.now();
        Entry::from_upstream(
            query,
            reply,
            fetched(checking_disabled),
            &self.config.ttl,
            now,
        )
        .map(Arc::new)
    }

    /// The fresh cached answer for `query` as records (for the target of a local CNAME).
    pub fn answer(&self, query: &Query) -> Option<Answer> {
        let now = self.clock.now();
        let (_, entry) = self
            .get(query, Wants::default(), now)
            .filter(|(_, e)| e.is_fresh(now))?;
        let answer = entry.answer(now)?;
        self.metrics.cache(CacheEvent::Hit);
        Some(answer)
    }

    /// Whether a stale entry had a failed refresh recently, so it should be served at once.
    pub fn failed_recently(&self, entry: &Entry) -> bool {
        entry.failed_within(self.clock.now(), FAILURE_RECHECK_SECS)
    }

    /// The stale answer to `request` from `entry` (TTL 30, EDE 3 for EDNS clients).
    pub fn stale_reply(&self, entry: &Entry, request: &Request) -> Option<Vec<u8>> {
        let reply = entry.reply(request, self.clock.now(), true)?;
        self.metrics.cache(CacheEvent::StaleServed);
        Some(reply)
    }

    /// The entry for `request` if it is expired but still within the serve-stale window.
    pub fn stale_entry(&self, request: &Request) -> Option<Arc<Entry>> {
        let now = self.clock.now();
        let (_, entry) = self.get(&request.query, Wants::of(request), now)?;
        (!entry.is_fresh(now) && now < entry.expires_at() + u64::from(self.config.serve_stale))
            .then_some(entry)
    }

    /// The entry that can answer `query` for a client that `wants` so, fresh or not, with its
    /// hash. A CD=1 client takes what the upstream validated when it is fresh, else what was
    /// fetched with CD=1; a CD=0 client never sees the latter.
    fn get(&self, query: &Query, wants: Wants, now: u64) -> Option<(u64, Arc<Entry>)> {
        let checked = self.get_keyed(&Key::of(query, false), wants);
        if !wants.checking_disabled || checked.as_ref().is_some_and(|(_, e)| e.is_fresh(now)) {
            return checked;
        }
        self.get_keyed(&Key::of(query, true), wants).or(checked)
    }

    fn get_keyed(&self, key: &Key, wants: Wants) -> Option<(u64, Arc<Entry>)> {
        let hash = self.hasher.hash_one(key.as_bytes());
        let entry = self.memory.as_ref()?.get(&hash)?;
        (entry.has_key(key) && entry.serves(wants.dnssec_ok)).then_some((hash, entry))
    }

    /// Stores the upstream `reply` to `query`, asked with DO=1 and CD as given, when it may
    /// be cached; returns the entry.
    pub fn insert(
        &self,
        query: &Query,
        checking_disabled: bool,
        reply: &Message,
    ) -> Option<Arc<Entry>> {
        let memory = self.memory.as_ref()?;
        let entry = self.entry_for(query, checking_disabled, reply)?;
        self.remember(memory, Arc::clone(&entry));
        // Queued after the memory insert, so it lands after any eviction that insert caused.
        self.queue(CacheWrite::Put {
            key: entry.key().as_bytes().to_vec(),
            expires_at: entry.expires_at(),
            value: entry.encode(),
        });
        Some(entry)
    }

    /// Inserts into memory; what that evicts (not the key's own older entry) is counted and
    /// forgotten on disk.
    fn remember(&self, memory: &Memory, entry: Arc<Entry>) {
        let mut evicted = Vec::new();
        let key = entry.key();
        let hash = self.hasher.hash_one(key.as_bytes());
        memory.insert_with_lifecycle(hash, Arc::clone(&entry), &mut evicted);
        for old in evicted {
            let old_key = old.key();
            if old_key == key {
                continue;
            }
            self.metrics.cache(CacheEvent::Eviction);
            self.queue(CacheWrite::Evict {
                key: old_key.as_bytes().to_vec(),
                expires_at: old.expires_at(),
            });
        }
    }

    /// Fresh entries, optionally only those for `name`.
    pub fn list(&self, name: Option<&Name>) -> Vec<Listed> {
        let Some(memory) = &self.memory else {
            return Vec::new();
        };
        let now = self.clock.now();
        let mut out: Vec<Listed> = memory
            .iter()
            .filter(|(_, entry)| entry.is_fresh(now))
            .filter_map(|(_, entry)| {
                let q = entry.question()?;
                if name.is_some_and(|n| *n != q.name) {
                    return None;
                }
                Some(Listed {
                    name: q.name.to_string(),
                    rtype: q.query_type.to_string(),
                    rcode: rcode_label(entry.rcode()).to_string(),
                    ttl: entry.expires_at().saturating_sub(now),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.name, &a.rtype).cmp(&(&b.name, &b.rtype)));
        out
    }

    /// Forgets every entry, or every entry for `name`, in memory and then on disk; returns
    /// once the disk has it too, so a crash cannot bring the flushed answers back. An answer
    /// cached while the flush runs may outlive it, in memory or on disk: it is a new answer.
    pub async fn flush(&self, name: Option<&Name>) -> Result<(), SyncError> {
        let Some(memory) = &self.memory else {
            return Ok(());
        };
        let writes = match name {
            None => {
                memory.clear();
                vec![CacheWrite::Clear]
            }
            Some(name) => {
                let doomed: Vec<(u64, Arc<Entry>)> = memory
                    .iter()
                    .filter(|(_, e)| e.question().is_some_and(|q| q.name == *name))
                    .collect();
                for (hash, entry) in doomed {
                    memory.remove_if(&hash, |e| Arc::ptr_eq(e, &entry));
                }
                // By name, not by the keys found above: the disk may hold entries memory
                // does not (an eviction dropped with a full queue, or more than a warm start
                // loaded).
                vec![CacheWrite::DeleteName(Key::name_prefix(name))]
            }
        };
        match &self.persist {
            Some(persist) => persist.write_synced(writes).await,
            None => Ok(()),
        }
    }

    /// Drops, in memory and then on disk (write-behind), every answer whose name `doomed`
    /// picks; returns how many memory held.
    pub fn forget(&self, doomed: impl Fn(&Name) -> bool) -> usize {
        let Some(memory) = &self.memory else {
            return 0;
        };
        // Collected first, as in `flush`: removing while iterating is not safe.
        let picked: Vec<(u64, Arc<Entry>, Name)> = memory
            .iter()
            .filter_map(|(hash, entry)| {
                let name = entry.question()?.name;
                doomed(&name).then_some((hash, entry, name))
            })
            .collect();
        let dropped = picked.len();
        let mut names = std::collections::HashSet::new();
        for (hash, entry, name) in picked {
            memory.remove_if(&hash, |e| Arc::ptr_eq(e, &entry));
            names.insert(name);
        }
        for name in &names {
            self.queue(CacheWrite::DeleteName(Key::name_prefix(name)));
        }
        dropped
    }

    /// Loads the freshest entries from `store` (dropping expired ones there first), leaving
    /// out, and deleting there, those whose name `skip` picks (when given: without it no
    /// entry's question is decoded). Returns how many were loaded.
    pub fn warm(
        &self,
        store: &Store,
        skip: Option<&dyn Fn(&Name) -> bool>,
    ) -> Result<usize, StoreError> {
        let Some(memory) = &self.memory else {
            return Ok(0);
        };
        let now = self.clock.now();
        store.cache_expire(now.saturating_sub(u64::from(self.config.serve_stale)))?;
        let mut loaded = 0;
        let mut unreadable = 0;
        for (key, value) in store.cache_load(now, self.config.capacity)? {
            match Entry::decode(&value) {
                Some(entry) if entry.key().as_bytes() == key.as_slice() => {
                    let skipped =
                        skip.is_some_and(|skip| entry.question().is_some_and(|q| skip(&q.name)));
                    if skipped {
                        self.queue(CacheWrite::Delete(key));
                        continue;
                    }
                    self.remember(memory, Arc::new(entry));
                    loaded += 1;
                }
                _ => {
                    unreadable += 1;
                    self.queue(CacheWrite::Delete(key));
                }
            }
        }
        if unreadable > 0 {
            tracing::warn!(
                unreadable,
                "dropped unreadable cache entries from the store"
            );
        }
        Ok(loaded)
    }

    fn queue(&self, write: CacheWrite) {
        if let Some(persist) = &self.persist {
            // The disk copy is best effort: a full queue costs a warm start, never an answer.
            if !persist.try_write(write) {
                self.metrics.cache(CacheEvent::DiskWriteDropped);
            }
        }
    }
}
