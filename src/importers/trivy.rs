//! Trivy JSON: schema 2 (`{"SchemaVersion": 2, "Results": [...]}`), the legacy top-level
//! list of results (`[{"Target", "Vulnerabilities"}]`, Trivy before 0.20), and the reports
//! of `trivy k8s` (`{"ClusterName", "Resources": [{"Namespace", "Kind", "Name", "Results"}]}`,
//! or, before Trivy 0.36, the resources under `"Vulnerabilities"` and `"Misconfigurations"`).
//!
//! Each result (a `Target`: an OS, a lock file, a Dockerfile...) yields one finding per
//! vulnerability, per failed misconfiguration check, per secret and per license. In a
//! Kubernetes report the resource leads the location (`default/Deployment/web: nginx:1.25
//! (debian 12)`), so one image in two workloads is two findings, as it is two fixes.

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
    // (where the result was found, the result): the place is the Kubernetes resource.
    let (results, tool): (Vec<(Option<String>, TrivyResult)>, _) = if legacy {
        let results: Vec<Option<TrivyResult>> = json::from_slice(bytes, FORMAT)?;
        // Each entry names what was scanned: a list of anything else is no report.
        if let Some(i) = results.iter().position(|r| match r {
            Some(r) => r.target.is_none(),
            None => results.iter().all(Option::is_none),
        }) {
            return Err(ImportError::new(
                Some(FORMAT),
                format!("/{i}"),
                "missing field `Target` (each entry of a legacy Trivy report is a result)",
            ));
        }
        (
            results.into_iter().flatten().map(|r| (None, r)).collect(),
            None,
        )
    } else {
        let report: Report = json::from_slice(bytes, FORMAT)?;
        if report.schema_version.is_none() && report.cluster_name.is_none() {
            return Err(ImportError::new(
                Some(FORMAT),
                super::WHOLE_DOCUMENT,
                "missing field `SchemaVersion` (or `ClusterName`, for a report of `trivy k8s`)",
            ));
        }
        let version = report.trivy.and_then(|t| t.version);
        let mut results: Vec<(Option<String>, TrivyResult)> = report
            .results
            .into_iter()
            .flatten()
            .map(|r| (None, r))
            .collect();
        for resource in [
            report.resources,
            report.vulnerabilities,
            report.misconfigurations,
        ]
        .into_iter()
        .flatten()
        .flatten()
        {
            let place = resource.place();
            results.extend(
                resource
                    .results
                    .into_iter()
                    .flatten()
                    .map(|r| (place.clone(), r)),
            );
        }
        (results, version)
    };
    let tool = Some(match tool {
        Some(version) => format!("Trivy {version}"),
        None => "Trivy".to_owned(),
    });

    let capacity = results
        .iter()
        .map(|(_, r)| {
            r.vulnerabilities.as_ref().map_or(0, Vec::len)
                + r.misconfigurations.as_ref().map_or(0, Vec::len)
                + r.secrets.as_ref().map_or(0, Vec::len)
                + r.licenses.as_ref().map_or(0, Vec::len)
        })
        .sum();
    let mut findings = Vec::with_capacity(capacity);
    for (place, result) in results {
        let target = located(place.as_deref(), result.target.unwrap_or_default());
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
        for license in result.licenses.into_iter().flatten() {
            findings.push(license.into_finding(&target));
        }
        findings.extend(
            result
                .experimental_modified_findings
                .into_iter()
                .flatten()
                .filter_map(|m| m.into_finding(&target)),
        );
    }
    Ok((findings, tool))
}

/// A result's location: its target, led by the Kubernetes resource it was found in
/// unless the target already names it (misconfigurations of a resource have
/// `Deployment/web` as their target).
fn located(place: Option<&str>, target: String) -> String {
    match place {
        Some(place) if target.is_empty() || place.ends_with(target.as_str()) => place.to_owned(),
        Some(place) => format!("{place}: {target}"),
        None => target,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Report {
    /// One of the two is required (their values are not needed): they are what makes an
    /// object a Trivy report.
    #[allow(dead_code)]
    schema_version: Option<u64>,
    cluster_name: Option<String>,
    results: Option<Vec<TrivyResult>>,
    /// `trivy k8s` since 0.36: every resource with its results.
    resources: Option<Vec<Resource>>,
    /// `trivy k8s` before 0.36: the resources with vulnerabilities, and those with
    /// misconfigurations, each with its results.
    vulnerabilities: Option<Vec<Resource>>,
    misconfigurations: Option<Vec<Resource>>,
    /// `{"Version": "0.56.2"}` in recent Trivy releases.
    trivy: Option<TrivyInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Resource {
    namespace: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    results: Option<Vec<TrivyResult>>,
}

impl Resource {
    /// `namespace/Kind/name` (cluster-scoped resources have no namespace).
    fn place(&self) -> Option<String> {
        let parts: Vec<&str> = [&self.namespace, &self.kind, &self.name]
            .into_iter()
            .filter_map(|p| p.as_deref().map(str::trim).filter(|p| !p.is_empty()))
            .collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }
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
    licenses: Option<Vec<License>>,
    /// What a VEX document or an ignore policy suppressed (`--show-suppressed`):
    /// kept as suppressed findings, as a CycloneDX VEX's are, rather than missing
    /// from the report as if fixed.
    experimental_modified_findings: Option<Vec<Modified>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Modified {
    /// vulnerability, misconfiguration, secret or license.
    #[serde(rename = "Type")]
    kind: Option<String>,
    /// not_affected, fixed, under_investigation... (from the VEX), or ignored.
    status: Option<String>,
    /// The VEX justification, e.g. vulnerable_code_not_in_execute_path.
    statement: Option<String>,
    /// The finding in its usual shape; read loosely, as the field is experimental.
    finding: Option<serde_json::Value>,
}

impl Modified {
    fn into_finding(self, target: &str) -> Option<ImportedFinding> {
        fn read<T: serde::de::DeserializeOwned>(finding: serde_json::Value) -> Option<T> {
            serde_json::from_value(finding).ok()
        }
        let finding = self.finding?;
        let kind = self.kind.as_deref().map(str::trim).unwrap_or_default();
        let mut f = match kind.to_ascii_lowercase().as_str() {
            "vulnerability" => read::<Vulnerability>(finding)?.into_finding(target),
            "misconfiguration" => read::<Misconfiguration>(finding)?.into_finding(target),
            "secret" => read::<Secret>(finding)?.into_finding(target),
            "license" => read::<License>(finding)?.into_finding(target),
            _ => return None,
        };
        f.suppressed = true;
        // Tags are a set once normalized: repeats go there.
        f.tags
            .extend([self.status, self.statement].into_iter().flatten());
        Some(f)
    }
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
    /// The vendor's statement (Trivy 0.45+): affected, fixed, not_affected,
    /// will_not_fix, fix_deferred, end_of_life, under_investigation or unknown.
    status: Option<String>,
}

/// Statuses kept as a tag: what the vendor decided about the vulnerability. (`fixed`
/// means a fixed version exists, not that this one is fixed; `affected` and `unknown`
/// say nothing more than the finding does.)
const STATUS_TAGS: [&str; 5] = [
    "not_affected",
    "will_not_fix",
    "fix_deferred",
    "end_of_life",
    "under_investigation",
];

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
        if let Some(status) = self.status.as_deref().map(str::trim) {
            if let Some(tag) = STATUS_TAGS
                .into_iter()
                .find(|t| t.eq_ignore_ascii_case(status))
            {
                f.tags.push(tag.to_owned());
                // What a VEX `not_affected` means in CycloneDX, said by the vendor here.
                f.suppressed = tag == "not_affected";
            }
        }
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

/// A license Trivy classified (`--scanners license`): of a package, or found in a file.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct License {
    name: Option<String>,
    /// forbidden, restricted, reciprocal, notice, permissive, unencumbered or unknown.
    category: Option<String>,
    severity: Option<TrivySeverity>,
    pkg_name: Option<String>,
    file_path: Option<String>,
    link: Option<String>,
}

impl License {
    fn into_finding(self, target: &str) -> ImportedFinding {
        let severity = self.severity.map_or(Severity::Info, |s| s.0);
        let nonblank = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let name = nonblank(self.name).unwrap_or_else(|| "unknown".to_owned());
        let package = nonblank(self.pkg_name);
        let file = nonblank(self.file_path);
        let category = nonblank(self.category);
        let title = match (&package, &file) {
            (Some(package), _) => format!("License {name} in {package}"),
            (None, Some(file)) => format!("License {name} in {file}"),
            (None, None) => format!("License {name}"),
        };
        let classified = category
            .as_deref()
            .map(|c| format!("Trivy classifies the license {name} as {c}."));
        let reference = nonblank(self.link).map(|l| format!("Reference: {l}"));
        let mut f = ImportedFinding::new(title, severity);
        f.description = paragraphs([classified.as_deref(), reference.as_deref()]);
        f.rule_id = Some(format!("license:{name}"));
        f.package = package;
        // A license found in a file has the file; one of a package has the result's
        // target ("OS Packages", a lock file).
        f.location = Some(file.unwrap_or_else(|| target.to_owned()));
        f.tags = std::iter::once("license".to_owned())
            .chain(category.map(|c| format!("license:{c}")))
            .collect();
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
