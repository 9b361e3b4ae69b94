//! Report import over HTTP: vulnledger beside cqrs-es, same reports, same run.
//!
//! ```text
//! vulnledger-bench import            # full: many_vulns.json 3 times, a generated 100k-finding report once
//! vulnledger-bench import --smoke    # seconds: many_vulns.json once, a generated 2,000-finding report
//! vulnledger-bench import --markdown FILE
//! ```
//!
//! Both servers run in child processes as for `http` (see its module). vulnledger: a
//! scan is launched (`POST /api/v1/scans`), then the report is uploaded to it (`POST
//! /api/v1/scans/{id}/results`), which is what is timed; every finding must come back as
//! new. cqrs-es: `POST /imports?target=T` parses with the same importer and sends one
//! `DetectFinding` per finding through the framework, 32 at a time (see
//! [`super::cqrs_es_server`]). Each import goes to a fresh target, so every finding is
//! new on both sides. The stored rows are counted afterwards on both sides, so an
//! import that answers without storing cannot report a figure.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::{caught_up, Server, ServerProcess, Target};
use crate::machine::Machine;
use crate::ms;
use crate::report::thousands;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/reports/grype/many_vulns.json"
);
const FIXTURE_FINDINGS: usize = 1509;
/// Quoted by issue 7 and the README for DefectDojo 3.2 on this kind of machine (not
/// measured by this run).
const DEFECTDOJO_MANY_VULNS: Duration = Duration::from_millis(7_300);

#[derive(Clone, Debug)]
struct Plan {
    smoke: bool,
    repetitions: usize,
    generated: usize,
    markdown: Option<String>,
}

impl Plan {
    fn from_args(args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut flags = crate::flags(
            args,
            "usage: vulnledger-bench import [--smoke] [--markdown FILE]\n\
             Report import over HTTP: vulnledger vs plain cqrs-es.",
        )?;
        if let Some(other) = flags.rest.next() {
            bail!("unknown argument {other:?} (try import --help)");
        }
        let (repetitions, generated) = if flags.smoke {
            (1, 2_000)
        } else {
            (3, 100_000)
        };
        Ok(Plan {
            smoke: flags.smoke,
            repetitions,
            generated,
            markdown: flags.markdown,
        })
    }
}

/// One report on one server.
#[derive(Clone, Debug)]
struct Figure {
    report: String,
    findings: usize,
    times: Vec<Duration>,
}

impl Figure {
    fn median(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort_unstable();
        t[t.len() / 2]
    }

    fn per_second(&self) -> f64 {
        self.findings as f64 / self.median().as_secs_f64()
    }
}

type Results = Vec<(Server, Result<Vec<Figure>, String>)>;

pub fn main(args: impl Iterator<Item = String>) -> ExitCode {
    crate::run_part("import", Plan::from_args(args), run)
}

async fn run(plan: Plan) -> anyhow::Result<bool> {
    let machine = Machine::on_scratch().await?;
    let fixture =
        Bytes::from(std::fs::read(FIXTURE).with_context(|| format!("reading {FIXTURE}"))?);
    let generated = generate_report(&fixture, plan.generated);
    println!(
        "vulnledger-bench import{}: grype/many_vulns.json ({} findings) {} time(s), a generated \
         Grype report of {} findings ({:.0} MB) once",
        if plan.smoke { " --smoke" } else { "" },
        FIXTURE_FINDINGS,
        plan.repetitions,
        thousands(plan.generated as f64),
        generated.len() as f64 / 1e6
    );
    print!("{}", machine.markdown());
    let reports = Arc::new(vec![
        (
            "grype/many_vulns.json".to_owned(),
            fixture,
            FIXTURE_FINDINGS,
            plan.repetitions,
        ),
        (
            format!(
                "generated Grype report, {} findings",
                thousands(plan.generated as f64)
            ),
            generated,
            plan.generated,
            1,
        ),
    ]);
    let started = chrono::Utc::now();
    let mut results: Results = Vec::new();
    for server in [Server::Vulnledger, Server::CqrsEs] {
        println!("\n== {} ==", server.name());
        let outcome =
            crate::scratch::in_scratch(|url| run_server(server, url, reports.clone())).await;
        if let Err(e) = &outcome {
            println!("{}: FAILED: {e}", server.name());
        }
        results.push((server, outcome));
    }
    let table = table(&results);
    println!("\n{table}");
    if let Some(path) = &plan.markdown {
        std::fs::write(path, markdown(&machine, started, &table))
            .with_context(|| format!("writing {path}"))?;
        println!("wrote {path}");
    }
    Ok(results.iter().all(|(_, r)| r.is_ok()))
}

type Reports = Arc<Vec<(String, Bytes, usize, usize)>>;

async fn run_server(server: Server, url: String, reports: Reports) -> anyhow::Result<Vec<Figure>> {
    let pool = vulnledger::db::connect(&url, 4).await?;
    let tenant = match server {
        Server::CqrsEs => {
            super::cqrs_es_server::create_schema(&pool).await?;
            None
        }
        _ => Some(super::create_tenant(&pool).await?),
    };
    let mut child = ServerProcess::start(server, &url).await?;
    let target = match server {
        Server::CqrsEs => Target::cqrs_es(child.address)?,
        _ => Target::vulnledger(child.address).await?,
    };
    let mut figures = Vec::new();
    let mut imported = 0usize;
    for (label, report, findings, repetitions) in reports.iter() {
        let mut times = Vec::new();
        for _ in 0..*repetitions {
            let asset = format!("registry.bench.example/app-{}:1.0", Uuid::new_v4().simple());
            let time = match server {
                Server::CqrsEs => import_cqrs_es(&target, &asset, report, *findings).await?,
                _ => import_vulnledger(&target, &asset, report, *findings).await?,
            };
            imported += findings;
            println!(
                "{:>10} | {label}: {:.0} ms, {}/s",
                server.name(),
                ms(time),
                thousands(*findings as f64 / time.as_secs_f64())
            );
            times.push(time);
            // What the import left to the projection is not part of the next figure.
            if server == Server::Vulnledger {
                caught_up(&pool, Duration::from_secs(600)).await?;
            }
            child.settle().await?;
        }
        figures.push(Figure {
            report: label.clone(),
            findings: *findings,
            times,
        });
    }
    let stored = stored(&pool, tenant).await?;
    anyhow::ensure!(
        stored == imported as i64,
        "{} stores {stored} findings after importing {imported}",
        server.name()
    );
    child.stop().await;
    pool.close().await;
    Ok(figures)
}

/// Findings the server keeps: vulnledger's finding index, or the peer's views.
async fn stored(pool: &PgPool, tenant: Option<Uuid>) -> anyhow::Result<i64> {
    Ok(match tenant {
        Some(tenant) => {
            sqlx::query_scalar("SELECT count(*) FROM finding_index WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_one(pool)
                .await?
        }
        None => {
            sqlx::query_scalar("SELECT count(*) FROM finding_status_view")
                .fetch_one(pool)
                .await?
        }
    })
}

async fn import_vulnledger(
    target: &Target,
    asset: &str,
    report: &Bytes,
    findings: usize,
) -> anyhow::Result<Duration> {
    let token = target.token.as_deref().unwrap_or_default();
    let launched = target
        .http
        .post(format!("{}/scans", target.base))
        .bearer_auth(token)
        .json(&json!({ "target": asset, "scanner": "grype", "branch": "main" }))
        .send()
        .await?;
    let status = launched.status();
    let body: Value = launched.json().await?;
    anyhow::ensure!(status == 202, "POST /scans answered {status}: {body}");
    let scan = body["id"].as_str().context("no scan id")?;
    let start = Instant::now();
    let response = target
        .http
        .post(format!("{}/scans/{scan}/results", target.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(report.clone())
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    let elapsed = start.elapsed();
    anyhow::ensure!(
        status == 200,
        "POST /scans/{{id}}/results answered {status}: {}",
        text.chars().take(500).collect::<String>()
    );
    let body: Value = serde_json::from_str(&text)?;
    anyhow::ensure!(
        body["findings"]["new"].as_u64() == Some(findings as u64),
        "expected {findings} new findings, the answer says {}",
        body["findings"]
    );
    Ok(elapsed)
}

async fn import_cqrs_es(
    target: &Target,
    asset: &str,
    report: &Bytes,
    findings: usize,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let response = target
        .http
        .post(format!("{}/imports", target.base))
        .query(&[("target", asset)])
        .header("content-type", "application/json")
        .body(report.clone())
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    let elapsed = start.elapsed();
    anyhow::ensure!(
        status == 200,
        "POST /imports answered {status}: {}",
        text.chars().take(500).collect::<String>()
    );
    let body: Value = serde_json::from_str(&text)?;
    anyhow::ensure!(
        body["created"].as_u64() == Some(findings as u64),
        "expected {findings} findings created, the answer says {body}"
    );
    Ok(elapsed)
}

fn table(results: &Results) -> String {
    let cell = |server: Server, i: usize| -> String {
        match results.iter().find(|(s, _)| *s == server).map(|(_, r)| r) {
            Some(Ok(figures)) => figures.get(i).map_or("–".to_owned(), |f| {
                format!("{:.0} ms; {}/s", ms(f.median()), thousands(f.per_second()))
            }),
            Some(Err(e)) => format!(
                "failed: {}",
                e.replace('|', "/").chars().take(80).collect::<String>()
            ),
            None => "–".to_owned(),
        }
    };
    let labels: Vec<(String, usize, usize)> = results
        .iter()
        .find_map(|(_, r)| r.as_ref().ok())
        .map(|figures| {
            figures
                .iter()
                .map(|f| (f.report.clone(), f.findings, f.times.len()))
                .collect()
        })
        .unwrap_or_default();
    let mut out = String::from(
        "Time of the upload request (median of the runs), findings per second (higher is better):\n\n\
         | report | runs | vulnledger | cqrs-es (postgres-es + axum) | DefectDojo 3.2 (quoted, not this run) |\n\
         |---|---:|---:|---:|---:|\n",
    );
    for (i, (label, findings, runs)) in labels.iter().enumerate() {
        let dojo = if *findings == FIXTURE_FINDINGS && label.contains("many_vulns") {
            format!(
                "{:.0} ms; {}/s",
                ms(DEFECTDOJO_MANY_VULNS),
                thousands(*findings as f64 / DEFECTDOJO_MANY_VULNS.as_secs_f64())
            )
        } else {
            "–".to_owned()
        };
        out.push_str(&format!(
            "| {label} | {runs} | {} | {} | {dojo} |\n",
            cell(Server::Vulnledger, i),
            cell(Server::CqrsEs, i)
        ));
    }
    out.push_str(&format!(
        "\nTarget (README): grype/many_vulns.json in 0.5 s: {}.\n",
        match results.iter().find(|(s, _)| *s == Server::Vulnledger) {
            Some((_, Ok(f))) if !f.is_empty() && f[0].median() <= Duration::from_millis(500) =>
                "**met**".to_owned(),
            Some((_, Ok(f))) if !f.is_empty() => format!("**missed**: {:.0} ms", ms(f[0].median())),
            _ => "not measured".to_owned(),
        }
    ));
    out
}

fn markdown(machine: &Machine, started: chrono::DateTime<chrono::Utc>, table: &str) -> String {
    format!(
        "<!-- bench:import -->\n\
         ## Report import over HTTP: vulnledger beside plain cqrs-es\n\n\
         Measured {} by `scripts/bench.sh` (`vulnledger-bench import`), which rewrites \
         everything between the `bench:import` markers.\n\n\
         ### Machine\n\n{}\n\
         ### What is measured\n\n\
         - Each server runs in a child process on its own fresh database; every import \
         goes to a new target, so every finding is new on both sides, and each side's \
         stored findings are counted afterwards.\n\
         - **vulnledger**: `POST /api/v1/scans/{{id}}/results` of `vulnledger serve` (the \
         scan launched just before, untimed); the answer's `findings.new` must equal the \
         report's findings. Between runs the projection catches up, untimed.\n\
         - **cqrs-es**: `POST /imports` on axum in front of `postgres_es::postgres_cqrs` \
         with one inline view: the same importer parses the report, then one \
         `DetectFinding` per finding goes through the framework, 32 at a time. It keeps \
         no fingerprint index, so it could not tell a re-import from a new one; \
         vulnledger's re-import figures are in \"Report import\" above.\n\
         - The generated report cycles many_vulns.json's matches with unique advisories \
         and packages (as `cargo bench --bench import` does).\n\n\
         ### Figures\n\n{table}\n<!-- /bench:import -->\n",
        started.format("%Y-%m-%d %H:%M UTC"),
        machine.markdown()
    )
}

/// A Grype report of `n` matches with unique (CVE, package) pairs, each a real match of
/// many_vulns.json (cycled) with its advisory id, package name and purl rewritten: the
/// same generator as `benches/import.rs`.
fn generate_report(fixture: &[u8], n: usize) -> Bytes {
    let doc: Value = serde_json::from_slice(fixture).expect("fixture is JSON");
    let templates = doc["matches"].as_array().expect("matches");
    let mut out = Vec::with_capacity(n * 1700 + 64 * 1024);
    out.extend_from_slice(b"{\"matches\":[");
    for i in 0..n {
        let mut m = templates[i % templates.len()].clone();
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
        if i > 0 {
            out.push(b',');
        }
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
