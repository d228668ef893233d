//! The two commands that document the server instead of running it:
//! `rind-server completions SHELL` prints a shell completion script and
//! `rind-server man DIR` writes the man page `rind-server.1`, both generated from the same
//! clap definition as the flags ([`crate::config::Args`]), so they never drift from them.

use std::io;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgMatches, Command, CommandFactory, FromArgMatches};
use clap_complete::Shell;

use crate::config::Args;

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Run the server with these flags.
    Serve(Box<Args>),
    /// Print the completion script for this shell.
    Completions(Shell),
    /// Write the man pages into this directory.
    Man(PathBuf),
}

/// The full command line: the server's flags and the two documentation subcommands.
pub fn command() -> Command {
    Args::command()
        .subcommand(
            Command::new("completions")
                .about("Print a shell completion script for rind-server and exit")
                .after_help(
                    "Example:\n  rind-server completions bash > /etc/bash_completion.d/rind-server",
                )
                .arg(
                    Arg::new("shell")
                        .required(true)
                        .value_parser(clap::value_parser!(Shell))
                        .help("bash, zsh, fish, elvish or powershell"),
                ),
        )
        .subcommand(
            Command::new("man")
                .about("Write the man page rind-server.1 into DIR and exit")
                .after_help("Example:\n  rind-server man /usr/local/share/man/man1")
                .arg(
                    Arg::new("dir")
                        .required(true)
                        .value_name("DIR")
                        .value_parser(clap::value_parser!(PathBuf))
                        .help("Directory for the page; created when missing"),
                ),
        )
        .disable_help_subcommand(true)
}

/// Parses `argv` (and the env twins); clap's usage errors end the process with status 2.
pub fn parse() -> Invocation {
    let matches = command().get_matches();
    from_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn from_matches(matches: &ArgMatches) -> Result<Invocation, clap::Error> {
    match matches.subcommand() {
        Some(("completions", sub)) => {
            let shell = sub.get_one::<Shell>("shell").copied();
            shell.map(Invocation::Completions).ok_or_else(|| {
                clap::Error::raw(clap::error::ErrorKind::MissingRequiredArgument, "no shell")
            })
        }
        Some(("man", sub)) => {
            let dir = sub.get_one::<PathBuf>("dir").cloned();
            dir.map(Invocation::Man).ok_or_else(|| {
                clap::Error::raw(clap::error::ErrorKind::MissingRequiredArgument, "no DIR")
            })
        }
        _ => Ok(Invocation::Serve(Box::new(Args::from_arg_matches(
            matches,
        )?))),
    }
}

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command(), "rind-server", &mut script);
    script
}

/// Writes `rind-server.1` into `dir` (and a page per documentation subcommand).
pub fn write_man(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(command(), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_from(argv: &[&str]) -> Result<Invocation, clap::Error> {
        from_matches(&command().try_get_matches_from(argv)?)
    }

    #[test]
    fn command_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn flags_still_run_the_server() {
        let Ok(Invocation::Serve(args)) = parse_from(&["rind-server", "--query-log", "5"]) else {
            panic!("flags must mean serve");
        };
        assert_eq!(args.operations.query_log, 5);
        assert!(matches!(
            parse_from(&["rind-server", "completions", "zsh"]),
            Ok(Invocation::Completions(Shell::Zsh))
        ));
        assert!(parse_from(&["rind-server", "completions", "tcsh"]).is_err());
    }

    #[test]
    fn the_man_page_lists_every_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_man(dir.path()).expect("written");
        let page = std::fs::read_to_string(dir.path().join("rind-server.1")).expect("page");
        for arg in Args::command().get_arguments() {
            if let Some(long) = arg.get_long() {
                // roff escapes '-' as '\-'.
                let shown = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(page.contains(&shown), "{shown} missing from the man page");
            }
        }
        assert!(page.contains("RIND_QUERY_LOG"), "env twins are documented");
        let script = String::from_utf8(completions(Shell::Bash)).expect("utf-8");
        assert!(script.contains("--query-log") && script.contains("--log-format"));
    }
}
