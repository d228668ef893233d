//! The resolver: where the answer to one question comes from, in order.
//!
//! 1. local records ([`Records`]): they beat everything below;
//! 2. special-use names (`localhost.`, `home.arpa.`, private reverse zones), answered here;
//! 3. the upstream resolvers, through the [`Forwarder`].
//!
//! Sources that need no waiting are asked in [`Resolver::answer_now`], so a listener can
//! answer them without spawning a task; only forwarding is async. A local CNAME whose chain
//! leaves the local data is finished by asking the later sources for its last target.

use std::sync::Arc;

use hickory_proto::op::{Message, Query, ResponseCode};

use crate::records::answer::{Chase, Local};
use crate::records::Records;
use crate::response::Answer;
use crate::special::SpecialNames;
use crate::upstream::Forwarder;

/// The ordered answer sources.
#[derive(Debug)]
pub struct Resolver {
    records: Arc<Records>,
    special: SpecialNames,
    forwarder: Arc<Forwarder>,
}

impl Resolver {
    /// A resolver over `records`, the special-use names and `forwarder`.
    pub fn new(forwarder: Arc<Forwarder>, records: Arc<Records>) -> Self {
        Resolver {
            records,
            special: SpecialNames::new(),
            forwarder,
        }
    }

    /// The answer when one is at hand without asking upstream, else what is left to ask.
    pub fn answer_now(&self, query: &Query) -> Now {
        match self.records.answer(query) {
            Some(Local::Answer(answer)) => Now::Ready(answer),
            Some(Local::Chase(chase)) => match self.special.answer(chase.target()) {
                Some(tail) => Now::Ready(chase.finish(tail)),
                None => Now::Later(Pending::Chase(chase)),
            },
            None => match self.special.answer(query) {
                Some(answer) => Now::Ready(answer),
                None => Now::Later(Pending::Forward),
            },
        }
    }

    /// Finishes what [`Resolver::answer_now`] left `pending` for `query`.
    pub async fn answer_later(&self, query: &Query, pending: Pending) -> Answer {
        match pending {
            Pending::Forward => self.answer_forwarded(query).await,
            Pending::Chase(chase) => {
                let tail = self.answer_forwarded(chase.target()).await;
                chase.finish(tail)
            }
        }
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

/// What [`Resolver::answer_now`] found.
#[derive(Debug)]
pub enum Now {
    /// The answer, ready to write.
    Ready(Answer),
    /// Upstream is needed: finish with [`Resolver::answer_later`].
    Later(Pending),
}

/// What a question still needs from upstream.
#[derive(Debug)]
pub enum Pending {
    /// The question itself goes upstream.
    Forward,
    /// A local CNAME chain ends outside the local data: its last target goes upstream.
    Chase(Chase),
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
