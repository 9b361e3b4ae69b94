//! How far the read models are: read-your-writes for queries.
//!
//! Every API process follows the projections' checkpoints (NOTIFY on each committed
//! batch, and a poll in case a notification was missed while reconnecting). A read
//! that sends `X-Min-Position: n` waits until every projection has applied event n.
//! Positions are handed out before commit, so "applied n" cannot mean "checkpoint
//! position ≥ n": it means the checkpoint, in commit order `(txid, position)`, is at
//! or past n's own `(txid, n)`, which is looked up once per wait.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vulnledger_projections::{checkpoint, ProjectionCheckpoint};

/// What the slowest projection has applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub txid: i64,
    pub position: i64,
    /// The highest position every projection has applied: `X-Projection-Position`.
    pub max_position: i64,
}

#[derive(Clone)]
pub struct Freshness {
    pool: PgPool,
    applied: watch::Receiver<Applied>,
    sender: std::sync::Arc<watch::Sender<Applied>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("the read models have not reached position {0} yet")]
    Timeout(i64),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl Freshness {
    pub fn new(pool: PgPool) -> Self {
        let (sender, applied) = watch::channel(Applied::default());
        Self {
            pool,
            applied,
            sender: std::sync::Arc::new(sender),
        }
    }

    pub fn current(&self) -> Applied {
        *self.applied.borrow()
    }

    /// Follows the checkpoints until `shutdown`.
    pub fn run(&self, shutdown: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                if let Err(e) = this.follow(&shutdown).await {
                    tracing::warn!(error = %e, "following projection checkpoints failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        });
    }

    async fn follow(&self, shutdown: &CancellationToken) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(checkpoint::CHANNEL).await?;
        let mut known = self.load_all().await?;
        self.publish(&known);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                notification = listener.try_recv() => {
                    match notification? {
                        Some(n) => {
                            if let Some((name, at)) = parse(n.payload()) {
                                known.insert(name, at);
                                self.publish(&known);
                            }
                        }
                        // Reconnected: whatever was announced meanwhile is in the table.
                        None => {
                            known = self.load_all().await?;
                            self.publish(&known);
                        }
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    known = self.load_all().await?;
                    self.publish(&known);
                }
            }
        }
    }

    async fn load_all(&self) -> Result<HashMap<String, ProjectionCheckpoint>, sqlx::Error> {
        let mut known = HashMap::new();
        for projection in vulnledger_projections::all() {
            let at = checkpoint::load(&self.pool, projection.name())
                .await?
                .unwrap_or_default();
            known.insert(projection.name().to_owned(), at);
        }
        Ok(known)
    }

    fn publish(&self, known: &HashMap<String, ProjectionCheckpoint>) {
        let mut slowest: Option<Applied> = None;
        for projection in vulnledger_projections::all() {
            let at = known.get(projection.name()).copied().unwrap_or_default();
            let applied = Applied {
                txid: at.txid,
                position: at.position,
                max_position: at.max_position,
            };
            slowest = Some(match slowest {
                Some(s) if (s.txid, s.position) <= (applied.txid, applied.position) => Applied {
                    max_position: s.max_position.min(applied.max_position),
                    ..s
                },
                Some(s) => Applied {
                    max_position: s.max_position.min(applied.max_position),
                    ..applied
                },
                None => applied,
            });
        }
        let slowest = slowest.unwrap_or_default();
        // Polls and notifications are handled one after the other on one task, and a
        // poll sees every commit announced before it, so the latest value is right even
        // when it goes backwards (a projection rebuilt from scratch).
        self.sender.send_if_modified(|current| {
            let changed = *current != slowest;
            *current = slowest;
            changed
        });
    }

    /// Waits until event `position` is applied everywhere, or `timeout` passes.
    pub async fn wait_for(&self, position: i64, timeout: Duration) -> Result<Applied, WaitError> {
        let deadline = Instant::now() + timeout;
        let txid = loop {
            let txid: Option<i64> =
                sqlx::query_scalar("SELECT txid::text::bigint FROM events WHERE position = $1")
                    .bind(position)
                    .fetch_optional(&self.pool)
                    .await?;
            if let Some(txid) = txid {
                break txid;
            }
            // Not committed (yet): a position from the future, or one still in flight.
            if Instant::now() + Duration::from_millis(25) > deadline {
                return Err(WaitError::Timeout(position));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let mut applied = self.applied.clone();
        let reached = tokio::time::timeout_at(
            deadline,
            applied.wait_for(|a| (a.txid, a.position) >= (txid, position)),
        )
        .await;
        match reached {
            Ok(Ok(a)) => Ok(*a),
            _ => Err(WaitError::Timeout(position)),
        }
    }
}

/// `"<name> <txid> <position> <max_position>"`
fn parse(payload: &str) -> Option<(String, ProjectionCheckpoint)> {
    let mut parts = payload.split(' ');
    let name = parts.next()?.to_owned();
    let txid = parts.next()?.parse().ok()?;
    let position = parts.next()?.parse().ok()?;
    let max_position = parts.next()?.parse().ok()?;
    Some((
        name,
        ProjectionCheckpoint {
            txid,
            position,
            max_position,
            ..Default::default()
        },
    ))
}
