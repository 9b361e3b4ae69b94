//! Finding: one vulnerability on one asset, identified by the scanner's fingerprint, and its
//! triage workflow (see `FindingStatus::can_become` for the lifecycle table).
//!
//! Scanner-driven changes (`FindingAutoResolved`, `FindingReopened`) are separate events from
//! human triage (`FindingStatusChanged`) because they carry different evidence (a scan, not a
//! justification) and audit views must tell them apart. Redetection of an open finding is not
//! recorded here, so a finding's history grows with decisions, not with scan frequency.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::check_existence;
use crate::risk_acceptance::validate_expiry;
use crate::{text, ApprovalRef, DomainError, FindingStatus, RiskAcceptance, Severity};

mod details;
#[cfg(test)]
mod tests;

pub use details::FindingDetails;

#[allow(
    clippy::large_enum_variant,
    reason = "commands are built and consumed one at a time; boxing would only add noise"
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FindingCommand {
    DetectFinding {
        details: FindingDetails,
        scan_id: Uuid,
        at: DateTime<Utc>,
    },
    /// Sent when a newer report of the same target and scanner no longer contains the finding.
    ResolveFinding {
        scan_id: Uuid,
        at: DateTime<Utc>,
    },
    /// Sent when a scan sees a RESOLVED finding again.
    ReopenFinding {
        scan_id: Uuid,
        at: DateTime<Utc>,
    },
    /// Manual triage by a person.
    ChangeStatus {
        status: FindingStatus,
        justification: Option<String>,
        at: DateTime<Utc>,
    },
    AcceptRisk {
        justification: String,
        expires_at: DateTime<Utc>,
        approval: Option<ApprovalRef>,
        at: DateTime<Utc>,
    },
    RevokeRisk {
        at: DateTime<Utc>,
    },
    /// Fired by a durable timer set for `expires_at`. Timers may fire late, twice, or after the
    /// acceptance they were set for was replaced, so this carries which deadline it is for.
    ExpireRiskAcceptance {
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

impl FindingCommand {
    fn creates(&self) -> bool {
        matches!(self, FindingCommand::DetectFinding { .. })
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "events are handled one at a time; boxing would leak into every projection's match"
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum FindingEvent {
    FindingDetected(FindingDetected),
    FindingAutoResolved(FindingAutoResolved),
    FindingReopened(FindingReopened),
    FindingStatusChanged(FindingStatusChanged),
    RiskAccepted(RiskAccepted),
    RiskAcceptanceRevoked(RiskAcceptanceRevoked),
    RiskAcceptanceExpired(RiskAcceptanceExpired),
}

domain_events!(FindingEvent for Finding {
    FindingDetected => "1.0",
    FindingAutoResolved => "1.0",
    FindingReopened => "1.0",
    FindingStatusChanged => "1.0",
    RiskAccepted => "1.0",
    RiskAcceptanceRevoked => "1.0",
    RiskAcceptanceExpired => "1.0",
});

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindingDetected {
    pub details: FindingDetails,
    pub scan_id: Uuid,
    pub detected_at: DateTime<Utc>,
}

/// Status becomes RESOLVED because `scan_id` no longer reported the finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindingAutoResolved {
    pub scan_id: Uuid,
    pub at: DateTime<Utc>,
}

/// Status goes from RESOLVED back to OPEN because `scan_id` reported the finding again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindingReopened {
    pub scan_id: Uuid,
    pub at: DateTime<Utc>,
}

/// A person's triage decision. `from` is recorded so audit views need no replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindingStatusChanged {
    pub from: FindingStatus,
    pub to: FindingStatus,
    pub justification: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RiskAccepted {
    pub justification: String,
    pub expires_at: DateTime<Utc>,
    pub approval_id: Option<Uuid>,
    pub approved_by: Option<Uuid>,
    pub at: DateTime<Utc>,
}

/// Status goes from RISK_ACCEPTED back to OPEN on request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RiskAcceptanceRevoked {
    pub at: DateTime<Utc>,
}

/// Status goes from RISK_ACCEPTED back to OPEN because the acceptance ran out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RiskAcceptanceExpired {
    pub at: DateTime<Utc>,
}

/// Finding state as rebuilt from its events.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Finding {
    /// `None` only before detection.
    pub details: Option<FindingDetails>,
    /// The scan that first detected it.
    pub scan_id: Option<Uuid>,
    pub status: FindingStatus,
    pub first_seen: Option<DateTime<Utc>>,
    /// Set while RESOLVED.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Set while RISK_ACCEPTED.
    pub risk_acceptance: Option<RiskAcceptance>,
    /// Every approval ever applied here. An approval authorises one acceptance: a retried
    /// accept for it must not re-accept after the acceptance was revoked or expired.
    pub approvals_used: Vec<Uuid>,
    /// Events applied so far; the HTTP layer's ETag.
    pub version: u64,
}

impl Finding {
    fn exists(&self) -> bool {
        self.version > 0
    }

    pub fn severity(&self) -> Option<Severity> {
        self.details.as_ref().map(|d| d.severity)
    }

    /// The events `command` produces, without changing `self`.
    pub fn decide(&self, command: FindingCommand) -> Result<Vec<FindingEvent>, DomainError> {
        check_existence(self.exists(), command.creates())?;
        let events = match command {
            FindingCommand::DetectFinding {
                details,
                scan_id,
                at,
            } => vec![FindingDetected {
                details: details.validated()?,
                scan_id,
                detected_at: at,
            }
            .into()],
            FindingCommand::ResolveFinding { scan_id, at } => {
                self.ensure_can_become(FindingStatus::Resolved)?;
                vec![FindingAutoResolved { scan_id, at }.into()]
            }
            FindingCommand::ReopenFinding { scan_id, at } => {
                self.ensure_status(FindingStatus::Resolved, FindingStatus::Open)?;
                vec![FindingReopened { scan_id, at }.into()]
            }
            FindingCommand::ChangeStatus {
                status,
                justification,
                at,
            } => vec![self.change_status(status, justification, at)?.into()],
            FindingCommand::AcceptRisk {
                justification,
                expires_at,
                approval,
                at,
            } => self
                .accept_risk(justification, expires_at, approval, at)?
                .into_iter()
                .map(FindingEvent::from)
                .collect(),
            FindingCommand::RevokeRisk { at } => {
                self.ensure_status(FindingStatus::RiskAccepted, FindingStatus::Open)?;
                vec![RiskAcceptanceRevoked { at }.into()]
            }
            FindingCommand::ExpireRiskAcceptance { expires_at, at } => {
                if self.acceptance_due(expires_at, at) {
                    vec![RiskAcceptanceExpired { at }.into()]
                } else {
                    Vec::new()
                }
            }
        };
        Ok(events)
    }

    fn change_status(
        &self,
        to: FindingStatus,
        justification: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<FindingStatusChanged, DomainError> {
        if to == FindingStatus::RiskAccepted {
            // Accepting risk needs an expiry and possibly an approval; triage cannot supply them.
            return Err(DomainError::transition(self.status, to));
        }
        self.ensure_can_become(to)?;
        // Dismissing a finding must leave a reason behind for whoever audits it later.
        let justification = match to {
            FindingStatus::FalsePositive | FindingStatus::Resolved => Some(text::required(
                "justification",
                justification.as_deref().unwrap_or_default(),
                text::MAX_PROSE,
            )?),
            _ => text::optional("justification", justification, text::MAX_PROSE)?,
        };
        Ok(FindingStatusChanged {
            from: self.status,
            to,
            justification,
            at,
        })
    }

    fn accept_risk(
        &self,
        justification: String,
        expires_at: DateTime<Utc>,
        approval: Option<ApprovalRef>,
        at: DateTime<Utc>,
    ) -> Result<Option<RiskAccepted>, DomainError> {
        if approval.is_some_and(|a| self.approvals_used.contains(&a.approval_id)) {
            // The approval process manager retries; a repeat of the same approval is a no-op.
            return Ok(None);
        }
        self.ensure_can_become(FindingStatus::RiskAccepted)?;
        let justification = text::required("justification", &justification, text::MAX_PROSE)?;
        validate_expiry(expires_at, at)?;
        if approval.is_none() && self.severity().is_some_and(|s| s >= Severity::High) {
            return Err(DomainError::ApprovalRequired);
        }
        Ok(Some(RiskAccepted {
            justification,
            expires_at,
            approval_id: approval.map(|a| a.approval_id),
            approved_by: approval.map(|a| a.approved_by),
            at,
        }))
    }

    /// Only the timer set for the acceptance in force may end it, and only once it is due.
    fn acceptance_due(&self, expires_at: DateTime<Utc>, at: DateTime<Utc>) -> bool {
        self.status == FindingStatus::RiskAccepted
            && self
                .risk_acceptance
                .as_ref()
                .is_some_and(|current| current.expires_at == expires_at)
            && at >= expires_at
    }

    fn ensure_can_become(&self, to: FindingStatus) -> Result<(), DomainError> {
        if !self.status.can_become(to) {
            return Err(DomainError::transition(self.status, to));
        }
        Ok(())
    }

    /// For commands that leave one particular status, on top of the lifecycle table.
    fn ensure_status(&self, from: FindingStatus, to: FindingStatus) -> Result<(), DomainError> {
        if self.status != from {
            return Err(DomainError::transition(self.status, to));
        }
        self.ensure_can_become(to)
    }

    fn set_status(&mut self, to: FindingStatus, at: DateTime<Utc>) {
        self.status = to;
        self.resolved_at = (to == FindingStatus::Resolved).then_some(at);
        if to != FindingStatus::RiskAccepted {
            self.risk_acceptance = None;
        }
    }
}

impl Aggregate for Finding {
    const TYPE: &'static str = "finding";
    type Command = FindingCommand;
    type Event = FindingEvent;
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
            FindingEvent::FindingDetected(e) => {
                self.details = Some(e.details);
                self.scan_id = Some(e.scan_id);
                self.status = FindingStatus::Open;
                self.first_seen = Some(e.detected_at);
            }
            FindingEvent::FindingAutoResolved(e) => self.set_status(FindingStatus::Resolved, e.at),
            FindingEvent::FindingReopened(e) => self.set_status(FindingStatus::Open, e.at),
            FindingEvent::FindingStatusChanged(e) => self.set_status(e.to, e.at),
            FindingEvent::RiskAccepted(e) => {
                self.set_status(FindingStatus::RiskAccepted, e.at);
                self.approvals_used.extend(e.approval_id);
                self.risk_acceptance = Some(RiskAcceptance {
                    justification: e.justification,
                    expires_at: e.expires_at,
                    approval_id: e.approval_id,
                    approved_by: e.approved_by,
                    accepted_at: e.at,
                });
            }
            FindingEvent::RiskAcceptanceRevoked(e) => self.set_status(FindingStatus::Open, e.at),
            FindingEvent::RiskAcceptanceExpired(e) => self.set_status(FindingStatus::Open, e.at),
        }
    }
}
