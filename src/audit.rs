//! The audit log is the event store: one tenant's events, filtered, as pages or as a
//! stream of CSV or NDJSON lines that never holds more than one chunk in memory.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::store::Upcasters;

/// Rows fetched per round trip while exporting.
pub const CHUNK: i64 = 2000;

/// One event as auditors see it, in its type's current shape.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub position: i64,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// A user id, or `system:<process>`.
    pub actor: Option<String>,
    pub actor_email: Option<String>,
    pub request_id: Option<String>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    #[schema(value_type = Object)]
    pub data: Value,
}

/// Every audit filter, validated.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant: Uuid,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// A user id, `system:<process>`, or an email.
    pub actor: Option<String>,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub event_type: Option<String>,
}

const SELECT: &str = "SELECT position, recorded_at AS at, metadata->>'actor_id' AS actor, \
     NULLIF(metadata->>'actor_email', '') AS actor_email, \
     NULLIF(metadata->>'request_id', '') AS request_id, aggregate_type, aggregate_id, \
     sequence, event_type, event_version, payload FROM events";

/// A row as stored: its payload is upcast before anyone sees it.
#[derive(sqlx::FromRow)]
struct AuditRow {
    position: i64,
    at: DateTime<Utc>,
    actor: Option<String>,
    actor_email: Option<String>,
    request_id: Option<String>,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    /// cqrs-es's externally tagged form: `{"<EventType>": {...}}`.
    payload: Value,
}

impl AuditRow {
    /// The entry, with `data` in the event type's current shape (through the same
    /// upcasters as every other reader of the store).
    fn into_entry(self, upcasters: &Upcasters) -> Result<AuditEntry, sqlx::Error> {
        let (aggregate_type, aggregate_id, event_type, payload) =
            if upcasters.is_current(&self.event_type, &self.event_version) {
                (
                    self.aggregate_type,
                    self.aggregate_id,
                    self.event_type,
                    self.payload,
                )
            } else {
                let event = upcasters
                    .upcast(cqrs_es::persist::SerializedEvent::new(
                        self.aggregate_id,
                        self.sequence as usize,
                        self.aggregate_type,
                        self.event_type,
                        self.event_version,
                        self.payload,
                        Value::Null,
                    ))
                    .map_err(|event| {
                        sqlx::Error::Decode(Box::new(crate::store::UnreadableEvent {
                            position: self.position,
                            event,
                        }))
                    })?;
                (
                    event.aggregate_type,
                    event.aggregate_id,
                    event.event_type,
                    event.payload,
                )
            };
        let data = crate::store::upcasters::untagged(payload, &event_type);
        Ok(AuditEntry {
            position: self.position,
            at: self.at,
            actor: self.actor,
            actor_email: self.actor_email,
            request_id: self.request_id,
            aggregate_type,
            aggregate_id,
            sequence: self.sequence,
            event_type,
            data,
        })
    }
}

impl AuditFilter {
    fn push_where(&self, q: &mut QueryBuilder<'_, Postgres>) {
        q.push(" WHERE tenant_id = ").push_bind(self.tenant);
        if let Some(from) = self.from {
            q.push(" AND recorded_at >= ").push_bind(from);
        }
        if let Some(until) = self.until {
            q.push(" AND recorded_at < ").push_bind(until);
        }
        if let Some(actor) = &self.actor {
            q.push(" AND (metadata->>'actor_id' = ")
                .push_bind(actor.clone())
                .push(" OR lower(metadata->>'actor_email') = lower(")
                .push_bind(actor.clone())
                .push("))");
        }
        if let Some(t) = &self.aggregate_type {
            q.push(" AND aggregate_type = ").push_bind(t.clone());
        }
        if let Some(id) = &self.aggregate_id {
            q.push(" AND aggregate_id = ").push_bind(id.clone());
        }
        if let Some(t) = &self.event_type {
            q.push(" AND event_type = ").push_bind(t.clone());
        }
    }
}

async fn fetch(
    pool: &PgPool,
    mut q: QueryBuilder<'_, Postgres>,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let rows: Vec<AuditRow> = q.build_query_as().fetch_all(pool).await?;
    let upcasters = Upcasters::process();
    rows.into_iter()
        .map(|row| row.into_entry(upcasters))
        .collect()
}

/// What an export or a paged listing holds: the events committed when it started.
/// `position` is handed out at insert, before commit (see `store/reader.rs`), so
/// paging by position alone would miss a transaction that took a smaller position
/// and commits while the export runs (or between two pages), yet include later
/// ones: a log with a hole in it. Every page is therefore restricted to the
/// transactions that the database snapshot taken at the start saw as committed;
/// pages stay short statements (keyset by position, through the
/// `(tenant_id, position)` index), and no transaction stays open. A listing's
/// cursor carries its snapshot, so every page of one listing agrees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(
    /// `pg_current_snapshot()` as text (`xmin:xmax:xip,...`).
    String,
);

/// Longer snapshots are refused from cursors: a real one lists the transactions in
/// progress when it was taken, a few dozen at most.
const SNAPSHOT_MAX_LEN: usize = 4096;

impl Snapshot {
    pub async fn take(pool: &PgPool) -> Result<Self, sqlx::Error> {
        sqlx::query_scalar("SELECT pg_current_snapshot()::text")
            .fetch_one(pool)
            .await
            .map(Self)
    }

    /// A snapshot as [`as_str`](Self::as_str) wrote it, from a client's cursor;
    /// `None` unless PostgreSQL would accept it (`xmin <= xmax`, both non-zero, the
    /// in-progress ids ascending within `[xmin, xmax)`), so that a forged cursor is a
    /// bad request and not a database error.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > SNAPSHOT_MAX_LEN {
            return None;
        }
        let number = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let mut parts = text.splitn(3, ':');
        let xmin = number(parts.next()?)?;
        let xmax = number(parts.next()?)?;
        let xip = parts.next()?;
        if xmin == 0 || xmax < xmin {
            return None;
        }
        if !xip.is_empty() {
            let mut last = xmin;
            for id in xip.split(',') {
                let id = number(id)?;
                if id < last || id >= xmax {
                    return None;
                }
                last = id;
            }
        }
        Some(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// One page of a listing or export as of this snapshot: up to `limit` entries
    /// after `after` (a position, 0 for the start) and `offset` more, oldest first.
    /// Rows appended since the snapshot are skipped by the filter, so only the last
    /// page reads past the listing's end (once).
    pub async fn page(
        &self,
        pool: &PgPool,
        filter: &AuditFilter,
        after: i64,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<AuditEntry>, sqlx::Error> {
        let mut q = QueryBuilder::new(SELECT);
        filter.push_where(&mut q);
        q.push(" AND position > ")
            .push_bind(after)
            .push(" AND pg_visible_in_snapshot(txid, ")
            .push_bind(self.0.clone())
            .push("::pg_snapshot) ORDER BY position LIMIT ")
            .push_bind(limit);
        if offset > 0 {
            q.push(" OFFSET ").push_bind(offset);
        }
        fetch(pool, q).await
    }
}

pub async fn total(pool: &PgPool, filter: &AuditFilter) -> Result<i64, sqlx::Error> {
    let mut q = QueryBuilder::new("SELECT count(*) FROM events");
    filter.push_where(&mut q);
    q.build_query_scalar().fetch_one(pool).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        })
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "csv" => Ok(Format::Csv),
            "ndjson" => Ok(Format::Ndjson),
            other => Err(format!("format must be csv or ndjson, not {other:?}")),
        }
    }
}

pub const CSV_HEADER: &str =
    "position,at,actor,actorEmail,requestId,aggregateType,aggregateId,sequence,eventType,data\n";

/// `entries` as lines of `format` (CSV without its header).
pub fn encode(entries: &[AuditEntry], format: Format) -> Result<Vec<u8>, anyhow::Error> {
    match format {
        Format::Ndjson => {
            let mut out = Vec::with_capacity(entries.len() * 256);
            for entry in entries {
                serde_json::to_writer(&mut out, entry)?;
                out.push(b'\n');
            }
            Ok(out)
        }
        Format::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(Vec::with_capacity(entries.len() * 256));
            for e in entries {
                writer.write_record([
                    e.position.to_string(),
                    e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    e.actor.clone().unwrap_or_default(),
                    e.actor_email.clone().unwrap_or_default(),
                    e.request_id.clone().unwrap_or_default(),
                    e.aggregate_type.clone(),
                    e.aggregate_id.clone(),
                    e.sequence.to_string(),
                    e.event_type.clone(),
                    e.data.to_string(),
                ])?;
            }
            Ok(writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)
        }
    }
}

/// The whole filtered log as it was committed when the export started (see
/// [`Snapshot`]), as encoded chunks, fetched `CHUNK` rows at a time by position
/// (keyset), so memory stays flat whatever the size and no transaction stays open.
/// The snapshot is taken before the first chunk is handed out (a CSV header comes
/// with the first rows), so whoever has a chunk knows what the export holds.
/// Stops when the consumer stops polling (a client that went away).
pub fn export(
    pool: PgPool,
    filter: AuditFilter,
    format: Format,
) -> impl Stream<Item = Result<Bytes, anyhow::Error>> + Send + 'static {
    enum Cursor {
        Start,
        After(Snapshot, i64),
        Done,
    }
    futures::stream::try_unfold(Cursor::Start, move |cursor| {
        let pool = pool.clone();
        let filter = filter.clone();
        async move {
            let mut out = Vec::new();
            let (snapshot, after) = match cursor {
                Cursor::Done => return Ok(None),
                Cursor::After(snapshot, after) => (snapshot, after),
                Cursor::Start => {
                    if format == Format::Csv {
                        out.extend_from_slice(CSV_HEADER.as_bytes());
                    }
                    (Snapshot::take(&pool).await?, 0)
                }
            };
            let rows = snapshot.page(&pool, &filter, after, CHUNK, 0).await?;
            if rows.is_empty() && out.is_empty() {
                return Ok(None);
            }
            let next = match rows.last() {
                Some(last) if rows.len() as i64 == CHUNK => Cursor::After(snapshot, last.position),
                _ => Cursor::Done,
            };
            out.extend_from_slice(&encode(&rows, format)?);
            Ok(Some((Bytes::from(out), next)))
        }
    })
}

/// Writes the export to `output` or to standard output, until it is complete or
/// `stop` is cancelled (SIGINT or SIGTERM for the command line).
///
/// `output` is written through a temporary file of this export's own beside it
/// (`.NAME.<pid>.<random>.partial`, created new), renamed into place at the end, so
/// the path holds a whole export or what it held before, and concurrent exports to
/// the same path do not share a file: the last to finish wins. The temporary file is
/// removed when the export fails or is stopped (not on SIGKILL).
pub async fn export_to(
    pool: PgPool,
    filter: AuditFilter,
    format: Format,
    output: Option<&std::path::Path>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;

    let mut stream = std::pin::pin!(export(pool, filter, format));
    let interrupted = || anyhow::anyhow!("interrupted: the export is incomplete");
    match output {
        None => {
            let written = async {
                let mut out = tokio::io::stdout();
                while let Some(chunk) = stream.next().await {
                    out.write_all(&chunk?).await?;
                }
                out.flush().await?;
                Ok::<(), anyhow::Error>(())
            };
            tokio::select! {
                written = written => written?,
                () = stop.cancelled() => return Err(interrupted()),
            }
        }
        Some(path) => {
            let (partial, mut file) = create_partial(path)
                .await
                .with_context(|| format!("cannot write {}", path.display()))?;
            let written = async {
                while let Some(chunk) = stream.next().await {
                    file.write_all(&chunk?).await?;
                }
                file.sync_all().await?;
                tokio::fs::rename(&partial, path)
                    .await
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok::<(), anyhow::Error>(())
            };
            let written = tokio::select! {
                written = written => written,
                () = stop.cancelled() => Err(interrupted()),
            };
            if written.is_err() {
                let _ = tokio::fs::remove_file(&partial).await;
            }
            written?;
        }
    }
    Ok(())
}

/// A new, empty file beside `path` for one export to write:
/// `.NAME.<pid>.<random>.partial`, created only if absent, so no other export (of
/// this process or another) writes the same file.
async fn create_partial(
    path: &std::path::Path,
) -> anyhow::Result<(std::path::PathBuf, tokio::fs::File)> {
    use anyhow::Context;

    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .context("not a file name")?
        .to_string_lossy();
    let mut attempts = 0;
    loop {
        let partial = dir.join(format!(
            ".{name}.{}.{:08x}.partial",
            std::process::id(),
            rand::random::<u32>()
        ));
        match tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .await
        {
            Ok(file) => return Ok((partial, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 8 => {
                attempts += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Snapshot;

    #[test]
    fn snapshots_as_postgres_writes_them_are_read_back() {
        for text in ["5:5:", "5:10:", "5:10:5", "5:10:6,9", "5:10:6,6,9"] {
            assert_eq!(
                Snapshot::parse(text).map(|s| s.as_str().to_owned()),
                Some(text.to_owned())
            );
        }
    }

    #[test]
    fn snapshots_postgres_would_refuse_are_refused() {
        let too_long = format!("1:{}:", "9".repeat(super::SNAPSHOT_MAX_LEN));
        for text in [
            "",
            "5:10",
            "0:0:",
            "0:10:",
            "10:5:",
            "5:10:4",
            "5:10:10",
            "5:10:7,6",
            "5:10:,",
            "5:10:7,",
            "-1:2:",
            "+1:2:",
            " 1:2:",
            "a:b:",
            "18446744073709551616:18446744073709551616:",
            &too_long,
        ] {
            assert_eq!(Snapshot::parse(text), None, "{text:?}");
        }
    }
}
