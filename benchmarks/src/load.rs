//! Filling a scratch store through the real command path, for the parts that need a
//! big one (rebuild, audit export).

use std::time::{Duration, Instant};

use sqlx::PgPool;
use vulnledger_aggregates::Role;

use crate::report::thousands;

/// Events per synthetic finding, about: its `FindingDetected` and its share of scans.
pub const EVENTS_PER_FINDING: f64 = 1.19;

pub async fn count_events(pool: &PgPool) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(n as u64)
}

/// Adds tenants of at most `per_tenant` synthetic findings each, through
/// `vulnledger::demo` (the command path), until the store holds at least `events`
/// events. A store that already holds that many is left as it is. Returns the time taken.
pub async fn fill(
    pool: &PgPool,
    url: &str,
    events: u64,
    per_tenant: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut tenants = 0;
    loop {
        let stored = count_events(pool).await?;
        if stored >= events {
            break;
        }
        tenants += 1;
        let slug = format!("bench-{tenants}");
        let findings = (((events - stored) as f64 / EVENTS_PER_FINDING).ceil() as u64)
            .clamp(100, per_tenant.min(vulnledger::demo::MAX_FINDINGS));
        println!(
            "loading {} findings into tenant {slug} ({} events stored so far, {:.0} s)",
            thousands(findings as f64),
            thousands(stored as f64),
            started.elapsed().as_secs_f64()
        );
        tenant(pool, url, &slug, findings).await?;
    }
    Ok(started.elapsed())
}

/// A new tenant `slug` with its admin and `findings` synthetic findings, through
/// `vulnledger::demo`.
pub async fn tenant(pool: &PgPool, url: &str, slug: &str, findings: u64) -> anyhow::Result<()> {
    vulnledger::identity::create_tenant(pool, slug, "Benchmark").await?;
    vulnledger::identity::create_user(
        pool,
        vulnledger::identity::NewUser {
            tenant_slug: slug,
            email: &format!("admin@{slug}.example"),
            password: "correct horse battery staple",
            role: Role::Admin,
        },
    )
    .await?;
    let options = vulnledger::demo::Options {
        tenant: slug.to_owned(),
        findings: Some(findings),
        days: None,
    };
    // A pool of its own, as `vulnledger demo` has.
    let demo_pool = vulnledger::db::connect(url, 4).await?;
    vulnledger::demo::run(&demo_pool, &options, vulnledger::demo::ProgressMode::Lines).await?;
    demo_pool.close().await;
    Ok(())
}
