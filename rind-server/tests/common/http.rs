//! A tiny HTTP client for the server's API (loopback only, no proxy).

use std::net::SocketAddr;
use std::time::Duration;

/// Status and body of one HTTP response.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

impl HttpReply {
    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// A client for loopback requests: no proxy, a 5 s timeout.
pub fn client() -> reqwest::Client {
    rind_server::upstream::trust::install_ring_default();
    reqwest::Client::builder()
        // A proxy from the environment must not intercept loopback requests.
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("build HTTP client")
}

/// GET `http://addr{path}`, with `Authorization: Bearer <token>` when `token` is set.
pub async fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> HttpReply {
    send(
        client().get(format!("http://{addr}{path}")),
        "GET",
        path,
        token,
    )
    .await
}

/// DELETE `http://addr{path}`, with `Authorization: Bearer <token>` when `token` is set.
pub async fn http_delete(addr: SocketAddr, path: &str, token: Option<&str>) -> HttpReply {
    send(
        client().delete(format!("http://{addr}{path}")),
        "DELETE",
        path,
        token,
    )
    .await
}

/// POST `http://addr{path}` with a JSON `body`, with `Authorization: Bearer <token>` when
/// `token` is set.
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
    token: Option<&str>,
) -> HttpReply {
    let req = client().post(format!("http://{addr}{path}")).json(body);
    send(req, "POST", path, token).await
}

/// Sends `req` (`method path`, for messages) and reads the whole reply.
async fn send(
    mut req: reqwest::RequestBuilder,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> HttpReply {
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"));
    let status = resp.status().as_u16();
    let body = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: reading body failed: {e}"));
    HttpReply { status, body }
}

/// `method` `http://addr{path}` with an optional JSON `body` (no token).
pub async fn http_send(
    addr: SocketAddr,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> HttpReply {
    let mut req = client().request(method.clone(), format!("http://{addr}{path}"));
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    send(req, method.as_str(), path, None).await
}

/// The value of the first Prometheus sample whose name and labels are exactly `series`
/// (e.g. `rind_queries_total{transport="udp",type="A"}`).
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(series)?;
        // The series must end here: the next char is the separator before the value.
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The value of `series` on `GET /metrics`; panics when the series is missing.
pub async fn metric(addr: SocketAddr, series: &str, token: Option<&str>) -> f64 {
    let reply = http_get(addr, "/metrics", token).await;
    assert_eq!(reply.status, 200, "GET /metrics: {}", reply.body);
    metric_value(&reply.body, series)
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{}", reply.body))
}
