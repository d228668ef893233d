//! DNS over HTTPS (RFC 8484): `GET /dns-query?dns=<base64url>` and `POST /dns-query` with an
//! `application/dns-message` body, over HTTP/2 or HTTP/1.1 (ALPN), each answered by the
//! [`Handler`] like a TCP query from the same client.
//!
//! Limits, as for DNS over TCP: at most `--max-tcp-connections` connections (a count of
//! their own), [`tls::HANDSHAKE_TIMEOUT`] for the handshake, a connection with no bytes
//! either way and no request open for `--tcp-idle-timeout` is closed, at most
//! [`tcp::MAX_IN_FLIGHT`] HTTP/2 streams per connection, [`tcp::MESSAGE_TIMEOUT`] for a
//! request's head and body.
//!
//! Requests that are not DoH get HTTP errors, never a DNS answer: 404 for another path, 405
//! for another method, 415 for a POST body of another type, 413 for a body over 64 KiB,
//! 414 for a longer `dns` parameter, 400 for a missing or undecodable `dns` parameter or a
//! message rind drops (a response, or no header). Everything DNS says about a query that
//! parses (FORMERR, REFUSED, SERVFAIL) is a 200 with that DNS message, as RFC 8484 §4.2.1
//! asks. An error goes out once the request's body (up to 64 KiB) has been read, so the
//! client sees the status rather than a reset stream.
//!
//! A connection's HTTP/2 streams run on the connection's own task ([`StreamExec`]), not one
//! spawned task each: for a cache hit, spawning (moving the request's future into a new
//! task, the runtime's task list, waking the connection task from whichever worker ran the
//! stream) cost more than answering.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::skip_name;
use crate::handler::{Handler, Step};
use crate::listener::{tcp, tls};
use crate::request::Transport;

/// The one path DoH is served on (RFC 8484 §3 leaves it to the server; every client's
/// default is this one).
pub const PATH: &str = "/dns-query";
/// The media type of a DNS message (RFC 8484 §6).
pub const DNS_MESSAGE: &str = "application/dns-message";
/// A DNS message's header.
const HEADER_LEN: usize = 12;
/// The largest DNS message: what a TCP length prefix can say.
const MAX_MESSAGE: usize = u16::MAX as usize;
/// base64url without padding of [`MAX_MESSAGE`] bytes.
const MAX_GET_PARAM: usize = MAX_MESSAGE.div_ceil(3) * 4;
/// How often an open connection is checked for idleness.
const IDLE_CHECK: Duration = Duration::from_millis(500);
/// Times [`drive`] polls a connection and its streams in one go before it lets the worker
/// run other tasks.
const DRIVE_ROUNDS: usize = 16;

/// Accepts DoH connections on `listener` until `shutdown`, with the TCP listener's `limits`.
pub fn spawn(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: tcp::Limits,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    let stop = shutdown.clone();
    tcp::spawn_accept_loop(listener, limits.max_connections, stop, tracker, {
        move |stream, peer| {
            let (acceptor, handler) = (acceptor.clone(), Arc::clone(&handler));
            let shutdown = shutdown.clone();
            connection(
                stream,
                peer,
                acceptor,
                limits.idle_timeout,
                handler,
                shutdown,
            )
        }
    });
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    idle_timeout: Duration,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let handshake = tokio::select! {
        _ = shutdown.cancelled() => return,
        done = tls::handshake(&acceptor, stream, peer) => done,
    };
    let Some(stream) = handshake else { return };
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request| {
            let handler = Arc::clone(&handler);
            let open = Open::new(&activity);
            async move {
                let response = answer(request, peer, &handler).await;
                drop(open);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let (exec, mut streams) = Streams::new();
    let mut builder = auto::Builder::new(exec);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(tcp::MESSAGE_TIMEOUT)
        .http2()
        .max_concurrent_streams(u32::try_from(tcp::MAX_IN_FLIGHT).unwrap_or(u32::MAX));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut check = tokio::time::interval(IDLE_CHECK);
    let closing = loop {
        tokio::select! {
            done = drive(conn.as_mut(), &mut streams) => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "DoH connection ended with an error");
                }
                streams.detach();
                return;
            }
            _ = shutdown.cancelled() => break "shutting down",
            _ = check.tick() => {
                if activity.idle_for(idle_timeout) {
                    break "idle";
                }
            }
        }
    };
    tracing::debug!(%peer, reason = closing, "closing DoH connection");
    // HTTP/2 gets a GOAWAY, HTTP/1.1 a close after any response under way; a client that
    // does not take them is cut off.
    conn.as_mut().graceful_shutdown();
    let _ = timeout(tcp::WRITE_TIMEOUT, drive(conn.as_mut(), &mut streams)).await;
    streams.detach();
}

/// A stream future hyper hands to [`StreamExec`].
type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// hyper's executor for one connection: each HTTP/2 stream's future goes to that
/// connection's [`Streams`], polled by the connection task in [`drive`].
#[derive(Clone)]
struct StreamExec(mpsc::UnboundedSender<StreamFuture>);

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        // hyper calls this while the connection is polled, so the receiver is alive; after
        // the connection there is nobody to answer anyway.
        let _ = self.0.send(Box::pin(stream));
    }
}

/// The streams of one connection that have not finished.
struct Streams {
    new: mpsc::UnboundedReceiver<StreamFuture>,
    running: FuturesUnordered<StreamFuture>,
}

impl Streams {
    fn new() -> (StreamExec, Streams) {
        let (tx, new) = mpsc::unbounded_channel();
        let running = FuturesUnordered::new();
        (StreamExec(tx), Streams { new, running })
    }

    /// Polls every stream that was woken; true when one finished (and so may have left the
    /// connection frames to send).
    fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        while let Poll::Ready(Some(stream)) = self.new.poll_recv(cx) {
            self.running.push(stream);
        }
        let mut finished = false;
        while let Poll::Ready(Some(())) = self.running.poll_next_unpin(cx) {
            finished = true;
        }
        finished
    }

    /// Lets streams still waiting (on upstreams) finish in a task of their own once the
    /// connection is gone, as they would have with hyper's default executor: their work
    /// (an upstream answer for the cache) is not thrown away with the connection.
    fn detach(mut self) {
        while let Ok(stream) = self.new.try_recv() {
            self.running.push(stream);
        }
        if !self.running.is_empty() {
            tokio::spawn(async move { while self.running.next().await.is_some() {} });
        }
    }
}

/// Polls `conn` and the streams it started until `conn` ends.
async fn drive<C: Future>(mut conn: Pin<&mut C>, streams: &mut Streams) -> C::Output {
    poll_fn(|cx| {
        for _ in 0..DRIVE_ROUNDS {
            if let Poll::Ready(done) = conn.as_mut().poll(cx) {
                return Poll::Ready(done);
            }
            if !streams.poll(cx) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// One DoH request from `peer` → one HTTP response. Generic over the body so the fuzz target
/// and tests can pass an in-memory one.
pub async fn answer<B>(
    request: Request<B>,
    peer: SocketAddr,
    handler: &Handler,
) -> Response<Full<Bytes>>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Every error is sent after the request's body is read (what fits in a DNS message):
    // answering while the client still sends makes HTTP/2 reset the stream, and clients
    // (curl) report that reset instead of the status.
    if request.uri().path() != PATH {
        let _ = read_body(request.into_body()).await;
        return error(
            StatusCode::NOT_FOUND,
            "DNS over HTTPS is served on /dns-query",
        );
    }
    let query = match *request.method() {
        Method::GET => from_get(request.uri().query()).map(Bytes::from),
        Method::POST => from_post(request).await,
        _ => {
            let _ = read_body(request.into_body()).await;
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, POST"));
            return response;
        }
    };
    let packet = match query {
        Ok(packet) => packet,
        Err((status, why)) => return error(status, why),
    };
    let reply = match handler.begin(&packet, peer.ip(), Transport::Https) {
        Step::Done(Some(reply)) => reply,
        // Boxed: the miss path's future is large, and would otherwise make every request's
        // future (moved into hyper's stream, then onto the heap) as large.
        Step::Forward(waiting) => Box::pin(handler.finish(waiting)).await,
        Step::Done(None) => {
            return error(StatusCode::BAD_REQUEST, "not a DNS query");
        }
        // Not reached: the transfer module answers a transport without streams in one
        // message. Said plainly in case that ever changes.
        Step::Transfer(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "zone transfers need DNS over TCP or TLS",
            );
        }
    };
    dns_response(reply)
}

/// The DNS message in a GET's `dns` parameter (RFC 8484 §4.1: base64url, no padding; padding
/// is forgiven).
fn from_get(query: Option<&str>) -> Result<Vec<u8>, (StatusCode, &'static str)> {
    let param = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("dns="))
        .ok_or((StatusCode::BAD_REQUEST, "no dns parameter"))?;
    let encoded = param.trim_end_matches('=');
    if encoded.len() > MAX_GET_PARAM {
        return Err((StatusCode::URI_TOO_LONG, "dns parameter over 64 KiB"));
    }
    data_encoding::BASE64URL_NOPAD
        .decode(encoded.as_bytes())
        .map_err(|_| (StatusCode::BAD_REQUEST, "dns parameter is not base64url"))
}

/// The answer to a body over [`MAX_MESSAGE`].
const TOO_BIG: (StatusCode, &str) = (
    StatusCode::PAYLOAD_TOO_LARGE,
    "a DNS message is at most 64 KiB",
);

/// The DNS message in a POST's body, which must be `application/dns-message` and at most
/// 64 KiB.
async fn from_post<B>(request: Request<B>) -> Result<Bytes, (StatusCode, &'static str)>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let headers = request.headers();
    let essence = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !essence.is_some_and(|t| t.eq_ignore_ascii_case(DNS_MESSAGE)) {
        let _ = read_body(request.into_body()).await;
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/dns-message",
        ));
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_MESSAGE as u64) {
        return Err(TOO_BIG);
    }
    read_body(request.into_body()).await
}

/// A request body of at most 64 KiB, in [`tcp::MESSAGE_TIMEOUT`].
async fn read_body<B>(body: B) -> Result<Bytes, (StatusCode, &'static str)>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(Limited::new(body, MAX_MESSAGE).collect());
    // The body nearly always came with the head; only a body still on its way needs the
    // timer (arming one per request is a lock on the timer wheel).
    let now = poll_fn(|cx| match body.as_mut().poll(cx) {
        Poll::Ready(collected) => Poll::Ready(Some(collected)),
        Poll::Pending => Poll::Ready(None),
    });
    let collected = match now.await {
        Some(collected) => Ok(collected),
        None => Box::pin(timeout(tcp::MESSAGE_TIMEOUT, body)).await,
    };
    match collected {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(TOO_BIG),
        Ok(Err(_)) => Err((StatusCode::BAD_REQUEST, "the body could not be read")),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time",
        )),
    }
}

fn dns_response(reply: Vec<u8>) -> Response<Full<Bytes>> {
    let max_age = freshness(&reply);
    let mut response = Response::new(Full::new(Bytes::from(reply)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
    if let Ok(value) = HeaderValue::from_str(&format!("max-age={max_age}")) {
        headers.insert(CACHE_CONTROL, value);
    }
    response
}

/// Seconds an HTTP cache may keep `reply` (RFC 8484 §5.1): the smallest TTL in the answer
/// section; for an answer without records (NXDOMAIN, NODATA) the SOA's in the authority
/// section, which the cache already counts down and caps as RFC 2308 says; 0 when there is
/// neither, or the reply is cut short.
pub fn freshness(reply: &[u8]) -> u32 {
    least_ttl(reply).unwrap_or(0)
}

/// [`freshness`] by walking the wire form: parsing the whole message for every DoH answer
/// cost as much as finding it in the cache.
fn least_ttl(t: &[u8]) -> Option<u32> {
    let count = |at: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes(
            t.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    let (questions, answers, authorities) = (count(4)?, count(6)?, count(8)?);
    let mut pos = HEADER_LEN;
    for _ in 0..questions {
        pos = skip_name(t, pos)? + 4;
    }
    // The authority section starts right after the questions when there are no answers.
    let records = if answers > 0 { answers } else { authorities };
    let mut least = None;
    for _ in 0..records {
        let ttl_at = skip_name(t, pos)? + 4;
        let ttl = u32::from_be_bytes(t.get(ttl_at..ttl_at + 4)?.try_into().ok()?);
        least = Some(least.map_or(ttl, |l: u32| l.min(ttl)));
        pos = ttl_at + 6 + count(ttl_at + 4)?;
    }
    Some(least.unwrap_or(0))
}

fn error(status: StatusCode, why: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(why.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// When a connection last moved a byte, and how many of its requests are open.
#[derive(Debug)]
struct Activity {
    since: Instant,
    /// Milliseconds after `since` of the last byte read or written.
    last_millis: AtomicU64,
    open: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            since: Instant::now(),
            last_millis: AtomicU64::new(0),
            open: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(now, Ordering::Relaxed);
    }

    /// No request open and no byte for `limit`. A request waiting on upstreams moves no
    /// bytes but is not idleness.
    fn idle_for(&self, limit: Duration) -> bool {
        let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
        self.open.load(Ordering::Relaxed) == 0 && self.since.elapsed().saturating_sub(last) >= limit
    }
}

/// A request open on a connection, from its head until its response is handed over.
struct Open(Arc<Activity>);

impl Open {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.open.fetch_add(1, Ordering::Relaxed);
        Open(Arc::clone(activity))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A stream that notes in [`Activity`] each time bytes move.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Message;

    use super::*;

    #[test]
    fn get_parameter_forms() {
        let wire = [
            0u8, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 0, 0, 1, 0, 1,
        ];
        let encoded = data_encoding::BASE64URL_NOPAD.encode(&wire);
        assert_eq!(from_get(Some(&format!("dns={encoded}"))), Ok(wire.to_vec()));
        assert_eq!(
            from_get(Some(&format!("ct=x&dns={encoded}=="))),
            Ok(wire.to_vec())
        );
        let status = |q: Option<&str>| from_get(q).map_err(|(s, _)| s).err();
        assert_eq!(status(None), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status(Some("name=x")), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status(Some("dns=a+b/")), Some(StatusCode::BAD_REQUEST));
        let long = format!("dns={}", "A".repeat(MAX_GET_PARAM + 4));
        assert_eq!(status(Some(&long)), Some(StatusCode::URI_TOO_LONG));
    }

    #[test]
    fn freshness_is_the_smallest_answer_ttl() {
        use hickory_proto::rr::{rdata::A, Name, RData, Record};
        let name = Name::from_ascii("a.example.").expect("name");
        let mut message = Message::response(0, hickory_proto::op::OpCode::Query);
        for ttl in [300, 60, 120] {
            message.add_answer(Record::from_rdata(
                name.clone(),
                ttl,
                RData::A(A::new(192, 0, 2, 1)),
            ));
        }
        message.add_query(hickory_proto::op::Query::query(
            name.clone(),
            hickory_proto::rr::RecordType::A,
        ));
        let wire = message.to_vec().expect("encode");
        assert_eq!(freshness(&wire), 60);
        // Cut inside the last record: not a TTL to promise.
        assert_eq!(freshness(&wire[..wire.len() - 8]), 0);

        // No answers: the SOA's TTL in the authority section, past an OPT record's.
        let soa = hickory_proto::rr::rdata::SOA::new(
            Name::from_ascii("ns.example.").expect("name"),
            Name::from_ascii("host.example.").expect("name"),
            1,
            3600,
            600,
            86400,
            30,
        );
        let mut negative = Message::response(0, hickory_proto::op::OpCode::Query);
        negative.add_query(hickory_proto::op::Query::query(
            name.clone(),
            hickory_proto::rr::RecordType::AAAA,
        ));
        negative.add_authority(Record::from_rdata(
            Name::from_ascii("example.").expect("name"),
            45,
            RData::SOA(soa),
        ));
        negative.set_edns(hickory_proto::op::Edns::new());
        assert_eq!(freshness(&negative.to_vec().expect("encode")), 45);

        let empty = Message::response(0, hickory_proto::op::OpCode::Query);
        assert_eq!(freshness(&empty.to_vec().expect("encode")), 0);
        assert_eq!(freshness(b"\x00\x01"), 0);
    }
}
