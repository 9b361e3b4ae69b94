//! The single error type of the domain layer; each variant maps to one HTTP status.

use std::fmt::Display;

/// Why a command was refused. Variants are chosen by what the caller can do about it,
/// which is also what decides the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The command addresses an aggregate that has no history (HTTP 404).
    #[error("not found")]
    NotFound,
    /// A creation command was sent to an aggregate that already has a history (HTTP 409).
    #[error("already exists")]
    AlreadyExists,
    /// The aggregate's current status does not allow the requested change (HTTP 409).
    #[error("cannot change status from {from} to {to}")]
    InvalidTransition { from: String, to: String },
    /// Bad input; `field` is the camelCase name used by the API (HTTP 422).
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// The actor may not do this: insufficient role or separation of duties (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// Accepting the risk of a HIGH or CRITICAL finding needs an approved request first.
    #[error("accepting the risk of a HIGH or CRITICAL finding requires an approval")]
    ApprovalRequired,
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn transition(from: impl Display, to: impl Display) -> Self {
        Self::InvalidTransition {
            from: from.to_string(),
            to: to.to_string(),
        }
    }

    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::Forbidden(reason.into())
    }
}

/// Every aggregate is created by exactly one kind of command, and nothing else may run first.
/// Checking this before any rule keeps "never created" from leaking out as a stranger error.
pub(crate) fn check_existence(exists: bool, creating: bool) -> Result<(), DomainError> {
    match (exists, creating) {
        (true, true) => Err(DomainError::AlreadyExists),
        (false, false) => Err(DomainError::NotFound),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_transition_reads_as_a_sentence() {
        assert_eq!(
            DomainError::transition("RESOLVED", "CONFIRMED").to_string(),
            "cannot change status from RESOLVED to CONFIRMED"
        );
    }

    #[test]
    fn invalid_input_names_the_field() {
        assert_eq!(
            DomainError::invalid("expiresAt", "must be in the future").to_string(),
            "invalid expiresAt: must be in the future"
        );
    }

    #[test]
    fn forbidden_shows_the_reason_verbatim() {
        assert_eq!(
            DomainError::forbidden("separation of duties: the requester cannot decide").to_string(),
            "separation of duties: the requester cannot decide"
        );
    }

    #[test]
    fn creating_twice_or_acting_before_creation_is_refused() {
        assert_eq!(check_existence(true, true), Err(DomainError::AlreadyExists));
        assert_eq!(check_existence(false, false), Err(DomainError::NotFound));
        assert_eq!(check_existence(false, true), Ok(()));
        assert_eq!(check_existence(true, false), Ok(()));
    }
}
