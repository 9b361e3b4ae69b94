//! Rebuilding a projection while the API keeps serving the old rows.
//!
//! 1. Shadow tables: a schema `rebuild_<name>` gets empty copies of the projection's
//!    tables (columns, defaults, checks, storage parameters such as fillfactor,
//!    primary keys, except the keys of tables the replay only appends to:
//!    [`Replay::deferred_keys`]).
//! 2. Replay: the whole store, through the same ordered reader and the same
//!    projection code as the live worker, into the shadow tables (the projection's
//!    SQL names its tables unqualified; `search_path` points it at the shadow).
//!    Secondary indexes, and the deferred keys, are created afterwards, with their
//!    original names: building an index once is cheaper than maintaining it row by row.
//! 3. Swap, in one transaction: lock the projection's checkpoint row (a live batch
//!    in flight finishes first, the next one waits), apply what was appended during
//!    the replay, replace the live tables by the shadow ones, and move the checkpoint
//!    to where the replay stopped. The live worker then continues from there: it
//!    reads the stored checkpoint in every batch, so it neither skips nor repeats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::{Connection, PgConnection, PgPool};
#[cfg(doc)]
use vulnledger_projections::Replay;
use vulnledger_projections::{checkpoint, Projection, ProjectionCheckpoint, DEFAULT_REPLAY_ROWS};

use crate::projector::{after, into_projected};
use crate::store::{Checkpoint, OrderedReader};

/// Events per replay transaction.
const BATCH: i64 = 10_000;

/// The environment variable that sets `maintenance_work_mem` on each of the
/// connections that build the shadow's indexes, in PostgreSQL's units (`256MB`,
/// `1GB`). The rebuild needs up to three times that on the database server while it
/// builds them (the texts' indexes, then the other GIN and B-tree indexes beside them).
pub const INDEX_MEMORY_VARIABLE: &str = "REBUILD_MAINTENANCE_WORK_MEM";

/// The trigram index over a million findings' texts built in 27.8 s with 1 GB
/// against 29.5 s with 256 MB; the B-trees over millions of rows sort with fewer
/// passes over disk.
const INDEX_MEMORY_DEFAULT: &str = "1GB";

fn index_memory() -> String {
    crate::config::optional(INDEX_MEMORY_VARIABLE)
        .unwrap_or_else(|| INDEX_MEMORY_DEFAULT.to_owned())
}

/// The environment variable that bounds the rows a rebuild's replay holds in memory
/// before it writes them out and forgets them ([`DEFAULT_REPLAY_ROWS`] by default).
/// A tenant with more findings than that rebuilds slower: rows written out are read
/// back and written again as later scans see them. Memory is the price: the process
/// peaked at 2.1 GB holding 1M rows and at 3.7 GB holding 3M (`docs/operations.md`).
pub const MAX_ROWS_VARIABLE: &str = "REBUILD_MAX_ROWS";

pub(crate) fn max_rows() -> Result<usize, crate::config::ConfigError> {
    crate::config::parse(MAX_ROWS_VARIABLE, DEFAULT_REPLAY_ROWS, |rows| *rows >= 1)
}

/// Sets `maintenance_work_mem` on `conn` for the rest of its session (`local`:
/// for its transaction), naming the variable when the server refuses the value.
async fn set_index_memory(
    conn: &mut PgConnection,
    memory: &str,
    local: bool,
) -> anyhow::Result<()> {
    match sqlx::query("SELECT set_config('maintenance_work_mem', $1, $2)")
        .bind(memory)
        .bind(local)
        .execute(conn)
        .await
    {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) => Err(anyhow::anyhow!(
            "invalid environment variable {INDEX_MEMORY_VARIABLE}: {memory:?}: {}",
            e.message()
        )),
        Err(e) => Err(e.into()),
    }
}

/// Progress of a rebuild, reported after every batch.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub events: i64,
    /// Events in the store when the rebuild started (an estimate of the total).
    pub total: i64,
    pub elapsed: Duration,
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct Rebuilt {
    pub checkpoint: ProjectionCheckpoint,
    pub elapsed: Duration,
}

/// Marks the pages of `projection`'s freshly swapped-in tables all-visible
/// (`VACUUM`), while the API already reads them. Until then every index-only scan
/// also reads the table's heap: after a rebuild of 1M findings, the first page of
/// `slaBreached=true` fetched 7,600 heap pages for its index walk (7.5–37 ms against
/// 1.7–2.0 ms once vacuumed, which took 2.9 s), and autovacuum gets to new tables
/// only after its next look. Not inside [`rebuild`]: VACUUM cannot run in the swap's transaction, and a
/// worker that rebuilt need not wait for it. Returns how long it took.
pub async fn vacuum(pool: &PgPool, projection: &dyn Projection) -> Result<Duration, sqlx::Error> {
    let started = std::time::Instant::now();
    let tables: Vec<String> = projection
        .tables()
        .iter()
        .map(|t| format!("public.{t}"))
        .collect();
    sqlx::raw_sql(&format!("VACUUM {}", tables.join(", ")))
        .execute(pool)
        .await?;
    Ok(started.elapsed())
}

pub async fn rebuild(
    pool: &PgPool,
    projection: Arc<dyn Projection>,
    mut progress: impl FnMut(Progress),
) -> anyhow::Result<Rebuilt> {
    let started = Instant::now();
    let max_rows = max_rows()?;
    let shadow = format!("rebuild_{}", projection.name());
    // Two rebuilds of one projection would share the shadow schema. The lock is the
    // session's, on a connection of its own, and goes with it.
    let mut guard = pool.acquire().await?.detach();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind(format!("rebuild:{}", projection.name()))
        .fetch_one(&mut guard)
        .await?;
    if !locked {
        anyhow::bail!(
            "a rebuild of the projection {:?} is already running",
            projection.name()
        );
    }
    // Checked now, so that a value the server refuses stops the rebuild before the
    // replay rather than after it.
    let index_memory = index_memory();
    let mut check = guard.begin().await?;
    set_index_memory(&mut check, &index_memory, true).await?;
    check.rollback().await?;
    let mut replay = projection.replay(max_rows);
    let deferred = replay.as_ref().map_or(&[][..], |r| r.deferred_keys());
    let (mut indexes, keys) = prepare_shadow(pool, projection.as_ref(), &shadow, deferred).await?;
    // The highest position: an estimate of the count (positions have gaps where
    // appends rolled back) that an index answers at once.
    let total: i64 = sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM events")
        .fetch_one(pool)
        .await?;

    let mut at = ProjectionCheckpoint {
        version: projection.version(),
        ..Default::default()
    };
    let reader = OrderedReader::new(pool.clone());
    // Reading the next batch overlaps folding this one.
    let (batches, mut incoming) = tokio::sync::mpsc::channel(2);
    let reading = tokio::spawn({
        let reader = reader.clone();
        async move {
            let mut from = Checkpoint::START;
            loop {
                let batch = match reader.read_batch(from, BATCH).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        let _ = batches.send(Err(e)).await;
                        return;
                    }
                };
                let full = batch.len() as i64 == BATCH;
                if let Some(last) = batch.last() {
                    from = last.checkpoint();
                }
                let events: Vec<_> = batch.into_iter().map(into_projected).collect();
                if batches.send(Ok(events)).await.is_err() || !full {
                    return;
                }
            }
        }
    });
    // One connection for the whole replay, its search_path on the shadow schema; it
    // is closed afterwards rather than handed back to the pool with that setting.
    let mut conn = pool.acquire().await?.detach();
    sqlx::query(&format!("SET search_path TO {shadow}, public"))
        .execute(&mut conn)
        .await?;
    sqlx::query("SET synchronous_commit TO off")
        .execute(&mut conn)
        .await?;
    while let Some(batch) = incoming.recv().await {
        let Some((fresh, next)) = after(&at, batch?) else {
            continue;
        };
        // A crash loses nothing durable here: an interrupted rebuild starts over.
        let mut tx = conn.begin().await?;
        match &mut replay {
            Some(replay) => replay.feed(&mut tx, &fresh).await?,
            None => projection.apply(&mut tx, &fresh).await?,
        }
        tx.commit().await?;
        at = next;
        progress(Progress {
            events: at.events,
            total,
            elapsed: started.elapsed(),
        });
    }
    reading.await?;
    let mut early = None;
    if let Some(replay) = &mut replay {
        let mut tx = conn.begin().await?;
        let written = replay.finish_early(&mut tx).await?;
        tx.commit().await?;
        // The indexes of the tables written in full are built while `finish` writes
        // the rest: those writes keep one core busy and leave the other idle.
        let (now, later): (Vec<String>, Vec<String>) = indexes.into_iter().partition(|sql| {
            written
                .iter()
                .any(|table| sql.contains(&format!(" ON {shadow}.{table} ")))
        });
        indexes = later;
        if !now.is_empty() {
            let (pool, memory) = (pool.clone(), index_memory.clone());
            // Aborted if the rebuild fails before it is awaited.
            early = Some(tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
                async move { build(&pool, now.iter().collect(), &memory).await },
            )));
        }
        let mut tx = conn.begin().await?;
        replay.finish(&mut tx).await?;
        tx.commit().await?;
    }
    build_indexes(pool, &indexes, &index_memory).await?;
    if let Some(early) = early {
        early.await??;
    }
    for key in &keys {
        sqlx::query(key).execute(&mut conn).await?;
    }
    sqlx::query(&format!("ANALYZE {}", projection.tables().join(", ")))
        .execute(&mut conn)
        .await?;
    conn.close().await?;

    let mut tx = pool.begin().await?;
    // Live batches take this lock too: from here on, nothing else writes.
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, version, txid, position, max_position) \
         VALUES ($1, $2, 0, 0, 0) ON CONFLICT (name) DO NOTHING",
    )
    .bind(projection.name())
    .bind(projection.version())
    .execute(&mut *tx)
    .await?;
    checkpoint::lock(&mut tx, projection.name()).await?;
    in_shadow(&mut tx, &shadow).await?;
    loop {
        let batch = reader.read_batch(reader_checkpoint(&at), BATCH).await?;
        let Some((fresh, next)) = after(&at, batch.into_iter().map(into_projected).collect())
        else {
            break;
        };
        projection.apply(&mut tx, &fresh).await?;
        at = next;
    }
    sqlx::query("SET LOCAL search_path TO public")
        .execute(&mut *tx)
        .await?;
    for table in projection.tables() {
        sqlx::query(&format!("DROP TABLE public.{table}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("ALTER TABLE {shadow}.{table} SET SCHEMA public"))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(&format!("DROP SCHEMA {shadow}"))
        .execute(&mut *tx)
        .await?;
    checkpoint::save(&mut tx, projection.name(), &at).await?;
    tx.commit().await?;
    guard.close().await?;
    progress(Progress {
        events: at.events,
        total,
        elapsed: started.elapsed(),
    });
    Ok(Rebuilt {
        checkpoint: at,
        elapsed: started.elapsed(),
    })
}

/// Builds the shadow's secondary indexes, and the unique indexes of its deferred keys,
/// each in one pass (cheaper than maintaining them row by row during the replay): GIN
/// indexes, the slow ones, on one connection and the B-trees beside them on another.
async fn build_indexes(pool: &PgPool, indexes: &[String], memory: &str) -> anyhow::Result<()> {
    let (gin, btree): (Vec<&String>, Vec<&String>) =
        indexes.iter().partition(|sql| sql.contains(" USING gin "));
    tokio::try_join!(build(pool, gin, memory), build(pool, btree, memory))?;
    Ok(())
}

/// Runs `statements` in turn on a connection of their own, GIN indexes first: they
/// take longest, and whatever builds beside them should not wait at the end.
async fn build(pool: &PgPool, statements: Vec<&String>, memory: &str) -> anyhow::Result<()> {
    if statements.is_empty() {
        return Ok(());
    }
    let mut statements = statements;
    statements.sort_by_key(|sql| !sql.contains(" USING gin "));
    let mut conn = pool.acquire().await?.detach();
    set_index_memory(&mut conn, memory, false).await?;
    for sql in statements {
        sqlx::query(sql).execute(&mut conn).await?;
    }
    conn.close().await?;
    Ok(())
}

fn reader_checkpoint(at: &ProjectionCheckpoint) -> Checkpoint {
    Checkpoint {
        txid: at.txid,
        position: at.position,
    }
}

async fn in_shadow(conn: &mut PgConnection, shadow: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("SET LOCAL search_path TO {shadow}, public"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Creates the empty shadow tables with their primary keys, but those of `deferred`.
/// Returns the statements that create their other indexes, and the unique indexes of
/// the deferred keys, then the statements that turn those into the keys (same names,
/// shadow schema). The index comes first because building it only shares the table
/// with the other index builds, where adding a key outright waits for them all.
async fn prepare_shadow(
    pool: &PgPool,
    projection: &dyn Projection,
    shadow: &str,
    deferred: &[&str],
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {shadow} CASCADE"))
        .execute(pool)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {shadow}"))
        .execute(pool)
        .await?;
    let mut indexes = Vec::new();
    let mut deferred_keys = Vec::new();
    for table in projection.tables() {
        sqlx::query(&format!(
            "CREATE TABLE {shadow}.{table} \
             (LIKE public.{table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        ))
        .execute(pool)
        .await
        .with_context(|| format!("creating the shadow of {table}"))?;
        // LIKE copies no storage parameters; a table's fillfactor is what keeps room
        // for HOT updates on its pages (finding_view), so the shadow is written with it.
        let options: Option<Vec<String>> = sqlx::query_scalar(
            "SELECT reloptions FROM pg_class WHERE oid = ('public.' || $1)::regclass",
        )
        .bind(table)
        .fetch_one(pool)
        .await?;
        if let Some(options) = options.filter(|o| !o.is_empty()) {
            sqlx::query(&format!(
                "ALTER TABLE {shadow}.{table} SET ({})",
                options.join(", ")
            ))
            .execute(pool)
            .await?;
        }
        let keys: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT conname::text, pg_get_constraintdef(oid), \
                    CASE contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END, \
                    pg_get_indexdef(conindid) \
             FROM pg_constraint \
             WHERE conrelid = ('public.' || $1)::regclass AND contype IN ('p', 'u')",
        )
        .bind(table)
        .fetch_all(pool)
        .await?;
        let in_shadow = |definition: String| {
            definition.replacen(
                &format!(" ON public.{table} "),
                &format!(" ON {shadow}.{table} "),
                1,
            )
        };
        for (name, definition, kind, index) in keys {
            if deferred.contains(table) {
                indexes.push(in_shadow(index));
                deferred_keys.push(format!(
                    "ALTER TABLE {shadow}.{table} ADD CONSTRAINT {name} {kind} USING INDEX {name}"
                ));
            } else {
                sqlx::query(&format!(
                    "ALTER TABLE {shadow}.{table} ADD CONSTRAINT {name} {definition}"
                ))
                .execute(pool)
                .await?;
            }
        }
        let others: Vec<(String,)> = sqlx::query_as(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
             WHERE i.indrelid = ('public.' || $1)::regclass \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        )
        .bind(table)
        .fetch_all(pool)
        .await?;
        indexes.extend(
            others
                .into_iter()
                .map(|(definition,)| in_shadow(definition)),
        );
    }
    Ok((indexes, deferred_keys))
}

/// Where a projection stands.
#[derive(Debug, Clone)]
pub struct Status {
    pub name: &'static str,
    /// The version of the code.
    pub version: i32,
    /// What its rows were written with; `None` before its first batch.
    pub checkpoint: Option<ProjectionCheckpoint>,
    /// Committed events it has not applied yet.
    pub lag: i64,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn status(pool: &PgPool) -> anyhow::Result<Vec<Status>> {
    let mut out = Vec::new();
    for projection in vulnledger_projections::all() {
        let checkpoint = checkpoint::load(pool, projection.name()).await?;
        let at = checkpoint.unwrap_or_default();
        let lag: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events \
             WHERE (txid, position) > ($1::bigint::text::xid8, $2) \
               AND txid < (SELECT events_horizon())",
        )
        .bind(at.txid)
        .bind(at.position)
        .fetch_one(pool)
        .await?;
        let updated_at =
            sqlx::query_scalar("SELECT updated_at FROM projection_checkpoints WHERE name = $1")
                .bind(projection.name())
                .fetch_optional(pool)
                .await?;
        out.push(Status {
            name: projection.name(),
            version: projection.version(),
            checkpoint,
            lag,
            updated_at,
        });
    }
    Ok(out)
}
