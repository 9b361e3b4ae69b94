//! Body size limits: 1 MiB for every route, more for report uploads.

use axum::http::StatusCode;

use super::Problem;

pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

pub fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        "Payload Too Large",
    )
    .detail("the request body is larger than this route accepts")
}
