//! A finding's stable identity: how a later report is matched to an existing finding.
//!
//! `hex(SHA-256(domain tag, tenant, asset, rule-or-CVE, package, location))`. Every text field
//! is written as a presence byte followed by its length (u64, big-endian) and bytes, so no
//! two different field tuples can produce the same input ("ab"+"c" vs "a"+"bc", absent vs
//! empty). Normalization keeps cosmetic differences between scanners and runs from splitting
//! one finding in two:
//! - all fields are trimmed, and blank counts as absent;
//! - advisory ids are uppercased (`cve-2021-44228` and `CVE-2021-44228` are one finding);
//! - package names are lowercased (PyPI, npm, Debian and Maven names do not differ by case in
//!   practice; Grype says `Django` where pip says `django`);
//! - rule ids, titles, assets and locations keep their case (paths are case-sensitive).
//!
//! The kind of key (advisory, rule, title) is hashed too, so a rule named like an advisory
//! cannot collide with it.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ImportedFinding;

/// Domain-separation tag; bump the version to re-key every finding deliberately.
const DOMAIN: &[u8] = b"vulnledger/finding-fingerprint/v1\0";

/// What identifies the problem within an asset: the advisory id if any, else the scanner's
/// rule id, else the title.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityKey<'a> {
    Advisory(&'a str),
    Rule(&'a str),
    Title(&'a str),
}

impl<'a> IdentityKey<'a> {
    pub fn of(finding: &'a ImportedFinding) -> Self {
        let present = |v: &'a Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty());
        if let Some(id) = present(&finding.cve) {
            IdentityKey::Advisory(id)
        } else if let Some(rule) = present(&finding.rule_id) {
            IdentityKey::Rule(rule)
        } else {
            IdentityKey::Title(finding.title.trim())
        }
    }
}

/// The fingerprint of `finding` on `asset` in `tenant_id`: 64 lowercase hex digits.
pub fn fingerprint(tenant_id: Uuid, asset: &str, finding: &ImportedFinding) -> String {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(tenant_id.as_bytes());
    field(&mut hasher, Some(asset));
    match IdentityKey::of(finding) {
        IdentityKey::Advisory(id) => {
            hasher.update([1]);
            field(&mut hasher, Some(&id.to_ascii_uppercase()));
        }
        IdentityKey::Rule(rule) => {
            hasher.update([2]);
            field(&mut hasher, Some(rule));
        }
        IdentityKey::Title(title) => {
            hasher.update([3]);
            field(&mut hasher, Some(title));
        }
    }
    let package = finding
        .package
        .as_deref()
        .map(|p| p.trim().to_ascii_lowercase());
    field(&mut hasher, package.as_deref());
    field(&mut hasher, finding.location.as_deref());
    hex(&hasher.finalize())
}

/// Presence byte, then length-prefixed bytes; blank is written as absent.
fn field(hasher: &mut Sha256, value: Option<&str>) {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => hasher.update([0]),
        Some(v) => {
            hasher.update([1]);
            hasher.update((v.len() as u64).to_be_bytes());
            hasher.update(v.as_bytes());
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use vulnledger_aggregates::Severity;

    use super::*;

    fn finding() -> ImportedFinding {
        let mut f = ImportedFinding::new("Heap overflow in freetype".into(), Severity::High);
        f.cve = Some("CVE-2020-15999".into());
        f.package = Some("freetype".into());
        f.location = Some("teamdojo:latest (alpine 3.9.4)".into());
        f
    }

    const TENANT: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

    #[test]
    fn the_fingerprint_is_64_lowercase_hex_digits_and_deterministic() {
        let fp = fingerprint(TENANT, "registry/app", &finding());
        assert_eq!(fp.len(), 64);
        assert!(fp
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(fp, fingerprint(TENANT, "registry/app", &finding()));
    }

    #[test]
    fn tenant_asset_key_package_and_location_each_change_the_fingerprint() {
        let base = fingerprint(TENANT, "registry/app", &finding());
        assert_ne!(base, fingerprint(Uuid::nil(), "registry/app", &finding()));
        assert_ne!(base, fingerprint(TENANT, "registry/other", &finding()));
        let mut f = finding();
        f.cve = Some("CVE-2020-15998".into());
        assert_ne!(base, fingerprint(TENANT, "registry/app", &f));
        let mut f = finding();
        f.package = Some("freetype2".into());
        assert_ne!(base, fingerprint(TENANT, "registry/app", &f));
        let mut f = finding();
        f.location = None;
        assert_ne!(base, fingerprint(TENANT, "registry/app", &f));
    }

    #[test]
    fn title_severity_versions_description_and_tags_do_not_change_the_fingerprint() {
        let base = fingerprint(TENANT, "registry/app", &finding());
        let mut f = finding();
        f.title = "Another wording".into();
        f.severity = Severity::Low;
        f.cvss = Some(9.8);
        f.installed_version = Some("2.9.1-r2".into());
        f.fixed_version = Some("2.9.1-r3".into());
        f.description = Some("text".into());
        f.tags = vec!["x".into()];
        assert_eq!(base, fingerprint(TENANT, "registry/app", &f));
    }

    #[test]
    fn advisory_ids_and_package_names_ignore_case_and_surrounding_blanks() {
        let base = fingerprint(TENANT, "registry/app", &finding());
        let mut f = finding();
        f.cve = Some(" cve-2020-15999 ".into());
        f.package = Some("FreeType".into());
        assert_eq!(base, fingerprint(TENANT, "registry/app", &f));
        let mut f = finding();
        f.location = Some("TEAMDOJO:latest (alpine 3.9.4)".into());
        assert_ne!(base, fingerprint(TENANT, "registry/app", &f));
    }

    #[test]
    fn fields_cannot_bleed_into_each_other() {
        let mut a = finding();
        a.package = Some("free".into());
        a.location = Some("typeX".into());
        let mut b = finding();
        b.package = Some("freetype".into());
        b.location = Some("X".into());
        assert_ne!(
            fingerprint(TENANT, "app", &a),
            fingerprint(TENANT, "app", &b)
        );
        let mut absent = finding();
        absent.package = None;
        let mut blank = finding();
        blank.package = Some("  ".into());
        assert_eq!(
            fingerprint(TENANT, "app", &absent),
            fingerprint(TENANT, "app", &blank)
        );
    }

    #[test]
    fn the_key_falls_back_from_advisory_to_rule_to_title_and_kinds_do_not_collide() {
        let mut f = finding();
        f.rule_id = Some("DS002".into());
        assert_eq!(IdentityKey::of(&f), IdentityKey::Advisory("CVE-2020-15999"));
        f.cve = None;
        assert_eq!(IdentityKey::of(&f), IdentityKey::Rule("DS002"));
        f.rule_id = None;
        assert_eq!(
            IdentityKey::of(&f),
            IdentityKey::Title("Heap overflow in freetype")
        );

        let mut as_rule = finding();
        as_rule.cve = None;
        as_rule.rule_id = Some("CVE-2020-15999".into());
        assert_ne!(
            fingerprint(TENANT, "app", &finding()),
            fingerprint(TENANT, "app", &as_rule)
        );
    }
}
