//! Report-import benchmark.
//!
//! ```text
//! cargo bench --bench import              # full run: 5 repetitions, 100k-finding report
//! cargo bench --bench import -- --smoke   # quick run: 2 repetitions, 10k-finding report
//! ```
//!
//! Runs against a throwaway database `vulnledger_bench_<uuid>` on TEST_DATABASE_URL
//! (default postgres://postgres@127.0.0.1:5432/postgres), dropped again at the end (also
//! when a step panics). The HTTP server runs in this process, on port 0.
//!
//! 1. `grype/many_vulns.json` (1,509 findings) over HTTP: first import into a fresh target
//!    (all new), then a re-import into a new scan of the same target (all redetected);
//!    each repeated on fresh targets, median and max.
//! 2. `importers::parse` of the same report alone.
//! 3. A generated Grype report of 100k findings over HTTP (first import, re-import, and
//!    a third import with 10% of the findings removed), with the process's peak RSS; then
//!    the same three imports through the library (`importers::parse` and `ingest::ingest`
//!    timed apart). Every SQL statement of each 100k import is timed as sqlx reports it
//!    (a tracing layer on `sqlx::query`), so the output says where the time goes.
//!
//! The server's live feed (WebSocket push) reads every event an import wrote after the
//! import answered; each step waits for it to catch up before the next one starts, and
//! says how long that took when it is more than half a second.
//!
//! Nothing about timing is asserted: a benchmark measures. The counts every import
//! returns are checked, so a broken import cannot produce a fast number. A failed step of
//! figure 3 is printed with its error and the time it took until then, and makes the
//! benchmark exit non-zero after the other steps ran.

mod common;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use chrono::Utc;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use uuid::Uuid;
use vulnledger::app::Application;
use vulnledger::commands::{Actor, CommandContext, CommandService};
use vulnledger::config::Config;
use vulnledger::importers::{self, ParsedReport, ReportFormat};
use vulnledger::store::{EventStore, StoredEvent};
use vulnledger_aggregates::{FindingCounts, Role, Scan, ScanCommand};

use common::{print_machine, Scratch};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/reports/grype/many_vulns.json"
);
const FIXTURE_FINDINGS: u64 = 1509;
const PASSWORD: &str = "correct horse battery staple";
const TENANT: &str = "bench";
/// Generous: a hang shows as a failure with its time, not as a benchmark that never ends.
const HTTP_TIMEOUT: Duration = Duration::from_secs(900);

struct Plan {
    smoke: bool,
    /// Repetitions of each many_vulns import (after one warm-up pair).
    http_repetitions: usize,
    parse_repetitions: usize,
    big_findings: usize,
}

impl Plan {
    fn from_args() -> Self {
        // `cargo bench` passes `--bench`; only `--smoke` means anything here.
        let smoke = std::env::args().skip(1).any(|a| a == "--smoke");
        if smoke {
            Plan {
                smoke,
                http_repetitions: 2,
                parse_repetitions: 5,
                big_findings: 10_000,
            }
        } else {
            Plan {
                smoke,
                http_repetitions: 5,
                parse_repetitions: 20,
                big_findings: 100_000,
            }
        }
    }
}

fn main() -> ExitCode {
    let plan = Plan::from_args();
    install_statement_capture();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run_in_throwaway_database(plan))
}

// ------------------------------------------------------------------ database ---------

async fn run_in_throwaway_database(plan: Plan) -> ExitCode {
    let scratch = match Scratch::open(None, false).await {
        Ok(scratch) => scratch,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // A task, so that a panic (a wrong count) still drops the database.
    let outcome = tokio::spawn(run(plan, scratch.url.clone())).await;
    let outcome = outcome.map(|r| {
        r.map(|failures| {
            if failures == 0 {
                ExitCode::SUCCESS
            } else {
                println!("\n{failures} step(s) FAILED (see above)");
                ExitCode::FAILURE
            }
        })
    });
    scratch.finish(outcome).await
}

// ------------------------------------------------------------------ the run ----------

async fn run(plan: Plan, url: String) -> anyhow::Result<usize> {
    let pool = vulnledger::db::connect(&url, 5).await?;
    vulnledger::db::migrate(&pool).await?;
    print_machine(&pool).await?;

    let mut config = bench_config(&url);
    config.report_max_bytes = 256 * 1024 * 1024;
    config.run_workers = false;
    let app = Application::build(config).await?;
    let address = app.local_addr();
    let live = LiveWatch {
        events: tokio::sync::Mutex::new(app.state().live.subscribe()),
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));

    let tenant = vulnledger::identity::create_tenant(&pool, TENANT, "Benchmark").await?;
    let email = "analyst@bench.test";
    let user = vulnledger::identity::create_user(
        &pool,
        vulnledger::identity::NewUser {
            tenant_slug: TENANT,
            email,
            password: PASSWORD,
            role: Role::Analyst,
        },
    )
    .await?;
    let http = reqwest::Client::builder().timeout(HTTP_TIMEOUT).build()?;
    let token = login(&http, address, email).await?;
    let client = Client {
        http,
        base: format!("http://{address}"),
        token,
    };

    let fixture = Bytes::from(std::fs::read(FIXTURE)?);
    let mut table = Table::default();
    let mut failures = 0;

    figure_many_vulns_http(&plan, &client, &live, &fixture, &mut table).await?;
    figure_parse(&plan, &fixture, &mut table)?;
    failures += figure_big(
        &plan, &client, &live, &pool, tenant.id, user.id, &fixture, &mut table,
    )
    .await?;

    println!(
        "\n== summary ({}) ==",
        if plan.smoke { "smoke run" } else { "full run" }
    );
    table.print();

    shutdown.cancel();
    let _ = server.await;
    pool.close().await;
    Ok(failures)
}

fn bench_config(database_url: &str) -> Config {
    Config {
        database_url: database_url.to_owned(),
        database_max_connections: 10,
        nats_url: None,
        jwt_secret: Some("bench-secret-bench-secret-bench-secret!".to_owned()),
        jwt_expires_in: Duration::from_secs(3600),
        jwt_refresh_expires_in: Duration::from_secs(86_400),
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        rate_limit_auth: 1000,
        rate_limit_tenant: 100_000,
        report_max_bytes: 32 * 1024 * 1024,
        cookie_secure: false,
        run_workers: true,
        risk_expiry_sweep: Duration::from_secs(60),
    }
}

// ------------------------------------------------------------------ HTTP client ------

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// The finding counts an import answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    new: u64,
    redetected: u64,
    reopened: u64,
    resolved: u64,
    total: u64,
}

impl Counts {
    fn from_json(v: &Value) -> Option<Self> {
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        Some(Counts {
            new: n("new")?,
            redetected: n("redetected")?,
            reopened: n("reopened")?,
            resolved: n("resolved")?,
            total: n("total")?,
        })
    }

    fn from_domain(c: &FindingCounts) -> Self {
        Counts {
            new: c.new,
            redetected: c.redetected,
            reopened: c.reopened,
            resolved: c.resolved,
            total: c.total,
        }
    }

    fn all_new(n: u64) -> Self {
        Counts {
            new: n,
            redetected: 0,
            reopened: 0,
            resolved: 0,
            total: n,
        }
    }

    fn all_redetected(n: u64) -> Self {
        Counts {
            new: 0,
            redetected: n,
            reopened: 0,
            resolved: 0,
            total: n,
        }
    }

    fn check(self, expected: Counts) -> Result<Self, String> {
        if self == expected {
            Ok(self)
        } else {
            Err(format!("wrong counts: got {self:?}, expected {expected:?}"))
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "new {} / redetected {} / reopened {} / resolved {} / total {}",
            self.new, self.redetected, self.reopened, self.resolved, self.total
        )
    }
}

/// A step that did not produce a figure: what failed and after how long.
struct Failure {
    elapsed: Duration,
    error: String,
}

async fn login(
    http: &reqwest::Client,
    address: std::net::SocketAddr,
    email: &str,
) -> anyhow::Result<String> {
    let response = http
        .post(format!("http://{address}/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "login answered {}",
        response.status()
    );
    let body: Value = response.json().await?;
    Ok(body["token"].as_str().unwrap_or_default().to_owned())
}

impl Client {
    async fn launch(&self, target: &str) -> Result<Uuid, String> {
        let response = self
            .http
            .post(format!("{}/api/v1/scans", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "target": target, "scanner": "grype", "branch": "main" }))
            .send()
            .await
            .map_err(|e| format!("POST /api/v1/scans: {e}"))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if status != 202 {
            return Err(format!("POST /api/v1/scans answered {status}: {body}"));
        }
        body["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| format!("no scan id in {body}"))
    }

    /// POST the report to a new scan of `target`; times the results upload alone
    /// (request sent → whole answer read).
    async fn import(
        &self,
        target: &str,
        report: &Bytes,
        expected: Counts,
    ) -> Result<(Duration, Counts, Uuid), Failure> {
        let scan = self.launch(target).await.map_err(|error| Failure {
            elapsed: Duration::ZERO,
            error,
        })?;
        // Statements are recorded from here on when the caller asked for them
        // (`start_capture`); the scan's launch is not part of the figure.
        if CAPTURE_NEXT_UPLOAD.swap(false, std::sync::atomic::Ordering::SeqCst) {
            start_capture();
        }
        let start = Instant::now();
        let fail = |error: String| Failure {
            elapsed: start.elapsed(),
            error,
        };
        let response = self
            .http
            .post(format!("{}/api/v1/scans/{scan}/results", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(report.clone())
            .send()
            .await
            .map_err(|e| fail(format!("POST /api/v1/scans/{{id}}/results: {e:?}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| fail(format!("reading the answer: {e:?}")))?;
        let elapsed = start.elapsed();
        if status != 200 {
            let cut: String = text.chars().take(2000).collect();
            return Err(Failure {
                elapsed,
                error: format!("POST /api/v1/scans/{{id}}/results answered {status}: {cut}"),
            });
        }
        let body: Value =
            serde_json::from_str(&text).map_err(|e| fail(format!("answer is not JSON: {e}")))?;
        let counts = Counts::from_json(&body["findings"])
            .ok_or_else(|| fail(format!("no finding counts in {body}")))?
            .check(expected)
            .map_err(|e| Failure { elapsed, error: e })?;
        Ok((elapsed, counts, scan))
    }
}

// ------------------------------------------------------------------ figure 1 ---------

async fn figure_many_vulns_http(
    plan: &Plan,
    client: &Client,
    live: &LiveWatch,
    fixture: &Bytes,
    table: &mut Table,
) -> anyhow::Result<()> {
    println!(
        "\n== [1] grype/many_vulns.json over HTTP ({FIXTURE_FINDINGS} findings, {:.1} MB): \
         1 warm-up pair, then {} fresh targets ==",
        mb(fixture.len()),
        plan.http_repetitions
    );
    let n = FIXTURE_FINDINGS;
    let pair = |target: String| async move {
        let first = client.import(&target, fixture, Counts::all_new(n)).await;
        if let Ok((_, _, scan)) = &first {
            live.wait_and_report(*scan, "many_vulns import").await;
        }
        let again = client
            .import(&target, fixture, Counts::all_redetected(n))
            .await;
        if let Ok((_, _, scan)) = &again {
            live.wait_and_report(*scan, "many_vulns re-import").await;
        }
        (first, again)
    };
    // Warm-up (connections, prepared statements, allocator): not counted.
    let (first, again) = pair("bench/many-vulns-warmup".to_owned()).await;
    unwrap_step("many_vulns warm-up, first import", first);
    unwrap_step("many_vulns warm-up, re-import", again);

    let (mut firsts, mut agains) = (Vec::new(), Vec::new());
    for i in 0..plan.http_repetitions {
        let (first, again) = pair(format!("bench/many-vulns-{i}")).await;
        let (t1, c1, _) = unwrap_step("many_vulns first import", first);
        let (t2, c2, _) = unwrap_step("many_vulns re-import", again);
        println!(
            "  run {}: first {:>7.1} ms ({c1}); re-import {:>7.1} ms ({c2})",
            i + 1,
            ms(t1),
            ms(t2)
        );
        firsts.push(t1);
        agains.push(t2);
    }
    for (label, times) in [
        ("many_vulns HTTP first import (all new)", &firsts),
        ("many_vulns HTTP re-import (all redetected)", &agains),
    ] {
        let (median, max) = (median(times), max(times));
        println!(
            "FIGURE {label}: median {:.1} ms, max {:.1} ms, {:.0} findings/s (n={})",
            ms(median),
            ms(max),
            n as f64 / median.as_secs_f64(),
            times.len()
        );
        table.row(
            label,
            format!("median {:.0} ms, max {:.0} ms", ms(median), ms(max)),
            format!("{:.0} findings/s", n as f64 / median.as_secs_f64()),
        );
    }
    Ok(())
}

fn unwrap_step<T>(what: &str, step: Result<T, Failure>) -> T {
    match step {
        Ok(v) => v,
        Err(f) => panic!("{what} FAILED after {:.1} ms: {}", ms(f.elapsed), f.error),
    }
}

// ------------------------------------------------------------------ figure 2 ---------

fn figure_parse(plan: &Plan, fixture: &Bytes, table: &mut Table) -> anyhow::Result<()> {
    println!(
        "\n== [2] importers::parse of grype/many_vulns.json, {} runs ==",
        plan.parse_repetitions
    );
    let warm = importers::parse(fixture, None)?;
    assert_eq!(
        warm.findings.len() as u64,
        FIXTURE_FINDINGS,
        "many_vulns parses to {FIXTURE_FINDINGS} findings"
    );
    let mut times = Vec::new();
    for _ in 0..plan.parse_repetitions {
        let start = Instant::now();
        let parsed = importers::parse(fixture, None)?;
        times.push(start.elapsed());
        assert_eq!(parsed.findings.len() as u64, FIXTURE_FINDINGS);
        std::hint::black_box(parsed);
    }
    let median = median(&times);
    println!(
        "FIGURE many_vulns parse only: median {:.2} ms, max {:.2} ms, {:.0} findings/s, {:.0} MB/s (n={})",
        ms(median),
        ms(max(&times)),
        FIXTURE_FINDINGS as f64 / median.as_secs_f64(),
        mb(fixture.len()) / median.as_secs_f64(),
        times.len()
    );
    table.row(
        "many_vulns parse only",
        format!("median {:.1} ms", ms(median)),
        format!(
            "{:.0} findings/s",
            FIXTURE_FINDINGS as f64 / median.as_secs_f64()
        ),
    );
    Ok(())
}

// ------------------------------------------------------------------ figure 3 ---------

/// A Grype report of `n` matches with unique (CVE, package) pairs. Each match is a real
/// match of many_vulns (cycled, so the mix of shapes and severities is the fixture's) with
/// its advisory id, package name, purl and link rewritten. `keep` chooses which of the n
/// matches are written (to build the report with 10% removed). Written match by match
/// into one buffer, so generating it does not raise the peak RSS above the report itself.
fn generate_report(fixture: &[u8], n: usize, keep: impl Fn(usize) -> bool) -> Bytes {
    let doc: Value = serde_json::from_slice(fixture).expect("fixture is JSON");
    let templates = doc["matches"].as_array().expect("matches");
    let mut out = Vec::with_capacity(n * 1700 + 64 * 1024);
    out.extend_from_slice(b"{\"matches\":[");
    let mut first = true;
    for i in 0..n {
        if !keep(i) {
            continue;
        }
        let mut m = templates[i % templates.len()].clone();
        // Unique advisory per match; about 40 advisories per package, like a real image.
        let cve = format!("CVE-{}-{}", 2010 + i % 15, 10_000 + i / 15);
        let base = m["artifact"]["name"].as_str().unwrap_or("pkg").to_owned();
        let package = format!("{base}-g{}", i / 40);
        let version = m["artifact"]["version"]
            .as_str()
            .unwrap_or("1.0")
            .to_owned();
        m["vulnerability"]["id"] = json!(cve);
        if let Some(links) = m["vulnerability"]["links"].as_array_mut() {
            if let Some(link) = links.first_mut() {
                *link = json!(format!("https://security-tracker.debian.org/tracker/{cve}"));
            }
        }
        m["artifact"]["name"] = json!(package);
        if m["artifact"].get("purl").is_some() {
            m["artifact"]["purl"] = json!(format!("pkg:deb/debian/{package}@{version}?arch=amd64"));
        }
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut out, &m).expect("serializes");
    }
    out.extend_from_slice(b"]");
    for key in ["source", "distro", "descriptor"] {
        if let Some(v) = doc.get(key) {
            out.extend_from_slice(format!(",\"{key}\":").as_bytes());
            serde_json::to_writer(&mut out, v).expect("serializes");
        }
    }
    out.push(b'}');
    Bytes::from(out)
}

/// Drops every tenth match: 10% of the findings are gone from the third import.
fn kept_in_third(i: usize) -> bool {
    i % 10 != 9
}

#[allow(clippy::too_many_arguments)]
async fn figure_big(
    plan: &Plan,
    client: &Client,
    live: &LiveWatch,
    pool: &PgPool,
    tenant_id: Uuid,
    user_id: Uuid,
    fixture: &Bytes,
    table: &mut Table,
) -> anyhow::Result<usize> {
    let n = plan.big_findings;
    let label = if n % 1000 == 0 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    };
    println!("\n== [3] generated Grype report of {label} findings ==");
    let start = Instant::now();
    let full = generate_report(fixture, n, |_| true);
    let reduced = generate_report(fixture, n, kept_in_third);
    let kept = (0..n).filter(|&i| kept_in_third(i)).count() as u64;
    let removed = n as u64 - kept;
    println!(
        "  generated in {:.1} s: full {:.1} MB ({} findings), third import {:.1} MB ({} findings)",
        start.elapsed().as_secs_f64(),
        mb(full.len()),
        n,
        mb(reduced.len()),
        kept
    );
    println!("FIGURE {label} report size: {:.1} MB", mb(full.len()));
    table.row(
        &format!("{label} report size"),
        format!("{:.1} MB", mb(full.len())),
        String::new(),
    );
    let n = n as u64;
    let mut failures = 0;

    // --- 3a: over HTTP, server in this process.
    let mem = Memory::read();
    println!(
        "  memory before the HTTP imports: VmRSS {:.0} MB, VmHWM {:.0} MB (since start, includes the generated reports)",
        mem.rss_mb, mem.hwm_mb
    );
    let target = "bench/big-http";
    let steps: [(&str, &Bytes, Counts); 3] = [
        ("first import (all new)", &full, Counts::all_new(n)),
        (
            "re-import (all redetected)",
            &full,
            Counts::all_redetected(n),
        ),
        (
            "third import (10% removed → auto-resolved)",
            &reduced,
            Counts {
                new: 0,
                redetected: kept,
                reopened: 0,
                resolved: removed,
                total: kept,
            },
        ),
    ];
    let mut http_ok = true;
    for (what, report, expected) in steps {
        if !http_ok {
            println!("  SKIPPED {label} HTTP {what}: an earlier step failed");
            continue;
        }
        let before = Memory::read();
        let reset = Memory::reset_peak();
        CAPTURE_NEXT_UPLOAD.store(true, std::sync::atomic::Ordering::SeqCst);
        let outcome = client.import(target, report, expected).await;
        let statements = stop_capture();
        let after = Memory::read();
        let peak = if reset {
            format!(
                "peak RSS {:.0} MB during the import (VmRSS before {:.0} MB; VmHWM before {:.0} MB, after {:.0} MB; peak reset via clear_refs)",
                after.hwm_mb, before.rss_mb, before.hwm_mb, after.hwm_mb
            )
        } else {
            format!(
                "VmHWM before {:.0} MB, after {:.0} MB (peak since process start; clear_refs not writable)",
                before.hwm_mb, after.hwm_mb
            )
        };
        match outcome {
            Ok((elapsed, counts, scan)) => {
                println!(
                    "FIGURE {label} HTTP {what}: {:.2} s, {:.0} findings/s, {counts}; {peak}",
                    elapsed.as_secs_f64(),
                    counts.total as f64 / elapsed.as_secs_f64()
                );
                table.row(
                    &format!("{label} HTTP {what}"),
                    format!("{:.2} s", elapsed.as_secs_f64()),
                    format!(
                        "{:.0} findings/s, peak RSS {:.0} MB",
                        counts.total as f64 / elapsed.as_secs_f64(),
                        after.hwm_mb
                    ),
                );
                print_statements(&statements, elapsed, "the rest of the request (upload, parse, fingerprints, decisions, serializing and encoding events)");
                live.wait_and_report(scan, &format!("HTTP {what}")).await;
            }
            Err(f) => {
                http_ok = false;
                failures += 1;
                println!(
                    "FAILED {label} HTTP {what}: after {:.2} s: {}; {peak}",
                    f.elapsed.as_secs_f64(),
                    f.error
                );
                print_statements(&statements, f.elapsed, "the rest of the request");
                table.row(
                    &format!("{label} HTTP {what}"),
                    format!("FAILED after {:.2} s", f.elapsed.as_secs_f64()),
                    String::new(),
                );
            }
        }
    }

    // --- 3b: the same three imports through the library, phases timed apart.
    println!("\n  -- [3b] through the library: importers::parse and ingest::ingest timed apart --");
    let store = EventStore::new(pool.clone());
    let commands = CommandService::new(store.clone());
    let ctx = CommandContext {
        tenant_id,
        actor: Actor::user(user_id, "bench@x"),
        request_id: "bench-import".to_owned(),
    };
    let target = "bench/big-library";
    let steps: [(&str, &Bytes, Counts); 3] = [
        ("first import (all new)", &full, Counts::all_new(n)),
        (
            "re-import (all redetected)",
            &full,
            Counts::all_redetected(n),
        ),
        (
            "third import (10% removed)",
            &reduced,
            Counts {
                new: 0,
                redetected: kept,
                reopened: 0,
                resolved: removed,
                total: kept,
            },
        ),
    ];
    for (what, report, expected) in steps {
        let start = Instant::now();
        let parsed = match tokio::task::block_in_place(|| {
            importers::parse(report, Some(ReportFormat::Grype))
        }) {
            Ok(p) => p,
            Err(e) => {
                failures += 1;
                println!(
                    "FAILED {label} library {what}: parse after {:.2} s: {e}",
                    start.elapsed().as_secs_f64()
                );
                continue;
            }
        };
        let parse_time = start.elapsed();
        match library_ingest(&commands, &store, &ctx, target, &parsed, expected).await {
            Ok((ingest_time, counts, statements, scan)) => {
                println!(
                    "FIGURE {label} library {what}: parse {:.2} s + ingest {:.2} s = {:.2} s, {counts}",
                    parse_time.as_secs_f64(),
                    ingest_time.as_secs_f64(),
                    (parse_time + ingest_time).as_secs_f64()
                );
                print_statements(&statements, ingest_time, INGEST_REST);
                table.row(
                    &format!("{label} library {what}"),
                    format!(
                        "parse {:.2} s + ingest {:.2} s",
                        parse_time.as_secs_f64(),
                        ingest_time.as_secs_f64()
                    ),
                    format!(
                        "{:.0} findings/s",
                        counts.total as f64 / (parse_time + ingest_time).as_secs_f64()
                    ),
                );
                live.wait_and_report(scan, &format!("library {what}")).await;
            }
            Err((f, statements)) => {
                failures += 1;
                println!(
                    "FAILED {label} library {what}: ingest after {:.2} s (parse took {:.2} s): {}",
                    f.elapsed.as_secs_f64(),
                    parse_time.as_secs_f64(),
                    f.error
                );
                print_statements(&statements, f.elapsed, INGEST_REST);
                table.row(
                    &format!("{label} library {what}"),
                    format!(
                        "FAILED after {:.2} s",
                        (parse_time + f.elapsed).as_secs_f64()
                    ),
                    String::new(),
                );
            }
        }
    }
    Ok(failures)
}

type Statements = Vec<Statement>;

async fn library_ingest(
    commands: &CommandService,
    store: &EventStore,
    ctx: &CommandContext,
    target: &str,
    parsed: &ParsedReport,
    expected: Counts,
) -> Result<(Duration, Counts, Statements, Uuid), (Failure, Statements)> {
    let scan_id = Uuid::now_v7();
    commands
        .execute::<Scan>(
            ctx,
            &scan_id.to_string(),
            None,
            ScanCommand::LaunchScan {
                target: target.to_owned(),
                scanner: "grype".to_owned(),
                profile: None,
                branch: Some("main".to_owned()),
                commit: None,
                tags: Vec::new(),
                at: Utc::now(),
            },
            &(),
        )
        .await
        .map_err(|e| {
            (
                Failure {
                    elapsed: Duration::ZERO,
                    error: format!("LaunchScan: {e}"),
                },
                Vec::new(),
            )
        })?;
    start_capture();
    let start = Instant::now();
    let outcome = vulnledger::ingest::ingest(store, ctx, scan_id, parsed, Utc::now()).await;
    let elapsed = start.elapsed();
    let statements = stop_capture();
    match outcome {
        Ok(ingested) => match Counts::from_domain(&ingested.counts).check(expected) {
            Ok(counts) => Ok((elapsed, counts, statements, scan_id)),
            Err(error) => Err((Failure { elapsed, error }, statements)),
        },
        Err(e) => Err((
            Failure {
                elapsed,
                error: format!("{e} ({e:?})"),
            },
            statements,
        )),
    }
}

const INGEST_REST: &str =
    "the rest of ingest (fingerprints, decisions, serializing events, encoding the arguments)";

/// The live feed's reader (`OrderedReader`), on its own connection: not part of ingest.
fn is_live_feed(s: &Statement) -> bool {
    s.summary.starts_with("SELECT position, txid::text::bigint")
}

fn print_statements(statements: &[Statement], total: Duration, rest: &str) {
    let mut sql_total = Duration::ZERO;
    let live: Vec<&Statement> = statements.iter().filter(|s| is_live_feed(s)).collect();
    if !live.is_empty() {
        println!(
            "      ({} polls of the live feed on another connection meanwhile, {:.1} ms, {} rows: not counted below)",
            live.len(),
            ms(live.iter().map(|s| s.elapsed).sum()),
            live.iter().map(|s| s.rows_returned).sum::<u64>()
        );
    }
    for s in statements.iter().filter(|s| !is_live_feed(s)) {
        sql_total += s.elapsed;
        println!(
            "      {:>9.1} ms  {:<46} rows returned {:>6}, affected {:>6}",
            ms(s.elapsed),
            s.summary,
            s.rows_returned,
            s.rows_affected
        );
    }
    println!(
        "      {:>9.1} ms  SQL statements of ingest together (as sqlx times them: sent → last row)",
        ms(sql_total),
    );
    println!(
        "      {:>9.1} ms  {rest}",
        ms(total.saturating_sub(sql_total))
    );
}

// ------------------------------------------------------------------ SQL timing -------

/// One statement as sqlx's query logger reports it.
struct Statement {
    summary: String,
    elapsed: Duration,
    rows_returned: u64,
    rows_affected: u64,
}

static CAPTURE: Mutex<Option<Vec<Statement>>> = Mutex::new(None);
/// Asks `Client::import` to record the statements of its upload.
static CAPTURE_NEXT_UPLOAD: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

fn start_capture() {
    *CAPTURE.lock().unwrap() = Some(Vec::new());
}

fn stop_capture() -> Vec<Statement> {
    CAPTURE.lock().unwrap().take().unwrap_or_default()
}

/// Subscribes to sqlx's per-statement events (`sqlx::query` at DEBUG) and nothing else,
/// so the server's own logs stay quiet. Events are kept only while a capture runs.
fn install_statement_capture() {
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("sqlx::query", tracing::Level::DEBUG);
    let subscriber = tracing_subscriber::registry().with(tracing_subscriber::Layer::with_filter(
        StatementLayer,
        filter,
    ));
    tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
}

struct StatementLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StatementLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut capture = CAPTURE.lock().unwrap();
        let Some(statements) = capture.as_mut() else {
            return;
        };
        let mut visitor = StatementVisitor::default();
        event.record(&mut visitor);
        statements.push(Statement {
            summary: visitor.summary,
            elapsed: Duration::from_secs_f64(visitor.elapsed_secs),
            rows_returned: visitor.rows_returned,
            rows_affected: visitor.rows_affected,
        });
    }
}

#[derive(Default)]
struct StatementVisitor {
    summary: String,
    elapsed_secs: f64,
    rows_returned: u64,
    rows_affected: u64,
}

impl tracing::field::Visit for StatementVisitor {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        match field.name() {
            "rows_returned" => self.rows_returned = value,
            "rows_affected" => self.rows_affected = value,
            _ => {}
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "summary" {
            self.summary = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            self.summary = format!("{value:?}").trim_matches('"').to_owned();
        }
    }
}

// ------------------------------------------------------------------ memory -----------

struct Memory {
    rss_mb: f64,
    hwm_mb: f64,
}

impl Memory {
    fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let mb = |key| status_field(&status, key).unwrap_or(0) as f64 / 1024.0;
        Memory {
            rss_mb: mb("VmRSS"),
            hwm_mb: mb("VmHWM"),
        }
    }

    /// Resets VmHWM to the current RSS (Linux ≥ 4.0), so the next read is the peak of
    /// what ran in between. False where /proc does not allow it.
    fn reset_peak() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }
}

/// `Key:   1234 kB` → 1234.
fn status_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

// ------------------------------------------------------------------ live feed ------

/// The server's live feed tails the event store for WebSocket clients and reads every
/// event an import wrote, after the import answered. Each step waits until the feed has
/// delivered the scan's `ScanCompleted` (the import's last event), so one step's catch-up
/// is not timed as part of the next, and reports how long the feed needed.
struct LiveWatch {
    events: tokio::sync::Mutex<tokio::sync::broadcast::Receiver<Arc<StoredEvent>>>,
}

impl LiveWatch {
    async fn completed(&self, scan: Uuid) -> Result<Duration, String> {
        let start = Instant::now();
        let scan = scan.to_string();
        let mut events = self.events.lock().await;
        let wait = async {
            loop {
                match events.recv().await {
                    Ok(e) if e.aggregate_id == scan && e.event_type == "ScanCompleted" => {
                        return Ok(())
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(e) => return Err(format!("live feed closed: {e}")),
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(300), wait).await {
            Ok(Ok(())) => Ok(start.elapsed()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the live feed did not deliver ScanCompleted within 300 s".into()),
        }
    }

    /// Prints the lag when it is worth mentioning (it is part of what an import costs
    /// the server, though not of its answer time).
    async fn wait_and_report(&self, scan: Uuid, what: &str) {
        match self.completed(scan).await {
            Ok(lag) if lag > Duration::from_millis(500) => println!(
                "  live feed caught up with the {what} {:.1} s after its answer",
                lag.as_secs_f64()
            ),
            Ok(_) => {}
            Err(e) => println!("  WARNING: {e}"),
        }
    }
}

// ------------------------------------------------------------------ helpers ----------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1_000_000.0
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

fn max(times: &[Duration]) -> Duration {
    times.iter().copied().max().unwrap_or_default()
}

#[derive(Default)]
struct Table {
    rows: Vec<(String, String, String)>,
}

impl Table {
    fn row(&mut self, what: &str, time: String, rate: String) {
        self.rows.push((what.to_owned(), time, rate));
    }

    fn print(&self) {
        let widths = self.rows.iter().fold([4, 4, 4], |w, (a, b, c)| {
            [
                w[0].max(a.chars().count()),
                w[1].max(b.chars().count()),
                w[2].max(c.chars().count()),
            ]
        });
        let line = |a: &str, b: &str, c: &str| {
            println!(
                "| {a:<w0$} | {b:<w1$} | {c:<w2$} |",
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
        };
        line("what", "time", "rate");
        println!(
            "|{}|{}|{}|",
            "-".repeat(widths[0] + 2),
            "-".repeat(widths[1] + 2),
            "-".repeat(widths[2] + 2)
        );
        for (a, b, c) in &self.rows {
            line(a, b, c);
        }
    }
}
