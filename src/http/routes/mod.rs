pub mod admin;
pub mod api_keys;
pub mod auth;
