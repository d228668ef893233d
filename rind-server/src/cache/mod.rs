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
//!   from disk; on start [`Cache::warm`] loads the freshest entries while the server
//!   already answers (a name not loaded yet is a miss and goes upstream), never over a newer
//!   answer and never back over a flush.

mod entry;
pub mod persist;

pub(crate) use entry::skip_name;

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::Name;
use quick_cache::sync::{Cache as QuickCache, GuardResult};
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

/// Entries a warm-up decodes between two looks at what flushes did meanwhile; a flush waits
/// for at most one batch.
const WARM_BATCH: usize = 1_024;

/// The memory map is keyed by a 64-bit keyed hash of the [`Key`] instead of the key bytes: the
/// bytes are already in the entry (its question), so a stored copy would only cost memory.
/// Every read compares the entry's question with the key, so two names with the same hash
/// (vanishingly rare, and not steerable by a client without the random seed) only ever
/// replace each other, never answer for each other.
type Memory = QuickCache<u64, Entry, UnitWeighter, BuildHasherDefault<Prehashed>, Evictions>;

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
        refresh: Option<Entry>,
    },
    /// An expired entry still inside the serve-stale window.
    Stale(Entry),
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

impl Lifecycle<u64, Entry> for Evictions {
    type RequestState = Vec<Entry>;

    fn on_evict(&self, evicted: &mut Self::RequestState, _hash: u64, entry: Entry) {
        evicted.push(entry);
    }
}

/// Names a warm-up leaves out, and deletes on disk: those a blocklist blocks.
pub trait WarmFilter {
    /// Whether any name is left out now; when not, no entry's question is decoded.
    fn active(&self) -> bool;
    /// Whether `name` is left out.
    fn skips(&self, name: &Name) -> bool;
}

/// How a warm-up ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmUp {
    /// Entries it put in memory.
    pub loaded: usize,
    /// Whether it stopped before the end (shutdown, or a flush of everything).
    pub stopped: bool,
}

/// What flushes during a warm-up tell it, so it does not load back what they removed.
#[derive(Debug, Default)]
struct Warming {
    /// From [`Cache::begin_warm`] until [`Cache::warm`] returns.
    active: bool,
    /// Everything was flushed: the warm-up loads nothing more.
    stopped: bool,
    /// Names flushed since the warm-up began.
    flushed: HashSet<Name>,
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
    /// Held by a warm-up while it inserts a batch and by flushes and [`Cache::forget`] while
    /// they remove, so neither can be undone by entries read from disk before it ran.
    warming: Mutex<Warming>,
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
            warming: Mutex::default(),
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
            memory.remove_if(&hash, |e| e.same(&entry));
        }
        self.metrics.cache(CacheEvent::Miss);
        Lookup::Miss
    }

    /// The fresh entry for `request`, if there is one.
    pub fn fresh_entry(&self, request: &Request) -> Option<Entry> {
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
    ) -> Option<Entry> {
        let now = self.clock.now();
        Entry::from_upstream(
            query,
            reply,
            fetched(checking_disabled),
            &self.config.ttl,
            now,
        )
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
    pub fn stale_entry(&self, request: &Request) -> Option<Entry> {
        let now = self.clock.now();
        let (_, entry) = self.get(&request.query, Wants::of(request), now)?;
        (!entry.is_fresh(now) && now < entry.expires_at() + u64::from(self.config.serve_stale))
            .then_some(entry)
    }

    /// The entry that can answer `query` for a client that `wants` so, fresh or not, with its
    /// hash. A CD=1 client takes what the upstream validated when it is fresh, else what was
    /// fetched with CD=1; a CD=0 client never sees the latter.
    fn get(&self, query: &Query, wants: Wants, now: u64) -> Option<(u64, Entry)> {
        let checked = self.get_keyed(&Key::of(query, false), wants);
        if !wants.checking_disabled || checked.as_ref().is_some_and(|(_, e)| e.is_fresh(now)) {
            return checked;
        }
        self.get_keyed(&Key::of(query, true), wants).or(checked)
    }

    fn get_keyed(&self, key: &Key, wants: Wants) -> Option<(u64, Entry)> {
        let hash = self.hasher.hash_one(key.as_bytes());
        let entry = self.memory.as_ref()?.get(&hash)?;
        (entry.has_key(key) && entry.serves(wants.dnssec_ok)).then_some((hash, entry))
    }

    /// Stores the upstream `reply` to `query`, asked with DO=1 and CD as given, when it may
    /// be cached; returns the entry.
    pub fn insert(&self, query: &Query, checking_disabled: bool, reply: &Message) -> Option<Entry> {
        let memory = self.memory.as_ref()?;
        let entry = self.entry_for(query, checking_disabled, reply)?;
        self.remember(memory, entry.clone());
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
    fn remember(&self, memory: &Memory, entry: Entry) {
        let mut evicted = Vec::new();
        let key = entry.key();
        let hash = self.hasher.hash_one(key.as_bytes());
        memory.insert_with_lifecycle(hash, entry.clone(), &mut evicted);
        self.evicted(&key, evicted);
    }

    /// Inserts a warm-up's `entry` unless memory already holds something for its key (an
    /// answer fetched since the start is newer than the disk's); returns whether it did.
    fn remember_if_absent(&self, memory: &Memory, entry: Entry) -> bool {
        let key = entry.key();
        let hash = self.hasher.hash_one(key.as_bytes());
        // A placeholder, not a look then an insert: an upstream answer inserted in between
        // replaces the placeholder, and then this insert fails instead of overwriting it.
        let GuardResult::Guard(guard) = memory.get_value_or_guard(&hash, Some(Duration::ZERO))
        else {
            return false;
        };
        let mut evicted = Vec::new();
        let inserted = guard.insert_with_lifecycle(entry, &mut evicted).is_ok();
        self.evicted(&key, evicted);
        inserted
    }

    /// Counts what an insert of `key` pushed out, and forgets it on disk.
    fn evicted(&self, key: &Key, evicted: Vec<Entry>) {
        for old in evicted {
            let old_key = old.key();
            if old_key == *key {
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
                let mut warming = self.warming();
                warming.stopped |= warming.active;
                memory.clear();
                vec![CacheWrite::Clear]
            }
            Some(name) => {
                let mut warming = self.warming();
                if warming.active {
                    warming.flushed.insert(name.clone());
                }
                let doomed: Vec<(u64, Entry)> = memory
                    .iter()
                    .filter(|(_, e)| e.question().is_some_and(|q| q.name == *name))
                    .collect();
                for (hash, entry) in doomed {
                    memory.remove_if(&hash, |e| e.same(&entry));
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
    /// picks; returns how many memory held. A warm-up running meanwhile must not load such
    /// names afterwards: its [`WarmFilter`] has to skip them from before this call on.
    pub fn forget(&self, doomed: impl Fn(&Name) -> bool) -> usize {
        let Some(memory) = &self.memory else {
            return 0;
        };
        // Held throughout, so a warm-up batch that asked its filter before the caller changed
        // it has been inserted before the sweep below looks.
        let _warming = self.warming();
        // Collected first, as in `flush`: removing while iterating is not safe.
        let picked: Vec<(u64, Entry, Name)> = memory
            .iter()
            .filter_map(|(hash, entry)| {
                let name = entry.question()?.name;
                doomed(&name).then_some((hash, entry, name))
            })
            .collect();
        let dropped = picked.len();
        let mut names = std::collections::HashSet::new();
        for (hash, entry, name) in picked {
            memory.remove_if(&hash, |e| e.same(&entry));
            names.insert(name);
        }
        for name in &names {
            self.queue(CacheWrite::DeleteName(Key::name_prefix(name)));
        }
        dropped
    }

    /// Starts remembering flushes for the warm-up to come, so one that arrives before
    /// [`Cache::warm`] reads the disk is not undone either.
    pub fn begin_warm(&self) {
        *self.warming() = Warming {
            active: true,
            ..Warming::default()
        };
    }

    /// Loads the freshest entries from `store` (dropping expired ones there first) while the
    /// cache already serves, batch by batch, until `stop` says so. Leaves out, and deletes
    /// there, those `filter` skips; never replaces an entry memory already holds, nor loads
    /// what a flush since [`Cache::begin_warm`] removed.
    pub fn warm(
        &self,
        store: &Store,
        filter: &dyn WarmFilter,
        stop: &dyn Fn() -> bool,
    ) -> Result<WarmUp, StoreError> {
        /// Forgets the warm-up's state however it ends, a panic included, so flushes stop
        /// being recorded.
        struct Done<'a>(&'a Cache);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                *self.0.warming() = Warming::default();
            }
        }
        let _done = Done(self);
        match &self.memory {
            Some(memory) => self.load(memory, store, filter, stop),
            None => Ok(WarmUp {
                loaded: 0,
                stopped: false,
            }),
        }
    }

    fn load(
        &self,
        memory: &Memory,
        store: &Store,
        filter: &dyn WarmFilter,
        stop: &dyn Fn() -> bool,
    ) -> Result<WarmUp, StoreError> {
        let now = self.clock.now();
        store.cache_expire(now.saturating_sub(u64::from(self.config.serve_stale)))?;
        let mut loaded = 0;
        let mut unreadable = 0;
        let mut batch = Vec::with_capacity(WARM_BATCH);
        let mut scanned = 0;
        let mut going = true;
        store.cache_scan(now, self.config.capacity, |key, value| {
            match Entry::decode(&value) {
                Some(entry) if entry.key().as_bytes() == key.as_slice() => batch.push(entry),
                _ => {
                    unreadable += 1;
                    self.queue(CacheWrite::Delete(key));
                }
            }
            scanned += 1;
            // Asked per WARM_BATCH entries read, not inserted, so a long run of unreadable
            // ones does not hold up a shutdown either.
            if scanned % WARM_BATCH == 0 {
                going = !stop() && self.load_batch(memory, &mut batch, filter, &mut loaded);
            }
            going
        })?;
        if going {
            going = !stop() && self.load_batch(memory, &mut batch, filter, &mut loaded);
        }
        if unreadable > 0 {
            tracing::warn!(
                unreadable,
                "dropped unreadable cache entries from the store"
            );
        }
        Ok(WarmUp {
            loaded,
            stopped: !going,
        })
    }

    /// Inserts `batch` (emptied either way) unless everything was flushed meanwhile; returns
    /// whether the warm-up goes on.
    fn load_batch(
        &self,
        memory: &Memory,
        batch: &mut Vec<Entry>,
        filter: &dyn WarmFilter,
        loaded: &mut usize,
    ) -> bool {
        let warming = self.warming();
        if warming.stopped {
            batch.clear();
            return false;
        }
        // Asked under the lock: a filter changed since is followed by a `forget`, which waits.
        let filtering = filter.active();
        let by_name = filtering || !warming.flushed.is_empty();
        for entry in batch.drain(..) {
            if by_name {
                if let Some(question) = entry.question() {
                    if warming.flushed.contains(&question.name) {
                        continue;
                    }
                    if filtering && filter.skips(&question.name) {
                        self.queue(CacheWrite::Delete(entry.key().as_bytes().to_vec()));
                        continue;
                    }
                }
            }
            if self.remember_if_absent(memory, entry) {
                *loaded += 1;
            }
        }
        true
    }

    fn warming(&self) -> MutexGuard<'_, Warming> {
        // Its fields stay consistent whatever a panicking holder was doing.
        self.warming.lock().unwrap_or_else(|e| e.into_inner())
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::atomic::AtomicBool;

    use hickory_proto::op::OpCode;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record, RecordType};

    use super::*;

    const NOW: u64 = 1_000_000;

    fn config() -> CacheConfig {
        CacheConfig {
            capacity: 10_000,
            ttl: TtlPolicy {
                min_ttl: 0,
                max_ttl: 86_400,
                max_negative_ttl: 3_600,
            },
            serve_stale: 0,
            prefetch: false,
        }
    }

    fn new_cache() -> Cache {
        let clock = Clock::manual(Arc::new(AtomicU64::new(NOW)));
        Cache::new(config(), clock, None, Arc::new(Metrics::new([])))
    }

    fn question(i: usize) -> Query {
        let name = Name::from_ascii(format!("host{i}.example.")).expect("name");
        Query::query(name, RecordType::A)
    }

    fn reply(query: &Query, last_octet: u8) -> Message {
        let mut reply = Message::response(0, OpCode::Query);
        reply.add_query(query.clone());
        let ip = Ipv4Addr::new(192, 0, 2, last_octet);
        reply.add_answer(Record::from_rdata(query.name.clone(), 300, RData::A(A(ip))));
        reply
    }

    /// A store holding answers for host0 … host{count-1}, each with address 192.0.2.1.
    fn store(dir: &std::path::Path, count: usize) -> Store {
        let store = Store::open(dir).expect("open");
        let writes: Vec<CacheWrite> = (0..count)
            .map(|i| {
                let q = question(i);
                let entry =
                    Entry::from_upstream(&q, &reply(&q, 1), fetched(false), &config().ttl, NOW)
                        .expect("cacheable");
                CacheWrite::Put {
                    key: entry.key().as_bytes().to_vec(),
                    expires_at: entry.expires_at(),
                    value: entry.encode(),
                }
            })
            .collect();
        store.cache_apply(&writes).expect("apply");
        store
    }

    /// The last octet of the cached A record for host{i}, if cached.
    fn cached(cache: &Cache, i: usize) -> Option<u8> {
        let answer = cache.answer(&question(i))?;
        match answer.answers.first()?.data {
            RData::A(A(ip)) => Some(ip.octets()[3]),
            _ => None,
        }
    }

    /// Skips every name once switched on.
    #[derive(Default)]
    struct SkipAll(AtomicBool);

    impl WarmFilter for SkipAll {
        fn active(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }

        fn skips(&self, _: &Name) -> bool {
            true
        }
    }

    fn never() -> bool {
        false
    }

    #[test]
    fn a_warm_up_loads_the_disk_but_not_over_an_answer_fetched_since_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path(), 3);
        let cache = new_cache();
        cache.begin_warm();
        let q = question(1);
        cache.insert(&q, false, &reply(&q, 99));
        let loaded = cache.warm(&store, &SkipAll::default(), &never);
        let expected = WarmUp {
            loaded: 2,
            stopped: false,
        };
        assert_eq!(
            loaded.expect("warm"),
            expected,
            "host1 was in memory already"
        );
        assert_eq!(
            [cached(&cache, 0), cached(&cache, 1), cached(&cache, 2)],
            [Some(1), Some(99), Some(1)],
            "the disk's older host1 replaced the answer fetched during the warm-up"
        );
    }

    #[test]
    fn flushes_since_the_warm_up_began_are_not_undone_by_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        // Without a persist queue the flushes leave the disk alone, so only the warm-up's
        // own bookkeeping keeps the flushed names out. All entries expire together, so the
        // scan goes by key, descending: host0 … host9, the shortest keys, come last, in the
        // third batch, which is full and about to go in when `stop` is asked the third time.
        let count = 3 * WARM_BATCH;
        let store = store(dir.path(), count);

        let cache = new_cache();
        cache.begin_warm();
        let host7 = question(7).name;
        runtime.block_on(cache.flush(Some(&host7))).expect("flush");
        let asked = std::cell::Cell::new(0);
        let host5 = question(5).name;
        let flush_host5 = || {
            asked.set(asked.get() + 1);
            if asked.get() == 3 {
                runtime.block_on(cache.flush(Some(&host5))).expect("flush");
            }
            false
        };
        let loaded = cache.warm(&store, &SkipAll::default(), &flush_host5);
        assert_eq!(asked.get(), 4, "one look per batch and one before the rest");
        assert_eq!(loaded.expect("warm").loaded, count - 2);
        assert_eq!(
            cached(&cache, 7),
            None,
            "flushed before the warm-up read the disk"
        );
        assert_eq!(
            cached(&cache, 5),
            None,
            "flushed while its batch was on the way"
        );
        assert_eq!(cached(&cache, 6), Some(1));
        assert_eq!(cache.len(), count - 2);

        let cache = new_cache();
        cache.begin_warm();
        let asked = std::cell::Cell::new(0);
        let flush_all = || {
            asked.set(asked.get() + 1);
            if asked.get() == 2 {
                runtime.block_on(cache.flush(None)).expect("flush");
            }
            false
        };
        let loaded = cache.warm(&store, &SkipAll::default(), &flush_all);
        assert_eq!(
            loaded.expect("warm"),
            WarmUp {
                loaded: WARM_BATCH,
                stopped: true,
            },
            "only the batch before the flush"
        );
        assert_eq!(
            cache.len(),
            0,
            "a flush of everything during the warm-up was undone"
        );
    }

    #[test]
    fn a_filter_switched_on_during_the_warm_up_keeps_its_names_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path(), 2 * WARM_BATCH);
        let cache = new_cache();
        let filter = SkipAll::default();
        cache.begin_warm();
        // As a blocklist install does: the filter changes, then `forget` sweeps memory.
        let asked = std::cell::Cell::new(0);
        let list_arrives = || {
            asked.set(asked.get() + 1);
            if asked.get() == 2 {
                filter.0.store(true, Ordering::SeqCst);
                cache.forget(|_| true);
            }
            false
        };
        let loaded = cache.warm(&store, &filter, &list_arrives);
        assert_eq!(loaded.expect("warm").loaded, WARM_BATCH);
        assert_eq!(
            cache.len(),
            0,
            "names the filter skips were loaded after it changed"
        );
    }
}
