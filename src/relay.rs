//! The event relay: follows the ordered event stream and publishes every event as a
//! CloudEvent, to NATS JetStream (`VULNLEDGER_EVENTS`) when `NATS_URL` is set, to an
//! in-process broadcast otherwise.
//!
//! With NATS, the relay is a process like the others (`processes`): one active
//! instance under an advisory lock, a durable checkpoint named `relay`. Each batch is
//! published in full, every acknowledgement awaited, and only then is the checkpoint
//! saved; so a crash re-publishes at most one batch, which JetStream drops by its
//! `Nats-Msg-Id` (= the CloudEvent id) within the duplicate window. When NATS is
//! down the checkpoint stays put and the same batch is retried, with back-off, on a
//! fresh connection: commands never wait for NATS, and nothing appended meanwhile is
//! lost.
//!
//! Without NATS, each process broadcasts to its own subscribers from the moment it
//! starts (no lock, no durable checkpoint: those subscribers keep their own), so the
//! `relay` checkpoint only ever means "published to NATS".

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::bus::{self, Bus, CloudEvent};
use crate::processes::{load_checkpoint, save_checkpoint, supervise};
use crate::store::{Checkpoint, OrderedReader};

/// The process name: its advisory lock and its row in `process_checkpoints`.
pub const NAME: &str = "relay";
const BATCH: i64 = 500;
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The relay saves its checkpoint at most this long after publishing past it, not
/// after every batch: that was a write transaction per batch, on the path of every
/// event to NATS. A crash re-publishes at most this much, and JetStream drops it as
/// duplicates (`bus::DUPLICATE_WINDOW` is far longer).
const SAVE_EVERY: Duration = Duration::from_millis(500);
/// How many envelopes an in-process subscriber may fall behind before it lags.
const IN_PROCESS_CAPACITY: usize = 4096;

/// Starts the relay in the background until `shutdown`. Without a NATS URL, returns
/// the in-process bus that subscribers in this process attach to: it carries every
/// event appended after this call returns.
pub async fn spawn(
    pool: PgPool,
    nats_url: Option<String>,
    shutdown: CancellationToken,
) -> Result<Option<broadcast::Sender<Arc<CloudEvent>>>, sqlx::Error> {
    match nats_url {
        Some(url) => {
            tokio::spawn(run_nats(pool, url, shutdown));
            Ok(None)
        }
        None => {
            let from = OrderedReader::new(pool.clone()).head().await?;
            let sender = broadcast::channel(IN_PROCESS_CAPACITY).0;
            let bus = Bus::InProcess(sender.clone());
            tokio::spawn(run_in_process(pool, bus, from, shutdown));
            Ok(Some(sender))
        }
    }
}

/// Relays to NATS until `shutdown` (what `vulnledger relay` runs); waits its turn if
/// another process holds the relay's lock.
pub async fn run_nats(pool: PgPool, url: String, shutdown: CancellationToken) {
    supervise(NAME, pool, shutdown, move |pool, shutdown| {
        let url = url.clone();
        async move {
            let store = crate::store::identity(&pool).await?;
            let mut target = Target::Nats {
                url,
                store,
                bus: None,
            };
            let mut at = load_checkpoint(&pool, NAME).await?;
            relay(&pool, &mut target, &mut at, Some(NAME), &shutdown).await
        }
    })
    .await;
}

async fn run_in_process(pool: PgPool, bus: Bus, mut at: Checkpoint, shutdown: CancellationToken) {
    let mut target = Target::InProcess(bus);
    while !shutdown.is_cancelled() {
        if let Err(e) = relay(&pool, &mut target, &mut at, None, &shutdown).await {
            tracing::error!(process = NAME, error = %e, "in-process relay failed; restarting");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}

enum Target {
    /// Connected lazily, and again after any failure.
    Nats {
        url: String,
        store: uuid::Uuid,
        bus: Option<Bus>,
    },
    InProcess(Bus),
}

impl Target {
    async fn bus(&mut self) -> anyhow::Result<&Bus> {
        match self {
            Self::Nats { url, store, bus } => {
                if bus.is_none() {
                    *bus = Some(Bus::Nats {
                        context: Box::new(bus::connect_jetstream(url).await?),
                        store: *store,
                    });
                    tracing::info!(process = NAME, "connected to NATS JetStream");
                }
                Ok(bus.as_ref().expect("just connected"))
            }
            Self::InProcess(bus) => Ok(bus),
        }
    }

    fn reset(&mut self) {
        if let Self::Nats { bus, .. } = self {
            *bus = None;
        }
    }
}

/// Follows the store from `at`, publishing batch after batch; `at` (and the durable
/// checkpoint, if named) moves only past batches that were delivered in full.
async fn relay(
    pool: &PgPool,
    target: &mut Target,
    at: &mut Checkpoint,
    durable: Option<&str>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut tail = OrderedReader::new(pool.clone()).tail(*at, BATCH).await?;
    // Since when the delivered events are ahead of the saved checkpoint.
    let mut unsaved: Option<tokio::time::Instant> = None;
    loop {
        let save_at = unsaved.map(|since| since + SAVE_EVERY);
        let batch = tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(save_at.unwrap_or_else(tokio::time::Instant::now)),
                if save_at.is_some() =>
            {
                // Reading is cancel-safe: the tail moves only when a batch is handed out.
                if let Some(name) = durable {
                    save_checkpoint(pool, name, *at).await?;
                }
                unsaved = None;
                continue;
            }
            batch = tail.next_batch() => batch?,
        };
        let envelopes: Vec<Arc<CloudEvent>> = batch
            .iter()
            .map(|e| Arc::new(CloudEvent::from_stored(e)))
            .collect();
        if !publish_until_delivered(target, &envelopes, shutdown).await {
            break;
        }
        *at = tail.checkpoint();
        if durable.is_some() {
            unsaved.get_or_insert_with(tokio::time::Instant::now);
        }
    }
    if let (Some(name), Some(_)) = (durable, unsaved) {
        save_checkpoint(pool, name, *at).await?;
    }
    Ok(())
}

/// Retries the same batch until it is delivered; `false` if shut down first.
async fn publish_until_delivered(
    target: &mut Target,
    batch: &[Arc<CloudEvent>],
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = MIN_BACKOFF;
    loop {
        let attempt = async { target.bus().await?.publish_batch(batch).await };
        let result = tokio::select! {
            () = shutdown.cancelled() => return false,
            result = attempt => result,
        };
        match result {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(
                    process = NAME,
                    error = %e,
                    events = batch.len(),
                    retry_in_ms = backoff.as_millis() as u64,
                    "cannot publish events; retrying the batch"
                );
                target.reset();
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
