//! Fills a data directory with N fresh cache entries, to measure a warm start:
//!
//! ```sh
//! cargo run --release -p rind-server --example fill_cache -- /tmp/rind-1m 1000000
//! time-to-listening: start rind-server --data-dir /tmp/rind-1m and time the `listening` line
//! ```

use std::net::Ipv4Addr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rind_server::cache::{Entry, Fetched, TtlPolicy};
use rind_server::store::cache::CacheWrite;
use rind_server::store::Store;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: fill_cache DIR COUNT"))?;
    let count: u32 = args.next().unwrap_or_else(|| "1000000".into()).parse()?;
    let store = Store::open(dir.as_ref())?;
    let policy = TtlPolicy {
        min_ttl: 0,
        max_ttl: 86_400,
        max_negative_ttl: 3_600,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..count {
        let name = Name::from_ascii(format!("host{i}.bench.example."))?;
        let query = Query::query(name.clone(), RecordType::A);
        let mut reply = Message::response(0, OpCode::Query);
        reply.add_query(query.clone());
        let ip = Ipv4Addr::from(0xC000_0200 + (i & 0xff));
        reply.add_answer(Record::from_rdata(name, 86_400, RData::A(A(ip))));
        let fetched = Fetched {
            dnssec_ok: true,
            checking_disabled: false,
        };
        let entry = Entry::from_upstream(&query, &reply, fetched, &policy, now)
            .ok_or_else(|| anyhow::anyhow!("entry not cacheable"))?;
        batch.push(CacheWrite::Put {
            key: entry.key().as_bytes().to_vec(),
            expires_at: entry.expires_at(),
            value: entry.encode(),
        });
        if batch.len() == batch.capacity() {
            store.cache_apply(&batch)?;
            batch.clear();
        }
    }
    store.cache_apply(&batch)?;
    store.flush()?;
    println!(
        "wrote {count} entries in {:.1}s; store has {}",
        started.elapsed().as_secs_f64(),
        store.cache_len()?
    );
    Ok(())
}
