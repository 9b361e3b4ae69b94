//! Event versioning: an event an older release stored in an older shape is read in
//! the current shape by every reader of the store (aggregate loading, projections,
//! the relay's CloudEvents, the audit log and the finding history), and one that no
//! upcaster can read stops the readers at its position instead of being skipped.
//!
//! No event type has changed shape yet, so the product's registry is empty. This
//! binary installs the product's registry plus one hypothetical older shape, as a
//! future release would add it: `FindingStatusChanged` 0.9 called `to` `status`.
//! The application then reads through the same process-wide registry production
//! uses (`Upcasters::process()`).

mod common;

use std::sync::Once;
use std::time::Duration;

use common::api::Api;
use common::nats::{free_port, NatsServer};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vulnledger::projector::Worker;
use vulnledger::store::upcasters::rename_field;
use vulnledger::store::{Checkpoint, OrderedReader, Upcasters};
use vulnledger_aggregates::Role;
use vulnledger_projections::FindingsProjection;

/// Before anything in this process reads an event.
fn install_upcasters() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        Upcasters::product()
            .with(rename_field("FindingStatusChanged", "1.0", "status", "to"))
            .install()
            .expect("no reader has built the registry yet");
    });
}

/// A read after `position`, waiting out a slow start of the workers (NATS
/// connections, the stream's creation) rather than failing on the first 503.
async fn read_after(api: &Api<'_>, path: &str, position: i64) -> common::api::Answer {
    for _ in 0..6 {
        let answer = api.get_after(path, position).await;
        if answer.status != 503 {
            return answer;
        }
    }
    panic!("{path} never caught up with position {position}");
}

/// A finding created through the API.
async fn finding(api: &Api<'_>) -> Uuid {
    let report = json!({ "findings": [{ "title": "old triage", "severity": "HIGH" }] });
    let imported = api
        .import("api:legacy", "native", serde_json::to_vec(&report).unwrap())
        .await;
    let list = read_after(api, "/api/v1/findings", imported.position()).await;
    assert_eq!(list.status, 200, "{}", list.body);
    list.body["data"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Appends `payload` as the finding's second event with `version`, by SQL, exactly
/// as an older release stored it (with its finding index update); its position.
async fn store_old_event(
    pool: &sqlx::PgPool,
    tenant: Uuid,
    actor: Uuid,
    finding: Uuid,
    version: &str,
    fields: Value,
) -> i64 {
    let mut tx = pool.begin().await.unwrap();
    let position: i64 = sqlx::query_scalar(
        "INSERT INTO events \
           (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('finding', $1, 2, 'FindingStatusChanged', $2, $3, $4) RETURNING position",
    )
    .bind(finding.to_string())
    .bind(version)
    .bind(json!({ "FindingStatusChanged": fields }))
    .bind(json!({
        "tenant_id": tenant.to_string(),
        "actor_id": actor.to_string(),
        "actor_email": "triager@old.release",
        "request_id": "old-release",
    }))
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query("UPDATE finding_index SET status = 'CONFIRMED' WHERE finding_id = $1")
        .bind(finding)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    position
}

fn old_shape() -> Value {
    json!({
        "from": "OPEN",
        "status": "CONFIRMED",
        "justification": "triaged before 1.0",
        "at": "2026-01-15T09:30:00Z",
    })
}

/// The current shape of the same event: `to`, never `status`.
fn assert_current(data: &Value, what: &str) {
    assert_eq!(data["to"], "CONFIRMED", "{what}: {data}");
    assert_eq!(data["from"], "OPEN", "{what}: {data}");
    assert_eq!(
        data["justification"], "triaged before 1.0",
        "{what}: {data}"
    );
    assert!(
        data.get("status").is_none(),
        "{what} kept the old name: {data}"
    );
}

#[tokio::test]
async fn an_event_stored_in_an_old_shape_is_read_in_the_current_one_everywhere() {
    install_upcasters();
    let nats = NatsServer::start(free_port()).await;
    let app = common::spawn_app_with(|c| c.nats_url = Some(nats.url())).await;
    let session = app.signed_in("legacy", Role::Admin).await;
    let api = Api::new(&app, &session);
    // A plain subscriber, as any consumer of the stream would be.
    let client = vulnledger::bus::connect(&nats.url(), |o| o).await.unwrap();
    let mut subscriber = client
        .subscribe("vulnledger.events.*.finding.FindingStatusChanged")
        .await
        .unwrap();
    client.flush().await.unwrap();

    let id = finding(&api).await;
    let position = store_old_event(
        &app.db.pool,
        session.tenant_id,
        session.user_id,
        id,
        "0.9",
        old_shape(),
    )
    .await;

    // (b) The read model: the projection worker applied it (from JetStream, fed by
    // the relay, after catching up through the ordered reader).
    let confirmed = read_after(&api, "/api/v1/findings?status=CONFIRMED", position).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert_eq!(
        confirmed.body["data"][0]["id"],
        id.to_string(),
        "{}",
        confirmed.body
    );
    assert_eq!(confirmed.body["data"][0]["status"], "CONFIRMED");

    // (a) The aggregate loads at version 2, and a command on it works.
    let detail = api.get(&format!("/api/v1/findings/{id}")).await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert_eq!(detail.body["status"], "CONFIRMED");
    assert_eq!(detail.header("etag"), Some("\"2\""));
    let resolved = api
        .send(
            Method::PATCH,
            &format!("/api/v1/findings/{id}/status"),
            Some("\"2\""),
            json!({ "status": "RESOLVED", "justification": "patched" }),
        )
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    assert_eq!(resolved.body["version"], 3);
    let resolved_list = read_after(
        &api,
        "/api/v1/findings?status=RESOLVED",
        resolved.position(),
    )
    .await;
    assert_eq!(resolved_list.body["data"][0]["id"], id.to_string());

    // (c) The CloudEvent a subscriber receives carries the new field name.
    let wanted = format!("{id}:2");
    let envelope = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let message = subscriber.next().await.expect("the subscription is open");
            let envelope: Value = serde_json::from_slice(&message.payload).unwrap();
            if envelope["id"] == wanted {
                return envelope;
            }
        }
    })
    .await
    .expect("the relay published the old event");
    assert_eq!(envelope["type"], "vulnledger.finding.FindingStatusChanged");
    assert_eq!(envelope["position"], position);
    assert_current(&envelope["data"], "the CloudEvent");

    // (d) The audit log, its export, and the finding's history.
    let audit = api
        .get(&format!(
            "/api/v1/admin/audit?aggregateId={id}&eventType=FindingStatusChanged"
        ))
        .await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    let entry = &audit.body["data"][0];
    assert_eq!(entry["position"], position, "{}", audit.body);
    assert_eq!(entry["actorEmail"], "triager@old.release");
    assert_current(&entry["data"], "the audit log");
    let export = app
        .client
        .get(app.url(&format!(
            "/api/v1/admin/audit/export.ndjson?aggregateId={id}"
        )))
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    let lines: Vec<Value> = export
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exported = lines.iter().find(|l| l["position"] == position).unwrap();
    assert_current(&exported["data"], "the audit export");
    let history = api.get(&format!("/api/v1/findings/{id}/history")).await;
    assert_eq!(history.status, 200, "{}", history.body);
    assert_current(&history.body[1]["data"], "the finding history");

    // The ordered reader itself (what the live feed and a rebuild read, too).
    let events = OrderedReader::new(app.db.pool.clone())
        .read_batch(Checkpoint::START, 10_000)
        .await
        .unwrap();
    let old = events.iter().find(|e| e.position == position).unwrap();
    assert_eq!(old.event_version, "1.0");
    assert_current(old.data(), "the ordered reader");
}

/// A finding with an unreadable second event, and a projection worker catching up
/// over it: the error it stops with, and how far it got.
async fn catch_up_over(version: &str, fields: Value) -> (String, i64) {
    install_upcasters();
    let app = common::spawn_app_with(|c| c.run_workers = false).await;
    let session = app.signed_in("legacy", Role::Admin).await;
    let api = Api::new(&app, &session);
    let report = json!({ "findings": [{ "title": "old triage", "severity": "HIGH" }] });
    api.import("api:legacy", "native", serde_json::to_vec(&report).unwrap())
        .await;
    let id: String = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE aggregate_type = 'finding' LIMIT 1",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let position = store_old_event(
        &app.db.pool,
        session.tenant_id,
        session.user_id,
        id.parse().unwrap(),
        version,
        fields,
    )
    .await;

    let mut worker =
        Worker::for_projection(app.db.pool.clone(), std::sync::Arc::new(FindingsProjection))
            .await
            .unwrap();
    let error = worker
        .catch_up(&CancellationToken::new())
        .await
        .expect_err("the worker stops at the unreadable event");
    // Nor does a second attempt get past it.
    let again = worker.catch_up(&CancellationToken::new()).await;
    assert!(again.is_err(), "a retry skipped the unreadable event");
    assert!(worker.checkpoint().position < position);
    // The aggregate does not load either: an error, never a wrong state.
    let detail = api.get(&format!("/api/v1/findings/{id}")).await;
    assert_eq!(detail.status, 500, "{}", detail.body);
    (error.to_string(), position)
}

#[tokio::test]
async fn an_event_of_a_version_nothing_reads_stops_the_projection_at_its_position() {
    // Written by a newer release (or an older one nobody wrote an upcaster for).
    let (error, position) = catch_up_over("3.0", old_shape()).await;
    assert!(
        error.contains(&format!("event at position {position}")),
        "{error}"
    );
    assert!(
        error.contains("FindingStatusChanged version 3.0"),
        "{error}"
    );
    assert!(error.contains("reads version 1.0"), "{error}");
}

#[tokio::test]
async fn an_old_event_that_does_not_decode_after_upcasting_stops_the_projection() {
    // An old shape without the field the upcaster renames.
    let fields = json!({ "from": "OPEN", "at": "2026-01-15T09:30:00Z" });
    let (error, position) = catch_up_over("0.9", fields).await;
    assert!(
        error.contains(&format!(
            "event at position {position} (FindingStatusChanged)"
        )),
        "{error}"
    );
    assert!(error.contains("missing field `to`"), "{error}");
}
