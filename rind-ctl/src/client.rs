//! The HTTP side of `rind-ctl`: one blocking request per call, and errors a person can read.

use std::time::Duration;

use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A record as the API returns it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Record {
    /// Stable id.
    pub id: String,
    /// Owner name, lower case, fully qualified.
    pub name: String,
    /// Record type.
    #[serde(rename = "type")]
    pub rtype: String,
    /// TTL in seconds.
    pub ttl: u64,
    /// RDATA in presentation form.
    pub data: String,
}

/// The body of a create or replace.
#[derive(Debug, Serialize)]
pub struct RecordInput<'a> {
    /// Owner name.
    pub name: &'a str,
    /// Record type.
    #[serde(rename = "type")]
    pub rtype: &'a str,
    /// TTL; the server's default (300) when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// RDATA in presentation form.
    pub data: &'a str,
}

/// One cached answer.
#[derive(Debug, Deserialize, Serialize)]
pub struct CacheEntry {
    /// Owner name.
    pub name: String,
    /// Record type.
    #[serde(rename = "type")]
    pub rtype: String,
    /// Response code.
    pub rcode: String,
    /// Seconds left.
    pub ttl: u64,
}

/// The reply to a snapshot request.
#[derive(Debug, Deserialize, Serialize)]
pub struct Snapshot {
    /// Directory of the copy, on the server's machine.
    pub path: String,
}

/// A zone as the API returns it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Zone {
    /// Apex, lower case, fully qualified.
    pub name: String,
    /// SOA serial; grows with every change under the zone.
    pub serial: u64,
    /// How many records the zone holds.
    pub records: u64,
    /// Networks that may transfer the zone.
    #[serde(default)]
    pub allow_transfer: Vec<String>,
    /// Servers told of changes by NOTIFY.
    #[serde(default)]
    pub notify: Vec<String>,
    /// TSIG key transfers must be signed with.
    #[serde(default)]
    pub tsig: Option<String>,
    /// For a secondary zone: where it is pulled from.
    #[serde(default)]
    pub primary: Option<String>,
    /// Fields this rind-ctl does not know yet, kept so `--json` shows what the API said.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The body of a zone create or replace.
#[derive(Debug, Serialize)]
pub struct ZoneInput<'a> {
    /// Apex.
    pub name: &'a str,
    /// Networks (CIDR) or addresses that may transfer the zone.
    pub allow_transfer: &'a [String],
    /// NOTIFY targets, `IP[:PORT]`.
    pub notify: &'a [String],
    /// TSIG key name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsig: Option<&'a str>,
    /// Primary of a secondary zone, `IP[:PORT]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<&'a str>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// Why a request failed; the message is the one line `rind-ctl` prints.
#[derive(Debug)]
pub struct RequestError(pub String);

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RequestError {}

/// A client for one rind-server.
pub struct Client {
    http: Http,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8053`).
    pub fn new(base: &str, token: Option<String>) -> Result<Client, RequestError> {
        // Built in one workspace with rind-server, reqwest has rustls without a crypto
        // provider of its own (the server gives it ring's): name the same one here.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = Http::builder()
            .timeout(Duration::from_secs(30))
            // A host that drops packets should not keep a person waiting for 30 s.
            .connect_timeout(Duration::from_secs(5))
            // rind lives on the local network; a proxy from the environment would only
            // get in the way of reaching it.
            .no_proxy()
            .build()
            .map_err(|e| RequestError(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// GETs `path` (with `query` parameters) and decodes the JSON reply.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, RequestError> {
        let response = self.send(self.request(Method::GET, path).query(query))?;
        decode(response)
    }

    /// POSTs `body` to `path` and decodes the JSON reply.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, RequestError> {
        decode(self.send(self.request(Method::POST, path).json(body))?)
    }

    /// POSTs `body` to `path` and decodes the JSON reply, waiting up to `wait` (a server
    /// fetching a large blocklist takes longer than the usual request).
    pub fn post_slow<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        wait: Duration,
    ) -> Result<T, RequestError> {
        decode(self.send(self.request(Method::POST, path).json(body).timeout(wait))?)
    }

    /// PUTs `body` to `path` and decodes the JSON reply.
    pub fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, RequestError> {
        decode(self.send(self.request(Method::PUT, path).json(body))?)
    }

    /// POSTs `body` as it is to `path` (with `query` parameters) and decodes the JSON reply.
    pub fn post_raw<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<T, RequestError> {
        decode(self.send(self.request(Method::POST, path).query(query).body(body))?)
    }

    /// GETs `path` (with `query` parameters) and returns the reply's text.
    pub fn get_text(&self, path: &str, query: &[(&str, &str)]) -> Result<String, RequestError> {
        let response = self.send(self.request(Method::GET, path).query(query))?;
        response
            .text()
            .map_err(|e| RequestError(format!("reading the server's reply failed: {e}")))
    }

    /// DELETEs `path` (with `query` parameters).
    pub fn delete(&self, path: &str, query: &[(&str, &str)]) -> Result<(), RequestError> {
        self.send(self.request(Method::DELETE, path).query(query))?;
        Ok(())
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends the request; any non-2xx becomes the server's own message.
    fn send(&self, request: RequestBuilder) -> Result<Response, RequestError> {
        let response = request.send().map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().unwrap_or_default();
        let message = one_line(&serde_json::from_str::<ErrorBody>(&text).map_or(text, |b| b.error));
        Err(RequestError(match status {
            StatusCode::UNAUTHORIZED => format!(
                "{message} (HTTP 401; set --token or RIND_API_TOKEN to the server's --api-token)"
            ),
            // No rind error body: something else answers on that address.
            _ if message.is_empty() => format!(
                "{} answered HTTP {status} without an error message — is --server pointing at rind-server?",
                self.base
            ),
            _ => format!("{message} (HTTP {})", status.as_u16()),
        }))
    }

    fn unreachable(&self, e: &reqwest::Error) -> RequestError {
        let cause = if e.is_timeout() {
            "timed out".to_string()
        } else if e.is_connect() {
            // The innermost cause says what the OS said ("Connection refused", ...).
            let mut source: Option<&dyn std::error::Error> = Some(e);
            let mut last = e.to_string();
            while let Some(s) = source {
                last = s.to_string();
                source = s.source();
            }
            // "Connection refused (os error 111)": the errno adds nothing for a person.
            match last.find(" (os error") {
                Some(at) => last[..at].to_lowercase(),
                None => last.to_lowercase(),
            }
        } else {
            e.to_string()
        };
        RequestError(format!(
            "cannot reach rind-server at {}: {cause} — is it running?",
            self.base
        ))
    }
}

/// Whitespace runs (newlines of an HTML error page, say) become one space, and anything past
/// 300 characters is cut: an error is one line on stderr.
fn one_line(text: &str) -> String {
    const MAX: usize = 300;
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &joined[..at]),
        None => joined,
    }
}

fn decode<T: DeserializeOwned>(response: Response) -> Result<T, RequestError> {
    let text = response
        .text()
        .map_err(|e| RequestError(format!("reading the server's reply failed: {e}")))?;
    serde_json::from_str(&text).map_err(|e| {
        RequestError(format!(
            "the server's reply is not what rind-ctl expects: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn error_bodies_become_one_line() {
        assert_eq!(
            one_line("  <h1>Bad\n gateway</h1>\r\n"),
            "<h1>Bad gateway</h1>"
        );
        assert_eq!(one_line(&"x".repeat(400)).chars().count(), 301);
    }
}
