//! The store under faults (docs/reference.md, "Durability and failures"), against the real binary:
//! damaged copies of a real store, a start that sled never finishes, a big healthy store, a
//! full disk (a size-limited tmpfs), and scheduled snapshots.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use reqwest::Method;

/// Records in the store the damage tests copy: enough for a `db` file well past 64 KiB.
const RECORDS: usize = 300;
/// The contract's bound on reporting a damaged store.
const DAMAGE_DEADLINE: Duration = Duration::from_secs(15);

/// One record as created: id, owner name, address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Made {
    id: String,
    name: String,
    ip: String,
}

async fn create(http: SocketAddr, name: &str, ip: &str) -> HttpReply {
    let body = serde_json::json!({"name": name, "type": "A", "data": ip}).to_string();
    http_send(http, Method::POST, "/api/v1/records", Some(&body)).await
}

/// Creates a record that must succeed.
async fn create_ok(http: SocketAddr, name: &str, ip: &str) -> Made {
    let reply = create(http, name, ip).await;
    assert_eq!(reply.status, 201, "create {name}: {}", reply.body);
    Made {
        id: reply.json()["id"].as_str().expect("id").to_string(),
        name: name.to_string(),
        ip: ip.to_string(),
    }
}

/// Every record the server lists.
async fn listed(http: SocketAddr) -> BTreeSet<Made> {
    let reply = http_get(http, "/api/v1/records", None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|r| Made {
            id: r["id"].as_str().expect("id").to_string(),
            name: r["name"].as_str().expect("name").to_string(),
            ip: r["data"].as_str().expect("data").to_string(),
        })
        .collect()
}

fn ip(i: usize) -> String {
    format!("10.{}.{}.{}", i / 65_536, i / 256 % 256, i % 256)
}

/// Stops a server with SIGTERM and checks that it exits 0.
fn stop(mut server: Server) {
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: exit {status:?}; stderr:\n{}",
        server.stderr_text()
    );
}

/// A real store: [`RECORDS`] records written through the API, a snapshot, a clean stop, and a
/// second start and stop (on which sled writes its own `snap.*` recovery file).
struct Built {
    root: tempfile::TempDir,
    records: BTreeSet<Made>,
    snapshot: PathBuf,
}

impl Built {
    async fn new() -> Built {
        let root = tempfile::tempdir().expect("tempdir");
        let built = Built {
            root,
            records: BTreeSet::new(),
            snapshot: PathBuf::new(),
        };
        let server = built.server(&built.data()).start();
        let mut records = BTreeSet::new();
        for i in 0..RECORDS {
            records
                .insert(create_ok(server.http_addr(), &format!("h{i}.home.arpa."), &ip(i)).await);
        }
        let reply = http_send(server.http_addr(), Method::POST, "/api/v1/snapshot", None).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let snapshot = PathBuf::from(reply.json()["path"].as_str().expect("path"));
        stop(server);
        let server = built.server(&built.data()).start();
        assert_eq!(listed(server.http_addr()).await, records);
        stop(server);
        assert!(
            sled_snap_files(&built.data()).next().is_some(),
            "sled wrote no snap file"
        );
        Built {
            records,
            snapshot,
            ..built
        }
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn snapshots(&self) -> PathBuf {
        self.root.path().join("snapshots")
    }

    fn server(&self, data: &Path) -> ServerBuilder {
        let snapshots = self.snapshots();
        ServerBuilder::new().data_dir(data).args(&[
            "--snapshot-dir",
            snapshots.to_str().expect("utf-8 path"),
            "--snapshot-interval",
            "0",
        ])
    }

    /// A copy of the stopped store, to damage.
    fn copy(&self, name: &str) -> PathBuf {
        let to = self.root.path().join(name);
        copy_dir(&self.data(), &to);
        to
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn sled_snap_files(dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("snap."))
        })
}

/// Where the data in sled's `db` file ends (it preallocates zeroes after it).
fn used_length(db: &Path) -> u64 {
    let bytes = std::fs::read(db).expect("read db");
    bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1)
}

/// Overwrites `len` bytes at `offset` with fixed pseudo-random bytes (xorshift).
fn overwrite(db: &Path, offset: u64, len: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(db)
        .expect("open db");
    file.seek(SeekFrom::Start(offset)).expect("seek");
    file.write_all(&noise).expect("write");
}

fn truncate(db: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(db)
        .expect("open db")
        .set_len(len)
        .expect("truncate");
}

/// Asserts the contract's refusal for a damaged `data` dir; returns the line.
fn assert_damaged(case: &str, code: Option<i32>, stderr: &str, data: &Path) -> String {
    let line = assert_refusal(code, stderr);
    assert!(
        line.contains(&data.display().to_string()),
        "{case}: the line should name the data dir {}: {line}",
        data.display()
    );
    assert!(
        line.contains("damaged"),
        "{case}: the line should say the store is damaged: {line}"
    );
    line
}

#[tokio::test]
async fn damaged_stores_are_refused_with_the_snapshot_to_restore() {
    let built = Built::new().await;
    let newest = built
        .snapshot
        .file_name()
        .and_then(|n| n.to_str())
        .expect("snapshot name")
        .to_string();
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 7] = [
        ("first 64 KiB overwritten", |d| {
            overwrite(&d.join("db"), 0, 64 * 1024)
        }),
        ("truncated", |d| {
            let db = d.join("db");
            truncate(&db, used_length(&db) / 2);
        }),
        ("middle overwritten", |d| {
            let db = d.join("db");
            overwrite(&db, used_length(&db) / 2, 16 * 1024);
        }),
        ("zero-length", |d| truncate(&d.join("db"), 0)),
        ("truncated, snap files removed", |d| {
            for snap in sled_snap_files(d) {
                std::fs::remove_file(snap).expect("remove snap file");
            }
            let db = d.join("db");
            truncate(&db, used_length(&db) / 2);
        }),
        ("zero-length, snap files removed", |d| {
            for snap in sled_snap_files(d) {
                std::fs::remove_file(snap).expect("remove snap file");
            }
            truncate(&d.join("db"), 0);
        }),
        ("one record lost inside sled", |d| {
            let db = sled::open(d).expect("open with sled");
            let records = db.open_tree("records").expect("tree");
            let first = records.first().expect("read").expect("a record").0;
            records.remove(first).expect("remove");
            db.flush().expect("flush");
        }),
    ];
    let mut failures = Vec::new();
    for (i, (case, damage)) in cases.into_iter().enumerate() {
        let copy = built.copy(&format!("damaged-{i}"));
        damage(&copy);
        let started = Instant::now();
        let (code, stderr) = built.server(&copy).run_expect_exit();
        let took = started.elapsed();
        let outcome = std::panic::catch_unwind(|| {
            let line = assert_damaged(case, code, &stderr, &copy);
            assert!(
                line.contains(&newest),
                "{case}: the line should name the newest snapshot {newest}: {line}"
            );
            assert!(took < DAMAGE_DEADLINE, "{case}: took {took:?}");
            eprintln!("{case}: exit 2 after {took:?}: {line}");
        });
        if let Err(e) = outcome {
            let text = e
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| format!("{case}: failed"));
            failures.push(text);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // Without any snapshot, the line says so.
    let copy = built.copy("damaged-no-snapshots");
    truncate(&copy.join("db"), 0);
    let empty = built.root.path().join("no-snapshots-here");
    let (code, stderr) = ServerBuilder::new()
        .data_dir(&copy)
        .args(&["--snapshot-dir", empty.to_str().expect("utf-8")])
        .run_expect_exit();
    let line = assert_damaged("no snapshot", code, &stderr, &copy);
    assert!(line.contains("no snapshot"), "{line}");

    // Restoring the named snapshot, as the line says, brings every record back.
    let restored = built.root.path().join("restored");
    copy_dir(&built.snapshot, &restored);
    let server = built.server(&restored).start();
    assert_eq!(listed(server.http_addr()).await, built.records);
}

#[tokio::test]
async fn a_store_without_sled_snap_files_opens_whole() {
    let built = Built::new().await;
    let copy = built.copy("no-snap-files");
    for snap in sled_snap_files(&copy) {
        std::fs::remove_file(snap).expect("remove snap file");
    }
    let server = built.server(&copy).start();
    assert_eq!(listed(server.http_addr()).await, built.records);
    let reply = ask_udp(server.dns_addr(), &query("h7.home.arpa.", RecordType::A)).await;
    assert_eq!(
        a_records(&reply),
        vec![ip(7).parse::<std::net::Ipv4Addr>().expect("ip")]
    );
}

#[tokio::test]
async fn a_store_with_an_unfinished_sled_snapshot_opens_whole() {
    let built = Built::new().await;
    let copy = built.copy("unfinished-snap");
    // A snapshot write cut short by a full disk or a crash: sled names it `.generating` until
    // it is synced and renamed, and its name sorts after every finished one.
    let unfinished = copy.join("snap.FFFFFFFFFFFFFFFF.generating");
    std::fs::write(&unfinished, b"").expect("write");
    let server = built.server(&copy).start();
    assert_eq!(listed(server.http_addr()).await, built.records);
    assert!(!unfinished.exists());
    assert!(server
        .stderr_text()
        .contains("removed an unfinished sled snapshot"));
}

/// The log position of the newest finished sled snapshot in `dir` (its name is that position
/// in hex); 0 when there is none.
fn newest_snap(dir: &Path) -> u64 {
    sled_snap_files(dir)
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            u64::from_str_radix(name.strip_prefix("snap.")?, 16).ok()
        })
        .max()
        .unwrap_or(0)
}

/// sled writes its recovery snapshot only when it opens; the server opens it once more at a
/// clean stop, so the next start need not replay the changes made while it ran.
#[tokio::test]
async fn a_clean_stop_leaves_sled_a_snapshot_of_every_change() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    let server = ServerBuilder::new().data_dir(&data).start();
    let mut made = BTreeSet::new();
    for i in 0..50 {
        made.insert(create_ok(server.http_addr(), &format!("s{i}.home.arpa."), &ip(i)).await);
    }
    let running = newest_snap(&data);
    stop(server);
    let stopped = newest_snap(&data);
    assert!(
        stopped > running,
        "no newer sled snapshot after the stop: {stopped:X}, {running:X} while running"
    );
    let server = ServerBuilder::new().data_dir(&data).start();
    assert_eq!(listed(server.http_addr()).await, made);
}

/// A data dir whose `conf` is a FIFO: sled's open blocks reading it, for ever.
fn stuck_store(root: &Path) -> PathBuf {
    let data = root.join("stuck");
    std::fs::create_dir_all(&data).expect("mkdir");
    let conf = std::ffi::CString::new(
        data.join("conf")
            .to_str()
            .expect("utf-8 path")
            .as_bytes()
            .to_vec(),
    )
    .expect("path without NUL");
    // SAFETY: mkfifo reads a NUL-terminated path that lives across the call.
    let rc = unsafe { libc::mkfifo(conf.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
    std::fs::write(data.join("db"), b"").expect("db");
    data
}

#[test]
fn sigterm_stops_a_start_stuck_in_sled() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = stuck_store(root.path());
    let mut server = ServerBuilder::new().data_dir(&data).spawn();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "the stuck start ended by itself within 2 s: {}",
        server.stderr_text()
    );
    let sent = Instant::now();
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "exit {status:?} after SIGTERM; stderr:\n{}",
        server.stderr_text()
    );
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    assert!(!server.stderr_text().contains("panicked"));
}

#[test]
fn a_start_stuck_in_sled_is_reported_as_damage_in_time() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = stuck_store(root.path());
    let started = Instant::now();
    let (code, stderr) = ServerBuilder::new().data_dir(&data).run_expect_exit();
    assert_damaged("stuck", code, &stderr, &data);
    assert!(
        started.elapsed() < DAMAGE_DEADLINE,
        "{:?}",
        started.elapsed()
    );
}

/// 200 000 records written at schema version 1 (before integrity data): rind migrates the
/// store, computes its integrity data, and serves every record; it is not mistaken for
/// damage, however slowly it opens. Losing one record afterwards is noticed.
#[tokio::test]
async fn a_big_old_store_migrates_and_opens_and_a_lost_record_is_noticed() {
    const BIG: usize = 200_000;
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("big");
    {
        let db = sled::open(&data).expect("sled");
        let records = db.open_tree("records").expect("tree");
        let mut batch = sled::Batch::default();
        for i in 0..BIG {
            let value = serde_json::json!({
                "name": format!("b{i}.home.arpa."), "type": "A", "ttl": 300, "data": ip(i),
            });
            batch.insert(
                format!("big{i:08}").as_bytes(),
                value.to_string().as_bytes(),
            );
        }
        records.apply_batch(batch).expect("batch");
        db.open_tree("cache").expect("cache");
        db.open_tree("cache_expiry").expect("cache_expiry");
        db.open_tree(migrations::META_TREE)
            .expect("meta")
            .insert(migrations::VERSION_KEY, &1u32.to_be_bytes())
            .expect("version");
        db.flush().expect("flush");
    }
    let started = Instant::now();
    let server = ServerBuilder::new()
        .data_dir(&data)
        .startup_timeout(Duration::from_secs(180))
        .start();
    eprintln!("{BIG} records: listening after {:?}", started.elapsed());
    let one = http_get(
        server.http_addr(),
        "/api/v1/records?name=b123456.home.arpa",
        None,
    )
    .await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.json()[0]["data"], ip(123_456));
    let reply = ask_udp(
        server.dns_addr(),
        &query("b199999.home.arpa.", RecordType::A),
    )
    .await;
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert_eq!(
        a_records(&reply),
        vec![ip(199_999).parse::<std::net::Ipv4Addr>().expect("ip")]
    );
    let log = server.stderr_text();
    stop(server);
    eprintln!("{log}");

    {
        let db = sled::open(&data).expect("sled");
        let version = db
            .open_tree(migrations::META_TREE)
            .expect("meta")
            .get(migrations::VERSION_KEY)
            .expect("get")
            .expect("version");
        assert_eq!(version.as_ref(), migrations::SCHEMA_VERSION.to_be_bytes());
        db.open_tree("records")
            .expect("tree")
            .remove("big00000042")
            .expect("remove")
            .expect("the record was there");
        db.flush().expect("flush");
    }
    let (code, stderr) = ServerBuilder::new().data_dir(&data).run_expect_exit();
    let line = assert_damaged("one of 200 000 lost", code, &stderr, &data);
    assert!(
        line.contains("199999 records on disk where 200000"),
        "{line}"
    );
}

/// Set to `1` to skip the tests that need root instead of failing them.
const SKIP_ROOT_TESTS: &str = "RIND_SKIP_ROOT_TESTS";

/// A size-limited tmpfs mounted for one test, unmounted when dropped (also when the test
/// panics: declare it before any server using it, so the server is gone first).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounting needs root. Without it the test fails, since passing would claim a full disk
    /// was tried: `None` (the test skipped, saying so) only when [`SKIP_ROOT_TESTS`] is `1`.
    /// As root, a failed mount fails the test.
    fn mount(size: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os(SKIP_ROOT_TESTS).is_some_and(|v| v == "1"),
                "mounting a tmpfs needs root: run this test as root (CI does), or set \
                 {SKIP_ROOT_TESTS}=1 to skip it"
            );
            eprintln!("SKIPPED ({SKIP_ROOT_TESTS}=1): mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let target = cstring(dir.path());
        let options = std::ffi::CString::new(format!("size={size},mode=0700")).expect("options");
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mounting a tmpfs as root failed: {}",
            std::io::Error::last_os_error()
        );
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = cstring(self.dir.path());
        // SAFETY: a NUL-terminated path that outlives the calls.
        unsafe {
            if libc::umount2(target.as_ptr(), 0) != 0 {
                // Something still holds a file there: detach now, freed when it lets go.
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

fn cstring(path: &Path) -> std::ffi::CString {
    std::ffi::CString::new(path.to_str().expect("utf-8 path")).expect("path without NUL")
}

/// Writes into `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> usize {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create filler");
    let chunk = vec![0x5a_u8; 16 * 1024];
    let mut written = 0;
    // 64 MiB at most: far more than the tmpfs holds.
    for _ in 0..4096 {
        match file.write_all(&chunk).and_then(|()| file.sync_data()) {
            Ok(()) => written += chunk.len(),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return written,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    panic!("the tmpfs never filled up");
}

async fn health(http: SocketAddr) -> HttpReply {
    http_get(http, "/healthz", None).await
}

/// Creates `{prefix}{i}.home.arpa.` records on a full disk until one is refused, adding each
/// acknowledged one to `acked`; the refused name and its 507. sled may still have room in
/// the files it holds: over a thousand writes fit after it was opened (at start, and again by
/// a repair).
async fn write_until_refused(
    http: SocketAddr,
    prefix: &str,
    acked: &mut BTreeSet<Made>,
) -> (String, HttpReply) {
    for i in 0..5000 {
        let name = format!("{prefix}{i}.home.arpa.");
        let reply = create(http, &name, &ip(i)).await;
        match reply.status {
            201 => {
                acked.insert(Made {
                    id: reply.json()["id"].as_str().expect("id").to_string(),
                    name,
                    ip: ip(i),
                });
            }
            507 => return (name, reply),
            other => panic!("create {name}: {other} {}", reply.body),
        }
    }
    panic!("no write was refused on a full disk");
}

/// Waits (10 s at most) for the store to report itself healthy again after space came back.
async fn wait_healthy(http: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = health(http).await;
        if h.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still unhealthy after space came back: {}",
            h.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_full_disk_refuses_writes_with_507_and_loses_nothing() {
    let Some(disk) = Tmpfs::mount("8m") else {
        return;
    };
    let data = disk.path().join("data");
    let snapshots = tempfile::tempdir().expect("tempdir");
    let start = || {
        ServerBuilder::new()
            .data_dir(&data)
            .args(&[
                "--snapshot-dir",
                snapshots.path().to_str().expect("utf-8"),
                "--snapshot-interval",
                "0",
            ])
            .start()
    };
    let mut server = start();
    let http = server.http_addr();
    let mut acked = BTreeSet::new();
    for i in 0..20 {
        acked.insert(create_ok(http, &format!("ok{i}.home.arpa."), &ip(i)).await);
    }
    assert_eq!(health(http).await.status, 200);

    let filler = disk.path().join("filler");
    fill(&filler);
    let (refused_name, reply) = write_until_refused(http, "full", &mut acked).await;
    let message = reply.json()["error"].as_str().expect("error").to_string();
    eprintln!("refused {refused_name} with 507: {message}");
    assert!(
        message.contains("is full") && message.contains(&data.display().to_string()),
        "the 507 should say the disk holding the data dir is full: {message}"
    );

    // While the disk is full: every write is refused and changes nothing.
    let again = create(http, "later.home.arpa.", "10.9.9.9").await;
    assert_eq!(again.status, 507, "{}", again.body);
    assert_eq!(again.json()["error"], message.as_str());
    let victim = acked.iter().next().expect("a record").clone();
    let path = format!("/api/v1/records/{}", victim.id);
    let delete = http_send(http, Method::DELETE, &path, None).await;
    assert_eq!(delete.status, 507, "{}", delete.body);
    let update = http_send(
        http,
        Method::PUT,
        &path,
        Some(r#"{"name": "moved.home.arpa.", "type": "A", "data": "10.8.8.8"}"#),
    )
    .await;
    assert_eq!(update.status, 507, "{}", update.body);
    let healthz = health(http).await;
    assert_eq!(healthz.status, 503, "{}", healthz.body);
    assert!(healthz.body.contains("is full"), "{}", healthz.body);
    assert_eq!(listed(http).await, acked);
    // DNS goes on answering from what was acknowledged, and knows nothing refused.
    let dns = server.dns_addr();
    let reply = ask_udp(dns, &query(&victim.name, RecordType::A)).await;
    assert_eq!(
        a_records(&reply),
        vec![victim.ip.parse::<std::net::Ipv4Addr>().expect("ip")]
    );
    let reply = ask_udp(dns, &query(&refused_name, RecordType::A)).await;
    assert_eq!(rcode(&reply), ResponseCode::NXDomain);

    // Space comes back: the store recovers by itself, without a restart.
    std::fs::remove_file(&filler).expect("remove filler");
    wait_healthy(http).await;
    for i in 0..10 {
        acked.insert(create_ok(http, &format!("after{i}.home.arpa."), &ip(1000 + i)).await);
    }
    // The refused record left no trace a duplicate check could trip on.
    let refused_ip = ip(refused_name
        .trim_start_matches("full")
        .trim_end_matches(".home.arpa.")
        .parse()
        .expect("index"));
    let retried = create_ok(http, &refused_name, &refused_ip).await;
    acked.insert(retried);
    assert_eq!(listed(http).await, acked);

    // A crash now: every 201 of the whole episode is there after restart, nothing refused is.
    eprintln!("{} records acknowledged", acked.len());
    server.kill9();
    drop(server);
    let server = start();
    assert_eq!(listed(server.http_addr()).await, acked);
    stop(server);
}

#[tokio::test]
async fn a_second_full_disk_after_a_repair_loses_nothing_either() {
    let Some(disk) = Tmpfs::mount("8m") else {
        return;
    };
    let data = disk.path().join("data");
    let start = || ServerBuilder::new().data_dir(&data).start();
    let mut server = start();
    let http = server.http_addr();
    let mut acked = BTreeSet::new();
    for i in 0..20 {
        acked.insert(create_ok(http, &format!("ok{i}.home.arpa."), &ip(i)).await);
    }
    let filler = disk.path().join("filler");
    // Each round fills the disk, is refused, gets the space back and is repaired; the second
    // round writes into the store the first repair opened again, and what it acknowledged
    // must survive its own refusal, its repair and a kill -9.
    for round in 0..2 {
        fill(&filler);
        let (refused, reply) = write_until_refused(http, &format!("r{round}-"), &mut acked).await;
        eprintln!("round {round}: refused {refused} with 507: {}", reply.body);
        assert_eq!(listed(http).await, acked);
        std::fs::remove_file(&filler).expect("remove filler");
        wait_healthy(http).await;
        for i in 0..10 {
            let name = format!("after{round}-{i}.home.arpa.");
            acked.insert(create_ok(http, &name, &ip(2000 + i)).await);
        }
        assert_eq!(listed(http).await, acked);
    }
    server.kill9();
    drop(server);
    let server = start();
    assert_eq!(listed(server.http_addr()).await, acked);
    stop(server);
}

/// Names of the complete snapshots (as rind names and marks them) in `dir`.
fn snapshot_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read snapshot dir")
        .map(|e| e.expect("entry"))
        .filter(|e| e.file_type().expect("type").is_dir())
        .filter(|e| e.path().join("rind-snapshot").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("snapshot-20") && !n.contains('.'))
        .collect()
}

#[tokio::test]
async fn scheduled_snapshots_keep_the_newest_and_touch_nothing_else() {
    let root = tempfile::tempdir().expect("tempdir");
    let snaps = root.path().join("snaps");
    let foreign_dirs = [
        "notes",
        ".snapshot-20200101T000000Z.partial",
        "snapshot-old-copy",
    ];
    for name in foreign_dirs {
        std::fs::create_dir_all(snaps.join(name)).expect("mkdir");
    }
    std::fs::write(snaps.join("snapshot-20200101T000000Z.tar"), b"not rind's").expect("file");
    // Named as rind names its snapshots: the oldest, so the first to go.
    let oldest = "snapshot-20200101T000000Z";
    std::fs::create_dir(snaps.join(oldest)).expect("mkdir");
    std::fs::write(snaps.join(oldest).join("rind-snapshot"), b"").expect("marker");
    // Named the same, but without rind's marker: not a snapshot rind finished, so kept.
    let unmarked = "snapshot-20200102T000000Z";
    std::fs::create_dir(snaps.join(unmarked)).expect("mkdir");

    let server = ServerBuilder::new()
        .env("RIND_SNAPSHOT_DIR", snaps.to_str().expect("utf-8"))
        .env("RIND_SNAPSHOT_INTERVAL", "1")
        .env("RIND_SNAPSHOT_KEEP", "2")
        .start();
    let made = create_ok(server.http_addr(), "kept.home.arpa.", "10.1.2.3").await;
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Four new snapshots: the schedule runs, and it has pruned after each since the second.
    while seen.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "snapshots seen: {seen:?}; stderr:\n{}",
            server.stderr_text()
        );
        let now = snapshot_names(&snaps);
        assert!(
            now.len() <= 3,
            "more than keep + 1 snapshots at once: {now:?}"
        );
        seen.extend(now.into_iter().filter(|n| n != oldest));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(server);

    let left = snapshot_names(&snaps);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(!left.contains(oldest), "{left:?}");
    assert_eq!(
        left.iter().collect::<Vec<_>>(),
        seen.iter().rev().take(2).rev().collect::<Vec<_>>(),
        "the two newest are kept"
    );
    for name in foreign_dirs.iter().chain([&unmarked]) {
        assert!(snaps.join(name).is_dir(), "{name} was removed");
    }
    assert!(snaps.join("snapshot-20200101T000000Z.tar").is_file());

    // The newest snapshot is a store that opens with the record.
    let newest = snaps.join(left.iter().next_back().expect("newest"));
    let restored = root.path().join("restored");
    copy_dir(&newest, &restored);
    let server = ServerBuilder::new()
        .data_dir(&restored)
        .args(&["--snapshot-interval", "0"])
        .start();
    assert_eq!(listed(server.http_addr()).await, BTreeSet::from([made]));
}
