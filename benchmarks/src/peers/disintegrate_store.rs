//! disintegrate: `PgEventStore::append` (created by `PgEventStore::try_new`, which makes its
//! `event` and `event_sequence` tables and a column per domain identifier), with a query on
//! the finding's id and the id of the last event this writer appended to it: the check
//! its `DecisionMaker` makes. Events are serialized by disintegrate's `Json` serde.

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

pub struct Disintegrate {
    pool: PgPool,
    store: DisStore,
    fixture: Arc<Fixture>,
}

impl Disintegrate {
    pub async fn open(pool: PgPool, fixture: Arc<Fixture>) -> anyhow::Result<Self> {
        let store = PgEventStore::try_new(pool.clone(), Json::<BenchEvent>::default()).await?;
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
