//! The one event every store appends: a `FindingDetected` as a Grype import produces it,
//! about 600 bytes of JSON, with the metadata a command stamps on it.

use chrono::{TimeZone, Utc};
use serde_json::Value;
use uuid::Uuid;
use vulnledger::commands::{Actor, CommandContext};
use vulnledger_aggregates::{FindingDetails, FindingDetected, FindingEvent, Severity};

pub struct Fixture {
    pub event: FindingEvent,
    pub metadata: Value,
    /// Bytes of `event` serialized as cqrs-es and vulnledger store it.
    pub payload_bytes: usize,
    pub metadata_bytes: usize,
}

impl Fixture {
    pub fn new() -> Self {
        let details = FindingDetails {
            fingerprint:
                "grype:sha256:4f1e0c9d8b7a6e5f4d3c2b1a09f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0"
                    .to_owned(),
            asset: "registry.acme.test/payments-api:1.42.0".to_owned(),
            scanner: "grype".to_owned(),
            title: "CVE-2023-44487 in golang.org/x/net".to_owned(),
            severity: Severity::High,
            cvss: Some(7.5),
            cve: Some("CVE-2023-44487".to_owned()),
            rule_id: Some("GHSA-qppj-fm5r-hxr3".to_owned()),
            package: Some("golang.org/x/net".to_owned()),
            installed_version: Some("v0.7.0".to_owned()),
            fixed_version: Some("0.17.0".to_owned()),
            location: Some("/usr/local/bin/payments-api".to_owned()),
            description: Some(
                "The HTTP/2 protocol allows a denial of service (server resource consumption) \
                 because request cancellation can reset many streams quickly."
                    .to_owned(),
            ),
            tags: vec!["go-module".to_owned(), "layer:3".to_owned()],
        };
        let event = FindingEvent::FindingDetected(FindingDetected {
            details,
            scan_id: Uuid::from_u128(0x0191_8f3a_7c2e_7d10_9a4b_3c5d_6e7f_8091),
            detected_at: Utc.with_ymd_and_hms(2026, 11, 22, 9, 30, 0).unwrap(),
        });
        let metadata = CommandContext {
            tenant_id: Uuid::from_u128(0x0191_8f3a_0000_7000_8000_0000_0000_0001),
            actor: Actor::system("bench"),
            request_id: "bench-0000000000000000".to_owned(),
        }
        .metadata();
        let payload_bytes = serde_json::to_vec(&event).expect("serializes").len();
        let metadata_bytes = serde_json::to_vec(&metadata).expect("serializes").len();
        Self {
            event,
            metadata,
            payload_bytes,
            metadata_bytes,
        }
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}
