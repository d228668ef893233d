//! The import readers, file text → records: `records::master::read_master` (RFC 1035 master
//! files) and `read_hosts`, behind `POST /api/v1/records/import`.
//!
//! Asserts: no panic; records come in line order, and an error names a line the file has;
//! the records a master file gives, exported by `write_master` and read again, are the same
//! records (the export is what another rind imports).

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use rind_server::records::master::{read_hosts, read_master, write_master, Parsed};
use rind_server::records::{LocalRecord, RecordId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count().max(1);
    for result in [read_master(text), read_hosts(text)] {
        match result {
            Ok(parsed) => {
                let order: Vec<usize> = parsed.drafts.iter().map(|(line, _)| *line).collect();
                assert!(order.windows(2).all(|w| w[0] <= w[1]), "lines out of order: {order:?}");
                assert!(order.iter().all(|l| (1..=lines + 1).contains(l)), "{order:?} of {lines}");
            }
            Err(e) => assert!((1..=lines + 1).contains(&e.line), "{e} in {lines} lines"),
        }
    }
    let Ok(Parsed { drafts, .. }) = read_master(text) else {
        return;
    };
    let records: Vec<Arc<LocalRecord>> = drafts
        .iter()
        .enumerate()
        .map(|(i, (_, d))| Arc::new(d.clone().into_record(RecordId::from_stored(&i.to_string()))))
        .collect();
    let exported = write_master(&records, None, "fuzz");
    let again = read_master(&exported)
        .unwrap_or_else(|e| panic!("the export does not read back: {e}\n{exported}"));
    let key = |name: String, rtype: String, ttl: u32, text: &str| format!("{name} {rtype} {ttl} {text}");
    let mut first: Vec<String> = drafts
        .iter()
        .map(|(_, d)| key(d.name().to_ascii(), d.rtype().to_string(), d.ttl(), &d.text()))
        .collect();
    let mut second: Vec<String> = again
        .drafts
        .iter()
        .map(|(_, d)| key(d.name().to_ascii(), d.rtype().to_string(), d.ttl(), &d.text()))
        .collect();
    first.sort();
    second.sort();
    assert_eq!(first, second, "export:\n{exported}");
});
