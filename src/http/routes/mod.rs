pub mod admin;
pub mod api_keys;
pub mod approvals;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod ci;
pub mod dashboard;
pub mod finding_list;
pub mod findings;
pub mod scans;
pub mod settings;
pub mod ws;

use std::fmt::Display;
use std::str::FromStr;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use cqrs_es::Aggregate;
use serde::Serialize;
use uuid::Uuid;

use super::command::etag;
use super::{ApiJson, AppState, Error};
use crate::auth::Principal;

/// An aggregate of the caller's tenant and its version; 404 when it does not exist
/// there (another tenant's reads the same as a missing one).
pub(crate) async fn load_existing<A: Aggregate>(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
) -> Result<(A, u64), Error> {
    let loaded = state
        .commands
        .store()
        .load::<A>(principal.tenant_id, &id.to_string())
        .await?;
    if loaded.version == 0 {
        return Err(Error::NotFound);
    }
    Ok((loaded.aggregate, loaded.version))
}

/// The aggregates of a list page, in the page's order, loaded in one round trip.
pub(crate) async fn load_in_order<A: Aggregate>(
    state: &AppState,
    principal: &Principal,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, A, u64)>, Error> {
    let keys: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let mut conn = state.pool.acquire().await?;
    let mut loaded = state
        .commands
        .store()
        .load_many::<A>(&mut conn, principal.tenant_id, &keys)
        .await?;
    Ok(ids
        .iter()
        .filter_map(|id| {
            let l = loaded.remove(&id.to_string())?;
            Some((*id, l.aggregate, l.version))
        })
        .collect())
}

/// A JSON body with the `ETag` that If-Match must echo.
pub(crate) fn with_etag(body: impl Serialize, version: u64) -> Response {
    let mut response = ApiJson(body).into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    response
}

/// A comma-separated status filter (`?status=OPEN,CONFIRMED`), each checked.
pub(crate) fn statuses<T: FromStr + Display>(
    raw: Option<&str>,
) -> Result<Option<Vec<String>>, Error> {
    raw.map(|list| {
        list.split(',')
            .map(|s| {
                s.trim()
                    .parse::<T>()
                    .map(|s| s.to_string())
                    .map_err(|_| Error::BadRequest(format!("unknown status {:?}", s.trim())))
            })
            .collect()
    })
    .transpose()
}
