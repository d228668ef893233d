//! Many datagrams per system call: recvmmsg(2) and sendmmsg(2) on a UDP socket (Linux).
//!
//! Under load most of a cache hit's cost is the two system calls around it; reading up to
//! [`BATCH`] queries at once and writing their answers together divides that by the batch,
//! and wakes a client that sent many queries once instead of once per answer. Both calls
//! are non-blocking: the caller waits for readiness with tokio and calls these through
//! `UdpSocket::try_io`, which clears the readiness when they say `WouldBlock`.
//!
//! The headers are rebuilt on each call from plain buffers, so no raw pointer outlives a
//! call and the buffers can live in a `Send` future.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::ptr;

/// Most datagrams read or written by one call.
pub const BATCH: usize = 32;

/// Room for [`BATCH`] datagrams of up to `size` bytes each, and who sent them.
pub struct Received {
    size: usize,
    data: Vec<u8>,
    lens: [usize; BATCH],
    peers: [Option<SocketAddr>; BATCH],
    count: usize,
}

impl Received {
    /// Buffers for datagrams of up to `size` bytes (not 0); longer ones are cut to `size`.
    pub fn new(size: usize) -> Self {
        debug_assert!(size > 0, "a datagram buffer needs room");
        Received {
            size,
            data: vec![0; size * BATCH],
            lens: [0; BATCH],
            peers: [None; BATCH],
            count: 0,
        }
    }

    /// The datagrams of the last [`recv`], with their senders (`None`: not an IP address).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<SocketAddr>)> {
        self.data
            .chunks_exact(self.size)
            .zip(self.lens.iter().zip(self.peers.iter()))
            .take(self.count)
            .map(|(slot, (&len, &peer))| (slot.get(..len).unwrap_or(slot), peer))
    }
}

/// Reads the datagrams waiting on `fd` into `into`, at most [`BATCH`]; how many were read.
/// `WouldBlock` when none waits.
pub fn recv(fd: RawFd, into: &mut Received) -> io::Result<usize> {
    into.count = 0;
    // SAFETY: all-zero is a valid value of these plain C structs (null pointers, zero sizes).
    let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { mem::zeroed() };
    let mut iovecs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
    for (((slot, iovec), header), addr) in into
        .data
        .chunks_exact_mut(into.size)
        .zip(iovecs.iter_mut())
        .zip(headers.iter_mut())
        .zip(addrs.iter_mut())
    {
        iovec.iov_base = slot.as_mut_ptr().cast();
        iovec.iov_len = slot.len();
        header.msg_hdr.msg_iov = iovec;
        header.msg_hdr.msg_iovlen = 1;
        header.msg_hdr.msg_name = ptr::from_mut(addr).cast();
        header.msg_hdr.msg_namelen = socklen_of::<libc::sockaddr_storage>();
    }
    // SAFETY: every header points at a live iovec over its own slot of `into.data` and at
    // its own sockaddr_storage, all of them alive and unaliased until the call returns.
    let read = unsafe {
        libc::recvmmsg(
            fd,
            headers.as_mut_ptr(),
            BATCH as libc::c_uint,
            // `as _`: the flags are a c_int in glibc and a c_uint in musl.
            libc::MSG_DONTWAIT as _,
            ptr::null_mut(),
        )
    };
    let read = usize::try_from(read).map_err(|_| io::Error::last_os_error())?;
    for ((header, addr), (len, peer)) in headers
        .iter()
        .zip(addrs.iter())
        .zip(into.lens.iter_mut().zip(into.peers.iter_mut()))
        .take(read)
    {
        *len = usize::try_from(header.msg_len).map_or(into.size, |n| n.min(into.size));
        *peer = from_sockaddr(addr, header.msg_hdr.msg_namelen);
    }
    into.count = read;
    Ok(read)
}

/// Sends each datagram to its address with one call, at most [`BATCH`] of them; how many
/// went out, in order. An error is the first datagram's: the caller skips it and goes on.
pub fn send(fd: RawFd, datagrams: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    let datagrams = datagrams.get(..BATCH).unwrap_or(datagrams);
    // SAFETY: as in `recv`.
    let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { mem::zeroed() };
    let mut iovecs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
    for ((((bytes, to), iovec), header), addr) in datagrams
        .iter()
        .zip(iovecs.iter_mut())
        .zip(headers.iter_mut())
        .zip(addrs.iter_mut())
    {
        // sendmmsg only reads through iov_base; the pointer is mutable by the C type alone.
        iovec.iov_base = bytes.as_ptr().cast_mut().cast();
        iovec.iov_len = bytes.len();
        header.msg_hdr.msg_iov = iovec;
        header.msg_hdr.msg_iovlen = 1;
        header.msg_hdr.msg_namelen = to_sockaddr(*to, addr);
        header.msg_hdr.msg_name = ptr::from_mut(addr).cast();
    }
    // SAFETY: the first `datagrams.len()` headers point at live iovecs over the callers'
    // bytes and at filled sockaddrs, all alive until the call returns.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            headers.as_mut_ptr(),
            datagrams.len() as libc::c_uint,
            libc::MSG_DONTWAIT as _,
        )
    };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

fn socklen_of<T>() -> libc::socklen_t {
    // Socket address structs are at most 128 bytes.
    mem::size_of::<T>() as libc::socklen_t
}

/// The IP address and port in `addr`, if it holds one.
fn from_sockaddr(addr: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match libc::c_int::from(addr.ss_family) {
        libc::AF_INET if len >= socklen_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in (family and length say so), and
            // sockaddr_storage is large and aligned enough for any socket address.
            let v4 = unsafe { &*ptr::from_ref(addr).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if len >= socklen_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let v6 = unsafe { &*ptr::from_ref(addr).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `storage` as the C struct of its family; returns its length.
fn to_sockaddr(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
            let out = unsafe { &mut *ptr::from_mut(storage).cast::<libc::sockaddr_in>() };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = v4.port().to_be();
            out.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            socklen_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for a sockaddr_in6.
            let out = unsafe { &mut *ptr::from_mut(storage).cast::<libc::sockaddr_in6>() };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = v6.port().to_be();
            out.sin6_addr.s6_addr = v6.ip().octets();
            out.sin6_flowinfo = v6.flowinfo();
            out.sin6_scope_id = v6.scope_id();
            socklen_of::<libc::sockaddr_in6>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn addresses_survive_the_round_trip_through_c() {
        for addr in [
            "192.0.2.7:5353".parse::<SocketAddr>().expect("v4"),
            "[2001:db8::1]:53".parse().expect("v6"),
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 853, 7, 3)),
        ] {
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
            let len = to_sockaddr(addr, &mut storage);
            assert_eq!(from_sockaddr(&storage, len), Some(addr));
        }
    }

    #[test]
    fn a_batch_goes_out_and_comes_back_in_order_and_cut_to_size() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = server.local_addr().expect("addr");
        let datagrams = (0u8..40)
            .map(|i| (vec![i; usize::from(i) + 1], to))
            .collect::<Vec<_>>();
        // Forty datagrams take two calls of at most BATCH.
        let first = send(client.as_raw_fd(), &datagrams).expect("send");
        assert_eq!(first, BATCH);
        let second = send(client.as_raw_fd(), &datagrams[first..]).expect("send");
        assert_eq!(second, 40 - BATCH);

        let mut received = Received::new(16);
        let mut seen = Vec::new();
        for _ in 0..10 {
            match recv(server.as_raw_fd(), &mut received) {
                Ok(_) => seen.extend(received.iter().map(|(b, p)| (b.to_vec(), p))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if seen.len() == 40 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(seen.len(), 40);
        let from = client.local_addr().expect("addr");
        for (i, (bytes, peer)) in seen.iter().enumerate() {
            let i = u8::try_from(i).expect("small");
            let want = usize::from(i).min(15) + 1;
            assert_eq!(bytes, &vec![i; want], "datagram {i}, cut to 16 bytes");
            assert_eq!(*peer, Some(from));
        }
    }
}
