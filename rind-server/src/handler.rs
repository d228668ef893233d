//! The whole DNS path for one packet, bytes in → bytes out, without sockets: request checks →
//! resolver → response writer. Listeners, tests, benches and fuzz targets all drive it.
//! Zone transfers (AXFR, IXFR) leave the path after the checks for [`crate::transfer`],
//! whose answer over TCP is a series of messages.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use hickory_proto::op::{OpCode, ResponseCode};

use crate::metrics::{LimitEvent, Metrics};
use crate::ratelimit::{RateLimiter, Verdict};
use crate::request::{self, Acl, Checked, Request, Transport};
use crate::resolver::{Now, Pending, Ready, Resolver};
use crate::response::{self, Answer};
use crate::transfer::{self, Plan, Transfers};
use crate::tsig::{self, Signer};

/// Checks, resolves and answers DNS packets.
#[derive(Debug)]
pub struct Handler {
    acl: Acl,
    limiter: Option<RateLimiter>,
    resolver: Resolver,
    transfers: Option<Arc<Transfers>>,
    metrics: Arc<Metrics>,
}

/// How far [`Handler::begin`] got with a packet.
#[derive(Debug)]
// Moved once per query; boxing `Forward` would cost an allocation on every cache miss.
#[allow(clippy::large_enum_variant)]
pub enum Step {
    /// Finished: send these bytes, or nothing.
    Done(Option<Vec<u8>>),
    /// The answer needs upstream: pass it to [`Handler::finish`] in a task of its own.
    Forward(Waiting),
    /// A zone transfer (TCP only): pass it to [`Handler::transfer`] in a task of its own.
    Transfer(Box<transfer::Stream>),
}

/// A request whose answer needs upstream, with what the resolver has found so far.
#[derive(Debug)]
pub struct Waiting {
    request: Request,
    pending: Pending,
    /// Signs the reply to a TSIG-signed query (boxed: rare, and the step stays small).
    signer: Option<Box<Signer>>,
}

impl Handler {
    /// A handler answering the clients `acl` allows from `resolver`.
    pub fn new(acl: Acl, resolver: Resolver, metrics: Arc<Metrics>) -> Self {
        Handler {
            acl,
            limiter: None,
            resolver,
            transfers: None,
            metrics,
        }
    }

    /// Serves zone transfers from `transfers`; without it, every AXFR and IXFR gets NOTAUTH.
    pub fn with_transfers(mut self, transfers: Arc<Transfers>) -> Self {
        self.transfers = Some(transfers);
        self
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
        if request.metadata.op_code == OpCode::Notify {
            let reply = match &self.transfers {
                Some(transfers) => transfers.notified(&request, packet, client),
                None => self.write(&request, Ready::Answer(Answer::rcode(ResponseCode::NotImp))),
            };
            return Step::Done(Some(reply));
        }
        if transfer::is_transfer(request.query.query_type) {
            let Some(transfers) = &self.transfers else {
                let refused = Answer::rcode(ResponseCode::NotAuth);
                return Step::Done(Some(self.write(&request, Ready::Answer(refused))));
            };
            return match transfers.plan(request, packet, client) {
                Plan::Reply(reply) => Step::Done(Some(reply)),
                Plan::Stream(stream) => Step::Transfer(stream),
            };
        }
        let mut signer = None;
        if request.signed {
            match self.verify(&request, packet) {
                Ok(s) => signer = s,
                Err(reply) => return Step::Done(Some(reply)),
            }
        }
        match self.resolver.answer_now(&request) {
            Now::Ready(ready) => Step::Done(Some(self.write_signed(&request, ready, signer))),
            Now::Later(pending) => Step::Forward(Waiting {
                request,
                pending,
                signer,
            }),
        }
    }

    /// Checks the TSIG of a signed query (a secondary's SOA check, say): the signer for its
    /// reply, or the NOTAUTH reply (RFC 8945 §5.2) when the signature does not hold.
    fn verify(&self, request: &Request, packet: &[u8]) -> Result<Option<Box<Signer>>, Vec<u8>> {
        let now = tsig::now();
        let verdict = match &self.transfers {
            Some(transfers) => tsig::verify_request(transfers.keys(), packet, now),
            None => tsig::verify_request(&tsig::Keyring::default(), packet, now),
        };
        match verdict {
            tsig::Verdict::Unsigned => Ok(None),
            tsig::Verdict::Signed { key, mac } => Ok(Some(Box::new(Signer::response(key, mac)))),
            tsig::Verdict::Failed { error, key_name } => {
                let mut reply =
                    self.write(request, Ready::Answer(Answer::rcode(ResponseCode::NotAuth)));
                tsig::append_error(&mut reply, &key_name, error, now);
                Err(reply)
            }
        }
    }

    /// Finishes a request that needs upstream.
    pub async fn finish(&self, waiting: Waiting) -> Vec<u8> {
        let Waiting {
            request,
            pending,
            signer,
        } = waiting;
        let ready = self.resolver.answer_later(&request, pending).await;
        self.write_signed(&request, ready, signer)
    }

    /// Sends the messages of a zone transfer to `out`, in order.
    pub async fn transfer(&self, stream: Box<transfer::Stream>, out: &mpsc::Sender<Vec<u8>>) {
        if let Some(transfers) = &self.transfers {
            transfers.send(stream, out).await;
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

    fn write_signed(
        &self,
        request: &Request,
        ready: Ready,
        signer: Option<Box<Signer>>,
    ) -> Vec<u8> {
        let mut reply = self.write(request, ready);
        if let Some(mut signer) = signer {
            signer.sign(&mut reply, tsig::now());
        }
        reply
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
