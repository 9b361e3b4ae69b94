//! What every command answers, and how it reads `If-Match`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::Error;

pub const EVENT_POSITION: HeaderName = HeaderName::from_static("x-event-position");

/// `{id, status, version, position}` with `ETag` and `X-Event-Position`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: String,
    pub status: String,
    pub version: u64,
    pub position: i64,
}

pub struct CommandResponse {
    pub code: StatusCode,
    pub body: serde_json::Value,
    pub version: u64,
    pub position: i64,
    pub location: Option<String>,
}

impl CommandResponse {
    pub fn ok(id: impl ToString, status: impl ToString, version: u64, position: i64) -> Self {
        let body = Accepted {
            id: id.to_string(),
            status: status.to_string(),
            version,
            position,
        };
        Self {
            code: StatusCode::OK,
            body: serde_json::to_value(body).expect("serializable"),
            version,
            position,
            location: None,
        }
    }

    pub fn with_code(mut self, code: StatusCode) -> Self {
        self.code = code;
        self
    }

    pub fn with_location(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }

    /// Replaces the body (other shapes api.md names), keeping the headers.
    pub fn with_body(mut self, body: impl Serialize) -> Self {
        self.body = serde_json::to_value(body).expect("serializable");
        self
    }
}

impl IntoResponse for CommandResponse {
    fn into_response(self) -> Response {
        let mut response = (self.code, axum::Json(self.body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::ETAG, etag(self.version));
        headers.insert(
            EVENT_POSITION,
            HeaderValue::from_str(&self.position.to_string()).expect("digits"),
        );
        if let Some(location) = self.location {
            if let Ok(value) = HeaderValue::from_str(&location) {
                headers.insert(header::LOCATION, value);
            }
        }
        response
    }
}

pub fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits")
}

/// The version named by `If-Match`, if the request sent one.
pub struct IfMatch(pub Option<u64>);

impl IfMatch {
    /// For resources whose mutations need it: a missing header is 428.
    pub fn required(&self) -> Result<u64, Error> {
        self.0.ok_or(Error::PreconditionRequired)
    }
}

fn parse_if_match(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Error::BadRequest("If-Match is not readable text".into()))?
        .trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    let version = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    version.parse::<u64>().map(Some).map_err(|_| {
        Error::BadRequest(format!(
            "If-Match must be a version this server issued as an ETag, such as \"3\"; got {text:?}"
        ))
    })
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        parse_if_match(&parts.headers).map(IfMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<Option<u64>, Error> {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, HeaderValue::from_str(value).unwrap());
        parse_if_match(&headers)
    }

    #[test]
    fn if_match_takes_quoted_bare_and_weak_versions() {
        assert_eq!(parse("\"3\"").unwrap(), Some(3));
        assert_eq!(parse("3").unwrap(), Some(3));
        assert_eq!(parse("W/\"12\"").unwrap(), Some(12));
        assert_eq!(parse_if_match(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn if_match_that_is_not_a_version_is_a_bad_request() {
        for bad in ["*", "\"abc\"", "\"-1\"", "' OR 1=1 --"] {
            assert!(matches!(parse(bad), Err(Error::BadRequest(_))), "{bad}");
        }
    }
}
