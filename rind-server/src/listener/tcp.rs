//! DNS over TCP (RFC 1035 §4.2.2, RFC 7766).
//!
//! Each connection has a reader and a writer. The reader takes length-prefixed queries one
//! after another and starts each in its own task, so queries are pipelined and answered in
//! any order (RFC 7766 §6.2.1.1); the writer sends replies as they finish. Limits keep one
//! client from hurting the others:
//! - at most `--max-tcp-connections` connections; more are closed at once;
//! - an idle connection is closed after `--tcp-idle-timeout`;
//! - a query whose length prefix has arrived must arrive whole within [`MESSAGE_TIMEOUT`], so a
//!   byte-at-a-time sender only holds its own connection, and never for long;
//! - a length prefix too short for a DNS header closes the connection: the stream can no longer
//!   be framed;
//! - at most [`MAX_IN_FLIGHT`] queries per connection are resolved at once; the reader waits;
//! - a client that does not read its replies is dropped after [`WRITE_TIMEOUT`].
//!
//! A half-closed connection (the client shut its sending side) still gets every reply.
//!
//! DNS over TLS (RFC 7858) is this listener with a TLS handshake in front ([`spawn_tls`]):
//! the same framing and limits, with its own connection count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tokio_rustls::TlsAcceptor;

use crate::handler::{Handler, Step};
use crate::listener::tls;
use crate::request::Transport;

/// Time for the rest of a query once its length prefix has arrived.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a client to take one reply.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Queries resolved at once for one connection.
pub const MAX_IN_FLIGHT: usize = 64;
/// A DNS message starts with a 12-byte header; a shorter frame cannot be a query.
const HEADER_LEN: u16 = 12;

/// Limits for the TCP listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Idle time before the server closes a connection.
    pub idle_timeout: Duration,
}

/// Accepts connections on `listener` until `shutdown`.
pub fn spawn(
    listener: TcpListener,
    limits: Limits,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    let stop = shutdown.clone();
    spawn_accept_loop(
        listener,
        limits.max_connections,
        stop,
        tracker,
        move |stream, peer| {
            let (handler, shutdown) = (Arc::clone(&handler), shutdown.clone());
            async move {
                // Replies are small and latency matters more than packet count.
                let _ = stream.set_nodelay(true);
                // Owned halves: dropping the writer sends FIN at once, even while the reader goes on.
                let (reader, writer) = stream.into_split();
                let transport = Transport::Tcp;
                serve_as(
                    transport,
                    reader,
                    writer,
                    peer,
                    limits.idle_timeout,
                    handler,
                    shutdown,
                )
                .await;
            }
        },
    );
}

/// Accepts DNS-over-TLS connections on `listener` until `shutdown`: a TLS handshake (at most
/// [`tls::HANDSHAKE_TIMEOUT`]), then the same framing and limits as [`spawn`].
pub fn spawn_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: Limits,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    let stop = shutdown.clone();
    spawn_accept_loop(
        listener,
        limits.max_connections,
        stop,
        tracker,
        move |stream, peer| {
            let (acceptor, handler) = (acceptor.clone(), Arc::clone(&handler));
            let shutdown = shutdown.clone();
            async move {
                let _ = stream.set_nodelay(true);
                let handshake = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    done = tls::handshake(&acceptor, stream, peer) => done,
                };
                let Some(stream) = handshake else { return };
                // The halves share the TLS state under a lock; dropping the writer sends
                // close_notify and FIN once every reply is out.
                let (reader, writer) = tokio::io::split(stream);
                let transport = Transport::Tls;
                serve_as(
                    transport,
                    reader,
                    writer,
                    peer,
                    limits.idle_timeout,
                    handler,
                    shutdown,
                )
                .await;
            }
        },
    );
}

/// Accepts connections on `listener` until `shutdown`, at most `max_connections` open at
/// once (more are closed on accept), each served by `serve` in a task `tracker` follows.
/// Shared by DNS over TCP, DNS over TLS and DNS over HTTPS.
pub fn spawn_accept_loop<F, Fut>(
    listener: TcpListener,
    max_connections: usize,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let connections = tracker.clone();
    tracker.spawn(async move {
        accept_loop(listener, max_connections, shutdown, connections, serve).await;
    });
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    max_connections: usize,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut backoff = Duration::from_millis(10);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(10);
                    a
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "connection limit reached; closing the new connection");
            drop(stream);
            continue;
        };
        let served = serve(stream, peer);
        tracker.spawn(async move {
            served.await;
            drop(slot);
        });
    }
}

/// Serves one connection given as its two halves: length-prefixed queries read from `reader`,
/// length-prefixed replies written to `writer`, with the limits above, until EOF, a bad
/// frame, the idle timeout or `shutdown`; returns once every reply is written. The listener
/// passes a TCP stream's halves; tests and fuzz targets pass in-memory ones
/// (`tokio::io::split` of a `tokio::io::duplex`).
pub async fn serve<R, W>(
    reader: R,
    writer: W,
    peer: SocketAddr,
    idle_timeout: Duration,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let transport = Transport::Tcp;
    serve_as(
        transport,
        reader,
        writer,
        peer,
        idle_timeout,
        handler,
        shutdown,
    )
    .await;
}

/// [`serve`] for queries that arrived over `transport` (TCP or TLS: the framing is the same).
pub async fn serve_as<R, W>(
    transport: Transport,
    reader: R,
    writer: W,
    peer: SocketAddr,
    idle_timeout: Duration,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (replies, outbox) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT);
    let write_side = tokio::spawn(write_replies(writer, outbox));
    read_queries(
        reader,
        transport,
        peer,
        idle_timeout,
        &handler,
        &shutdown,
        replies,
    )
    .await;
    // The writer ends once every query task has sent its reply and dropped its sender.
    let _ = write_side.await;
}

async fn read_queries(
    mut reader: impl AsyncRead + Unpin,
    transport: Transport,
    peer: SocketAddr,
    idle_timeout: Duration,
    handler: &Arc<Handler>,
    shutdown: &CancellationToken,
    replies: mpsc::Sender<Vec<u8>>,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let len = tokio::select! {
            _ = shutdown.cancelled() => return,
            read = timeout(idle_timeout, reader.read_u16()) => match read {
                Ok(Ok(len)) => len,
                // Idle timeout, EOF (a half-close included) or a reset.
                _ => return,
            },
        };
        if len < HEADER_LEN {
            tracing::debug!(%peer, len, "TCP length prefix too short for DNS; closing");
            return;
        }
        let mut packet = vec![0u8; usize::from(len)];
        match timeout(MESSAGE_TIMEOUT, reader.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            _ => {
                tracing::debug!(%peer, "TCP query incomplete; closing");
                return;
            }
        }
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let handler = Arc::clone(handler);
        let replies = replies.clone();
        tokio::spawn(async move {
            // A closed writer means the client is gone; replies have nowhere to go.
            match handler.begin(&packet, peer.ip(), transport) {
                Step::Done(None) => {}
                Step::Done(Some(reply)) => {
                    let _ = replies.send(reply).await;
                }
                Step::Forward(waiting) => {
                    let _ = replies.send(handler.finish(waiting).await).await;
                }
                Step::Transfer(stream) => handler.transfer(stream, &replies).await,
            }
            drop(permit);
        });
    }
}

async fn write_replies(mut writer: impl AsyncWrite + Unpin, mut outbox: mpsc::Receiver<Vec<u8>>) {
    while let Some(reply) = outbox.recv().await {
        let Ok(len) = u16::try_from(reply.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        match timeout(WRITE_TIMEOUT, writer.write_all(&framed)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
    let _ = writer.shutdown().await;
}
