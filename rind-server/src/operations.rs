//! The operations flags: the query log's size and the format of the log lines. They are
//! flattened into [`crate::config::Args`] and checked here, apart from the DNS and store
//! settings.

use clap::ValueEnum;

use crate::querylog;

/// `--query-log` and `--log-format`, with their env twins.
#[derive(clap::Args, Debug, Clone)]
pub struct OperationsArgs {
    /// Queries kept in the in-memory query log (GET /api/v1/querylog, rind-ctl log); 0 = off.
    /// About 300 bytes each, allocated at start.
    #[arg(long, env = "RIND_QUERY_LOG", default_value_t = 10_000)]
    pub query_log: usize,

    /// Format of the log lines on stderr: text for people, json (one object a line) for a
    /// log collector.
    #[arg(long, env = "RIND_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The `--log-format` values.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per event (the default).
    Text,
    /// One JSON object per event: `timestamp`, `level`, `message`, the event's own fields, `target`.
    Json,
}

/// The checked operations settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operations {
    /// Entries in the query log; 0: no log.
    pub query_log: usize,
    /// Format of the log lines.
    pub log_format: LogFormat,
}

/// An operations flag out of range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OperationsError {
    /// `--query-log` above [`querylog::MAX_ENTRIES`].
    #[error("--query-log {0} is more than {max} entries (about 300 bytes each); give a smaller number, or 0 to turn the log off", max = querylog::MAX_ENTRIES)]
    QueryLogTooBig(usize),
}

impl OperationsArgs {
    /// Checks the ranges clap cannot say in one line.
    pub fn validate(self) -> Result<Operations, OperationsError> {
        if self.query_log > querylog::MAX_ENTRIES {
            return Err(OperationsError::QueryLogTooBig(self.query_log));
        }
        Ok(Operations {
            query_log: self.query_log,
            log_format: self.log_format,
        })
    }
}
