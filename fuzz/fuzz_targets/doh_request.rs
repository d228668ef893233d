//! DNS over HTTPS: the listener's real request code (`listener::https::answer`) on requests
//! made from the input, without the TLS and HTTP layers (rustls and hyper are fuzzed by their
//! own projects).
//!
//! Input: byte 0 picks the method (GET, POST, another), byte 1 the path and the content type;
//! the rest is the query string of a GET (lossy UTF-8) or the body of a POST.
//!
//! Asserts: no panic; the status is 200 or 4xx, never 5xx; a 200 carries an
//! `application/dns-message` that parses as a response with a `Cache-Control: max-age`.

#![no_main]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use rind_fuzz::{peer, Rig, START};
use rind_server::listener::https::{answer, DNS_MESSAGE, PATH};

fuzz_target!(|data: &[u8]| {
    let Some((&[method, shape], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let method = match method % 3 {
        0 => Method::GET,
        1 => Method::POST,
        _ => Method::PUT,
    };
    let path = if shape & 1 == 0 { PATH } else { "/other" };
    let content_type = match (shape >> 1) % 3 {
        0 => DNS_MESSAGE,
        1 => "application/dns-message; charset=x",
        _ => "text/plain",
    };
    let (uri, body) = if method == Method::GET {
        let query: String = String::from_utf8_lossy(rest)
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != '#')
            .collect();
        (format!("{path}?{query}"), Bytes::new())
    } else {
        (path.to_string(), Bytes::copy_from_slice(rest))
    };
    let Ok(request) = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(Full::new(body))
    else {
        // Not a URI hyper would have handed over either.
        return;
    };
    let rig = Rig::get();
    rig.script(&[]);
    let handler = rig.handler(START);
    let (status, headers, body) = rig.block_on(async {
        let response = answer(request, peer(), &handler).await;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("an in-memory body").to_bytes();
        (parts.status, parts.headers, body)
    });
    assert!(
        status == StatusCode::OK || status.is_client_error(),
        "status {status}"
    );
    if status == StatusCode::OK {
        assert_eq!(headers["content-type"], DNS_MESSAGE);
        let cache = headers["cache-control"].to_str().expect("ASCII");
        assert!(cache.starts_with("max-age="), "{cache}");
        let reply = hickory_proto::op::Message::from_vec(&body).expect("the reply parses");
        assert_eq!(
            reply.metadata.message_type,
            hickory_proto::op::MessageType::Response
        );
    }
});
