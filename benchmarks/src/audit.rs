//! Audit export: `vulnledger audit export` beside PostgreSQL's own `COPY … TO STDOUT`
//! (through `psql`) of the same tenant's log, in the same run.
//!
//! ```text
//! vulnledger-bench audit                  # full: a tenant of about 1,000,000 events
//! vulnledger-bench audit --events N       # another size
//! vulnledger-bench audit --smoke          # seconds: 20,000 events
//! vulnledger-bench audit --database NAME  # in NAME, kept: tenant bench-1 loaded unless it is there
//! vulnledger-bench audit --markdown FILE
//! ```
//!
//! - **The store**: one tenant, `bench-1`, filled through the command path by
//!   `vulnledger::demo` (synthetic findings with their scans and sightings).
//! - **vulnledger**: `vulnledger audit export --tenant bench-1 --format ndjson|csv`,
//!   exactly the command line's code (`cli::run`) in a child process of this binary
//!   (`audit-child`), standard output into a file. It reads the log in keyset chunks in
//!   one snapshot, upcasts every payload to its type's current shape and encodes it.
//!   It runs once over the whole log and once over its first tenth (`--until`), so the
//!   two peaks of memory show whether memory grows with the size of the export.
//! - **Peer**: `psql -c "COPY (SELECT … same columns … ORDER BY position) TO STDOUT
//!   (FORMAT csv, HEADER)"` into a file: the floor, what the database itself does with
//!   no decoding, no upcasting and no encoding of its own.
//! - **Checked**: each output holds exactly one line per event of the tenant (plus the
//!   CSV header), counted in the store; a child that fails fails the part. Events/s is
//!   events / wall time of the child, from its start to its exit; peak memory is its
//!   VmHWM, read every 10 ms while it runs. Nothing about timing is asserted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::machine::Machine;
use crate::report::thousands;
use crate::scratch::in_named_or_scratch;

#[derive(Clone, Debug)]
struct Plan {
    smoke: bool,
    events: u64,
    /// `--database NAME`: work in NAME (on TEST_DATABASE_URL's server), which must exist
    /// and is never dropped; tenant `bench-1` is loaded into it unless it is there.
    database: Option<String>,
    markdown: Option<String>,
}

impl Plan {
    fn from_args(args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut flags = crate::flags(
            args,
            "usage: vulnledger-bench audit [--smoke] [--events N] [--database NAME] [--markdown FILE]\n\
             Audit export: vulnledger audit export vs PostgreSQL COPY through psql.",
        )?;
        let mut events = if flags.smoke { 20_000 } else { 1_000_000 };
        let mut database = None;
        while let Some(arg) = flags.rest.next() {
            match arg.as_str() {
                "--events" => {
                    events = flags
                        .rest
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .filter(|n| (1_000..=5_000_000).contains(n))
                        .context("--events takes a number from 1,000 to 5,000,000 (one tenant)")?;
                }
                "--database" => {
                    database = Some(flags.rest.next().context("--database needs a name")?)
                }
                other => bail!("unknown argument {other:?} (try audit --help)"),
            }
        }
        Ok(Plan {
            smoke: flags.smoke,
            events,
            database,
            markdown: flags.markdown,
        })
    }
}

const TENANT: &str = "bench-1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Ndjson,
    Csv,
    Copy,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Ndjson => "vulnledger `audit export --format ndjson`",
            Side::Csv => "vulnledger `audit export --format csv`",
            Side::Copy => "PostgreSQL `COPY … TO STDOUT (FORMAT csv)` via psql",
        }
    }
}

/// One export: what it wrote and what it cost.
struct Run {
    side: Side,
    /// `Some` for the export of the first tenth only.
    until: Option<String>,
    events: u64,
    bytes: u64,
    elapsed: Duration,
    peak_rss_mb: f64,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

pub fn main(args: impl Iterator<Item = String>) -> ExitCode {
    crate::run_part("audit", Plan::from_args(args), run)
}

async fn run(plan: Plan) -> anyhow::Result<bool> {
    let machine = Machine::on_scratch().await?;
    println!(
        "vulnledger-bench audit{}: export of a tenant of {} events, vulnledger beside COPY",
        if plan.smoke { " --smoke" } else { "" },
        thousands(plan.events as f64)
    );
    print!("{}", machine.markdown());
    let started = Utc::now();
    let events = plan.events;
    let outcome =
        in_named_or_scratch(plan.database.as_deref(), move |url| measure(events, url)).await;
    let (runs, load) = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            println!("audit export: FAILED: {e}");
            return Ok(false);
        }
    };
    let table = table(&runs, load);
    println!("\n{table}");
    if let Some(path) = &plan.markdown {
        std::fs::write(path, markdown(&machine, started, &table))
            .with_context(|| format!("writing {path}"))?;
        println!("wrote {path}");
    }
    Ok(true)
}

/// Loads the tenant unless the store already has it, then runs every export and checks
/// its output.
async fn measure(events: u64, url: String) -> anyhow::Result<(Vec<Run>, Option<Duration>)> {
    let pool = vulnledger::db::connect(&url, 4).await?;
    vulnledger::db::migrate(&pool).await?;
    let loaded = vulnledger::identity::find_tenant_by_slug(&pool, TENANT)
        .await
        .is_ok();
    let load = if loaded {
        println!("tenant {TENANT} is already loaded: exporting it as it is");
        None
    } else {
        let started = Instant::now();
        let findings = (events as f64 / crate::load::EVENTS_PER_FINDING).ceil() as u64;
        println!(
            "loading {} findings into tenant {TENANT}",
            thousands(findings as f64)
        );
        crate::load::tenant(&pool, &url, TENANT, findings).await?;
        Some(started.elapsed())
    };
    sqlx::raw_sql("VACUUM (ANALYZE) events")
        .execute(&pool)
        .await?;
    let tenant = vulnledger::identity::find_tenant_by_slug(&pool, TENANT)
        .await
        .with_context(|| format!("no tenant {TENANT} in the store"))?
        .id;
    let total = tenant_events(&pool, tenant, None).await?;
    let (tenth, tenth_events) = first_tenth(&pool, tenant, total).await?;
    println!(
        "tenant {TENANT}: {} events; its first tenth ends at {tenth} ({} events)",
        thousands(total as f64),
        thousands(tenth_events as f64)
    );

    let dir = std::env::temp_dir().join(format!("vulnledger-bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let plan = [
        (Side::Ndjson, None),
        (Side::Csv, None),
        (Side::Copy, None),
        (Side::Ndjson, Some(tenth.clone())),
    ];
    let mut runs = Vec::new();
    for (side, until) in plan {
        let expected = if until.is_some() { tenth_events } else { total };
        let run = export(side, until, &url, tenant, &dir, expected).await;
        let run = match run {
            Ok(run) => run,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.context(side.label()));
            }
        };
        println!(
            "{}{}: {} events, {:.0} MB in {:.2} s: {}/s; peak RSS {:.0} MB",
            side.label(),
            run.until
                .as_ref()
                .map_or(String::new(), |u| format!(" --until {u}")),
            thousands(run.events as f64),
            run.bytes as f64 / 1e6,
            run.elapsed.as_secs_f64(),
            thousands(run.per_second()),
            run.peak_rss_mb
        );
        runs.push(run);
    }
    let _ = std::fs::remove_dir_all(&dir);
    pool.close().await;
    Ok((runs, load))
}

async fn tenant_events(
    pool: &PgPool,
    tenant: uuid::Uuid,
    before: Option<DateTime<Utc>>,
) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE tenant_id = $1 \
         AND ($2::timestamptz IS NULL OR recorded_at < $2)",
    )
    .bind(tenant)
    .bind(before)
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

/// An `--until` value that ends the first tenth of the log, and how many events that
/// holds. A full RFC 3339 time names an instant, and `until` takes in that instant.
async fn first_tenth(
    pool: &PgPool,
    tenant: uuid::Uuid,
    total: u64,
) -> anyhow::Result<(String, u64)> {
    let at: DateTime<Utc> = sqlx::query_scalar(
        "SELECT recorded_at FROM events WHERE tenant_id = $1 ORDER BY position OFFSET $2 LIMIT 1",
    )
    .bind(tenant)
    .bind((total / 10) as i64)
    .fetch_one(pool)
    .await?;
    let events = tenant_events(pool, tenant, Some(at + chrono::Duration::microseconds(1))).await?;
    Ok((at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), events))
}

/// The columns of an audit row, as the store holds them.
const COPY_SELECT: &str = "SELECT position, recorded_at, metadata->>'actor_id', \
     NULLIF(metadata->>'actor_email', ''), NULLIF(metadata->>'request_id', ''), \
     aggregate_type, aggregate_id, sequence, event_type, payload FROM events";

async fn export(
    side: Side,
    until: Option<String>,
    url: &str,
    tenant: uuid::Uuid,
    dir: &Path,
    expected: u64,
) -> anyhow::Result<Run> {
    let output = dir.join(match side {
        Side::Ndjson => "export.ndjson",
        Side::Csv | Side::Copy => "export.csv",
    });
    let mut command = match side {
        Side::Ndjson | Side::Csv => {
            let mut c = Command::new(std::env::current_exe()?);
            c.args(["audit-child", "--tenant", TENANT, "--format"])
                .arg(if side == Side::Ndjson {
                    "ndjson"
                } else {
                    "csv"
                })
                .env("DATABASE_URL", url);
            if let Some(until) = &until {
                c.args(["--until", until]);
            }
            c
        }
        Side::Copy => {
            let mut c = Command::new("psql");
            c.args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &libpq_url(url),
                "-c",
            ])
            .arg(format!(
                "COPY ({COPY_SELECT} WHERE tenant_id = '{tenant}' ORDER BY position) \
                 TO STDOUT (FORMAT csv, HEADER)"
            ));
            c
        }
    };
    let file =
        std::fs::File::create(&output).with_context(|| format!("creating {}", output.display()))?;
    command.stdout(file).stdin(Stdio::null());
    let (elapsed, peak_rss_mb) = tokio::task::spawn_blocking(move || measured(command)).await??;
    let (lines, bytes) = count_lines(output.clone()).await?;
    let _ = std::fs::remove_file(&output);
    let header = u64::from(side != Side::Ndjson);
    anyhow::ensure!(
        lines == expected + header,
        "wrote {lines} lines for {expected} events{}",
        if header == 1 { " and a header" } else { "" }
    );
    Ok(Run {
        side,
        until,
        events: expected,
        bytes,
        elapsed,
        peak_rss_mb,
    })
}

/// `url` as libpq takes it: sqlx's own query parameters (its statement cache and the
/// like) make psql refuse the URL, so only `sslmode` is kept.
fn libpq_url(url: &str) -> String {
    match url.split_once('?') {
        None => url.to_owned(),
        Some((base, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| p.starts_with("sslmode="))
                .collect();
            if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
    }
}

/// Runs `command` to its end: its wall time and its peak resident set, in MB.
///
/// The peak is the child's VmHWM, read every 10 ms while it runs (it only grows). Not
/// `wait4`'s `ru_maxrss`: the child is spawned with `CLONE_VM`, and its exec records
/// this process's own peak in it.
fn measured(mut command: Command) -> anyhow::Result<(Duration, f64)> {
    let start = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_mb = 0f64;
    let status = loop {
        if let Some(mb) = crate::machine::peak_rss_mb(&status_file) {
            peak_mb = peak_mb.max(mb);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    if !status.success() {
        bail!("{:?} failed: {status}", command.get_program());
    }
    Ok((elapsed, peak_mb))
}

async fn count_lines(path: PathBuf) -> anyhow::Result<(u64, u64)> {
    tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
        let (mut lines, mut bytes) = (0u64, 0u64);
        loop {
            let buffer = reader.fill_buf()?;
            if buffer.is_empty() {
                break;
            }
            lines += buffer.iter().filter(|&&b| b == b'\n').count() as u64;
            bytes += buffer.len() as u64;
            let n = buffer.len();
            reader.consume(n);
        }
        Ok((lines, bytes))
    })
    .await?
}

/// `vulnledger audit export ARGS`, through the command line's own code, with its
/// output on this process's standard output.
pub fn audit_child(args: impl Iterator<Item = String>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let argv: Vec<String> = ["vulnledger", "audit", "export"]
        .into_iter()
        .map(str::to_owned)
        .chain(args)
        .collect();
    let cli = <vulnledger::cli::Cli as clap::Parser>::parse_from(argv);
    match runtime.block_on(vulnledger::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vulnledger audit export: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn table(runs: &[Run], load: Option<Duration>) -> String {
    let mut out = String::from(
        "| export | events | output | wall time | events/s | MB/s | peak RSS |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for run in runs {
        let secs = run.elapsed.as_secs_f64();
        out.push_str(&format!(
            "| {}{} | {} | {:.0} MB | {:.2} s | **{}** | {:.0} | {:.0} MB |\n",
            run.side.label(),
            if run.until.is_some() {
                ", first tenth (`--until`)"
            } else {
                ""
            },
            thousands(run.events as f64),
            run.bytes as f64 / 1e6,
            secs,
            thousands(run.per_second()),
            run.bytes as f64 / 1e6 / secs,
            run.peak_rss_mb
        ));
    }
    let full = runs
        .iter()
        .find(|r| r.side == Side::Ndjson && r.until.is_none());
    let tenth = runs
        .iter()
        .find(|r| r.side == Side::Ndjson && r.until.is_some());
    let copy = runs.iter().find(|r| r.side == Side::Copy);
    if let (Some(full), Some(tenth)) = (full, tenth) {
        out.push_str(&format!(
            "\nMemory against size: the whole log ({} events) peaked at {:.0} MB, its first \
             tenth ({} events) at {:.0} MB.\n",
            thousands(full.events as f64),
            full.peak_rss_mb,
            thousands(tenth.events as f64),
            tenth.peak_rss_mb
        ));
    }
    if let (Some(full), Some(copy)) = (full, copy) {
        out.push_str(&format!(
            "NDJSON export against COPY: {:.0}% of its events/s.\n",
            100.0 * full.per_second() / copy.per_second()
        ));
    }
    if let Some(load) = load {
        out.push_str(&format!(
            "Loading the tenant through the command path (`vulnledger::demo`, untimed for the figures) took {:.0} s.\n",
            load.as_secs_f64()
        ));
    }
    out
}

fn markdown(machine: &Machine, started: DateTime<Utc>, table: &str) -> String {
    format!(
        "<!-- bench:audit-export -->\n\
         ## Audit export: vulnledger beside PostgreSQL's COPY\n\n\
         Measured {} by `scripts/bench.sh` (`vulnledger-bench audit`), which rewrites \
         everything between the `bench:audit-export` markers.\n\n\
         ### Machine\n\n{}\n\
         ### What is measured\n\n\
         - **vulnledger**: `vulnledger audit export --tenant bench-1 --format ndjson|csv`, \
         the command line's own code in a child process, standard output into a file: keyset \
         chunks in one snapshot, every payload upcast and encoded. Once over the whole log, \
         once over its first tenth (`--until`), to compare peak memory at two sizes.\n\
         - **Peer**: `psql -c \"COPY (SELECT … ORDER BY position) TO STDOUT (FORMAT csv, \
         HEADER)\"` into a file, the same columns of the same rows: what the database does \
         with no decoding or encoding of ours. There is no peer product to run here: \
         DefectDojo and Dependency-Track have no export of an event log.\n\
         - Each output must hold one line per event of the tenant (plus the CSV header). \
         Events/s is events over the child's wall time; peak RSS is the child's VmHWM, \
         read every 10 ms while it runs.\n\n\
         ### Figures\n\n{table}\n<!-- /bench:audit-export -->\n",
        started.format("%Y-%m-%d %H:%M UTC"),
        machine.markdown(),
    )
}
