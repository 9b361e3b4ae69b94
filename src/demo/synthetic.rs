//! `demo --findings N`: exactly N generated findings, fast enough for a million.
//!
//! The tenant gets one *stream* per asset: a container image or a host scanned by
//! Trivy or Grype, or a repository scanned by Semgrep. Each stream owns a fixed set
//! of distinct findings (the sizes add up to N) and is scanned 3 to 5 times over the
//! period, oldest first: the first scan reports about half of its findings, each later
//! scan drops a few (they auto-resolve) and adds newly found ones, and the last one has
//! introduced them all. So every finding is created exactly once, first-seen dates
//! spread over the period, and trends show remediation.
//!
//! Package findings name real-looking CVEs drawn from a pool sized so that each CVE
//! sits on several assets (plus a dozen famous ones), with one severity per CVE, in
//! about the mix scanners report (5% critical, 20% high, 40% medium, 25% low, 10% info).
//!
//! Scans go through `CommandService` and [`crate::ingest::ingest`], at most
//! [`MAX_SCAN_FINDINGS`] findings each (one transaction per scan), on [`WORKERS`]
//! connections at once; a stream always stays on one worker, so its scans run in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use vulnledger_aggregates::{Scan, ScanCommand, Severity};

use super::progress::{Progress, ProgressMode};
use super::rng::{mix, Rng};
use super::{Cast, Loaded};
use crate::commands::{CommandContext, CommandService};
use crate::importers::{ImportedFinding, ParsedReport, ReportFormat};
use crate::indexes::ScanIndex;

/// Scans recorded at once: while one is encoded or committed, the others keep
/// PostgreSQL busy.
pub(crate) const WORKERS: usize = 3;
/// The largest report a stream produces: one import is one transaction.
pub(crate) const MAX_SCAN_FINDINGS: u64 = 15_000;
/// Average findings per asset.
const MEAN_STREAM: u64 = 1_200;
const SEED: u64 = 0x7675_6c6e_6c65_6467; // "vulnledg"
/// Table statistics are refreshed when this many findings have been created, and again
/// each time that count has grown fourfold (see [`refresh_statistics`]).
const FIRST_ANALYZE: u64 = 5_000;

pub(crate) async fn load(
    commands: &CommandService,
    cast: &Cast,
    findings: u64,
    days: u32,
    mode: ProgressMode,
) -> anyhow::Result<Loaded> {
    let base = next_asset_number(commands, cast.tenant_id).await?;
    let end = Utc::now() - Duration::minutes(10);
    let start = end - Duration::days(i64::from(days)) + Duration::minutes(10);
    let plan = Arc::new(Generator::plan(findings, base, start, end));
    let counters = Arc::new(Counters {
        next_analyze: AtomicU64::new(FIRST_ANALYZE),
        ..Counters::default()
    });
    let progress = Arc::new(Progress::new(mode, findings, "findings"));

    let mut jobs: Vec<Vec<(DateTime<Utc>, usize, usize)>> = vec![Vec::new(); WORKERS];
    for (s, stream) in plan.streams.iter().enumerate() {
        for (k, step) in stream.steps.iter().enumerate() {
            jobs[s % WORKERS].push((step.at, s, k));
        }
    }
    let mut workers = tokio::task::JoinSet::new();
    for mut queue in jobs {
        queue.sort_by_key(|&(at, s, k)| (at, s, k));
        let commands = commands.clone();
        let ctx = cast.scanner_context();
        let plan = plan.clone();
        let counters = counters.clone();
        let progress = progress.clone();
        workers.spawn(async move {
            let mut present: HashMap<usize, Vec<u32>> = HashMap::new();
            for (_, s, k) in queue {
                let found = present.entry(s).or_default();
                scan(&commands, &ctx, &plan, s, k, found, &counters).await?;
                if k + 1 == plan.streams[s].steps.len() {
                    present.remove(&s);
                }
                refresh_statistics(&commands, &counters).await;
                progress.update(
                    counters.created.load(Ordering::Relaxed),
                    counters.scans.load(Ordering::Relaxed),
                );
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = workers.join_next().await {
        if let Err(e) = done.map_err(anyhow::Error::from).and_then(|r| r) {
            workers.abort_all();
            return Err(e);
        }
    }
    let loaded = Loaded {
        findings_created: counters.created.load(Ordering::Relaxed),
        findings_resolved: counters.resolved.load(Ordering::Relaxed),
        findings_reopened: counters.reopened.load(Ordering::Relaxed),
        scans: counters.scans.load(Ordering::Relaxed),
        triage: Default::default(),
    };
    progress.finish(loaded.findings_created, loaded.scans);
    anyhow::ensure!(
        loaded.findings_created == findings,
        "created {} findings instead of {findings}: the tenant already held some of the \
         generated assets",
        loaded.findings_created
    );
    Ok(loaded)
}

#[derive(Default)]
struct Counters {
    created: AtomicU64,
    resolved: AtomicU64,
    reopened: AtomicU64,
    scans: AtomicU64,
    /// Findings created after which statistics are refreshed next.
    next_analyze: AtomicU64,
}

/// A bulk load outruns autovacuum (or runs where it is off): without statistics on
/// the tables it fills, PostgreSQL plans the import's lookups as if `events` held a few
/// thousand rows and ends up scanning the whole tenant for each report, so a million
/// findings slow to a crawl. `ANALYZE` as the tables grow keeps every lookup an index
/// probe; it samples a bounded number of rows, so each takes a second or two at most.
/// It is maintenance, not data: without the privilege the load goes on, warned.
async fn refresh_statistics(commands: &CommandService, counters: &Counters) {
    let due = counters.next_analyze.load(Ordering::Relaxed);
    if counters.created.load(Ordering::Relaxed) < due
        || counters
            .next_analyze
            .compare_exchange(due, due * 4, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    if let Err(e) = sqlx::query("ANALYZE events, finding_index, scan_index")
        .execute(commands.store().pool())
        .await
    {
        tracing::warn!(error = %e, "cannot refresh table statistics; the load may slow down");
    }
}

/// Step `k` of stream `s`: drop some findings, add the new ones, launch and record.
async fn scan(
    commands: &CommandService,
    ctx: &CommandContext,
    plan: &Generator,
    s: usize,
    k: usize,
    present: &mut Vec<u32>,
    counters: &Counters,
) -> anyhow::Result<()> {
    let stream = &plan.streams[s];
    let step = &stream.steps[k];
    let mut rng = Rng::new(stream.seed ^ (k as u64 + 1).wrapping_mul(0x51_7cc1_b727_220a));
    let drop = (present.len() as u64 * step.drop_permille / 1000) as usize;
    for _ in 0..drop {
        let i = rng.below(present.len() as u64) as usize;
        present.swap_remove(i);
    }
    let from = if k == 0 {
        0
    } else {
        stream.steps[k - 1].introduced
    };
    present.extend(from..step.introduced);
    let report = ParsedReport {
        format: match stream.scanner {
            "grype" => ReportFormat::Grype,
            "trivy" => ReportFormat::Trivy,
            _ => ReportFormat::Sarif,
        },
        findings: present.iter().map(|&j| plan.finding(stream, j)).collect(),
        tool: Some(stream.scanner.to_owned()),
    };

    let scan_id = Uuid::now_v7();
    let launched_at = step.at - Duration::seconds(45 + present.len() as i64 / 40);
    let (branch, commit) = match stream.kind {
        Kind::Repo => (
            Some("main".to_owned()),
            Some(format!(
                "{:016x}{:016x}{:08x}",
                rng.next_u64(),
                rng.next_u64(),
                rng.next_u64() as u32
            )),
        ),
        _ => (None, None),
    };
    commands
        .execute_with::<Scan>(
            ctx,
            &scan_id.to_string(),
            None,
            ScanCommand::LaunchScan {
                target: stream.asset.clone(),
                scanner: stream.scanner.to_owned(),
                profile: None,
                branch,
                commit,
                tags: vec![format!("team:{}", stream.team)],
                at: launched_at,
            },
            &(),
            &ScanIndex,
        )
        .await?;
    let ingested = crate::ingest::ingest(commands.store(), ctx, scan_id, &report, step.at).await?;
    counters
        .created
        .fetch_add(ingested.counts.new, Ordering::Relaxed);
    counters
        .resolved
        .fetch_add(ingested.counts.resolved, Ordering::Relaxed);
    counters
        .reopened
        .fetch_add(ingested.counts.reopened, Ordering::Relaxed);
    counters.scans.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Synthetic assets are numbered (`svc-0042.prod.example`); a later run on the same
/// tenant numbers on from the highest number there, so it adds new assets instead of
/// rescanning (and resolving) the earlier ones.
async fn next_asset_number(commands: &CommandService, tenant_id: Uuid) -> anyhow::Result<u32> {
    let targets: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT target FROM scan_index WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_all(commands.store().pool())
            .await?;
    Ok(targets
        .iter()
        .filter_map(|t| asset_number(t))
        .max()
        .map_or(1, |n| n + 1))
}

/// The number after the last `-` that is followed by 4+ digits and then the end, a `.`
/// or a `:`, as in `svc-0042.prod.example` or `registry.example.com/x/api-0042:latest`.
fn asset_number(target: &str) -> Option<u32> {
    let bytes = target.as_bytes();
    let mut found = None;
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'-' {
            continue;
        }
        let digits = bytes[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let after = bytes.get(i + 1 + digits);
        if digits >= 4 && matches!(after, None | Some(b'.' | b':')) {
            found = target[i + 1..i + 1 + digits].parse().ok().or(found);
        }
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Host,
    Repo,
}

struct Stream {
    kind: Kind,
    asset: String,
    scanner: &'static str,
    team: &'static str,
    env: &'static str,
    os: &'static str,
    language: usize,
    seed: u64,
    /// Distinct findings of this stream; local indices `0..size`.
    size: u64,
    /// Local index `j` names identity `(offset + j * stride) % space`: distinct for
    /// distinct `j` because `space` is prime and `size <= space`.
    offset: u64,
    stride: u64,
    steps: Vec<Step>,
}

struct Step {
    at: DateTime<Utc>,
    /// Local indices below this have been reported by this step.
    introduced: u32,
    /// Share of the findings still reported that this step drops, in ‰.
    drop_permille: u64,
}

/// Every stream, and the CVE pool they share.
struct Generator {
    streams: Vec<Stream>,
    /// CVE pool size: identity `u` is CVE `u % cves`, package variant `u / cves`.
    cves: u64,
    space: u64,
}

impl Generator {
    fn plan(n: u64, base: u32, start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        let mut rng = Rng::new(SEED ^ n);
        let count = n.div_ceil(MEAN_STREAM).max(n.min(12)) as usize;
        let mut kinds = Vec::with_capacity(count);
        let mut weights = Vec::with_capacity(count);
        for _ in 0..count {
            let roll = rng.unit();
            let kind = if roll < 0.5 {
                Kind::Image
            } else if roll < 0.8 {
                Kind::Host
            } else {
                Kind::Repo
            };
            let factor = match kind {
                Kind::Image => 1.4,
                Kind::Host => 1.0,
                Kind::Repo => 0.35,
            };
            kinds.push(kind);
            weights.push(factor * (3.0 * (rng.unit() - 0.5)).exp());
        }
        let sizes = apportion(n, &weights, MAX_SCAN_FINDINGS);
        let largest = sizes.iter().copied().max().unwrap_or(1);

        let mut cves = (n / 6).clamp(300, 40_000);
        let mut space = next_prime((4 * cves).max(2 * largest + 1));
        // Variants of one CVE are told apart by package: keep them within the catalogue.
        while space.div_ceil(cves) > PACKAGES.len() as u64 {
            cves = space.div_ceil(PACKAGES.len() as u64);
            space = next_prime((4 * cves).max(2 * largest + 1));
        }

        let span = (end - start).num_seconds().max(60) as f64;
        let streams = kinds
            .into_iter()
            .zip(sizes)
            .enumerate()
            .map(|(i, (kind, size))| {
                let number = base + i as u32;
                let seed = mix(SEED ^ (u64::from(number) << 20) ^ n);
                let mut rng = Rng::new(seed);
                let team = *rng.pick(TEAMS);
                let env = *rng.pick(&["prod", "prod", "prod", "staging", "staging", "dev"]);
                let service = *rng.pick(SERVICES);
                let (asset, scanner) = match kind {
                    Kind::Image => (
                        format!("registry.example.com/{team}/{service}-{number:04}:{env}"),
                        if rng.chance(0.55) { "trivy" } else { "grype" },
                    ),
                    Kind::Host => (
                        format!("{}-{number:04}.{env}.example", rng.pick(HOST_ROLES)),
                        if rng.chance(0.55) { "trivy" } else { "grype" },
                    ),
                    Kind::Repo => (
                        format!("git.example.com/{team}/{service}-{number:04}"),
                        "semgrep",
                    ),
                };
                let os = *rng.pick(OPERATING_SYSTEMS);
                let language = rng.below(LANGUAGES.len() as u64) as usize;
                let offset = rng.below(space);
                let stride = 1 + rng.below(space - 1);
                let steps = schedule(&mut rng, size, start, span);
                Stream {
                    kind,
                    asset,
                    scanner,
                    team,
                    env,
                    os,
                    language,
                    seed,
                    size,
                    offset,
                    stride,
                    steps,
                }
            })
            .collect();
        Generator {
            streams,
            cves,
            space,
        }
    }

    /// Finding `j` of `stream`, as a scanner would report it (every time the same).
    fn finding(&self, stream: &Stream, j: u32) -> ImportedFinding {
        debug_assert!(u64::from(j) < stream.size);
        match stream.kind {
            Kind::Repo => code_finding(stream, j),
            Kind::Image | Kind::Host => {
                let u = (stream.offset + u64::from(j) * stream.stride) % self.space;
                self.package_finding(stream, u)
            }
        }
    }

    fn package_finding(&self, stream: &Stream, u: u64) -> ImportedFinding {
        let (pool_index, variant) = (u % self.cves, u / self.cves);
        let famous = FAMOUS.get(pool_index as usize).filter(|_| variant == 0);
        // A famous CVE's other variants become ordinary CVEs of their own, numbered past
        // the pool so that no two identities share a (CVE, package) pair.
        let cve_index = if (pool_index as usize) < FAMOUS.len() && variant > 0 {
            self.cves + pool_index * PACKAGES.len() as u64 + variant
        } else {
            pool_index
        };
        let h = mix(cve_index ^ SEED);
        let (cve, severity, package_index, weakness) = match famous {
            Some(f) => (
                f.id.to_owned(),
                f.severity,
                PACKAGES.iter().position(|p| p.0 == f.package).unwrap_or(0),
                f.title,
            ),
            None => {
                let year = 2017 + cve_index % 9;
                let number = 50_000 + (cve_index / 9) * 3 + (h >> 40) % 3;
                let package = (h as usize % PACKAGES.len() + variant as usize) % PACKAGES.len();
                (
                    format!("CVE-{year}-{number}"),
                    severity_of(h >> 8),
                    package,
                    WEAKNESSES[(h >> 24) as usize % WEAKNESSES.len()],
                )
            }
        };
        let (package, ecosystem) = PACKAGES[package_index];
        let v = mix(stream.seed ^ u);
        let (major, minor, patch) = (v % 4, (v >> 8) % 20, (v >> 16) % 30);
        let installed = format!("{major}.{minor}.{patch}");
        let fixed = ((v >> 24) % 100 < 85)
            .then(|| format!("{major}.{minor}.{}", patch + 1 + (v >> 32) % 3));
        let location = match ecosystem {
            Ecosystem::Os => format!("{} ({})", stream.asset, stream.os),
            Ecosystem::Maven => format!("app/lib/{package}-{installed}.jar"),
            Ecosystem::Npm => "app/package-lock.json".to_owned(),
            Ecosystem::Pip => "app/requirements.txt".to_owned(),
            Ecosystem::Go => "app/go.mod".to_owned(),
            Ecosystem::Gem => "app/Gemfile.lock".to_owned(),
        };
        let mut finding = ImportedFinding::new(format!("{package}: {weakness}"), severity);
        finding.cvss = cvss(severity, h >> 48);
        finding.description = Some(match &fixed {
            Some(fixed) => format!("{cve}: {weakness} in {package} {installed}; fixed in {fixed}."),
            None => format!("{cve}: {weakness} in {package} {installed}; no fix released yet."),
        });
        finding.cve = Some(cve);
        finding.package = Some(package.to_owned());
        finding.installed_version = Some(installed);
        finding.fixed_version = fixed;
        finding.location = Some(location);
        finding.tags = tags(stream);
        finding
    }
}

/// A static-analysis finding: a rule at a file and line, unique per `j`.
fn code_finding(stream: &Stream, j: u32) -> ImportedFinding {
    let h = mix(stream.seed ^ u64::from(j) ^ 0xc0de);
    let severity = severity_of(h);
    let (ext, lang) = LANGUAGES[stream.language];
    let rules: Vec<&Rule> = RULES
        .iter()
        .filter(|r| r.severity == severity && (r.lang == lang || r.lang == "*"))
        .collect();
    let rule = rules[(h >> 20) as usize % rules.len()];
    let file = j / 25;
    let dir = DIRECTORIES[mix(u64::from(file) ^ stream.seed) as usize % DIRECTORIES.len()];
    let stem = SERVICES[(file as usize + stream.language) % SERVICES.len()];
    let line = 12 + (j % 25) * 17 + (h >> 40) as u32 % 17;
    let mut finding = ImportedFinding::new(rule.title.to_owned(), severity);
    finding.rule_id = Some(rule.id.to_owned());
    finding.location = Some(format!("{dir}/{stem}_{file}.{ext}:{line}"));
    finding.description = Some(rule.title.to_owned() + ".");
    finding.tags = tags(stream);
    finding
}

fn tags(stream: &Stream) -> Vec<String> {
    vec![
        format!("team:{}", stream.team),
        format!("env:{}", stream.env),
    ]
}

/// About 5% critical, 20% high, 40% medium, 25% low, 10% info.
fn severity_of(h: u64) -> Severity {
    match h % 100 {
        0..5 => Severity::Critical,
        5..25 => Severity::High,
        25..65 => Severity::Medium,
        65..90 => Severity::Low,
        _ => Severity::Info,
    }
}

/// A CVSS base score inside the severity's band (none for INFO).
fn cvss(severity: Severity, h: u64) -> Option<f64> {
    let (low, tenths) = match severity {
        Severity::Critical => (9.0, 11),
        Severity::High => (7.0, 20),
        Severity::Medium => (4.0, 30),
        Severity::Low => (0.1, 39),
        Severity::Info => return None,
    };
    Some(((low + (h % tenths) as f64 / 10.0) * 10.0).round() / 10.0)
}

/// 3 to 5 scans from a start in the first half of the period to its end.
fn schedule(rng: &mut Rng, size: u64, start: DateTime<Utc>, span: f64) -> Vec<Step> {
    let scans = 3 + rng.below(3) as usize;
    let first = span * 0.55 * rng.unit();
    let gap = (span - first) / (scans - 1) as f64;
    let first_share = 0.45 + 0.3 * rng.unit();
    let first_count = ((size as f64 * first_share).round() as u64).clamp(1, size);
    let later = (size - first_count) / (scans as u64 - 1);
    let mut introduced = first_count;
    (0..scans)
        .map(|k| {
            let offset = if k == 0 {
                first
            } else if k == scans - 1 {
                span - gap * 0.1 * rng.unit()
            } else {
                first + gap * (k as f64 + 0.6 * (rng.unit() - 0.5))
            };
            if k > 0 {
                introduced = if k == scans - 1 {
                    size
                } else {
                    introduced + later
                };
            }
            Step {
                at: start + Duration::milliseconds((offset * 1000.0) as i64),
                introduced: introduced as u32,
                drop_permille: if k == 0 { 0 } else { 40 + rng.below(100) },
            }
        })
        .collect()
}

/// `n` split by `weights`, each part at least 1 and at most `cap` (`n` must fit).
fn apportion(n: u64, weights: &[f64], cap: u64) -> Vec<u64> {
    let count = weights.len() as u64;
    let total: f64 = weights.iter().sum();
    let spare = n - count;
    let mut sizes: Vec<u64> = weights
        .iter()
        .map(|w| (1 + (spare as f64 * w / total) as u64).min(cap))
        .collect();
    let mut left = n - sizes.iter().sum::<u64>();
    let mut i = 0;
    while left > 0 {
        if sizes[i] < cap {
            sizes[i] += 1;
            left -= 1;
        }
        i = (i + 1) % sizes.len();
    }
    sizes
}

fn next_prime(from: u64) -> u64 {
    let is_prime = |n: u64| n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0);
    (from..)
        .find(|&n| is_prime(n))
        .expect("primes are unbounded")
}

#[derive(Clone, Copy)]
enum Ecosystem {
    Os,
    Maven,
    Npm,
    Pip,
    Go,
    Gem,
}

const PACKAGES: &[(&str, Ecosystem)] = &[
    ("openssl", Ecosystem::Os),
    ("libssl3", Ecosystem::Os),
    ("zlib1g", Ecosystem::Os),
    ("libc6", Ecosystem::Os),
    ("curl", Ecosystem::Os),
    ("libcurl4", Ecosystem::Os),
    ("libxml2", Ecosystem::Os),
    ("libexpat1", Ecosystem::Os),
    ("libsqlite3-0", Ecosystem::Os),
    ("libgnutls30", Ecosystem::Os),
    ("libkrb5-3", Ecosystem::Os),
    ("libpcre2-8-0", Ecosystem::Os),
    ("systemd", Ecosystem::Os),
    ("util-linux", Ecosystem::Os),
    ("bash", Ecosystem::Os),
    ("libtiff6", Ecosystem::Os),
    ("libwebp7", Ecosystem::Os),
    ("libpng16-16", Ecosystem::Os),
    ("openssh-client", Ecosystem::Os),
    ("sudo", Ecosystem::Os),
    ("xz-utils", Ecosystem::Os),
    ("libnghttp2-14", Ecosystem::Os),
    ("busybox", Ecosystem::Os),
    ("git", Ecosystem::Os),
    ("nginx", Ecosystem::Os),
    ("log4j-core", Ecosystem::Maven),
    ("jackson-databind", Ecosystem::Maven),
    ("spring-core", Ecosystem::Maven),
    ("commons-text", Ecosystem::Maven),
    ("netty-codec-http", Ecosystem::Maven),
    ("lodash", Ecosystem::Npm),
    ("express", Ecosystem::Npm),
    ("axios", Ecosystem::Npm),
    ("jsonwebtoken", Ecosystem::Npm),
    ("semver", Ecosystem::Npm),
    ("requests", Ecosystem::Pip),
    ("urllib3", Ecosystem::Pip),
    ("django", Ecosystem::Pip),
    ("jinja2", Ecosystem::Pip),
    ("cryptography", Ecosystem::Pip),
    ("golang.org/x/net", Ecosystem::Go),
    ("golang.org/x/crypto", Ecosystem::Go),
    ("google.golang.org/grpc", Ecosystem::Go),
    ("nokogiri", Ecosystem::Gem),
];

struct Famous {
    id: &'static str,
    package: &'static str,
    severity: Severity,
    title: &'static str,
}

/// CVEs everyone has heard of, each on many assets.
const FAMOUS: &[Famous] = &[
    Famous {
        id: "CVE-2021-44228",
        package: "log4j-core",
        severity: Severity::Critical,
        title: "remote code execution through JNDI lookups (Log4Shell)",
    },
    Famous {
        id: "CVE-2014-0160",
        package: "openssl",
        severity: Severity::High,
        title: "TLS heartbeat read overrun (Heartbleed)",
    },
    Famous {
        id: "CVE-2023-4863",
        package: "libwebp7",
        severity: Severity::High,
        title: "heap buffer overflow in the lossless decoder",
    },
    Famous {
        id: "CVE-2024-3094",
        package: "xz-utils",
        severity: Severity::Critical,
        title: "malicious code in the release tarballs (liblzma backdoor)",
    },
    Famous {
        id: "CVE-2022-22965",
        package: "spring-core",
        severity: Severity::Critical,
        title: "remote code execution via data binding (Spring4Shell)",
    },
    Famous {
        id: "CVE-2021-3156",
        package: "sudo",
        severity: Severity::High,
        title: "heap-based buffer overflow (Baron Samedit)",
    },
    Famous {
        id: "CVE-2023-44487",
        package: "golang.org/x/net",
        severity: Severity::High,
        title: "HTTP/2 rapid reset denial of service",
    },
    Famous {
        id: "CVE-2022-0778",
        package: "libssl3",
        severity: Severity::High,
        title: "infinite loop in BN_mod_sqrt() on crafted certificates",
    },
    Famous {
        id: "CVE-2023-38545",
        package: "curl",
        severity: Severity::Critical,
        title: "SOCKS5 proxy handshake heap buffer overflow",
    },
    Famous {
        id: "CVE-2024-6387",
        package: "openssh-client",
        severity: Severity::High,
        title: "signal handler race condition (regreSSHion)",
    },
    Famous {
        id: "CVE-2022-42889",
        package: "commons-text",
        severity: Severity::Critical,
        title: "remote code execution through string interpolation (Text4Shell)",
    },
    Famous {
        id: "CVE-2021-23017",
        package: "nginx",
        severity: Severity::High,
        title: "off-by-one in the DNS resolver",
    },
];

const WEAKNESSES: &[&str] = &[
    "heap-based buffer overflow",
    "out-of-bounds read",
    "use-after-free",
    "integer overflow when parsing lengths",
    "denial of service via crafted input",
    "NULL pointer dereference",
    "improper certificate validation",
    "path traversal",
    "HTTP request smuggling",
    "regular expression denial of service",
    "prototype pollution",
    "XML external entity injection",
    "server-side request forgery",
    "improper input validation",
    "uncontrolled resource consumption",
    "double free",
    "information disclosure through error messages",
    "local privilege escalation",
    "command injection",
    "deserialization of untrusted data",
];

struct Rule {
    id: &'static str,
    lang: &'static str,
    severity: Severity,
    title: &'static str,
}

const LANGUAGES: &[(&str, &str)] = &[
    ("py", "python"),
    ("js", "javascript"),
    ("go", "go"),
    ("java", "java"),
];

/// Semgrep-style rules; every (language, severity) has at least one (the generic ones).
const RULES: &[Rule] = &[
    Rule {
        id: "generic.secrets.security.detected-aws-access-key-id",
        lang: "*",
        severity: Severity::Critical,
        title: "AWS access key id committed to the repository",
    },
    Rule {
        id: "generic.secrets.security.detected-private-key",
        lang: "*",
        severity: Severity::Critical,
        title: "Private key committed to the repository",
    },
    Rule {
        id: "python.django.security.injection.sql.sql-injection-using-raw",
        lang: "python",
        severity: Severity::Critical,
        title: "User input reaches a raw SQL query",
    },
    Rule {
        id: "java.lang.security.audit.object-deserialization",
        lang: "java",
        severity: Severity::Critical,
        title: "Deserialization of untrusted data",
    },
    Rule {
        id: "javascript.lang.security.audit.code-string-concat",
        lang: "javascript",
        severity: Severity::Critical,
        title: "User input evaluated as code",
    },
    Rule {
        id: "generic.secrets.security.detected-generic-api-key",
        lang: "*",
        severity: Severity::High,
        title: "API key committed to the repository",
    },
    Rule {
        id: "python.lang.security.audit.dangerous-subprocess-use",
        lang: "python",
        severity: Severity::High,
        title: "Subprocess call with user-controlled arguments",
    },
    Rule {
        id: "javascript.express.security.audit.xss.direct-response-write",
        lang: "javascript",
        severity: Severity::High,
        title: "Unescaped user input written to the response",
    },
    Rule {
        id: "go.lang.security.audit.database.string-formatted-query",
        lang: "go",
        severity: Severity::High,
        title: "SQL query built with string formatting",
    },
    Rule {
        id: "java.spring.security.audit.spring-csrf-disabled",
        lang: "java",
        severity: Severity::High,
        title: "CSRF protection disabled",
    },
    Rule {
        id: "generic.nginx.security.missing-ssl-version",
        lang: "*",
        severity: Severity::Medium,
        title: "TLS protocol versions not pinned",
    },
    Rule {
        id: "python.requests.security.disabled-cert-validation",
        lang: "python",
        severity: Severity::Medium,
        title: "TLS certificate validation disabled",
    },
    Rule {
        id: "python.flask.security.audit.debug-enabled",
        lang: "python",
        severity: Severity::Medium,
        title: "Flask application runs with debug enabled",
    },
    Rule {
        id: "javascript.jsonwebtoken.security.jwt-hardcode",
        lang: "javascript",
        severity: Severity::Medium,
        title: "Hard-coded JWT signing secret",
    },
    Rule {
        id: "go.lang.security.audit.crypto.use_of_weak_crypto",
        lang: "go",
        severity: Severity::Medium,
        title: "Weak hash function (MD5) used for security",
    },
    Rule {
        id: "go.lang.security.audit.net.use-tls-skip-verify",
        lang: "go",
        severity: Severity::Medium,
        title: "TLS verification skipped (InsecureSkipVerify)",
    },
    Rule {
        id: "java.lang.security.audit.crypto.weak-random",
        lang: "java",
        severity: Severity::Medium,
        title: "java.util.Random used for a security decision",
    },
    Rule {
        id: "generic.dockerfile.security.missing-user",
        lang: "*",
        severity: Severity::Low,
        title: "Container runs as root: no USER instruction",
    },
    Rule {
        id: "python.lang.security.audit.insecure-hash-algorithms",
        lang: "python",
        severity: Severity::Low,
        title: "Insecure hash algorithm (SHA-1)",
    },
    Rule {
        id: "javascript.lang.security.audit.incomplete-sanitization",
        lang: "javascript",
        severity: Severity::Low,
        title: "Incomplete string sanitization",
    },
    Rule {
        id: "go.lang.security.audit.net.unescaped-data-in-url",
        lang: "go",
        severity: Severity::Low,
        title: "Unescaped data placed in a URL",
    },
    Rule {
        id: "java.lang.security.audit.cookie-missing-httponly",
        lang: "java",
        severity: Severity::Low,
        title: "Cookie without the HttpOnly flag",
    },
    Rule {
        id: "generic.ci.security.unpinned-action",
        lang: "*",
        severity: Severity::Info,
        title: "CI action not pinned to a commit",
    },
    Rule {
        id: "python.lang.best-practice.open-never-closed",
        lang: "python",
        severity: Severity::Info,
        title: "File opened but never closed",
    },
    Rule {
        id: "javascript.lang.best-practice.leftover-debugging",
        lang: "javascript",
        severity: Severity::Info,
        title: "Leftover debugging statement",
    },
];

const TEAMS: &[&str] = &[
    "payments", "checkout", "identity", "platform", "search", "data", "mobile", "growth",
    "billing", "risk",
];

const SERVICES: &[&str] = &[
    "api",
    "worker",
    "gateway",
    "frontend",
    "ledger",
    "auth",
    "notifications",
    "catalog",
    "orders",
    "reports",
    "scheduler",
    "inventory",
];

const HOST_ROLES: &[&str] = &["svc", "svc", "web", "db", "batch", "edge", "cache"];

const DIRECTORIES: &[&str] = &[
    "src",
    "src/api",
    "src/handlers",
    "src/db",
    "lib/auth",
    "internal/payments",
    "app/views",
    "scripts",
];

const OPERATING_SYSTEMS: &[&str] = &[
    "debian 12.5",
    "debian 11.9",
    "alpine 3.19.1",
    "ubuntu 22.04",
    "ubuntu 24.04",
    "rhel 9.3",
    "amazon 2023",
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::importers::fingerprint;

    fn generator(n: u64, days: i64) -> Generator {
        let end = Utc::now();
        Generator::plan(n, 1, end - Duration::days(days), end)
    }

    #[test]
    fn sizes_add_up_and_respect_the_cap() {
        for n in [1, 2, 11, 12, 13, 2000, 54_321, 1_000_000] {
            let g = generator(n, 90);
            let total: u64 = g.streams.iter().map(|s| s.size).sum();
            assert_eq!(total, n);
            assert!(g
                .streams
                .iter()
                .all(|s| (1..=MAX_SCAN_FINDINGS).contains(&s.size)));
            for s in &g.streams {
                assert_eq!(u64::from(s.steps.last().unwrap().introduced), s.size);
                assert!(s.steps.windows(2).all(|w| w[0].at < w[1].at));
            }
        }
    }

    #[test]
    fn every_finding_of_a_run_has_its_own_fingerprint() {
        let g = generator(20_000, 90);
        let tenant = Uuid::nil();
        let mut seen = HashSet::new();
        for s in &g.streams {
            for j in 0..s.size as u32 {
                let f = g.finding(s, j);
                assert!(seen.insert(fingerprint(tenant, &s.asset, &f)), "{f:?}");
            }
        }
        assert_eq!(seen.len(), 20_000);
    }

    #[test]
    fn a_finding_is_the_same_every_time() {
        let g = generator(500, 30);
        let s = &g.streams[0];
        assert_eq!(g.finding(s, 3), g.finding(s, 3));
    }

    #[test]
    fn severities_follow_the_mix() {
        let mut counts = HashMap::new();
        for h in 0..100_000u64 {
            *counts.entry(severity_of(mix(h))).or_insert(0u32) += 1;
        }
        let share = |s| f64::from(counts[&s]) / 100_000.0;
        assert!((share(Severity::Critical) - 0.05).abs() < 0.01);
        assert!((share(Severity::Medium) - 0.40).abs() < 0.01);
    }

    #[test]
    fn asset_numbers_are_read_back() {
        assert_eq!(asset_number("svc-0042.prod.example"), Some(42));
        assert_eq!(
            asset_number("registry.example.com/payments/api-0123:prod"),
            Some(123)
        );
        assert_eq!(
            asset_number("git.example.com/data/orders-10007"),
            Some(10007)
        );
        assert_eq!(
            asset_number("registry.example.com/platform/debian-base:10"),
            None
        );
        assert_eq!(asset_number("x-12.example"), None);
    }

    #[test]
    fn cvss_stays_in_its_band() {
        for h in 0..200 {
            let c = cvss(Severity::Critical, h).unwrap();
            assert!((9.0..=10.0).contains(&c), "{c}");
            let l = cvss(Severity::Low, h).unwrap();
            assert!((0.1..=3.9).contains(&l), "{l}");
        }
        assert_eq!(cvss(Severity::Info, 1), None);
    }
}
