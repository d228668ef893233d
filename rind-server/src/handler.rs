//! The whole DNS path for one packet, bytes in → bytes out, without sockets: request checks →
//! resolver → response writer. Listeners, tests, benches and fuzz targets all drive it.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;

use crate::metrics::{LimitEvent, Metrics};
use crate::ratelimit::{RateLimiter, Verdict};
use crate::request::{self, Acl, Checked, Request, Transport};
use crate::resolver::{Now, Pending, Ready, Resolver};
use crate::response::{self, Answer};

/// Checks, resolves and answers DNS packets.
#[derive(Debug)]
pub struct Handler {
    acl: Acl,
    limiter: Option<RateLimiter>,
    resolver: Resolver,
    metrics: Arc<Metrics>,
}

/// How far [`Handler::begin`] got with a packet.
#[derive(Debug)]
pub enum Step {
    /// Finished: send these bytes, or nothing.
    Done(Option<Vec<u8>>),
    /// The answer needs upstream: pass it to [`Handler::finish`] in a task of its own.
    Forward(Waiting),
}

/// A request whose answer needs upstream, with what the resolver has found so far.
#[derive(Debug)]
pub struct Waiting {
    request: Request,
    pending: Pending,
}

impl Handler {
    /// A handler answering the clients `acl` allows from `resolver`.
    pub fn new(acl: Acl, resolver: Resolver, metrics: Arc<Metrics>) -> Self {
        Handler {
            acl,
            limiter: None,
            resolver,
            metrics,
        }
    }

    /// Limits each client to `limiter`'s rate (`--rate-limit`).
    pub fn with_rate_limit(mut self, limiter: Option<RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Does everything that needs no waiting.
    pub fn begin(&self, packet: &[u8], client: IpAddr, transport: Transport) -> Step {
        let request = match request::check(packet, client, transport, &self.acl) {
            Checked::Drop(reason) => {
                self.metrics.dropped(reason);
                return Step::Done(None);
            }
            Checked::Reject(reply, rcode) => {
                tracing::debug!(%client, %rcode, "rejected query");
                self.metrics.response(rcode);
                return Step::Done(Some(reply));
            }
            Checked::Query(request) => request,
        };
        self.metrics.query(transport, request.query.query_type);
        if let Some(over) = self.over_rate_limit(&request, client) {
            return Step::Done(over);
        }
        match self.resolver.answer_now(&request) {
            Now::Ready(ready) => Step::Done(Some(self.write(&request, ready))),
            Now::Later(pending) => Step::Forward(Waiting { request, pending }),
        }
    }

    /// Finishes a request that needs upstream.
    pub async fn finish(&self, waiting: Waiting) -> Vec<u8> {
        let Waiting { request, pending } = waiting;
        let ready = self.resolver.answer_later(&request, pending).await;
        self.write(&request, ready)
    }

    /// Bytes in → reply bytes out (`None`: send nothing).
    pub async fn handle(
        &self,
        packet: &[u8],
        client: IpAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        match self.begin(packet, client, transport) {
            Step::Done(reply) => reply,
            Step::Forward(waiting) => Some(self.finish(waiting).await),
        }
    }

    /// What to send instead of an answer when `client` is over its rate; `None` when it is not.
    fn over_rate_limit(&self, request: &Request, client: IpAddr) -> Option<Option<Vec<u8>>> {
        let verdict = self.limiter.as_ref()?.check(client, request.transport);
        match verdict {
            Verdict::Allow => None,
            Verdict::Drop => {
                self.metrics.limit(LimitEvent::RateDropped);
                Some(None)
            }
            Verdict::Truncate => {
                self.metrics.limit(LimitEvent::RateTruncated);
                self.metrics.response(ResponseCode::NoError);
                Some(Some(response::truncated(request)))
            }
            Verdict::Refuse => {
                self.metrics.limit(LimitEvent::RateRefused);
                let refused = Answer::rcode(ResponseCode::Refused);
                Some(Some(self.write(request, Ready::Answer(refused))))
            }
        }
    }

    fn write(&self, request: &Request, ready: Ready) -> Vec<u8> {
        match ready {
            Ready::Answer(answer) => {
                self.metrics.response(answer.rcode);
                response::write(request, &answer)
            }
            Ready::Wire(bytes, rcode) => {
                self.metrics.response(rcode);
                bytes
            }
        }
    }
}
