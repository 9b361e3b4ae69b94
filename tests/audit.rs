//! The audit log: every change with who made it and in which request, filtered,
//! paged, and exported as CSV and NDJSON over HTTP and from the command line.

mod common;

use std::collections::HashSet;
use std::process::Command;

use common::api::Api;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;
use vulnledger::audit::{self, AuditFilter, Format};
use vulnledger::store::{EventStore, NewEvent};
use vulnledger_aggregates::Role;

const BIN: &str = env!("CARGO_BIN_EXE_vulnledger");

/// Imports three findings and confirms one in a request with a known id.
async fn history(api: &Api<'_>) -> (String, i64) {
    let report = json!({ "findings": [
        { "title": "a", "severity": "HIGH" }, { "title": "b", "severity": "LOW" },
        { "title": "c", "severity": "INFO" }
    ]});
    let imported = api
        .import("api:1", "native", serde_json::to_vec(&report).unwrap())
        .await;
    let list = api
        .get_after("/api/v1/findings?severity=HIGH", imported.position())
        .await;
    let id = list.body["data"][0]["id"].as_str().unwrap().to_owned();
    let confirmed = api
        .call(
            api.request(Method::PATCH, &format!("/api/v1/findings/{id}/status"))
                .header("if-match", "\"1\"")
                .header("x-request-id", "audit-trail-42")
                .json(&json!({ "status": "CONFIRMED" })),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    (id, confirmed.position())
}

#[tokio::test]
async fn every_change_is_listed_with_its_actor_and_request_and_can_be_filtered() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &admin);
    let (finding, position) = history(&api).await;

    let all = api.get("/api/v1/admin/audit?limit=200").await;
    assert_eq!(all.status, 200, "{}", all.body);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(all.body["meta"]["total"], total);
    let rows = all.body["data"].as_array().unwrap();
    assert!(rows
        .windows(2)
        .all(|w| w[0]["position"].as_i64() < w[1]["position"].as_i64()));

    let changed = api
        .get(&format!(
            "/api/v1/admin/audit?aggregateType=finding&aggregateId={finding}&eventType=FindingStatusChanged"
        ))
        .await;
    assert_eq!(changed.body["meta"]["total"], 1);
    let entry = &changed.body["data"][0];
    assert_eq!(entry["position"], position);
    assert_eq!(entry["actor"], admin.user_id.to_string());
    assert_eq!(entry["actorEmail"], admin.email.as_str());
    assert_eq!(entry["requestId"], "audit-trail-42");
    assert_eq!(entry["sequence"], 2);
    assert_eq!(entry["data"]["to"], "CONFIRMED");
    assert!(entry["at"].is_string());

    let by_email = api
        .get(&format!(
            "/api/v1/admin/audit?actor={}&eventType=FindingStatusChanged",
            admin.email
        ))
        .await;
    assert_eq!(by_email.body["meta"]["total"], 1);
    let nobody = api.get("/api/v1/admin/audit?actor=nobody@acme.test").await;
    assert_eq!(nobody.body["meta"]["total"], 0);
    let future = api.get("/api/v1/admin/audit?from=2999-01-01").await;
    assert_eq!(future.body["meta"]["total"], 0);

    // Cursor pages cover the log exactly once.
    let mut seen = HashSet::new();
    let mut next = "/api/v1/admin/audit?limit=2".to_owned();
    loop {
        let page = api.get(&next).await;
        for row in page.body["data"].as_array().unwrap() {
            assert!(seen.insert(row["position"].as_i64().unwrap()));
        }
        match page.body["meta"]["nextCursor"].as_str() {
            Some(c) => next = format!("/api/v1/admin/audit?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len() as i64, total);

    // Another tenant's log is not ours, and analysts do not read it.
    let other = app.signed_in("globex", Role::Admin).await;
    let theirs = Api::new(&app, &other).get("/api/v1/admin/audit").await;
    assert_eq!(theirs.body["meta"]["total"], 0);
    let analyst = app.signed_in("acme", Role::Analyst).await;
    let refused = Api::new(&app, &analyst).get("/api/v1/admin/audit").await;
    assert_eq!(refused.status, 403);
    for bad in [
        "/api/v1/admin/audit?from=2026-02-01&until=2026-01-01",
        "/api/v1/admin/audit?from=noon",
        "/api/v1/admin/audit?aggregateType=user",
        "/api/v1/admin/audit?cursor=bm9wZQ",
    ] {
        let answer = api.get(bad).await;
        assert!(
            answer.status == 400 || answer.status == 422,
            "{bad}: {}",
            answer.status
        );
    }
}

#[tokio::test]
async fn exports_stream_the_filtered_log_as_csv_and_ndjson() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &admin);
    history(&api).await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();

    let ndjson = api
        .request(Method::GET, "/api/v1/admin/audit/export.ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(ndjson.status(), 200);
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let text = ndjson.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as i64, total);
    assert!(lines
        .iter()
        .all(|l| l["eventType"].is_string() && l["data"].is_object()));

    let csv = api
        .request(
            Method::GET,
            "/api/v1/admin/audit/export.csv?aggregateType=finding",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    let body = csv.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "position",
            "at",
            "actor",
            "actorEmail",
            "requestId",
            "aggregateType",
            "aggregateId",
            "sequence",
            "eventType",
            "data"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 4, "three detections and one status change");
    assert!(records.iter().all(|r| &r[5] == "finding"));
    let data: Value = serde_json::from_str(&records[0][9]).unwrap();
    assert!(data["details"]["title"].is_string());

    // The same from the command line, to a file; a file that cannot be written is
    // a clear failure that leaves nothing behind.
    let dir = std::env::temp_dir().join(format!("vl-audit-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("audit.ndjson");
    let run = Command::new(BIN)
        .args([
            "audit", "export", "--tenant", "acme", "--format", "ndjson", "--output",
        ])
        .arg(&out)
        .env("DATABASE_URL", &app.db.url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written, text);
    let unwritable = dir.join("missing-dir").join("audit.csv");
    let run = Command::new(BIN)
        .args(["audit", "export", "--tenant", "acme", "--output"])
        .arg(&unwritable)
        .env("DATABASE_URL", &app.db.url)
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("cannot write"));
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(left.len(), 1, "only the first export is there");
    let inverted = Command::new(BIN)
        .args([
            "audit",
            "export",
            "--tenant",
            "acme",
            "--from",
            "2026-02-01",
            "--until",
            "2026-01-01",
        ])
        .env("DATABASE_URL", &app.db.url)
        .output()
        .unwrap();
    assert!(!inverted.status.success());
    assert!(String::from_utf8_lossy(&inverted.stderr).contains("--until"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A probe event of `tenant`, appended straight to the store.
fn probe(tenant: Uuid, aggregate_id: &str) -> NewEvent {
    NewEvent {
        aggregate_type: "probe".into(),
        aggregate_id: aggregate_id.into(),
        sequence: 1,
        event_type: "Probed".into(),
        event_version: "1.0".into(),
        payload: json!({ "Probed": {} }),
        metadata: json!({ "tenant_id": tenant.to_string(), "actor_id": "test" }),
    }
}

/// A transaction that appended a probe of `tenant` and is still open, so it holds a
/// smaller position than the `n` probes committed after it.
struct LateCommitter {
    held: sqlx::Transaction<'static, sqlx::Postgres>,
    held_position: i64,
    /// A connection for appends after that.
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    /// The tenant's committed positions, in order.
    committed: Vec<i64>,
}

async fn late_committer(pool: &sqlx::PgPool, tenant: Uuid, n: i64) -> LateCommitter {
    let store = EventStore::new(pool.clone());
    let mut held = pool.begin().await.unwrap();
    let held_position = store
        .append(&mut held, &[probe(tenant, "held")])
        .await
        .unwrap()[0]
        .position;
    let mut conn = pool.acquire().await.unwrap();
    let before: Vec<NewEvent> = (0..n)
        .map(|i| probe(tenant, &format!("before-{i}")))
        .collect();
    store.append(&mut conn, &before).await.unwrap();
    let committed =
        sqlx::query_scalar("SELECT position FROM events WHERE tenant_id = $1 ORDER BY position")
            .bind(tenant)
            .fetch_all(pool)
            .await
            .unwrap();
    LateCommitter {
        held,
        held_position,
        conn,
        committed,
    }
}

/// The positions of an NDJSON export, in the order written.
fn ndjson_positions(body: &[u8]) -> Vec<i64> {
    body.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let entry: Value = serde_json::from_slice(line).unwrap();
            entry["position"].as_i64().unwrap()
        })
        .collect()
}

async fn export_positions(pool: &sqlx::PgPool, filter: &AuditFilter) -> Vec<i64> {
    let mut export = std::pin::pin!(audit::export(pool.clone(), filter.clone(), Format::Ndjson));
    let mut body = Vec::new();
    while let Some(chunk) = export.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    ndjson_positions(&body)
}

/// Positions are handed out at insert, before commit. An export holds exactly what
/// was committed when it started: not a transaction that was open then (with a
/// smaller position) and commits while the export runs, nor one that commits after
/// it; every position once, in ascending order.
#[tokio::test]
async fn an_export_holds_exactly_what_was_committed_when_it_started() {
    let db = common::fresh_db().await;
    let store = EventStore::new(db.pool.clone());
    let tenant = Uuid::now_v7();
    let filter = AuditFilter {
        tenant,
        ..Default::default()
    };

    // A transaction takes the smallest position and stays open while more than one
    // export chunk commits after it.
    let LateCommitter {
        held,
        held_position,
        mut conn,
        committed,
    } = late_committer(&db.pool, tenant, audit::CHUNK + 500).await;
    assert_eq!(committed.len() as i64, audit::CHUNK + 500);
    assert!(held_position < committed[0]);

    // The export starts and hands out its first chunk...
    let mut export = std::pin::pin!(audit::export(
        db.pool.clone(),
        filter.clone(),
        Format::Ndjson
    ));
    let mut body = export.next().await.unwrap().unwrap().to_vec();
    assert!(!body.is_empty());
    // ...then the held transaction commits, and another one after it.
    held.commit().await.unwrap();
    let after_position = store
        .append(&mut conn, &[probe(tenant, "after")])
        .await
        .unwrap()[0]
        .position;
    while let Some(chunk) = export.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    let exported = ndjson_positions(&body);
    assert!(
        !exported.contains(&held_position),
        "the transaction open at the start is not in the export"
    );
    assert!(
        !exported.contains(&after_position),
        "an event committed after the start is not in the export (nor is the one committed before it)"
    );
    assert_eq!(
        exported, committed,
        "everything committed at the start, once each, in ascending order"
    );

    // An export started now holds both, and two exports of the same log agree.
    let mut now = committed.clone();
    now.insert(0, held_position);
    now.push(after_position);
    assert_eq!(export_positions(&db.pool, &filter).await, now);
    assert_eq!(export_positions(&db.pool, &filter).await, now);
}

/// The positions of a cursor listing from `first` to its last page, and the cursor
/// that `first` handed out.
async fn listed_from(api: &Api<'_>, first: &Value) -> Vec<i64> {
    let mut positions = Vec::new();
    let mut page = first.clone();
    loop {
        for row in page["data"].as_array().unwrap() {
            positions.push(row["position"].as_i64().unwrap());
        }
        let Some(cursor) = page["meta"]["nextCursor"].as_str() else {
            return positions;
        };
        let next = api
            .get(&format!("/api/v1/admin/audit?limit=2&cursor={cursor}"))
            .await;
        assert_eq!(next.status, 200, "{}", next.body);
        page = next.body;
    }
}

fn cursor_of(keys: Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(keys.to_string())
}

/// The paged listing has the export's guarantee: its pages hold what was committed
/// when the first page was read. A transaction that took a smaller position and
/// commits between two pages would otherwise be missing from a listing that shows
/// what committed after it.
#[tokio::test]
async fn cursor_pages_hold_exactly_what_was_committed_at_the_first_page() {
    let app = common::spawn_app().await;
    let admin = app.signed_in("acme", Role::Admin).await;
    let api = Api::new(&app, &admin);
    let store = EventStore::new(app.db.pool.clone());
    let tenant = admin.tenant_id;

    // A transaction takes the smallest position and stays open while five commit.
    let LateCommitter {
        held,
        held_position,
        mut conn,
        committed,
    } = late_committer(&app.db.pool, tenant, 5).await;
    assert!(committed.len() >= 5 && held_position < committed[committed.len() - 5]);

    // The first page is read; then the held transaction commits, and one after it.
    let first = api.get("/api/v1/admin/audit?limit=2").await;
    assert_eq!(first.status, 200, "{}", first.body);
    held.commit().await.unwrap();
    let after_position = store
        .append(&mut conn, &[probe(tenant, "after")])
        .await
        .unwrap()[0]
        .position;

    assert_eq!(
        listed_from(&api, &first.body).await,
        committed,
        "every page of the listing holds what was committed at its first page, once each"
    );
    // A listing started now holds both.
    let now = api.get("/api/v1/admin/audit?limit=2").await;
    let mut expected = committed.clone();
    expected.extend([held_position, after_position]);
    expected.sort();
    assert_eq!(listed_from(&api, &now.body).await, expected);
    assert_eq!(now.body["meta"]["total"], expected.len());

    // A cursor of the form issued before cursors carried a snapshot reads as of now.
    let legacy = api
        .get(&format!(
            "/api/v1/admin/audit?limit=200&cursor={}",
            cursor_of(json!([held_position]))
        ))
        .await;
    assert_eq!(legacy.status, 200, "{}", legacy.body);
    let listed: Vec<i64> = legacy.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["position"].as_i64().unwrap())
        .collect();
    let later: Vec<i64> = expected
        .iter()
        .copied()
        .filter(|p| *p > held_position)
        .collect();
    assert_eq!(listed, later);

    // Forged snapshots are bad requests, not database errors.
    for keys in [
        json!([1, "bogus"]),
        json!([1, "10:5:"]),
        json!([1, "0:0:"]),
        json!([1, "5:10:7,6"]),
        json!([1, "5:10:10"]),
        json!([1, "5:10"]),
        json!([1, 7]),
        json!(["1", "5:10:"]),
        json!([1, "5:10:", 3]),
        json!([1, "99999999999999999999:99999999999999999999:"]),
    ] {
        let answer = api
            .get(&format!(
                "/api/v1/admin/audit?cursor={}",
                cursor_of(keys.clone())
            ))
            .await;
        assert_eq!(answer.status, 400, "{keys}: {}", answer.body);
        assert_eq!(
            answer.body["detail"], "cursor is not one this server issued",
            "{keys}"
        );
    }
}

/// A database whose tenant `acme` has three export chunks of events.
async fn acme_with_three_chunks() -> common::TestDb {
    let db = common::fresh_db().await;
    let tenant = vulnledger::identity::create_tenant(&db.pool, "acme", "Acme")
        .await
        .unwrap()
        .id;
    let events: Vec<NewEvent> = (0..audit::CHUNK * 3)
        .map(|i| probe(tenant, &format!("e-{i}")))
        .collect();
    let mut conn = db.pool.acquire().await.unwrap();
    EventStore::new(db.pool.clone())
        .append(&mut conn, &events)
        .await
        .unwrap();
    db
}

/// Two exports to the same file at once (a scheduled job and a person, say) each
/// write their own partial file: both succeed, the file is one whole export, and no
/// partial file is left.
#[tokio::test]
async fn concurrent_exports_to_the_same_file_both_succeed_and_do_not_mix() {
    // Several chunks, so that the two exports overlap.
    let db = acme_with_three_chunks().await;

    let dir = std::env::temp_dir().join(format!("vl-audit-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let export = |path: std::path::PathBuf| {
        tokio::process::Command::new(BIN)
            .args(["audit", "export", "--tenant", "acme", "--output"])
            .arg(path)
            .env("DATABASE_URL", &db.url)
            .env("RUST_LOG", "warn")
            .output()
    };
    let out = dir.join("audit.csv");
    let (first, second) = tokio::join!(export(out.clone()), export(out.clone()));
    for run in [first.unwrap(), second.unwrap()] {
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let reference = dir.join("reference.csv");
    let run = export(reference.clone()).await.unwrap();
    assert!(run.status.success());
    let (written, expected) = (
        std::fs::read(&out).unwrap(),
        std::fs::read(&reference).unwrap(),
    );
    assert_eq!(
        expected.iter().filter(|b| **b == b'\n').count() as i64,
        audit::CHUNK * 3 + 1
    );
    assert!(
        written == expected,
        "the file is one whole export ({} bytes, expected {})",
        written.len(),
        expected.len()
    );
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["audit.csv", "reference.csv"],
        "no partial file is left"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C (or SIGTERM) during `audit export --output` stops it with an error and
/// removes its temporary file: the path keeps what it held.
#[tokio::test]
async fn an_interrupted_export_removes_its_temporary_file() {
    let db = acme_with_three_chunks().await;

    let dir = std::env::temp_dir().join(format!("vl-audit-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("audit.csv");
    std::fs::write(&out, "the previous export\n").unwrap();
    let export = tokio::process::Command::new(BIN)
        .args(["audit", "export", "--tenant", "acme", "--output"])
        .arg(&out)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted as soon as its temporary file is there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_dir(&dir).unwrap().count() < 2 {
        assert!(std::time::Instant::now() < deadline, "no temporary file");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let signalled = Command::new("kill")
        .args(["-INT", &export.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let run = export.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["audit.csv"]);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "the previous export\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
