//! Harness for the rind-ctl tests: a real rind-server started in-process through its
//! library on ephemeral 127.0.0.1 ports, the real `rind-ctl` binary run as a subprocess,
//! a tiny fake upstream resolver, and a DNS client. Every wait is bounded.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Once;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rind_server::config::Args;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// How long a server may take to bind, open its store and answer `/healthz`.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `rind-ctl` run may take (its own HTTP timeout is 30 s; a hang is a failure).
pub const CTL_TIMEOUT: Duration = Duration::from_secs(40);
/// How long a DNS query waits for its reply.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(6);
/// Upstream for servers that must not forward anywhere: nothing listens on the discard port.
pub const NOWHERE_UPSTREAM: &str = "127.0.0.1:9";
/// What the fake upstream answers to every A query.
pub const UPSTREAM_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const UPSTREAM_TTL: u32 = 300;

const CTL: &str = env!("CARGO_BIN_EXE_rind-ctl");

/// Each server holds a pool of 1024 upstream sockets: lift the soft open-files limit to the
/// hard one (as rind-server's own main does) so parallel tests do not run out.
fn raise_open_files_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    });
}

/// A rind-server running in this process on its own thread and tokio runtime.
pub struct TestServer {
    pub dns: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server with a fresh data dir, forwarding nowhere.
    pub fn start() -> TestServer {
        Self::with_args(&[])
    }

    /// A server with a fresh data dir and extra flags (`--api-token`, `--upstream`, ...).
    pub fn with_args(extra: &[&str]) -> TestServer {
        let tmp = tempfile::tempdir().expect("create temp dir");
        let data_dir = tmp.path().join("data");
        Self::launch(extra, data_dir, Some(tmp))
    }

    /// A server on an existing data dir (e.g. a snapshot), which the caller keeps alive.
    pub fn on_data_dir(dir: &Path) -> TestServer {
        Self::launch(&[], dir.to_path_buf(), None)
    }

    fn launch(extra: &[&str], data_dir: PathBuf, tmp: Option<tempfile::TempDir>) -> TestServer {
        raise_open_files_limit();
        let mut argv: Vec<String> = [
            "rind-server",
            "--dns-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.push(data_dir.to_string_lossy().into_owned());
        if !extra.contains(&"--upstream") {
            argv.extend(["--upstream".to_string(), NOWHERE_UPSTREAM.to_string()]);
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        let mut config = <Args as clap::Parser>::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("rind-server flags {argv:?}: {e}"))
            .validate()
            .unwrap_or_else(|e| panic!("rind-server config {argv:?}: {e}"));
        // clap also reads the env twins: a RIND_API_TOKEN in the test's own environment
        // must not turn on authentication for tests that did not ask for it.
        if !extra.contains(&"--api-token") {
            config.api_token = None;
        }
        let shutdown = CancellationToken::new();
        let (ready, addrs) = mpsc::channel::<Result<(SocketAddr, SocketAddr), String>>();
        let thread = {
            let shutdown = shutdown.clone();
            thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("server runtime");
                runtime.block_on(async move {
                    let sockets = match rind_server::bind(&config).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready.send(Err(format!("bind: {e}")));
                            return;
                        }
                    };
                    let dns = sockets.listeners.tcp.local_addr().expect("DNS addr");
                    let http = sockets.listeners.http.local_addr().expect("HTTP addr");
                    let opened = match rind_server::Opened::open(&config).await {
                        Ok(opened) => opened,
                        Err(e) => {
                            let _ = ready.send(Err(format!("store: {e}")));
                            return;
                        }
                    };
                    let _ = ready.send(Ok((dns, http)));
                    if let Err(e) = rind_server::run(config, opened, sockets, shutdown).await {
                        eprintln!("rind-server (test) stopped with an error: {e}");
                    }
                });
            })
        };
        let (dns, http) = match addrs.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(e)) => panic!("rind-server did not start: {e}"),
            Err(e) => panic!("rind-server did not start within {STARTUP_TIMEOUT:?}: {e}"),
        };
        let server = TestServer {
            dns,
            http,
            data_dir,
            shutdown,
            thread: Some(thread),
            _tmp: tmp,
        };
        server.wait_healthy();
        server
    }

    /// `http://127.0.0.1:PORT`, as given to `--server`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// `rind-ctl --server URL ARGS...`
    pub fn ctl(&self, args: &[&str]) -> Output {
        Ctl::new().server(&self.url()).args(args).run()
    }

    /// Like [`TestServer::ctl`], asserting exit status 0 and an empty stderr.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        out.assert_ok(args);
        out.stdout
    }

    /// Runs `ARGS... --json`, asserts success and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let stdout = self.ok(&all);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("rind-ctl {all:?} --json printed no JSON ({e}):\n{stdout}"))
    }

    /// `add NAME TYPE DATA --json`, returning the record's id.
    pub fn add(&self, name: &str, rtype: &str, data: &str) -> String {
        let record = self.json(&["add", name, rtype, data]);
        record["id"]
            .as_str()
            .unwrap_or_else(|| panic!("add printed no id: {record}"))
            .to_string()
    }

    /// The records as `list --json` shows them.
    pub fn records(&self) -> Vec<Value> {
        match self.json(&["list"]) {
            Value::Array(items) => items,
            other => panic!("list --json printed no array: {other}"),
        }
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if http_get_status(self.http, "/healthz") == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rind-server at {} did not answer /healthz within {STARTUP_TIMEOUT:?}",
                self.http
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            // run() drains for at most 5 s per stage; don't wait for ever if it hangs.
            let deadline = Instant::now() + Duration::from_secs(20);
            while !thread.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// The status code of a plain `GET path` over HTTP/1.0, None when there is no answer.
fn http_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A 127.0.0.1 port with nothing listening on it (bound, then released).
pub fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a throwaway port");
    listener.local_addr().expect("throwaway addr").port()
}

/// What one `rind-ctl` run left behind.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    args: Vec<String>,
}

impl Output {
    /// Exit 0, nothing on stderr.
    pub fn assert_ok(&self, what: &[&str]) {
        assert_eq!(
            self.code,
            Some(0),
            "rind-ctl {what:?} failed:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.is_empty(),
            "rind-ctl {what:?} wrote to stderr: {}",
            self.stderr
        );
    }

    /// A refused request: exit 1, exactly one line on stderr starting `rind-ctl: `, nothing
    /// on stdout. Returns the line.
    pub fn assert_refused(&self) -> &str {
        self.assert_failed(1);
        let line = self.stderr.trim_end_matches('\n');
        assert!(
            !line.contains('\n'),
            "rind-ctl {:?}: the error is more than one line:\n{}",
            self.args,
            self.stderr
        );
        assert!(
            line.starts_with("rind-ctl: "),
            "rind-ctl {:?}: unexpected error line {line:?}",
            self.args
        );
        line
    }

    /// A usage error: exit 2, a message on stderr, nothing on stdout.
    pub fn assert_usage_error(&self) -> &str {
        self.assert_failed(2);
        &self.stderr
    }

    fn assert_failed(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "rind-ctl {:?}: expected exit {code}\nstdout: {}\nstderr: {}",
            self.args,
            self.stdout,
            self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "rind-ctl {:?} failed but printed to stdout: {}",
            self.args,
            self.stdout
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "rind-ctl {:?} failed without a word on stderr",
            self.args
        );
    }
}

/// One `rind-ctl` invocation.
pub struct Ctl {
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Ctl {
    /// No `--server` and a clean environment: no RIND_* variable of the test's own
    /// environment reaches the child.
    pub fn new() -> Ctl {
        Ctl {
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    pub fn server(mut self, url: &str) -> Ctl {
        self.args.extend(["--server".to_string(), url.to_string()]);
        self
    }

    pub fn args(mut self, args: &[&str]) -> Ctl {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Ctl {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs the binary and collects its output; panics when it outlives [`CTL_TIMEOUT`].
    pub fn run(self) -> Output {
        let mut cmd = Command::new(CTL);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RIND_") {
                cmd.env_remove(&key);
            }
        }
        // Panics would show a backtrace; keep the child's stderr what a person sees.
        cmd.env_remove("RUST_BACKTRACE");
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn rind-ctl");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let out_reader = thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let err_reader = thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + CTL_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for rind-ctl") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rind-ctl {:?} ran longer than {CTL_TIMEOUT:?}", self.args);
            }
            thread::sleep(Duration::from_millis(5));
        };
        Output {
            code: status.code(),
            stdout: out_reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
            args: self.args,
        }
    }
}

impl Default for Ctl {
    fn default() -> Self {
        Self::new()
    }
}

/// Sends one query over UDP and returns the parsed reply; panics when none comes.
pub fn dns_query(server: SocketAddr, qname: &str, rtype: RecordType) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind DNS client");
    sock.connect(server).expect("connect DNS client");
    sock.set_read_timeout(Some(DNS_TIMEOUT))
        .expect("set read timeout");
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_ascii(qname).expect("query name"),
        rtype,
    ));
    let id = query.metadata.id;
    sock.send(&query.to_vec().expect("encode query"))
        .expect("send query");
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + DNS_TIMEOUT;
    loop {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no DNS reply from {server} for {qname}: {e}"));
        let reply = Message::from_vec(&buf[..n]).expect("reply parses");
        if reply.metadata.id == id {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "no matching DNS reply for {qname}"
        );
    }
}

/// The A addresses in a reply's answer section.
pub fn a_answers(reply: &Message) -> Vec<(Ipv4Addr, u32)> {
    reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some((a.0, r.ttl)),
            _ => None,
        })
        .collect()
}

/// A fake upstream resolver on 127.0.0.1 (UDP): every A query gets [`UPSTREAM_V4`] with TTL
/// [`UPSTREAM_TTL`], anything else NOERROR without answers. Stops when dropped.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    pub fn start() -> FakeUpstream {
        let std_sock = UdpSocket::bind("127.0.0.1:0").expect("bind fake upstream");
        std_sock
            .set_nonblocking(true)
            .expect("nonblocking fake upstream");
        let addr = std_sock.local_addr().expect("fake upstream addr");
        let stop = CancellationToken::new();
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake upstream runtime");
                runtime.block_on(async move {
                    let sock =
                        tokio::net::UdpSocket::from_std(std_sock).expect("tokio fake upstream");
                    let mut buf = vec![0u8; 65535];
                    loop {
                        let (n, from) = tokio::select! {
                            _ = stop.cancelled() => return,
                            got = sock.recv_from(&mut buf) => match got {
                                Ok(got) => got,
                                Err(_) => continue,
                            },
                        };
                        if let Some(reply) = upstream_reply(&buf[..n]) {
                            let _ = sock.send_to(&reply, from).await;
                        }
                    }
                });
            })
        };
        FakeUpstream {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// `IP:port`, as given to `--upstream`.
    pub fn arg(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn upstream_reply(bytes: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(bytes).ok()?;
    let question = query.queries.first()?.clone();
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(question.clone());
    if question.query_type() == RecordType::A {
        reply.add_answer(Record::from_rdata(
            question.name().clone(),
            UPSTREAM_TTL,
            RData::A(A(UPSTREAM_V4)),
        ));
    }
    reply.to_vec().ok()
}
