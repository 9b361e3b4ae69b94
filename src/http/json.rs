//! `ApiJson<T>`: axum's `Json` with its rejections turned into problems. Malformed
//! JSON is a 400; well-formed JSON of the wrong shape is a 422 naming the field.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Error, FieldError, Problem};

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        match <axum::Json<T> as FromRequest<S>>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(reject(rejection)),
        }
    }
}

/// `Option<ApiJson<T>>`: no body is `None`; a body that is there must be valid.
impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, Response> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        axum::Json::<T>::from_bytes(&bytes)
            .map(|axum::Json(value)| Some(Self(value)))
            .map_err(reject)
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn reject(rejection: JsonRejection) -> Response {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // serde's message names the path ("missing field `email` at line 1"):
            // keep the field, drop the parser's position noise.
            let text = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_else(|| e.body_text());
            Error::Validation(vec![FieldError {
                field: field_of(&text),
                message: text,
            }])
            .into_response()
        }
        JsonRejection::JsonSyntaxError(_) => {
            Error::BadRequest("the body is not valid JSON".into()).into_response()
        }
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported Media Type",
        )
        .detail("send the body as Content-Type: application/json")
        .into_response(),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Error::TooLarge.into_response()
        }
        other => Error::BadRequest(other.body_text()).into_response(),
    }
}

/// The field serde complained about: `missing field `x``, `unknown field `x``, or
/// the `path: message` prefix of serde_path_to_error style messages.
fn field_of(message: &str) -> String {
    if let Some(start) = message.find('`') {
        if let Some(len) = message[start + 1..].find('`') {
            return message[start + 1..start + 1 + len].to_owned();
        }
    }
    message
        .split_once(':')
        .map(|(path, _)| path.trim().to_owned())
        .filter(|p| !p.is_empty() && !p.contains(' '))
        .unwrap_or_else(|| "body".to_owned())
}
