//! The ordered reader is what the relay, rebuilds and audit export trust to see
//! every event exactly once. These tests try hard to make it skip one.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;
use vulnledger::store::{Checkpoint, EventStore, NewEvent, OrderedReader, StoreError, StoredEvent};

fn event(tenant: Uuid, aggregate_id: &str, sequence: i64) -> NewEvent {
    NewEvent {
        aggregate_type: "probe".into(),
        aggregate_id: aggregate_id.into(),
        sequence,
        event_type: "Probed".into(),
        event_version: "1.0".into(),
        payload: json!({ "Probed": { "n": sequence } }),
        metadata: json!({ "tenant_id": tenant.to_string(), "actor_id": "test" }),
    }
}

async fn next_sequence(pool: &PgPool, aggregate_id: &str) -> i64 {
    let max: Option<i64> =
        sqlx::query_scalar("SELECT max(sequence) FROM events WHERE aggregate_id = $1")
            .bind(aggregate_id)
            .fetch_one(pool)
            .await
            .unwrap();
    max.unwrap_or(0) + 1
}

/// Reads until at least `n` events are visible. Any open transaction in the cluster
/// (other tests run in parallel) holds the horizon back for a moment, so a single
/// read right after a commit may legitimately return nothing yet.
async fn read_at_least(reader: &OrderedReader, from: Checkpoint, n: usize) -> Vec<StoredEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let batch = reader.read_batch(from, 100).await.unwrap();
        if batch.len() >= n || Instant::now() > deadline {
            return batch;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_late_committer_with_a_smaller_position_is_not_skipped() {
    let db = common::fresh_db().await;
    let store = EventStore::new(db.pool.clone());
    let reader = OrderedReader::new(db.pool.clone());
    let tenant = Uuid::now_v7();

    // A takes the smaller position but commits last.
    let mut slow = db.pool.begin().await.unwrap();
    let a = store
        .append(&mut slow, &[event(tenant, "a", 1)])
        .await
        .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    let b = store
        .append(&mut conn, &[event(tenant, "b", 1)])
        .await
        .unwrap();
    assert!(a[0].position < b[0].position);

    // A position-only reader would hand out B now and move past A for ever.
    let naive: Vec<i64> = sqlx::query_scalar("SELECT position FROM events WHERE position > 0")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(naive, vec![b[0].position]);
    // Ours holds B back while the older transaction is open...
    assert!(reader
        .read_batch(Checkpoint::START, 100)
        .await
        .unwrap()
        .is_empty());

    // ...and hands out both, A first, once it commits.
    slow.commit().await.unwrap();
    let batch = read_at_least(&reader, Checkpoint::START, 2).await;
    let ids: Vec<&str> = batch.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);

    // Reading on from A's checkpoint gives B only.
    let rest = read_at_least(&reader, batch[0].checkpoint(), 1).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].aggregate_id, "b");
}

/// A transaction in another database of the same server can never write these
/// events, so it must not hold the reader back (a long batch job of another
/// application, another vulnledger's import). One of this database does, above.
#[tokio::test]
async fn an_open_transaction_in_another_database_does_not_hold_the_reader_back() {
    let db = common::fresh_db().await;
    let elsewhere = common::fresh_db().await;
    let store = EventStore::new(db.pool.clone());
    let reader = OrderedReader::new(db.pool.clone());
    let tenant = Uuid::now_v7();

    let mut long = elsewhere.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *long)
        .await
        .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    store
        .append(&mut conn, &[event(tenant, "here", 1)])
        .await
        .unwrap();

    let batch = read_at_least(&reader, Checkpoint::START, 1).await;
    let ids: Vec<&str> = batch.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(
        ids,
        ["here"],
        "held back by the other database's transaction"
    );
    assert_eq!(reader.head().await.unwrap(), batch[0].checkpoint());
    long.rollback().await.unwrap();
}

#[tokio::test]
async fn a_rolled_back_append_is_never_read() {
    let db = common::fresh_db().await;
    let store = EventStore::new(db.pool.clone());
    let reader = OrderedReader::new(db.pool.clone());
    let tenant = Uuid::now_v7();

    let mut tx = db.pool.begin().await.unwrap();
    store
        .append(&mut tx, &[event(tenant, "gone", 1)])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    store
        .append(&mut conn, &[event(tenant, "kept", 1)])
        .await
        .unwrap();

    let batch = read_at_least(&reader, Checkpoint::START, 1).await;
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].aggregate_id, "kept");
}

#[tokio::test]
async fn a_second_append_of_the_same_sequence_is_a_conflict() {
    let db = common::fresh_db().await;
    let store = EventStore::new(db.pool.clone());
    let tenant = Uuid::now_v7();
    let mut conn = db.pool.acquire().await.unwrap();
    store
        .append(&mut conn, &[event(tenant, "x", 1)])
        .await
        .unwrap();
    let err = store
        .append(&mut conn, &[event(tenant, "x", 2), event(tenant, "x", 1)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    // The whole statement failed: sequence 2 was not written either.
    assert_eq!(next_sequence(&db.pool, "x").await, 2);
}

#[tokio::test]
async fn events_cannot_be_rewritten_or_deleted() {
    let db = common::fresh_db().await;
    let store = EventStore::new(db.pool.clone());
    let mut conn = db.pool.acquire().await.unwrap();
    store
        .append(&mut conn, &[event(Uuid::now_v7(), "x", 1)])
        .await
        .unwrap();
    for statement in [
        "UPDATE events SET event_type = 'Forged'",
        "DELETE FROM events",
    ] {
        let err = sqlx::query(statement).execute(&db.pool).await.unwrap_err();
        assert!(err.to_string().contains("immutable"), "{statement}: {err}");
    }
}

#[tokio::test]
async fn a_tail_is_woken_by_an_append_in_its_own_process_not_the_poll() {
    let db = common::fresh_db().await;
    let store = EventStore::new(db.pool.clone());
    let reader = OrderedReader::new(db.pool.clone());
    let mut tail = reader
        .tail(Checkpoint::START, 100)
        .await
        .unwrap()
        .with_poll_interval(Duration::from_secs(60));
    let waiter = tokio::spawn(async move {
        let batch = tail.next_batch().await.unwrap();
        (batch, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let appended_at = Instant::now();
    store
        .append_alone(&[event(Uuid::now_v7(), "n", 1)], None)
        .await
        .unwrap();
    let (batch, seen_at) = tokio::time::timeout(Duration::from_secs(45), waiter)
        .await
        .expect("the tail must wake well before its 60 s poll")
        .unwrap();
    assert_eq!(batch.len(), 1);
    // Well under the 60 s poll; not tighter, since an open transaction elsewhere on
    // the cluster may hold the horizon back for a moment after the wake-up.
    assert!(seen_at.duration_since(appended_at) < Duration::from_secs(30));
}

/// A connection listening where other processes hear of appends.
async fn listening(url: &str) -> sqlx::postgres::PgListener {
    let mut listener = sqlx::postgres::PgListener::connect(url).await.unwrap();
    listener
        .listen(vulnledger::store::EVENTS_CHANNEL)
        .await
        .unwrap();
    listener
}

/// Readers in other processes (a `worker` beside `serve`) are woken by a NOTIFY that
/// the appending process sends after its commit: here a plain listener stands in
/// for such a process.
#[tokio::test]
async fn other_processes_hear_of_an_append_after_it_commits() {
    let db = common::fresh_db().await;
    let store = EventStore::new(db.pool.clone());
    let mut listener = listening(&db.url).await;
    store
        .append_alone(&[event(Uuid::now_v7(), "n", 1)], None)
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification on vulnledger_events within 10 s of the commit")
        .unwrap();
    assert_eq!(heard.channel(), vulnledger::store::EVENTS_CHANNEL);
}

/// The append itself no longer notifies: a NOTIFY inside the appending transaction
/// serialises every commit through the WAL flush. What wakes readers is the
/// appender's call after its commit; an append without it (a row inserted by some
/// other tool) is found by the poll.
#[tokio::test]
async fn the_appending_transaction_itself_sends_no_notification() {
    let db = common::fresh_db().await;
    let store = EventStore::new(db.pool.clone());
    let mut listener = listening(&db.url).await;
    let mut tx = db.pool.begin().await.unwrap();
    store
        .append(&mut tx, &[event(Uuid::now_v7(), "n", 1)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let heard = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
    assert!(
        heard.is_err(),
        "no notification from the append's own transaction: {heard:?}"
    );
    let reader = OrderedReader::new(db.pool.clone());
    assert_eq!(read_at_least(&reader, Checkpoint::START, 1).await.len(), 1);
}

const WRITERS: usize = 8;
const APPENDS_PER_WRITER: usize = 400;
const SHARED_AGGREGATES: usize = 12;

/// Eight writers append thousands of events, many to aggregates they share (so
/// they race on sequences), with random pauses inside their transactions (so
/// commits land out of position order), while a reader tails the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tailing_reader_sees_every_concurrent_append_exactly_once_in_aggregate_order() {
    let db = common::fresh_db().await;
    let store = EventStore::new(db.pool.clone());
    let reader = OrderedReader::new(db.pool.clone());
    let tenant = Uuid::now_v7();

    let mut tail = reader
        .tail(Checkpoint::START, 500)
        .await
        .unwrap()
        .with_poll_interval(Duration::from_millis(50));
    let target = Arc::new(tokio::sync::OnceCell::<usize>::new());
    let reader_task = {
        let target = target.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                if target.get().is_some_and(|t| seen.len() >= *t) {
                    return seen;
                }
                let batch =
                    match tokio::time::timeout(Duration::from_millis(200), tail.next_batch()).await
                    {
                        Ok(batch) => batch.unwrap(),
                        Err(_) => continue,
                    };
                seen.extend(batch);
            }
        })
    };

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let pool = db.pool.clone();
        writers.push(tokio::spawn(async move {
            let mut written = 0usize;
            for i in 0..APPENDS_PER_WRITER {
                let (aggregate, count, pause) = {
                    let mut rng = rand::thread_rng();
                    let aggregate = if rng.gen_bool(0.5) {
                        format!("shared-{}", rng.gen_range(0..SHARED_AGGREGATES))
                    } else {
                        format!("own-{w}-{}", i % 20)
                    };
                    (aggregate, rng.gen_range(1..=3i64), rng.gen_range(0..3u64))
                };
                loop {
                    let next = next_sequence(&pool, &aggregate).await;
                    let batch: Vec<_> = (0..count)
                        .map(|k| event(tenant, &aggregate, next + k))
                        .collect();
                    let mut tx = pool.begin().await.unwrap();
                    match store.append(&mut tx, &batch).await {
                        Ok(_) => {
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                            tx.commit().await.unwrap();
                            written += batch.len();
                            break;
                        }
                        Err(StoreError::Conflict) => continue,
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
            written
        }));
    }
    let mut total = 0;
    for writer in writers {
        total += writer.await.unwrap();
    }
    assert!(total >= WRITERS * APPENDS_PER_WRITER);
    target.set(total).unwrap();

    let seen = tokio::time::timeout(Duration::from_secs(120), reader_task)
        .await
        .expect("the reader must catch up with every committed event")
        .unwrap();

    // Exactly once: as many as written, no duplicates, and the same set as the table.
    assert_eq!(seen.len(), total);
    let positions: HashSet<i64> = seen.iter().map(|e| e.position).collect();
    assert_eq!(positions.len(), total, "an event was delivered twice");
    let stored: HashSet<i64> = sqlx::query_scalar("SELECT position FROM events")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(positions, stored, "an event was skipped");

    // In each aggregate's order, with no gap: 1, 2, 3, ...
    let mut last: HashMap<&str, i64> = HashMap::new();
    for e in &seen {
        let previous = last.insert(&e.aggregate_id, e.sequence).unwrap_or(0);
        assert_eq!(e.sequence, previous + 1, "{} out of order", e.aggregate_id);
    }
    // The checkpoints only grow.
    assert!(seen
        .windows(2)
        .all(|w| w[0].checkpoint() < w[1].checkpoint()));

    // The run really had late committers (commit order differs from position order),
    // which is the case a position-only reader gets wrong.
    let inversions = seen
        .windows(2)
        .filter(|w| w[0].position > w[1].position)
        .count();
    assert!(
        inversions > 0,
        "no commit-order inversion happened; the test proved nothing"
    );
    eprintln!("{total} events, {inversions} commit-order inversions, all seen once in order");
}

/// The reader's plan, with the shortcuts an empty table allows (scan it all, then
/// sort) priced out, as a large store prices them out: what is left shows whether an
/// index can deliver the order at all.
async fn plan_of(pool: &PgPool, sql: &str) -> String {
    let mut conn = pool.acquire().await.unwrap();
    for setting in ["enable_seqscan", "enable_bitmapscan", "enable_sort"] {
        sqlx::query(&format!("SET {setting} = off"))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let explain = format!(
        "EXPLAIN {}",
        sql.replace("$1", "0")
            .replace("$2", "0")
            .replace("$3", "500")
    );
    let explain = explain
        .replace("$4", "'scan'")
        .replace("$5", "ARRAY['FindingsObserved']")
        .replace("$6", "1000")
        .replace("$7", "1000");
    let rows: Vec<(String,)> = sqlx::query_as(&explain)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    rows.into_iter()
        .map(|(line,)| line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn reading_in_commit_order_walks_an_index_and_never_sorts_the_backlog() {
    let db = common::fresh_db().await;
    for filter in ["", OrderedReader::ONLY] {
        let plan = plan_of(&db.pool, &OrderedReader::batch_sql(filter)).await;
        assert!(plan.contains("Index Scan"), "{plan}");
        // A Sort node would sort every unread event on every read: a backlog of a
        // million events then costs seconds per batch.
        assert!(!plan.contains("Sort"), "{plan}");
    }
}

fn of_type(mut e: NewEvent, aggregate_type: &str, event_type: &str) -> NewEvent {
    e.aggregate_type = aggregate_type.into();
    e.payload = json!({ event_type: { "n": e.sequence } });
    e.event_type = event_type.into();
    e
}

/// Reads with `reader` from `from` until its answer reaches `until` (an open
/// transaction elsewhere in the cluster may hold the horizon back for a moment).
async fn read_reaching_until(
    reader: &OrderedReader,
    from: Checkpoint,
    limit: i64,
    until: Checkpoint,
) -> (Vec<StoredEvent>, Checkpoint) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (batch, reached) = reader.read_reaching(from, limit).await.unwrap();
        if reached >= until || Instant::now() > deadline {
            return (batch, reached);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The live feed reads scan events only. It used to start every read at the last
/// scan event, so each wake-up read again every status change since the last scan:
/// milliseconds per read after a few thousand, growing without bound between scans.
#[tokio::test]
async fn a_filtered_reader_moves_past_events_of_other_types_and_misses_none_of_its_own() {
    let db = common::fresh_db().await;
    let store = EventStore::new(db.pool.clone());
    let tenant = Uuid::now_v7();
    let wanted = |id: &str, seq, event_type| of_type(event(tenant, id, seq), "wanted", event_type);
    store
        .append_alone(&[wanted("w1", 1, "Wanted")], None)
        .await
        .unwrap();
    for i in 0..50 {
        store
            .append_alone(&[event(tenant, &format!("other-{i}"), 1)], None)
            .await
            .unwrap();
    }
    let all = read_at_least(&OrderedReader::new(db.pool.clone()), Checkpoint::START, 51).await;
    assert_eq!(all.len(), 51);
    let head = all.last().unwrap().checkpoint();

    let reader = OrderedReader::new(db.pool.clone()).only("wanted", &["Skipped"]);
    let (batch, reached) = read_reaching_until(&reader, Checkpoint::START, 100, head).await;
    assert_eq!(
        batch
            .iter()
            .map(|e| e.aggregate_id.as_str())
            .collect::<Vec<_>>(),
        ["w1"]
    );
    assert_eq!(
        reached, head,
        "the next read starts past the 50 other events"
    );

    // Its own events after that are all read, the excluded type is not.
    store
        .append_alone(&[wanted("w1", 2, "Skipped")], None)
        .await
        .unwrap();
    store
        .append_alone(&[wanted("w2", 1, "Wanted")], None)
        .await
        .unwrap();
    store
        .append_alone(&[wanted("w3", 1, "Wanted")], None)
        .await
        .unwrap();
    let all = read_at_least(&OrderedReader::new(db.pool.clone()), head, 3).await;
    let (w2, w3) = (all[1].checkpoint(), all[2].checkpoint());

    // A full answer stops at its last event, not at the head: the next event of its
    // own comes after it.
    let (batch, reached) = read_reaching_until(&reader, head, 1, w2).await;
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].aggregate_id, "w2");
    assert_eq!(reached, w2);
    let (batch, reached) = read_reaching_until(&reader, reached, 1, w3).await;
    assert_eq!(batch[0].aggregate_id, "w3");
    assert_eq!(reached, w3);
}
