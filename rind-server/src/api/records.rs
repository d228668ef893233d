//! The records API (docs/reference.md, "HTTP API"): `/api/v1/records` create, list, read, replace
//! and delete, and `POST /api/v1/snapshot`.
//!
//! Bodies are read up to [`MAX_BODY`] bytes whether or not they declare a length (a chunked
//! body over the limit is cut off with 413 as soon as it passes it). Unknown JSON fields are
//! refused by name, so a misspelt field never silently becomes a default.

use std::convert::Infallible;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use warp::http::{header, StatusCode};
use warp::reject::Rejection;
use warp::reply::Reply;
use warp::{Buf, Filter, Stream};

use super::{authorized, ApiError, ApiState};
use crate::records::rdata::{parse_owner, parse_type};
use crate::records::{Draft, IfMatch, LocalRecord, WriteError, DEFAULT_TTL};
use crate::store::records::FlushError;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// A record as the API shows it.
#[derive(Serialize)]
struct RecordView<'a> {
    id: &'a str,
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    ttl: u32,
    data: String,
}

impl<'a> From<&'a LocalRecord> for RecordView<'a> {
    fn from(r: &'a LocalRecord) -> Self {
        RecordView {
            id: r.id.as_str(),
            name: r.name.to_ascii(),
            rtype: r.rtype.to_string(),
            ttl: r.ttl,
            data: r.text(),
        }
    }
}

/// A record as a client sends it; the seed's `Host`, `Type`, `TTL` and `Data` are aliases.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordBody {
    /// Accepted so a record read from the API can be sent back as it is.
    id: Option<String>,
    #[serde(alias = "Host")]
    name: Option<String>,
    #[serde(rename = "type", alias = "Type")]
    rtype: Option<String>,
    /// A number, or a string holding one (as seed files sometimes have it).
    #[serde(alias = "TTL")]
    ttl: Option<serde_json::Value>,
    #[serde(alias = "Data")]
    data: Option<String>,
}

/// The records and snapshot routes; each needs the token when one is set.
pub fn routes(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone + Send + Sync + 'static {
    let collection = warp::path!("api" / "v1" / "records");
    let item = warp::path!("api" / "v1" / "records" / String);
    let guarded = authorized(Arc::clone(&state)).and(with(state));
    let create = collection
        .and(warp::post())
        .and(guarded.clone())
        .and(body())
        .and_then(create);
    let list = collection
        .and(warp::get())
        .and(guarded.clone())
        .and(warp::query::<Vec<(String, String)>>())
        .and_then(list);
    let read = item.and(warp::get()).and(guarded.clone()).and_then(read);
    let replace = item
        .and(warp::put())
        .and(guarded.clone())
        .and(if_match())
        .and(body())
        .and_then(replace);
    let delete = item
        .and(warp::delete())
        .and(guarded.clone())
        .and(if_match())
        .and_then(delete);
    let snapshot = warp::path!("api" / "v1" / "snapshot")
        .and(warp::post())
        .and(guarded)
        .and_then(snapshot);
    create
        .or(list)
        .unify()
        .or(read)
        .unify()
        .or(replace)
        .unify()
        .or(delete)
        .unify()
        .or(snapshot)
        .unify()
}

pub(super) fn with(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (Arc<ApiState>,), Error = Infallible> + Clone {
    warp::any().map(move || Arc::clone(&state))
}

pub(super) type Response = warp::reply::Response;

async fn create(state: Arc<ApiState>, body: Vec<u8>) -> Result<Response, Rejection> {
    let draft = record_from_json(&body, IdRule::New).map_err(bad_request)?;
    let record = state.records.create(draft).await.map_err(write_error)?;
    let location = format!("/api/v1/records/{}", record.id);
    let reply = warp::reply::with_header(with_etag(&record), header::LOCATION, location);
    Ok(warp::reply::with_status(reply, StatusCode::CREATED).into_response())
}

/// The record as JSON, with its `ETag`.
fn with_etag(record: &LocalRecord) -> impl Reply {
    warp::reply::with_header(
        warp::reply::json(&RecordView::from(record)),
        header::ETAG,
        record.etag(),
    )
}

/// The `If-Match` header, when there is one; 400 when it is not `*` or a list of strong tags.
fn if_match() -> impl Filter<Extract = (Option<IfMatch>,), Error = Rejection> + Clone {
    warp::header::optional::<String>(header::IF_MATCH.as_str()).and_then(
        |value: Option<String>| async move {
            match value {
                None => Ok(None),
                Some(v) => IfMatch::parse(&v).map(Some).ok_or_else(|| {
                    bad_request(format!(
                        "If-Match {v:?} is not * or a list of quoted ETags such as \"3f2a...\""
                    ))
                }),
            }
        },
    )
}

/// Most records one page may hold.
pub const MAX_PAGE: usize = 10_000;

async fn list(state: Arc<ApiState>, query: Vec<(String, String)>) -> Result<Response, Rejection> {
    let mut name = None;
    let mut rtype = None;
    let mut limit = None;
    let mut after = None;
    for (key, value) in &query {
        match key.as_str() {
            "name" => name = Some(parse_owner(value).map_err(|e| bad_request(e.0))?),
            "type" => rtype = Some(parse_type(value).map_err(|e| bad_request(e.0))?),
            "limit" => {
                let n = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        bad_request(format!("limit {value:?} is not a number from 1 to {MAX_PAGE}"))
                    })?;
                limit = Some(n);
            }
            "after" => after = Some(value.clone()),
            other => {
                return Err(bad_request(format!(
                    "unknown query parameter {other:?}; filter with name and type, page with limit and after"
                )))
            }
        }
    }
    if after.is_some() && limit.is_none() {
        return Err(bad_request("after pages a list: give limit with it"));
    }
    let records = state.records.list(name.as_ref(), rtype);
    // Ids sort in creation order, and the list is in id order: a page starts past `after`,
    // which need not exist any more (deleted since the last page).
    let start = after.as_deref().map_or(0, |after| {
        records.partition_point(|r| r.id.as_str() <= after)
    });
    let rest = records.get(start..).unwrap_or_default();
    let page = match limit {
        Some(n) => rest.get(..n.min(rest.len())).unwrap_or_default(),
        None => rest,
    };
    let views: Vec<RecordView<'_>> = page.iter().map(|r| RecordView::from(r.as_ref())).collect();
    let reply = warp::reply::json(&views).into_response();
    match (limit, page.last()) {
        (Some(n), Some(last)) if rest.len() > n => {
            let mut next: Vec<(String, String)> =
                query.into_iter().filter(|(k, _)| k != "after").collect();
            next.push(("after".to_string(), last.id.to_string()));
            let encoded = query_string(&next);
            let link = format!("</api/v1/records?{encoded}>; rel=\"next\"");
            Ok(warp::reply::with_header(reply, header::LINK, link).into_response())
        }
        _ => Ok(reply),
    }
}

/// `key=value&...` with both percent-encoded (names and types need nothing more than that).
fn query_string(pairs: &[(String, String)]) -> String {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn read(id: String, state: Arc<ApiState>) -> Result<Response, Rejection> {
    let record = state
        .records
        .get(&id)
        .ok_or_else(|| write_error(WriteError::NotFound(id)))?;
    Ok(with_etag(&record).into_response())
}

async fn replace(
    id: String,
    state: Arc<ApiState>,
    if_match: Option<IfMatch>,
    body: Vec<u8>,
) -> Result<Response, Rejection> {
    let draft = record_from_json(&body, IdRule::Replaces(&id)).map_err(bad_request)?;
    let record = state
        .records
        .update(&id, draft, if_match.as_ref())
        .await
        .map_err(write_error)?;
    Ok(with_etag(&record).into_response())
}

async fn delete(
    id: String,
    state: Arc<ApiState>,
    if_match: Option<IfMatch>,
) -> Result<Response, Rejection> {
    state
        .records
        .delete(&id, if_match.as_ref())
        .await
        .map_err(write_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn snapshot(state: Arc<ApiState>) -> Result<Response, Rejection> {
    let path = state
        .records
        .snapshot(&state.snapshot_dir, state.snapshot_keep)
        .await
        .map_err(write_error)?;
    tracing::info!(path = %path.display(), "snapshot written");
    let reply = warp::reply::json(&serde_json::json!({ "path": path.to_string_lossy() }));
    Ok(warp::reply::with_status(reply, StatusCode::CREATED).into_response())
}

/// The request body, at most [`MAX_BODY`] bytes.
pub(super) fn body() -> impl Filter<Extract = (Vec<u8>,), Error = Rejection> + Clone {
    body_up_to(MAX_BODY)
}

/// The request body, at most `limit` bytes.
pub(super) fn body_up_to(
    limit: usize,
) -> impl Filter<Extract = (Vec<u8>,), Error = Rejection> + Clone {
    warp::header::optional::<u64>(header::CONTENT_LENGTH.as_str())
        .and(warp::body::stream())
        .and_then(move |declared, stream| read_body(declared, stream, limit))
}

async fn read_body<S, B>(
    declared: Option<u64>,
    stream: S,
    limit: usize,
) -> Result<Vec<u8>, Rejection>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let mut stream = std::pin::pin!(stream);
    let mut body = Vec::new();
    while let Some(chunk) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        let mut chunk =
            chunk.map_err(|e| bad_request(format!("cannot read the request body: {e}")))?;
        if body.len() + chunk.remaining() > limit {
            return Err(too_large(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            body.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(body)
}

/// What a record body may say about the record's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdRule<'a> {
    /// A new record: the server chooses the id, so the body must carry none.
    New,
    /// A replacement of the record with this id: the body may repeat it, but name no other.
    Replaces(&'a str),
}

/// A JSON record body → a valid [`Draft`], or why not in words (the routes answer 400 with
/// it). The create and replace routes and the `record_json` fuzz target all go through here.
pub fn record_from_json(bytes: &[u8], id: IdRule<'_>) -> Result<Draft, String> {
    let body = parse_body(bytes)?;
    match id {
        IdRule::New if body.id.is_some() => {
            return Err("\"id\" is chosen by the server; leave it out of a new record".to_string())
        }
        IdRule::Replaces(id) if body.id.as_ref().is_some_and(|given| given != id) => {
            return Err(
                "the \"id\" in the body differs from the id in the URL; ids cannot change"
                    .to_string(),
            )
        }
        _ => {}
    }
    draft(body)
}

fn parse_body(bytes: &[u8]) -> Result<RecordBody, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(
            "the body is empty; send a record as JSON, such as {\"name\": \"nas.home.lan\", \"type\": \"A\", \"data\": \"192.168.1.10\"}".to_string(),
        );
    }
    serde_json::from_slice(bytes).map_err(|e| format!("bad JSON: {e}"))
}

/// Checks the fields of a record body.
fn draft(body: RecordBody) -> Result<Draft, String> {
    let missing = |field: &str| format!("missing field \"{field}\"");
    let name = body.name.ok_or_else(|| missing("name"))?;
    let rtype = body.rtype.ok_or_else(|| missing("type"))?;
    let data = body.data.ok_or_else(|| missing("data"))?;
    let ttl = match body.ttl {
        None => i64::from(DEFAULT_TTL),
        Some(value) => ttl_number(&value).ok_or_else(|| {
            format!("ttl {value} is not a whole number of seconds from 0 to 2147483647")
        })?,
    };
    Draft::parse(&name, &rtype, ttl, &data).map_err(|e| e.0)
}

/// A TTL given as a JSON integer or a string of digits; `i64::MAX` stands for anything larger,
/// so it is refused as out of range rather than as not a number.
fn ttl_number(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_u64().map(|_| i64::MAX)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn bad_request(message: impl Into<String>) -> Rejection {
    warp::reject::custom(ApiError::new(StatusCode::BAD_REQUEST, message))
}

fn too_large(limit: usize) -> Rejection {
    let size = if limit >= 1 << 20 {
        format!("{} MiB", limit >> 20)
    } else {
        format!("{} KiB", limit >> 10)
    };
    warp::reject::custom(ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is over {size}"),
    ))
}

pub(super) fn write_error(e: WriteError) -> Rejection {
    let status = status_of(&e);
    warp::reject::custom(ApiError::new(status, e.to_string()))
}

fn status_of(e: &WriteError) -> StatusCode {
    match e {
        WriteError::NotFound(_) | WriteError::NoZone(_) => StatusCode::NOT_FOUND,
        WriteError::Conflict(_) => StatusCode::CONFLICT,
        WriteError::Changed { .. } => StatusCode::PRECONDITION_FAILED,
        // The disk (or what sled made of it) refused: nothing was changed, and the same
        // request may succeed once there is room again.
        WriteError::Store(_)
        | WriteError::Flush(FlushError::Failed(_))
        | WriteError::Snapshot(_) => {
            tracing::warn!(error = %e, "write refused by the store");
            StatusCode::INSUFFICIENT_STORAGE
        }
        WriteError::Flush(FlushError::Stopped) => StatusCode::SERVICE_UNAVAILABLE,
        WriteError::Task(_) => {
            tracing::error!(error = %e, "write failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        WriteError::AtLine { error, .. } => status_of(error),
    }
}
