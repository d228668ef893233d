//! `rind-ctl`: manage rind's local records, zones, cache, blocklists and allowlist from the
//! command line.
//!
//! A client of the REST API and nothing else (the contract is the interface): one function
//! per command, [`client`] for HTTP, [`output`] for tables and `--json`. Exit status: 0 done,
//! 1 the request failed (the server refused it or could not be reached), 2 usage.

mod block;
mod client;
mod ops;
mod output;

use std::io::{self, Write};
use std::net::IpAddr;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use client::{CacheEntry, Client, Record, RecordInput, RequestError, Snapshot, Zone, ZoneInput};

const RECORDS: &str = "/api/v1/records";
const ZONES: &str = "/api/v1/zones";

/// Manage the local records and the cache of a running rind-server, and watch its queries
/// and health.
#[derive(Parser, Debug)]
#[command(
    name = "rind-ctl",
    version,
    after_help = "Examples:\n  rind-ctl add nas.home.arpa A 192.168.1.20\n  rind-ctl list --type A\n  rind-ctl rm nas.home.arpa A\n  rind-ctl cache flush example.com"
)]
struct Cli {
    /// Base URL of the rind-server HTTP API.
    #[arg(
        long,
        env = "RIND_SERVER",
        default_value = "http://127.0.0.1:8053",
        value_parser = server_url,
        global = true
    )]
    server: String,

    /// API token (the server's --api-token).
    #[arg(long, env = "RIND_API_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,

    /// Print JSON as the API returns it, for scripts.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a record.
    #[command(
        after_help = "Examples:\n  rind-ctl add nas.home.arpa A 192.168.1.20\n  rind-ctl add home.arpa MX '10 mail.home.arpa.' --ttl 3600\n  rind-ctl add _http._tcp.home.arpa SRV '0 5 80 web.home.arpa.'"
    )]
    Add {
        /// Owner name (a trailing dot is added).
        name: String,
        /// Record type: A, AAAA, CNAME, MX, TXT, SRV, PTR, NS, CAA.
        #[arg(value_name = "TYPE")]
        rtype: String,
        /// RDATA in zone-file form.
        data: String,
        /// TTL in seconds (server default: 300).
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// List records, optionally filtered.
    #[command(
        after_help = "Examples:\n  rind-ctl list\n  rind-ctl list --name nas.home.arpa --json"
    )]
    List {
        /// Only records with this name.
        #[arg(long)]
        name: Option<String>,
        /// Only records of this type.
        #[arg(long = "type", value_name = "TYPE")]
        rtype: Option<String>,
    },
    /// Show one record.
    #[command(after_help = "Example:\n  rind-ctl get 0000000000000001")]
    Get {
        /// Record id.
        id: String,
    },
    /// Change fields of a record; the others keep their values.
    #[command(
        after_help = "Examples:\n  rind-ctl update 0000000000000001 --data 192.168.1.21\n  rind-ctl update 0000000000000001 --ttl 60"
    )]
    Update {
        /// Record id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New type.
        #[arg(long = "type", value_name = "TYPE")]
        rtype: Option<String>,
        /// New RDATA.
        #[arg(long)]
        data: Option<String>,
        /// New TTL.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Delete a record by id, or by NAME TYPE [DATA] when that matches exactly one record.
    #[command(
        after_help = "Examples:\n  rind-ctl rm 0000000000000001\n  rind-ctl rm nas.home.arpa A\n  rind-ctl rm nas.home.arpa A 192.168.1.20"
    )]
    Rm {
        /// Record id, or the record's name.
        id_or_name: String,
        /// Record type (when deleting by name).
        #[arg(value_name = "TYPE")]
        rtype: Option<String>,
        /// RDATA (when several records share name and type).
        data: Option<String>,
    },
    /// Import records from a zone (master) file or an /etc/hosts file: all of them, or none
    /// when one line is wrong; records already there are left alone.
    #[command(
        after_help = "A file named hosts or *.hosts is read as a hosts file unless --format says otherwise.\n\nExamples:\n  rind-ctl import home.arpa.zone\n  rind-ctl import /etc/hosts\n  rind-ctl export --zone home.arpa | rind-ctl --server http://10.0.0.2:8053 import -"
    )]
    Import {
        /// The file; - reads standard input.
        file: std::path::PathBuf,
        /// zone (RFC 1035 master file) or hosts.
        #[arg(long, value_enum)]
        format: Option<FileFormat>,
    },
    /// Print the records as a zone (master) file: all of them, or one zone's with its SOA.
    #[command(
        after_help = "Examples:\n  rind-ctl export > rind-records.zone\n  rind-ctl export --zone home.arpa"
    )]
    Export {
        /// Only the records of this zone (one made with rind-ctl zone add).
        #[arg(long)]
        zone: Option<String>,
    },
    /// Manage zones: rind answers for them with authority and serves them by zone transfer.
    #[command(subcommand)]
    Zone(ZoneCommand),
    /// Inspect or flush the answer cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Manage blocklists: names on them are answered 0.0.0.0/:: (or NXDOMAIN), not forwarded.
    #[command(subcommand)]
    Block(block::BlockCommand),
    /// Manage the allowlist: names on it (and below) are never blocked.
    #[command(subcommand)]
    Allow(block::AllowCommand),
    /// Ask the server for a consistent copy of its store; prints the copy's path.
    #[command(after_help = "Example:\n  rind-ctl snapshot")]
    Snapshot,
    /// Show the server's version, uptime, counters, and store and upstream health.
    #[command(after_help = "Example:\n  rind-ctl status")]
    Status,
    /// Show the newest queries from the server's query log, oldest first; --follow keeps
    /// printing new ones.
    #[command(
        after_help = "Examples:\n  rind-ctl log\n  rind-ctl log --follow --client 192.168.1.0/24\n  rind-ctl log --name example.com --limit 20 --json"
    )]
    Log {
        /// Keep asking every second and print new queries as they come (Ctrl-C stops).
        #[arg(long, short)]
        follow: bool,
        /// Only queries from this address or network (192.168.1.10, 192.168.1.0/24).
        #[arg(long)]
        client: Option<String>,
        /// Only queries for this name and the names below it.
        #[arg(long)]
        name: Option<String>,
        /// How many of the newest queries to show first (server default: 100).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
    /// Write man pages (rind-ctl.1 and one per subcommand) into DIR.
    #[command(after_help = "Example:\n  rind-ctl man /usr/local/share/man/man1")]
    Man {
        /// Directory for the pages; created when missing.
        dir: std::path::PathBuf,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  rind-ctl completions bash > /etc/bash_completion.d/rind-ctl"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: Shell,
    },
}

#[derive(Subcommand, Debug)]
enum ZoneCommand {
    /// Create a zone.
    #[command(
        after_help = "Examples:\n  rind-ctl zone add home.arpa --allow-transfer 192.168.1.3 --notify 192.168.1.3:53\n  rind-ctl zone add home.arpa --allow-transfer 10.0.0.0/8 --tsig xfr\n  rind-ctl zone add home.arpa --primary 192.168.1.2:53"
    )]
    Add {
        /// The zone's apex.
        name: String,
        #[command(flatten)]
        settings: ZoneSettings,
    },
    /// List zones.
    #[command(after_help = "Examples:\n  rind-ctl zone list\n  rind-ctl zone list --json")]
    List,
    /// Show one zone.
    #[command(after_help = "Example:\n  rind-ctl zone get home.arpa")]
    Get {
        /// The zone's apex.
        name: String,
    },
    /// Change a zone's settings: each option given replaces that setting, the others stay.
    #[command(
        after_help = "Examples:\n  rind-ctl zone update home.arpa --notify 192.168.1.3:53 --notify 192.168.1.4:53\n  rind-ctl zone update home.arpa --clear-notify --no-tsig"
    )]
    Update {
        /// The zone's apex.
        name: String,
        #[command(flatten)]
        settings: ZoneSettings,
        /// Remove every allow-transfer network (nobody may transfer).
        #[arg(long, conflicts_with = "allow_transfer")]
        clear_allow_transfer: bool,
        /// Remove every NOTIFY target.
        #[arg(long, conflicts_with = "notify")]
        clear_notify: bool,
        /// Transfers need no TSIG any more.
        #[arg(long, conflicts_with = "tsig")]
        no_tsig: bool,
    },
    /// Delete a zone; with --force also the records in it.
    #[command(
        after_help = "Examples:\n  rind-ctl zone rm home.arpa\n  rind-ctl zone rm home.arpa --force"
    )]
    Rm {
        /// The zone's apex.
        name: String,
        /// Delete the zone's records too (without it, a zone with records is kept).
        #[arg(long)]
        force: bool,
    },
}

/// A zone's settings on the command line.
#[derive(clap::Args, Debug)]
struct ZoneSettings {
    /// A network (CIDR) or address that may transfer the zone; repeat for more.
    #[arg(long = "allow-transfer", value_name = "CIDR")]
    allow_transfer: Vec<String>,
    /// A secondary to tell of each change by NOTIFY, IP[:PORT]; repeat for more.
    #[arg(long, value_name = "IP:PORT")]
    notify: Vec<String>,
    /// The TSIG key (a server --tsig-key name) transfers of the zone must be signed with.
    #[arg(long, value_name = "KEY")]
    tsig: Option<String>,
    /// Make a secondary zone, pulled from this primary, IP[:PORT].
    #[arg(long, value_name = "IP:PORT")]
    primary: Option<String>,
}

/// The formats `import` sends.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum FileFormat {
    /// An RFC 1035 master file.
    Zone,
    /// An /etc/hosts file.
    Hosts,
}

#[derive(Subcommand, Debug)]
enum CacheCommand {
    /// List cached answers.
    #[command(after_help = "Example:\n  rind-ctl cache list --name example.com")]
    List {
        /// Only entries for this name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Flush the whole cache, or one name.
    #[command(
        after_help = "Examples:\n  rind-ctl cache flush\n  rind-ctl cache flush example.com"
    )]
    Flush {
        /// Only this name.
        name: Option<String>,
    },
}

/// What ends a command early.
enum Failure {
    /// The request failed; exit 1.
    Request(String),
    /// Writing to stdout failed.
    Output(io::Error),
}

impl From<RequestError> for Failure {
    fn from(e: RequestError) -> Self {
        Failure::Request(e.0)
    }
}

impl From<ops::OpsError> for Failure {
    fn from(e: ops::OpsError) -> Self {
        match e {
            ops::OpsError::Request(e) => e.into(),
            ops::OpsError::Output(e) => Failure::Output(e),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Output(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `rind-ctl list | head` closing the pipe early is not an error.
        Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Output(e)) => {
            eprintln!("rind-ctl: cannot write output: {e}");
            ExitCode::from(1)
        }
        Err(Failure::Request(message)) => {
            eprintln!("rind-ctl: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Completions { shell } = cli.command {
        // Into a buffer first: clap_complete panics when its writer fails (`| head`).
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "rind-ctl", &mut script);
        return Ok(io::stdout().lock().write_all(&script)?);
    }
    if let Command::Man { dir } = &cli.command {
        return ops::man(Cli::command(), dir).map_err(|e| {
            Failure::Request(format!(
                "cannot write man pages into {}: {e}",
                dir.display()
            ))
        });
    }
    // `RIND_API_TOKEN= rind-ctl ...` means "no token", not an empty one.
    let token = cli.token.clone().filter(|t| !t.is_empty());
    let client = Client::new(&cli.server, token)?;
    let json = cli.json;
    match cli.command {
        Command::Add {
            name,
            rtype,
            data,
            ttl,
        } => {
            let input = RecordInput {
                name: &name,
                rtype: &rtype,
                ttl,
                data: &data,
            };
            let record: Record = client.post(RECORDS, &input)?;
            show_record(&record, json)
        }
        Command::List { name, rtype } => {
            let records = list(&client, name.as_deref(), rtype.as_deref())?;
            if json {
                Ok(output::json(&records)?)
            } else {
                Ok(output::records(&records)?)
            }
        }
        Command::Get { id } => {
            let record: Record = client.get(&record_path(&id), &[])?;
            show_record(&record, json)
        }
        Command::Update {
            id,
            name,
            rtype,
            data,
            ttl,
        } => {
            if name.is_none() && rtype.is_none() && data.is_none() && ttl.is_none() {
                return Err(Failure::Request(
                    "nothing to change: give --name, --type, --data or --ttl".into(),
                ));
            }
            let current: Record = client.get(&record_path(&id), &[])?;
            let input = RecordInput {
                name: name.as_deref().unwrap_or(&current.name),
                rtype: rtype.as_deref().unwrap_or(&current.rtype),
                ttl: Some(ttl.unwrap_or(current.ttl)),
                data: data.as_deref().unwrap_or(&current.data),
            };
            let record: Record = client.put(&record_path(&id), &input)?;
            show_record(&record, json)
        }
        Command::Rm {
            id_or_name,
            rtype: None,
            ..
        } => {
            client.delete(&record_path(&id_or_name), &[])?;
            Ok(())
        }
        Command::Rm {
            id_or_name,
            rtype: Some(rtype),
            data,
        } => rm_by_name(&client, &id_or_name, &rtype, data.as_deref()),
        Command::Import { file, format } => import(&client, &file, format, json),
        Command::Export { zone } => {
            let query: Vec<(&str, &str)> = zone.iter().map(|z| ("zone", z.as_str())).collect();
            let text = client.get_text("/api/v1/records/export", &query)?;
            Ok(io::stdout().lock().write_all(text.as_bytes())?)
        }
        Command::Zone(command) => zone(&client, command, json),
        Command::Cache(CacheCommand::List { name }) => {
            let query: Vec<(&str, &str)> = name.iter().map(|n| ("name", n.as_str())).collect();
            let entries: Vec<CacheEntry> = client.get("/api/v1/cache", &query)?;
            if json {
                Ok(output::json(&entries)?)
            } else {
                Ok(output::cache(&entries)?)
            }
        }
        Command::Cache(CacheCommand::Flush { name }) => {
            let query: Vec<(&str, &str)> = name.iter().map(|n| ("name", n.as_str())).collect();
            client.delete("/api/v1/cache", &query)?;
            Ok(())
        }
        Command::Snapshot => {
            let snapshot: Snapshot = client.post("/api/v1/snapshot", &serde_json::json!({}))?;
            if json {
                Ok(output::json(&snapshot)?)
            } else {
                println!("{}", snapshot.path);
                Ok(())
            }
        }
        Command::Block(command) => block::block(&client, command, json),
        Command::Allow(command) => block::allow(&client, command, json),
        Command::Status => Ok(ops::status(&client, json)?),
        Command::Log {
            follow,
            client: from,
            name,
            limit,
        } => {
            let query = ops::LogQuery {
                client: from,
                name,
                limit,
            };
            Ok(ops::log(&client, &query, follow, json)?)
        }
        Command::Completions { .. } | Command::Man { .. } => Ok(()),
    }
}

/// Checks `--server`: `http://HOST[:PORT]`; a bare `HOST:PORT` gets `http://` in front.
fn server_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let url = match raw.split_once("://") {
        None => format!("http://{raw}"),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => raw.to_string(),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => return Err(
            "https is not supported: rind-server's API speaks plain HTTP (give http://HOST:PORT)"
                .into(),
        ),
        Some((scheme, _)) => {
            return Err(format!(
                "{scheme}:// is not an HTTP URL; give http://HOST:PORT"
            ))
        }
    };
    let host = &url["http://".len()..];
    if host.trim_matches('/').is_empty() {
        return Err("no host given; give http://HOST:PORT".into());
    }
    Ok(url)
}

fn list(client: &Client, name: Option<&str>, rtype: Option<&str>) -> Result<Vec<Record>, Failure> {
    let mut query = Vec::new();
    if let Some(name) = name {
        query.push(("name", name));
    }
    if let Some(rtype) = rtype {
        query.push(("type", rtype));
    }
    Ok(client.get(RECORDS, &query)?)
}

/// Deletes the one record with `name`, `rtype` (and `data`), refusing when that is ambiguous.
/// What the server says an import did.
#[derive(serde::Deserialize, serde::Serialize)]
struct Imported {
    created: u64,
    unchanged: u64,
    #[serde(default)]
    skipped: u64,
}

fn import(
    client: &Client,
    file: &std::path::Path,
    format: Option<FileFormat>,
    json: bool,
) -> Result<(), Failure> {
    let body = if file.as_os_str() == "-" {
        let mut body = Vec::new();
        io::Read::read_to_end(&mut io::stdin().lock(), &mut body)
            .map_err(|e| Failure::Request(format!("cannot read standard input: {e}")))?;
        body
    } else {
        std::fs::read(file)
            .map_err(|e| Failure::Request(format!("cannot read {}: {e}", file.display())))?
    };
    let named_hosts = file
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == "hosts" || n.ends_with(".hosts"));
    let format = match format {
        Some(FileFormat::Hosts) => "hosts",
        Some(FileFormat::Zone) => "zone",
        None if named_hosts => "hosts",
        None => "zone",
    };
    let done: Imported = client.post_raw("/api/v1/records/import", &[("format", format)], body)?;
    if json {
        return Ok(output::json(&done)?);
    }
    let mut line = format!("{} created, {} already there", done.created, done.unchanged);
    if done.skipped > 0 {
        line.push_str(&format!(
            ", {} SOA skipped (rind makes its own)",
            done.skipped
        ));
    }
    Ok(writeln!(io::stdout().lock(), "{line}")?)
}

fn rm_by_name(client: &Client, name: &str, rtype: &str, data: Option<&str>) -> Result<(), Failure> {
    let candidates = list(client, Some(name), Some(rtype))?;
    let matching: Vec<&Record> = candidates
        .iter()
        .filter(|r| data.is_none_or(|d| same_data(&r.rtype, &r.data, d)))
        .collect();
    let wanted = match data {
        Some(d) => format!("{name} {rtype} {d}"),
        None => format!("{name} {rtype}"),
    };
    match matching.as_slice() {
        [one] => {
            client.delete(&record_path(&one.id), &[])?;
            Ok(())
        }
        [] => Err(Failure::Request(format!("no record matches {wanted}"))),
        several => {
            let ids: Vec<String> = several
                .iter()
                .map(|r| format!("{} ({})", r.id, r.data))
                .collect();
            Err(Failure::Request(format!(
                "{} records match {wanted}: {}; give the DATA too, or delete by id",
                several.len(),
                ids.join(", ")
            )))
        }
    }
}

/// RDATA as typed by a person against RDATA as the server prints it (`rtype` is the
/// stored record's type): addresses in any spelling, names without the trailing dot or in
/// another case, extra spaces, and TXT text without its quotes (unquoted text is one string).
fn same_data(rtype: &str, stored: &str, given: &str) -> bool {
    let given = given.trim();
    if stored == given {
        return true;
    }
    if let (Ok(a), Ok(b)) = (stored.parse::<IpAddr>(), given.parse::<IpAddr>()) {
        return a == b;
    }
    if rtype.eq_ignore_ascii_case("TXT") {
        // TXT is case-sensitive; only the quoting may differ.
        if given.starts_with('"') {
            return false;
        }
        let quoted = format!("\"{}\"", given.replace('\\', "\\\\").replace('"', "\\\""));
        return stored == quoted;
    }
    let norm = |s: &str| {
        s.split_whitespace()
            .map(|word| word.trim_end_matches('.').to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    norm(stored) == norm(given)
}

fn zone(client: &Client, command: ZoneCommand, json: bool) -> Result<(), Failure> {
    match command {
        ZoneCommand::Add { name, settings } => {
            let input = ZoneInput {
                name: &name,
                allow_transfer: &settings.allow_transfer,
                notify: &settings.notify,
                tsig: settings.tsig.as_deref(),
                primary: settings.primary.as_deref(),
            };
            let zone: Zone = client.post(ZONES, &input)?;
            show_zone(&zone, json)
        }
        ZoneCommand::List => {
            let zones: Vec<Zone> = client.get(ZONES, &[])?;
            if json {
                Ok(output::json(&zones)?)
            } else {
                Ok(output::zones(&zones)?)
            }
        }
        ZoneCommand::Get { name } => {
            let zone: Zone = client.get(&zone_path(&name), &[])?;
            show_zone(&zone, json)
        }
        ZoneCommand::Update {
            name,
            settings,
            clear_allow_transfer,
            clear_notify,
            no_tsig,
        } => {
            let changes = !settings.allow_transfer.is_empty()
                || !settings.notify.is_empty()
                || settings.tsig.is_some()
                || settings.primary.is_some()
                || clear_allow_transfer
                || clear_notify
                || no_tsig;
            if !changes {
                return Err(Failure::Request(
                    "nothing to change: give --allow-transfer, --notify, --tsig, --primary, --clear-allow-transfer, --clear-notify or --no-tsig".into(),
                ));
            }
            // The API replaces every setting at once: start from the current ones.
            let current: Zone = client.get(&zone_path(&name), &[])?;
            let pick = |given: Vec<String>, clear: bool, current: Vec<String>| match (given, clear)
            {
                (_, true) => Vec::new(),
                (given, false) if !given.is_empty() => given,
                _ => current,
            };
            let allow_transfer = pick(
                settings.allow_transfer,
                clear_allow_transfer,
                current.allow_transfer,
            );
            let notify = pick(settings.notify, clear_notify, current.notify);
            let tsig = match (settings.tsig, no_tsig) {
                (_, true) => None,
                (Some(key), false) => Some(key),
                (None, false) => current.tsig,
            };
            let primary = settings.primary.or(current.primary);
            let input = ZoneInput {
                name: &current.name,
                allow_transfer: &allow_transfer,
                notify: &notify,
                tsig: tsig.as_deref(),
                primary: primary.as_deref(),
            };
            let zone: Zone = client.put(&zone_path(&name), &input)?;
            show_zone(&zone, json)
        }
        ZoneCommand::Rm { name, force } => {
            let query: &[(&str, &str)] = if force { &[("force", "true")] } else { &[] };
            match client.delete(&zone_path(&name), query) {
                Ok(()) => Ok(()),
                // The server's message names its query parameter; name the flag instead.
                Err(RequestError(message)) if !force && message.contains("force=true") => {
                    Err(Failure::Request(format!(
                        "{message}; rind-ctl zone rm {name} --force deletes them with the zone"
                    )))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

fn show_zone(zone: &Zone, json: bool) -> Result<(), Failure> {
    if json {
        Ok(output::json(zone)?)
    } else {
        Ok(output::zones(std::slice::from_ref(zone))?)
    }
}

fn zone_path(name: &str) -> String {
    format!("{ZONES}/{}", escape(name))
}

fn record_path(id: &str) -> String {
    format!("{RECORDS}/{}", escape(id))
}

/// A path segment: ids and names are URL-safe by contract; anything else is sent escaped so
/// it cannot change the path.
fn escape(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn show_record(record: &Record, json: bool) -> Result<(), Failure> {
    if json {
        Ok(output::json(record)?)
    } else {
        Ok(output::records(std::slice::from_ref(record))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn data_comparison_forgives_dots_and_case() {
        assert!(same_data("CNAME", "mail.home.arpa.", "Mail.Home.Arpa"));
        assert!(same_data("MX", "10 mail.home.arpa.", " 10  mail.home.arpa"));
        assert!(!same_data("MX", "10 mail.home.arpa.", "mail.home.arpa"));
        assert!(same_data("A", "192.168.1.20", "192.168.1.20"));
        assert!(!same_data("A", "192.168.1.20", "192.168.1.21"));
        assert!(same_data("AAAA", "2001:db8::1", "2001:DB8:0::0:1"));
        assert!(same_data("TXT", "\"hello world\"", "hello world"));
        assert!(same_data("TXT", "\"say \\\"hi\\\"\"", "say \"hi\""));
        assert!(!same_data("TXT", "\"Hello\"", "hello"));
        assert!(!same_data("TXT", "\"a\" \"b\"", "a b"));
    }

    #[test]
    fn server_urls() {
        assert_eq!(
            server_url("127.0.0.1:8053").as_deref(),
            Ok("http://127.0.0.1:8053")
        );
        assert_eq!(
            server_url("http://[::1]:8053/").as_deref(),
            Ok("http://[::1]:8053/")
        );
        assert_eq!(
            server_url("HTTP://nas:8053").as_deref(),
            Ok("HTTP://nas:8053")
        );
        assert!(server_url("https://nas:8053").is_err());
        assert!(server_url("ftp://nas").is_err());
        assert!(server_url("http://").is_err());
    }

    #[test]
    fn ids_cannot_escape_the_path() {
        assert_eq!(record_path("abc-1_2"), "/api/v1/records/abc-1_2");
        assert_eq!(record_path("../x"), "/api/v1/records/..%2Fx");
        assert_eq!(zone_path("home.arpa."), "/api/v1/zones/home.arpa.");
        assert_eq!(zone_path("a/b?c"), "/api/v1/zones/a%2Fb%3Fc");
    }
}
