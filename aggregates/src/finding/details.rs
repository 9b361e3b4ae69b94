//! What a scanner reports about a finding.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{text, DomainError, Severity};

/// The scanner's description of a finding, as stored in `FindingDetected`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindingDetails {
    /// Stable identity across scans; how a later report is matched to this finding.
    pub fingerprint: String,
    pub asset: String,
    pub scanner: String,
    pub title: String,
    pub severity: Severity,
    pub cvss: Option<f64>,
    pub cve: Option<String>,
    pub rule_id: Option<String>,
    pub package: Option<String>,
    pub installed_version: Option<String>,
    pub fixed_version: Option<String>,
    pub location: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
}

impl FindingDetails {
    /// Trimmed and bounded copy, or the first field that is not acceptable.
    pub fn validated(self) -> Result<Self, DomainError> {
        let fingerprint = text::required("fingerprint", &self.fingerprint, text::MAX_FINGERPRINT)?;
        let asset = text::required("asset", &self.asset, text::MAX_ASSET)?;
        let scanner = text::required("scanner", &self.scanner, text::MAX_SCANNER)?;
        let title = text::required("title", &self.title, text::MAX_TITLE)?;
        if let Some(cvss) = self.cvss {
            // Also rejects NaN, which would otherwise poison sorting and averages downstream.
            if !(0.0..=10.0).contains(&cvss) {
                return Err(DomainError::invalid("cvss", "must be between 0.0 and 10.0"));
            }
        }
        Ok(Self {
            fingerprint,
            asset,
            scanner,
            title,
            severity: self.severity,
            cvss: self.cvss,
            cve: text::optional("cve", self.cve, text::MAX_IDENTIFIER)?,
            rule_id: text::optional("ruleId", self.rule_id, text::MAX_IDENTIFIER)?,
            package: text::optional("package", self.package, text::MAX_PACKAGE)?,
            installed_version: text::optional(
                "installedVersion",
                self.installed_version,
                text::MAX_VERSION,
            )?,
            fixed_version: text::optional("fixedVersion", self.fixed_version, text::MAX_VERSION)?,
            location: text::optional("location", self.location, text::MAX_LOCATION)?,
            description: text::optional("description", self.description, text::MAX_DESCRIPTION)?,
            tags: text::tags(self.tags)?,
        })
    }
}
