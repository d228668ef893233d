//! Records API 2.0, first part (issue 14): strong ETags, If-Match on PUT and DELETE (412,
//! nothing changed), and `?limit=&after=` pages with `Link: rel="next"`, against the real
//! binary.

mod records_common;

use records_common::{no_upstream, Server};
use serde_json::{json, Value};

fn client() -> reqwest::blocking::Client {
    rind_server::upstream::trust::install_ring_default();
    reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

fn header(resp: &reqwest::blocking::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[test]
fn if_match_guards_put_and_delete_and_etags_follow_every_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), no_upstream(), &[]);
    let http = client();
    let created = http
        .post(s.url("/api/v1/records"))
        .body(r#"{"name": "nas.home.lan", "type": "A", "data": "192.168.1.10"}"#)
        .send()
        .expect("POST");
    assert_eq!(created.status(), 201);
    let tag = header(&created, "etag").expect("ETag on 201");
    assert!(
        tag.starts_with('"') && tag.ends_with('"') && tag.len() > 2,
        "{tag}"
    );
    let record: Value = created.json().expect("json");
    let id = record["id"].as_str().expect("id").to_string();
    let item = s.url(&format!("/api/v1/records/{id}"));

    let read = http.get(&item).send().expect("GET");
    assert_eq!(
        header(&read, "etag").as_deref(),
        Some(tag.as_str()),
        "GET and POST agree"
    );

    let moved = json!({"name": "nas.home.lan", "type": "A", "data": "192.168.1.11"}).to_string();
    // A stale tag: 412, and the record is as it was.
    let stale = http
        .put(&item)
        .header("If-Match", "\"0123456789abcdef01234567\"")
        .body(moved.clone())
        .send()
        .expect("PUT");
    assert_eq!(stale.status(), 412);
    let error: Value = stale.json().expect("json");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("changed")),
        "{error}"
    );
    let unchanged: Value = http.get(&item).send().expect("GET").json().expect("json");
    assert_eq!(unchanged["data"], "192.168.1.10");
    assert!(s
        .ask("nas.home.lan.", hickory_proto::rr::RecordType::A)
        .answers
        .iter()
        .any(|r| r.data.to_string() == "192.168.1.10"));

    // The current tag: 200 with a new tag, which the old one no longer matches.
    let put = http
        .put(&item)
        .header("If-Match", &tag)
        .body(moved)
        .send()
        .expect("PUT");
    assert_eq!(put.status(), 200);
    let new_tag = header(&put, "etag").expect("ETag on PUT");
    assert_ne!(new_tag, tag);
    let old = http
        .delete(&item)
        .header("If-Match", &tag)
        .send()
        .expect("DELETE");
    assert_eq!(old.status(), 412);
    assert_eq!(http.get(&item).send().expect("GET").status(), 200);
    // A list of tags matches when one does; a malformed header is 400.
    let bad = http
        .delete(&item)
        .header("If-Match", "nope")
        .send()
        .expect("DELETE");
    assert_eq!(bad.status(), 400);
    let gone = http
        .delete(&item)
        .header("If-Match", format!("\"aa\", {new_tag}"))
        .send()
        .expect("DELETE");
    assert_eq!(gone.status(), 204);
    // `*` needs the record to exist.
    let star = http
        .delete(&item)
        .header("If-Match", "*")
        .send()
        .expect("DELETE");
    assert_eq!(star.status(), 404);
}

#[test]
fn pages_follow_the_link_until_the_list_is_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), no_upstream(), &[]);
    for i in 0..7 {
        s.create(&format!("h{i}.lan"), "A", 300, &format!("10.0.0.{i}"));
    }
    s.create("txt.lan", "TXT", 300, "not an A");
    let http = client();
    let all: Vec<Value> = http
        .get(s.url("/api/v1/records?type=A"))
        .send()
        .expect("GET")
        .json()
        .expect("json");
    assert_eq!(all.len(), 7, "without limit: everything, as before");

    let mut next = Some("/api/v1/records?type=A&limit=3".to_string());
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(path) = next.take() {
        pages += 1;
        assert!(pages <= 5, "more pages than records");
        let resp = http.get(s.url(&path)).send().expect("GET");
        assert_eq!(resp.status(), 200);
        next = header(&resp, "link").map(|link| {
            assert!(link.ends_with("; rel=\"next\""), "{link}");
            link.trim_start_matches('<')
                .split('>')
                .next()
                .expect("a URL in <>")
                .to_string()
        });
        let page: Vec<Value> = resp.json().expect("json");
        assert!(page.len() <= 3);
        seen.extend(page);
    }
    assert_eq!(pages, 3, "3 + 3 + 1");
    assert_eq!(seen, all, "the pages, in order, are the whole list");

    for bad in ["limit=0", "limit=10001", "limit=x", "after=abc"] {
        let resp = http
            .get(s.url(&format!("/api/v1/records?{bad}")))
            .send()
            .expect("GET");
        assert_eq!(resp.status(), 400, "{bad}");
    }
}
