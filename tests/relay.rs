//! The event relay: every appended event reaches NATS JetStream as a CloudEvent,
//! in order per aggregate, exactly once in the stream, also after NATS was down.
//! Each test runs its own nats-server, so none disturbs the shared one or another.

mod common;

use common::nats::{free_port, nats_url, percent_encode, Auth, NatsServer};

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use vulnledger::bus::CloudEvent;
use vulnledger_aggregates::Role;

const REPORTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/reports");
const STREAM: &str = "VULNLEDGER_EVENTS";

/// Real HTTP calls that append scan and finding events: launch a grype scan, upload
/// its report, confirm one finding (with If-Match). Every call must succeed.
async fn workload(app: &common::TestApp, session: &common::Session, target: &str) -> String {
    let client = &app.client;
    let response = client
        .post(app.url("/api/v1/scans"))
        .bearer_auth(&session.token)
        .json(&json!({ "target": target, "scanner": "grype", "branch": "main" }))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "launch: {}",
        response.status()
    );
    let scan: Value = response.json().await.unwrap();
    let scan = scan["id"].as_str().unwrap().to_owned();
    let report = std::fs::read(format!("{REPORTS}/grype/check_all_fields.json")).unwrap();
    let response = client
        .post(app.url(&format!("/api/v1/scans/{scan}/results")))
        .bearer_auth(&session.token)
        .header("content-type", "application/json")
        .body(report)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "upload: {}",
        response.status()
    );
    let finding: String = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE aggregate_type = 'finding' \
         GROUP BY aggregate_id HAVING max(sequence) = 1 ORDER BY min(position) LIMIT 1",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let response = client
        .get(app.url(&format!("/api/v1/findings/{finding}")))
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap();
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let response = client
        .patch(app.url(&format!("/api/v1/findings/{finding}/status")))
        .bearer_auth(&session.token)
        .header("if-match", etag)
        .json(&json!({ "status": "CONFIRMED" }))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "triage: {}",
        response.status()
    );
    finding
}

/// `aggregate_id:sequence` of every event in the store.
async fn event_ids(app: &common::TestApp) -> BTreeSet<String> {
    sqlx::query_scalar::<_, String>("SELECT aggregate_id || ':' || sequence FROM events")
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// How many messages the stream holds (0 while it does not exist yet).
async fn stream_messages(js: &jetstream::Context) -> u64 {
    match js.get_stream(STREAM).await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Waits until the stream holds `count` messages (fails past the deadline).
async fn wait_for_messages(js: &jetstream::Context, count: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let held = stream_messages(js).await;
        if held == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the stream holds {held} messages, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Received {
    subject: String,
    msg_id: String,
    /// The `Vulnledger-Store` header.
    store: Option<String>,
    envelope: Value,
}

/// Reads the whole stream in order with a plain ephemeral pull consumer.
async fn read_stream(js: &jetstream::Context) -> Vec<Received> {
    let stream = js.get_stream(STREAM).await.unwrap();
    let total = stream.cached_info().state.messages as usize;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut received = Vec::with_capacity(total);
    while received.len() < total {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("a message within 5 s")
            .expect("the stream goes on")
            .unwrap();
        let msg_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .expect("a Nats-Msg-Id header")
            .as_str()
            .to_owned();
        let store = message
            .headers
            .as_ref()
            .and_then(|h| h.get(vulnledger::bus::STORE_HEADER))
            .map(|v| v.as_str().to_owned());
        received.push(Received {
            subject: message.subject.to_string(),
            msg_id,
            store,
            envelope: serde_json::from_slice(&message.payload).expect("JSON payload"),
        });
    }
    received
}

#[tokio::test]
async fn a_subscriber_receives_a_valid_cloudevent_for_every_event_in_aggregate_order() {
    let nats = NatsServer::start(free_port()).await;
    let url = nats.url();
    let app = common::spawn_app_with(|c| c.nats_url = Some(url)).await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let finding = workload(&app, &session, "registry/api:1.4").await;

    let ids = event_ids(&app).await;
    assert!(ids.len() > 5, "the workload appends events: {ids:?}");
    let js = nats.jetstream().await;
    wait_for_messages(&js, ids.len() as u64, Duration::from_secs(45)).await;
    let received = read_stream(&js).await;

    let received_ids: BTreeSet<String> = received
        .iter()
        .map(|r| r.envelope["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(received_ids, ids, "one CloudEvent per event");
    assert_eq!(received.len(), ids.len(), "no duplicates");

    let store = vulnledger::store::identity(&app.db.pool).await.unwrap();
    let mut last_sequence: HashMap<String, (i64, i64)> = HashMap::new();
    for r in &received {
        let e = &r.envelope;
        assert_eq!(r.msg_id, e["id"], "Nats-Msg-Id is the CloudEvent id");
        assert_eq!(r.store, Some(store.to_string()), "the store's header");
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["datacontenttype"], "application/json");
        let aggregate = e["subject"].as_str().unwrap();
        let kind = e["type"].as_str().unwrap();
        let mut parts = kind.splitn(3, '.');
        let (prefix, aggregate_type, event_type) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        assert_eq!(prefix, "vulnledger");
        assert!(["scan", "finding"].contains(&aggregate_type), "{kind}");
        assert_eq!(
            r.subject,
            format!(
                "vulnledger.events.{}.{aggregate_type}.{event_type}",
                session.tenant_id
            )
        );
        let sequence = e["sequence"].as_i64().unwrap();
        let position = e["position"].as_i64().unwrap();
        assert_eq!(e["id"], format!("{aggregate}:{sequence}"));
        if let Some((seq, pos)) = last_sequence.get(aggregate) {
            assert!(
                sequence > *seq && position > *pos,
                "{aggregate}: {sequence} after {seq}"
            );
        }
        last_sequence.insert(aggregate.to_owned(), (sequence, position));
    }

    // One envelope, field by field, against its row.
    let (position, event_type, data, actor, recorded_at): (
        i64,
        String,
        Value,
        String,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as(
        "SELECT position, event_type, payload -> event_type, metadata ->> 'actor_id', recorded_at \
         FROM events WHERE aggregate_id = $1 AND sequence = 2",
    )
    .bind(&finding)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(actor, session.user_id.to_string());
    assert_eq!(data["to"], "CONFIRMED", "{data}");
    let id = format!("{finding}:2");
    let triage = received.iter().find(|r| r.msg_id == id).unwrap();
    let tenant = session.tenant_id.to_string();
    assert_eq!(
        triage.subject,
        format!("vulnledger.events.{tenant}.finding.{event_type}")
    );
    let time = triage.envelope["time"].as_str().unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(time).unwrap(),
        recorded_at,
        "time is the event's recorded_at"
    );
    assert_eq!(
        triage.envelope,
        json!({
            "specversion": "1.0",
            "id": id,
            "source": format!("vulnledger/{tenant}"),
            "type": format!("vulnledger.finding.{event_type}"),
            "time": time,
            "subject": finding,
            "datacontenttype": "application/json",
            "data": data,
            "tenantid": tenant,
            "position": position,
            "sequence": 2,
            "actor": actor,
        })
    );
}

#[tokio::test]
async fn commands_succeed_while_nats_is_down_and_every_event_is_published_once_it_is_up() {
    let port = free_port();
    let app = common::spawn_app_with(|c| c.nats_url = Some(nats_url(port))).await;
    let session = app.signed_in("acme", Role::Analyst).await;
    // NATS is not running: every call still succeeds (the workload asserts 2xx).
    workload(&app, &session, "registry/api:1.4").await;
    workload(&app, &session, "registry/web:2.0").await;

    let nats = NatsServer::start(port).await;
    let js = nats.jetstream().await;
    let ids = event_ids(&app).await;
    wait_for_messages(&js, ids.len() as u64, Duration::from_secs(45)).await;
    let received: BTreeSet<String> = read_stream(&js)
        .await
        .into_iter()
        .map(|r| r.msg_id)
        .collect();
    assert_eq!(received, ids);
}

#[tokio::test]
async fn republishing_from_the_start_after_a_restart_adds_no_duplicates() {
    let nats = NatsServer::start(free_port()).await;
    let url = nats.url();
    let app = common::spawn_app_with(|c| c.nats_url = Some(url.clone())).await;
    let session = app.signed_in("acme", Role::Analyst).await;
    workload(&app, &session, "registry/api:1.4").await;
    let js = nats.jetstream().await;
    let count = event_ids(&app).await.len() as u64;
    wait_for_messages(&js, count, Duration::from_secs(45)).await;
    let last: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();

    sqlx::query("DELETE FROM process_checkpoints WHERE name = 'relay'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let app = app.restart(|c| c.nats_url = Some(url)).await;

    // The relay has gone through everything again once its checkpoint is back at the end.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT position FROM process_checkpoints WHERE name = 'relay'")
                .fetch_optional(&app.db.pool)
                .await
                .unwrap();
        if at.is_some_and(|p| p >= last) {
            break;
        }
        assert!(Instant::now() < deadline, "the relay never re-published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(event_ids(&app).await.len() as u64, count);
    assert_eq!(
        stream_messages(&js).await,
        count,
        "JetStream dropped the re-published duplicates"
    );
}

#[tokio::test]
async fn without_nats_the_in_process_bus_carries_the_same_envelopes() {
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    let shutdown = CancellationToken::new();
    let bus = vulnledger::relay::spawn(app.db.pool.clone(), None, shutdown.clone())
        .await
        .unwrap()
        .expect("an in-process bus without NATS");
    let mut events = bus.subscribe();
    workload(&app, &session, "registry/api:1.4").await;
    let ids = event_ids(&app).await;
    let mut received: Vec<Arc<CloudEvent>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    while received.len() < ids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, events.recv())
            .await
            .expect("every event within 10 s")
            .unwrap();
        received.push(event);
    }
    shutdown.cancel();
    let received_ids: BTreeSet<String> = received.iter().map(|e| e.id.clone()).collect();
    assert_eq!(received_ids, ids);
    assert!(
        received
            .iter()
            .all(|e| e.specversion == "1.0"
                && e.source == format!("vulnledger/{}", session.tenant_id))
    );
}

#[tokio::test]
async fn the_relay_command_run_on_its_own_publishes_every_event() {
    let nats = NatsServer::start(free_port()).await;
    // No NATS for the app: only the `vulnledger relay` process below publishes.
    let app = common::spawn_app().await;
    let session = app.signed_in("acme", Role::Analyst).await;
    workload(&app, &session, "registry/api:1.4").await;
    let count = event_ids(&app).await.len() as u64;

    let mut relay = tokio::process::Command::new(env!("CARGO_BIN_EXE_vulnledger"))
        .arg("relay")
        .env("DATABASE_URL", &app.db.url)
        .env("NATS_URL", nats.url())
        .kill_on_drop(true)
        .spawn()
        .expect("vulnledger relay starts");
    let js = nats.jetstream().await;
    wait_for_messages(&js, count, Duration::from_secs(45)).await;
    assert!(
        relay.try_wait().unwrap().is_none(),
        "the relay is still running"
    );
    relay.kill().await.unwrap();
}

/// `vulnledger::bus::connect` (what the relay, the projection workers and `/ready`
/// use) with a time limit, so that a client that hangs fails the test.
async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    tokio::time::timeout(
        Duration::from_secs(15),
        vulnledger::bus::connect(url, |o| o.connection_timeout(Duration::from_secs(2))),
    )
    .await
    .expect("connect answers within 15 s")
}

/// Credentials in `NATS_URL` are sent (async-nats 0.51 does not send them by itself,
/// nats-io/nats.rs#1623): `nats://user:password@host:port` and `nats://token@host:port`,
/// percent-encoded, also in a comma-separated list of servers; wrong ones are refused.
/// The application relays through such a URL and never prints the password.
#[tokio::test]
async fn credentials_in_the_nats_url_are_used_and_never_printed() {
    let nats = NatsServer::start_with(
        free_port(),
        Auth::User {
            user: "alice".into(),
            password: "s3cr3t".into(),
        },
    )
    .await;
    let port = nats.port;
    assert_eq!(nats.url(), format!("nats://alice:s3cr3t@127.0.0.1:{port}"));
    let client = connect(&nats.url())
        .await
        .expect("the right user and password are accepted");
    client.publish("probe", "hello".into()).await.unwrap();
    client.flush().await.unwrap();
    for wrong in [
        format!("nats://alice:wrong@127.0.0.1:{port}"),
        format!("nats://mallory:s3cr3t@127.0.0.1:{port}"),
        format!("nats://127.0.0.1:{port}"),
    ] {
        assert!(connect(&wrong).await.is_err(), "{wrong} is refused");
    }
    // A list of servers, the first of them down.
    let list = format!(
        "nats://alice:s3cr3t@127.0.0.1:{}, nats://alice:s3cr3t@127.0.0.1:{port}",
        free_port()
    );
    connect(&list).await.expect("the server that is up is used");

    // A token with characters that must be percent-encoded in a URL.
    let token = "t0k/en@x:%";
    let tokened = NatsServer::start_with(free_port(), Auth::Token(token.into())).await;
    assert_eq!(
        tokened.url(),
        format!(
            "nats://{}@127.0.0.1:{}",
            percent_encode(token),
            tokened.port
        )
    );
    connect(&tokened.url())
        .await
        .expect("the token is accepted");
    assert!(connect(&format!("nats://other@127.0.0.1:{}", tokened.port))
        .await
        .is_err());

    // The application: ready, its events reach the stream, the password is hidden.
    let url = nats.url();
    let app = common::spawn_app_with(|c| c.nats_url = Some(url.clone())).await;
    let ready: Value = app
        .client
        .get(app.url("/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["nats"], "ok", "{ready}");
    let session = app.signed_in("acme", Role::Analyst).await;
    workload(&app, &session, "registry/api:1.4").await;
    let js = nats.jetstream().await;
    wait_for_messages(
        &js,
        event_ids(&app).await.len() as u64,
        Duration::from_secs(45),
    )
    .await;
    let mut config = common::test_config(&app.db.url);
    config.nats_url = Some(format!("{url},{}", tokened.url()));
    let printed = format!("{config:?}");
    assert!(
        !printed.contains("s3cr3t") && !printed.contains(&percent_encode(token)),
        "{printed}"
    );
}

/// A copy of a store's database (`CREATE DATABASE ... TEMPLATE`, a restore under
/// another name) holds its original's identity row; were it kept, the copy's workers
/// would share the original's durable consumers on a shared NATS server.
#[tokio::test]
async fn a_copy_of_a_store_takes_an_identity_of_its_own_and_the_original_keeps_its() {
    let original = common::fresh_db().await;
    let identity = vulnledger::store::identity(&original.pool).await.unwrap();
    assert_eq!(
        vulnledger::store::identity(&original.pool).await.unwrap(),
        identity,
        "stable across calls"
    );
    original.pool.close().await;

    let copy = format!("vulnledger_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&common::server_url())
        .await
        .unwrap();
    sqlx::query(&format!(
        r#"CREATE DATABASE "{copy}" TEMPLATE "{}""#,
        original.name
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let connect = |name: &str| {
        let url = common::database_url_for(&common::server_url(), name);
        async move { sqlx::PgPool::connect(&url).await.unwrap() }
    };
    let copied = connect(&copy).await;
    let stored: uuid::Uuid = sqlx::query_scalar("SELECT id FROM store_identity")
        .fetch_one(&copied)
        .await
        .unwrap();
    assert_eq!(stored, identity, "the copy starts with the original's row");
    let own = vulnledger::store::identity(&copied).await.unwrap();
    assert_ne!(own, identity);
    assert_eq!(vulnledger::store::identity(&copied).await.unwrap(), own);
    let reopened = connect(&original.name).await;
    assert_eq!(
        vulnledger::store::identity(&reopened).await.unwrap(),
        identity
    );
}
