//! `rind-server`: parses flags, opens the store, binds the sockets, and runs until SIGTERM or
//! SIGINT. Operator mistakes (a busy port, a locked data dir, an open API without a token)
//! end with one line on stderr and exit status 2, never a panic.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use rind_server::config::Config;
use rind_server::manual::{self, Invocation};
use rind_server::operations::LogFormat;

/// jemalloc instead of glibc malloc: with sled's writer threads, the blocking pool and the
/// tokio workers each in their own glibc arena, freed memory stayed in the process (the
/// bench's cache-miss flood ended at 82 MiB RSS with glibc, 62 MiB with jemalloc).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`; `_RJEM_MALLOC_CONF` overrides them.
/// - One arena, not four per core. The hot path allocates from each thread's own cache, which
///   one arena does not slow, while memory freed by one of sled's or the blocking pool's
///   threads stayed dirty in that thread's arena: 193,534 local records took 163 MiB of RSS
///   five seconds after a restart with the default, 130 MiB with one arena.
/// - Freed pages go back to the system after 1 s unused, not 10: bursts (an import, a flood
///   of cache misses) leave less behind. Two `bench/compare.sh` runs of each: RSS after the
///   run 54.4 and 57.0 MiB against 58.4 and 67.9, with no cost in CPU per hit or miss; 121.8
///   against 127.1 MiB five seconds after importing those records.
/// - Thread caches keep at most 32 objects per small size and nothing over 4 KiB, not 200
///   and 32 KiB: a thread that goes idle (a blocking-pool thread, one of sled's) never
///   flushes its cache, and jemalloc's statistics after the bench showed 10.5 MiB sitting in
///   them. Two `bench/compare.sh` runs each: RSS after the run 44.5 and 44.9 MiB against 51.5
///   and 52.6, CPU per hit 3.41 and 3.30 µs against 3.65 and 3.64, per miss within noise.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
static malloc_conf: &[u8; 73] =
    b"narenas:1,dirty_decay_ms:1000,tcache_max:4096,tcache_nslots_small_max:32\0";

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with status 2.
    let args = match manual::parse() {
        Invocation::Serve(args) => *args,
        Invocation::Completions(shell) => {
            // Written in one go: a closed pipe (`| head`) is an error to report, not a panic.
            let script = manual::completions(shell);
            return match std::io::stdout().lock().write_all(&script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => refuse(&format!("cannot write the script: {e}")),
            };
        }
        Invocation::Man(dir) => {
            return match manual::write_man(&dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => refuse(&format!(
                    "cannot write the man page into {}: {e}",
                    dir.display()
                )),
            };
        }
    };
    let config = match args.validate() {
        Ok(c) => c,
        Err(e) => return refuse(&e),
    };
    init_logging(&config);
    match start(config) {
        Ok(()) => ExitCode::SUCCESS,
        // Every error's own message already names its cause; the chain would repeat it.
        Err(e) => refuse(&e),
    }
}

/// Prints the one-line reason and returns exit status 2.
fn refuse(reason: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("rind-server: {reason}");
    ExitCode::from(2)
}

fn init_logging(config: &Config) {
    // Our own crate at the chosen level; the libraries only when something is wrong. Not
    // sled: rind reports every sled error it gets in its own words, and sled's log lines about
    // a damaged store would break the one-line refusal.
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "warn,sled=off,rind_server={}",
        config.log_level
    ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.operations.log_format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // One object a line, the event's fields flattened beside `message`, for collectors.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// Lifts the soft open-files limit to the hard one: the upstream socket pool alone holds a
/// thousand sockets, more than the common soft default of 1024.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::debug!("could not raise the open-files limit");
            }
        }
    }
}

fn start(config: Config) -> anyhow::Result<()> {
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        // Registered before anything else: SIGTERM's default action kills the process, and a
        // SIGTERM during a store migration or right after "listening" must still be a clean
        // stop (run() sees the token already cancelled and exits 0).
        let shutdown = CancellationToken::new();
        let signals = ShutdownSignals::install()?;
        tokio::spawn(signals.cancel_on_first(shutdown.clone()));
        // Bind first: a busy port is the likelier mistake, and nothing is logged before it.
        let listeners = rind_server::bind_listeners(&config).await?;
        // The upstream pool's thousand sockets take 30 to 50 ms to bind: done while the
        // store opens, which is most of a restart.
        let pool_config = config.clone();
        let upstream_pool =
            tokio::task::spawn_blocking(move || rind_server::bind_upstream_pool(&pool_config));
        // sled may hang on a damaged store: the open has a deadline, and SIGTERM ends the
        // wait (the opening thread is abandoned with the process).
        let opened = tokio::select! {
            opened = rind_server::Opened::open(&config) => opened?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let upstream_pool = upstream_pool
            .await
            .map_err(|e| anyhow::anyhow!("binding the upstream sockets failed: {e}"))??;
        let sockets = rind_server::Sockets {
            listeners,
            upstream_pool,
        };
        rind_server::run(config, opened, sockets, shutdown).await?;
        Ok(())
    })
}

/// The SIGTERM and SIGINT streams, registered with the kernel as soon as they exist.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Replaces the default (fatal) action of SIGTERM and SIGINT.
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate())
            .map_err(|e| anyhow::anyhow!("cannot install the SIGTERM handler: {e}"))?;
        let int = signal(SignalKind::interrupt())
            .map_err(|e| anyhow::anyhow!("cannot install the SIGINT handler: {e}"))?;
        Ok(Self { term, int })
    }

    /// Cancels `shutdown` on the first SIGTERM or SIGINT.
    async fn cancel_on_first(mut self, shutdown: CancellationToken) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("SIGINT received"),
        }
        shutdown.cancel();
    }
}
