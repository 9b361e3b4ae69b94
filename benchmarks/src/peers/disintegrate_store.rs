//! disintegrate: `PgEventStore::append`, with a query on the finding's id and the id of
//! the last event this writer appended to it: the check its `DecisionMaker` makes. Events
//! are serialized by disintegrate's `Json` serde.
//!
//! The schema is disintegrate-postgres 4.0.1's own (`Migrator::init_event_store`: the
//! `event` table, its sequence and index, the epoch functions and one indexed column per
//! domain id), created here statement by statement because `PgEventStore::try_new`
//! fails on PostgreSQL 15: `event_store_begin_epoch()` writes `0xFFFFFFFF`, a hexadecimal
//! integer literal, which PostgreSQL accepts only from version 16 on. The one change is
//! that literal spelled in decimal (4294967295); the append path is the crate's,
//! untouched.

use std::sync::Arc;

use async_trait::async_trait;
use disintegrate::serde::json::Json;
use disintegrate::{query, Event, EventStore as _};
use disintegrate_postgres::{PgEventId, PgEventStore};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use vulnledger_aggregates::FindingEvent;

use super::{Store, Stream, Writer};
use crate::fixture::Fixture;

/// A finding's event, with the finding's id as disintegrate's domain identifier.
#[derive(Debug, Clone, PartialEq, Event, Serialize, Deserialize)]
pub enum BenchEvent {
    FindingDetected {
        #[id]
        finding_id: String,
        event: FindingEvent,
    },
}

type DisStore = PgEventStore<BenchEvent, Json<BenchEvent>>;

/// disintegrate-postgres 4.0.1's `init_event_store` for `BenchEvent`, in its order, with
/// `0xFFFFFFFF` written as 4294967295 (see the module's comment).
const SCHEMA: &[&str] = &[
    "CREATE SEQUENCE IF NOT EXISTS seq_event_event_id",
    "CREATE TABLE IF NOT EXISTS event (
        event_id BIGINT PRIMARY KEY DEFAULT nextval('seq_event_event_id'),
        event_type VARCHAR(255),
        payload BYTEA,
        inserted_at TIMESTAMP DEFAULT now()
    )",
    "CREATE INDEX IF NOT EXISTS idx_event_type_btree ON event(event_type)",
    "CREATE OR REPLACE FUNCTION event_store_current_epoch()
    RETURNS BIGINT AS $$
    DECLARE
        persisted_event_id BIGINT;
        pending_event_id BIGINT;
        db_id INT;
    BEGIN
        SELECT COALESCE(MAX(event_id), 0) INTO persisted_event_id FROM event;
        SELECT oid INTO db_id FROM pg_database WHERE datname = current_database();

        SELECT MIN((l3.objid::bigint << 32) + l2.objid::bigint)
        INTO pending_event_id
        FROM pg_locks l1
        INNER JOIN pg_locks l2 ON l1.pid = l2.pid
        INNER JOIN pg_locks l3 ON l1.pid = l3.pid
        WHERE
            l1.classid = db_id
            AND l2.classid = 1
            AND l3.classid = 2
            AND l1.locktype = 'advisory';

        RETURN LEAST(COALESCE(pending_event_id, persisted_event_id), persisted_event_id);
    END;
    $$ LANGUAGE plpgsql",
    "CREATE OR REPLACE FUNCTION event_store_begin_epoch()
    RETURNS void AS $$
    DECLARE
        id BIGINT;
        db_id INT;
    BEGIN
        SELECT last_value INTO id FROM seq_event_event_id;
        SELECT oid INTO db_id FROM pg_database WHERE datname = current_database();

        PERFORM pg_try_advisory_xact_lock_shared(db_id, 0);
        PERFORM pg_try_advisory_xact_lock_shared(1, (id & 4294967295)::bit(32)::integer);
        PERFORM pg_try_advisory_xact_lock_shared(2, (id >> 32)::bit(32)::integer);
    END;
    $$ LANGUAGE plpgsql",
    "ALTER TABLE event ADD COLUMN IF NOT EXISTS finding_id TEXT",
    "CREATE INDEX IF NOT EXISTS idx_event_finding_id ON event (finding_id) WHERE finding_id IS NOT NULL",
];

pub struct Disintegrate {
    pool: PgPool,
    store: DisStore,
    fixture: Arc<Fixture>,
}

impl Disintegrate {
    pub async fn open(pool: PgPool, fixture: Arc<Fixture>) -> anyhow::Result<Self> {
        for statement in SCHEMA {
            sqlx::raw_sql(statement).execute(&pool).await?;
        }
        let store = PgEventStore::new_uninitialized(pool.clone(), Json::<BenchEvent>::default());
        Ok(Self {
            pool,
            store,
            fixture,
        })
    }
}

#[async_trait]
impl Store for Disintegrate {
    fn writer(&self, _index: usize) -> Box<dyn Writer> {
        Box::new(DisWriter {
            store: self.store.clone(),
            fixture: self.fixture.clone(),
            stream: Stream::new(),
            last_event_id: 0,
        })
    }

    async fn stored(&self) -> anyhow::Result<i64> {
        super::count(&self.pool, "event").await
    }
}

struct DisWriter {
    store: DisStore,
    fixture: Arc<Fixture>,
    stream: Stream,
    last_event_id: PgEventId,
}

/// Retries of one append before the benchmark gives up on it.
const MAX_RETRIES: u64 = 100;

#[async_trait]
impl Writer for DisWriter {
    async fn append(&mut self, batch: usize) -> anyhow::Result<u64> {
        let (id, _, fresh) = self.stream.take(batch);
        if fresh {
            self.last_event_id = 0;
        }
        let finding_id = id.to_string();
        let events = vec![
            BenchEvent::FindingDetected {
                finding_id: finding_id.clone(),
                event: self.fixture.event.clone(),
            };
            batch
        ];
        let mut retries = 0;
        loop {
            let query = query!(BenchEvent; finding_id == finding_id.clone());
            match self
                .store
                .append(events.clone(), query, self.last_event_id)
                .await
            {
                Ok(persisted) => {
                    anyhow::ensure!(
                        persisted.len() == batch,
                        "appended {} of {batch}",
                        persisted.len()
                    );
                    self.last_event_id = persisted.last().map_or(self.last_event_id, |e| e.id());
                    return Ok(retries);
                }
                // The appends are SERIALIZABLE: PostgreSQL may refuse one that touches
                // nothing another writer touched (no other writer appends to this
                // finding). An application would retry the decision; so do we.
                Err(e) if is_serialization_failure(&e) && retries < MAX_RETRIES => {
                    retries += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn is_serialization_failure(e: &disintegrate_postgres::Error) -> bool {
    match e {
        disintegrate_postgres::Error::Concurrency => true,
        disintegrate_postgres::Error::Database(sqlx::Error::Database(db)) => {
            db.code().as_deref() == Some("40001")
        }
        _ => false,
    }
}
