//! `/scans`: launch, progress, results, stop, fail, detail.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use vulnledger_aggregates::{FindingCounts, Scan, ScanCommand, ScanStatus, SeverityCounts};

use crate::auth::{perm, Authorized, Principal};
use crate::http::command::{CommandResponse, IfMatch};
use crate::http::pagination::{ApiQuery, PageParams, Paginated};
use crate::http::{ApiJson, ApiPath, AppState, Error, FieldError};
use crate::importers::{self, ImportError, ParsedReport, ReportFormat};
use crate::indexes::ScanIndex;
use crate::ingest::{self, IngestError};

pub const TAG: &str = "scans";

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LaunchScan {
    pub target: String,
    pub scanner: String,
    pub profile: Option<String>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportProgress {
    /// 0 to 100, never decreasing.
    pub percent: i64,
    pub step: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailScan {
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct Progress {
    pub percent: u8,
    pub step: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanView {
    pub id: Uuid,
    pub target: String,
    pub scanner: String,
    pub profile: Option<String>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub tags: Vec<String>,
    #[schema(example = "RUNNING")]
    pub status: String,
    pub progress: Progress,
    #[schema(value_type = Object, example = json!({"CRITICAL":0,"HIGH":2,"MEDIUM":5,"LOW":1,"INFO":0}))]
    pub summary: SeverityCounts,
    #[schema(value_type = Option<Object>)]
    pub findings: Option<FindingCounts>,
    pub failure_reason: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub version: u64,
}

impl ScanView {
    pub fn of(id: Uuid, scan: Scan, version: u64) -> Self {
        Self {
            id,
            target: scan.target,
            scanner: scan.scanner,
            profile: scan.profile,
            branch: scan.branch,
            commit: scan.commit,
            tags: scan.tags,
            status: scan.status.to_string(),
            progress: Progress {
                percent: scan.percent,
                step: scan.step,
            },
            summary: scan.summary.unwrap_or_default(),
            findings: scan.findings,
            failure_reason: scan.failure_reason,
            created_at: scan.created_at,
            started_at: scan.started_at,
            finished_at: scan.finished_at,
            version,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultsRecorded {
    pub scan_id: Uuid,
    #[schema(example = "COMPLETED")]
    pub status: String,
    #[schema(value_type = Object, example = json!({"new":3,"redetected":10,"reopened":1,"resolved":2,"total":14}))]
    pub findings: FindingCounts,
    pub position: i64,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResultsParams {
    /// sarif, trivy, grype, cyclonedx or native; sniffed from the document when absent.
    pub format: Option<String>,
}

pub(crate) async fn run(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    expected: Option<u64>,
    command: ScanCommand,
) -> Result<CommandResponse, Error> {
    let done = state
        .commands
        .execute_with::<Scan>(
            &principal.command_context(),
            &id.to_string(),
            expected,
            command,
            &(),
            &ScanIndex,
        )
        .await?;
    Ok(CommandResponse::ok(
        id,
        done.aggregate.status,
        done.version,
        done.position,
    ))
}

/// Launch a scan; it is QUEUED until a runner reports progress or results.
#[utoipa::path(post, path = "/scans", tag = TAG, request_body = LaunchScan,
    responses((status = 202, body = crate::http::command::Accepted), (status = 422)),
    security(("bearer" = []), ("apiKey" = ["scans:write"])))]
pub async fn launch(
    State(state): State<AppState>,
    principal: Authorized<perm::ScansWrite>,
    ApiJson(body): ApiJson<LaunchScan>,
) -> Result<CommandResponse, Error> {
    let id = Uuid::now_v7();
    let command = ScanCommand::LaunchScan {
        target: body.target,
        scanner: body.scanner,
        profile: body.profile,
        branch: body.branch,
        commit: body.commit,
        tags: body.tags,
        at: Utc::now(),
    };
    Ok(run(&state, &principal, id, None, command)
        .await?
        .with_code(StatusCode::ACCEPTED)
        .with_location(format!("/api/v1/scans/{id}")))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// QUEUED, RUNNING, COMPLETED, FAILED or CANCELLED (comma-separated).
    pub status: Option<String>,
    /// Exact target, e.g. an image reference or repository.
    pub target: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    /// 1-based page number; not with `cursor`.
    pub page: Option<i64>,
    /// Opaque `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// Scans of your tenant, newest first.
#[utoipa::path(get, path = "/scans", tag = TAG, params(ListParams),
    responses((status = 200, body = Paginated<ScanView>), (status = 400)),
    security(("bearer" = []), ("apiKey" = ["scans:read"])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Authorized<perm::ScansRead>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<ApiJson<Paginated<ScanView>>, Error> {
    let page = PageParams {
        limit: params.limit,
        page: params.page,
        cursor: params.cursor.clone(),
    }
    .validate()?;
    let statuses = super::statuses::<ScanStatus>(params.status.as_deref())?;
    let target = params
        .target
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let (after_at, after_id) = super::api_keys::keyset(&page.after)?;
    let filter = "tenant_id = $1 AND ($2::text[] IS NULL OR status = ANY($2)) \
                  AND ($3::text IS NULL OR target = $3)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM scan_index WHERE {filter}"))
        .bind(principal.tenant_id)
        .bind(&statuses)
        .bind(target)
        .fetch_one(&state.pool)
        .await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT scan_id FROM scan_index WHERE {filter} \
           AND ($4::timestamptz IS NULL OR (created_at, scan_id) < ($4, $5)) \
         ORDER BY created_at DESC, scan_id DESC LIMIT $6 OFFSET $7"
    ))
    .bind(principal.tenant_id)
    .bind(&statuses)
    .bind(target)
    .bind(after_at)
    .bind(after_id)
    .bind(page.limit + 1)
    .bind(page.offset())
    .fetch_all(&state.pool)
    .await?;
    let rows = super::load_in_order::<Scan>(&state, &principal, &ids)
        .await?
        .into_iter()
        .map(|(id, scan, version)| ScanView::of(id, scan, version))
        .collect();
    Ok(ApiJson(Paginated::new(rows, total, &page, |s| {
        serde_json::json!([s.created_at, s.id])
    })))
}

/// One scan, with its progress and severity summary.
#[utoipa::path(get, path = "/scans/{id}", tag = TAG, params(("id" = Uuid, Path)),
    responses((status = 200, body = ScanView), (status = 404)),
    security(("bearer" = []), ("apiKey" = ["scans:read"])))]
pub async fn detail(
    State(state): State<AppState>,
    principal: Authorized<perm::ScansRead>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, Error> {
    let (scan, version) = super::load_existing::<Scan>(&state, &principal, id).await?;
    Ok(super::with_etag(ScanView::of(id, scan, version), version))
}

/// Report progress; the first report moves a QUEUED scan to RUNNING.
#[utoipa::path(post, path = "/scans/{id}/progress", tag = TAG, params(("id" = Uuid, Path)),
    request_body = ReportProgress,
    responses((status = 200, body = crate::http::command::Accepted), (status = 404), (status = 409), (status = 422)),
    security(("bearer" = []), ("apiKey" = ["scans:write"])))]
pub async fn progress(
    State(state): State<AppState>,
    principal: Authorized<perm::ScansWrite>,
    ApiPath(id): ApiPath<Uuid>,
    if_match: IfMatch,
    ApiJson(body): ApiJson<ReportProgress>,
) -> Result<CommandResponse, Error> {
    let percent = u8::try_from(body.percent)
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| Error::field("percent", "must be between 0 and 100"))?;
    let command = ScanCommand::ReportProgress {
        percent,
        step: body.step,
        at: Utc::now(),
    };
    run(&state, &principal, id, if_match.0, command).await
}

/// Cancel a scan that has not finished.
#[utoipa::path(post, path = "/scans/{id}/stop", tag = TAG, params(("id" = Uuid, Path)),
    responses((status = 200, body = crate::http::command::Accepted), (status = 404), (status = 409)),
    security(("bearer" = []), ("apiKey" = ["scans:write"])))]
pub async fn stop(
    State(state): State<AppState>,
    principal: Authorized<perm::ScansWrite>,
    ApiPath(id): ApiPath<Uuid>,
    if_match: IfMatch,
) -> Result<CommandResponse, Error> {
    run(
        &state,
        &principal,
        id,
        if_match.0,
        ScanCommand::StopScan { at: Utc::now() },
    )
    .await
}

/// Mark a scan as failed, with the reason.
#[utoipa::path(post, path = "/scans/{id}/fail", tag = TAG, params(("id" = Uuid, Path)),
    request_body = FailScan,
    responses((status = 200, body = crate::http::command::Accepted), (status = 404), (status = 409), (status = 422)),
    security(("bearer" = []), ("apiKey" = ["scans:write"])))]
pub async fn fail(
    State(state): State<AppState>,
    principal: Authorized<perm::ScansWrite>,
    ApiPath(id): ApiPath<Uuid>,
    if_match: IfMatch,
    ApiJson(body): ApiJson<FailScan>,
) -> Result<CommandResponse, Error> {
    let command = ScanCommand::FailScan {
        reason: body.reason,
        at: Utc::now(),
    };
    run(&state, &principal, id, if_match.0, command).await
}

/// Upload the scanner's report: findings are deduplicated, resolved ones seen
/// again reopen, open ones missing from the report resolve, and the scan completes.
#[utoipa::path(post, path = "/scans/{id}/results", tag = TAG, params(("id" = Uuid, Path), ResultsParams),
    request_body(content = String, description = "the report (SARIF 2.1.0, Trivy JSON, Grype JSON, CycloneDX 1.4+ JSON or native)", content_type = "application/json"),
    responses((status = 200, body = ResultsRecorded), (status = 404), (status = 409, description = "the scan has finished"),
              (status = 413), (status = 422, description = "the report is malformed")),
    security(("bearer" = []), ("apiKey" = ["scans:write"])))]
pub async fn results(
    State(state): State<AppState>,
    principal: Authorized<perm::ScansWrite>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<ResultsParams>,
    body: Result<Bytes, BytesRejection>,
) -> Result<CommandResponse, Error> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge
        } else {
            Error::BadRequest(e.body_text())
        }
    })?;
    let outcome = record_results(&state, &principal, id, params.format.as_deref(), body).await?;
    let status = outcome.scan.status.to_string();
    Ok(
        CommandResponse::ok(id, &status, outcome.version, outcome.position).with_body(
            ResultsRecorded {
                scan_id: id,
                status,
                findings: outcome.counts,
                position: outcome.position,
            },
        ),
    )
}

/// Parses (off the async workers: a large report is CPU work) and ingests a report.
pub(crate) async fn record_results(
    state: &AppState,
    principal: &Principal,
    scan_id: Uuid,
    format: Option<&str>,
    body: Bytes,
) -> Result<ingest::Ingested, Error> {
    let parsed = parse_report(format, body).await?;
    ingest_parsed(state, principal, scan_id, &parsed).await
}

pub(crate) async fn parse_report(format: Option<&str>, body: Bytes) -> Result<ParsedReport, Error> {
    let format = format
        .map(|f| {
            f.parse::<ReportFormat>()
                .map_err(|_| Error::field("format", "use sarif, trivy, grype, cyclonedx or native"))
        })
        .transpose()?;
    tokio::task::spawn_blocking(move || importers::parse(&body, format))
        .await
        .map_err(|e| Error::Internal(e.into()))?
        .map_err(report_error)
}

pub(crate) async fn ingest_parsed(
    state: &AppState,
    principal: &Principal,
    scan_id: Uuid,
    parsed: &ParsedReport,
) -> Result<ingest::Ingested, Error> {
    ingest::ingest(
        state.commands.store(),
        &principal.command_context(),
        scan_id,
        parsed,
        Utc::now(),
    )
    .await
    .map_err(|e| match e {
        IngestError::Rejected(e) => e.into(),
        IngestError::Contended => Error::Conflict(e.to_string()),
        IngestError::Store(e) => e.into(),
    })
}

fn report_error(e: ImportError) -> Error {
    if e.malformed {
        return Error::BadRequest(format!("the report {}", e.message));
    }
    Error::Validation(vec![FieldError {
        field: format!(
            "report{}",
            if e.pointer == "$" {
                String::new()
            } else {
                e.pointer.clone()
            }
        ),
        message: e.to_string(),
    }])
}
