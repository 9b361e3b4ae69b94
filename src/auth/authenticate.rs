use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use moka::future::Cache;
use sqlx::PgPool;
use uuid::Uuid;
use vulnledger_aggregates::Role;

use super::api_keys::{self, KeyRecord};
use super::{AuthError, Principal, Via};
use crate::http::{AppState, Problem};

/// The outcome of resolving a request's credential, left in its extensions:
/// `Ok(None)` when it carried none.
#[derive(Debug, Clone)]
pub struct Authentication(pub Result<Option<Principal>, AuthError>);

/// What a session token stands for right now.
#[derive(Debug, Clone)]
struct SessionState {
    user_id: Uuid,
    tenant_id: Uuid,
    tenant_slug: String,
    email: String,
    role: Role,
    usable: bool,
}

/// Short-lived caches in front of the per-request lookups. Every change this
/// process makes (logout, revoke, role change) invalidates the entry at once; the
/// TTL bounds how long another process may see an old answer.
#[derive(Clone)]
pub struct AuthCaches {
    sessions: Cache<Uuid, Option<SessionState>>,
    keys: Cache<String, Option<KeyRecord>>,
}

impl Default for AuthCaches {
    fn default() -> Self {
        Self {
            sessions: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(5))
                .build(),
            keys: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(5))
                .build(),
        }
    }
}

/// Revocations are announced on this channel so that every `serve` process drops
/// its cached answer at once, not when the TTL runs out.
pub const AUTH_CHANNEL: &str = "vulnledger_auth";

/// What changed, as sent on [`AUTH_CHANNEL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    Session(Uuid),
    Key(String),
    /// A user's role or status changed: any cached session or key may be stale.
    Everything,
}

impl Revoked {
    fn encode(&self) -> String {
        match self {
            Revoked::Session(id) => format!("session:{id}"),
            Revoked::Key(prefix) => format!("key:{prefix}"),
            Revoked::Everything => "all".to_owned(),
        }
    }

    fn decode(payload: &str) -> Self {
        match payload.split_once(':') {
            Some(("session", id)) => id.parse().map_or(Revoked::Everything, Revoked::Session),
            Some(("key", prefix)) => Revoked::Key(prefix.to_owned()),
            _ => Revoked::Everything,
        }
    }
}

impl AuthCaches {
    /// Forgets locally and tells the other processes, on `conn` so that a
    /// revocation inside a transaction is announced when (and only if) it commits.
    pub async fn revoke(
        &self,
        conn: &mut sqlx::PgConnection,
        what: Revoked,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(AUTH_CHANNEL)
            .bind(what.encode())
            .execute(conn)
            .await?;
        self.forget(&what).await;
        Ok(())
    }

    async fn forget(&self, what: &Revoked) {
        match what {
            Revoked::Session(id) => self.sessions.invalidate(id).await,
            Revoked::Key(prefix) => self.keys.invalidate(prefix).await,
            Revoked::Everything => {
                self.sessions.invalidate_all();
                self.keys.invalidate_all();
            }
        }
    }

    /// Applies other processes' revocations until the pool closes. A dropped
    /// connection clears everything, since announcements may have been missed.
    pub fn listen(&self, pool: PgPool) {
        let caches = self.clone();
        tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(listener) => listener,
                    Err(_) if pool.is_closed() => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "auth revocation listener cannot connect; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if listener.listen(AUTH_CHANNEL).await.is_err() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                caches.forget(&Revoked::Everything).await;
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => caches.forget(&Revoked::decode(n.payload())).await,
                        Ok(None) => caches.forget(&Revoked::Everything).await,
                        Err(_) => break,
                    }
                }
                if pool.is_closed() {
                    return;
                }
            }
        });
    }
}

pub async fn middleware(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    match resolve(&state, request.headers()).await {
        Ok(outcome) => {
            request.extensions_mut().insert(Authentication(outcome));
            next.run(request).await
        }
        Err(sqlx::Error::PoolTimedOut) => {
            tracing::warn!("request shed: no database connection free to check its credentials");
            Problem::overloaded().into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "credential lookup failed");
            Problem::internal().into_response()
        }
    }
}

enum Credential {
    Jwt(String),
    Key(String),
}

fn credential(headers: &HeaderMap) -> Result<Option<Credential>, AuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::InvalidToken)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::InvalidToken)?;
        return Ok(Some(if token.starts_with(api_keys::KEY_PREFIX) {
            Credential::Key(token.to_owned())
        } else {
            Credential::Jwt(token.to_owned())
        }));
    }
    if let Some(value) = headers.get("x-api-key") {
        let key = value.to_str().map_err(|_| AuthError::InvalidKey)?.trim();
        return Ok(Some(Credential::Key(key.to_owned())));
    }
    Ok(CookieJar::from_headers(headers)
        .get("token")
        .map(|c| Credential::Jwt(c.value().to_owned())))
}

pub(crate) async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Result<Option<Principal>, AuthError>, sqlx::Error> {
    let credential = match credential(headers) {
        Ok(Some(credential)) => credential,
        Ok(None) => return Ok(Ok(None)),
        Err(e) => return Ok(Err(e)),
    };
    match credential {
        Credential::Jwt(token) => {
            let Some(claims) = state.jwt.verify(&token) else {
                return Ok(Err(AuthError::InvalidToken));
            };
            let session = session_state(&state.pool, &state.auth_caches, claims.sid).await?;
            Ok(match session {
                Some(s)
                    if s.usable && s.user_id == claims.sub && s.tenant_id == claims.tenant_id =>
                {
                    Ok(Some(Principal {
                        tenant_id: s.tenant_id,
                        tenant_slug: s.tenant_slug,
                        user_id: s.user_id,
                        email: s.email,
                        role: s.role,
                        via: Via::Session {
                            session_id: claims.sid,
                        },
                    }))
                }
                _ => Err(AuthError::SessionEnded),
            })
        }
        Credential::Key(key) => {
            let Some((prefix, secret)) = api_keys::split(&key) else {
                return Ok(Err(AuthError::InvalidKey));
            };
            let record = match state.auth_caches.keys.get(prefix).await {
                Some(cached) => cached,
                None => {
                    let record = api_keys::find_by_prefix(&state.pool, prefix).await?;
                    state
                        .auth_caches
                        .keys
                        .insert(prefix.to_owned(), record.clone())
                        .await;
                    record
                }
            };
            Ok(match record {
                Some(record) if record.accepts(secret) => Ok(Some(record.principal())),
                _ => Err(AuthError::InvalidKey),
            })
        }
    }
}

async fn session_state(
    pool: &PgPool,
    caches: &AuthCaches,
    session_id: Uuid,
) -> Result<Option<SessionState>, sqlx::Error> {
    if let Some(cached) = caches.sessions.get(&session_id).await {
        return Ok(cached);
    }
    let row: Option<(Uuid, Uuid, String, String, String, bool)> = sqlx::query_as(
        "SELECT u.id, u.tenant_id, t.slug, u.email, u.role, \
                (s.revoked_at IS NULL AND u.active) \
         FROM sessions s JOIN users u ON u.id = s.user_id JOIN tenants t ON t.id = u.tenant_id \
         WHERE s.id = $1",
    )
    .bind(session_id)
    .fetch_optional(pool)
    .await?;
    let state = row.and_then(|(user_id, tenant_id, tenant_slug, email, role, usable)| {
        Some(SessionState {
            user_id,
            tenant_id,
            tenant_slug,
            email,
            role: role.parse().ok()?,
            usable,
        })
    });
    caches.sessions.insert(session_id, state.clone()).await;
    Ok(state)
}
