//! The HTTP surface: router, problems, request ids.

mod health;
pub mod problem;
pub mod request_id;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use sqlx::PgPool;
use tower_http::trace::TraceLayer;

use crate::commands::CommandService;
use crate::config::Config;
pub use problem::{FieldError, Problem};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub commands: CommandService,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .fallback(|| async { Problem::not_found() })
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
        .with_state(state)
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(request_id::middleware))
}
