//! Scanner-report importers: SARIF 2.1, Trivy JSON (schema 2 and the legacy list), Grype JSON,
//! CycloneDX 1.4+ (BOM or VEX with `vulnerabilities`) and vulnledger's own native JSON.
//!
//! [`parse`] turns the raw upload into [`ImportedFinding`]s, which map one-to-one onto the
//! domain's `FindingDetails` (see [`ImportedFinding::into_details`]); `asset` and `scanner`
//! come from the scan and `fingerprint` from [`fingerprint`]. Parsing is pure: no I/O, no
//! clock, and the report is never stored.
//!
//! Every format is read with typed serde structs that name only the fields we use, so unknown
//! fields (real reports vary a lot between scanner versions) are skipped without allocating.
//! When the document is not what a format expects, [`ImportError`] carries a JSON pointer to
//! the offending element; see `json::pointer_at` for how it is found.
//!
//! Texts are trimmed and cut to the domain's limits here, so that a long advisory never makes
//! the whole upload fail validation later. Cutting is done by characters, like the domain.

mod cyclonedx;
mod fingerprint;
mod grype;
mod json;
mod native;
mod sarif;
mod trivy;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vulnledger_aggregates::{text, FindingDetails, Severity};

pub use fingerprint::{fingerprint, IdentityKey};

/// The report formats `POST /scans/{id}/results?format=` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportFormat {
    Sarif,
    Trivy,
    Grype,
    CycloneDx,
    Native,
}

impl ReportFormat {
    /// Every format, in the order the API documents them.
    pub const ALL: [ReportFormat; 5] = [
        ReportFormat::Sarif,
        ReportFormat::Trivy,
        ReportFormat::Grype,
        ReportFormat::CycloneDx,
        ReportFormat::Native,
    ];

    /// The label used in the `format` query parameter.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Sarif => "sarif",
            ReportFormat::Trivy => "trivy",
            ReportFormat::Grype => "grype",
            ReportFormat::CycloneDx => "cyclonedx",
            ReportFormat::Native => "native",
        }
    }

    /// What the format looks like at the top level, for error messages.
    const fn shape(self) -> &'static str {
        match self {
            ReportFormat::Sarif => "SARIF 2.1 log (an object with a \"runs\" array)",
            ReportFormat::Trivy => {
                "Trivy JSON (an object with \"SchemaVersion\" and \"Results\", a `trivy k8s` \
                 report with \"ClusterName\", or the legacy top-level array of {\"Target\", \
                 \"Vulnerabilities\"})"
            }
            ReportFormat::Grype => "Grype JSON (an object with a \"matches\" array)",
            ReportFormat::CycloneDx => {
                "CycloneDX 1.4+ (an object with \"bomFormat\": \"CycloneDX\" and optional \
                 \"vulnerabilities\")"
            }
            ReportFormat::Native => {
                "native JSON (an object with a \"findings\" array of {\"title\", \"severity\", ...})"
            }
        }
    }
}

impl fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `format` value that names no supported format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown report format {0:?}: expected one of sarif, trivy, grype, cyclonedx, native")]
pub struct UnknownReportFormat(pub String);

impl FromStr for ReportFormat {
    type Err = UnknownReportFormat;

    /// Case-insensitive, because the value arrives in a query string typed by people.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Self::ALL
            .into_iter()
            .find(|format| format.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownReportFormat(s.to_owned()))
    }
}

impl Serialize for ReportFormat {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ReportFormat {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let label = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        label.parse().map_err(serde::de::Error::custom)
    }
}

/// One finding as a report states it, normalized across formats. Field for field the domain's
/// `FindingDetails` minus what the scan supplies (`asset`, `scanner`) and what is derived
/// (`fingerprint`), plus `suppressed`, which the caller may use to skip or auto-triage.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportedFinding {
    pub title: String,
    pub severity: Severity,
    /// The best CVSS v3 base score the report carries, always within 0.0..=10.0.
    pub cvss: Option<f64>,
    /// The advisory id: a CVE when the report links one, else the scanner's id (GHSA-…,
    /// TEMP-…, SNYK-…) as given.
    pub cve: Option<String>,
    pub rule_id: Option<String>,
    pub package: Option<String>,
    pub installed_version: Option<String>,
    pub fixed_version: Option<String>,
    pub location: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// The report itself says this finding is suppressed (SARIF suppressions, VEX
    /// not_affected / false_positive). Such findings carry the tag `suppressed` too.
    pub suppressed: bool,
}

impl ImportedFinding {
    /// A finding with only the mandatory parts; parsers fill in the rest.
    pub(crate) fn new(title: String, severity: Severity) -> Self {
        Self {
            title,
            severity,
            cvss: None,
            cve: None,
            rule_id: None,
            package: None,
            installed_version: None,
            fixed_version: None,
            location: None,
            description: None,
            tags: Vec::new(),
            suppressed: false,
        }
    }

    /// The domain's view of this finding on `asset`, as reported by `scanner`, in `tenant_id`.
    pub fn into_details(self, tenant_id: Uuid, asset: &str, scanner: &str) -> FindingDetails {
        let fingerprint = fingerprint(tenant_id, asset, &self);
        FindingDetails {
            fingerprint,
            asset: asset.to_owned(),
            scanner: scanner.to_owned(),
            title: self.title,
            severity: self.severity,
            cvss: self.cvss,
            cve: self.cve,
            rule_id: self.rule_id,
            package: self.package,
            installed_version: self.installed_version,
            fixed_version: self.fixed_version,
            location: self.location,
            description: self.description,
            tags: self.tags,
        }
    }

    /// Trims every text, drops blank ones, cuts them to the domain's limits, bounds `cvss` and
    /// makes `tags` a bounded set that starts with `suppressed` when the finding is.
    fn normalized(mut self) -> Self {
        tidy_required(&mut self.title, text::MAX_TITLE);
        self.cve = tidy(self.cve, text::MAX_IDENTIFIER);
        self.rule_id = tidy(self.rule_id, text::MAX_IDENTIFIER);
        self.package = tidy(self.package, text::MAX_PACKAGE);
        self.installed_version = tidy(self.installed_version, text::MAX_VERSION);
        self.fixed_version = tidy(self.fixed_version, text::MAX_VERSION);
        self.location = tidy(self.location, text::MAX_LOCATION);
        self.description = tidy(self.description, text::MAX_DESCRIPTION);
        if self.title.is_empty() {
            self.title = self
                .cve
                .clone()
                .or_else(|| self.rule_id.clone())
                .unwrap_or_else(|| "Untitled finding".to_owned());
        }
        self.cvss = self.cvss.and_then(valid_cvss);
        self.tags = tidy_tags(std::mem::take(&mut self.tags), self.suppressed);
        self
    }
}

/// What [`parse`] read from one report.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedReport {
    pub format: ReportFormat,
    /// In report order, one per entry; repeats are kept (dedup is by fingerprint, later).
    pub findings: Vec<ImportedFinding>,
    /// The producing tool as the report names it, e.g. "Trivy", "grype 0.28.0", "CodeQL".
    pub tool: Option<String>,
}

/// Why a report could not be read. `pointer` is an RFC 6901 JSON pointer to the offending
/// element (e.g. `/runs/0/results/3/level`), or `$` when the problem is the document as a whole
/// (not JSON, unrecognized, or of another format than declared).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} report at {pointer}: {message}", format_label(.format))]
pub struct ImportError {
    pub format: Option<ReportFormat>,
    pub pointer: String,
    pub message: String,
    /// The body is not JSON at all (a syntax error, or cut short): a 400, where a
    /// document that is JSON but no valid report is a 422.
    pub malformed: bool,
}

fn format_label(format: &Option<ReportFormat>) -> &'static str {
    format.map_or("unrecognized", ReportFormat::as_str)
}

impl ImportError {
    pub(crate) fn new(
        format: Option<ReportFormat>,
        pointer: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            format,
            pointer: pointer.into(),
            message: message.into(),
            malformed: false,
        }
    }

    /// A body that is not JSON.
    pub(crate) fn malformed(format: Option<ReportFormat>, message: impl Into<String>) -> Self {
        Self {
            malformed: true,
            ..Self::new(format, WHOLE_DOCUMENT, message)
        }
    }
}

/// The pointer used for problems with the document as a whole.
pub const WHOLE_DOCUMENT: &str = "$";

/// Which format `bytes` is, judged by the document's top-level structure (never by a file
/// name). Reads the whole document once without building it.
pub fn sniff(bytes: &[u8]) -> Result<ReportFormat, ImportError> {
    match json::sniff(strip_bom(bytes)) {
        Ok(format) => Ok(format),
        Err(json::SniffError::NotJson(e) | json::SniffError::Unrecognized(e)) => Err(e),
    }
}

/// Reads a report. With `format` of `None` the format is sniffed; with a declared format, a
/// document that is recognizably another format is refused rather than misread.
pub fn parse(bytes: &[u8], format: Option<ReportFormat>) -> Result<ParsedReport, ImportError> {
    let bytes = strip_bom(bytes);
    let format = match (format, json::sniff(bytes)) {
        (None, Ok(found)) => found,
        (None, Err(json::SniffError::NotJson(e) | json::SniffError::Unrecognized(e))) => {
            return Err(e)
        }
        (Some(declared), Ok(found)) if found != declared => {
            return Err(ImportError::new(
                Some(declared),
                WHOLE_DOCUMENT,
                format!(
                    "the document is not a {declared} report: it is a {} report, {}; send \
                     format={found} or leave format out to detect it",
                    found,
                    found.shape()
                ),
            ))
        }
        (Some(declared), Ok(_)) => declared,
        (Some(declared), Err(json::SniffError::NotJson(e))) => {
            return Err(ImportError {
                format: Some(declared),
                ..e
            })
        }
        // Nothing recognizable: let the declared format's reader say precisely what is missing.
        (Some(declared), Err(json::SniffError::Unrecognized(_))) => declared,
    };
    let (findings, tool) = match format {
        ReportFormat::Sarif => sarif::parse(bytes)?,
        ReportFormat::Trivy => trivy::parse(bytes)?,
        ReportFormat::Grype => grype::parse(bytes)?,
        ReportFormat::CycloneDx => cyclonedx::parse(bytes)?,
        ReportFormat::Native => native::parse(bytes)?,
    };
    Ok(ParsedReport {
        format,
        findings: findings
            .into_iter()
            .map(ImportedFinding::normalized)
            .collect(),
        tool: tool.and_then(|t| tidy(Some(t), text::MAX_SCANNER)),
    })
}

/// The severity band of a CVSS base score (CVSS v3.x qualitative rating scale):
/// 9.0+ CRITICAL, 7.0+ HIGH, 4.0+ MEDIUM, above 0 LOW, 0 INFO.
pub fn severity_for_score(score: f64) -> Severity {
    if score >= 9.0 {
        Severity::Critical
    } else if score >= 7.0 {
        Severity::High
    } else if score >= 4.0 {
        Severity::Medium
    } else if score > 0.0 {
        Severity::Low
    } else {
        Severity::Info
    }
}

/// A CVSS score the domain accepts: finite and within 0.0..=10.0.
pub(crate) fn valid_cvss(score: f64) -> Option<f64> {
    (0.0..=10.0).contains(&score).then_some(score)
}

/// Windows tools like to start UTF-8 files with a byte-order mark, which is not JSON.
fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Trimmed, non-blank, at most `max` characters.
fn tidy(value: Option<String>, max: usize) -> Option<String> {
    let mut value = value?;
    tidy_required(&mut value, max);
    (!value.is_empty()).then_some(value)
}

fn tidy_required(value: &mut String, max: usize) {
    // PostgreSQL stores no NUL in text or jsonb, and real reports carry them (Grype's
    // binary matches read versions out of executables): dropped, not refused.
    if value.contains('\0') {
        value.retain(|c| c != '\0');
    }
    let trimmed = value.trim();
    if trimmed.len() != value.len() {
        *value = trimmed.to_owned();
    }
    truncate_chars(value, max);
}

/// Cuts `value` to at most `max` characters, ending it with an ellipsis when something was cut.
pub(crate) fn truncate_chars(value: &mut String, max: usize) {
    // Bytes bound characters from above, so short texts skip the character count.
    if value.len() <= max || max == 0 {
        return;
    }
    if let Some((cut, _)) = value.char_indices().nth(max - 1) {
        if value[cut..].chars().nth(1).is_some() {
            value.truncate(cut);
            let kept = value.trim_end().len();
            value.truncate(kept);
            value.push('…');
        }
    }
}

/// The first non-blank line of `text`, trimmed and cut to `max` characters.
pub(crate) fn first_line(text: &str, max: usize) -> String {
    let mut line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("")
        .to_owned();
    truncate_chars(&mut line, max);
    line
}

/// Joins the non-blank parts with blank lines, or `None` when there is nothing to say.
pub(crate) fn paragraphs<'a>(parts: impl IntoIterator<Item = Option<&'a str>>) -> Option<String> {
    let mut out = String::new();
    for part in parts.into_iter().flatten().map(str::trim) {
        if part.is_empty() || out.contains(part) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(part);
    }
    (!out.is_empty()).then_some(out)
}

/// Tags as a set in first-seen order, each trimmed and bounded, at most `MAX_TAGS` of them,
/// led by `suppressed` for suppressed findings so that the cap can never drop it.
fn tidy_tags(raw: Vec<String>, suppressed: bool) -> Vec<String> {
    let mut tags: Vec<String> = Vec::with_capacity(raw.len() + usize::from(suppressed));
    if suppressed {
        tags.push(SUPPRESSED_TAG.to_owned());
    }
    for mut tag in raw {
        if tags.len() == text::MAX_TAGS {
            break;
        }
        tidy_required(&mut tag, text::MAX_TAG);
        if !tag.is_empty() && !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags
}

/// The tag every suppressed finding carries.
pub const SUPPRESSED_TAG: &str = "suppressed";

/// Whether `id` is a CVE id (`CVE-YYYY-NNNN…`), in any letter case.
pub(crate) fn is_cve(id: &str) -> bool {
    let id = id.trim().as_bytes();
    id.len() >= 13
        && id[..4].eq_ignore_ascii_case(b"CVE-")
        && id[4..8].iter().all(u8::is_ascii_digit)
        && id[8] == b'-'
        && id[9..].iter().all(u8::is_ascii_digit)
}

/// The CVE or GitHub advisory id that `id` is or starts with, followed by `-` (Grype's
/// SARIF rules are `CVE-2008-0732-geronimo-j2ee-management_1.1_spec`).
pub(crate) fn advisory_prefix(id: &str) -> Option<&str> {
    let id = id.trim();
    let cve_end = id
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("CVE-"))
        .and_then(|_| {
            let digits = id.get(9..)?.bytes().take_while(u8::is_ascii_digit).count();
            Some(9 + digits)
        });
    let end = cve_end.unwrap_or(19);
    let candidate = id.get(..end)?;
    let boundary = id.len() == end || id.as_bytes()[end] == b'-';
    (boundary && (is_cve(candidate) || is_ghsa(candidate))).then_some(candidate)
}

/// Whether `id` is a GitHub advisory id (`GHSA-xxxx-xxxx-xxxx`), in any letter case.
pub(crate) fn is_ghsa(id: &str) -> bool {
    let id = id.trim().as_bytes();
    id.len() == 19
        && id[..5].eq_ignore_ascii_case(b"GHSA-")
        && id[5..].chunks(5).all(|part| {
            part[..4].iter().all(u8::is_ascii_alphanumeric) && (part.len() == 4 || part[4] == b'-')
        })
}

#[cfg(test)]
mod tests;
