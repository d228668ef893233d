//! The resolver: where the answer to one question comes from, in order.
//!
//! 1. special-use names (`localhost.`, `home.arpa.`, private reverse zones), answered here;
//! 2. the cache, whose hits come back as finished reply bytes;
//! 3. the upstream resolvers, through the [`Forwarder`]; their answers go into the cache, and
//!    when none answers, a stale cache entry may stand in (RFC 8767).
//!
//! Sources that need no waiting are asked in [`Resolver::answer_now`], so a listener can
//! answer them without spawning a task; only forwarding is async.

use std::sync::Arc;

use hickory_proto::op::{Message, Query, ResponseCode};

use crate::cache::{Cache, Lookup};
use crate::request::Request;
use crate::response::Answer;
use crate::special::SpecialNames;
use crate::upstream::Forwarder;

/// The ordered answer sources.
#[derive(Debug)]
pub struct Resolver {
    special: SpecialNames,
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

impl Resolver {
    /// A resolver over the special-use names, `cache` and `forwarder`.
    pub fn new(cache: Arc<Cache>, forwarder: Arc<Forwarder>) -> Self {
        Resolver {
            special: SpecialNames::new(),
            cache,
            forwarder,
        }
    }

    /// The answer when one is at hand without waiting for upstream.
    pub fn answer_now(&self, request: &Request) -> Option<Ready> {
        if let Some(answer) = self.special.answer(&request.query) {
            return Some(Ready::Answer(answer));
        }
        match self.cache.lookup(request) {
            Lookup::Hit {
                reply,
                rcode,
                refresh,
            } => {
                if refresh {
                    self.refresh_in_background(&request.query);
                }
                Some(Ready::Wire(reply, rcode))
            }
            // Upstream failed moments ago: answer stale now, and try upstream again behind it.
            Lookup::Stale(entry) if self.cache.failed_recently(&entry) => {
                if entry.start_refresh() {
                    self.refresh_in_background(&request.query);
                }
                let reply = self.cache.stale_reply(&entry, request)?;
                Some(Ready::Wire(reply, entry.rcode()))
            }
            Lookup::Stale(_) | Lookup::Miss => None,
        }
    }

    /// Asks upstream and caches the answer; when no upstream answers, a stale entry or
    /// SERVFAIL.
    pub async fn answer_forwarded(&self, request: &Request) -> Ready {
        let query = &request.query;
        match self.forwarder.forward(query).await {
            Ok(reply) => {
                // The cached form gives the same bytes a later hit will: clamped TTLs and the
                // negative-caching SOA TTL.
                let cached = self.cache.insert(query, &reply);
                match cached.and_then(|entry| {
                    Some((
                        entry.reply(request, self.cache.now(), false)?,
                        entry.rcode(),
                    ))
                }) {
                    Some((bytes, rcode)) => Ready::Wire(bytes, rcode),
                    None => Ready::Answer(from_upstream(&reply)),
                }
            }
            Err(e) => {
                if let Some(entry) = self.cache.stale_entry(query) {
                    entry.refresh_failed(self.cache.now());
                    if let Some(reply) = self.cache.stale_reply(&entry, request) {
                        return Ready::Wire(reply, entry.rcode());
                    }
                }
                tracing::debug!(name = %query.name, qtype = %query.query_type, error = %e, "answering SERVFAIL");
                Ready::Answer(Answer::rcode(ResponseCode::ServFail))
            }
        }
    }

    /// Refreshes `query` from upstream without a client waiting (prefetch, stale refresh).
    fn refresh_in_background(&self, query: &Query) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let query = query.clone();
        let cache = Arc::clone(&self.cache);
        let forwarder = Arc::clone(&self.forwarder);
        runtime.spawn(async move {
            match forwarder.forward(&query).await {
                Ok(reply) => {
                    if cache.insert(&query, &reply).is_none() {
                        // Not cacheable this time (SERVFAIL-free but TTL 0, say): free the slot.
                        cache.refresh_failed(&query);
                    }
                }
                Err(_) => cache.refresh_failed(&query),
            }
        });
    }
}

/// The parts of an upstream reply a client gets: rcode and records, never its header or OPT.
fn from_upstream(reply: &Message) -> Answer {
    Answer {
        rcode: reply.metadata.response_code,
        authoritative: false,
        answers: reply.answers.clone(),
        authorities: reply.authorities.clone(),
        additionals: reply.additionals.clone(),
    }
}
