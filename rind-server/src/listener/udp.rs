//! DNS over UDP (RFC 1035 §4.2.1).
//!
//! One receive loop per socket, the sockets sharing one port through `SO_REUSEPORT`, so the
//! kernel spreads clients over the cores. Answers that need no waiting (special-use names,
//! local records, cache hits) are written from the receive loop itself; only queries that go
//! upstream get a task of their own. The loop reads the queries waiting in one system call
//! and writes the answers it has for them in one more (recvmmsg and sendmmsg, in `mmsg`).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::mmsg::{self, Received};
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
    let fd = socket.as_raw_fd();
    let mut received = Received::new(MAX_QUERY);
    let mut replies = Vec::with_capacity(mmsg::BATCH);
    // Made once: a fresh `cancelled()` per packet would register a waiter under the token's
    // lock every time.
    let stopped = shutdown.cancelled();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => return,
            ready = socket.readable() => {
                if let Err(e) = ready {
                    tracing::warn!(error = %e, "UDP socket failed; no longer reading it");
                    return;
                }
            }
        }
        match socket.try_io(Interest::READABLE, || mmsg::recv(fd, &mut received)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems; they concern
                // one client, not the socket.
                tracing::debug!(error = %e, "UDP receive error");
                continue;
            }
        }
        for (packet, peer) in received.iter() {
            // Neither readiness nor the calls above use tokio's budget: this makes the loop
            // give way to other tasks under a flood, as the single reads it replaced did.
            tokio::task::consume_budget().await;
            let Some(peer) = peer else {
                tracing::debug!("UDP datagram from a sender that is not an IP address");
                continue;
            };
            match handler.begin(packet, peer.ip(), Transport::Udp) {
                Step::Done(None) => {}
                Step::Done(Some(reply)) => replies.push((reply, peer)),
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
        send_all(&socket, &mut replies).await;
    }
}

/// Sends every reply in `replies` and empties it; a reply the kernel refuses is skipped.
async fn send_all(socket: &UdpSocket, replies: &mut Vec<(Vec<u8>, SocketAddr)>) {
    let fd = socket.as_raw_fd();
    let mut start = 0;
    while let Some(rest) = replies.get(start..).filter(|rest| !rest.is_empty()) {
        match socket.try_io(Interest::WRITABLE, || mmsg::send(fd, rest)) {
            Ok(sent) => start += sent.max(1),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::task::consume_budget().await;
                if socket.writable().await.is_err() {
                    break;
                }
            }
            Err(e) => {
                let peer = rest.first().map(|(_, peer)| *peer);
                tracing::debug!(?peer, error = %e, "UDP send failed");
                start += 1;
            }
        }
    }
    replies.clear();
}

async fn send(socket: &UdpSocket, reply: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(reply, peer).await {
        tracing::debug!(%peer, error = %e, "UDP send failed");
    }
}
