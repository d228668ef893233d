//! The HTTP side: `/healthz`, `/metrics`, the REST API ([`records`], their import and
//! export, zones, cache, blocklists and the allowlist; the query log and status in [`ops`])
//! and the [`web`] page that drives it, as warp filters.
//!
//! Every error leaves as JSON `{"error": "<what is wrong>"}` with the contract's status code.
//! When `--api-token` is set, `/metrics` and every `/api/` route need
//! `Authorization: Bearer <token>`, compared in constant time.

mod blocking;
mod cache;
mod files;
pub mod ops;
pub mod records;
pub mod web;
mod zones;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use subtle::ConstantTimeEq;
use warp::http::{header, StatusCode};
use warp::reject::{Reject, Rejection};
use warp::reply::Reply;
use warp::Filter;

use hickory_proto::rr::Name;

use crate::blocklist::Blocking;
use crate::cache::Cache;
use crate::metrics::Metrics;
use crate::records::rdata::parse_owner;
use crate::records::Records;

/// The OpenAPI 3.1 document of every route (`tests/openapi.rs` keeps it and the routes in
/// step).
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the HTTP handlers share.
#[derive(Debug)]
pub struct ApiState {
    /// The bearer token, when one is required.
    pub token: Option<String>,
    /// Counters rendered by `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The answer cache.
    pub cache: Arc<Cache>,
    /// The local records.
    pub records: Arc<Records>,
    /// Where `POST /api/v1/snapshot` writes.
    pub snapshot_dir: PathBuf,
    /// How many snapshots are kept there.
    pub snapshot_keep: usize,
    /// The TSIG keys a zone may name.
    pub tsig_keys: crate::tsig::Keyring,
    /// The blocklists and the allowlist.
    pub blocking: Arc<Blocking>,
    /// The query log and what the status route reports.
    pub ops: ops::OpsState,
}

/// An error reply: status code and a message in words.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl Reject for ApiError {}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// All routes, with errors turned into JSON.
pub fn routes(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone + Send + Sync + 'static {
    let healthz = warp::path!("healthz").and(warp::get()).map({
        let state = Arc::clone(&state);
        move || health(&state)
    });
    let records = records::routes(Arc::clone(&state));
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(authorized(Arc::clone(&state)))
        .map({
            let state = Arc::clone(&state);
            move || {
                warp::reply::with_header(
                    state.metrics.render(state.cache.len()),
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            }
        });
    let openapi = warp::path!("api" / "v1" / "openapi.json")
        .and(warp::get())
        .and(authorized(Arc::clone(&state)))
        .map(|| warp::reply::with_header(OPENAPI, header::CONTENT_TYPE, "application/json"));
    healthz
        .or(metrics)
        .or(openapi)
        .or(files::routes(Arc::clone(&state)))
        .or(records)
        .or(zones::routes(Arc::clone(&state)))
        .or(cache::routes(Arc::clone(&state)))
        .or(blocking::routes(Arc::clone(&state)))
        .or(ops::routes(state))
        .or(web::routes())
        .recover(recover)
}

/// `200 {"status": "ok"}`, or `503` with the reason while the store cannot write.
fn health(state: &ApiState) -> warp::reply::Response {
    match state.records.fault() {
        None => warp::reply::json(&serde_json::json!({"status": "ok"})).into_response(),
        Some(reason) => warp::reply::with_status(
            warp::reply::json(&serde_json::json!({"status": "unavailable", "error": reason})),
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .into_response(),
    }
}

/// Passes when no token is configured or the request carries the right one.
fn authorized(state: Arc<ApiState>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>(header::AUTHORIZATION.as_str())
        .and_then(move |given: Option<String>| {
            let state = Arc::clone(&state);
            async move {
                let Some(expected) = state.token.as_deref() else {
                    return Ok(());
                };
                let presented = given
                    .as_deref()
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .map(str::trim);
                match presented {
                    Some(t) if bool::from(t.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
                    Some(_) => Err(warp::reject::custom(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "wrong API token",
                    ))),
                    None => Err(warp::reject::custom(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "missing API token: send Authorization: Bearer <token>",
                    ))),
                }
            }
        })
        .untuple_one()
}

/// Parses a `?name=` filter the way record names are stored: lower-cased and fully
/// qualified, with the same refusals as a record's name.
pub fn normalize_name(raw: &str) -> Result<Name, ApiError> {
    parse_owner(raw).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.0))
}

pub(crate) async fn recover(rejection: Rejection) -> Result<impl Reply, Infallible> {
    let (status, message) = if let Some(e) = rejection.find::<ApiError>() {
        (e.status, e.message.clone())
    } else if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "no such route".to_string())
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this route".to_string(),
        )
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        (StatusCode::BAD_REQUEST, e.to_string())
    } else {
        tracing::debug!(?rejection, "unhandled HTTP rejection");
        (StatusCode::BAD_REQUEST, "bad request".to_string())
    };
    Ok(warp::reply::with_status(
        warp::reply::json(&ErrorBody { error: &message }),
        status,
    ))
}
