//! Durability of local records against the real binary: SIGKILL right after a burst of
//! concurrent writes loses no acknowledged create, update or delete; old stores are migrated
//! before anything is served; a store newer than the binary is refused.
//!
//! `RIND_CRASH_CYCLES=50 cargo test -p rind-server --test records_durability -- --nocapture`
//! runs a longer crash loop (default 5 cycles).

mod records_common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use records_common::{no_upstream, Server};
use serde_json::{json, Value};

/// Concurrent writers in each cycle.
const WRITERS: usize = 16;
/// Longest a cycle's writers may run before the kill.
const CYCLE_LIMIT: Duration = Duration::from_secs(60);

/// What a record must look like after a restart: `None` is deleted.
type Fields = Option<(String, u32, String)>;

/// One record's history as the clients saw it.
#[derive(Debug, Clone)]
struct Tracked {
    /// The last acknowledged state.
    acked: Fields,
    /// A write sent but not answered when the server died: either state is correct.
    in_flight: Option<Fields>,
}

/// Totals over all cycles.
#[derive(Debug, Default)]
struct Figures {
    creates: usize,
    updates: usize,
    deletes: usize,
    in_flight: usize,
}

/// What one writer thread did in one cycle.
#[derive(Default)]
struct WriterLog {
    figures: Figures,
    records: Vec<(String, Tracked)>,
    /// A create sent but not answered: its id is unknown.
    lost_create: Option<(String, u32, String)>,
}

fn fields(record: &Value) -> (String, u32, String) {
    (
        record["name"].as_str().unwrap_or_default().to_string(),
        record["ttl"].as_u64().unwrap_or_default() as u32,
        record["data"].as_str().unwrap_or_default().to_string(),
    )
}

/// Creates, updates and deletes until the server dies or `stop` is set.
fn writer(
    http: std::net::SocketAddr,
    cycle: usize,
    thread: usize,
    mut owned: Vec<(String, Tracked)>,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> WriterLog {
    rind_server::upstream::trust::install_ring_default();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let url = |path: &str| format!("http://{http}{path}");
    let mut log = WriterLog::default();
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let roll: u8 = rand::random::<u8>() % 10;
        let live: Vec<usize> = (0..owned.len())
            .filter(|&i| owned[i].1.acked.is_some())
            .collect();
        let ttl = 60 + n;
        let data = format!("10.{}.{}.{}", thread, n / 250, n % 250);
        if live.len() < 4 || roll < 5 {
            let name = format!("c{cycle}-t{thread}-{n}.crash.lan.");
            let want = (name.clone(), ttl, data.clone());
            let body = json!({"name": name, "type": "A", "ttl": ttl, "data": data});
            match client
                .post(url("/api/v1/records"))
                .body(body.to_string())
                .send()
            {
                Ok(r) if r.status().as_u16() == 201 => {
                    let record: Value = r.json().expect("record");
                    let id = record["id"].as_str().expect("id").to_string();
                    assert_eq!(fields(&record), want);
                    owned.push((
                        id,
                        Tracked {
                            acked: Some(want),
                            in_flight: None,
                        },
                    ));
                    log.figures.creates += 1;
                }
                Ok(r) => panic!("create answered {}", r.status()),
                Err(_) => {
                    log.lost_create = Some(want);
                    break;
                }
            }
        } else {
            let pick = live[rand::random::<u32>() as usize % live.len()];
            let (id, tracked) = &mut owned[pick];
            let (name, _, _) = tracked.acked.clone().expect("live");
            let (request, after) = if roll < 8 {
                let body = json!({"name": name, "type": "A", "ttl": ttl, "data": data});
                (
                    client
                        .put(url(&format!("/api/v1/records/{id}")))
                        .body(body.to_string()),
                    Some((name, ttl, data)),
                )
            } else {
                (client.delete(url(&format!("/api/v1/records/{id}"))), None)
            };
            tracked.in_flight = Some(after.clone());
            match request.send() {
                Ok(r) if r.status().is_success() => {
                    tracked.acked = after;
                    tracked.in_flight = None;
                    if tracked.acked.is_some() {
                        log.figures.updates += 1;
                    } else {
                        log.figures.deletes += 1;
                    }
                }
                Ok(r) => panic!("write answered {}", r.status()),
                Err(_) => break,
            }
        }
        acked.fetch_add(1, Ordering::Relaxed);
    }
    log.records = owned;
    log
}

/// Checks every tracked record against the restarted server, through the API and DNS;
/// returns the number lost. Settles in-flight writes to what the server kept.
fn verify(
    server: &Server,
    tracked: &mut HashMap<String, Tracked>,
    lost_creates: &mut Vec<(String, u32, String)>,
) -> usize {
    let listed = server.call("GET", "/api/v1/records", None);
    assert_eq!(listed.status, 200);
    let mut actual: HashMap<String, (String, u32, String)> = listed
        .json
        .as_array()
        .expect("array")
        .iter()
        .map(|r| (r["id"].as_str().expect("id").to_string(), fields(r)))
        .collect();
    let mut lost = 0;
    for (id, t) in tracked.iter_mut() {
        let found = actual.remove(id);
        let ok = found == t.acked || t.in_flight.as_ref().is_some_and(|f| *f == found);
        if !ok {
            eprintln!(
                "LOST {id}: acknowledged {:?}, in flight {:?}, found {found:?}",
                t.acked, t.in_flight
            );
            lost += 1;
        }
        t.acked = found;
        t.in_flight = None;
    }
    // Records nobody acknowledged may only be creates that were in flight.
    for (id, f) in actual {
        let Some(at) = lost_creates.iter().position(|c| *c == f) else {
            panic!("record {id} {f:?} was never written");
        };
        lost_creates.swap_remove(at);
        tracked.insert(
            id,
            Tracked {
                acked: Some(f),
                in_flight: None,
            },
        );
    }
    lost_creates.clear();
    for (id, t) in tracked.iter() {
        if let Some((name, ttl, data)) = &t.acked {
            let answer = server.ask(name, RecordType::A);
            let seen: Vec<(String, u32)> = answer
                .answers
                .iter()
                .map(|r| (r.data.to_string(), r.ttl))
                .collect();
            if seen != [(data.clone(), *ttl)] {
                eprintln!("DNS for {id} {name}: expected {data} ttl {ttl}, got {seen:?}");
                lost += 1;
            }
        }
    }
    lost
}

#[test]
fn sigkill_after_acknowledged_writes_loses_nothing() {
    let cycles: usize = std::env::var("RIND_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut tracked: HashMap<String, Tracked> = HashMap::new();
    let mut lost_creates = Vec::new();
    let mut totals = Figures::default();
    let mut lost = 0;
    for cycle in 0..cycles {
        let server = Server::start(&data, no_upstream(), &[]);
        lost += verify(&server, &mut tracked, &mut lost_creates);
        // Hand each writer a share of the records that survived, so updates and deletes also
        // reach records written before earlier kills.
        let mut shares: Vec<Vec<(String, Tracked)>> = vec![Vec::new(); WRITERS];
        for (i, (id, t)) in tracked
            .drain()
            .filter(|(_, t)| t.acked.is_some())
            .enumerate()
        {
            shares[i % WRITERS].push((id, t));
        }
        let acked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = shares
            .into_iter()
            .enumerate()
            .map(|(thread, owned)| {
                let (acked, stop, http) = (acked.clone(), stop.clone(), server.http);
                std::thread::spawn(move || writer(http, cycle, thread, owned, acked, stop))
            })
            .collect();
        let burst = 150 + rand::random::<u32>() as usize % 250;
        let started = Instant::now();
        while acked.load(Ordering::Relaxed) < burst && started.elapsed() < CYCLE_LIMIT {
            std::thread::sleep(Duration::from_millis(1));
        }
        // SIGKILL while the writers are still sending.
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for handle in writers {
            let log = handle.join().expect("writer");
            totals.creates += log.figures.creates;
            totals.updates += log.figures.updates;
            totals.deletes += log.figures.deletes;
            for (id, t) in log.records {
                totals.in_flight += usize::from(t.in_flight.is_some());
                tracked.insert(id, t);
            }
            if let Some(create) = log.lost_create {
                totals.in_flight += 1;
                lost_creates.push(create);
            }
        }
    }
    let server = Server::start(&data, no_upstream(), &[]);
    lost += verify(&server, &mut tracked, &mut lost_creates);
    let writes = totals.creates + totals.updates + totals.deletes;
    println!(
        "crash test: {cycles} cycles of SIGKILL, {writes} acknowledged writes ({} creates, {} updates, {} deletes), {} in flight at the kills, {} records at the end, lost: {lost}",
        totals.creates,
        totals.updates,
        totals.deletes,
        totals.in_flight,
        tracked.values().filter(|t| t.acked.is_some()).count(),
    );
    assert_eq!(lost, 0, "acknowledged writes lost");
    assert!(writes > 0);
}

/// Opens `dir` with sled directly (no background flusher, so the lock is free once dropped).
fn raw_store(dir: &Path) -> sled::Db {
    sled::Config::new()
        .path(dir)
        .flush_every_ms(None)
        .open()
        .expect("open raw store")
}

#[test]
fn an_old_store_is_migrated_before_anything_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    {
        // Version 0: a sled directory without the meta tree, as before the first migration.
        let db = raw_store(&data);
        db.insert("unrelated", "kept").expect("insert");
        db.flush().expect("flush");
        assert_eq!(migrations::version(&db).expect("version"), 0);
    }
    let server = Server::start(&data, no_upstream(), &[]);
    let created = server.create("nas.home.lan", "A", 300, "192.168.1.10");
    server.kill();

    let server = Server::start(&data, no_upstream(), &[]);
    assert_eq!(
        server.call("GET", "/api/v1/records", None).json,
        json!([created])
    );
    assert_eq!(server.ask("nas.home.lan.", RecordType::A).answers.len(), 1);
    server.kill();

    let db = raw_store(&data);
    assert_eq!(
        migrations::version(&db).expect("version"),
        migrations::SCHEMA_VERSION
    );
    assert!(db.get("unrelated").expect("get").is_some());
}

#[test]
fn a_store_newer_than_the_binary_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    {
        let db = raw_store(&data);
        db.open_tree(migrations::META_TREE)
            .expect("meta")
            .insert(
                migrations::VERSION_KEY,
                &(migrations::SCHEMA_VERSION + 1).to_be_bytes(),
            )
            .expect("insert");
        db.flush().expect("flush");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_rind-server"))
        .args(["--dns-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rind-server did not refuse the store");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("newer than this rind-server"), "{stderr}");
}
