//! Tenants and users: the only state kept outside the event store, because it is
//! configuration of who may act, not a record of what was done.

mod password;
mod tenants;
mod users;

pub use password::{hash_password, verify_password, PasswordPolicy};
pub use tenants::{create_tenant, find_tenant_by_slug, Tenant};
pub use users::{create_user, normalize_email, principal_of, NewUser, User};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("password is too weak: {0}")]
    WeakPassword(String),
    #[error("no tenant with slug {0:?}")]
    UnknownTenant(String),
    #[error("no active user {0:?} in that tenant")]
    UnknownUser(String),
    #[error("a tenant with slug {0:?} already exists")]
    DuplicateSlug(String),
    #[error("a user with email {0:?} already exists")]
    DuplicateEmail(String),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// True when `error` is the unique violation of `constraint`.
fn violates(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.constraint() == Some(constraint))
}
