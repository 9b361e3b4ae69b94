//! What every event payload declares about itself.

use schemars::JsonSchema;

/// Implemented (by `domain_events!`) for each payload struct. The version is a constant per
/// payload so that changing one event's shape bumps only that event and an upcaster can key
/// on `(event_type, event_version)`.
pub trait EventPayload: JsonSchema {
    /// Equal to the enum variant name, which is also the externally-tagged JSON key.
    const EVENT_TYPE: &'static str;
    const EVENT_VERSION: &'static str;
}
