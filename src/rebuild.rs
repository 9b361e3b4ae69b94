//! Rebuilding a projection while the API keeps serving the old rows.
//!
//! 1. Shadow tables: a schema `rebuild_<name>` gets empty copies of the projection's
//!    tables (columns, defaults, checks, primary keys).
//! 2. Replay: the whole store, through the same ordered reader and the same
//!    projection code as the live worker, into the shadow tables (the projection's
//!    SQL names its tables unqualified; `search_path` points it at the shadow).
//!    Secondary indexes are created afterwards, with their original names: building
//!    an index once is cheaper than maintaining it row by row.
//! 3. Swap, in one transaction: lock the projection's checkpoint row (a live batch
//!    in flight finishes first, the next one waits), apply what was appended during
//!    the replay, replace the live tables by the shadow ones, and move the checkpoint
//!    to where the replay stopped. The live worker then continues from there: it
//!    reads the stored checkpoint in every batch, so it neither skips nor repeats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::{PgConnection, PgPool};
use vulnledger_projections::{checkpoint, Projection, ProjectionCheckpoint};

use crate::projector::{after, projected};
use crate::store::{Checkpoint, OrderedReader};

/// Events per replay transaction.
const BATCH: i64 = 5000;

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

pub async fn rebuild(
    pool: &PgPool,
    projection: Arc<dyn Projection>,
    mut progress: impl FnMut(Progress),
) -> anyhow::Result<Rebuilt> {
    let started = Instant::now();
    let shadow = format!("rebuild_{}", projection.name());
    let indexes = prepare_shadow(pool, projection.as_ref(), &shadow).await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;

    let mut at = ProjectionCheckpoint {
        version: projection.version(),
        ..Default::default()
    };
    let reader = OrderedReader::new(pool.clone());
    loop {
        let batch = reader.read_batch(reader_checkpoint(&at), BATCH).await?;
        let full = batch.len() as i64 == BATCH;
        let events = batch.iter().map(projected).collect();
        if let Some((fresh, next)) = after(&at, events) {
            let mut tx = pool.begin().await?;
            in_shadow(&mut tx, &shadow).await?;
            projection.apply(&mut tx, &fresh).await?;
            tx.commit().await?;
            at = next;
            progress(Progress {
                events: at.events,
                total,
                elapsed: started.elapsed(),
            });
        }
        if !full {
            break;
        }
    }
    for index in &indexes {
        sqlx::query(index).execute(pool).await?;
    }

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
        let Some((fresh, next)) = after(&at, batch.iter().map(projected).collect()) else {
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

/// Creates the empty shadow tables with their primary keys; returns the statements
/// that create their other indexes (same names, shadow schema).
async fn prepare_shadow(
    pool: &PgPool,
    projection: &dyn Projection,
    shadow: &str,
) -> anyhow::Result<Vec<String>> {
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {shadow} CASCADE"))
        .execute(pool)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {shadow}"))
        .execute(pool)
        .await?;
    let mut indexes = Vec::new();
    for table in projection.tables() {
        sqlx::query(&format!(
            "CREATE TABLE {shadow}.{table} \
             (LIKE public.{table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        ))
        .execute(pool)
        .await
        .with_context(|| format!("creating the shadow of {table}"))?;
        let keys: Vec<(String, String)> = sqlx::query_as(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = ('public.' || $1)::regclass AND contype IN ('p', 'u')",
        )
        .bind(table)
        .fetch_all(pool)
        .await?;
        for (name, definition) in &keys {
            sqlx::query(&format!(
                "ALTER TABLE {shadow}.{table} ADD CONSTRAINT {name} {definition}"
            ))
            .execute(pool)
            .await?;
        }
        let others: Vec<(String,)> = sqlx::query_as(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
             WHERE i.indrelid = ('public.' || $1)::regclass \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        )
        .bind(table)
        .fetch_all(pool)
        .await?;
        for (definition,) in others {
            indexes.push(definition.replacen(
                &format!(" ON public.{table} "),
                &format!(" ON {shadow}.{table} "),
                1,
            ));
        }
    }
    Ok(indexes)
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
               AND txid < pg_snapshot_xmin(pg_current_snapshot())",
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
