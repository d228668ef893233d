//! A fake HTTP server for blocklists on 127.0.0.1: serves list files by path, with an `ETag`
//! (answering 304 to a matching `If-None-Match`), or a chosen error status, and counts the
//! requests for each path. It runs on a thread of its own, so a test blocked in a server start
//! does not stall it; dropping it (or [`ListServer::stop`]) closes the port.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

#[derive(Clone)]
enum File {
    Body { text: String, etag: String },
    Status(u16),
}

#[derive(Default)]
struct State {
    files: HashMap<String, File>,
    requests: HashMap<String, usize>,
    not_modified: usize,
}

pub struct ListServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ListServer {
    pub fn start() -> ListServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind list server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => serve(stream, &state),
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        ListServer {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Serves `text` at `path`, with an ETag that changes with the text.
    pub fn serve(&self, path: &str, text: &str) {
        let etag = format!("\"{:x}-{}\"", fnv(text.as_bytes()), text.len());
        self.state.lock().unwrap().files.insert(
            path.to_string(),
            File::Body {
                text: text.to_string(),
                etag,
            },
        );
    }

    /// Answers `path` with `status` and no list.
    pub fn fail(&self, path: &str, status: u16) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), File::Status(status));
    }

    /// Requests for `path` so far.
    pub fn requests(&self, path: &str) -> usize {
        *self.state.lock().unwrap().requests.get(path).unwrap_or(&0)
    }

    /// Requests answered 304 so far.
    pub fn not_modified(&self) -> usize {
        self.state.lock().unwrap().not_modified
    }

    /// Closes the port: later fetches get "connection refused".
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("list server thread");
        }
    }
}

impl Drop for ListServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let if_none_match = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("if-none-match")
            .then(|| value.trim().to_string())
    });
    let file = {
        let mut state = state.lock().unwrap();
        *state.requests.entry(path.clone()).or_default() += 1;
        let file = state.files.get(&path).cloned();
        if let (Some(File::Body { etag, .. }), Some(asked)) = (&file, &if_none_match) {
            if etag == asked {
                state.not_modified += 1;
            }
        }
        file
    };
    let reply = match file {
        Some(File::Body { etag, .. }) if if_none_match.as_deref() == Some(etag.as_str()) => {
            format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n")
        }
        Some(File::Body { text, etag }) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        ),
        Some(File::Status(status)) => format!(
            "HTTP/1.1 {status} Failing\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_string(),
    };
    let _ = stream.write_all(reply.as_bytes());
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
