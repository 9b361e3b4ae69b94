//! Who is calling, and may they do this?
//!
//! The `authenticate` middleware resolves the credential of every request once
//! (session JWT, API key, or the `token` cookie) into a [`Principal`] and leaves
//! it in the request's extensions; rate limits key on it, and each route declares
//! what it needs with the [`Authorized<P>`] extractor next to its handler, e.g.
//! `Authorized<perm::ScansWrite>`. There are no scattered role checks.

pub mod api_keys;
mod authenticate;
pub mod jwt;
pub mod perm;
mod principal;
pub mod sessions;

pub(crate) use authenticate::resolve;
pub use authenticate::{middleware, AuthCaches, Authentication, Revoked, AUTH_CHANNEL};
pub use perm::{Authorized, Permission, Scope};
pub use principal::{Principal, Via};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("authentication required: send a bearer token, an X-API-Key, or log in")]
    Missing,
    #[error("the access token is invalid or expired")]
    InvalidToken,
    #[error("the API key is invalid, expired or revoked")]
    InvalidKey,
    #[error("this session has ended; log in again")]
    SessionEnded,
    #[error("invalid email or password")]
    BadCredentials,
    #[error("the refresh token is invalid, expired or already used")]
    InvalidRefresh,
}
