//! `vulnledger demo` against a fresh database: what it creates, counted in the event store.

mod common;

use std::process::Command;

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use vulnledger::demo::{self, Options, ProgressMode};

const BIN: &str = env!("CARGO_BIN_EXE_vulnledger");

async fn events(pool: &PgPool, tenant: Uuid, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE tenant_id = $1 AND event_type = $2")
        .bind(tenant)
        .bind(event_type)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn options(tenant: &str, findings: Option<u64>, days: Option<u32>) -> Options {
    Options {
        tenant: tenant.to_owned(),
        findings,
        days,
    }
}

#[tokio::test]
async fn synthetic_mode_creates_exactly_n_findings_spread_over_the_period() {
    let db = common::fresh_db().await;
    let before = Utc::now();
    let summary = demo::run(
        &db.pool,
        &options("synth", Some(2000), Some(30)),
        ProgressMode::Quiet,
    )
    .await
    .unwrap();
    let tenant = summary.tenant_id;
    assert!(summary.tenant_created);
    assert_eq!(summary.findings_created, 2000);
    assert_eq!(events(&db.pool, tenant, "FindingDetected").await, 2000);
    assert!(summary.findings_resolved > 0, "later scans resolve some");
    assert_eq!(
        events(&db.pool, tenant, "FindingAutoResolved").await,
        summary.findings_resolved as i64
    );
    assert_eq!(
        events(&db.pool, tenant, "ScanCompleted").await,
        summary.scans as i64
    );

    // First-seen dates cover the 30 days, oldest to newest, none in the future.
    let detected: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT (payload->'FindingDetected'->>'detectedAt')::timestamptz FROM events \
         WHERE tenant_id = $1 AND event_type = 'FindingDetected'",
    )
    .bind(tenant)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let start = before - Duration::days(30) - Duration::minutes(1);
    assert!(detected.iter().all(|&t| t >= start && t <= Utc::now()));
    let mut thirds = [0usize; 3];
    for t in &detected {
        let third = ((*t - start).num_seconds() * 3 / (30 * 86_400)).clamp(0, 2);
        thirds[third as usize] += 1;
    }
    assert!(thirds.iter().all(|&n| n >= 100), "{thirds:?}");

    // Several assets, scanners and severities; CVEs shared between assets.
    let distinct = |field: &'static str| {
        let pool = db.pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar(&format!(
                "SELECT count(DISTINCT payload->'FindingDetected'->'details'->>'{field}') \
                 FROM events WHERE tenant_id = $1 AND event_type = 'FindingDetected'"
            ))
            .bind(tenant)
            .fetch_one(&pool)
            .await
            .unwrap();
            n
        }
    };
    assert_eq!(distinct("severity").await, 5);
    assert!(distinct("asset").await >= 5);
    assert_eq!(distinct("scanner").await, 3);
    let shared: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT payload->'FindingDetected'->'details'->>'cve' AS cve \
         FROM events WHERE tenant_id = $1 AND event_type = 'FindingDetected' \
         GROUP BY 1 HAVING count(DISTINCT payload->'FindingDetected'->'details'->>'asset') > 1) s \
         WHERE cve IS NOT NULL",
    )
    .bind(tenant)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(shared > 10, "{shared} CVEs on more than one asset");

    // Two users, with passwords shown once.
    assert_eq!(summary.users.len(), 2);
    assert!(summary.users.iter().all(|u| u.password.is_some()));

    // Another run adds new assets rather than rescanning (and resolving) these.
    let again = demo::run(
        &db.pool,
        &options("synth", Some(100), Some(30)),
        ProgressMode::Quiet,
    )
    .await
    .unwrap();
    assert!(!again.tenant_created);
    assert!(again.users.iter().all(|u| u.password.is_none()));
    assert_eq!(again.findings_created, 100);
    assert_eq!(events(&db.pool, tenant, "FindingDetected").await, 2100);
    assert_eq!(
        events(&db.pool, tenant, "FindingAutoResolved").await,
        (summary.findings_resolved + again.findings_resolved) as i64
    );
}

#[tokio::test]
async fn realistic_mode_replays_real_reports_with_triage_and_an_approval() {
    let db = common::fresh_db().await;
    let summary = demo::run(&db.pool, &Options::default(), ProgressMode::Quiet)
        .await
        .unwrap();
    let tenant = summary.tenant_id;
    assert_eq!(summary.tenant_slug, "demo");
    assert!(summary.findings_created > 100, "{summary:?}");
    assert_eq!(
        events(&db.pool, tenant, "FindingDetected").await,
        summary.findings_created as i64
    );
    assert!(events(&db.pool, tenant, "FindingAutoResolved").await >= 1);
    assert!(events(&db.pool, tenant, "FindingReopened").await >= 1);
    assert_eq!(summary.scans, 5 * 9, "five assets, nine weekly rounds");

    // Triage through the real commands, by the demo users.
    let t = &summary.triage;
    assert_eq!(
        (t.confirmed, t.false_positives, t.risk_accepted),
        (3, 2, 1),
        "{t:?}"
    );
    assert_eq!(
        (t.approvals_applied, t.approvals_pending, t.skipped),
        (1, 1, 0)
    );
    let admin = &summary.users[0];
    let lead = &summary.users[1];
    let actor_of = |event_type: &'static str| {
        let pool = db.pool.clone();
        async move {
            let actors: Vec<String> = sqlx::query_scalar(
                "SELECT metadata->>'actor_id' FROM events WHERE tenant_id = $1 AND event_type = $2",
            )
            .bind(tenant)
            .bind(event_type)
            .fetch_all(&pool)
            .await
            .unwrap();
            actors
        }
    };
    assert_eq!(
        actor_of("ApprovalRequested").await,
        vec![admin.id.to_string(), admin.id.to_string()]
    );
    assert_eq!(
        actor_of("ApprovalApproved").await,
        vec![lead.id.to_string()]
    );
    let false_positives: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE tenant_id = $1 AND event_type = 'FindingStatusChanged' \
         AND payload->'FindingStatusChanged'->>'to' = 'FALSE_POSITIVE' \
         AND length(payload->'FindingStatusChanged'->>'justification') > 20",
    )
    .bind(tenant)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(false_positives, 2);

    // Log4Shell accepted through the approval; a LOW one accepted directly.
    let accepted: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT a.payload->'RiskAccepted'->>'approvalId', \
                d.payload->'FindingDetected'->'details'->>'cve' \
         FROM events a JOIN events d ON d.aggregate_type = 'finding' \
           AND d.aggregate_id = a.aggregate_id AND d.sequence = 1 \
         WHERE a.tenant_id = $1 AND a.event_type = 'RiskAccepted' \
         ORDER BY 1 NULLS FIRST",
    )
    .bind(tenant)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    assert!(accepted[0].0.is_none());
    assert!(accepted[1].0.is_some());
    assert_eq!(accepted[1].1.as_deref(), Some("CVE-2021-44228"));
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM approval_index WHERE tenant_id = $1 AND status = 'PENDING'",
    )
    .bind(tenant)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(pending, 1);

    // History goes back over the 56 days.
    let oldest: DateTime<Utc> = sqlx::query_scalar(
        "SELECT min((payload->'FindingDetected'->>'detectedAt')::timestamptz) FROM events \
         WHERE tenant_id = $1 AND event_type = 'FindingDetected'",
    )
    .bind(tenant)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(oldest < Utc::now() - Duration::days(50), "{oldest}");

    // A second run on the same tenant works, reuses everything and re-does no triage.
    let again = demo::run(&db.pool, &Options::default(), ProgressMode::Quiet)
        .await
        .unwrap();
    assert_eq!(again.tenant_id, tenant);
    assert!(!again.tenant_created);
    assert!(again.users.iter().all(|u| u.password.is_none()));
    assert_eq!(again.findings_created, 0);
    assert_eq!(again.scans, summary.scans);
    assert_eq!(again.triage.skipped, 9, "{:?}", again.triage);
    assert_eq!(events(&db.pool, tenant, "ApprovalApproved").await, 1);
    assert_eq!(events(&db.pool, tenant, "RiskAccepted").await, 2);
}

#[tokio::test]
async fn bad_options_fail_before_anything_is_written() {
    let db = common::fresh_db().await;
    for (bad, option) in [
        (options("demo", Some(0), None), "--findings"),
        (options("demo", Some(50_000_000), None), "--findings"),
        (options("demo", None, Some(0)), "--days"),
        (options("Demo Corp", None, None), "--tenant"),
    ] {
        let error = demo::run(&db.pool, &bad, ProgressMode::Quiet)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(option), "{error}");
    }
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!((tenants, events), (0, 0));
}

#[test]
fn the_command_line_prints_a_summary_and_the_passwords_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(common::fresh_db());
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("demo")
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };

    let out = run(&["--tenant", "cli", "--findings", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--findings must be between 1 and"), "{err}");

    let out = run(&["--tenant", "cli", "--findings", "300", "--days", "7"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("tenant cli ("), "{stdout}");
    assert!(stdout.contains("findings created:  300"), "{stdout}");
    assert_eq!(stdout.matches("password: ").count(), 2, "{stdout}");
    // Not a terminal: plain progress lines on stderr, never a bar.
    assert!(String::from_utf8_lossy(&out.stderr).contains("demo: 300/300 findings"));

    let out = run(&["--tenant", "cli", "--findings", "10", "--days", "7"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.matches("password unchanged").count(), 2, "{stdout}");
}
