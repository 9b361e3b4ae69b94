use cqrs_es::test::TestFramework;
use cqrs_es::DomainEvent;
use uuid::Uuid;

use super::*;
use crate::test_support::{hours, t0};

type Framework = TestFramework<Scan>;

fn launch() -> ScanCommand {
    ScanCommand::LaunchScan {
        target: "  github.com/acme/shop  ".into(),
        scanner: "trivy".into(),
        profile: Some("full".into()),
        branch: Some("main".into()),
        commit: Some("  ".into()),
        tags: vec!["prod".into(), " prod ".into(), "web".into()],
        at: t0(),
    }
}

fn launched() -> ScanEvent {
    ScanLaunched {
        target: "github.com/acme/shop".into(),
        scanner: "trivy".into(),
        profile: Some("full".into()),
        branch: Some("main".into()),
        commit: None,
        tags: vec!["prod".into(), "web".into()],
        launched_at: t0(),
    }
    .into()
}

fn started() -> ScanEvent {
    ScanStarted { at: hours(1) }.into()
}

fn progressed(percent: u8) -> ScanEvent {
    ScanProgressed {
        percent,
        step: None,
        at: hours(1),
    }
    .into()
}

fn summary() -> SeverityCounts {
    SeverityCounts {
        critical: 1,
        high: 2,
        ..SeverityCounts::default()
    }
}

fn counts() -> FindingCounts {
    FindingCounts {
        new: 2,
        redetected: 1,
        reopened: 0,
        resolved: 4,
        total: 3,
    }
}

fn completed() -> ScanEvent {
    ScanCompleted {
        format: "sarif".into(),
        summary: summary(),
        findings: counts(),
        at: hours(2),
    }
    .into()
}

fn failed() -> ScanEvent {
    ScanFailed {
        reason: "timeout".into(),
        at: hours(2),
    }
    .into()
}

fn cancelled() -> ScanEvent {
    ScanCancelled { at: hours(2) }.into()
}

fn progress(percent: u8) -> ScanCommand {
    ScanCommand::ReportProgress {
        percent,
        step: None,
        at: hours(3),
    }
}

fn complete() -> ScanCommand {
    ScanCommand::CompleteScan {
        format: "sarif".into(),
        summary: summary(),
        findings: counts(),
        observed: vec![],
        at: hours(3),
    }
}

fn stop() -> ScanCommand {
    ScanCommand::StopScan { at: hours(3) }
}

fn fail() -> ScanCommand {
    ScanCommand::FailScan {
        reason: "scanner crashed".into(),
        at: hours(3),
    }
}

/// Histories ending in each finished status, with that status.
fn finished_histories() -> Vec<(ScanStatus, Vec<ScanEvent>)> {
    vec![
        (
            ScanStatus::Completed,
            vec![launched(), started(), completed()],
        ),
        (ScanStatus::Failed, vec![launched(), failed()]),
        (ScanStatus::Cancelled, vec![launched(), cancelled()]),
    ]
}

fn state(events: Vec<ScanEvent>) -> Scan {
    let mut scan = Scan::default();
    events.into_iter().for_each(|e| scan.apply(e));
    scan
}

// --- launch -----------------------------------------------------------------------------

#[test]
fn launching_records_trimmed_fields_and_deduplicated_tags() {
    Framework::with(())
        .given_no_previous_events()
        .when(launch())
        .then_expect_events(vec![launched()]);
}

#[test]
fn a_launched_scan_is_queued_at_zero_percent() {
    let scan = state(vec![launched()]);
    assert_eq!(scan.status, ScanStatus::Queued);
    assert_eq!(scan.percent, 0);
    assert_eq!(scan.created_at, Some(t0()));
    assert_eq!(scan.target, "github.com/acme/shop");
    assert_eq!(scan.version, 1);
}

#[test]
fn launching_the_same_scan_twice_is_refused() {
    Framework::with(())
        .given(vec![launched()])
        .when(launch())
        .then_expect_error(DomainError::AlreadyExists);
}

#[test]
fn launching_needs_a_target_and_a_scanner() {
    let ScanCommand::LaunchScan {
        scanner,
        profile,
        branch,
        commit,
        tags,
        at,
        ..
    } = launch()
    else {
        unreachable!()
    };
    Framework::with(())
        .given_no_previous_events()
        .when(ScanCommand::LaunchScan {
            target: " ".into(),
            scanner: scanner.clone(),
            profile: profile.clone(),
            branch: branch.clone(),
            commit: commit.clone(),
            tags: tags.clone(),
            at,
        })
        .then_expect_error(DomainError::invalid("target", "must not be blank"));
    Framework::with(())
        .given_no_previous_events()
        .when(ScanCommand::LaunchScan {
            target: "repo".into(),
            scanner: String::new(),
            profile,
            branch,
            commit,
            tags,
            at,
        })
        .then_expect_error(DomainError::invalid("scanner", "must not be blank"));
}

#[test]
fn launching_with_overlong_texts_names_the_offending_field() {
    let cases: Vec<(&str, ScanCommand)> = vec![
        ("target", with_launch(|c| c.0 = "t".repeat(513))),
        ("scanner", with_launch(|c| c.1 = "s".repeat(101))),
        ("profile", with_launch(|c| c.2 = Some("p".repeat(101)))),
        ("branch", with_launch(|c| c.3 = Some("b".repeat(256)))),
        ("commit", with_launch(|c| c.4 = Some("c".repeat(101)))),
        ("tags", with_launch(|c| c.5 = vec!["x".repeat(101)])),
        (
            "tags",
            with_launch(|c| c.5 = (0..51).map(|i| i.to_string()).collect()),
        ),
        ("tags", with_launch(|c| c.5 = vec![" ".into()])),
    ];
    for (field, command) in cases {
        let error = Framework::with(())
            .given_no_previous_events()
            .when(command)
            .inspect_result()
            .unwrap_err();
        assert!(
            matches!(&error, DomainError::Invalid { field: f, .. } if f == field),
            "{field}: {error:?}"
        );
    }
}

type LaunchFields = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<String>,
);

fn with_launch(edit: impl FnOnce(&mut LaunchFields)) -> ScanCommand {
    let mut fields: LaunchFields = ("repo".into(), "trivy".into(), None, None, None, Vec::new());
    edit(&mut fields);
    let (target, scanner, profile, branch, commit, tags) = fields;
    ScanCommand::LaunchScan {
        target,
        scanner,
        profile,
        branch,
        commit,
        tags,
        at: t0(),
    }
}

// --- never launched ---------------------------------------------------------------------

#[test]
fn every_command_but_launch_on_a_never_launched_scan_is_not_found() {
    for command in [progress(10), complete(), stop(), fail()] {
        Framework::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(DomainError::NotFound);
    }
}

// --- progress ---------------------------------------------------------------------------

#[test]
fn first_progress_report_starts_a_queued_scan() {
    Framework::with(())
        .given(vec![launched()])
        .when(ScanCommand::ReportProgress {
            percent: 10,
            step: Some(" resolving dependencies ".into()),
            at: hours(3),
        })
        .then_expect_events(vec![
            ScanStarted { at: hours(3) }.into(),
            ScanProgressed {
                percent: 10,
                step: Some("resolving dependencies".into()),
                at: hours(3),
            }
            .into(),
        ]);
}

#[test]
fn progress_on_a_running_scan_only_records_progress() {
    Framework::with(())
        .given(vec![launched(), started(), progressed(10)])
        .when(progress(40))
        .then_expect_events(vec![ScanProgressed {
            percent: 40,
            step: None,
            at: hours(3),
        }
        .into()]);
}

#[test]
fn repeating_the_same_percent_is_allowed_to_update_the_step() {
    Framework::with(())
        .given(vec![launched(), started(), progressed(40)])
        .when(ScanCommand::ReportProgress {
            percent: 40,
            step: Some("uploading".into()),
            at: hours(3),
        })
        .then_expect_events(vec![ScanProgressed {
            percent: 40,
            step: Some("uploading".into()),
            at: hours(3),
        }
        .into()]);
}

#[test]
fn zero_and_one_hundred_percent_are_accepted() {
    Framework::with(())
        .given(vec![launched(), started()])
        .when(progress(0))
        .then_expect_events(vec![ScanProgressed {
            percent: 0,
            step: None,
            at: hours(3),
        }
        .into()]);
    Framework::with(())
        .given(vec![launched(), started()])
        .when(progress(100))
        .then_expect_events(vec![ScanProgressed {
            percent: 100,
            step: None,
            at: hours(3),
        }
        .into()]);
}

#[test]
fn progress_above_one_hundred_percent_is_invalid() {
    Framework::with(())
        .given(vec![launched(), started()])
        .when(progress(101))
        .then_expect_error(DomainError::invalid("percent", "must be between 0 and 100"));
}

#[test]
fn progress_must_not_go_backwards() {
    Framework::with(())
        .given(vec![launched(), started(), progressed(50)])
        .when(progress(49))
        .then_expect_error(DomainError::invalid("percent", "must not decrease"));
}

#[test]
fn an_overlong_step_is_invalid() {
    Framework::with(())
        .given(vec![launched(), started()])
        .when(ScanCommand::ReportProgress {
            percent: 1,
            step: Some("s".repeat(201)),
            at: hours(3),
        })
        .then_expect_error(DomainError::invalid(
            "step",
            "must be at most 200 characters",
        ));
}

#[test]
fn progress_on_a_finished_scan_is_an_invalid_transition_to_running() {
    for (status, history) in finished_histories() {
        Framework::with(())
            .given(history)
            .when(progress(100))
            .then_expect_error(DomainError::transition(status, "RUNNING"));
    }
}

#[test]
fn a_progress_report_without_a_step_keeps_the_last_named_step() {
    let scan = state(vec![
        launched(),
        started(),
        ScanProgressed {
            percent: 10,
            step: Some("fetching".into()),
            at: hours(1),
        }
        .into(),
        progressed(20),
    ]);
    assert_eq!(scan.status, ScanStatus::Running);
    assert_eq!(scan.started_at, Some(hours(1)));
    assert_eq!(scan.percent, 20);
    assert_eq!(scan.step.as_deref(), Some("fetching"));
    assert_eq!(scan.version, 4);
}

// --- complete ---------------------------------------------------------------------------

#[test]
fn completing_a_running_scan_records_its_report() {
    Framework::with(())
        .given(vec![launched(), started(), progressed(80)])
        .when(complete())
        .then_expect_events(vec![ScanCompleted {
            format: "sarif".into(),
            summary: summary(),
            findings: counts(),
            at: hours(3),
        }
        .into()]);
}

#[test]
fn completing_a_queued_scan_starts_it_first() {
    Framework::with(())
        .given(vec![launched()])
        .when(complete())
        .then_expect_events(vec![
            ScanStarted { at: hours(3) }.into(),
            ScanCompleted {
                format: "sarif".into(),
                summary: summary(),
                findings: counts(),
                at: hours(3),
            }
            .into(),
        ]);
}

#[test]
fn completing_needs_a_report_format() {
    Framework::with(())
        .given(vec![launched(), started()])
        .when(ScanCommand::CompleteScan {
            format: "  ".into(),
            summary: summary(),
            findings: counts(),
            observed: vec![],
            at: hours(3),
        })
        .then_expect_error(DomainError::invalid("format", "must not be blank"));
}

#[test]
fn a_completed_scan_is_at_one_hundred_percent_with_its_summary() {
    let scan = state(vec![launched(), started(), progressed(30), completed()]);
    assert_eq!(scan.status, ScanStatus::Completed);
    assert_eq!(scan.percent, 100);
    assert_eq!(scan.summary, Some(summary()));
    assert_eq!(scan.findings, Some(counts()));
    assert_eq!(scan.finished_at, Some(hours(2)));
}

#[test]
fn completing_a_finished_scan_is_an_invalid_transition() {
    for (status, history) in finished_histories() {
        Framework::with(())
            .given(history)
            .when(complete())
            .then_expect_error(DomainError::transition(status, "COMPLETED"));
    }
}

// --- stop -------------------------------------------------------------------------------

#[test]
fn stopping_a_queued_or_running_scan_cancels_it() {
    for history in [vec![launched()], vec![launched(), started(), progressed(5)]] {
        Framework::with(())
            .given(history)
            .when(stop())
            .then_expect_events(vec![ScanCancelled { at: hours(3) }.into()]);
    }
    let scan = state(vec![launched(), cancelled()]);
    assert_eq!(scan.status, ScanStatus::Cancelled);
    assert_eq!(scan.finished_at, Some(hours(2)));
}

#[test]
fn stopping_a_finished_scan_is_an_invalid_transition() {
    for (status, history) in finished_histories() {
        Framework::with(())
            .given(history)
            .when(stop())
            .then_expect_error_message(&format!("cannot change status from {status} to CANCELLED"));
    }
}

// --- fail -------------------------------------------------------------------------------

#[test]
fn failing_a_queued_or_running_scan_records_the_reason() {
    for history in [vec![launched()], vec![launched(), started()]] {
        Framework::with(())
            .given(history)
            .when(ScanCommand::FailScan {
                reason: " scanner crashed ".into(),
                at: hours(3),
            })
            .then_expect_events(vec![ScanFailed {
                reason: "scanner crashed".into(),
                at: hours(3),
            }
            .into()]);
    }
    let scan = state(vec![launched(), failed()]);
    assert_eq!(scan.status, ScanStatus::Failed);
    assert_eq!(scan.failure_reason.as_deref(), Some("timeout"));
}

#[test]
fn failing_needs_a_reason() {
    Framework::with(())
        .given(vec![launched(), started()])
        .when(ScanCommand::FailScan {
            reason: "\n".into(),
            at: hours(3),
        })
        .then_expect_error(DomainError::invalid("reason", "must not be blank"));
    Framework::with(())
        .given(vec![launched(), started()])
        .when(ScanCommand::FailScan {
            reason: "r".repeat(4001),
            at: hours(3),
        })
        .then_expect_error(DomainError::invalid(
            "reason",
            "must be at most 4000 characters",
        ));
}

#[test]
fn failing_a_finished_scan_is_an_invalid_transition() {
    for (status, history) in finished_histories() {
        Framework::with(())
            .given(history)
            .when(fail())
            .then_expect_error(DomainError::transition(status, "FAILED"));
    }
}

// --- events on the wire -----------------------------------------------------------------

#[test]
fn events_serialize_externally_tagged_with_camel_case_fields() {
    let json = serde_json::to_value(launched()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "ScanLaunched": {
                "target": "github.com/acme/shop",
                "scanner": "trivy",
                "profile": "full",
                "branch": "main",
                "commit": null,
                "tags": ["prod", "web"],
                "launchedAt": "2025-03-01T09:00:00Z"
            }
        })
    );
    let back: ScanEvent = serde_json::from_value(json).unwrap();
    assert_eq!(back, launched());
}

#[test]
fn every_scan_event_round_trips_through_json() {
    for event in [
        launched(),
        started(),
        progressed(3),
        completed(),
        failed(),
        cancelled(),
    ] {
        let json = serde_json::to_value(&event).unwrap();
        assert!(json.get(event.event_type()).is_some(), "{json}");
        assert_eq!(serde_json::from_value::<ScanEvent>(json).unwrap(), event);
        assert_eq!(event.event_version(), "1.0");
    }
    let completed = serde_json::to_value(completed()).unwrap();
    assert_eq!(
        completed["ScanCompleted"]["summary"],
        serde_json::json!({"CRITICAL": 1, "HIGH": 2, "MEDIUM": 0, "LOW": 0, "INFO": 0})
    );
    assert_eq!(
        completed["ScanCompleted"]["findings"],
        serde_json::json!({"new": 2, "redetected": 1, "reopened": 0, "resolved": 4, "total": 3})
    );
}

#[test]
fn the_version_counts_every_applied_event() {
    let scan = state(vec![launched(), started(), progressed(1), completed()]);
    assert_eq!(scan.version, 4);
}

#[test]
fn a_completion_records_what_it_observed_in_bounded_chunks_before_completing() {
    let ids: Vec<Uuid> = (0..2500).map(|_| Uuid::new_v4()).collect();
    let events = Framework::with(())
        .given(vec![launched(), started()])
        .when(ScanCommand::CompleteScan {
            format: "grype".into(),
            summary: summary(),
            findings: counts(),
            observed: ids.clone(),
            at: hours(3),
        })
        .inspect_result()
        .unwrap();
    let chunks: Vec<&FindingsObserved> = events
        .iter()
        .filter_map(|e| match e {
            ScanEvent::FindingsObserved(o) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(
        chunks
            .iter()
            .map(|c| c.finding_ids.len())
            .collect::<Vec<_>>(),
        [1000, 1000, 500]
    );
    let flattened: Vec<Uuid> = chunks.iter().flat_map(|c| c.finding_ids.clone()).collect();
    assert_eq!(flattened, ids);
    assert!(matches!(events.last(), Some(ScanEvent::ScanCompleted(_))));
}
