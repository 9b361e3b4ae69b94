//! Unit tests of the shared parts: format labels, severity tables, text tidying, errors.
//! Fixture-driven tests live in `tests/importers.rs`.

use vulnledger_aggregates::Severity;

use super::sarif::Level;
use super::*;

#[test]
fn formats_parse_case_insensitively_and_print_their_query_label() {
    for format in ReportFormat::ALL {
        assert_eq!(format.to_string().parse::<ReportFormat>(), Ok(format));
        assert_eq!(
            format.as_str().to_uppercase().parse::<ReportFormat>(),
            Ok(format)
        );
    }
    assert_eq!("CycloneDX".parse(), Ok(ReportFormat::CycloneDx));
    assert_eq!(" Sarif ".parse(), Ok(ReportFormat::Sarif));
    let err = "xml".parse::<ReportFormat>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown report format \"xml\": expected one of sarif, trivy, grype, cyclonedx, native"
    );
    assert_eq!(
        serde_json::from_str::<ReportFormat>("\"GRYPE\"").unwrap(),
        ReportFormat::Grype
    );
    assert_eq!(
        serde_json::to_string(&ReportFormat::CycloneDx).unwrap(),
        "\"cyclonedx\""
    );
}

#[test]
fn grype_negligible_and_unknown_are_info() {
    use super::grype::grype_severity as g;
    assert_eq!(g("Critical"), Some(Severity::Critical));
    assert_eq!(g("High"), Some(Severity::High));
    assert_eq!(g("Medium"), Some(Severity::Medium));
    assert_eq!(g("Low"), Some(Severity::Low));
    assert_eq!(g("Negligible"), Some(Severity::Info));
    assert_eq!(g("Unknown"), Some(Severity::Info));
    assert_eq!(g("negligible"), Some(Severity::Info));
    assert_eq!(g("Bogus"), None);
}

#[test]
fn trivy_unknown_is_info() {
    use super::trivy::trivy_severity as t;
    assert_eq!(t("CRITICAL"), Some(Severity::Critical));
    assert_eq!(t("HIGH"), Some(Severity::High));
    assert_eq!(t("MEDIUM"), Some(Severity::Medium));
    assert_eq!(t("LOW"), Some(Severity::Low));
    assert_eq!(t("UNKNOWN"), Some(Severity::Info));
    assert_eq!(t("high"), Some(Severity::High));
    assert_eq!(t("NEGLIGIBLE"), None);
}

#[test]
fn sarif_levels_map_error_warning_note_none_to_high_medium_low_info() {
    assert_eq!(
        Level::from_label("error").map(Level::severity),
        Some(Severity::High)
    );
    assert_eq!(
        Level::from_label("warning").map(Level::severity),
        Some(Severity::Medium)
    );
    assert_eq!(
        Level::from_label("note").map(Level::severity),
        Some(Severity::Low)
    );
    assert_eq!(
        Level::from_label("none").map(Level::severity),
        Some(Severity::Info)
    );
    assert_eq!(Level::from_label("fatal"), None);
}

#[test]
fn cvss_scores_fall_into_the_cvss_v3_bands() {
    for (score, severity) in [
        (10.0, Severity::Critical),
        (9.0, Severity::Critical),
        (8.99, Severity::High),
        (7.0, Severity::High),
        (6.9, Severity::Medium),
        (4.0, Severity::Medium),
        (3.99, Severity::Low),
        (0.1, Severity::Low),
        (0.0, Severity::Info),
    ] {
        assert_eq!(severity_for_score(score), severity, "score {score}");
    }
}

#[test]
fn cyclonedx_info_none_and_unknown_are_info() {
    use super::cyclonedx::cyclonedx_severity as c;
    assert_eq!(c("critical"), Some(Severity::Critical));
    assert_eq!(c("high"), Some(Severity::High));
    assert_eq!(c("medium"), Some(Severity::Medium));
    assert_eq!(c("low"), Some(Severity::Low));
    assert_eq!(c("info"), Some(Severity::Info));
    assert_eq!(c("none"), Some(Severity::Info));
    assert_eq!(c("unknown"), Some(Severity::Info));
    assert_eq!(c("severe"), None);
}

#[test]
fn native_severities_ignore_case() {
    use super::native::native_severity as n;
    assert_eq!(n("critical"), Some(Severity::Critical));
    assert_eq!(n("High"), Some(Severity::High));
    assert_eq!(n("INFO"), Some(Severity::Info));
    assert_eq!(n("informational"), Some(Severity::Info));
    assert_eq!(n("urgent"), None);
}

#[test]
fn long_texts_are_cut_by_characters_with_an_ellipsis() {
    let mut s = "é".repeat(10);
    truncate_chars(&mut s, 10);
    assert_eq!(s, "é".repeat(10));
    truncate_chars(&mut s, 4);
    assert_eq!(s, "ééé…");
    assert_eq!(s.chars().count(), 4);
    assert_eq!(first_line("\n  first line  \nsecond", 100), "first line");
}

#[test]
fn normalization_trims_drops_blanks_bounds_cvss_and_leads_tags_with_suppressed() {
    let mut f = ImportedFinding::new("  title  ".into(), Severity::Low);
    f.cve = Some("   ".into());
    f.package = Some(" pkg ".into());
    f.cvss = Some(11.0);
    f.tags = vec![" a ".into(), "a".into(), "".into(), "b".into()];
    f.suppressed = true;
    let f = f.normalized();
    assert_eq!(f.title, "title");
    assert_eq!(f.cve, None);
    assert_eq!(f.package.as_deref(), Some("pkg"));
    assert_eq!(f.cvss, None);
    assert_eq!(f.tags, vec!["suppressed", "a", "b"]);

    let mut many = ImportedFinding::new(String::new(), Severity::Low);
    many.rule_id = Some("R1".into());
    many.tags = (0..80).map(|i| format!("t{i}")).collect();
    let many = many.normalized();
    assert_eq!(many.title, "R1");
    assert_eq!(many.tags.len(), vulnledger_aggregates::text::MAX_TAGS);
}

#[test]
fn advisory_id_shapes_are_recognized() {
    assert!(is_cve("CVE-2021-44228"));
    assert!(is_cve("cve-2019-1010022"));
    assert!(!is_cve("CVE-21-1"));
    assert!(!is_cve("TEMP-0841856-B18BAF"));
    assert!(is_ghsa("GHSA-v6rh-hp5x-86rv"));
    assert!(!is_ghsa("GHSA-v6rh-hp5x"));
}

#[test]
fn errors_display_format_pointer_and_message() {
    let e = ImportError::new(
        Some(ReportFormat::Sarif),
        "/runs/0/results/3/level",
        "unknown level",
    );
    assert_eq!(
        e.to_string(),
        "sarif report at /runs/0/results/3/level: unknown level"
    );
    let e = ImportError::new(None, "$", "not valid JSON");
    assert_eq!(e.to_string(), "unrecognized report at $: not valid JSON");
}

#[test]
fn into_details_carries_every_field_and_the_fingerprint() {
    let mut f = ImportedFinding::new("t".into(), Severity::High);
    f.cve = Some("CVE-2020-15999".into());
    f.package = Some("freetype".into());
    f.tags = vec!["x".into()];
    let tenant = Uuid::nil();
    let expected = fingerprint(tenant, "img", &f);
    let details = f.clone().into_details(tenant, "img", "trivy");
    assert_eq!(details.fingerprint, expected);
    assert_eq!(details.asset, "img");
    assert_eq!(details.scanner, "trivy");
    assert_eq!(details.cve, f.cve);
    assert_eq!(details.tags, f.tags);
    assert!(details.validated().is_ok());
}
