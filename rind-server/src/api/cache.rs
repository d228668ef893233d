//! `GET /api/v1/cache[?name=N]` and `DELETE /api/v1/cache[?name=N]`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use hickory_proto::rr::Name;
use warp::http::StatusCode;
use warp::reject::Rejection;
use warp::reply::Reply;
use warp::Filter;

use super::{authorized, ApiError, ApiState};
use crate::cache::persist::SyncError;

/// The cache routes.
pub fn routes(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let base = warp::path!("api" / "v1" / "cache")
        .and(authorized(Arc::clone(&state)))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state));
    let list = base.clone().and(warp::get()).and_then(list);
    let flush = base.and(warp::delete()).and_then(flush);
    list.or(flush)
}

fn with_state(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (Arc<ApiState>,), Error = Infallible> + Clone {
    warp::any().map(move || Arc::clone(&state))
}

async fn list(
    query: HashMap<String, String>,
    state: Arc<ApiState>,
) -> Result<impl Reply, Rejection> {
    let name = name_filter(&query)?;
    Ok(warp::reply::json(&state.cache.list(name.as_ref())))
}

async fn flush(
    query: HashMap<String, String>,
    state: Arc<ApiState>,
) -> Result<impl Reply, Rejection> {
    let name = name_filter(&query)?;
    state.cache.flush(name.as_ref()).await.map_err(|e| {
        tracing::error!(error = %e, "cache flush did not reach the disk");
        let status = match e {
            SyncError::Store(_) => StatusCode::INSUFFICIENT_STORAGE,
            SyncError::Task(_) | SyncError::Stopped => StatusCode::INTERNAL_SERVER_ERROR,
        };
        warp::reject::custom(ApiError::new(
            status,
            format!("the cache was flushed in memory but not on disk, so a restart may bring the entries back: {e}"),
        ))
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// The `?name=` filter, lower-cased and fully qualified like stored names.
fn name_filter(query: &HashMap<String, String>) -> Result<Option<Name>, Rejection> {
    if let Some(unknown) = query.keys().find(|k| k.as_str() != "name") {
        return Err(warp::reject::custom(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown query parameter {unknown:?}; only \"name\" is supported"),
        )));
    }
    query
        .get("name")
        .map(|raw| super::normalize_name(raw))
        .transpose()
        .map_err(warp::reject::custom)
}
