use chrono::Duration;
use cqrs_es::test::TestFramework;
use cqrs_es::DomainEvent;

use super::*;
use crate::test_support::{days, hours, t0};

type Framework = TestFramework<Finding>;

fn scan_a() -> Uuid {
    Uuid::from_u128(0xa)
}

fn scan_b() -> Uuid {
    Uuid::from_u128(0xb)
}

fn approval_1() -> ApprovalRef {
    ApprovalRef {
        approval_id: Uuid::from_u128(0x1),
        approved_by: Uuid::from_u128(0x1ead),
    }
}

fn approval_2() -> ApprovalRef {
    ApprovalRef {
        approval_id: Uuid::from_u128(0x2),
        approved_by: Uuid::from_u128(0x1ead),
    }
}

fn details(severity: Severity) -> FindingDetails {
    FindingDetails {
        fingerprint: "sha256:4f2a".into(),
        asset: "registry.acme.io/shop:1.4".into(),
        scanner: "trivy".into(),
        title: "openssl: buffer overread".into(),
        severity,
        cvss: Some(7.5),
        cve: Some("CVE-2024-0001".into()),
        rule_id: None,
        package: Some("openssl".into()),
        installed_version: Some("3.0.1".into()),
        fixed_version: Some("3.0.13".into()),
        location: None,
        description: None,
        tags: vec!["base-image".into()],
    }
}

fn detected(severity: Severity) -> FindingEvent {
    FindingDetected {
        details: details(severity),
        scan_id: scan_a(),
        detected_at: t0(),
    }
    .into()
}

fn changed(from: FindingStatus, to: FindingStatus) -> FindingEvent {
    FindingStatusChanged {
        from,
        to,
        justification: Some("triaged".into()),
        at: hours(1),
    }
    .into()
}

fn accepted(approval: Option<ApprovalRef>, expires_at: DateTime<Utc>) -> FindingEvent {
    RiskAccepted {
        justification: "compensating WAF rule".into(),
        expires_at,
        approval_id: approval.map(|a| a.approval_id),
        approved_by: approval.map(|a| a.approved_by),
        at: hours(1),
    }
    .into()
}

fn auto_resolved() -> FindingEvent {
    FindingAutoResolved {
        scan_id: scan_b(),
        at: hours(1),
    }
    .into()
}

/// A MEDIUM finding's history that ends in `status`.
fn history(status: FindingStatus) -> Vec<FindingEvent> {
    let mut events = vec![detected(Severity::Medium)];
    match status {
        FindingStatus::Open => {}
        FindingStatus::Confirmed | FindingStatus::FalsePositive => {
            events.push(changed(FindingStatus::Open, status))
        }
        FindingStatus::RiskAccepted => events.push(accepted(None, days(30))),
        FindingStatus::Resolved => events.push(auto_resolved()),
    }
    events
}

fn state(events: Vec<FindingEvent>) -> Finding {
    let mut finding = Finding::default();
    events.into_iter().for_each(|e| finding.apply(e));
    finding
}

fn change(status: FindingStatus, justification: Option<&str>) -> FindingCommand {
    FindingCommand::ChangeStatus {
        status,
        justification: justification.map(Into::into),
        at: hours(2),
    }
}

fn accept(approval: Option<ApprovalRef>) -> FindingCommand {
    FindingCommand::AcceptRisk {
        justification: " compensating WAF rule ".into(),
        expires_at: days(90),
        approval,
        at: hours(2),
    }
}

fn accepted_now(approval: Option<ApprovalRef>) -> FindingEvent {
    RiskAccepted {
        justification: "compensating WAF rule".into(),
        expires_at: days(90),
        approval_id: approval.map(|a| a.approval_id),
        approved_by: approval.map(|a| a.approved_by),
        at: hours(2),
    }
    .into()
}

fn expire(expires_at: DateTime<Utc>, at: DateTime<Utc>) -> FindingCommand {
    FindingCommand::ExpireRiskAcceptance { expires_at, at }
}

fn invalid_field(result: Result<Vec<FindingEvent>, DomainError>) -> String {
    match result {
        Err(DomainError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

// --- detection --------------------------------------------------------------------------

#[test]
fn detecting_records_the_trimmed_details_and_the_scan() {
    let mut sent = details(Severity::High);
    sent.title = "  openssl: buffer overread ".into();
    sent.rule_id = Some("   ".into());
    sent.tags = vec!["base-image".into(), "base-image ".into()];
    Framework::with(())
        .given_no_previous_events()
        .when(FindingCommand::DetectFinding {
            details: sent,
            scan_id: scan_a(),
            at: t0(),
        })
        .then_expect_events(vec![detected(Severity::High)]);
}

#[test]
fn a_detected_finding_is_open_since_its_detection() {
    let finding = state(vec![detected(Severity::Low)]);
    assert_eq!(finding.status, FindingStatus::Open);
    assert_eq!(finding.first_seen, Some(t0()));
    assert_eq!(finding.scan_id, Some(scan_a()));
    assert_eq!(finding.severity(), Some(Severity::Low));
    assert_eq!(finding.details, Some(details(Severity::Low)));
    assert_eq!(finding.version, 1);
}

#[test]
fn detecting_the_same_finding_twice_is_refused() {
    Framework::with(())
        .given(vec![detected(Severity::Low)])
        .when(FindingCommand::DetectFinding {
            details: details(Severity::Low),
            scan_id: scan_b(),
            at: hours(5),
        })
        .then_expect_error(DomainError::AlreadyExists);
}

#[test]
fn detection_needs_fingerprint_asset_scanner_and_title() {
    type Edit = fn(&mut FindingDetails);
    let cases: [(&str, Edit); 4] = [
        ("fingerprint", |d| d.fingerprint = " ".into()),
        ("asset", |d| d.asset = String::new()),
        ("scanner", |d| d.scanner = "\t".into()),
        ("title", |d| d.title = "".into()),
    ];
    for (field, edit) in cases {
        let mut sent = details(Severity::Low);
        edit(&mut sent);
        Framework::with(())
            .given_no_previous_events()
            .when(FindingCommand::DetectFinding {
                details: sent,
                scan_id: scan_a(),
                at: t0(),
            })
            .then_expect_error(DomainError::invalid(field, "must not be blank"));
    }
}

#[test]
fn detection_rejects_overlong_texts_naming_the_camel_case_field() {
    type Edit = fn(&mut FindingDetails);
    let cases: [(&str, Edit); 11] = [
        ("fingerprint", |d| d.fingerprint = "f".repeat(513)),
        ("asset", |d| d.asset = "a".repeat(513)),
        ("scanner", |d| d.scanner = "s".repeat(101)),
        ("title", |d| d.title = "t".repeat(1001)),
        ("cve", |d| d.cve = Some("c".repeat(201))),
        ("ruleId", |d| d.rule_id = Some("r".repeat(201))),
        ("package", |d| d.package = Some("p".repeat(513))),
        ("installedVersion", |d| {
            d.installed_version = Some("1".repeat(201))
        }),
        ("fixedVersion", |d| d.fixed_version = Some("2".repeat(201))),
        ("location", |d| d.location = Some("l".repeat(2001))),
        ("description", |d| d.description = Some("d".repeat(20_001))),
    ];
    for (field, edit) in cases {
        let mut sent = details(Severity::Low);
        edit(&mut sent);
        let result = Framework::with(())
            .given_no_previous_events()
            .when(FindingCommand::DetectFinding {
                details: sent,
                scan_id: scan_a(),
                at: t0(),
            })
            .inspect_result();
        assert_eq!(invalid_field(result), field);
    }
}

#[test]
fn detection_rejects_bad_tags() {
    let mut sent = details(Severity::Low);
    sent.tags = (0..51).map(|i| format!("t{i}")).collect();
    let result = Framework::with(())
        .given_no_previous_events()
        .when(FindingCommand::DetectFinding {
            details: sent,
            scan_id: scan_a(),
            at: t0(),
        })
        .inspect_result();
    assert_eq!(invalid_field(result), "tags");
}

#[test]
fn cvss_must_lie_between_zero_and_ten() {
    for cvss in [-0.1, 10.1, f64::NAN, f64::INFINITY] {
        let mut sent = details(Severity::Low);
        sent.cvss = Some(cvss);
        Framework::with(())
            .given_no_previous_events()
            .when(FindingCommand::DetectFinding {
                details: sent,
                scan_id: scan_a(),
                at: t0(),
            })
            .then_expect_error(DomainError::invalid("cvss", "must be between 0.0 and 10.0"));
    }
    for cvss in [Some(0.0), Some(10.0), None] {
        let mut sent = details(Severity::Low);
        sent.cvss = cvss;
        let events = Framework::with(())
            .given_no_previous_events()
            .when(FindingCommand::DetectFinding {
                details: sent,
                scan_id: scan_a(),
                at: t0(),
            })
            .inspect_result()
            .unwrap();
        assert_eq!(events.len(), 1);
    }
}

#[test]
fn every_command_but_detect_on_a_never_detected_finding_is_not_found() {
    let commands = [
        FindingCommand::ResolveFinding {
            scan_id: scan_a(),
            at: t0(),
        },
        FindingCommand::ReopenFinding {
            scan_id: scan_a(),
            at: t0(),
        },
        change(FindingStatus::Confirmed, None),
        accept(None),
        FindingCommand::RevokeRisk { at: t0() },
        expire(days(1), days(1)),
    ];
    for command in commands {
        Framework::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(DomainError::NotFound);
    }
}

// --- scanner-driven resolve / reopen ----------------------------------------------------

#[test]
fn a_newer_report_without_the_finding_resolves_it_from_open_confirmed_or_risk_accepted() {
    for from in FindingStatus::ALL {
        let result = Framework::with(())
            .given(history(from))
            .when(FindingCommand::ResolveFinding {
                scan_id: scan_b(),
                at: hours(3),
            })
            .inspect_result();
        let allowed = [
            FindingStatus::Open,
            FindingStatus::Confirmed,
            FindingStatus::RiskAccepted,
        ];
        if allowed.contains(&from) {
            assert_eq!(
                result,
                Ok(vec![FindingAutoResolved {
                    scan_id: scan_b(),
                    at: hours(3),
                }
                .into()]),
                "from {from}"
            );
        } else {
            assert_eq!(
                result,
                Err(DomainError::transition(from, "RESOLVED")),
                "from {from}"
            );
        }
    }
}

#[test]
fn auto_resolving_a_risk_accepted_finding_drops_the_acceptance() {
    let mut events = history(FindingStatus::RiskAccepted);
    events.push(auto_resolved());
    let finding = state(events);
    assert_eq!(finding.status, FindingStatus::Resolved);
    assert_eq!(finding.resolved_at, Some(hours(1)));
    assert_eq!(finding.risk_acceptance, None);
}

#[test]
fn seeing_a_resolved_finding_again_reopens_it() {
    Framework::with(())
        .given(history(FindingStatus::Resolved))
        .when(FindingCommand::ReopenFinding {
            scan_id: scan_b(),
            at: hours(3),
        })
        .then_expect_events(vec![FindingReopened {
            scan_id: scan_b(),
            at: hours(3),
        }
        .into()]);
    let mut events = history(FindingStatus::Resolved);
    events.push(
        FindingReopened {
            scan_id: scan_b(),
            at: hours(3),
        }
        .into(),
    );
    let finding = state(events);
    assert_eq!(finding.status, FindingStatus::Open);
    assert_eq!(finding.resolved_at, None);
}

#[test]
fn reopening_anything_but_a_resolved_finding_is_an_invalid_transition() {
    for from in FindingStatus::ALL {
        if from == FindingStatus::Resolved {
            continue;
        }
        Framework::with(())
            .given(history(from))
            .when(FindingCommand::ReopenFinding {
                scan_id: scan_b(),
                at: hours(3),
            })
            .then_expect_error(DomainError::transition(from, "OPEN"));
    }
}

// --- manual triage ----------------------------------------------------------------------

#[test]
fn manual_triage_follows_the_lifecycle_table_for_every_status_pair() {
    for from in FindingStatus::ALL {
        for to in FindingStatus::ALL {
            let result = Framework::with(())
                .given(history(from))
                .when(change(to, Some(" checked the code path ")))
                .inspect_result();
            if to != FindingStatus::RiskAccepted && from.can_become(to) {
                assert_eq!(
                    result,
                    Ok(vec![FindingStatusChanged {
                        from,
                        to,
                        justification: Some("checked the code path".into()),
                        at: hours(2),
                    }
                    .into()]),
                    "{from} -> {to}"
                );
            } else {
                assert_eq!(
                    result,
                    Err(DomainError::transition(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }
}

#[test]
fn manual_triage_allows_exactly_these_nine_changes() {
    use FindingStatus::*;
    let expected = [
        (Open, Confirmed),
        (Open, FalsePositive),
        (Open, Resolved),
        (Confirmed, FalsePositive),
        (Confirmed, Resolved),
        (FalsePositive, Open),
        (RiskAccepted, Open),
        (RiskAccepted, Resolved),
        (Resolved, Open),
    ];
    let mut allowed = Vec::new();
    for from in FindingStatus::ALL {
        for to in FindingStatus::ALL {
            let ok = Framework::with(())
                .given(history(from))
                .when(change(to, Some("why")))
                .inspect_result()
                .is_ok();
            if ok {
                allowed.push((from, to));
            }
        }
    }
    assert_eq!(allowed, expected);
}

#[test]
fn risk_accepted_cannot_be_chosen_by_manual_triage() {
    Framework::with(())
        .given(history(FindingStatus::Open))
        .when(change(FindingStatus::RiskAccepted, Some("fine")))
        .then_expect_error_message("cannot change status from OPEN to RISK_ACCEPTED");
}

#[test]
fn an_unchanged_status_is_an_invalid_transition() {
    Framework::with(())
        .given(history(FindingStatus::Resolved))
        .when(change(FindingStatus::Resolved, Some("still")))
        .then_expect_error_message("cannot change status from RESOLVED to RESOLVED");
}

#[test]
fn resolved_cannot_be_confirmed() {
    Framework::with(())
        .given(history(FindingStatus::Resolved))
        .when(change(FindingStatus::Confirmed, Some("x")))
        .then_expect_error_message("cannot change status from RESOLVED to CONFIRMED");
}

#[test]
fn marking_false_positive_or_resolved_needs_a_justification() {
    for to in [FindingStatus::FalsePositive, FindingStatus::Resolved] {
        for justification in [None, Some("   ")] {
            Framework::with(())
                .given(history(FindingStatus::Open))
                .when(change(to, justification))
                .then_expect_error(DomainError::invalid("justification", "must not be blank"));
        }
    }
}

#[test]
fn confirming_or_reopening_needs_no_justification() {
    Framework::with(())
        .given(history(FindingStatus::Open))
        .when(change(FindingStatus::Confirmed, Some("  ")))
        .then_expect_events(vec![FindingStatusChanged {
            from: FindingStatus::Open,
            to: FindingStatus::Confirmed,
            justification: None,
            at: hours(2),
        }
        .into()]);
    Framework::with(())
        .given(history(FindingStatus::FalsePositive))
        .when(change(FindingStatus::Open, None))
        .then_expect_events(vec![FindingStatusChanged {
            from: FindingStatus::FalsePositive,
            to: FindingStatus::Open,
            justification: None,
            at: hours(2),
        }
        .into()]);
}

#[test]
fn an_overlong_justification_is_invalid_for_any_target() {
    let long = "j".repeat(4001);
    for to in [FindingStatus::Confirmed, FindingStatus::Resolved] {
        Framework::with(())
            .given(history(FindingStatus::Open))
            .when(change(to, Some(&long)))
            .then_expect_error(DomainError::invalid(
                "justification",
                "must be at most 4000 characters",
            ));
    }
}

#[test]
fn manually_leaving_risk_accepted_clears_the_acceptance() {
    for to in [FindingStatus::Open, FindingStatus::Resolved] {
        let mut events = history(FindingStatus::RiskAccepted);
        events.push(changed(FindingStatus::RiskAccepted, to));
        let finding = state(events);
        assert_eq!(finding.status, to);
        assert_eq!(finding.risk_acceptance, None);
    }
}

#[test]
fn manual_resolution_sets_resolved_at_and_reopening_clears_it() {
    let mut events = history(FindingStatus::Open);
    events.push(changed(FindingStatus::Open, FindingStatus::Resolved));
    assert_eq!(state(events.clone()).resolved_at, Some(hours(1)));
    events.push(changed(FindingStatus::Resolved, FindingStatus::Open));
    assert_eq!(state(events).resolved_at, None);
}

// --- risk acceptance --------------------------------------------------------------------

#[test]
fn accepting_risk_of_an_open_or_confirmed_finding_records_the_terms() {
    for from in [FindingStatus::Open, FindingStatus::Confirmed] {
        Framework::with(())
            .given(history(from))
            .when(accept(None))
            .then_expect_events(vec![accepted_now(None)]);
    }
}

#[test]
fn accepting_risk_from_any_other_status_is_an_invalid_transition() {
    for from in [
        FindingStatus::FalsePositive,
        FindingStatus::Resolved,
        FindingStatus::RiskAccepted,
    ] {
        Framework::with(())
            .given(history(from))
            .when(accept(Some(approval_2())))
            .then_expect_error(DomainError::transition(from, "RISK_ACCEPTED"));
    }
}

#[test]
fn a_risk_acceptance_is_kept_in_the_state_until_it_ends() {
    let mut events = history(FindingStatus::Open);
    events.push(accepted_now(Some(approval_1())));
    let finding = state(events);
    assert_eq!(finding.status, FindingStatus::RiskAccepted);
    assert_eq!(
        finding.risk_acceptance,
        Some(RiskAcceptance {
            justification: "compensating WAF rule".into(),
            expires_at: days(90),
            approval_id: Some(approval_1().approval_id),
            approved_by: Some(approval_1().approved_by),
            accepted_at: hours(2),
        })
    );
    assert_eq!(finding.approvals_used, vec![approval_1().approval_id]);
}

#[test]
fn high_and_critical_findings_need_an_approval_to_accept_risk() {
    for severity in [Severity::High, Severity::Critical] {
        Framework::with(())
            .given(vec![detected(severity)])
            .when(accept(None))
            .then_expect_error(DomainError::ApprovalRequired);
        Framework::with(())
            .given(vec![detected(severity)])
            .when(accept(Some(approval_1())))
            .then_expect_events(vec![accepted_now(Some(approval_1()))]);
    }
}

#[test]
fn medium_low_and_info_findings_need_no_approval_to_accept_risk() {
    for severity in [Severity::Medium, Severity::Low, Severity::Info] {
        Framework::with(())
            .given(vec![detected(severity)])
            .when(accept(None))
            .then_expect_events(vec![accepted_now(None)]);
    }
}

#[test]
fn accepting_risk_needs_a_justification() {
    Framework::with(())
        .given(history(FindingStatus::Open))
        .when(FindingCommand::AcceptRisk {
            justification: " ".into(),
            expires_at: days(90),
            approval: None,
            at: hours(2),
        })
        .then_expect_error(DomainError::invalid("justification", "must not be blank"));
    Framework::with(())
        .given(history(FindingStatus::Open))
        .when(FindingCommand::AcceptRisk {
            justification: "j".repeat(4001),
            expires_at: days(90),
            approval: None,
            at: hours(2),
        })
        .then_expect_error(DomainError::invalid(
            "justification",
            "must be at most 4000 characters",
        ));
}

#[test]
fn a_risk_acceptance_must_expire_in_the_future_and_within_a_year() {
    let cases = [
        (hours(2), "must be in the future"),
        (hours(1), "must be in the future"),
        (
            hours(2) + Duration::days(365) + Duration::seconds(1),
            "must be at most 365 days ahead",
        ),
    ];
    for (expires_at, message) in cases {
        Framework::with(())
            .given(history(FindingStatus::Open))
            .when(FindingCommand::AcceptRisk {
                justification: "ok".into(),
                expires_at,
                approval: None,
                at: hours(2),
            })
            .then_expect_error(DomainError::invalid("expiresAt", message));
    }
    Framework::with(())
        .given(history(FindingStatus::Open))
        .when(FindingCommand::AcceptRisk {
            justification: "ok".into(),
            expires_at: hours(2) + Duration::days(365),
            approval: None,
            at: hours(2),
        })
        .then_expect_events(vec![RiskAccepted {
            justification: "ok".into(),
            expires_at: hours(2) + Duration::days(365),
            approval_id: None,
            approved_by: None,
            at: hours(2),
        }
        .into()]);
}

#[test]
fn resending_an_accept_for_the_same_approval_records_nothing() {
    let mut events = vec![detected(Severity::Critical)];
    events.push(accepted_now(Some(approval_1())));
    Framework::with(())
        .given(events)
        .when(accept(Some(approval_1())))
        .then_expect_events(vec![]);
}

#[test]
fn an_approval_is_not_reused_after_its_acceptance_was_revoked() {
    Framework::with(())
        .given(vec![
            detected(Severity::Critical),
            accepted_now(Some(approval_1())),
            RiskAcceptanceRevoked { at: hours(3) }.into(),
        ])
        .when(accept(Some(approval_1())))
        .then_expect_events(vec![]);
}

#[test]
fn a_different_approval_on_an_accepted_finding_is_an_invalid_transition() {
    Framework::with(())
        .given(vec![
            detected(Severity::Critical),
            accepted_now(Some(approval_1())),
        ])
        .when(accept(Some(approval_2())))
        .then_expect_error(DomainError::transition("RISK_ACCEPTED", "RISK_ACCEPTED"));
}

#[test]
fn a_new_approval_can_accept_again_after_a_revocation() {
    Framework::with(())
        .given(vec![
            detected(Severity::Critical),
            accepted_now(Some(approval_1())),
            RiskAcceptanceRevoked { at: hours(3) }.into(),
        ])
        .when(accept(Some(approval_2())))
        .then_expect_events(vec![accepted_now(Some(approval_2()))]);
}

// --- revocation -------------------------------------------------------------------------

#[test]
fn revoking_an_acceptance_reopens_the_finding() {
    Framework::with(())
        .given(history(FindingStatus::RiskAccepted))
        .when(FindingCommand::RevokeRisk { at: hours(3) })
        .then_expect_events(vec![RiskAcceptanceRevoked { at: hours(3) }.into()]);
    let mut events = history(FindingStatus::RiskAccepted);
    events.push(RiskAcceptanceRevoked { at: hours(3) }.into());
    let finding = state(events);
    assert_eq!(finding.status, FindingStatus::Open);
    assert_eq!(finding.risk_acceptance, None);
}

#[test]
fn revoking_without_an_acceptance_is_an_invalid_transition() {
    for from in FindingStatus::ALL {
        if from == FindingStatus::RiskAccepted {
            continue;
        }
        Framework::with(())
            .given(history(from))
            .when(FindingCommand::RevokeRisk { at: hours(3) })
            .then_expect_error(DomainError::transition(from, "OPEN"));
    }
}

// --- expiry timer -----------------------------------------------------------------------

#[test]
fn a_due_timer_for_the_acceptance_in_force_expires_it() {
    for at in [days(30), days(31)] {
        Framework::with(())
            .given(history(FindingStatus::RiskAccepted))
            .when(expire(days(30), at))
            .then_expect_events(vec![RiskAcceptanceExpired { at }.into()]);
    }
    let mut events = history(FindingStatus::RiskAccepted);
    events.push(RiskAcceptanceExpired { at: days(30) }.into());
    let finding = state(events);
    assert_eq!(finding.status, FindingStatus::Open);
    assert_eq!(finding.risk_acceptance, None);
}

#[test]
fn a_timer_firing_early_records_nothing() {
    Framework::with(())
        .given(history(FindingStatus::RiskAccepted))
        .when(expire(days(30), days(30) - Duration::seconds(1)))
        .then_expect_events(vec![]);
}

#[test]
fn a_timer_firing_twice_expires_only_once() {
    let mut events = history(FindingStatus::RiskAccepted);
    events.push(RiskAcceptanceExpired { at: days(30) }.into());
    Framework::with(())
        .given(events)
        .when(expire(days(30), days(30)))
        .then_expect_events(vec![]);
}

#[test]
fn a_timer_for_a_revoked_acceptance_records_nothing() {
    let mut events = history(FindingStatus::RiskAccepted);
    events.push(RiskAcceptanceRevoked { at: hours(3) }.into());
    Framework::with(())
        .given(events)
        .when(expire(days(30), days(30)))
        .then_expect_events(vec![]);
}

#[test]
fn a_timer_for_a_replaced_acceptance_records_nothing() {
    let mut events = history(FindingStatus::RiskAccepted);
    events.push(RiskAcceptanceRevoked { at: hours(3) }.into());
    events.push(accepted(None, days(60)));
    Framework::with(())
        .given(events.clone())
        .when(expire(days(30), days(30)))
        .then_expect_events(vec![]);
    Framework::with(())
        .given(events)
        .when(expire(days(60), days(60)))
        .then_expect_events(vec![RiskAcceptanceExpired { at: days(60) }.into()]);
}

#[test]
fn a_timer_on_a_finding_that_was_never_accepted_records_nothing() {
    for from in [
        FindingStatus::Open,
        FindingStatus::Resolved,
        FindingStatus::FalsePositive,
    ] {
        Framework::with(())
            .given(history(from))
            .when(expire(days(30), days(30)))
            .then_expect_events(vec![]);
    }
}

// --- events on the wire -----------------------------------------------------------------

#[test]
fn detection_serializes_with_nested_camel_case_details() {
    let json = serde_json::to_value(detected(Severity::High)).unwrap();
    let payload = &json["FindingDetected"];
    assert_eq!(payload["scanId"], serde_json::json!(scan_a()));
    assert_eq!(payload["detectedAt"], "2025-03-01T09:00:00Z");
    assert_eq!(payload["details"]["severity"], "HIGH");
    assert_eq!(payload["details"]["installedVersion"], "3.0.1");
    assert_eq!(payload["details"]["fixedVersion"], "3.0.13");
    assert_eq!(payload["details"]["ruleId"], serde_json::Value::Null);
    assert_eq!(payload["details"]["cvss"], 7.5);
}

#[test]
fn every_finding_event_round_trips_through_json() {
    let events = vec![
        detected(Severity::Info),
        auto_resolved(),
        FindingReopened {
            scan_id: scan_b(),
            at: hours(3),
        }
        .into(),
        changed(FindingStatus::Open, FindingStatus::FalsePositive),
        accepted(Some(approval_1()), days(30)),
        RiskAcceptanceRevoked { at: hours(3) }.into(),
        RiskAcceptanceExpired { at: days(30) }.into(),
    ];
    for event in events {
        let json = serde_json::to_value(&event).unwrap();
        assert!(json.get(event.event_type()).is_some(), "{json}");
        assert_eq!(serde_json::from_value::<FindingEvent>(json).unwrap(), event);
    }
    let json =
        serde_json::to_value(changed(FindingStatus::Open, FindingStatus::FalsePositive)).unwrap();
    assert_eq!(json["FindingStatusChanged"]["to"], "FALSE_POSITIVE");
    let json = serde_json::to_value(accepted(Some(approval_1()), days(30))).unwrap();
    assert_eq!(
        json["RiskAccepted"]["approvalId"],
        serde_json::json!(approval_1().approval_id)
    );
    assert_eq!(json["RiskAccepted"]["expiresAt"], "2025-03-31T09:00:00Z");
}

#[test]
fn the_version_counts_every_applied_event() {
    let mut events = history(FindingStatus::RiskAccepted);
    events.push(RiskAcceptanceRevoked { at: hours(3) }.into());
    assert_eq!(state(events).version, 3);
}
