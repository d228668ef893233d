//! Starting the real `rind-server` binary as a child process and watching its stderr.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::upstream::FakeUpstream;

/// How long a server may take to print its `listening` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server that is expected to refuse to start may take to exit.
pub const REFUSAL_TIMEOUT: Duration = Duration::from_secs(15);
/// Upstream used when a test names none: nothing listens on the discard port, so a test
/// that forgets `--upstream` fails fast instead of querying the public resolvers.
pub const NOWHERE_UPSTREAM: &str = "127.0.0.1:9";

const BIN: &str = env!("CARGO_BIN_EXE_rind-server");

/// Lines read from a child's stderr, shared with the reader thread.
#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    eof: bool,
}

#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

impl Log {
    fn lines(&self) -> Vec<String> {
        lock(&self.state).lines.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking reader thread must not hide the lines it already collected.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes ANSI colour sequences, in case the server colours its logs despite `NO_COLOR`.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters and intermediates, then one final byte in '@'..='~'.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Options for one server process; [`Server::start`] covers the common case.
#[derive(Default)]
pub struct ServerBuilder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
    startup_timeout: Option<Duration>,
    during_warm_up: bool,
}

impl ServerBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// Uses an existing data dir instead of a fresh one (e.g. to test the lock).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// Waits up to `timeout` instead of [`STARTUP_TIMEOUT`] for the `listening` line (a big
    /// store takes long to load in a debug build).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = Some(timeout);
        self
    }

    /// Returns from [`ServerBuilder::start`] at the `listening` line, while the cache may
    /// still be loading from disk.
    pub fn during_warm_up(mut self) -> Self {
        self.during_warm_up = true;
        self
    }

    /// Spawns the server and waits until it reports both listening addresses and (unless
    /// [`ServerBuilder::during_warm_up`]) the end of its cache warm-up, so a test that
    /// restarts it sees every cached answer the disk held.
    pub fn start(self) -> Server {
        let timeout = self.startup_timeout.unwrap_or(STARTUP_TIMEOUT);
        let during_warm_up = self.during_warm_up;
        let mut server = self.spawn();
        let (dns, http) = server.wait_for("listening dns=… http=…", timeout, parse_listening);
        server.dns = dns;
        server.http = http;
        if !during_warm_up {
            server.wait_warm_up(timeout);
        }
        server
    }

    /// Spawns the server without waiting for anything (its addresses are unknown): for a
    /// start that is expected to stall or fail.
    pub fn spawn(self) -> Server {
        let tmp = tempfile::tempdir().expect("create temp dir");
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        let mut cmd = self.command(&data_dir);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn rind-server");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Log::default());
        let reader = {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                // Keep reading until EOF so the pipe never fills and blocks the server.
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut st = lock(&log.state);
                    st.lines.push(strip_ansi(&line));
                    log.changed.notify_all();
                }
                lock(&log.state).eof = true;
                log.changed.notify_all();
            })
        };
        Server {
            child,
            exit: None,
            log,
            reader: Some(reader),
            dns: "0.0.0.0:0".parse().expect("literal addr"),
            http: "0.0.0.0:0".parse().expect("literal addr"),
            data_dir,
            _tmp: tmp,
        }
    }

    /// Runs the binary expecting it to exit on its own; returns (exit code, stderr).
    pub fn run_expect_exit(self) -> (Option<i32>, String) {
        let tmp = tempfile::tempdir().expect("create temp dir");
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        let mut cmd = self.command(&data_dir);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn rind-server");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let reader = thread::spawn(move || {
            let mut s = String::new();
            // Invalid UTF-8 would itself be a finding; keep what was read.
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let status = wait_child(&mut child, REFUSAL_TIMEOUT);
        if status.is_none() {
            // Still running: it did not refuse. Kill it so the reader sees EOF.
            let _ = child.kill();
            let _ = child.wait();
        }
        let err = strip_ansi(&reader.join().unwrap_or_default());
        let Some(status) = status else {
            panic!(
                "rind-server {:?} kept running for {REFUSAL_TIMEOUT:?}; stderr:\n{err}",
                self.args
            );
        };
        (status.code(), err)
    }

    fn command(&self, data_dir: &Path) -> Command {
        let mut cmd = Command::new(BIN);
        // The test environment must not leak settings into the server: its env twins
        // (RIND_*) and RUST_LOG would change what it does. NO_COLOR keeps logs parseable.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("RIND_") || k == "RUST_LOG" {
                cmd.env_remove(&key);
            }
        }
        cmd.env("NO_COLOR", "1");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let has = |flag: &str| {
            self.args
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        let mut args: Vec<OsString> = Vec::new();
        if !has("--dns-addr") {
            args.extend(["--dns-addr".into(), "127.0.0.1:0".into()]);
        }
        if !has("--http-addr") {
            args.extend(["--http-addr".into(), "127.0.0.1:0".into()]);
        }
        if !has("--data-dir") {
            args.extend(["--data-dir".into(), data_dir.as_os_str().to_owned()]);
        }
        let env_upstreams = self.envs.iter().any(|(k, _)| k == "RIND_UPSTREAMS");
        if !has("--upstream") && !env_upstreams {
            args.extend(["--upstream".into(), NOWHERE_UPSTREAM.into()]);
        }
        args.extend(self.args.iter().map(OsString::from));
        cmd.args(args);
        cmd
    }
}

/// Polls `try_wait` until the child exits or `timeout` passes.
fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("waiting for rind-server: {e}"),
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running `rind-server`; killed (SIGKILL) and reaped when dropped.
pub struct Server {
    child: Child,
    exit: Option<ExitStatus>,
    log: Arc<Log>,
    reader: Option<JoinHandle<()>>,
    dns: SocketAddr,
    http: SocketAddr,
    data_dir: PathBuf,
    // Last field: dropped after the process is gone.
    _tmp: tempfile::TempDir,
}

impl Server {
    /// Starts a server on ephemeral loopback ports with a fresh data dir; `args` are added
    /// after the defaults and replace `--dns-addr`, `--http-addr`, `--data-dir` and
    /// `--upstream` when they name them.
    pub fn start(args: &[&str]) -> Server {
        ServerBuilder::new().args(args).start()
    }

    /// Starts a server forwarding to `upstream` on the data dir `dir`, which may hold the
    /// store of an earlier run; `extra` flags are added.
    pub fn start_on(dir: &Path, upstream: &FakeUpstream, extra: &[&str]) -> Server {
        ServerBuilder::new()
            .args(&["--upstream", &upstream.arg()])
            .args(extra)
            .data_dir(dir)
            .start()
    }

    /// Runs the binary with `args` (plus the defaults) expecting it to exit by itself.
    pub fn run_expect_exit(args: &[&str]) -> (Option<i32>, String) {
        ServerBuilder::new().args(args).run_expect_exit()
    }

    pub fn dns_addr(&self) -> SocketAddr {
        self.dns
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.log.lines()
    }

    pub fn stderr_text(&self) -> String {
        self.log.lines().join("\n")
    }

    /// Sends SIGTERM (graceful shutdown request).
    pub fn sigterm(&mut self) {
        // Only signal a process we have not reaped: its PID could have been reused.
        if self.exit.is_some() || matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
    }

    /// Sends SIGKILL (a crash: no shutdown code runs) and reaps the process.
    pub fn kill9(&mut self) {
        if self.exit.is_none() {
            // Child::kill sends SIGKILL to our own child's PID; a no-op once it has exited.
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = wait_child(&mut self.child, timeout);
        }
        self.exit
    }

    /// Blocks until the line that ends the cache warm-up (finished or failed) appears.
    pub fn wait_warm_up(&mut self, timeout: Duration) {
        self.wait_for("cache warm-up …", timeout, |line| {
            line.contains("cache warm-up").then_some(())
        });
    }

    /// Blocks until a line that `find` reads appears; panics with the stderr collected so far
    /// if it does not within `timeout`.
    fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        find: impl Fn(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.log.state);
        loop {
            if let Some(found) = st.lines.iter().find_map(|l| find(l)) {
                return found;
            }
            let now = Instant::now();
            if st.eof || now >= deadline {
                let lines = st.lines.join("\n");
                drop(st);
                let status = self.wait_exit(Duration::from_secs(1));
                panic!(
                    "rind-server did not report `{what}` (exit status {status:?}); \
                     stderr:\n{lines}"
                );
            }
            st = self
                .log
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Parses `... listening dns=127.0.0.1:P http=127.0.0.1:Q ...` out of a log line.
pub fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = &line[line.find("listening")?..];
    let field = |key: &str| -> Option<SocketAddr> {
        let start = rest.find(key)? + key.len();
        let value: String = rest[start..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != ',')
            .filter(|c| *c != '"')
            .collect();
        value.parse().ok()
    };
    Some((field("dns=")?, field("http=")?))
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exit.is_none() {
            // Child::kill sends SIGKILL to our child's PID and is a no-op once reaped.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(reader) = self.reader.take() {
            // The pipe closes with the process, so the reader ends promptly.
            let _ = reader.join();
        }
    }
}

/// Asserts the refusal contract: exit status 2, exactly one stderr line, no panic.
/// Returns that line.
pub fn assert_refusal(code: Option<i32>, stderr: &str) -> String {
    assert_eq!(code, Some(2), "expected exit status 2; stderr:\n{stderr}");
    assert!(
        !stderr.contains("panicked"),
        "server panicked instead of refusing cleanly:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one line on stderr, got {}:\n{stderr}",
        lines.len()
    );
    lines[0].to_string()
}
