//! When an event became visible: the `findings` projection announces each committed
//! batch's checkpoint on the PostgreSQL channel `vulnledger_projections`. An event is
//! visible once a checkpoint's `(txid, position)` reaches the event's own, exactly the
//! rule `X-Min-Position` applies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use vulnledger_projections::checkpoint;

/// A checkpoint as announced, with when it was heard.
#[derive(Clone, Copy)]
pub struct Heard {
    pub at: Instant,
    pub txid: i64,
    pub position: i64,
}

/// Listens on a thread of its own, so that its timestamps do not wait for the busy
/// runtime that sends the load.
pub struct Listener {
    heard: Arc<Mutex<Vec<Heard>>>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Listener {
    pub async fn start(url: &str) -> anyhow::Result<Self> {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn({
            let (url, heard, stop) = (url.to_owned(), heard.clone(), stop.clone());
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let mut listener = PgListener::connect(&url).await?;
                    listener.listen(checkpoint::CHANNEL).await?;
                    let _ = ready_tx.send(());
                    loop {
                        let n = tokio::select! {
                            () = stop.cancelled() => return Ok(()),
                            n = listener.recv() => n?,
                        };
                        let at = Instant::now();
                        let Some(notice) = checkpoint::Notice::parse(n.payload())
                            .filter(|notice| notice.name == "findings")
                        else {
                            continue;
                        };
                        heard.lock().unwrap().push(Heard {
                            at,
                            txid: notice.at.txid,
                            position: notice.at.position,
                        });
                    }
                })
            }
        });
        ready_rx
            .await
            .map_err(|_| anyhow::anyhow!("the LISTEN thread failed to start"))?;
        Ok(Self {
            heard,
            stop,
            thread: Some(thread),
        })
    }

    /// Waits until a checkpoint covers `newest` (or `patience` has passed), then stops
    /// listening and returns every checkpoint heard, in order.
    pub async fn finish(
        mut self,
        newest: Option<(i64, i64)>,
        patience: Duration,
    ) -> anyhow::Result<Vec<Heard>> {
        let waited = Instant::now();
        if let Some(newest) = newest {
            while waited.elapsed() < patience {
                let covered = self
                    .heard
                    .lock()
                    .unwrap()
                    .last()
                    .is_some_and(|h| (h.txid, h.position) >= newest);
                if covered {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow::anyhow!("the LISTEN thread panicked"))??;
        }
        Ok(std::mem::take(&mut *self.heard.lock().unwrap()))
    }
}

/// The transaction id each of `positions` was committed by.
pub async fn txids(pool: &PgPool, positions: &[i64]) -> anyhow::Result<HashMap<i64, i64>> {
    Ok(sqlx::query_as(
        "SELECT position, txid::text::bigint FROM UNNEST($1::bigint[]) AS k(position) \
         JOIN events USING (position)",
    )
    .bind(positions)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect())
}

/// When the event `(txid, position)` was first covered by a heard checkpoint.
pub fn visible_at(heard: &[Heard], key: (i64, i64)) -> Option<Instant> {
    // Checkpoints only move forward: the first that reaches the event.
    let i = heard.partition_point(|h| (h.txid, h.position) < key);
    heard.get(i).map(|h| h.at)
}
