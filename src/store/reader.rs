//! Reads committed events in commit order, never skipping a late committer.
//!
//! `position` is an identity handed out at insert time, before commit: a transaction
//! can take position 10, stay open, and commit after another one took 11 and
//! committed. A reader that followed `position > checkpoint` would move past 10 and
//! never see it. Instead every row records its transaction id (`xid8`), and we read
//! only rows whose transaction is older than the oldest transaction still running in
//! this database (`events_horizon()`, migration `..._000017`): those are all
//! finished, and every transaction that writes later gets a larger id. Ordering by
//! (txid, position) is therefore a total order that only ever grows at the end, and
//! a per-aggregate order too, because a later sequence can only be written after the
//! earlier one committed.
//!
//! The cost: a long-running write transaction in this database holds the horizon back
//! (latency, not loss). Transactions of other databases on the same server do not:
//! they cannot write these events.

use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::persist::SerializedEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{Connection, PgConnection, PgPool, Row};
use uuid::Uuid;

use super::upcasters::{Unreadable, Upcasters};
use super::wake::Notice;
use super::EVENTS_CHANNEL;

/// Where a reader stands: the last event it handed out, in commit order.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Checkpoint {
    pub txid: i64,
    pub position: i64,
}

impl Checkpoint {
    /// Before the first event.
    pub const START: Checkpoint = Checkpoint {
        txid: 0,
        position: 0,
    };
}

/// An event as stored, with everything a subscriber or auditor needs.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub position: i64,
    pub txid: i64,
    pub tenant_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// cqrs-es's externally tagged form: `{"<EventType>": {...}}`.
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            txid: self.txid,
            position: self.position,
        }
    }

    /// The event's own fields, without the enum tag (what subscribers and auditors see).
    pub fn data(&self) -> &Value {
        self.payload.get(&self.event_type).unwrap_or(&self.payload)
    }

    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }

    /// The row, in its type's current shape.
    fn from_row(row: &PgRow, upcasters: &Upcasters) -> Result<Self, sqlx::Error> {
        let event = Self {
            position: row.try_get("position")?,
            txid: row.try_get("txid")?,
            tenant_id: row.try_get("tenant_id")?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            recorded_at: row.try_get("recorded_at")?,
        };
        if upcasters.is_current(&event.event_type, &event.event_version) {
            return Ok(event);
        }
        event
            .upcast(upcasters)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }

    /// Moves the event through the upcasters and back: nothing is cloned.
    fn upcast(mut self, upcasters: &Upcasters) -> Result<Self, UnreadableEvent> {
        let take = std::mem::take::<String>;
        let serialized = SerializedEvent::new(
            take(&mut self.aggregate_id),
            self.sequence as usize,
            take(&mut self.aggregate_type),
            take(&mut self.event_type),
            take(&mut self.event_version),
            self.payload.take(),
            self.metadata.take(),
        );
        match upcasters.upcast(serialized) {
            Ok(e) => {
                self.aggregate_id = e.aggregate_id;
                self.aggregate_type = e.aggregate_type;
                self.event_type = e.event_type;
                self.event_version = e.event_version;
                self.payload = e.payload;
                self.metadata = e.metadata;
                Ok(self)
            }
            Err(event) => Err(UnreadableEvent {
                position: self.position,
                event,
            }),
        }
    }
}

/// An event the ordered reader cannot hand out in its current shape. Readers stop
/// on it (as `sqlx::Error::Decode`) rather than skip it or pass on an old shape.
#[derive(Debug, thiserror::Error)]
#[error("event at position {position}, {event}")]
pub struct UnreadableEvent {
    pub position: i64,
    pub event: Box<Unreadable>,
}

/// Hands out events in their current shapes: every event goes through the
/// process's upcasters ([`Upcasters::process`]) on its way out.
#[derive(Clone)]
pub struct OrderedReader {
    pool: PgPool,
    upcasters: Upcasters,
    /// Only events of this aggregate type, minus these event types: readers that
    /// want a small part of the stream should not fetch and decode the rest.
    only: Option<(&'static str, &'static [&'static str])>,
}

impl OrderedReader {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            upcasters: Upcasters::process().clone(),
            only: None,
        }
    }

    /// Reads through `upcasters` instead of the process's.
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// A reader of `aggregate_type`'s events except `except`. Its checkpoints are
    /// positions in the same commit order, so the filter never skips a late committer.
    pub fn only(mut self, aggregate_type: &'static str, except: &'static [&'static str]) -> Self {
        self.only = Some((aggregate_type, except));
        self
    }

    /// Up to `limit` committed events after `after`, in commit order and current
    /// shapes. An empty answer means "nothing safe to read yet", not "the end". An
    /// event that cannot be upcast fails the batch with `sqlx::Error::Decode`
    /// holding an [`UnreadableEvent`] that names its position.
    pub async fn read_batch(
        &self,
        after: Checkpoint,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        Ok(self.read_reaching(after, limit).await?.0)
    }

    /// [`read_batch`](Self::read_batch), with where the next read starts: after the
    /// last event handed out, or, for a filtered reader ([`only`](Self::only)) whose
    /// answer was not full, after every event it looked past.
    ///
    /// Without the second, a filtered reader would start each read at the last event
    /// that matched, and look again at every event of other types since: the live
    /// feed, which wants scan events, read every status change since the last scan on
    /// every wake-up, and the planner made it worse by walking the commit-order index
    /// (statistics gathered before those events estimate one row past their end).
    pub async fn read_reaching(
        &self,
        after: Checkpoint,
        limit: i64,
    ) -> Result<(Vec<StoredEvent>, Checkpoint), sqlx::Error> {
        self.read_reaching_on(&mut *self.pool.acquire().await?, after, limit)
            .await
    }

    /// [`read_reaching`](Self::read_reaching) on `conn`.
    async fn read_reaching_on(
        &self,
        conn: &mut PgConnection,
        after: Checkpoint,
        limit: i64,
    ) -> Result<(Vec<StoredEvent>, Checkpoint), sqlx::Error> {
        // Two statements rather than one with an optional filter, so each keeps a
        // plan that range-scans its own index ((txid, position), or
        // (aggregate_type, txid, position)). ORDER BY names the table's columns: a
        // bare `txid` would mean the bigint output column, which no index orders, and
        // every read would sort the whole backlog.
        let Some((aggregate_type, except)) = self.only else {
            let rows = sqlx::query(&Self::batch_sql(""))
                .bind(after.txid)
                .bind(after.position)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?;
            let events = self.decode(&rows)?;
            let reached = events.last().map_or(after, StoredEvent::checkpoint);
            return Ok((events, reached));
        };
        // The head first: every event up to it is committed (it is below the horizon
        // of an earlier snapshot), so a read bounded by it misses none of them, and
        // may move past them all when it is not full.
        let head = Self::head_on(&mut *conn).await?;
        if head <= after {
            return Ok((Vec::new(), after));
        }
        let rows = sqlx::query(&Self::batch_sql(Self::ONLY))
            .bind(after.txid)
            .bind(after.position)
            .bind(limit)
            .bind(aggregate_type)
            .bind(except.to_vec())
            .bind(head.txid)
            .bind(head.position)
            .fetch_all(&mut *conn)
            .await?;
        let events = self.decode(&rows)?;
        let reached = match events.last() {
            Some(last) if events.len() as i64 >= limit => last.checkpoint(),
            _ => head,
        };
        Ok((events, reached))
    }

    fn decode(&self, rows: &[PgRow]) -> Result<Vec<StoredEvent>, sqlx::Error> {
        rows.iter()
            .map(|row| StoredEvent::from_row(row, &self.upcasters))
            .collect()
    }

    /// The filter of a reader of one aggregate type, up to the head it read first
    /// (`$6`, `$7`); public so that a test can check its plan.
    pub const ONLY: &'static str = "AND aggregate_type = $4 AND event_type <> ALL($5) \
         AND (txid, position) <= ($6::bigint::text::xid8, $7)";

    /// The statement of [`read_batch`](Self::read_batch); public so that a test can
    /// check its plan.
    pub fn batch_sql(filter: &str) -> String {
        format!(
            "SELECT position, txid::text::bigint AS txid, tenant_id, aggregate_type, aggregate_id, \
                    sequence, event_type, event_version, payload, metadata, recorded_at \
             FROM events \
             WHERE (txid, position) > ($1::bigint::text::xid8, $2) \
               AND txid < (SELECT events_horizon()) {filter} \
             ORDER BY events.txid, events.position \
             LIMIT $3"
        )
    }

    /// The last event readable now: where a reader that wants only what comes next
    /// starts.
    pub async fn head(&self) -> Result<Checkpoint, sqlx::Error> {
        Self::head_on(&mut *self.pool.acquire().await?).await
    }

    async fn head_on(conn: &mut PgConnection) -> Result<Checkpoint, sqlx::Error> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT txid::text::bigint, position FROM events \
             WHERE txid < (SELECT events_horizon()) \
             ORDER BY events.txid DESC, events.position DESC LIMIT 1",
        )
        .fetch_optional(conn)
        .await?;
        Ok(
            row.map_or(Checkpoint::START, |(txid, position)| Checkpoint {
                txid,
                position,
            }),
        )
    }

    /// Follows the store from `from`: see [`Tail`].
    pub async fn tail(&self, from: Checkpoint, batch_size: i64) -> Result<Tail, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(EVENTS_CHANNEL).await?;
        Ok(Tail {
            reader: self.clone(),
            conn: None,
            listener,
            local: super::wake::subscribe(&self.pool, self.only.map(|(t, _)| t)),
            checkpoint: from,
            batch_size,
            poll_interval: Duration::from_millis(500),
        })
    }
}

/// The longest step between looks after a wake-up that found nothing readable yet.
const RECHECK_MAX: Duration = Duration::from_millis(8);

/// A reader that waits for new events: woken by appends in this process at once and
/// by other processes' NOTIFY ([`super::wake`]), and polling as well, because a
/// notification can be missed (a reconnect, an appender that died after its commit)
/// and because an event that was not yet below the horizon when we were woken needs
/// a retry.
pub struct Tail {
    reader: OrderedReader,
    /// Where it reads: a connection of its own that plans its statements once
    /// ([`Tail::connect`]). Dropped after an error, opened again on the next read.
    conn: Option<PgConnection>,
    listener: PgListener,
    local: super::wake::Subscription,
    checkpoint: Checkpoint,
    batch_size: i64,
    poll_interval: Duration,
}

impl Tail {
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }

    /// A tail reads a few new rows at the end of `events`, hundreds of times a
    /// second, and PostgreSQL planned each read again: the statistics, gathered
    /// before those rows existed, make a plan for the given position look far
    /// cheaper than the prepared generic one, so it never settled on that. Planning
    /// cost several times the read itself (0.2 ms against 0.03 ms, measured with
    /// pg_stat_statements' track_planning). The generic plan is the right one
    /// whatever the position: a range scan of the commit-order index, in its order.
    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        let options = (*self.reader.pool.connect_options())
            .clone()
            .options([("plan_cache_mode", "force_generic_plan")]);
        PgConnection::connect_with(&options).await
    }

    async fn read(&mut self) -> Result<(Vec<StoredEvent>, Checkpoint), sqlx::Error> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(self.connect().await?),
        };
        let read = self
            .reader
            .read_reaching_on(conn, self.checkpoint, self.batch_size)
            .await;
        if read.is_err() {
            self.conn = None;
        }
        read
    }

    /// The next non-empty batch; advances the checkpoint past it.
    pub async fn next_batch(&mut self) -> Result<Vec<StoredEvent>, sqlx::Error> {
        // Set after a wake-up that found nothing readable: something committed but an
        // older transaction still holds the horizon, so look again soon, backing off
        // to at most `RECHECK_MAX` (under load the horizon is held by transactions of
        // a few milliseconds, and a longer step would be lag) until a poll interval
        // has passed since the wake-up.
        let mut recheck: Option<(Duration, tokio::time::Instant)> = None;
        loop {
            let before = self.checkpoint;
            let (batch, reached) = self.read().await?;
            self.checkpoint = reached;
            if !batch.is_empty() {
                return Ok(batch);
            }
            if reached != before {
                // A filtered reader looked past new events, none of them its own:
                // the horizon moved, so the wake-up has been answered.
                recheck = None;
            }
            if let Some((delay, woken_at)) = recheck {
                tokio::time::sleep(delay).await;
                recheck = Some(((delay * 2).min(RECHECK_MAX), woken_at))
                    .filter(|_| woken_at.elapsed() < self.poll_interval);
                continue;
            }
            let only = self.reader.only.map(|(t, _)| t);
            let poll = tokio::time::sleep(self.poll_interval);
            tokio::pin!(poll);
            let woken = loop {
                break tokio::select! {
                    // The sender lives as long as the process: `changed` cannot fail.
                    _ = self.local.commits.changed() => Ok(Ok(Some(()))),
                    received = self.listener.try_recv() => match received {
                        // This process's own appends, or other types than this
                        // reader's: nothing to look for.
                        Ok(Some(n)) if !Notice::parse(n.payload()).concerns(&self.local.me, only) => {
                            continue
                        }
                        other => Ok(other.map(|n| n.map(|_| ()))),
                    },
                    () = &mut poll => Err(()),
                };
            };
            match woken {
                Ok(Ok(Some(()))) => {
                    recheck = Some((Duration::from_millis(1), tokio::time::Instant::now()))
                }
                // The connection dropped; PgListener reconnects on the next call and
                // the read above covers whatever was appended meanwhile.
                Ok(Ok(None)) | Err(()) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "event notification listener failed; polling");
                    tokio::time::sleep(self.poll_interval).await;
                }
            }
        }
    }
}
