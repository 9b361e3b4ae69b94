//! RFC 7807 problem documents: the only error shape the server emits.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use super::request_id;

pub const PROBLEM_JSON: &str = "application/problem+json";
const TYPE_BASE: &str = "https://vulnledger.dev/problems/";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// Short slug, expanded to the `type` URI.
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub extensions: Map<String, Value>,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str) -> Self {
        Self {
            status,
            kind,
            title,
            detail: title.to_owned(),
            extensions: Map::new(),
            headers: Vec::new(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    pub fn header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not Found")
            .detail("no such resource or route")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method Not Allowed",
        )
        .detail("this route does not accept that method")
    }

    /// For failures that are ours, not the client's: the cause is logged, never sent.
    /// Every database connection is busy: the request was not run, and can be sent
    /// again as it is.
    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Service Unavailable",
        )
        .detail("the server is at capacity and did not run this request; retry after the time in Retry-After")
        .header(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal Server Error",
        )
        .detail("something went wrong on our side; quote the requestId when reporting it")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("type".into(), format!("{TYPE_BASE}{}", self.kind).into());
        body.insert("title".into(), self.title.into());
        body.insert("status".into(), self.status.as_u16().into());
        body.insert("detail".into(), self.detail.into());
        let request_id = request_id::current();
        if let Some(instance) = request_id::current_path() {
            body.insert("instance".into(), instance.into());
        }
        if let Some(id) = request_id {
            body.insert("requestId".into(), id.into());
        }
        body.extend(self.extensions);
        let mut response = (self.status, Value::Object(body).to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

/// The last line of defence of "every error is a problem": an error response that
/// some layer or library produced in another shape (an asset 404 of the docs UI, a
/// framework rejection) is replaced by a problem of the same status, keeping its
/// headers (Retry-After, Allow, WWW-Authenticate).
pub async fn ensure_problem(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut problem = if status.is_server_error() {
        Problem::internal()
    } else if status == StatusCode::NOT_FOUND {
        Problem::not_found()
    } else {
        let title = status.canonical_reason().unwrap_or("Error");
        Problem::new(status, "http-error", title)
    };
    problem.status = status;
    let mut replaced = problem.into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replaced.headers_mut().insert(name.clone(), value.clone());
        }
    }
    replaced
}
