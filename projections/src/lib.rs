//! Read-model builders: each turns events into rows of its own tables and is shared
//! by the live projection workers and the rebuild command, so both produce the same
//! rows. The first projections (findings, dashboard, assets) arrive with the
//! read-model work; see docs/architecture.md for the contract they follow (a batch
//! and its checkpoint in one transaction).
