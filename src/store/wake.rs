//! Waking the store's readers after an append has committed.
//!
//! The readers (relay, projection workers, live feed) poll, and are woken early so
//! that a committed event is seen in milliseconds rather than at the next poll. The
//! wake-up used to be a `NOTIFY` sent by a trigger inside the appending transaction.
//! PostgreSQL serialises the commits of all transactions that notify (a
//! database-wide lock held from before the commit record until the end of the
//! transaction, WAL flush included), so every append waited for every other one's
//! fsync: half the commit rate under concurrent single-event appends (see
//! docs/benchmarks.md). Appenders now call [`committed`] after their commit instead:
//!
//! - readers in the same process are woken at once, through a watch channel;
//! - readers in other processes get a `NOTIFY` from a background task, sent in its
//!   own transaction that does not wait for the WAL flush, and coalesced: at most one
//!   per [`NOTIFY_GAP`], however many appends commit meanwhile.
//!
//! A process that dies between its commit and the wake-up costs the readers one poll
//! interval; nothing is lost, because readers take what the store holds, not what
//! the notifications say.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use super::EVENTS_CHANNEL;

/// The wake-up of one database's readers in this process.
struct Wake {
    /// Bumped on every commit; readers wait for it to change.
    local: watch::Sender<u64>,
    /// Commits have happened that no `NOTIFY` sent so far covers.
    dirty: AtomicBool,
    /// The task that sends the `NOTIFY`s is running.
    sending: AtomicBool,
}

/// At most one `NOTIFY` per this interval: under load a notification per command
/// was one more statement and commit per command, for readers that only need to
/// know that something is there. Other processes' readers wait at most this long
/// longer; this process's readers are woken at once.
const NOTIFY_GAP: Duration = Duration::from_millis(5);

/// Per database: tests and tools may hold pools on several in one process, and an
/// append to one must not wake (or fail to wake) the readers of another.
fn wake(pool: &PgPool) -> Arc<Wake> {
    static WAKES: OnceLock<Mutex<HashMap<String, Arc<Wake>>>> = OnceLock::new();
    let options = pool.connect_options();
    let key = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    );
    let mut wakes = WAKES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    wakes
        .entry(key)
        .or_insert_with(|| {
            Arc::new(Wake {
                local: watch::channel(0).0,
                dirty: AtomicBool::new(false),
                sending: AtomicBool::new(false),
            })
        })
        .clone()
}

/// Tells the readers of `pool`'s database, here and in other processes, that events
/// have committed. Call it after the commit: before, a reader may look too early.
/// Never waits.
pub fn committed(pool: &PgPool) {
    let wake = wake(pool);
    wake.local.send_modify(|n| *n = n.wrapping_add(1));
    wake.dirty.store(true, Ordering::Release);
    if wake.sending.swap(true, Ordering::AcqRel) {
        return;
    }
    let pool = pool.clone();
    tokio::spawn(async move {
        loop {
            // Cleared before sending, so a commit that lands while this one is in
            // flight is covered by the next one.
            wake.dirty.store(false, Ordering::Release);
            let sent = sqlx::query(
                "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')",
            )
            .bind(EVENTS_CHANNEL)
            .execute(&pool)
            .await;
            if let Err(e) = sent {
                // Readers in other processes fall back on their poll interval.
                tracing::debug!(error = %e, "cannot notify other processes of appended events");
            }
            tokio::time::sleep(NOTIFY_GAP).await;
            if wake.dirty.load(Ordering::Acquire) {
                continue;
            }
            wake.sending.store(false, Ordering::Release);
            // A commit between the check and the store saw `sending` still set and
            // left the work to this task: take it back unless another task has.
            if !wake.dirty.load(Ordering::Acquire) || wake.sending.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    });
}

/// A subscription to this process's commits to `pool`'s database.
pub fn subscribe(pool: &PgPool) -> watch::Receiver<u64> {
    wake(pool).local.subscribe()
}
