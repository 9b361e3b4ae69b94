//! `/ci`: what a pipeline needs with one API key (scans:write): start a scan
//! (optionally with the report inline), poll it, and gate the build on it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;
use cqrs_es::persist::SerializedEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use vulnledger_aggregates::{
    Finding, FindingsObserved, Scan, ScanCommand, Severity, SeverityCounts,
};

use super::scans::{ingest_parsed, parse_report, run};
use crate::auth::{perm, Authorized, Principal};
use crate::http::pagination::ApiQuery;
use crate::http::{ApiJson, ApiPath, AppState, Error};
use crate::store::UnreadableEvent;

pub const TAG: &str = "ci";

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartCiScan {
    pub target: String,
    pub scanner: String,
    pub branch: Option<String>,
    pub commit: Option<String>,
    /// The scanner's report (a JSON document, or a string holding one), ingested at once.
    #[schema(value_type = Option<Object>)]
    pub report: Option<Value>,
    /// Format of `report`; sniffed when absent.
    pub format: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CiScanStarted {
    pub scan_id: Uuid,
    #[schema(example = "COMPLETED")]
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub findings: Option<vulnledger_aggregates::FindingCounts>,
    pub position: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CiScanStatus {
    pub scan_id: Uuid,
    pub status: String,
    pub percent: u8,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    #[schema(value_type = String, example = "HIGH")]
    pub fail_on: Severity,
    pub passed: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CiFinding {
    pub id: Uuid,
    pub title: String,
    #[schema(value_type = String)]
    pub severity: Severity,
    pub status: String,
    pub cve: Option<String>,
    pub package: Option<String>,
    pub installed_version: Option<String>,
    pub fixed_version: Option<String>,
    pub location: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CiResults {
    pub scan_id: Uuid,
    pub status: String,
    pub gate: Gate,
    /// Open findings of this scan by severity.
    #[schema(value_type = Object)]
    pub summary: SeverityCounts,
    /// Every finding the scan reported, with its current status.
    pub findings: Vec<CiFinding>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct GateParams {
    /// The least severity that fails the build (default HIGH).
    pub fail_on: Option<String>,
}

/// Start a scan for a pipeline; with `report`, its results are recorded at once.
#[utoipa::path(post, path = "/ci/scans", tag = TAG, request_body = StartCiScan,
    responses((status = 202, body = CiScanStarted), (status = 403), (status = 422)),
    security(("apiKey" = ["scans:write"]), ("bearer" = [])))]
pub async fn start(
    State(state): State<AppState>,
    principal: Authorized<perm::ScansWrite>,
    ApiJson(body): ApiJson<StartCiScan>,
) -> Result<impl IntoResponse, Error> {
    // A bad report is refused before anything is written.
    let parsed = match body.report {
        None => None,
        Some(Value::String(text)) => {
            Some(parse_report(body.format.as_deref(), Bytes::from(text)).await?)
        }
        Some(document) => {
            let bytes = serde_json::to_vec(&document).map_err(anyhow::Error::from)?;
            Some(parse_report(body.format.as_deref(), Bytes::from(bytes)).await?)
        }
    };
    let id = Uuid::now_v7();
    let launched = run(
        &state,
        &principal,
        id,
        None,
        ScanCommand::LaunchScan {
            target: body.target,
            scanner: body.scanner,
            profile: Some("ci".into()),
            branch: body.branch,
            commit: body.commit,
            tags: vec!["ci".into()],
            at: Utc::now(),
        },
    )
    .await?;
    let started = match parsed {
        None => CiScanStarted {
            scan_id: id,
            status: "QUEUED".into(),
            findings: None,
            position: launched.position,
        },
        Some(parsed) => {
            let done = ingest_parsed(&state, &principal, id, &parsed).await?;
            CiScanStarted {
                scan_id: id,
                status: done.scan.status.to_string(),
                findings: Some(done.counts),
                position: done.position,
            }
        }
    };
    // Like every command's answer: a read may wait for it with `X-Min-Position`.
    let position = [(
        crate::http::command::EVENT_POSITION,
        axum::http::HeaderValue::from(started.position),
    )];
    Ok((StatusCode::ACCEPTED, position, ApiJson(started)))
}

async fn load_scan(state: &AppState, principal: &Principal, id: Uuid) -> Result<Scan, Error> {
    Ok(super::load_existing::<Scan>(state, principal, id).await?.0)
}

/// Where a pipeline's scan stands.
#[utoipa::path(get, path = "/ci/scans/{id}/status", tag = TAG, params(("id" = Uuid, Path)),
    responses((status = 200, body = CiScanStatus), (status = 404)),
    security(("apiKey" = ["scans:write"]), ("bearer" = [])))]
pub async fn status(
    State(state): State<AppState>,
    principal: Authorized<perm::ScansWrite>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<CiScanStatus>, Error> {
    let scan = load_scan(&state, &principal, id).await?;
    Ok(ApiJson(CiScanStatus {
        scan_id: id,
        status: scan.status.to_string(),
        percent: scan.percent,
    }))
}

/// The build gate: fails while an open finding of this scan is at or above
/// `failOn`, or while the scan has not completed.
#[utoipa::path(get, path = "/ci/scans/{id}/results", tag = TAG, params(("id" = Uuid, Path), GateParams),
    responses((status = 200, body = CiResults), (status = 400), (status = 404)),
    security(("apiKey" = ["scans:write"]), ("bearer" = [])))]
pub async fn results(
    State(state): State<AppState>,
    principal: Authorized<perm::ScansWrite>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<GateParams>,
) -> Result<ApiJson<CiResults>, Error> {
    let fail_on = match params.fail_on.as_deref() {
        None => Severity::High,
        Some(text) => text.parse().map_err(|_| {
            Error::BadRequest("failOn must be CRITICAL, HIGH, MEDIUM, LOW or INFO".into())
        })?,
    };
    let scan = load_scan(&state, &principal, id).await?;
    let observed: Vec<(i64, i64, String, Value)> = sqlx::query_as(
        "SELECT position, sequence, event_version, payload FROM events \
         WHERE aggregate_type = 'scan' AND aggregate_id = $1 AND tenant_id = $2 \
           AND event_type = 'FindingsObserved' ORDER BY sequence",
    )
    .bind(id.to_string())
    .bind(principal.tenant_id)
    .fetch_all(&state.pool)
    .await?;
    let upcasters = state.commands.store().upcasters();
    let mut ids: Vec<String> = Vec::new();
    for (position, sequence, version, payload) in observed {
        // In the event type's current shape, like every other reader of the store.
        let data = upcasters
            .data(SerializedEvent::new(
                id.to_string(),
                sequence as usize,
                "scan".to_owned(),
                "FindingsObserved".to_owned(),
                version,
                payload,
                Value::Null,
            ))
            .map_err(|event| sqlx::Error::Decode(Box::new(UnreadableEvent { position, event })))?;
        let observed: FindingsObserved = serde_json::from_value(data).map_err(|e| {
            sqlx::Error::Decode(format!("event at position {position}: {e}").into())
        })?;
        ids.extend(observed.finding_ids.into_iter().map(|id| id.to_string()));
    }
    let mut conn = state.pool.acquire().await?;
    let mut loaded = state
        .commands
        .store()
        .load_many::<Finding>(&mut conn, principal.tenant_id, &ids)
        .await?;
    let mut summary = SeverityCounts::default();
    let mut findings = Vec::with_capacity(ids.len());
    for id in &ids {
        let Some(finding) = loaded.remove(id) else {
            continue;
        };
        let finding = finding.aggregate;
        let Some(details) = finding.details else {
            continue;
        };
        if finding.status.is_open() {
            summary.add(details.severity);
        }
        findings.push(CiFinding {
            id: id.parse().unwrap_or_default(),
            title: details.title,
            severity: details.severity,
            status: finding.status.to_string(),
            cve: details.cve,
            package: details.package,
            installed_version: details.installed_version,
            fixed_version: details.fixed_version,
            location: details.location,
        });
    }
    // Most severe first, so a pipeline log shows what failed the gate on top.
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let blocking = Severity::ALL
        .iter()
        .filter(|s| **s >= fail_on)
        .any(|s| summary.get(*s) > 0);
    let completed = scan.status == vulnledger_aggregates::ScanStatus::Completed;
    Ok(ApiJson(CiResults {
        scan_id: id,
        status: scan.status.to_string(),
        gate: Gate {
            fail_on,
            passed: completed && !blocking,
        },
        summary,
        findings,
    }))
}
