//! Read-model builders: each turns events into rows of its own tables and is shared
//! by the live projection workers and the rebuild command, so both produce the same
//! rows.
//!
//! The contract every projection follows: it is handed batches of events in commit
//! order and applies each batch inside the caller's transaction, which also moves the
//! projection's checkpoint (see [`checkpoint`]); or, live, applies it and moves the
//! checkpoint itself, both or neither ([`Projection::apply_advancing`]). A batch is
//! therefore applied completely or not at all, and a batch delivered again after a
//! crash is skipped by the checkpoint before it reaches the projection.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

pub mod checkpoint;
pub mod findings;

pub use checkpoint::{Advance, ProjectionCheckpoint};
pub use findings::FindingsProjection;

/// An event as projections see it: what the store holds and NATS carries, with the
/// event's own fields (`data`) already unwrapped from cqrs-es's enum tag.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectedEvent {
    pub position: i64,
    pub txid: i64,
    pub tenant_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub data: Value,
    /// The request that caused it, for process managers to pass on.
    pub request_id: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

impl ProjectedEvent {
    /// Where this event stands in commit order.
    pub fn checkpoint(&self) -> (i64, i64) {
        (self.txid, self.position)
    }

    /// The event's fields as `T`; an event that does not decode is a corrupt store,
    /// not something to skip silently.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, ProjectionError> {
        T::deserialize(&self.data).map_err(|e| ProjectionError::Undecodable {
            position: self.position,
            event_type: self.event_type.clone(),
            reason: e.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("event at position {position} ({event_type}) cannot be decoded: {reason}")]
    Undecodable {
        position: i64,
        event_type: String,
        reason: String,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A read model fed by events.
#[async_trait::async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint's key, the CLI's argument, the consumer's name.
    fn name(&self) -> &'static str;

    /// Bumped whenever the rows it writes change shape or meaning, so a deploy knows
    /// the stored rows are stale and must be rebuilt.
    fn version(&self) -> i32;

    /// The tables it owns, in an order that truncating them in one statement accepts.
    fn tables(&self) -> &'static [&'static str];

    /// Applies `events` (commit order, none applied before) inside the caller's
    /// transaction.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[ProjectedEvent],
    ) -> Result<(), ProjectionError>;

    /// Applies a live batch of `events` (commit order, none applied before) and moves
    /// the checkpoint as `advance` says, both or neither, outside any transaction of
    /// the caller's; `false`, with nothing written, when the checkpoint no longer
    /// stood at `advance.from`. By default in a transaction of its own
    /// ([`apply_in_transaction`]); a projection may need fewer round trips.
    async fn apply_advancing(
        &self,
        conn: &mut PgConnection,
        events: &[ProjectedEvent],
        advance: &Advance<'_>,
    ) -> Result<bool, ProjectionError> {
        apply_in_transaction(self, conn, events, advance).await
    }

    /// A replay of the whole history into empty tables that nothing else writes (a
    /// rebuild), which may hold state across batches, up to `max_rows` of its rows
    /// at a time ([`DEFAULT_REPLAY_ROWS`] unless the operator says otherwise);
    /// `None` replays with [`apply`](Self::apply), batch by batch.
    fn replay(&self, _max_rows: usize) -> Option<Box<dyn Replay>> {
        None
    }
}

/// [`Projection::apply`] and the checkpoint's move in one transaction, which locks
/// the checkpoint first (as a rebuild's swap does: writers of the projection's tables
/// serialize on it).
pub async fn apply_in_transaction<P: Projection + ?Sized>(
    projection: &P,
    conn: &mut PgConnection,
    events: &[ProjectedEvent],
    advance: &Advance<'_>,
) -> Result<bool, ProjectionError> {
    // Not waiting for the WAL flush is safe here: a batch lost in a crash is lost
    // together with its checkpoint and applied again from the durable events.
    // Generic plans: a live batch loads a handful of rows by id, and PostgreSQL
    // planned that lookup again on almost every batch (0.22 ms of planning for
    // 0.06 ms of work); its generic plan probes the primary key, as it should. All
    // sent with BEGIN, in one round trip.
    let mut tx = conn
        .begin_with(format!(
            "BEGIN; SET LOCAL synchronous_commit TO off; \
             SET LOCAL plan_cache_mode TO force_generic_plan; {}",
            checkpoint::lock_statement(advance.name)
        ))
        .await?;
    projection.apply(&mut tx, events).await?;
    if advance.in_transaction(&mut tx).await? {
        tx.commit().await?;
        Ok(true)
    } else {
        tx.rollback().await?;
        Ok(false)
    }
}

/// The rows a replay holds in memory before it writes them out and forgets them,
/// unless told otherwise. A rebuild's fold writes each row once while it holds the
/// row; a row written out and then changed by a later event is read back and written
/// again, so a tenant with more findings than this rebuilds slower: one tenant of 3M
/// findings in 354–400 s, three of 1M with as many events in 212 s, and the one
/// tenant in 217 s holding 3M rows. The rebuilding process peaked at 2.1 GB holding
/// 1M rows, 3.7 GB holding 3M.
pub const DEFAULT_REPLAY_ROWS: usize = 1_000_000;

/// A projection replaying history in bulk: what it is fed and finally writes must
/// equal what [`Projection::apply`] would have written for the same events.
#[async_trait::async_trait]
pub trait Replay: Send {
    /// Folds `events` (commit order, following the previous ones); may write part of
    /// what it holds.
    async fn feed(
        &mut self,
        conn: &mut PgConnection,
        events: &[ProjectedEvent],
    ) -> Result<(), ProjectionError>;

    /// Writes, ahead of [`finish`](Self::finish), everything it still holds of the
    /// tables it names, which nothing writes after this: the rebuild commits them and
    /// builds their indexes while `finish` writes the rest. None by default.
    async fn finish_early(
        &mut self,
        _conn: &mut PgConnection,
    ) -> Result<&'static [&'static str], ProjectionError> {
        Ok(&[])
    }

    /// Writes everything it still holds.
    async fn finish(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError>;

    /// Tables whose primary keys the replay can do without while it writes: it only
    /// appends rows it knows are new there, and removes in [`finish`](Self::finish)
    /// any repeat it could not rule out. The rebuild adds those keys after `finish`,
    /// with the secondary indexes: building a key once is several times cheaper than
    /// checking and maintaining it row by row.
    fn deferred_keys(&self) -> &'static [&'static str] {
        &[]
    }
}

/// Every projection the product runs.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(FindingsProjection)]
}

/// The projection called `name`, if there is one.
pub fn named(name: &str) -> Option<Arc<dyn Projection>> {
    all().into_iter().find(|p| p.name() == name)
}
