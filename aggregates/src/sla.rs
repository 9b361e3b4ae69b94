//! Remediation deadlines per severity.

use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{DomainError, Severity};

/// Days allowed to remediate a finding of each severity, counted from first detection.
/// Serialized with the severity labels as keys, like `SeverityCounts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SlaPolicy {
    #[serde(rename = "CRITICAL")]
    pub critical: u32,
    #[serde(rename = "HIGH")]
    pub high: u32,
    #[serde(rename = "MEDIUM")]
    pub medium: u32,
    #[serde(rename = "LOW")]
    pub low: u32,
    #[serde(rename = "INFO")]
    pub info: u32,
}

impl SlaPolicy {
    /// A deadline shorter than a day cannot be met by any real process.
    pub const MIN_DAYS: u32 = 1;
    /// Ten years: beyond that a deadline no longer means anything.
    pub const MAX_DAYS: u32 = 3650;

    pub fn days(&self, severity: Severity) -> u32 {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Info => self.info,
        }
    }

    /// When a finding of `severity` first seen at `first_seen` becomes overdue.
    pub fn due_at(&self, severity: Severity, first_seen: DateTime<Utc>) -> DateTime<Utc> {
        first_seen + Duration::days(i64::from(self.days(severity)))
    }

    /// Reports the first out-of-range value, most severe first, as `policy.<SEVERITY>`.
    pub fn validate(&self) -> Result<(), DomainError> {
        for severity in Severity::ALL {
            let days = self.days(severity);
            if !(Self::MIN_DAYS..=Self::MAX_DAYS).contains(&days) {
                return Err(DomainError::invalid(
                    format!("policy.{severity}"),
                    format!(
                        "must be between {} and {} days",
                        Self::MIN_DAYS,
                        Self::MAX_DAYS
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Default for SlaPolicy {
    fn default() -> Self {
        Self {
            critical: 7,
            high: 30,
            medium: 90,
            low: 180,
            info: 365,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{days, t0};

    #[test]
    fn default_policy_is_7_30_90_180_365_days() {
        let policy = SlaPolicy::default();
        let expected = [7, 30, 90, 180, 365];
        for (severity, days) in Severity::ALL.into_iter().zip(expected) {
            assert_eq!(policy.days(severity), days);
        }
    }

    #[test]
    fn due_date_counts_days_from_first_seen() {
        assert_eq!(
            SlaPolicy::default().due_at(Severity::Critical, t0()),
            days(7)
        );
    }

    #[test]
    fn policy_serializes_with_uppercase_severity_keys() {
        assert_eq!(
            serde_json::to_value(SlaPolicy::default()).unwrap(),
            serde_json::json!({"CRITICAL": 7, "HIGH": 30, "MEDIUM": 90, "LOW": 180, "INFO": 365})
        );
    }

    #[test]
    fn out_of_range_values_name_the_severity_field() {
        let zero = SlaPolicy {
            high: 0,
            ..SlaPolicy::default()
        };
        assert_eq!(
            zero.validate(),
            Err(DomainError::invalid(
                "policy.HIGH",
                "must be between 1 and 3650 days"
            ))
        );
        let too_long = SlaPolicy {
            info: 3651,
            ..SlaPolicy::default()
        };
        assert!(matches!(
            too_long.validate(),
            Err(DomainError::Invalid { field, .. }) if field == "policy.INFO"
        ));
        let bounds = SlaPolicy {
            critical: 1,
            info: 3650,
            ..SlaPolicy::default()
        };
        assert_eq!(bounds.validate(), Ok(()));
    }
}
