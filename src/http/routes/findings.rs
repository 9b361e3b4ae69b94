//! `/findings/{id}`: one finding, its history, and its triage.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, SubsecRound, Utc};
use cqrs_es::persist::SerializedEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use utoipa::ToSchema;
use uuid::Uuid;
use vulnledger_aggregates::{
    Approval, ApprovalCommand, Finding, FindingCommand, FindingStatus, Severity, TenantSettings,
};

use crate::auth::{perm, Authorized, Principal};
use crate::http::command::{CommandResponse, IfMatch};
use crate::http::{ApiJson, ApiPath, AppState, Error};
use crate::indexes::{ApprovalIndex, FindingIndex};
use crate::store::UnreadableEvent;

pub const TAG: &str = "findings";

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RiskAcceptanceView {
    pub justification: String,
    pub expires_at: DateTime<Utc>,
    pub approved_by: Option<Uuid>,
    pub approval_id: Option<Uuid>,
    pub accepted_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindingView {
    pub id: Uuid,
    pub title: String,
    #[schema(value_type = String, example = "HIGH")]
    pub severity: Severity,
    pub cvss: Option<f64>,
    pub cve: Option<String>,
    pub rule_id: Option<String>,
    pub asset: String,
    pub scanner: String,
    pub package: Option<String>,
    pub installed_version: Option<String>,
    pub fixed_version: Option<String>,
    pub location: Option<String>,
    pub description: Option<String>,
    #[schema(example = "OPEN")]
    pub status: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub due_at: DateTime<Utc>,
    pub sla_breached: bool,
    pub risk_acceptance: Option<RiskAcceptanceView>,
    pub tags: Vec<String>,
    pub version: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub id: String,
    pub email: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub sequence: i64,
    pub event_type: String,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub request_id: Option<String>,
    pub position: i64,
    #[schema(value_type = Object)]
    pub data: Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeStatus {
    #[schema(value_type = String, example = "CONFIRMED")]
    pub status: FindingStatus,
    pub justification: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptRisk {
    pub justification: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalOpened {
    pub approval_id: Uuid,
    pub finding_id: Uuid,
    #[schema(example = "PENDING")]
    pub status: String,
    pub version: u64,
    pub position: i64,
}

/// A finding as the API shows it: its state, when it was last seen, and its SLA.
pub async fn view(state: &AppState, principal: &Principal, id: Uuid) -> Result<FindingView, Error> {
    let (finding, version) = super::load_existing::<Finding>(state, principal, id).await?;
    let settings = state
        .commands
        .store()
        .load::<TenantSettings>(principal.tenant_id, &principal.tenant_id.to_string())
        .await?
        .aggregate;
    let last_seen: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT last_seen FROM finding_index WHERE tenant_id = $1 AND finding_id = $2",
    )
    .bind(principal.tenant_id)
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    let details = finding
        .details
        .ok_or_else(|| anyhow::anyhow!("finding {id} has a version but no details"))?;
    let first_seen = finding.first_seen.unwrap_or_default();
    let due_at = settings.sla.due_at(details.severity, first_seen);
    Ok(FindingView {
        id,
        title: details.title,
        severity: details.severity,
        cvss: details.cvss,
        cve: details.cve,
        rule_id: details.rule_id,
        asset: details.asset,
        scanner: details.scanner,
        package: details.package,
        installed_version: details.installed_version,
        fixed_version: details.fixed_version,
        location: details.location,
        description: details.description,
        status: finding.status.to_string(),
        first_seen,
        last_seen: last_seen.unwrap_or(first_seen),
        resolved_at: finding.resolved_at,
        due_at,
        sla_breached: finding.status.is_open() && Utc::now() > due_at,
        risk_acceptance: finding.risk_acceptance.map(|r| RiskAcceptanceView {
            justification: r.justification,
            expires_at: r.expires_at,
            approved_by: r.approved_by,
            approval_id: r.approval_id,
            accepted_at: r.accepted_at,
        }),
        tags: details.tags,
        version,
    })
}

/// One finding, with its ETag for triage.
#[utoipa::path(get, path = "/findings/{id}", tag = TAG, params(("id" = Uuid, Path)),
    responses((status = 200, body = FindingView), (status = 404)),
    security(("bearer" = []), ("apiKey" = ["findings:read"])))]
pub async fn detail(
    State(state): State<AppState>,
    principal: Authorized<perm::FindingsRead>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, Error> {
    let view = view(&state, &principal, id).await?;
    let version = view.version;
    Ok(super::with_etag(view, version))
}

/// Everything that happened to a finding, oldest first, with who did it.
#[utoipa::path(get, path = "/findings/{id}/history", tag = TAG, params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<HistoryEntry>), (status = 404)),
    security(("bearer" = []), ("apiKey" = ["findings:read"])))]
pub async fn history(
    State(state): State<AppState>,
    principal: Authorized<perm::FindingsRead>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<Vec<HistoryEntry>>, Error> {
    let rows = sqlx::query(
        "SELECT sequence, event_type, event_version, payload, metadata, recorded_at, position \
         FROM events \
         WHERE aggregate_type = 'finding' AND aggregate_id = $1 AND tenant_id = $2 \
         ORDER BY sequence",
    )
    .bind(id.to_string())
    .bind(principal.tenant_id)
    .fetch_all(&state.pool)
    .await?;
    if rows.is_empty() {
        return Err(Error::NotFound);
    }
    let upcasters = state.commands.store().upcasters();
    let entries = rows
        .into_iter()
        .map(|row| {
            let event_type: String = row.try_get("event_type")?;
            let sequence: i64 = row.try_get("sequence")?;
            let position: i64 = row.try_get("position")?;
            // In the event type's current shape, like every other reader of the store.
            let data = upcasters
                .data(SerializedEvent::new(
                    id.to_string(),
                    sequence as usize,
                    "finding".to_owned(),
                    event_type.clone(),
                    row.try_get("event_version")?,
                    row.try_get("payload")?,
                    Value::Null,
                ))
                .map_err(|event| {
                    sqlx::Error::Decode(Box::new(UnreadableEvent { position, event }))
                })?;
            let metadata: Value = row.try_get("metadata")?;
            let text = |key: &str| metadata.get(key).and_then(Value::as_str).map(str::to_owned);
            Ok(HistoryEntry {
                sequence,
                data,
                event_type,
                at: row.try_get("recorded_at")?,
                actor: Actor {
                    id: text("actor_id").unwrap_or_default(),
                    email: text("actor_email").unwrap_or_default(),
                },
                request_id: text("request_id").filter(|r| !r.is_empty()),
                position,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(ApiJson(entries))
}

async fn run(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    expected: u64,
    command: FindingCommand,
) -> Result<CommandResponse, Error> {
    let done = state
        .commands
        .execute_with::<Finding>(
            &principal.command_context(),
            &id.to_string(),
            Some(expected),
            command,
            &(),
            &FindingIndex,
        )
        .await?;
    Ok(CommandResponse::ok(
        id,
        done.aggregate.status,
        done.version,
        done.position,
    ))
}

/// Triage: change a finding's status (If-Match). FALSE_POSITIVE and a manual
/// RESOLVED need a justification; RISK_ACCEPTED goes through accept-risk.
#[utoipa::path(patch, path = "/findings/{id}/status", tag = TAG, params(("id" = Uuid, Path)),
    request_body = ChangeStatus,
    responses((status = 200, body = crate::http::command::Accepted), (status = 404),
              (status = 409, description = "illegal transition"), (status = 412), (status = 422), (status = 428)),
    security(("bearer" = []), ("apiKey" = ["findings:write"])))]
pub async fn change_status(
    State(state): State<AppState>,
    principal: Authorized<perm::FindingsWrite>,
    ApiPath(id): ApiPath<Uuid>,
    if_match: IfMatch,
    ApiJson(body): ApiJson<ChangeStatus>,
) -> Result<CommandResponse, Error> {
    let expected = if_match.required()?;
    let command = FindingCommand::ChangeStatus {
        status: body.status,
        justification: body.justification,
        at: Utc::now(),
    };
    run(&state, &principal, id, expected, command).await
}

/// Accept the risk of a finding until `expiresAt` (at most 365 days). LOW, MEDIUM
/// and INFO are accepted at once (200); HIGH and CRITICAL open an approval (202)
/// and change only when a security lead approves it.
#[utoipa::path(post, path = "/findings/{id}/accept-risk", tag = TAG, params(("id" = Uuid, Path)),
    request_body = AcceptRisk,
    responses((status = 200, body = crate::http::command::Accepted), (status = 202, body = ApprovalOpened),
              (status = 404), (status = 409), (status = 412), (status = 422), (status = 428)),
    security(("bearer" = []), ("apiKey" = ["findings:write"])))]
pub async fn accept_risk(
    State(state): State<AppState>,
    principal: Authorized<perm::FindingsWrite>,
    ApiPath(id): ApiPath<Uuid>,
    if_match: IfMatch,
    ApiJson(body): ApiJson<AcceptRisk>,
) -> Result<CommandResponse, Error> {
    let expected = if_match.required()?;
    // The store keeps microseconds: a deadline with more precision would never
    // equal itself after a round trip through the database (the expiry timer).
    let expires_at = body.expires_at.trunc_subsecs(6);
    let (finding, version) = super::load_existing::<Finding>(&state, &principal, id).await?;
    let severity = finding
        .details
        .as_ref()
        .map(|d| d.severity)
        .ok_or(Error::NotFound)?;
    let now = Utc::now();
    if !matches!(severity, Severity::High | Severity::Critical) {
        let command = FindingCommand::AcceptRisk {
            justification: body.justification,
            expires_at,
            approval: None,
            at: now,
        };
        return run(&state, &principal, id, expected, command).await;
    }
    if expected != version {
        return Err(Error::PreconditionFailed { current: version });
    }
    // Refuse now what the finding would refuse on approval (e.g. it is RESOLVED).
    finding.decide(FindingCommand::AcceptRisk {
        justification: body.justification.clone(),
        expires_at,
        approval: Some(vulnledger_aggregates::ApprovalRef {
            approval_id: Uuid::nil(),
            approved_by: principal.user_id,
        }),
        at: now,
    })?;
    let approval_id = Uuid::now_v7();
    let opened = state
        .commands
        .execute_with::<Approval>(
            &principal.command_context(),
            &approval_id.to_string(),
            None,
            ApprovalCommand::RequestRiskAcceptance {
                finding_id: id,
                requested_by: principal.user_id,
                justification: body.justification,
                expires_at,
                at: now,
            },
            &(),
            &ApprovalIndex,
        )
        .await?;
    Ok(CommandResponse::ok(
        approval_id,
        opened.aggregate.status,
        opened.version,
        opened.position,
    )
    .with_code(StatusCode::ACCEPTED)
    .with_location(format!("/api/v1/approvals/{approval_id}"))
    .with_body(ApprovalOpened {
        approval_id,
        finding_id: id,
        status: opened.aggregate.status.to_string(),
        version: opened.version,
        position: opened.position,
    }))
}

/// End a risk acceptance early: the finding is OPEN again.
#[utoipa::path(post, path = "/findings/{id}/revoke-risk", tag = TAG, params(("id" = Uuid, Path)),
    responses((status = 200, body = crate::http::command::Accepted), (status = 404), (status = 409),
              (status = 412), (status = 428)),
    security(("bearer" = []), ("apiKey" = ["findings:write"])))]
pub async fn revoke_risk(
    State(state): State<AppState>,
    principal: Authorized<perm::FindingsWrite>,
    ApiPath(id): ApiPath<Uuid>,
    if_match: IfMatch,
) -> Result<CommandResponse, Error> {
    let expected = if_match.required()?;
    run(
        &state,
        &principal,
        id,
        expected,
        FindingCommand::RevokeRisk { at: Utc::now() },
    )
    .await
}
