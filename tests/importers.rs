//! The report importers against real reports (DefectDojo's test data, see
//! `shared/fixtures/reports/README.md`) and against malformed input.
//!
//! For each fixture: how many entries the importer reads, how many distinct fingerprints they
//! have for one asset (what ingestion keeps after dedup), which format sniffing picks, and
//! field values read by hand from the file.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use uuid::Uuid;
use vulnledger::importers::{
    fingerprint, parse, sniff, ImportError, ImportedFinding, ParsedReport, ReportFormat,
};
use vulnledger_aggregates::Severity;

macro_rules! fixture {
    ($path:literal) => {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/reports/",
            $path
        ))
        .expect(concat!("fixture ", $path))
    };
}

/// A report of `tests/fixtures/reports` (see its README).
macro_rules! more {
    ($path:literal) => {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/reports/",
            $path
        ))
        .expect(concat!("fixture ", $path))
    };
}

const TENANT: Uuid = Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0001);

fn read(bytes: &[u8], expected: ReportFormat) -> ParsedReport {
    assert_eq!(sniff(bytes).expect("sniffable"), expected);
    let sniffed = parse(bytes, None).expect("parses when sniffed");
    let declared = parse(bytes, Some(expected)).expect("parses when declared");
    assert_eq!(sniffed, declared);
    assert_eq!(sniffed.format, expected);
    for f in &sniffed.findings {
        // Everything an importer yields must be acceptable to the domain as is.
        let details = f.clone().into_details(TENANT, "asset", "scanner");
        assert!(details.validated().is_ok(), "{f:?}");
    }
    sniffed
}

fn distinct_fingerprints(report: &ParsedReport) -> usize {
    report
        .findings
        .iter()
        .map(|f| fingerprint(TENANT, "registry.example/app:1.0", f))
        .collect::<HashSet<_>>()
        .len()
}

fn find<'a>(report: &'a ParsedReport, cve: &str, package: &str) -> &'a ImportedFinding {
    report
        .findings
        .iter()
        .find(|f| f.cve.as_deref() == Some(cve) && f.package.as_deref() == Some(package))
        .unwrap_or_else(|| panic!("{cve} in {package}"))
}

fn count(report: &ParsedReport, severity: Severity) -> usize {
    report
        .findings
        .iter()
        .filter(|f| f.severity == severity)
        .count()
}

// ---------------------------------------------------------------------------------------------
// Trivy

#[test]
fn trivy_schema_2_reads_5_vulnerabilities_with_5_distinct_fingerprints() {
    let report = read(
        &fixture!("trivy/scheme_2_many_vulns.json"),
        ReportFormat::Trivy,
    );
    assert_eq!(report.findings.len(), 5);
    assert_eq!(distinct_fingerprints(&report), 5);
    assert_eq!(report.tool.as_deref(), Some("Trivy"));

    let freetype = find(&report, "CVE-2020-15999", "freetype");
    assert_eq!(
        freetype.title,
        "freetype: Heap-based buffer overflow due to integer truncation in Load_SBit_Png"
    );
    assert_eq!(freetype.severity, Severity::Medium);
    // SeveritySource is nvd, so NVD's 6.5 rather than Red Hat's 8.6.
    assert_eq!(freetype.cvss, Some(6.5));
    assert_eq!(freetype.installed_version.as_deref(), Some("2.9.1-r2"));
    assert_eq!(freetype.fixed_version.as_deref(), Some("2.9.1-r3"));
    assert_eq!(
        freetype.location.as_deref(),
        Some("teamdojo:latest (alpine 3.9.4)")
    );
    assert_eq!(freetype.tags, vec!["CWE-787"]);
    assert!(freetype
        .description
        .as_deref()
        .unwrap()
        .starts_with("Heap buffer overflow in Freetype"));

    let bzip = find(&report, "CVE-2019-12900", "libbz2");
    assert_eq!(bzip.severity, Severity::Critical);
    assert_eq!(bzip.cvss, None, "the entry carries no CVSS map");

    let krb5 = find(&report, "CVE-2020-28196", "krb5-libs");
    assert_eq!(krb5.severity, Severity::High);
    assert_eq!(krb5.cvss, Some(7.5), "Red Hat's is the only V3 score");

    let compress = find(
        &report,
        "CVE-2018-1324",
        "org.apache.commons:commons-compress",
    );
    assert_eq!(compress.installed_version.as_deref(), Some("1.14"));
    assert_eq!(compress.fixed_version.as_deref(), Some("1.16"));
    assert_eq!(
        compress.location.as_deref(),
        Some("app/libs/commons-compress-1.14.jar")
    );
    assert_eq!(compress.cvss, Some(5.5));
}

#[test]
fn trivy_legacy_list_reads_93_vulnerabilities_with_93_distinct_fingerprints() {
    let report = read(
        &fixture!("trivy/legacy_many_vulns.json"),
        ReportFormat::Trivy,
    );
    assert_eq!(report.findings.len(), 93);
    // The same CVE appears in several packages (libc-bin and libc6...), but never twice for
    // one package, so nothing merges.
    assert_eq!(distinct_fingerprints(&report), 93);
    assert_eq!(count(&report, Severity::High), 18);
    assert_eq!(count(&report, Severity::Medium), 9);
    assert_eq!(count(&report, Severity::Low), 65);
    assert_eq!(count(&report, Severity::Info), 1, "the one UNKNOWN");

    let apt = &report.findings[0];
    assert_eq!(apt.cve.as_deref(), Some("CVE-2011-3374"));
    assert_eq!(apt.title, "CVE-2011-3374 in apt", "no Title in the entry");
    assert_eq!(apt.package.as_deref(), Some("apt"));
    assert_eq!(apt.installed_version.as_deref(), Some("1.8.2.2"));
    assert_eq!(apt.fixed_version, None);
    assert_eq!(apt.severity, Severity::Low);
    assert_eq!(apt.cvss, Some(3.7));
    assert_eq!(apt.location.as_deref(), Some("debian (debian 10.8)"));

    let zstd = find(&report, "TEMP-0981404-911A2F", "libzstd1");
    assert_eq!(zstd.severity, Severity::Info, "UNKNOWN is INFO");
    assert_eq!(zstd.installed_version.as_deref(), Some("1.3.8+dfsg-3"));
    assert_eq!(zstd.cvss, None);

    let bash = find(&report, "CVE-2019-18276", "bash");
    // SeveritySource is debian, which has no score: NVD's is next.
    assert_eq!(bash.cvss, Some(7.8));
    assert_eq!(bash.severity, Severity::Low);
}

#[test]
fn trivy_misconfigurations_and_secrets_read_2_vulnerabilities_1_failed_check_and_2_secrets() {
    let bytes = fixture!("trivy/misconfigurations_and_secrets.json");
    let report = read(&bytes, ReportFormat::Trivy);
    // 2 vulnerabilities + 1 misconfiguration (Status FAIL; the 22 passed checks are only
    // counted in MisconfSummary, not listed) + 2 secrets.
    assert_eq!(report.findings.len(), 5);
    assert_eq!(distinct_fingerprints(&report), 5);

    let urllib3 = find(&report, "CVE-2021-33503", "urllib3");
    assert_eq!(urllib3.severity, Severity::High);
    assert_eq!(urllib3.cvss, Some(7.5));
    assert_eq!(urllib3.installed_version.as_deref(), Some("1.26.3"));
    assert_eq!(urllib3.fixed_version.as_deref(), Some("1.26.5"));
    assert_eq!(urllib3.location.as_deref(), Some("requirements.txt"));
    assert_eq!(
        find(&report, "CVE-2021-28363", "urllib3")
            .fixed_version
            .as_deref(),
        Some("1.26.4")
    );

    let ds002 = &report.findings[2];
    assert_eq!(ds002.rule_id.as_deref(), Some("DS002"));
    assert_eq!(ds002.cve, None);
    assert_eq!(ds002.title, "Image user should not be 'root'");
    assert_eq!(ds002.severity, Severity::High);
    assert_eq!(
        ds002.location.as_deref(),
        Some("Dockerfile"),
        "no cause lines"
    );
    assert_eq!(ds002.tags, vec!["misconfiguration"]);
    let text = ds002.description.as_deref().unwrap();
    assert!(text.starts_with("Specify at least 1 USER command in Dockerfile"));
    assert!(text.contains("Resolution: Add 'USER <non root user name>' line"));

    let secrets: Vec<&ImportedFinding> = report.findings[3..].iter().collect();
    for secret in &secrets {
        assert_eq!(secret.rule_id.as_deref(), Some("github-pat"));
        assert_eq!(secret.title, "GitHub Personal Access Token");
        assert_eq!(secret.severity, Severity::Critical);
        assert_eq!(secret.tags, vec!["secret"]);
        // The Match text is the secret itself: it must be nowhere in the finding.
        let dump = format!("{secret:?}");
        assert!(
            !dump.contains("GITHUB_PAT") && !dump.contains("*****"),
            "{dump}"
        );
    }
    assert_eq!(secrets[0].location.as_deref(), Some("Dockerfile:24"));
    assert_eq!(secrets[1].location.as_deref(), Some("secret.txt:1"));
}

#[test]
fn trivy_misconfiguration_lines_passes_and_exceptions() {
    let doc = br#"{"SchemaVersion": 2, "Trivy": {"Version": "0.56.2"}, "Results": [{
        "Target": "k8s/deploy.yaml", "Class": "config",
        "Misconfigurations": [
          {"ID": "KSV001", "AVDID": "AVD-KSV-0001", "Title": "Process can elevate privilege",
           "Severity": "MEDIUM", "Status": "FAIL",
           "CauseMetadata": {"StartLine": 10, "EndLine": 14, "Code": {"Lines": [{"Content": "x"}]}}},
          {"ID": "KSV002", "Title": "Ok", "Severity": "LOW", "Status": "PASS"},
          {"ID": "KSV003", "Title": "Waived", "Severity": "HIGH", "Status": "EXCEPTION"},
          {"AVDID": "AVD-KSV-0004", "Title": "Old report", "Severity": "LOW",
           "CauseMetadata": {"StartLine": 3, "EndLine": 3}}
        ]}]}"#;
    let report = parse(doc, None).unwrap();
    assert_eq!(report.tool.as_deref(), Some("Trivy 0.56.2"));
    let got: Vec<(Option<&str>, Option<&str>)> = report
        .findings
        .iter()
        .map(|f| (f.rule_id.as_deref(), f.location.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some("KSV001"), Some("k8s/deploy.yaml:10-14")),
            (Some("AVD-KSV-0004"), Some("k8s/deploy.yaml:3")),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Grype

#[test]
fn grype_check_all_fields_reads_6_matches_with_5_distinct_fingerprints() {
    let report = read(
        &fixture!("grype/check_all_fields.json"),
        ReportFormat::Grype,
    );
    // The file holds 6 matches; the last two are byte-for-byte the same Django match, which
    // the README's count of 5 already merges. One finding per match is read, and dedup by
    // fingerprint merges the repeat: 5 findings are kept.
    assert_eq!(report.findings.len(), 6);
    assert_eq!(report.findings[4], report.findings[5]);
    assert_eq!(distinct_fingerprints(&report), 5);
    assert_eq!(report.tool.as_deref(), Some("grype 0.28.0"));

    let krb5 = &report.findings[0];
    assert_eq!(krb5.cve.as_deref(), Some("CVE-2004-0971"));
    assert_eq!(
        krb5.title,
        "CVE-2004-0971 in libgssapi-krb5-2@1.17-3+deb10u3"
    );
    assert_eq!(krb5.package.as_deref(), Some("libgssapi-krb5-2"));
    assert_eq!(krb5.installed_version.as_deref(), Some("1.17-3+deb10u3"));
    assert_eq!(krb5.severity, Severity::Info, "Negligible is INFO");
    assert_eq!(krb5.cvss, None, "only a CVSS 2.0 score is given");
    assert_eq!(krb5.fixed_version, None, "state not-fixed");
    assert_eq!(krb5.location.as_deref(), Some("/var/lib/dpkg/status"));
    assert!(krb5
        .description
        .as_deref()
        .unwrap()
        .starts_with("The krb5-send-pr script"));

    let redis = find(&report, "CVE-2021-32626", "redis");
    assert_eq!(redis.severity, Severity::High);
    assert_eq!(redis.cvss, Some(8.8), "the 3.1 score, not the 2.0 one");
    assert_eq!(redis.installed_version.as_deref(), Some("4.0.2"));
    assert_eq!(
        redis.fixed_version, None,
        "fix versions listed but state wont-fix"
    );
    assert_eq!(
        redis.location.as_deref(),
        Some("/usr/local/lib/python3.8/site-packages/redis-4.0.2.dist-info/METADATA")
    );

    let libc = find(&report, "CVE-2021-33574", "libc6");
    assert_eq!(libc.severity, Severity::Critical);
    assert_eq!(libc.cvss, Some(9.8), "from the related NVD record");

    // A GHSA match with a related CVE: the CVE is the advisory, the GHSA stays visible.
    let django = &report.findings[4];
    assert_eq!(django.cve.as_deref(), Some("CVE-2021-44420"));
    assert_eq!(django.rule_id.as_deref(), Some("GHSA-v6rh-hp5x-86rv"));
    assert_eq!(django.tags, vec!["GHSA-v6rh-hp5x-86rv"]);
    assert_eq!(django.title, "GHSA-v6rh-hp5x-86rv in Django@3.2.9");
    assert_eq!(django.fixed_version.as_deref(), Some("3.2.10"));
    assert_eq!(django.cvss, Some(7.3));
    assert_eq!(django.severity, Severity::High);
}

#[test]
fn grype_many_vulns_reads_1509_matches_with_1509_distinct_fingerprints() {
    let report = read(&fixture!("grype/many_vulns.json"), ReportFormat::Grype);
    assert_eq!(report.findings.len(), 1509);
    assert_eq!(distinct_fingerprints(&report), 1509);
    assert_eq!(report.tool.as_deref(), Some("grype 0.7.0"));
    // Negligible 681 + Unknown 76.
    assert_eq!(count(&report, Severity::Info), 757);
    assert_eq!(count(&report, Severity::Medium), 613);
    assert_eq!(count(&report, Severity::Low), 107);
    assert_eq!(count(&report, Severity::High), 32);

    let gnutls = &report.findings[0];
    assert_eq!(gnutls.cve.as_deref(), Some("CVE-2011-3389"));
    assert_eq!(gnutls.package.as_deref(), Some("libgnutls-openssl27"));
    assert_eq!(gnutls.installed_version.as_deref(), Some("3.6.7-4+deb10u5"));
    assert_eq!(gnutls.severity, Severity::Medium);
    assert_eq!(gnutls.cvss, None, "Grype 0.7 gives only cvssV2 here");

    // Grype 0.x shapes: fixedInVersion and cvssV3.
    let ldap = &report.findings[6];
    assert_eq!(ldap.cve.as_deref(), Some("CVE-2020-36221"));
    assert_eq!(ldap.package.as_deref(), Some("libldap-2.4-2"));
    assert_eq!(
        ldap.installed_version.as_deref(),
        Some("2.4.47+dfsg-3+deb10u4")
    );
    assert_eq!(ldap.fixed_version.as_deref(), Some("2.4.47+dfsg-3+deb10u5"));
    let pip = &report.findings[1088];
    assert_eq!(pip.cve.as_deref(), Some("CVE-2018-20225"));
    assert_eq!(pip.severity, Severity::High);
    assert_eq!(pip.cvss, Some(7.8));
    assert_eq!(
        pip.location.as_deref(),
        Some("/usr/local/lib/python3.6/site-packages/pip-20.3.3.dist-info/METADATA")
    );
    assert_eq!(
        report
            .findings
            .iter()
            .filter(|f| f.fixed_version.is_some())
            .count(),
        32
    );
}

#[test]
fn grype_many_vulns_parses_repeatedly_to_the_same_1509_findings() {
    let bytes = fixture!("grype/many_vulns.json");
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let report = parse(&bytes, None).unwrap();
        best = best.min(start.elapsed());
        assert_eq!(report.findings.len(), 1509);
    }
    println!(
        "grype/many_vulns.json ({} bytes, 1509 matches): best of 5 {best:?}",
        bytes.len()
    );
    // Speed is measured by `cargo bench --bench import`, not asserted here.
}

#[test]
fn a_generated_grype_report_of_100k_matches_parses_quickly() {
    const N: usize = 100_000;
    let mut doc = String::with_capacity(N * 200);
    doc.push_str(r#"{"descriptor":{"name":"grype","version":"0.99.0"},"matches":["#);
    for i in 0..N {
        if i > 0 {
            doc.push(',');
        }
        let severity = ["Critical", "High", "Medium", "Low", "Negligible"][i % 5];
        doc.push_str(&format!(
            r#"{{"vulnerability":{{"id":"CVE-2024-{i}","severity":"{severity}","fix":{{"versions":["1.{i}"],"state":"fixed"}}}},"artifact":{{"name":"pkg{}","version":"1.0","locations":[{{"path":"/p/{i}"}}]}}}}"#,
            i % 1000
        ));
    }
    doc.push_str("]}");
    let start = Instant::now();
    let report = parse(doc.as_bytes(), None).unwrap();
    let elapsed = start.elapsed();
    println!("{N} generated matches ({} bytes): {elapsed:?}", doc.len());
    assert_eq!(report.findings.len(), N);
    assert_eq!(
        report.findings[N - 1].cve.as_deref(),
        Some("CVE-2024-99999")
    );
    assert_eq!(count(&report, Severity::Info), N / 5);
}

// ---------------------------------------------------------------------------------------------
// SARIF

#[test]
fn sarif_appendix_k_reads_1_result_with_its_message_string_filled_in() {
    let report = read(&fixture!("sarif/appendix_k.sarif"), ReportFormat::Sarif);
    assert_eq!(report.findings.len(), 1);
    assert_eq!(distinct_fingerprints(&report), 1);
    assert_eq!(report.tool.as_deref(), Some("CodeScanner"));
    let f = &report.findings[0];
    assert_eq!(f.rule_id.as_deref(), Some("C2001"));
    // message {"id": "default", "arguments": ["ptr", "0"]} through the rule's messageStrings.
    assert_eq!(
        f.title,
        "Variable \"ptr\" was used without being initialized. It was declared here."
    );
    assert_eq!(f.severity, Severity::High, "level error");
    assert_eq!(f.cvss, None);
    assert_eq!(f.location.as_deref(), Some("collections/list.h:15"));
    // {"kind": "external", "state": "accepted"}: accepted (under the pre-standard name).
    assert!(f.suppressed);
    assert_eq!(f.tags, vec!["suppressed"]);
    assert!(f
        .description
        .as_deref()
        .unwrap()
        .contains("This can result in runtime errors"));
}

#[test]
fn sarif_codeql_reads_72_results_with_72_distinct_fingerprints() {
    let report = read(&fixture!("sarif/codeQL-output.sarif"), ReportFormat::Sarif);
    assert_eq!(report.findings.len(), 72);
    assert_eq!(distinct_fingerprints(&report), 72);
    assert_eq!(report.tool.as_deref(), Some("CodeQL"));
    // No result has a level: each takes its rule's defaultConfiguration.level.
    assert_eq!(count(&report, Severity::Low), 57, "note");
    assert_eq!(count(&report, Severity::High), 11, "error");
    assert_eq!(count(&report, Severity::Medium), 4, "warning");

    let first = &report.findings[0];
    assert_eq!(first.rule_id.as_deref(), Some("py/empty-except"));
    assert_eq!(
        first.title,
        "'except' clause does nothing but pass and there is no explanatory comment."
    );
    assert_eq!(first.severity, Severity::Low);
    assert_eq!(first.location.as_deref(), Some("good/db_init.py:39"));
    assert_eq!(
        first.tags,
        vec!["reliability", "maintainability", "external/cwe/cwe-390"]
    );
    assert!(!first.suppressed);

    let flask = report
        .findings
        .iter()
        .find(|f| {
            f.rule_id.as_deref() == Some("py/flask-debug")
                && f.location.as_deref() == Some("bad/vulpy.py:55")
        })
        .unwrap();
    assert_eq!(flask.severity, Severity::High);
    assert_eq!(flask.location.as_deref(), Some("bad/vulpy.py:55"));
    assert!(flask
        .title
        .starts_with("A Flask app appears to be run in debug mode."));
    assert!(flask.tags.contains(&"security".to_owned()));
}

#[test]
fn sarif_shell_report_reads_27_results_with_12_distinct_fingerprints() {
    let report = read(&fixture!("sarif/bash-report.sarif"), ReportFormat::Sarif);
    assert_eq!(report.findings.len(), 27);
    // The report repeats itself: entrypoint_scripts/common/dojo-shared-resources.sh was
    // analysed six times (same scanFileHash, same partial fingerprints), so rule 2072 at line
    // 143 and rule 2077 at lines 410 and 412 each appear 6 times. Same rule, file and line is
    // the same finding: 27 entries minus 3 x 5 repeats = 12 distinct.
    assert_eq!(distinct_fingerprints(&report), 12);
    assert_eq!(report.tool.as_deref(), Some("Shell Script Analysis"));
    assert_eq!(count(&report, Severity::Low), 27, "all level note");
    let first = &report.findings[0];
    assert_eq!(first.rule_id.as_deref(), Some("2076"));
    assert_eq!(
        first.title,
        "Don't quote right-hand side of =~, it'll match literally rather than as a regex."
    );
    assert_eq!(
        first.location.as_deref(),
        Some("file:///home/damien/dd/docker/setEnv.sh:134")
    );
    let second = &report.findings[1];
    assert_eq!(second.rule_id.as_deref(), Some("2071"));
    assert_eq!(
        second.location.as_deref(),
        Some("file:///home/damien/dd/docker/dojo-data.bash:4")
    );
}

#[test]
fn sarif_suppressions_mark_3_of_5_results_suppressed() {
    let report = read(
        &fixture!("sarif/suppression_test.sarif"),
        ReportFormat::Sarif,
    );
    assert_eq!(report.findings.len(), 5, "suppressed results still count");
    assert_eq!(distinct_fingerprints(&report), 5);
    let flags: Vec<bool> = report.findings.iter().map(|f| f.suppressed).collect();
    // external, external, inSource (no status: accepted), none, empty array.
    assert_eq!(flags, vec![true, true, true, false, false]);
    assert_eq!(report.findings[0].tags, vec!["suppressed"]);
    assert!(report.findings[3].tags.is_empty());
    assert_eq!(report.findings[0].rule_id.as_deref(), Some("TST0001"));
    assert_eq!(report.findings[0].title, "Suppressed");
    assert_eq!(
        report.findings[0].location.as_deref(),
        Some("file:///C:/code/file1.c")
    );
    // No level anywhere and no rule default: SARIF's default level is warning.
    assert_eq!(report.findings[4].severity, Severity::Medium);
    assert_eq!(report.findings[4].title, "Not suppressed");
}

#[test]
fn sarif_suppression_status_rejected_or_under_review_leaves_the_result_active() {
    let doc = |statuses: &str| {
        format!(
            r#"{{"version":"2.1.0","runs":[{{"tool":{{"driver":{{"name":"t"}}}},"results":[
              {{"ruleId":"R","message":{{"text":"m"}},"suppressions":[{statuses}]}}]}}]}}"#
        )
    };
    let suppressed =
        |statuses: &str| parse(doc(statuses).as_bytes(), None).unwrap().findings[0].suppressed;
    assert!(suppressed(r#"{"kind":"inSource","status":"accepted"}"#));
    assert!(suppressed(r#"{"kind":"external"}"#));
    assert!(!suppressed(r#"{"kind":"external","status":"rejected"}"#));
    assert!(!suppressed(r#"{"kind":"external","status":"underReview"}"#));
    assert!(!suppressed(
        r#"{"kind":"external","status":"accepted"},{"kind":"inSource","status":"rejected"}"#
    ));
}

#[test]
fn sarif_security_severity_wins_over_level_and_thresholds_follow_cvss_bands() {
    let doc = |result_props: &str, rule_props: &str, level: &str| {
        format!(
            r#"{{"version":"2.1.0","runs":[{{"tool":{{"driver":{{"name":"CodeQL","rules":[
                {{"id":"js/xss","shortDescription":{{"text":"XSS"}},
                  "defaultConfiguration":{{"level":"note"}},"properties":{{{rule_props}}}}}]}}}},
              "results":[{{"ruleIndex":0,"message":{{"text":"m"}}{level}{result_props}}}]}}]}}"#
        )
    };
    let read = |result_props: &str, rule_props: &str, level: &str| {
        let report = parse(doc(result_props, rule_props, level).as_bytes(), None).unwrap();
        let f = report.findings.into_iter().next().unwrap();
        (f.severity, f.cvss)
    };
    for (score, severity) in [
        ("9.0", Severity::Critical),
        ("8.9", Severity::High),
        ("7.0", Severity::High),
        ("6.1", Severity::Medium),
        ("4.0", Severity::Medium),
        ("3.9", Severity::Low),
        ("0.1", Severity::Low),
    ] {
        let rule_props = format!(r#""security-severity":"{score}""#);
        assert_eq!(
            read("", &rule_props, ""),
            (severity, Some(score.parse().unwrap())),
            "rule security-severity {score}"
        );
    }
    // "0.0" is what Trivy writes when it has no score: the level stands (note: LOW).
    assert_eq!(
        read("", r#""security-severity":"0.0""#, ""),
        (Severity::Low, None)
    );
    // On the result it wins over the rule's, and as a number too.
    assert_eq!(
        read(
            r#","properties":{"security-severity":9.8}"#,
            r#""security-severity":"2.0""#,
            ""
        ),
        (Severity::Critical, Some(9.8))
    );
    // Without a score: the result's level, else the rule's default level.
    assert_eq!(read("", "", ""), (Severity::Low, None), "rule default note");
    assert_eq!(read("", "", r#","level":"error""#), (Severity::High, None));
    assert_eq!(
        read("", "", r#","level":"warning""#),
        (Severity::Medium, None)
    );
    assert_eq!(read("", "", r#","level":"none""#), (Severity::Info, None));
    // A label is a severity without a score (GitLab's Semgrep rules write them).
    assert_eq!(
        read("", r#""security-severity":"high""#, ""),
        (Severity::High, None)
    );
    // A score that is not one is ignored rather than failing the report.
    assert_eq!(
        read("", r#""security-severity":"42""#, ""),
        (Severity::Low, None)
    );
}

#[test]
fn sarif_resolves_the_rule_by_index_when_the_rule_id_is_absent_and_reads_all_runs() {
    let doc = br#"{"version":"2.1.0","runs":[
      {"tool":{"driver":{"name":"A","rules":[{"id":"A1"},{"id":"A2","shortDescription":{"text":"Second rule"}}]}},
       "artifacts":[{"location":{"uri":"src/main.c"}}],
       "results":[{"ruleIndex":1,"message":{"text":""},
                   "locations":[{"physicalLocation":{"artifactLocation":{"index":0},"region":{"startLine":7}}}]},
                  {"ruleId":"CVE-2021-44228","kind":"fail","message":{"text":"log4shell"}},
                  {"ruleId":"A1","kind":"pass","message":{"text":"fine"}},
                  {"ruleId":"A1","kind":"review","message":{"text":"look"}}]},
      {"tool":{"driver":{"name":"B"}},
       "results":[{"ruleId":"B1","level":"error","message":{"text":"line one\nline two"},
                   "locations":[{"logicalLocations":[{"fullyQualifiedName":"ns::f"}]}]}]}]}"#;
    let report = parse(doc, None).unwrap();
    assert_eq!(report.tool.as_deref(), Some("A, B"));
    let f = &report.findings;
    assert_eq!(f.len(), 4, "the pass result is not a finding");
    assert_eq!(f[0].rule_id.as_deref(), Some("A2"));
    assert_eq!(f[0].title, "Second rule");
    assert_eq!(f[0].location.as_deref(), Some("src/main.c:7"));
    assert_eq!(f[1].cve.as_deref(), Some("CVE-2021-44228"));
    assert_eq!(
        f[2].severity,
        Severity::Info,
        "kind review defaults to level none"
    );
    assert_eq!(f[3].title, "line one");
    assert_eq!(f[3].description.as_deref(), Some("line one\nline two"));
    assert_eq!(f[3].location.as_deref(), Some("ns::f"));
    assert_eq!(f[3].severity, Severity::High);
}

// ---------------------------------------------------------------------------------------------
// CycloneDX

#[test]
fn cyclonedx_vex_reads_1_vulnerability_marked_not_affected() {
    let report = read(
        &fixture!("cyclonedx/valid-vulnerability-1.4.json"),
        ReportFormat::CycloneDx,
    );
    assert_eq!(report.findings.len(), 1);
    assert_eq!(distinct_fingerprints(&report), 1);
    assert_eq!(report.tool, None, "no metadata.tools");
    let f = &report.findings[0];
    // The id is Snyk's; the CVE comes from references.
    assert_eq!(f.cve.as_deref(), Some("CVE-2018-7489"));
    assert_eq!(
        f.rule_id.as_deref(),
        Some("SNYK-JAVA-COMFASTERXMLJACKSONCORE-32111")
    );
    assert_eq!(
        f.title,
        "SNYK-JAVA-COMFASTERXMLJACKSONCORE-32111 in jackson-databind@2.9.4"
    );
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.cvss, Some(9.8));
    assert_eq!(f.package.as_deref(), Some("jackson-databind"));
    assert_eq!(f.installed_version.as_deref(), Some("2.9.4"));
    assert_eq!(f.fixed_version, None, "only affected ranges are listed");
    assert_eq!(
        f.location.as_deref(),
        Some("pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.9.4")
    );
    assert!(f.suppressed, "analysis.state not_affected");
    assert_eq!(
        f.tags,
        vec![
            "suppressed",
            "SNYK-JAVA-COMFASTERXMLJACKSONCORE-32111",
            "CWE-184",
            "CWE-502"
        ]
    );
    let text = f.description.as_deref().unwrap();
    assert!(text.contains("Recommendation: Upgrade com.fasterxml.jackson.core:jackson-databind"));
    assert!(text.contains("Analysis: not_affected (code_not_reachable)"));
}

#[test]
fn cyclonedx_log4j_reads_8_findings_one_per_vulnerability_and_affected_ref() {
    let report = read(&fixture!("cyclonedx/log4j.json"), ReportFormat::CycloneDx);
    // 8 vulnerabilities, each affecting exactly one ref (the log4j-core component), so
    // "per vulnerability" and "per (vulnerability, affected ref)" agree: 8. The four GHSA
    // advisories duplicate four of the CVEs in substance, but carry no CVE reference, so they
    // stay distinct findings.
    assert_eq!(report.findings.len(), 8);
    assert_eq!(distinct_fingerprints(&report), 8);
    assert_eq!(report.tool.as_deref(), Some("grype 0.41.0"));
    for f in &report.findings {
        assert_eq!(f.package.as_deref(), Some("log4j-core"));
        assert_eq!(f.installed_version.as_deref(), Some("2.13.2"));
        assert_eq!(
            f.location.as_deref(),
            Some("pkg:maven/org.apache.logging.log4j/log4j-core@2.13.2")
        );
        assert!(!f.suppressed, "in_triage");
    }

    let log4shell = &report.findings[0];
    assert_eq!(log4shell.cve.as_deref(), Some("CVE-2021-44228"));
    assert_eq!(log4shell.severity, Severity::Critical);
    assert_eq!(log4shell.cvss, Some(10.0), "the CVSSv31 rating");
    assert_eq!(log4shell.title, "CVE-2021-44228 in log4j-core@2.13.2");
    assert_eq!(log4shell.fixed_version, None);

    let medium = &report.findings[1];
    assert_eq!(medium.cve.as_deref(), Some("CVE-2021-44832"));
    assert_eq!(medium.severity, Severity::Medium);
    assert_eq!(medium.cvss, Some(6.6));

    let ghsa = &report.findings[4];
    assert_eq!(ghsa.cve.as_deref(), Some("GHSA-7rjr-3q55-vv33"));
    assert_eq!(ghsa.rule_id, None);
    assert_eq!(ghsa.title, "Incomplete fix for Apache Log4j vulnerability");
    assert_eq!(ghsa.severity, Severity::Critical);
    assert_eq!(ghsa.cvss, None);
    assert_eq!(
        ghsa.fixed_version.as_deref(),
        Some("2.16.0"),
        "grype:fixed_versions"
    );
    assert_eq!(report.findings[7].severity, Severity::High);
}

#[test]
fn cyclonedx_resolves_nested_components_several_refs_and_bom_without_vulnerabilities() {
    let doc = br#"{"bomFormat":"CycloneDX","specVersion":"1.5",
      "metadata":{"tools":{"components":[{"name":"trivy","version":"0.50.0"}]}},
      "components":[{"bom-ref":"app","name":"app","components":[
          {"bom-ref":"lib-a","name":"lib-a","version":"1.0","purl":"pkg:npm/lib-a@1.0"},
          {"bom-ref":"lib-b","name":"lib-b","version":"2.0"}]}],
      "vulnerabilities":[{"id":"CVE-2024-0001",
        "ratings":[{"severity":"low"},{"severity":"high","score":7.1,"method":"CVSSv3"},{"score":9.9,"method":"OWASP"}],
        "affects":[{"ref":"lib-a"},{"ref":"lib-b","versions":[{"version":"2.1","status":"unaffected"}]},
                   {"ref":"pkg:pypi/outside@3.3"}],
        "analysis":{"state":"false_positive"}}]}"#;
    let report = parse(doc, None).unwrap();
    assert_eq!(report.tool.as_deref(), Some("trivy 0.50.0"));
    let got: Vec<_> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.package.as_deref(),
                f.installed_version.as_deref(),
                f.fixed_version.as_deref(),
                f.location.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Some("lib-a"), Some("1.0"), None, Some("pkg:npm/lib-a@1.0")),
            (Some("lib-b"), Some("2.0"), Some("2.1"), Some("lib-b")),
            (
                Some("outside"),
                Some("3.3"),
                None,
                Some("pkg:pypi/outside@3.3")
            ),
        ]
    );
    for f in &report.findings {
        assert_eq!((f.severity, f.cvss), (Severity::High, Some(7.1)));
        assert!(f.suppressed, "false_positive");
    }

    let bom = br#"{"bomFormat":"CycloneDX","specVersion":"1.4","components":[{"name":"x","type":"library"}]}"#;
    let report = parse(bom, None).unwrap();
    assert_eq!(report.format, ReportFormat::CycloneDx);
    assert!(report.findings.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Native

#[test]
fn native_reports_read_camel_case_fields_with_any_severity_case() {
    let doc = br#"{"tool":"custom-scanner 2.0","findings":[
      {"title":"Hard-coded password","severity":"high","ruleId":"PWD001","location":"src/db.rs:12","tags":["secrets"]},
      {"title":"Old openssl","severity":"Critical","cvss":9.8,"cve":"CVE-2022-0778","package":"openssl",
       "installedVersion":"1.1.1k","fixedVersion":"1.1.1n","description":"Infinite loop","extra":{"ignored":true}}]}"#;
    assert_eq!(sniff(doc).unwrap(), ReportFormat::Native);
    let report = parse(doc, None).unwrap();
    assert_eq!(report.tool.as_deref(), Some("custom-scanner 2.0"));
    assert_eq!(report.findings.len(), 2);
    let pwd = &report.findings[0];
    assert_eq!(pwd.severity, Severity::High);
    assert_eq!(pwd.rule_id.as_deref(), Some("PWD001"));
    assert_eq!(pwd.tags, vec!["secrets"]);
    let ssl = &report.findings[1];
    assert_eq!(ssl.severity, Severity::Critical);
    assert_eq!(ssl.cvss, Some(9.8));
    assert_eq!(ssl.cve.as_deref(), Some("CVE-2022-0778"));
    assert_eq!(ssl.fixed_version.as_deref(), Some("1.1.1n"));
}

// ---------------------------------------------------------------------------------------------
// Malformed input

fn modified(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    edit(&mut value);
    serde_json::to_vec_pretty(&value).unwrap()
}

fn err(bytes: &[u8], format: Option<ReportFormat>) -> ImportError {
    parse(bytes, format).expect_err("must be refused")
}

#[test]
fn truncated_json_is_refused_for_the_whole_document_with_line_and_column() {
    let bytes = fixture!("grype/check_all_fields.json");
    let e = err(&bytes[..1000], None);
    assert_eq!(e.format, None);
    assert_eq!(e.pointer, "$");
    assert!(
        e.message.starts_with("not valid JSON: EOF while parsing"),
        "{e}"
    );
    assert!(e.message.contains(" at line "), "{e}");
    assert!(e.message.contains(" column "), "{e}");

    let e = err(&bytes[..1000], Some(ReportFormat::Grype));
    assert_eq!(e.format, Some(ReportFormat::Grype));
    assert_eq!(e.pointer, "$");

    let e = err(b"<html>Bad gateway</html>", None);
    assert_eq!(e.pointer, "$");
    assert_eq!(
        e.message,
        "not valid JSON: expected value at line 1 column 1"
    );
    assert_eq!(
        e.to_string(),
        "unrecognized report at $: not valid JSON: expected value at line 1 column 1"
    );
}

#[test]
fn an_unknown_grype_severity_points_at_that_match() {
    let bytes = modified(&fixture!("grype/many_vulns.json"), |v| {
        v["matches"][12]["vulnerability"]["severity"] = "Bogus".into();
    });
    let e = err(&bytes, None);
    assert_eq!(e.format, Some(ReportFormat::Grype));
    assert_eq!(e.pointer, "/matches/12/vulnerability/severity");
    assert!(
        e.message.starts_with(
            "unknown severity \"Bogus\" (expected one of Critical, High, Medium, Low, \
             Negligible, Unknown)"
        ),
        "{e}"
    );
    assert!(e
        .to_string()
        .starts_with("grype report at /matches/12/vulnerability/severity: unknown severity"));
}

#[test]
fn an_unknown_sarif_level_and_a_dangling_rule_index_point_at_the_result() {
    let codeql = fixture!("sarif/codeQL-output.sarif");
    let bytes = modified(&codeql, |v| {
        v["runs"][0]["results"][3]["level"] = "fatal".into();
    });
    let e = err(&bytes, Some(ReportFormat::Sarif));
    assert_eq!(e.pointer, "/runs/0/results/3/level");
    assert!(
        e.message
            .starts_with("unknown level \"fatal\" (expected one of none, note, warning, error)"),
        "{e}"
    );

    let bytes = modified(&codeql, |v| {
        v["runs"][0]["results"][5]["ruleIndex"] = 500.into();
    });
    let e = err(&bytes, None);
    assert_eq!(e.pointer, "/runs/0/results/5/ruleIndex");
    assert_eq!(
        e.message,
        "rule index 500 does not exist: tool component \"CodeQL\" has 149 rules"
    );
}

#[test]
fn values_of_the_wrong_type_point_at_the_value() {
    let trivy = fixture!("trivy/scheme_2_many_vulns.json");
    let bytes = modified(&trivy, |v| {
        v["Results"][2]["Vulnerabilities"][1]["InstalledVersion"] = 5.into();
    });
    let e = err(&bytes, None);
    assert_eq!(e.format, Some(ReportFormat::Trivy));
    assert_eq!(e.pointer, "/Results/2/Vulnerabilities/1/InstalledVersion");
    assert!(
        e.message
            .starts_with("invalid type: integer `5`, expected a string"),
        "{e}"
    );

    let bytes = modified(&trivy, |v| {
        v["Results"][0]["Vulnerabilities"] = serde_json::json!({"oops": true});
    });
    let e = err(&bytes, None);
    assert_eq!(e.pointer, "/Results/0/Vulnerabilities");
    assert!(
        e.message
            .starts_with("invalid type: map, expected a sequence"),
        "{e}"
    );

    let bytes = modified(&fixture!("grype/check_all_fields.json"), |v| {
        v["matches"][1]["artifact"]
            .as_object_mut()
            .unwrap()
            .remove("name");
    });
    let e = err(&bytes, None);
    assert_eq!(e.pointer, "/matches/1/artifact");
    assert!(e.message.starts_with("missing field `name`"), "{e}");

    let e = err(
        br#"{"findings":[{"title":"a","severity":"low"},{"title":"b","severity":"low","cvss":12}]}"#,
        None,
    );
    assert_eq!(e.pointer, "/findings/1/cvss");
    assert!(e.message.starts_with("cvss 12 is out of range"), "{e}");
    let e = err(br#"{"findings":[{"title":"  ","severity":"low"}]}"#, None);
    assert_eq!(
        (e.pointer.as_str(), e.message.as_str()),
        ("/findings/0/title", "title must not be blank")
    );
    let e = err(br#"{"findings":[{"title":"x"}]}"#, None);
    assert_eq!(e.pointer, "/findings/0");
    assert!(e.message.starts_with("missing field `severity`"), "{e}");
}

#[test]
fn a_declared_format_that_does_not_match_the_document_is_refused() {
    let grype = fixture!("grype/check_all_fields.json");
    let e = err(&grype, Some(ReportFormat::Sarif));
    assert_eq!(e.format, Some(ReportFormat::Sarif));
    assert_eq!(e.pointer, "$");
    assert!(
        e.message
            .starts_with("the document is not a sarif report: it is a grype report"),
        "{e}"
    );
    assert!(e.message.contains("send format=grype"), "{e}");

    let e = err(
        &fixture!("sarif/appendix_k.sarif"),
        Some(ReportFormat::CycloneDx),
    );
    assert!(e.message.contains("it is a sarif report"), "{e}");
    let e = err(
        &fixture!("trivy/legacy_many_vulns.json"),
        Some(ReportFormat::Native),
    );
    assert!(e.message.contains("it is a trivy report"), "{e}");
}

#[test]
fn an_empty_object_is_unrecognized_and_each_declared_format_names_its_missing_field() {
    let e = sniff(b"{}").unwrap_err();
    assert_eq!(e.format, None);
    assert_eq!(e.pointer, "$");
    assert!(
        e.message
            .starts_with("unrecognized report (the document is an empty object)"),
        "{e}"
    );
    for format in [
        "sarif: SARIF",
        "trivy: Trivy",
        "grype: Grype",
        "cyclonedx: CycloneDX",
        "native: native",
    ] {
        assert!(e.message.contains(format), "{format} in {e}");
    }
    assert_eq!(err(b"{}", None), e);

    for (format, field) in [
        (ReportFormat::Sarif, "runs"),
        (ReportFormat::Trivy, "SchemaVersion"),
        (ReportFormat::Grype, "matches"),
        (ReportFormat::CycloneDx, "bomFormat"),
        (ReportFormat::Native, "findings"),
    ] {
        let e = err(b" {} ", Some(format));
        assert_eq!(e.format, Some(format));
        assert_eq!(e.pointer, "$");
        assert!(
            e.message.starts_with(&format!("missing field `{field}`")),
            "{format}: {e}"
        );
    }

    let e = err(br#"{"bomFormat":"SPDX","vulnerabilities":[]}"#, None);
    assert!(
        e.message.contains("\"bomFormat\" is not \"CycloneDX\""),
        "{e}"
    );
    let e = err(br#"{"bomFormat":"SPDX"}"#, Some(ReportFormat::CycloneDx));
    assert_eq!(e.pointer, "/bomFormat");
    assert!(e.message.starts_with("unknown bomFormat \"SPDX\""), "{e}");

    let e = err(b"42", None);
    assert!(e.message.contains("the document is a number"), "{e}");
}

#[test]
fn a_byte_order_mark_and_unknown_fields_are_tolerated() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(br#"{"matches":[{"vulnerability":{"id":"CVE-2020-1","severity":"low","future":[1,{"a":null}]},
      "artifact":{"name":"x","version":"1","locations":[]},"surprise":"yes"}],"newTopLevel":{}}"#);
    let report = parse(&bytes, None).unwrap();
    assert_eq!(report.format, ReportFormat::Grype);
    assert_eq!(report.findings[0].location, None);
    assert_eq!(report.findings[0].severity, Severity::Low);
}

#[test]
fn trivy_k8s_reports_of_either_age_read_every_resource_with_the_resource_in_the_location() {
    let old = read(&more!("trivy/kubernetes.excerpt.json"), ReportFormat::Trivy);
    let places: Vec<(&str, &str)> = old
        .findings
        .iter()
        .map(|f| (f.cve.as_deref().unwrap(), f.location.as_deref().unwrap()))
        .collect();
    let image = "default/Deployment/redis-follower: \
                 gcr.io/google_samples/gb-redis-follower:v2 (debian 10.4)";
    assert_eq!(
        places,
        [("CVE-2020-27350", image), ("CVE-2011-3374", image)]
    );
    let apt = find(&old, "CVE-2020-27350", "apt");
    assert_eq!(apt.severity, Severity::Medium);
    assert_eq!(apt.cvss, Some(5.7));

    let new = read(
        &more!("trivy/kubernetes_cluster_scoped_resources.json"),
        ReportFormat::Trivy,
    );
    let checks: Vec<(&str, &str, Severity)> = new
        .findings
        .iter()
        .map(|f| {
            (
                f.rule_id.as_deref().unwrap(),
                f.location.as_deref().unwrap(),
                f.severity,
            )
        })
        .collect();
    assert_eq!(
        checks,
        [
            (
                "KSV113",
                "ClusterRole/system:controller:bootstrap-signer:1",
                Severity::Medium
            ),
            (
                "KSV001",
                "default/Deployment/redis-follower:132-143",
                Severity::Medium
            ),
            (
                "KSV111",
                "ClusterRoleBinding/cluster-admin:1",
                Severity::Low
            ),
        ]
    );
    assert_eq!(distinct_fingerprints(&new), 3);
}

#[test]
fn trivy_licenses_are_findings_of_their_package_or_file() {
    let report = read(&more!("trivy/license_scheme.json"), ReportFormat::Trivy);
    assert_eq!(report.findings.len(), 19);
    assert_eq!(distinct_fingerprints(&report), 19);
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    assert_eq!(
        (
            count(Severity::High),
            count(Severity::Medium),
            count(Severity::Low)
        ),
        (7, 1, 11)
    );
    let gpl = &report.findings[0];
    assert_eq!(gpl.title, "License GPL-2.0 in alpine-baselayout");
    assert_eq!(gpl.rule_id.as_deref(), Some("license:GPL-2.0"));
    assert_eq!(gpl.package.as_deref(), Some("alpine-baselayout"));
    assert_eq!(gpl.location.as_deref(), Some("OS Packages"));
    assert_eq!(gpl.tags, ["license", "license:restricted"]);
    let file = report
        .findings
        .iter()
        .find(|f| f.location.as_deref() == Some("/etc/ssl/misc/CA.pl"))
        .expect("the license of a loose file");
    assert_eq!(file.title, "License OpenSSL in /etc/ssl/misc/CA.pl");
    assert_eq!(file.package, None);
    assert!(file
        .description
        .as_deref()
        .unwrap()
        .contains("https://spdx.org/licenses/OpenSSL.html"));
}

#[test]
fn trivy_vendor_statuses_become_tags_and_not_affected_is_suppressed() {
    let report = read(
        &more!("trivy/all_statuses.excerpt.json"),
        ReportFormat::Trivy,
    );
    assert_eq!(report.findings.len(), 8);
    let by_id = |id: &str| {
        report
            .findings
            .iter()
            .find(|f| f.cve.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id}"))
    };
    let bash = by_id("CVE-2019-18276");
    assert!(bash.suppressed);
    assert_eq!(bash.tags, ["suppressed", "CWE-273", "not_affected"]);
    for (id, tag) in [
        ("CVE-2018-12697", "under_investigation"),
        ("CVE-2018-12698", "will_not_fix"),
        ("CVE-2018-12699", "fix_deferred"),
        ("CVE-2018-12934", "end_of_life"),
    ] {
        let f = by_id(id);
        assert!(!f.suppressed, "{id}");
        assert!(f.tags.iter().any(|t| t == tag), "{id}: {:?}", f.tags);
    }
    for id in ["CVE-2011-3374", "TEMP-0841856-B18BAF", "CVE-2018-1000876"] {
        let f = by_id(id);
        assert!(
            !f.suppressed && f.tags.iter().all(|t| t.starts_with("CWE-")),
            "{id}: {:?}",
            f.tags
        );
    }
}

#[test]
fn a_nul_inside_a_reported_text_is_dropped() {
    let report = read(
        &more!("grype/fix_available.excerpt.json"),
        ReportFormat::Grype,
    );
    let java = &report.findings[0];
    assert_eq!(java.installed_version.as_deref(), Some("17.0.10+7-J-ms8m"));
    assert!(!java.title.contains('\0'), "{}", java.title);
}

#[test]
fn grype_sarif_rules_give_the_cve_or_ghsa_they_start_with() {
    let report = read(&more!("sarif/cxf-3.4.6.excerpt.sarif"), ReportFormat::Sarif);
    let ids: Vec<(&str, &str)> = report
        .findings
        .iter()
        .map(|f| (f.cve.as_deref().unwrap(), f.rule_id.as_deref().unwrap()))
        .collect();
    assert_eq!(
        ids,
        [
            (
                "CVE-2008-0732",
                "CVE-2008-0732-geronimo-j2ee-management_1.1_spec"
            ),
            (
                "CVE-2011-5034",
                "CVE-2011-5034-geronimo-j2ee-management_1.1_spec"
            ),
            (
                "GHSA-57j2-w4cx-62h2",
                "GHSA-57j2-w4cx-62h2-jackson-databind"
            ),
        ]
    );
    // Not an advisory id followed by a dash: no CVE.
    let doc = |rule: &str| {
        format!(
            r#"{{"version":"2.1.0","runs":[{{"tool":{{"driver":{{"name":"t"}}}},
               "results":[{{"ruleId":"{rule}","message":{{"text":"m"}}}}]}}]}}"#
        )
    };
    for rule in [
        "CVE-2008-07",
        "CVE-2008-0732x",
        "GHSA-57j2-w4cx-62h2x",
        "XCVE-2008-0732",
    ] {
        let report = parse(doc(rule).as_bytes(), None).unwrap();
        assert_eq!(report.findings[0].cve, None, "{rule}");
    }
}

#[test]
fn a_vex_about_the_boms_own_product_names_the_product() {
    let report = read(
        &more!("cyclonedx/vex-not-affected-product.json"),
        ReportFormat::CycloneDx,
    );
    let f = &report.findings[0];
    assert_eq!(f.cve.as_deref(), Some("CVE-2021-44228"));
    assert_eq!(f.package.as_deref(), Some("ABC"));
    assert_eq!(f.installed_version.as_deref(), Some("4.2"));
    assert!(f.suppressed);
}

#[test]
fn grype_sarif_names_the_package_after_the_advisory_in_its_rule_ids() {
    let report = read(
        &more!("sarif/grype-image.golden.sarif"),
        ReportFormat::Sarif,
    );
    let found: Vec<(&str, &str, Severity)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.cve.as_deref().unwrap(),
                f.package.as_deref().unwrap(),
                f.severity,
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("CVE-1999-0001", "package-1", Severity::Medium),
            ("CVE-1999-0002", "package-2", Severity::Low),
        ]
    );
}

/// Trivy's SARIF template of 2020 (`contrib/sarif.tpl`, as its own writer test
/// prints it): every result at level "error", the severity in the rule id
/// (`[MEDIUM] CVE-…`) and in the rule's tags, the package only in the rule's help.
#[test]
fn trivy_template_sarif_reads_severity_advisory_and_package_from_its_rules() {
    let report = read(
        &more!("sarif/trivy-template-2020.golden.sarif"),
        ReportFormat::Sarif,
    );
    let found: Vec<(&str, &str, &str, Severity)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.cve.as_deref().unwrap(),
                f.package.as_deref().unwrap(),
                f.installed_version.as_deref().unwrap(),
                f.severity,
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("CVE-2019-0000", "foo", "1.2.3", Severity::Medium),
            ("CVE-2019-0001", "bar", "2.3.4", Severity::High),
        ]
    );
}

#[test]
fn an_advisory_that_ends_a_rule_id_is_its_cve_and_a_capitalised_tag_its_severity() {
    let doc = |rule: &str, tags: &str, level: &str| {
        format!(
            r#"{{"version":"2.1.0","runs":[{{"tool":{{"driver":{{"name":"t","rules":[
                {{"id":"{rule}","properties":{{"tags":{tags}}}}}]}}}},
               "results":[{{"ruleId":"{rule}","level":"{level}","message":{{"text":"m"}}}}]}}]}}"#
        )
    };
    let cases = [
        // Trivy's template of 0.15: `<target>: <package>-<version> <advisory>`.
        (
            "alpine:3.10 (alpine 3.10.2): openssl-1.1.1c-r0 CVE-2019-1549",
            r#"["vulnerability","CRITICAL","openssl"]"#,
            "error",
            Some("CVE-2019-1549"),
            Severity::Critical,
        ),
        // Black Duck: its own advisory, the CVE in brackets.
        (
            "BDSA-2021-1234 (CVE-2021-5678)",
            r#"["security"]"#,
            "warning",
            Some("CVE-2021-5678"),
            Severity::Medium,
        ),
        (
            "[LOW] GHSA-57j2-w4cx-62h2",
            r#"["security","LOW"]"#,
            "error",
            Some("GHSA-57j2-w4cx-62h2"),
            Severity::Low,
        ),
        // Tags that are not a severity in capitals leave the level in charge.
        (
            "go/sql-injection",
            r#"["security","high","CWE-89","HIGH CONFIDENCE"]"#,
            "note",
            None,
            Severity::Low,
        ),
        // An advisory inside a word is not one.
        (
            "check-CVE-2019-1549",
            "[]",
            "warning",
            None,
            Severity::Medium,
        ),
    ];
    for (rule, tags, level, cve, severity) in cases {
        let report = parse(doc(rule, tags, level).as_bytes(), None).unwrap();
        let f = &report.findings[0];
        assert_eq!(f.cve.as_deref(), cve, "{rule}");
        assert_eq!(f.severity, severity, "{rule}");
        assert_eq!(f.package, None, "{rule}");
    }
}

/// A result in the shape Trivy's SARIF writer gives a vulnerability (its
/// `pkg/report/sarif.go`): the rule is the advisory, shared by every package that has
/// it; the package is only in the texts; `security-severity` is the V3 score of the
/// severity's source, "0.0" when that source has none.
fn trivy_sarif_result(package: &str, version: &str, score: &str, level: &str) -> String {
    format!(
        r#"{{"ruleId":"CVE-2011-3374","ruleIndex":0,"level":"{level}",
            "message":{{"text":"Package: {package}\nInstalled Version: {version}\nVulnerability CVE-2011-3374"}},
            "properties":{{"security-severity":"{score}"}},
            "locations":[{{"message":{{"text":"library/debian: {package}@{version}"}},
              "physicalLocation":{{"artifactLocation":{{"uri":"library/debian","uriBaseId":"ROOTPATH"}},
              "region":{{"startLine":1,"endLine":1}}}}}}]}}"#
    )
}

fn trivy_sarif(results: &[String]) -> Vec<u8> {
    format!(
        r#"{{"version":"2.1.0","runs":[{{"tool":{{"driver":{{"name":"Trivy","rules":[
            {{"id":"CVE-2011-3374","defaultConfiguration":{{"level":"note"}}}}]}}}},
            "results":[{}]}}]}}"#,
        results.join(",")
    )
    .into_bytes()
}

#[test]
fn trivy_sarif_keeps_one_advisory_in_two_packages_apart_and_ignores_a_zero_score() {
    let report = read(
        &trivy_sarif(&[
            trivy_sarif_result("apt", "1.8.2", "3.7", "note"),
            trivy_sarif_result("libapt-pkg5.0", "1.8.2", "3.7", "note"),
            trivy_sarif_result("@babel/core", "7.0.0", "0.0", "error"),
        ]),
        ReportFormat::Sarif,
    );
    let found: Vec<(&str, &str, Severity, Option<f64>)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.package.as_deref().unwrap(),
                f.installed_version.as_deref().unwrap(),
                f.severity,
                f.cvss,
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("apt", "1.8.2", Severity::Low, Some(3.7)),
            ("libapt-pkg5.0", "1.8.2", Severity::Low, Some(3.7)),
            // "0.0" is no score: the level stands (error is HIGH).
            ("@babel/core", "7.0.0", Severity::High, None),
        ]
    );
    assert_eq!(distinct_fingerprints(&report), 3);
}

#[test]
fn a_security_severity_label_sets_the_severity() {
    let doc = |severity: &str| {
        format!(
            r#"{{"version":"2.1.0","runs":[{{"tool":{{"driver":{{"name":"Semgrep OSS","rules":[
                {{"id":"open-redirect","defaultConfiguration":{{"level":"error"}},
                  "properties":{{"security-severity":{severity}}}}}]}}}},
                "results":[{{"ruleId":"open-redirect","message":{{"text":"m"}}}}]}}]}}"#
        )
    };
    for (given, severity, cvss) in [
        (r#""CRITICAL""#, Severity::Critical, None),
        (r#""Medium""#, Severity::Medium, None),
        (r#""9.1""#, Severity::Critical, Some(9.1)),
        (r#"4"#, Severity::Medium, Some(4.0)),
        // Not a score or a label: the rule's level (error is HIGH).
        (r#""soon""#, Severity::High, None),
        (r#"true"#, Severity::High, None),
    ] {
        let report = parse(doc(given).as_bytes(), None).unwrap();
        let f = &report.findings[0];
        assert_eq!((f.severity, f.cvss), (severity, cvss), "{given}");
    }
}

#[test]
fn a_rule_index_into_a_component_without_rules_falls_back_on_the_rule_id() {
    let report = read(
        &more!("sarif/codeql-cli-2.0-no-rules.sarif"),
        ReportFormat::Sarif,
    );
    assert_eq!(report.findings.len(), 2);
    assert!(report
        .findings
        .iter()
        .all(|f| f.rule_id.as_deref() == Some("js/unused-local-variable")));
}

#[test]
fn a_vulnerability_trivy_suppressed_by_vex_is_kept_as_suppressed() {
    let report = read(
        &more!("trivy/npm-with-suppressed.golden.json"),
        ReportFormat::Trivy,
    );
    let found: Vec<(&str, bool)> = report
        .findings
        .iter()
        .map(|f| (f.cve.as_deref().unwrap(), f.suppressed))
        .collect();
    assert_eq!(found, [("CVE-2017-20165", false), ("CVE-2017-16137", true)]);
    let vex = &report.findings[1];
    assert_eq!(vex.package.as_deref(), Some("debug"));
    assert_eq!(vex.severity, Severity::Low);
    for tag in [
        "suppressed",
        "not_affected",
        "vulnerable_code_not_in_execute_path",
    ] {
        assert!(vex.tags.iter().any(|t| t == tag), "{tag}: {:?}", vex.tags);
    }
}
