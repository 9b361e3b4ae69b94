//! vulnledger: an event-sourced vulnerability-management backend.

pub mod app;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod demo;
pub mod freshness;
pub mod http;
pub mod identity;
pub mod importers;
pub mod indexes;
pub mod ingest;
pub mod live;
pub mod processes;
pub mod projector;
pub mod read_models;
pub mod rebuild;
pub mod relay;
pub mod schemas;
pub mod shutdown;
pub mod store;
pub mod telemetry;

/// The allocator of every binary built on this crate: the server and CLI, and the
/// benchmarks and tests that run it in process, so that they measure what ships.
/// With glibc's, a rebuild spent about 40% of its own CPU in `malloc` and `free`
/// (perf, 1.2M events), most of it on the short-lived JSON of each event.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
