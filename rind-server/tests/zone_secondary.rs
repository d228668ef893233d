//! Secondary zones (docs/reference.md, "Zones and zone transfer"): rind pulling a zone from a rind
//! primary (TSIG, NOTIFY, IXFR), keeping it across restarts and a kill -9 mid-transfer, and
//! giving it up once the SOA expire passes without its primary. A fake primary written
//! here can stall a transfer halfway and go silent; tests/external/zones.sh checks Knot.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::json;
use tokio::net::{TcpListener, UdpSocket};

const KEY: &str = "xfr:hmac-sha256:c2VjcmV0LXRyYW5zZmVyLWtleQ==";
/// Bound on every wait for a secondary to catch up: far below the SOA refresh (300 s), so
/// only NOTIFY or the start-up refresh can make it.
const CATCH_UP: Duration = Duration::from_secs(10);

/// Polls `check` every 50 ms until it holds or `within` passes; returns the time it took.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    for _ in 0..10_000 {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: loop bound reached");
}

/// The A addresses `server` answers for `qname`, with the reply's rcode and AA.
async fn lookup(server: SocketAddr, qname: &str) -> (ResponseCode, bool, Vec<std::net::Ipv4Addr>) {
    let reply = ask_udp(server, &query(qname, RecordType::A)).await;
    (
        rcode(&reply),
        reply.metadata.authoritative,
        a_records(&reply),
    )
}

async fn answers(server: SocketAddr, qname: impl AsRef<str>, ip: impl AsRef<str>) -> bool {
    let (qname, ip) = (qname.as_ref(), ip.as_ref());
    let (code, aa, ips) = lookup(server, qname).await;
    code == ResponseCode::NoError && aa && ips.iter().any(|a| a.to_string() == ip)
}

async fn add_record(server: &Server, name: &str, ip: &str) -> serde_json::Value {
    let created = http_post(
        server.http_addr(),
        "/api/v1/records",
        &json!({"name": name, "type": "A", "data": ip}),
        None,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.json()
}

async fn zone(server: &Server, name: &str) -> serde_json::Value {
    let got = http_get(server.http_addr(), &format!("/api/v1/zones/{name}"), None).await;
    assert_eq!(got.status, 200, "{}", got.body);
    got.json()
}

#[tokio::test]
async fn a_rind_secondary_follows_a_rind_primary() {
    let mut secondary = Server::start(&["--tsig-key", KEY]);
    let mut primary = Server::start(&["--tsig-key", KEY]);
    let created = http_post(
        primary.http_addr(),
        "/api/v1/zones",
        &json!({
            "name": "home.lan",
            "allow_transfer": ["127.0.0.1/32"],
            "notify": [secondary.dns_addr().to_string()],
            "tsig": "xfr",
        }),
        None,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    add_record(&primary, "nas.home.lan", "192.168.1.10").await;

    let made = http_post(
        secondary.http_addr(),
        "/api/v1/zones",
        &json!({"name": "home.lan", "primary": primary.dns_addr().to_string(), "tsig": "xfr"}),
        None,
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(
        made.json()["serial"],
        0,
        "no serial before the first transfer"
    );
    let sec = secondary.dns_addr();
    eventually(CATCH_UP, "first transfer", || {
        answers(sec, "nas.home.lan.", "192.168.1.10")
    })
    .await;

    // Each write on the primary reaches the secondary by NOTIFY (its refresh timer is 300 s).
    for i in 1..=5u8 {
        let ip = format!("192.168.2.{i}");
        add_record(&primary, &format!("host{i}.home.lan"), &ip).await;
        let took = eventually(CATCH_UP, "write reaches the secondary", || {
            answers(sec, format!("host{i}.home.lan."), ip.clone())
        })
        .await;
        eprintln!("write {i} answered by the secondary after {took:?}");
    }
    let serial = zone(&primary, "home.lan").await["serial"].clone();
    assert_eq!(zone(&secondary, "home.lan").await["serial"], serial);

    // Authoritative negative answers with the primary's SOA.
    let nx = ask_udp(sec, &query("missing.home.lan.", RecordType::A)).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    assert!(has_soa_authority(&nx));

    // The secondary's data is the primary's: writes under it are refused.
    let refused = http_post(
        secondary.http_addr(),
        "/api/v1/records",
        &json!({"name": "x.home.lan", "type": "A", "data": "10.0.0.1"}),
        None,
    )
    .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("is a secondary of")),
        "{}",
        refused.body
    );

    // The primary goes away; the secondary keeps answering, also after a restart.
    primary.sigterm();
    assert!(answers(sec, "host5.home.lan.", "192.168.2.5").await);
    secondary.sigterm();
    // The next start needs the data dir, which the stopping server holds until it exits.
    let stopped = secondary.wait_exit(Duration::from_secs(10));
    assert!(
        stopped.is_some_and(|s| s.success()),
        "the secondary did not stop cleanly: {stopped:?}"
    );
    let dir = secondary.data_dir().to_path_buf();
    let again = ServerBuilder::new()
        .args(&["--tsig-key", KEY, "--upstream", NOWHERE_UPSTREAM])
        .data_dir(&dir)
        .start();
    assert!(answers(again.dns_addr(), "nas.home.lan.", "192.168.1.10").await);
    assert!(answers(again.dns_addr(), "host3.home.lan.", "192.168.2.3").await);
}

/// A primary written for the tests: one zone, `z.test.`, served over UDP (SOA) and TCP
/// (SOA, AXFR; IXFR is answered with the whole zone, as RFC 1995 allows).
struct FakePrimary {
    addr: SocketAddr,
    state: Arc<Mutex<PrimaryState>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct PrimaryState {
    serial: u32,
    /// SOA refresh, retry and expire.
    timers: (i32, i32, i32),
    /// Addresses `10.0.<i / 256>.<i % 256>` for `h<i>.z.test.`, `i` in `0..hosts`.
    hosts: u32,
    /// Answer nothing at all.
    silent: bool,
    /// Send the first message of a transfer, then nothing more until this is cleared.
    stall: bool,
    /// Transfers that stalled so far.
    stalled: u32,
}

fn apex() -> Name {
    Name::from_ascii("z.test.").expect("name")
}

impl PrimaryState {
    fn soa(&self) -> Record {
        let (refresh, retry, expire) = self.timers;
        Record::from_rdata(
            apex(),
            60,
            RData::SOA(SOA::new(
                Name::from_ascii("ns.z.test.").expect("name"),
                Name::from_ascii("admin.z.test.").expect("name"),
                self.serial,
                refresh,
                retry,
                expire,
                30,
            )),
        )
    }

    fn records(&self) -> Vec<Record> {
        (0..self.hosts)
            .map(|i| {
                Record::from_rdata(
                    Name::from_ascii(format!("h{i}.z.test.")).expect("name"),
                    60,
                    RData::A(A::new(10, 0, (i / 256) as u8, (i % 256) as u8)),
                )
            })
            .collect()
    }
}

impl FakePrimary {
    async fn start(state: PrimaryState) -> FakePrimary {
        let state = Arc::new(Mutex::new(state));
        // The same port for UDP and TCP: bind UDP, then TCP on its port (retried if taken).
        let mut bound = None;
        for _ in 0..50 {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
            let addr = udp.local_addr().expect("addr");
            if let Ok(tcp) = TcpListener::bind(addr).await {
                bound = Some((udp, tcp, addr));
                break;
            }
        }
        let (udp, tcp, addr) = bound.expect("a port free for UDP and TCP");
        let udp_task = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let Ok((len, from)) = udp.recv_from(&mut buf).await else {
                        return;
                    };
                    let Ok(q) = Message::from_vec(&buf[..len]) else {
                        continue;
                    };
                    let reply = {
                        let st = state.lock().expect("state");
                        if st.silent {
                            continue;
                        }
                        respond(&q, vec![st.soa()])
                    };
                    let _ = udp.send_to(&reply, from).await;
                }
            })
        };
        let tcp_task = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = tcp.accept().await else {
                        return;
                    };
                    let state = Arc::clone(&state);
                    tokio::spawn(async move { serve_tcp(&mut stream, &state).await });
                }
            })
        };
        FakePrimary {
            addr,
            state,
            tasks: vec![udp_task, tcp_task],
        }
    }

    fn set(&self, change: impl FnOnce(&mut PrimaryState)) {
        change(&mut self.state.lock().expect("state"));
    }

    fn stalled(&self) -> u32 {
        self.state.lock().expect("state").stalled
    }

    /// Sends NOTIFY for the zone to `secondary` from this primary's address.
    async fn notify(&self, secondary: SocketAddr) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let mut msg = Message::new(7, MessageType::Query, OpCode::Notify);
        msg.metadata.authoritative = true;
        msg.add_query(hickory_proto::op::Query::query(apex(), RecordType::SOA));
        // From the primary's IP (the port does not matter, RFC 1996 §3.10 checks the host).
        socket
            .send_to(&msg.to_vec().expect("encode"), secondary)
            .await
            .expect("send NOTIFY");
        let mut buf = vec![0u8; 512];
        let got = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("NOTIFY answered")
            .expect("recv");
        let reply = Message::from_vec(&buf[..got.0]).expect("parse");
        assert_eq!(reply.metadata.op_code, OpCode::Notify);
        assert_eq!(rcode(&reply), ResponseCode::NoError);
        assert!(reply.metadata.authoritative);
    }
}

impl Drop for FakePrimary {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn respond(q: &Message, answers: Vec<Record>) -> Vec<u8> {
    let mut reply = Message::response(q.metadata.id, OpCode::Query);
    reply.metadata.authoritative = true;
    reply.add_queries(q.queries.clone());
    reply.add_answers(answers);
    reply.to_vec().expect("encode")
}

async fn serve_tcp(stream: &mut tokio::net::TcpStream, state: &Mutex<PrimaryState>) {
    loop {
        let Ok(Some(frame)) = read_frame(stream).await else {
            return;
        };
        let Ok(q) = Message::from_vec(&frame) else {
            return;
        };
        let qtype = q.queries.first().map(|q| q.query_type);
        let (soa, records, stall) = {
            let st = state.lock().expect("state");
            if st.silent {
                return;
            }
            (st.soa(), st.records(), st.stall)
        };
        if !matches!(qtype, Some(RecordType::AXFR | RecordType::IXFR)) {
            let _ = write_frame(stream, &respond(&q, vec![soa])).await;
            continue;
        }
        let mut all = vec![soa.clone()];
        all.extend(records);
        all.push(soa);
        for (n, chunk) in all.chunks(500).enumerate() {
            if n == 1 && stall {
                state.lock().expect("state").stalled += 1;
                // Hold the transfer open until the test lets it go (bounded: 60 s).
                for _ in 0..600 {
                    if !state.lock().expect("state").stall {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                return;
            }
            let mut msg = Message::response(q.metadata.id, OpCode::Query);
            msg.metadata.authoritative = true;
            if n == 0 {
                msg.add_queries(q.queries.clone());
            }
            msg.add_answers(chunk.to_vec());
            if write_frame(stream, &msg.to_vec().expect("encode"))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

async fn make_secondary(server: &Server, primary: SocketAddr) {
    let made = http_post(
        server.http_addr(),
        "/api/v1/zones",
        &json!({"name": "z.test", "primary": primary.to_string()}),
        None,
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
}

#[tokio::test]
async fn a_kill_9_mid_transfer_keeps_the_old_zone_and_the_next_start_finishes_it() {
    let primary = FakePrimary::start(PrimaryState {
        serial: 1,
        timers: (300, 60, 86_400),
        hosts: 10,
        silent: false,
        stall: false,
        stalled: 0,
    })
    .await;
    let mut secondary = Server::start(&[]);
    make_secondary(&secondary, primary.addr).await;
    let sec = secondary.dns_addr();
    eventually(CATCH_UP, "first transfer", || {
        answers(sec, "h9.z.test.", "10.0.0.9")
    })
    .await;

    // Version 2 is large, and its transfer stalls after the first message.
    primary.set(|st| {
        st.serial = 2;
        st.hosts = 3000;
        st.stall = true;
    });
    primary.notify(sec).await;
    eventually(CATCH_UP, "the transfer to stall", || {
        let stalled = primary.stalled();
        async move { stalled >= 1 }
    })
    .await;
    secondary.kill9();

    let dir = secondary.data_dir().to_path_buf();
    primary.set(|st| st.stall = false);
    let again = ServerBuilder::new()
        .args(&["--upstream", NOWHERE_UPSTREAM])
        .data_dir(&dir)
        .start();
    let sec = again.dns_addr();
    // Either the old version, whole, or (once the start-up refresh is done) the new one.
    let (code, aa, ips) = lookup(sec, "h9.z.test.").await;
    assert_eq!((code, aa), (ResponseCode::NoError, true));
    assert_eq!(
        ips,
        vec!["10.0.0.9".parse::<std::net::Ipv4Addr>().expect("ip")]
    );
    eventually(CATCH_UP, "version 2 after the restart", || {
        answers(sec, "h2999.z.test.", "10.0.11.183")
    })
    .await;
    let shown = zone(&again, "z.test").await;
    assert_eq!(shown["serial"], 2);
    assert_eq!(shown["records"], 3000);
}

#[tokio::test]
async fn a_secondary_answers_until_the_soa_expire_then_servfail_then_again() {
    let primary = FakePrimary::start(PrimaryState {
        serial: 10,
        timers: (1, 1, 4),
        hosts: 3,
        silent: false,
        stall: false,
        stalled: 0,
    })
    .await;
    let secondary = Server::start(&[]);
    make_secondary(&secondary, primary.addr).await;
    let sec = secondary.dns_addr();
    eventually(CATCH_UP, "first transfer", || {
        answers(sec, "h1.z.test.", "10.0.0.1")
    })
    .await;

    primary.set(|st| st.silent = true);
    // Still answered right after the primary went silent...
    assert!(answers(sec, "h2.z.test.", "10.0.0.2").await);
    // ...and SERVFAIL once 4 s pass without word from it.
    eventually(CATCH_UP, "expiry", || async {
        lookup(sec, "h2.z.test.").await.0 == ResponseCode::ServFail
    })
    .await;
    let (code, _, _) = lookup(sec, "other.z.test.").await;
    assert_eq!(
        code,
        ResponseCode::ServFail,
        "no NXDOMAIN from expired data"
    );

    primary.set(|st| st.silent = false);
    eventually(CATCH_UP, "answers once the primary is back", || {
        answers(sec, "h2.z.test.", "10.0.0.2")
    })
    .await;
}
