//! Acknowledged creates per second: N concurrent clients POST new A records for a while; each
//! 201 means the record is on disk (the server flushes before answering).
//!
//! ```sh
//! cargo run --release -p rind-server --example create_bench -- --clients 16 --seconds 10
//! cargo run --release -p rind-server --example create_bench -- --url http://127.0.0.1:8053
//! ```
//!
//! Without `--url` it runs a server in this process on a fresh temporary data dir.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rind_server::config::Args as ServerArgs;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// Concurrent clients, each with its own keep-alive connection.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long to send.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// A running server's base URL (default: start one in this process).
    #[arg(long)]
    url: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let (url, server) = match &args.url {
        Some(url) => (url.trim_end_matches('/').to_string(), None),
        None => {
            let (url, thread) = start_server(data.path(), shutdown.clone())?;
            (url, Some(thread))
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..args.clients)
        .map(|c| {
            let (url, stop) = (url.clone(), Arc::clone(&stop));
            std::thread::spawn(move || client(&url, c, &stop))
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for c in clients {
        let (mut l, e) = c.join().map_err(|_| anyhow::anyhow!("a client panicked"))?;
        latencies.append(&mut l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{} clients, {elapsed:.1} s: {} creates acknowledged (201), {:.0} creates/s, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, errors {errors}",
        args.clients,
        latencies.len(),
        latencies.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        pct(1.0),
    );
    shutdown.cancel();
    if let Some(server) = server {
        let _ = server.join();
    }
    Ok(())
}

/// Sends creates until `stop`; returns the latency of each 201 and the number of failures.
fn client(url: &str, id: usize, stop: &AtomicBool) -> (Vec<Duration>, usize) {
    rind_server::upstream::trust::install_ring_default();
    let http = reqwest::blocking::Client::new();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let body = serde_json::json!({
            "name": format!("h{n}.c{id}.bench.lan"),
            "type": "A",
            "data": format!("10.{}.{}.{}", id % 256, (n >> 8) % 256, n % 256),
        });
        let sent = Instant::now();
        match http
            .post(format!("{url}/api/v1/records"))
            .body(body.to_string())
            .send()
        {
            Ok(r) if r.status().as_u16() == 201 => latencies.push(sent.elapsed()),
            _ => errors += 1,
        }
    }
    (latencies, errors)
}

/// Runs rind-server in this process on `data` (ports chosen by the kernel); returns its URL.
fn start_server(
    data: &std::path::Path,
    shutdown: CancellationToken,
) -> anyhow::Result<(String, std::thread::JoinHandle<()>)> {
    let mut flags: Vec<std::ffi::OsString> = [
        "rind-server",
        "--dns-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
        "--log-level",
        "warn",
        "--data-dir",
    ]
    .iter()
    .map(Into::into)
    .collect();
    flags.push(data.into());
    let config = ServerArgs::try_parse_from(flags)?
        .validate()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (sockets, opened) = runtime.block_on(async {
        let opened = rind_server::Opened::open(&config).await?;
        let sockets = rind_server::bind(&config).await?;
        anyhow::Ok((sockets, opened))
    })?;
    let url = format!("http://{}", sockets.listeners.http.local_addr()?);
    let thread = std::thread::spawn(move || {
        if let Err(e) = runtime.block_on(rind_server::run(config, opened, sockets, shutdown)) {
            eprintln!("server: {e}");
        }
    });
    Ok((url, thread))
}
