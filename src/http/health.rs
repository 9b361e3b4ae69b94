use axum::Json;
use serde_json::{json, Value};

/// Liveness: answers as long as the process serves requests; it deliberately does
/// not touch the database (that is readiness).
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}
