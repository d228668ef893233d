//! The blocking API (docs/reference.md, "Blocklists"): `/api/v1/blocklists` add and list,
//! `/api/v1/blocklists/{id}` read and delete, `/api/v1/blocklists/{id}/refresh`, and
//! `/api/v1/allowlist` add, list and delete. Every write is on disk before its 2xx.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use warp::http::{header, StatusCode};
use warp::reject::Rejection;
use warp::reply::Reply;
use warp::Filter;

use super::records::{bad_request, body, with, Response};
use super::{authorized, ApiError, ApiState};
use crate::blocklist::fetch::FetchError;
use crate::blocklist::BlockError;
use crate::store::blocklists::StoredList;
use crate::store::StoreError;

/// A list as the API shows it.
#[derive(Serialize)]
struct ListView<'a> {
    id: &'a str,
    name: &'a str,
    url: Option<&'a str>,
    domains: usize,
    skipped: usize,
    updated: u64,
    checked: Option<u64>,
    error: Option<&'a str>,
}

impl<'a> From<&'a StoredList> for ListView<'a> {
    fn from(list: &'a StoredList) -> Self {
        ListView {
            id: &list.id,
            name: &list.name,
            url: list.url.as_deref(),
            domains: list.domains,
            skipped: list.skipped,
            updated: list.updated,
            checked: list.checked,
            error: list.error.as_deref(),
        }
    }
}

/// A new list: by URL, or inline.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListBody {
    url: Option<String>,
    name: Option<String>,
    domains: Option<Vec<String>>,
}

/// A new allowlist entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowBody {
    domain: String,
}

/// The blocking routes; each needs the token when one is set.
pub fn routes(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone + Send + Sync + 'static {
    let lists = warp::path!("api" / "v1" / "blocklists");
    let list = warp::path!("api" / "v1" / "blocklists" / String);
    let refresh = warp::path!("api" / "v1" / "blocklists" / String / "refresh");
    let allowlist = warp::path!("api" / "v1" / "allowlist");
    let allowed = warp::path!("api" / "v1" / "allowlist" / String);
    let guarded = authorized(Arc::clone(&state)).and(with(state));
    let add = lists
        .and(warp::post())
        .and(guarded.clone())
        .and(body())
        .and_then(add);
    let all = lists.and(warp::get()).and(guarded.clone()).and_then(all);
    let read = list.and(warp::get()).and(guarded.clone()).and_then(read);
    let delete = list
        .and(warp::delete())
        .and(guarded.clone())
        .and_then(delete);
    let refresh = refresh
        .and(warp::post())
        .and(guarded.clone())
        .and_then(refresh_list);
    let allow = allowlist
        .and(warp::post())
        .and(guarded.clone())
        .and(body())
        .and_then(allow);
    let allowlist = allowlist
        .and(warp::get())
        .and(guarded.clone())
        .and_then(list_allowed);
    let disallow = allowed.and(warp::delete()).and(guarded).and_then(disallow);
    add.or(all)
        .unify()
        .or(read)
        .unify()
        .or(delete)
        .unify()
        .or(refresh)
        .unify()
        .or(allow)
        .unify()
        .or(allowlist)
        .unify()
        .or(disallow)
        .unify()
}

async fn add(state: Arc<ApiState>, bytes: Vec<u8>) -> Result<Response, Rejection> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad_request(
            "the body is empty; send {\"url\": \"https://...\"} or {\"name\": \"...\", \"domains\": [...]}",
        ));
    }
    let body: ListBody =
        serde_json::from_slice(&bytes).map_err(|e| bad_request(format!("bad JSON: {e}")))?;
    let blocking = &state.blocking;
    let list = match (body.url, body.domains) {
        (Some(url), None) => blocking.add_url(&url, body.name).await,
        (None, Some(domains)) => match body.name {
            Some(name) if !name.trim().is_empty() => {
                blocking.add_inline(name.trim().to_string(), domains).await
            }
            _ => return Err(bad_request("an inline list needs a \"name\"")),
        },
        (Some(_), Some(_)) => {
            return Err(bad_request("give either \"url\" or \"domains\", not both"))
        }
        (None, None) => {
            return Err(bad_request(
                "missing field \"url\" (a list to fetch) or \"domains\" (a list given inline)",
            ))
        }
    }
    .map_err(block_error)?;
    let location = format!("/api/v1/blocklists/{}", list.id);
    let reply = warp::reply::json(&ListView::from(&list));
    let reply = warp::reply::with_header(reply, header::LOCATION, location);
    Ok(warp::reply::with_status(reply, StatusCode::CREATED).into_response())
}

async fn all(state: Arc<ApiState>) -> Result<Response, Rejection> {
    let lists = state.blocking.lists().map_err(block_error)?;
    let views: Vec<ListView<'_>> = lists.iter().map(ListView::from).collect();
    Ok(warp::reply::json(&views).into_response())
}

async fn read(id: String, state: Arc<ApiState>) -> Result<Response, Rejection> {
    let lists = state.blocking.lists().map_err(block_error)?;
    let list = lists
        .iter()
        .find(|l| l.id == id)
        .ok_or_else(|| block_error(BlockError::NotFound(format!("no blocklist with id {id}"))))?;
    Ok(warp::reply::json(&ListView::from(list)).into_response())
}

async fn delete(id: String, state: Arc<ApiState>) -> Result<Response, Rejection> {
    state.blocking.remove(&id).await.map_err(block_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn refresh_list(id: String, state: Arc<ApiState>) -> Result<Response, Rejection> {
    let list = state.blocking.refresh(&id).await.map_err(block_error)?;
    Ok(warp::reply::json(&ListView::from(&list)).into_response())
}

async fn allow(state: Arc<ApiState>, bytes: Vec<u8>) -> Result<Response, Rejection> {
    let body: AllowBody = serde_json::from_slice(&bytes).map_err(|e| {
        bad_request(format!(
            "bad JSON: {e}; send {{\"domain\": \"cdn.example.com\"}}"
        ))
    })?;
    let domain = state
        .blocking
        .allow(&body.domain)
        .await
        .map_err(block_error)?;
    let location = format!("/api/v1/allowlist/{domain}");
    let reply = warp::reply::json(&serde_json::json!({ "domain": domain }));
    let reply = warp::reply::with_header(reply, header::LOCATION, location);
    Ok(warp::reply::with_status(reply, StatusCode::CREATED).into_response())
}

async fn list_allowed(state: Arc<ApiState>) -> Result<Response, Rejection> {
    let domains = state.blocking.allowlist().map_err(block_error)?;
    let views: Vec<serde_json::Value> = domains
        .iter()
        .map(|d| serde_json::json!({ "domain": d }))
        .collect();
    Ok(warp::reply::json(&views).into_response())
}

async fn disallow(domain: String, state: Arc<ApiState>) -> Result<Response, Rejection> {
    state
        .blocking
        .disallow(&domain)
        .await
        .map_err(block_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn block_error(e: BlockError) -> Rejection {
    let status = match &e {
        BlockError::Invalid(_) | BlockError::Fetch(FetchError::BadUrl(_)) => {
            StatusCode::BAD_REQUEST
        }
        BlockError::NotFound(_) => StatusCode::NOT_FOUND,
        BlockError::Conflict(_) => StatusCode::CONFLICT,
        // The list's server failed, not rind nor the request.
        BlockError::Fetch(_) => StatusCode::BAD_GATEWAY,
        BlockError::Store(StoreError::Unwritable(_)) => {
            tracing::warn!(error = %e, "blocklist write refused by the store");
            StatusCode::INSUFFICIENT_STORAGE
        }
        BlockError::Store(_) => {
            tracing::error!(error = %e, "blocklist store error");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    warp::reject::custom(ApiError::new(status, e.to_string()))
}
