//! esrs: `PgStore::persist`, the store built by `PgStoreBuilder` (which creates its
//! `<name>_events` table). The aggregate's events are vulnledger's `FindingEvent`, so the
//! payload is the same JSON as ours.

use std::sync::Arc;

use async_trait::async_trait;
use esrs::store::postgres::{PgStore, PgStoreBuilder};
use esrs::store::EventStore as _;
use esrs::AggregateState;
use sqlx::PgPool;
use vulnledger_aggregates::FindingEvent;

use super::{Store, Stream, Writer};
use crate::fixture::Fixture;

/// The smallest esrs aggregate whose events are findings' events.
pub struct BenchFinding;

#[derive(Debug)]
pub struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never raised")
    }
}

impl std::error::Error for Never {}

impl esrs::Aggregate for BenchFinding {
    const NAME: &'static str = "finding";
    type State = ();
    type Command = ();
    type Event = FindingEvent;
    type Error = Never;

    fn handle_command(_state: &(), _command: ()) -> Result<Vec<FindingEvent>, Never> {
        Ok(Vec::new())
    }

    fn apply_event(state: (), _payload: FindingEvent) {
        state
    }
}

pub struct Esrs {
    pool: PgPool,
    store: PgStore<BenchFinding>,
    fixture: Arc<Fixture>,
}

impl Esrs {
    pub async fn open(pool: PgPool, fixture: Arc<Fixture>) -> anyhow::Result<Self> {
        let store = PgStoreBuilder::<BenchFinding>::new(pool.clone())
            .try_build()
            .await?;
        Ok(Self {
            pool,
            store,
            fixture,
        })
    }
}

#[async_trait]
impl Store for Esrs {
    fn writer(&self, _index: usize) -> Box<dyn Writer> {
        let stream = Stream::new();
        Box::new(EsrsWriter {
            store: self.store.clone(),
            fixture: self.fixture.clone(),
            state: AggregateState::with_id(stream.id),
            stream,
        })
    }

    async fn stored(&self) -> anyhow::Result<i64> {
        super::count(&self.pool, self.store.table_name()).await
    }
}

struct EsrsWriter {
    store: PgStore<BenchFinding>,
    fixture: Arc<Fixture>,
    stream: Stream,
    state: AggregateState<()>,
}

#[async_trait]
impl Writer for EsrsWriter {
    async fn append(&mut self, batch: usize) -> anyhow::Result<u64> {
        let (id, _, fresh) = self.stream.take(batch);
        if fresh {
            self.state = AggregateState::with_id(id);
        }
        let events = vec![self.fixture.event.clone(); batch];
        let stored = self.store.persist(&mut self.state, events).await?;
        anyhow::ensure!(
            stored.len() == batch,
            "persisted {} of {batch}",
            stored.len()
        );
        Ok(0)
    }
}
