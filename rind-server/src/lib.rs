//! rind-server: a local DNS forwarder and cache whose local records are managed over REST.
//!
//! # Layout
//!
//! One query travels through one module per stage; the arrows are plain Rust types, so each
//! stage can be tested alone and [`handler::Handler`] drives the whole path without sockets.
//!
//! ```text
//! listener::{udp,tcp, ─bytes─▶ request ─Request─▶ resolver ─Answer─▶ response ─bytes─▶ client
//!  tls,https}                  drop, NOTIMP,      local records       ID/RD/0x20 echo,
//!  framing, limits, timeouts   FORMERR, REFUSED,  special-use names   OPT and DO echo, TC=1,
//!                              BADVERS,           blocklists          DNSSEC records and AD
//!                              rate limit;        cache ───────────── per client ▶ (hit: bytes)
//!                              DO, CD, AD read    upstream (coalesced)
//! ```
//!
//! DNSSEC passes through: every question goes upstream with DO=1, one cache entry serves
//! DO=0 and DO=1 clients (it keeps a view without RRSIG/NSEC/NSEC3), and answers fetched with
//! CD=1 are cached apart for CD=1 clients only.
//!
//! Zones make rind an authority: names under a zone are answered from the local records (or,
//! for a secondary zone, from what its primary sent) and never forwarded. AXFR/IXFR and
//! NOTIFY leave the query path after the request checks for [`transfer`]:
//!
//! ```text
//! request ─AXFR/IXFR─▶ transfer::Transfers ─messages─▶ TCP listener   (ACL, TSIG, journal)
//! request ─NOTIFY────▶ transfer::Transfers ─wake─▶ transfer::secondary (SOA check, IXFR/AXFR in)
//! records write ─zone serial moved─▶ transfer::notify (NOTIFY out, retried)
//! ```
//!
//! - [`config`]: every flag with its env twin, validated into a [`config::Config`];
//! - [`listener`]: DNS over UDP (reading and answering in batches, `recvmmsg`/`sendmmsg`) and
//!   TCP; DNS over TLS (`listener::tcp` behind a handshake) and
//!   DNS over HTTPS (`listener::https`, hyper), sharing the certificate of `listener::tls`,
//!   which SIGHUP reloads;
//! - [`request`]: the staged packet checks and the ACL; [`ratelimit`]: per-client limits;
//! - [`handler`]: bytes in → bytes out, tying the stages together;
//! - [`resolver`]: the order of answer sources; [`records`] for local records and zones (index,
//!   answering rules, RDATA, zones and their serials, the write path); [`special`] for
//!   special-use names; [`blocklist`] for blocklists and the allowlist (list formats, the
//!   compact name set the query path checks, fetching and refreshing by URL);
//! - [`cache`]: the answer cache in memory, written behind to sled, warm on restart;
//! - [`upstream`]: forwarding, upstream health, resends (RTT-based timeout), reply matching,
//!   coalescing, forward zones (split DNS); `upstream::tls` and `upstream::https` for DNS
//!   over TLS and over HTTPS, `upstream::trust` the one place their rustls settings are made;
//! - [`response`]: writing the reply;
//! - [`transfer`]: zone transfer out (AXFR, IXFR), NOTIFY out, and secondary zones pulled in;
//!   [`tsig`]: the shared-key signatures on them;
//! - [`store`]: the only code that touches sled (records tree and its integrity data,
//!   group-committed flushes, the cache trees, the blocklist trees, snapshots, the directory fsyncs sled leaves out,
//!   opening with a deadline, reopening once a big store is loaded and at a clean stop;
//!   reopening after a write error);
//! - [`api`]: the HTTP routes (REST records API, zones, cache, blocklists and allowlist,
//!   snapshots, query log, status) and the web page that drives them ([`api::web`], its
//!   files in `api/web/`);
//!   [`metrics`]: counters for `/metrics`;
//! - [`querylog`]: the last `--query-log` queries in a fixed ring, filled by [`handler`]
//!   with the source [`resolver`] reports for each answer;
//! - [`operations`]: the operations flags (query log size, log format); [`manual`]: man page
//!   and shell completions generated from the flags' definitions.
//!
//! [`run`] takes sockets already bound (so port 0 works and bind errors are the caller's to
//! report: [`bind`], or as `main` does [`bind_listeners`] first and [`bind_upstream_pool`]
//! beside the store's open), the store opened with the local records loaded
//! ([`Opened::open`], one guarded pass that also checks them) and a shutdown token, in the
//! manner of mini-redis's `server::run`.

#![warn(missing_docs)]
// Bytes from the network and the disk never get to panic the server; tests may.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod api;
pub mod blocklist;
pub mod cache;
pub mod config;
pub mod handler;
pub mod listener;
pub mod manual;
pub mod metrics;
pub mod operations;
pub mod querylog;
pub mod ratelimit;
pub mod records;
pub mod request;
pub mod resolver;
pub mod response;
pub mod special;
pub mod store;
pub mod transfer;
pub mod tsig;
pub mod upstream;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::blocklist::Blocking;
use crate::cache::{persist, Cache, CacheConfig, Clock, TtlPolicy};
use crate::config::{Config, Protocol};
use crate::handler::Handler;
use crate::metrics::Metrics;
use crate::querylog::QueryLog;
use crate::ratelimit::RateLimiter;
use crate::records::Records;
use crate::request::Acl;
use crate::resolver::Resolver;
use crate::store::Store;
use crate::transfer::Transfers;
use crate::upstream::pool::{UdpPool, POOL_SIZE};
use crate::upstream::Forwarder;

/// Receive buffer asked for on each DNS UDP socket.
const RECV_BUFFER: usize = 4 << 20;

/// Bytes the start's loads read from sled (by the estimates below) past which sled is opened
/// again before serving, to give back the pages it keeps of them: about 28,000 local records
/// or 420,000 blocklist names.
const REOPEN_AFTER_READING: u64 = 4 << 20;
/// A local record as stored (JSON, with its id and sled's overhead), roughly.
const STORED_RECORD_BYTES: u64 = 150;
/// A blocklist name as stored (its list deflated), roughly.
const STORED_NAME_BYTES: u64 = 10;

/// How long the stop's last open of sled (for its recovery snapshot) may stand still before
/// the server exits without it: a store that healthy sleds open in well under a second.
const STOP_REOPEN_DEADLINE: Duration = Duration::from_secs(5);

/// How long shutdown waits for queries in flight before it stops anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a store that failed a write is reopened to see whether it works again, so that
/// `/healthz` recovers with the disk even when no write comes.
const REPAIR_PERIOD: Duration = Duration::from_secs(1);

/// How soon a scheduled snapshot that failed is tried again (a full disk gets space back).
const SNAPSHOT_RETRY: Duration = Duration::from_secs(60);

/// The sockets, bound before [`run`].
#[derive(Debug)]
pub struct Sockets {
    /// Where clients reach rind.
    pub listeners: Listeners,
    /// Sockets for queries to UDP upstreams.
    pub upstream_pool: UdpPool,
}

/// The listening sockets, bound by [`bind_listeners`].
#[derive(Debug)]
pub struct Listeners {
    /// DNS over UDP: one socket per two cores (at least one) on the same port
    /// (`SO_REUSEPORT`), each with its own receive loop.
    pub udp: Vec<UdpSocket>,
    /// DNS over TCP, on the same port as `udp`.
    pub tcp: TcpListener,
    /// The HTTP API.
    pub http: TcpListener,
    /// DNS over TLS and DNS over HTTPS, when configured.
    pub encrypted: Option<EncryptedSockets>,
}

/// The encrypted listeners, bound, with the certificate they serve.
#[derive(Debug)]
pub struct EncryptedSockets {
    /// DNS over TLS, with its TLS settings (ALPN `dot`).
    pub dot: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    /// DNS over HTTPS, with its TLS settings (ALPN `h2`, `http/1.1`).
    pub doh: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    /// The certificate and key both serve.
    pub certificate: Arc<listener::tls::Certificate>,
    /// SIGHUP, which reloads the certificate; registered at bind time so that an early
    /// SIGHUP does not end the process.
    pub hangup: tokio::signal::unix::Signal,
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
    /// The DNS-over-TLS address.
    #[error("cannot listen for DNS over TLS on {addr}: {source} (choose another with --dot-addr)")]
    Dot {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
    /// The DNS-over-HTTPS address.
    #[error(
        "cannot listen for DNS over HTTPS on {addr}: {source} (choose another with --doh-addr)"
    )]
    Doh {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
    /// The certificate or key of the encrypted listeners.
    #[error(transparent)]
    Certificate(#[from] listener::tls::CertError),
    /// The SIGHUP handler for certificate reloads.
    #[error("cannot install the SIGHUP handler: {0}")]
    Hangup(io::Error),
    /// The pool of upstream sockets.
    #[error("cannot open {count} sockets for upstream queries: {source} (raise the open-files limit, e.g. ulimit -n 8192)")]
    UpstreamPool {
        /// Sockets asked for.
        count: usize,
        /// Why it failed.
        source: io::Error,
    },
}

/// Binds the listeners of `config` ([`bind_listeners`]) and its upstream socket pool
/// ([`bind_upstream_pool`]).
pub async fn bind(config: &Config) -> Result<Sockets, BindError> {
    let listeners = bind_listeners(config).await?;
    Ok(Sockets {
        listeners,
        upstream_pool: bind_upstream_pool(config)?,
    })
}

/// Binds the DNS (UDP and TCP, one port) and HTTP listeners of `config`; with `--dot-addr` or
/// `--doh-addr`, loads the certificate first and binds those too.
///
/// The UDP sockets share their port through `SO_REUSEPORT`; the TCP listener does not, so
/// another server already on the port is still detected by the TCP bind.
pub async fn bind_listeners(config: &Config) -> Result<Listeners, BindError> {
    let certificate = match &config.encrypted {
        Some(e) => Some(Arc::new(listener::tls::Certificate::load(&e.cert, &e.key)?)),
        None => None,
    };
    let dns = config.dns_addr;
    let dns_error = |source| BindError::Dns { addr: dns, source };
    let copies = udp_sockets(std::thread::available_parallelism().map_or(2, |n| n.get()));
    // With port 0 the kernel picks the UDP port; that port may be taken for TCP, so try a few.
    let attempts = if dns.port() == 0 { 16 } else { 1 };
    let mut last_error = None;
    let mut bound = None;
    for _ in 0..attempts {
        let first = reuseport_udp(dns).map_err(dns_error)?;
        let addr = first.local_addr().map_err(dns_error)?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => {
                bound = Some((first, addr, tcp));
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let (first, addr, tcp) = match (bound, last_error) {
        (Some(b), _) => b,
        (None, Some(e)) => return Err(dns_error(e)),
        (None, None) => return Err(dns_error(io::Error::other("no bind attempt made"))),
    };
    let mut udp = vec![first];
    for _ in 1..copies {
        udp.push(reuseport_udp(addr).map_err(dns_error)?);
    }
    let http = TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| BindError::Http {
            addr: config.http_addr,
            source,
        })?;
    let encrypted = match (&config.encrypted, certificate) {
        (Some(e), Some(certificate)) => {
            let dot = bind_optional(e.dot_addr, |addr, source| BindError::Dot { addr, source });
            let dot = match dot.await? {
                Some(l) => Some((l, certificate.server_config(&[listener::tls::ALPN_DOT])?)),
                None => None,
            };
            let doh = bind_optional(e.doh_addr, |addr, source| BindError::Doh { addr, source });
            let doh = match doh.await? {
                Some(l) => Some((l, certificate.server_config(&listener::tls::ALPN_DOH)?)),
                None => None,
            };
            let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(BindError::Hangup)?;
            Some(EncryptedSockets {
                dot,
                doh,
                certificate,
                hangup,
            })
        }
        _ => None,
    };
    Ok(Listeners {
        udp,
        tcp,
        http,
        encrypted,
    })
}

/// How many UDP sockets, each with its own receive loop, share the DNS port on `cores` CPUs:
/// one per two cores. A receive loop batches more the busier it is: on two cores, one loop
/// took 3.1 µs of CPU per cache hit where two took 3.3 to 3.5 (and Unbound 3.3) in the same
/// `bench/compare.sh` runs, with the same rate of cache misses. The other cores are left to
/// the kernel's half of each packet, the forwarding, TCP and the API.
fn udp_sockets(cores: usize) -> usize {
    (cores / 2).max(1)
}

/// Binds [`POOL_SIZE`] sockets per address family that `config`'s UDP upstreams use. Blocks
/// for tens of milliseconds: `main` runs it beside the store's open.
pub fn bind_upstream_pool(config: &Config) -> Result<UdpPool, BindError> {
    let udp_upstreams = config
        .upstreams
        .iter()
        .chain(config.forward_zones.iter().flat_map(|z| &z.upstreams))
        .filter(|u| u.protocol == Protocol::Udp)
        .map(|u| u.addr);
    UdpPool::new(POOL_SIZE, udp_upstreams).map_err(|source| BindError::UpstreamPool {
        count: POOL_SIZE,
        source,
    })
}

async fn bind_optional(
    addr: Option<SocketAddr>,
    error: fn(SocketAddr, io::Error) -> BindError,
) -> Result<Option<TcpListener>, BindError> {
    match addr {
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(listener) => Ok(Some(listener)),
            Err(source) => Err(error(addr, source)),
        },
        None => Ok(None),
    }
}

/// A UDP socket on `addr` that other sockets of this process can share.
fn reuseport_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM,
        Some(SockProtocol::UDP),
    )?;
    socket.set_reuse_port(true)?;
    // Room for bursts while the receive loop is busy; the kernel caps it at rmem_max.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// The DNS path and the state the HTTP side shares with it, assembled from a [`Config`].
#[derive(Debug)]
pub struct Pipeline {
    /// Bytes in → bytes out.
    pub handler: Arc<Handler>,
    /// The answer cache.
    pub cache: Arc<Cache>,
    /// The local records.
    pub records: Arc<Records>,
    /// Zone transfers, NOTIFY, and the secondary zones' wake-up calls.
    pub transfers: Arc<Transfers>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The upstreams, for their health.
    pub forwarder: Arc<Forwarder>,
    /// The query log; `None` with `--query-log 0`.
    pub query_log: Option<Arc<QueryLog>>,
    /// The blocklists and the allowlist.
    pub blocking: Arc<Blocking>,
}

/// The store and the local records loaded from it: what [`run`] serves.
#[derive(Debug)]
pub struct Opened {
    /// The store, checked.
    store: Store,
    /// The local records and zones.
    records: Arc<Records>,
}

impl Opened {
    /// Opens the store in `config.data_dir` as the server does: on a thread of its own under
    /// the open's deadline ([`store::open::guarded`]: sled may hang or panic on a damaged
    /// store), loading the local records in the pass that checks them. Call it inside a tokio
    /// runtime (the record store starts its flusher task on it).
    pub async fn open(config: &Config) -> Result<Opened, store::StoreError> {
        let dir = config.data_dir.clone();
        let runtime = tokio::runtime::Handle::current();
        store::open::guarded(
            &config.data_dir,
            &config.snapshot_dir,
            store::open::OPEN_DEADLINE,
            move |progress| {
                let _runtime = runtime.enter();
                let (store, check) = Store::open_leaving_check(&dir, progress)?;
                let records = Records::load_checking(
                    store::records::RecordStore::open(&store)?,
                    check,
                    progress,
                )?;
                Ok(Opened {
                    store,
                    records: Arc::new(records),
                })
            },
        )
        .await
        .map_err(|e| store::open::refusal(e, &config.data_dir, &config.snapshot_dir))
    }

    /// Loads the local records from `store`, opened (and so checked) by [`Store::open`]: for
    /// tests, benches and fuzz targets. Inside a tokio runtime, as [`Opened::open`].
    pub fn load(store: Store) -> Result<Opened, store::StoreError> {
        let records = Records::load(store::records::RecordStore::open(&store)?)?;
        Ok(Opened {
            store,
            records: Arc::new(records),
        })
    }
}

impl Pipeline {
    /// Builds the pipeline as [`run`] serves it; benches, fuzz targets and tests build the
    /// same thing without sockets. Loads the blocklists from the store (so call it inside a
    /// tokio runtime), not the cache.
    pub fn assemble(
        config: &Config,
        opened: &Opened,
        clock: Clock,
        cache_writes: Option<persist::Queue>,
        upstream_pool: UdpPool,
    ) -> Result<Pipeline, store::StoreError> {
        let metrics = Arc::new(Metrics::new(
            upstream::numbered(config)
                .into_iter()
                .map(|(zone, u)| (u.to_string(), zone.map(|z| z.to_ascii()))),
        ));
        let cache = Arc::new(Cache::new(
            CacheConfig {
                capacity: config.cache_size,
                ttl: TtlPolicy {
                    min_ttl: config.min_ttl,
                    max_ttl: config.max_ttl,
                    max_negative_ttl: config.max_negative_ttl,
                },
                serve_stale: config.serve_stale,
                prefetch: config.prefetch,
            },
            clock,
            cache_writes,
            Arc::clone(&metrics),
        ));
        let forwarder = Arc::new(Forwarder::new(
            &config.upstreams,
            &config.forward_zones,
            &config.upstream_tls,
            upstream_pool,
            config.max_upstream_queries,
            Arc::clone(&metrics),
        ));
        let store = &opened.store;
        let records = Arc::clone(&opened.records);
        let transfers = Arc::new(Transfers::new(
            Arc::clone(&records),
            config.tsig_keys.clone(),
        ));
        let blocking = Arc::new(Blocking::load(
            store,
            config.block_mode,
            Arc::clone(&cache),
            Arc::clone(&metrics),
        )?);
        let query_log = QueryLog::new(config.operations.query_log).map(Arc::new);
        let handler = Arc::new(
            Handler::new(
                Acl::new(config.allow.clone()),
                Resolver::new(
                    Arc::clone(&cache),
                    Arc::clone(&forwarder),
                    Arc::clone(&records),
                    Arc::clone(&blocking),
                ),
                Arc::clone(&transfers),
                Arc::clone(&metrics),
            )
            .with_rate_limit(RateLimiter::new(config.rate_limit))
            .with_query_log(query_log.clone()),
        );
        Ok(Pipeline {
            handler,
            cache,
            records,
            transfers,
            metrics,
            forwarder,
            query_log,
            blocking,
        })
    }
}

/// Serves DNS and HTTP on `sockets` until `shutdown` is cancelled, then drains queries in
/// flight (at most [`DRAIN_TIMEOUT`]), flushes the store and opens it once more, so that
/// sled writes its recovery snapshot for the next start.
pub async fn run(
    config: Config,
    opened: Opened,
    sockets: Sockets,
    shutdown: CancellationToken,
) -> Result<(), store::StoreError> {
    let started = std::time::Instant::now();
    let Sockets {
        listeners,
        upstream_pool,
    } = sockets;
    let clock = Clock::default();
    let (cache_writes, cache_queue) = persist::queue();
    let Pipeline {
        handler,
        cache,
        records,
        transfers,
        metrics,
        forwarder,
        query_log,
        blocking,
    } = Pipeline::assemble(
        &config,
        &opened,
        clock.clone(),
        Some(cache_writes),
        upstream_pool,
    )
    .map_err(|e| store::open::refusal(e, &config.data_dir, &config.snapshot_dir))?;
    let Opened { store, .. } = opened;
    // sled keeps every page the loads read (the records in Opened::open, the blocklists in
    // assemble: some 30 MiB for 193,534 local records) for as long as it stays open, far past
    // its cache setting; opening it again gives them back. That costs an open of sled,
    // which grows with the whole store (a quarter of a second with a million cached
    // answers), so only where the loads read much.
    let names = u64::try_from(blocking.names()).unwrap_or(u64::MAX);
    let read = (records.loaded().saturating_mul(STORED_RECORD_BYTES))
        .saturating_add(names.saturating_mul(STORED_NAME_BYTES));
    if read >= REOPEN_AFTER_READING {
        let reopened = tokio::select! {
            reopened = store::open::reopen_with_deadline(
                &store,
                &config.snapshot_dir,
                store::open::OPEN_DEADLINE,
                Store::reopen_unchanged,
            ) => reopened,
            // Nothing is served or written yet: there is nothing to drain or flush.
            _ = shutdown.cancelled() => return Ok(()),
        };
        reopened.map_err(|e| store::open::refusal(e, &config.data_dir, &config.snapshot_dir))?;
    }
    // From here on a flush is remembered, so the warm-up cannot load back what it removed.
    cache.begin_warm();
    // The writer outlives the listeners: it stops only after the last query has cached its
    // answer.
    let writer_stop = CancellationToken::new();
    let writer = persist::spawn_writer(store.clone(), cache_queue, writer_stop.clone());
    persist::spawn_janitor(
        store.clone(),
        clock,
        u64::from(config.serve_stale),
        shutdown.clone(),
    );

    let dns_addr = listeners.udp.first().and_then(|s| s.local_addr().ok());
    let http_addr = listeners.http.local_addr().ok();
    let tracker = TaskTracker::new();
    listener::udp::spawn(
        listeners.udp,
        Arc::clone(&handler),
        shutdown.clone(),
        &tracker,
    );
    let limits = listener::tcp::Limits {
        max_connections: config.max_tcp_connections,
        idle_timeout: config.tcp_idle_timeout,
    };
    listener::tcp::spawn(
        listeners.tcp,
        limits,
        Arc::clone(&handler),
        shutdown.clone(),
        &tracker,
    );
    let encrypted_addrs = match listeners.encrypted {
        Some(encrypted) => spawn_encrypted(encrypted, limits, handler, &shutdown, &tracker),
        None => String::new(),
    };
    transfer::notify::spawn(
        Arc::clone(&records),
        config.tsig_keys.clone(),
        records.zone_changes(),
        shutdown.clone(),
        &tracker,
    );
    transfer::secondary::spawn(
        Arc::clone(&records),
        config.tsig_keys.clone(),
        Arc::clone(transfers.wakers()),
        records.zone_changes(),
        shutdown.clone(),
        &tracker,
    );
    spawn_repairs(Arc::clone(&records), shutdown.clone());
    blocklist::spawn_refresher(
        Arc::clone(&blocking),
        config.blocklist_refresh,
        shutdown.clone(),
    );
    if let Some(interval) = config.snapshot_interval {
        spawn_snapshots(
            Arc::clone(&records),
            config.snapshot_dir.clone(),
            interval,
            config.snapshot_keep,
            shutdown.clone(),
        );
    }
    let warm_failure = Arc::new(std::sync::Mutex::new(None));
    let warm = spawn_warm(
        Arc::clone(&cache),
        store.clone(),
        Arc::clone(&blocking),
        shutdown.clone(),
        Arc::clone(&warm_failure),
    );
    let api_state = Arc::new(api::ApiState {
        token: config.api_token.clone(),
        metrics,
        cache,
        records: Arc::clone(&records),
        snapshot_dir: config.snapshot_dir.clone(),
        snapshot_keep: config.snapshot_keep,
        tsig_keys: config.tsig_keys.clone(),
        blocking,
        ops: api::ops::OpsState {
            query_log,
            forwarder,
            started,
        },
    });
    let http = tokio::spawn(
        warp::serve(api::routes(api_state))
            .incoming(listeners.http)
            .graceful(shutdown.clone().cancelled_owned())
            .run(),
    );
    tracing::info!(
        "listening dns={} http={}{encrypted_addrs}",
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
    // The warm-up stops at its next batch; it queues cache writes, so it ends first.
    if tokio::time::timeout(DRAIN_TIMEOUT, warm).await.is_err() {
        tracing::warn!("cache warm-up still running after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    writer_stop.cancel();
    if tokio::time::timeout(DRAIN_TIMEOUT, writer).await.is_err() {
        tracing::warn!("cache writes still pending after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    // A failed write may have left part of itself in sled's files; a last repair undoes it
    // if the disk has room again.
    if let Some(fault) = records.fault() {
        match tokio::time::timeout(DRAIN_TIMEOUT, records.repair()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "stopping with the store still failing ({fault})")
            }
            Err(_) => tracing::error!("stopping with the store still failing ({fault})"),
        }
    }
    let flushing = store.clone();
    let flushed = tokio::task::spawn_blocking(move || flushing.flush()).await;
    let failure = warm_failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(e) = failure {
        return Err(store::open::refusal(
            e,
            &config.data_dir,
            &config.snapshot_dir,
        ));
    }
    match flushed {
        Ok(Ok(())) => {
            snapshot_for_the_next_start(&store, &config).await;
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(join) => {
            tracing::error!(error = %join, "store flush task failed");
            Ok(())
        }
    }
}

/// Opens sled once more after the last flush, so that it writes its recovery snapshot: sled
/// writes one only when it opens, and the next start would otherwise replay every change
/// made since this one started (a restart right after importing 193,534 records read the
/// log for about 50 ms more; a million cached answers, 0.7 s against 0.3 s). One try, under
/// the open's guard with a deadline of its own: a failure costs the next start that time,
/// nothing else, since everything is on disk already.
async fn snapshot_for_the_next_start(store: &Store, config: &Config) {
    let reopened = store::open::reopen_with_deadline(
        store,
        &config.snapshot_dir,
        STOP_REOPEN_DEADLINE,
        Store::reopen_once,
    )
    .await;
    let reason = match reopened {
        Ok(()) => return,
        Err(store::StoreError::Locked(_)) => "a task still had the store open".to_string(),
        Err(store::StoreError::Damaged { reason, .. }) => reason,
        Err(e) => e.to_string(),
    };
    tracing::warn!(
        reason,
        "sled's recovery snapshot was not written at stop; the next start reads its log instead"
    );
}

/// Loads the cache from disk behind the listeners, until done or shut down. A store error
/// is what it was when the cache loaded before the listeners: the server stops, and
/// [`run`] returns the error in `failure` as a refusal to start (a damaged store exits 2
/// naming the snapshot to restore). A panic costs the rest of the warm start only.
fn spawn_warm(
    cache: Arc<Cache>,
    store: Store,
    blocking: Arc<Blocking>,
    shutdown: CancellationToken,
    failure: Arc<std::sync::Mutex<Option<store::StoreError>>>,
) -> tokio::task::JoinHandle<()> {
    let stop = shutdown.clone();
    let loading = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let warmed = cache.warm(&store, &*blocking, &|| stop.is_cancelled());
        (warmed, started.elapsed().as_millis() as u64)
    });
    tokio::spawn(async move {
        match loading.await {
            Ok((Ok(warm_up), ms)) if warm_up.stopped => {
                tracing::info!(loaded = warm_up.loaded, ms, "cache warm-up stopped early")
            }
            Ok((Ok(warm_up), ms)) => {
                tracing::info!(loaded = warm_up.loaded, ms, "cache warm-up finished")
            }
            Ok((Err(e), _)) => {
                tracing::error!(error = %e, "cache warm-up failed; stopping");
                *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                shutdown.cancel();
            }
            Err(e) => tracing::error!(error = %e, "cache warm-up failed; the rest starts cold"),
        }
    })
}

/// Starts the DoT and DoH listeners and the SIGHUP reloads of their certificate; returns
/// their part of the `listening` line (` dot=ADDR doh=ADDR`).
fn spawn_encrypted(
    encrypted: EncryptedSockets,
    limits: listener::tcp::Limits,
    handler: Arc<Handler>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> String {
    let mut addrs = String::new();
    if let Some((socket, tls)) = encrypted.dot {
        addrs.push_str(&format!(" dot={}", show_addr(socket.local_addr().ok())));
        let acceptor = TlsAcceptor::from(tls);
        let handler = Arc::clone(&handler);
        listener::tcp::spawn_tls(socket, acceptor, limits, handler, shutdown.clone(), tracker);
    }
    if let Some((socket, tls)) = encrypted.doh {
        addrs.push_str(&format!(" doh={}", show_addr(socket.local_addr().ok())));
        let acceptor = TlsAcceptor::from(tls);
        listener::https::spawn(socket, acceptor, limits, handler, shutdown.clone(), tracker);
    }
    let (mut hangup, certificate, shutdown) =
        (encrypted.hangup, encrypted.certificate, shutdown.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                received = hangup.recv() => if received.is_none() { return },
            }
            match certificate.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: TLS reload failed; still serving the previous certificate")
                }
            }
        }
    });
    addrs
}

/// Reopens the store after a failed write, every [`REPAIR_PERIOD`] until it works again.
fn spawn_repairs(records: Arc<Records>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REPAIR_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if records.fault().is_some() {
                if let Err(e) = records.repair().await {
                    tracing::debug!(error = %e, "store still cannot write");
                }
            }
        }
    });
}

/// Takes a snapshot every `interval` through the same path as `POST /api/v1/snapshot`. The
/// first is due `interval` after the newest one already there (at once when that is past),
/// so restarts do not postpone it; with none there yet, `interval` after start.
fn spawn_snapshots(
    records: Arc<Records>,
    dir: std::path::PathBuf,
    interval: Duration,
    keep: usize,
    shutdown: CancellationToken,
) {
    let since_newest = store::snapshot::list(&dir)
        .pop()
        .and_then(|newest| std::fs::metadata(newest.path).ok()?.modified().ok())
        .and_then(|made| made.elapsed().ok());
    let first = since_newest.map_or(interval, |age| interval.saturating_sub(age));
    tokio::spawn(async move {
        let mut wait = first;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
            wait = match records.snapshot(&dir, keep).await {
                Ok(path) => {
                    tracing::info!(path = %path.display(), "scheduled snapshot written");
                    interval
                }
                Err(e) => {
                    tracing::error!(error = %e, "scheduled snapshot failed; trying again later");
                    interval.min(SNAPSHOT_RETRY)
                }
            };
        }
    });
}

fn show_addr(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "?".to_string(), |a| a.to_string())
}
