//! Projection workers: feed each projection (`vulnledger_projections::all()`) the
//! event stream and keep its checkpoint.
//!
//! Every batch is applied in one transaction together with the projection's
//! checkpoint; events at or before the checkpoint are dropped first. So a batch
//! delivered twice (a redelivery after a crash between commit and ack, a relay that
//! re-published after JetStream's duplicate window) is applied once, and a worker
//! killed mid-batch leaves the previous batch's state, never half of this one.
//!
//! Sources, in order:
//! 1. the store itself, read through the ordered reader from the checkpoint until
//!    caught up (a new or rebuilt projection, a stream that lost history);
//! 2. with `NATS_URL`, a durable JetStream pull consumer (`projection-<name>-<store>`,
//!    acknowledged after commit: one ack for the whole batch, as `AckPolicy::All`
//!    lets it), which skips the messages of other event stores sharing the NATS
//!    server; without it, the store's tail, woken by the same NOTIFY the relay
//!    wakes on.
//!
//! One active worker per projection, by advisory lock (`processes::supervise`), so
//! any number of `serve` or `worker` processes may run.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::Message;
use futures::{FutureExt, StreamExt};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use vulnledger_projections::{
    checkpoint, Advance, ProjectedEvent, Projection, ProjectionCheckpoint,
};

use crate::bus::{self, CloudEvent};
use crate::processes::supervise;
use crate::store::{Checkpoint, OrderedReader, StoredEvent};

/// Events per transaction while catching up from the store.
const CATCH_UP_BATCH: i64 = 2000;
/// At most this many messages are applied in one transaction from NATS.
const LIVE_BATCH: usize = 1000;

/// Something that follows the event stream from a durable checkpoint: a projection,
/// or a process manager that reacts to events with commands.
#[async_trait::async_trait]
pub trait Consumer: Send + Sync {
    /// Its advisory lock and checkpoint key.
    fn name(&self) -> &str;

    /// Its durable JetStream consumer's name, to which [`durable_name`] adds the
    /// store's identity.
    fn durable(&self) -> String {
        self.name().to_owned()
    }

    /// The one aggregate type whose events it needs, when that is all it needs: it
    /// is then handed only those, and never reads the rest of the stream. The
    /// approvals process manager wants approval events, a few among the status
    /// changes, and reading every one of them cost a read and a checkpoint write per
    /// batch of commands.
    fn only(&self) -> Option<&'static str> {
        None
    }

    /// Where it stands (after whatever preparation starting needs).
    async fn start(&self, pool: &PgPool) -> anyhow::Result<ProjectionCheckpoint>;

    /// Handles those of `events` (commit order) that come after the checkpoint, and
    /// moves the checkpoint past them; `Ok` means both are durable. Returns where
    /// it stands now.
    async fn handle(
        &self,
        pool: &PgPool,
        at: &ProjectionCheckpoint,
        events: Vec<ProjectedEvent>,
    ) -> anyhow::Result<ProjectionCheckpoint>;
}

/// The events of `events` after `at`, and the checkpoint after them (`None` when
/// there is nothing new).
pub fn after(
    at: &ProjectionCheckpoint,
    events: Vec<ProjectedEvent>,
) -> Option<(Vec<ProjectedEvent>, ProjectionCheckpoint)> {
    let fresh: Vec<ProjectedEvent> = events
        .into_iter()
        .filter(|e| !at.covers(e.txid, e.position))
        .collect();
    let last = fresh.last()?;
    let next = ProjectionCheckpoint {
        txid: last.txid,
        position: last.position,
        max_position: fresh
            .iter()
            .map(|e| e.position)
            .max()
            .unwrap_or(0)
            .max(at.max_position),
        events: at.events + fresh.len() as i64,
        version: at.version,
    };
    Some((fresh, next))
}

/// A projection as a consumer: a batch and its checkpoint's move, both or neither.
pub struct ProjectionConsumer {
    projection: Arc<dyn Projection>,
    /// The batches' connection, kept between them. A batch that fails, or is
    /// dropped halfway, drops it with whatever it had open.
    conn: tokio::sync::Mutex<Option<PgConnection>>,
}

impl ProjectionConsumer {
    pub fn new(projection: Arc<dyn Projection>) -> Self {
        Self {
            projection,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The kept connection, or a new one. Its batches run with generic plans (a
    /// live batch loads a handful of rows by id, and PostgreSQL planned that lookup
    /// again on almost every batch: 0.22 ms of planning for 0.06 ms of work) and
    /// without waiting for the WAL flush (a batch lost in a crash is lost together
    /// with its checkpoint, and applied again from the durable events).
    async fn connection(&self, pool: &PgPool) -> anyhow::Result<PgConnection> {
        if let Some(conn) = self.conn.lock().await.take() {
            return Ok(conn);
        }
        let mut conn = pool.acquire().await?.detach();
        sqlx::query(
            "SELECT set_config('plan_cache_mode', 'force_generic_plan', false), \
                    set_config('synchronous_commit', 'off', false)",
        )
        .execute(&mut conn)
        .await?;
        Ok(conn)
    }
}

#[async_trait::async_trait]
impl Consumer for ProjectionConsumer {
    fn name(&self) -> &str {
        self.projection.name()
    }

    fn durable(&self) -> String {
        format!("projection-{}", self.projection.name())
    }

    /// A projection whose stored rows were written by another version is emptied at
    /// once (no stale shapes are served), then rebuilt by a bulk replay into fresh
    /// tables that are swapped in; a projection that never ran starts empty and
    /// catches up batch by batch.
    async fn start(&self, pool: &PgPool) -> anyhow::Result<ProjectionCheckpoint> {
        let projection = &self.projection;
        match checkpoint::load(pool, projection.name()).await? {
            Some(at) if at.version == projection.version() => {
                if !far_behind(pool, &at).await? {
                    return Ok(at);
                }
                // Most of the history is unapplied (a new projection, a restored
                // store): a bulk replay into fresh tables is several times faster
                // than batches, and the API keeps serving the rows it has meanwhile.
                tracing::info!(
                    projection = projection.name(),
                    "projection far behind the store; rebuilding it instead of catching up"
                );
                let rebuilt = crate::rebuild::rebuild(pool, projection.clone(), |_| {}).await?;
                vacuum_later(pool, projection.clone());
                Ok(rebuilt.checkpoint)
            }
            Some(stale) => {
                tracing::warn!(
                    projection = projection.name(),
                    stored = stale.version,
                    current = projection.version(),
                    "projection version changed; rebuilding it from the event store"
                );
                reset(pool, projection.as_ref()).await?;
                let rebuilt = crate::rebuild::rebuild(pool, projection.clone(), |_| {}).await?;
                vacuum_later(pool, projection.clone());
                tracing::info!(
                    projection = projection.name(),
                    events = rebuilt.checkpoint.events,
                    seconds = rebuilt.elapsed.as_secs_f64(),
                    "projection rebuilt"
                );
                Ok(rebuilt.checkpoint)
            }
            None => {
                let at = reset(pool, projection.as_ref()).await?;
                if !far_behind(pool, &at).await? {
                    return Ok(at);
                }
                let rebuilt = crate::rebuild::rebuild(pool, projection.clone(), |_| {}).await?;
                vacuum_later(pool, projection.clone());
                Ok(rebuilt.checkpoint)
            }
        }
    }

    /// The batch is saved only if the stored checkpoint is still the one this worker
    /// started from: a rebuild may have swapped in tables that are further along,
    /// and then nothing of the batch is written, and what is left of it is applied
    /// after the rebuild's checkpoint.
    async fn handle(
        &self,
        pool: &PgPool,
        at: &ProjectionCheckpoint,
        events: Vec<ProjectedEvent>,
    ) -> anyhow::Result<ProjectionCheckpoint> {
        let name = self.projection.name();
        let mut conn = self.connection(pool).await?;
        let (mut at, mut events) = (*at, events);
        loop {
            let Some((fresh, next)) = after(&at, events) else {
                *self.conn.lock().await = Some(conn);
                return Ok(at);
            };
            let next = ProjectionCheckpoint {
                version: self.projection.version(),
                ..next
            };
            let mut tenants: Vec<uuid::Uuid> = fresh.iter().map(|e| e.tenant_id).collect();
            tenants.sort_unstable();
            tenants.dedup();
            let advance = Advance {
                name,
                from: &at,
                to: &next,
                tenants: &tenants,
            };
            if self
                .projection
                .apply_advancing(&mut conn, &fresh, &advance)
                .await?
            {
                *self.conn.lock().await = Some(conn);
                return Ok(next);
            }
            let stored = checkpoint::load(pool, name).await?;
            tracing::info!(
                projection = name,
                "the checkpoint moved under this worker (a rebuild swapped in); applying the rest after it"
            );
            (at, events) = (stored.unwrap_or(at), fresh);
        }
    }
}

/// [`crate::rebuild::vacuum`] in the background: the worker goes on meanwhile.
fn vacuum_later(pool: &PgPool, projection: Arc<dyn Projection>) {
    let pool = pool.clone();
    tokio::spawn(async move {
        match crate::rebuild::vacuum(&pool, projection.as_ref()).await {
            Ok(took) => tracing::info!(
                projection = projection.name(),
                seconds = took.as_secs_f64(),
                "rebuilt tables vacuumed"
            ),
            // Autovacuum gets to them later; only index-only scans are slower meanwhile.
            Err(e) => tracing::warn!(
                projection = projection.name(),
                error = %e,
                "cannot vacuum the rebuilt tables"
            ),
        }
    });
}

/// Events behind past which a starting worker rebuilds rather than catches up.
const REBUILD_BACKLOG: i64 = 100_000;

/// Whether more events wait than `REBUILD_BACKLOG` and than have been applied (the
/// count stops there, so asking is cheap whatever the store's size).
async fn far_behind(pool: &PgPool, at: &ProjectionCheckpoint) -> anyhow::Result<bool> {
    let limit = REBUILD_BACKLOG.max(at.events) + 1;
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM events \
           WHERE (txid, position) > ($1::bigint::text::xid8, $2) LIMIT $3) AS w",
    )
    .bind(at.txid)
    .bind(at.position)
    .bind(limit)
    .fetch_one(pool)
    .await?;
    Ok(waiting == limit)
}

/// Starts a worker per projection, plus `extra` consumers (process managers), until
/// `shutdown`.
pub fn spawn(
    pool: PgPool,
    nats_url: Option<String>,
    extra: Vec<Arc<dyn Consumer>>,
    shutdown: CancellationToken,
) {
    let projections = vulnledger_projections::all()
        .into_iter()
        .map(|p| Arc::new(ProjectionConsumer::new(p)) as Arc<dyn Consumer>);
    for consumer in projections.chain(extra) {
        let lock: &'static str =
            Box::leak(format!("consumer:{}", consumer.name()).into_boxed_str());
        let nats_url = nats_url.clone();
        tokio::spawn(supervise(lock, pool.clone(), shutdown.clone(), {
            move |pool, shutdown| run(pool, Arc::clone(&consumer), nats_url.clone(), shutdown)
        }));
    }
}

async fn run(
    pool: PgPool,
    consumer: Arc<dyn Consumer>,
    nats_url: Option<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut worker = Worker::start(pool, consumer).await?;
    let Some(url) = nats_url else {
        worker.catch_up(&shutdown).await?;
        return worker.follow_store(&shutdown).await;
    };
    // Where the stream ends before the catch-up: whatever the catch-up cannot read
    // yet is published after it has read, so after this point. A durable made
    // afterwards starts here, and misses nothing the catch-up left, without reading
    // the stream's older history (other stores' messages among it). NATS being down
    // must not stop the catch-up: read models keep up from the store meanwhile.
    let start = stream_end(&url).await;
    worker.catch_up(&shutdown).await?;
    let (context, start) = start?;
    worker.follow_nats(&context, start, &shutdown).await
}

/// A JetStream connection, and the sequence the next message stored will have.
async fn stream_end(url: &str) -> anyhow::Result<(async_nats::jetstream::Context, u64)> {
    let context = bus::connect_jetstream(url).await?;
    let stream = context.get_stream(bus::STREAM).await?;
    let next = stream.cached_info().state.last_sequence + 1;
    Ok((context, next))
}

/// The durable JetStream consumer of `base` (a [`Consumer::durable`]) for the store
/// `store`: each store sharing a NATS server has its own.
pub fn durable_name(base: &str, store: uuid::Uuid) -> String {
    format!("{base}-{}", store.simple())
}

/// How long NATS keeps a durable consumer that nobody reads: those of stores that
/// are gone (a dropped test database, a restored copy) would otherwise stay for
/// good. A worker away longer finds its durable gone and makes another after
/// catching up from the store.
const DURABLE_INACTIVE: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct Worker {
    pool: PgPool,
    consumer: Arc<dyn Consumer>,
    at: ProjectionCheckpoint,
}

impl Worker {
    pub async fn start(pool: PgPool, consumer: Arc<dyn Consumer>) -> anyhow::Result<Self> {
        let at = consumer.start(&pool).await?;
        Ok(Self { pool, consumer, at })
    }

    /// A worker for one projection.
    pub async fn for_projection(
        pool: PgPool,
        projection: Arc<dyn Projection>,
    ) -> anyhow::Result<Self> {
        Self::start(pool, Arc::new(ProjectionConsumer::new(projection))).await
    }

    pub fn checkpoint(&self) -> ProjectionCheckpoint {
        self.at
    }

    /// The store, as much of it as the consumer reads.
    fn reader(&self) -> OrderedReader {
        let reader = OrderedReader::new(self.pool.clone());
        match self.consumer.only() {
            Some(aggregate_type) => reader.only(aggregate_type, &[]),
            None => reader,
        }
    }

    fn position(&self) -> Checkpoint {
        Checkpoint {
            txid: self.at.txid,
            position: self.at.position,
        }
    }

    /// Reads the store from the checkpoint until nothing more is readable.
    pub async fn catch_up(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let reader = self.reader();
        while !shutdown.is_cancelled() {
            let (batch, reached) = reader
                .read_reaching(self.position(), CATCH_UP_BATCH)
                .await?;
            let full = batch.len() as i64 == CATCH_UP_BATCH;
            self.apply(batch.into_iter().map(into_projected).collect())
                .await?;
            // A consumer that reads one aggregate type has looked past the others.
            if reached > self.position() {
                (self.at.txid, self.at.position) = (reached.txid, reached.position);
            }
            if !full {
                break;
            }
        }
        Ok(())
    }

    async fn follow_store(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let mut tail = self.reader().tail(self.position(), CATCH_UP_BATCH).await?;
        loop {
            let batch = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                batch = tail.next_batch() => batch?,
            };
            self.apply(batch.into_iter().map(into_projected).collect())
                .await?;
        }
    }

    async fn follow_nats(
        &mut self,
        context: &async_nats::jetstream::Context,
        start: u64,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let store = crate::store::identity(&self.pool).await?;
        let durable = durable_name(&self.consumer.durable(), store);
        let stream = context.get_stream(bus::STREAM).await?;
        let consumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    description: Some(format!("vulnledger consumer {durable}")),
                    // One ack, of a batch's last message, covers every message
                    // before it: also those whose acks were lost while NATS was
                    // away, which explicit acks left pending until `ack_wait` had
                    // them delivered again.
                    ack_policy: AckPolicy::All,
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: start,
                    },
                    ack_wait: Duration::from_secs(60),
                    max_ack_pending: 20_000,
                    inactive_threshold: DURABLE_INACTIVE,
                    filter_subject: self
                        .consumer
                        .only()
                        .map_or_else(String::new, |t| format!("{}.*.{t}.>", bus::SUBJECT_PREFIX)),
                    ..Default::default()
                },
            )
            .await?;
        let mut messages = consumer.messages().await?;
        tracing::info!(consumer = %durable, "following JetStream");
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                next = messages.next() => next.context("the JetStream consumer ended")??,
            };
            let mut batch = vec![first];
            while batch.len() < LIVE_BATCH {
                match messages.next().now_or_never() {
                    Some(Some(Ok(message))) => batch.push(message),
                    Some(Some(Err(e))) => return Err(e.into()),
                    _ => break,
                }
            }
            let events = self.decode(&batch, store).await?;
            self.apply(events).await?;
            batch[batch.len() - 1]
                .ack()
                .await
                .map_err(|e| anyhow::anyhow!("cannot acknowledge: {e}"))?;
        }
    }

    /// This store's CloudEvents in `batch` back into events, with the commit-order
    /// key (the transaction id) and request id that the envelope does not carry, from
    /// the relay's headers. Messages of other stores are left out. A message without
    /// the store's header (published by an earlier release) is looked up in the store
    /// by its position, and kept only if the event there is the same one.
    async fn decode(
        &self,
        batch: &[Message],
        store: uuid::Uuid,
    ) -> anyhow::Result<Vec<ProjectedEvent>> {
        let store = store.to_string();
        let mut ours = Vec::with_capacity(batch.len());
        let mut unknown = Vec::new();
        for message in batch {
            let header = |name: &str| {
                let headers = message.headers.as_ref()?;
                headers.get(name).map(|v| v.as_str().to_owned())
            };
            match header(bus::STORE_HEADER) {
                Some(other) if other != store => continue,
                from => {
                    let envelope: CloudEvent = serde_json::from_slice(&message.payload)
                        .context("a message on the event stream is not a vulnledger CloudEvent")?;
                    let txid = header(bus::TXID_HEADER).and_then(|t| t.parse::<i64>().ok());
                    match (from, txid) {
                        (Some(_), Some(txid)) => {
                            let request_id = header(bus::REQUEST_ID_HEADER);
                            ours.push(from_cloud_event(envelope, txid, request_id)?);
                        }
                        _ => unknown.push(envelope),
                    }
                }
            }
        }
        if !unknown.is_empty() {
            let positions: Vec<i64> = unknown.iter().map(|e| e.position).collect();
            let stored: Vec<(i64, String, i64, i64, Option<String>)> = sqlx::query_as(
                "SELECT position, aggregate_id, sequence, txid::text::bigint, \
                        metadata->>'request_id' \
                 FROM UNNEST($1::bigint[]) AS k(position) JOIN events USING (position)",
            )
            .bind(&positions)
            .fetch_all(&self.pool)
            .await?;
            let stored: std::collections::HashMap<i64, _> = stored
                .into_iter()
                .map(|(position, aggregate, sequence, txid, request_id)| {
                    (position, (aggregate, sequence, txid, request_id))
                })
                .collect();
            for envelope in unknown {
                match stored.get(&envelope.position) {
                    Some((aggregate, sequence, txid, request_id))
                        if *aggregate == envelope.subject && *sequence == envelope.sequence =>
                    {
                        let (txid, request_id) = (*txid, request_id.clone());
                        ours.push(from_cloud_event(envelope, txid, request_id)?);
                    }
                    _ => tracing::debug!(
                        event = %envelope.id,
                        "skipping a message without a store header that is not this store's"
                    ),
                }
            }
            // Commit order is what `handle` relies on; the lookups came last.
            ours.sort_by_key(|e| (e.txid, e.position));
        }
        Ok(ours)
    }

    /// Applies what `events` holds past the checkpoint, with the new checkpoint, in
    /// one transaction.
    pub async fn apply(&mut self, events: Vec<ProjectedEvent>) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.at = self.consumer.handle(&self.pool, &self.at, events).await?;
        Ok(())
    }
}

/// Empties a projection's tables and checkpoint, in one transaction.
pub async fn reset(
    pool: &PgPool,
    projection: &dyn Projection,
) -> anyhow::Result<ProjectionCheckpoint> {
    let at = ProjectionCheckpoint {
        version: projection.version(),
        ..Default::default()
    };
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("TRUNCATE {}", projection.tables().join(", ")))
        .execute(&mut *tx)
        .await?;
    checkpoint::save(&mut tx, projection.name(), &at).await?;
    tx.commit().await?;
    Ok(at)
}

pub fn projected(event: &StoredEvent) -> ProjectedEvent {
    ProjectedEvent {
        position: event.position,
        txid: event.txid,
        tenant_id: event.tenant_id,
        aggregate_type: event.aggregate_type.clone(),
        aggregate_id: event.aggregate_id.clone(),
        sequence: event.sequence,
        event_type: event.event_type.clone(),
        data: event.data().clone(),
        request_id: event.metadata_str("request_id").map(str::to_owned),
        recorded_at: event.recorded_at,
    }
}

/// [`projected`] without copying: the event's fields are moved out of the payload.
pub fn into_projected(event: StoredEvent) -> ProjectedEvent {
    let request_id = event.metadata_str("request_id").map(str::to_owned);
    let data = match event.payload {
        serde_json::Value::Object(mut tagged) if tagged.contains_key(&event.event_type) => {
            tagged.remove(&event.event_type).unwrap_or_default()
        }
        other => other,
    };
    ProjectedEvent {
        position: event.position,
        txid: event.txid,
        tenant_id: event.tenant_id,
        aggregate_type: event.aggregate_type,
        aggregate_id: event.aggregate_id,
        sequence: event.sequence,
        event_type: event.event_type,
        data,
        request_id,
        recorded_at: event.recorded_at,
    }
}

fn from_cloud_event(
    e: CloudEvent,
    txid: i64,
    request_id: Option<String>,
) -> anyhow::Result<ProjectedEvent> {
    // type = vulnledger.<aggregateType>.<EventType>
    let mut parts = e.event_type.splitn(3, '.');
    let (Some("vulnledger"), Some(aggregate_type), Some(event_type)) =
        (parts.next(), parts.next(), parts.next())
    else {
        anyhow::bail!("unexpected CloudEvent type {:?}", e.event_type);
    };
    Ok(ProjectedEvent {
        position: e.position,
        txid,
        tenant_id: e.tenantid.parse().context("CloudEvent tenantid")?,
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: e.subject,
        sequence: e.sequence,
        event_type: event_type.to_owned(),
        data: e.data,
        request_id,
        recorded_at: chrono::DateTime::parse_from_rfc3339(&e.time)
            .context("CloudEvent time")?
            .with_timezone(&chrono::Utc),
    })
}
