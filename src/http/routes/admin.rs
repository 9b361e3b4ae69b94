//! `/admin/users`: tenant administration, admins in person only.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;
use vulnledger_aggregates::Role;

use super::api_keys::keyset;
use crate::auth::{perm, Authorized, Revoked};
use crate::http::pagination::{ApiQuery, PageParams, Paginated};
use crate::http::{ApiJson, ApiPath, AppState, Error};
use crate::identity::{self, NewUser};

pub const TAG: &str = "admin";

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    #[schema(value_type = String, example = "analyst")]
    pub role: Role,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

type UserRow = (Uuid, String, String, bool, DateTime<Utc>, DateTime<Utc>);

fn view((id, email, role, active, created_at, updated_at): UserRow) -> Result<UserView, Error> {
    Ok(UserView {
        id,
        email,
        role: role
            .parse()
            .map_err(|e| anyhow::anyhow!("stored role: {e}"))?,
        active,
        created_at,
        updated_at,
    })
}

const COLUMNS: &str = "id, email, role, active, created_at, updated_at";

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    pub password: String,
    #[schema(value_type = String, example = "analyst")]
    pub role: Role,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUser {
    #[schema(value_type = Option<String>, example = "viewer")]
    pub role: Option<Role>,
    pub active: Option<bool>,
}

/// Users of your tenant, oldest first.
#[utoipa::path(get, path = "/admin/users", tag = TAG, params(PageParams),
    responses((status = 200, body = Paginated<UserView>), (status = 403)), security(("bearer" = [])))]
pub async fn list_users(
    State(state): State<AppState>,
    admin: Authorized<perm::Admin>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<ApiJson<Paginated<UserView>>, Error> {
    let page = params.validate()?;
    let (after_at, after_id) = keyset(&page.after)?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE tenant_id = $1")
        .bind(admin.tenant_id)
        .fetch_one(&state.pool)
        .await?;
    let rows: Vec<UserRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE tenant_id = $1 \
           AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3)) \
         ORDER BY created_at, id LIMIT $4 OFFSET $5"
    ))
    .bind(admin.tenant_id)
    .bind(after_at)
    .bind(after_id)
    .bind(page.limit + 1)
    .bind(page.offset())
    .fetch_all(&state.pool)
    .await?;
    let rows = rows.into_iter().map(view).collect::<Result<Vec<_>, _>>()?;
    Ok(ApiJson(Paginated::new(rows, total, &page, |u| {
        json!([u.created_at, u.id])
    })))
}

/// Add a user to your tenant.
#[utoipa::path(post, path = "/admin/users", tag = TAG, request_body = CreateUser,
    responses((status = 201, body = UserView), (status = 409, description = "email taken"), (status = 422)),
    security(("bearer" = [])))]
pub async fn create_user(
    State(state): State<AppState>,
    admin: Authorized<perm::Admin>,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<impl IntoResponse, Error> {
    let user = identity::create_user(
        &state.pool,
        NewUser {
            tenant_slug: &admin.tenant_slug,
            email: &body.email,
            password: &body.password,
            role: body.role,
        },
    )
    .await?;
    let location = format!("/api/v1/admin/users/{}", user.id);
    let row: UserRow = sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(user.id)
        .fetch_one(&state.pool)
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        ApiJson(view(row)?),
    ))
}

/// Change a user's role or deactivate them. Deactivation ends their sessions and
/// disables their keys at once. A tenant always keeps one active admin.
#[utoipa::path(patch, path = "/admin/users/{id}", tag = TAG, params(("id" = Uuid, Path)),
    request_body = UpdateUser,
    responses((status = 200, body = UserView), (status = 404), (status = 409, description = "would leave no active admin")),
    security(("bearer" = [])))]
pub async fn update_user(
    State(state): State<AppState>,
    admin: Authorized<perm::Admin>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> Result<ApiJson<UserView>, Error> {
    if body.role.is_none() && body.active.is_none() {
        return Err(Error::field("body", "send role, active, or both"));
    }
    let mut tx = state.pool.begin().await?;
    // Serialize admin changes per tenant so two admins cannot demote each other at once.
    sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
        .bind(admin.tenant_id)
        .execute(&mut *tx)
        .await?;
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "UPDATE users SET role = coalesce($3, role), active = coalesce($4, active), updated_at = now() \
         WHERE id = $1 AND tenant_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(admin.tenant_id)
    .bind(body.role.map(|r| r.to_string()))
    .bind(body.active)
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or(Error::NotFound)?;
    let admins: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM users WHERE tenant_id = $1 AND role = 'admin' AND active",
    )
    .bind(admin.tenant_id)
    .fetch_one(&mut *tx)
    .await?;
    if admins == 0 {
        return Err(Error::Conflict(
            "this would leave the tenant without an active admin".into(),
        ));
    }
    if body.active == Some(false) {
        sqlx::query(
            "UPDATE sessions SET revoked_at = now(), revoked_why = 'deactivated' \
             WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    state
        .auth_caches
        .revoke(&mut tx, Revoked::Everything)
        .await?;
    tx.commit().await?;
    Ok(ApiJson(view(row)?))
}
