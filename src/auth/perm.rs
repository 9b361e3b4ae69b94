//! Permissions a route can require, each a role (for people) and a scope (for API
//! keys). A key is bounded twice: by its scopes and by its creator's current role.

use std::marker::PhantomData;
use std::str::FromStr;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use vulnledger_aggregates::Role;

use super::{AuthError, Authentication, Principal, Via};
use crate::http::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Scope {
    #[serde(rename = "scans:read")]
    ScansRead,
    #[serde(rename = "scans:write")]
    ScansWrite,
    #[serde(rename = "findings:read")]
    FindingsRead,
    #[serde(rename = "findings:write")]
    FindingsWrite,
    #[serde(rename = "dashboard:read")]
    DashboardRead,
    #[serde(rename = "audit:read")]
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::ScansRead,
        Scope::ScansWrite,
        Scope::FindingsRead,
        Scope::FindingsWrite,
        Scope::DashboardRead,
        Scope::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ScansRead => "scans:read",
            Scope::ScansWrite => "scans:write",
            Scope::FindingsRead => "findings:read",
            Scope::FindingsWrite => "findings:write",
            Scope::DashboardRead => "dashboard:read",
            Scope::AuditRead => "audit:read",
        }
    }

    /// The least role whose holder may use (or grant) this scope.
    pub fn least_role(self) -> Role {
        match self {
            Scope::ScansRead | Scope::FindingsRead | Scope::DashboardRead => Role::Viewer,
            Scope::ScansWrite | Scope::FindingsWrite => Role::Analyst,
            Scope::AuditRead => Role::Admin,
        }
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scope {s:?}; use {}",
                    Scope::ALL.map(Scope::as_str).join(", ")
                )
            })
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route requires. `SCOPE: None` means people only: API keys are refused.
pub trait Permission: Send + Sync + 'static {
    const ROLE: Role;
    const SCOPE: Option<Scope>;
    /// Any valid key may call this, whatever its scopes (e.g. "who am I").
    const ANY_KEY: bool = false;
}

macro_rules! permissions {
    ($($(#[$doc:meta])* $name:ident => $role:ident, $scope:expr;)*) => {$(
        $(#[$doc])*
        pub struct $name;
        impl Permission for $name {
            const ROLE: Role = Role::$role;
            const SCOPE: Option<Scope> = $scope;
        }
    )*};
}

permissions! {
    /// Any signed-in person: own profile, password, API keys.
    Session => Viewer, None;
    ScansRead => Viewer, Some(Scope::ScansRead);
    ScansWrite => Analyst, Some(Scope::ScansWrite);
    FindingsRead => Viewer, Some(Scope::FindingsRead);
    FindingsWrite => Analyst, Some(Scope::FindingsWrite);
    /// Deciding approvals: a security lead, never through a key.
    Approve => SecurityLead, None;
    DashboardRead => Viewer, Some(Scope::DashboardRead);
    AuditRead => Admin, Some(Scope::AuditRead);
    /// Tenant administration (users, settings): admins in person only.
    Admin => Admin, None;
}

/// Anyone authenticated, person or key.
pub struct Anyone;
impl Permission for Anyone {
    const ROLE: Role = Role::Viewer;
    const SCOPE: Option<Scope> = None;
    const ANY_KEY: bool = true;
}

/// Extracts the caller and checks `P`: 401 without a valid credential, 403 when the
/// role or the key's scopes fall short.
pub struct Authorized<P>(pub Principal, PhantomData<P>);

impl<P> std::ops::Deref for Authorized<P> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

pub fn check<P: Permission>(principal: &Principal) -> Result<(), Error> {
    if !principal.role.at_least(P::ROLE) {
        return Err(Error::Forbidden(format!(
            "this needs the {} role or higher",
            P::ROLE
        )));
    }
    if let Via::ApiKey { scopes, .. } = &principal.via {
        match P::SCOPE {
            None if P::ANY_KEY => {}
            None => {
                return Err(Error::Forbidden(
                    "API keys cannot do this; sign in as a person".into(),
                ))
            }
            Some(scope) if !scopes.contains(&scope) => {
                return Err(Error::Forbidden(format!(
                    "the API key lacks the {scope} scope"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl<P: Permission, S: Send + Sync> FromRequestParts<S> for Authorized<P> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let principal = match parts.extensions.get::<Authentication>() {
            Some(Authentication(Ok(Some(principal)))) => principal.clone(),
            Some(Authentication(Err(e))) => return Err(Error::Unauthorized(e.clone())),
            Some(Authentication(Ok(None))) | None => {
                return Err(Error::Unauthorized(AuthError::Missing))
            }
        };
        check::<P>(&principal)?;
        Ok(Self(principal, PhantomData))
    }
}

/// `Option<Authorized<P>>`: the caller if they are authenticated and allowed, else
/// `None` (for routes that work either way, such as logout).
impl<P: Permission, S: Send + Sync> OptionalFromRequestParts<S> for Authorized<P> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Error> {
        Ok(
            <Self as FromRequestParts<S>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}
