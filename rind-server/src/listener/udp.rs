//! DNS over UDP (RFC 1035 §4.2.1).
//!
//! One receive loop per socket, the sockets sharing one port through `SO_REUSEPORT`, so the
//! kernel spreads clients over the cores. Answers that need no waiting (special-use names,
//! local records, cache hits) are written from the receive loop itself; only queries that go
//! upstream get a task of their own.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handler::{Handler, Step};
use crate::request::Transport;

/// Largest query accepted; longer datagrams are cut and then fail the checks with FORMERR.
const MAX_QUERY: usize = 4096;

/// Runs a receive loop on each of `sockets` until `shutdown`; forwarded queries are tracked
/// by `tracker` so shutdown can wait for them.
pub fn spawn(
    sockets: Vec<UdpSocket>,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) {
    for socket in sockets {
        let socket = Arc::new(socket);
        let handler = Arc::clone(&handler);
        let shutdown = shutdown.clone();
        let forwarded = tracker.clone();
        tracker.spawn(async move {
            receive_loop(socket, handler, shutdown, forwarded).await;
        });
    }
}

async fn receive_loop(
    socket: Arc<UdpSocket>,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut buf = vec![0u8; MAX_QUERY];
    // Made once: a fresh `cancelled()` per packet would register a waiter under the token's
    // lock every time.
    let stopped = shutdown.cancelled();
    tokio::pin!(stopped);
    loop {
        let (len, peer) = tokio::select! {
            biased;
            _ = &mut stopped => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on some systems; they concern
                    // one client, not the socket.
                    tracing::debug!(error = %e, "UDP receive error");
                    continue;
                }
            },
        };
        let Some(packet) = buf.get(..len) else {
            continue;
        };
        match handler.begin(packet, peer.ip(), Transport::Udp) {
            Step::Done(None) => {}
            Step::Done(Some(reply)) => send(&socket, &reply, peer).await,
            // The transfer module answers UDP with one message; a stream never comes here.
            Step::Transfer(_) => {}
            Step::Forward(request) => {
                let socket = Arc::clone(&socket);
                let handler = Arc::clone(&handler);
                tracker.spawn(async move {
                    let reply = handler.finish(request).await;
                    send(&socket, &reply, peer).await;
                });
            }
        }
    }
}

async fn send(socket: &UdpSocket, reply: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(reply, peer).await {
        tracing::debug!(%peer, error = %e, "UDP send failed");
    }
}
