//! Blocklists and the allowlist: names answered `0.0.0.0`/`::` (or NXDOMAIN) instead of
//! being forwarded, for ad, tracker and malware blocking.
//!
//! - [`parse`]: a list's text (hosts, plain domains, AdBlock `||domain^`) → rules;
//! - [`set`]: the compact in-memory set the query path looks names up in;
//! - [`fetch`]: lists by URL, conditional, capped, with a timeout;
//! - the lists and the allowlist are kept in the store ([`crate::store::blocklists`]), so
//!   blocking works after a restart without the network.
//!
//! The query path asks [`Blocking::answer`] after local records and special-use names and
//! before the cache, so a blocked name is never forwarded nor served from the cache, and the
//! operator's own records still win. The set is built off the query path (on the blocking
//! pool) whenever a list changes, and swapped in whole; with no list, the check is one
//! atomic load.

pub mod fetch;
pub mod parse;
pub mod set;

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, WarmFilter};
use crate::metrics::Metrics;
use crate::response::Answer;
use crate::store::blocklists::{BlocklistStore, StoredList};
use crate::store::{Store, StoreError};
use fetch::{FetchError, Fetched, Fetcher, Validators};
use set::{DomainSet, EXACT, SUBTREE};

/// TTL of a blocked answer (and of the SOA that lets clients cache a blocked denial): short,
/// so taking a name off a list shows soon.
pub const BLOCK_TTL: u32 = 60;

/// Longest wait between two looks at which lists are due for a refresh.
const REFRESH_TICK: Duration = Duration::from_secs(60);

/// How a blocked name is answered (`--block-mode`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockMode {
    /// A `0.0.0.0`, AAAA `::`, other types NODATA: clients fail at once, without retrying
    /// other resolvers (Pi-hole's and Blocky's default).
    Null,
    /// NXDOMAIN for every type.
    Nxdomain,
}

/// Why a blocking change was refused.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The request is not usable; says why.
    #[error("{0}")]
    Invalid(String),
    /// No list with this id, or no such allowlist entry.
    #[error("{0}")]
    NotFound(String),
    /// The list or allowlist entry is there already.
    #[error("{0}")]
    Conflict(String),
    /// The list could not be fetched; a copy kept stays in use.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The store refused the write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the query path looks names up in.
#[derive(Debug, Default)]
struct Matcher {
    set: Arc<DomainSet>,
    /// Allowlisted names (lower-case, no trailing dot): they and the names below them are
    /// never blocked.
    allowed: HashSet<Box<[u8]>>,
}

/// The blocklists, the allowlist, and the answer for a blocked name.
///
/// The cache never holds a blocked name, so a cache hit needs no blocking check: each new
/// matcher drops the cached answers it blocks ([`Blocking::install`]), and an answer cached
/// while one was installed is checked again ([`Blocking::changed_since`]).
#[derive(Debug)]
pub struct Blocking {
    mode: BlockMode,
    /// Whether any rule is loaded: the query path reads only this when none is.
    active: AtomicBool,
    current: RwLock<Arc<Matcher>>,
    /// Bumped by every matcher installed.
    generation: AtomicU64,
    cache: Arc<Cache>,
    lists: BlocklistStore,
    /// Made at the first fetch: most servers never fetch a list, and the system's CA roots
    /// (some 150 files read and parsed) and the HTTP client would only cost time at start
    /// and memory.
    fetcher: tokio::sync::OnceCell<Result<Fetcher, FetchError>>,
    /// Held by every change, so two never interleave their store writes and rebuilds.
    changes: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
}

impl Blocking {
    /// Loads the lists and the allowlist from `store` and builds the set (blocking: a
    /// million names take about a second).
    pub fn load(
        store: &Store,
        mode: BlockMode,
        cache: Arc<Cache>,
        metrics: Arc<Metrics>,
    ) -> Result<Blocking, StoreError> {
        let lists = BlocklistStore::open(store)?;
        let set = build(&lists)?;
        let allowed = allowed(&lists.allowlist()?);
        let blocking = Blocking {
            mode,
            active: AtomicBool::new(false),
            current: RwLock::new(Arc::default()),
            generation: AtomicU64::new(0),
            cache,
            lists,
            fetcher: tokio::sync::OnceCell::new(),
            changes: tokio::sync::Mutex::new(()),
            metrics,
        };
        blocking.install(Matcher {
            set: Arc::new(set),
            allowed,
        });
        Ok(blocking)
    }

    /// The answer for a blocked name; `None` when `query`'s name is not blocked.
    pub fn answer(&self, query: &Query) -> Option<Answer> {
        if !self.blocks(&query.name) {
            return None;
        }
        self.metrics.blocked();
        let soa = || {
            let data = SOA::new(
                fixed_name("localhost."),
                fixed_name("nobody.invalid."),
                1,
                3600,
                1200,
                604_800,
                BLOCK_TTL,
            );
            Record::from_rdata(query.name.clone(), BLOCK_TTL, RData::SOA(data))
        };
        let data = match (self.mode, query.query_type) {
            (BlockMode::Nxdomain, _) => {
                return Some(Answer {
                    rcode: ResponseCode::NXDomain,
                    authorities: vec![soa()],
                    ..Answer::default()
                })
            }
            (BlockMode::Null, RecordType::A) => RData::A(A(Ipv4Addr::UNSPECIFIED)),
            (BlockMode::Null, RecordType::AAAA) => RData::AAAA(AAAA(Ipv6Addr::UNSPECIFIED)),
            (BlockMode::Null, _) => {
                return Some(Answer {
                    authorities: vec![soa()],
                    ..Answer::default()
                })
            }
        };
        Some(Answer {
            answers: vec![Record::from_rdata(query.name.clone(), BLOCK_TTL, data)],
            ..Answer::default()
        })
    }

    /// Whether `name` is blocked now.
    pub fn blocks(&self, name: &Name) -> bool {
        if !self.active.load(Ordering::Relaxed) {
            return false;
        }
        // The name as the set holds names: lower-case, dotted, no trailing dot.
        let mut text = [0u8; 256];
        let mut starts = [0usize; 128];
        let (mut len, mut labels) = (0, 0);
        for label in name.iter() {
            if len > 0 {
                if let Some(dot) = text.get_mut(len) {
                    *dot = b'.';
                }
                len += 1;
            }
            if let Some(start) = starts.get_mut(labels) {
                *start = len;
            }
            labels += 1;
            let Some(into) = text.get_mut(len..len + label.len()) else {
                return false;
            };
            for (to, from) in into.iter_mut().zip(label) {
                *to = from.to_ascii_lowercase();
            }
            len += label.len();
        }
        let (Some(text), Some(starts)) = (text.get(..len), starts.get(..labels)) else {
            return false;
        };
        let matcher = self.current.read().unwrap_or_else(PoisonError::into_inner);
        if !matcher.set.blocks(text, starts) {
            return false;
        }
        let allowed = starts
            .iter()
            .filter_map(|&s| text.get(s..))
            .any(|suffix| matcher.allowed.contains(suffix));
        !allowed
    }

    /// Every list, in id order.
    pub fn lists(&self) -> Result<Vec<StoredList>, BlockError> {
        let mut lists = self.lists.lists()?;
        lists.sort_by_key(|l| l.id.parse::<u64>().unwrap_or(u64::MAX));
        Ok(lists)
    }

    /// Fetches the list at `url` and adds it; on disk when this returns.
    pub async fn add_url(&self, url: &str, name: Option<String>) -> Result<StoredList, BlockError> {
        let url = fetch::check_url(url)?.to_string();
        if self.lists()?.iter().any(|l| l.url.as_deref() == Some(&url)) {
            return Err(BlockError::Conflict(format!(
                "the list at {url} is there already"
            )));
        }
        let Fetched::New {
            text,
            etag,
            last_modified,
        } = self
            .fetcher()
            .await?
            .fetch(&url, &Validators::default())
            .await?
        else {
            return Err(BlockError::Invalid(format!(
                "{url} answered 304 Not Modified to a request that asked for the whole list"
            )));
        };
        let parsed = parse_off_path(text).await?;
        if parsed.count == 0 {
            return Err(BlockError::Invalid(format!(
                "{url} holds no domain rind understands ({} lines skipped); is it a blocklist?",
                parsed.skipped
            )));
        }
        let now = unix_now();
        let list = StoredList {
            id: String::new(),
            name: name.unwrap_or_else(|| url.clone()),
            url: Some(url.clone()),
            domains: parsed.count,
            skipped: parsed.skipped,
            etag,
            last_modified,
            updated: now,
            checked: Some(now),
            error: None,
        };
        self.add(list, parsed.rules, Some(&url)).await
    }

    /// Adds a list given inline, one rule an entry; on disk when this returns.
    pub async fn add_inline(
        &self,
        name: String,
        domains: Vec<String>,
    ) -> Result<StoredList, BlockError> {
        let mut parsed = parse::Parsed::default();
        for entry in &domains {
            parsed.line(entry);
        }
        if parsed.count == 0 {
            return Err(BlockError::Invalid(format!(
                "\"domains\" holds no domain ({} entries skipped); give names such as ads.example.com or ||ads.example.com^",
                parsed.skipped
            )));
        }
        let list = StoredList {
            id: String::new(),
            name,
            url: None,
            domains: parsed.count,
            skipped: parsed.skipped,
            etag: None,
            last_modified: None,
            updated: unix_now(),
            checked: None,
            error: None,
        };
        self.add(list, parsed.rules, None).await
    }

    async fn add(
        &self,
        mut list: StoredList,
        rules: String,
        url: Option<&str>,
    ) -> Result<StoredList, BlockError> {
        let _change = self.changes.lock().await;
        // Checked again under the lock: another request may have added it meanwhile.
        if url.is_some() && self.lists()?.iter().any(|l| l.url.as_deref() == url) {
            return Err(BlockError::Conflict(format!(
                "the list at {} is there already",
                url.unwrap_or_default()
            )));
        }
        list.id = self.lists.new_id()?;
        self.lists.put(&list, Some(&rules))?;
        drop(rules);
        self.lists.flush().await?;
        self.rebuild().await?;
        tracing::info!(id = %list.id, name = %list.name, domains = list.domains, skipped = list.skipped, "blocklist added");
        Ok(list)
    }

    /// Removes the list `id`; its names are answered again when this returns.
    pub async fn remove(&self, id: &str) -> Result<(), BlockError> {
        let _change = self.changes.lock().await;
        self.find(id)?;
        self.lists.remove(id)?;
        self.lists.flush().await?;
        self.rebuild().await?;
        tracing::info!(id, "blocklist removed");
        Ok(())
    }

    /// Fetches the list `id` again. A failed fetch keeps the copy there is, records why on the
    /// list, and is returned as the error.
    pub async fn refresh(&self, id: &str) -> Result<StoredList, BlockError> {
        let list = self.find(id)?;
        let Some(url) = list.url.clone() else {
            return Err(BlockError::Invalid(format!(
                "list {id} was given inline; there is nothing to fetch"
            )));
        };
        let kept = Validators {
            etag: list.etag.clone(),
            last_modified: list.last_modified.clone(),
        };
        let outcome = match self.fetcher().await {
            Ok(fetcher) => fetcher.fetch(&url, &kept).await,
            Err(e) => Err(e),
        };
        let new = match outcome {
            Ok(Fetched::New {
                text,
                etag,
                last_modified,
            }) => {
                let parsed = parse_off_path(text).await?;
                if parsed.count == 0 {
                    Err(FetchError::Request {
                        url: url.clone(),
                        reason: format!(
                            "it now holds no domain ({} lines skipped); the copy kept stays in use",
                            parsed.skipped
                        ),
                    })
                } else {
                    Ok(Some((parsed, etag, last_modified)))
                }
            }
            Ok(Fetched::Unchanged) => Ok(None),
            Err(e) => Err(e),
        };
        let _change = self.changes.lock().await;
        // Deleted while it was being fetched: nothing to record.
        let mut list = self.find(id)?;
        let now = unix_now();
        list.checked = Some(now);
        match new {
            Ok(Some((parsed, etag, last_modified))) => {
                list.domains = parsed.count;
                list.skipped = parsed.skipped;
                list.etag = etag;
                list.last_modified = last_modified;
                list.updated = now;
                list.error = None;
                self.lists.put(&list, Some(&parsed.rules))?;
                drop(parsed);
                self.lists.flush().await?;
                self.rebuild().await?;
                tracing::info!(id, domains = list.domains, "blocklist refreshed");
                Ok(list)
            }
            Ok(None) => {
                list.error = None;
                self.lists.put(&list, None)?;
                self.lists.flush().await?;
                tracing::debug!(id, "blocklist unchanged");
                Ok(list)
            }
            Err(e) => {
                list.error = Some(e.to_string());
                self.lists.put(&list, None)?;
                self.lists.flush().await?;
                tracing::warn!(id, error = %e, "blocklist refresh failed; the copy kept stays in use");
                Err(e.into())
            }
        }
    }

    /// Refreshes every fetched list whose last try is `interval` or more ago.
    pub async fn refresh_due(&self, interval: Duration) {
        let Ok(lists) = self.lists() else {
            return;
        };
        let now = unix_now();
        for list in lists {
            let last = list.checked.unwrap_or(list.updated);
            if list.url.is_some() && now.saturating_sub(last) >= interval.as_secs() {
                // A failure is logged and recorded on the list by refresh itself.
                let _ = self.refresh(&list.id).await;
            }
        }
    }

    /// The allowlist, sorted.
    pub fn allowlist(&self) -> Result<Vec<String>, BlockError> {
        Ok(self.lists.allowlist()?)
    }

    /// Adds `domain` (and the names below it) to the allowlist; returns it as stored.
    pub async fn allow(&self, domain: &str) -> Result<String, BlockError> {
        let domain = allow_name(domain)?;
        let _change = self.changes.lock().await;
        if self.lists.allowlist()?.contains(&domain) {
            return Err(BlockError::Conflict(format!(
                "{domain} is on the allowlist already"
            )));
        }
        self.lists.allow(&domain)?;
        self.lists.flush().await?;
        self.reload_allowlist()?;
        Ok(domain)
    }

    /// Takes `domain` off the allowlist.
    pub async fn disallow(&self, domain: &str) -> Result<(), BlockError> {
        let domain = allow_name(domain)?;
        let _change = self.changes.lock().await;
        if !self.lists.allowlist()?.contains(&domain) {
            return Err(BlockError::NotFound(format!(
                "{domain} is not on the allowlist"
            )));
        }
        self.lists.disallow(&domain)?;
        self.lists.flush().await?;
        self.reload_allowlist()?;
        Ok(())
    }

    fn find(&self, id: &str) -> Result<StoredList, BlockError> {
        self.lists
            .lists()?
            .into_iter()
            .find(|l| l.id == id)
            .ok_or_else(|| BlockError::NotFound(format!("no blocklist with id {id}")))
    }

    /// The fetcher, made on the blocking pool the first time (it reads files).
    async fn fetcher(&self) -> Result<&Fetcher, FetchError> {
        self.fetcher
            .get_or_init(|| async {
                tokio::task::spawn_blocking(Fetcher::new)
                    .await
                    .unwrap_or_else(|join| {
                        Err(FetchError::Request {
                            url: String::new(),
                            reason: format!("the HTTP client cannot start: {join}"),
                        })
                    })
            })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Builds the set from the store on the blocking pool and swaps it in.
    async fn rebuild(&self) -> Result<(), StoreError> {
        let lists = self.lists.clone();
        let set = match tokio::task::spawn_blocking(move || build(&lists)).await {
            Ok(set) => set?,
            Err(join) => {
                return Err(StoreError::Unwritable(format!(
                    "building the blocklist set failed: {join}"
                )))
            }
        };
        let allowed = allowed(&self.lists.allowlist()?);
        self.install(Matcher {
            set: Arc::new(set),
            allowed,
        });
        Ok(())
    }

    fn reload_allowlist(&self) -> Result<(), StoreError> {
        let set = Arc::clone(&self.current().set);
        let allowed = allowed(&self.lists.allowlist()?);
        self.install(Matcher { set, allowed });
        Ok(())
    }

    fn current(&self) -> Arc<Matcher> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Names in the blocklists now.
    pub fn names(&self) -> usize {
        self.current().set.len()
    }

    /// The generation to pass to [`Blocking::changed_since`]: read before the name is checked.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a matcher was installed since `seen`; called right after an answer is cached.
    /// With the fences here and in [`Blocking::install`], either the installer's sweep of the
    /// cache saw that answer, or this sees the new generation (the store-buffer pattern).
    pub fn changed_since(&self, seen: u64) -> bool {
        fence(Ordering::SeqCst);
        self.generation.load(Ordering::Relaxed) != seen
    }

    /// Drops `name`'s cached answers if it is blocked now. For answers cached with no
    /// generation read before the name was checked (prefetches, local CNAME targets): with
    /// the fences, either the installer's sweep saw the answer or this sees the new matcher.
    pub fn uncache_if_blocked(&self, name: &Name) {
        fence(Ordering::SeqCst);
        if self.blocks(name) {
            self.cache.forget(|cached| cached == name);
        }
    }

    /// Swaps `matcher` in, then drops every cached answer it blocks.
    fn install(&self, matcher: Matcher) {
        self.metrics.blocklist_domains(matcher.set.len());
        let active = !matcher.set.is_empty();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(matcher);
        self.active.store(active, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
        fence(Ordering::SeqCst);
        if active {
            let dropped = self.cache.forget(|name| self.blocks(name));
            if dropped > 0 {
                tracing::info!(dropped, "cached answers for names now blocked dropped");
            }
        }
    }
}

/// A warm start leaves out the names blocked now, so the cache never answers for them.
impl WarmFilter for Blocking {
    fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    fn skips(&self, name: &Name) -> bool {
        self.blocks(name)
    }
}

/// Refreshes the fetched lists every `interval` (checked at least every [`REFRESH_TICK`], and
/// at once on start, so lists that fell due while the server was down are fetched first).
pub fn spawn_refresher(blocking: Arc<Blocking>, interval: Duration, shutdown: CancellationToken) {
    let tick = interval.clamp(Duration::from_secs(1), REFRESH_TICK);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = blocking.refresh_due(interval) => {}
                _ = shutdown.cancelled() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    });
}

/// The set of every stored list's rules.
fn build(lists: &BlocklistStore) -> Result<DomainSet, StoreError> {
    let started = std::time::Instant::now();
    let stored = lists.lists()?;
    let total = stored.iter().map(|l| l.domains).sum();
    let mut set = DomainSet::with_capacity(total);
    for list in &stored {
        lists.rules(&list.id, |chunk| {
            for (name, subtree) in chunk.lines().filter_map(parse::rule) {
                let flags = if subtree { SUBTREE } else { EXACT };
                set.insert(name.as_bytes(), flags);
            }
        })?;
    }
    set.shrink_to_fit();
    if !stored.is_empty() {
        tracing::info!(
            lists = stored.len(),
            names = set.len(),
            mib = set.heap_bytes() >> 20,
            took_ms = started.elapsed().as_millis(),
            "blocklists loaded"
        );
    }
    Ok(set)
}

/// Parses a fetched list on the blocking pool: a million lines take a while.
async fn parse_off_path(text: String) -> Result<parse::Parsed, BlockError> {
    tokio::task::spawn_blocking(move || parse::parse(&text))
        .await
        .map_err(|join| {
            BlockError::Store(StoreError::Unwritable(format!(
                "parsing the list failed: {join}"
            )))
        })
}

fn allowed(domains: &[String]) -> HashSet<Box<[u8]>> {
    domains
        .iter()
        .map(|d| d.as_bytes().to_vec().into_boxed_slice())
        .collect()
}

/// An allowlist entry as stored: lower-case, no trailing dot.
fn allow_name(raw: &str) -> Result<String, BlockError> {
    parse::normalize(raw.trim()).ok_or_else(|| {
        BlockError::Invalid(format!(
            "{raw:?} is not a domain such as cdn.example.com (two labels at least)"
        ))
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Parses one of the literal names above.
fn fixed_name(s: &str) -> Name {
    // Only called on the two literals of this module, which are valid names.
    #[allow(clippy::expect_used)]
    Name::from_str(s).expect("literal name")
}
