//! vulnledger's pure domain: aggregates, their commands and events, and the value types they share.
//!
//! Nothing here performs I/O or reads the clock. Every command carries the time it happened at
//! (`at`), supplied by the caller, so that the HTTP layer (real time) and the demo loader
//! (simulated time) produce identical histories and tests are deterministic.
//!
//! Each aggregate exposes a pure `decide(&self, command) -> Result<Vec<Event>, DomainError>`;
//! its cqrs-es `handle` only writes what `decide` returned. This keeps the rules testable
//! without an event sink and makes "no events" (idempotent no-op) an explicit, visible outcome.

#[macro_use]
mod macros;

pub mod approval;
pub mod error;
pub mod event;
pub mod finding;
pub mod risk_acceptance;
pub mod role;
pub mod scan;
pub mod schema;
pub mod settings;
pub mod severity;
pub mod sla;
pub mod status;
pub mod text;

#[cfg(test)]
mod test_support;

pub use approval::{
    Approval, ApprovalApproved, ApprovalCommand, ApprovalEvent, ApprovalKind, ApprovalRejected,
    ApprovalRequested, ApprovalWithdrawn, Decider,
};
pub use error::DomainError;
pub use event::EventPayload;
pub use finding::{
    Finding, FindingAutoResolved, FindingCommand, FindingDetails, FindingDetected, FindingEvent,
    FindingReopened, FindingStatusChanged, RiskAcceptanceExpired, RiskAcceptanceRevoked,
    RiskAccepted,
};
pub use risk_acceptance::{ApprovalRef, RiskAcceptance, MAX_RISK_ACCEPTANCE_DAYS};
pub use role::Role;
pub use scan::{
    FindingCounts, FindingsObserved, Scan, ScanCancelled, ScanCommand, ScanCompleted, ScanEvent,
    ScanFailed, ScanLaunched, ScanProgressed, ScanStarted, OBSERVATIONS_PER_EVENT,
};
pub use schema::{event_schemas, EventSchema};
pub use settings::{SlaPolicyChanged, TenantSettings, TenantSettingsCommand, TenantSettingsEvent};
pub use severity::{Severity, SeverityCounts};
pub use sla::SlaPolicy;
pub use status::{ApprovalStatus, FindingStatus, ScanStatus};
