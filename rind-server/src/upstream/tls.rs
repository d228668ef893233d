//! DNS over TLS to one upstream (RFC 7858): a few long-lived connections, each carrying many
//! queries at once (RFC 7766 §6.2.1.1 pipelining: replies come in any order and are matched
//! by message ID and question).
//!
//! - A query goes on the first open connection with fewer than [`BUSY`] queries waiting; when
//!   all are that busy, another is opened, up to [`MAX_CONNECTIONS`]; past that the least busy
//!   one takes it. Opening is serialised, so a burst at start shares one handshake.
//! - A connection is closed after [`IDLE`] with nothing waiting, and ends when the server
//!   closes it or sends something unreadable; its waiting queries then fail at once. A query
//!   that met a closed *reused* connection is sent once more on a fresh one (servers close
//!   idle connections whenever they like, RFC 7858 §3.4).
//! - After a failed connect or handshake, new connects wait out a backoff (from
//!   [`BACKOFF_MIN`], doubling to [`BACKOFF_MAX`]); tries meanwhile fail at once, so the
//!   forwarder moves on to the next upstream without waiting.
//! - There is no fallback to plain DNS, ever: a certificate that does not check out is a
//!   failed try.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout_at, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::exchange::{self, ExchangeError, Question};
use super::Backoff;

/// Queries waiting on one connection before another is opened.
pub const BUSY: usize = 64;
/// Most connections to one upstream.
pub const MAX_CONNECTIONS: usize = 4;
/// A connection with nothing waiting for this long is closed.
pub const IDLE: Duration = Duration::from_secs(10);
/// First wait after a failed connect.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest wait after failed connects.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Queued writes per connection; a full queue makes the query wait, not fail.
const QUEUE: usize = 256;
/// Most queued queries taken into one write.
const WRITE_BATCH: usize = 64;
/// Bytes asked for in one read of replies.
const READ_BUFFER: usize = 16 * 1024;

/// The DoT client of one upstream.
pub struct DotClient {
    addr: SocketAddr,
    name: ServerName<'static>,
    connector: TlsConnector,
    connections: Mutex<Vec<Arc<Connection>>>,
    /// Held while opening a connection, so concurrent askers wait and share it.
    opening: tokio::sync::Mutex<()>,
    backoff: Backoff,
    on_connect: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for DotClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DotClient")
            .field("addr", &self.addr)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One open connection: the writer's queue and the queries waiting for a reply.
struct Connection {
    queue: mpsc::Sender<Vec<u8>>,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    /// Set (under this lock) when the connection ends; nothing is added after.
    closed: bool,
    by_id: HashMap<u16, Waiter>,
    /// Numbers the waiters, so a finished query never removes a later one that drew its ID.
    next_ticket: u64,
}

struct Waiter {
    query: Query,
    reply: oneshot::Sender<Message>,
    ticket: u64,
}

impl Connection {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Each change is one insert, remove or flag: consistent even after a panic.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn load(&self) -> Option<usize> {
        let waiting = self.lock();
        (!waiting.closed).then_some(waiting.by_id.len())
    }
}

/// Takes a query's waiter out of the table when the try ends, answered or not.
struct Registration<'a> {
    connection: &'a Connection,
    id: u16,
    ticket: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut waiting = self.connection.lock();
        if waiting
            .by_id
            .get(&self.id)
            .is_some_and(|w| w.ticket == self.ticket)
        {
            waiting.by_id.remove(&self.id);
        }
    }
}

impl DotClient {
    /// A client for `addr` (shown in logs as `label`), checking the certificate against `name` with `config`;
    /// `on_connect` is called after each completed handshake.
    pub fn new(
        label: String,
        addr: SocketAddr,
        name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
        on_connect: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        DotClient {
            addr,
            name,
            connector: TlsConnector::from(config),
            connections: Mutex::new(Vec::new()),
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
            let (connection, reused) = self.connection().await?;
            match self.ask(&connection, question).await {
                Err(ExchangeError::Closed) if reused => {
                    let (fresh, _) = self.open().await?;
                    self.ask(&fresh, question).await
                }
                other => other,
            }
        })
        .await
        .map_err(|_| ExchangeError::Timeout)?
    }

    /// A connection to send on, and whether it carried queries before.
    async fn connection(&self) -> Result<(Arc<Connection>, bool), ExchangeError> {
        if let Some(connection) = self.pick(false) {
            return Ok((connection, true));
        }
        let _opening = self.opening.lock().await;
        // Another asker may have opened one while this one waited.
        if let Some(connection) = self.pick(false) {
            return Ok((connection, true));
        }
        // Boxed: a handshake's future is large, and it is rare next to the queries.
        match Box::pin(self.open_locked()).await {
            Ok(connection) => Ok((connection, false)),
            Err(e) => match self.pick(true) {
                // At the cap or unable to add one: the busiest still beats failing.
                Some(connection) => Ok((connection, true)),
                None => Err(e),
            },
        }
    }

    /// An open connection with room ([`BUSY`]), or with `any`, the least busy open one.
    fn pick(&self, any: bool) -> Option<Arc<Connection>> {
        let mut connections = self.lock_connections();
        connections.retain(|c| c.load().is_some());
        let loads = connections
            .iter()
            .filter_map(|c| Some((c.load()?, c)))
            .collect::<Vec<_>>();
        if !any {
            if let Some((_, c)) = loads.iter().find(|(load, _)| *load < BUSY) {
                return Some(Arc::clone(c));
            }
            if connections.len() < MAX_CONNECTIONS {
                return None;
            }
        }
        loads
            .iter()
            .min_by_key(|(load, _)| *load)
            .map(|(_, c)| Arc::clone(c))
    }

    async fn open(&self) -> Result<(Arc<Connection>, bool), ExchangeError> {
        let _opening = self.opening.lock().await;
        Ok((Box::pin(self.open_locked()).await?, false))
    }

    /// Opens a connection; the caller holds `opening`.
    async fn open_locked(&self) -> Result<Arc<Connection>, ExchangeError> {
        if self.lock_connections().len() >= MAX_CONNECTIONS {
            return Err(ExchangeError::Closed);
        }
        self.backoff.check()?;
        let stream = match self.handshake().await {
            Ok(stream) => {
                self.backoff.succeeded();
                stream
            }
            Err(e) => {
                self.backoff.failed(&e);
                return Err(ExchangeError::Io(e));
            }
        };
        (self.on_connect)();
        let (queue, outgoing) = mpsc::channel(QUEUE);
        let connection = Arc::new(Connection {
            queue,
            waiting: Mutex::new(Waiting::default()),
        });
        let (reader, writer) = tokio::io::split(stream);
        tokio::spawn(serve(Arc::clone(&connection), reader, writer, outgoing));
        self.lock_connections().push(Arc::clone(&connection));
        Ok(connection)
    }

    async fn handshake(&self) -> io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        self.connector.connect(self.name.clone(), tcp).await
    }

    /// Sends the question on `connection` and waits for its reply.
    async fn ask(
        &self,
        connection: &Connection,
        question: Question<'_>,
    ) -> Result<Message, ExchangeError> {
        let (reply, answered) = oneshot::channel();
        let (id, ticket, bytes) = {
            let mut waiting = connection.lock();
            if waiting.closed {
                return Err(ExchangeError::Closed);
            }
            // A fresh random ID not waiting on this connection (RFC 7766 §7); with at most a
            // few hundred waiting, a free one is found in a try or two.
            let id = (0..16)
                .map(|_| rand::random::<u16>())
                .find(|id| !waiting.by_id.contains_key(id))
                .ok_or(ExchangeError::Closed)?;
            let bytes = exchange::encode_with_id(question, id)?;
            let ticket = waiting.next_ticket;
            waiting.next_ticket += 1;
            waiting.by_id.insert(
                id,
                Waiter {
                    query: question.query.clone(),
                    reply,
                    ticket,
                },
            );
            (id, ticket, bytes)
        };
        let _registration = Registration {
            connection,
            id,
            ticket,
        };
        let framed = exchange::frame(&bytes)?;
        connection
            .queue
            .send(framed)
            .await
            .map_err(|_| ExchangeError::Closed)?;
        answered.await.map_err(|_| ExchangeError::Closed)
    }

    fn lock_connections(&self) -> MutexGuard<'_, Vec<Arc<Connection>>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs one connection: writes queued queries, hands replies to their waiters, and closes
/// when idle, when the server closes, or on an unreadable frame.
///
/// Both halves work in batches to keep syscalls and wakeups per query down under load: the
/// writer takes every query already queued into one TLS write and one flush, and the reader
/// reads as much as has arrived and hands out every whole reply in it.
async fn serve(
    connection: Arc<Connection>,
    mut reader: ReadHalf<TlsStream<TcpStream>>,
    mut writer: WriteHalf<TlsStream<TcpStream>>,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
) {
    let write = async {
        let idle = tokio::time::sleep(IDLE);
        tokio::pin!(idle);
        let mut frames = Vec::with_capacity(WRITE_BATCH);
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                received = outgoing.recv_many(&mut frames, WRITE_BATCH) => {
                    if received == 0 {
                        return;
                    }
                    // Tokio runs a task woken by another right after it, so the first query
                    // of a burst would go out alone. Yielding lets the queries that are ready
                    // to run queue theirs first, and one write carries them all.
                    tokio::task::yield_now().await;
                    while frames.len() < WRITE_BATCH {
                        let Ok(frame) = outgoing.try_recv() else { break };
                        frames.push(frame);
                    }
                    batch.clear();
                    for frame in frames.drain(..) {
                        batch.extend_from_slice(&frame);
                    }
                    if writer.write_all(&batch).await.is_err() || writer.flush().await.is_err() {
                        return;
                    }
                    // Moving a deadline later is cheap in tokio: the timer entry stays put.
                    idle.as_mut().reset(Instant::now() + IDLE);
                }
                () = &mut idle => {
                    if connection.lock().by_id.is_empty() {
                        // close_notify, then the TCP close (RFC 7858 §3.4: the client closes).
                        let _ = writer.shutdown().await;
                        return;
                    }
                    idle.as_mut().reset(Instant::now() + IDLE);
                }
            }
        }
    };
    let read = async {
        let mut buf = Vec::with_capacity(READ_BUFFER);
        loop {
            // A read never gets less room than this; a long message grows the buffer.
            if buf.capacity() - buf.len() < READ_BUFFER / 2 {
                buf.reserve(READ_BUFFER);
            }
            match reader.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let mut rest = buf.as_slice();
            while let Some((message, after)) = split_frame(rest) {
                if !hand_over(&connection, message) {
                    return;
                }
                rest = after;
            }
            let used = buf.len() - rest.len();
            buf.drain(..used);
        }
    };
    tokio::select! {
        () = write => {}
        () = read => {}
    }
    let mut waiting = connection.lock();
    waiting.closed = true;
    // Dropping the senders wakes every asker with "closed".
    waiting.by_id.clear();
}

/// Gives one reply to the query waiting for it; false when the reply does not parse, which
/// ends the connection.
fn hand_over(connection: &Connection, message: &[u8]) -> bool {
    let Ok(reply) = Message::from_vec(message) else {
        tracing::debug!("DoT upstream sent a message that does not parse; closing");
        return false;
    };
    let mut waiting = connection.lock();
    let id = reply.metadata.id;
    let matched = waiting
        .by_id
        .get(&id)
        .is_some_and(|w| exchange::matches(&reply, id, &w.query));
    match waiting.by_id.remove(&id) {
        Some(waiter) if matched => {
            // The asker may have given up already; nothing to do then.
            let _ = waiter.reply.send(reply);
        }
        Some(waiter) => {
            waiting.by_id.insert(id, waiter);
            tracing::debug!("ignored a DoT reply that does not match");
        }
        None => tracing::debug!("ignored a DoT reply nobody waits for"),
    }
    true
}

/// The first whole length-prefixed message in `bytes`, and what follows it.
fn split_frame(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    (rest.len() >= len).then(|| rest.split_at(len))
}
