//! CycloneDX 1.4+ JSON with `vulnerabilities` (a BOM with findings, or a VEX document).
//!
//! One finding per (vulnerability, affected component): `affects[].ref` is resolved against
//! the BOM's `components` by `bom-ref`, nested components included. A vulnerability without
//! `affects` still yields one finding, without a package. A BOM without `vulnerabilities` is a
//! valid report with no findings.
//!
//! - Advisory: `id` when it is a CVE, else the first CVE among `references`, else `id` as
//!   given (GHSA-…, SNYK-…); a non-CVE `id` is then also kept in `rule_id` and the tags.
//! - Severity: the highest `ratings[].severity` ("info", "none", "unknown" are INFO); without
//!   any, the band of the score below; without a score either, INFO.
//! - CVSS: the score of the CVSSv31 rating, else CVSSv3, CVSSv4, CVSSv2, else a rating with a
//!   score and no method; OWASP and "other" ratings are not CVSS and are ignored.
//! - Fixed version: `affects[].versions[]` entries of status "unaffected" with a `version`,
//!   else a vulnerability property named `*fixed_versions` / `*fixed_version` (Grype writes
//!   `grype:fixed_versions`). `analysis` carries no version in any CycloneDX release.
//! - VEX: `analysis.state` "not_affected" or "false_positive" marks the finding suppressed.
//! - Title: the description's (else detail's) first line when it reads like a summary (at most
//!   200 characters), else "<id> in <name>@<version>".

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};
use vulnledger_aggregates::Severity;

use super::{
    first_line, is_cve, json, paragraphs, severity_for_score, valid_cvss, ImportError,
    ImportedFinding, ReportFormat,
};

const FORMAT: ReportFormat = ReportFormat::CycloneDx;
/// Longer first lines are paragraphs, not titles.
const SUMMARY_TITLE: usize = 200;

pub(super) fn parse(bytes: &[u8]) -> Result<(Vec<ImportedFinding>, Option<String>), ImportError> {
    let bom: Bom = json::from_slice(bytes, FORMAT)?;
    let tool = bom
        .metadata
        .as_ref()
        .and_then(|m| tool_name(m.tools.as_ref()?));
    // The BOM's own subject: what a product's VEX says is affected. Read loosely, so
    // that a subject we cannot use never refuses the report.
    let subject: Option<Component> = bom
        .metadata
        .as_ref()
        .and_then(|m| serde_json::from_value(m.component.clone()?).ok());
    let mut components = HashMap::new();
    index_components(
        bom.components.as_deref().unwrap_or_default(),
        &mut components,
    );
    index_components(subject.as_slice(), &mut components);

    let mut findings = Vec::new();
    for vulnerability in bom.vulnerabilities.iter().flatten() {
        let affects = vulnerability.affects.as_deref().unwrap_or_default();
        if affects.is_empty() {
            findings.push(vulnerability.finding(None, &components));
        }
        for affected in affects {
            findings.push(vulnerability.finding(Some(affected), &components));
        }
    }
    Ok((findings, tool))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bom {
    /// Required and must say "CycloneDX"; checked while parsing, not needed afterwards.
    #[allow(dead_code)]
    bom_format: BomFormat,
    metadata: Option<Metadata>,
    components: Option<Vec<Component>>,
    vulnerabilities: Option<Vec<Vulnerability>>,
}

struct BomFormat;

impl<'de> Deserialize<'de> for BomFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        json::label(deserializer, "bomFormat", "CycloneDX", |s| {
            s.eq_ignore_ascii_case("CycloneDX").then_some(BomFormat)
        })
    }
}

#[derive(Deserialize)]
struct Metadata {
    /// An array of tools in 1.4, `{components, services}` since 1.5: read loosely.
    tools: Option<serde_json::Value>,
    /// The component the BOM describes.
    component: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Component {
    #[serde(rename = "bom-ref")]
    bom_ref: Option<String>,
    name: String,
    version: Option<String>,
    purl: Option<String>,
    components: Option<Vec<Component>>,
}

#[derive(Deserialize)]
struct Vulnerability {
    id: Option<String>,
    references: Option<Vec<Reference>>,
    ratings: Option<Vec<Rating>>,
    cwes: Option<Vec<u32>>,
    description: Option<String>,
    detail: Option<String>,
    recommendation: Option<String>,
    analysis: Option<Analysis>,
    affects: Option<Vec<Affects>>,
    properties: Option<Vec<Property>>,
}

#[derive(Deserialize)]
struct Reference {
    id: Option<String>,
}

#[derive(Deserialize)]
struct Rating {
    score: Option<f64>,
    severity: Option<CdxSeverity>,
    method: Option<String>,
}

#[derive(Deserialize)]
struct Analysis {
    state: Option<String>,
    justification: Option<String>,
    detail: Option<String>,
}

#[derive(Deserialize)]
struct Affects {
    #[serde(rename = "ref")]
    reference: String,
    versions: Option<Vec<AffectedVersion>>,
}

#[derive(Deserialize)]
struct AffectedVersion {
    version: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct Property {
    name: Option<String>,
    value: Option<String>,
}

fn index_components<'a>(list: &'a [Component], index: &mut HashMap<&'a str, &'a Component>) {
    for component in list {
        if let Some(bom_ref) = component.bom_ref.as_deref() {
            index.entry(bom_ref).or_insert(component);
        }
        index_components(component.components.as_deref().unwrap_or_default(), index);
    }
}

/// "name version" of the first tool, in either metadata shape.
fn tool_name(tools: &serde_json::Value) -> Option<String> {
    let first = match tools {
        serde_json::Value::Array(list) => list.first(),
        serde_json::Value::Object(map) => map
            .get("components")
            .or_else(|| map.get("services"))
            .and_then(|c| c.as_array()?.first()),
        _ => None,
    }?;
    let name = first.get("name")?.as_str()?.trim();
    Some(match first.get("version").and_then(|v| v.as_str()) {
        Some(version) => format!("{name} {version}"),
        None => name.to_owned(),
    })
}

impl Vulnerability {
    fn finding(
        &self,
        affected: Option<&Affects>,
        components: &HashMap<&str, &Component>,
    ) -> ImportedFinding {
        let id = self
            .id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty());
        let cve = match id {
            Some(id) if is_cve(id) => Some(id),
            _ => self
                .references
                .iter()
                .flatten()
                .filter_map(|r| r.id.as_deref())
                .find(|r| is_cve(r))
                .or(id),
        };
        let alias = id.filter(|&id| Some(id) != cve);

        let score = self.best_score();
        let severity = self
            .ratings
            .iter()
            .flatten()
            .filter_map(|r| r.severity.as_ref().map(|s| s.0))
            .max()
            .or_else(|| score.map(severity_for_score))
            .unwrap_or(Severity::Info);

        let reference = affected.map(|a| a.reference.as_str());
        let component = reference.and_then(|r| components.get(r).copied());
        let (package, version) = match (component, reference) {
            (Some(c), _) => (Some(c.name.clone()), c.version.clone()),
            (None, Some(r)) => purl_name_version(r),
            (None, None) => (None, None),
        };
        let location = match (component, reference) {
            (Some(c), Some(r)) => Some(c.purl.clone().unwrap_or_else(|| r.to_owned())),
            (None, Some(r)) => Some(r.to_owned()),
            _ => None,
        };

        let summary = [self.description.as_deref(), self.detail.as_deref()]
            .into_iter()
            .flatten()
            .map(|t| first_line(t, usize::MAX))
            .find(|t| !t.is_empty());
        let title = match summary {
            Some(line) if line.chars().count() <= SUMMARY_TITLE => line,
            _ => {
                let what = id.or(cve).unwrap_or("Vulnerability");
                match (&package, &version) {
                    (Some(p), Some(v)) => format!("{what} in {p}@{v}"),
                    (Some(p), None) => format!("{what} in {p}"),
                    _ => what.to_owned(),
                }
            }
        };

        let state = self
            .analysis
            .as_ref()
            .and_then(|a| a.state.as_deref())
            .map(str::trim);
        let suppressed = state.is_some_and(|s| {
            s.eq_ignore_ascii_case("not_affected") || s.eq_ignore_ascii_case("false_positive")
        });
        let analysis = self.analysis.as_ref().and_then(|a| {
            let state = a.state.as_deref()?;
            let mut line = format!("Analysis: {state}");
            if let Some(j) = a.justification.as_deref() {
                line.push_str(&format!(" ({j})"));
            }
            if let Some(d) = a.detail.as_deref().filter(|d| !d.trim().is_empty()) {
                line.push_str(&format!(": {d}"));
            }
            Some(line)
        });
        let recommendation = self
            .recommendation
            .as_deref()
            .map(|r| format!("Recommendation: {r}"));

        let mut f = ImportedFinding::new(title, severity);
        f.cvss = score;
        f.cve = cve.map(str::to_owned);
        f.rule_id = alias.map(str::to_owned);
        f.package = package;
        f.installed_version = version;
        f.fixed_version = self.fixed_version(affected);
        f.location = location;
        f.description = paragraphs([
            self.description.as_deref(),
            self.detail.as_deref(),
            recommendation.as_deref(),
            analysis.as_deref(),
        ]);
        f.tags = alias
            .map(str::to_owned)
            .into_iter()
            .chain(self.cwes.iter().flatten().map(|cwe| format!("CWE-{cwe}")))
            .collect();
        f.suppressed = suppressed;
        f
    }

    fn best_score(&self) -> Option<f64> {
        let rank = |method: Option<&str>| -> Option<u8> {
            match method.map(|m| m.trim().to_ascii_uppercase()).as_deref() {
                Some("CVSSV31") => Some(5),
                Some("CVSSV3") => Some(4),
                Some("CVSSV4") => Some(3),
                Some("CVSSV2") => Some(2),
                None => Some(1),
                Some(_) => None,
            }
        };
        self.ratings
            .iter()
            .flatten()
            .filter_map(|r| Some((rank(r.method.as_deref())?, r.score.and_then(valid_cvss)?)))
            .fold(None, |best: Option<(u8, f64)>, (rank, score)| match best {
                Some((best_rank, _)) if best_rank >= rank => best,
                _ => Some((rank, score)),
            })
            .map(|(_, score)| score)
    }

    fn fixed_version(&self, affected: Option<&Affects>) -> Option<String> {
        let unaffected: Vec<&str> = affected
            .and_then(|a| a.versions.as_deref())
            .unwrap_or_default()
            .iter()
            .filter(|v| {
                v.status
                    .as_deref()
                    .is_some_and(|s| s.trim().eq_ignore_ascii_case("unaffected"))
            })
            .filter_map(|v| v.version.as_deref())
            .collect();
        if !unaffected.is_empty() {
            return Some(unaffected.join(", "));
        }
        self.properties
            .iter()
            .flatten()
            .find(|p| {
                p.name.as_deref().is_some_and(|n| {
                    let n = n.to_ascii_lowercase();
                    n.ends_with("fixed_versions")
                        || n.ends_with("fixed_version")
                        || n.ends_with("fixedversion")
                })
            })
            .and_then(|p| p.value.clone())
    }
}

/// Name and version of a package URL (`pkg:type/namespace/name@version?qualifiers#subpath`),
/// for `affects` refs that point outside the document.
fn purl_name_version(reference: &str) -> (Option<String>, Option<String>) {
    let Some(rest) = reference.strip_prefix("pkg:") else {
        return (None, None);
    };
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (path, version) = match rest.rsplit_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (rest, None),
    };
    let name = path
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != path);
    let decode = |s: &str| {
        s.replace("%40", "@")
            .replace("%2B", "+")
            .replace("%2b", "+")
    };
    (name.map(decode), version.map(decode))
}

/// critical, high, medium, low, and info / none / unknown (all INFO).
struct CdxSeverity(Severity);

impl<'de> Deserialize<'de> for CdxSeverity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        json::label(
            deserializer,
            "severity",
            "critical, high, medium, low, info, none, unknown",
            cyclonedx_severity,
        )
        .map(CdxSeverity)
    }
}

pub(super) fn cyclonedx_severity(label: &str) -> Option<Severity> {
    [
        ("critical", Severity::Critical),
        ("high", Severity::High),
        ("medium", Severity::Medium),
        ("low", Severity::Low),
        ("info", Severity::Info),
        ("none", Severity::Info),
        ("unknown", Severity::Info),
    ]
    .into_iter()
    .find(|(name, _)| name.eq_ignore_ascii_case(label))
    .map(|(_, severity)| severity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_urls_give_name_and_version() {
        assert_eq!(
            purl_name_version("pkg:maven/org.apache.logging.log4j/log4j-core@2.13.2?type=jar"),
            (Some("log4j-core".into()), Some("2.13.2".into()))
        );
        assert_eq!(
            purl_name_version("pkg:npm/%40angular/core@12.0.0"),
            (Some("core".into()), Some("12.0.0".into()))
        );
        assert_eq!(purl_name_version("some-bom-ref"), (None, None));
    }
}
