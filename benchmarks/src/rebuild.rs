//! Projection rebuild: vulnledger's rebuild (what `vulnledger projections rebuild` runs)
//! beside cqrs-es's own replay, `QueryReplay::replay_all` into a `GenericQuery` view.
//!
//! ```text
//! vulnledger-bench rebuild                  # full: 10,000,000 events; cqrs-es on 100,000
//! vulnledger-bench rebuild --events N       # another size (cqrs-es on min(N, 100,000))
//! vulnledger-bench rebuild --smoke          # seconds: 20,000 events, cqrs-es on 2,000
//! vulnledger-bench rebuild --database NAME  # rebuild a store already loaded in NAME (kept)
//! vulnledger-bench rebuild --markdown FILE
//! ```
//!
//! - **vulnledger**: a fresh database is filled through the real command path by
//!   `vulnledger::demo` (synthetic findings, their scans and sightings; as many tenants
//!   of up to 1M findings as it takes to pass N events), then every projection of
//!   `vulnledger_projections::all()` is rebuilt with `vulnledger::rebuild::rebuild`: the
//!   replay through the ordered reader into fresh tables, their indexes, and the swap.
//!   Events/s is events replayed / wall time to the swap. The peak RSS is the process's
//!   own, reset (`/proc/self/clear_refs`) before the rebuild starts.
//! - **cqrs-es**: postgres-es's tables in another fresh database hold the same
//!   `FindingDetected` event for each of K findings (written by one `INSERT … SELECT`,
//!   serialized as postgres-es serializes it); `QueryReplay::replay_all` streams them
//!   (postgres-es's `stream_all_events`) into a `PostgresViewRepository` view, event by
//!   event, as cqrs-es replays a query. The view must end with K rows.
//!
//! The two do different amounts of work per event (ours writes every read-model table,
//! the peer one JSON view); the table says so. Nothing about timing is asserted.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cqrs_es::persist::{GenericQuery, QueryReplay};
use cqrs_es::DomainEvent;
use postgres_es::{PostgresEventRepository, PostgresViewRepository};
use vulnledger_aggregates::Finding;

use crate::fixture::Fixture;
use crate::http::cqrs_es_server::{self, FindingStatusView};
use crate::machine::Machine;
use crate::report::thousands;
use crate::scratch::{in_named_or_scratch, in_scratch};

/// The issue's target, events per second for all projections together.
const TARGET: f64 = 150_000.0;
/// Findings per tenant of the loaded store. A store of many tenants is what a rebuild
/// meets in practice, and the demo slows down as one tenant passes 4M findings, which
/// would make the load, not the rebuild, the bulk of the part's time.
const PER_TENANT: u64 = 1_000_000;

#[derive(Clone, Debug)]
struct Plan {
    smoke: bool,
    events: u64,
    peer_events: u64,
    /// `--database NAME`: rebuild the store a killed or earlier run left in NAME (on
    /// TEST_DATABASE_URL's server) instead of loading a fresh one; never dropped.
    database: Option<String>,
    markdown: Option<String>,
}

impl Plan {
    fn from_args(args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut flags = crate::flags(
            args,
            "usage: vulnledger-bench rebuild [--smoke] [--events N] [--database NAME] [--markdown FILE]\n\
             Projection rebuild: vulnledger vs cqrs-es QueryReplay.",
        )?;
        let (mut events, mut peer_events) = if flags.smoke {
            (20_000, 2_000)
        } else {
            (10_000_000, 100_000)
        };
        let mut database = None;
        while let Some(arg) = flags.rest.next() {
            match arg.as_str() {
                "--events" => {
                    events = flags
                        .rest
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .filter(|n| (1_000..=100_000_000).contains(n))
                        .context("--events takes a number from 1,000 to 100,000,000")?;
                    peer_events = peer_events.min(events);
                }
                "--database" => {
                    database = Some(flags.rest.next().context("--database needs a name")?)
                }
                other => bail!("unknown argument {other:?} (try rebuild --help)"),
            }
        }
        Ok(Plan {
            smoke: flags.smoke,
            events,
            peer_events,
            database,
            markdown: flags.markdown,
        })
    }
}

struct Figure {
    events: u64,
    elapsed: Duration,
    peak_rss_mb: Option<f64>,
}

impl Figure {
    fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

pub fn main(args: impl Iterator<Item = String>) -> ExitCode {
    crate::run_part("rebuild", Plan::from_args(args), run)
}

async fn run(plan: Plan) -> anyhow::Result<bool> {
    let machine = Machine::on_scratch().await?;
    println!(
        "vulnledger-bench rebuild{}: vulnledger at {} events, cqrs-es QueryReplay at {}",
        if plan.smoke { " --smoke" } else { "" },
        thousands(plan.events as f64),
        thousands(plan.peer_events as f64)
    );
    print!("{}", machine.markdown());
    let started = chrono::Utc::now();

    // A named database holds its store already: nothing is loaded into it.
    let events = if plan.database.is_some() {
        0
    } else {
        plan.events
    };
    let ours = in_named_or_scratch(plan.database.as_deref(), |url| ours(events, url)).await;
    match &ours {
        Ok((f, load)) => println!(
            "vulnledger: {} events rebuilt in {:.1} s: {}/s (loaded in {:.0} s); peak RSS {}",
            thousands(f.events as f64),
            f.elapsed.as_secs_f64(),
            thousands(f.per_second()),
            load.as_secs_f64(),
            f.peak_rss_mb
                .map_or("?".to_owned(), |m| format!("{m:.0} MB"))
        ),
        Err(e) => println!("vulnledger: FAILED: {e}"),
    }
    let peer = in_scratch(|scratch| peer(plan.peer_events, scratch)).await;
    match &peer {
        Ok(f) => println!(
            "cqrs-es: {} events replayed in {:.1} s: {}/s",
            thousands(f.events as f64),
            f.elapsed.as_secs_f64(),
            thousands(f.per_second())
        ),
        Err(e) => println!("cqrs-es: FAILED: {e}"),
    }
    let table = table(&ours, &peer);
    println!("\n{table}");
    if let Some(path) = &plan.markdown {
        std::fs::write(path, markdown(&machine, started, &table))
            .with_context(|| format!("writing {path}"))?;
        println!("wrote {path}");
    }
    Ok(ours.is_ok() && peer.is_ok())
}

/// Loads at least `events` events with the demo, then rebuilds every projection.
async fn ours(events: u64, url: String) -> anyhow::Result<(Figure, Duration)> {
    let pool = vulnledger::db::connect(&url, 8).await?;
    vulnledger::db::migrate(&pool).await?;
    let load = crate::load::fill(&pool, &url, events, PER_TENANT).await?;
    let stored = crate::load::count_events(&pool).await?;
    sqlx::raw_sql("VACUUM (ANALYZE) events")
        .execute(&pool)
        .await?;
    // The peak of the rebuild alone, not of the load before it.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let start = Instant::now();
    let mut said = Instant::now();
    for projection in vulnledger_projections::all() {
        let name = projection.name().to_owned();
        vulnledger::rebuild::rebuild(&pool, projection, |p| {
            if said.elapsed() > Duration::from_secs(15) {
                println!(
                    "  {name}: {} of about {} events, {:.0} s",
                    thousands(p.events as f64),
                    thousands(p.total as f64),
                    p.elapsed.as_secs_f64()
                );
                said = Instant::now();
            }
        })
        .await
        .with_context(|| format!("rebuilding {name}"))?;
    }
    let elapsed = start.elapsed();
    let peak_rss_mb = crate::machine::peak_rss_mb("/proc/self/status");
    let views: i64 = sqlx::query_scalar("SELECT count(*) FROM finding_view")
        .fetch_one(&pool)
        .await?;
    let detected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'FindingDetected'")
            .fetch_one(&pool)
            .await?;
    anyhow::ensure!(
        views == detected,
        "the rebuilt finding_view holds {views} rows for {detected} detected findings"
    );
    pool.close().await;
    Ok((
        Figure {
            events: stored,
            elapsed,
            peak_rss_mb,
        },
        load,
    ))
}

/// `events` FindingDetected events in postgres-es's tables, replayed by cqrs-es.
async fn peer(events: u64, url: String) -> anyhow::Result<Figure> {
    let pool = vulnledger::db::connect(&url, 4).await?;
    cqrs_es_server::create_schema(&pool).await?;
    let fixture = Fixture::new();
    let payload = serde_json::to_value(&fixture.event)?;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
         event_version, payload, metadata) \
         SELECT 'finding', gen_random_uuid()::text, 1, $1, $2, $3::json, '{}'::json \
         FROM generate_series(1, $4)",
    )
    .bind(fixture.event.event_type())
    .bind(fixture.event.event_version())
    .bind(&payload)
    .bind(events as i64)
    .execute(&pool)
    .await?;
    sqlx::raw_sql("VACUUM (ANALYZE)").execute(&pool).await?;
    let views = Arc::new(PostgresViewRepository::<FindingStatusView, Finding>::new(
        "finding_status_view",
        pool.clone(),
    ));
    let query = GenericQuery::new(views);
    let replay = QueryReplay::new(PostgresEventRepository::new(pool.clone()), query);
    let start = Instant::now();
    replay
        .replay_all()
        .await
        .map_err(|e| anyhow::anyhow!("QueryReplay::replay_all: {e}"))?;
    let elapsed = start.elapsed();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM finding_status_view")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        rows == events as i64,
        "cqrs-es replayed {events} events into {rows} views"
    );
    pool.close().await;
    Ok(Figure {
        events,
        elapsed,
        peak_rss_mb: None,
    })
}

fn table(ours: &Result<(Figure, Duration), String>, peer: &Result<Figure, String>) -> String {
    let cell = |f: &Figure| {
        format!(
            "{} events in {:.1} s: **{}/s**",
            thousands(f.events as f64),
            f.elapsed.as_secs_f64(),
            thousands(f.per_second())
        )
    };
    let failed = |e: &str| {
        format!(
            "failed: {}",
            e.replace('|', "/").chars().take(100).collect::<String>()
        )
    };
    let (ours_cell, memory, verdict) = match ours {
        Ok((f, _)) => (
            cell(f),
            f.peak_rss_mb
                .map_or("?".to_owned(), |m| format!("{m:.0} MB")),
            if f.per_second() >= TARGET {
                "**met**".to_owned()
            } else {
                format!(
                    "**missed**: {:.0}% of the target, {:.1}× short",
                    100.0 * f.per_second() / TARGET,
                    TARGET / f.per_second()
                )
            },
        ),
        Err(e) => (failed(e), "–".to_owned(), "not measured".to_owned()),
    };
    let peer_cell = match peer {
        Ok(f) => cell(f),
        Err(e) => failed(e),
    };
    format!(
        "| | vulnledger: every projection, fresh tables, indexes, swap | cqrs-es: `QueryReplay` into one view |\n\
         |---|---:|---:|\n\
         | replay | {ours_cell} | {peer_cell} |\n\
         | peak RSS of the rebuilding process | {memory} | – |\n\n\
         Target (issue 6): {} events/s for all projections together: {verdict}.\n\
         {}",
        thousands(TARGET),
        match ours {
            Ok((_, load)) => format!(
                "Loading the store through the command path (`vulnledger::demo`, untimed for the figure) took {:.0} s.\n",
                load.as_secs_f64()
            ),
            Err(_) => String::new(),
        }
    )
}

fn markdown(machine: &Machine, started: chrono::DateTime<chrono::Utc>, table: &str) -> String {
    format!(
        "<!-- bench:rebuild -->\n\
         ## Projection rebuild: vulnledger beside cqrs-es's QueryReplay\n\n\
         Measured {} by `scripts/bench.sh` (`vulnledger-bench rebuild`), which rewrites \
         everything between the `bench:rebuild` markers.\n\n\
         ### Machine\n\n{}\n\
         ### What is measured\n\n\
         - **vulnledger**: a fresh store filled by `vulnledger::demo` through the command \
         path (synthetic findings with their scans and sightings, in tenants of up to 1M \
         findings), then `vulnledger::rebuild::rebuild` for every projection, as `vulnledger \
         projections rebuild` runs it: the ordered replay into fresh tables, their indexes, \
         the atomic swap. The rebuilt `finding_view` must hold one row per detected finding.\n\
         - **cqrs-es**: the same `FindingDetected` event for each of the findings in \
         postgres-es's own tables, replayed by `QueryReplay::replay_all` into a \
         `PostgresViewRepository` view, event by event (one view load and one upsert each). \
         It writes one JSON view; ours writes every read-model table. The view must end \
         with one row per event.\n\n\
         ### Figures\n\n{table}\n<!-- /bench:rebuild -->\n",
        started.format("%Y-%m-%d %H:%M UTC"),
        machine.markdown(),
    )
}
