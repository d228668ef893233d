//! The web page (docs/reference.md, "Web page"): `/` and its assets are served from the
//! binary with the right types and security headers, load nothing from elsewhere, and the
//! script calls only API routes that exist. The page in a browser: tests/external/web.sh.

mod common;

use std::net::SocketAddr;

use common::*;
use reqwest::{Method, StatusCode};

const ASSETS: [(&str, &str); 3] = [
    ("/", "text/html; charset=utf-8"),
    ("/app.js", "text/javascript; charset=utf-8"),
    ("/app.css", "text/css; charset=utf-8"),
];

async fn fetch(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client().request(method.clone(), format!("http://{addr}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{} has no {name} header", resp.url()))
        .to_str()
        .expect("header is text")
        .to_string()
}

async fn text(addr: SocketAddr, path: &str) -> String {
    let resp = fetch(addr, Method::GET, path, &[]).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    resp.text().await.expect("body")
}

#[tokio::test]
async fn page_and_assets_have_their_types_and_security_headers() {
    let server = Server::start(&[]);
    let addr = server.http_addr();
    for (path, content_type) in ASSETS {
        let resp = fetch(addr, Method::GET, path, &[]).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        assert_eq!(header(&resp, "content-type"), content_type, "{path}");
        assert_eq!(header(&resp, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&resp, "cache-control"), "no-cache", "{path}");
        let csp = header(&resp, "content-security-policy");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{path}: {csp}"
        );
        let etag = header(&resp, "etag");
        let body = resp.text().await.expect("body");
        assert!(body.len() > 100, "{path} is nearly empty: {body:?}");

        // Cache-Control: no-cache makes a browser ask each time; the ETag spares the body.
        let again = fetch(addr, Method::GET, path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header(&again, "etag"), etag);
        assert!(again.text().await.expect("body").is_empty());
        let stale = fetch(addr, Method::GET, path, &[("if-none-match", "\"old\"")]).await;
        assert_eq!(stale.status(), StatusCode::OK, "{path} with another ETag");
    }
    let missing = fetch(addr, Method::GET, "/app.jsx", &[]).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_page_loads_nothing_inline_and_nothing_from_elsewhere() {
    let server = Server::start(&[]);
    let addr = server.http_addr();
    let html = text(addr, "/").await;
    let lower = html.to_ascii_lowercase();
    let scripts: Vec<&str> = lower.split("<script").skip(1).collect();
    assert!(!scripts.is_empty(), "the page has no script");
    for tag in scripts {
        let (open, rest) = tag.split_once('>').expect("script tag closes");
        assert!(
            open.contains("src=\"/"),
            "inline or foreign script: <script{open}>"
        );
        assert!(
            rest.starts_with("</script>"),
            "script with inline content: {rest:.60}"
        );
    }
    // CSP refuses inline styles and handlers: the page must not need them.
    for needle in [
        " style=",
        " onclick=",
        " onload=",
        " onerror=",
        " onsubmit=",
    ] {
        assert!(!lower.contains(needle), "the page has{needle}");
    }
    for (path, _) in ASSETS {
        let body = text(addr, path).await;
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} names another origin (CDN, fonts?)"
        );
    }
    for asset in ["src=\"/app.js\"", "href=\"/app.css\""] {
        assert!(html.contains(asset), "the page does not load {asset}");
    }
}

#[tokio::test]
async fn the_page_needs_no_token_but_its_api_calls_do() {
    let server = Server::start(&["--api-token", "s3cret"]);
    let addr = server.http_addr();
    for (path, _) in ASSETS {
        let resp = fetch(addr, Method::GET, path, &[]).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {path} without a token");
    }
    let api = fetch(addr, Method::GET, "/api/v1/records", &[]).await;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

/// One `api('METHOD', '/api/v1/...')` call in the script: method, route, whether an id
/// (`${...}`) follows the route, and what follows the id (`/refresh`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    method: String,
    route: String,
    with_id: bool,
    suffix: String,
}

fn calls_in(script: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    for piece in script.split("api('").skip(1) {
        let Some((method, rest)) = piece.split_once('\'') else {
            continue;
        };
        let rest = rest.trim_start_matches([',', ' ']);
        let Some(path) = rest.strip_prefix(['`', '\'']) else {
            continue;
        };
        let end = path
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '/'))
            .unwrap_or(path.len());
        let route = path[..end].trim_end_matches('/').to_string();
        let with_id = path[end..].starts_with("${") && path[..end].ends_with('/');
        let suffix = if with_id {
            let after_id = path[end..].split_once('}').map_or("", |(_, after)| after);
            after_id.split('`').next().unwrap_or_default().to_string()
        } else {
            String::new()
        };
        calls.push(Call {
            method: method.to_string(),
            route,
            with_id,
            suffix,
        });
    }
    calls
}

/// Every route a string literal in the script names (`'/api/v1/...` or `` `/api/v1/... ``).
fn routes_named_in(script: &str) -> Vec<String> {
    let mut routes: Vec<String> = ["'/api/v1/", "`/api/v1/"]
        .iter()
        .flat_map(|start| script.match_indices(start))
        .map(|(at, _)| {
            let path = &script[at + 1..];
            let end = path
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '/'))
                .unwrap_or(path.len());
            path[..end].trim_end_matches('/').to_string()
        })
        .collect();
    routes.sort();
    routes.dedup();
    routes
}

#[tokio::test]
async fn every_route_the_script_names_answers_get() {
    let server = Server::start(&[]);
    let addr = server.http_addr();
    let script = text(addr, "/app.js").await;
    let routes = routes_named_in(&script);
    assert!(routes.len() >= 5, "too few routes found: {routes:?}");
    for route in &routes {
        let reply = http_get(addr, route, None).await;
        assert_eq!(reply.status, 200, "GET {route}: {}", reply.body);
    }
}

#[tokio::test]
async fn every_api_call_in_the_script_reaches_a_route() {
    let lists = ListServer::start();
    lists.serve("/hosts", "0.0.0.0 ads.example.com\n");
    let server = Server::start(&[]);
    let addr = server.http_addr();
    let script = text(addr, "/app.js").await;
    let mut calls = calls_in(&script);
    let routes: std::collections::BTreeSet<&str> = calls.iter().map(|c| c.route.as_str()).collect();
    for expected in [
        "/api/v1/records",
        "/api/v1/zones",
        "/api/v1/cache",
        "/api/v1/querylog",
        "/api/v1/status",
        "/api/v1/blocklists",
        "/api/v1/allowlist",
    ] {
        assert!(
            routes.contains(expected),
            "no call to {expected} found in {calls:?}"
        );
    }
    assert!(
        calls
            .iter()
            .any(|c| c.route == "/api/v1/blocklists" && c.suffix == "/refresh"),
        "no list refresh found in {calls:?}"
    );
    // Deletes last, so the record, the list and the allowlist entry are still there for the
    // others.
    calls.sort_by_key(|c| c.method == "DELETE");
    let record = serde_json::json!({"name": "web.home.arpa", "type": "A", "data": "192.168.1.5"});
    let created = http_post(addr, "/api/v1/records", &record, None).await;
    assert_eq!(created.status, 201, "{created:?}");
    let record_id = created.json()["id"].as_str().expect("id").to_string();
    // A list by URL, so that its refresh has something to fetch.
    let list = serde_json::json!({"url": lists.url("/hosts")});
    let created = http_post(addr, "/api/v1/blocklists", &list, None).await;
    assert_eq!(created.status, 201, "{created:?}");
    let list_id = created.json()["id"].as_str().expect("id").to_string();
    let allowed = serde_json::json!({"domain": "kept.example.com"});
    let created = http_post(addr, "/api/v1/allowlist", &allowed, None).await;
    assert_eq!(created.status, 201, "{created:?}");
    for call in &calls {
        // The id of something of the route's kind, and a body the route takes.
        let (id, body) = match call.route.as_str() {
            "/api/v1/blocklists" => (
                list_id.as_str(),
                serde_json::json!({"name": "web", "domains": ["tracker.example.com"]}),
            ),
            "/api/v1/allowlist" => (
                "kept.example.com",
                serde_json::json!({"domain": "web.example.com"}),
            ),
            _ if call.with_id => (
                record_id.as_str(),
                serde_json::json!({"name": "web.home.arpa", "type": "A", "data": "192.168.1.6"}),
            ),
            _ => (
                record_id.as_str(),
                serde_json::json!({"name": "web2.home.arpa", "type": "A", "data": "192.168.1.7"}),
            ),
        };
        let path = if call.with_id {
            format!("{}/{id}{}", call.route, call.suffix)
        } else {
            call.route.clone()
        };
        let method = Method::from_bytes(call.method.as_bytes()).expect("method");
        let mut req = client().request(method, format!("http://{addr}{path}"));
        // A POST to an id (a refresh) sends no body; a PUT replaces what the id names.
        let sends_body = match call.method.as_str() {
            "POST" => !call.with_id,
            "PUT" => true,
            _ => false,
        };
        if sends_body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status();
        let body = resp.text().await.expect("body");
        assert!(
            status.is_success(),
            "{} {path} (from {call:?}) answered {status}: {body}",
            call.method
        );
    }
}

#[test]
fn calls_are_read_from_the_script() {
    let script = "api('GET', `/api/v1/records?limit=${N}`); \
                  api('PUT', `/api/v1/records/${encodeURIComponent(id)}`, {}); \
                  api('POST', `/api/v1/blocklists/${encodeURIComponent(list.id)}/refresh`); \
                  api('DELETE', '/api/v1/cache' + q);";
    let call = |m: &str, r: &str, with_id, suffix: &str| Call {
        method: m.into(),
        route: r.into(),
        with_id,
        suffix: suffix.into(),
    };
    assert_eq!(
        calls_in(script),
        vec![
            call("GET", "/api/v1/records", false, ""),
            call("PUT", "/api/v1/records", true, ""),
            call("POST", "/api/v1/blocklists", true, "/refresh"),
            call("DELETE", "/api/v1/cache", false, ""),
        ]
    );
}
