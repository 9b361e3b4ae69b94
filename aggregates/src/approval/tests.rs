use chrono::Duration;
use cqrs_es::test::TestFramework;
use cqrs_es::DomainEvent;

use super::*;
use crate::test_support::{days, hours, t0};
use crate::{Finding, FindingDetails, FindingDetected, FindingEvent, FindingStatus, Severity};

type Framework = TestFramework<Approval>;

fn finding_id() -> Uuid {
    Uuid::from_u128(0xf1)
}

fn analyst() -> Uuid {
    Uuid::from_u128(0xa1)
}

fn lead() -> Decider {
    Decider {
        user_id: Uuid::from_u128(0x1ead),
        role: Role::SecurityLead,
    }
}

fn request() -> ApprovalCommand {
    ApprovalCommand::RequestRiskAcceptance {
        finding_id: finding_id(),
        requested_by: analyst(),
        justification: "  no exploit path behind the WAF ".into(),
        expires_at: days(30),
        at: t0(),
    }
}

fn requested() -> ApprovalEvent {
    ApprovalRequested {
        kind: ApprovalKind::RiskAcceptance,
        finding_id: finding_id(),
        requested_by: analyst(),
        justification: "no exploit path behind the WAF".into(),
        expires_at: days(30),
        at: t0(),
    }
    .into()
}

fn approve(by: Decider) -> ApprovalCommand {
    ApprovalCommand::Approve {
        by,
        comment: Some(" ok for a month ".into()),
        at: hours(4),
    }
}

fn reject(by: Decider) -> ApprovalCommand {
    ApprovalCommand::Reject {
        by,
        comment: None,
        at: hours(4),
    }
}

fn withdraw(by: Uuid) -> ApprovalCommand {
    ApprovalCommand::Withdraw {
        by,
        comment: None,
        at: hours(4),
    }
}

fn approved() -> ApprovalApproved {
    ApprovalApproved {
        decided_by: lead().user_id,
        decider_role: Role::SecurityLead,
        comment: Some("ok for a month".into()),
        finding_id: finding_id(),
        justification: "no exploit path behind the WAF".into(),
        expires_at: days(30),
        at: hours(4),
    }
}

fn rejected() -> ApprovalEvent {
    ApprovalRejected {
        decided_by: lead().user_id,
        decider_role: Role::SecurityLead,
        comment: None,
        at: hours(4),
    }
    .into()
}

fn withdrawn() -> ApprovalEvent {
    ApprovalWithdrawn {
        by: analyst(),
        comment: None,
        at: hours(4),
    }
    .into()
}

fn decided_histories() -> Vec<(ApprovalStatus, Vec<ApprovalEvent>)> {
    vec![
        (
            ApprovalStatus::Approved,
            vec![requested(), approved().into()],
        ),
        (ApprovalStatus::Rejected, vec![requested(), rejected()]),
        (ApprovalStatus::Withdrawn, vec![requested(), withdrawn()]),
    ]
}

fn state(events: Vec<ApprovalEvent>) -> Approval {
    let mut approval = Approval::default();
    events.into_iter().for_each(|e| approval.apply(e));
    approval
}

// --- request ----------------------------------------------------------------------------

#[test]
fn requesting_records_a_pending_risk_acceptance_request() {
    Framework::with(())
        .given_no_previous_events()
        .when(request())
        .then_expect_events(vec![requested()]);
    let approval = state(vec![requested()]);
    assert_eq!(approval.status, ApprovalStatus::Pending);
    assert_eq!(approval.requested_by, analyst());
    assert_eq!(approval.finding_id, finding_id());
    assert_eq!(approval.expires_at, days(30));
    assert_eq!(approval.version, 1);
}

#[test]
fn requesting_the_same_approval_twice_is_refused() {
    Framework::with(())
        .given(vec![requested()])
        .when(request())
        .then_expect_error(DomainError::AlreadyExists);
}

#[test]
fn a_request_needs_a_justification() {
    for (justification, message) in [
        (" ".to_owned(), "must not be blank"),
        ("j".repeat(4001), "must be at most 4000 characters"),
    ] {
        Framework::with(())
            .given_no_previous_events()
            .when(ApprovalCommand::RequestRiskAcceptance {
                finding_id: finding_id(),
                requested_by: analyst(),
                justification,
                expires_at: days(30),
                at: t0(),
            })
            .then_expect_error(DomainError::invalid("justification", message));
    }
}

#[test]
fn a_request_must_expire_in_the_future_and_within_a_year() {
    for (expires_at, message) in [
        (t0(), "must be in the future"),
        (
            days(365) + Duration::seconds(1),
            "must be at most 365 days ahead",
        ),
    ] {
        Framework::with(())
            .given_no_previous_events()
            .when(ApprovalCommand::RequestRiskAcceptance {
                finding_id: finding_id(),
                requested_by: analyst(),
                justification: "j".into(),
                expires_at,
                at: t0(),
            })
            .then_expect_error(DomainError::invalid("expiresAt", message));
    }
}

#[test]
fn every_command_on_a_never_requested_approval_is_not_found() {
    for command in [approve(lead()), reject(lead()), withdraw(analyst())] {
        Framework::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(DomainError::NotFound);
    }
}

// --- approve / reject -------------------------------------------------------------------

#[test]
fn a_security_lead_or_admin_approves_and_the_event_repeats_the_terms() {
    Framework::with(())
        .given(vec![requested()])
        .when(approve(lead()))
        .then_expect_events(vec![approved().into()]);
    let admin = Decider {
        user_id: Uuid::from_u128(0xad),
        role: Role::Admin,
    };
    Framework::with(())
        .given(vec![requested()])
        .when(approve(admin))
        .then_expect_events(vec![ApprovalApproved {
            decided_by: admin.user_id,
            decider_role: Role::Admin,
            ..approved()
        }
        .into()]);
}

#[test]
fn a_security_lead_or_admin_rejects() {
    Framework::with(())
        .given(vec![requested()])
        .when(reject(lead()))
        .then_expect_events(vec![rejected()]);
    let admin = Decider {
        user_id: Uuid::from_u128(0xad),
        role: Role::Admin,
    };
    Framework::with(())
        .given(vec![requested()])
        .when(ApprovalCommand::Reject {
            by: admin,
            comment: Some("fix it instead".into()),
            at: hours(4),
        })
        .then_expect_events(vec![ApprovalRejected {
            decided_by: admin.user_id,
            decider_role: Role::Admin,
            comment: Some("fix it instead".into()),
            at: hours(4),
        }
        .into()]);
}

#[test]
fn analysts_and_viewers_may_not_decide() {
    for role in [Role::Analyst, Role::Viewer] {
        let by = Decider {
            user_id: Uuid::from_u128(0x99),
            role,
        };
        for command in [approve(by), reject(by)] {
            Framework::with(())
                .given(vec![requested()])
                .when(command)
                .then_expect_error(DomainError::forbidden(
                    "deciding requires the security_lead role or higher",
                ));
        }
    }
}

#[test]
fn the_requester_may_not_decide_even_as_admin() {
    let requester_as_admin = Decider {
        user_id: analyst(),
        role: Role::Admin,
    };
    for command in [approve(requester_as_admin), reject(requester_as_admin)] {
        Framework::with(())
            .given(vec![requested()])
            .when(command)
            .then_expect_error_message("separation of duties: the requester cannot decide");
    }
}

#[test]
fn approving_after_the_requested_expiry_is_invalid() {
    for at in [days(30), days(31)] {
        Framework::with(())
            .given(vec![requested()])
            .when(ApprovalCommand::Approve {
                by: lead(),
                comment: None,
                at,
            })
            .then_expect_error(DomainError::invalid("expiresAt", "has already passed"));
    }
}

#[test]
fn rejecting_after_the_requested_expiry_is_still_allowed() {
    Framework::with(())
        .given(vec![requested()])
        .when(ApprovalCommand::Reject {
            by: lead(),
            comment: None,
            at: days(40),
        })
        .then_expect_events(vec![ApprovalRejected {
            decided_by: lead().user_id,
            decider_role: Role::SecurityLead,
            comment: None,
            at: days(40),
        }
        .into()]);
}

#[test]
fn an_overlong_comment_is_invalid() {
    let comment = Some("c".repeat(4001));
    let commands = [
        ApprovalCommand::Approve {
            by: lead(),
            comment: comment.clone(),
            at: hours(4),
        },
        ApprovalCommand::Reject {
            by: lead(),
            comment: comment.clone(),
            at: hours(4),
        },
        ApprovalCommand::Withdraw {
            by: analyst(),
            comment,
            at: hours(4),
        },
    ];
    for command in commands {
        Framework::with(())
            .given(vec![requested()])
            .when(command)
            .then_expect_error(DomainError::invalid(
                "comment",
                "must be at most 4000 characters",
            ));
    }
}

#[test]
fn a_decided_approval_cannot_be_decided_again() {
    for (status, history) in decided_histories() {
        Framework::with(())
            .given(history.clone())
            .when(approve(lead()))
            .then_expect_error(DomainError::transition(status, "APPROVED"));
        Framework::with(())
            .given(history.clone())
            .when(reject(lead()))
            .then_expect_error(DomainError::transition(status, "REJECTED"));
        Framework::with(())
            .given(history)
            .when(withdraw(analyst()))
            .then_expect_error(DomainError::transition(status, "WITHDRAWN"));
    }
}

#[test]
fn a_decision_is_kept_in_the_state() {
    let approval = state(vec![requested(), approved().into()]);
    assert_eq!(approval.status, ApprovalStatus::Approved);
    assert_eq!(approval.decided_by, Some(lead().user_id));
    assert_eq!(approval.decided_at, Some(hours(4)));
    assert_eq!(approval.comment.as_deref(), Some("ok for a month"));
    assert_eq!(
        state(vec![requested(), rejected()]).status,
        ApprovalStatus::Rejected
    );
    assert_eq!(approval.version, 2);
}

// --- withdraw ---------------------------------------------------------------------------

#[test]
fn the_requester_withdraws_a_pending_request() {
    Framework::with(())
        .given(vec![requested()])
        .when(ApprovalCommand::Withdraw {
            by: analyst(),
            comment: Some(" fixed instead ".into()),
            at: hours(4),
        })
        .then_expect_events(vec![ApprovalWithdrawn {
            by: analyst(),
            comment: Some("fixed instead".into()),
            at: hours(4),
        }
        .into()]);
    let approval = state(vec![requested(), withdrawn()]);
    assert_eq!(approval.status, ApprovalStatus::Withdrawn);
    assert_eq!(approval.decided_by, Some(analyst()));
}

#[test]
fn nobody_but_the_requester_may_withdraw() {
    Framework::with(())
        .given(vec![requested()])
        .when(withdraw(lead().user_id))
        .then_expect_error(DomainError::forbidden(
            "only the requester can withdraw a request",
        ));
}

// --- hand-over to the finding -----------------------------------------------------------

#[test]
fn an_approval_yields_an_accept_command_the_critical_finding_takes_exactly_once() {
    let approval_id = Uuid::from_u128(0xabc);
    let command = approved().accept_risk(approval_id);
    assert_eq!(
        command,
        FindingCommand::AcceptRisk {
            justification: "no exploit path behind the WAF".into(),
            expires_at: days(30),
            approval: Some(ApprovalRef {
                approval_id,
                approved_by: lead().user_id,
            }),
            at: hours(4),
        }
    );
    let detected: FindingEvent = FindingDetected {
        details: FindingDetails {
            fingerprint: "fp".into(),
            asset: "asset".into(),
            scanner: "trivy".into(),
            title: "title".into(),
            severity: Severity::Critical,
            cvss: None,
            cve: None,
            rule_id: None,
            package: None,
            installed_version: None,
            fixed_version: None,
            location: None,
            description: None,
            tags: Vec::new(),
        },
        scan_id: Uuid::from_u128(0x5),
        detected_at: t0(),
    }
    .into();
    let mut finding = Finding::default();
    finding.apply(detected);
    let events = finding.decide(command.clone()).unwrap();
    assert_eq!(events.len(), 1);
    events.into_iter().for_each(|e| finding.apply(e));
    assert_eq!(finding.status, FindingStatus::RiskAccepted);
    assert_eq!(finding.decide(command), Ok(vec![]));
}

// --- events on the wire -----------------------------------------------------------------

#[test]
fn every_approval_event_round_trips_through_json() {
    for event in [requested(), approved().into(), rejected(), withdrawn()] {
        let json = serde_json::to_value(&event).unwrap();
        assert!(json.get(event.event_type()).is_some(), "{json}");
        assert_eq!(
            serde_json::from_value::<ApprovalEvent>(json).unwrap(),
            event
        );
    }
    let json = serde_json::to_value(requested()).unwrap();
    assert_eq!(json["ApprovalRequested"]["kind"], "RISK_ACCEPTANCE");
    assert_eq!(
        json["ApprovalRequested"]["requestedBy"],
        serde_json::json!(analyst())
    );
    let json = serde_json::to_value(ApprovalEvent::from(approved())).unwrap();
    assert_eq!(json["ApprovalApproved"]["deciderRole"], "security_lead");
    assert_eq!(
        json["ApprovalApproved"]["decidedBy"],
        serde_json::json!(lead().user_id)
    );
}
