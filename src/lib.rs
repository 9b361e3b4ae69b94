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
