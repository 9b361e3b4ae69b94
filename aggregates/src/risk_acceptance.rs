//! Risk acceptance: a time-boxed decision to live with a finding.

use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DomainError;

/// Acceptances must be revisited at least yearly; an open-ended one is a finding forgotten.
pub const MAX_RISK_ACCEPTANCE_DAYS: i64 = 365;

/// The approval that authorised a risk acceptance. Also the idempotency key that lets the
/// approval process manager resend the accept command safely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRef {
    pub approval_id: Uuid,
    pub approved_by: Uuid,
}

/// The acceptance currently in force on a finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RiskAcceptance {
    pub justification: String,
    pub expires_at: DateTime<Utc>,
    pub approval_id: Option<Uuid>,
    pub approved_by: Option<Uuid>,
    pub accepted_at: DateTime<Utc>,
}

/// The same window applies when requesting an approval and when accepting, so a request that
/// was valid stays valid to accept (provided it has not lapsed in between).
pub fn validate_expiry(expires_at: DateTime<Utc>, at: DateTime<Utc>) -> Result<(), DomainError> {
    if expires_at <= at {
        return Err(DomainError::invalid("expiresAt", "must be in the future"));
    }
    if expires_at > at + Duration::days(MAX_RISK_ACCEPTANCE_DAYS) {
        return Err(DomainError::invalid(
            "expiresAt",
            format!("must be at most {MAX_RISK_ACCEPTANCE_DAYS} days ahead"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{days, hours, t0};

    #[test]
    fn expiry_must_be_strictly_after_now() {
        assert_eq!(
            validate_expiry(t0(), t0()),
            Err(DomainError::invalid("expiresAt", "must be in the future"))
        );
        assert!(validate_expiry(hours(-1), t0()).is_err());
        assert_eq!(validate_expiry(hours(1), t0()), Ok(()));
    }

    #[test]
    fn expiry_may_be_at_most_365_days_ahead() {
        assert_eq!(validate_expiry(days(365), t0()), Ok(()));
        assert_eq!(
            validate_expiry(days(365) + Duration::seconds(1), t0()),
            Err(DomainError::invalid(
                "expiresAt",
                "must be at most 365 days ahead"
            ))
        );
    }
}
