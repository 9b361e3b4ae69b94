//! vulnledger's append path: `EventStore::append_alone` of `NewEvent` rows built by
//! `NewEvent::from_domain` (one statement, its own transaction, then the readers'
//! wake-up), exactly as `CommandService` appends when it keeps no command-side index
//! in step. The database has all of vulnledger's migrations, so every append also
//! fills `txid` and `tenant_id`.

use std::sync::Arc;

use anyhow::ensure;
use async_trait::async_trait;
use sqlx::PgPool;
use vulnledger::store::{EventStore, NewEvent};
use vulnledger_aggregates::Finding;

use super::{Store, Stream, Writer};
use crate::fixture::Fixture;

pub struct Ours {
    store: EventStore,
    fixture: Arc<Fixture>,
}

impl Ours {
    pub async fn open(pool: PgPool, fixture: Arc<Fixture>) -> anyhow::Result<Self> {
        vulnledger::db::migrate(&pool).await?;
        Ok(Self {
            store: EventStore::new(pool),
            fixture,
        })
    }
}

#[async_trait]
impl Store for Ours {
    fn writer(&self, _index: usize) -> Box<dyn Writer> {
        Box::new(OursWriter {
            store: self.store.clone(),
            fixture: self.fixture.clone(),
            stream: Stream::new(),
        })
    }

    async fn stored(&self) -> anyhow::Result<i64> {
        super::count(self.store.pool(), "events").await
    }
}

struct OursWriter {
    store: EventStore,
    fixture: Arc<Fixture>,
    stream: Stream,
}

#[async_trait]
impl Writer for OursWriter {
    async fn append(&mut self, batch: usize) -> anyhow::Result<u64> {
        let (id, first, _) = self.stream.take(batch);
        let id = id.to_string();
        let rows = (0..batch as u64)
            .map(|i| {
                NewEvent::from_domain::<Finding>(
                    &id,
                    (first + i) as i64,
                    &self.fixture.event,
                    &self.fixture.metadata,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let appended = self.store.append_alone(&rows, None).await?;
        ensure!(
            appended.len() == batch,
            "appended {} of {batch}",
            appended.len()
        );
        Ok(0)
    }
}
