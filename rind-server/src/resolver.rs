//! The resolver: where the answer to one question comes from, in order.
//!
//! 1. special-use names (`localhost.`, `home.arpa.`, private reverse zones), answered here;
//! 2. the upstream resolvers, through the [`Forwarder`].
//!
//! Sources that need no waiting are asked in [`Resolver::answer_now`], so a listener can
//! answer them without spawning a task; only forwarding is async.

use std::sync::Arc;

use hickory_proto::op::{Message, Query, ResponseCode};

use crate::response::Answer;
use crate::special::SpecialNames;
use crate::upstream::Forwarder;

/// The ordered answer sources.
#[derive(Debug)]
pub struct Resolver {
    special: SpecialNames,
    forwarder: Arc<Forwarder>,
}

impl Resolver {
    /// A resolver over the special-use names and `forwarder`.
    pub fn new(forwarder: Arc<Forwarder>) -> Self {
        Resolver {
            special: SpecialNames::new(),
            forwarder,
        }
    }

    /// The answer when one is at hand without asking upstream.
    pub fn answer_now(&self, query: &Query) -> Option<Answer> {
        self.special.answer(query)
    }

    /// Asks upstream; SERVFAIL when no upstream answered in time.
    pub async fn answer_forwarded(&self, query: &Query) -> Answer {
        match self.forwarder.forward(query).await {
            Ok(reply) => from_upstream(&reply),
            Err(e) => {
                tracing::debug!(name = %query.name, qtype = %query.query_type, error = %e, "answering SERVFAIL");
                Answer::rcode(ResponseCode::ServFail)
            }
        }
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
