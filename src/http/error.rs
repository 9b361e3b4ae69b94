//! The HTTP layer's one error type. Domain and identity errors become 4xx problems;
//! anything infrastructural becomes a logged 500 with a generic body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use vulnledger_aggregates::DomainError;

use super::{FieldError, Problem};
use crate::auth::AuthError;
use crate::commands::CommandError;
use crate::identity::IdentityError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Unauthorized(AuthError),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidTransition(String),
    #[error("If-Match is required")]
    PreconditionRequired,
    #[error("version is stale")]
    PreconditionFailed { current: u64 },
    #[error("the request body is too large")]
    TooLarge,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Unauthorized(e) => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
                    .detail(e.to_string())
                    .header(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(r#"Bearer realm="vulnledger""#),
                    )
            }
            Error::Forbidden(detail) => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(detail)
            }
            Error::NotFound => Problem::not_found().detail("no such resource"),
            Error::BadRequest(detail) => {
                Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Bad Request").detail(detail)
            }
            Error::Validation(errors) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    "Unprocessable Entity",
                )
                .detail(detail)
                .with(
                    "errors",
                    serde_json::to_value(errors).expect("field errors serialize"),
                )
            }
            Error::Conflict(detail) => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict").detail(detail)
            }
            Error::InvalidTransition(detail) => Problem::new(
                StatusCode::CONFLICT,
                "invalid-transition",
                "Invalid Transition",
            )
            .detail(detail),
            Error::PreconditionRequired => Problem::new(
                StatusCode::PRECONDITION_REQUIRED,
                "precondition-required",
                "Precondition Required",
            )
            .detail("send If-Match with the version (ETag) you last read"),
            Error::PreconditionFailed { current } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition Failed",
            )
            .detail(format!(
                "the resource changed; the current version is {current}"
            ))
            .with("currentVersion", current)
            .header(
                header::ETAG,
                HeaderValue::from_str(&format!("\"{current}\"")).expect("digits are header-safe"),
            ),
            Error::TooLarge => super::limits::too_large(),
            Error::Internal(e) if e.chain().any(is_pool_timeout) => {
                tracing::warn!(error = %e, "request shed: no database connection free");
                Problem::overloaded()
            }
            Error::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                Problem::internal()
            }
        }
        .into_response()
    }
}

/// Whether `e` is the pool giving up on a free connection: overload, not a fault.
pub fn is_pool_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        e.downcast_ref::<sqlx::Error>(),
        Some(sqlx::Error::PoolTimedOut)
    ) || matches!(
        e.downcast_ref::<StoreError>(),
        Some(StoreError::Database(sqlx::Error::PoolTimedOut))
    )
}

impl From<DomainError> for Error {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::NotFound => Error::NotFound,
            DomainError::AlreadyExists => Error::Conflict("it already exists".into()),
            DomainError::InvalidTransition { .. } => Error::InvalidTransition(e.to_string()),
            DomainError::Invalid { field, message } => Error::field(field, message),
            DomainError::Forbidden(why) => Error::Forbidden(why),
            DomainError::ApprovalRequired => Error::Conflict(e.to_string()),
        }
    }
}

impl From<CommandError<DomainError>> for Error {
    fn from(e: CommandError<DomainError>) -> Self {
        match e {
            CommandError::Rejected(e) => e.into(),
            CommandError::NotFound => Error::NotFound,
            CommandError::StaleVersion { current, .. } => Error::PreconditionFailed { current },
            CommandError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate(rule) if rule == "approval_index_one_pending_per_finding" => {
                Error::Conflict("this finding already has a pending approval".into())
            }
            StoreError::Duplicate(_) => Error::Conflict("it already exists".into()),
            StoreError::Refused(why) => Error::Conflict(why),
            other => Error::Internal(other.into()),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Internal(e.into())
    }
}

impl From<IdentityError> for Error {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Invalid { field, message } => Error::field(field, message),
            IdentityError::WeakPassword(why) => {
                Error::field("password", format!("too weak: {why}"))
            }
            IdentityError::UnknownTenant(_) | IdentityError::UnknownUser(_) => Error::NotFound,
            IdentityError::DuplicateSlug(_) | IdentityError::DuplicateEmail(_) => {
                Error::Conflict(e.to_string())
            }
            IdentityError::Hashing(_) | IdentityError::Database(_) => Error::Internal(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: Error) -> Response {
        e.into_response()
    }

    #[test]
    fn a_pool_timeout_is_shed_as_a_503_with_retry_after_however_it_is_wrapped() {
        let wrapped: Vec<Error> = vec![
            sqlx::Error::PoolTimedOut.into(),
            StoreError::Database(sqlx::Error::PoolTimedOut).into(),
            Error::Internal(
                anyhow::Error::new(StoreError::Database(sqlx::Error::PoolTimedOut))
                    .context("loading the finding"),
            ),
        ];
        for e in wrapped {
            let response = answer(e);
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        }
    }

    #[test]
    fn other_infrastructure_failures_stay_a_500() {
        let response = answer(sqlx::Error::PoolClosed.into());
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
