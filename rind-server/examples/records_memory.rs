//! Loads the local records of a data directory the way the server does at start (open the
//! store, then load the records in the pass that checks them), and prints the resident
//! memory after each step; run it under heaptrack to see where it goes (it uses the system
//! allocator):
//!
//! ```sh
//! heaptrack target/release/examples/records_memory /path/to/data-dir
//! ```

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use rind_server::records::Records;
use rind_server::store::records::RecordStore;
use rind_server::store::Store;

fn rss_mib() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or_else(|| "?".into(), |kb| format!("{:.1} MiB", kb / 1024.0))
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: records_memory DATA_DIR"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let _guard = runtime.enter();
    println!("start: {}", rss_mib());
    let began = Instant::now();
    let progress = AtomicU64::new(0);
    let (store, check) = Store::open_leaving_check(dir.as_ref(), &progress)?;
    println!("store open: {} after {:?}", rss_mib(), began.elapsed());
    let records = Records::load_checking(RecordStore::open(&store)?, check, &progress)?;
    println!(
        "{} records loaded and checked: {} after {:?}",
        records.list(None, None).len(),
        rss_mib(),
        began.elapsed()
    );
    // Exit with everything still held, so heaptrack counts what the loaded server keeps as
    // "leaked", apart from what the load only borrowed.
    std::process::exit(0)
}
