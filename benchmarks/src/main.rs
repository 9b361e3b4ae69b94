//! vulnledger-bench: event-store append, vulnledger's path beside its peers, measured in
//! one run on the same PostgreSQL.
//!
//! ```text
//! vulnledger-bench                 # full run: 10 s per store and mode
//! vulnledger-bench --smoke         # seconds: every store and mode, tiny counts
//! vulnledger-bench --seconds 5     # full run, 5 s per store and mode
//! vulnledger-bench --markdown F    # also write the docs section (table, machine) to F
//! vulnledger-bench --only ours --mode 32x100 --no-diagnostics   # one cell, for profiling
//! vulnledger-bench http [--smoke]  # HTTP commands at fixed rates, beside cqrs-es (src/http)
//! vulnledger-bench import [--smoke] # report import over HTTP, beside cqrs-es (src/http/import.rs)
//! vulnledger-bench rebuild [--smoke] # projection rebuild at 10M events, beside cqrs-es (src/rebuild.rs)
//! vulnledger-bench audit [--smoke]   # audit export of 1M events, beside COPY (src/audit.rs)
//! ```
//!
//! Stores: ours (`vulnledger::store::EventStore::append`, as commands append),
//! postgres-es's `PostgresEventRepository`, esrs's `PgStore` and disintegrate's
//! `PgEventStore`. Modes: 1 and 32 concurrent writers, each appending 1 or 100 events per
//! transaction to its own aggregate. Each store gets a fresh database
//! `vulnledger_bench_<uuid>` on TEST_DATABASE_URL (default
//! postgres://postgres@127.0.0.1:5432/postgres), dropped at the end.
//!
//! Every mode counts the rows the store holds before and after and fails unless they
//! grew by exactly the events its writers appended, so a broken path cannot report a
//! figure. Timing is measured, never asserted; a missed target is reported, not failed.

mod audit;
mod diagnostics;
mod fixture;
mod http;
mod load;
mod machine;
mod peers;
mod rebuild;
mod report;
mod scratch;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use tokio::sync::Barrier;

use fixture::Fixture;
use peers::{Peer, Store, Writer};
use scratch::Scratch;

/// Connections each store's pool holds: one per writer and two to spare.
pub const POOL: u32 = 34;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    pub writers: usize,
    pub batch: usize,
}

impl Mode {
    pub const ALL: [Mode; 4] = [
        Mode {
            writers: 1,
            batch: 1,
        },
        Mode {
            writers: 32,
            batch: 1,
        },
        Mode {
            writers: 1,
            batch: 100,
        },
        Mode {
            writers: 32,
            batch: 100,
        },
    ];

    pub fn label(self) -> String {
        format!(
            "{} writer{}, {} event{} per transaction",
            self.writers,
            if self.writers == 1 { "" } else { "s" },
            self.batch,
            if self.batch == 1 { "" } else { "s" }
        )
    }

    /// The issue's target for this mode, in events per second.
    pub fn target(self) -> Option<f64> {
        match (self.writers, self.batch) {
            (32, 1) => Some(10_000.0),
            (_, 100) => Some(90_000.0),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub smoke: bool,
    /// Untimed appends per writer before the clock starts.
    warmup: usize,
    stop: Stop,
    pub markdown: Option<String>,
    /// Stores and modes to run (all unless `--only` / `--mode` narrow them, for profiling).
    peers: Vec<Peer>,
    modes: Vec<Mode>,
    diagnostics: bool,
}

#[derive(Clone, Copy, Debug)]
enum Stop {
    /// Timed appends per writer: (1 writer single, many writers single, 1 writer batched,
    /// many writers batched).
    Count([usize; 4]),
    /// Each writer appends until this much time has passed.
    After(Duration),
}

impl Plan {
    fn from_args() -> anyhow::Result<Self> {
        let mut plan = Plan {
            smoke: false,
            warmup: 3,
            stop: Stop::After(Duration::from_secs(10)),
            markdown: None,
            peers: Peer::ALL.to_vec(),
            modes: Mode::ALL.to_vec(),
            diagnostics: true,
        };
        let mut narrowed = false;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--smoke" => {
                    plan.smoke = true;
                    plan.warmup = 1;
                    plan.stop = Stop::Count([20, 3, 3, 1]);
                }
                "--seconds" => {
                    let s: f64 = args
                        .next()
                        .context("--seconds needs a number")?
                        .parse()
                        .context("--seconds needs a number")?;
                    plan.stop = Stop::After(Duration::from_secs_f64(s));
                }
                "--markdown" => {
                    plan.markdown = Some(args.next().context("--markdown needs a path")?)
                }
                "--only" => {
                    let names = args.next().context("--only needs store names")?;
                    plan.peers = names
                        .split(',')
                        .map(|n| {
                            Peer::ALL
                                .into_iter()
                                .find(|p| p.name() == n)
                                .with_context(|| format!("no store named {n:?}"))
                        })
                        .collect::<anyhow::Result<_>>()?;
                    narrowed = true;
                }
                "--mode" => {
                    let modes = args.next().context("--mode needs WRITERSxBATCH")?;
                    plan.modes = modes
                        .split(',')
                        .map(|m| {
                            Mode::ALL
                                .into_iter()
                                .find(|mode| format!("{}x{}", mode.writers, mode.batch) == m)
                                .with_context(|| {
                                    format!("no mode {m:?} (1x1, 32x1, 1x100, 32x100)")
                                })
                        })
                        .collect::<anyhow::Result<_>>()?;
                    narrowed = true;
                }
                "--no-diagnostics" => {
                    plan.diagnostics = false;
                    narrowed = true;
                }
                "-h" | "--help" => {
                    println!(
                        "usage: vulnledger-bench [--smoke] [--seconds N] [--markdown FILE]\n\
                         \x20      [--only ours,postgres-es,esrs,disintegrate] [--mode 1x1,32x1,1x100,32x100] [--no-diagnostics]\n\
                         Event-store append: ours vs postgres-es, esrs, disintegrate (TEST_DATABASE_URL)."
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?} (try --help)"),
            }
        }
        check_markdown(plan.smoke, &plan.markdown)?;
        if narrowed && plan.markdown.is_some() {
            bail!("--markdown writes the whole table: it cannot be combined with --only, --mode or --no-diagnostics");
        }
        Ok(plan)
    }

    fn timed_appends(&self, mode: Mode) -> Option<usize> {
        match self.stop {
            Stop::Count(n) => Some(match (mode.writers, mode.batch) {
                (1, 1) => n[0],
                (_, 1) => n[1],
                (1, _) => n[2],
                _ => n[3],
            }),
            Stop::After(_) => None,
        }
    }

    pub fn describe(&self) -> String {
        match self.stop {
            Stop::Count(_) => "smoke: a few appends per writer".to_owned(),
            Stop::After(d) => format!(
                "{} untimed appends per writer, then {} s of appends per store and mode",
                self.warmup,
                d.as_secs_f64()
            ),
        }
    }
}

/// One store in one mode.
#[derive(Clone, Debug)]
pub struct Figure {
    pub events: u64,
    pub appends: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// Transactions retried after a refused commit (disintegrate only).
    pub retries: u64,
}

impl Figure {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// What one writer did.
struct Driven {
    /// Events appended, warm-up included (what the store must have gained).
    events: u64,
    /// Latency of each timed append.
    latencies: Vec<Duration>,
    retries: u64,
}

async fn drive(
    mut writer: Box<dyn Writer>,
    mode: Mode,
    plan: Plan,
    barrier: Arc<Barrier>,
) -> anyhow::Result<Driven> {
    let mut events = 0;
    let mut retries = 0;
    let mut warm = Ok(0);
    for _ in 0..plan.warmup {
        warm = writer.append(mode.batch).await;
        match &warm {
            Ok(r) => retries += r,
            Err(_) => break,
        }
        events += mode.batch as u64;
    }
    // Everyone waits at the barrier, also a writer whose warm-up failed, so the others
    // are not left waiting.
    barrier.wait().await;
    warm.context("warm-up append")?;
    let start = Instant::now();
    let mut latencies = Vec::new();
    loop {
        let done = match (plan.stop, plan.timed_appends(mode)) {
            (_, Some(n)) => latencies.len() >= n,
            (Stop::After(d), None) => start.elapsed() >= d,
            (Stop::Count(_), None) => unreachable!(),
        };
        if done {
            break;
        }
        let t = Instant::now();
        retries += writer.append(mode.batch).await?;
        latencies.push(t.elapsed());
        events += mode.batch as u64;
    }
    Ok(Driven {
        events,
        latencies,
        retries,
    })
}

/// Runs `mode` against `store` and checks that the store gained exactly the events
/// appended.
pub async fn measure(store: &Arc<dyn Store>, mode: Mode, plan: &Plan) -> anyhow::Result<Figure> {
    let before = store.stored().await?;
    let barrier = Arc::new(Barrier::new(mode.writers + 1));
    let tasks: Vec<_> = (0..mode.writers)
        .map(|i| tokio::spawn(drive(store.writer(i), mode, plan.clone(), barrier.clone())))
        .collect();
    barrier.wait().await;
    let start = Instant::now();
    let mut appended = 0;
    let mut retries = 0;
    let mut latencies = Vec::new();
    let mut failure = None;
    for task in tasks {
        match task.await.context("writer panicked").and_then(|r| r) {
            Ok(driven) => {
                appended += driven.events;
                retries += driven.retries;
                latencies.extend(driven.latencies);
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    let elapsed = start.elapsed();
    if let Some(e) = failure {
        return Err(e);
    }
    let after = store.stored().await?;
    ensure!(
        after - before == appended as i64,
        "the store gained {} rows but its writers appended {appended} events",
        after - before
    );
    ensure!(!latencies.is_empty(), "no timed append");
    latencies.sort_unstable();
    let at = |q: usize| latencies[(latencies.len() * q / 100).min(latencies.len() - 1)];
    Ok(Figure {
        events: latencies.len() as u64 * mode.batch as u64,
        appends: latencies.len() as u64,
        elapsed,
        p50: at(50),
        p99: at(99),
        retries,
    })
}

/// Every mode of one store, in its own database.
async fn run_peer(
    peer: Peer,
    plan: &Plan,
    fixture: Arc<Fixture>,
) -> Vec<(Mode, Result<Figure, String>)> {
    let scratch = match Scratch::create().await {
        Ok(s) => s,
        Err(e) => {
            let e = format!("{e:#}");
            return plan.modes.iter().map(|m| (*m, Err(e.clone()))).collect();
        }
    };
    let results = run_peer_in(peer, plan, fixture, &scratch).await;
    if let Err(e) = scratch.drop_database().await {
        eprintln!("could not drop the scratch database: {e:#}");
    }
    results
}

async fn run_peer_in(
    peer: Peer,
    plan: &Plan,
    fixture: Arc<Fixture>,
    scratch: &Scratch,
) -> Vec<(Mode, Result<Figure, String>)> {
    let opened = async {
        let pool = scratch.pool(POOL).await?;
        peer.open(pool, fixture).await
    }
    .await;
    let store = match opened {
        Ok(store) => store,
        Err(e) => {
            let e = format!("setup failed: {e:#}");
            eprintln!("{:>13}: {e}", peer.name());
            return plan.modes.iter().map(|m| (*m, Err(e.clone()))).collect();
        }
    };
    let mut results = Vec::new();
    for mode in plan.modes.iter().copied() {
        let result = measure(&store, mode, plan)
            .await
            .map_err(|e| format!("{e:#}"));
        match &result {
            Ok(f) => println!(
                "{:>13} | {:<36} | {:>9.0} events/s | p50 {:>8.2} ms | p99 {:>8.2} ms | {} appends, {} retried",
                peer.name(),
                mode.label(),
                f.per_second(),
                ms(f.p50),
                ms(f.p99),
                f.appends,
                f.retries
            ),
            Err(e) => println!("{:>13} | {:<36} | FAILED: {e}", peer.name(), mode.label()),
        }
        results.push((mode, result));
    }
    results
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(plan: Plan) -> anyhow::Result<bool> {
    let fixture = Arc::new(Fixture::new());
    let machine = machine::Machine::on_scratch().await?;
    println!(
        "vulnledger-bench{}: event-store append; payload {} bytes of JSON, metadata {} bytes",
        if plan.smoke { " --smoke" } else { "" },
        fixture.payload_bytes,
        fixture.metadata_bytes
    );
    print!("{}", machine.markdown());
    println!("{}\n", plan.describe());
    let started = chrono::Utc::now();
    let mut table = Vec::new();
    for peer in plan.peers.iter().copied() {
        table.push((peer, run_peer(peer, &plan, fixture.clone()).await));
    }
    let diagnostics = if plan.diagnostics {
        diagnostics::run(&plan, fixture.clone()).await
    } else {
        Vec::new()
    };
    let report = report::Report {
        plan: &plan,
        machine: &machine,
        fixture: &fixture,
        started,
        table: &table,
        diagnostics: &diagnostics,
    };
    println!("\n{}", report.tables());
    if let Some(path) = &plan.markdown {
        std::fs::write(path, report.markdown()).with_context(|| format!("writing {path}"))?;
        println!("wrote {path}");
    }
    let failed = table
        .iter()
        .flat_map(|(_, r)| r.iter())
        .any(|(_, r)| r.is_err())
        || diagnostics.iter().any(|d| d.result.is_err());
    Ok(!failed)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    match args.peek().map(String::as_str) {
        Some("http") => return http::main(args.skip(1)),
        Some("import") => return http::import::main(args.skip(1)),
        Some("rebuild") => return rebuild::main(args.skip(1)),
        Some("audit") => return audit::main(args.skip(1)),
        // `vulnledger audit export`, in a child process of its own (see audit.rs).
        Some("audit-child") => return audit::audit_child(args.skip(1)),
        // The servers of `http`, each in a child process of its own.
        Some("serve-child") => return http::serve_child(args.skip(1)),
        _ => {}
    }
    run_part("", Plan::from_args(), run)
}

/// Runs one part of the suite on a runtime of its own: exit code 2 when its arguments
/// are wrong, 1 when it failed or some store or server of it did.
pub fn run_part<P, Fut>(part: &str, plan: anyhow::Result<P>, run: impl FnOnce(P) -> Fut) -> ExitCode
where
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let name = format!("vulnledger-bench {part}");
    let name = name.trim_end();
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(plan)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("{name}: some stores, servers or sides FAILED (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the command lines of the parts share: `--smoke`, `--markdown FILE` and
/// `-h`/`--help`; `rest` holds everything else, in order, for the part to read.
pub struct Flags {
    pub smoke: bool,
    pub markdown: Option<String>,
    pub rest: std::vec::IntoIter<String>,
}

pub fn flags(mut args: impl Iterator<Item = String>, usage: &str) -> anyhow::Result<Flags> {
    let (mut smoke, mut markdown, mut rest) = (false, None, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => smoke = true,
            "--markdown" => markdown = Some(args.next().context("--markdown needs a path")?),
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0);
            }
            _ => rest.push(arg),
        }
    }
    check_markdown(smoke, &markdown)?;
    Ok(Flags {
        smoke,
        markdown,
        rest: rest.into_iter(),
    })
}

/// `--markdown` writes a docs section; a smoke run's figures are not worth writing down.
pub fn check_markdown(smoke: bool, markdown: &Option<String>) -> anyhow::Result<()> {
    if smoke && markdown.is_some() {
        bail!("--smoke figures are not worth writing down: --markdown is for full runs");
    }
    Ok(())
}
