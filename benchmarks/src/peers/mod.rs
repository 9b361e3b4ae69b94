//! The stores under test. Each one appends the same domain event (a `FindingDetected`
//! of about 600 bytes once serialized) through its own public API, on its own fresh
//! database, with the optimistic check it offers (the next sequence of the aggregate, or
//! the last event id it read).

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::PgPool;
use uuid::Uuid;

use crate::fixture::Fixture;

pub mod disintegrate_store;
pub mod esrs_store;
pub mod ours;
pub mod postgres_es;

/// One writer's connection to a store: appends `batch` events of one aggregate in one
/// transaction. Returns how many times it had to retry a transaction that the store
/// refused as a (false) conflict: only disintegrate, whose appends run SERIALIZABLE, does.
#[async_trait]
pub trait Writer: Send {
    async fn append(&mut self, batch: usize) -> anyhow::Result<u64>;
}

/// A store set up in its own database.
#[async_trait]
pub trait Store: Send + Sync {
    fn writer(&self, index: usize) -> Box<dyn Writer>;
    /// Rows the store holds now: every append is checked against it.
    async fn stored(&self) -> anyhow::Result<i64>;
}

/// The stores, in the order of the table's columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Ours,
    PostgresEs,
    Esrs,
    Disintegrate,
}

impl Peer {
    pub const ALL: [Peer; 4] = [Peer::Ours, Peer::PostgresEs, Peer::Esrs, Peer::Disintegrate];

    pub fn name(self) -> &'static str {
        match self {
            Peer::Ours => "ours",
            Peer::PostgresEs => "postgres-es",
            Peer::Esrs => "esrs",
            Peer::Disintegrate => "disintegrate",
        }
    }

    /// Creates the store's tables in `pool`'s (empty) database.
    pub async fn open(self, pool: PgPool, fixture: Arc<Fixture>) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match self {
            Peer::Ours => Arc::new(ours::Ours::open(pool, fixture).await?),
            Peer::PostgresEs => Arc::new(postgres_es::PostgresEs::open(pool, fixture).await?),
            Peer::Esrs => Arc::new(esrs_store::Esrs::open(pool, fixture).await?),
            Peer::Disintegrate => {
                Arc::new(disintegrate_store::Disintegrate::open(pool, fixture).await?)
            }
        })
    }
}

/// Events one aggregate receives before its writer moves on to a fresh one: a finding
/// with a long history, and the same for every store and every mode.
pub const STREAM_LEN: u64 = 100;

/// Which aggregate a writer appends to, and at which sequence.
#[derive(Debug)]
pub struct Stream {
    pub id: Uuid,
    /// Events the current aggregate already has.
    pub len: u64,
}

impl Default for Stream {
    fn default() -> Self {
        Self::new()
    }
}

impl Stream {
    pub fn new() -> Self {
        Self {
            id: Uuid::new_v4(),
            len: 0,
        }
    }

    /// The aggregate the next `batch` events go to and the sequence of the first of them
    /// (1-based). Returns `true` in the last field when the aggregate is a fresh one.
    pub fn take(&mut self, batch: usize) -> (Uuid, u64, bool) {
        if self.len + batch as u64 > STREAM_LEN.max(batch as u64) {
            *self = Self::new();
        }
        let fresh = self.len == 0;
        let first = self.len + 1;
        self.len += batch as u64;
        (self.id, first, fresh)
    }
}

pub async fn count(pool: &PgPool, table: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await?)
}
