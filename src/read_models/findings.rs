//! The finding list over `finding_view`: filters, sorts, keyset pages, exact totals.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;
use vulnledger_aggregates::Severity;

use crate::http::pagination::PageRequest;
use crate::http::time_range::TimeRange;

/// Columns of a list row, in `FindingRow`'s order.
pub const COLUMNS: &str = "id, title, severity, cvss, cve, rule_id, asset, scanner, package, \
     installed_version, fixed_version, location, status, first_seen, last_seen, resolved_at, \
     due_at, risk_acceptance, tags, version, severity_rank";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FindingRow {
    pub id: Uuid,
    pub title: String,
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
    pub status: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub due_at: DateTime<Utc>,
    pub risk_acceptance: Option<Value>,
    pub tags: Vec<String>,
    pub version: i64,
    pub severity_rank: i16,
}

/// Everything `GET /findings` filters on, already validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FindingFilter {
    pub severities: Option<Vec<String>>,
    pub statuses: Option<Vec<String>>,
    pub assets: Option<Vec<String>>,
    pub cves: Option<Vec<String>>,
    pub scanners: Option<Vec<String>>,
    pub scan_id: Option<Uuid>,
    pub tags: Option<Vec<String>>,
    /// Lower-cased; matched as a substring.
    pub text: Option<String>,
    pub first_seen_from: Option<DateTime<Utc>>,
    pub first_seen_until: Option<DateTime<Utc>>,
    pub sla_breached: bool,
}

impl FindingFilter {
    pub fn with_range(mut self, range: TimeRange) -> Self {
        self.first_seen_from = range.from;
        self.first_seen_until = range.until;
        self
    }

    /// True when the counters (`tenant_counts`, `finding_counts`) answer the total.
    fn countable(&self) -> bool {
        self.cves.is_none()
            && self.scan_id.is_none()
            && self.tags.is_none()
            && self.text.is_none()
            && self.first_seen_from.is_none()
            && self.first_seen_until.is_none()
            && !self.sla_breached
    }

    /// True when only the search text (and tags) are set: `finding_text` alone
    /// answers the total.
    pub fn searches_text_only(&self) -> bool {
        self.text.is_some()
            && Self {
                text: None,
                tags: None,
                ..self.clone()
            } == Self::default()
    }

    /// True when the filter is a deadline breach narrowed, if at all, by severity
    /// and status: `finding_status` alone answers the total.
    fn breaches_only(&self) -> bool {
        self.sla_breached
            && Self {
                severities: None,
                statuses: None,
                sla_breached: false,
                ..self.clone()
            } == Self::default()
    }

    /// Appends ` AND ...` for every filter set, on the columns of `source`.
    fn push_where(&self, q: &mut QueryBuilder<'_, Postgres>, now: DateTime<Utc>, source: Source) {
        let (table, text_joined, breaches_joined) = match source {
            Source::Counters => ("", false, false),
            Source::View {
                table,
                text_joined,
                breaches_joined,
                ..
            } => (table, text_joined, breaches_joined),
        };
        for (column, values) in [
            ("severity", &self.severities),
            ("asset", &self.assets),
            ("cve", &self.cves),
            ("scanner", &self.scanners),
        ] {
            if let Some(values) = values {
                push_in(q, &format!("{table}{column}"), values);
            }
        }
        let Source::View { tenant, .. } = source else {
            // The counters have the status as a column, and nothing else filters them.
            if let Some(statuses) = &self.statuses {
                push_in(q, "status", statuses);
            }
            return;
        };
        // No index of finding_view reads the status (status changes are HOT updates):
        // the ids of a status, and of the open findings past their deadline, come from
        // finding_status. PostgreSQL joins them when they are few, and otherwise walks
        // finding_view in the page's order and probes finding_status for each row.
        if (self.statuses.is_some() || self.sla_breached) && !breaches_joined {
            q.push(format!(
                " AND {table}id IN (SELECT id FROM finding_status WHERE tenant_id = "
            ))
            .push_bind(tenant);
            if let Some(statuses) = &self.statuses {
                push_in(q, "status", statuses);
            }
            if self.sla_breached {
                q.push(" AND status IN ('OPEN', 'CONFIRMED') AND due_at < ")
                    .push_bind(now);
            }
            q.push(")");
        }
        if let Some(scan) = self.scan_id {
            q.push(format!(
                " AND {table}id IN (SELECT finding_id FROM finding_scans WHERE scan_id = "
            ))
            .push_bind(scan)
            .push(")");
        }
        // Search text and tags are indexed in `finding_text`, which status changes
        // never rewrite (see the findings projection). Ids are unique across
        // tenants; the outer query keeps the tenant.
        if let Some(v) = &self.tags {
            q.push(format!(
                " AND {table}id IN (SELECT id FROM finding_text WHERE tags && "
            ))
            .push_bind(v.clone())
            .push(")");
        }
        if let Some(text) = self.text.as_ref().filter(|_| !text_joined) {
            q.push(format!(
                " AND {table}id IN (SELECT id FROM finding_text WHERE search LIKE "
            ))
            .push_bind(like_pattern(text))
            .push(")");
        }
        if let Some(from) = self.first_seen_from {
            q.push(format!(" AND {table}first_seen >= "))
                .push_bind(from);
        }
        if let Some(until) = self.first_seen_until {
            q.push(format!(" AND {table}first_seen < "))
                .push_bind(until);
        }
    }
}

/// What a filter's columns are read from.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    /// A counter table (`tenant_counts`, `finding_counts`), which has the dimensions
    /// the counters are kept by as columns.
    Counters,
    /// `finding_view` of `tenant`, its columns prefixed by `table` (`""`, or
    /// `"finding_view."` when the query joins another table); `text_joined` when
    /// the query reads the search text from the `finding_text` it joins;
    /// `breaches_joined` when it reads the breaches (and the statuses asked for)
    /// from the `finding_status` it joins.
    View {
        tenant: Uuid,
        table: &'a str,
        text_joined: bool,
        breaches_joined: bool,
    },
}

fn like_pattern(text: &str) -> String {
    format!("%{}%", escape_like(text))
}

/// ` AND column = $n` for one value: unlike `= ANY($n)`, an index on
/// (tenant, column, sort keys...) then also delivers the order, so a page of one
/// asset is read, not sorted.
fn push_in(q: &mut QueryBuilder<'_, Postgres>, column: &str, values: &[String]) {
    q.push(" AND ").push(column);
    match values {
        [one] => q.push(" = ").push_bind(one.clone()),
        many => q.push(" = ANY(").push_bind(many.to_vec()).push(")"),
    };
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortKey {
    Severity,
    FirstSeen,
    LastSeen,
    DueAt,
}

impl SortKey {
    fn column(self) -> &'static str {
        match self {
            SortKey::Severity => "severity_rank",
            SortKey::FirstSeen => "first_seen",
            SortKey::LastSeen => "last_seen",
            SortKey::DueAt => "due_at",
        }
    }

    fn value(self, row: &FindingRow) -> Value {
        match self {
            SortKey::Severity => json!(row.severity_rank),
            SortKey::FirstSeen => json!(row.first_seen),
            SortKey::LastSeen => json!(row.last_seen),
            SortKey::DueAt => json!(row.due_at),
        }
    }
}

/// `sort=-severity,firstSeen`: keys with their direction (`true` = descending).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sort(pub Vec<(SortKey, bool)>);

impl Sort {
    pub const DEFAULT: &'static str = "-severity,-firstSeen";

    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        let raw = raw.map(str::trim).filter(|s| !s.is_empty());
        let mut keys = Vec::new();
        for part in raw.unwrap_or(Self::DEFAULT).split(',') {
            let part = part.trim();
            let (descending, name) = match part.strip_prefix('-') {
                Some(name) => (true, name),
                None => (false, part.strip_prefix('+').unwrap_or(part)),
            };
            let key = match name {
                "severity" => SortKey::Severity,
                "firstSeen" => SortKey::FirstSeen,
                "lastSeen" => SortKey::LastSeen,
                "dueAt" => SortKey::DueAt,
                _ => {
                    return Err(format!(
                        "cannot sort by {part:?}; use severity, firstSeen, lastSeen or dueAt, \
                         each optionally prefixed with - for descending"
                    ))
                }
            };
            if keys.iter().any(|(k, _)| *k == key) {
                return Err(format!("{name} appears twice in sort"));
            }
            keys.push((key, descending));
        }
        Ok(Self(keys))
    }

    /// The tie-breaker follows the last key's direction, so a uniform sort stays one
    /// index scan.
    fn id_descending(&self) -> bool {
        self.0.last().is_some_and(|(_, d)| *d)
    }

    /// Severity then first sighting, in one direction (the default order): the
    /// order of `finding_text_sort_idx`, which a search can read instead of probing
    /// the text of every finding in the order of `finding_view`, and of
    /// `finding_status_open_sort_idx`, which the breaches can be read from likewise.
    fn follows_sort_indexes(&self) -> bool {
        matches!(
            self.0.as_slice(),
            [(SortKey::Severity, a), (SortKey::FirstSeen, b)] if a == b
        )
    }

    /// On the columns of `table` (`""` or `"finding_text."`).
    fn order_by(&self, table: &str) -> String {
        let mut parts: Vec<String> = self
            .0
            .iter()
            .map(|(k, d)| format!("{table}{} {}", k.column(), if *d { "DESC" } else { "ASC" }))
            .collect();
        parts.push(format!(
            "{table}id {}",
            if self.id_descending() { "DESC" } else { "ASC" }
        ));
        parts.join(", ")
    }

    /// The cursor of `row`: its sort values and id.
    pub fn cursor_of(&self, row: &FindingRow) -> Value {
        let mut values: Vec<Value> = self.0.iter().map(|(k, _)| k.value(row)).collect();
        values.push(json!(row.id));
        Value::Array(values)
    }

    /// ` AND (rows after the cursor)` on the columns of `table`; `Err` if the cursor
    /// was not made for this sort.
    fn push_after(
        &self,
        q: &mut QueryBuilder<'_, Postgres>,
        after: &Value,
        table: &str,
    ) -> Result<(), String> {
        let values = after
            .as_array()
            .ok_or("cursor is not one this server issued")?;
        if values.len() != self.0.len() + 1 {
            return Err("cursor was issued for another sort order".into());
        }
        let id: Uuid = serde_json::from_value(values[self.0.len()].clone())
            .map_err(|_| "cursor is not one this server issued")?;
        let uniform = self.0.iter().all(|(_, d)| *d == self.id_descending());
        if uniform {
            // One row comparison: what a B-tree range scan answers directly.
            q.push(" AND (");
            for (k, _) in &self.0 {
                q.push(table).push(k.column()).push(", ");
            }
            q.push(table)
                .push("id) ")
                .push(if self.id_descending() { "<" } else { ">" })
                .push(" (");
            for ((k, _), v) in self.0.iter().zip(values) {
                push_value(q, *k, v)?;
                q.push(", ");
            }
            q.push_bind(id).push(")");
            return Ok(());
        }
        // Mixed directions: (a > x) OR (a = x AND b < y) OR ... spelled out.
        q.push(" AND (");
        let columns: Vec<(SortKey, bool)> = self.0.clone();
        for i in 0..=columns.len() {
            if i > 0 {
                q.push(" OR ");
            }
            q.push("(");
            for (j, (k, _)) in columns.iter().enumerate().take(i) {
                if j > 0 {
                    q.push(" AND ");
                }
                q.push(table).push(k.column()).push(" = ");
                push_value(q, *k, &values[j])?;
            }
            if i > 0 {
                q.push(" AND ");
            }
            if i < columns.len() {
                let (k, d) = columns[i];
                q.push(table)
                    .push(k.column())
                    .push(if d { " < " } else { " > " });
                push_value(q, k, &values[i])?;
            } else {
                q.push(table)
                    .push("id ")
                    .push(if self.id_descending() { "<" } else { ">" })
                    .push(" ")
                    .push_bind(id);
            }
            q.push(")");
        }
        q.push(")");
        Ok(())
    }
}

fn push_value(
    q: &mut QueryBuilder<'_, Postgres>,
    key: SortKey,
    value: &Value,
) -> Result<(), String> {
    const FORGED: &str = "cursor is not one this server issued";
    match key {
        SortKey::Severity => {
            let rank = value
                .as_i64()
                .filter(|r| (0..=4).contains(r))
                .ok_or(FORGED)?;
            q.push_bind(rank as i16);
        }
        _ => {
            let at: DateTime<Utc> = serde_json::from_value(value.clone()).map_err(|_| FORGED)?;
            q.push_bind(at);
        }
    }
    Ok(())
}

/// One page of rows (one more than `limit`, to tell whether a next page exists).
pub async fn page(
    pool: &PgPool,
    tenant: Uuid,
    filter: &FindingFilter,
    sort: &Sort,
    page: &PageRequest,
    now: DateTime<Utc>,
) -> Result<Result<Vec<FindingRow>, String>, sqlx::Error> {
    let search = filter.text.as_ref().filter(|_| sort.follows_sort_indexes());
    // Only when finding_status can tell every row of the page itself: with a filter on
    // finding_view's columns (an asset, say) the walk would probe finding_view for
    // thousands of breaches of other assets (1 s for the largest asset of a million
    // findings, against 1.8 ms through finding_view's asset index).
    let breaches = filter.breaches_only() && sort.follows_sort_indexes();
    // `table` qualifies the filters' columns, `sort_table` the sort keys'.
    let (mut q, table, sort_table) = match search {
        // The search reads `finding_text_sort_idx` in the page's order, the search
        // text beside each entry, and joins the rows that match.
        Some(text) => {
            let mut q = QueryBuilder::new(format!(
                "SELECT {} FROM finding_text JOIN finding_view ON finding_view.id = finding_text.id \
                 WHERE finding_text.tenant_id = ",
                qualified(COLUMNS, "finding_view.")
            ));
            q.push_bind(tenant)
                .push(" AND finding_view.tenant_id = ")
                .push_bind(tenant)
                .push(" AND finding_text.search LIKE ")
                .push_bind(like_pattern(text));
            (q, "finding_view.", "finding_text.")
        }
        // Breaches are rare among the most severe and newest findings, so walking
        // finding_view in this order and probing each row's deadline took thousands
        // of probes for a page. This reads `finding_status_open_sort_idx` in the
        // page's order, the deadline beside each entry, and joins the rows past it;
        // when there are few breaches, PostgreSQL takes them from the deadline index
        // instead and sorts them.
        None if breaches => {
            let mut q = QueryBuilder::new(format!(
                "SELECT {} FROM finding_status JOIN finding_view ON finding_view.id = finding_status.id \
                 WHERE finding_status.tenant_id = ",
                qualified(COLUMNS, "finding_view.")
            ));
            q.push_bind(tenant)
                .push(" AND finding_view.tenant_id = ")
                .push_bind(tenant)
                .push(
                    " AND finding_status.status IN ('OPEN', 'CONFIRMED') \
                     AND finding_status.due_at < ",
                )
                .push_bind(now);
            if let Some(statuses) = &filter.statuses {
                push_in(&mut q, "finding_status.status", statuses);
            }
            // Also on finding_view's column (below); here it bounds the index walk.
            if let Some(severities) = &filter.severities {
                q.push(" AND finding_status.severity_rank = ANY(")
                    .push_bind(ranks(severities))
                    .push(")");
            }
            (q, "finding_view.", "finding_status.")
        }
        None => {
            let mut q = QueryBuilder::new(format!(
                "SELECT {COLUMNS} FROM finding_view WHERE tenant_id = "
            ));
            q.push_bind(tenant);
            (q, "", "")
        }
    };
    filter.push_where(
        &mut q,
        now,
        Source::View {
            tenant,
            table,
            text_joined: search.is_some(),
            breaches_joined: breaches,
        },
    );
    if let Some(after) = &page.after {
        if let Err(e) = sort.push_after(&mut q, after, sort_table) {
            return Ok(Err(e));
        }
    }
    q.push(" ORDER BY ").push(sort.order_by(sort_table));
    q.push(" LIMIT ").push_bind(page.limit + 1);
    q.push(" OFFSET ").push_bind(page.offset());
    Ok(Ok(q.build_query_as::<FindingRow>().fetch_all(pool).await?))
}

/// The ranks of `severities`; a name that is no severity matches nothing, as it
/// would in finding_view.
fn ranks(severities: &[String]) -> Vec<i16> {
    severities
        .iter()
        .filter_map(|s| s.parse::<Severity>().ok())
        .map(|s| i16::from(s.rank()))
        .collect()
}

/// `a, b` as `t.a, t.b`.
fn qualified(columns: &str, table: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{table}{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The exact number of findings `filter` matches: from the counters when they can
/// answer it (a few dozen rows), by counting otherwise.
pub async fn total(
    pool: &PgPool,
    tenant: Uuid,
    filter: &FindingFilter,
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    if filter.breaches_only() && filter.statuses.is_none() {
        // What the SLA dashboard counts: whole past days from the counters, today's
        // part from one range of the deadline index.
        let by_severity = super::dashboard::breaches(pool, tenant, now).await?;
        return Ok(by_severity
            .into_iter()
            .filter(|(severity, _)| {
                filter
                    .severities
                    .as_ref()
                    .is_none_or(|wanted| wanted.contains(severity))
            })
            .map(|(_, count)| count)
            .sum());
    }
    let mut q = if filter.countable() {
        let table = if filter.assets.is_some() {
            "finding_counts"
        } else {
            "tenant_counts"
        };
        let mut q = QueryBuilder::new(format!(
            "SELECT COALESCE(sum(count), 0)::bigint FROM {table} WHERE tenant_id = "
        ));
        q.push_bind(tenant);
        filter.push_where(&mut q, now, Source::Counters);
        q
    } else if filter.breaches_only() {
        // Of some open statuses only: one range of finding_status's deadline index.
        let mut q = QueryBuilder::new(
            "SELECT count(*) FROM finding_status WHERE status IN ('OPEN', 'CONFIRMED') \
             AND tenant_id = ",
        );
        q.push_bind(tenant).push(" AND due_at < ").push_bind(now);
        if let Some(statuses) = &filter.statuses {
            push_in(&mut q, "status", statuses);
        }
        if let Some(severities) = &filter.severities {
            q.push(" AND severity_rank = ANY(")
                .push_bind(ranks(severities))
                .push(")");
        }
        q
    } else if filter.searches_text_only() {
        // Every finding has one `finding_text` row: no join to count through.
        let mut q = QueryBuilder::new("SELECT count(*) FROM finding_text WHERE tenant_id = ");
        q.push_bind(tenant);
        if let Some(text) = &filter.text {
            q.push(" AND search LIKE ").push_bind(like_pattern(text));
        }
        if let Some(tags) = &filter.tags {
            q.push(" AND tags && ").push_bind(tags.clone());
        }
        q
    } else {
        let mut q = QueryBuilder::new("SELECT count(*) FROM finding_view WHERE tenant_id = ");
        q.push_bind(tenant);
        filter.push_where(
            &mut q,
            now,
            Source::View {
                tenant,
                table: "",
                text_joined: false,
                breaches_joined: false,
            },
        );
        q
    };
    q.build_query_scalar::<i64>().fetch_one(pool).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_sort_is_severity_then_first_seen_both_descending() {
        let sort = Sort::parse(None).unwrap();
        assert_eq!(
            sort.0,
            vec![(SortKey::Severity, true), (SortKey::FirstSeen, true)]
        );
        assert_eq!(
            sort.order_by(""),
            "severity_rank DESC, first_seen DESC, id DESC"
        );
        assert!(sort.follows_sort_indexes());
        assert!(!Sort::parse(Some("-severity,firstSeen"))
            .unwrap()
            .follows_sort_indexes());
        assert!(!Sort::parse(Some("dueAt")).unwrap().follows_sort_indexes());
    }

    #[test]
    fn unknown_and_repeated_sort_keys_are_refused() {
        assert!(Sort::parse(Some("title")).is_err());
        assert!(Sort::parse(Some("dueAt,-dueAt")).is_err());
        assert!(Sort::parse(Some("dueAt")).is_ok());
    }

    #[test]
    fn a_cursor_for_another_sort_is_refused() {
        let sort = Sort::parse(Some("dueAt")).unwrap();
        let mut q = QueryBuilder::new("");
        assert!(sort
            .push_after(&mut q, &json!([4, "2026-01-01T00:00:00Z", Uuid::nil()]), "")
            .is_err());
        assert!(sort
            .push_after(&mut q, &json!(["2026-01-01T00:00:00Z", Uuid::nil()]), "")
            .is_ok());
    }

    #[test]
    fn like_wildcards_in_search_text_are_literal() {
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}
