//! Grype JSON (`grype -o json`): one finding per entry of `matches`.
//!
//! Both shapes seen in the wild are read: current Grype (`vulnerability.cvss[]`,
//! `vulnerability.fix {versions, state}`, `relatedVulnerabilities`) and early Grype 0.x
//! (`vulnerability.cvssV3 {baseScore}`, `vulnerability.fixedInVersion`).
//!
//! Advisory id: when Grype matched on a non-CVE advisory (GHSA-…) that lists a related CVE,
//! `cve` is that CVE, so the finding lines up with other scanners and `GET
//! /vulnerabilities/cve/{cve}`; the scanner's own id stays in `rule_id`, in the title and in
//! the tags (the API exposes tags and title, not rule ids).

use serde::{Deserialize, Deserializer};
use vulnledger_aggregates::Severity;

use super::{is_cve, json, valid_cvss, ImportError, ImportedFinding, ReportFormat};

const FORMAT: ReportFormat = ReportFormat::Grype;

pub(super) fn parse(bytes: &[u8]) -> Result<(Vec<ImportedFinding>, Option<String>), ImportError> {
    let report: Report = json::from_slice(bytes, FORMAT)?;
    let tool = report.descriptor.and_then(|d| {
        let name = d.name?;
        Some(match d.version {
            Some(version) => format!("{name} {version}"),
            None => name,
        })
    });
    let findings = report
        .matches
        .into_iter()
        .map(Match::into_finding)
        .collect();
    Ok((findings, tool.or_else(|| Some("grype".to_owned()))))
}

#[derive(Deserialize)]
struct Report {
    matches: Vec<Match>,
    descriptor: Option<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    name: Option<String>,
    version: Option<String>,
}

#[derive(Deserialize)]
struct Match {
    vulnerability: Vulnerability,
    #[serde(rename = "relatedVulnerabilities")]
    related: Option<Vec<Related>>,
    artifact: Artifact,
}

#[derive(Deserialize)]
struct Vulnerability {
    id: String,
    severity: Option<GrypeSeverity>,
    description: Option<String>,
    cvss: Option<Vec<Cvss>>,
    /// Grype 0.x.
    #[serde(rename = "cvssV3")]
    cvss_v3: Option<Metrics>,
    fix: Option<Fix>,
    /// Grype 0.x.
    #[serde(rename = "fixedInVersion")]
    fixed_in_version: Option<String>,
}

#[derive(Deserialize)]
struct Related {
    id: String,
    description: Option<String>,
    cvss: Option<Vec<Cvss>>,
}

#[derive(Deserialize)]
struct Cvss {
    version: Option<String>,
    metrics: Option<Metrics>,
    /// "Primary" (the source's own score) or "Secondary", in recent Grype.
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Metrics {
    #[serde(rename = "baseScore")]
    base_score: Option<f64>,
}

#[derive(Deserialize)]
struct Fix {
    versions: Option<Vec<String>>,
    /// fixed, not-fixed, wont-fix, unknown.
    state: Option<String>,
}

#[derive(Deserialize)]
struct Artifact {
    name: String,
    version: Option<String>,
    locations: Option<Vec<Location>>,
}

#[derive(Deserialize)]
struct Location {
    path: Option<String>,
}

impl Match {
    fn into_finding(self) -> ImportedFinding {
        let Match {
            vulnerability: v,
            related,
            artifact,
        } = self;
        let related = related.unwrap_or_default();
        let severity = v.severity.map_or(Severity::Info, |s| s.0);

        let cve = if is_cve(&v.id) {
            None
        } else {
            related.iter().map(|r| r.id.as_str()).find(|id| is_cve(id))
        };
        let cvss = best_v3(v.cvss.as_deref())
            .or_else(|| {
                v.cvss_v3
                    .as_ref()
                    .and_then(|m| m.base_score)
                    .and_then(valid_cvss)
            })
            .or_else(|| {
                // The related record of the advisory we report first, then any.
                let preferred = cve.unwrap_or(&v.id);
                related
                    .iter()
                    .filter(|r| r.id == preferred)
                    .chain(related.iter())
                    .find_map(|r| best_v3(r.cvss.as_deref()))
            });
        let description = v.description.filter(|d| !d.trim().is_empty()).or_else(|| {
            related
                .iter()
                .filter_map(|r| r.description.as_deref())
                .find(|d| !d.trim().is_empty())
                .map(str::to_owned)
        });
        let fixed_version = match &v.fix {
            Some(fix) => {
                let fixed = fix
                    .state
                    .as_deref()
                    .is_some_and(|s| s.trim().eq_ignore_ascii_case("fixed"));
                fix.versions
                    .as_ref()
                    .filter(|_| fixed)
                    .map(|versions| versions.join(", "))
            }
            None => v.fixed_in_version,
        };

        let title = match artifact.version.as_deref() {
            Some(version) => format!("{} in {}@{version}", v.id, artifact.name),
            None => format!("{} in {}", v.id, artifact.name),
        };
        let mut f = ImportedFinding::new(title, severity);
        f.cvss = cvss;
        f.description = description;
        f.fixed_version = fixed_version;
        f.location = artifact
            .locations
            .and_then(|locations| locations.into_iter().find_map(|l| l.path));
        f.package = Some(artifact.name);
        f.installed_version = artifact.version;
        match cve {
            Some(cve) => {
                f.cve = Some(cve.to_owned());
                f.tags = vec![v.id.clone()];
                f.rule_id = Some(v.id);
            }
            None => f.cve = Some(v.id),
        }
        f
    }
}

/// The best CVSS v3 base score of a list: the newest v3.x version, a "Primary" entry before a
/// "Secondary" one, else the first listed.
fn best_v3(entries: Option<&[Cvss]>) -> Option<f64> {
    let mut best: Option<((u32, bool), f64)> = None;
    for entry in entries? {
        let Some(minor) = entry
            .version
            .as_deref()
            .and_then(|v| v.trim().strip_prefix("3."))
            .and_then(|minor| minor.parse::<u32>().ok())
            .or_else(|| (entry.version.as_deref().map(str::trim) == Some("3")).then_some(0))
        else {
            continue;
        };
        let Some(score) = entry
            .metrics
            .as_ref()
            .and_then(|m| m.base_score)
            .and_then(valid_cvss)
        else {
            continue;
        };
        let primary = entry
            .kind
            .as_deref()
            .is_none_or(|k| k.eq_ignore_ascii_case("primary"));
        let rank = (minor, primary);
        if best.is_none_or(|(best_rank, _)| rank > best_rank) {
            best = Some((rank, score));
        }
    }
    best.map(|(_, score)| score)
}

/// Critical, High, Medium, Low, and Negligible / Unknown (both INFO).
#[derive(Clone, Copy)]
struct GrypeSeverity(Severity);

impl<'de> Deserialize<'de> for GrypeSeverity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        json::label(
            deserializer,
            "severity",
            "Critical, High, Medium, Low, Negligible, Unknown",
            grype_severity,
        )
        .map(GrypeSeverity)
    }
}

pub(super) fn grype_severity(label: &str) -> Option<Severity> {
    [
        ("Critical", Severity::Critical),
        ("High", Severity::High),
        ("Medium", Severity::Medium),
        ("Low", Severity::Low),
        ("Negligible", Severity::Info),
        ("Unknown", Severity::Info),
    ]
    .into_iter()
    .find(|(name, _)| name.eq_ignore_ascii_case(label))
    .map(|(_, severity)| severity)
}
