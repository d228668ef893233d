//! Encrypted listeners: DNS over TLS (RFC 7858) and DNS over HTTPS (RFC 8484), driven by a
//! rustls client and a hyper HTTP/2 and HTTP/1.1 client over certificates the tests make.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use http_body_util::{BodyExt, Full};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The name in the test certificates.
const HOST: &str = "dns.test";
/// Time for one exchange over a fresh connection.
const EXCHANGE: Duration = Duration::from_secs(5);

/// A self-signed certificate and its key, as PEM and as the DER a client trusts.
struct TestCert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCert {
    fn new() -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec![HOST.to_string()]).expect("rcgen");
        TestCert {
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
            der: made.cert.der().clone(),
        }
    }

    /// Writes the pair where the server reads it (replacing whatever was there).
    fn install(&self, files: &Files) {
        std::fs::write(&files.cert, &self.cert_pem).expect("write cert");
        std::fs::write(&files.key, &self.key_pem).expect("write key");
    }
}

/// Where the server's certificate and key live.
struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        Files {
            _dir: dir,
            cert,
            key,
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            path(&self.cert),
            "--tls-key".into(),
            path(&self.key),
        ]
    }
}

fn path(p: &Path) -> String {
    p.to_str().expect("temp paths are UTF-8").to_string()
}

/// A server with DoT and DoH on ephemeral ports.
struct Encrypted {
    server: Server,
    dot: SocketAddr,
    doh: SocketAddr,
}

/// [`start`] with a fresh certificate, forwarding to a fake upstream that answers; the files
/// and the upstream are returned so they live as long as the test.
fn start_forwarding(extra: &[&str]) -> (Files, TestCert, FakeUpstream, Encrypted) {
    let files = Files::new();
    let cert = TestCert::new();
    cert.install(&files);
    let up = FakeUpstream::start(Behaviour::Answer);
    let upstream = up.arg();
    let mut args = vec!["--upstream", upstream.as_str()];
    args.extend_from_slice(extra);
    let s = start(&files, &args);
    (files, cert, up, s)
}

fn start(files: &Files, extra: &[&str]) -> Encrypted {
    let mut args: Vec<String> = vec![
        "--dot-addr".into(),
        "127.0.0.1:0".into(),
        "--doh-addr".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(files.args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    let line = server
        .stderr_lines()
        .into_iter()
        .find(|l| l.contains("listening"))
        .expect("listening line");
    let field = |key: &str| -> SocketAddr {
        let rest = &line[line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len()..];
        let value: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
        value
            .parse()
            .unwrap_or_else(|e| panic!("{key}{value}: {e}"))
    };
    Encrypted {
        dot: field("dot="),
        doh: field("doh="),
        server,
    }
}

fn client_config(trusted: &[&TestCert], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.der.clone()).expect("trust test cert");
    }
    // Deprecated from rustls 0.23.48 on (no post-quantum key exchange), as in the server.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` trusting `trusted`, offering `alpn`.
async fn connect(addr: SocketAddr, trusted: &[&TestCert], alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let connector = TlsConnector::from(client_config(trusted, alpn));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(HOST).expect("server name");
    timeout(EXCHANGE, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake")
}

/// The leaf certificate the server presented on `stream`.
fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    let (_, session) = stream.get_ref();
    session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("server certificate")
        .clone()
        .into_owned()
}

/// One query over an open DoT connection.
async fn dot_exchange(stream: &mut TlsStream<TcpStream>, msg: &Message) -> Message {
    let wire = msg.to_vec().expect("encode");
    let exchange = async {
        write_frame(stream, &wire).await.expect("write frame");
        read_frame(stream)
            .await
            .expect("read frame")
            .expect("a reply")
    };
    let reply = parse(
        &timeout(EXCHANGE, exchange)
            .await
            .expect("DoT reply in time"),
    );
    assert_eq!(reply.metadata.id, msg.metadata.id);
    reply
}

async fn ask_dot(addr: SocketAddr, cert: &TestCert, msg: &Message) -> Message {
    let mut stream = connect(addr, &[cert], &[b"dot"]).await;
    dot_exchange(&mut stream, msg).await
}

/// Which HTTP version the DoH client negotiates.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Http {
    Two,
    One,
}

/// One DoH HTTP response.
struct DohReply {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl DohReply {
    fn dns(&self) -> Message {
        assert_eq!(self.status, StatusCode::OK, "body {:?}", self.body);
        assert_eq!(self.headers[CONTENT_TYPE], "application/dns-message");
        parse(&self.body)
    }
}

/// Sends `request` over a fresh DoH connection using `http`.
async fn doh(
    addr: SocketAddr,
    cert: &TestCert,
    http: Http,
    request: hyper::Request<Full<Bytes>>,
) -> DohReply {
    let alpn: &[u8] = match http {
        Http::Two => b"h2",
        Http::One => b"http/1.1",
    };
    let stream = connect(addr, &[cert], &[alpn]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn), "ALPN");
    let io = TokioIo::new(stream);
    let exchange = async {
        let response = match http {
            Http::Two => {
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .expect("h2 handshake");
                tokio::spawn(conn);
                send.send_request(request).await
            }
            Http::One => {
                let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .expect("http1 handshake");
                tokio::spawn(conn);
                send.send_request(request).await
            }
        }
        .expect("response");
        assert_eq!(
            response.version(),
            match http {
                Http::Two => hyper::Version::HTTP_2,
                Http::One => hyper::Version::HTTP_11,
            }
        );
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        DohReply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    timeout(EXCHANGE, exchange)
        .await
        .expect("DoH reply in time")
}

fn doh_request(
    method: Method,
    target: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> hyper::Request<Full<Bytes>> {
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(format!("https://{HOST}{target}"))
        .header("host", HOST);
    if let Some(t) = content_type {
        builder = builder.header(CONTENT_TYPE, t);
    }
    builder.body(Full::new(Bytes::from(body))).expect("request")
}

fn post(msg: &Message) -> hyper::Request<Full<Bytes>> {
    doh_request(
        Method::POST,
        "/dns-query",
        Some("application/dns-message"),
        msg.to_vec().expect("encode"),
    )
}

fn get(msg: &Message) -> hyper::Request<Full<Bytes>> {
    let encoded = data_encoding::BASE64URL_NOPAD.encode(&msg.to_vec().expect("encode"));
    doh_request(
        Method::GET,
        &format!("/dns-query?dns={encoded}"),
        None,
        Vec::new(),
    )
}

/// A query with ID 0, as RFC 8484 §4.1 asks of DoH clients.
fn doh_query(name: &str, rtype: RecordType) -> Message {
    let mut msg = query(name, rtype);
    msg.metadata.id = 0;
    msg
}

/// What a user compares between transports: rcode, AA, and the answer data.
fn gist(msg: &Message) -> (ResponseCode, bool, Vec<String>) {
    let answers = msg
        .answers
        .iter()
        .map(|r| format!("{} {}", r.name, r.data))
        .collect();
    (rcode(msg), msg.metadata.authoritative, answers)
}

async fn add_record(server: &Server, name: &str, ttl: u32) {
    let created = http_post(
        server.http_addr(),
        "/api/v1/records",
        &json!({"name": name, "type": "A", "data": "192.168.1.10", "ttl": ttl}),
        None,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
}

#[tokio::test]
async fn dot_and_doh_answer_as_plain_dns_does() {
    let (_files, cert, _up, s) = start_forwarding(&[]);
    add_record(&s.server, "host.home.lan", 120).await;

    for (name, rtype) in [
        ("host.home.lan.", RecordType::A),
        ("www.example.com.", RecordType::A),
    ] {
        let plain = ask_udp(s.server.dns_addr(), &query(name, rtype)).await;
        assert_eq!(rcode(&plain), ResponseCode::NoError, "{name}");
        assert!(!plain.answers.is_empty(), "{name}");
        let expected = gist(&plain);
        let dot = ask_dot(s.dot, &cert, &query(name, rtype)).await;
        assert_eq!(gist(&dot), expected, "DoT {name}");
        for http in [Http::Two, Http::One] {
            let by_post = doh(s.doh, &cert, http, post(&doh_query(name, rtype))).await;
            let reply = by_post.dns();
            assert_eq!(reply.metadata.id, 0);
            assert_eq!(gist(&reply), expected, "DoH POST {http:?} {name}");
            let by_get = doh(s.doh, &cert, http, get(&doh_query(name, rtype))).await;
            assert_eq!(gist(&by_get.dns()), expected, "DoH GET {http:?} {name}");
        }
    }

    // The HTTP freshness is the answer's TTL: 120 s for the local record, at most.
    let reply = doh(
        s.doh,
        &cert,
        Http::Two,
        get(&doh_query("host.home.lan.", RecordType::A)),
    )
    .await;
    assert_eq!(reply.headers[CACHE_CONTROL], "max-age=120");
    // Any ID is answered, and echoed.
    let mut with_id = doh_query("host.home.lan.", RecordType::A);
    with_id.metadata.id = 4242;
    let reply = doh(s.doh, &cert, Http::Two, post(&with_id)).await.dns();
    assert_eq!(reply.metadata.id, 4242);

    // DoT pipelines like TCP: two queries written before either reply is read.
    let mut stream = connect(s.dot, &[&cert], &[b"dot"]).await;
    let (q1, q2) = (
        query("host.home.lan.", RecordType::A),
        query("a.example.com.", RecordType::A),
    );
    let mut both = q1.to_vec().expect("encode");
    both.splice(0..0, u16::try_from(both.len()).expect("len").to_be_bytes());
    let mut second = q2.to_vec().expect("encode");
    second.splice(
        0..0,
        u16::try_from(second.len()).expect("len").to_be_bytes(),
    );
    both.extend(second);
    tokio::io::AsyncWriteExt::write_all(&mut stream, &both)
        .await
        .expect("write");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let frame = timeout(EXCHANGE, read_frame(&mut stream))
            .await
            .expect("in time")
            .expect("read");
        ids.push(parse(&frame.expect("reply")).metadata.id);
    }
    ids.sort_unstable();
    let mut expected = vec![q1.metadata.id, q2.metadata.id];
    expected.sort_unstable();
    assert_eq!(ids, expected);

    let metrics = http_get(s.server.http_addr(), "/metrics", None).await.body;
    for transport in ["tls", "https"] {
        let series = format!("rind_queries_total{{transport=\"{transport}\",type=\"A\"}}");
        assert!(
            metric_value(&metrics, &series).unwrap_or(0.0) >= 2.0,
            "{series} in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn acl_refuses_encrypted_clients_too() {
    let (_files, cert, up, s) = start_forwarding(&["--allow", "10.0.0.0/8"]);
    let dot = ask_dot(s.dot, &cert, &query("www.example.com.", RecordType::A)).await;
    assert_eq!(rcode(&dot), ResponseCode::Refused);
    let doh_reply = doh(
        s.doh,
        &cert,
        Http::Two,
        post(&doh_query("www.example.com.", RecordType::A)),
    )
    .await;
    // A DNS refusal is a DNS answer: HTTP 200 carrying REFUSED (RFC 8484 §4.2.1).
    assert_eq!(rcode(&doh_reply.dns()), ResponseCode::Refused);
    assert_eq!(up.total(), 0, "a refused client's query went upstream");
}

#[tokio::test]
async fn requests_that_are_not_doh_get_4xx_and_the_server_goes_on() {
    let (_files, cert, _up, s) = start_forwarding(&[]);
    let good = doh_query("localhost.", RecordType::A)
        .to_vec()
        .expect("encode");
    let mut response_bit = good.clone();
    response_bit[2] |= 0x80;
    let cases: Vec<(&str, hyper::Request<Full<Bytes>>, StatusCode)> = vec![
        (
            "other path",
            doh_request(Method::GET, "/", None, Vec::new()),
            StatusCode::NOT_FOUND,
        ),
        (
            "PUT",
            doh_request(
                Method::PUT,
                "/dns-query",
                Some("application/dns-message"),
                good.clone(),
            ),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "POST text",
            doh_request(Method::POST, "/dns-query", Some("text/plain"), good.clone()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "POST no type",
            doh_request(Method::POST, "/dns-query", None, good.clone()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "POST 70 KB",
            doh_request(
                Method::POST,
                "/dns-query",
                Some("application/dns-message"),
                vec![0; 70_000],
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "GET without dns",
            doh_request(Method::GET, "/dns-query?name=x", None, Vec::new()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET bad base64",
            doh_request(Method::GET, "/dns-query?dns=%%%", None, Vec::new()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST 3 bytes",
            doh_request(
                Method::POST,
                "/dns-query",
                Some("application/dns-message"),
                vec![1, 2, 3],
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST a response",
            doh_request(
                Method::POST,
                "/dns-query",
                Some("application/dns-message"),
                response_bit,
            ),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, request, status) in cases {
        let reply = doh(s.doh, &cert, Http::Two, request).await;
        assert_eq!(reply.status, status, "{what}: {:?}", reply.body);
    }
    // A header that reads but a body that does not: DNS says FORMERR, HTTP says 200.
    let mut truncated = good.clone();
    truncated.truncate(14);
    let reply = doh(
        s.doh,
        &cert,
        Http::One,
        doh_request(
            Method::POST,
            "/dns-query",
            Some("application/dns-message"),
            truncated,
        ),
    )
    .await;
    assert_eq!(rcode(&reply.dns()), ResponseCode::FormErr);

    // Plain bytes on the TLS ports: the connection ends, nothing else does.
    for addr in [s.dot, s.doh] {
        let mut raw = TcpStream::connect(addr).await.expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut raw, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut sink = Vec::new();
        // EOF or a reset, whichever: what matters is that the server ends it.
        let _ = timeout(EXCHANGE, raw.read_to_end(&mut sink))
            .await
            .expect("a connection that does not speak TLS is closed");
    }
    let after = doh(
        s.doh,
        &cert,
        Http::Two,
        post(&doh_query("localhost.", RecordType::A)),
    )
    .await
    .dns();
    assert_eq!(a_records(&after), vec![std::net::Ipv4Addr::LOCALHOST]);
    let after = ask_dot(s.dot, &cert, &query("localhost.", RecordType::A)).await;
    assert_eq!(a_records(&after), vec![std::net::Ipv4Addr::LOCALHOST]);
}

/// The streams of one HTTP/2 connection run on that connection's task: a stream waiting on
/// upstream must not hold up the others, and every one must be answered.
#[tokio::test]
async fn doh_streams_on_one_connection_answer_independently() {
    let (_files, cert, up, s) = start_forwarding(&[]);
    add_record(&s.server, "host.home.lan", 120).await;
    let slow: Vec<String> = (0..8).map(|i| format!("slow{i}.example.com.")).collect();
    for name in &slow {
        up.set_rule(name, Behaviour::Delay(Duration::from_secs(1)));
    }

    let tls = connect(s.doh, &[&cert], &[b"h2"]).await;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let ask = |name: String| {
        let mut send = send.clone();
        tokio::spawn(async move {
            let response = send
                .send_request(post(&doh_query(&name, RecordType::A)))
                .await
                .expect("response");
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            let body = response.into_body().collect().await.expect("body");
            parse(&body.to_bytes())
        })
    };
    let misses: Vec<_> = slow.iter().cloned().map(ask).collect();
    // Each miss is at the upstream (so its stream is waiting) before the hit is sent.
    let deadline = Instant::now() + EXCHANGE;
    while slow.iter().any(|n| up.count(n) == 0) {
        assert!(
            Instant::now() < deadline,
            "the misses never reached upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hit = timeout(EXCHANGE, ask("host.home.lan.".to_string()))
        .await
        .expect("the hit in time")
        .expect("the hit's task");
    assert_eq!(rcode(&hit), ResponseCode::NoError);
    assert_eq!(
        misses.iter().filter(|m| m.is_finished()).count(),
        0,
        "the hit came after misses that wait 1 s upstream (a try times out after 2 s)"
    );
    for (name, miss) in slow.iter().zip(misses) {
        let reply = timeout(EXCHANGE, miss)
            .await
            .expect("the miss in time")
            .expect("the miss's task");
        assert_eq!(rcode(&reply), ResponseCode::NoError, "{name}");
        assert!(!reply.answers.is_empty(), "{name}");
    }
    drop(send);
    conn.abort();
}

/// A POST of the wrong type is read before its 415 goes out: answering while the client still
/// sends makes HTTP/2 reset the stream, which clients (curl) report instead of the 415.
#[tokio::test]
async fn a_doh_error_waits_for_the_body_and_keeps_the_connection() {
    let (_files, cert, _up, s) = start_forwarding(&[]);
    let tls = connect(s.doh, &[&cert], &[b"h2"]).await;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    let conn = tokio::spawn(conn);

    let (go, held) = tokio::sync::oneshot::channel::<()>();
    let body = http_body_util::StreamBody::new(futures_util::stream::once(async move {
        let _ = held.await;
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from_static(b"x")))
    }))
    .boxed_unsync();
    let request = hyper::Request::builder()
        .method(Method::POST)
        .uri(format!("https://{HOST}/dns-query"))
        .header("host", HOST)
        .header(CONTENT_TYPE, "text/plain")
        .body(body)
        .expect("request");
    let response = tokio::spawn(send.send_request(request));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !response.is_finished(),
        "the 415 went out while the body was still on its way"
    );
    go.send(()).expect("the body is waiting");
    let response = timeout(EXCHANGE, response)
        .await
        .expect("the 415 in time")
        .expect("the request's task")
        .expect("a response, not a reset stream");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let next = post(&doh_query("localhost.", RecordType::A)).map(BodyExt::boxed_unsync);
    let after = timeout(EXCHANGE, send.send_request(next))
        .await
        .expect("the next answer in time")
        .expect("the connection still works");
    assert_eq!(after.status(), StatusCode::OK);
    drop(send);
    conn.abort();
}

#[tokio::test]
async fn idle_and_stalled_connections_are_closed() {
    let files = Files::new();
    let cert = TestCert::new();
    cert.install(&files);
    let s = start(
        &files,
        &["--tcp-idle-timeout", "1", "--max-tcp-connections", "2"],
    );

    // DoT: after one answer and a second of silence, the server closes.
    let mut stream = connect(s.dot, &[&cert], &[b"dot"]).await;
    let reply = dot_exchange(&mut stream, &query("localhost.", RecordType::A)).await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    let closed = timeout(Duration::from_secs(5), read_frame(&mut stream)).await;
    assert!(
        matches!(closed, Ok(Ok(None)) | Ok(Err(_))),
        "DoT connection still open: {closed:?}"
    );

    // DoH over HTTP/2: the connection ends (GOAWAY, then close) with no request open.
    let tls = connect(s.doh, &[&cert], &[b"h2"]).await;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let response = timeout(
        EXCHANGE,
        send.send_request(post(&doh_query("localhost.", RecordType::A))),
    )
    .await
    .expect("in time")
    .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    drop(response);
    let ended = timeout(Duration::from_secs(5), conn).await;
    assert!(
        ended.is_ok(),
        "DoH connection still open after the idle timeout"
    );

    // A client that never starts its handshake holds a slot only until the handshake timeout;
    // meanwhile the other slot still serves.
    let silent = TcpStream::connect(s.dot).await.expect("connect");
    let reply = ask_dot(s.dot, &cert, &query("localhost.", RecordType::A)).await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    let mut silent = silent;
    let mut sink = Vec::new();
    let read = timeout(Duration::from_secs(10), silent.read_to_end(&mut sink)).await;
    assert!(
        read.is_ok(),
        "a client without a handshake kept its connection"
    );
}

/// Waits up to 5 s for a stderr line containing `needle`, after `from` lines.
fn wait_log(server: &Server, needle: &str, from: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(line) = server
            .stderr_lines()
            .into_iter()
            .skip(from)
            .find(|l| l.contains(needle))
        {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?}:\n{}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sighup(server: &Server) {
    let pid = libc::pid_t::try_from(server.pid()).expect("pid fits");
    // SAFETY: kill(2) has no memory-safety preconditions; the PID is our live child's.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0, "kill(SIGHUP)");
}

async fn udp_still_answers(server: &Server) {
    let reply = ask_udp(server.dns_addr(), &query("localhost.", RecordType::A)).await;
    assert_eq!(a_records(&reply), vec![std::net::Ipv4Addr::LOCALHOST]);
}

#[tokio::test]
async fn sighup_swaps_the_certificate_without_dropping_anything() {
    let files = Files::new();
    let (a, b) = (TestCert::new(), TestCert::new());
    a.install(&files);
    let s = start(&files, &[]);
    let q = query("localhost.", RecordType::A);

    let mut open = connect(s.dot, &[&a, &b], &[b"dot"]).await;
    assert_eq!(presented(&open), a.der);
    dot_exchange(&mut open, &q).await;
    udp_still_answers(&s.server).await;

    b.install(&files);
    let seen = s.server.stderr_lines().len();
    sighup(&s.server);
    wait_log(&s.server, "reloaded", seen);
    for addr in [s.dot, s.doh] {
        let alpn: &[u8] = if addr == s.dot { b"dot" } else { b"h2" };
        let fresh = connect(addr, &[&a, &b], &[alpn]).await;
        assert_eq!(presented(&fresh), b.der, "new connections get B");
    }
    // The connection opened under A still works, as does plain UDP.
    let reply = dot_exchange(&mut open, &q).await;
    assert_eq!(a_records(&reply), vec![std::net::Ipv4Addr::LOCALHOST]);
    udp_still_answers(&s.server).await;
    // A client trusting only B now connects.
    let reply = ask_dot(s.dot, &b, &q).await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);

    // A broken replacement: the reload fails, says why, and B stays.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("write");
    let seen = s.server.stderr_lines().len();
    sighup(&s.server);
    let line = wait_log(&s.server, "reload failed", seen);
    assert!(line.contains(&path(&files.cert)), "{line}");
    let fresh = connect(s.dot, &[&a, &b], &[b"dot"]).await;
    assert_eq!(presented(&fresh), b.der, "the failed reload kept B");
    // A key of another certificate is refused too.
    b.install(&files);
    std::fs::write(&files.key, TestCert::new().key_pem).expect("write");
    let seen = s.server.stderr_lines().len();
    sighup(&s.server);
    wait_log(&s.server, "reload failed", seen);
    let reply = ask_dot(s.dot, &b, &q).await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    udp_still_answers(&s.server).await;
    let reply = dot_exchange(&mut open, &q).await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
}

#[test]
fn bad_certificates_and_missing_flags_refuse_to_start() {
    let files = Files::new();
    let cert = TestCert::new();
    let (code, err) = Server::run_expect_exit(&["--dot-addr", "127.0.0.1:0"]);
    let line = assert_refusal(code, &err);
    assert!(
        line.contains("--dot-addr needs --tls-cert and --tls-key"),
        "{line}"
    );
    let (code, err) =
        Server::run_expect_exit(&["--doh-addr", "127.0.0.1:0", "--tls-cert", "c.pem"]);
    let line = assert_refusal(code, &err);
    assert!(line.contains("--doh-addr needs"), "{line}");

    let with_files = |dot: &str| {
        let mut args: Vec<String> = vec!["--dot-addr".into(), dot.into()];
        args.extend(files.args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, err) = Server::run_expect_exit(&args);
        assert_refusal(code, &err)
    };
    let line = with_files("127.0.0.1:0");
    assert!(
        line.contains("cannot read the TLS certificate") && line.contains(&path(&files.cert)),
        "{line}"
    );
    std::fs::write(&files.cert, &cert.cert_pem).expect("write");
    let line = with_files("127.0.0.1:0");
    assert!(line.contains("cannot read the TLS key"), "{line}");
    std::fs::write(&files.key, "hello\n").expect("write");
    let line = with_files("127.0.0.1:0");
    assert!(
        line.contains("is not usable PEM") && line.contains("PRIVATE KEY"),
        "{line}"
    );
    std::fs::write(&files.key, TestCert::new().key_pem).expect("write");
    let line = with_files("127.0.0.1:0");
    assert!(line.contains("does not fit the certificate"), "{line}");

    // A busy DoT port is reported like a busy DNS port.
    cert.install(&files);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = busy.local_addr().expect("addr").to_string();
    let line = with_files(&taken);
    assert!(
        line.contains(&format!("cannot listen for DNS over TLS on {taken}")),
        "{line}"
    );
}
