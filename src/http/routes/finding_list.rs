//! Finding lists served from the findings projection: `/findings`,
//! `/assets/{asset}/findings` and `/vulnerabilities/cve/{cve}`.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use vulnledger_aggregates::{FindingStatus, Severity};

use crate::auth::{perm, Authorized, Principal};
use crate::http::pagination::{ApiQuery, PageParams, Paginated};
use crate::http::time_range::TimeRange;
use crate::http::{ApiJson, ApiPath, AppState, Error};
use crate::read_models::findings::{self, FindingFilter, FindingRow, Sort};

use super::findings::{RiskAcceptanceView, TAG};

/// A finding in a list: `GET /findings/{id}` without the long description.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindingSummary {
    pub id: Uuid,
    pub title: String,
    #[schema(example = "HIGH")]
    pub severity: String,
    pub cvss: Option<f64>,
    pub cve: Option<String>,
    pub rule_id: Option<String>,
    pub asset: String,
    pub scanner: String,
    pub package: Option<String>,
    pub installed_version: Option<String>,
    pub fixed_version: Option<String>,
    pub location: Option<String>,
    #[schema(example = "OPEN")]
    pub status: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub due_at: DateTime<Utc>,
    pub sla_breached: bool,
    #[schema(value_type = Option<RiskAcceptanceView>)]
    pub risk_acceptance: Option<Value>,
    pub tags: Vec<String>,
    pub version: i64,
}

impl FindingSummary {
    fn of(row: FindingRow, now: DateTime<Utc>) -> Self {
        let open = row
            .status
            .parse::<FindingStatus>()
            .is_ok_and(FindingStatus::is_open);
        Self {
            id: row.id,
            title: row.title,
            severity: row.severity,
            cvss: row.cvss,
            cve: row.cve,
            rule_id: row.rule_id,
            asset: row.asset,
            scanner: row.scanner,
            package: row.package,
            installed_version: row.installed_version,
            fixed_version: row.fixed_version,
            location: row.location,
            status: row.status,
            first_seen: row.first_seen,
            last_seen: row.last_seen,
            resolved_at: row.resolved_at,
            sla_breached: open && row.due_at < now,
            due_at: row.due_at,
            risk_acceptance: row.risk_acceptance,
            tags: row.tags,
            version: row.version,
        }
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// CRITICAL, HIGH, MEDIUM, LOW, INFO (comma-separated).
    pub severity: Option<String>,
    /// OPEN, CONFIRMED, FALSE_POSITIVE, RISK_ACCEPTED, RESOLVED (comma-separated).
    pub status: Option<String>,
    /// Exact asset name(s), comma-separated.
    pub asset: Option<String>,
    /// CVE id(s), comma-separated.
    pub cve: Option<String>,
    /// Scanner name(s), comma-separated.
    pub scanner: Option<String>,
    /// Findings a given scan reported.
    pub scan_id: Option<String>,
    /// Tag(s), comma-separated: findings with any of them.
    pub tag: Option<String>,
    /// Text searched in title, CVE, asset and package (case-insensitive substring).
    pub q: Option<String>,
    /// First seen at or after (ISO-8601, any precision).
    pub from: Option<String>,
    /// First seen up to the end of this period (ISO-8601, any precision).
    pub until: Option<String>,
    /// `true`: only open findings past their SLA deadline.
    pub sla_breached: Option<bool>,
    /// Comma-separated keys, `-` for descending: severity, firstSeen, lastSeen, dueAt.
    /// Default `-severity,-firstSeen`.
    pub sort: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    /// 1-based page number; not with `cursor`.
    pub page: Option<i64>,
    /// Opaque `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A comma-separated list: trimmed, empty items dropped, `None` when nothing is left.
fn list(raw: Option<&str>) -> Option<Vec<String>> {
    let items: Vec<String> = raw?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (!items.is_empty()).then_some(items)
}

fn labels<T: std::str::FromStr + std::fmt::Display>(
    raw: Option<&str>,
    field: &str,
) -> Result<Option<Vec<String>>, Error> {
    list(raw)
        .map(|items| {
            items
                .iter()
                .map(|s| {
                    s.parse::<T>()
                        .map(|v| v.to_string())
                        .map_err(|_| Error::BadRequest(format!("unknown {field} {s:?}")))
                })
                .collect()
        })
        .transpose()
}

impl ListParams {
    fn filter(&self) -> Result<FindingFilter, Error> {
        let scan_id = self
            .scan_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<Uuid>()
                    .map_err(|_| Error::BadRequest(format!("scanId {s:?} is not a UUID")))
            })
            .transpose()?;
        let text = self
            .q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_lowercase);
        if text.as_ref().is_some_and(|t| t.chars().count() > 200) {
            return Err(Error::BadRequest("q must be at most 200 characters".into()));
        }
        let filter = FindingFilter {
            severities: labels::<Severity>(self.severity.as_deref(), "severity")?,
            statuses: labels::<FindingStatus>(self.status.as_deref(), "status")?,
            assets: list(self.asset.as_deref()),
            cves: list(self.cve.as_deref())
                .map(|cves| cves.into_iter().map(|c| normalize_cve(&c)).collect()),
            scanners: list(self.scanner.as_deref()),
            scan_id,
            tags: list(self.tag.as_deref()),
            text,
            sla_breached: self.sla_breached.unwrap_or(false),
            ..Default::default()
        };
        let range = TimeRange::parse(self.from.as_deref(), self.until.as_deref())?;
        Ok(filter.with_range(range))
    }
}

/// CVE ids are upper-case in every feed; accept them typed in any case.
pub fn normalize_cve(raw: &str) -> String {
    let raw = raw.trim();
    if raw.len() > 4 && raw[..4].eq_ignore_ascii_case("cve-") {
        raw.to_ascii_uppercase()
    } else {
        raw.to_owned()
    }
}

/// Runs a list request with `adjust` applied to its filter.
async fn respond(
    state: &AppState,
    principal: &Principal,
    params: &ListParams,
    adjust: impl FnOnce(&mut FindingFilter),
) -> Result<Paginated<FindingSummary>, Error> {
    let page = PageParams {
        limit: params.limit,
        page: params.page,
        cursor: params.cursor.clone(),
    }
    .validate()?;
    let sort = Sort::parse(params.sort.as_deref()).map_err(Error::BadRequest)?;
    let mut filter = params.filter()?;
    adjust(&mut filter);
    let now = Utc::now();
    let tenant = principal.tenant_id;
    let rows = async {
        findings::page(&state.pool, tenant, &filter, &sort, &page, now)
            .await
            .map_err(Error::from)
    };
    let (rows, total) = tokio::try_join!(rows, cached_total(state, tenant, &filter, now))?;
    let rows = rows.map_err(Error::BadRequest)?;
    // The next cursor holds the page's last row in the sort's own terms.
    let next =
        (rows.len() as i64 > page.limit).then(|| sort.cursor_of(&rows[page.limit as usize - 1]));
    let data = rows
        .into_iter()
        .map(|r| FindingSummary::of(r, now))
        .collect();
    let mut out = Paginated::new(data, total, &page, |_| Value::Null);
    out.meta.next_cursor = next.map(|c| crate::http::pagination::encode_cursor(&c));
    Ok(out)
}

/// Totals that need a count (free text, tags, time ranges) are cached by the
/// tenant's epoch ([`Freshness::tenant_epoch`](crate::freshness::Freshness::tenant_epoch):
/// it moves with the tenant's own batches only); the counters answer the rest
/// directly.
///
/// Under a steady stream of the tenant's own triage the epoch moves all the time, so
/// a search would count its matches on every request (50 ms for 21k matches among a
/// million findings). A search by text and tags alone counts `finding_text`, whose
/// rows are written once, one per finding, and never change or go: its total can
/// only change when the tenant's number of findings does, which the counters give in
/// one small read. So on a new epoch such a total is looked up again by that number,
/// and counted only when findings were added.
async fn cached_total(
    state: &AppState,
    tenant: Uuid,
    filter: &FindingFilter,
    now: DateTime<Utc>,
) -> Result<i64, Error> {
    let epoch = state.freshness.tenant_epoch(tenant);
    let second = if filter.sla_breached {
        now.timestamp()
    } else {
        0
    };
    let key = format!("total|{tenant}|{filter:?}|{epoch}|{second}");
    let pool = state.pool.clone();
    let caches = state.caches.clone();
    let owned = filter.clone();
    let value = state
        .caches
        .get_or_compute(key, async move {
            if !owned.searches_text_only() {
                return Ok(Value::from(
                    findings::total(&pool, tenant, &owned, now).await?,
                ));
            }
            // Read before the count below, which therefore sees at least these
            // findings: an answer is never older than the number it is filed under.
            let findings_in_tenant =
                findings::total(&pool, tenant, &FindingFilter::default(), now).await?;
            let key = format!("text-total|{tenant}|{owned:?}|{findings_in_tenant}");
            caches
                .get_or_compute(key, async move {
                    Ok(Value::from(
                        findings::total(&pool, tenant, &owned, now).await?,
                    ))
                })
                .await
        })
        .await?;
    Ok(value.as_i64().unwrap_or(0))
}

/// Findings of your tenant, filtered and sorted, one page at a time.
#[utoipa::path(get, path = "/findings", tag = TAG, params(ListParams),
    responses((status = 200, body = Paginated<FindingSummary>), (status = 400)),
    security(("bearer" = []), ("apiKey" = ["findings:read"])))]
pub async fn list_findings(
    State(state): State<AppState>,
    principal: Authorized<perm::FindingsRead>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<ApiJson<Paginated<FindingSummary>>, Error> {
    Ok(ApiJson(respond(&state, &principal, &params, |_| {}).await?))
}

/// The findings of one asset (404 when the tenant has none on it).
#[utoipa::path(get, path = "/assets/{asset}/findings", tag = "assets",
    params(("asset" = String, Path, description = "URL-encoded asset name"), ListParams),
    responses((status = 200, body = Paginated<FindingSummary>), (status = 400), (status = 404)),
    security(("bearer" = []), ("apiKey" = ["findings:read"])))]
pub async fn asset_findings(
    State(state): State<AppState>,
    principal: Authorized<perm::FindingsRead>,
    ApiPath(asset): ApiPath<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<ApiJson<Paginated<FindingSummary>>, Error> {
    if !crate::read_models::assets::exists(&state.pool, principal.tenant_id, &asset).await? {
        return Err(Error::NotFound);
    }
    Ok(ApiJson(
        respond(&state, &principal, &params, |f| {
            f.assets = Some(vec![asset]);
        })
        .await?,
    ))
}

/// Findings with one CVE across every asset of your tenant.
#[utoipa::path(get, path = "/vulnerabilities/cve/{cve}", tag = "assets",
    params(("cve" = String, Path, example = "CVE-2021-44228"), ListParams),
    responses((status = 200, body = Paginated<FindingSummary>), (status = 400)),
    security(("bearer" = []), ("apiKey" = ["findings:read"])))]
pub async fn cve_findings(
    State(state): State<AppState>,
    principal: Authorized<perm::FindingsRead>,
    ApiPath(cve): ApiPath<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<ApiJson<Paginated<FindingSummary>>, Error> {
    let cve = normalize_cve(&cve);
    if cve.is_empty() || cve.len() > 100 {
        return Err(Error::BadRequest("cve must be 1 to 100 characters".into()));
    }
    Ok(ApiJson(
        respond(&state, &principal, &params, |f| {
            f.cves = Some(vec![cve]);
        })
        .await?,
    ))
}
