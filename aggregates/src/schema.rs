//! JSON schemas of every event payload, for the published event catalogue and for consumers
//! that read the event store directly.

use schemars::schema::RootSchema;

use crate::event::EventPayload;
use crate::{ApprovalEvent, FindingEvent, ScanEvent, TenantSettingsEvent};

/// One event payload's schema, keyed the way the event store keys events.
#[derive(Clone, Debug)]
pub struct EventSchema {
    pub aggregate_type: &'static str,
    pub event_type: &'static str,
    pub event_version: &'static str,
    pub schema: RootSchema,
}

impl EventSchema {
    pub fn of<P: EventPayload>(aggregate_type: &'static str) -> Self {
        Self {
            aggregate_type,
            event_type: P::EVENT_TYPE,
            event_version: P::EVENT_VERSION,
            schema: schemars::schema_for!(P),
        }
    }
}

/// Every event of every aggregate, grouped by aggregate in a stable order.
pub fn event_schemas() -> Vec<EventSchema> {
    [
        ScanEvent::schemas(),
        FindingEvent::schemas(),
        ApprovalEvent::schemas(),
        TenantSettingsEvent::schemas(),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::{TimeZone, Utc};
    use cqrs_es::{Aggregate, DomainEvent};
    use uuid::Uuid;

    use super::*;
    use crate::approval::*;
    use crate::finding::*;
    use crate::scan::*;
    use crate::settings::*;
    use crate::{
        Approval, Finding, FindingStatus, Role, Scan, Severity, SeverityCounts, SlaPolicy,
        TenantSettings,
    };

    /// One event of every variant, tagged with its aggregate type. The exhaustive matches
    /// below make this list fail to compile when a variant is added and not sampled here.
    fn one_of_each() -> Vec<(&'static str, String, String)> {
        let at = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let id = Uuid::nil();
        let scan = [
            ScanEvent::from(ScanLaunched {
                target: "t".into(),
                scanner: "s".into(),
                profile: None,
                branch: None,
                commit: None,
                tags: vec![],
                launched_at: at,
            }),
            ScanStarted { at }.into(),
            ScanProgressed {
                percent: 1,
                step: None,
                at,
            }
            .into(),
            FindingsObserved {
                finding_ids: vec![Uuid::nil()],
                at,
            }
            .into(),
            ScanCompleted {
                format: "f".into(),
                summary: SeverityCounts::default(),
                findings: FindingCounts::default(),
                at,
            }
            .into(),
            ScanFailed {
                reason: "r".into(),
                at,
            }
            .into(),
            ScanCancelled { at }.into(),
        ];
        let finding = [
            FindingEvent::from(FindingDetected {
                details: FindingDetails {
                    fingerprint: "f".into(),
                    asset: "a".into(),
                    scanner: "s".into(),
                    title: "t".into(),
                    severity: Severity::Low,
                    cvss: None,
                    cve: None,
                    rule_id: None,
                    package: None,
                    installed_version: None,
                    fixed_version: None,
                    location: None,
                    description: None,
                    tags: vec![],
                },
                scan_id: id,
                detected_at: at,
            }),
            FindingAutoResolved { scan_id: id, at }.into(),
            FindingReopened { scan_id: id, at }.into(),
            FindingStatusChanged {
                from: FindingStatus::Open,
                to: FindingStatus::Confirmed,
                justification: None,
                at,
            }
            .into(),
            RiskAccepted {
                justification: "j".into(),
                expires_at: at,
                approval_id: None,
                approved_by: None,
                at,
            }
            .into(),
            RiskAcceptanceRevoked { at }.into(),
            RiskAcceptanceExpired { at }.into(),
        ];
        let approval = [
            ApprovalEvent::from(ApprovalRequested {
                kind: ApprovalKind::RiskAcceptance,
                finding_id: id,
                requested_by: id,
                justification: "j".into(),
                expires_at: at,
                at,
            }),
            ApprovalApproved {
                decided_by: id,
                decider_role: Role::Admin,
                comment: None,
                finding_id: id,
                justification: "j".into(),
                expires_at: at,
                at,
            }
            .into(),
            ApprovalRejected {
                decided_by: id,
                decider_role: Role::Admin,
                comment: None,
                at,
            }
            .into(),
            ApprovalWithdrawn {
                by: id,
                comment: None,
                at,
            }
            .into(),
        ];
        let settings = [TenantSettingsEvent::from(SlaPolicyChanged {
            policy: SlaPolicy::default(),
            at,
        })];

        for e in &scan {
            match e {
                ScanEvent::ScanLaunched(_)
                | ScanEvent::ScanStarted(_)
                | ScanEvent::ScanProgressed(_)
                | ScanEvent::FindingsObserved(_)
                | ScanEvent::ScanCompleted(_)
                | ScanEvent::ScanFailed(_)
                | ScanEvent::ScanCancelled(_) => {}
            }
        }
        for e in &finding {
            match e {
                FindingEvent::FindingDetected(_)
                | FindingEvent::FindingAutoResolved(_)
                | FindingEvent::FindingReopened(_)
                | FindingEvent::FindingStatusChanged(_)
                | FindingEvent::RiskAccepted(_)
                | FindingEvent::RiskAcceptanceRevoked(_)
                | FindingEvent::RiskAcceptanceExpired(_) => {}
            }
        }
        for e in &approval {
            match e {
                ApprovalEvent::ApprovalRequested(_)
                | ApprovalEvent::ApprovalApproved(_)
                | ApprovalEvent::ApprovalRejected(_)
                | ApprovalEvent::ApprovalWithdrawn(_) => {}
            }
        }
        for e in &settings {
            match e {
                TenantSettingsEvent::SlaPolicyChanged(_) => {}
            }
        }

        fn tag<E: DomainEvent>(
            aggregate: &'static str,
            events: &[E],
        ) -> Vec<(&'static str, String, String)> {
            events
                .iter()
                .map(|e| (aggregate, e.event_type(), e.event_version()))
                .collect()
        }
        [
            tag(Scan::TYPE, &scan),
            tag(Finding::TYPE, &finding),
            tag(Approval::TYPE, &approval),
            tag(TenantSettings::TYPE, &settings),
        ]
        .concat()
    }

    #[test]
    fn every_variant_of_every_event_enum_has_a_schema() {
        let listed: Vec<(&str, String, String)> = event_schemas()
            .iter()
            .map(|s| {
                (
                    s.aggregate_type,
                    s.event_type.to_owned(),
                    s.event_version.to_owned(),
                )
            })
            .collect();
        assert_eq!(listed, one_of_each());
    }

    #[test]
    fn event_types_are_unique_across_aggregates() {
        let schemas = event_schemas();
        let types: HashSet<&str> = schemas.iter().map(|s| s.event_type).collect();
        assert_eq!(types.len(), schemas.len());
        assert_eq!(schemas.len(), 19);
    }

    #[test]
    fn every_event_type_is_its_json_tag_and_every_version_is_1_0() {
        for schema in event_schemas() {
            assert_eq!(schema.event_version, "1.0");
            let title = schema
                .schema
                .schema
                .metadata
                .as_ref()
                .and_then(|m| m.title.as_deref());
            assert_eq!(title, Some(schema.event_type));
        }
    }

    #[test]
    fn aggregate_types_are_the_stored_names() {
        assert_eq!(Scan::TYPE, "scan");
        assert_eq!(Finding::TYPE, "finding");
        assert_eq!(Approval::TYPE, "approval");
        assert_eq!(TenantSettings::TYPE, "settings");
    }

    #[test]
    fn payload_schemas_use_camel_case_property_names() {
        let schemas = event_schemas();
        let launched = schemas
            .iter()
            .find(|s| s.event_type == "ScanLaunched")
            .unwrap();
        let json = serde_json::to_value(&launched.schema).unwrap();
        assert!(json["properties"]["launchedAt"].is_object(), "{json}");
        assert!(json["required"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("launchedAt")));
        let detected = schemas
            .iter()
            .find(|s| s.event_type == "FindingDetected")
            .unwrap();
        let json = serde_json::to_string(&detected.schema).unwrap();
        assert!(json.contains("installedVersion"), "{json}");
        assert!(json.contains("\"CRITICAL\""), "{json}");
    }
}
