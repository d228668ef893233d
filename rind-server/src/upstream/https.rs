//! DNS over HTTPS to one upstream (RFC 8484): POSTs of `application/dns-message` over one
//! HTTP/2 connection, many streams at once.
//!
//! The client is the `h2` crate over tokio-rustls (ALPN `h2`), not reqwest or hyper's pooled
//! client: rind needs exactly one connection per upstream, opened and closed when it says, and
//! its handshakes counted; `h2` is the HTTP/2 engine under both anyway.
//!
//! - The connection is opened on first use (one handshake shared by a burst), reused while it
//!   lives, and closed after [`IDLE`] with no request in flight; a server's GOAWAY or a broken
//!   connection makes the next query open a new one (and a query that met a dead *reused*
//!   connection is sent once more on a fresh one).
//! - Queries carry ID 0 (RFC 8484 §4.1, so HTTP caches can share answers); the reply must have
//!   status 200, content type `application/dns-message`, at most 65,535 bytes, ID 0 and the
//!   question asked.
//! - Failed connects back off as for DoT ([`super::tls`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use hickory_proto::op::Message;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsConnector;

use super::exchange::{self, ExchangeError, Question};
use super::tls::{BACKOFF_MAX, BACKOFF_MIN};
use super::Backoff;

/// A connection with no request in flight for this long is closed.
pub const IDLE: Duration = Duration::from_secs(30);
/// The media type of DNS messages (RFC 8484 §6).
const DNS_MESSAGE: &str = "application/dns-message";
/// Largest DNS message; a longer body is not one.
const MAX_BODY: usize = 65_535;

/// The DoH client of one upstream.
pub struct DohClient {
    addr: SocketAddr,
    name: ServerName<'static>,
    /// The URL, parsed when first needed (a bad one fails each try, loudly in the log).
    uri: String,
    connector: TlsConnector,
    connection: Mutex<Option<Arc<Connection>>>,
    opening: tokio::sync::Mutex<()>,
    backoff: Backoff,
    on_connect: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for DohClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DohClient")
            .field("addr", &self.addr)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

struct Connection {
    send: SendRequest<Bytes>,
    in_flight: AtomicUsize,
    /// When it was opened; `last_used_ms` counts from here.
    opened: Instant,
    last_used_ms: AtomicU64,
    /// Set when the idle timer closes it, or when the server ends it.
    closed: AtomicBool,
}

impl Connection {
    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used_ms.load(Ordering::Acquire));
        self.opened.elapsed().saturating_sub(last)
    }
}

/// Counts one request in flight on a connection while it lives.
struct InFlight<'a>(&'a Connection);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl DohClient {
    /// A client POSTing to `uri` at `addr` (shown in logs as `label`), checking the certificate against `name` with
    /// `config` (which must offer ALPN `h2`); `on_connect` is called after each handshake.
    pub fn new(
        label: String,
        addr: SocketAddr,
        name: ServerName<'static>,
        uri: String,
        config: Arc<rustls::ClientConfig>,
        on_connect: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        DohClient {
            addr,
            name,
            uri,
            connector: TlsConnector::from(config),
            connection: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            backoff: Backoff::new(label, BACKOFF_MIN, BACKOFF_MAX),
            on_connect,
        }
    }

    /// Asks the question once, before `deadline`.
    pub async fn exchange(
        &self,
        question: Question<'_>,
        deadline: Instant,
    ) -> Result<Message, ExchangeError> {
        timeout_at(deadline, async {
            let (connection, reused) = self.connection(None).await?;
            match self.ask(&connection, question).await {
                Err(ExchangeError::Closed) if reused => {
                    let (fresh, _) = self.connection(Some(&connection)).await?;
                    self.ask(&fresh, question).await
                }
                other => other,
            }
        })
        .await
        .map_err(|_| ExchangeError::Timeout)?
    }

    /// The live connection (and `true`), or a new one; `dead` is one that just failed.
    async fn connection(
        &self,
        dead: Option<&Arc<Connection>>,
    ) -> Result<(Arc<Connection>, bool), ExchangeError> {
        if let Some(connection) = self.live(dead) {
            return Ok((connection, true));
        }
        let _opening = self.opening.lock().await;
        if let Some(connection) = self.live(dead) {
            return Ok((connection, true));
        }
        self.backoff.check()?;
        let (send, driver) = match self.handshake().await {
            Ok(opened) => {
                self.backoff.succeeded();
                opened
            }
            Err(e) => {
                self.backoff.failed(&e);
                return Err(e);
            }
        };
        (self.on_connect)();
        let connection = Arc::new(Connection {
            send,
            in_flight: AtomicUsize::new(0),
            opened: Instant::now(),
            last_used_ms: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(drive(driver, Arc::clone(&connection)));
        *self.slot() = Some(Arc::clone(&connection));
        Ok((connection, false))
    }

    /// The connection in the slot unless it is `dead` or closed.
    fn live(&self, dead: Option<&Arc<Connection>>) -> Option<Arc<Connection>> {
        let mut slot = self.slot();
        let usable = slot.as_ref().is_some_and(|c| {
            !dead.is_some_and(|d| Arc::ptr_eq(c, d)) && !c.closed.load(Ordering::Acquire)
        });
        if !usable {
            *slot = None;
            return None;
        }
        slot.as_ref().map(Arc::clone)
    }

    async fn handshake(&self) -> Result<(SendRequest<Bytes>, Driver), ExchangeError> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = self.connector.connect(self.name.clone(), tcp).await?;
        let (_, session) = tls.get_ref();
        if session.alpn_protocol() != Some(b"h2") {
            return Err(ExchangeError::Http(
                "the server did not agree to HTTP/2 (ALPN h2)".to_string(),
            ));
        }
        h2::client::handshake(tls)
            .await
            .map_err(|e| ExchangeError::Http(e.to_string()))
    }

    /// POSTs the question on `connection` and reads the reply.
    async fn ask(
        &self,
        connection: &Arc<Connection>,
        question: Question<'_>,
    ) -> Result<Message, ExchangeError> {
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        let _in_flight = InFlight(connection);
        if connection.closed.load(Ordering::Acquire) {
            return Err(ExchangeError::Closed);
        }
        let now = u64::try_from(connection.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        connection.last_used_ms.fetch_max(now, Ordering::AcqRel);
        let bytes = exchange::encode_with_id(question, 0)?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.as_str())
            .header(CONTENT_TYPE, DNS_MESSAGE)
            .header(ACCEPT, DNS_MESSAGE)
            .header(CONTENT_LENGTH, bytes.len())
            .body(())
            .map_err(|e| ExchangeError::Http(e.to_string()))?;
        // An error before the request is on the wire means the connection is gone.
        let mut send = connection
            .send
            .clone()
            .ready()
            .await
            .map_err(|_| ExchangeError::Closed)?;
        let (response, mut body_out) = send
            .send_request(request, false)
            .map_err(|_| ExchangeError::Closed)?;
        body_out
            .send_data(Bytes::from(bytes), true)
            .map_err(|e| ExchangeError::Http(e.to_string()))?;
        let response = response.await.map_err(h2_error)?;
        if response.status() != StatusCode::OK {
            return Err(ExchangeError::Http(format!(
                "HTTP status {}",
                response.status()
            )));
        }
        let media = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !media.eq_ignore_ascii_case(DNS_MESSAGE) {
            return Err(ExchangeError::Http(format!(
                "content type {media:?}, not {DNS_MESSAGE}"
            )));
        }
        let mut body = response.into_body();
        let mut buf = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(h2_error)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if buf.len() + chunk.len() > MAX_BODY {
                return Err(ExchangeError::Http("reply over 65,535 bytes".to_string()));
            }
            buf.extend_from_slice(&chunk);
        }
        match Message::from_vec(&buf) {
            Ok(reply) if exchange::matches(&reply, 0, question.query) => Ok(reply),
            Ok(_) => Err(ExchangeError::Http(
                "the reply does not answer the question".to_string(),
            )),
            Err(e) => Err(ExchangeError::Http(format!(
                "the reply does not parse: {e}"
            ))),
        }
    }

    fn slot(&self) -> MutexGuard<'_, Option<Arc<Connection>>> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The HTTP/2 connection's I/O, driven by its own task.
type Driver = h2::client::Connection<tokio_rustls::client::TlsStream<TcpStream>, Bytes>;

/// Drives `driver` until the server ends the connection or it has been idle for [`IDLE`]
/// (then dropping it closes the TCP connection).
async fn drive(mut driver: Driver, connection: Arc<Connection>) {
    let check_every = IDLE / 4;
    loop {
        tokio::select! {
            ended = &mut driver => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "DoH connection ended");
                }
                break;
            }
            () = tokio::time::sleep(check_every) => {
                if connection.in_flight.load(Ordering::Acquire) == 0
                    && connection.idle_for() >= IDLE
                {
                    break;
                }
            }
        }
    }
    // A request that slipped in after the check meets a closed connection and is sent again
    // on a fresh one.
    connection.closed.store(true, Ordering::Release);
}

/// A stream reset or GOAWAY before the reply is a closed connection (worth one more try on a
/// fresh one); anything else is a protocol failure.
fn h2_error(e: h2::Error) -> ExchangeError {
    if e.is_go_away() || e.is_io() {
        ExchangeError::Closed
    } else {
        ExchangeError::Http(e.to_string())
    }
}
