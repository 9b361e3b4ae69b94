//! `demo` without `--findings`: the real scanner reports in `demo/reports/` replayed
//! as rounds of scans over the period, with triage through the real commands.
//!
//! Each report is the latest state of one asset. Most of its findings are there from
//! the first round; some appear in a later round (newly disclosed), about a third
//! disappear in a later round (patched: auto-resolved), and a few of those come back
//! (a regression: reopened). Along the way the security lead confirms findings, marks
//! two as false positives with a justification and accepts the risk of a LOW one; the
//! admin asks to accept the risk of Log4Shell on the ledger service, which the lead
//! approves (applied as the approvals process manager would), and asks for another
//! that is left pending, so the approvals queue has something to show.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use vulnledger_aggregates::{
    Approval, ApprovalCommand, ApprovalEvent, ApprovalRef, Decider, Finding, FindingCommand,
    FindingStatus, Scan, ScanCommand, Severity,
};

use super::progress::{Progress, ProgressMode};
use super::rng::Rng;
use super::{Cast, Loaded};
use crate::commands::{Actor, CommandContext, CommandService};
use crate::importers::{self, ParsedReport};
use crate::indexes::{ApprovalIndex, FindingIndex, ScanIndex};

const SEED: u64 = 0x7265_616c_6973_7469; // "realisti"

/// One embedded report and the asset it stands for.
struct Source {
    file: &'static str,
    bytes: &'static [u8],
    target: &'static str,
    scanner: &'static str,
    team: &'static str,
    repository: bool,
}

const DEBIAN: usize = 0;
const CHECKOUT: usize = 2;
const SCRIPTS: usize = 3;
const LEDGER: usize = 4;

const SOURCES: &[Source] = &[
    Source {
        file: "trivy/legacy_many_vulns.json",
        bytes: include_bytes!("../../demo/reports/trivy/legacy_many_vulns.json"),
        target: "registry.example.com/platform/debian-base:10",
        scanner: "trivy",
        team: "platform",
        repository: false,
    },
    Source {
        file: "trivy/scheme_2_many_vulns.json",
        bytes: include_bytes!("../../demo/reports/trivy/scheme_2_many_vulns.json"),
        target: "registry.example.com/appsec/teamdojo:latest",
        scanner: "trivy",
        team: "appsec",
        repository: false,
    },
    Source {
        file: "grype/check_all_fields.json",
        bytes: include_bytes!("../../demo/reports/grype/check_all_fields.json"),
        target: "registry.example.com/payments/checkout-api:latest",
        scanner: "grype",
        team: "payments",
        repository: false,
    },
    Source {
        file: "sarif/bash-report.sarif",
        bytes: include_bytes!("../../demo/reports/sarif/bash-report.sarif"),
        target: "git.example.com/platform/deploy-scripts",
        scanner: "shell-analysis",
        team: "platform",
        repository: true,
    },
    Source {
        file: "cyclonedx/log4j.json",
        bytes: include_bytes!("../../demo/reports/cyclonedx/log4j.json"),
        target: "git.example.com/payments/ledger-service",
        scanner: "grype",
        team: "payments",
        repository: true,
    },
];

/// One asset: its report and, per distinct finding, when scans report it.
struct Asset {
    source: &'static Source,
    report: ParsedReport,
    groups: Vec<Group>,
}

/// The report entries that share one fingerprint (one finding).
struct Group {
    fingerprint: String,
    members: Vec<usize>,
    severity: Severity,
    cve: Option<String>,
    /// First round that reports it.
    intro: usize,
    /// Round from which it is no longer reported (patched).
    fix: Option<usize>,
    /// Round from which it is reported again (a regression).
    back: Option<usize>,
    /// Chosen for triage: reported in every round.
    triaged: bool,
}

impl Group {
    fn reported_in(&self, round: usize) -> bool {
        (round >= self.intro && self.fix.is_none_or(|f| round < f))
            || self.back.is_some_and(|b| round >= b)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Scan {
        asset: usize,
        round: usize,
    },
    Confirm(Target),
    FalsePositive(Target, &'static str),
    AcceptRisk(Target, &'static str),
    /// The admin asks; `key` names the request for a later [`Step::Approve`].
    RequestApproval(Target, &'static str, usize),
    Approve(usize, &'static str),
}

/// (asset, group)
type Target = (usize, usize);

pub(crate) async fn load(
    commands: &CommandService,
    cast: &Cast,
    days: u32,
    mode: ProgressMode,
) -> anyhow::Result<Loaded> {
    let rounds = (days as usize / 7).clamp(2, 12) + 1;
    let mut assets = parse(cast.tenant_id)?;
    let triage = choose_triage(&mut assets);
    plan_rounds(&mut assets, rounds);

    let end = Utc::now() - Duration::minutes(30);
    let start = end - Duration::days(i64::from(days)) + Duration::minutes(30);
    let span = (end - start).num_milliseconds() as f64;
    let at = |fraction: f64| start + Duration::milliseconds((span * fraction) as i64);
    let gap = 1.0 / ((rounds - 1) as f64 + 0.25);
    let mut steps: Vec<(DateTime<Utc>, Step)> = Vec::new();
    for asset in 0..assets.len() {
        for round in 0..rounds {
            let fraction = gap * (round as f64 + asset as f64 / 20.0);
            steps.push((at(fraction), Step::Scan { asset, round }));
        }
    }
    let approval_delay = Duration::milliseconds((span * 0.05) as i64).min(Duration::days(1));
    for (fraction, step) in triage {
        let when = at(fraction);
        steps.push((when, step));
        if let Step::RequestApproval(_, _, key) = step {
            if let Some(comment) = APPROVALS.get(key).and_then(|a| a.1) {
                steps.push((when + approval_delay, Step::Approve(key, comment)));
            }
        }
    }
    // Scans before triage at the same instant, so a finding exists before it is triaged.
    steps.sort_by_key(|(at, step)| (*at, !matches!(step, Step::Scan { .. })));

    let mut replay = Replay {
        commands,
        cast,
        assets: &assets,
        loaded: Loaded::default(),
        approvals: HashMap::new(),
        requested: 0,
    };
    let progress = Progress::new(mode, steps.len() as u64, "steps");
    for (i, (at, step)) in steps.iter().enumerate() {
        replay.run(*step, *at).await?;
        progress.update(i as u64 + 1, replay.loaded.scans);
    }
    progress.finish(steps.len() as u64, replay.loaded.scans);
    let mut loaded = replay.loaded;
    loaded.triage.approvals_pending = replay.requested - loaded.triage.approvals_applied;
    Ok(loaded)
}

/// Parses every embedded report with the real importers and groups its entries by
/// fingerprint, in report order.
fn parse(tenant_id: Uuid) -> anyhow::Result<Vec<Asset>> {
    SOURCES
        .iter()
        .map(|source| {
            let report = importers::parse(source.bytes, None)
                .map_err(|e| anyhow::anyhow!("demo report {}: {e}", source.file))?;
            let mut groups: Vec<Group> = Vec::new();
            let mut by_fingerprint: HashMap<String, usize> = HashMap::new();
            for (i, finding) in report.findings.iter().enumerate() {
                let fingerprint = importers::fingerprint(tenant_id, source.target, finding);
                match by_fingerprint.get(&fingerprint) {
                    Some(&g) => groups[g].members.push(i),
                    None => {
                        by_fingerprint.insert(fingerprint.clone(), groups.len());
                        groups.push(Group {
                            fingerprint,
                            members: vec![i],
                            severity: finding.severity,
                            cve: finding.cve.clone(),
                            intro: 0,
                            fix: None,
                            back: None,
                            triaged: false,
                        });
                    }
                }
            }
            Ok(Asset {
                source,
                report,
                groups,
            })
        })
        .collect()
}

/// Approval requests: justification, and the approver's comment when approved.
const APPROVALS: &[(&str, Option<&str>)] = &[
    (
        "Compensating control: JNDI lookups are disabled (log4j2.formatMsgNoLookups=true) and \
         the service has no outbound internet access. The upgrade to log4j 2.17 ships with the \
         next ledger release.",
        Some("Approved for the quarter: both controls verified in production."),
    ),
    (
        "glibc cannot be upgraded before the base image moves to Debian 12; the vulnerable \
         function is not reachable from the checkout API's code paths.",
        None,
    ),
];

/// Picks the triaged findings (and makes them stay reported to the end), with the
/// fraction of the period at which each step happens.
fn choose_triage(assets: &mut [Asset]) -> Vec<(f64, Step)> {
    let mut taken = HashSet::new();
    let serious = |g: &Group| g.severity >= Severity::High;
    let mut steps = Vec::new();
    let log4shell = choose(assets, &mut taken, LEDGER, |g| {
        g.cve.as_deref() == Some("CVE-2021-44228")
    })
    .or_else(|| choose(assets, &mut taken, LEDGER, serious));
    if let Some(target) = log4shell {
        steps.push((0.58, Step::RequestApproval(target, APPROVALS[0].0, 0)));
    }
    if let Some(target) = choose(assets, &mut taken, CHECKOUT, |g| {
        g.severity == Severity::Critical
    })
    .or_else(|| choose(assets, &mut taken, CHECKOUT, serious))
    {
        steps.push((0.93, Step::RequestApproval(target, APPROVALS[1].0, 1)));
    }
    if let Some(target) = choose(assets, &mut taken, DEBIAN, |g| g.severity == Severity::Low)
        .or_else(|| choose(assets, &mut taken, DEBIAN, |g| g.severity < Severity::High))
    {
        steps.push((
            0.52,
            Step::AcceptRisk(
                target,
                "Only exploitable with local shell access, which the image does not grant; \
                 revisit when the base image is rebuilt.",
            ),
        ));
    }
    for fraction in [0.22, 0.31, 0.40] {
        if let Some(target) = choose(assets, &mut taken, DEBIAN, serious) {
            steps.push((fraction, Step::Confirm(target)));
        }
    }
    for (fraction, why) in [
        (
            0.27,
            "The variable is set by the deploy pipeline and never contains spaces; quoting it \
             changes nothing.",
        ),
        (
            0.48,
            "Intentional word splitting: the flags are passed as separate arguments.",
        ),
    ] {
        if let Some(target) = choose(assets, &mut taken, SCRIPTS, |_| true) {
            steps.push((fraction, Step::FalsePositive(target, why)));
        }
    }
    for &(asset, group) in &taken {
        assets[asset].groups[group].triaged = true;
    }
    steps
}

/// The first untaken group of `prefer` that `wanted`, else of any asset.
fn choose(
    assets: &[Asset],
    taken: &mut HashSet<Target>,
    prefer: usize,
    wanted: impl Fn(&Group) -> bool,
) -> Option<Target> {
    let order = std::iter::once(prefer).chain((0..assets.len()).filter(|&a| a != prefer));
    for asset in order {
        for (group, g) in assets[asset].groups.iter().enumerate() {
            if wanted(g) && taken.insert((asset, group)) {
                return Some((asset, group));
            }
        }
    }
    None
}

/// When each untriaged finding is reported: most from the first round, some from a later
/// one; about a third patched in a later round, and a few of those back again.
fn plan_rounds(assets: &mut [Asset], rounds: usize) {
    let last = rounds as u64 - 1;
    for (a, asset) in assets.iter_mut().enumerate() {
        let mut rng = Rng::new(SEED ^ a as u64);
        for group in asset.groups.iter_mut().filter(|g| !g.triaged) {
            let intro = if rng.chance(0.8) {
                0
            } else {
                1 + rng.below(last)
            };
            let fix =
                (intro < last && rng.chance(0.35)).then(|| intro + 1 + rng.below(last - intro));
            let back = fix
                .filter(|&f| f < last && rng.chance(0.12))
                .map(|f| f + 1 + rng.below(last - f));
            group.intro = intro as usize;
            group.fix = fix.map(|f| f as usize);
            group.back = back.map(|b| b as usize);
        }
    }
}

struct Replay<'a> {
    commands: &'a CommandService,
    cast: &'a Cast,
    assets: &'a [Asset],
    loaded: Loaded,
    /// Approvals requested by this run, by key.
    approvals: HashMap<usize, (Uuid, Uuid)>,
    requested: u64,
}

impl Replay<'_> {
    fn pool(&self) -> &PgPool {
        self.commands.store().pool()
    }

    async fn run(&mut self, step: Step, at: DateTime<Utc>) -> anyhow::Result<()> {
        let done = match step {
            Step::Scan { asset, round } => {
                self.scan(asset, round, at).await?;
                return Ok(());
            }
            Step::Confirm(target) => {
                self.change_status(target, FindingStatus::Confirmed, None, at)
                    .await?
            }
            Step::FalsePositive(target, why) => {
                self.change_status(target, FindingStatus::FalsePositive, Some(why), at)
                    .await?
            }
            Step::AcceptRisk(target, why) => self.accept_risk(target, why, at).await?,
            Step::RequestApproval(target, why, key) => {
                self.request_approval(target, why, key, at).await?
            }
            Step::Approve(key, comment) => self.approve(key, comment, at).await?,
        };
        if !done {
            self.loaded.triage.skipped += 1;
        }
        Ok(())
    }

    async fn scan(&mut self, a: usize, round: usize, at: DateTime<Utc>) -> anyhow::Result<()> {
        let asset = &self.assets[a];
        let findings = asset
            .groups
            .iter()
            .filter(|g| g.reported_in(round))
            .flat_map(|g| g.members.iter().map(|&i| asset.report.findings[i].clone()))
            .collect();
        let report = ParsedReport {
            format: asset.report.format,
            findings,
            tool: asset.report.tool.clone(),
        };
        let ctx = self.cast.scanner_context();
        let scan_id = Uuid::now_v7();
        let source = asset.source;
        let mut rng = Rng::new(SEED ^ ((a as u64) << 8) ^ round as u64);
        let (branch, commit) = if source.repository {
            (
                Some("main".to_owned()),
                Some(format!(
                    "{:016x}{:016x}{:08x}",
                    rng.next_u64(),
                    rng.next_u64(),
                    rng.next_u64() as u32
                )),
            )
        } else {
            (None, None)
        };
        self.commands
            .execute_with::<Scan>(
                &ctx,
                &scan_id.to_string(),
                None,
                ScanCommand::LaunchScan {
                    target: source.target.to_owned(),
                    scanner: source.scanner.to_owned(),
                    profile: None,
                    branch,
                    commit,
                    tags: vec![format!("team:{}", source.team)],
                    at: at - Duration::minutes(4),
                },
                &(),
                &ScanIndex,
            )
            .await?;
        let ingested = crate::ingest::ingest(self.commands.store(), &ctx, scan_id, &report, at)
            .await
            .map_err(|e| anyhow::anyhow!("recording {} on {}: {e}", source.file, source.target))?;
        self.loaded.findings_created += ingested.counts.new;
        self.loaded.findings_resolved += ingested.counts.resolved;
        self.loaded.findings_reopened += ingested.counts.reopened;
        self.loaded.scans += 1;
        Ok(())
    }

    /// The finding a target names, with its state, if it exists.
    async fn finding(&self, (a, g): Target) -> anyhow::Result<Option<(Uuid, Finding, u64)>> {
        let fingerprint = &self.assets[a].groups[g].fingerprint;
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT finding_id FROM finding_index WHERE tenant_id = $1 AND fingerprint = $2",
        )
        .bind(self.cast.tenant_id)
        .bind(fingerprint)
        .fetch_optional(self.pool())
        .await?;
        let Some(id) = id else { return Ok(None) };
        let loaded = self
            .commands
            .store()
            .load::<Finding>(self.cast.tenant_id, &id.to_string())
            .await?;
        Ok(Some((id, loaded.aggregate, loaded.version)))
    }

    /// Triage only applies to a finding nobody has triaged yet (a second run skips).
    async fn untriaged(&self, target: Target) -> anyhow::Result<Option<(Uuid, Finding, u64)>> {
        Ok(self
            .finding(target)
            .await?
            .filter(|(_, f, _)| f.status == FindingStatus::Open))
    }

    async fn change_status(
        &mut self,
        target: Target,
        status: FindingStatus,
        justification: Option<&str>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let Some((id, _, version)) = self.untriaged(target).await? else {
            return Ok(false);
        };
        let ctx = self
            .cast
            .lead
            .context(self.cast.tenant_id, &self.cast.request_id);
        self.commands
            .execute_with::<Finding>(
                &ctx,
                &id.to_string(),
                Some(version),
                FindingCommand::ChangeStatus {
                    status,
                    justification: justification.map(str::to_owned),
                    at,
                },
                &(),
                &FindingIndex,
            )
            .await?;
        match status {
            FindingStatus::FalsePositive => self.loaded.triage.false_positives += 1,
            _ => self.loaded.triage.confirmed += 1,
        }
        Ok(true)
    }

    async fn accept_risk(
        &mut self,
        target: Target,
        why: &str,
        at: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let Some((id, _, version)) = self.untriaged(target).await? else {
            return Ok(false);
        };
        let ctx = self
            .cast
            .lead
            .context(self.cast.tenant_id, &self.cast.request_id);
        self.commands
            .execute_with::<Finding>(
                &ctx,
                &id.to_string(),
                Some(version),
                FindingCommand::AcceptRisk {
                    justification: why.to_owned(),
                    expires_at: expiry(at),
                    approval: None,
                    at,
                },
                &(),
                &FindingIndex,
            )
            .await?;
        self.loaded.triage.risk_accepted += 1;
        Ok(true)
    }

    /// What `POST /findings/{id}/accept-risk` does for a HIGH or CRITICAL finding.
    async fn request_approval(
        &mut self,
        target: Target,
        why: &str,
        key: usize,
        at: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let Some((finding_id, finding, _)) = self.untriaged(target).await? else {
            return Ok(false);
        };
        let pending: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM approval_index \
             WHERE tenant_id = $1 AND finding_id = $2 AND status = 'PENDING')",
        )
        .bind(self.cast.tenant_id)
        .bind(finding_id)
        .fetch_one(self.pool())
        .await?;
        if pending {
            return Ok(false);
        }
        let expires_at = expiry(at);
        let requester = &self.cast.admin;
        // Refuse now what the finding would refuse on approval, as the handler does.
        finding.decide(FindingCommand::AcceptRisk {
            justification: why.to_owned(),
            expires_at,
            approval: Some(ApprovalRef {
                approval_id: Uuid::nil(),
                approved_by: requester.id,
            }),
            at,
        })?;
        let approval_id = Uuid::now_v7();
        let ctx = requester.context(self.cast.tenant_id, &self.cast.request_id);
        self.commands
            .execute_with::<Approval>(
                &ctx,
                &approval_id.to_string(),
                None,
                ApprovalCommand::RequestRiskAcceptance {
                    finding_id,
                    requested_by: requester.id,
                    justification: why.to_owned(),
                    expires_at,
                    at,
                },
                &(),
                &ApprovalIndex,
            )
            .await?;
        self.approvals.insert(key, (approval_id, finding_id));
        self.requested += 1;
        Ok(true)
    }

    /// The lead approves (`PATCH /approvals/{id}/transition`), then the acceptance is
    /// applied with the command the approvals process manager sends, under its name.
    async fn approve(
        &mut self,
        key: usize,
        comment: &str,
        at: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let Some(&(approval_id, finding_id)) = self.approvals.get(&key) else {
            return Ok(false);
        };
        let lead = &self.cast.lead;
        let ctx = lead.context(self.cast.tenant_id, &self.cast.request_id);
        let decided = self
            .commands
            .execute_with::<Approval>(
                &ctx,
                &approval_id.to_string(),
                Some(1),
                ApprovalCommand::Approve {
                    by: Decider {
                        user_id: lead.id,
                        role: lead.role,
                    },
                    comment: Some(comment.to_owned()),
                    at,
                },
                &(),
                &ApprovalIndex,
            )
            .await?;
        let Some(ApprovalEvent::ApprovalApproved(approved)) = decided.events.into_iter().next()
        else {
            anyhow::bail!("approving {approval_id} recorded no ApprovalApproved");
        };
        let process = CommandContext {
            tenant_id: self.cast.tenant_id,
            actor: Actor::system("approvals"),
            request_id: self.cast.request_id.clone(),
        };
        self.commands
            .execute_with::<Finding>(
                &process,
                &finding_id.to_string(),
                None,
                approved.accept_risk(approval_id),
                &(),
                &FindingIndex,
            )
            .await?;
        self.loaded.triage.approvals_applied += 1;
        Ok(true)
    }
}

/// 90 days after the decision, but still in force for a month from today when the
/// history is long; never beyond what the domain allows. Microseconds, as stored.
fn expiry(at: DateTime<Utc>) -> DateTime<Utc> {
    let wanted = (at + Duration::days(90)).max(Utc::now() + Duration::days(30));
    wanted
        .min(at + Duration::days(vulnledger_aggregates::MAX_RISK_ACCEPTANCE_DAYS))
        .trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_report_parses_and_the_triage_finds_its_targets() {
        let mut assets = parse(Uuid::nil()).unwrap();
        assert_eq!(assets.len(), SOURCES.len());
        assert!(assets.iter().all(|a| !a.groups.is_empty()));
        let triage = choose_triage(&mut assets);
        assert_eq!(triage.len(), 8, "{triage:?}");
        let (_, Step::RequestApproval((asset, group), _, 0)) = triage[0] else {
            panic!("{triage:?}");
        };
        assert_eq!(
            assets[asset].groups[group].cve.as_deref(),
            Some("CVE-2021-44228")
        );
    }

    #[test]
    fn some_findings_are_patched_and_one_comes_back() {
        let mut assets = parse(Uuid::nil()).unwrap();
        choose_triage(&mut assets);
        plan_rounds(&mut assets, 9);
        let groups = || assets.iter().flat_map(|a| &a.groups);
        assert!(groups().filter(|g| g.fix.is_some()).count() >= 10);
        assert!(groups().any(|g| g.back.is_some()));
        assert!(groups().any(|g| g.intro > 0));
        assert_eq!(groups().filter(|g| g.triaged).count(), 8);
        assert!(groups()
            .filter(|g| g.triaged)
            .all(|g| (0..9).all(|round| g.reported_in(round))));
    }
}
