//! vulnledger's own format, for hand-made reports and custom tools:
//!
//! ```json
//! {"tool": "my-scanner 1.2",
//!  "findings": [{"title": "...", "severity": "high", "cvss": 7.5, "cve": "CVE-…",
//!                "ruleId": "...", "package": "...", "installedVersion": "...",
//!                "fixedVersion": "...", "location": "...", "description": "...",
//!                "tags": ["..."], "suppressed": false}]}
//! ```
//!
//! Only `title` and `severity` (CRITICAL, HIGH, MEDIUM, LOW, INFO, any case) are required.
//! Being our format, it is checked strictly: a blank title or a CVSS outside 0..=10 is an error
//! pointing at the field, not something silently dropped.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use vulnledger_aggregates::Severity;

use super::{json, ImportError, ImportedFinding, ReportFormat};

const FORMAT: ReportFormat = ReportFormat::Native;

pub(super) fn parse(bytes: &[u8]) -> Result<(Vec<ImportedFinding>, Option<String>), ImportError> {
    let report: Report = json::from_slice(bytes, FORMAT)?;
    let mut findings = Vec::with_capacity(report.findings.len());
    for (i, finding) in report.findings.into_iter().enumerate() {
        if finding.title.trim().is_empty() {
            return Err(ImportError::new(
                Some(FORMAT),
                format!("/findings/{i}/title"),
                "title must not be blank",
            ));
        }
        let mut f = ImportedFinding::new(finding.title, finding.severity.0);
        f.cvss = finding.cvss.map(|c| c.0);
        f.cve = finding.cve;
        f.rule_id = finding.rule_id;
        f.package = finding.package;
        f.installed_version = finding.installed_version;
        f.fixed_version = finding.fixed_version;
        f.location = finding.location;
        f.description = finding.description;
        f.tags = finding.tags.unwrap_or_default();
        f.suppressed = finding.suppressed.unwrap_or(false);
        findings.push(f);
    }
    Ok((findings, report.tool))
}

#[derive(Deserialize)]
struct Report {
    findings: Vec<Finding>,
    tool: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Finding {
    title: String,
    severity: NativeSeverity,
    cvss: Option<Cvss>,
    cve: Option<String>,
    rule_id: Option<String>,
    package: Option<String>,
    installed_version: Option<String>,
    fixed_version: Option<String>,
    location: Option<String>,
    description: Option<String>,
    tags: Option<Vec<String>>,
    suppressed: Option<bool>,
}

struct NativeSeverity(Severity);

impl<'de> Deserialize<'de> for NativeSeverity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        json::label(
            deserializer,
            "severity",
            "CRITICAL, HIGH, MEDIUM, LOW, INFO",
            native_severity,
        )
        .map(NativeSeverity)
    }
}

pub(super) fn native_severity(label: &str) -> Option<Severity> {
    Severity::ALL
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(label))
        .or_else(|| {
            label
                .eq_ignore_ascii_case("informational")
                .then_some(Severity::Info)
        })
}

/// A CVSS base score: a number within 0.0..=10.0.
struct Cvss(f64);

impl<'de> Deserialize<'de> for Cvss {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CvssVisitor;
        impl Visitor<'_> for CvssVisitor {
            type Value = Cvss;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CVSS score between 0.0 and 10.0")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cvss, E> {
                super::valid_cvss(v).map(Cvss).ok_or_else(|| {
                    E::custom(format!(
                        "cvss {v} is out of range: must be between 0.0 and 10.0"
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cvss, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cvss, E> {
                self.visit_f64(v as f64)
            }
        }
        deserializer.deserialize_f64(CvssVisitor)
    }
}
