//! The HTTP surface: router, problems, request ids, auth and limits.

pub mod command;
mod error;
pub mod health;
mod json;
pub mod limits;
pub mod openapi;
pub mod pagination;
mod path;
pub mod problem;
pub mod rate_limit;
pub mod read_your_writes;
pub mod request_id;
pub mod routes;
pub mod time_range;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use sqlx::PgPool;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::auth::jwt::JwtKeys;
use crate::auth::AuthCaches;
use crate::commands::CommandService;
use crate::config::Config;
pub use error::Error;
pub use json::ApiJson;
pub use path::ApiPath;
pub use problem::{FieldError, Problem};
use rate_limit::RateLimits;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub commands: CommandService,
    /// Shared: axum clones the state for every layer of every request, and the keys
    /// and their validation rules are allocations of their own.
    pub jwt: Arc<JwtKeys>,
    pub auth_caches: AuthCaches,
    pub rate_limits: Arc<RateLimits>,
    pub live: crate::live::LiveFeed,
    pub sockets: Arc<routes::ws::Sockets>,
    pub freshness: crate::freshness::Freshness,
    pub caches: crate::read_models::Caches,
}

/// Layers, outermost first: request id (so every response and problem has one),
/// panic catcher (a panic becomes a generic 500 problem), tracing, credential
/// resolution, rate limits, read-your-writes waits, body limit, then the routes.
pub fn router(state: AppState) -> Router {
    let (api, _openapi) = openapi::routes(state.config.report_max_bytes);
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .merge(api)
        .fallback(|| async { Problem::not_found() })
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
        .layer(DefaultBodyLimit::max(limits::DEFAULT_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            read_your_writes::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::middleware,
        ))
        .with_state(state)
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a handler panicked");
            axum::response::IntoResponse::into_response(Problem::internal())
        }))
        .layer(axum::middleware::from_fn(health::track))
        .layer(axum::middleware::from_fn(problem::ensure_problem))
        .layer(axum::middleware::from_fn(request_id::middleware))
}
