//! The whole DNS path for one packet, bytes in → bytes out, without sockets: request checks →
//! resolver → response writer. Listeners, tests, benches and fuzz targets all drive it.
//! Zone transfers (AXFR, IXFR) leave the path after the checks for [`crate::transfer`],
//! whose answer over TCP is a series of messages; NOTIFY goes to the secondary zones.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{OpCode, ResponseCode};
use tokio::sync::mpsc;

use crate::metrics::{LimitEvent, Metrics};
use crate::querylog::{self, LoggedName, Outcome, QueryLog, Source};
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
    transfers: Arc<Transfers>,
    metrics: Arc<Metrics>,
    query_log: Option<Arc<QueryLog>>,
}

/// How far [`Handler::begin`] got with a packet.
#[derive(Debug)]
pub enum Step {
    /// Finished: send these bytes, or nothing.
    Done(Option<Vec<u8>>),
    /// The answer needs upstream: pass it to [`Handler::finish`] in a task of its own. Boxed
    /// so the cache-hit path returns a small `Step`; a miss allocates anyway.
    Forward(Box<Waiting>),
    /// A zone transfer (TCP only): pass it to [`Handler::transfer`] in a task of its own.
    Transfer(Box<transfer::Stream>),
}

/// A request whose answer needs upstream, with what the resolver has found so far.
#[derive(Debug)]
pub struct Waiting {
    request: Request,
    pending: Pending,
    client: IpAddr,
    /// When the query arrived, when the query log is on.
    started: Option<Instant>,
    /// Signs the reply to a TSIG-signed query.
    signer: Option<Signer>,
}

impl Handler {
    /// A handler answering the clients `acl` allows from `resolver`.
    pub fn new(
        acl: Acl,
        resolver: Resolver,
        transfers: Arc<Transfers>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Handler {
            acl,
            limiter: None,
            resolver,
            transfers,
            metrics,
            query_log: None,
        }
    }

    /// Limits each client to `limiter`'s rate (`--rate-limit`).
    pub fn with_rate_limit(mut self, limiter: Option<RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Records every answered query in `log` (`--query-log`).
    pub fn with_query_log(mut self, log: Option<Arc<QueryLog>>) -> Self {
        self.query_log = log;
        self
    }

    /// Does everything that needs no waiting.
    pub fn begin(&self, packet: &[u8], client: IpAddr, transport: Transport) -> Step {
        // Read before the checks so the latency covers them; no clock read when the log is off.
        let started = self.query_log.as_ref().map(|_| Instant::now());
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
        if let Some((over, rcode)) = self.over_rate_limit(&request, client) {
            let source = Source::RateLimited;
            let outcome = Outcome { rcode, source };
            self.log(started, client, &request, Some(packet), outcome);
            return Step::Done(over);
        }
        if request.metadata.op_code == OpCode::Notify {
            return Step::Done(Some(self.transfers.notified(&request, packet, client)));
        }
        if transfer::is_transfer(request.query.query_type) {
            return match self.transfers.plan(request, packet, client) {
                Plan::Reply(reply) => Step::Done(Some(reply)),
                Plan::Stream(stream) => Step::Transfer(stream),
            };
        }
        let mut signer = None;
        if request.signed {
            match self.verify(&request, packet, client) {
                Ok(s) => signer = s,
                Err(reply) => return Step::Done(Some(reply)),
            }
        }
        match self.resolver.answer_now(&request) {
            Now::Ready(ready, source) => {
                let (reply, rcode) = self.write_signed(&request, ready, signer);
                let outcome = Outcome {
                    rcode: Some(rcode),
                    source,
                };
                self.log(started, client, &request, Some(packet), outcome);
                Step::Done(Some(reply))
            }
            Now::Later(pending) => Step::Forward(Box::new(Waiting {
                request,
                pending,
                client,
                started,
                signer,
            })),
        }
    }

    /// Checks the TSIG of a signed query (a secondary's SOA check, say): the signer for its
    /// reply, or the NOTAUTH reply (RFC 8945 §5.2) when the signature does not hold.
    fn verify(
        &self,
        request: &Request,
        packet: &[u8],
        client: IpAddr,
    ) -> Result<Option<Signer>, Vec<u8>> {
        let signed = self
            .transfers
            .signature(request, packet, client, tsig::now())?;
        Ok(signed.map(|(signer, _)| signer))
    }

    /// Finishes a request that needs upstream.
    pub async fn finish(&self, waiting: Box<Waiting>) -> Vec<u8> {
        let Waiting {
            request,
            pending,
            client,
            started,
            signer,
        } = *waiting;
        let (ready, source) = self.resolver.answer_later(&request, pending).await;
        let (reply, rcode) = self.write_signed(&request, ready, signer);
        let outcome = Outcome {
            rcode: Some(rcode),
            source,
        };
        self.log(started, client, &request, None, outcome);
        reply
    }

    /// Sends the messages of a zone transfer to `out`, in order.
    pub async fn transfer(&self, stream: Box<transfer::Stream>, out: &mpsc::Sender<Vec<u8>>) {
        self.transfers.send(stream, out).await;
    }

    /// What to send instead of an answer when the client is over its rate, with its response
    /// code (`None`: nothing is sent); `None` when it is not over.
    fn over_rate_limit(
        &self,
        request: &Request,
        client: IpAddr,
    ) -> Option<(Option<Vec<u8>>, Option<ResponseCode>)> {
        let verdict = self.limiter.as_ref()?.check(client, request.transport);
        match verdict {
            Verdict::Allow => None,
            Verdict::Drop => {
                self.metrics.limit(LimitEvent::RateDropped);
                Some((None, None))
            }
            Verdict::Truncate => {
                self.metrics.limit(LimitEvent::RateTruncated);
                self.metrics.response(ResponseCode::NoError);
                Some((
                    Some(response::truncated(request)),
                    Some(ResponseCode::NoError),
                ))
            }
            Verdict::Refuse => {
                self.metrics.limit(LimitEvent::RateRefused);
                let refused = Answer::rcode(ResponseCode::Refused);
                let (reply, rcode) = self.write(request, Ready::Answer(refused));
                Some((Some(reply), Some(rcode)))
            }
        }
    }

    fn write_signed(
        &self,
        request: &Request,
        ready: Ready,
        signer: Option<Signer>,
    ) -> (Vec<u8>, ResponseCode) {
        let (mut reply, rcode) = self.write(request, ready);
        if let Some(mut signer) = signer {
            signer.sign(&mut reply, tsig::now());
        }
        (reply, rcode)
    }

    fn write(&self, request: &Request, ready: Ready) -> (Vec<u8>, ResponseCode) {
        match ready {
            Ready::Answer(answer) => {
                self.metrics.response(answer.rcode);
                (response::write(request, &answer), answer.rcode)
            }
            Ready::Wire(bytes, rcode) => {
                self.metrics.response(rcode);
                (bytes, rcode)
            }
        }
    }

    /// Adds the query to the query log, when the log is on. With the `packet` at hand its
    /// name is copied from there in one go, which costs less than walking the parsed name.
    fn log(
        &self,
        started: Option<Instant>,
        client: IpAddr,
        request: &Request,
        packet: Option<&[u8]>,
        outcome: Outcome,
    ) {
        if let (Some(log), Some(started)) = (&self.query_log, started) {
            let query = &request.query;
            let name = packet
                .and_then(querylog::question_labels)
                .map_or(LoggedName::Parsed(&query.name), LoggedName::Wire);
            log.record(
                started,
                client,
                request.transport,
                name,
                query.query_type,
                outcome,
            );
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns, without calling it.
    fn size_of_return<F, R>(_: F) -> usize
    where
        F: FnOnce(&'static Handler, Box<Waiting>) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// Every forwarded query is a task holding this future, and tokio moves it by value
    /// when spawning and finishing; it was 6.6 KiB with a UDP buffer and the DoH client's
    /// future inline, and those copies were 5% of the CPU of a miss.
    #[test]
    fn a_forwarded_query_task_stays_small() {
        let size = size_of_return(Handler::finish);
        assert!(size <= 2048, "Handler::finish's future is {size} bytes");
    }
}
