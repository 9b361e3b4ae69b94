//! Plain postgres-es: `PostgresEventRepository::persist` (no snapshot) into its own
//! `events` table, created from the crate's `db/init.sql`. Events are serialized the way
//! cqrs-es's `PersistedEventStore` hands them to the repository.

use std::sync::Arc;

use async_trait::async_trait;
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use vulnledger_aggregates::Finding;

use super::{Store, Stream, Writer};
use crate::fixture::Fixture;

/// postgres-es 0.5's `db/init.sql`, the tables it reads and writes (without its sample
/// view and test rows).
pub const SCHEMA: &str = "
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);
";

pub struct PostgresEs {
    pool: PgPool,
    repo: Arc<PostgresEventRepository>,
    fixture: Arc<Fixture>,
}

impl PostgresEs {
    pub async fn open(pool: PgPool, fixture: Arc<Fixture>) -> anyhow::Result<Self> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self {
            repo: Arc::new(PostgresEventRepository::new(pool.clone())),
            pool,
            fixture,
        })
    }
}

#[async_trait]
impl Store for PostgresEs {
    fn writer(&self, _index: usize) -> Box<dyn Writer> {
        Box::new(PostgresEsWriter {
            repo: self.repo.clone(),
            fixture: self.fixture.clone(),
            stream: Stream::new(),
        })
    }

    async fn stored(&self) -> anyhow::Result<i64> {
        super::count(&self.pool, "events").await
    }
}

struct PostgresEsWriter {
    repo: Arc<PostgresEventRepository>,
    fixture: Arc<Fixture>,
    stream: Stream,
}

#[async_trait]
impl Writer for PostgresEsWriter {
    async fn append(&mut self, batch: usize) -> anyhow::Result<u64> {
        let (id, first, _) = self.stream.take(batch);
        let id = id.to_string();
        let event = &self.fixture.event;
        let events = (0..batch as u64)
            .map(|i| {
                Ok(SerializedEvent::new(
                    id.clone(),
                    (first + i) as usize,
                    Finding::TYPE.to_owned(),
                    event.event_type(),
                    event.event_version(),
                    serde_json::to_value(event)?,
                    self.fixture.metadata.clone(),
                ))
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        self.repo.persist::<Finding>(&events, None).await?;
        Ok(0)
    }
}
