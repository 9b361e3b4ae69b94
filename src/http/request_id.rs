//! `X-Request-ID`: echoed when the client sent a sane one, else a new UUIDv7. It is
//! put on the response, on every log line of the request (a tracing span), and on
//! every problem body (a task-local, so error paths need not thread it through).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use uuid::Uuid;

pub const HEADER: &str = "x-request-id";

#[derive(Clone)]
struct RequestScope {
    id: String,
    path: String,
}

tokio::task_local! {
    static SCOPE: RequestScope;
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<String> {
    SCOPE.try_with(|s| s.id.clone()).ok()
}

pub(super) fn current_path() -> Option<String> {
    SCOPE.try_with(|s| s.path.clone()).ok()
}

/// Request ids from clients end up in logs and bodies, so only short printable
/// ASCII is taken; anything else is replaced rather than rejected.
fn acceptable(id: &str) -> bool {
    (1..=200).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
}

pub async fn middleware(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    let scope = RequestScope {
        id: id.clone(),
        path: request.uri().path().to_owned(),
    };
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let mut response = SCOPE.scope(scope, next.run(request)).instrument(span).await;
    response.headers_mut().insert(
        HEADER,
        HeaderValue::from_str(&id).expect("validated or generated ids are header-safe"),
    );
    response
}
