//! `X-Min-Position` and `X-Projection-Position` on reads (api.md, Conventions).
//!
//! A GET that names a position waits, up to five seconds, until the read models
//! have applied it, then runs; otherwise it is a 503 with `Retry-After`. Every GET
//! answer says which position the read models had reached when it was served.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AppState, Error, Problem};
use crate::freshness::WaitError;

pub const MIN_POSITION: HeaderName = HeaderName::from_static("x-min-position");
pub const PROJECTION_POSITION: HeaderName = HeaderName::from_static("x-projection-position");
/// How long a read waits for its position.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::GET {
        return next.run(request).await;
    }
    if let Some(raw) = request.headers().get(&MIN_POSITION) {
        let wanted = raw
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|p| *p >= 0);
        let Some(wanted) = wanted else {
            return Error::BadRequest(
                "X-Min-Position must be a position from X-Event-Position (a non-negative integer)"
                    .into(),
            )
            .into_response();
        };
        if wanted > 0 {
            match state.freshness.wait_for(wanted, MAX_WAIT).await {
                Ok(_) => {}
                Err(WaitError::Timeout(_)) => {
                    return Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not-yet-consistent",
                        "Read models are behind",
                    )
                    .detail(format!(
                        "the read models have not applied position {wanted} yet; retry shortly"
                    ))
                    .header(
                        axum::http::header::RETRY_AFTER,
                        HeaderValue::from_static("1"),
                    )
                    .into_response();
                }
                Err(WaitError::Database(e)) => return Error::from(e).into_response(),
            }
        }
    }
    let applied = state.freshness.current();
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        PROJECTION_POSITION,
        HeaderValue::from_str(&applied.max_position.to_string()).expect("digits"),
    );
    response
}
