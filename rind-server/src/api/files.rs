//! Records in and out as files (docs/reference.md, "Import and export"):
//! `GET /api/v1/records/export[?zone=Z]` writes an RFC 1035 master file, and
//! `POST /api/v1/records/import[?format=zone|hosts]` reads a master file or an `/etc/hosts`
//! file into the store in one write.

use std::sync::Arc;

use warp::http::{header, StatusCode};
use warp::reject::Rejection;
use warp::reply::Reply;
use warp::Filter;

use super::records::{bad_request, body_up_to, with, write_error, Response};
use super::{authorized, ApiError, ApiState};
use crate::records::master::{read_hosts, read_master, write_master, Parsed};
use crate::records::rdata::parse_zone_name;
use crate::records::WriteError;

/// Largest import body: a zone of a few hundred thousand records.
pub const MAX_IMPORT: usize = 32 * 1024 * 1024;

/// The import and export routes; both need the token when one is set.
pub fn routes(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone + Send + Sync + 'static {
    let guarded = authorized(Arc::clone(&state)).and(with(state));
    let export = warp::path!("api" / "v1" / "records" / "export")
        .and(warp::get())
        .and(guarded.clone())
        .and(warp::query::<Vec<(String, String)>>())
        .then(|state, query| answered(export(state, query)));
    let import = warp::path!("api" / "v1" / "records" / "import")
        .and(warp::post())
        .and(guarded)
        .and(warp::query::<Vec<(String, String)>>())
        .and(body_up_to(MAX_IMPORT))
        .then(|state, query, body| answered(import(state, query, body)));
    export.or(import).unify()
}

/// The handler's reply, its refusal included: a rejection would let warp try the next
/// routes, and `GET /api/v1/records/{id}` would answer for `export` with its own 404.
async fn answered(
    handler: impl std::future::Future<Output = Result<Response, Rejection>>,
) -> Response {
    match handler.await {
        Ok(reply) => reply,
        Err(rejection) => {
            let Ok(reply) = super::recover(rejection).await;
            reply.into_response()
        }
    }
}

async fn export(state: Arc<ApiState>, query: Vec<(String, String)>) -> Result<Response, Rejection> {
    let mut zone = None;
    for (key, value) in &query {
        match key.as_str() {
            "zone" => zone = Some(parse_zone_name(value).map_err(|e| bad_request(e.0))?),
            other => {
                return Err(bad_request(format!(
                    "unknown query parameter {other:?}; only zone is known"
                )))
            }
        }
    }
    let text = match zone {
        None => write_master(
            &state.records.list(None, None),
            None,
            "rind records, all zones",
        ),
        Some(name) => {
            let (zone, records) = state
                .records
                .zone_records(&name)
                .ok_or_else(|| write_error(WriteError::NoZone(name.to_ascii())))?;
            if zone.is_secondary() {
                return Err(warp::reject::custom(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "{} is a secondary zone: its records are its primary's, and an AXFR fetches them",
                        zone.name
                    ),
                )));
            }
            write_master(
                &records,
                Some(&zone.soa()),
                &format!("rind zone {}", zone.name),
            )
        }
    };
    Ok(warp::reply::with_header(text, header::CONTENT_TYPE, "text/dns").into_response())
}

/// The formats an import reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Zone,
    Hosts,
}

async fn import(
    state: Arc<ApiState>,
    query: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<Response, Rejection> {
    let mut format = Format::Zone;
    for (key, value) in &query {
        match (key.as_str(), value.as_str()) {
            ("format", "zone") => format = Format::Zone,
            ("format", "hosts") => format = Format::Hosts,
            ("format", other) => {
                return Err(bad_request(format!(
                    "format {other:?} is not zone or hosts"
                )))
            }
            (other, _) => {
                return Err(bad_request(format!(
                    "unknown query parameter {other:?}; only format is known"
                )))
            }
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad_request(
            "the body is empty; send the file itself, such as: nas.home.lan. 300 IN A 192.168.1.10",
        ));
    }
    let text = std::str::from_utf8(&body).map_err(|e| {
        let line = body
            .get(..e.valid_up_to())
            .map_or(0, |ok| ok.iter().filter(|&&b| b == b'\n').count())
            + 1;
        bad_request(format!("line {line}: the file is not UTF-8 text"))
    })?;
    let parsed: Parsed = match format {
        Format::Zone => read_master(text),
        Format::Hosts => read_hosts(text),
    }
    .map_err(|e| bad_request(e.to_string()))?;
    let done = state
        .records
        .import(parsed.drafts)
        .await
        .map_err(write_error)?;
    let reply = warp::reply::json(&serde_json::json!({
        "created": done.created,
        "unchanged": done.unchanged,
        "skipped": parsed.skipped,
    }));
    Ok(reply.into_response())
}
