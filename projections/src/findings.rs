//! The findings projection: one row per finding (`finding_view`), which scans saw it
//! (`finding_scans`), and exact counters for totals and dashboards (`finding_counts`,
//! `tenant_counts`, `asset_view`, `daily_counts`, `open_due_counts`).
//!
//! A batch is folded in memory first: the rows it touches are loaded once, every
//! event is applied to them in order, and each counter gets the difference between
//! a row's contribution before and after the batch. Writing is then a fixed number
//! of set-based statements whatever the batch size, which is what makes replaying
//! millions of events (rebuild, demo data) fast.
//!
//! Every finding event also carries its aggregate sequence, and a row remembers the
//! last one it applied, so an event is never applied twice to a row even if a
//! caller were to hand the same batch over again.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;
use vulnledger_aggregates::{
    FindingAutoResolved, FindingDetected, FindingReopened, FindingStatus, FindingStatusChanged,
    FindingsObserved, RiskAcceptanceExpired, RiskAcceptanceRevoked, RiskAccepted, Severity,
    SlaPolicy, SlaPolicyChanged,
};

use crate::{checkpoint, Advance, ProjectedEvent, Projection, ProjectionError, Replay};

mod write;

pub struct FindingsProjection;

pub const NAME: &str = "findings";

impl FindingsProjection {
    /// Applies a live batch and moves its checkpoint in one statement, with no
    /// transaction, when the batch only changes rows the tables hold (triage, the
    /// commonest live batch); `false`, with nothing written, for any other batch, and
    /// when the checkpoint is busy or has moved.
    pub async fn apply_in_one_statement(
        &self,
        conn: &mut PgConnection,
        events: &[ProjectedEvent],
        advance: &Advance<'_>,
    ) -> Result<bool, ProjectionError> {
        Fold::default().one_statement(conn, events, advance).await
    }
}

#[async_trait::async_trait]
impl Projection for FindingsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "finding_view",
            "finding_status",
            "finding_text",
            "finding_scans",
            "finding_counts",
            "tenant_counts",
            "asset_view",
            "daily_counts",
            "open_due_counts",
            "sla_policy_view",
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[ProjectedEvent],
    ) -> Result<(), ProjectionError> {
        let mut fold = Fold::default();
        fold.feed(conn, events).await?;
        fold.flush(conn).await
    }

    /// Triage, the commonest live batch, in two round trips: its rows are read, then
    /// written with their counters and the checkpoint in one statement, with no
    /// transaction (a transaction takes five). Any other batch, or one whose
    /// checkpoint is busy or has moved, is applied in a transaction.
    async fn apply_advancing(
        &self,
        conn: &mut PgConnection,
        events: &[ProjectedEvent],
        advance: &Advance<'_>,
    ) -> Result<bool, ProjectionError> {
        if self.apply_in_one_statement(conn, events, advance).await? {
            return Ok(true);
        }
        crate::apply_in_transaction(self, conn, events, advance).await
    }

    fn replay(&self, max_rows: usize) -> Option<Box<dyn Replay>> {
        Some(Box::new(FindingsReplay {
            fold: Fold {
                max_rows: max_rows.max(1),
                ..Fold::replay()
            },
            max_sightings: REPLAY_MAX_SIGHTINGS,
            // A bound below a rebuild's batch is looked at within the batch too.
            step: max_rows.max(1),
        }))
    }
}

/// A replay that writes out and forgets its rows whenever it holds `max_rows`, and
/// its sightings whenever it holds as many: what a rebuild of a history too large for
/// memory does, at a size a test can reach. It looks at what it holds after every
/// `max_rows` events, not only after each batch it is fed.
pub fn replay_holding(max_rows: usize) -> Box<dyn Replay> {
    let max_rows = max_rows.max(1);
    Box::new(FindingsReplay {
        fold: Fold {
            max_rows,
            ..Fold::replay()
        },
        max_sightings: max_rows,
        step: max_rows,
    })
}

/// A rebuild's fold: one over the whole history, flushed when it holds too much.
struct FindingsReplay {
    fold: Fold,
    max_sightings: usize,
    /// Events folded between two looks at how much is held.
    step: usize,
}

/// Tables the replay only appends to, whose keys the rebuild builds afterwards.
const APPENDED_BY_REPLAY: &[&str] = &["finding_text", "finding_scans"];

#[async_trait::async_trait]
impl Replay for FindingsReplay {
    async fn feed(
        &mut self,
        conn: &mut PgConnection,
        events: &[ProjectedEvent],
    ) -> Result<(), ProjectionError> {
        for events in events.chunks(self.step) {
            self.fold.feed(conn, events).await?;
            if self.fold.rows.len() >= self.fold.max_rows {
                self.fold.flush(conn).await?;
            } else if self.fold.deltas.sightings.len() >= self.max_sightings {
                // Sightings never change once written: they go out alone, and the
                // rows stay held, to be written once.
                let sightings = std::mem::take(&mut self.fold.deltas.sightings);
                self.fold.write_sightings(conn, &sightings).await?;
            }
        }
        Ok(())
    }

    /// The search texts of the rows not written yet. Their trigram index is the
    /// longest of a rebuild's index builds (34 s at 1M findings), and it can run
    /// while the rows and sightings are written, on the core those writes leave idle.
    async fn finish_early(
        &mut self,
        conn: &mut PgConnection,
    ) -> Result<&'static [&'static str], ProjectionError> {
        let fold = &mut self.fold;
        let new: Vec<&Row> = fold
            .touched
            .iter()
            .filter(|id| !fold.stored.contains_key(id))
            .map(|id| &fold.rows[id])
            .collect();
        write::texts(conn, &new, true).await?;
        fold.texts_written = true;
        Ok(&["finding_text"])
    }

    async fn finish(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        self.fold.flush(conn).await?;
        // A scan whose sightings went out in two writes may have had the same
        // finding in both (seen by the scan, then reopened by it, say).
        let repeated: Vec<Uuid> = self.fold.repeated_scans.iter().copied().collect();
        write::forget_repeated_sightings(conn, &repeated).await
    }

    fn deferred_keys(&self) -> &'static [&'static str] {
        APPENDED_BY_REPLAY
    }
}

/// `finding_view` as the projection holds it in memory.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub(crate) struct Row {
    pub id: Uuid,
    pub tenant_id: Uuid,
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
}

impl Row {
    fn severity(&self) -> Severity {
        self.severity.parse().unwrap_or(Severity::Info)
    }

    fn status(&self) -> FindingStatus {
        self.status.parse().unwrap_or_default()
    }

    /// What this row adds to the counters.
    fn contribution(&self) -> Contribution {
        let status = self.status();
        Contribution {
            tenant_id: self.tenant_id,
            asset: self.asset.clone(),
            scanner: self.scanner.clone(),
            severity: self.severity(),
            status,
            resolved_seconds: match (status, self.resolved_at) {
                (FindingStatus::Resolved, Some(at)) => (at - self.first_seen).num_seconds().max(0),
                _ => 0,
            },
            open_due_day: status.is_open().then(|| self.due_at.date_naive()),
            last_seen: self.last_seen,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Contribution {
    tenant_id: Uuid,
    asset: String,
    scanner: String,
    severity: Severity,
    status: FindingStatus,
    resolved_seconds: i64,
    open_due_day: Option<NaiveDate>,
    last_seen: DateTime<Utc>,
}

impl Contribution {
    /// What of this row `asset_view` shows: the asset's totals, open counts by
    /// severity and latest sighting.
    fn on_asset(&self) -> (Uuid, &str, Severity, bool, DateTime<Utc>) {
        (
            self.tenant_id,
            &self.asset,
            self.severity,
            self.status.is_open(),
            self.last_seen,
        )
    }
}

/// (tenant, asset, scanner, severity, status): the key of `finding_counts`.
pub(crate) type CountKey = (Uuid, String, String, Severity, FindingStatus);

/// Counter changes of one batch, keyed like their tables.
#[derive(Default)]
pub(crate) struct Deltas {
    /// (tenant, asset, scanner, severity, status) → (count, resolved seconds)
    pub counts: HashMap<CountKey, (i64, i64)>,
    /// (tenant, day, severity) → [new, remediated, opened, closed]
    pub daily: HashMap<(Uuid, NaiveDate, Severity), [i64; 4]>,
    /// (tenant, severity, due day) → open count
    pub open_due: HashMap<(Uuid, Severity, NaiveDate), i64>,
    /// (tenant, asset) → latest last_seen among the batch's rows
    pub assets: BTreeMap<(Uuid, String), DateTime<Utc>>,
    /// (tenant, scan, finding)
    pub sightings: HashSet<(Uuid, Uuid, Uuid)>,
}

impl Deltas {
    fn add(&mut self, c: &Contribution, sign: i64) {
        let count = self
            .counts
            .entry((
                c.tenant_id,
                c.asset.clone(),
                c.scanner.clone(),
                c.severity,
                c.status,
            ))
            .or_default();
        count.0 += sign;
        count.1 += sign * c.resolved_seconds;
        if let Some(day) = c.open_due_day {
            *self
                .open_due
                .entry((c.tenant_id, c.severity, day))
                .or_default() += sign;
        }
    }

    /// A status change on `day`, for trends.
    fn transition(
        &mut self,
        tenant: Uuid,
        severity: Severity,
        from: Option<FindingStatus>,
        to: FindingStatus,
        at: DateTime<Utc>,
    ) {
        let day = self
            .daily
            .entry((tenant, at.date_naive(), severity))
            .or_default();
        if from.is_none() {
            day[0] += 1;
        }
        if to == FindingStatus::Resolved && from != Some(FindingStatus::Resolved) {
            day[1] += 1;
        }
        let was_open = from.is_some_and(FindingStatus::is_open);
        if !was_open && to.is_open() {
            day[2] += 1;
        }
        if was_open && !to.is_open() {
            day[3] += 1;
        }
    }
}

/// Sightings held by a replay before they are written out.
const REPLAY_MAX_SIGHTINGS: usize = 1_000_000;

/// The fold of a run of events over finding rows, written out by [`Fold::flush`].
///
/// A live batch is one fold and one flush. A replay (rebuild) keeps one fold over
/// many batches and flushes only when it holds too much: a finding detected, seen by
/// four scans and resolved is then written once instead of six times, and rows are
/// not read back from the tables they were just written to.
pub(crate) struct Fold {
    rows: HashMap<Uuid, Row>,
    /// What each row held in memory contributes to the counters as stored in the
    /// tables; absent for rows the tables do not hold yet.
    stored: HashMap<Uuid, Contribution>,
    /// Rows changed since the last flush.
    touched: HashSet<Uuid>,
    /// Transitions and sightings since the last flush (counts are computed at flush
    /// time from `stored` and the rows).
    deltas: Deltas,
    policies: HashMap<Uuid, SlaPolicy>,
    /// For a replay into tables only it writes, starting empty: the rows it wrote
    /// out and no longer holds, the only ones worth looking up. `None` for a live
    /// batch, where the tables may hold any row.
    dropped: Option<HashSet<Uuid>>,
    /// Rows held before a replay writes them out and forgets them.
    max_rows: usize,
    /// For a replay: the scans whose sightings it has written, and those among them
    /// whose sightings it wrote more than once (the only ones that may repeat, as a
    /// replay appends them without looking at what the table holds).
    sighted_scans: HashSet<Uuid>,
    repeated_scans: HashSet<Uuid>,
    /// The texts of the rows the next flush writes are written already
    /// ([`FindingsReplay::finish_early`]).
    texts_written: bool,
}

impl Default for Fold {
    fn default() -> Self {
        Self {
            rows: HashMap::new(),
            stored: HashMap::new(),
            touched: HashSet::new(),
            deltas: Deltas::default(),
            policies: HashMap::new(),
            dropped: None,
            max_rows: crate::DEFAULT_REPLAY_ROWS,
            sighted_scans: HashSet::new(),
            repeated_scans: HashSet::new(),
            texts_written: false,
        }
    }
}

impl Fold {
    /// A fold for a replay into empty tables that nothing else writes.
    pub(crate) fn replay() -> Self {
        Self {
            dropped: Some(HashSet::new()),
            ..Self::default()
        }
    }

    /// A replay into tables only it writes: it knows which rows they hold.
    fn replaying(&self) -> bool {
        self.dropped.is_some()
    }

    fn may_be_stored(&self, id: &Uuid) -> bool {
        !self.rows.contains_key(id) && self.dropped.as_ref().is_none_or(|d| d.contains(id))
    }

    /// Forgets the held rows (the tables have them all after a flush).
    fn drop_rows(&mut self) {
        if let Some(dropped) = &mut self.dropped {
            dropped.extend(self.rows.keys().copied());
        }
        self.rows.clear();
        self.stored.clear();
    }

    /// Applies `events` (commit order) to the rows, loading those not held yet.
    pub(crate) async fn feed(
        &mut self,
        conn: &mut PgConnection,
        events: &[ProjectedEvent],
    ) -> Result<(), ProjectionError> {
        // A policy change rewrites deadlines of rows already written, so what comes
        // before it is written first, and what comes after sees the new policy.
        let mut start = 0;
        for (i, event) in events.iter().enumerate() {
            if event.aggregate_type == "settings" && event.event_type == "SlaPolicyChanged" {
                self.apply(conn, &events[start..i]).await?;
                let changed: SlaPolicyChanged = event.decode()?;
                self.flush(conn).await?;
                write::change_policy(conn, event.tenant_id, &changed.policy).await?;
                // Held rows have stale deadlines now; the tables have the right ones.
                self.drop_rows();
                self.policies.insert(event.tenant_id, changed.policy);
                start = i + 1;
            }
        }
        self.apply(conn, &events[start..]).await
    }

    /// Applies finding and scan events (no policy change among them).
    async fn apply(
        &mut self,
        conn: &mut PgConnection,
        events: &[ProjectedEvent],
    ) -> Result<(), ProjectionError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut detecting_tenants = HashSet::new();
        for event in events {
            match (event.aggregate_type.as_str(), event.event_type.as_str()) {
                ("finding", kind) => {
                    if kind == "FindingDetected" && !self.policies.contains_key(&event.tenant_id) {
                        detecting_tenants.insert(event.tenant_id);
                    }
                    missing.extend(parse_id(event));
                }
                ("scan", "FindingsObserved") => {
                    missing.extend(event.decode::<FindingsObserved>()?.finding_ids);
                }
                _ => {}
            }
        }
        // A detected finding is normally new, but the tables are asked anyway (a
        // batch delivered again finds its rows there, and the version check below
        // skips it), unless this is a replay that knows what they hold.
        missing.retain(|id| self.may_be_stored(id));
        missing.sort_unstable();
        missing.dedup();
        for row in write::load_rows(conn, &missing).await? {
            self.stored.insert(row.id, row.contribution());
            self.rows.insert(row.id, row);
        }
        for (tenant, policy) in write::load_policies(conn, &detecting_tenants).await? {
            self.policies.insert(tenant, policy);
        }
        for tenant in detecting_tenants {
            self.policies.entry(tenant).or_default();
        }

        for event in events {
            match event.aggregate_type.as_str() {
                "finding" => {
                    let Some(id) = parse_id(event) else { continue };
                    if self
                        .rows
                        .get(&id)
                        .is_some_and(|r| r.version >= event.sequence)
                    {
                        continue;
                    }
                    let policy = self
                        .policies
                        .get(&event.tenant_id)
                        .copied()
                        .unwrap_or_default();
                    if apply_finding_event(&mut self.rows, &mut self.deltas, id, event, &policy)? {
                        self.touched.insert(id);
                    }
                }
                "scan" if event.event_type == "FindingsObserved" => {
                    let observed: FindingsObserved = event.decode()?;
                    let scan_id = parse_id(event);
                    for id in observed.finding_ids {
                        if let Some(scan_id) = scan_id {
                            self.deltas.sightings.insert((event.tenant_id, scan_id, id));
                        }
                        if let Some(row) = self.rows.get_mut(&id) {
                            if observed.at > row.last_seen {
                                row.last_seen = observed.at;
                                self.touched.insert(id);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes the changed rows and the counters' differences; drops the held rows
    /// when there are too many to keep.
    pub(crate) async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let deltas = self.take_deltas();
        let changed: Vec<&Row> = self.touched.iter().map(|id| &self.rows[id]).collect();
        let (new, known): (Vec<&Row>, Vec<&Row>) = changed
            .iter()
            .copied()
            .partition(|row| !self.stored.contains_key(&row.id));
        if self.replaying() {
            write::rows(conn, &known, false).await?;
            write::rows(conn, &new, true).await?;
            write::deltas(conn, &deltas).await?;
        } else {
            write::rows_and_deltas(conn, &changed, &deltas, None).await?;
        }
        if !std::mem::take(&mut self.texts_written) {
            write::texts(conn, &new, self.replaying()).await?;
        }
        self.write_sightings(conn, &deltas.sightings).await?;
        if self.rows.len() >= self.max_rows {
            self.touched.clear();
            self.drop_rows();
        } else {
            for id in self.touched.drain() {
                self.stored.insert(id, self.rows[&id].contribution());
            }
        }
        self.touched.clear();
        Ok(())
    }

    /// The differences the touched rows make to the counters, with the assets whose
    /// figures they change, and the sightings and transitions since the last flush.
    fn take_deltas(&mut self) -> Deltas {
        let mut deltas = std::mem::take(&mut self.deltas);
        for id in &self.touched {
            let row = &self.rows[id];
            let now = row.contribution();
            let old = self.stored.get(id);
            if let Some(old) = old {
                deltas.add(old, -1);
            }
            deltas.add(&now, 1);
            // A change the asset does not show (triage from OPEN to CONFIRMED, the
            // commonest) need not recompute the asset: one statement less per batch.
            if old.is_none_or(|old| old.on_asset() != now.on_asset()) {
                let last_seen = deltas
                    .assets
                    .entry((row.tenant_id, row.asset.clone()))
                    .or_insert(row.last_seen);
                *last_seen = (*last_seen).max(row.last_seen);
            }
        }
        deltas
    }

    /// [`FindingsProjection::apply_in_one_statement`].
    ///
    /// The rows are read before that statement, outside it, and are still as read
    /// when it runs: only this projection's worker writes them, and a rebuild that
    /// swaps other tables in moves the checkpoint, which the statement checks.
    async fn one_statement(
        mut self,
        conn: &mut PgConnection,
        events: &[ProjectedEvent],
        advance: &Advance<'_>,
    ) -> Result<bool, ProjectionError> {
        // A policy change writes while it is folded, and scans' sightings and new
        // findings' texts take statements of their own.
        if events.iter().any(|e| e.aggregate_type != "finding") {
            return Ok(false);
        }
        self.feed(conn, events).await?;
        let deltas = self.take_deltas();
        let changed: Vec<&Row> = self.touched.iter().map(|id| &self.rows[id]).collect();
        if changed.iter().any(|row| !self.stored.contains_key(&row.id)) {
            return Ok(false);
        }
        match write::rows_and_deltas(conn, &changed, &deltas, Some(advance)).await {
            Ok(written) => Ok(written),
            Err(ProjectionError::Database(e)) if checkpoint::refused(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes sightings: a live batch skips those the table has; a replay appends
    /// them and notes the scans it wrote sightings of before.
    async fn write_sightings(
        &mut self,
        conn: &mut PgConnection,
        sightings: &HashSet<(Uuid, Uuid, Uuid)>,
    ) -> Result<(), ProjectionError> {
        if self.replaying() {
            let scans: HashSet<Uuid> = sightings.iter().map(|(_, scan, _)| *scan).collect();
            for scan in scans {
                if !self.sighted_scans.insert(scan) {
                    self.repeated_scans.insert(scan);
                }
            }
        }
        write::sightings(conn, sightings, self.replaying()).await
    }
}

fn parse_id(event: &ProjectedEvent) -> Option<Uuid> {
    event.aggregate_id.parse().ok()
}

/// Applies one finding event to its row; `false` if it changes nothing here.
fn apply_finding_event(
    rows: &mut HashMap<Uuid, Row>,
    deltas: &mut Deltas,
    id: Uuid,
    event: &ProjectedEvent,
    policy: &SlaPolicy,
) -> Result<bool, ProjectionError> {
    if event.event_type == "FindingDetected" {
        let detected: FindingDetected = event.decode()?;
        let d = detected.details;
        let at = detected.detected_at;
        deltas.transition(event.tenant_id, d.severity, None, FindingStatus::Open, at);
        deltas
            .sightings
            .insert((event.tenant_id, detected.scan_id, id));
        rows.insert(
            id,
            Row {
                id,
                tenant_id: event.tenant_id,
                title: d.title,
                severity: d.severity.as_str().to_owned(),
                cvss: d.cvss,
                cve: d.cve,
                rule_id: d.rule_id,
                asset: d.asset,
                scanner: d.scanner,
                package: d.package,
                installed_version: d.installed_version,
                fixed_version: d.fixed_version,
                location: d.location,
                status: FindingStatus::Open.as_str().to_owned(),
                first_seen: at,
                last_seen: at,
                resolved_at: None,
                due_at: policy.due_at(d.severity, at),
                risk_acceptance: None,
                tags: d.tags,
                version: event.sequence,
            },
        );
        return Ok(true);
    }
    // A finding event for a finding this projection never saw detected cannot be
    // placed anywhere; the store guarantees detection comes first.
    let Some(row) = rows.get_mut(&id) else {
        return Ok(false);
    };
    let (to, at, acceptance) = match event.event_type.as_str() {
        "FindingAutoResolved" => {
            let e: FindingAutoResolved = event.decode()?;
            deltas.sightings.insert((event.tenant_id, e.scan_id, id));
            (FindingStatus::Resolved, e.at, None)
        }
        "FindingReopened" => {
            let e: FindingReopened = event.decode()?;
            deltas.sightings.insert((event.tenant_id, e.scan_id, id));
            row.last_seen = row.last_seen.max(e.at);
            (FindingStatus::Open, e.at, None)
        }
        "FindingStatusChanged" => {
            let e: FindingStatusChanged = event.decode()?;
            (e.to, e.at, None)
        }
        "RiskAccepted" => {
            let e: RiskAccepted = event.decode()?;
            let view = json!({
                "justification": e.justification,
                "expiresAt": e.expires_at,
                "approvedBy": e.approved_by,
                "approvalId": e.approval_id,
                "acceptedAt": e.at,
            });
            (FindingStatus::RiskAccepted, e.at, Some(view))
        }
        "RiskAcceptanceRevoked" => {
            let e: RiskAcceptanceRevoked = event.decode()?;
            (FindingStatus::Open, e.at, None)
        }
        "RiskAcceptanceExpired" => {
            let e: RiskAcceptanceExpired = event.decode()?;
            (FindingStatus::Open, e.at, None)
        }
        _ => {
            row.version = event.sequence;
            return Ok(true);
        }
    };
    let from = row.status();
    deltas.transition(row.tenant_id, row.severity(), Some(from), to, at);
    row.status = to.as_str().to_owned();
    row.resolved_at = (to == FindingStatus::Resolved).then_some(at);
    row.risk_acceptance = acceptance;
    row.version = event.sequence;
    Ok(true)
}
