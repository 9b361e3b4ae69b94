//! A projection's durable position, written in the same transaction as its rows.

use sqlx::{PgConnection, PgPool};

/// The NOTIFY channel a projection signals after each committed batch; API processes
/// listen to it to answer `X-Min-Position` without polling.
pub const CHANNEL: &str = "vulnledger_projections";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectionCheckpoint {
    /// Last event applied, in commit order `(txid, position)`.
    pub txid: i64,
    pub position: i64,
    /// The highest position applied so far (positions are not commit order).
    pub max_position: i64,
    /// How many events this projection has applied since it was (re)built.
    pub events: i64,
    /// The projection's version when its rows were written.
    pub version: i32,
}

impl ProjectionCheckpoint {
    /// Whether the event at `(txid, position)` has been applied.
    pub fn covers(&self, txid: i64, position: i64) -> bool {
        (self.txid, self.position) >= (txid, position)
    }
}

/// The checkpoint of `name`, or `None` before its first batch.
pub async fn load(pool: &PgPool, name: &str) -> Result<Option<ProjectionCheckpoint>, sqlx::Error> {
    let row: Option<(i64, i64, i64, i64, i32)> = sqlx::query_as(
        "SELECT txid, position, max_position, events, version \
         FROM projection_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(txid, position, max_position, events, version)| ProjectionCheckpoint {
            txid,
            position,
            max_position,
            events,
            version,
        },
    ))
}

/// The checkpoint of `name`, locked until the transaction ends: writers of the
/// projection's tables serialize on it.
pub async fn lock(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Option<ProjectionCheckpoint>, sqlx::Error> {
    let row: Option<(i64, i64, i64, i64, i32)> = sqlx::query_as(
        "SELECT txid, position, max_position, events, version \
         FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(
        |(txid, position, max_position, events, version)| ProjectionCheckpoint {
            txid,
            position,
            max_position,
            events,
            version,
        },
    ))
}

/// The statement that locks `name`'s checkpoint until the transaction ends (as
/// [`lock`] does, without reading it), for sending with `BEGIN` in one round trip.
pub fn lock_statement(name: &str) -> String {
    format!(
        "SELECT 1 FROM projection_checkpoints WHERE name = '{}' FOR UPDATE",
        name.replace('\'', "''")
    )
}

/// Moves `name` from `from` to `at` and tells listeners, as [`save`] does, but only
/// if it still stands at `from`; `false` (nothing written, nobody told) if another
/// writer moved it meanwhile, e.g. a rebuild that swapped in its tables.
pub async fn advance(
    conn: &mut PgConnection,
    name: &str,
    from: &ProjectionCheckpoint,
    at: &ProjectionCheckpoint,
) -> Result<bool, sqlx::Error> {
    write(conn, name, Some(from), at).await
}

/// Moves `name` to `at` and tells listeners, inside the batch's transaction (NOTIFY
/// is delivered on commit, so nobody hears of a batch that rolled back).
pub async fn save(
    conn: &mut PgConnection,
    name: &str,
    at: &ProjectionCheckpoint,
) -> Result<(), sqlx::Error> {
    write(conn, name, None, at).await.map(drop)
}

/// [`advance`] from `from`, or from wherever it stands when `None`; whether it moved.
async fn write(
    conn: &mut PgConnection,
    name: &str,
    from: Option<&ProjectionCheckpoint>,
    at: &ProjectionCheckpoint,
) -> Result<bool, sqlx::Error> {
    // One round trip: the notification rides on the statement that saves, and is
    // sent only if it did.
    let saved: i64 = sqlx::query_scalar(
        "WITH saved AS ( \
           INSERT INTO projection_checkpoints (name, version, txid, position, max_position, events) \
           VALUES ($1, $2, $3, $4, $5, $6) \
           ON CONFLICT (name) DO UPDATE SET version = $2, txid = $3, position = $4, \
               max_position = $5, events = $6, updated_at = now() \
           WHERE $9::bigint IS NULL \
              OR (projection_checkpoints.txid = $9 AND projection_checkpoints.position = $10) \
           RETURNING 1) \
         SELECT count(*) FROM saved, LATERAL (SELECT pg_notify($7, $8)) AS told",
    )
    .bind(name)
    .bind(at.version)
    .bind(at.txid)
    .bind(at.position)
    .bind(at.max_position)
    .bind(at.events)
    .bind(CHANNEL)
    .bind(format!(
        "{name} {} {} {}",
        at.txid, at.position, at.max_position
    ))
    .bind(from.map(|f| f.txid))
    .bind(from.map(|f| f.position))
    .fetch_one(&mut *conn)
    .await?;
    Ok(saved == 1)
}
