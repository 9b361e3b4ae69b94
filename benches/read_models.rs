//! Read-model benchmark: finding queries, dashboard KPIs and projection lag, over HTTP.
//!
//! ```text
//! cargo bench --bench read_models              # full run: 1,000,000 findings
//! cargo bench --bench read_models -- --smoke   # quick run: 20,000 findings, under a minute
//! cargo bench --bench read_models -- --findings 200000 --keep
//! ```
//!
//! Options (after `--`): `--smoke`; `--findings N`; `--samples N` (sequential samples per
//! query, default 1000); `--rate R[,R...]` and `--lag-seconds S` (the open-loop command
//! loads, default 200/s and 1000/s for 10 s each; smoke: 200/s for 2 s); `--no-nats` (skip
//! the NATS lag runs); `--nats-url URL` (use that JetStream server instead of a private one;
//! see below); `--keep` (leave the scratch database for EXPLAIN by hand, printing its
//! name); `--database NAME` (reuse a database a `--keep` run left, skipping the load; it is
//! never dropped); `--only queries|lag`; `--sql` (time every SQL statement during the lag
//! runs, grouped by statement); `--nats-split` (also subscribe to the stream, and split
//! the NATS lag at the moment each event reached NATS: relay, then consumer; the extra
//! subscriber adds load, so it is off by default); `--markdown FILE` (also write the
//! summary as the `bench:read-models` section that `scripts/bench.sh` splices into
//! docs/benchmarks.md).
//!
//! Runs against a scratch database `vulnledger_bench_<uuid>` on TEST_DATABASE_URL (default
//! postgres://postgres@127.0.0.1:5432/postgres), dropped at the end (also when a step
//! fails). The application runs in this process on port 0 (`Application::build`, workers
//! on), and the client talks to it over loopback.
//!
//! 1. Load: a tenant and its admin are created with `vulnledger::identity`, then
//!    `vulnledger::demo` writes N synthetic findings through the real command path. The
//!    server starts afterwards (in the smoke run: before), so its projection worker catches
//!    up on the whole history, which is timed; the benchmark waits until the `findings`
//!    checkpoint covers the store's head, then runs `VACUUM (ANALYZE)` (what autovacuum
//!    does within a minute or two of a bulk load).
//! 2. Queries: every query kind is sent sequentially (after a warm-up) for latency
//!    percentiles, then by 8 concurrent clients for a few seconds for throughput. "Deep"
//!    kinds follow `nextCursor` from page 500 on (from a quarter of the pages when there are
//!    fewer). `GET /dashboard/kpis` is cached by the server per projection position and
//!    second, so it is also measured uncached through the library
//!    (`read_models::dashboard::kpis`), as is the counted total of `q=` (cached the same way).
//! 3. Projection lag: open loop, one `PATCH /findings/{id}/status` (OPEN → CONFIRMED, with
//!    If-Match) every 1/R s, each finding used once, whatever the answers' latency. Each
//!    answer's `X-Event-Position` is matched against the checkpoints the projection
//!    announces on the PostgreSQL channel `vulnledger_projections` (one NOTIFY per committed
//!    batch, listened to on its own thread): an event is visible once a checkpoint's
//!    `(txid, position)` reaches the event's own (its txid from `events`), exactly the rule
//!    `X-Min-Position` applies. Lag is from the command's answer being read to that
//!    notification (0 when the notification came first). The first second is warm-up.
//!    Each rate runs after the previous one has been applied in full. The age of the oldest
//!    writing transaction in *other* databases is sampled meanwhile: the ordered reader
//!    reads below the cluster-wide xmin, so such a transaction delays this projection.
//!    Meanwhile one paced reader sends `GET /dashboard/kpis`, `GET /findings` and
//!    `GET /findings?q=openssl` (33/s each): their latency while the read models move
//!    (the KPI cache is keyed by the projection position, so most of these miss it; the
//!    search's total by the tenant's number of findings, which triage leaves alone).
//!    Then again with NATS: the server is restarted with a NATS URL, so events go
//!    relay → JetStream → the projection's durable pull consumer. By default that is a
//!    private `nats-server -js` on a free port with a temporary store (killed at the end):
//!    the stream and the consumer `projection-findings` are global to a NATS server, so on
//!    a shared one another database's events would reach this projection (and this run
//!    would consume theirs). The relay's checkpoint is set to the store's head first, as on
//!    a system whose relay has always run, so the million loaded events are not re-published.
//!
//! Nothing about timing is asserted. Every answer's status is checked, and the load's
//! counts, so a broken query cannot produce a fast figure.

mod common;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vulnledger::app::Application;
use vulnledger::config::Config;
use vulnledger::read_models::findings::FindingFilter;
use vulnledger::store::OrderedReader;
use vulnledger_aggregates::Role;
use vulnledger_projections::checkpoint;

use common::{load_average, print_machine, Scratch};

const TENANT: &str = "bench";
const ADMIN: &str = "admin@bench.example";
const PASSWORD: &str = "correct horse battery staple";
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Sequential requests sent before the timed ones of each kind.
const WARM_UP: usize = 20;

#[derive(Debug, Clone)]
enum Nats {
    Off,
    /// A `nats-server -js` started by the benchmark.
    Private,
    Url(String),
}

#[derive(Debug, Clone)]
struct Plan {
    smoke: bool,
    findings: u64,
    samples: usize,
    /// Samples of the uncached counts (each counts rows).
    count_samples: usize,
    throughput_time: Duration,
    concurrency: usize,
    deep_page: usize,
    /// Command rates of the lag runs, lowest first.
    rates: Vec<u32>,
    lag_time: Duration,
    nats: Nats,
    keep: bool,
    database: Option<String>,
    /// `--only queries` or `--only lag`.
    only: Option<String>,
    /// `--sql`: time every SQL statement of the lag runs (sqlx's query log).
    sql: bool,
    /// `--nats-split`: also hear every event on the NATS stream, to split the NATS
    /// lag into the relay's part and the consumer's. Off by default: the extra
    /// subscriber is more work for the server and this process.
    nats_split: bool,
    /// `--markdown FILE`: also write the summary as docs/benchmarks.md's
    /// `bench:read-models` section (scripts/bench.sh splices it in).
    markdown: Option<String>,
}

impl Plan {
    fn from_args() -> Result<Self, String> {
        let mut rest = Vec::new();
        let mut smoke = false;
        for a in std::env::args().skip(1) {
            match a.as_str() {
                "--smoke" => smoke = true,
                // `cargo bench` passes it to every target.
                "--bench" => {}
                _ => rest.push(a),
            }
        }
        let mut plan = if smoke {
            Plan {
                smoke,
                findings: 20_000,
                samples: 50,
                count_samples: 20,
                throughput_time: Duration::from_millis(250),
                concurrency: 8,
                deep_page: 500,
                rates: vec![200],
                lag_time: Duration::from_secs(1),
                nats: Nats::Private,
                keep: false,
                database: None,
                only: None,
                sql: false,
                nats_split: false,
                markdown: None,
            }
        } else {
            Plan {
                smoke,
                findings: 1_000_000,
                samples: 1000,
                count_samples: 200,
                throughput_time: Duration::from_secs(5),
                concurrency: 8,
                deep_page: 500,
                rates: vec![200, 1000],
                lag_time: Duration::from_secs(10),
                nats: Nats::Private,
                keep: false,
                database: None,
                only: None,
                sql: false,
                nats_split: false,
                markdown: None,
            }
        };
        let mut rest = rest.into_iter();
        let value = |rest: &mut std::vec::IntoIter<String>, name: &str| {
            rest.next().ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |v: String, name: &str| {
            v.replace('_', "")
                .parse::<u64>()
                .map_err(|_| format!("{name} must be a positive number, not {v:?}"))
                .and_then(|n| {
                    if n > 0 {
                        Ok(n)
                    } else {
                        Err(format!("{name} must be positive"))
                    }
                })
        };
        while let Some(a) = rest.next() {
            match a.as_str() {
                "--findings" => plan.findings = number(value(&mut rest, &a)?, &a)?,
                "--samples" => plan.samples = number(value(&mut rest, &a)?, &a)? as usize,
                "--rate" => {
                    let v = value(&mut rest, &a)?;
                    plan.rates = v
                        .split(',')
                        .map(|r| number(r.trim().to_owned(), &a).map(|n| n as u32))
                        .collect::<Result<_, _>>()?;
                    plan.rates.sort_unstable();
                }
                "--lag-seconds" => {
                    plan.lag_time = Duration::from_secs(number(value(&mut rest, &a)?, &a)?)
                }
                "--no-nats" => plan.nats = Nats::Off,
                "--nats-url" => plan.nats = Nats::Url(value(&mut rest, &a)?),
                "--keep" => plan.keep = true,
                "--sql" => plan.sql = true,
                "--nats-split" => plan.nats_split = true,
                "--database" => plan.database = Some(value(&mut rest, &a)?),
                "--markdown" => plan.markdown = Some(value(&mut rest, &a)?),
                "--only" => {
                    let v = value(&mut rest, &a)?;
                    if v != "queries" && v != "lag" {
                        return Err(format!("--only takes queries or lag, not {v:?}"));
                    }
                    plan.only = Some(v);
                }
                other if other.starts_with("--") => return Err(format!("unknown option {other}")),
                // A name filter `cargo bench` may pass along: nothing to filter here.
                _ => {}
            }
        }
        Ok(plan)
    }
}

fn main() -> ExitCode {
    let plan = match Plan::from_args() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("read_models benchmark: {e}");
            return ExitCode::FAILURE;
        }
    };
    install_capture(plan.sql);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run_in_scratch_database(plan))
}

// ------------------------------------------------------------------ database ---------

async fn run_in_scratch_database(plan: Plan) -> ExitCode {
    let scratch = match Scratch::open(plan.database.as_deref(), plan.keep).await {
        Ok(scratch) => scratch,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // A task, so that a panic still drops the database.
    let outcome = tokio::spawn(run(plan, scratch.url.clone(), !scratch.created)).await;
    scratch
        .finish(outcome.map(|r| r.map(|()| ExitCode::SUCCESS)))
        .await
}

fn bench_config(database_url: &str) -> Config {
    Config {
        database_url: database_url.to_owned(),
        // The product's default (DATABASE_MAX_CONNECTIONS).
        database_max_connections: 20,
        nats_url: None,
        jwt_secret: Some("bench-secret-bench-secret-bench-secret!".to_owned()),
        jwt_expires_in: Duration::from_secs(24 * 3600),
        jwt_refresh_expires_in: Duration::from_secs(86_400),
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        rate_limit_auth: 1000,
        // The open-loop load alone is 60,000 commands a minute.
        rate_limit_tenant: 100_000_000,
        report_max_bytes: 32 * 1024 * 1024,
        cookie_secure: false,
        run_workers: true,
        risk_expiry_sweep: Duration::from_secs(5),
    }
}

// ------------------------------------------------------------------ the run ----------

async fn run(plan: Plan, url: String, reused: bool) -> anyhow::Result<()> {
    let pool = vulnledger::db::connect(&url, 5).await?;
    vulnledger::db::migrate(&pool).await?;
    let machine = print_machine(&pool).await?;
    let started = Utc::now();
    let mut table = Table::default();

    // The smoke run starts the server first, so that the projection works through the
    // history while it is written; the full run times the catch-up on its own.
    let early = if plan.smoke && !reused {
        Some(Server::start(&url, None).await?)
    } else {
        None
    };
    let tenant = if reused {
        let tenant = vulnledger::identity::find_tenant_by_slug(&pool, TENANT).await?;
        let findings: i64 =
            sqlx::query_scalar("SELECT count(*) FROM finding_index WHERE tenant_id = $1")
                .bind(tenant.id)
                .fetch_one(&pool)
                .await
                .unwrap_or(-1);
        println!("reusing tenant {TENANT} ({findings} findings in finding_index)");
        tenant.id
    } else {
        load(&plan, &pool, &url, &mut table).await?
    };

    // ---- in-process fan-out: queries, then lag
    let server = match early {
        Some(server) => server,
        None => Server::start(&url, None).await?,
    };
    catch_up(&pool, &mut table).await?;
    if !reused {
        // The smoke run's few thousand rows only need their statistics.
        let statement = if plan.smoke {
            "ANALYZE"
        } else {
            "VACUUM (ANALYZE)"
        };
        let started = Instant::now();
        sqlx::query(statement).execute(&pool).await?;
        println!("{statement}: {:.1} s", started.elapsed().as_secs_f64());
    }
    let client = Client::login(server.address).await?;
    if plan.runs("queries") {
        queries(&plan, &client, &server, &pool, tenant, &mut table).await?;
    }
    if !plan.runs("lag") {
        server.stop().await;
        println!("\n== summary ==");
        table.print();
        return write_markdown(&plan, &machine, started, &table);
    }

    let modes = if matches!(plan.nats, Nats::Off) { 1 } else { 2 };
    let needed: usize = plan
        .rates
        .iter()
        .map(|r| plan.lag_commands(*r))
        .sum::<usize>()
        * modes;
    let mut candidates = open_findings(&pool, tenant, needed).await?;
    for &rate in &plan.rates {
        let batch: Vec<(Uuid, i64)> = candidates
            .drain(..plan.lag_commands(rate).min(candidates.len()))
            .collect();
        lag(
            &plan,
            rate,
            "in-process (NATS_URL unset)",
            &client,
            &url,
            &pool,
            &server.caches,
            batch,
            None,
            &mut table,
        )
        .await?;
    }
    server.stop().await;

    // ---- relay → JetStream → pull consumer
    // Killed when dropped, at the end of this function.
    let mut nats_server: Option<NatsServer> = None;
    let nats_url = match &plan.nats {
        Nats::Off => None,
        Nats::Url(url) => Some(url.clone()),
        Nats::Private => match NatsServer::start().await {
            Ok(n) => {
                let url = n.url();
                nats_server = Some(n);
                Some(url)
            }
            Err(e) => {
                println!("\nNATS lag skipped: cannot start a private nats-server: {e:#}");
                None
            }
        },
    };
    if let Some(nats_url) = nats_url {
        let head = OrderedReader::new(pool.clone()).head().await?;
        vulnledger::processes::save_checkpoint(&pool, vulnledger::relay::NAME, head).await?;
        let server = Server::start(&url, Some(nats_url.clone())).await?;
        let client = Client::login(server.address).await?;
        let label = match &plan.nats {
            Nats::Private => "NATS (relay → JetStream → pull consumer)".to_owned(),
            _ => format!("NATS ({nats_url})"),
        };
        for &rate in &plan.rates {
            let batch: Vec<(Uuid, i64)> = candidates
                .drain(..plan.lag_commands(rate).min(candidates.len()))
                .collect();
            lag(
                &plan,
                rate,
                &label,
                &client,
                &url,
                &pool,
                &server.caches,
                batch,
                plan.nats_split.then_some((nats_url.as_str(), tenant)),
                &mut table,
            )
            .await?;
        }
        server.stop().await;
    }
    drop(nats_server);

    println!(
        "\n== summary ({}, {} findings) ==",
        if plan.smoke { "smoke run" } else { "full run" },
        thousands(plan.findings)
    );
    table.print();
    pool.close().await;
    write_markdown(&plan, &machine, started, &table)
}

/// The `bench:read-models` section of docs/benchmarks.md, when `--markdown` asked for it.
fn write_markdown(
    plan: &Plan,
    machine: &str,
    started: chrono::DateTime<Utc>,
    table: &Table,
) -> anyhow::Result<()> {
    let Some(path) = &plan.markdown else {
        return Ok(());
    };
    let section = format!(
        "<!-- bench:read-models -->\n\
         ## Finding queries, KPIs and projection lag at {} findings\n\n\
         Measured {} by `scripts/bench.sh` (`cargo bench --bench read_models -- --markdown FILE`), \
         which rewrites everything between the `bench:read-models` markers. What each row \
         means is in the bench's own documentation (`benches/read_models.rs`).\n\n\
         ### Machine\n\n```text\n{machine}```\n\n\
         ### Figures\n\nLatencies in ms, lower is better. The rows marked *peer* run in the same \
         run on the same table: what a Django list view such as DefectDojo's sends for one page \
         (LIMIT/OFFSET and an exact `count(*)` for the pager), in SQL alone, without HTTP.\n\n\
         {}\n\
         Quoted, not this run: DefectDojo 3.2 needs 0.47 s (p99) to list 50 of 104k findings on \
         this kind of machine. Targets (issue 5): first-page and deep-cursor finding queries \
         p99 ≤ 10 ms, KPIs p99 ≤ 5 ms, projection lag p50 ≤ 5 ms and p99 ≤ 25 ms at 1,000 \
         commands/s.\n\
         <!-- /bench:read-models -->\n",
        thousands(plan.findings),
        started.format("%Y-%m-%d %H:%M UTC"),
        table.markdown()
    );
    std::fs::write(path, section)?;
    println!("wrote {path}");
    Ok(())
}

impl Plan {
    fn runs(&self, part: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == part)
    }

    /// One second's worth.
    fn warm_up_commands(&self, rate: u32) -> usize {
        rate as usize
    }

    fn lag_commands(&self, rate: u32) -> usize {
        self.warm_up_commands(rate) + (f64::from(rate) * self.lag_time.as_secs_f64()) as usize
    }
}

/// Tenant, admin, then the demo's synthetic findings.
async fn load(plan: &Plan, pool: &PgPool, url: &str, table: &mut Table) -> anyhow::Result<Uuid> {
    let tenant = vulnledger::identity::create_tenant(pool, TENANT, "Benchmark").await?;
    vulnledger::identity::create_user(
        pool,
        vulnledger::identity::NewUser {
            tenant_slug: TENANT,
            email: ADMIN,
            password: PASSWORD,
            role: Role::Admin,
        },
    )
    .await?;
    println!(
        "\nloading {} findings with vulnledger::demo",
        thousands(plan.findings)
    );
    let options = vulnledger::demo::Options {
        tenant: TENANT.to_owned(),
        findings: Some(plan.findings),
        days: None,
    };
    // The demo records two scans at once; give it a pool of its own.
    let demo_pool = vulnledger::db::connect(url, 4).await?;
    let summary =
        vulnledger::demo::run(&demo_pool, &options, vulnledger::demo::ProgressMode::Lines).await?;
    demo_pool.close().await;
    anyhow::ensure!(
        summary.findings_created == plan.findings,
        "the demo created {} findings instead of {}",
        summary.findings_created,
        plan.findings
    );
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    let load = summary.load_time.as_secs_f64();
    println!(
        "loaded {} findings ({} resolved by later scans) in {} scans, {} events, in {:.1} s",
        thousands(summary.findings_created),
        thousands(summary.findings_resolved),
        thousands(summary.scans),
        thousands(events as u64),
        load
    );
    table.row(
        "load: `vulnledger::demo`, synthetic findings",
        format!(
            "{} findings, {} events",
            thousands(summary.findings_created),
            thousands(events as u64)
        ),
        format!("{load:.1} s"),
        String::new(),
        String::new(),
        format!(
            "{} findings/s",
            thousands((summary.findings_created as f64 / load) as u64)
        ),
    );
    Ok(tenant.id)
}

/// Waits until the findings projection covers the store's head.
async fn catch_up(pool: &PgPool, table: &mut Table) -> anyhow::Result<()> {
    let head = OrderedReader::new(pool.clone()).head().await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    let start = Instant::now();
    let before = checkpoint::load(pool, "findings")
        .await?
        .map_or(0, |c| c.events);
    let mut said = Instant::now();
    loop {
        let at = checkpoint::load(pool, "findings")
            .await?
            .unwrap_or_default();
        if at.covers(head.txid, head.position) {
            let applied = at.events - before;
            let secs = start.elapsed().as_secs_f64();
            println!(
                "projection caught up: {} events applied in {secs:.1} s after the server started",
                thousands(applied.max(0) as u64)
            );
            if applied > 1000 {
                table.row(
                    "projection catch-up from the store after the load",
                    format!("{} events", thousands(applied as u64)),
                    format!("{secs:.1} s"),
                    String::new(),
                    String::new(),
                    format!("{} events/s", thousands((applied as f64 / secs) as u64)),
                );
            }
            return Ok(());
        }
        if said.elapsed() > Duration::from_secs(10) {
            println!(
                "  projection: {} / {} events ({:.0} s)",
                thousands(at.events.max(0) as u64),
                thousands(total as u64),
                start.elapsed().as_secs_f64()
            );
            said = Instant::now();
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(4 * 3600),
            "the projection did not catch up within 4 hours"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `n` OPEN findings with their versions, spread over the table.
async fn open_findings(pool: &PgPool, tenant: Uuid, n: usize) -> anyhow::Result<Vec<(Uuid, i64)>> {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT id, version FROM finding_view WHERE tenant_id = $1 AND status = 'OPEN' \
         ORDER BY md5(id::text) LIMIT $2",
    )
    .bind(tenant)
    .bind(n as i64)
    .fetch_all(pool)
    .await?;
    if rows.len() < n {
        println!(
            "  only {} OPEN findings for {} commands: the lag runs are shorter",
            rows.len(),
            n
        );
    }
    Ok(rows)
}

// ------------------------------------------------------------------ server -----------

struct Server {
    address: SocketAddr,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    caches: vulnledger::read_models::Caches,
}

impl Server {
    async fn start(url: &str, nats_url: Option<String>) -> anyhow::Result<Self> {
        let mut config = bench_config(url);
        config.nats_url = nats_url;
        let app = Application::build(config).await?;
        let address = app.local_addr();
        let caches = app.state().caches.clone();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run(shutdown.clone()));
        Ok(Self {
            address,
            shutdown,
            handle,
            caches,
        })
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.handle.await;
        // Background workers end on the same token; let them release their locks.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A `nats-server -js` of our own: killed, and its store removed, on drop.
struct NatsServer {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl NatsServer {
    async fn start() -> anyhow::Result<Self> {
        let binary = [
            "/usr/sbin/nats-server",
            "/usr/local/bin/nats-server",
            "/usr/bin/nats-server",
        ]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| "nats-server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("vulnledger-bench-nats-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let child = std::process::Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("{}: {e}", binary.display()))?;
        let server = Self { child, port, dir };
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(10),
                "nats-server did not accept connections within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("\nprivate nats-server (JetStream) on port {port}");
        Ok(server)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ------------------------------------------------------------------ HTTP client ------

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn login(address: SocketAddr) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(HTTP_TIMEOUT).build()?;
        let response = http
            .post(format!("http://{address}/api/v1/auth/login"))
            .json(&json!({ "email": ADMIN, "password": PASSWORD }))
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "login answered {}",
            response.status()
        );
        let body: Value = response.json().await?;
        Ok(Self {
            http,
            base: format!("http://{address}"),
            token: body["token"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// One GET, timed from sending it until its whole body is read.
    async fn get(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> anyhow::Result<(Duration, bytes::Bytes)> {
        let start = Instant::now();
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        let elapsed = start.elapsed();
        anyhow::ensure!(
            status == 200,
            "GET {path}?{query:?} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
        Ok((elapsed, body))
    }
}

fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn next_cursor(body: &[u8]) -> anyhow::Result<Option<String>> {
    let v: Value = serde_json::from_slice(body)?;
    anyhow::ensure!(
        v["data"].as_array().is_some_and(|d| !d.is_empty()),
        "a page without data: {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    Ok(v["meta"]["nextCursor"].as_str().map(str::to_owned))
}

// ------------------------------------------------------------------ queries ----------

/// What one measured kind sends.
#[derive(Clone)]
enum Request {
    /// The same request every time.
    Fixed {
        path: String,
        query: Vec<(String, String)>,
    },
    /// Follows `nextCursor` from `start` (back to `start` at the last page).
    Walk {
        query: Vec<(String, String)>,
        start: String,
    },
}

impl Request {
    fn list(pairs: &[(&str, &str)]) -> Self {
        Request::Fixed {
            path: "/api/v1/findings".into(),
            query: query(pairs),
        }
    }
}

/// A walker over a `Request`: the next request's query, and what to do with the answer.
struct Cursor<'a> {
    request: &'a Request,
    at: Option<String>,
}

impl<'a> Cursor<'a> {
    fn new(request: &'a Request) -> Self {
        Self { request, at: None }
    }

    async fn send(&mut self, client: &Client) -> anyhow::Result<Duration> {
        match self.request {
            Request::Fixed { path, query } => Ok(client.get(path, query).await?.0),
            Request::Walk { query, start } => {
                let mut q = query.clone();
                q.push((
                    "cursor".into(),
                    self.at.clone().unwrap_or_else(|| start.clone()),
                ));
                let (elapsed, body) = client.get("/api/v1/findings", &q).await?;
                self.at = next_cursor(&body)?;
                Ok(elapsed)
            }
        }
    }
}

/// The cursor of page `page` of `query` (following `nextCursor` from page 1), and how
/// many pages it walked (fewer when the list is shorter).
async fn cursor_at(
    client: &Client,
    query: &[(String, String)],
    page: usize,
) -> anyhow::Result<(String, usize)> {
    let mut cursor: Option<String> = None;
    let mut last_good = None;
    for walked in 1..page {
        let mut q = query.to_vec();
        if let Some(c) = &cursor {
            q.push(("cursor".into(), c.clone()));
        }
        let (_, body) = client.get("/api/v1/findings", &q).await?;
        match next_cursor(&body)? {
            Some(next) => {
                last_good = Some((next.clone(), walked + 1));
                cursor = Some(next);
            }
            None => break,
        }
    }
    last_good.ok_or_else(|| anyhow::anyhow!("{query:?} has a single page"))
}

async fn sequential(
    client: &Client,
    request: &Request,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut cursor = Cursor::new(request);
    for _ in 0..WARM_UP {
        cursor.send(client).await?;
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        times.push(cursor.send(client).await?);
    }
    Ok(times)
}

/// `concurrency` clients in closed loops for `time`: (latencies, requests per second).
async fn concurrent(
    client: &Client,
    request: &Request,
    concurrency: usize,
    time: Duration,
) -> anyhow::Result<(Vec<Duration>, f64)> {
    let start = Instant::now();
    let deadline = start + time;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let request = request.clone();
        tasks.spawn(async move {
            let mut cursor = Cursor::new(&request);
            let mut times = Vec::new();
            while Instant::now() < deadline {
                times.push(cursor.send(&client).await?);
            }
            anyhow::Ok(times)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    Ok((all, rate))
}

async fn queries(
    plan: &Plan,
    client: &Client,
    server: &Server,
    pool: &PgPool,
    tenant: Uuid,
    table: &mut Table,
) -> anyhow::Result<()> {
    let asset: String = sqlx::query_scalar(
        "SELECT asset FROM asset_view WHERE tenant_id = $1 ORDER BY total DESC, asset LIMIT 1",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await?;
    let asset_findings: i64 =
        sqlx::query_scalar("SELECT total FROM asset_view WHERE tenant_id = $1 AND asset = $2")
            .bind(tenant)
            .bind(&asset)
            .fetch_one(pool)
            .await?;
    let openssl: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM finding_text WHERE tenant_id = $1 AND search LIKE '%openssl%'",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await?;
    let filtered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM finding_view WHERE tenant_id = $1 \
         AND severity IN ('CRITICAL', 'HIGH') AND status = 'OPEN'",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await?;
    println!(
        "\nlargest asset: {asset} ({asset_findings} findings); q=openssl matches {openssl}; \
         severity=CRITICAL,HIGH&status=OPEN matches {filtered}"
    );

    let total_pages = |n: i64| (n as usize).div_ceil(50);
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM finding_view WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(pool)
        .await?;
    let deep = |pages: usize| plan.deep_page.min((pages / 4).max(2));

    let mut kinds: Vec<(String, Request)> = vec![
        (
            "first page, default sort (-severity,-firstSeen)".into(),
            Request::list(&[]),
        ),
        (
            "first page, severity=CRITICAL,HIGH&status=OPEN".into(),
            Request::list(&[("severity", "CRITICAL,HIGH"), ("status", "OPEN")]),
        ),
        (
            format!("first page, asset=<largest asset> ({asset_findings} findings)"),
            Request::list(&[("asset", asset.as_str())]),
        ),
        (
            format!("first page, q=openssl ({openssl} matches)"),
            Request::list(&[("q", "openssl")]),
        ),
        (
            "first page, sort=dueAt".into(),
            Request::list(&[("sort", "dueAt")]),
        ),
        (
            "first page, sort=-lastSeen".into(),
            Request::list(&[("sort", "-lastSeen")]),
        ),
        (
            "first page, cve=CVE-2021-44228".into(),
            Request::list(&[("cve", "CVE-2021-44228")]),
        ),
        (
            "first page, slaBreached=true".into(),
            Request::list(&[("slaBreached", "true")]),
        ),
        (
            "first page, asset=<largest asset>&slaBreached=true".into(),
            Request::list(&[("asset", asset.as_str()), ("slaBreached", "true")]),
        ),
    ];
    let offset_page = deep(total_pages(all));
    kinds.push((
        format!("page={offset_page} (OFFSET), default sort"),
        Request::list(&[("page", &offset_page.to_string())]),
    ));
    for (label, q, n) in [
        ("default sort", query(&[]), all),
        (
            "severity=CRITICAL,HIGH&status=OPEN",
            query(&[("severity", "CRITICAL,HIGH"), ("status", "OPEN")]),
            filtered,
        ),
        ("sort=dueAt", query(&[("sort", "dueAt")]), all),
    ] {
        let page = deep(total_pages(n));
        let started = Instant::now();
        let (start, reached) = cursor_at(client, &q, page).await?;
        println!(
            "  walked {reached} pages of {label} by nextCursor in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        kinds.push((
            format!("cursor pages {reached}+ (nextCursor), {label}"),
            Request::Walk { query: q, start },
        ));
    }
    kinds.push((
        "GET /dashboard/kpis".into(),
        Request::Fixed {
            path: "/api/v1/dashboard/kpis".into(),
            query: Vec::new(),
        },
    ));

    println!(
        "\n{} sequential samples per kind (after {WARM_UP} warm-up), then {} clients for {:.2} s:",
        plan.samples,
        plan.concurrency,
        plan.throughput_time.as_secs_f64()
    );
    for (name, request) in &kinds {
        let (hits, misses) = server.caches.stats();
        let times = sequential(client, request, plan.samples).await?;
        let (hits2, misses2) = server.caches.stats();
        let (loaded, rate) =
            concurrent(client, request, plan.concurrency, plan.throughput_time).await?;
        let s = Stats::of(&times);
        let l = Stats::of(&loaded);
        let cache = if name.contains("kpis") {
            format!(
                " [server cache during the sequential run: {} hits, {} misses]",
                hits2 - hits,
                misses2 - misses
            )
        } else {
            String::new()
        };
        println!(
            "  {name}: p50 {} p99 {} max {} | {} clients: {rate:.0} req/s, p50 {} p99 {}{cache}",
            fmt_ms(s.p50),
            fmt_ms(s.p99),
            fmt_ms(s.max),
            plan.concurrency,
            fmt_ms(l.p50),
            fmt_ms(l.p99)
        );
        table.row(
            &format!("HTTP {name}"),
            thousands(times.len() as u64),
            fmt_ms(s.p50),
            fmt_ms(s.p99),
            fmt_ms(s.max),
            format!("{rate:.0} req/s (p99 {})", fmt_ms(l.p99)),
        );
    }

    // The peer, same run, same table: what a Django list view (DefectDojo's) sends for
    // one page, the rows by LIMIT/OFFSET and an exact count(*) for its pager.
    for (label, filter, page) in [
        ("first page, default sort".to_owned(), "", 1),
        (
            "first page, severity=CRITICAL,HIGH&status=OPEN".to_owned(),
            " AND severity IN ('CRITICAL', 'HIGH') AND status = 'OPEN'",
            1,
        ),
        (format!("page={offset_page}, default sort"), "", offset_page),
    ] {
        let rows_sql = format!(
            "SELECT {} FROM finding_view WHERE tenant_id = $1{filter} \
             ORDER BY severity_rank DESC, first_seen DESC, id DESC LIMIT 50 OFFSET $2",
            vulnledger::read_models::findings::COLUMNS
        );
        let count_sql = format!("SELECT count(*) FROM finding_view WHERE tenant_id = $1{filter}");
        let offset = ((page - 1) * 50) as i64;
        let times = timed_samples(plan.count_samples, || async {
            let rows = sqlx::query(&rows_sql)
                .bind(tenant)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let count: i64 = sqlx::query_scalar(&count_sql)
                .bind(tenant)
                .fetch_one(pool)
                .await?;
            if rows.len() < 50 && count >= offset + 50 {
                return Err(sqlx::Error::Protocol(format!(
                    "{} rows on a page of a list of {count}",
                    rows.len()
                )));
            }
            Ok(())
        })
        .await?;
        let s = Stats::of(&times);
        println!(
            "  peer, OFFSET page + count(*) in SQL, {label}: p50 {} p99 {} max {}",
            fmt_ms(s.p50),
            fmt_ms(s.p99),
            fmt_ms(s.max)
        );
        table.row(
            &format!("*peer*: OFFSET page + `count(*)` in SQL (DefectDojo's pattern), {label}"),
            thousands(times.len() as u64),
            fmt_ms(s.p50),
            fmt_ms(s.p99),
            fmt_ms(s.max),
            String::new(),
        );
    }

    // Uncached: what the server pays whenever the projection position (or, for KPIs,
    // the second) has moved since the last identical request.
    let kpis = timed_samples(plan.samples, || async {
        vulnledger::read_models::dashboard::kpis(pool, tenant, None, None, Utc::now())
            .await
            .map(|_| ())
    })
    .await?;
    let s = Stats::of(&kpis);
    println!(
        "  library, uncached: dashboard::kpis: p50 {} p99 {} max {}",
        fmt_ms(s.p50),
        fmt_ms(s.p99),
        fmt_ms(s.max)
    );
    table.row(
        "library `dashboard::kpis` (uncached, no HTTP)",
        thousands(kpis.len() as u64),
        fmt_ms(s.p50),
        fmt_ms(s.p99),
        fmt_ms(s.max),
        String::new(),
    );
    for (label, filter) in [
        (
            "q=openssl",
            FindingFilter {
                text: Some("openssl".into()),
                ..Default::default()
            },
        ),
        (
            "cve=CVE-2021-44228",
            FindingFilter {
                cves: Some(vec!["CVE-2021-44228".into()]),
                ..Default::default()
            },
        ),
    ] {
        let times = timed_samples(plan.count_samples, || async {
            vulnledger::read_models::findings::total(pool, tenant, &filter, Utc::now())
                .await
                .map(|_| ())
        })
        .await?;
        let s = Stats::of(&times);
        println!(
            "  library, uncached: findings::total({label}): p50 {} p99 {} max {}",
            fmt_ms(s.p50),
            fmt_ms(s.p99),
            fmt_ms(s.max)
        );
        table.row(
            &format!("library `findings::total` {label} (the count behind meta.total, uncached)"),
            thousands(times.len() as u64),
            fmt_ms(s.p50),
            fmt_ms(s.p99),
            fmt_ms(s.max),
            String::new(),
        );
    }
    Ok(())
}

async fn timed_samples<F, Fut>(samples: usize, mut call: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), sqlx::Error>>,
{
    for _ in 0..WARM_UP.min(samples) {
        call().await?;
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        call().await?;
        times.push(start.elapsed());
    }
    Ok(times)
}

// ------------------------------------------------------------------ lag --------------

/// A checkpoint as announced on `vulnledger_projections`, with when we heard it.
#[derive(Clone, Copy)]
struct Heard {
    at: Instant,
    txid: i64,
    position: i64,
}

/// What a source tells, each with when it was heard, recorded on a thread of its own
/// (so that its timestamps do not wait for the busy runtime that runs the server and
/// the load).
struct Recorder<T> {
    heard: Arc<Mutex<Vec<T>>>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    /// What it listens to, for errors.
    what: &'static str,
}

impl<T: Send + 'static> Recorder<T> {
    /// Runs `listen` on a current-thread runtime of a thread of its own, until
    /// [`finish`](Self::finish); it sends on `ready` once it hears everything.
    async fn start<F, Fut>(what: &'static str, listen: F) -> anyhow::Result<Self>
    where
        F: FnOnce(Arc<Mutex<Vec<T>>>, tokio::sync::oneshot::Sender<()>, CancellationToken) -> Fut
            + Send
            + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn({
            let (heard, stop) = (heard.clone(), stop.clone());
            move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(listen(heard, ready_tx, stop))
            }
        });
        ready_rx
            .await
            .map_err(|_| anyhow::anyhow!("the {what} thread failed to start"))?;
        Ok(Self {
            heard,
            stop,
            thread: Some(thread),
            what,
        })
    }

    fn finish(mut self) -> anyhow::Result<Vec<T>> {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow::anyhow!("the {} thread panicked", self.what))??;
        }
        Ok(std::mem::take(&mut *self.heard.lock().unwrap()))
    }
}

/// The checkpoints the projection announces on its channel.
async fn listen_to_checkpoints(url: &str) -> anyhow::Result<Recorder<Heard>> {
    let url = url.to_owned();
    Recorder::start("LISTEN", move |heard, ready, stop| async move {
        let mut listener = PgListener::connect(&url).await?;
        listener.listen(checkpoint::CHANNEL).await?;
        let _ = ready.send(());
        loop {
            let n = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                n = listener.recv() => n?,
            };
            let at = Instant::now();
            let Some(notice) =
                checkpoint::Notice::parse(n.payload()).filter(|notice| notice.name == "findings")
            else {
                continue;
            };
            heard.lock().unwrap().push(Heard {
                at,
                txid: notice.at.txid,
                position: notice.at.position,
            });
        }
    })
    .await
}

/// The events the relay publishes, heard on a plain NATS subscription: when each
/// position reached the NATS server, so that the NATS lag splits into the relay's part
/// (store → stream) and the consumer's (stream → read model). Only `tenant`'s: a shared
/// server (`--nats-url`) carries other databases' events too, whose positions mean
/// nothing here.
async fn watch_stream(nats_url: &str, tenant: Uuid) -> anyhow::Result<Recorder<(i64, Instant)>> {
    let url = nats_url.to_owned();
    Recorder::start("NATS watch", move |arrived, ready, stop| async move {
        // Through the product's connect: it passes on a URL's credentials.
        let client = vulnledger::bus::connect(&url, |o| o.name("vulnledger-bench-watch")).await?;
        let mut subscription = client
            .subscribe(format!("{}.{tenant}.>", vulnledger::bus::SUBJECT_PREFIX))
            .await?;
        client.flush().await?;
        let _ = ready.send(());
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                m = futures::StreamExt::next(&mut subscription) => m,
            };
            let Some(message) = message else {
                anyhow::bail!("the NATS subscription ended");
            };
            let at = Instant::now();
            let position = serde_json::from_slice::<Value>(&message.payload)
                .ok()
                .and_then(|v| v.get("position").and_then(Value::as_i64));
            if let Some(position) = position {
                arrived.lock().unwrap().push((position, at));
            }
        }
    })
    .await
}

struct Sent {
    scheduled: Instant,
    sent: Instant,
    acked: Instant,
    position: Option<i64>,
    status: u16,
    /// The answer's body (or the client's error) when it is not a 200.
    error: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn lag(
    plan: &Plan,
    rate: u32,
    label: &str,
    client: &Client,
    url: &str,
    pool: &PgPool,
    caches: &vulnledger::read_models::Caches,
    findings: Vec<(Uuid, i64)>,
    nats: Option<(&str, Uuid)>,
    table: &mut Table,
) -> anyhow::Result<()> {
    let warm = plan.warm_up_commands(rate).min(findings.len() / 2);
    println!(
        "\nprojection lag, {label}: {} commands at {rate}/s, open loop (first {warm} are warm-up); load average {}",
        findings.len(),
        load_average()
    );
    ERRORS.lock().unwrap().clear();
    anyhow::ensure!(findings.len() > warm, "no OPEN findings left to change");
    // What the load and the previous run left dirty is written out first, so that a
    // checkpoint they started does not flush during this run (as `vulnledger-bench
    // http` does before each rate; docs/scaling.md, "writeback stalls").
    if let Err(e) = sqlx::raw_sql("CHECKPOINT").execute(pool).await {
        println!("CHECKPOINT failed ({e}): this run may pay for the previous writes");
    }
    let listener = listen_to_checkpoints(url).await?;
    let stream = match nats {
        Some((nats, tenant)) => Some(watch_stream(nats, tenant).await?),
        None => None,
    };
    let horizon = HorizonWatch::start(pool.clone());
    if plan.sql {
        *CAPTURE.lock().unwrap() = Some(Vec::new());
    }
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + interval * findings.len() as u32;
    // Reads while the commands run, paced (one every 10 ms, KPIs, the default finding
    // list and a text search in turn) so they add load without taking over the two
    // cores. The search's total is a count, cached: what triage does to that cache is
    // part of what a user sees.
    let (kpis_before, _) = caches.stats();
    let readers = tokio::spawn({
        let client = client.clone();
        let measure_from = start + interval * warm as u32;
        async move {
            let mut times: [Vec<Duration>; 3] = Default::default();
            let mut failed = 0usize;
            let mut next = start;
            let mut turn = 0usize;
            let search = [("q".to_owned(), "openssl".to_owned())];
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                let (path, query): (&str, &[(String, String)]) = match turn % 3 {
                    0 => ("/api/v1/dashboard/kpis", &[]),
                    1 => ("/api/v1/findings", &[]),
                    _ => ("/api/v1/findings", &search),
                };
                match client.get(path, query).await {
                    Ok((t, _)) if next >= measure_from => times[turn % 3].push(t),
                    Ok(_) => {}
                    Err(_) => failed += 1,
                }
                turn += 1;
                next = (next + Duration::from_millis(10)).max(Instant::now());
            }
            let [kpis, list, search] = times;
            (kpis, list, search, failed)
        }
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (id, version)) in findings.into_iter().enumerate() {
        let client = client.clone();
        let scheduled = start + interval * i as u32;
        tasks.spawn(async move {
            tokio::time::sleep_until(scheduled.into()).await;
            let sent = Instant::now();
            let response = client
                .http
                .patch(format!("{}/api/v1/findings/{id}/status", client.base))
                .bearer_auth(&client.token)
                .header("If-Match", format!("\"{version}\""))
                .json(&json!({ "status": "CONFIRMED" }))
                .send()
                .await;
            let (status, position, error) = match response {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let position = r
                        .headers()
                        .get("x-event-position")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i64>().ok());
                    let body = r.bytes().await.unwrap_or_default();
                    let error = (status != 200).then(|| {
                        String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
                    });
                    (status, position, error)
                }
                Err(e) => (0, None, Some(e.to_string())),
            };
            (
                i,
                Sent {
                    scheduled,
                    sent,
                    acked: Instant::now(),
                    position,
                    status,
                    error,
                },
            )
        });
    }
    let mut sent: Vec<Option<Sent>> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (i, s) = done?;
        if sent.len() <= i {
            sent.resize_with(i + 1, || None);
        }
        sent[i] = Some(s);
    }
    let sent: Vec<Sent> = sent.into_iter().flatten().collect();
    let (read_kpis, read_list, read_search, read_failed) = readers.await?;
    let (kpis_after, _) = caches.stats();
    let last_ack = sent.iter().map(|s| s.acked).max().unwrap_or(start);

    // Wait for the last event to be announced (or give up after 30 s).
    let positions: Vec<i64> = sent.iter().filter_map(|s| s.position).collect();
    let txids: std::collections::HashMap<i64, i64> = sqlx::query_as(
        "SELECT position, txid::text::bigint FROM UNNEST($1::bigint[]) AS k(position) \
         JOIN events USING (position)",
    )
    .bind(&positions)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let newest = txids.iter().map(|(p, t)| (*t, *p)).max();
    let waited = Instant::now();
    if let Some(newest) = newest {
        loop {
            let covered = listener
                .heard
                .lock()
                .unwrap()
                .last()
                .is_some_and(|h| (h.txid, h.position) >= newest);
            if covered || waited.elapsed() > Duration::from_secs(300) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let heard = listener.finish()?;
    // When each position was first heard on the stream.
    let arrived = match stream {
        Some(stream) => {
            let mut first = std::collections::HashMap::new();
            for (position, at) in stream.finish()? {
                first.entry(position).or_insert(at);
            }
            Some(first)
        }
        None => None,
    };
    let statements = CAPTURE.lock().unwrap().take();
    let held = horizon.finish().await;

    let failed: Vec<&Sent> = sent.iter().filter(|s| s.status != 200).collect();
    if !failed.is_empty() {
        let mut codes: std::collections::BTreeMap<u16, usize> = Default::default();
        for f in &failed {
            *codes.entry(f.status).or_default() += 1;
        }
        println!(
            "  {} commands failed (status: count) {codes:?}",
            failed.len()
        );
        let mut shown = std::collections::HashSet::new();
        for f in &failed {
            let e = f.error.clone().unwrap_or_default();
            let key: String = e.chars().take(60).collect();
            if shown.len() < 3 && shown.insert(key) {
                println!("    e.g. {}: {e}", f.status);
            }
        }
        let errors = std::mem::take(&mut *ERRORS.lock().unwrap());
        let mut distinct: std::collections::BTreeMap<String, usize> = Default::default();
        for e in errors {
            *distinct.entry(e.chars().take(200).collect()).or_default() += 1;
        }
        for (e, n) in distinct.iter().take(5) {
            println!("    server logged {n}×: {e}");
        }
    }
    let measured: Vec<&Sent> = sent.iter().skip(warm).filter(|s| s.status == 200).collect();
    let mut ack_to_visible = Vec::new();
    let mut sent_to_visible = Vec::new();
    let mut command = Vec::new();
    let mut slip = Vec::new();
    let mut ack_to_stream = Vec::new();
    let mut stream_to_visible = Vec::new();
    let mut unseen = 0;
    for s in &measured {
        command.push(s.acked - s.sent);
        slip.push(s.sent.saturating_duration_since(s.scheduled));
        let Some(key) = s.position.and_then(|p| txids.get(&p).map(|t| (*t, p))) else {
            unseen += 1;
            continue;
        };
        // Checkpoints only move forward: the first that covers the event.
        let i = heard.partition_point(|h| (h.txid, h.position) < key);
        match heard.get(i) {
            Some(h) => {
                ack_to_visible.push(h.at.saturating_duration_since(s.acked));
                sent_to_visible.push(h.at.saturating_duration_since(s.sent));
                if let Some(on_stream) = arrived.as_ref().and_then(|a| a.get(&key.1)) {
                    ack_to_stream.push(on_stream.saturating_duration_since(s.acked));
                    stream_to_visible.push(h.at.saturating_duration_since(*on_stream));
                }
            }
            None => unseen += 1,
        }
    }
    let span = measured
        .iter()
        .map(|s| s.sent)
        .max()
        .zip(measured.iter().map(|s| s.sent).min())
        .map_or(0.0, |(a, b)| (a - b).as_secs_f64());
    let achieved = measured.len() as f64 / span.max(1e-9);
    let batches = heard.len();
    let c = Stats::of(&command);
    let l = Stats::of(&ack_to_visible);
    let v = Stats::of(&sent_to_visible);
    let sl = Stats::of(&slip);
    println!(
        "  sent {:.0} commands/s; command round trip p50 {} p99 {} max {}; send slip p99 {}",
        achieved,
        fmt_ms(c.p50),
        fmt_ms(c.p99),
        fmt_ms(c.max),
        fmt_ms(sl.p99)
    );
    println!(
        "  ack → visible: p50 {} p99 {} max {}; sent → visible: p50 {} p99 {} max {}",
        fmt_ms(l.p50),
        fmt_ms(l.p99),
        fmt_ms(l.max),
        fmt_ms(v.p50),
        fmt_ms(v.p99),
        fmt_ms(v.max)
    );
    println!(
        "  {batches} checkpoint notifications (projection batches) heard; last answer {:.1} s after start",
        (last_ack - start).as_secs_f64()
    );
    if arrived.is_some() {
        let (a, b) = (Stats::of(&ack_to_stream), Stats::of(&stream_to_visible));
        println!(
            "  of which ack → on the NATS stream (relay): p50 {} p99 {} max {}; \
             on the stream → visible (consumer): p50 {} p99 {} max {} ({} events heard on the stream)",
            fmt_ms(a.p50),
            fmt_ms(a.p99),
            fmt_ms(a.max),
            fmt_ms(b.p50),
            fmt_ms(b.p99),
            fmt_ms(b.max),
            ack_to_stream.len()
        );
        table.row(
            &format!("lag {label}, {rate}/s: command answer → published on NATS (relay)"),
            thousands(ack_to_stream.len() as u64),
            fmt_ms(a.p50),
            fmt_ms(a.p99),
            fmt_ms(a.max),
            String::new(),
        );
        table.row(
            &format!("lag {label}, {rate}/s: published on NATS → visible (consumer)"),
            thousands(stream_to_visible.len() as u64),
            fmt_ms(b.p50),
            fmt_ms(b.p99),
            fmt_ms(b.max),
            String::new(),
        );
    }
    if unseen > 0 {
        println!("  WARNING: {unseen} acknowledged events were not seen applied within 300 s of the last answer");
    }
    println!(
        "  oldest open transaction of another database during the run: {} \
         (it holds back the ordered reader's horizon for every database)",
        fmt_ms(held)
    );
    if let Some(statements) = statements {
        print_statements(&statements);
    }
    table.row(
        &format!("lag {label}, {rate}/s: command answer → visible in read model"),
        thousands(ack_to_visible.len() as u64),
        fmt_ms(l.p50),
        fmt_ms(l.p99),
        fmt_ms(l.max),
        format!("{achieved:.0} commands/s"),
    );
    table.row(
        &format!("lag {label}, {rate}/s: command sent → visible"),
        thousands(sent_to_visible.len() as u64),
        fmt_ms(v.p50),
        fmt_ms(v.p99),
        fmt_ms(v.max),
        String::new(),
    );
    let (rk, rl, rs) = (
        Stats::of(&read_kpis),
        Stats::of(&read_list),
        Stats::of(&read_search),
    );
    println!(
        "  reads meanwhile (33/s each): GET /dashboard/kpis p50 {} p99 {} max {} \
         ({} answers; server cache hits, KPIs and totals: {}); GET /findings p50 {} p99 {} max {}; \
         GET /findings?q=openssl p50 {} p99 {} max {}; {read_failed} failed",
        fmt_ms(rk.p50),
        fmt_ms(rk.p99),
        fmt_ms(rk.max),
        read_kpis.len(),
        kpis_after - kpis_before,
        fmt_ms(rl.p50),
        fmt_ms(rl.p99),
        fmt_ms(rl.max),
        fmt_ms(rs.p50),
        fmt_ms(rs.p99),
        fmt_ms(rs.max)
    );
    table.row(
        &format!("HTTP GET /dashboard/kpis during the {label} {rate}/s run (33/s)"),
        thousands(read_kpis.len() as u64),
        fmt_ms(rk.p50),
        fmt_ms(rk.p99),
        fmt_ms(rk.max),
        String::new(),
    );
    table.row(
        &format!(
            "HTTP GET /findings (first page, default sort) during the {label} {rate}/s run (33/s)"
        ),
        thousands(read_list.len() as u64),
        fmt_ms(rl.p50),
        fmt_ms(rl.p99),
        fmt_ms(rl.max),
        String::new(),
    );
    table.row(
        &format!("HTTP GET /findings?q=openssl (first page and total) during the {label} {rate}/s run (33/s)"),
        thousands(read_search.len() as u64),
        fmt_ms(rs.p50),
        fmt_ms(rs.p99),
        fmt_ms(rs.max),
        String::new(),
    );
    table.row(
        &format!("`PATCH /findings/{{id}}/status` round trip during the {label} {rate}/s run"),
        thousands(command.len() as u64),
        fmt_ms(c.p50),
        fmt_ms(c.p99),
        fmt_ms(c.max),
        format!("{} failed", failed.len()),
    );
    Ok(())
}

/// Samples, every 50 ms, the age of the oldest transaction with an xid in *other*
/// databases of the server: the ordered reader reads only below the cluster-wide xmin,
/// so such a transaction delays every projection here (api.md's latency, not loss).
struct HorizonWatch {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Duration>,
}

impl HorizonWatch {
    fn start(pool: PgPool) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut worst = Duration::ZERO;
                while !stop.is_cancelled() {
                    let age: Option<f64> = sqlx::query_scalar(
                        "SELECT EXTRACT(EPOCH FROM max(clock_timestamp() - xact_start))::float8 \
                         FROM pg_stat_activity \
                         WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()",
                    )
                    .fetch_one(&pool)
                    .await
                    .ok()
                    .flatten();
                    if let Some(age) = age {
                        worst = worst.max(Duration::from_secs_f64(age.max(0.0)));
                    }
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
                worst
            }
        });
        Self { stop, task }
    }

    async fn finish(self) -> Duration {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

// ------------------------------------------------------------------ SQL timing -------

/// One statement as sqlx's query logger reports it.
struct Statement {
    sql: String,
    elapsed: Duration,
}

static CAPTURE: Mutex<Option<Vec<Statement>>> = Mutex::new(None);
/// What the server logged at ERROR (e.g. why a command answered 500).
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Keeps the server's ERROR events (printed when commands fail) and, with `--sql`,
/// sqlx's per-statement events (`sqlx::query` at DEBUG); nothing else is logged.
fn install_capture(sql: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    let mut filter =
        tracing_subscriber::filter::Targets::new().with_target("vulnledger", tracing::Level::ERROR);
    if sql {
        filter = filter.with_target("sqlx::query", tracing::Level::DEBUG);
    }
    let subscriber = tracing_subscriber::registry().with(tracing_subscriber::Layer::with_filter(
        StatementLayer,
        filter,
    ));
    tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
}

struct StatementLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StatementLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::ERROR {
            let mut visitor = StatementVisitor::default();
            event.record(&mut visitor);
            ERRORS.lock().unwrap().push(visitor.fields.join(" "));
            return;
        }
        if CAPTURE.lock().unwrap().is_none() {
            return;
        }
        let mut visitor = StatementVisitor::default();
        event.record(&mut visitor);
        let sql = if visitor.statement.is_empty() {
            visitor.summary
        } else {
            visitor.statement
        };
        let sql: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let sql: String = sql.chars().take(90).collect();
        if let Some(statements) = CAPTURE.lock().unwrap().as_mut() {
            statements.push(Statement {
                sql,
                elapsed: Duration::from_secs_f64(visitor.elapsed_secs),
            });
        }
    }
}

#[derive(Default)]
struct StatementVisitor {
    summary: String,
    statement: String,
    elapsed_secs: f64,
    /// Every field as `name=value` (for ERROR events).
    fields: Vec<String>,
}

impl tracing::field::Visit for StatementVisitor {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.fields.push(format!("{}={value}", field.name()));
        match field.name() {
            "summary" => self.summary = value.to_owned(),
            "db.statement" => self.statement = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.fields.push(format!("{}={value:?}", field.name()));
        match field.name() {
            "summary" => self.summary = format!("{value:?}").trim_matches('"').to_owned(),
            "db.statement" => {
                self.statement = format!("{value:?}")
                    .trim_matches('"')
                    .replace("\\n", " ")
                    .to_owned()
            }
            _ => {}
        }
    }
}

/// Statements grouped by their first 90 characters, most total time first.
fn print_statements(statements: &[Statement]) {
    let mut groups: std::collections::HashMap<&str, Vec<Duration>> = Default::default();
    for s in statements {
        groups.entry(s.sql.as_str()).or_default().push(s.elapsed);
    }
    let mut groups: Vec<(&str, Vec<Duration>)> = groups.into_iter().collect();
    groups.sort_by_key(|(_, t)| std::cmp::Reverse(t.iter().sum::<Duration>()));
    println!("  SQL during the run (sqlx's timing: sent → last row), by total time:");
    println!("      count   total ms    p50       p99       max       statement");
    for (sql, times) in groups.iter().take(25) {
        let s = Stats::of(times);
        println!(
            "    {:>7} {:>10.1}   {:<9} {:<9} {:<9} {sql}",
            times.len(),
            times.iter().sum::<Duration>().as_secs_f64() * 1000.0,
            fmt_ms(s.p50),
            fmt_ms(s.p99),
            fmt_ms(s.max)
        );
    }
}

// ------------------------------------------------------------------ helpers ----------

#[derive(Default, Clone, Copy)]
struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    /// Nearest-rank percentiles.
    fn of(times: &[Duration]) -> Self {
        if times.is_empty() {
            return Self::default();
        }
        let mut sorted = times.to_vec();
        sorted.sort();
        let rank = |p: f64| {
            sorted[((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
        };
        Self {
            p50: rank(50.0),
            p99: rank(99.0),
            max: *sorted.last().unwrap(),
        }
    }
}

fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Default)]
struct Table {
    rows: Vec<[String; 6]>,
}

impl Table {
    fn row(&mut self, what: &str, n: String, p50: String, p99: String, max: String, rate: String) {
        self.rows.push([what.to_owned(), n, p50, p99, max, rate]);
    }

    /// A Markdown table.
    fn markdown(&self) -> String {
        let header = ["what", "n", "p50", "p99", "max", "rate"].map(str::to_owned);
        let mut widths = [0usize; 6];
        for row in std::iter::once(&header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |row: &[String; 6]| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let mut out = line(&header);
        out.push_str(&format!(
            "|{}|\n",
            widths
                .iter()
                .map(|w| "-".repeat(w + 2))
                .collect::<Vec<_>>()
                .join("|")
        ));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }

    fn print(&self) {
        print!("{}", self.markdown());
    }
}
