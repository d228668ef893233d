//! The zones API (docs/reference.md, "Zones and zone transfer"): `/api/v1/zones` create and list,
//! `/api/v1/zones/{name}` read, replace settings, and delete (`?force=true` with records).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::rr::Name;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use warp::http::{header, StatusCode};
use warp::reject::Rejection;
use warp::reply::Reply;
use warp::Filter;

use super::records::{bad_request, body, with, write_error, Response};
use super::{authorized, ApiState};
use crate::records::rdata::parse_zone_name;
use crate::records::zone::Zone;
use crate::records::{WriteError, ZoneDraft};

/// A zone as the API shows it.
#[derive(Serialize)]
struct ZoneView {
    name: String,
    serial: u32,
    records: usize,
    allow_transfer: Vec<String>,
    notify: Vec<String>,
    tsig: Option<String>,
    primary: Option<String>,
    /// A secondary's state: when its primary last confirmed the data (seconds since the
    /// epoch), and whether the SOA expire has passed since.
    #[serde(skip_serializing_if = "Option::is_none")]
    refreshed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expired: Option<bool>,
}

impl ZoneView {
    fn new(state: &ApiState, zone: &Zone, records: usize) -> Self {
        let data = zone
            .is_secondary()
            .then(|| state.records.secondary(&zone.name))
            .flatten();
        ZoneView {
            refreshed: data
                .as_ref()
                .map(|d| d.refreshed.load(std::sync::atomic::Ordering::Relaxed)),
            expired: zone
                .is_secondary()
                .then(|| data.as_ref().is_none_or(|d| d.expired(crate::tsig::now()))),
            name: zone.name.to_ascii(),
            serial: zone.serial,
            records,
            allow_transfer: zone
                .allow_transfer
                .iter()
                .map(ToString::to_string)
                .collect(),
            notify: zone.notify.iter().map(ToString::to_string).collect(),
            tsig: zone.tsig.as_ref().map(Name::to_ascii),
            primary: zone.primary.map(|p| p.to_string()),
        }
    }
}

/// A zone as a client sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneBody {
    name: Option<String>,
    #[serde(default)]
    allow_transfer: Vec<String>,
    #[serde(default)]
    notify: Vec<String>,
    tsig: Option<String>,
    primary: Option<String>,
    /// Shown by GET; accepted (and ignored) so a zone read from the API can be sent back.
    #[serde(default, rename = "serial")]
    _serial: Option<serde::de::IgnoredAny>,
    /// Shown by GET, like `serial`.
    #[serde(default, rename = "records")]
    _records: Option<serde::de::IgnoredAny>,
}

/// The zones routes; each needs the token when one is set.
pub fn routes(
    state: Arc<ApiState>,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone + Send + Sync + 'static {
    let collection = warp::path!("api" / "v1" / "zones");
    let item = warp::path!("api" / "v1" / "zones" / String);
    let guarded = authorized(Arc::clone(&state)).and(with(state));
    let create = collection
        .and(warp::post())
        .and(guarded.clone())
        .and(body())
        .and_then(create);
    let list = collection
        .and(warp::get())
        .and(guarded.clone())
        .and_then(list);
    let read = item.and(warp::get()).and(guarded.clone()).and_then(read);
    let replace = item
        .and(warp::put())
        .and(guarded.clone())
        .and(body())
        .and_then(replace);
    let delete = item
        .and(warp::delete())
        .and(guarded)
        .and(warp::query::<Vec<(String, String)>>())
        .and_then(delete);
    create
        .or(list)
        .unify()
        .or(read)
        .unify()
        .or(replace)
        .unify()
        .or(delete)
        .unify()
}

async fn create(state: Arc<ApiState>, body: Vec<u8>) -> Result<Response, Rejection> {
    let draft = zone_from_json(&body, None, &state).map_err(bad_request)?;
    let zone = state
        .records
        .create_zone(draft)
        .await
        .map_err(write_error)?;
    tracing::info!(zone = %zone.name, serial = zone.serial, "zone created");
    let location = format!("/api/v1/zones/{}", zone.name.to_ascii());
    let reply = warp::reply::json(&ZoneView::new(&state, &zone, count(&state, &zone.name)));
    let reply = warp::reply::with_header(reply, header::LOCATION, location);
    Ok(warp::reply::with_status(reply, StatusCode::CREATED).into_response())
}

async fn list(state: Arc<ApiState>) -> Result<Response, Rejection> {
    let views: Vec<ZoneView> = state
        .records
        .zones()
        .iter()
        .map(|z| ZoneView::new(&state, z, count(&state, &z.name)))
        .collect();
    Ok(warp::reply::json(&views).into_response())
}

async fn read(name: String, state: Arc<ApiState>) -> Result<Response, Rejection> {
    let apex = zone_name(&name)?;
    let (zone, records) = state
        .records
        .zone(&apex)
        .ok_or_else(|| write_error(WriteError::NoZone(apex.to_ascii())))?;
    Ok(warp::reply::json(&ZoneView::new(&state, &zone, records)).into_response())
}

async fn replace(name: String, state: Arc<ApiState>, body: Vec<u8>) -> Result<Response, Rejection> {
    let apex = zone_name(&name)?;
    let draft = zone_from_json(&body, Some(&apex), &state).map_err(bad_request)?;
    let zone = state
        .records
        .update_zone(draft)
        .await
        .map_err(write_error)?;
    Ok(warp::reply::json(&ZoneView::new(&state, &zone, count(&state, &zone.name))).into_response())
}

async fn delete(
    name: String,
    state: Arc<ApiState>,
    query: Vec<(String, String)>,
) -> Result<Response, Rejection> {
    let apex = zone_name(&name)?;
    let mut force = false;
    for (key, value) in query {
        match (key.as_str(), value.as_str()) {
            ("force", "true") => force = true,
            ("force", "false") => force = false,
            ("force", other) => {
                return Err(bad_request(format!(
                    "force={other:?}: use force=true or force=false"
                )))
            }
            (other, _) => {
                return Err(bad_request(format!(
                    "unknown query parameter {other:?}; only force is known"
                )))
            }
        }
    }
    state
        .records
        .delete_zone(&apex, force)
        .await
        .map_err(write_error)?;
    tracing::info!(zone = %apex, force, "zone deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn count(state: &ApiState, apex: &Name) -> usize {
    state.records.zone(apex).map_or(0, |(_, n)| n)
}

fn zone_name(raw: &str) -> Result<Name, Rejection> {
    parse_zone_name(raw).map_err(|e| bad_request(e.0))
}

/// A JSON zone body → a valid [`ZoneDraft`], or why not in words. `apex` is the name in the
/// URL of a replacement, which the body may repeat but not change.
fn zone_from_json(
    bytes: &[u8],
    apex: Option<&Name>,
    state: &ApiState,
) -> Result<ZoneDraft, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(
            "the body is empty; send a zone as JSON, such as {\"name\": \"home.lan\"}".to_string(),
        );
    }
    let body: ZoneBody = serde_json::from_slice(bytes).map_err(|e| format!("bad JSON: {e}"))?;
    let name = match (body.name, apex) {
        (Some(given), Some(apex)) => {
            let given = parse_zone_name(&given).map_err(|e| e.0)?;
            if given != *apex {
                return Err("the \"name\" in the body differs from the zone in the URL; a zone cannot be renamed".to_string());
            }
            given
        }
        (None, Some(apex)) => apex.clone(),
        (Some(given), None) => parse_zone_name(&given).map_err(|e| e.0)?,
        (None, None) => return Err("missing field \"name\"".to_string()),
    };
    let allow_transfer = body
        .allow_transfer
        .iter()
        .map(|n| network(n))
        .collect::<Result<_, _>>()?;
    let notify = body
        .notify
        .iter()
        .map(|a| server(a, "notify"))
        .collect::<Result<_, _>>()?;
    let tsig = match body.tsig {
        None => None,
        Some(key) => {
            let key = parse_zone_name(&key).map_err(|e| format!("tsig: {}", e.0))?;
            if state.tsig_keys.get(&key).is_none() {
                return Err(format!(
                    "tsig: no key named {key} was given to the server (--tsig-key {}:hmac-sha256:BASE64)",
                    key.to_ascii().trim_end_matches('.')
                ));
            }
            Some(key)
        }
    };
    let primary = body
        .primary
        .as_deref()
        .map(|p| server(p, "primary"))
        .transpose()?;
    Ok(ZoneDraft {
        name,
        allow_transfer,
        notify,
        tsig,
        primary,
    })
}

/// A network in CIDR form, or a bare address (a /32 or /128).
fn network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!(
                "allow_transfer: {text:?} is not a network such as 192.168.1.0/24 or an address"
            )
        })
}

/// A server address, `IP[:port]` (port 53 when left out).
fn server(text: &str, field: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let addr = text
        .parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{field}: {text:?} is not IP[:port], such as 192.168.1.2:53"))?;
    if addr.port() == 0 {
        return Err(format!(
            "{field}: {text:?}: port 0 is not a port to send to"
        ));
    }
    Ok(addr)
}
