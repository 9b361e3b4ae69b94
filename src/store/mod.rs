//! The event store: postgres-es's `events` table, written and read by us.
//!
//! We keep postgres-es's schema and serialized form (so its `PostgresEventRepository`
//! can still read our store, see the tests) but append with our own statement: one
//! multi-row `INSERT .. RETURNING position` for any number of events and aggregates,
//! which postgres-es cannot do (it inserts row by row and returns no positions).

mod event_store;
mod identity;
pub mod reader;
pub mod upcasters;
pub mod wake;

pub use event_store::{Alongside, Appended, EventStore, Loaded, NewEvent, StoreError};
pub use identity::identity;
pub use reader::{Checkpoint, OrderedReader, StoredEvent, Tail, UnreadableEvent};
pub use upcasters::{Unreadable, Upcasters};

/// The NOTIFY channel that wakes readers in other processes after appends ([`wake`]).
pub const EVENTS_CHANNEL: &str = "vulnledger_events";
