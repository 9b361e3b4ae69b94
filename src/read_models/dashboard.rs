//! Dashboards: KPIs, trends, severity breakdown and SLA, from the counters the
//! findings projection keeps, so their cost does not grow with the number of
//! findings. Filters the counters do not carry (a tag) aggregate `finding_view`.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;
use vulnledger_aggregates::{FindingStatus, Severity, SlaPolicy};

/// Weights of open findings in `riskScore`, most severe first.
pub const RISK_WEIGHTS: [(Severity, i64); 5] = [
    (Severity::Critical, 10),
    (Severity::High, 5),
    (Severity::Medium, 2),
    (Severity::Low, 1),
    (Severity::Info, 0),
];

/// Counts keyed by severity label, every severity present.
pub type BySeverity<T> = BTreeMap<String, T>;

fn by_severity<T: Default>() -> BySeverity<T> {
    Severity::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), T::default()))
        .collect()
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Kpis {
    /// Assets with at least one finding.
    pub total_assets: i64,
    pub total_findings: i64,
    /// OPEN or CONFIRMED.
    pub open_findings: i64,
    /// Open findings per severity.
    #[schema(value_type = Object)]
    pub by_severity: BySeverity<i64>,
    /// Sum over open findings of CRITICAL 10, HIGH 5, MEDIUM 2, LOW 1, INFO 0.
    pub risk_score: i64,
    /// Open findings past their SLA deadline now.
    pub sla_breached: i64,
    pub accepted_risks: i64,
    pub false_positives: i64,
    /// Mean days from first seen to resolution over RESOLVED findings; null when none.
    #[schema(value_type = Object)]
    pub mttr_days: BySeverity<Option<f64>>,
    /// First seen during the last 7 UTC days, today included.
    pub new_last7_days: i64,
    /// Resolved during the last 7 UTC days, today included.
    pub remediated_last7_days: i64,
}

/// One (severity, status) cell of the counters.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Cell {
    severity: String,
    status: String,
    count: i64,
    resolved_seconds: i64,
}

/// The first day of "the last 7 days".
fn week_start(now: DateTime<Utc>) -> NaiveDate {
    now.date_naive() - Duration::days(6)
}

fn today_start(now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
}

/// KPIs of a tenant, optionally for one asset and/or tag.
pub async fn kpis(
    pool: &PgPool,
    tenant: Uuid,
    asset: Option<&str>,
    tag: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Kpis, sqlx::Error> {
    if asset.is_none() && tag.is_none() {
        return kpis_from_counters(pool, tenant, now).await;
    }
    // A subset: aggregate its rows (an asset's findings are few; a tag's use the
    // GIN index), in one statement.
    let week = week_start(now)
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let cells: Vec<(String, String, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT severity, status, count(*), \
             COALESCE(sum(EXTRACT(EPOCH FROM resolved_at - first_seen)) \
                 FILTER (WHERE status = 'RESOLVED'), 0)::bigint, \
             count(*) FILTER (WHERE status IN ('OPEN', 'CONFIRMED') AND due_at < $4), \
             count(*) FILTER (WHERE first_seen >= $5), \
             count(*) FILTER (WHERE status = 'RESOLVED' AND resolved_at >= $5) \
         FROM finding_view \
         WHERE tenant_id = $1 AND ($2::text IS NULL OR asset = $2) \
           AND ($3::text IS NULL OR tags @> ARRAY[$3]) \
         GROUP BY severity, status",
    )
    .bind(tenant)
    .bind(asset)
    .bind(tag)
    .bind(now)
    .bind(week)
    .fetch_all(pool)
    .await?;
    let total_assets: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT asset) FROM finding_view \
         WHERE tenant_id = $1 AND ($2::text IS NULL OR asset = $2) \
           AND ($3::text IS NULL OR tags @> ARRAY[$3])",
    )
    .bind(tenant)
    .bind(asset)
    .bind(tag)
    .fetch_one(pool)
    .await?;
    let mut kpis = assemble(
        cells
            .iter()
            .map(|(severity, status, count, seconds, ..)| Cell {
                severity: severity.clone(),
                status: status.clone(),
                count: *count,
                resolved_seconds: *seconds,
            })
            .collect(),
    );
    kpis.total_assets = total_assets;
    kpis.sla_breached = cells.iter().map(|c| c.4).sum();
    kpis.new_last7_days = cells.iter().map(|c| c.5).sum();
    kpis.remediated_last7_days = cells.iter().map(|c| c.6).sum();
    Ok(kpis)
}

async fn kpis_from_counters(
    pool: &PgPool,
    tenant: Uuid,
    now: DateTime<Utc>,
) -> Result<Kpis, sqlx::Error> {
    let cells: Vec<Cell> = sqlx::query_as(
        "SELECT severity, status, sum(count)::bigint AS count, \
                sum(resolved_seconds)::bigint AS resolved_seconds \
         FROM tenant_counts WHERE tenant_id = $1 GROUP BY severity, status",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    let mut kpis = assemble(cells);
    kpis.total_assets =
        sqlx::query_scalar("SELECT count(*) FROM asset_view WHERE tenant_id = $1 AND total > 0")
            .bind(tenant)
            .fetch_one(pool)
            .await?;
    kpis.sla_breached = breaches(pool, tenant, now).await?.values().sum();
    let (new, remediated): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum(new), 0)::bigint, COALESCE(sum(remediated), 0)::bigint \
         FROM daily_counts WHERE tenant_id = $1 AND day >= $2",
    )
    .bind(tenant)
    .bind(week_start(now))
    .fetch_one(pool)
    .await?;
    kpis.new_last7_days = new;
    kpis.remediated_last7_days = remediated;
    Ok(kpis)
}

fn assemble(cells: Vec<Cell>) -> Kpis {
    let mut kpis = Kpis {
        total_assets: 0,
        total_findings: 0,
        open_findings: 0,
        by_severity: by_severity(),
        risk_score: 0,
        sla_breached: 0,
        accepted_risks: 0,
        false_positives: 0,
        mttr_days: by_severity(),
        new_last7_days: 0,
        remediated_last7_days: 0,
    };
    let mut resolved: BySeverity<(i64, i64)> = by_severity();
    for cell in cells {
        let Ok(status) = cell.status.parse::<FindingStatus>() else {
            continue;
        };
        kpis.total_findings += cell.count;
        if status.is_open() {
            kpis.open_findings += cell.count;
            *kpis.by_severity.entry(cell.severity.clone()).or_default() += cell.count;
        }
        match status {
            FindingStatus::RiskAccepted => kpis.accepted_risks += cell.count,
            FindingStatus::FalsePositive => kpis.false_positives += cell.count,
            FindingStatus::Resolved => {
                let r = resolved.entry(cell.severity.clone()).or_default();
                r.0 += cell.count;
                r.1 += cell.resolved_seconds;
            }
            _ => {}
        }
    }
    kpis.risk_score = RISK_WEIGHTS
        .iter()
        .map(|(s, w)| w * kpis.by_severity.get(s.as_str()).copied().unwrap_or(0))
        .sum();
    for (severity, (count, seconds)) in resolved {
        let mttr = (count > 0).then(|| round1(seconds as f64 / count as f64 / 86_400.0));
        kpis.mttr_days.insert(severity, mttr);
    }
    kpis
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Open findings past their deadline now, per severity: whole past days from the
/// counters, today's part from the rows (one day's worth of an index range).
pub async fn breaches(
    pool: &PgPool,
    tenant: Uuid,
    now: DateTime<Utc>,
) -> Result<BySeverity<i64>, sqlx::Error> {
    let mut out = by_severity();
    let past: Vec<(String, i64)> = sqlx::query_as(
        "SELECT severity, sum(count)::bigint FROM open_due_counts \
         WHERE tenant_id = $1 AND due_day < $2 GROUP BY severity",
    )
    .bind(tenant)
    .bind(now.date_naive())
    .fetch_all(pool)
    .await?;
    let today: Vec<(String, i64)> = sqlx::query_as(
        "SELECT (ARRAY['INFO', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL'])[severity_rank + 1], \
                count(*) \
         FROM finding_status \
         WHERE tenant_id = $1 AND status IN ('OPEN', 'CONFIRMED') \
           AND due_at >= $2 AND due_at < $3 \
         GROUP BY severity_rank",
    )
    .bind(tenant)
    .bind(today_start(now))
    .bind(now)
    .fetch_all(pool)
    .await?;
    for (severity, count) in past.into_iter().chain(today) {
        *out.entry(severity).or_default() += count;
    }
    Ok(out)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrendPoint {
    /// First day of the bucket (a Monday for weeks).
    pub date: NaiveDate,
    pub new: i64,
    pub remediated: i64,
    /// Open findings at the end of the bucket.
    pub persisting: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Day,
    Week,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Trends {
    pub interval: Interval,
    pub points: Vec<TrendPoint>,
}

/// New, remediated and persisting per bucket over `[from, until]` (whole days).
pub async fn trends(
    pool: &PgPool,
    tenant: Uuid,
    from: NaiveDate,
    until: NaiveDate,
    interval: Interval,
    severities: Option<&[String]>,
) -> Result<Trends, sqlx::Error> {
    let days: Vec<(NaiveDate, i64, i64, i64)> = sqlx::query_as(
        "SELECT day, sum(new)::bigint, sum(remediated)::bigint, sum(opened - closed)::bigint \
         FROM daily_counts \
         WHERE tenant_id = $1 AND day <= $2 AND ($3::text[] IS NULL OR severity = ANY($3)) \
         GROUP BY day ORDER BY day",
    )
    .bind(tenant)
    .bind(until)
    .bind(severities)
    .fetch_all(pool)
    .await?;
    let bucket_of = |day: NaiveDate| match interval {
        Interval::Day => day,
        Interval::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
    };
    let first = bucket_of(from);
    let step = match interval {
        Interval::Day => Duration::days(1),
        Interval::Week => Duration::days(7),
    };
    let mut points = Vec::new();
    let mut bucket = first;
    let mut open = 0i64;
    let mut rows = days.iter().peekable();
    while bucket <= until {
        let end = bucket + step;
        let mut point = TrendPoint {
            date: bucket,
            new: 0,
            remediated: 0,
            persisting: 0,
        };
        while let Some((day, new, remediated, delta)) = rows.peek() {
            if *day >= end {
                break;
            }
            open += delta;
            if *day >= from && *day >= bucket {
                point.new += new;
                point.remediated += remediated;
            }
            rows.next();
        }
        point.persisting = open;
        points.push(point);
        bucket = end;
    }
    Ok(Trends { interval, points })
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeverityStatus {
    pub total: i64,
    /// OPEN or CONFIRMED.
    pub open: i64,
    #[schema(value_type = Object)]
    pub by_status: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeverityBreakdown {
    pub total: i64,
    #[schema(value_type = Object)]
    pub by_severity: BySeverity<SeverityStatus>,
}

impl Default for SeverityStatus {
    fn default() -> Self {
        Self {
            total: 0,
            open: 0,
            by_status: FindingStatus::ALL
                .iter()
                .map(|s| (s.as_str().to_owned(), 0))
                .collect(),
        }
    }
}

/// Findings per severity and status, optionally for one asset.
pub async fn severity_breakdown(
    pool: &PgPool,
    tenant: Uuid,
    asset: Option<&str>,
) -> Result<SeverityBreakdown, sqlx::Error> {
    let cells: Vec<(String, String, i64)> = match asset {
        None => {
            sqlx::query_as(
                "SELECT severity, status, sum(count)::bigint FROM tenant_counts \
                 WHERE tenant_id = $1 GROUP BY severity, status",
            )
            .bind(tenant)
            .fetch_all(pool)
            .await?
        }
        Some(asset) => {
            sqlx::query_as(
                "SELECT severity, status, sum(count)::bigint FROM finding_counts \
                 WHERE tenant_id = $1 AND asset = $2 GROUP BY severity, status",
            )
            .bind(tenant)
            .bind(asset)
            .fetch_all(pool)
            .await?
        }
    };
    let mut out = SeverityBreakdown {
        total: 0,
        by_severity: by_severity(),
    };
    for (severity, status, count) in cells {
        let entry = out.by_severity.entry(severity).or_default();
        entry.total += count;
        if status
            .parse::<FindingStatus>()
            .is_ok_and(FindingStatus::is_open)
        {
            entry.open += count;
        }
        *entry.by_status.entry(status).or_default() += count;
        out.total += count;
    }
    Ok(out)
}

#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlaCompliance {
    pub open: i64,
    pub within_sla: i64,
    pub breached: i64,
    /// Share of open findings within their deadline; 100 when none is open.
    pub compliance_pct: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlaReport {
    #[schema(value_type = Object)]
    pub policy: SlaPolicy,
    #[schema(value_type = Object)]
    pub by_severity: BySeverity<SlaCompliance>,
}

/// The policy the read models apply and compliance with it now.
pub async fn sla(
    pool: &PgPool,
    tenant: Uuid,
    now: DateTime<Utc>,
) -> Result<SlaReport, sqlx::Error> {
    let policy: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT policy FROM sla_policy_view WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(pool)
            .await?;
    let policy = policy
        .and_then(|p| serde_json::from_value(p).ok())
        .unwrap_or_default();
    let open: Vec<(String, i64)> = sqlx::query_as(
        "SELECT severity, sum(count)::bigint FROM tenant_counts \
         WHERE tenant_id = $1 AND status IN ('OPEN', 'CONFIRMED') GROUP BY severity",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    let breached = breaches(pool, tenant, now).await?;
    let mut by_severity: BySeverity<SlaCompliance> = by_severity();
    for (severity, count) in open {
        by_severity.entry(severity).or_default().open = count;
    }
    for (severity, entry) in by_severity.iter_mut() {
        entry.breached = breached.get(severity).copied().unwrap_or(0);
        entry.within_sla = entry.open - entry.breached;
        entry.compliance_pct = if entry.open == 0 {
            100.0
        } else {
            round1(entry.within_sla as f64 * 100.0 / entry.open as f64)
        };
    }
    Ok(SlaReport {
        policy,
        by_severity,
    })
}
