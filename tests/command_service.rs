//! The command service against the real store and the real aggregates.

mod common;

use std::sync::Arc;

use chrono::Utc;
use cqrs_es::persist::PersistedEventRepository;
use postgres_es::PostgresEventRepository;
use uuid::Uuid;
use vulnledger::commands::{Actor, CommandContext, CommandError, CommandService};
use vulnledger::store::EventStore;
use vulnledger_aggregates::{
    DomainError, Scan, ScanCommand, ScanStatus, SlaPolicy, TenantSettings, TenantSettingsCommand,
};

fn ctx(tenant: Uuid) -> CommandContext {
    CommandContext {
        tenant_id: tenant,
        actor: Actor::user(Uuid::now_v7(), "analyst@acme.test"),
        request_id: format!("req-{}", Uuid::new_v4()),
    }
}

fn launch() -> ScanCommand {
    ScanCommand::LaunchScan {
        target: "registry.acme.test/api:1.4".into(),
        scanner: "trivy".into(),
        profile: None,
        branch: Some("main".into()),
        commit: None,
        tags: vec!["prod".into()],
        at: Utc::now(),
    }
}

fn progress(percent: u8) -> ScanCommand {
    ScanCommand::ReportProgress {
        percent,
        step: Some(format!("step {percent}")),
        at: Utc::now(),
    }
}

async fn service() -> (CommandService, common::TestDb) {
    let db = common::fresh_db().await;
    (CommandService::new(EventStore::new(db.pool.clone())), db)
}

#[tokio::test]
async fn a_command_returns_its_version_and_the_position_it_appended_at() {
    let (commands, db) = service().await;
    let tenant = Uuid::now_v7();
    let id = Uuid::now_v7().to_string();
    let ctx = ctx(tenant);

    let launched = commands
        .execute::<Scan>(&ctx, &id, None, launch(), &())
        .await
        .unwrap();
    assert_eq!(launched.version, 1);
    assert_eq!(launched.aggregate.status, ScanStatus::Queued);

    // From QUEUED the first progress appends ScanStarted and ScanProgressed.
    let progressed = commands
        .execute::<Scan>(&ctx, &id, Some(1), progress(10), &())
        .await
        .unwrap();
    assert_eq!(progressed.version, 3);
    assert_eq!(progressed.events.len(), 2);
    let (position, sequence): (i64, i64) = sqlx::query_as(
        "SELECT position, sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence DESC LIMIT 1",
    )
    .bind(&id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(progressed.position, position);
    assert_eq!(sequence, 3);
    assert!(progressed.position > launched.position);
}

#[tokio::test]
async fn every_event_is_stamped_with_tenant_actor_and_request_id() {
    let (commands, db) = service().await;
    let tenant = Uuid::now_v7();
    let ctx = ctx(tenant);
    let id = Uuid::now_v7().to_string();
    commands
        .execute::<Scan>(&ctx, &id, None, launch(), &())
        .await
        .unwrap();

    let (row_tenant, metadata): (Uuid, serde_json::Value) =
        sqlx::query_as("SELECT tenant_id, metadata FROM events WHERE aggregate_id = $1")
            .bind(&id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(row_tenant, tenant);
    assert_eq!(metadata["actor_id"], ctx.actor.id.as_str());
    assert_eq!(metadata["actor_email"], "analyst@acme.test");
    assert_eq!(metadata["request_id"], ctx.request_id.as_str());
}

#[tokio::test]
async fn a_stale_if_match_is_refused_with_the_current_version_and_appends_nothing() {
    let (commands, db) = service().await;
    let ctx = ctx(Uuid::now_v7());
    let id = Uuid::now_v7().to_string();
    commands
        .execute::<Scan>(&ctx, &id, None, launch(), &())
        .await
        .unwrap();
    commands
        .execute::<Scan>(&ctx, &id, Some(1), progress(5), &())
        .await
        .unwrap();

    let err = commands
        .execute::<Scan>(&ctx, &id, Some(1), progress(50), &())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::StaleVersion {
                expected: 1,
                current: 3
            }
        ),
        "{err:?}"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_sixteen_writers_with_the_same_if_match_exactly_one_wins() {
    let (commands, db) = service().await;
    let ctx = ctx(Uuid::now_v7());
    let id = Uuid::now_v7().to_string();
    commands
        .execute::<Scan>(&ctx, &id, None, launch(), &())
        .await
        .unwrap();

    let commands = Arc::new(commands);
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut writers = Vec::new();
    for n in 0..16u8 {
        let (commands, ctx, id, barrier) =
            (commands.clone(), ctx.clone(), id.clone(), barrier.clone());
        writers.push(tokio::spawn(async move {
            barrier.wait().await;
            commands
                .execute::<Scan>(&ctx, &id, Some(1), progress(n + 1), &())
                .await
        }));
    }
    let (mut won, mut stale) = (0, 0);
    for writer in writers {
        match writer.await.unwrap() {
            Ok(_) => won += 1,
            Err(CommandError::StaleVersion { current: 3, .. }) => stale += 1,
            Err(other) => panic!("a lost race must be a stale version, got {other:?}"),
        }
    }
    assert_eq!((won, stale), (1, 15));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
        .bind(&id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_without_if_match_are_retried_on_the_newer_state_and_all_land() {
    let (commands, db) = service().await;
    let ctx = ctx(Uuid::now_v7());
    let id = Uuid::now_v7().to_string();
    commands
        .execute::<Scan>(&ctx, &id, None, launch(), &())
        .await
        .unwrap();
    commands
        .execute::<Scan>(&ctx, &id, None, progress(1), &())
        .await
        .unwrap();

    // Same percent from four runners: each is legal on any state (never decreasing).
    let commands = Arc::new(commands);
    let mut writers = Vec::new();
    for _ in 0..4 {
        let (commands, ctx, id) = (commands.clone(), ctx.clone(), id.clone());
        writers.push(tokio::spawn(async move {
            commands
                .execute::<Scan>(&ctx, &id, None, progress(50), &())
                .await
        }));
    }
    for writer in writers {
        writer.await.unwrap().expect("retried until it lands");
    }
    let sequences: Vec<i64> =
        sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(&id)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(sequences, (1..=7).collect::<Vec<_>>());
}

#[tokio::test]
async fn another_tenants_aggregate_looks_absent() {
    let (commands, _db) = service().await;
    let owner = ctx(Uuid::now_v7());
    let id = Uuid::now_v7().to_string();
    commands
        .execute::<Scan>(&owner, &id, None, launch(), &())
        .await
        .unwrap();

    let intruder = ctx(Uuid::now_v7());
    let err = commands
        .execute::<Scan>(&intruder, &id, None, progress(10), &())
        .await
        .unwrap_err();
    assert!(
        matches!(err, CommandError::Rejected(DomainError::NotFound)),
        "{err:?}"
    );
    let loaded = commands
        .store()
        .load::<Scan>(intruder.tenant_id, &id)
        .await
        .unwrap();
    assert_eq!(loaded.version, 0);
}

#[tokio::test]
async fn a_rejected_command_appends_nothing() {
    let (commands, db) = service().await;
    let ctx = ctx(Uuid::now_v7());
    let id = Uuid::now_v7().to_string();
    commands
        .execute::<Scan>(&ctx, &id, None, launch(), &())
        .await
        .unwrap();
    commands
        .execute::<Scan>(
            &ctx,
            &id,
            None,
            ScanCommand::StopScan { at: Utc::now() },
            &(),
        )
        .await
        .unwrap();
    let err = commands
        .execute::<Scan>(&ctx, &id, Some(2), progress(10), &())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::Rejected(DomainError::InvalidTransition { .. })
        ),
        "{err:?}"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn a_no_op_command_keeps_the_version_and_reports_the_last_position() {
    let (commands, _db) = service().await;
    let tenant = Uuid::now_v7();
    let ctx = ctx(tenant);
    let id = tenant.to_string();
    let policy = SlaPolicy {
        critical: 3,
        ..SlaPolicy::default()
    };
    let change = || TenantSettingsCommand::ChangeSlaPolicy {
        policy,
        at: Utc::now(),
    };
    let first = commands
        .execute::<TenantSettings>(&ctx, &id, None, change(), &())
        .await
        .unwrap();
    let again = commands
        .execute::<TenantSettings>(&ctx, &id, Some(1), change(), &())
        .await
        .unwrap();
    assert!(again.events.is_empty());
    assert_eq!(again.version, 1);
    assert_eq!(again.position, first.position);
}

#[tokio::test]
async fn postgres_es_reads_the_store_we_write() {
    let (commands, db) = service().await;
    let ctx = ctx(Uuid::now_v7());
    let id = Uuid::now_v7().to_string();
    commands
        .execute::<Scan>(&ctx, &id, None, launch(), &())
        .await
        .unwrap();
    commands
        .execute::<Scan>(&ctx, &id, Some(1), progress(30), &())
        .await
        .unwrap();

    let repo = PostgresEventRepository::new(db.pool.clone());
    let events = repo.get_events::<Scan>(&id).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["ScanLaunched", "ScanStarted", "ScanProgressed"]);
    assert_eq!(events[2].sequence, 3);
    assert_eq!(events[0].metadata["request_id"], ctx.request_id.as_str());
}
