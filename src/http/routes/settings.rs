//! `/settings/sla`: the tenant's remediation deadlines (TenantSettings aggregate).

use axum::extract::State;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;
use vulnledger_aggregates::{SlaPolicy, TenantSettings, TenantSettingsCommand};

use crate::auth::{perm, Authorized};
use crate::http::command::{CommandResponse, IfMatch};
use crate::http::{ApiJson, AppState, Error};

pub const TAG: &str = "settings";

/// Days to remediate per severity, counted from first detection.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlaSettings {
    #[schema(value_type = Object, example = json!({"CRITICAL": 7, "HIGH": 30, "MEDIUM": 90, "LOW": 180, "INFO": 365}))]
    pub policy: SlaPolicy,
    pub version: u64,
}

/// The SLA policy in force (the default until an admin changes it).
#[utoipa::path(get, path = "/settings/sla", tag = TAG,
    responses((status = 200, body = SlaSettings)),
    security(("bearer" = []), ("apiKey" = ["dashboard:read"])))]
pub async fn get_sla(
    State(state): State<AppState>,
    principal: Authorized<perm::DashboardRead>,
) -> Result<axum::response::Response, Error> {
    let loaded = state
        .commands
        .store()
        .load::<TenantSettings>(principal.tenant_id, &principal.tenant_id.to_string())
        .await?;
    Ok(super::with_etag(
        SlaSettings {
            policy: loaded.aggregate.sla,
            version: loaded.version,
        },
        loaded.version,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlaChanged {
    pub id: Uuid,
    #[schema(example = "APPLIED")]
    pub status: String,
    pub version: u64,
    pub position: i64,
    #[schema(value_type = Object)]
    pub policy: SlaPolicy,
}

/// Change the SLA policy (admin). Deadlines of new and open findings follow it.
/// If-Match is honoured when sent.
#[utoipa::path(put, path = "/settings/sla", tag = TAG,
    request_body(content = Object, description = "Days per severity, 1 to 3650: {\"CRITICAL\":7,\"HIGH\":30,\"MEDIUM\":90,\"LOW\":180,\"INFO\":365}"),
    responses((status = 200, body = SlaChanged), (status = 403), (status = 412), (status = 422)),
    security(("bearer" = [])))]
pub async fn put_sla(
    State(state): State<AppState>,
    principal: Authorized<perm::Admin>,
    if_match: IfMatch,
    ApiJson(policy): ApiJson<SlaPolicy>,
) -> Result<CommandResponse, Error> {
    let tenant = principal.tenant_id;
    let done = state
        .commands
        .execute::<TenantSettings>(
            &principal.command_context(),
            &tenant.to_string(),
            if_match.0,
            TenantSettingsCommand::ChangeSlaPolicy {
                policy,
                at: Utc::now(),
            },
            &(),
        )
        .await?;
    let body = SlaChanged {
        id: tenant,
        status: "APPLIED".to_owned(),
        version: done.version,
        position: done.position,
        policy: done.aggregate.sla,
    };
    Ok(CommandResponse::ok(tenant, "APPLIED", done.version, done.position).with_body(body))
}
