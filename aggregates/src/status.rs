//! Lifecycle statuses of scans, findings and approvals.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Triage status of a finding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FindingStatus {
    #[default]
    Open,
    Confirmed,
    FalsePositive,
    RiskAccepted,
    Resolved,
}

labelled_enum!(FindingStatus, "status", {
    Open => "OPEN",
    Confirmed => "CONFIRMED",
    FalsePositive => "FALSE_POSITIVE",
    RiskAccepted => "RISK_ACCEPTED",
    Resolved => "RESOLVED",
});

impl FindingStatus {
    /// Still needs remediation: counts against SLAs and open-finding totals.
    pub const fn is_open(self) -> bool {
        matches!(self, FindingStatus::Open | FindingStatus::Confirmed)
    }

    /// The whole finding lifecycle in one table. Every finding command consults it, and adds
    /// only its own narrowing on top (e.g. manual triage may not pick RISK_ACCEPTED, which
    /// needs the accept-risk command and its checks).
    pub const fn can_become(self, to: FindingStatus) -> bool {
        use FindingStatus::*;
        matches!(
            (self, to),
            (Open, Confirmed | FalsePositive | RiskAccepted | Resolved)
                | (Confirmed, FalsePositive | RiskAccepted | Resolved)
                | (FalsePositive, Open)
                | (RiskAccepted, Open | Resolved)
                | (Resolved, Open)
        )
    }
}

/// Where a scan is in its run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScanStatus {
    #[default]
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

labelled_enum!(ScanStatus, "status", {
    Queued => "QUEUED",
    Running => "RUNNING",
    Completed => "COMPLETED",
    Failed => "FAILED",
    Cancelled => "CANCELLED",
});

impl ScanStatus {
    /// A finished scan is immutable: its report is what later scans are compared against.
    pub const fn is_finished(self) -> bool {
        matches!(
            self,
            ScanStatus::Completed | ScanStatus::Failed | ScanStatus::Cancelled
        )
    }
}

/// Where an approval request stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApprovalStatus {
    #[default]
    Pending,
    Approved,
    Rejected,
    Withdrawn,
}

labelled_enum!(ApprovalStatus, "status", {
    Pending => "PENDING",
    Approved => "APPROVED",
    Rejected => "REJECTED",
    Withdrawn => "WITHDRAWN",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_lifecycle_table_allows_exactly_the_documented_transitions() {
        use FindingStatus::*;
        let legal = [
            (Open, Confirmed),
            (Open, FalsePositive),
            (Open, RiskAccepted),
            (Open, Resolved),
            (Confirmed, FalsePositive),
            (Confirmed, RiskAccepted),
            (Confirmed, Resolved),
            (FalsePositive, Open),
            (RiskAccepted, Open),
            (RiskAccepted, Resolved),
            (Resolved, Open),
        ];
        for from in FindingStatus::ALL {
            for to in FindingStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn only_open_and_confirmed_findings_count_as_open() {
        let open: Vec<_> = FindingStatus::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .collect();
        assert_eq!(open, vec![FindingStatus::Open, FindingStatus::Confirmed]);
    }

    #[test]
    fn completed_failed_and_cancelled_scans_are_finished() {
        let finished: Vec<_> = ScanStatus::ALL
            .into_iter()
            .filter(|s| s.is_finished())
            .collect();
        assert_eq!(
            finished,
            vec![
                ScanStatus::Completed,
                ScanStatus::Failed,
                ScanStatus::Cancelled
            ]
        );
    }

    #[test]
    fn statuses_serialize_as_their_labels_and_parse_back_ignoring_case() {
        fn check<T>(all: &[T])
        where
            T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + Serialize,
            T: std::str::FromStr<Err = crate::DomainError>,
        {
            for value in all {
                let label = value.to_string();
                assert_eq!(
                    serde_json::to_string(value).unwrap(),
                    format!("\"{label}\"")
                );
                assert_eq!(label.to_lowercase().parse::<T>(), Ok(*value));
            }
        }
        check(&FindingStatus::ALL);
        check(&ScanStatus::ALL);
        check(&ApprovalStatus::ALL);
        assert_eq!(FindingStatus::FalsePositive.to_string(), "FALSE_POSITIVE");
        assert_eq!(
            "risk_accepted".parse::<FindingStatus>(),
            Ok(FindingStatus::RiskAccepted)
        );
        assert!(matches!(
            "closed".parse::<FindingStatus>(),
            Err(crate::DomainError::Invalid { field, .. }) if field == "status"
        ));
    }
}
