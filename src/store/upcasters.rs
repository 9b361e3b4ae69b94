//! Event versioning: the one registry of upcasters, applied on every read of the store.
//!
//! Stored events are never rewritten (a trigger forbids it), so an event type that
//! changes shape keeps its old rows forever. Each payload declares its version
//! (`domain_events!` in `aggregates/`); a change of shape bumps it, and an upcaster
//! (cqrs-es's [`EventUpcaster`], usually a [`SemanticVersionEventUpcaster`]) rewrites
//! the older shape into the newer one as it is read. Every reader applies the same
//! registry: aggregate loading ([`EventStore`](super::EventStore)), the ordered
//! reader (relay and CloudEvents, projections, live feed, rebuild) and the audit log,
//! so nothing downstream ever sees an old shape.
//!
//! Reading costs one hash lookup per event when its version is the current one: the
//! payload is neither cloned nor touched. An event of a known type whose version no
//! upcaster brings to the current one (an older shape nobody wrote an upcaster for,
//! or a newer one written by a later release) is an error, never passed on as is.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use cqrs_es::persist::{
    EventUpcaster, SemanticVersion, SemanticVersionEventUpcaster, SerializedEvent,
};
use serde_json::Value;

/// The registry of the running process: see [`Upcasters::process`].
static PROCESS: OnceLock<Upcasters> = OnceLock::new();

/// An ordered list of upcasters and the current version of every event type.
/// Cheap to clone (shared).
#[derive(Clone)]
pub struct Upcasters(Arc<Inner>);

#[derive(Clone)]
struct Inner {
    /// Applied in this order, each at most once per event: oldest shape first.
    upcasters: Vec<Arc<dyn EventUpcaster>>,
    /// event type → the version this release writes and reads.
    current: HashMap<&'static str, &'static str>,
}

/// A stored event that cannot be brought to the shape this release reads.
#[derive(Debug, thiserror::Error)]
#[error(
    "{aggregate_type}/{aggregate_id}#{sequence} ({event_type} version {stored_version}) \
     cannot be read: {reason}"
)]
pub struct Unreadable {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub stored_version: String,
    pub reason: String,
}

impl Upcasters {
    /// No upcasters: only events of the current versions (and unknown types) are read.
    pub fn none() -> Self {
        let current = vulnledger_aggregates::event_schemas()
            .into_iter()
            .map(|s| (s.event_type, s.event_version))
            .collect();
        Self(Arc::new(Inner {
            upcasters: Vec::new(),
            current,
        }))
    }

    /// The product's registry: one upcaster per historical shape this release still
    /// reads, oldest first. Every event type is still at the version it was first
    /// released with, so there are none yet; docs/events.md ("Versioning") says how
    /// to add one.
    pub fn product() -> Self {
        Self::none()
    }

    /// The registry every reader of this process applies (`EventStore::new`,
    /// `OrderedReader::new`, the audit log): the product's, built on first use.
    /// `Application::build` and the CLI call it at start-up.
    pub fn process() -> &'static Upcasters {
        PROCESS.get_or_init(Self::product)
    }

    /// Makes `self` the registry of this process, before anything has read an event.
    /// Production never calls this; a test that needs an extra historical shape
    /// installs `Upcasters::product().with(..)` before building the application, so
    /// the application reads through exactly the path production uses. Gives the
    /// registry back if the process already has one.
    pub fn install(self) -> Result<(), Self> {
        PROCESS.set(self)
    }

    /// Appends `upcaster`, applied after those already registered.
    pub fn with(mut self, upcaster: impl EventUpcaster + 'static) -> Self {
        Arc::make_mut(&mut self.0)
            .upcasters
            .push(Arc::new(upcaster));
        self
    }

    pub fn len(&self) -> usize {
        self.0.upcasters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.upcasters.is_empty()
    }

    /// Whether an event needs no upcasting: it has its type's current version, or a
    /// type this release does not know (nothing could upcast it; whoever decodes it
    /// reports it). The fast path of every read.
    #[inline]
    pub fn is_current(&self, event_type: &str, event_version: &str) -> bool {
        self.0
            .current
            .get(event_type)
            .is_none_or(|current| *current == event_version)
    }

    /// Brings `event` to its type's current shape and version. Events that are
    /// current already come back untouched.
    pub fn upcast(&self, event: SerializedEvent) -> Result<SerializedEvent, Box<Unreadable>> {
        if self.is_current(&event.event_type, &event.event_version) {
            return Ok(event);
        }
        let stored_version = event.event_version.clone();
        let mut event = self.0.upcasters.iter().fold(event, |event, upcaster| {
            if upcaster.can_upcast(&event.event_type, &event.event_version) {
                upcaster.upcast(event)
            } else {
                event
            }
        });
        let current = self.0.current[event.event_type.as_str()];
        if same_version(&event.event_version, current) {
            // "1.0.0" from a SemanticVersionEventUpcaster is the "1.0" we write.
            current.clone_into(&mut event.event_version);
            return Ok(event);
        }
        let reason = if event.event_version == stored_version {
            format!(
                "this release reads version {current} and no upcaster converts {stored_version}"
            )
        } else {
            format!(
                "the upcasters converted it to version {}, but this release reads {current}",
                event.event_version
            )
        };
        Err(Box::new(Unreadable {
            aggregate_type: event.aggregate_type,
            aggregate_id: event.aggregate_id,
            sequence: event.sequence as i64,
            event_type: event.event_type,
            stored_version,
            reason,
        }))
    }
}

impl Upcasters {
    /// The fields of an event read straight from `events` (not through the store or
    /// the ordered reader), in its type's current shape, without the enum tag.
    pub fn data(&self, event: SerializedEvent) -> Result<Value, Box<Unreadable>> {
        let event = self.upcast(event)?;
        Ok(untagged(event.payload, &event.event_type))
    }
}

/// An event's own fields: its payload without cqrs-es's enum tag
/// (`{"<EventType>": {..}}`).
pub fn untagged(payload: Value, event_type: &str) -> Value {
    match payload {
        Value::Object(mut tagged) if tagged.contains_key(event_type) => {
            tagged.remove(event_type).unwrap_or_default()
        }
        other => other,
    }
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upcasters")
            .field("upcasters", &self.0.upcasters.len())
            .finish_non_exhaustive()
    }
}

fn same_version(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (SemanticVersion::from_str(a), SemanticVersion::from_str(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// An upcaster for a renamed field: events of `event_type` older than `version`
/// get `old` renamed to `new` and become `version`. The payload is cqrs-es's
/// externally tagged form (`{"<EventType>": {..fields..}}`). A payload without
/// `old` is left as it is, so decoding it reports exactly what is missing.
pub fn rename_field(
    event_type: &'static str,
    version: &str,
    old: &'static str,
    new: &'static str,
) -> SemanticVersionEventUpcaster {
    SemanticVersionEventUpcaster::new(
        event_type,
        version,
        Box::new(move |mut payload: Value| {
            if let Some(Value::Object(fields)) = payload.get_mut(event_type) {
                if !fields.contains_key(new) {
                    if let Some(value) = fields.remove(old) {
                        fields.insert(new.to_owned(), value);
                    }
                }
            }
            payload
        }),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stored(event_type: &str, version: &str, payload: Value) -> SerializedEvent {
        SerializedEvent::new(
            "f-1".into(),
            2,
            "finding".into(),
            event_type.into(),
            version.into(),
            payload,
            Value::Null,
        )
    }

    fn registry() -> Upcasters {
        Upcasters::product().with(rename_field("FindingStatusChanged", "1.0", "status", "to"))
    }

    #[test]
    fn event_types_are_unique_across_aggregates() {
        let schemas = vulnledger_aggregates::event_schemas();
        assert_eq!(Upcasters::none().0.current.len(), schemas.len());
    }

    #[test]
    fn current_events_pass_untouched() {
        let payload = json!({ "FindingStatusChanged": { "from": "OPEN", "status": "x" } });
        let event = stored("FindingStatusChanged", "1.0", payload.clone());
        let read = registry().upcast(event.clone()).unwrap();
        assert_eq!(read, event);
    }

    #[test]
    fn unknown_event_types_pass_untouched() {
        let event = stored("Probed", "0.1", json!({ "Probed": {} }));
        assert_eq!(registry().upcast(event.clone()).unwrap(), event);
    }

    #[test]
    fn a_renamed_field_is_read_under_its_new_name_at_the_current_version() {
        let event = stored(
            "FindingStatusChanged",
            "0.9",
            json!({ "FindingStatusChanged": { "from": "OPEN", "status": "CONFIRMED" } }),
        );
        let read = registry().upcast(event).unwrap();
        assert_eq!(read.event_version, "1.0");
        assert_eq!(
            read.payload,
            json!({ "FindingStatusChanged": { "from": "OPEN", "to": "CONFIRMED" } })
        );
    }

    #[test]
    fn upcasters_chain_in_registration_order() {
        let registry = Upcasters::none()
            .with(rename_field(
                "FindingStatusChanged",
                "0.5",
                "state",
                "status",
            ))
            .with(rename_field("FindingStatusChanged", "1.0", "status", "to"));
        let event = stored(
            "FindingStatusChanged",
            "0.1",
            json!({ "FindingStatusChanged": { "state": "CONFIRMED" } }),
        );
        let read = registry.upcast(event).unwrap();
        assert_eq!(
            read.payload,
            json!({ "FindingStatusChanged": { "to": "CONFIRMED" } })
        );
        assert_eq!(read.event_version, "1.0");
    }

    #[test]
    fn a_version_nothing_converts_is_an_error_naming_the_event() {
        for version in ["0.9", "3.0", "banana"] {
            let event = stored("FindingStatusChanged", version, json!({}));
            let error = Upcasters::product().upcast(event).unwrap_err();
            let message = error.to_string();
            assert!(message.contains("finding/f-1#2"), "{message}");
            assert!(message.contains(&format!("version {version}")), "{message}");
            assert!(message.contains("reads version 1.0"), "{message}");
        }
        // An upcaster that stops short of the current version.
        let short = Upcasters::none().with(rename_field("FindingStatusChanged", "0.95", "a", "b"));
        let error = short
            .upcast(stored("FindingStatusChanged", "0.9", json!({})))
            .unwrap_err();
        assert!(error.reason.contains("0.95.0"), "{error}");
    }

    #[test]
    fn a_rename_leaves_a_payload_without_the_old_field_alone() {
        let event = stored(
            "FindingStatusChanged",
            "0.9",
            json!({ "FindingStatusChanged": { "from": "OPEN" } }),
        );
        let read = registry().upcast(event).unwrap();
        assert_eq!(
            read.payload,
            json!({ "FindingStatusChanged": { "from": "OPEN" } })
        );
    }
}
