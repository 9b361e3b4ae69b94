//! `/dashboard/*`: KPIs, trends, severity breakdown and SLA compliance, read from the
//! findings projection's counters and cached by projection position.

use axum::extract::State;
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;
use vulnledger_aggregates::Severity;

use crate::auth::{perm, Authorized};
use crate::http::pagination::ApiQuery;
use crate::http::time_range::TimeRange;
use crate::http::{ApiJson, AppState, Error};
use crate::read_models::dashboard::{self, Interval, Kpis, SeverityBreakdown, SlaReport, Trends};

pub const TAG: &str = "dashboard";

/// The most points one trends request may ask for.
const MAX_POINTS: i64 = 1000;

fn trimmed(raw: Option<&str>) -> Option<String> {
    raw.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KpiParams {
    /// Only this asset's findings.
    pub asset: Option<String>,
    /// Only findings with this tag.
    pub tag: Option<String>,
}

/// Headline numbers of your tenant (or of one asset or tag).
#[utoipa::path(get, path = "/dashboard/kpis", tag = TAG, params(KpiParams),
    responses((status = 200, body = Kpis), (status = 400)),
    security(("bearer" = []), ("apiKey" = ["dashboard:read"])))]
pub async fn kpis(
    State(state): State<AppState>,
    principal: Authorized<perm::DashboardRead>,
    ApiQuery(params): ApiQuery<KpiParams>,
) -> Result<ApiJson<Value>, Error> {
    let asset = trimmed(params.asset.as_deref());
    let tag = trimmed(params.tag.as_deref());
    let now = Utc::now();
    let tenant = principal.tenant_id;
    let epoch = state.freshness.tenant_epoch(tenant);
    // SLA breach moves with the clock: an answer is good for the second it was made in.
    let key = format!(
        "kpis|{tenant}|{asset:?}|{tag:?}|{epoch}|{}",
        now.timestamp()
    );
    let pool = state.pool.clone();
    let value = state
        .caches
        .get_or_compute(key, async move {
            let kpis =
                dashboard::kpis(&pool, tenant, asset.as_deref(), tag.as_deref(), now).await?;
            Ok(serde_json::to_value(kpis)?)
        })
        .await?;
    Ok(ApiJson(value))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendParams {
    /// First day (ISO-8601, any precision); default 30 days (or 12 weeks) back.
    pub from: Option<String>,
    /// Last day, included (ISO-8601, any precision); default today.
    pub until: Option<String>,
    /// `day` (default) or `week` (buckets start on Monday).
    pub interval: Option<String>,
    /// Only these severities (comma-separated).
    pub severity: Option<String>,
}

/// New, remediated and persisting (open at the end of the bucket) findings over time.
#[utoipa::path(get, path = "/dashboard/trends", tag = TAG, params(TrendParams),
    responses((status = 200, body = Trends), (status = 400), (status = 422)),
    security(("bearer" = []), ("apiKey" = ["dashboard:read"])))]
pub async fn trends(
    State(state): State<AppState>,
    principal: Authorized<perm::DashboardRead>,
    ApiQuery(params): ApiQuery<TrendParams>,
) -> Result<ApiJson<Value>, Error> {
    let interval = match trimmed(params.interval.as_deref()).as_deref() {
        None | Some("day") => Interval::Day,
        Some("week") => Interval::Week,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "interval must be day or week, not {other:?}"
            )))
        }
    };
    let range = TimeRange::parse(params.from.as_deref(), params.until.as_deref())?;
    let today = Utc::now().date_naive();
    let until = range
        .until
        .map_or(today, |u| (u - Duration::microseconds(1)).date_naive());
    let from = range.from.map_or_else(
        || match interval {
            Interval::Day => until - Duration::days(29),
            Interval::Week => until - Duration::weeks(11),
        },
        |f| f.date_naive(),
    );
    let step = match interval {
        Interval::Day => 1,
        Interval::Week => 7,
    };
    if (until - from).num_days() / step + 1 > MAX_POINTS {
        return Err(Error::field(
            "from",
            format!("the range would have more than {MAX_POINTS} points; narrow it or use interval=week"),
        ));
    }
    let severities = crate::http::routes::statuses::<Severity>(params.severity.as_deref())
        .map_err(|_| {
            Error::BadRequest("severity must be CRITICAL, HIGH, MEDIUM, LOW or INFO".into())
        })?;
    let tenant = principal.tenant_id;
    let epoch = state.freshness.tenant_epoch(tenant);
    let key = format!("trends|{tenant}|{from}|{until}|{interval:?}|{severities:?}|{epoch}");
    let pool = state.pool.clone();
    let value = state
        .caches
        .get_or_compute(key, async move {
            let trends =
                dashboard::trends(&pool, tenant, from, until, interval, severities.as_deref())
                    .await?;
            Ok(serde_json::to_value(trends)?)
        })
        .await?;
    Ok(ApiJson(value))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BreakdownParams {
    /// Only this asset's findings.
    pub asset: Option<String>,
}

/// Findings per severity and status.
#[utoipa::path(get, path = "/dashboard/severity-breakdown", tag = TAG, params(BreakdownParams),
    responses((status = 200, body = SeverityBreakdown), (status = 400)),
    security(("bearer" = []), ("apiKey" = ["dashboard:read"])))]
pub async fn severity_breakdown(
    State(state): State<AppState>,
    principal: Authorized<perm::DashboardRead>,
    ApiQuery(params): ApiQuery<BreakdownParams>,
) -> Result<ApiJson<SeverityBreakdown>, Error> {
    let asset = trimmed(params.asset.as_deref());
    Ok(ApiJson(
        dashboard::severity_breakdown(&state.pool, principal.tenant_id, asset.as_deref()).await?,
    ))
}

/// SLA policy and, per severity, open findings within and past their deadline now.
#[utoipa::path(get, path = "/dashboard/sla", tag = TAG,
    responses((status = 200, body = SlaReport)),
    security(("bearer" = []), ("apiKey" = ["dashboard:read"])))]
pub async fn sla(
    State(state): State<AppState>,
    principal: Authorized<perm::DashboardRead>,
) -> Result<ApiJson<SlaReport>, Error> {
    Ok(ApiJson(
        dashboard::sla(&state.pool, principal.tenant_id, Utc::now()).await?,
    ))
}
