//! A small harness for the records tests: the real `rind-server` binary on 127.0.0.1 port 0,
//! a JSON client for its API, a DNS client, and a fake upstream.
//!
//! Every wait is bounded, and every process started here is killed by its own handle on drop.

// Each test crate uses a different part of the harness.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// How long a server may take to say it is listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `rind-server`, killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    /// DNS address (UDP and TCP).
    pub dns: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
    client: reqwest::blocking::Client,
    token: Option<String>,
}

impl Server {
    /// Starts the binary on `data_dir` forwarding to `upstream`, with `extra` flags, and waits
    /// for its `listening dns=... http=...` line.
    pub fn start(data_dir: &Path, upstream: SocketAddr, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rind-server"))
            .args(["--dns-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--upstream")
            .arg(upstream.to_string())
            .args(extra)
            .env_remove("RIND_API_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rind-server");
        let stderr = child.stderr.take().expect("stderr");
        let (ready_tx, ready_rx) = mpsc::channel();
        // Reads stderr to its end so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addrs) = listening(&line) {
                    let _ = ready_tx.send(addrs);
                }
                if std::env::var_os("RIND_TEST_LOG").is_some() {
                    eprintln!("server: {line}");
                }
            }
        });
        let (dns, http) = match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(addrs) => addrs,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!("rind-server did not start in {START_TIMEOUT:?} (exit: {status:?})");
            }
        };
        let token = extra
            .windows(2)
            .find(|w| w[0] == "--api-token")
            .map(|w| w[1].to_string());
        rind_server::upstream::trust::install_ring_default();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        Server {
            child,
            dns,
            http,
            client,
            token,
        }
    }

    /// Sends SIGKILL and waits for the process to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// An API call with this server's token (if any); `body` is sent as it is.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let mut request = self.client.request(
            reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
            self.url(path),
        );
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        Reply::from(request.send().expect("HTTP request"))
    }

    /// Creates a record; panics unless the server answers 201.
    pub fn create(&self, name: &str, rtype: &str, ttl: u32, data: &str) -> serde_json::Value {
        let body = serde_json::json!({"name": name, "type": rtype, "ttl": ttl, "data": data});
        let reply = self.call("POST", "/api/v1/records", Some(&body.to_string()));
        assert_eq!(reply.status, 201, "create {name} {rtype} {data}: {reply:?}");
        reply.json
    }

    /// Asks `name`/`rtype` over UDP (a few tries, 2 s each).
    pub fn ask(&self, name: &str, rtype: RecordType) -> Message {
        ask(self.dns, name, rtype)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(dns, http)` from the server's ready line.
fn listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let addr = |key: &str| -> Option<SocketAddr> {
        let start = line.find(key)? + key.len();
        line[start..].split_whitespace().next()?.parse().ok()
    };
    Some((addr("dns=")?, addr("http=")?))
}

/// An HTTP reply: status, JSON body (`Null` when empty), `Location` header.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// The body as JSON.
    pub json: serde_json::Value,
    /// The `Location` header.
    pub location: Option<String>,
}

impl From<reqwest::blocking::Response> for Reply {
    fn from(response: reqwest::blocking::Response) -> Self {
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().expect("body");
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        Reply {
            status,
            json,
            location,
        }
    }
}

impl Reply {
    /// The `error` message of an error reply.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

/// Asks `server` for `name`/`rtype` over UDP (three tries of 2 s).
pub fn ask(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let id: u16 = rand::random();
    let mut query = Message::query();
    query.metadata.id = id;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    let bytes = query.to_vec().expect("encode");
    let mut buf = [0u8; 4096];
    for _ in 0..3 {
        socket.send_to(&bytes, server).expect("send");
        while let Ok((len, _)) = socket.recv_from(&mut buf) {
            let reply = Message::from_vec(&buf[..len]).expect("reply parses");
            if reply.metadata.id == id {
                return reply;
            }
        }
    }
    panic!("no DNS answer for {name} {rtype}");
}

/// A fake upstream on 127.0.0.1: answers every A question with [`FakeUpstream::ADDRESS`] (TTL
/// 30), anything else with NOERROR and no answer, and counts the questions, by name.
pub struct FakeUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    asked: Arc<std::sync::Mutex<Vec<String>>>,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// The address every A answer carries.
    pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

    /// Starts it.
    pub fn start() -> FakeUpstream {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, queries, asked) = (stop.clone(), queries.clone(), asked.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(query) = Message::from_vec(&buf[..len]) else {
                        continue;
                    };
                    queries.fetch_add(1, Ordering::Relaxed);
                    if let Some(q) = query.queries.first() {
                        if let Ok(mut asked) = asked.lock() {
                            asked.push(format!(
                                "{} {}",
                                q.name.to_ascii().to_lowercase(),
                                q.query_type
                            ));
                        }
                    }
                    let reply = fake_reply(&query);
                    if let Ok(bytes) = reply.to_vec() {
                        let _ = socket.send_to(&bytes, peer);
                    }
                }
            })
        };
        FakeUpstream {
            addr,
            asked,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    /// How many questions it was asked.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }

    /// The questions it was asked, as `name TYPE` (name lower-cased).
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn fake_reply(query: &Message) -> Message {
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.response_code = ResponseCode::NoError;
    for q in &query.queries {
        reply.add_query(q.clone());
        if q.query_type == RecordType::A {
            reply.add_answer(Record::from_rdata(
                q.name.clone(),
                30,
                RData::A(A(FakeUpstream::ADDRESS)),
            ));
        }
    }
    reply
}

/// An address no upstream listens on (the discard port): forwarded questions go unanswered.
pub fn no_upstream() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9))
}
