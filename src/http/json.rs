//! `ApiJson<T>`: JSON bodies with every failure as a problem. Not valid JSON is a
//! 400; valid JSON of the wrong shape is a 422 naming the field by its path; a
//! string holding a NUL character (which PostgreSQL cannot store) is a 422 too,
//! so no client can provoke a 500 with one.

use axum::body::Bytes;
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{Error, FieldError, Problem};

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        if !is_json(request.headers()) {
            return Err(unsupported_media_type());
        }
        let bytes = body(request, state).await?;
        decode(&bytes)
            .map(Self)
            .map_err(IntoResponse::into_response)
    }
}

/// `Option<ApiJson<T>>`: no body is `None`; a body that is there must be valid.
impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, Response> {
        let json = is_json(request.headers());
        let bytes = body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        if !json {
            return Err(unsupported_media_type());
        }
        decode(&bytes)
            .map(|value| Some(Self(value)))
            .map_err(IntoResponse::into_response)
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

fn unsupported_media_type() -> Response {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported Media Type",
    )
    .detail("send the body as Content-Type: application/json")
    .into_response()
}

async fn body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, Response> {
    Bytes::from_request(request, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge.into_response()
        } else {
            Error::BadRequest("the request body could not be read".into()).into_response()
        }
    })
}

/// Parses in two steps so the two kinds of mistakes get their own status.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::BadRequest(format!(
            "the body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if let Some(field) = nul_path(&value, String::new()) {
        return Err(Error::field(field, "must not contain a NUL character"));
    }
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let field = match path.as_str() {
            "." | "" => missing_or_unknown(&message).unwrap_or_else(|| "body".to_owned()),
            path => path.to_owned(),
        };
        Error::Validation(vec![FieldError { field, message }])
    })
}

/// serde names a missing or unknown field only in its message: "missing field `email`".
fn missing_or_unknown(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next().map(str::to_owned)
}

/// The path of the first string (value or key) holding a NUL character.
fn nul_path(value: &Value, path: String) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => {
            Some(if path.is_empty() { "body".into() } else { path })
        }
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            nul_path(
                v,
                format!("{}[{i}]", if path.is_empty() { "body" } else { &path }),
            )
        }),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(join("<key>"))
            } else {
                nul_path(v, join(k))
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        roles: Vec<vulnledger_aggregates::Role>,
    }

    fn field(body: &str) -> String {
        match decode::<Login>(body.as_bytes()) {
            Err(Error::Validation(errors)) => errors[0].field.clone(),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn a_shape_error_names_the_field_by_its_path() {
        assert_eq!(field(r#"{"email": 5, "roles": []}"#), "email");
        assert_eq!(
            field(r#"{"email": "a", "roles": ["superuser"]}"#),
            "roles[0]"
        );
        assert_eq!(field(r#"{"email": "a", "roles": [1]}"#), "roles[0]");
        assert_eq!(field(r#"{"roles": []}"#), "email");
        assert_eq!(field(r#"{"email": "a", "roles": [], "x": 1}"#), "x");
        assert_eq!(field(r#"{"email": "a\u0000b", "roles": []}"#), "email");
    }

    #[test]
    fn broken_json_is_a_bad_request() {
        for body in [r#"{"email": "#, "nope", r#"{"a":1}}"#] {
            assert!(
                matches!(decode::<Login>(body.as_bytes()), Err(Error::BadRequest(_))),
                "{body}"
            );
        }
    }
}
