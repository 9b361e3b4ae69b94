//! The findings projection's SQL: a fixed number of set-based statements per batch.
//! Rows travel as one array per column (`UNNEST`); counter deltas as one JSON array
//! per table (`jsonb_to_recordset`). Either binds any number of rows as a fixed number
//! of parameters.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;
use vulnledger_aggregates::{Severity, SlaPolicy};

use super::{Deltas, Row};
use crate::{Advance, ProjectionError};

/// `Severity::rank` in SQL.
pub const RANK_SQL: &str = "CASE severity WHEN 'CRITICAL' THEN 4 WHEN 'HIGH' THEN 3 \
     WHEN 'MEDIUM' THEN 2 WHEN 'LOW' THEN 1 ELSE 0 END";

const ROW_COLUMNS: &str =
    "id, tenant_id, title, severity, cvss, cve, rule_id, asset, scanner, package, \
     installed_version, fixed_version, location, status, first_seen, last_seen, resolved_at, \
     due_at, risk_acceptance, tags, version";

pub(super) async fn load_rows(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<Row>, ProjectionError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM UNNEST($1::uuid[]) AS k(id) JOIN finding_view USING (id)"
    );
    Ok(sqlx::query_as::<_, Row>(&sql)
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?)
}

pub(super) async fn load_policies(
    conn: &mut PgConnection,
    tenants: &HashSet<Uuid>,
) -> Result<HashMap<Uuid, SlaPolicy>, ProjectionError> {
    if tenants.is_empty() {
        return Ok(HashMap::new());
    }
    let tenants: Vec<Uuid> = tenants.iter().copied().collect();
    let rows: Vec<(Uuid, Value)> = sqlx::query_as(
        "SELECT tenant_id, policy FROM sla_policy_view WHERE tenant_id = ANY($1::uuid[])",
    )
    .bind(&tenants)
    .fetch_all(&mut *conn)
    .await?;
    let mut policies = HashMap::with_capacity(rows.len());
    for (tenant, policy) in rows {
        let policy = serde_json::from_value(policy).map_err(|e| ProjectionError::Undecodable {
            position: 0,
            event_type: "SlaPolicyChanged".to_owned(),
            reason: e.to_string(),
        })?;
        policies.insert(tenant, policy);
    }
    Ok(policies)
}

/// Rows per statement: a bound on the size of one message, not a tuning knob.
const ROWS_PER_STATEMENT: usize = 10_000;

/// Rows travel as one array per column (binary, no JSON to parse): tags, an array
/// per row, as the text of a PostgreSQL array literal. Rows the table has are
/// updated, unless `appending` (a replay's rows new to the table), which does not look.
pub(super) async fn rows(
    conn: &mut PgConnection,
    rows: &[&Row],
    appending: bool,
) -> Result<(), ProjectionError> {
    let sql = format!("WITH {} SELECT 1", row_ctes(appending));
    for chunk in sorted(rows).chunks(ROWS_PER_STATEMENT) {
        bind_rows(sqlx::query(&sql), chunk)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A live batch's rows, counters and touched assets in one statement: a batch of a
/// few status changes is a handful of round trips, and on a busy server each costs
/// more than the rows it carries. With `advance`, the checkpoint's move too
/// ([`Advance::sql`]), so that the statement needs no transaction: none of it is
/// written if the checkpoint is busy or has moved.
///
/// `false`, with nothing written, for a batch that will not go in one statement
/// with `advance` (sightings to write, more rows than a statement carries, assets
/// but no counters to refresh them from). Without `advance` such a batch is written
/// in several statements.
pub(super) async fn rows_and_deltas(
    conn: &mut PgConnection,
    rows: &[&Row],
    d: &Deltas,
    advance: Option<&Advance<'_>>,
) -> Result<bool, ProjectionError> {
    let counters = Counters::of(d);
    let assets = !d.assets.is_empty();
    if rows.len() > ROWS_PER_STATEMENT || (counters.is_none() && assets) {
        if advance.is_some() {
            return Ok(false);
        }
        self::rows(conn, rows, false).await?;
        if let Some(counters) = counters {
            counters.execute(conn).await?;
        }
        if assets {
            refresh_assets(conn, &d.assets).await?;
        }
        return Ok(true);
    }
    if advance.is_some() && !d.sightings.is_empty() {
        return Ok(false);
    }
    let rows = sorted(rows);
    let mut ctes = Vec::with_capacity(4);
    let mut next = 1;
    if !rows.is_empty() {
        ctes.push(row_ctes(false));
        next += ROW_BINDS;
    }
    if counters.is_some() {
        ctes.push(Counters::ctes(next));
        if assets {
            // `$next` is the first of the counters' binds: the rows of finding_counts.
            ctes.push(format!(
                "assets AS ({})",
                assets_sql(next + Counters::BINDS, Some(next))
            ));
            next += 1;
        }
        next += Counters::BINDS;
    }
    let sql = match advance {
        Some(_) => {
            ctes.push(Advance::sql(next));
            format!("WITH {}", ctes.join(", "))
        }
        None if ctes.is_empty() => return Ok(true),
        None => format!("WITH {} SELECT 1", ctes.join(", ")),
    };
    let mut query = sqlx::query(&sql);
    if !rows.is_empty() {
        query = bind_rows(query, &rows);
    }
    if let Some(counters) = counters {
        query = counters.bind(query);
        if assets {
            query = query.bind(touched_assets(&d.assets));
        }
    }
    if let Some(advance) = advance {
        query = advance.bind(query);
    }
    query.execute(&mut *conn).await?;
    Ok(true)
}

fn sorted<'r>(rows: &[&'r Row]) -> Vec<&'r Row> {
    let mut rows = rows.to_vec();
    rows.sort_unstable_by_key(|r| r.id);
    rows
}

/// Binds of [`row_ctes`]: one array per column.
const ROW_BINDS: usize = 21;

/// `v`, the upsert of `finding_view` over binds `$1..$21`, and `s`, that of
/// `finding_status` from it. A row whose status and deadline stay as they were is
/// left alone in `finding_status`, so that a sighting (a new `last_seen`) writes no
/// entry in its indexes.
fn row_ctes(appending: bool) -> String {
    let (view_upsert, status_upsert) = if appending {
        ("", "")
    } else {
        (
            "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, \
             last_seen = EXCLUDED.last_seen, resolved_at = EXCLUDED.resolved_at, \
             due_at = EXCLUDED.due_at, risk_acceptance = EXCLUDED.risk_acceptance, \
             version = EXCLUDED.version",
            "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, \
             due_at = EXCLUDED.due_at \
             WHERE (s.status, s.due_at) IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.due_at)",
        )
    };
    format!(
        "v AS (INSERT INTO finding_view ({ROW_COLUMNS}, severity_rank) \
         SELECT id, tenant_id, title, severity, cvss, cve, rule_id, asset, scanner, package, \
                installed_version, fixed_version, location, status, first_seen, last_seen, \
                resolved_at, due_at, risk_acceptance, tags::text[], version, {RANK_SQL} \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::float8[], $6::text[], \
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
                     $13::text[], $14::text[], $15::timestamptz[], $16::timestamptz[], \
                     $17::timestamptz[], $18::timestamptz[], $19::jsonb[], $20::text[], \
                     $21::int8[]) \
              AS r(id, tenant_id, title, severity, cvss, cve, rule_id, asset, scanner, package, \
                   installed_version, fixed_version, location, status, first_seen, last_seen, \
                   resolved_at, due_at, risk_acceptance, tags, version) {view_upsert} \
           RETURNING id, tenant_id, status, severity_rank, due_at, first_seen), \
         s AS (INSERT INTO finding_status AS s \
             (id, tenant_id, status, severity_rank, due_at, first_seen) \
           SELECT id, tenant_id, status, severity_rank, due_at, first_seen FROM v {status_upsert})"
    )
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds the [`ROW_BINDS`] columns of `rows`, in order.
fn bind_rows<'q>(query: PgQuery<'q>, rows: &[&'q Row]) -> PgQuery<'q> {
    fn column<'r, T>(rows: &[&'r Row], f: impl Fn(&'r Row) -> T) -> Vec<T> {
        rows.iter().map(|r| f(r)).collect()
    }
    query
        .bind(column(rows, |r| r.id))
        .bind(column(rows, |r| r.tenant_id))
        .bind(column(rows, |r| r.title.as_str()))
        .bind(column(rows, |r| r.severity.as_str()))
        .bind(column(rows, |r| r.cvss))
        .bind(column(rows, |r| r.cve.as_deref()))
        .bind(column(rows, |r| r.rule_id.as_deref()))
        .bind(column(rows, |r| r.asset.as_str()))
        .bind(column(rows, |r| r.scanner.as_str()))
        .bind(column(rows, |r| r.package.as_deref()))
        .bind(column(rows, |r| r.installed_version.as_deref()))
        .bind(column(rows, |r| r.fixed_version.as_deref()))
        .bind(column(rows, |r| r.location.as_deref()))
        .bind(column(rows, |r| r.status.as_str()))
        .bind(column(rows, |r| r.first_seen))
        .bind(column(rows, |r| r.last_seen))
        .bind(column(rows, |r| r.resolved_at))
        .bind(column(rows, |r| r.due_at))
        .bind(column(rows, |r| r.risk_acceptance.as_ref()))
        .bind(column(rows, |r| array_literal(&r.tags)))
        .bind(column(rows, |r| r.version))
}

/// The search text and tags of findings new to the tables, with the two sort keys
/// that never change either (severity, first sighting), so that a search in the
/// default order reads one index. They never change after detection, so they live
/// apart from `finding_view`: a status change rewrites a
/// `finding_view` row and every one of its index entries (no HOT update when an
/// indexed column changes), and the trigram index made that the most expensive part
/// of a live batch. Rows that are there already are left alone; `appending` (a
/// replay, which knows the rows are new) does not look.
pub(super) async fn texts(
    conn: &mut PgConnection,
    rows: &[&Row],
    appending: bool,
) -> Result<(), ProjectionError> {
    let mut rows = rows.to_vec();
    rows.sort_unstable_by_key(|r| r.id);
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        fn column<'r, T>(rows: &[&'r Row], f: impl Fn(&'r Row) -> T) -> Vec<T> {
            rows.iter().map(|r| f(r)).collect()
        }
        sqlx::query(&format!(
            "INSERT INTO finding_text (id, tenant_id, search, tags, severity_rank, first_seen) \
             SELECT id, tenant_id, lower(concat_ws(' ', title, cve, asset, package)), \
                    tags::text[], {RANK_SQL}, first_seen \
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
                         $6::text[], $7::text[], $8::text[], $9::timestamptz[]) \
                  AS r(id, tenant_id, title, cve, asset, package, tags, severity, first_seen) {}",
            if appending {
                ""
            } else {
                "ON CONFLICT (id) DO NOTHING"
            }
        ))
        .bind(column(chunk, |r| r.id))
        .bind(column(chunk, |r| r.tenant_id))
        .bind(column(chunk, |r| r.title.as_str()))
        .bind(column(chunk, |r| r.cve.as_deref()))
        .bind(column(chunk, |r| r.asset.as_str()))
        .bind(column(chunk, |r| r.package.as_deref()))
        .bind(column(chunk, |r| array_literal(&r.tags)))
        .bind(column(chunk, |r| r.severity.as_str()))
        .bind(column(chunk, |r| r.first_seen))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// `{"a","b\"c"}`: a text[] literal that PostgreSQL parses back to the same strings.
fn array_literal(items: &[String]) -> String {
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

pub(super) async fn deltas(conn: &mut PgConnection, d: &Deltas) -> Result<(), ProjectionError> {
    if let Some(counters) = Counters::of(d) {
        counters.execute(conn).await?;
    }
    if !d.assets.is_empty() {
        refresh_assets(conn, &d.assets).await?;
    }
    Ok(())
}

/// What a batch adds to the four counter tables, one JSON array each.
struct Counters([Value; 4]);

impl Counters {
    /// Binds of [`Counters::ctes`].
    const BINDS: usize = 4;

    /// `None` when the batch changes no count.
    fn of(d: &Deltas) -> Option<Self> {
        let counts: Vec<Value> = d
            .counts
            .iter()
            .filter(|(_, (count, seconds))| *count != 0 || *seconds != 0)
            .map(
                |((tenant, asset, scanner, severity, status), (count, seconds))| {
                    json!({"tenant_id": tenant, "asset": asset, "scanner": scanner,
                       "severity": severity.as_str(), "status": status.as_str(),
                       "count": count, "resolved_seconds": seconds})
                },
            )
            .collect();
        let mut tenant_counts: HashMap<(Uuid, &str, Severity, &str), (i64, i64)> = HashMap::new();
        for ((tenant, _, scanner, severity, status), (count, seconds)) in &d.counts {
            let total = tenant_counts
                .entry((*tenant, scanner.as_str(), *severity, status.as_str()))
                .or_default();
            total.0 += count;
            total.1 += seconds;
        }
        let tenant_counts: Vec<Value> = tenant_counts
            .into_iter()
            .filter(|(_, (count, seconds))| *count != 0 || *seconds != 0)
            .map(|((tenant, scanner, severity, status), (count, seconds))| {
                json!({"tenant_id": tenant, "scanner": scanner, "severity": severity.as_str(),
                       "status": status, "count": count, "resolved_seconds": seconds})
            })
            .collect();
        let daily: Vec<Value> = d
            .daily
            .iter()
            .map(
                |((tenant, day, severity), [new, remediated, opened, closed])| {
                    json!({"tenant_id": tenant, "day": day, "severity": severity.as_str(),
                       "new": new, "remediated": remediated, "opened": opened, "closed": closed})
                },
            )
            .collect();
        let due: Vec<Value> = d
            .open_due
            .iter()
            .filter(|(_, count)| **count != 0)
            .map(|((tenant, severity, day), count)| {
                json!({"tenant_id": tenant, "severity": severity.as_str(), "due_day": day,
                       "count": count})
            })
            .collect();
        (!counts.is_empty() || !daily.is_empty() || !due.is_empty()).then_some(Self([
            Value::Array(counts),
            Value::Array(tenant_counts),
            Value::Array(daily),
            Value::Array(due),
        ]))
    }

    /// The four upserts as CTEs (`finding`, `tenant`, `daily`, `due`) over binds
    /// `$first..$first+3`: data-modifying CTEs each run to completion, read or not.
    fn ctes(first: usize) -> String {
        let [counts, tenant, daily, due] = [first, first + 1, first + 2, first + 3];
        format!(
            "finding AS ( \
               INSERT INTO finding_counts AS c \
               SELECT * FROM jsonb_to_recordset(${counts}) AS d(tenant_id uuid, asset text, \
                   scanner text, severity text, status text, count bigint, resolved_seconds bigint) \
               ON CONFLICT (tenant_id, asset, scanner, severity, status) DO UPDATE \
               SET count = c.count + EXCLUDED.count, \
                   resolved_seconds = c.resolved_seconds + EXCLUDED.resolved_seconds), \
             tenant AS ( \
               INSERT INTO tenant_counts AS c \
               SELECT * FROM jsonb_to_recordset(${tenant}) AS d(tenant_id uuid, scanner text, \
                   severity text, status text, count bigint, resolved_seconds bigint) \
               ON CONFLICT (tenant_id, scanner, severity, status) DO UPDATE \
               SET count = c.count + EXCLUDED.count, \
                   resolved_seconds = c.resolved_seconds + EXCLUDED.resolved_seconds), \
             daily AS ( \
               INSERT INTO daily_counts AS c \
               SELECT * FROM jsonb_to_recordset(${daily}) AS d(tenant_id uuid, day date, \
                   severity text, new bigint, remediated bigint, opened bigint, closed bigint) \
               ON CONFLICT (tenant_id, day, severity) DO UPDATE \
               SET new = c.new + EXCLUDED.new, remediated = c.remediated + EXCLUDED.remediated, \
                   opened = c.opened + EXCLUDED.opened, closed = c.closed + EXCLUDED.closed), \
             due AS ( \
               INSERT INTO open_due_counts AS c \
               SELECT * FROM jsonb_to_recordset(${due}) AS d(tenant_id uuid, severity text, \
                   due_day date, count bigint) \
               ON CONFLICT (tenant_id, severity, due_day) DO UPDATE \
               SET count = c.count + EXCLUDED.count)"
        )
    }

    fn bind(self, query: PgQuery<'_>) -> PgQuery<'_> {
        let [counts, tenant, daily, due] = self.0;
        query.bind(counts).bind(tenant).bind(daily).bind(due)
    }

    /// The four upserts on their own.
    async fn execute(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let sql = format!("WITH {} SELECT 1", Self::ctes(1));
        self.bind(sqlx::query(&sql)).execute(conn).await?;
        Ok(())
    }
}

/// (tenant, scan, finding): which scans saw which findings. Those the table has are
/// skipped, unless `appending` (a replay into a table without its key yet, which
/// removes repeats at the end: [`forget_repeated_sightings`]).
pub(super) async fn sightings(
    conn: &mut PgConnection,
    sightings: &HashSet<(Uuid, Uuid, Uuid)>,
    appending: bool,
) -> Result<(), ProjectionError> {
    // In key order, so the index is filled page by page rather than at random.
    let mut sightings: Vec<&(Uuid, Uuid, Uuid)> = sightings.iter().collect();
    sightings.sort_unstable_by_key(|(_, scan, finding)| (*scan, *finding));
    let sql = format!(
        "INSERT INTO finding_scans (tenant_id, scan_id, finding_id) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) {}",
        if appending {
            ""
        } else {
            "ON CONFLICT DO NOTHING"
        }
    );
    for chunk in sightings.chunks(ROWS_PER_STATEMENT * 5) {
        sqlx::query(&sql)
            .bind(chunk.iter().map(|s| s.0).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.1).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.2).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Deletes all but one of each sighting of `scans` that is there more than once.
pub(super) async fn forget_repeated_sightings(
    conn: &mut PgConnection,
    scans: &[Uuid],
) -> Result<(), ProjectionError> {
    if scans.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "DELETE FROM finding_scans f \
         USING (SELECT scan_id, finding_id, min(ctid) AS kept FROM finding_scans \
                WHERE scan_id = ANY($1::uuid[]) \
                GROUP BY scan_id, finding_id HAVING count(*) > 1) AS r \
         WHERE f.scan_id = r.scan_id AND f.finding_id = r.finding_id AND f.ctid <> r.kept",
    )
    .bind(scans)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Recomputes the touched assets' rows from their counters (a handful of rows each).
async fn refresh_assets(
    conn: &mut PgConnection,
    assets: &BTreeMap<(Uuid, String), chrono::DateTime<chrono::Utc>>,
) -> Result<(), ProjectionError> {
    sqlx::query(&assets_sql(1, None))
        .bind(touched_assets(assets))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn touched_assets(assets: &BTreeMap<(Uuid, String), chrono::DateTime<chrono::Utc>>) -> Value {
    assets
        .iter()
        .map(|((tenant, asset), last_seen)| {
            json!({"tenant_id": tenant, "asset": asset, "last_seen": last_seen})
        })
        .collect()
}

/// The upsert of the touched assets' rows (bind `$assets`) from their counters: as
/// stored, or, in the statement whose CTEs add the counter rows of bind `$counts` to
/// them (CTEs all see the tables as they were), as stored plus those rows, summed
/// per severity and status before any row is asked whether it counts anything.
/// Each asset reads its own counters through the key (`LATERAL`): joined as a whole,
/// PostgreSQL's generic plan, which expects 100 touched assets, scanned every
/// counter row of every tenant.
fn assets_sql(assets: usize, counts: Option<usize>) -> String {
    let stored = "SELECT severity, status, count FROM finding_counts f \
                  WHERE f.tenant_id = t.tenant_id AND f.asset = t.asset";
    let counters = match counts {
        None => format!("({stored})"),
        Some(counts) => format!(
            "(SELECT severity, status, sum(count) AS count FROM ( \
                 {stored} \
                 UNION ALL \
                 SELECT severity, status, count \
                 FROM jsonb_to_recordset(${counts}) AS d(tenant_id uuid, asset text, \
                     severity text, status text, count bigint) \
                 WHERE d.tenant_id = t.tenant_id AND d.asset = t.asset) AS u \
               GROUP BY severity, status)"
        ),
    };
    let open = "c.status IN ('OPEN', 'CONFIRMED')";
    format!(
        "INSERT INTO asset_view AS a (tenant_id, asset, total, open_total, open_critical, \
             open_high, open_medium, open_low, open_info, worst_rank, last_seen) \
         SELECT t.tenant_id, t.asset, s.*, t.last_seen \
         FROM jsonb_to_recordset(${assets}) AS t(tenant_id uuid, asset text, last_seen timestamptz) \
         CROSS JOIN LATERAL (SELECT \
             COALESCE(sum(c.count), 0)::bigint, \
             COALESCE(sum(c.count) FILTER (WHERE {open}), 0)::bigint, \
             COALESCE(sum(c.count) FILTER (WHERE {open} AND c.severity = 'CRITICAL'), 0)::bigint, \
             COALESCE(sum(c.count) FILTER (WHERE {open} AND c.severity = 'HIGH'), 0)::bigint, \
             COALESCE(sum(c.count) FILTER (WHERE {open} AND c.severity = 'MEDIUM'), 0)::bigint, \
             COALESCE(sum(c.count) FILTER (WHERE {open} AND c.severity = 'LOW'), 0)::bigint, \
             COALESCE(sum(c.count) FILTER (WHERE {open} AND c.severity = 'INFO'), 0)::bigint, \
             COALESCE(max(CASE c.severity WHEN 'CRITICAL' THEN 4 WHEN 'HIGH' THEN 3 \
                 WHEN 'MEDIUM' THEN 2 WHEN 'LOW' THEN 1 ELSE 0 END) \
                 FILTER (WHERE {open} AND c.count > 0), -1) \
             FROM {counters} c) AS s \
         ON CONFLICT (tenant_id, asset) DO UPDATE SET total = EXCLUDED.total, \
             open_total = EXCLUDED.open_total, open_critical = EXCLUDED.open_critical, \
             open_high = EXCLUDED.open_high, open_medium = EXCLUDED.open_medium, \
             open_low = EXCLUDED.open_low, open_info = EXCLUDED.open_info, \
             worst_rank = EXCLUDED.worst_rank, \
             last_seen = GREATEST(a.last_seen, EXCLUDED.last_seen)"
    )
}

/// A new SLA policy: every deadline of the tenant moves, and the open-by-deadline
/// counters are recounted from the rows.
pub(super) async fn change_policy(
    conn: &mut PgConnection,
    tenant: Uuid,
    policy: &SlaPolicy,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO sla_policy_view (tenant_id, policy) VALUES ($1, $2) \
         ON CONFLICT (tenant_id) DO UPDATE SET policy = EXCLUDED.policy",
    )
    .bind(tenant)
    .bind(serde_json::to_value(policy).expect("a policy serializes"))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "WITH moved AS ( \
           UPDATE finding_view SET due_at = first_seen + make_interval(days => CASE severity \
               WHEN 'CRITICAL' THEN $2 WHEN 'HIGH' THEN $3 WHEN 'MEDIUM' THEN $4 \
               WHEN 'LOW' THEN $5 ELSE $6 END) \
           WHERE tenant_id = $1 RETURNING id, due_at) \
         UPDATE finding_status AS s SET due_at = moved.due_at FROM moved \
         WHERE s.id = moved.id AND s.due_at <> moved.due_at",
    )
    .bind(tenant)
    .bind(policy.critical as i32)
    .bind(policy.high as i32)
    .bind(policy.medium as i32)
    .bind(policy.low as i32)
    .bind(policy.info as i32)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM open_due_counts WHERE tenant_id = $1")
        .bind(tenant)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO open_due_counts (tenant_id, severity, due_day, count) \
         SELECT tenant_id, severity, (due_at AT TIME ZONE 'UTC')::date, count(*) \
         FROM finding_view WHERE tenant_id = $1 AND status IN ('OPEN', 'CONFIRMED') \
         GROUP BY 1, 2, 3",
    )
    .bind(tenant)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
