//! Trivy JSON: schema 2 (`{"SchemaVersion": 2, "Results": [...]}`) and the legacy top-level
//! list of results (`[{"Target", "Vulnerabilities"}]`, Trivy before 0.20).
//!
//! Each result (a `Target`: an OS, a lock file, a Dockerfile...) yields one finding per
//! vulnerability, per failed misconfiguration check and per secret.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};
use vulnledger_aggregates::Severity;

use super::{json, paragraphs, valid_cvss, ImportError, ImportedFinding, ReportFormat};

const FORMAT: ReportFormat = ReportFormat::Trivy;

pub(super) fn parse(bytes: &[u8]) -> Result<(Vec<ImportedFinding>, Option<String>), ImportError> {
    let legacy = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'[');
    let (results, tool) = if legacy {
        let results: Vec<Option<TrivyResult>> = json::from_slice(bytes, FORMAT)?;
        (results.into_iter().flatten().collect(), None)
    } else {
        let report: Report = json::from_slice(bytes, FORMAT)?;
        let version = report.trivy.and_then(|t| t.version);
        (report.results.unwrap_or_default(), version)
    };
    let tool = Some(match tool {
        Some(version) => format!("Trivy {version}"),
        None => "Trivy".to_owned(),
    });

    let capacity = results
        .iter()
        .map(|r| {
            r.vulnerabilities.as_ref().map_or(0, Vec::len)
                + r.misconfigurations.as_ref().map_or(0, Vec::len)
                + r.secrets.as_ref().map_or(0, Vec::len)
        })
        .sum();
    let mut findings = Vec::with_capacity(capacity);
    for result in results {
        let target = result.target.unwrap_or_default();
        for vulnerability in result.vulnerabilities.into_iter().flatten() {
            findings.push(vulnerability.into_finding(&target));
        }
        for misconfiguration in result.misconfigurations.into_iter().flatten() {
            if misconfiguration.failed() {
                findings.push(misconfiguration.into_finding(&target));
            }
        }
        for secret in result.secrets.into_iter().flatten() {
            findings.push(secret.into_finding(&target));
        }
    }
    Ok((findings, tool))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Report {
    /// Required (its value is not needed): it is what makes an object a Trivy report.
    #[allow(dead_code)]
    schema_version: u64,
    results: Option<Vec<TrivyResult>>,
    /// `{"Version": "0.56.2"}` in recent Trivy releases.
    trivy: Option<TrivyInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyInfo {
    version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyResult {
    target: Option<String>,
    vulnerabilities: Option<Vec<Vulnerability>>,
    misconfigurations: Option<Vec<Misconfiguration>>,
    secrets: Option<Vec<Secret>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Vulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: String,
    pkg_name: Option<String>,
    installed_version: Option<String>,
    fixed_version: Option<String>,
    title: Option<String>,
    description: Option<String>,
    severity: Option<TrivySeverity>,
    severity_source: Option<String>,
    #[serde(rename = "PrimaryURL")]
    primary_url: Option<String>,
    #[serde(rename = "CweIDs")]
    cwe_ids: Option<Vec<String>>,
    #[serde(rename = "CVSS")]
    cvss: Option<HashMap<String, VendorCvss>>,
}

#[derive(Deserialize)]
struct VendorCvss {
    #[serde(rename = "V3Score")]
    v3_score: Option<f64>,
}

impl Vulnerability {
    fn into_finding(self, target: &str) -> ImportedFinding {
        let severity = self.severity.map_or(Severity::Info, |s| s.0);
        let cvss = self.best_v3_score();
        let title = match self.title.as_deref().map(str::trim) {
            Some(title) if !title.is_empty() => title.to_owned(),
            _ => match self.pkg_name.as_deref() {
                Some(pkg) => format!("{} in {pkg}", self.vulnerability_id),
                None => self.vulnerability_id.clone(),
            },
        };
        let reference = self
            .primary_url
            .as_deref()
            .map(|u| format!("Reference: {u}"));
        let mut f = ImportedFinding::new(title, severity);
        f.cvss = cvss;
        f.description = paragraphs([self.description.as_deref(), reference.as_deref()]);
        f.cve = Some(self.vulnerability_id);
        f.package = self.pkg_name;
        f.installed_version = self.installed_version;
        f.fixed_version = self.fixed_version;
        f.location = Some(target.to_owned());
        f.tags = self.cwe_ids.unwrap_or_default();
        f
    }

    /// The vendor Trivy took the severity from, then NVD, GHSA, Red Hat, then any other vendor
    /// (alphabetically, for determinism): the first with a valid V3 score.
    fn best_v3_score(&self) -> Option<f64> {
        let scores = self.cvss.as_ref()?;
        let score = |vendor: &str| {
            scores
                .get(vendor)
                .and_then(|c| c.v3_score)
                .and_then(valid_cvss)
        };
        let preferred = self.severity_source.as_deref().into_iter();
        preferred
            .chain(["nvd", "ghsa", "redhat"])
            .find_map(score)
            .or_else(|| {
                let mut vendors: Vec<&String> = scores.keys().collect();
                vendors.sort();
                vendors.into_iter().find_map(|v| score(v))
            })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Misconfiguration {
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "AVDID")]
    avd_id: Option<String>,
    title: Option<String>,
    description: Option<String>,
    message: Option<String>,
    resolution: Option<String>,
    severity: Option<TrivySeverity>,
    /// FAIL, PASS or EXCEPTION; absent in old reports, which listed failures only.
    status: Option<String>,
    #[serde(rename = "PrimaryURL")]
    primary_url: Option<String>,
    cause_metadata: Option<CauseMetadata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CauseMetadata {
    start_line: Option<u64>,
    end_line: Option<u64>,
}

impl Misconfiguration {
    fn failed(&self) -> bool {
        self.status
            .as_deref()
            .is_none_or(|s| s.trim().eq_ignore_ascii_case("FAIL"))
    }

    fn into_finding(self, target: &str) -> ImportedFinding {
        let severity = self.severity.map_or(Severity::Info, |s| s.0);
        // ID ("DS002") is present in every Trivy version; AVDID ("AVD-DS-0002") only in newer
        // ones, so preferring ID keeps fingerprints stable across Trivy upgrades.
        let rule_id = self.id.or(self.avd_id);
        let title = self
            .title
            .clone()
            .or_else(|| rule_id.clone())
            .unwrap_or_else(|| "Misconfiguration".to_owned());
        let resolution = self
            .resolution
            .as_deref()
            .map(|r| format!("Resolution: {r}"));
        let reference = self
            .primary_url
            .as_deref()
            .map(|u| format!("Reference: {u}"));
        let lines = self.cause_metadata.as_ref().and_then(|c| {
            let start = c.start_line.filter(|&l| l > 0)?;
            Some(match c.end_line.filter(|&end| end > start) {
                Some(end) => format!("{start}-{end}"),
                None => start.to_string(),
            })
        });
        let mut f = ImportedFinding::new(title, severity);
        f.description = paragraphs([
            self.message.as_deref(),
            self.description.as_deref(),
            resolution.as_deref(),
            reference.as_deref(),
        ]);
        f.rule_id = rule_id;
        f.location = Some(match lines {
            Some(lines) => format!("{target}:{lines}"),
            None => target.to_owned(),
        });
        f.tags = vec!["misconfiguration".to_owned()];
        f
    }
}

/// A secret Trivy found. `Match` and `Code` hold the secret itself (partly masked at best), so
/// they are deliberately not part of this struct: serde skips them unread and they can never
/// end up in a finding, an event or a log.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Secret {
    #[serde(rename = "RuleID")]
    rule_id: Option<String>,
    category: Option<String>,
    severity: Option<TrivySeverity>,
    title: Option<String>,
    start_line: Option<u64>,
}

impl Secret {
    fn into_finding(self, target: &str) -> ImportedFinding {
        let severity = self.severity.map_or(Severity::Info, |s| s.0);
        let title = self
            .title
            .or_else(|| self.rule_id.clone())
            .unwrap_or_else(|| "Secret".to_owned());
        let location = match self.start_line.filter(|&l| l > 0) {
            Some(line) => format!("{target}:{line}"),
            None => target.to_owned(),
        };
        let description = format!(
            "A {} secret was found in {location}{}. The secret itself is not stored; see the \
             file.",
            self.category.as_deref().unwrap_or("credential"),
            self.rule_id
                .as_deref()
                .map(|r| format!(" by rule {r}"))
                .unwrap_or_default(),
        );
        let mut f = ImportedFinding::new(title, severity);
        f.rule_id = self.rule_id;
        f.location = Some(location);
        f.description = Some(description);
        f.tags = vec!["secret".to_owned()];
        f
    }
}

/// CRITICAL, HIGH, MEDIUM, LOW, or UNKNOWN (INFO).
#[derive(Clone, Copy)]
struct TrivySeverity(Severity);

impl<'de> Deserialize<'de> for TrivySeverity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        json::label(
            deserializer,
            "severity",
            "CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN",
            trivy_severity,
        )
        .map(TrivySeverity)
    }
}

pub(super) fn trivy_severity(label: &str) -> Option<Severity> {
    [
        ("CRITICAL", Severity::Critical),
        ("HIGH", Severity::High),
        ("MEDIUM", Severity::Medium),
        ("LOW", Severity::Low),
        ("UNKNOWN", Severity::Info),
    ]
    .into_iter()
    .find(|(name, _)| name.eq_ignore_ascii_case(label))
    .map(|(_, severity)| severity)
}
