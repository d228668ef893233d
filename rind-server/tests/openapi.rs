//! The OpenAPI document (issue 14) against the routes it describes: every `warp::path!` in
//! the API's source is a documented path and every documented path is in the source; on a
//! running server every documented operation is routed, and every method a path does not
//! document is refused by the router.

mod records_common;

use std::collections::BTreeSet;

use records_common::{no_upstream, Server};
use serde_json::Value;

const TOKEN: &str = "openapi-test-token";
const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// `/api/v1/records/{id}` → `/api/v1/records/{}`: parameters compare by position only.
fn shape(template: &str) -> String {
    template
        .split('/')
        .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// The paths of every `warp::path!(...)` (and `warp::path::end()`, the root) in `src/api`, as
/// templates.
fn source_paths() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut paths = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("src/api") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        if text.contains("warp::path::end()") {
            paths.insert("/".to_string());
        }
        for (at, _) in text.match_indices("warp::path!(") {
            let rest = &text[at + "warp::path!(".len()..];
            let inside = &rest[..rest.find(')').expect("closing parenthesis")];
            let segments: Vec<String> = inside
                .split('/')
                .map(|s| {
                    let s = s.trim();
                    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                        Some(literal) => literal.to_string(),
                        None => "{}".to_string(),
                    }
                })
                .collect();
            paths.insert(format!("/{}", segments.join("/")));
        }
    }
    paths
}

fn document(server: &Server, http: &reqwest::blocking::Client) -> Value {
    let reply = http
        .get(server.url("/api/v1/openapi.json"))
        .bearer_auth(TOKEN)
        .send()
        .expect("GET openapi.json");
    assert_eq!(reply.status(), 200);
    assert_eq!(
        reply
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    reply.json().expect("the document is JSON")
}

/// Whether `concrete` fits `template` (a `{...}` segment fits any one segment).
fn fits(template: &str, concrete: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let c: Vec<&str> = concrete.split('/').collect();
    t.len() == c.len() && t.iter().zip(&c).all(|(t, c)| t.starts_with('{') || t == c)
}

#[test]
fn the_document_and_the_routes_describe_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), no_upstream(), &["--api-token", TOKEN]);
    rind_server::upstream::trust::install_ring_default();
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let doc = document(&server, &http);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");

    let documented: BTreeSet<String> = paths.keys().map(|p| shape(p)).collect();
    let in_source = source_paths();
    assert!(in_source.len() >= 10, "found too few routes: {in_source:?}");
    assert_eq!(
        documented, in_source,
        "left: in openapi.json, right: warp::path! in src/api"
    );

    // Unauthenticated, the document itself is refused like every other /api/ route.
    let anonymous = http
        .get(server.url("/api/v1/openapi.json"))
        .send()
        .expect("GET");
    assert_eq!(anonymous.status(), 401);

    let mut operations = 0;
    for (template, item) in paths {
        let concrete = template
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in METHODS {
            let documented_here = item.get(method).is_some();
            // `/api/v1/records/export` also fits `/api/v1/records/{id}`: a method that the
            // other template documents is routed there, rightly.
            let documented_elsewhere = paths
                .iter()
                .any(|(t, i)| t != template && fits(t, &concrete) && i.get(method).is_some());
            let reply = http
                .request(
                    reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"),
                    server.url(&concrete),
                )
                .bearer_auth(TOKEN)
                .body("{}")
                .send()
                .expect("request");
            let status = reply.status().as_u16();
            let body = reply.text().expect("body");
            let unrouted = status == 405 || (status == 404 && body.contains("\"no such route\""));
            if documented_here {
                operations += 1;
                assert!(
                    !unrouted,
                    "{method} {template} is documented but not routed: {status} {body}"
                );
                let responses = item[method]["responses"].as_object().expect("responses");
                assert!(
                    responses.contains_key(&status.to_string()),
                    "{method} {concrete} answered {status}, which the document does not list: {body}"
                );
            } else if !documented_elsewhere {
                assert!(
                    unrouted,
                    "{method} {template} is routed ({status} {body}) but not documented"
                );
            }
        }
    }
    assert!(operations >= 19, "only {operations} operations documented");
}
