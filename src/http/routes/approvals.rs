//! `/approvals`: risk acceptances of HIGH and CRITICAL findings, decided by a
//! security lead other than the requester.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use vulnledger_aggregates::{Approval, ApprovalCommand, ApprovalKind, ApprovalStatus, Decider};

use crate::auth::{perm, Authorized, Via};
use crate::http::command::{etag, CommandResponse, IfMatch};
use crate::http::pagination::{ApiQuery, PageParams, Paginated};
use crate::http::{ApiJson, ApiPath, AppState, Error};
use crate::indexes::ApprovalIndex;

pub const TAG: &str = "approvals";

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalView {
    pub id: Uuid,
    #[schema(example = "RISK_ACCEPTANCE")]
    pub kind: String,
    pub finding_id: Uuid,
    pub requested_by: Uuid,
    pub requested_at: DateTime<Utc>,
    pub justification: String,
    pub expires_at: DateTime<Utc>,
    #[schema(example = "PENDING")]
    pub status: String,
    pub decided_by: Option<Uuid>,
    pub decided_at: Option<DateTime<Utc>>,
    pub comment: Option<String>,
    pub version: u64,
}

impl ApprovalView {
    fn of(id: Uuid, a: Approval, version: u64) -> Self {
        Self {
            id,
            kind: match a.kind {
                ApprovalKind::RiskAcceptance => "RISK_ACCEPTANCE".to_owned(),
            },
            finding_id: a.finding_id,
            requested_by: a.requested_by,
            requested_at: a.requested_at,
            justification: a.justification,
            expires_at: a.expires_at,
            status: a.status.to_string(),
            decided_by: a.decided_by,
            decided_at: a.decided_at,
            comment: a.comment,
            version,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Approve,
    Reject,
    Withdraw,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Transition {
    pub action: Action,
    pub comment: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// PENDING, APPROVED, REJECTED or WITHDRAWN (comma-separated).
    pub status: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    /// 1-based page number; not with `cursor`.
    pub page: Option<i64>,
    /// Opaque `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// Approvals of your tenant, oldest request first.
#[utoipa::path(get, path = "/approvals", tag = TAG, params(ListParams),
    responses((status = 200, body = Paginated<ApprovalView>), (status = 400)),
    security(("bearer" = []), ("apiKey" = ["findings:read"])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Authorized<perm::FindingsRead>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<ApiJson<Paginated<ApprovalView>>, Error> {
    let page = PageParams {
        limit: params.limit,
        page: params.page,
        cursor: params.cursor.clone(),
    }
    .validate()?;
    let statuses = super::statuses::<ApprovalStatus>(params.status.as_deref())?;
    let (after_at, after_id) = super::api_keys::keyset(&page.after)?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM approval_index WHERE tenant_id = $1 AND ($2::text[] IS NULL OR status = ANY($2))",
    )
    .bind(principal.tenant_id)
    .bind(&statuses)
    .fetch_one(&state.pool)
    .await?;
    let ids: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
        "SELECT approval_id, requested_at FROM approval_index \
         WHERE tenant_id = $1 AND ($2::text[] IS NULL OR status = ANY($2)) \
           AND ($3::timestamptz IS NULL OR (requested_at, approval_id) > ($3, $4)) \
         ORDER BY requested_at, approval_id LIMIT $5 OFFSET $6",
    )
    .bind(principal.tenant_id)
    .bind(&statuses)
    .bind(after_at)
    .bind(after_id)
    .bind(page.limit + 1)
    .bind(page.offset())
    .fetch_all(&state.pool)
    .await?;
    let ids: Vec<Uuid> = ids.into_iter().map(|(id, _)| id).collect();
    let rows = super::load_in_order::<Approval>(&state, &principal, &ids)
        .await?
        .into_iter()
        .map(|(id, approval, version)| ApprovalView::of(id, approval, version))
        .collect();
    Ok(ApiJson(Paginated::new(rows, total, &page, |a| {
        json!([a.requested_at, a.id])
    })))
}

/// One approval, with its ETag.
#[utoipa::path(get, path = "/approvals/{id}", tag = TAG, params(("id" = Uuid, Path)),
    responses((status = 200, body = ApprovalView), (status = 404)),
    security(("bearer" = []), ("apiKey" = ["findings:read"])))]
pub async fn detail(
    State(state): State<AppState>,
    principal: Authorized<perm::FindingsRead>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, Error> {
    let loaded = state
        .commands
        .store()
        .load::<Approval>(principal.tenant_id, &id.to_string())
        .await?;
    if loaded.version == 0 {
        return Err(Error::NotFound);
    }
    let mut response =
        ApiJson(ApprovalView::of(id, loaded.aggregate, loaded.version)).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(loaded.version));
    Ok(response)
}

/// approve or reject (a security lead or admin who did not request it), or
/// withdraw (the requester), with If-Match. An approval makes the finding
/// RISK_ACCEPTED shortly after, through the approvals process manager.
#[utoipa::path(patch, path = "/approvals/{id}/transition", tag = TAG, params(("id" = Uuid, Path)),
    request_body = Transition,
    responses((status = 200, body = crate::http::command::Accepted), (status = 403, description = "wrong role, or the requester deciding"),
              (status = 404), (status = 409), (status = 412), (status = 422), (status = 428)),
    security(("bearer" = [])))]
pub async fn transition(
    State(state): State<AppState>,
    principal: Authorized<perm::FindingsWrite>,
    ApiPath(id): ApiPath<Uuid>,
    if_match: IfMatch,
    ApiJson(body): ApiJson<Transition>,
) -> Result<CommandResponse, Error> {
    if matches!(principal.via, Via::ApiKey { .. }) {
        return Err(Error::Forbidden(
            "approvals are decided by people; sign in rather than use an API key".into(),
        ));
    }
    let expected = if_match.required()?;
    let at = Utc::now();
    let by = Decider {
        user_id: principal.user_id,
        role: principal.role,
    };
    let command = match body.action {
        Action::Approve => ApprovalCommand::Approve {
            by,
            comment: body.comment,
            at,
        },
        Action::Reject => ApprovalCommand::Reject {
            by,
            comment: body.comment,
            at,
        },
        Action::Withdraw => ApprovalCommand::Withdraw {
            by: principal.user_id,
            comment: body.comment,
            at,
        },
    };
    let done = state
        .commands
        .execute_with::<Approval>(
            &principal.command_context(),
            &id.to_string(),
            Some(expected),
            command,
            &(),
            &ApprovalIndex,
        )
        .await?;
    Ok(CommandResponse::ok(
        id,
        done.aggregate.status,
        done.version,
        done.position,
    ))
}
