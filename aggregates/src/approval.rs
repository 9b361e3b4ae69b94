//! Approval: a request for a second person's consent, PENDING → APPROVED | REJECTED | WITHDRAWN.
//!
//! Today the only kind is risk acceptance of HIGH/CRITICAL findings. The approval is its own
//! aggregate, not part of the finding, so a pending request never blocks scanner-driven
//! changes to the finding, and the decision stays auditable even if the finding moves on.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::check_existence;
use crate::risk_acceptance::validate_expiry;
use crate::{text, ApprovalRef, ApprovalStatus, DomainError, FindingCommand, Role};

#[cfg(test)]
mod tests;

/// Who decides, with the role they held when deciding (roles change; the decision does not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decider {
    pub user_id: Uuid,
    pub role: Role,
}

/// What is being approved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApprovalKind {
    #[default]
    RiskAcceptance,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ApprovalCommand {
    RequestRiskAcceptance {
        finding_id: Uuid,
        requested_by: Uuid,
        justification: String,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    Approve {
        by: Decider,
        comment: Option<String>,
        at: DateTime<Utc>,
    },
    Reject {
        by: Decider,
        comment: Option<String>,
        at: DateTime<Utc>,
    },
    Withdraw {
        by: Uuid,
        comment: Option<String>,
        at: DateTime<Utc>,
    },
}

impl ApprovalCommand {
    fn creates(&self) -> bool {
        matches!(self, ApprovalCommand::RequestRiskAcceptance { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum ApprovalEvent {
    ApprovalRequested(ApprovalRequested),
    ApprovalApproved(ApprovalApproved),
    ApprovalRejected(ApprovalRejected),
    ApprovalWithdrawn(ApprovalWithdrawn),
}

domain_events!(ApprovalEvent for Approval {
    ApprovalRequested => "1.0",
    ApprovalApproved => "1.0",
    ApprovalRejected => "1.0",
    ApprovalWithdrawn => "1.0",
});

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequested {
    pub kind: ApprovalKind,
    pub finding_id: Uuid,
    pub requested_by: Uuid,
    pub justification: String,
    pub expires_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// Repeats the approved terms (finding, justification, expiry) so that the process manager
/// applying them needs only this event, and the audit trail shows exactly what was approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalApproved {
    pub decided_by: Uuid,
    pub decider_role: Role,
    pub comment: Option<String>,
    pub finding_id: Uuid,
    pub justification: String,
    pub expires_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

impl ApprovalApproved {
    /// The finding command that carries out this approval. Its `approval_id` makes resending
    /// it harmless, so the process manager may retry freely.
    pub fn accept_risk(&self, approval_id: Uuid) -> FindingCommand {
        FindingCommand::AcceptRisk {
            justification: self.justification.clone(),
            expires_at: self.expires_at,
            approval: Some(ApprovalRef {
                approval_id,
                approved_by: self.decided_by,
            }),
            at: self.at,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRejected {
    pub decided_by: Uuid,
    pub decider_role: Role,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalWithdrawn {
    pub by: Uuid,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// Approval state as rebuilt from its events. Request fields hold defaults until requested,
/// which `decide` never looks at because nothing but the request may run first.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Approval {
    pub kind: ApprovalKind,
    pub status: ApprovalStatus,
    pub finding_id: Uuid,
    pub requested_by: Uuid,
    pub justification: String,
    pub expires_at: DateTime<Utc>,
    pub requested_at: DateTime<Utc>,
    /// Who approved, rejected or withdrew.
    pub decided_by: Option<Uuid>,
    pub decided_at: Option<DateTime<Utc>>,
    pub comment: Option<String>,
    /// Events applied so far; the HTTP layer's ETag.
    pub version: u64,
}

/// Deciding on risk is a security lead's job; analysts may only ask.
const DECIDER_ROLE: Role = Role::SecurityLead;

impl Approval {
    fn exists(&self) -> bool {
        self.version > 0
    }

    /// The events `command` produces, without changing `self`.
    pub fn decide(&self, command: ApprovalCommand) -> Result<Vec<ApprovalEvent>, DomainError> {
        check_existence(self.exists(), command.creates())?;
        let event = match command {
            ApprovalCommand::RequestRiskAcceptance {
                finding_id,
                requested_by,
                justification,
                expires_at,
                at,
            } => {
                let justification =
                    text::required("justification", &justification, text::MAX_PROSE)?;
                validate_expiry(expires_at, at)?;
                ApprovalRequested {
                    kind: ApprovalKind::RiskAcceptance,
                    finding_id,
                    requested_by,
                    justification,
                    expires_at,
                    at,
                }
                .into()
            }
            ApprovalCommand::Approve { by, comment, at } => {
                self.check_decision(by, ApprovalStatus::Approved)?;
                if self.expires_at <= at {
                    return Err(DomainError::invalid("expiresAt", "has already passed"));
                }
                ApprovalApproved {
                    decided_by: by.user_id,
                    decider_role: by.role,
                    comment: text::optional("comment", comment, text::MAX_PROSE)?,
                    finding_id: self.finding_id,
                    justification: self.justification.clone(),
                    expires_at: self.expires_at,
                    at,
                }
                .into()
            }
            ApprovalCommand::Reject { by, comment, at } => {
                self.check_decision(by, ApprovalStatus::Rejected)?;
                ApprovalRejected {
                    decided_by: by.user_id,
                    decider_role: by.role,
                    comment: text::optional("comment", comment, text::MAX_PROSE)?,
                    at,
                }
                .into()
            }
            ApprovalCommand::Withdraw { by, comment, at } => {
                self.ensure_pending(ApprovalStatus::Withdrawn)?;
                if by != self.requested_by {
                    return Err(DomainError::forbidden(
                        "only the requester can withdraw a request",
                    ));
                }
                ApprovalWithdrawn {
                    by,
                    comment: text::optional("comment", comment, text::MAX_PROSE)?,
                    at,
                }
                .into()
            }
        };
        Ok(vec![event])
    }

    fn check_decision(&self, by: Decider, to: ApprovalStatus) -> Result<(), DomainError> {
        self.ensure_pending(to)?;
        if !by.role.at_least(DECIDER_ROLE) {
            return Err(DomainError::forbidden(format!(
                "deciding requires the {DECIDER_ROLE} role or higher"
            )));
        }
        // Four eyes: whoever asked for an exception may not grant (or refuse) it themselves.
        if by.user_id == self.requested_by {
            return Err(DomainError::forbidden(
                "separation of duties: the requester cannot decide",
            ));
        }
        Ok(())
    }

    fn ensure_pending(&self, to: ApprovalStatus) -> Result<(), DomainError> {
        if self.status != ApprovalStatus::Pending {
            return Err(DomainError::transition(self.status, to));
        }
        Ok(())
    }

    fn decided(
        &mut self,
        status: ApprovalStatus,
        by: Uuid,
        comment: Option<String>,
        at: DateTime<Utc>,
    ) {
        self.status = status;
        self.decided_by = Some(by);
        self.comment = comment;
        self.decided_at = Some(at);
    }
}

impl Aggregate for Approval {
    const TYPE: &'static str = "approval";
    type Command = ApprovalCommand;
    type Event = ApprovalEvent;
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
            ApprovalEvent::ApprovalRequested(e) => {
                self.kind = e.kind;
                self.status = ApprovalStatus::Pending;
                self.finding_id = e.finding_id;
                self.requested_by = e.requested_by;
                self.justification = e.justification;
                self.expires_at = e.expires_at;
                self.requested_at = e.at;
            }
            ApprovalEvent::ApprovalApproved(e) => {
                self.decided(ApprovalStatus::Approved, e.decided_by, e.comment, e.at)
            }
            ApprovalEvent::ApprovalRejected(e) => {
                self.decided(ApprovalStatus::Rejected, e.decided_by, e.comment, e.at)
            }
            ApprovalEvent::ApprovalWithdrawn(e) => {
                self.decided(ApprovalStatus::Withdrawn, e.by, e.comment, e.at)
            }
        }
    }
}
