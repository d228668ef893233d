//! Fetching a list by URL: http or https (reqwest with rustls), at most [`MAX_LIST_BYTES`],
//! within [`FETCH_TIMEOUT`], and with `If-None-Match`/`If-Modified-Since` when an earlier
//! copy is kept, so an unchanged list costs the server (and the list's host) one 304.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;

use crate::upstream::trust;

/// The largest list accepted: the biggest public lists (a few million names) are under this.
pub const MAX_LIST_BYTES: usize = 128 << 20;

/// The longest a whole fetch may take, body included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a list could not be fetched, in words the API and the list's `error` show.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The URL is not one rind fetches.
    #[error("{0}")]
    BadUrl(String),
    /// The request failed (name lookup, connection, timeout, TLS).
    #[error("cannot fetch {url}: {reason}")]
    Request {
        /// The list's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered, but not with the list.
    #[error("fetching {url} got HTTP {status}")]
    Status {
        /// The list's URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The list is larger than [`MAX_LIST_BYTES`].
    #[error("{url} is over {} MiB; rind takes lists up to that size", MAX_LIST_BYTES >> 20)]
    TooLarge {
        /// The list's URL.
        url: String,
    },
    /// The body is not text.
    #[error("{url} is not a text file (not UTF-8)")]
    NotText {
        /// The list's URL.
        url: String,
    },
}

/// What a fetch brought.
#[derive(Debug)]
pub enum Fetched {
    /// The list as it is now, with the validators to send next time.
    New {
        /// The body.
        text: String,
        /// The `ETag` the server sent.
        etag: Option<String>,
        /// The `Last-Modified` the server sent.
        last_modified: Option<String>,
    },
    /// 304: the copy kept is current.
    Unchanged,
}

/// The validators of the copy kept, for a conditional fetch.
#[derive(Debug, Default, Clone)]
pub struct Validators {
    /// The `ETag` of the copy kept.
    pub etag: Option<String>,
    /// The `Last-Modified` of the copy kept.
    pub last_modified: Option<String>,
}

/// Checks that `url` is an http or https URL.
pub fn check_url(url: &str) -> Result<reqwest::Url, FetchError> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| FetchError::BadUrl(format!("url {url:?} is not a URL: {e}")))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() => Ok(parsed),
        _ => Err(FetchError::BadUrl(format!(
            "url {url:?}: only http:// and https:// lists can be fetched"
        ))),
    }
}

/// The HTTP client lists are fetched with.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
}

impl Fetcher {
    /// A client with rind's timeouts; an error when it cannot start (no TLS roots, say): then
    /// no list can be fetched, and each try says why.
    pub fn new() -> Result<Fetcher, FetchError> {
        let cannot_start = |reason: String| FetchError::Request {
            url: String::new(),
            reason: format!("the HTTP client cannot start: {reason}"),
        };
        // The encrypted upstreams' ring-based settings over the system roots; the client
        // speaks HTTP/1.1 only, so that is all it offers. Without system roots, http:// lists
        // can still be fetched, and an https:// one fails naming the unknown issuer.
        let roots = trust::system_roots().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no system CA roots: https:// blocklists cannot be fetched");
            Arc::new(rustls::RootCertStore::empty())
        });
        let tls =
            trust::client_config(roots, &[b"http/1.1"]).map_err(|e| cannot_start(e.to_string()))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(rustls::ClientConfig::clone(&tls))
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("rind/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| cannot_start(e.to_string()))?;
        Ok(Fetcher { client })
    }

    /// Fetches `url`, conditionally on `kept` when there is a copy already.
    pub async fn fetch(&self, url: &str, kept: &Validators) -> Result<Fetched, FetchError> {
        let parsed = check_url(url)?;
        let failed = |e: reqwest::Error| FetchError::Request {
            url: url.to_string(),
            reason: describe(&e),
        };
        let mut request = self.client.get(parsed);
        if let Some(etag) = &kept.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(date) = &kept.last_modified {
            request = request.header(IF_MODIFIED_SINCE, date);
        }
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Fetched::Unchanged);
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let too_large = || FetchError::TooLarge {
            url: url.to_string(),
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_LIST_BYTES as u64)
        {
            return Err(too_large());
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header(ETAG);
        let last_modified = header(LAST_MODIFIED);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_LIST_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body).map_err(|_| FetchError::NotText {
            url: url.to_string(),
        })?;
        Ok(Fetched::New {
            text,
            etag,
            last_modified,
        })
    }
}

/// A reqwest error with its causes, on one line (reqwest's own message is often just
/// "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
