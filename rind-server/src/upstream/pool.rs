//! A pool of UDP sockets for upstream queries, each bound to its own kernel-chosen random
//! port (RFC 5452 §9.2), so a query's source port is drawn at random from [`POOL_SIZE`]
//! ports without the `socket`/`bind`/`close` syscalls of a fresh socket per query.
//!
//! A socket is leased to one query at a time and connected to that query's upstream, so the
//! kernel drops datagrams from any other address and reports ICMP errors (a closed upstream
//! port fails the try at once). A socket stays connected between leases, so with one upstream
//! each socket is connected once. When every socket is busy, a fresh one is made for the query.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Sockets per address family.
pub const POOL_SIZE: usize = 1024;
/// Random picks tried before falling back to a fresh socket.
const PICKS: usize = 8;

/// Pooled sockets for IPv4 upstreams and, when any upstream is IPv6, for IPv6.
#[derive(Debug)]
pub struct UdpPool {
    v4: Vec<Slot>,
    v6: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    socket: UdpSocket,
    busy: AtomicBool,
    /// The upstream the socket is connected to; only the lease holder touches it.
    peer: Mutex<Option<SocketAddr>>,
}

/// A socket leased to one query; returned to the pool when dropped.
#[derive(Debug)]
pub struct Lease<'a>(Leased<'a>);

#[derive(Debug)]
enum Leased<'a> {
    /// A socket from the pool.
    Pooled(&'a Slot),
    /// A fresh socket: the pool was exhausted.
    Fresh(UdpSocket),
}

impl Lease<'_> {
    /// The leased socket.
    pub fn socket(&self) -> &UdpSocket {
        match &self.0 {
            Leased::Pooled(slot) => &slot.socket,
            Leased::Fresh(socket) => socket,
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Leased::Pooled(slot) = &self.0 {
            slot.busy.store(false, Ordering::Release);
        }
    }
}

impl UdpPool {
    /// Binds `size` sockets per family needed by `upstreams`.
    pub fn new(size: usize, upstreams: impl IntoIterator<Item = SocketAddr>) -> io::Result<Self> {
        let (mut need_v4, mut need_v6) = (false, false);
        for addr in upstreams {
            match addr {
                SocketAddr::V4(_) => need_v4 = true,
                SocketAddr::V6(_) => need_v6 = true,
            }
        }
        Ok(UdpPool {
            v4: if need_v4 {
                bind_many(size, unspecified_v4())?
            } else {
                Vec::new()
            },
            v6: if need_v6 {
                bind_many(size, unspecified_v6())?
            } else {
                Vec::new()
            },
        })
    }

    /// Sockets in the pool.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the pool has no sockets.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A socket connected to `upstream`, drawn at random.
    pub async fn lease(&self, upstream: SocketAddr) -> io::Result<Lease<'_>> {
        let (slots, local) = match upstream {
            SocketAddr::V4(_) => (&self.v4, unspecified_v4()),
            SocketAddr::V6(_) => (&self.v6, unspecified_v6()),
        };
        let lease = match pick(slots) {
            Some(slot) => {
                let lease = Lease(Leased::Pooled(slot));
                forget_readiness(&slot.socket);
                let connected = *slot.peer.lock().unwrap_or_else(PoisonError::into_inner);
                if connected != Some(upstream) {
                    slot.socket.connect(upstream).await?;
                    *slot.peer.lock().unwrap_or_else(PoisonError::into_inner) = Some(upstream);
                }
                lease
            }
            None => {
                let socket = UdpSocket::bind(local).await?;
                socket.connect(upstream).await?;
                Lease(Leased::Fresh(socket))
            }
        };
        Ok(lease)
    }
}

/// Clears what tokio remembers of `socket` being readable.
///
/// A socket whose last lease read a reply still counts as readable, so the next lease's first
/// receive would be a system call that finds nothing (about half a call per cache miss). Once
/// cleared, a datagram that arrives marks it readable again, and one already queued (a late
/// reply to an earlier lease) is read, and ignored, before the next.
fn forget_readiness(socket: &UdpSocket) {
    let _ = socket.try_io(Interest::READABLE, || {
        Err::<(), _>(io::ErrorKind::WouldBlock.into())
    });
}

fn pick(slots: &[Slot]) -> Option<&Slot> {
    if slots.is_empty() {
        return None;
    }
    (0..PICKS).find_map(|_| {
        let slot = slots.get(rand::random_range(0..slots.len()))?;
        slot.busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
            .then_some(slot)
    })
}

fn bind_many(size: usize, local: SocketAddr) -> io::Result<Vec<Slot>> {
    (0..size)
        .map(|_| {
            let socket = std::net::UdpSocket::bind(local)?;
            socket.set_nonblocking(true)?;
            Ok(Slot {
                socket: UdpSocket::from_std(socket)?,
                busy: AtomicBool::new(false),
                peer: Mutex::new(None),
            })
        })
        .collect()
}

fn unspecified_v4() -> SocketAddr {
    (Ipv4Addr::UNSPECIFIED, 0).into()
}

fn unspecified_v6() -> SocketAddr {
    (Ipv6Addr::UNSPECIFIED, 0).into()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use tokio::time::timeout;

    use super::*;

    #[tokio::test]
    async fn leases_are_exclusive_and_ports_vary() {
        let upstream: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let pool = UdpPool::new(64, [upstream]).expect("pool");
        assert_eq!(pool.len(), 64);
        let mut leases = Vec::new();
        let mut ports = HashSet::new();
        for _ in 0..32 {
            let lease = pool.lease(upstream).await.expect("lease");
            ports.insert(lease.socket().local_addr().expect("addr").port());
            leases.push(lease);
        }
        // 32 sockets in use at once are 32 distinct sockets, pooled or fresh.
        assert_eq!(ports.len(), 32);
        drop(leases);
        let busy = pool
            .v4
            .iter()
            .filter(|s| s.busy.load(Ordering::Relaxed))
            .count();
        assert_eq!(busy, 0, "dropped leases return their sockets");
    }

    #[tokio::test]
    async fn a_new_lease_does_not_start_out_readable() {
        let upstream = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let upstream_addr = upstream.local_addr().expect("addr");
        let pool = UdpPool::new(1, [upstream_addr]).expect("pool");
        let wait = Duration::from_millis(50);

        let lease = pool.lease(upstream_addr).await.expect("lease");
        let local = lease.socket().local_addr().expect("addr");
        upstream.send_to(b"reply", local).await.expect("send");
        let mut buf = [0u8; 16];
        let len = timeout(Duration::from_secs(5), lease.socket().recv(&mut buf))
            .await
            .expect("in time")
            .expect("recv");
        assert_eq!(buf.get(..len), Some(&b"reply"[..]));
        drop(lease);

        let lease = pool.lease(upstream_addr).await.expect("lease");
        assert_eq!(
            lease.socket().local_addr().expect("addr"),
            local,
            "the one pooled socket"
        );
        assert!(
            timeout(wait, lease.socket().readable()).await.is_err(),
            "nothing is queued, so the socket must not count as readable"
        );
        upstream.send_to(b"next", local).await.expect("send");
        let len = timeout(Duration::from_secs(5), lease.socket().recv(&mut buf))
            .await
            .expect("a datagram that arrives is still seen")
            .expect("recv");
        assert_eq!(buf.get(..len), Some(&b"next"[..]));
    }
}
