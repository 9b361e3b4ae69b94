pub mod admin;
pub mod api_keys;
pub mod approvals;
pub mod auth;
pub mod ci;
pub mod findings;
pub mod scans;
pub mod ws;
