//! Turns a parsed scanner report into events: one transaction, a constant number
//! of round trips whatever the report's size.
//!
//! For each distinct fingerprint in the report: unknown → `FindingDetected`;
//! RESOLVED → `FindingReopened`; any other status → redetected (recorded only as
//! the scan's `FindingsObserved`, so a finding seen daily does not grow a daily
//! event). Open findings of the same target and scanner that the report no longer
//! contains → `FindingAutoResolved`. Then the scan's `ScanCompleted` with the counts.
//! The finding index is updated in the same transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use vulnledger_aggregates::{
    DomainError, Finding, FindingCommand, FindingCounts, FindingDetails, FindingStatus, Scan,
    ScanCommand, SeverityCounts,
};

use crate::commands::{CommandContext, Inline};
use crate::importers::{self, ImportedFinding, ParsedReport};
use crate::indexes::ScanIndex;
use crate::store::{EventStore, NewEvent, StoreError};

/// How often an import that lost a race with another writer is retried.
const MAX_ATTEMPTS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Rejected(#[from] DomainError),
    #[error("the scan kept changing while its results were recorded; retry")]
    Contended,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for IngestError {
    fn from(e: sqlx::Error) -> Self {
        IngestError::Store(e.into())
    }
}

#[derive(Debug)]
pub struct Ingested {
    pub scan: Scan,
    pub version: u64,
    pub position: i64,
    pub counts: FindingCounts,
}

/// One distinct finding of the report, with its fingerprint.
struct Observed<'a> {
    fingerprint: String,
    finding: &'a ImportedFinding,
}

pub async fn ingest(
    store: &EventStore,
    ctx: &CommandContext,
    scan_id: Uuid,
    report: &ParsedReport,
    at: DateTime<Utc>,
) -> Result<Ingested, IngestError> {
    for _ in 0..MAX_ATTEMPTS {
        match attempt(store, ctx, scan_id, report, at).await {
            Err(IngestError::Store(StoreError::Conflict)) => continue,
            other => return other,
        }
    }
    Err(IngestError::Contended)
}

async fn attempt(
    store: &EventStore,
    ctx: &CommandContext,
    scan_id: Uuid,
    report: &ParsedReport,
    at: DateTime<Utc>,
) -> Result<Ingested, IngestError> {
    let tenant = ctx.tenant_id;
    let scan_key = scan_id.to_string();
    let loaded_scan = store.load::<Scan>(tenant, &scan_key).await?;
    let scan = &loaded_scan.aggregate;
    // Refuse early (404, 409) before any work; the domain re-checks on completion.
    scan.decide(ScanCommand::CompleteScan {
        format: report.format.to_string(),
        summary: SeverityCounts::default(),
        findings: FindingCounts::default(),
        observed: Vec::new(),
        at,
    })?;
    let asset = scan.target.clone();

    // The same fingerprint twice in one report is one finding (e.g. a package
    // listed under two image layers); the first occurrence describes it.
    let mut distinct: Vec<Observed> = Vec::with_capacity(report.findings.len());
    let mut seen = HashMap::with_capacity(report.findings.len());
    for finding in &report.findings {
        let fingerprint = importers::fingerprint(tenant, &asset, finding);
        if seen.insert(fingerprint.clone(), ()).is_none() {
            distinct.push(Observed {
                fingerprint,
                finding,
            });
        }
    }
    let fingerprints: Vec<&str> = distinct.iter().map(|o| o.fingerprint.as_str()).collect();

    let mut tx = store.pool().begin().await?;
    let known: Vec<(String, Uuid, String)> = sqlx::query_as(
        "SELECT i.fingerprint, i.finding_id, i.status \
         FROM UNNEST($2::text[]) AS r(fingerprint) \
         JOIN finding_index i ON i.tenant_id = $1 AND i.fingerprint = r.fingerprint",
    )
    .bind(tenant)
    .bind(&fingerprints)
    .fetch_all(&mut *tx)
    .await?;
    let known: HashMap<String, (Uuid, FindingStatus)> = known
        .into_iter()
        .filter_map(|(fp, id, status)| Some((fp, (id, status.parse().ok()?))))
        .collect();
    // The open findings of this target and scanner that the report lacks. The
    // difference is taken here, not in SQL: a generic plan of `NOT (fingerprint =
    // ANY($n))` compares every row with every fingerprint (90 s at 100k each),
    // while a hash set is linear whatever plan PostgreSQL picks.
    let reported: std::collections::HashSet<&str> = fingerprints.iter().copied().collect();
    let open: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT fingerprint, finding_id FROM finding_index \
         WHERE tenant_id = $1 AND asset = $2 AND scanner = $3 \
           AND status IN ('OPEN', 'CONFIRMED', 'RISK_ACCEPTED')",
    )
    .bind(tenant)
    .bind(&asset)
    .bind(&scan.scanner)
    .fetch_all(&mut *tx)
    .await?;
    let gone: Vec<Uuid> = open
        .into_iter()
        .filter(|(fingerprint, _)| !reported.contains(fingerprint.as_str()))
        .map(|(_, id)| id)
        .collect();

    // Only findings that change state need their history.
    let to_load: Vec<String> = known
        .values()
        .filter(|(_, status)| *status == FindingStatus::Resolved)
        .map(|(id, _)| id.to_string())
        .chain(gone.iter().map(Uuid::to_string))
        .collect();
    let mut histories = store
        .load_many::<Finding>(&mut tx, tenant, &to_load)
        .await?;

    let metadata = ctx.metadata();
    let mut rows: Vec<NewEvent> = Vec::new();
    let mut push = |id: &str, version: u64, events: Vec<_>| -> Result<(), StoreError> {
        for (i, event) in events.iter().enumerate() {
            rows.push(NewEvent::from_domain::<Finding>(
                id,
                (version + 1 + i as u64) as i64,
                event,
                &metadata,
            )?);
        }
        Ok(())
    };

    let mut counts = FindingCounts::default();
    let mut summary = SeverityCounts::default();
    let mut observed = Vec::with_capacity(distinct.len());
    let mut index_rows = IndexRows::default();
    for o in &distinct {
        summary.add(o.finding.severity);
        let id = match known.get(&o.fingerprint) {
            None => {
                let id = Uuid::now_v7();
                let events = Finding::default().decide(FindingCommand::DetectFinding {
                    details: details(o, &asset, &scan.scanner, &scan.tags),
                    scan_id,
                    at,
                })?;
                push(&id.to_string(), 0, events)?;
                counts.new += 1;
                id
            }
            Some((id, FindingStatus::Resolved)) => {
                let history = &histories[&id.to_string()];
                let events = history
                    .aggregate
                    .decide(FindingCommand::ReopenFinding { scan_id, at })?;
                push(&id.to_string(), history.version, events)?;
                counts.reopened += 1;
                *id
            }
            Some((id, _)) => {
                counts.redetected += 1;
                *id
            }
        };
        observed.push(id);
        match known.get(&o.fingerprint) {
            None => index_rows.created(&o.fingerprint, id),
            Some((_, FindingStatus::Resolved)) => index_rows.reopened(id),
            Some(_) => index_rows.seen(id),
        }
    }
    for id in &gone {
        let history = histories
            .remove(&id.to_string())
            .ok_or_else(|| StoreError::Corrupt {
                aggregate_type: "finding".into(),
                aggregate_id: id.to_string(),
                sequence: 0,
                reason: "indexed but has no events".into(),
            })?;
        let events = history
            .aggregate
            .decide(FindingCommand::ResolveFinding { scan_id, at })?;
        push(&id.to_string(), history.version, events)?;
        counts.resolved += 1;
    }
    counts.total = distinct.len() as u64;

    let scan_events = scan.decide(ScanCommand::CompleteScan {
        format: report.format.to_string(),
        summary,
        findings: counts,
        observed,
        at,
    })?;
    let scan_rows = scan_events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            NewEvent::from_domain::<Scan>(
                &scan_key,
                (loaded_scan.version + 1 + i as u64) as i64,
                e,
                &metadata,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let scan_version = loaded_scan.version + scan_rows.len() as u64;
    // Findings first, the scan's completion last: a reader that sees the scan
    // completed has seen every finding it speaks of.
    rows.extend(scan_rows);
    let appended = store.append(&mut tx, &rows).await?;

    index_rows
        .write(&mut tx, tenant, &asset, &scan.scanner, scan_id, at)
        .await?;
    if !gone.is_empty() {
        sqlx::query(
            "UPDATE finding_index AS i SET status = 'RESOLVED', risk_expires_at = NULL \
             FROM UNNEST($2::uuid[]) AS t(finding_id) \
             WHERE i.tenant_id = $1 AND i.finding_id = t.finding_id",
        )
        .bind(tenant)
        .bind(&gone)
        .execute(&mut *tx)
        .await?;
    }
    let mut scan = loaded_scan.aggregate;
    for event in scan_events {
        cqrs_es::Aggregate::apply(&mut scan, event);
    }
    ScanIndex.apply(&mut tx, tenant, &scan_key, &scan).await?;
    tx.commit().await?;
    crate::store::wake::committed(store.pool(), &rows);
    metrics::counter!("vulnledger_events_appended_total").increment(rows.len() as u64);
    Ok(Ingested {
        scan,
        version: scan_version,
        position: appended.last().map_or(0, |a| a.position),
        counts,
    })
}

/// A new finding's details. It carries its scan's tags (the user's own: `prod`,
/// `team-a`) besides the report's, so that the `tag` filters of the finding list,
/// the assets and the dashboard select what was tagged; the report's are dropped
/// first if both together pass the cap, `suppressed` never.
fn details(o: &Observed, asset: &str, scanner: &str, scan_tags: &[String]) -> FindingDetails {
    let f = o.finding;
    let mut tags: Vec<String> = Vec::with_capacity(scan_tags.len() + f.tags.len() + 1);
    if f.suppressed {
        tags.push(importers::SUPPRESSED_TAG.to_owned());
    }
    for tag in scan_tags.iter().chain(&f.tags) {
        if tags.len() == vulnledger_aggregates::text::MAX_TAGS {
            break;
        }
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    FindingDetails {
        fingerprint: o.fingerprint.clone(),
        asset: asset.to_owned(),
        scanner: scanner.to_owned(),
        title: f.title.clone(),
        severity: f.severity,
        cvss: f.cvss,
        cve: f.cve.clone(),
        rule_id: f.rule_id.clone(),
        package: f.package.clone(),
        installed_version: f.installed_version.clone(),
        fixed_version: f.fixed_version.clone(),
        location: f.location.clone(),
        description: f.description.clone(),
        tags,
    }
}

/// The report's findings as index rows, written in two statements.
#[derive(Default)]
struct IndexRows {
    new_fingerprints: Vec<String>,
    new_ids: Vec<Uuid>,
    /// Redetected: only `last_seen` changes. Their status is not ours to write:
    /// no event of this import guards it against a concurrent triage.
    seen_ids: Vec<Uuid>,
    /// Reopened: their `FindingReopened` event makes a concurrent change collide.
    reopened_ids: Vec<Uuid>,
}

impl IndexRows {
    fn created(&mut self, fingerprint: &str, id: Uuid) {
        self.new_fingerprints.push(fingerprint.to_owned());
        self.new_ids.push(id);
    }

    fn seen(&mut self, id: Uuid) {
        self.seen_ids.push(id);
    }

    fn reopened(&mut self, id: Uuid) {
        self.reopened_ids.push(id);
    }

    async fn write(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: Uuid,
        asset: &str,
        scanner: &str,
        scan_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // A plain INSERT: if another import created the same fingerprint meanwhile,
        // the primary key fails this transaction (Conflict) and the import retries
        // against the new state, so a finding is never created twice.
        sqlx::query(
            "INSERT INTO finding_index \
               (tenant_id, fingerprint, finding_id, asset, scanner, status, last_seen, last_scan_id) \
             SELECT $1, t.fingerprint, t.finding_id, $2, $3, 'OPEN', $4, $5 \
             FROM UNNEST($6::text[], $7::uuid[]) AS t(fingerprint, finding_id)",
        )
        .bind(tenant)
        .bind(asset)
        .bind(scanner)
        .bind(at)
        .bind(scan_id)
        .bind(&self.new_fingerprints)
        .bind(&self.new_ids)
        .execute(&mut *tx)
        .await?;
        // Joins against UNNEST rather than `= ANY($n)`: whatever plan PostgreSQL
        // caches for this statement, a join stays linear in the report's size.
        let ids: Vec<Uuid> = self
            .seen_ids
            .iter()
            .chain(&self.reopened_ids)
            .copied()
            .collect();
        let reopened: Vec<bool> = self
            .seen_ids
            .iter()
            .map(|_| false)
            .chain(self.reopened_ids.iter().map(|_| true))
            .collect();
        sqlx::query(
            "UPDATE finding_index AS i SET last_seen = $2, last_scan_id = $3, \
               status = CASE WHEN t.reopened THEN 'OPEN' ELSE i.status END \
             FROM UNNEST($4::uuid[], $5::bool[]) AS t(finding_id, reopened) \
             WHERE i.tenant_id = $1 AND i.finding_id = t.finding_id",
        )
        .bind(tenant)
        .bind(at)
        .bind(scan_id)
        .bind(&ids)
        .bind(&reopened)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
