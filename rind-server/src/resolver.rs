//! The resolver: where the answer to one question comes from, in order.
//!
//! 1. local records ([`Records`]): they beat everything below;
//! 2. special-use names (`localhost.`, `home.arpa.`, private reverse zones), answered here,
//!    except below a forward zone the operator set at or inside one of them;
//! 3. the blocklists ([`Blocking`]): a blocked name is answered here, never from the cache
//!    nor upstream. The cache is asked first all the same, because it never holds a blocked
//!    name (a list change drops them), so a hit costs no blocking lookup;
//! 4. the cache, whose hits come back as finished reply bytes;
//! 5. the upstream resolvers, through the [`Forwarder`]; their answers go into the cache, and
//!    when none answers, a stale cache entry may stand in (RFC 8767).
//!
//! Sources that need no waiting are asked in [`Resolver::answer_now`], so a listener can
//! answer them without spawning a task; only forwarding is async. A local CNAME whose chain
//! leaves the local data is finished by asking the later sources (special names, cache,
//! upstream) for its last target.

use std::sync::Arc;

use hickory_proto::op::{Message, Query, ResponseCode};

use crate::blocklist::Blocking;
use crate::cache::{Cache, Entry, Lookup};
use crate::querylog::Source;
use crate::records::answer::{Chase, Local};
use crate::records::Records;
use crate::request::Request;
use crate::response::Answer;
use crate::special::SpecialNames;
use crate::upstream::Forwarder;

/// The ordered answer sources.
#[derive(Debug)]
pub struct Resolver {
    records: Arc<Records>,
    special: SpecialNames,
    blocking: Arc<Blocking>,
    cache: Arc<Cache>,
    forwarder: Arc<Forwarder>,
}

/// An answer ready to go out.
#[derive(Debug)]
pub enum Ready {
    /// Records for the response writer.
    Answer(Answer),
    /// Reply bytes written by the cache, with their response code.
    Wire(Vec<u8>, ResponseCode),
}

/// What [`Resolver::answer_now`] found.
#[derive(Debug)]
pub enum Now {
    /// The answer, ready to write, and where it came from (for the query log).
    Ready(Ready, Source),
    /// Upstream is needed: finish with [`Resolver::answer_later`].
    Later(Pending),
}

/// What a question still needs from upstream.
#[derive(Debug)]
pub enum Pending {
    /// The question itself goes upstream; the blocking generation read before its name was
    /// found unblocked.
    Forward(u64),
    /// A local CNAME chain ends outside the local data: its last target goes upstream.
    Chase(Chase),
}

impl Resolver {
    /// A resolver over `records`, the special-use names, `blocking`, `cache` and `forwarder`.
    pub fn new(
        cache: Arc<Cache>,
        forwarder: Arc<Forwarder>,
        records: Arc<Records>,
        blocking: Arc<Blocking>,
    ) -> Self {
        Resolver {
            records,
            special: SpecialNames::new(),
            blocking,
            cache,
            forwarder,
        }
    }

    /// The answer when one is at hand without waiting for upstream, else what is left to ask.
    pub fn answer_now(&self, request: &Request) -> Now {
        match self.records.answer(&request.query) {
            Some(Local::Answer(answer)) => Now::Ready(Ready::Answer(answer), Source::Local),
            Some(Local::Chase(chase)) => match self.answer_target_now(chase.target()) {
                Some(tail) => Now::Ready(Ready::Answer(chase.finish(tail)), Source::Local),
                None => Now::Later(Pending::Chase(chase)),
            },
            None => self.answer_unowned(request),
        }
    }

    /// [`Resolver::answer_now`] for a name without local records.
    fn answer_unowned(&self, request: &Request) -> Now {
        if let Some(answer) = self.special_answer(&request.query) {
            return Now::Ready(Ready::Answer(answer), Source::Special);
        }
        // The cache holds no blocked name (see `Blocking`), so a hit skips the check.
        if let Some((ready, source)) = self.cached(request) {
            return Now::Ready(ready, source);
        }
        let generation = self.blocking.generation();
        match self.blocking.answer(&request.query) {
            Some(answer) => Now::Ready(Ready::Answer(answer), Source::Blocked),
            None => Now::Later(Pending::Forward(generation)),
        }
    }

    /// Finishes what [`Resolver::answer_now`] left `pending` for `request`; also says where
    /// the answer came from.
    pub async fn answer_later(&self, request: &Request, pending: Pending) -> (Ready, Source) {
        match pending {
            Pending::Forward(generation) => self.answer_forwarded(request, generation).await,
            Pending::Chase(chase) => {
                let tail = self.answer_target_forwarded(chase.target()).await;
                (Ready::Answer(chase.finish(tail)), Source::Local)
            }
        }
    }

    /// A cache hit, or a stale answer right away when upstream failed moments ago.
    fn cached(&self, request: &Request) -> Option<(Ready, Source)> {
        match self.cache.lookup(request) {
            Lookup::Hit {
                reply,
                rcode,
                refresh,
            } => {
                if let Some(entry) = refresh {
                    self.refresh_in_background(&request.query, entry);
                }
                Some((Ready::Wire(reply, rcode), Source::Cache))
            }
            Lookup::Stale(entry) if self.cache.failed_recently(&entry) => {
                if entry.start_refresh() {
                    self.refresh_in_background(&request.query, entry.clone());
                }
                let reply = self.cache.stale_reply(&entry, request)?;
                Some((Ready::Wire(reply, entry.rcode()), Source::Stale))
            }
            Lookup::Stale(_) | Lookup::Miss => None,
        }
    }

    /// Asks upstream and caches the answer; when no upstream answers, a stale entry or
    /// SERVFAIL.
    async fn answer_forwarded(&self, request: &Request, generation: u64) -> (Ready, Source) {
        let query = &request.query;
        let checking_disabled = request.checking_disabled();
        let mut led = false;
        let mut stored = None;
        let outcome = self.forwarder.forward(query, checking_disabled, |reply| {
            led = true;
            stored = self.cache.insert(query, checking_disabled, reply);
        });
        let outcome = outcome.await;
        if led && self.blocking.changed_since(generation) {
            self.blocking.uncache_if_blocked(&query.name);
        }
        match outcome {
            Ok(reply) => {
                // Clients that shared the leader's upstream query read back what it stored.
                let entry = if led {
                    stored
                } else {
                    self.cache
                        .fresh_entry(request)
                        .or_else(|| self.cache.entry_for(query, checking_disabled, &reply))
                };
                // The cached form gives the same bytes a later hit will: clamped TTLs and the
                // negative-caching SOA TTL.
                let written = entry.and_then(|entry| {
                    let bytes = entry.reply(request, self.cache.now(), false)?;
                    Some(Ready::Wire(bytes, entry.rcode()))
                });
                let ready = written.unwrap_or_else(|| Ready::Answer(from_upstream(&reply)));
                (ready, Source::Upstream)
            }
            Err(e) => {
                if let Some(entry) = self.cache.stale_entry(request) {
                    entry.refresh_failed(self.cache.now());
                    if let Some(reply) = self.cache.stale_reply(&entry, request) {
                        return (Ready::Wire(reply, entry.rcode()), Source::Stale);
                    }
                }
                tracing::debug!(name = %query.name, qtype = %query.query_type, error = %e, "answering SERVFAIL");
                (
                    Ready::Answer(Answer::rcode(ResponseCode::ServFail)),
                    Source::Failed,
                )
            }
        }
    }

    /// The answer for the target of a local CNAME chain, from special names or the cache.
    fn answer_target_now(&self, target: &Query) -> Option<Answer> {
        self.special_answer(target)
            .or_else(|| self.cache.answer(target))
    }

    /// The special-use answer, unless a forward zone takes the name over: one at or below the
    /// special zone the name is in. A broader forward zone (`arpa.`) does not, so private
    /// reverse names still stay home unless the operator named their zone.
    fn special_answer(&self, query: &Query) -> Option<Answer> {
        let forwarded = self.forwarder.zone_of(&query.name).is_some_and(|forward| {
            self.special
                .zone_of(&query.name)
                .is_some_and(|special| special.zone_of(forward))
        });
        if forwarded {
            return None;
        }
        self.special.answer(query)
    }

    /// The answer for the target of a local CNAME chain from upstream, cached on the way.
    /// Asked with CD=0 whatever the client set: the local CNAMEs before it are not signed, so
    /// a validating client cannot use the tail's signatures anyway.
    async fn answer_target_forwarded(&self, target: &Query) -> Answer {
        let outcome = self.forwarder.forward(target, false, |reply| {
            self.cache.insert(target, false, reply);
        });
        let outcome = outcome.await;
        // Local CNAMEs may point at a blocked name; its answer must not become a cache hit.
        self.blocking.uncache_if_blocked(&target.name);
        match outcome {
            Ok(reply) => from_upstream(&reply),
            Err(e) => {
                tracing::debug!(name = %target.name, error = %e, "CNAME target unresolved; SERVFAIL");
                Answer::rcode(ResponseCode::ServFail)
            }
        }
    }

    /// Refreshes `query` from upstream without a client waiting (prefetch, stale refresh);
    /// `claimed` is the entry whose refresh slot this caller holds.
    fn refresh_in_background(&self, query: &Query, claimed: Entry) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let query = query.clone();
        let cache = Arc::clone(&self.cache);
        let forwarder = Arc::clone(&self.forwarder);
        let blocking = Arc::clone(&self.blocking);
        let checking_disabled = claimed.fetched().checking_disabled;
        runtime.spawn(async move {
            let mut stored = false;
            let outcome = forwarder.forward(&query, checking_disabled, |reply| {
                stored = cache.insert(&query, checking_disabled, reply).is_some();
            });
            // Unless this refresh stored a new entry, free the slot of the one it claimed (if
            // another asker led and stored, that old entry is out of the cache anyway).
            let answered = outcome.await.is_ok();
            // The hit that started this read no generation: the name may be blocked by now.
            if stored {
                blocking.uncache_if_blocked(&query.name);
            }
            if !(answered && stored) {
                claimed.refresh_failed(cache.now());
            }
        });
    }
}

/// The parts of an upstream reply a client gets: rcode, AD and records, never the rest of its
/// header or its OPT.
fn from_upstream(reply: &Message) -> Answer {
    Answer {
        rcode: reply.metadata.response_code,
        authoritative: false,
        authentic_data: reply.metadata.authentic_data,
        answers: reply.answers.clone(),
        authorities: reply.authorities.clone(),
        additionals: reply.additionals.clone(),
    }
}
