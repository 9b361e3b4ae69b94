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
//!   per [`NOTIFY_GAP`], however many appends commit meanwhile. It names its sender,
//!   so that the sender's own readers, woken already, skip it, and the aggregate
//!   types committed, so that a reader of one type skips the others ([`Notice`]).
//!
//! A process that dies between its commit and the wake-up costs the readers one poll
//! interval; nothing is lost, because readers take what the store holds, not what
//! the notifications say.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use super::event_store::NewEvent;
use super::EVENTS_CHANNEL;

/// The wake-up of one database's readers in this process.
struct Wake {
    /// Who sends its notifications: its own readers were woken already, so they
    /// skip them. One per database and process, not per process: a pool that
    /// names the same database differently has a `Wake` of its own, whose readers
    /// are woken by notifications only.
    sender: String,
    /// Bumped on every commit; readers of the whole stream wait for it to change.
    local: watch::Sender<u64>,
    /// Bumped on every commit with events of that aggregate type: a reader of one
    /// type (the live feed's scans, the approvals process) is not woken, and does
    /// not read, for each of the thousand status changes a second between them.
    by_type: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Aggregate types committed since the last `NOTIFY` was sent.
    pending: Mutex<BTreeSet<String>>,
    /// Commits have happened that no `NOTIFY` sent so far covers.
    dirty: AtomicBool,
    /// The task that sends the `NOTIFY`s is running.
    sending: AtomicBool,
}

impl Wake {
    fn of_type(&self, aggregate_type: &str) -> watch::Sender<u64> {
        lock(&self.by_type)
            .entry(aggregate_type.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// At most one `NOTIFY` per this interval: under load a notification per command
/// was one more statement and commit per command, for readers that only need to
/// know that something is there. Other processes' readers wait at most this long
/// longer; this process's readers are woken at once.
const NOTIFY_GAP: Duration = Duration::from_millis(5);

/// What a `NOTIFY` on [`EVENTS_CHANNEL`] says: who sent it and which aggregate
/// types were committed since the sender's previous one (`<process> <type>,<type>`).
/// An empty payload (a process of an earlier release) names no one and every type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice<'a> {
    sender: Option<&'a str>,
    types: Option<&'a str>,
}

impl<'a> Notice<'a> {
    pub fn parse(payload: &'a str) -> Self {
        match payload.split_once(' ') {
            Some((sender, types)) => Self {
                sender: Some(sender),
                types: Some(types),
            },
            None => Self {
                sender: None,
                types: None,
            },
        }
    }

    /// Whether a reader woken directly by `me` ([`Subscription::me`]), of `only`
    /// that aggregate type if given, has something to look for.
    pub fn concerns(&self, me: &str, only: Option<&str>) -> bool {
        if self.sender == Some(me) {
            return false;
        }
        match (only, self.types) {
            (Some(wanted), Some(types)) => types.split(',').any(|t| t == wanted),
            _ => true,
        }
    }
}

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
    lock(WAKES.get_or_init(Default::default))
        .entry(key)
        .or_insert_with(|| {
            Arc::new(Wake {
                sender: uuid::Uuid::new_v4().simple().to_string(),
                local: watch::channel(0).0,
                by_type: Default::default(),
                pending: Default::default(),
                dirty: AtomicBool::new(false),
                sending: AtomicBool::new(false),
            })
        })
        .clone()
}

/// Tells the readers of `pool`'s database, here and in other processes, that
/// `events` have committed. Call it after the commit: before, a reader may look too
/// early. Never waits.
pub fn committed(pool: &PgPool, events: &[NewEvent]) {
    let wake = wake(pool);
    let types: BTreeSet<&str> = events.iter().map(|e| e.aggregate_type.as_str()).collect();
    wake.local.send_modify(|n| *n = n.wrapping_add(1));
    for t in &types {
        wake.of_type(t).send_modify(|n| *n = n.wrapping_add(1));
    }
    lock(&wake.pending).extend(types.iter().map(|t| (*t).to_owned()));
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
            let types = std::mem::take(&mut *lock(&wake.pending));
            let payload = format!(
                "{} {}",
                wake.sender,
                types.into_iter().collect::<Vec<_>>().join(",")
            );
            let sent = sqlx::query(
                "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)",
            )
            .bind(EVENTS_CHANNEL)
            .bind(payload)
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

/// Commits to a database made through this process's pools on it.
pub struct Subscription {
    /// Changes after each commit (of `only`'s type, if subscribed so).
    pub commits: watch::Receiver<u64>,
    /// The sender named in this process's notifications for them ([`Notice`]).
    pub me: String,
}

/// A subscription to this process's commits to `pool`'s database: all of them, or
/// only those with events of aggregate type `only`.
pub fn subscribe(pool: &PgPool, only: Option<&str>) -> Subscription {
    let wake = wake(pool);
    Subscription {
        commits: match only {
            Some(aggregate_type) => wake.of_type(aggregate_type).subscribe(),
            None => wake.local.subscribe(),
        },
        me: wake.sender.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "9f0e";

    #[test]
    fn a_notice_from_another_process_concerns_the_readers_of_the_types_it_names() {
        let notice = Notice::parse("0123456789abcdef finding,scan");
        assert!(notice.concerns(ME, None));
        assert!(notice.concerns(ME, Some("scan")));
        assert!(!notice.concerns(ME, Some("approval")));
        assert!(!notice.concerns(ME, Some("fin")));
    }

    #[test]
    fn a_notice_from_the_readers_own_appenders_concerns_none_of_them() {
        let notice = Notice::parse("9f0e finding");
        assert!(!notice.concerns(ME, None));
        assert!(!notice.concerns(ME, Some("finding")));
    }

    #[test]
    fn an_empty_notice_from_an_earlier_release_concerns_every_reader() {
        let notice = Notice::parse("");
        assert!(notice.concerns(ME, None));
        assert!(notice.concerns(ME, Some("approval")));
    }
}
