//! rind-server: a local DNS forwarder and cache whose local records are managed over REST.
//!
//! # Layout
//!
//! One query travels through one module per stage; the arrows are plain Rust types, so each
//! stage can be tested alone and [`handler::Handler`] drives the whole path without sockets.
//!
//! ```text
//! listener::{udp,tcp} ─bytes─▶ request ─Request─▶ resolver ─Answer─▶ response ─bytes─▶ client
//!  framing, limits,            drop, NOTIMP,      local records       ID/RD/0x20 echo,
//!  timeouts                    FORMERR, REFUSED,  special-use names   OPT echo, TC=1
//!                              BADVERS            upstream (coalesced)
//! ```
//!
//! - [`config`]: every flag with its env twin, validated into a [`config::Config`];
//! - [`listener`]: DNS over UDP and TCP;
//! - [`request`]: the staged packet checks and the ACL;
//! - [`handler`]: bytes in → bytes out, tying the stages together;
//! - [`resolver`]: the order of answer sources; [`records`] for local records (index, answering
//!   rules, RDATA, the write path); [`special`] for special-use names;
//! - [`upstream`]: forwarding, upstream health, reply matching, coalescing;
//! - [`response`]: writing the reply;
//! - [`store`]: the only code that touches sled (records tree, group-committed flushes,
//!   snapshots);
//! - [`api`]: the HTTP routes (REST records API, snapshots); [`metrics`]: counters for
//!   `/metrics`.
//!
//! [`run`] takes sockets already bound (so port 0 works and bind errors are the caller's to
//! report) and a shutdown token, in the manner of mini-redis's `server::run`.

#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod handler;
pub mod listener;
pub mod metrics;
pub mod records;
pub mod request;
pub mod resolver;
pub mod response;
pub mod special;
pub mod store;
pub mod upstream;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::handler::Handler;
use crate::metrics::Metrics;
use crate::records::Records;
use crate::request::Acl;
use crate::resolver::Resolver;
use crate::store::Store;
use crate::upstream::Forwarder;

/// How long shutdown waits for queries in flight before it stops anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The listening sockets, bound before [`run`].
#[derive(Debug)]
pub struct Sockets {
    /// DNS over UDP.
    pub udp: UdpSocket,
    /// DNS over TCP, on the same port as `udp`.
    pub tcp: TcpListener,
    /// The HTTP API.
    pub http: TcpListener,
}

/// A listen address that could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The DNS address.
    #[error("cannot listen for DNS on {addr}: {source} (is another DNS server running there? try --dns-addr 127.0.0.1:5353)")]
    Dns {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
    /// The HTTP address.
    #[error("cannot listen for HTTP on {addr}: {source} (choose another with --http-addr)")]
    Http {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
}

/// Binds the DNS (UDP and TCP, one port) and HTTP listeners of `config`.
pub async fn bind(config: &Config) -> Result<Sockets, BindError> {
    let dns = config.dns_addr;
    let dns_error = |source| BindError::Dns { addr: dns, source };
    // With port 0 the kernel picks the UDP port; that port may be taken for TCP, so try a few.
    let attempts = if dns.port() == 0 { 16 } else { 1 };
    let mut last_error = None;
    let mut bound = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(dns).await.map_err(dns_error)?;
        let port = udp.local_addr().map_err(dns_error)?.port();
        match TcpListener::bind(SocketAddr::new(dns.ip(), port)).await {
            Ok(tcp) => {
                bound = Some((udp, tcp));
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let (udp, tcp) = match (bound, last_error) {
        (Some(b), _) => b,
        (None, Some(e)) => return Err(dns_error(e)),
        (None, None) => return Err(dns_error(io::Error::other("no bind attempt made"))),
    };
    let http = TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| BindError::Http {
            addr: config.http_addr,
            source,
        })?;
    Ok(Sockets { udp, tcp, http })
}

/// Serves DNS and HTTP on `sockets` until `shutdown` is cancelled, then drains queries in
/// flight (at most [`DRAIN_TIMEOUT`]) and flushes the store.
pub async fn run(
    config: Config,
    store: Store,
    sockets: Sockets,
    shutdown: CancellationToken,
) -> Result<(), store::StoreError> {
    let metrics = Arc::new(Metrics::new(
        config.upstreams.iter().map(ToString::to_string),
    ));
    let forwarder = Arc::new(Forwarder::new(&config.upstreams, Arc::clone(&metrics)));
    // Loaded before any listener runs, so the first query already sees every record.
    let records = Arc::new(Records::load(store::records::RecordStore::open(&store)?)?);
    let handler = Arc::new(Handler::new(
        Acl::new(config.allow.clone()),
        Resolver::new(forwarder, Arc::clone(&records)),
        Arc::clone(&metrics),
    ));

    let dns_addr = sockets.udp.local_addr().ok();
    let http_addr = sockets.http.local_addr().ok();
    let tracker = TaskTracker::new();
    let receive_loops = std::thread::available_parallelism().map_or(2, |n| n.get());
    listener::udp::spawn(
        Arc::new(sockets.udp),
        receive_loops,
        Arc::clone(&handler),
        shutdown.clone(),
        &tracker,
    );
    listener::tcp::spawn(
        sockets.tcp,
        listener::tcp::Limits {
            max_connections: config.max_tcp_connections,
            idle_timeout: config.tcp_idle_timeout,
        },
        handler,
        shutdown.clone(),
        &tracker,
    );
    let api_state = Arc::new(api::ApiState {
        token: config.api_token.clone(),
        metrics,
        records,
        snapshot_dir: config.snapshot_dir.clone(),
    });
    let http = tokio::spawn(
        warp::serve(api::routes(api_state))
            .incoming(sockets.http)
            .graceful(shutdown.clone().cancelled_owned())
            .run(),
    );
    tracing::info!(
        "listening dns={} http={}",
        show_addr(dns_addr),
        show_addr(http_addr)
    );

    shutdown.cancelled().await;
    tracing::info!("shutting down: finishing queries in flight");
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("queries still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, http).await.is_err() {
        tracing::warn!("HTTP requests still open after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    let flushed = tokio::task::spawn_blocking(move || store.flush()).await;
    match flushed {
        Ok(result) => result,
        Err(join) => {
            tracing::error!(error = %join, "store flush task failed");
            Ok(())
        }
    }
}

fn show_addr(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "?".to_string(), |a| a.to_string())
}
