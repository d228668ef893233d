//! The web page (docs/reference.md, "Web page"): `GET /` and its script and style sheet,
//! compiled into the binary from `api/web/`. The page drives the REST API from the browser;
//! it needs no token to load, and asks for one when the API answers 401.
//!
//! Every asset is served with a strict Content-Security-Policy (no inline script or style,
//! requests only to this origin, so the token kept in the tab cannot be sent elsewhere),
//! `X-Content-Type-Options: nosniff`, and `Cache-Control: no-cache` with an `ETag`: a browser
//! asks again each time and gets `304` until a new binary serves other bytes.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reject::Rejection;
use warp::reply::{Reply, Response};
use warp::Filter;

/// The Content-Security-Policy sent with every asset.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                       base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One file of the page.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: String,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        Asset {
            body,
            content_type,
            etag: format!("\"{hex}\""),
        }
    }
}

static INDEX: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_str!("web/index.html"), "text/html; charset=utf-8"));
static SCRIPT: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_str!("web/app.js"), "text/javascript; charset=utf-8"));
static STYLE: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_str!("web/app.css"), "text/css; charset=utf-8"));

/// `GET /`, `/app.js` and `/app.css`; HEAD answers the same headers.
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let page = warp::path::end().map(|| &*INDEX);
    let script = warp::path!("app.js").map(|| &*SCRIPT);
    let style = warp::path!("app.css").map(|| &*STYLE);
    warp::get()
        .or(warp::head())
        .unify()
        .and(page.or(script).unify().or(style).unify())
        .and(warp::header::optional::<String>(
            header::IF_NONE_MATCH.as_str(),
        ))
        .map(serve)
}

fn serve(asset: &'static Asset, if_none_match: Option<String>) -> Response {
    let fresh = if_none_match.is_some_and(|given| {
        given
            .split(',')
            .any(|tag| tag.trim() == asset.etag || tag.trim() == "*")
    });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, asset.content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-cache"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        headers.insert(header::ETAG, etag);
    }
    response
}
