//! `rind-ctl block ...` and `rind-ctl allow ...`: the blocklists and the allowlist.

use std::time::Duration;

use clap::Subcommand;
use serde::{Deserialize, Serialize};

use crate::client::{Client, RequestError};
use crate::{output, Failure};

const BLOCKLISTS: &str = "/api/v1/blocklists";
const ALLOWLIST: &str = "/api/v1/allowlist";

/// How long a command that makes the server fetch a list waits: the server's own fetch
/// timeout (120 s) plus the time to parse and store a large list.
const FETCH_WAIT: Duration = Duration::from_secs(180);

/// `rind-ctl block ...`.
#[derive(Subcommand, Debug)]
pub enum BlockCommand {
    /// Add a blocklist by URL (hosts file, one domain a line, or AdBlock ||domain^ rules);
    /// the server fetches it now and then every --blocklist-refresh seconds.
    #[command(
        after_help = "Examples:\n  rind-ctl block add https://raw.githubusercontent.com/StevenBlack/hosts/master/hosts\n  rind-ctl block add https://big.oisd.nl --name oisd"
    )]
    Add {
        /// The list's URL (http:// or https://).
        url: String,
        /// A name to show instead of the URL.
        #[arg(long)]
        name: Option<String>,
    },
    /// List the blocklists: how many domains each holds, when it was fetched, its last error.
    #[command(after_help = "Example:\n  rind-ctl block list")]
    List,
    /// Remove a blocklist; its names are answered again at once.
    #[command(after_help = "Example:\n  rind-ctl block rm 2")]
    Rm {
        /// The list's id (see block list).
        id: String,
    },
    /// Fetch one list again now, or every list fetched by URL.
    #[command(after_help = "Examples:\n  rind-ctl block refresh\n  rind-ctl block refresh 2")]
    Refresh {
        /// The list's id; every URL list when left out.
        id: Option<String>,
    },
}

/// `rind-ctl allow ...`.
#[derive(Subcommand, Debug)]
pub enum AllowCommand {
    /// Never block DOMAIN nor the names below it, whatever the lists say.
    #[command(after_help = "Example:\n  rind-ctl allow add cdn.example.com")]
    Add {
        /// The domain.
        domain: String,
    },
    /// List the allowlist.
    #[command(after_help = "Example:\n  rind-ctl allow list")]
    List,
    /// Take DOMAIN off the allowlist.
    #[command(after_help = "Example:\n  rind-ctl allow rm cdn.example.com")]
    Rm {
        /// The domain.
        domain: String,
    },
}

/// A blocklist as the API returns it.
#[derive(Debug, Deserialize, Serialize)]
pub struct Blocklist {
    /// The list's id.
    pub id: String,
    /// Its name (the URL when none was given).
    pub name: String,
    /// Where it is fetched from; none for a list given inline.
    #[serde(default)]
    pub url: Option<String>,
    /// Domains in the copy in use.
    pub domains: u64,
    /// Lines of that copy that were not understood.
    pub skipped: u64,
    /// When the copy in use was fetched (seconds since the epoch).
    pub updated: u64,
    /// When a fetch was last tried.
    #[serde(default)]
    pub checked: Option<u64>,
    /// Why the last fetch failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// An allowlist entry as the API returns it.
#[derive(Debug, Deserialize, Serialize)]
pub struct Allowed {
    /// The domain.
    pub domain: String,
}

/// Runs a `block` command.
pub fn block(client: &Client, command: BlockCommand, json: bool) -> Result<(), Failure> {
    match command {
        BlockCommand::Add { url, name } => {
            let mut body = serde_json::json!({ "url": url });
            if let Some(name) = name {
                body["name"] = serde_json::Value::String(name);
            }
            let list: Blocklist = client.post_slow(BLOCKLISTS, &body, FETCH_WAIT)?;
            show(&[list], json)
        }
        BlockCommand::List => {
            let lists: Vec<Blocklist> = client.get(BLOCKLISTS, &[])?;
            show(&lists, json)
        }
        BlockCommand::Rm { id } => {
            Ok(client.delete(&format!("{BLOCKLISTS}/{}", escape(&id)), &[])?)
        }
        BlockCommand::Refresh { id: Some(id) } => {
            let list = refresh(client, &id)?;
            show(&[list], json)
        }
        BlockCommand::Refresh { id: None } => {
            let lists: Vec<Blocklist> = client.get(BLOCKLISTS, &[])?;
            let mut done = Vec::new();
            let mut failed = Vec::new();
            for list in lists.iter().filter(|l| l.url.is_some()) {
                match refresh(client, &list.id) {
                    Ok(list) => done.push(list),
                    Err(e) => failed.push(format!("list {}: {e}", list.id)),
                }
            }
            show(&done, json)?;
            if failed.is_empty() {
                Ok(())
            } else {
                Err(Failure::Request(failed.join("; ")))
            }
        }
    }
}

/// Runs an `allow` command.
pub fn allow(client: &Client, command: AllowCommand, json: bool) -> Result<(), Failure> {
    match command {
        AllowCommand::Add { domain } => {
            let entry: Allowed =
                client.post(ALLOWLIST, &serde_json::json!({ "domain": domain }))?;
            if json {
                Ok(output::json(&entry)?)
            } else {
                println!("{}", entry.domain);
                Ok(())
            }
        }
        AllowCommand::List => {
            let entries: Vec<Allowed> = client.get(ALLOWLIST, &[])?;
            if json {
                Ok(output::json(&entries)?)
            } else {
                for entry in entries {
                    println!("{}", entry.domain);
                }
                Ok(())
            }
        }
        AllowCommand::Rm { domain } => {
            Ok(client.delete(&format!("{ALLOWLIST}/{}", escape(&domain)), &[])?)
        }
    }
}

fn refresh(client: &Client, id: &str) -> Result<Blocklist, RequestError> {
    let path = format!("{BLOCKLISTS}/{}/refresh", escape(id));
    client.post_slow(&path, &serde_json::json!({}), FETCH_WAIT)
}

fn show(lists: &[Blocklist], json: bool) -> Result<(), Failure> {
    if json {
        return Ok(output::json(lists)?);
    }
    let rows: Vec<[String; 6]> = lists
        .iter()
        .map(|l| {
            [
                l.id.clone(),
                l.domains.to_string(),
                l.skipped.to_string(),
                l.updated.to_string(),
                l.name.clone(),
                l.error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    Ok(output::table(
        ["ID", "DOMAINS", "SKIPPED", "UPDATED", "NAME", "ERROR"],
        &rows,
    )?)
}

/// A path segment, escaped like the record and zone paths.
fn escape(segment: &str) -> String {
    crate::escape(segment)
}
