//! `/admin/audit`: the event store as the tenant's audit log (admins, `audit:read`).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use crate::audit::{self, AuditEntry, AuditFilter, Format};
use crate::auth::{perm, Authorized};
use crate::http::pagination::{ApiQuery, PageParams, Paginated};
use crate::http::time_range::TimeRange;
use crate::http::{ApiJson, AppState, Error};

pub const TAG: &str = "audit";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Recorded at or after (ISO-8601, any precision).
    pub from: Option<String>,
    /// Recorded up to the end of this period (ISO-8601, any precision).
    pub until: Option<String>,
    /// A user id, `system:<process>`, or an email.
    pub actor: Option<String>,
    /// scan, finding, approval or settings.
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    /// e.g. FindingStatusChanged.
    pub event_type: Option<String>,
    /// 1 to 200, default 50 (lists only).
    pub limit: Option<i64>,
    /// 1-based page number; not with `cursor` (lists only).
    pub page: Option<i64>,
    /// Opaque `nextCursor` of the previous page (lists only).
    pub cursor: Option<String>,
}

fn text(raw: &Option<String>) -> Option<String> {
    raw.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl AuditParams {
    fn filter(&self, tenant: uuid::Uuid) -> Result<AuditFilter, Error> {
        let range = TimeRange::parse(self.from.as_deref(), self.until.as_deref())?;
        let aggregate_type = text(&self.aggregate_type);
        if let Some(t) = &aggregate_type {
            if !["scan", "finding", "approval", "settings"].contains(&t.as_str()) {
                return Err(Error::BadRequest(format!(
                    "aggregateType must be scan, finding, approval or settings, not {t:?}"
                )));
            }
        }
        Ok(AuditFilter {
            tenant,
            from: range.from,
            until: range.until,
            actor: text(&self.actor),
            aggregate_type,
            aggregate_id: text(&self.aggregate_id),
            event_type: text(&self.event_type),
        })
    }
}

/// Every recorded change of your tenant, oldest first, with who made it and why.
#[utoipa::path(get, path = "/admin/audit", tag = TAG, params(AuditParams),
    responses((status = 200, body = Paginated<AuditEntry>), (status = 400), (status = 403)),
    security(("bearer" = []), ("apiKey" = ["audit:read"])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Authorized<perm::AuditRead>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<ApiJson<Paginated<AuditEntry>>, Error> {
    let page = PageParams {
        limit: params.limit,
        page: params.page,
        cursor: params.cursor.clone(),
    }
    .validate()?;
    let filter = params.filter(principal.tenant_id)?;
    // The cursor carries the snapshot of the listing's first page, so that a
    // transaction that commits between two pages with a smaller position is in no
    // page, rather than missing from a listing that shows what committed after it.
    let (snapshot, after) = match &page.after {
        None => (audit::Snapshot::take(&state.pool).await?, 0),
        Some(keys) => {
            let refused = || Error::BadRequest("cursor is not one this server issued".into());
            let keys = keys.as_array().map(Vec::as_slice).unwrap_or_default();
            match keys {
                [position, snapshot] => (
                    snapshot
                        .as_str()
                        .and_then(audit::Snapshot::parse)
                        .ok_or_else(refused)?,
                    position.as_i64().ok_or_else(refused)?,
                ),
                // Cursors issued before they carried a snapshot: read as of now.
                [position] => (
                    audit::Snapshot::take(&state.pool).await?,
                    position.as_i64().ok_or_else(refused)?,
                ),
                _ => return Err(refused()),
            }
        }
    };
    let (rows, total) = tokio::try_join!(
        snapshot.page(&state.pool, &filter, after, page.limit + 1, page.offset()),
        audit::total(&state.pool, &filter),
    )?;
    Ok(ApiJson(Paginated::new(rows, total, &page, |e| {
        json!([e.position, snapshot.as_str()])
    })))
}

async fn export(
    state: AppState,
    principal: Authorized<perm::AuditRead>,
    params: AuditParams,
    format: Format,
) -> Result<Response, Error> {
    let filter = params.filter(principal.tenant_id)?;
    let stream = audit::export(state.pool.clone(), filter, format);
    let stream = futures::StreamExt::inspect(stream, |chunk| {
        if let Err(e) = chunk {
            tracing::error!(error = %e, "audit export failed part-way; the response is cut short");
        }
    });
    let (content_type, name) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "audit.csv"),
        Format::Ndjson => ("application/x-ndjson", "audit.ndjson"),
    };
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")).expect("ascii"),
    );
    Ok(response)
}

/// The filtered log as CSV (header line first), streamed with constant memory.
#[utoipa::path(get, path = "/admin/audit/export.csv", tag = TAG, params(AuditParams),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400), (status = 403)),
    security(("bearer" = []), ("apiKey" = ["audit:read"])))]
pub async fn export_csv(
    State(state): State<AppState>,
    principal: Authorized<perm::AuditRead>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Response, Error> {
    export(state, principal, params, Format::Csv).await
}

/// The filtered log as newline-delimited JSON, streamed with constant memory.
#[utoipa::path(get, path = "/admin/audit/export.ndjson", tag = TAG, params(AuditParams),
    responses((status = 200, content_type = "application/x-ndjson", body = String), (status = 400), (status = 403)),
    security(("bearer" = []), ("apiKey" = ["audit:read"])))]
pub async fn export_ndjson(
    State(state): State<AppState>,
    principal: Authorized<perm::AuditRead>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Response, Error> {
    export(state, principal, params, Format::Ndjson).await
}
