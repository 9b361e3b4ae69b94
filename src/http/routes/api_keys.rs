//! `/api-keys`: keys for scanners and CI, managed by people.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;
use vulnledger_aggregates::Role;

use crate::auth::api_keys::{self, ApiKeyView, CreatedApiKey, COLUMNS};
use crate::auth::{perm, Authorized, Revoked, Scope};
use crate::http::pagination::{ApiQuery, PageParams, Paginated};
use crate::http::{ApiJson, ApiPath, AppState, Error};

pub const TAG: &str = "api-keys";

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Create a key. Its scopes may not exceed what your role allows.
#[utoipa::path(post, path = "/api-keys", tag = TAG, request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 403, description = "a scope exceeds your role"),
              (status = 422)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    principal: Authorized<perm::Session>,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> Result<impl IntoResponse, Error> {
    let created = api_keys::create(
        &state.pool,
        &principal,
        &body.name,
        body.scopes,
        body.expires_at,
    )
    .await?;
    let view = created.view;
    let key = created.key;
    let location = format!("/api/v1/api-keys/{}", view.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        ApiJson(CreatedApiKey { view, key }),
    ))
}

/// Keys of the tenant (admins) or your own (everyone else), newest first.
#[utoipa::path(get, path = "/api-keys", tag = TAG, params(PageParams),
    responses((status = 200, body = Paginated<ApiKeyView>)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Authorized<perm::Session>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<ApiJson<Paginated<ApiKeyView>>, Error> {
    let page = params.validate()?;
    let only_user = (principal.role != Role::Admin).then_some(principal.user_id);
    let (after_at, after_id) = keyset(&page.after)?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND ($2::uuid IS NULL OR user_id = $2)",
    )
    .bind(principal.tenant_id)
    .bind(only_user)
    .fetch_one(&state.pool)
    .await?;
    let rows: Vec<ApiKeyView> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_keys \
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR user_id = $2) \
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4)) \
         ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6"
    ))
    .bind(principal.tenant_id)
    .bind(only_user)
    .bind(after_at)
    .bind(after_id)
    .bind(page.limit + 1)
    .bind(page.offset())
    .fetch_all(&state.pool)
    .await?;
    Ok(ApiJson(Paginated::new(rows, total, &page, |k| {
        json!([k.created_at, k.id])
    })))
}

/// `(created_at, id)` of a cursor, checked for shape.
pub fn keyset(
    after: &Option<serde_json::Value>,
) -> Result<(Option<DateTime<Utc>>, Option<Uuid>), Error> {
    let Some(after) = after else {
        return Ok((None, None));
    };
    let bad = || Error::BadRequest("cursor is not one this server issued".into());
    let at = after.get(0).and_then(|v| v.as_str()).ok_or_else(bad)?;
    let id = after.get(1).and_then(|v| v.as_str()).ok_or_else(bad)?;
    Ok((
        Some(at.parse().map_err(|_| bad())?),
        Some(id.parse().map_err(|_| bad())?),
    ))
}

/// Revoke a key; it stops working at once.
#[utoipa::path(delete, path = "/api-keys/{id}", tag = TAG, params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404)), security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Authorized<perm::Session>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, Error> {
    let only_user = (principal.role != Role::Admin).then_some(principal.user_id);
    let mut tx = state.pool.begin().await?;
    let prefix: Option<String> = sqlx::query_scalar(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) \
         WHERE id = $1 AND tenant_id = $2 AND ($3::uuid IS NULL OR user_id = $3) RETURNING prefix",
    )
    .bind(id)
    .bind(principal.tenant_id)
    .bind(only_user)
    .fetch_optional(&mut *tx)
    .await?;
    let prefix = prefix.ok_or(Error::NotFound)?;
    state
        .auth_caches
        .revoke(&mut tx, Revoked::Key(prefix))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
