//! Printing: aligned tables for people, the API's JSON for scripts (`--json`).

use std::io::{self, Write};

use serde::Serialize;

use crate::client::{CacheEntry, Record, Zone};

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize + ?Sized>(value: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)
}

/// Prints records as a table with a header row.
pub fn records(records: &[Record]) -> io::Result<()> {
    let rows: Vec<[String; 5]> = records
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.name.clone(),
                r.rtype.clone(),
                r.ttl.to_string(),
                r.data.clone(),
            ]
        })
        .collect();
    table(["ID", "NAME", "TYPE", "TTL", "DATA"], &rows)
}

/// Prints cache entries as a table.
pub fn cache(entries: &[CacheEntry]) -> io::Result<()> {
    let rows: Vec<[String; 4]> = entries
        .iter()
        .map(|e| {
            [
                e.name.clone(),
                e.rtype.clone(),
                e.rcode.clone(),
                e.ttl.to_string(),
            ]
        })
        .collect();
    table(["NAME", "TYPE", "RCODE", "TTL"], &rows)
}

/// Prints zones as a table; an empty list or setting is `-`.
pub fn zones(zones: &[Zone]) -> io::Result<()> {
    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(",")
        }
    };
    let rows: Vec<[String; 7]> = zones
        .iter()
        .map(|z| {
            [
                z.name.clone(),
                z.serial.to_string(),
                z.records.to_string(),
                list(&z.allow_transfer),
                list(&z.notify),
                z.tsig.clone().unwrap_or_else(|| "-".into()),
                z.primary.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        [
            "NAME",
            "SERIAL",
            "RECORDS",
            "ALLOW_TRANSFER",
            "NOTIFY",
            "TSIG",
            "PRIMARY",
        ],
        &rows,
    )
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub(crate) fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> io::Result<()> {
    let header = header.map(String::from);
    let mut widths = [0usize; N];
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = io::stdout().lock();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
