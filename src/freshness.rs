//! How far the read models are: read-your-writes for queries.
//!
//! Every API process follows the projections' checkpoints (NOTIFY on each committed
//! batch, and a poll in case a notification was missed while reconnecting). A read
//! that sends `X-Min-Position: n` waits until every projection has applied event n.
//! Positions are handed out before commit, so "applied n" cannot mean "checkpoint
//! position ≥ n": it means the checkpoint, in commit order `(txid, position)`, is at
//! or past n's own `(txid, n)`, which is looked up once per wait.
//!
//! It also tells cached answers when to go stale ([`Freshness::tenant_epoch`]): each
//! batch's notice names the tenants whose events it applied, so an answer about one
//! tenant is filed under that tenant's last change, not under the global position
//! that every other tenant's writes move too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vulnledger_projections::checkpoint::{self, Notice};
use vulnledger_projections::ProjectionCheckpoint;

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
    sender: Arc<watch::Sender<Applied>>,
    changes: Arc<Mutex<Changes>>,
}

/// Which tenants' read models changed, by a counter of this process: every change
/// heard takes the next number, and is filed under the tenants it names, or under
/// "every tenant" when it names none.
#[derive(Debug, Default)]
struct Changes {
    counter: u64,
    /// The last change that may have touched any tenant.
    everyone: u64,
    /// The last change of each tenant since then (older entries are dropped).
    by_tenant: HashMap<Uuid, u64>,
}

impl Changes {
    fn of(&mut self, tenants: Option<&[Uuid]>) {
        self.counter += 1;
        match tenants {
            Some(tenants) => {
                for t in tenants {
                    self.by_tenant.insert(*t, self.counter);
                }
            }
            None => {
                self.everyone = self.counter;
                self.by_tenant.clear();
            }
        }
    }

    fn epoch(&self, tenant: Uuid) -> u64 {
        self.by_tenant
            .get(&tenant)
            .copied()
            .unwrap_or(0)
            .max(self.everyone)
    }
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
            sender: Arc::new(sender),
            changes: Default::default(),
        }
    }

    pub fn current(&self) -> Applied {
        *self.applied.borrow()
    }

    /// A number that changes whenever `tenant`'s read models may have changed, for
    /// cache keys: an answer computed after reading it is at least as new as any
    /// change it counts (it moves only once a batch has committed, and before
    /// [`current`](Self::current) and [`wait_for`](Self::wait_for) report that
    /// batch). Other tenants' batches leave it alone. It is this process's own
    /// count, so it keys this process's caches only.
    pub fn tenant_epoch(&self, tenant: Uuid) -> u64 {
        lock(&self.changes).epoch(tenant)
    }

    fn changed(&self, tenants: Option<&[Uuid]>) {
        lock(&self.changes).of(tenants);
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
        // Whatever happened while nobody listened may have touched any tenant.
        let mut known = self.load_all().await?;
        self.changed(None);
        self.publish(&known);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                notification = listener.try_recv() => {
                    match notification? {
                        Some(n) => {
                            if let Some(notice) = Notice::parse(n.payload()) {
                                known.insert(notice.name, notice.at);
                                self.changed(notice.tenants.as_deref());
                                self.publish(&known);
                            }
                        }
                        // Reconnected: whatever was announced meanwhile is in the table.
                        None => {
                            known = self.load_all().await?;
                            self.changed(None);
                            self.publish(&known);
                        }
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    // A checkpoint that moved without a notice heard (yet) moved for
                    // tenants unknown.
                    let polled = self.load_all().await?;
                    if !same_places(&polled, &known) {
                        self.changed(None);
                    }
                    known = polled;
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

/// Whether every projection stands where it did (notices carry no event count or
/// version, so only the places are compared).
fn same_places(
    a: &HashMap<String, ProjectionCheckpoint>,
    b: &HashMap<String, ProjectionCheckpoint>,
) -> bool {
    let place = |c: &ProjectionCheckpoint| (c.txid, c.position, c.max_position);
    a.len() == b.len()
        && a.iter()
            .all(|(name, at)| b.get(name).is_some_and(|other| place(at) == place(other)))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_epoch_moves_with_its_own_changes_and_with_everyones() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut changes = Changes::default();
        let start = changes.epoch(a);
        changes.of(Some(&[b]));
        assert_eq!(changes.epoch(a), start, "another tenant's batch");
        let b_before = changes.epoch(b);
        changes.of(Some(&[a, b]));
        let a_after = changes.epoch(a);
        assert!(a_after > start && changes.epoch(b) > b_before);
        changes.of(None);
        assert!(changes.epoch(a) > a_after, "a change of every tenant");
        let everyone = changes.epoch(a);
        assert_eq!(changes.epoch(Uuid::new_v4()), everyone);
        changes.of(Some(&[b]));
        assert_eq!(changes.epoch(a), everyone);
    }
}
