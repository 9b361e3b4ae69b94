//! The asset list over `asset_view`: worst first.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;
use vulnledger_aggregates::Severity;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AssetRow {
    pub asset: String,
    pub total: i64,
    pub open_total: i64,
    pub open_critical: i64,
    pub open_high: i64,
    pub open_medium: i64,
    pub open_low: i64,
    pub open_info: i64,
    pub worst_rank: i16,
    pub last_seen: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetFindings {
    /// Every finding on the asset, whatever its status.
    pub total: i64,
    /// OPEN or CONFIRMED.
    pub open: i64,
    #[serde(rename = "CRITICAL")]
    pub critical: i64,
    #[serde(rename = "HIGH")]
    pub high: i64,
    #[serde(rename = "MEDIUM")]
    pub medium: i64,
    #[serde(rename = "LOW")]
    pub low: i64,
    #[serde(rename = "INFO")]
    pub info: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetView {
    pub asset: String,
    /// Open findings per severity, and totals.
    pub findings: AssetFindings,
    /// The highest severity among open findings; null when none is open.
    #[schema(value_type = Option<String>, example = "CRITICAL")]
    pub worst_severity: Option<Severity>,
    pub last_seen: DateTime<Utc>,
}

impl From<AssetRow> for AssetView {
    fn from(r: AssetRow) -> Self {
        let worst_severity = Severity::ALL
            .into_iter()
            .find(|s| i16::from(s.rank()) == r.worst_rank);
        Self {
            asset: r.asset,
            findings: AssetFindings {
                total: r.total,
                open: r.open_total,
                critical: r.open_critical,
                high: r.open_high,
                medium: r.open_medium,
                low: r.open_low,
                info: r.open_info,
            },
            worst_severity,
            last_seen: r.last_seen,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct AssetFilter {
    /// Lower-cased substring of the asset name.
    pub search: Option<String>,
    /// Assets with an open finding of one of these severities.
    pub severities: Option<Vec<Severity>>,
    pub tags: Option<Vec<String>>,
}

impl AssetFilter {
    fn push_where(&self, q: &mut QueryBuilder<'_, Postgres>) {
        if let Some(search) = &self.search {
            q.push(" AND lower(asset) LIKE ").push_bind(format!(
                "%{}%",
                search
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            ));
        }
        if let Some(severities) = &self.severities {
            q.push(" AND (false");
            for s in severities {
                q.push(" OR ").push(match s {
                    Severity::Critical => "open_critical > 0",
                    Severity::High => "open_high > 0",
                    Severity::Medium => "open_medium > 0",
                    Severity::Low => "open_low > 0",
                    Severity::Info => "open_info > 0",
                });
            }
            q.push(")");
        }
        if let Some(tags) = &self.tags {
            q.push(
                " AND EXISTS (SELECT 1 FROM finding_view f WHERE f.tenant_id = a.tenant_id \
                 AND f.asset = a.asset AND f.tags && ",
            )
            .push_bind(tags.clone())
            .push(")");
        }
    }
}

const COLUMNS: &str = "asset, total, open_total, open_critical, open_high, open_medium, \
     open_low, open_info, worst_rank, last_seen";

/// Worst first: highest open severity, then most open findings, then by name.
pub async fn page(
    pool: &PgPool,
    tenant: Uuid,
    filter: &AssetFilter,
    limit: i64,
    offset: i64,
    after: Option<&Value>,
) -> Result<Result<Vec<AssetRow>, String>, sqlx::Error> {
    let mut q = QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM asset_view a WHERE tenant_id = "
    ));
    q.push_bind(tenant);
    filter.push_where(&mut q);
    if let Some(after) = after {
        let parsed = after.as_array().and_then(|v| match v.as_slice() {
            [rank, open, asset] => {
                Some((rank.as_i64()?, open.as_i64()?, asset.as_str()?.to_owned()))
            }
            _ => None,
        });
        let Some((rank, open, asset)) = parsed else {
            return Ok(Err("cursor is not one this server issued".into()));
        };
        let rank = rank as i16;
        q.push(" AND (worst_rank < ")
            .push_bind(rank)
            .push(" OR (worst_rank = ")
            .push_bind(rank)
            .push(" AND (open_total < ")
            .push_bind(open)
            .push(" OR (open_total = ")
            .push_bind(open)
            .push(" AND asset > ")
            .push_bind(asset)
            .push("))))");
    }
    q.push(" ORDER BY worst_rank DESC, open_total DESC, asset ASC LIMIT ")
        .push_bind(limit + 1)
        .push(" OFFSET ")
        .push_bind(offset);
    Ok(Ok(q.build_query_as::<AssetRow>().fetch_all(pool).await?))
}

pub fn cursor_of(row: &AssetView) -> Value {
    json!([
        row.worst_severity.map_or(-1, |s| i16::from(s.rank())),
        row.findings.open,
        row.asset
    ])
}

pub async fn total(pool: &PgPool, tenant: Uuid, filter: &AssetFilter) -> Result<i64, sqlx::Error> {
    let mut q = QueryBuilder::new("SELECT count(*) FROM asset_view a WHERE tenant_id = ");
    q.push_bind(tenant);
    filter.push_where(&mut q);
    q.build_query_scalar().fetch_one(pool).await
}

/// Whether the tenant has any finding on `asset`.
pub async fn exists(pool: &PgPool, tenant: Uuid, asset: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM asset_view WHERE tenant_id = $1 AND asset = $2)",
    )
    .bind(tenant)
    .bind(asset)
    .fetch_one(pool)
    .await
}
