//! `rind-ctl block ...` and `rind-ctl allow ...` against a real rind-server (in-process,
//! ephemeral 127.0.0.1 ports) and a list file served by a tiny HTTP server on 127.0.0.1:
//! each command's output, its effect over DNS, and the errors.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use hickory_proto::rr::RecordType;

use common::{a_answers, dead_port, dns_query, FakeUpstream, TestServer, UPSTREAM_V4};

/// Serves one list file at every path and counts the requests; stops when dropped.
struct ListFile {
    url: String,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ListFile {
    fn serve(text: &'static str) -> ListFile {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind list server");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}/hosts", listener.local_addr().expect("addr"));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (Arc::clone(&requests), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((mut stream, _)) = listener.accept() else {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    requests.fetch_add(1, Ordering::SeqCst);
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = stream.write_all(reply.as_bytes());
                }
            })
        };
        ListFile {
            url,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for ListFile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn a_of(server: &TestServer, name: &str) -> Vec<Ipv4Addr> {
    a_answers(&dns_query(server.dns, name, RecordType::A))
        .into_iter()
        .map(|(ip, _)| ip)
        .collect()
}

#[test]
fn block_and_allow_commands() {
    let up = FakeUpstream::start();
    let list = ListFile::serve("# ads\n0.0.0.0 ads.example.com\n||tracker.example^\nnot a rule\n");
    let server = TestServer::with_args(&["--upstream", &up.arg()]);

    let out = server.ok(&["block", "add", &list.url, "--name", "ads"]);
    let mut lines = out.lines();
    let head: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        head,
        ["ID", "DOMAINS", "SKIPPED", "UPDATED", "NAME", "ERROR"],
        "{out}"
    );
    let row: Vec<&str> = lines.next().expect("a row").split_whitespace().collect();
    assert_eq!(
        (row[1], row[2], row[4], row[5]),
        ("2", "1", "ads", "-"),
        "{out}"
    );
    let id = row[0].to_string();
    assert_eq!(list.requests(), 1);

    let listed = server.json(&["block", "list"]);
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed[0]["url"], list.url.as_str(), "{listed}");
    assert_eq!(listed[0]["domains"], 2, "{listed}");
    let blocked = a_answers(&dns_query(server.dns, "ads.example.com.", RecordType::A));
    assert_eq!(blocked, [(Ipv4Addr::UNSPECIFIED, 60)]);
    assert_eq!(a_of(&server, "x.tracker.example."), [Ipv4Addr::UNSPECIFIED]);

    server.ok(&["block", "refresh"]);
    assert_eq!(list.requests(), 2);
    let one = server.json(&["block", "refresh", &id]);
    assert_eq!(one[0]["domains"], 2, "{one}");
    assert_eq!(list.requests(), 3);

    assert_eq!(
        server.ok(&["allow", "add", "X.Tracker.Example."]),
        "x.tracker.example\n"
    );
    assert_eq!(a_of(&server, "x.tracker.example."), [UPSTREAM_V4]);
    assert_eq!(a_of(&server, "tracker.example."), [Ipv4Addr::UNSPECIFIED]);
    assert_eq!(server.ok(&["allow", "list"]), "x.tracker.example\n");
    let entries = server.json(&["allow", "list"]);
    assert_eq!(entries[0]["domain"], "x.tracker.example", "{entries}");
    server.ok(&["allow", "rm", "x.tracker.example"]);
    assert_eq!(server.ok(&["allow", "list"]), "");
    let line = server.ctl(&["allow", "rm", "x.tracker.example"]);
    assert!(line.assert_refused().contains("not on the allowlist"));
    let bad = server.ctl(&["allow", "add", "not a domain"]);
    assert!(bad.assert_refused().contains("not a domain"));

    server.ok(&["block", "rm", &id]);
    assert_eq!(a_of(&server, "ads.example.com."), [UPSTREAM_V4]);
    assert_eq!(
        server.ok(&["block", "list"]).lines().count(),
        1,
        "only the header"
    );
    let gone = server.ctl(&["block", "rm", &id]);
    assert!(gone.assert_refused().contains("no blocklist"));
    let dead = format!("http://127.0.0.1:{}/hosts", dead_port());
    let unreachable = server.ctl(&["block", "add", &dead]);
    assert!(unreachable.assert_refused().contains("cannot fetch"));
}
