//! Runs one command against one aggregate for a (tenant, actor).
//!
//! This replaces cqrs-es's `CqrsFramework` because the framework cannot check an
//! expected version against the state it decides on (it loads on its own), does not
//! return the global position, and its snapshot store applies events twice in 0.5.
//! The aggregate, events and handlers are cqrs-es's own types.

use std::collections::BTreeMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde_json::Value;
use uuid::Uuid;

use crate::store::{Alongside, EventStore, NewEvent, StoreError};

/// How many times a command without If-Match is re-run after losing a race.
const MAX_ATTEMPTS: usize = 5;

/// Who does what, for which tenant: stamped on every event as metadata.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub tenant_id: Uuid,
    pub actor: Actor,
    pub request_id: String,
}

/// A person (by user id) or a part of the system (`system:<name>`), e.g. the
/// process manager that applies approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub email: String,
}

impl Actor {
    pub fn user(id: Uuid, email: impl Into<String>) -> Self {
        Self {
            id: id.to_string(),
            email: email.into(),
        }
    }

    pub fn system(name: &str) -> Self {
        Self {
            id: format!("system:{name}"),
            email: String::new(),
        }
    }
}

impl CommandContext {
    pub fn metadata(&self) -> Value {
        let mut map = BTreeMap::new();
        map.insert("tenant_id", self.tenant_id.to_string());
        map.insert("actor_id", self.actor.id.clone());
        map.insert("actor_email", self.actor.email.clone());
        map.insert("request_id", self.request_id.clone());
        serde_json::to_value(map).expect("a map of strings serializes")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The domain refused the command.
    #[error(transparent)]
    Rejected(E),
    /// If-Match named a version of an aggregate that does not exist (for this tenant).
    #[error("not found")]
    NotFound,
    /// If-Match named a version that is no longer current (or a race was lost).
    #[error("version {expected} is stale; the current version is {current}")]
    StaleVersion { expected: u64, current: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a command did.
#[derive(Debug)]
pub struct Executed<A: Aggregate> {
    /// State after the command.
    pub aggregate: A,
    /// Sequence of the aggregate's last event: the new ETag.
    pub version: u64,
    /// Global position of the last event appended, or of the aggregate's last event
    /// when the command was a no-op (so reads can still wait for it).
    pub position: i64,
    pub events: Vec<A::Event>,
}

/// Command-side state that must change in the same transaction as an aggregate's
/// events (such as the finding index that imports decide on). Not a read model:
/// those are built from the event stream.
#[async_trait::async_trait]
pub trait Inline<A>: Send + Sync {
    async fn apply(
        &self,
        conn: &mut sqlx::PgConnection,
        tenant_id: Uuid,
        aggregate_id: &str,
        state: &A,
    ) -> Result<(), sqlx::Error>;

    /// Whether `apply` does nothing, so the append needs no transaction of its own.
    fn is_nothing(&self) -> bool {
        false
    }

    /// The same change as `apply`, as a CTE the append statement can carry (one
    /// round trip instead of BEGIN, append, change, COMMIT), if it can be one.
    fn alongside(&self, _tenant_id: Uuid, _aggregate_id: &str, _state: &A) -> Option<Alongside> {
        None
    }
}

/// Nothing to keep in step.
pub struct NoInline;

#[async_trait::async_trait]
impl<A: Sync> Inline<A> for NoInline {
    async fn apply(
        &self,
        _: &mut sqlx::PgConnection,
        _: Uuid,
        _: &str,
        _: &A,
    ) -> Result<(), sqlx::Error> {
        Ok(())
    }

    fn is_nothing(&self) -> bool {
        true
    }
}

#[derive(Clone)]
pub struct CommandService {
    store: EventStore,
}

impl CommandService {
    pub fn new(store: EventStore) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Loads the aggregate, checks `expected_version` against that very state, lets
    /// it decide, and appends its events at the next sequences. The primary key
    /// (aggregate, sequence) is the lock: of N writers at the same version exactly
    /// one appends; the others get `StaleVersion`. Without an expected version the
    /// command is simply re-run on the newer state.
    pub async fn execute<A>(
        &self,
        ctx: &CommandContext,
        aggregate_id: &str,
        expected_version: Option<u64>,
        command: A::Command,
        services: &A::Services,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A: Aggregate,
        A::Command: Clone,
    {
        self.execute_with(
            ctx,
            aggregate_id,
            expected_version,
            command,
            services,
            &NoInline,
        )
        .await
    }

    /// [`execute`](Self::execute), with `inline` applied to the new state in the
    /// transaction that appends the events.
    pub async fn execute_with<A>(
        &self,
        ctx: &CommandContext,
        aggregate_id: &str,
        expected_version: Option<u64>,
        command: A::Command,
        services: &A::Services,
        inline: &dyn Inline<A>,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A: Aggregate,
        A::Command: Clone,
    {
        let metadata = ctx.metadata();
        let mut last_loaded = 0;
        for _ in 0..MAX_ATTEMPTS {
            let loaded = self.store.load::<A>(ctx.tenant_id, aggregate_id).await?;
            last_loaded = loaded.version;
            if let Some(expected) = expected_version {
                if loaded.version == 0 {
                    return Err(CommandError::NotFound);
                }
                if expected != loaded.version {
                    return Err(CommandError::StaleVersion {
                        expected,
                        current: loaded.version,
                    });
                }
            }
            let mut aggregate = loaded.aggregate;
            let sink = EventSink::default();
            aggregate
                .handle(command.clone(), services, &sink)
                .await
                .map_err(CommandError::Rejected)?;
            let events = sink.collect().await;
            if events.is_empty() {
                return Ok(Executed {
                    aggregate,
                    version: loaded.version,
                    position: loaded.last_position.unwrap_or(0),
                    events,
                });
            }

            let rows = events
                .iter()
                .enumerate()
                .map(|(i, event)| {
                    NewEvent::from_domain::<A>(
                        aggregate_id,
                        (loaded.version + 1 + i as u64) as i64,
                        event,
                        &metadata,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            match self
                .append(ctx.tenant_id, aggregate_id, &rows, &aggregate, inline)
                .await
            {
                Ok(appended) => {
                    return Ok(Executed {
                        aggregate,
                        version: loaded.version + events.len() as u64,
                        position: appended.last().map_or(0, |a| a.position),
                        events,
                    })
                }
                Err(StoreError::Conflict) if expected_version.is_none() => continue,
                Err(StoreError::Conflict) => {
                    let current = self
                        .store
                        .current_version(ctx.tenant_id, A::TYPE, aggregate_id)
                        .await?;
                    return Err(CommandError::StaleVersion {
                        expected: loaded.version,
                        current,
                    });
                }
                Err(other) => return Err(other.into()),
            }
        }
        let current = self
            .store
            .current_version(ctx.tenant_id, A::TYPE, aggregate_id)
            .await?;
        Err(CommandError::StaleVersion {
            expected: last_loaded,
            current,
        })
    }

    /// One transaction: the events, then the inline state derived from them.
    async fn append<A>(
        &self,
        tenant_id: Uuid,
        aggregate_id: &str,
        rows: &[NewEvent],
        state: &A,
        inline: &dyn Inline<A>,
    ) -> Result<Vec<crate::store::Appended>, StoreError> {
        let alongside = inline.alongside(tenant_id, aggregate_id, state);
        let appended = if alongside.is_some() || inline.is_nothing() {
            self.store.append_alone(rows, alongside.as_ref()).await?
        } else {
            let mut tx = self.store.pool().begin().await?;
            let appended = self.store.append(&mut tx, rows).await?;
            inline
                .apply(&mut tx, tenant_id, aggregate_id, state)
                .await?;
            tx.commit().await?;
            crate::store::wake::committed(self.store.pool(), rows);
            appended
        };
        metrics::counter!("vulnledger_events_appended_total").increment(appended.len() as u64);
        Ok(appended)
    }
}
