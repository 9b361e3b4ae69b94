//! SARIF 2.1.0: one finding per result, over all runs.
//!
//! - Rule: `ruleId`, else `rule.id`, else the descriptor found by `ruleIndex` / `rule.index`
//!   (in `tool.driver.rules`, or in `tool.extensions[rule.toolComponent.index].rules`).
//! - Severity: GitHub's `properties.security-severity` (a CVSS-like score, on the result, else
//!   on its rule) when present; else a severity tag in capitals (`"HIGH"`, as Trivy's
//!   templates and gosec tag rules); else `level` (result, else the rule's
//!   `defaultConfiguration.level`, else "warning", or "none" for results whose `kind` is not
//!   "fail", as §3.27.10 says). error → HIGH, warning → MEDIUM, note → LOW, none → INFO.
//! - Results of kind "pass" or "notApplicable" state that a rule was satisfied or did not
//!   apply; they are not findings and are skipped.
//! - Suppression (§3.27.23, §3.35.3): a result is suppressed when `suppressions` is a non-empty
//!   array and every suppression is accepted, a missing `status` counting as accepted (the
//!   suppression was simply recorded, as in `{"kind": "external"}`). "rejected" means the
//!   team decided not to suppress, and "underReview" that it has not decided yet, so either
//!   leaves the result active. This is also what the SARIF SDK's `IsSuppressed` does. The
//!   pre-standard property name `state` (used by the spec's own Appendix K sample) is read as
//!   `status`.
//! - Advisory: the CVE or GHSA that starts the rule id (Grype: `<advisory>-<package>`),
//!   else the one that ends it as its last word (`[HIGH] CVE-…`, `BDSA-… (CVE-…)`).
//! - Package: from the location's message (Trivy), the rule id after its advisory (Grype),
//!   else the `Package:` and `Installed Version:` lines of the rule's help (Trivy's
//!   templates). A template that keeps one rule per advisory names its first package there.
//! - Title: the message (plain text, or the rule's / tool's message string `id` with its
//!   `arguments` filled in), first line, embedded links `[text](target)` reduced to their
//!   text, cut to 300 characters; else the rule's short description.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};
use vulnledger_aggregates::Severity;

use super::json;
use super::{
    advisory_prefix, cyclonedx::cyclonedx_severity, first_line, is_cve, is_ghsa, paragraphs,
    severity_for_score, valid_cvss, ImportError, ImportedFinding, ReportFormat,
};

const FORMAT: ReportFormat = ReportFormat::Sarif;
const MAX_TITLE: usize = 300;

pub(super) fn parse(bytes: &[u8]) -> Result<(Vec<ImportedFinding>, Option<String>), ImportError> {
    let log: Log = json::from_slice(bytes, FORMAT)?;
    let mut tools: Vec<String> = Vec::new();
    let total = log
        .runs
        .iter()
        .map(|r| r.results.as_ref().map_or(0, Vec::len))
        .sum();
    let mut findings = Vec::with_capacity(total);
    for (run_index, run) in log.runs.into_iter().enumerate() {
        let name = run.tool.driver.name.trim();
        if !name.is_empty() && !tools.iter().any(|t| t == name) {
            tools.push(name.to_owned());
        }
        let rules = RuleIndex::new(&run.tool.driver);
        for (result_index, result) in run.results.iter().flatten().enumerate() {
            if let Some(finding) = read_result(&run, &rules, result, run_index, result_index)? {
                findings.push(finding);
            }
        }
    }
    let tool = (!tools.is_empty()).then(|| tools.join(", "));
    Ok((findings, tool))
}

#[derive(Deserialize)]
struct Log {
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    tool: Tool,
    results: Option<Vec<SarifResult>>,
    artifacts: Option<Vec<Artifact>>,
}

#[derive(Deserialize)]
struct Tool {
    driver: Component,
    extensions: Option<Vec<Component>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Component {
    name: String,
    rules: Option<Vec<Rule>>,
    global_message_strings: Option<HashMap<String, MessageString>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: Option<String>,
    name: Option<String>,
    short_description: Option<MessageString>,
    full_description: Option<MessageString>,
    help: Option<MessageString>,
    default_configuration: Option<Configuration>,
    properties: Option<Properties>,
    message_strings: Option<HashMap<String, MessageString>>,
}

#[derive(Deserialize)]
struct Configuration {
    level: Option<Level>,
}

#[derive(Deserialize)]
struct MessageString {
    text: Option<String>,
}

#[derive(Deserialize)]
struct Properties {
    #[serde(rename = "security-severity")]
    security_severity: Option<SecuritySeverity>,
    tags: Option<Vec<String>>,
}

/// GitHub's `security-severity`: a CVSS-like score ("7.5", or a number), or, from
/// some rule packs (GitLab's for Semgrep), a label ("CRITICAL", read as CycloneDX's
/// severities are). Anything else is ignored, as is a score of 0: Trivy writes "0.0"
/// whenever its severity source has no CVSS v3 score, for a HIGH as for a LOW.
enum SecuritySeverity {
    Score(f64),
    Label(Severity),
    Unusable,
}

impl<'de> Deserialize<'de> for SecuritySeverity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let score = match &value {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => match s.trim().parse::<f64>() {
                Ok(score) => Some(score),
                Err(_) => {
                    return Ok(cyclonedx_severity(s.trim()).map_or(Self::Unusable, Self::Label));
                }
            },
            _ => None,
        };
        Ok(score
            .and_then(valid_cvss)
            .filter(|&s| s > 0.0)
            .map_or(Self::Unusable, Self::Score))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: Option<String>,
    rule_index: Option<i64>,
    rule: Option<RuleReference>,
    kind: Option<String>,
    level: Option<Level>,
    message: Option<Message>,
    locations: Option<Vec<Location>>,
    suppressions: Option<Vec<Suppression>>,
    properties: Option<Properties>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleReference {
    id: Option<String>,
    index: Option<i64>,
    tool_component: Option<ComponentReference>,
}

#[derive(Deserialize)]
struct ComponentReference {
    index: Option<i64>,
}

#[derive(Deserialize)]
struct Message {
    text: Option<String>,
    id: Option<String>,
    arguments: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    physical_location: Option<PhysicalLocation>,
    logical_locations: Option<Vec<LogicalLocation>>,
    /// Trivy says which package a location is about here: `library/debian: apt@1.8.2`.
    /// Read loosely: only its text is used.
    message: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: Option<ArtifactLocation>,
    region: Option<Region>,
}

#[derive(Deserialize)]
struct ArtifactLocation {
    uri: Option<String>,
    index: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogicalLocation {
    fully_qualified_name: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Artifact {
    location: Option<ArtifactLocation>,
}

#[derive(Deserialize)]
struct Suppression {
    #[serde(alias = "state")]
    status: Option<String>,
}

/// Rule ids to their index in the driver, built once per run.
struct RuleIndex<'a> {
    by_id: HashMap<&'a str, usize>,
}

impl<'a> RuleIndex<'a> {
    fn new(driver: &'a Component) -> Self {
        let mut by_id = HashMap::new();
        for (i, rule) in driver.rules.iter().flatten().enumerate() {
            if let Some(id) = rule.id.as_deref() {
                by_id.entry(id).or_insert(i);
            }
        }
        Self { by_id }
    }

    /// The driver's rule for a (possibly hierarchical, "CA5350/md5") rule id.
    fn find(&self, mut id: &str) -> Option<usize> {
        loop {
            if let Some(&i) = self.by_id.get(id) {
                return Some(i);
            }
            id = &id[..id.rfind('/')?];
        }
    }
}

fn read_result(
    run: &Run,
    rules: &RuleIndex<'_>,
    result: &SarifResult,
    run_index: usize,
    result_index: usize,
) -> Result<Option<ImportedFinding>, ImportError> {
    let at = |tail: &str| format!("/runs/{run_index}/results/{result_index}{tail}");
    let kind = result.kind.as_deref().map(str::trim);
    if kind
        .is_some_and(|k| k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("notApplicable"))
    {
        return Ok(None);
    }

    // The component that defines the rule: the driver unless an extension is named.
    let component_index = result
        .rule
        .as_ref()
        .and_then(|r| r.tool_component.as_ref())
        .and_then(|c| c.index)
        .filter(|&i| i >= 0);
    let component = match component_index {
        None => &run.tool.driver,
        Some(i) => run
            .tool
            .extensions
            .as_deref()
            .and_then(|e| e.get(i as usize))
            .ok_or_else(|| {
                let count = run.tool.extensions.as_ref().map_or(0, Vec::len);
                ImportError::new(
                    Some(FORMAT),
                    at("/rule/toolComponent/index"),
                    format!("tool component {i} does not exist: tool.extensions has {count}"),
                )
            })?,
    };
    let component_rules = component.rules.as_deref().unwrap_or_default();
    let explicit_index = result
        .rule
        .as_ref()
        .and_then(|r| r.index)
        .map(|i| (i, "/rule/index"))
        .or(result.rule_index.map(|i| (i, "/ruleIndex")))
        .filter(|&(i, _)| i >= 0) // -1 is SARIF's "not given"
        // A component that lists no rules cannot be pointed into: CodeQL CLI 2.0 and
        // LGTM wrote `"rules": []` with `"ruleIndex": 0` on every result. The
        // result's own rule id stands. An index past a list that has rules is an
        // error, below.
        .filter(|_| !component_rules.is_empty());
    let declared_id = result
        .rule_id
        .as_deref()
        .or_else(|| result.rule.as_ref().and_then(|r| r.id.as_deref()))
        .map(str::trim)
        .filter(|id| !id.is_empty());
    let rule: Option<&Rule> = match explicit_index {
        Some((i, field)) => Some(component_rules.get(i as usize).ok_or_else(|| {
            ImportError::new(
                Some(FORMAT),
                at(field),
                format!(
                    "rule index {i} does not exist: tool component {:?} has {} rules",
                    component.name,
                    component_rules.len()
                ),
            )
        })?),
        None if component_index.is_none() => declared_id
            .and_then(|id| rules.find(id))
            .and_then(|i| component_rules.get(i)),
        None => {
            declared_id.and_then(|id| component_rules.iter().find(|r| r.id.as_deref() == Some(id)))
        }
    };
    let rule_id = declared_id
        .map(str::to_owned)
        .or_else(|| rule.and_then(|r| r.id.clone()));

    // Severity and score.
    // The result's own security-severity, else its rule's.
    let stated = [
        result.properties.as_ref(),
        rule.and_then(|r| r.properties.as_ref()),
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| p.security_severity.as_ref())
    .find(|s| !matches!(s, SecuritySeverity::Unusable));

    let failing = kind.is_none_or(|k| k.eq_ignore_ascii_case("fail"));
    let level = result
        .level
        .or_else(|| {
            failing
                .then(|| rule.and_then(|r| r.default_configuration.as_ref()?.level))
                .flatten()
        })
        .unwrap_or(if failing { Level::Warning } else { Level::None });
    let (severity, score) = match stated {
        Some(SecuritySeverity::Score(score)) => (severity_for_score(*score), Some(*score)),
        Some(SecuritySeverity::Label(label)) => (*label, None),
        _ => (
            severity_tag(result.properties.as_ref())
                .or_else(|| severity_tag(rule.and_then(|r| r.properties.as_ref())))
                .unwrap_or_else(|| level.severity()),
            None,
        ),
    };

    // Texts.
    let message = result
        .message
        .as_ref()
        .and_then(|m| render_message(m, rule, component, &run.tool.driver))
        .map(|m| strip_links(&m));
    let mut title = message
        .as_deref()
        .map(|m| first_line(m, MAX_TITLE))
        .unwrap_or_default();
    if title.is_empty() {
        title = rule
            .and_then(|r| {
                [
                    r.short_description.as_ref().and_then(|d| d.text.as_deref()),
                    r.full_description.as_ref().and_then(|d| d.text.as_deref()),
                    r.name.as_deref(),
                ]
                .into_iter()
                .flatten()
                .map(|t| first_line(t, MAX_TITLE))
                .find(|t| !t.is_empty())
            })
            .or_else(|| rule_id.clone())
            .unwrap_or_else(|| "SARIF result".to_owned());
    }
    let rule_text = rule.and_then(|r| {
        r.full_description
            .as_ref()
            .or(r.short_description.as_ref())
            .and_then(|d| d.text.as_deref())
    });
    let message_detail = message.as_deref().filter(|m| m.trim() != title);
    let description = paragraphs([message_detail, rule_text]);

    let suppressed = result.suppressions.as_deref().is_some_and(|s| {
        !s.is_empty()
            && s.iter().all(|s| {
                s.status
                    .as_deref()
                    .is_none_or(|status| status.trim().eq_ignore_ascii_case("accepted"))
            })
    });

    let mut tags: Vec<String> = Vec::new();
    for properties in [
        rule.and_then(|r| r.properties.as_ref()),
        result.properties.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        tags.extend(properties.tags.iter().flatten().cloned());
    }

    let mut f = ImportedFinding::new(title, severity);
    f.cvss = score;
    let leading_advisory = rule_id.as_deref().and_then(advisory_prefix);
    f.cve = leading_advisory
        .or_else(|| rule_id.as_deref().and_then(trailing_advisory))
        .map(str::to_owned);
    // Scanners of images put the package where SARIF has no field for it; without
    // it, one advisory in two packages of an image (libc6 and libc-bin) would be one
    // finding. Grype: the rule id is `<advisory>-<package>`. Trivy: the location's
    // message is `<target>: <package>@<version>`.
    let first_location = result.locations.as_deref().and_then(|l| l.first());
    if let Some((package, version)) = first_location.and_then(package_of_location) {
        f.package = Some(package);
        f.installed_version = version;
    } else if let Some(rest) = rule_id
        .as_deref()
        .zip(leading_advisory)
        .map(|(rule, advisory)| rule.trim()[advisory.len()..].trim_start_matches('-'))
        .filter(|rest| !rest.is_empty())
    {
        f.package = Some(rest.to_owned());
    } else if let Some((package, version)) = rule
        .and_then(|r| r.help.as_ref()?.text.as_deref())
        .and_then(package_of_help)
    {
        f.package = Some(package);
        f.installed_version = version;
    }
    f.rule_id = rule_id;
    f.location = result
        .locations
        .as_deref()
        .and_then(|l| l.first())
        .and_then(|l| location(l, run));
    f.description = description;
    f.tags = tags;
    f.suppressed = suppressed;
    Ok(Some(f))
}

/// `(package, version)` from a location's message of the form
/// `<uri>: <package>@<version>`, where `<uri>` is the location's own artifact
/// (Trivy's SARIF writer; any other message is left alone).
fn package_of_location(location: &Location) -> Option<(String, Option<String>)> {
    let text = location.message.as_ref()?.get("text")?.as_str()?;
    let uri = location
        .physical_location
        .as_ref()?
        .artifact_location
        .as_ref()?
        .uri
        .as_deref()?;
    let named = text.strip_prefix(uri)?.strip_prefix(": ")?.trim();
    // A scoped npm name starts with `@`: the version follows the last one.
    let (package, version) = match named.rsplit_once('@') {
        Some((package, version)) if !package.is_empty() => (package, Some(version)),
        _ => (named, None),
    };
    let valid = !package.is_empty() && !package.contains(char::is_whitespace);
    valid.then(|| {
        (
            package.to_owned(),
            version.filter(|v| !v.is_empty()).map(str::to_owned),
        )
    })
}

/// A severity named by a tag in capitals, as Trivy's SARIF templates and gosec tag
/// their rules (`["vulnerability", "HIGH", "openssl"]`): read where no
/// `security-severity` is given, before `level`, which those templates set to
/// "error" for every result or for CRITICAL and HIGH alike. Tags in other cases
/// ("high precision", "security") are left alone.
fn severity_tag(properties: Option<&Properties>) -> Option<Severity> {
    properties?
        .tags
        .iter()
        .flatten()
        .map(|tag| tag.trim())
        .filter(|tag| !tag.is_empty() && !tag.chars().any(|c| c.is_ascii_lowercase()))
        .find_map(cyclonedx_severity)
}

/// The CVE or GitHub advisory that a rule id ends with, as its last word, bare or in
/// brackets: Trivy's SARIF templates (`[HIGH] CVE-2019-0001`, and
/// `<target>: <package>-<version> CVE-2019-1549`) and Black Duck
/// (`BDSA-2021-1234 (CVE-2021-5678)`).
fn trailing_advisory(rule_id: &str) -> Option<&str> {
    let last = rule_id.split_whitespace().next_back()?;
    let id = last.trim_matches(|c| matches!(c, '(' | ')' | '[' | ']'));
    (is_cve(id) || is_ghsa(id)).then_some(id)
}

/// `(package, installed version)` from the help text Trivy's SARIF writers give
/// each rule (`Vulnerability …\nSeverity: …\nPackage: <name>\nInstalled Version:
/// <version>\n…`); read only when the result and its rule id name no package.
fn package_of_help(text: &str) -> Option<(String, Option<String>)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(name))
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let package = field("Package:").filter(|p| !p.contains(char::is_whitespace))?;
    Some((
        package.to_owned(),
        field("Installed Version:").map(str::to_owned),
    ))
}

/// "uri:startLine" of the physical location (the uri found through `artifacts` when only its
/// index is given), else the logical location's fully qualified name.
fn location(location: &Location, run: &Run) -> Option<String> {
    if let Some(physical) = &location.physical_location {
        let artifact = physical.artifact_location.as_ref();
        let uri = artifact.and_then(|a| a.uri.as_deref()).or_else(|| {
            let index = usize::try_from(artifact?.index?).ok()?;
            run.artifacts
                .as_deref()?
                .get(index)?
                .location
                .as_ref()?
                .uri
                .as_deref()
        });
        if let Some(uri) = uri.map(str::trim).filter(|u| !u.is_empty()) {
            return Some(match physical.region.as_ref().and_then(|r| r.start_line) {
                Some(line) => format!("{uri}:{line}"),
                None => uri.to_owned(),
            });
        }
    }
    location
        .logical_locations
        .as_deref()?
        .iter()
        .find_map(|l| l.fully_qualified_name.clone().or_else(|| l.name.clone()))
}

/// The message's text, or its message string (looked up by `id` in the rule, then in the
/// tool component, then in the driver) with `{n}` placeholders filled from `arguments`.
fn render_message(
    message: &Message,
    rule: Option<&Rule>,
    component: &Component,
    driver: &Component,
) -> Option<String> {
    if let Some(text) = message.text.as_deref().filter(|t| !t.trim().is_empty()) {
        return Some(text.to_owned());
    }
    let id = message.id.as_deref()?;
    let template = rule
        .and_then(|r| r.message_strings.as_ref()?.get(id))
        .or_else(|| component.global_message_strings.as_ref()?.get(id))
        .or_else(|| driver.global_message_strings.as_ref()?.get(id))?
        .text
        .as_deref()?;
    Some(fill_placeholders(
        template,
        message.arguments.as_deref().unwrap_or_default(),
    ))
}

/// SARIF §3.11.5: `{n}` is argument n; `{{` and `}}` are literal braces.
fn fill_placeholders(template: &str, arguments: &[String]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if let Some(end) = tail.find('}').filter(|_| tail.starts_with('{')) {
            if let Ok(n) = tail[1..end].parse::<usize>() {
                out.push_str(arguments.get(n).map_or(&tail[..=end], String::as_str));
                rest = &tail[end + 1..];
                continue;
            }
        }
        out.push_str(&tail[..1]);
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

/// Reduces SARIF embedded links (`[text](3)`, `[text](https://…)`) to their text and unescapes
/// `\[` / `\]`, giving plain prose.
fn strip_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['[', '\\']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(escaped) = tail
            .strip_prefix("\\[")
            .map(|r| ('[', r))
            .or_else(|| tail.strip_prefix("\\]").map(|r| (']', r)))
        {
            out.push(escaped.0);
            rest = escaped.1;
            continue;
        }
        if tail.starts_with('[') {
            if let Some(close) = tail.find("](") {
                if let Some(end) = tail[close + 2..].find(')') {
                    let label = &tail[1..close];
                    if !label.contains('[') {
                        out.push_str(label);
                        rest = &tail[close + 2 + end + 1..];
                        continue;
                    }
                }
            }
        }
        out.push_str(&tail[..1]);
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

/// SARIF `level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Level {
    None,
    Note,
    Warning,
    Error,
}

impl Level {
    pub(super) fn severity(self) -> Severity {
        match self {
            Level::Error => Severity::High,
            Level::Warning => Severity::Medium,
            Level::Note => Severity::Low,
            Level::None => Severity::Info,
        }
    }

    pub(super) fn from_label(label: &str) -> Option<Self> {
        [
            ("none", Level::None),
            ("note", Level::Note),
            ("warning", Level::Warning),
            ("error", Level::Error),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(label))
        .map(|(_, level)| level)
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        json::label(
            deserializer,
            "level",
            "none, note, warning, error",
            Level::from_label,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_doubled_braces_are_literal() {
        let args = vec!["ptr".to_owned(), "0".to_owned()];
        assert_eq!(
            fill_placeholders("Variable \"{0}\" declared [here]({1}). {{x}} {2}", &args),
            "Variable \"ptr\" declared [here](0). {x} {2}"
        );
    }

    #[test]
    fn embedded_links_become_their_text() {
        assert_eq!(
            strip_links("This [user value](1) reaches [a sink](https://x/y). \\[not a link\\]"),
            "This user value reaches a sink. [not a link]"
        );
        assert_eq!(strip_links("array[0] is [fine"), "array[0] is [fine");
    }

    #[test]
    fn hierarchical_rule_ids_fall_back_to_their_parent_rule() {
        let driver: Component = serde_json::from_str(
            r#"{"name":"t","rules":[{"id":"CA2101"},{"id":"CA5350"},{"id":"py/empty-except"}]}"#,
        )
        .unwrap();
        let index = RuleIndex::new(&driver);
        assert_eq!(index.find("CA5350/md5"), Some(1));
        assert_eq!(index.find("py/empty-except"), Some(2));
        assert_eq!(index.find("nope"), None);
    }
}
