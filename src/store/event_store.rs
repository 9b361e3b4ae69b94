use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, DomainEvent};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::Upcasters;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended the same sequence first: the optimistic lock.
    #[error("concurrent append to the same aggregate")]
    Conflict,
    #[error("stored event {aggregate_type}/{aggregate_id}#{sequence} cannot be read: {reason}")]
    Corrupt {
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
        reason: String,
    },
    /// A uniqueness rule of command-side state, such as one pending approval per
    /// finding, refused the change.
    #[error("refused by the uniqueness rule {0}")]
    Duplicate(String),
    /// A rule of command-side state that another aggregate's state decides refused
    /// the change (SQLSTATE `VL409`, raised in the appending transaction); the
    /// message says why.
    #[error("{0}")]
    Refused(String),
    #[error("event cannot be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error(transparent)]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            // The optimistic lock, or a concurrent import creating the same finding.
            sqlx::Error::Database(db)
                if matches!(db.constraint(), Some("events_pkey" | "finding_index_pkey")) =>
            {
                Self::Conflict
            }
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
                Self::Duplicate(db.constraint().unwrap_or("unique").to_owned())
            }
            sqlx::Error::Database(db) if db.code().as_deref() == Some("VL409") => {
                Self::Refused(db.message().to_owned())
            }
            _ => Self::Database(error),
        }
    }
}

/// An aggregate rebuilt from its events.
#[derive(Debug)]
pub struct Loaded<A> {
    pub aggregate: A,
    /// Sequence of the last event (0 when the aggregate has none): the If-Match version.
    pub version: u64,
    /// Global position of the last event, if any.
    pub last_position: Option<i64>,
}

/// One row to append. `sequence` is the aggregate's version after this event.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

impl NewEvent {
    pub fn from_domain<A: Aggregate>(
        aggregate_id: &str,
        sequence: i64,
        event: &A::Event,
        metadata: &Value,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            sequence,
            event_type: event.event_type(),
            event_version: event.event_version(),
            payload: serde_json::to_value(event)?,
            metadata: metadata.clone(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub position: i64,
}

/// The append statement: $1-$7 are the rows' columns as arrays.
const APPEND: &str = "INSERT INTO events \
       (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
     SELECT t.aggregate_type, t.aggregate_id, t.sequence, t.event_type, t.event_version, \
            t.payload, t.metadata \
     FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
         $6::jsonb[], $7::jsonb[]) WITH ORDINALITY \
       AS t(aggregate_type, aggregate_id, sequence, event_type, event_version, \
            payload, metadata, ord) \
     ORDER BY t.ord \
     RETURNING aggregate_type, aggregate_id, sequence, position";

/// Command-side state changed by the same statement that appends, as a
/// data-modifying CTE (`WITH alongside AS (..) INSERT INTO events ..`): the append and
/// the change are one round trip, atomic without BEGIN and COMMIT. `sql` reads its
/// arguments from `$8` (`args`, a JSON object).
#[derive(Debug, Clone)]
pub struct Alongside {
    pub sql: &'static str,
    pub args: Value,
}

#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    upcasters: Upcasters,
}

impl EventStore {
    /// A store that reads through the process's upcasters ([`Upcasters::process`]).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            upcasters: Upcasters::process().clone(),
        }
    }

    /// Reads through `upcasters` instead of the process's.
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    pub fn upcasters(&self) -> &Upcasters {
        &self.upcasters
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Rebuilds an aggregate of `tenant`. Another tenant's aggregate reads as empty,
    /// so it can only ever look absent (404), never forbidden.
    pub async fn load<A: Aggregate>(
        &self,
        tenant_id: Uuid,
        aggregate_id: &str,
    ) -> Result<Loaded<A>, StoreError> {
        let rows = sqlx::query(
            "SELECT sequence, event_type, event_version, payload, position FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant_id = $3 \
             ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;

        let mut loaded = Loaded {
            aggregate: A::default(),
            version: 0,
            last_position: None,
        };
        for row in rows {
            let sequence: i64 = row.try_get("sequence")?;
            let serialized = SerializedEvent::new(
                aggregate_id.to_owned(),
                sequence as usize,
                A::TYPE.to_owned(),
                row.try_get("event_type")?,
                row.try_get("event_version")?,
                row.try_get("payload")?,
                Value::Null,
            );
            let event = self.decode::<A>(serialized)?;
            loaded.aggregate.apply(event);
            loaded.version = sequence as u64;
            loaded.last_position = Some(row.try_get("position")?);
        }
        Ok(loaded)
    }

    /// Rebuilds many aggregates of one type in one round trip (imports touch
    /// thousands of findings; one query per finding would dominate their time).
    pub async fn load_many<A: Aggregate>(
        &self,
        conn: &mut PgConnection,
        tenant_id: Uuid,
        aggregate_ids: &[String],
    ) -> Result<std::collections::HashMap<String, Loaded<A>>, StoreError> {
        let mut loaded = std::collections::HashMap::with_capacity(aggregate_ids.len());
        if aggregate_ids.is_empty() {
            return Ok(loaded);
        }
        let rows = sqlx::query(
            // A join, not `= ANY($2)`: linear in the ids under any cached plan.
            "SELECT e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload, e.position \
             FROM UNNEST($2::text[]) AS r(aggregate_id) \
             JOIN events e ON e.aggregate_type = $1 AND e.aggregate_id = r.aggregate_id \
             WHERE e.tenant_id = $3 \
             ORDER BY e.aggregate_id, e.sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_ids)
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let aggregate_id: String = row.try_get("aggregate_id")?;
            let sequence: i64 = row.try_get("sequence")?;
            let event = self.decode::<A>(SerializedEvent::new(
                aggregate_id.clone(),
                sequence as usize,
                A::TYPE.to_owned(),
                row.try_get("event_type")?,
                row.try_get("event_version")?,
                row.try_get("payload")?,
                Value::Null,
            ))?;
            let entry = loaded.entry(aggregate_id).or_insert_with(|| Loaded {
                aggregate: A::default(),
                version: 0,
                last_position: None,
            });
            entry.aggregate.apply(event);
            entry.version = sequence as u64;
            entry.last_position = Some(row.try_get("position")?);
        }
        Ok(loaded)
    }

    /// Applies the upcasters, then deserializes into the aggregate's event type.
    pub fn decode<A: Aggregate>(&self, event: SerializedEvent) -> Result<A::Event, StoreError> {
        let event = self
            .upcasters
            .upcast(event)
            .map_err(|e| StoreError::Corrupt {
                reason: format!(
                    "{} version {}: {}",
                    e.event_type, e.stored_version, e.reason
                ),
                aggregate_type: e.aggregate_type,
                aggregate_id: e.aggregate_id,
                sequence: e.sequence,
            })?;
        serde_json::from_value(event.payload).map_err(|e| StoreError::Corrupt {
            aggregate_type: event.aggregate_type,
            aggregate_id: event.aggregate_id,
            sequence: event.sequence as i64,
            reason: format!("{} version {}: {e}", event.event_type, event.event_version),
        })
    }

    /// Appends events of any number of aggregates in one statement on the caller's
    /// connection or transaction, so a whole report import is one round trip.
    /// A sequence that already exists fails the whole statement with `Conflict`.
    pub async fn append(
        &self,
        conn: &mut PgConnection,
        events: &[NewEvent],
    ) -> Result<Vec<Appended>, StoreError> {
        self.append_with(conn, events, None).await
    }

    /// [`append`](Self::append), with `alongside` changed by the same statement.
    async fn append_with(
        &self,
        conn: &mut PgConnection,
        events: &[NewEvent],
        alongside: Option<&Alongside>,
    ) -> Result<Vec<Appended>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let n = events.len();
        let (mut types, mut ids, mut sequences, mut event_types, mut versions) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut payloads, mut metadata) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for e in events {
            types.push(e.aggregate_type.as_str());
            ids.push(e.aggregate_id.as_str());
            sequences.push(e.sequence);
            event_types.push(e.event_type.as_str());
            versions.push(e.event_version.as_str());
            payloads.push(&e.payload);
            metadata.push(&e.metadata);
        }
        // WITH ORDINALITY + ORDER BY makes positions follow the order given, so an
        // aggregate's sequences always get increasing positions.
        let sql = match alongside {
            Some(a) => format!("WITH alongside AS ({}) {APPEND}", a.sql),
            None => APPEND.to_owned(),
        };
        let mut query = sqlx::query(&sql)
            .bind(&types)
            .bind(&ids)
            .bind(&sequences)
            .bind(&event_types)
            .bind(&versions)
            .bind(&payloads)
            .bind(&metadata);
        if let Some(a) = alongside {
            query = query.bind(&a.args);
        }
        let rows = query.fetch_all(&mut *conn).await?;

        let mut appended = rows
            .into_iter()
            .map(|row| {
                Ok(Appended {
                    aggregate_type: row.try_get("aggregate_type")?,
                    aggregate_id: row.try_get("aggregate_id")?,
                    sequence: row.try_get("sequence")?,
                    position: row.try_get("position")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        appended.sort_by_key(|a| a.position);
        Ok(appended)
    }

    /// Appends `events` as one statement of its own, with `alongside` if given
    /// (atomic without BEGIN and COMMIT, two round trips fewer), and wakes the readers
    /// ([`super::wake`]): the path of a command whose other state, if any, one CTE
    /// can change.
    pub async fn append_alone(
        &self,
        events: &[NewEvent],
        alongside: Option<&Alongside>,
    ) -> Result<Vec<Appended>, StoreError> {
        let appended = self
            .append_with(&mut *self.pool.acquire().await?, events, alongside)
            .await?;
        super::wake::committed(&self.pool, events);
        Ok(appended)
    }

    /// The highest sequence an aggregate has, for reporting the current version
    /// after a lost race.
    pub async fn current_version(
        &self,
        tenant_id: Uuid,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<u64, StoreError> {
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT max(sequence) FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant_id = $3",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(tenant_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(version.unwrap_or(0) as u64)
    }
}
