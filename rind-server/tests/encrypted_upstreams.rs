//! Encrypted upstreams (DoT, DoH) and forward zones, against real TLS peers on loopback:
//! certificates made here with rcgen, a DoT and an HTTP/2 DoH server written here that count
//! connections and queries, and can present the wrong certificate, close after each answer,
//! or hold replies until several queries are waiting on one connection.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// The name the test servers' good certificates carry.
const SERVER_NAME: &str = "dns.test";
/// Longest a fake server holds replies waiting for a batch of queries.
const BATCH_WAIT: Duration = Duration::from_secs(3);

/// A certificate authority made for one test, and its certificate as a PEM file.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: PathBuf,
    _dir: tempfile::TempDir,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("CA cert");
        let dir = tempfile::tempdir().expect("temp dir");
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, cert.pem()).expect("write CA");
        Ca {
            issuer: Issuer::new(params, key),
            pem,
            _dir: dir,
        }
    }

    fn pem(&self) -> &str {
        self.pem.to_str().expect("utf-8 path")
    }

    /// Server settings with a certificate for `names` signed by this CA, offering `alpn`.
    fn server(&self, names: &[&str], alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().expect("leaf key");
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server cert");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// What a fake encrypted server does.
#[derive(Clone, Copy)]
enum Mode {
    /// Answers each query at once.
    Answer,
    /// Holds the first replies until `n` queries wait on one connection (or [`BATCH_WAIT`]
    /// passes), then answers them last first, all in one write; answers later queries at once.
    Batch(usize),
    /// Answers each query in three writes a moment apart, cutting the length prefix and the
    /// message, so the client must put replies back together across reads.
    Split,
    /// Answers one query per connection, then closes it.
    CloseAfterOne,
    /// Reads queries and never answers.
    Silent,
}

/// Counters of a fake server.
#[derive(Default)]
struct Counts {
    accepts: AtomicUsize,
    queries: AtomicUsize,
    /// Questions asked, in order.
    names: Mutex<Vec<String>>,
}

/// A fake DoT or DoH server on 127.0.0.1; stops when dropped.
struct Fake {
    addr: SocketAddr,
    counts: Arc<Counts>,
    tasks: JoinSet<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

impl Fake {
    fn accepts(&self) -> usize {
        self.counts.accepts.load(Ordering::SeqCst)
    }

    fn queries(&self) -> usize {
        self.counts.queries.load(Ordering::SeqCst)
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// The answer of the fake server tagged `tag`: A 192.0.2.`tag`, PTR `host-<tag>.test.`.
fn answer(query: &Message, tag: u8) -> Vec<u8> {
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.recursion_available = true;
    for q in &query.queries {
        reply.add_query(q.clone());
        let data = match q.query_type {
            RecordType::PTR => RData::PTR(PTR(
                Name::from_str(&format!("host-{tag}.test.")).expect("name")
            )),
            _ => RData::A(A(Ipv4Addr::new(192, 0, 2, tag))),
        };
        reply.add_answer(Record::from_rdata(q.name.clone(), 60, data));
    }
    reply.to_vec().expect("encode")
}

fn note(counts: &Counts, query: &Message) {
    counts.queries.fetch_add(1, Ordering::SeqCst);
    if let Some(q) = query.queries.first() {
        counts
            .names
            .lock()
            .expect("names")
            .push(q.name.to_ascii().to_lowercase());
    }
}

/// A DNS-over-TLS server answering as [`answer`] with `tag`.
async fn dot_server(config: Arc<rustls::ServerConfig>, tag: u8, mode: Mode) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counts = Arc::new(Counts::default());
    let mut tasks = JoinSet::new();
    let acceptor = TlsAcceptor::from(config);
    let shared = Arc::clone(&counts);
    tasks.spawn(async move {
        // Ends when the test drops the server (abort).
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counts = Arc::clone(&shared);
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                counts.accepts.fetch_add(1, Ordering::SeqCst);
                let _ = tokio::time::timeout(
                    Duration::from_secs(20),
                    serve_dot(stream, &counts, tag, mode),
                )
                .await;
            });
        }
    });
    Fake {
        addr,
        counts,
        tasks,
    }
}

async fn serve_dot<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    counts: &Counts,
    tag: u8,
    mode: Mode,
) {
    let mut mode = mode;
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut batch_started = None;
    loop {
        let read = match (mode, batch_started) {
            (Mode::Batch(_), Some(started)) => {
                let left = BATCH_WAIT.saturating_sub(tokio::time::Instant::now() - started);
                tokio::time::timeout(left, read_frame(&mut stream))
                    .await
                    .unwrap_or(Ok(None))
            }
            _ => read_frame(&mut stream).await,
        };
        let query = match read {
            Ok(Some(bytes)) => Message::from_vec(&bytes).expect("query parses"),
            _ => {
                // Time is up for a batch (or the client left): answer what is held.
                let _ = write_all_at_once(&mut stream, held.drain(..).rev()).await;
                if batch_started.is_some() {
                    batch_started = None;
                    mode = Mode::Answer;
                    continue;
                }
                return;
            }
        };
        note(counts, &query);
        let reply = answer(&query, tag);
        match mode {
            Mode::Answer => {
                if write_frame(&mut stream, &reply).await.is_err() {
                    return;
                }
            }
            Mode::Split => {
                let framed = framed(&reply);
                let middle = framed.len() / 2;
                for piece in [&framed[..1], &framed[1..middle], &framed[middle..]] {
                    if stream.write_all(piece).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Mode::Silent => {}
            Mode::CloseAfterOne => {
                let _ = write_frame(&mut stream, &reply).await;
                let _ = stream.shutdown().await;
                return;
            }
            Mode::Batch(n) => {
                batch_started.get_or_insert_with(tokio::time::Instant::now);
                held.push(reply);
                if held.len() >= n {
                    if write_all_at_once(&mut stream, held.drain(..).rev())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    batch_started = None;
                    mode = Mode::Answer;
                }
            }
        }
    }
}

/// Writes `replies` length-prefixed in one write, so they arrive in one TLS record.
async fn write_all_at_once<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    replies: impl Iterator<Item = Vec<u8>>,
) -> std::io::Result<()> {
    let all: Vec<u8> = replies.flat_map(|reply| framed(&reply)).collect();
    stream.write_all(&all).await?;
    stream.flush().await
}

/// A DNS-over-HTTPS server (HTTP/2, POST only) answering as [`answer`] with `tag`; a
/// request that is not a POST of `application/dns-message` gets 415 and is not counted.
async fn doh_server(config: Arc<rustls::ServerConfig>, tag: u8, batch: usize) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counts = Arc::new(Counts::default());
    let mut tasks = JoinSet::new();
    let acceptor = TlsAcceptor::from(config);
    let shared = Arc::clone(&counts);
    tasks.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counts = Arc::clone(&shared);
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                counts.accepts.fetch_add(1, Ordering::SeqCst);
                let Ok(mut h2) = h2::server::handshake(stream).await else {
                    return;
                };
                // Requests wait until `batch` have arrived on this connection (or BATCH_WAIT).
                let arrived = Arc::new(AtomicUsize::new(0));
                let all_here = Arc::new(Notify::new());
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                while let Ok(Some(Ok((request, respond)))) =
                    tokio::time::timeout_at(deadline, h2.accept()).await
                {
                    let counts = Arc::clone(&counts);
                    let arrived = Arc::clone(&arrived);
                    let all_here = Arc::clone(&all_here);
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(10),
                            serve_doh(request, respond, &counts, tag, batch, &arrived, &all_here),
                        )
                        .await;
                    });
                }
            });
        }
    });
    Fake {
        addr,
        counts,
        tasks,
    }
}

async fn serve_doh(
    request: ::http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    counts: &Counts,
    tag: u8,
    batch: usize,
    arrived: &AtomicUsize,
    all_here: &Notify,
) {
    let is_dns = request
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/dns-message");
    if request.method() != ::http::Method::POST || !is_dns {
        let response = ::http::Response::builder()
            .status(415)
            .body(())
            .expect("response");
        let _ = respond.send_response(response, true);
        return;
    }
    let mut body = request.into_body();
    let mut bytes = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let query = Message::from_vec(&bytes).expect("query parses");
    assert_eq!(
        query.metadata.id, 0,
        "RFC 8484 §4.1: DoH queries carry ID 0"
    );
    note(counts, &query);
    if arrived.fetch_add(1, Ordering::SeqCst) + 1 >= batch {
        all_here.notify_waiters();
    } else {
        let _ = tokio::time::timeout(BATCH_WAIT, all_here.notified()).await;
    }
    let response = ::http::Response::builder()
        .status(200)
        .header("content-type", "application/dns-message")
        .body(())
        .expect("response");
    if let Ok(mut stream) = respond.send_response(response, false) {
        let _ = stream.send_data(Bytes::from(answer(&query, tag)), true);
    }
}

/// A loopback port nothing listens on.
async fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

fn dot_arg(fake: &Fake, name: &str) -> String {
    format!("tls://127.0.0.1:{}#{name}", fake.port())
}

fn doh_arg(fake: &Fake) -> String {
    format!("https://{SERVER_NAME}:{}/dns-query#127.0.0.1", fake.port())
}

fn start(ca: &Ca, upstreams: &[String], extra: &[&str]) -> Server {
    let mut args: Vec<&str> = vec!["--upstream-ca", ca.pem()];
    for u in upstreams {
        args.extend(["--upstream", u.as_str()]);
    }
    args.extend_from_slice(extra);
    ServerBuilder::new().args(&args).start()
}

/// Asks `n` distinct names at once; returns the replies in the order asked.
async fn ask_many(server: SocketAddr, prefix: &str, n: usize) -> Vec<Message> {
    let mut set = JoinSet::new();
    for i in 0..n {
        let name = format!("{prefix}-{i}.example.com.");
        set.spawn(async move { (i, ask_udp(server, &query(&name, RecordType::A)).await) });
    }
    let mut replies: Vec<Option<Message>> = vec![None; n];
    while let Some(done) = set.join_next().await {
        let (i, reply) = done.expect("asker");
        replies[i] = Some(reply);
    }
    replies.into_iter().map(|r| r.expect("reply")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_answers_pipelined_on_one_connection() {
    let ca = Ca::new();
    let n = 16;
    let dot = dot_server(ca.server(&[SERVER_NAME], &[]), 7, Mode::Batch(n)).await;
    let server = start(&ca, &[dot_arg(&dot, SERVER_NAME)], &[]);

    // The server holds every reply until all n wait on one connection: without pipelining
    // the first query would wait out its 2 s try and the rest would never gather.
    let replies = ask_many(server.dns_addr(), "pipe", n).await;
    for reply in &replies {
        assert_eq!(rcode(reply), ResponseCode::NoError);
        assert_eq!(a_records(reply), vec![Ipv4Addr::new(192, 0, 2, 7)]);
    }
    assert_eq!(dot.queries(), n);
    assert_eq!(
        dot.accepts(),
        1,
        "{n} queries should share one TLS connection"
    );

    // Reused for the next question, and the handshake shows in the metrics.
    let again = ask_udp(
        server.dns_addr(),
        &query("later.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(a_records(&again), vec![Ipv4Addr::new(192, 0, 2, 7)]);
    assert_eq!(dot.accepts(), 1);
    let label = format!("upstream=\"{}\"", dot_arg(&dot, SERVER_NAME));
    let http = server.http_addr();
    let connections = metric(
        http,
        &format!("rind_upstream_connections_total{{{label}}}"),
        None,
    )
    .await;
    assert_eq!(connections, 1.0);
    let queries = metric(
        http,
        &format!("rind_upstream_queries_total{{{label}}}"),
        None,
    )
    .await;
    assert_eq!(queries, (n + 1) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_replies_cut_across_reads_are_put_back_together() {
    let ca = Ca::new();
    let dot = dot_server(ca.server(&[SERVER_NAME], &[]), 9, Mode::Split).await;
    let server = start(&ca, &[dot_arg(&dot, SERVER_NAME)], &[]);

    // One at a time, then several at once, so cut replies also interleave on the connection.
    let first = ask_udp(server.dns_addr(), &query("cut.example.com.", RecordType::A)).await;
    assert_eq!(rcode(&first), ResponseCode::NoError);
    assert_eq!(a_records(&first), vec![Ipv4Addr::new(192, 0, 2, 9)]);
    let n = 8;
    let replies = ask_many(server.dns_addr(), "cut", n).await;
    for reply in &replies {
        assert_eq!(rcode(reply), ResponseCode::NoError);
        assert_eq!(a_records(reply), vec![Ipv4Addr::new(192, 0, 2, 9)]);
    }
    assert_eq!(dot.queries(), n + 1);
    assert_eq!(
        dot.accepts(),
        1,
        "every reply should come on the first connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doh_answers_over_one_http2_connection() {
    let ca = Ca::new();
    let n = 8;
    let doh = doh_server(ca.server(&[SERVER_NAME], &[b"h2"]), 9, n).await;
    let server = start(&ca, &[doh_arg(&doh)], &[]);

    let replies = ask_many(server.dns_addr(), "doh", n).await;
    for reply in &replies {
        assert_eq!(rcode(reply), ResponseCode::NoError);
        assert_eq!(a_records(reply), vec![Ipv4Addr::new(192, 0, 2, 9)]);
    }
    assert_eq!(doh.queries(), n);
    assert_eq!(
        doh.accepts(),
        1,
        "{n} queries should share one HTTP/2 connection"
    );

    // A cached answer does not go upstream again.
    let cached = ask_udp(
        server.dns_addr(),
        &query("doh-0.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(a_records(&cached), vec![Ipv4Addr::new(192, 0, 2, 9)]);
    assert_eq!(doh.queries(), n);
    let label = format!(
        "upstream=\"https://{SERVER_NAME}:{}/dns-query#127.0.0.1\"",
        doh.port()
    );
    let queries = metric(
        server.http_addr(),
        &format!("rind_upstream_queries_total{{{label}}}"),
        None,
    )
    .await;
    assert_eq!(queries, n as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_are_failures_never_answers() {
    let ca = Ca::new();
    let stranger = Ca::new();
    let wrong_name = dot_server(ca.server(&["other.test"], &[]), 1, Mode::Answer).await;
    let unknown_ca = dot_server(stranger.server(&[SERVER_NAME], &[]), 2, Mode::Answer).await;
    let unknown_ca_doh = doh_server(stranger.server(&[SERVER_NAME], &[b"h2"]), 3, 1).await;
    let good = dot_server(ca.server(&[SERVER_NAME], &[]), 4, Mode::Answer).await;

    // Alone, a server with the wrong name is SERVFAIL, not an answer.
    let alone = start(&ca, &[dot_arg(&wrong_name, SERVER_NAME)], &[]);
    let reply = ask_udp(
        alone.dns_addr(),
        &query("alone.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&reply), ResponseCode::ServFail);
    assert_eq!(
        wrong_name.queries(),
        0,
        "a query went over an unverified connection"
    );

    // First in line, the bad ones are skipped and the good one answers.
    let server = start(
        &ca,
        &[
            dot_arg(&wrong_name, SERVER_NAME),
            dot_arg(&unknown_ca, SERVER_NAME),
            doh_arg(&unknown_ca_doh),
            dot_arg(&good, SERVER_NAME),
        ],
        &[],
    );
    let reply = ask_udp(
        server.dns_addr(),
        &query("chain.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert_eq!(a_records(&reply), vec![Ipv4Addr::new(192, 0, 2, 4)]);
    assert_eq!(
        (
            wrong_name.queries(),
            unknown_ca.queries(),
            unknown_ca_doh.queries()
        ),
        (0, 0, 0)
    );
    assert_eq!(good.queries(), 1);
    let warnings = server.stderr_text();
    let named = warnings.lines().any(|l| {
        l.contains("cannot connect to the encrypted upstream")
            && l.contains(&dot_arg(&wrong_name, SERVER_NAME))
            && l.contains("certificate")
    });
    assert!(
        named,
        "the failed handshake should be logged with the upstream and the cause:\n{warnings}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_encrypted_upstream_fails_over() {
    let ca = Ca::new();
    let good = doh_server(ca.server(&[SERVER_NAME], &[b"h2"]), 5, 1).await;
    let dead_dot = format!("tls://127.0.0.1:{}#{SERVER_NAME}", dead_port().await);
    let dead_doh = format!(
        "https://{SERVER_NAME}:{}/dns-query#127.0.0.1",
        dead_port().await
    );
    let server = start(&ca, &[dead_dot.clone(), dead_doh, doh_arg(&good)], &[]);
    for i in 0..4 {
        let name = format!("dead-{i}.example.com.");
        let reply = ask_udp(server.dns_addr(), &query(&name, RecordType::A)).await;
        assert_eq!(
            a_records(&reply),
            vec![Ipv4Addr::new(192, 0, 2, 5)],
            "{name}"
        );
    }
    assert_eq!(good.queries(), 4);
    let failures = metric(
        server.http_addr(),
        &format!("rind_upstream_failures_total{{upstream=\"{dead_dot}\"}}"),
        None,
    )
    .await;
    assert!(failures >= 1.0, "the dead upstream's failures: {failures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_encrypted_upstream_is_left_after_its_try() {
    let ca = Ca::new();
    let silent = dot_server(ca.server(&[SERVER_NAME], &[]), 1, Mode::Silent).await;
    let good = dot_server(ca.server(&[SERVER_NAME], &[]), 2, Mode::Answer).await;
    let server = start(
        &ca,
        &[dot_arg(&silent, SERVER_NAME), dot_arg(&good, SERVER_NAME)],
        &[],
    );
    let asked = std::time::Instant::now();
    let reply = ask_udp(
        server.dns_addr(),
        &query("stall.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(a_records(&reply), vec![Ipv4Addr::new(192, 0, 2, 2)]);
    // The silent server got the query and held it for the whole 2 s try.
    assert_eq!(silent.queries(), 1);
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "answered after {:?}: before the silent server's try was up",
        asked.elapsed()
    );

    // Alone, a silent upstream means SERVFAIL within the contract's 5 s.
    let alone = start(&ca, &[dot_arg(&silent, SERVER_NAME)], &[]);
    let asked = std::time::Instant::now();
    let reply = ask_udp(
        alone.dns_addr(),
        &query("stall2.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&reply), ResponseCode::ServFail);
    assert!(
        asked.elapsed() < Duration::from_millis(5500),
        "{:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_connections_still_answers_every_query() {
    let ca = Ca::new();
    let closing = dot_server(ca.server(&[SERVER_NAME], &[]), 6, Mode::CloseAfterOne).await;
    let server = start(&ca, &[dot_arg(&closing, SERVER_NAME)], &[]);
    for i in 0..3 {
        let name = format!("close-{i}.example.com.");
        let reply = ask_udp(server.dns_addr(), &query(&name, RecordType::A)).await;
        assert_eq!(rcode(&reply), ResponseCode::NoError, "{name}");
        assert_eq!(
            a_records(&reply),
            vec![Ipv4Addr::new(192, 0, 2, 6)],
            "{name}"
        );
        // Give the close time to arrive, so the next query meets a dead connection at worst.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(closing.queries(), 3);
    assert_eq!(
        closing.accepts(),
        3,
        "one connection per answer: the server closes each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_zones_route_by_the_most_specific_zone() {
    let ca = Ca::new();
    let config = |alpn: &[&[u8]]| ca.server(&[SERVER_NAME], alpn);
    let default = dot_server(config(&[]), 1, Mode::Answer).await;
    let corp = dot_server(config(&[]), 2, Mode::Answer).await;
    let lab = doh_server(config(&[b"h2"]), 3, 1).await;
    let router = dot_server(config(&[]), 4, Mode::Answer).await;
    let zones = format!(
        "corp.example={};Lab.Corp.Example.={};168.192.in-addr.arpa={}",
        dot_arg(&corp, SERVER_NAME),
        doh_arg(&lab),
        dot_arg(&router, SERVER_NAME)
    );
    let server = ServerBuilder::new()
        .args(&[
            "--upstream-ca",
            ca.pem(),
            "--upstream",
            &dot_arg(&default, SERVER_NAME),
        ])
        .env("RIND_FORWARD_ZONES", &zones)
        .start();
    let dns = server.dns_addr();

    let cases = [
        ("www.example.com.", 1),
        ("corp.example.", 2),
        ("mail.corp.example.", 2),
        ("lab.corp.example.", 3),
        ("db.LAB.corp.example.", 3),
        ("notcorp.example.", 1),
    ];
    for (name, tag) in cases {
        let reply = ask_udp(dns, &query(name, RecordType::A)).await;
        assert_eq!(
            a_records(&reply),
            vec![Ipv4Addr::new(192, 0, 2, tag)],
            "{name}"
        );
    }
    assert_eq!(
        (default.queries(), corp.queries(), lab.queries()),
        (2, 2, 2)
    );

    // The router's reverse zone goes to the router; other private reverse zones stay home.
    let reply = ask_udp(dns, &query("5.1.168.192.in-addr.arpa.", RecordType::PTR)).await;
    assert_eq!(ptr_records(&reply), vec![name("host-4.test.")]);
    assert_eq!(router.queries(), 1);
    let reply = ask_udp(dns, &query("5.1.0.10.in-addr.arpa.", RecordType::PTR)).await;
    assert_eq!(rcode(&reply), ResponseCode::NXDomain);
    assert_eq!(
        default.queries() + router.queries(),
        3,
        "10/8 went upstream"
    );

    // Each zone's upstreams are their own series.
    let label = format!(
        "upstream=\"{}\",zone=\"corp.example.\"",
        dot_arg(&corp, SERVER_NAME)
    );
    let queries = metric(
        server.http_addr(),
        &format!("rind_upstream_queries_total{{{label}}}"),
        None,
    )
    .await;
    assert_eq!(queries, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_with_only_failing_upstreams_gets_servfail_not_the_default() {
    let ca = Ca::new();
    let default = dot_server(ca.server(&[SERVER_NAME], &[]), 1, Mode::Answer).await;
    let dead = format!("tls://127.0.0.1:{}#{SERVER_NAME}", dead_port().await);
    let server = start(
        &ca,
        &[dot_arg(&default, SERVER_NAME)],
        &["--forward-zone", &format!("corp.example={dead}")],
    );
    let reply = ask_udp(
        server.dns_addr(),
        &query("vpn.corp.example.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&reply), ResponseCode::ServFail);
    assert_eq!(
        default.queries(),
        0,
        "a forward zone's name leaked to the default upstream"
    );
}

fn refusal(args: &[&str]) -> String {
    let (code, stderr) = Server::run_expect_exit(args);
    assert_refusal(code, &stderr)
}

#[test]
fn bad_settings_exit_2_with_one_line() {
    let line = refusal(&["--upstream", "quic://127.0.0.1"]);
    assert!(line.contains("quic://127.0.0.1"), "{line}");
    let line = refusal(&["--upstream", "tls://dns.test"]);
    assert!(line.contains("tls://IP"), "{line}");
    let line = refusal(&["--upstream", "https://dns.test"]);
    assert!(line.contains("no path"), "{line}");

    let missing = Path::new("/nonexistent-rind-test/ca.pem");
    let line = refusal(&[
        "--upstream",
        "tls://127.0.0.1:853",
        "--upstream-ca",
        missing.to_str().expect("path"),
    ]);
    assert!(
        line.contains("--upstream-ca") && line.contains("ca.pem"),
        "{line}"
    );
    let dir = tempfile::tempdir().expect("dir");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    let line = refusal(&["--upstream-ca", junk.to_str().expect("path")]);
    assert!(line.contains("no CERTIFICATE"), "{line}");

    for bad in [
        "corp.example",
        "corp.example=",
        "=127.0.0.1",
        "corp..example=127.0.0.1",
        "corp.example=dns.test",
    ] {
        let line = refusal(&["--forward-zone", bad]);
        assert!(
            line.contains("forward zone") || line.contains("upstream"),
            "{bad}: {line}"
        );
    }
    let line = refusal(&[
        "--forward-zone",
        "corp.example=127.0.0.1",
        "--forward-zone",
        "Corp.Example.=127.0.0.2",
    ]);
    assert!(line.contains("given twice"), "{line}");
}
