//! A process's live view of the event stream, for pushing changes to WebSocket
//! clients. It follows the store itself (not a NATS subscription), so progress
//! recorded by any replica reaches the sockets held by every replica.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::store::{OrderedReader, StoredEvent};

/// Only what sockets show: scan state changes, not the bulky observation lists.
const SCAN_CHANGES: (&str, &[&str]) = ("scan", &["FindingsObserved"]);

#[derive(Clone)]
pub struct LiveFeed {
    sender: broadcast::Sender<Arc<StoredEvent>>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(4096).0,
        }
    }
}

impl LiveFeed {
    /// Subscribe before reading the state to sync from, so nothing falls between.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.sender.subscribe()
    }

    /// Follows the store from its current end until `shutdown`.
    pub fn run(&self, pool: PgPool, shutdown: CancellationToken) {
        let sender = self.sender.clone();
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                let result = async {
                    let reader =
                        OrderedReader::new(pool.clone()).only(SCAN_CHANGES.0, SCAN_CHANGES.1);
                    let head = reader.head().await?;
                    let mut tail = reader
                        .tail(head, 1000)
                        .await?
                        .with_poll_interval(Duration::from_millis(250));
                    loop {
                        let batch = tokio::select! {
                            () = shutdown.cancelled() => return Ok::<(), sqlx::Error>(()),
                            batch = tail.next_batch() => batch?,
                        };
                        for event in batch {
                            // No subscriber is not an error: nobody is watching.
                            let _ = sender.send(Arc::new(event));
                        }
                    }
                }
                .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "live feed interrupted; restarting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
    }
}
