//! Severity and per-severity tallies.

use std::cmp::Ordering;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered so that `Critical` is the greatest, which lets policy read
/// naturally (`severity >= Severity::High`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

labelled_enum!(Severity, "severity", {
    Critical => "CRITICAL",
    High => "HIGH",
    Medium => "MEDIUM",
    Low => "LOW",
    Info => "INFO",
});

impl Severity {
    /// Declaration order follows the API's listing (most severe first), so ordering
    /// cannot be derived and is spelled out here instead.
    pub const fn rank(self) -> u8 {
        match self {
            Severity::Critical => 4,
            Severity::High => 3,
            Severity::Medium => 2,
            Severity::Low => 1,
            Severity::Info => 0,
        }
    }
}

impl Ord for Severity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for Severity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Counts keyed by severity, serialized with the severity labels as keys so that dashboards
/// and scan summaries share one shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SeverityCounts {
    #[serde(rename = "CRITICAL")]
    pub critical: u64,
    #[serde(rename = "HIGH")]
    pub high: u64,
    #[serde(rename = "MEDIUM")]
    pub medium: u64,
    #[serde(rename = "LOW")]
    pub low: u64,
    #[serde(rename = "INFO")]
    pub info: u64,
}

impl SeverityCounts {
    pub fn add(&mut self, severity: Severity) {
        *self.slot(severity) += 1;
    }

    pub fn get(&self, severity: Severity) -> u64 {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Info => self.info,
        }
    }

    pub fn total(&self) -> u64 {
        Severity::ALL.iter().map(|s| self.get(*s)).sum()
    }

    fn slot(&mut self, severity: Severity) -> &mut u64 {
        match severity {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::Info => &mut self.info,
        }
    }
}

impl FromIterator<Severity> for SeverityCounts {
    fn from_iter<I: IntoIterator<Item = Severity>>(iter: I) -> Self {
        let mut counts = Self::default();
        iter.into_iter().for_each(|s| counts.add(s));
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DomainError;

    #[test]
    fn critical_is_the_highest_and_info_the_lowest() {
        let mut sorted = vec![
            Severity::Low,
            Severity::Critical,
            Severity::Info,
            Severity::High,
            Severity::Medium,
        ];
        sorted.sort();
        assert_eq!(
            sorted,
            vec![
                Severity::Info,
                Severity::Low,
                Severity::Medium,
                Severity::High,
                Severity::Critical
            ]
        );
        assert!(Severity::Critical > Severity::High);
    }

    #[test]
    fn all_lists_the_most_severe_first() {
        assert_eq!(
            Severity::ALL,
            [
                Severity::Critical,
                Severity::High,
                Severity::Medium,
                Severity::Low,
                Severity::Info
            ]
        );
    }

    #[test]
    fn serde_display_and_parse_agree_on_uppercase_labels() {
        for severity in Severity::ALL {
            let json = serde_json::to_string(&severity).unwrap();
            assert_eq!(json, format!("\"{severity}\""));
            assert_eq!(severity.to_string().parse::<Severity>(), Ok(severity));
        }
        assert_eq!(
            serde_json::from_str::<Severity>("\"CRITICAL\"").unwrap(),
            Severity::Critical
        );
    }

    #[test]
    fn parsing_ignores_case_and_names_the_field_on_error() {
        assert_eq!("critical".parse::<Severity>(), Ok(Severity::Critical));
        assert_eq!("High".parse::<Severity>(), Ok(Severity::High));
        assert_eq!(
            "severe".parse::<Severity>(),
            Err(DomainError::invalid(
                "severity",
                "must be one of CRITICAL, HIGH, MEDIUM, LOW, INFO"
            ))
        );
    }

    #[test]
    fn counts_add_and_get_per_severity() {
        let mut counts = SeverityCounts::default();
        counts.add(Severity::High);
        counts.add(Severity::High);
        counts.add(Severity::Info);
        assert_eq!(counts.get(Severity::High), 2);
        assert_eq!(counts.get(Severity::Info), 1);
        assert_eq!(counts.get(Severity::Critical), 0);
        assert_eq!(counts.total(), 3);
        let collected: SeverityCounts = [Severity::High, Severity::High, Severity::Info]
            .into_iter()
            .collect();
        assert_eq!(collected, counts);
    }

    #[test]
    fn counts_serialize_with_uppercase_severity_keys() {
        let counts = SeverityCounts {
            critical: 1,
            high: 2,
            medium: 3,
            low: 4,
            info: 5,
        };
        assert_eq!(
            serde_json::to_value(counts).unwrap(),
            serde_json::json!({"CRITICAL": 1, "HIGH": 2, "MEDIUM": 3, "LOW": 4, "INFO": 5})
        );
    }
}
