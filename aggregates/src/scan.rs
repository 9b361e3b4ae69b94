//! Scan: one run of one scanner against one target, QUEUED → RUNNING → COMPLETED | FAILED | CANCELLED.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::check_existence;
use crate::{text, DomainError, ScanStatus, SeverityCounts};

#[cfg(test)]
mod tests;

/// What a scanner runner (or the HTTP API on its behalf) asks of a scan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ScanCommand {
    LaunchScan {
        target: String,
        scanner: String,
        profile: Option<String>,
        branch: Option<String>,
        commit: Option<String>,
        tags: Vec<String>,
        at: DateTime<Utc>,
    },
    /// Progress may only grow, so late or reordered reports cannot move a bar backwards.
    ReportProgress {
        percent: u8,
        step: Option<String>,
        at: DateTime<Utc>,
    },
    CompleteScan {
        format: String,
        summary: SeverityCounts,
        findings: FindingCounts,
        /// Every finding the report contained (new, redetected or reopened): recorded
        /// on the scan so a finding's own history grows only with its state changes.
        observed: Vec<Uuid>,
        at: DateTime<Utc>,
    },
    StopScan {
        at: DateTime<Utc>,
    },
    FailScan {
        reason: String,
        at: DateTime<Utc>,
    },
}

impl ScanCommand {
    fn creates(&self) -> bool {
        matches!(self, ScanCommand::LaunchScan { .. })
    }
}

/// How a completed report changed the finding set; computed by the caller, which alone
/// can compare the report with earlier scans of the same target and scanner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindingCounts {
    pub new: u64,
    pub redetected: u64,
    pub reopened: u64,
    pub resolved: u64,
    pub total: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum ScanEvent {
    ScanLaunched(ScanLaunched),
    ScanStarted(ScanStarted),
    ScanProgressed(ScanProgressed),
    FindingsObserved(FindingsObserved),
    ScanCompleted(ScanCompleted),
    ScanFailed(ScanFailed),
    ScanCancelled(ScanCancelled),
}

domain_events!(ScanEvent for Scan {
    ScanLaunched => "1.0",
    ScanStarted => "1.0",
    ScanProgressed => "1.0",
    FindingsObserved => "1.0",
    ScanCompleted => "1.0",
    ScanFailed => "1.0",
    ScanCancelled => "1.0",
});

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanLaunched {
    pub target: String,
    pub scanner: String,
    pub profile: Option<String>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub tags: Vec<String>,
    pub launched_at: DateTime<Utc>,
}

/// Implied by the first progress report or a completion, so runners need no separate call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanStarted {
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanProgressed {
    pub percent: u8,
    pub step: Option<String>,
    pub at: DateTime<Utc>,
}

/// Findings a completed scan saw, in chunks of at most [`OBSERVATIONS_PER_EVENT`]
/// so that no single event grows with the size of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindingsObserved {
    pub finding_ids: Vec<Uuid>,
    pub at: DateTime<Utc>,
}

pub const OBSERVATIONS_PER_EVENT: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanCompleted {
    pub format: String,
    pub summary: SeverityCounts,
    pub findings: FindingCounts,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanFailed {
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanCancelled {
    pub at: DateTime<Utc>,
}

/// Scan state as rebuilt from its events.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Scan {
    pub target: String,
    pub scanner: String,
    pub profile: Option<String>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub tags: Vec<String>,
    pub status: ScanStatus,
    pub percent: u8,
    /// Last step a runner named; a report without a step keeps it.
    pub step: Option<String>,
    pub summary: Option<SeverityCounts>,
    pub findings: Option<FindingCounts>,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    /// How many findings the results named (the ids live in the events only).
    pub observed: u64,
    /// Events applied so far; the HTTP layer's ETag.
    pub version: u64,
}

impl Scan {
    fn exists(&self) -> bool {
        self.version > 0
    }

    /// The events `command` produces, without changing `self`.
    pub fn decide(&self, command: ScanCommand) -> Result<Vec<ScanEvent>, DomainError> {
        check_existence(self.exists(), command.creates())?;
        match command {
            ScanCommand::LaunchScan {
                target,
                scanner,
                profile,
                branch,
                commit,
                tags,
                at,
            } => Ok(vec![ScanLaunched {
                target: text::required("target", &target, text::MAX_TARGET)?,
                scanner: text::required("scanner", &scanner, text::MAX_SCANNER)?,
                profile: text::optional("profile", profile, text::MAX_PROFILE)?,
                branch: text::optional("branch", branch, text::MAX_BRANCH)?,
                commit: text::optional("commit", commit, text::MAX_COMMIT)?,
                tags: text::tags(tags)?,
                launched_at: at,
            }
            .into()]),
            ScanCommand::ReportProgress { percent, step, at } => {
                self.ensure_unfinished(ScanStatus::Running)?;
                if percent > 100 {
                    return Err(DomainError::invalid("percent", "must be between 0 and 100"));
                }
                if percent < self.percent {
                    return Err(DomainError::invalid("percent", "must not decrease"));
                }
                let step = text::optional("step", step, text::MAX_STEP)?;
                let mut events = self.start_if_queued(at);
                events.push(ScanProgressed { percent, step, at }.into());
                Ok(events)
            }
            ScanCommand::CompleteScan {
                format,
                summary,
                findings,
                observed,
                at,
            } => {
                self.ensure_unfinished(ScanStatus::Completed)?;
                let format = text::required("format", &format, text::MAX_FORMAT)?;
                let mut events = self.start_if_queued(at);
                events.extend(observed.chunks(OBSERVATIONS_PER_EVENT).map(|ids| {
                    ScanEvent::from(FindingsObserved {
                        finding_ids: ids.to_vec(),
                        at,
                    })
                }));
                events.push(
                    ScanCompleted {
                        format,
                        summary,
                        findings,
                        at,
                    }
                    .into(),
                );
                Ok(events)
            }
            ScanCommand::StopScan { at } => {
                self.ensure_unfinished(ScanStatus::Cancelled)?;
                Ok(vec![ScanCancelled { at }.into()])
            }
            ScanCommand::FailScan { reason, at } => {
                self.ensure_unfinished(ScanStatus::Failed)?;
                let reason = text::required("reason", &reason, text::MAX_PROSE)?;
                Ok(vec![ScanFailed { reason, at }.into()])
            }
        }
    }

    fn ensure_unfinished(&self, to: ScanStatus) -> Result<(), DomainError> {
        if self.status.is_finished() {
            return Err(DomainError::transition(self.status, to));
        }
        Ok(())
    }

    fn start_if_queued(&self, at: DateTime<Utc>) -> Vec<ScanEvent> {
        match self.status {
            ScanStatus::Queued => vec![ScanStarted { at }.into()],
            _ => Vec::new(),
        }
    }
}

impl Aggregate for Scan {
    const TYPE: &'static str = "scan";
    type Command = ScanCommand;
    type Event = ScanEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.version += 1;
        match event {
            ScanEvent::ScanLaunched(e) => {
                self.target = e.target;
                self.scanner = e.scanner;
                self.profile = e.profile;
                self.branch = e.branch;
                self.commit = e.commit;
                self.tags = e.tags;
                self.status = ScanStatus::Queued;
                self.created_at = Some(e.launched_at);
            }
            ScanEvent::ScanStarted(e) => {
                self.status = ScanStatus::Running;
                self.started_at = Some(e.at);
            }
            ScanEvent::ScanProgressed(e) => {
                self.percent = e.percent;
                if e.step.is_some() {
                    self.step = e.step;
                }
            }
            ScanEvent::FindingsObserved(e) => {
                self.observed += e.finding_ids.len() as u64;
            }
            ScanEvent::ScanCompleted(e) => {
                self.status = ScanStatus::Completed;
                self.percent = 100;
                self.summary = Some(e.summary);
                self.findings = Some(e.findings);
                self.finished_at = Some(e.at);
            }
            ScanEvent::ScanFailed(e) => {
                self.status = ScanStatus::Failed;
                self.failure_reason = Some(e.reason);
                self.finished_at = Some(e.at);
            }
            ScanEvent::ScanCancelled(e) => {
                self.status = ScanStatus::Cancelled;
                self.finished_at = Some(e.at);
            }
        }
    }
}
