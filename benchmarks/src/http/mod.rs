//! HTTP commands at fixed rates, open loop: vulnledger beside plain cqrs-es, same load,
//! same PostgreSQL, same run.
//!
//! ```text
//! vulnledger-bench http                    # full: 500, 1,000, 2,000 and 5,000 commands/s, 10 s each
//! vulnledger-bench http --smoke            # seconds: 100/s for 1 s
//! vulnledger-bench http --rates 1000 --seconds 5
//! vulnledger-bench http --markdown FILE    # also write the docs section to FILE
//! ```
//!
//! Each server runs in a child process of its own (this binary, `serve-child`), so the
//! load generator in this process is measured from outside, as a client would see it:
//! - **vulnledger**: exactly `vulnledger serve` (its CLI entry point, workers on), on a
//!   fresh database loaded with `vulnledger::demo`'s synthetic findings through the
//!   real command path; the load is `PATCH /api/v1/findings/{id}/status` OPEN →
//!   CONFIRMED with a bearer token and If-Match.
//! - **cqrs-es**: axum + `postgres_es::postgres_cqrs` with one inline `GenericQuery` view
//!   ([`cqrs_es_server`]), on a fresh database whose findings were detected through the
//!   same framework; the load is `PATCH /findings/{id}/status` with the same body.
//!
//! Open loop: command *i* is due at start + i / rate, whatever the answers' latency, each
//! on its own finding, so queueing shows in the latency (measured from when the command
//! was due, not from when it happened to be sent). The first second of each rate is
//! warm-up. For vulnledger, each answer's `X-Event-Position` is also followed until the
//! `findings` projection announces a checkpoint that covers it: projection lag. The
//! cqrs-es view is written inside the command, before the answer, so its lag is nil by
//! construction (and a crash between the events' commit and the view's write loses the
//! update for good: the trap that design.md avoids).
//!
//! Every answer's status is counted; failures are reported beside the figures, and a
//! server that answers nothing makes the run fail. Timing is never asserted.

mod checkpoints;
pub mod cqrs_es_server;
pub mod import;
mod report;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use sqlx::{ConnectOptions, PgPool};
use tokio::process::{Child, Command};
use uuid::Uuid;
use vulnledger_aggregates::{FindingCommand, FindingDetails, FindingEvent, Role};

use crate::fixture::Fixture;
use crate::machine::Machine;
use crate::scratch::Scratch;
use checkpoints::Listener;

const TENANT: &str = "bench";
const ADMIN: &str = "admin@bench.example";
const PASSWORD: &str = "correct horse battery staple";
const JWT_SECRET: &str = "bench-secret-bench-secret-bench-secret!";
/// Generous: an overloaded server answers late, and that latency is the figure; the
/// peer imports 100k findings at about 1,300 a second.
const HTTP_TIMEOUT: Duration = Duration::from_secs(600);
/// Requests outstanding at once, at most: like wrk2's connections, so that an overloaded
/// server is not also buried under thousands of new connections (and file descriptors).
const IN_FLIGHT: usize = 256;
/// The target of issue 7: this rate, with this p99.
pub const TARGET_RATE: u32 = 5_000;
pub const TARGET_P99: Duration = Duration::from_millis(25);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Vulnledger,
    /// A diagnostic: `vulnledger serve --no-workers`, the command path alone, with no
    /// projection sharing the cores (its read model does not move).
    VulnledgerNoWorkers,
    CqrsEs,
}

impl Server {
    pub const ALL: [Server; 3] = [
        Server::Vulnledger,
        Server::VulnledgerNoWorkers,
        Server::CqrsEs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Server::Vulnledger => "vulnledger",
            Server::VulnledgerNoWorkers => "vulnledger-no-workers",
            Server::CqrsEs => "cqrs-es",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub smoke: bool,
    pub rates: Vec<u32>,
    /// Measured seconds per rate, after one second of warm-up.
    pub seconds: f64,
    pub servers: Vec<Server>,
    pub markdown: Option<String>,
}

impl Plan {
    fn from_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut plan = Plan {
            smoke: false,
            rates: vec![500, 1_000, 2_000, TARGET_RATE],
            seconds: 10.0,
            servers: Server::ALL.to_vec(),
            markdown: None,
        };
        let mut narrowed = false;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--smoke" => {
                    plan.smoke = true;
                    plan.rates = vec![100];
                    plan.seconds = 1.0;
                }
                "--rates" => {
                    plan.rates = args
                        .next()
                        .context("--rates needs R[,R...]")?
                        .split(',')
                        .map(|r| r.parse::<u32>().ok().filter(|r| (1..=50_000).contains(r)))
                        .collect::<Option<_>>()
                        .context(
                            "--rates takes commands per second, 1 to 50000, comma-separated",
                        )?;
                    narrowed = true;
                }
                "--seconds" => {
                    plan.seconds = args
                        .next()
                        .and_then(|s| s.parse::<f64>().ok())
                        .filter(|s| *s > 0.0 && *s <= 600.0)
                        .context("--seconds takes a number of seconds, up to 600")?;
                }
                "--only" => {
                    let name = args
                        .next()
                        .context("--only needs vulnledger, vulnledger-no-workers or cqrs-es")?;
                    let server = Server::ALL
                        .into_iter()
                        .find(|s| s.name() == name)
                        .with_context(|| format!("no server named {name:?}"))?;
                    plan.servers = vec![server];
                    narrowed = true;
                }
                "--markdown" => {
                    plan.markdown = Some(args.next().context("--markdown needs a path")?)
                }
                "-h" | "--help" => {
                    println!(
                        "usage: vulnledger-bench http [--smoke] [--rates R,R...] [--seconds S]\n\
                         \x20      [--only vulnledger|vulnledger-no-workers|cqrs-es] [--markdown FILE]\n\
                         HTTP commands at fixed rates, open loop: vulnledger vs plain cqrs-es."
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?} (try http --help)"),
            }
        }
        crate::check_markdown(plan.smoke, &plan.markdown)?;
        if narrowed && plan.markdown.is_some() {
            bail!(
                "--markdown writes the whole table: it cannot be combined with --rates or --only"
            );
        }
        Ok(plan)
    }

    fn warm_up(&self, rate: u32) -> usize {
        if self.smoke {
            (rate / 10) as usize
        } else {
            rate as usize
        }
    }

    fn commands(&self, rate: u32) -> usize {
        self.warm_up(rate) + (f64::from(rate) * self.seconds).ceil() as usize
    }

    /// Commands over every rate: each needs a finding of its own.
    fn findings(&self) -> usize {
        self.rates.iter().map(|r| self.commands(*r)).sum()
    }
}

/// One server at one rate.
#[derive(Clone, Debug)]
pub struct Figure {
    pub rate: u32,
    /// Measured commands (warm-up excluded), answered or not.
    pub commands: usize,
    pub failed: usize,
    /// The most common failure, for the table.
    pub failure: Option<String>,
    /// Successful answers per second over the measured span.
    pub answered_per_second: f64,
    /// From when each command was due until its answer was read.
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// How late the generator sent, p99 (its own slip, part of the latency above).
    pub slip_p99: Duration,
    /// vulnledger only: answer read → visible in the read model.
    pub lag: Option<Lag>,
    /// Runs of slow answers, to line up with the server's and PostgreSQL's logs.
    pub stalls: Vec<Stall>,
    /// WAL the whole server wrote per command (warm-up included), from just before the
    /// rate until the server settled: the command, its projection, everything else.
    pub wal_per_command: Option<f64>,
}

/// Commands due close together that all waited far longer than the median: one stall
/// of the server (or of what it waits on), not a queue that built up slowly.
#[derive(Clone, Debug)]
pub struct Stall {
    /// When the first of them was due.
    pub at: chrono::DateTime<chrono::Utc>,
    pub commands: usize,
    pub max: Duration,
}

/// Answers slower than 50 ms and ten times the median, grouped into runs of commands
/// due within 200 ms of each other. Printed, not tabled: a diagnostic.
fn stalls(measured: &[Shot], p50: Duration) -> Vec<Stall> {
    let slow = Duration::from_millis(50).max(p50 * 10);
    let (now, wall) = (Instant::now(), chrono::Utc::now());
    let mut out: Vec<(Instant, Stall)> = Vec::new();
    for shot in measured.iter().filter(|s| s.answered - s.due > slow) {
        let latency = shot.answered - shot.due;
        match out.last_mut() {
            Some((last, stall)) if shot.due - *last <= Duration::from_millis(200) => {
                stall.commands += 1;
                stall.max = stall.max.max(latency);
                *last = shot.due;
            }
            _ => out.push((
                shot.due,
                Stall {
                    at: wall - (now - shot.due),
                    commands: 1,
                    max: latency,
                },
            )),
        }
    }
    out.into_iter().map(|(_, stall)| stall).collect()
}

#[derive(Clone, Debug)]
pub struct Lag {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Acknowledged events not seen applied within the patience.
    pub unseen: usize,
}

impl Figure {
    pub fn meets_target(&self) -> bool {
        self.rate >= TARGET_RATE
            && self.failed == 0
            && self.p99 <= TARGET_P99
            && self.answered_per_second >= f64::from(self.rate) * 0.98
    }
}

/// Each server's figures, rate by rate (an error says why a server has none).
pub type Results = Vec<(Server, Result<Vec<Figure>, String>)>;

pub fn main(args: impl Iterator<Item = String>) -> ExitCode {
    crate::run_part("http", Plan::from_args(args), run)
}

async fn run(plan: Plan) -> anyhow::Result<bool> {
    let machine = Machine::on_scratch().await?;
    println!(
        "vulnledger-bench http{}: commands at {} per second, open loop, {} s each after warm-up",
        if plan.smoke { " --smoke" } else { "" },
        plan.rates
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        plan.seconds
    );
    print!("{}", machine.markdown());
    let started = chrono::Utc::now();
    let mut results: Results = Vec::new();
    for server in plan.servers.iter().copied() {
        println!("\n== {} ==", server.name());
        let outcome = crate::scratch::in_scratch(|url| run_server(server, plan.clone(), url)).await;
        if let Err(e) = &outcome {
            println!("{}: FAILED: {e}", server.name());
        }
        results.push((server, outcome));
    }
    let report = report::Report {
        plan: &plan,
        machine: &machine,
        started,
        results: &results,
    };
    println!("\n{}", report.table());
    if let Some(path) = &plan.markdown {
        std::fs::write(path, report.markdown()).with_context(|| format!("writing {path}"))?;
        println!("wrote {path}");
    }
    Ok(results.iter().all(|(_, r)| r.is_ok()))
}

/// Loads `server`'s database, starts it in a child process, and sends every rate.
async fn run_server(server: Server, plan: Plan, url: String) -> anyhow::Result<Vec<Figure>> {
    let pool = vulnledger::db::connect(&url, 8).await?;
    let needed = plan.findings();
    let loaded = Instant::now();
    let (mut child, target, mut findings) = match server {
        Server::Vulnledger | Server::VulnledgerNoWorkers => {
            let tenant = load_vulnledger(&pool, &url, needed).await?;
            println!("loaded in {:.1} s", loaded.elapsed().as_secs_f64());
            let mut child = ServerProcess::start(Server::Vulnledger, &url).await?;
            caught_up(&pool, Duration::from_secs(600)).await?;
            if server == Server::VulnledgerNoWorkers {
                // The projection has caught up on the load (the findings to change are
                // read from it); from here on no worker runs.
                child.settle().await?;
                child.stop().await;
                child = ServerProcess::start(server, &url).await?;
            }
            let target = Target::vulnledger(child.address).await?;
            (child, target, open_findings(&pool, tenant, needed).await?)
        }
        Server::CqrsEs => {
            let findings = load_cqrs_es(&pool, needed).await?;
            println!("loaded in {:.1} s", loaded.elapsed().as_secs_f64());
            let child = ServerProcess::start(server, &url).await?;
            let target = Target::cqrs_es(child.address)?;
            (child, target, findings)
        }
    };
    let target = Arc::new(target);
    sqlx::raw_sql("VACUUM (ANALYZE)").execute(&pool).await?;
    child.settle().await?;
    let mut figures = Vec::new();
    for rate in plan.rates.iter().copied() {
        let n = plan.commands(rate).min(findings.len());
        anyhow::ensure!(
            n > plan.warm_up(rate),
            "no findings left to change at {rate}/s"
        );
        let batch: Vec<_> = findings.drain(..n).collect();
        checkpoint(&pool).await;
        let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&pool)
            .await?;
        let vulnledger = (server == Server::Vulnledger).then_some((&pool, url.as_str()));
        let mut figure = open_loop(&plan, rate, &target, batch, vulnledger).await?;
        anyhow::ensure!(
            figure.failed < figure.commands,
            "every command at {rate}/s failed, e.g. {}",
            figure.failure.as_deref().unwrap_or("?")
        );
        // After the settle, so that the projection's writes are counted too.
        child.settle().await?;
        let wal: f64 =
            sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8")
                .bind(&lsn)
                .fetch_one(&pool)
                .await?;
        // Per command sent (warm-up included), not per command planned.
        figure.wal_per_command = Some(wal / n as f64);
        print_figure(server, &figure);
        figures.push(figure);
    }
    child.stop().await;
    pool.close().await;
    Ok(figures)
}

fn print_figure(server: Server, f: &Figure) {
    let lag = f.lag.as_ref().map_or(String::new(), |l| {
        format!(
            "; answer → visible p50 {:.1} p99 {:.1} max {:.1} ms{}",
            crate::ms(l.p50),
            crate::ms(l.p99),
            crate::ms(l.max),
            if l.unseen > 0 {
                format!(" ({} not seen)", l.unseen)
            } else {
                String::new()
            }
        )
    });
    println!(
        "{:>10} | {:>5}/s | answered {:>6.0}/s | due → answer p50 {:>7.1} p99 {:>7.1} max {:>7.1} ms | slip p99 {:.1} ms | {} of {} failed{}{lag}",
        server.name(),
        f.rate,
        f.answered_per_second,
        crate::ms(f.p50),
        crate::ms(f.p99),
        crate::ms(f.max),
        crate::ms(f.slip_p99),
        f.failed,
        f.commands,
        f.failure.as_ref().map_or(String::new(), |e| format!(" ({e})")),
    );
    if let Some(wal) = f.wal_per_command {
        println!(
            "{:>10}   WAL written: {:.1} kB per command",
            "",
            wal / 1024.0
        );
    }
    if !f.stalls.is_empty() && f.stalls.len() <= 20 {
        let stalls: Vec<String> = f
            .stalls
            .iter()
            .map(|s| {
                format!(
                    "{} ({} commands, max {:.0} ms)",
                    s.at.format("%H:%M:%S%.3f"),
                    s.commands,
                    crate::ms(s.max)
                )
            })
            .collect();
        println!("{:>10}   stalls: {}", "", stalls.join(", "));
    }
}

// ------------------------------------------------------------------ loading ----------

/// The schema, the benchmark's tenant and its admin (who logs in as [`Target`]).
async fn create_tenant(pool: &PgPool) -> anyhow::Result<Uuid> {
    vulnledger::db::migrate(pool).await?;
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
    Ok(tenant.id)
}

/// Tenant, admin, then synthetic findings through the real command path.
async fn load_vulnledger(pool: &PgPool, url: &str, needed: usize) -> anyhow::Result<Uuid> {
    let tenant = create_tenant(pool).await?;
    // Later scans resolve some and the demo triages some: load half again as many.
    let options = vulnledger::demo::Options {
        tenant: TENANT.to_owned(),
        findings: Some((needed as u64 * 3 / 2).max(100)),
        days: None,
    };
    let demo_pool = vulnledger::db::connect(url, 4).await?;
    let summary =
        vulnledger::demo::run(&demo_pool, &options, vulnledger::demo::ProgressMode::Quiet).await?;
    demo_pool.close().await;
    println!(
        "vulnledger::demo: {} findings in {} scans",
        summary.findings_created, summary.scans
    );
    Ok(tenant)
}

/// `n` OPEN findings with their versions (for If-Match), spread over the table.
async fn open_findings(
    pool: &PgPool,
    tenant: Uuid,
    n: usize,
) -> anyhow::Result<Vec<(String, Option<i64>)>> {
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
            "only {} OPEN findings for {n} commands: the last rate runs shorter",
            rows.len()
        );
    }
    Ok(rows
        .into_iter()
        .map(|(id, v)| (id.to_string(), Some(v)))
        .collect())
}

/// postgres-es's tables and the view's; `needed` findings detected through the
/// framework by 32 concurrent writers.
async fn load_cqrs_es(pool: &PgPool, needed: usize) -> anyhow::Result<Vec<(String, Option<i64>)>> {
    cqrs_es_server::create_schema(pool).await?;
    let cqrs = Arc::new(cqrs_es_server::framework(pool.clone()));
    let details = match Fixture::new().event {
        FindingEvent::FindingDetected(e) => e.details,
        _ => unreachable!("the fixture is a FindingDetected"),
    };
    let ids: Vec<String> = (0..needed).map(|_| Uuid::new_v4().to_string()).collect();
    let ids = Arc::new(ids);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (cqrs, ids, next, details) = (cqrs.clone(), ids.clone(), next.clone(), details.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(id) = ids.get(i) else {
                    return anyhow::Ok(());
                };
                let details = FindingDetails {
                    fingerprint: format!("{}:{i}", details.fingerprint),
                    ..details.clone()
                };
                cqrs.execute(
                    id,
                    FindingCommand::DetectFinding {
                        details,
                        scan_id: Uuid::nil(),
                        at: chrono::Utc::now(),
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("DetectFinding through cqrs-es: {e}"))?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let views: i64 = sqlx::query_scalar("SELECT count(*) FROM finding_status_view")
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(
        views == needed as i64,
        "cqrs-es wrote {views} views for {needed} findings"
    );
    Ok(ids.iter().map(|id| (id.clone(), None)).collect())
}

/// Waits until the `findings` projection covers the store's head.
async fn caught_up(pool: &PgPool, patience: Duration) -> anyhow::Result<()> {
    let head = vulnledger::store::OrderedReader::new(pool.clone())
        .head()
        .await?;
    let start = Instant::now();
    loop {
        let at = vulnledger_projections::checkpoint::load(pool, "findings")
            .await?
            .unwrap_or_default();
        if at.covers(head.txid, head.position) {
            println!(
                "vulnledger's projection caught up in {:.1} s",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < patience,
            "the projection did not catch up within {} s",
            patience.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ------------------------------------------------------------------ the servers ------

/// A server in a child process: this binary's `serve-child`.
struct ServerProcess {
    child: Child,
    address: SocketAddr,
}

impl ServerProcess {
    async fn start(server: Server, url: &str) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = Command::new(std::env::current_exe()?)
            .arg("serve-child")
            .arg(server.name())
            .env("DATABASE_URL", url)
            .env("BIND_ADDR", address.to_string())
            .env("JWT_SECRET", JWT_SECRET)
            // The load alone is up to 300,000 commands a minute on one tenant.
            .env("RATE_LIMIT_TENANT", "100000000")
            .env("RATE_LIMIT_AUTH", "1000")
            // Generated reports of 100k findings are about 170 MB.
            .env("REPORT_MAX_BYTES", "1000000000")
            .env("RUST_LOG", "warn")
            .env_remove("NATS_URL")
            // The child exits when this pipe closes: also when this process is killed
            // and cannot kill it (see serve_child).
            .stdin(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the server's child process")?;
        let mut process = Self { child, address };
        let start = Instant::now();
        loop {
            process.check_alive()?;
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                return Ok(process);
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(120),
                "{} did not listen on {address} within 120 s",
                server.name()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// CPU time the process has used so far, in clock ticks (user + system).
    fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()?)).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }

    /// Waits until the server has been nearly idle (under a tenth of a core) for two
    /// seconds in a row: its workers have caught up with whatever the load left them,
    /// so the next figure does not pay for the previous one.
    async fn settle(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut quiet = 0;
        let mut last = self.cpu_ticks();
        while quiet < 2 && start.elapsed() < Duration::from_secs(300) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.check_alive()?;
            let now = self.cpu_ticks();
            // 100 ticks a second per core on Linux: under 10 is under a tenth of a core.
            quiet = match (last, now) {
                (Some(a), Some(b)) if b.saturating_sub(a) < 10 => quiet + 1,
                (None, _) | (_, None) => 2,
                _ => 0,
            };
            last = now;
        }
        println!("server settled in {:.1} s", start.elapsed().as_secs_f64());
        Ok(())
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the server process exited: {status}");
        }
        Ok(())
    }

    async fn stop(mut self) {
        // SIGTERM: both servers shut down gracefully on it (ours through
        // vulnledger::shutdown, the peer's by tokio's default of exiting).
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// `vulnledger-bench serve-child vulnledger|vulnledger-no-workers|cqrs-es`: runs one
/// server until killed,
/// configured by DATABASE_URL and BIND_ADDR (and, for vulnledger, what `serve` reads).
pub fn serve_child(mut args: impl Iterator<Item = String>) -> ExitCode {
    let which = args.next().unwrap_or_default();
    // The parent holds our stdin open; end of file means it is gone, however it died.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(async {
        match which.as_str() {
            "vulnledger" | "vulnledger-no-workers" => {
                vulnledger::telemetry::init();
                let mut args = vec!["vulnledger", "serve"];
                if which == "vulnledger-no-workers" {
                    args.push("--no-workers");
                }
                let cli = <vulnledger::cli::Cli as clap::Parser>::parse_from(args);
                vulnledger::cli::run(cli).await
            }
            "cqrs-es" => {
                let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
                let bind = std::env::var("BIND_ADDR").context("BIND_ADDR")?;
                // As many connections as vulnledger's default DATABASE_MAX_CONNECTIONS.
                let pool = vulnledger::db::connect(&url, 20).await?;
                let listener = tokio::net::TcpListener::bind(&bind).await?;
                axum::serve(listener, cqrs_es_server::router(pool)).await?;
                Ok(())
            }
            other => Err(anyhow::anyhow!("serve-child: no server named {other:?}")),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve-child {which}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------ the load ---------

/// Where and how to send one status change.
struct Target {
    http: reqwest::Client,
    base: String,
    /// vulnledger: a bearer token, the API prefix and If-Match.
    token: Option<String>,
}

impl Target {
    async fn vulnledger(address: SocketAddr) -> anyhow::Result<Self> {
        let http = client()?;
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
        let body: serde_json::Value = response.json().await?;
        let token = body["token"]
            .as_str()
            .context("login answered no token")?
            .to_owned();
        Ok(Self {
            http,
            base: format!("http://{address}/api/v1"),
            token: Some(token),
        })
    }

    fn cqrs_es(address: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            http: client()?,
            base: format!("http://{address}"),
            token: None,
        })
    }

    fn request(&self, id: &str, version: Option<i64>) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .patch(format!("{}/findings/{id}/status", self.base))
            .json(&json!({ "status": "CONFIRMED" }));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(version) = version {
            request = request.header("If-Match", format!("\"{version}\""));
        }
        request
    }
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(HTTP_TIMEOUT).build()?)
}

struct Shot {
    due: Instant,
    sent: Instant,
    answered: Instant,
    status: u16,
    position: Option<i64>,
    error: Option<String>,
}

/// Writes out what the load and the previous rate left dirty, so that their flush does
/// not land in the next measurement. It did: with the stock 1 GB `max_wal_size`, the
/// load's WAL started a checkpoint that was still writing during the 500/s run, and
/// 100–240 commands at a time waited 150–330 ms with both cores idle, behind the
/// kernel's writeback. Each rate still pays for its own writes.
async fn checkpoint(pool: &PgPool) {
    if let Err(e) = sqlx::raw_sql("CHECKPOINT").execute(pool).await {
        println!("CHECKPOINT failed ({e}): this rate may pay for the previous one's writes");
    }
}

/// Sends one command per finding at `rate`, open loop, and measures them; with
/// `vulnledger`'s pool and URL, also how long until each became visible.
async fn open_loop(
    plan: &Plan,
    rate: u32,
    target: &Arc<Target>,
    findings: Vec<(String, Option<i64>)>,
    vulnledger: Option<(&PgPool, &str)>,
) -> anyhow::Result<Figure> {
    let warm = plan.warm_up(rate);
    let listener = match vulnledger {
        Some((_, url)) => Some(Listener::start(url).await?),
        None => None,
    };
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = Instant::now() + Duration::from_millis(100);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (id, version)) in findings.into_iter().enumerate() {
        let (target, in_flight) = (target.clone(), in_flight.clone());
        let due = start + interval * i as u32;
        tasks.spawn(async move {
            tokio::time::sleep_until(due.into()).await;
            // A command that finds every connection busy waits here; its latency still
            // counts from when it was due.
            let _permit = in_flight.acquire_owned().await;
            let sent = Instant::now();
            let (status, position, error) = match target.request(&id, version).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let position = r
                        .headers()
                        .get("x-event-position")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i64>().ok());
                    let body = r.bytes().await.unwrap_or_default();
                    let error = (!(200..300).contains(&status)).then(|| {
                        format!(
                            "{status} {}",
                            String::from_utf8_lossy(&body[..body.len().min(120)])
                        )
                    });
                    (status, position, error)
                }
                Err(e) => (0, None, Some(format!("no answer: {e}"))),
            };
            let answered = Instant::now();
            (
                i,
                Shot {
                    due,
                    sent,
                    answered,
                    status,
                    position,
                    error,
                },
            )
        });
    }
    let mut shots: Vec<Option<Shot>> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (i, shot) = done?;
        if shots.len() <= i {
            shots.resize_with(i + 1, || None);
        }
        shots[i] = Some(shot);
    }
    let measured: Vec<Shot> = shots.into_iter().flatten().skip(warm).collect();
    let ok: Vec<&Shot> = measured
        .iter()
        .filter(|s| (200..300).contains(&s.status))
        .collect();
    let mut failures: std::collections::BTreeMap<String, usize> = Default::default();
    for s in measured.iter().filter_map(|s| s.error.as_ref()) {
        *failures.entry(s.chars().take(80).collect()).or_default() += 1;
    }
    let failure = failures
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(e, n)| format!("{n}× {e}"));
    let latency = stats(measured.iter().map(|s| s.answered - s.due).collect());
    let slip = stats(
        measured
            .iter()
            .map(|s| s.sent.saturating_duration_since(s.due))
            .collect(),
    );
    let span = ok
        .iter()
        .map(|s| s.answered)
        .max()
        .zip(measured.first().map(|s| s.due))
        .map_or(0.0, |(last, first)| (last - first).as_secs_f64());
    let answered_per_second = ok.len() as f64 / span.max(1e-9);

    let lag = match (vulnledger, listener) {
        (Some((pool, _)), Some(listener)) => {
            let positions: Vec<i64> = ok.iter().filter_map(|s| s.position).collect();
            let txids = checkpoints::txids(pool, &positions).await?;
            let newest = txids.iter().map(|(p, t)| (*t, *p)).max();
            let heard = listener.finish(newest, Duration::from_secs(120)).await?;
            let mut lags = Vec::new();
            let mut unseen = 0;
            for s in &ok {
                let visible = s
                    .position
                    .and_then(|p| txids.get(&p).map(|t| (*t, p)))
                    .and_then(|key| checkpoints::visible_at(&heard, key));
                match visible {
                    Some(at) => lags.push(at.saturating_duration_since(s.answered)),
                    None => unseen += 1,
                }
            }
            let l = stats(lags);
            Some(Lag {
                p50: l.0,
                p99: l.1,
                max: l.2,
                unseen,
            })
        }
        _ => None,
    };
    Ok(Figure {
        rate,
        commands: measured.len(),
        failed: measured.len() - ok.len(),
        failure,
        answered_per_second,
        p50: latency.0,
        p99: latency.1,
        max: latency.2,
        slip_p99: slip.1,
        lag,
        stalls: stalls(&measured, latency.0),
        wal_per_command: None,
    })
}

/// p50, p99, max.
fn stats(mut d: Vec<Duration>) -> (Duration, Duration, Duration) {
    if d.is_empty() {
        return Default::default();
    }
    d.sort_unstable();
    let at = |q: usize| d[(d.len() * q / 100).min(d.len() - 1)];
    (at(50), at(99), d[d.len() - 1])
}

impl Scratch {
    /// The scratch database's URL, for a child process.
    pub fn url(&self) -> String {
        self.options.to_url_lossy().to_string()
    }
}
