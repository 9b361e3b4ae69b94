//! Sessions: login, refresh rotation with reuse detection, logout, password change.

use std::sync::LazyLock;

use base64::Engine;
use chrono::{Duration as ChronoDuration, Utc};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use vulnledger_aggregates::Role;

use super::{AuthError, Principal, Revoked};
use crate::http::{AppState, Error};
use crate::identity::{hash_password, verify_password, PasswordPolicy};

/// Verified against when the email is unknown, so both failures cost one argon2
/// verification and an attacker cannot tell them apart by timing.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    hash_password("not a real password, only for timing").expect("hashing a constant works")
});

/// Computes the timing hash now, at start, so that the first login with an unknown
/// email is not the one slow request that tells an attacker it was unknown.
pub fn prepare() {
    LazyLock::force(&DUMMY_HASH);
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionUser {
    pub id: Uuid,
    pub email: String,
    #[schema(value_type = String, example = "analyst")]
    pub role: Role,
    pub tenant_id: Uuid,
    pub tenant_slug: String,
}

/// What login and refresh hand out.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Issued {
    pub token: String,
    pub refresh_token: String,
    /// Seconds until `token` expires.
    pub expires_in: u64,
    pub user: SessionUser,
}

fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// argon2 takes tens of milliseconds of CPU: keep it off the async workers.
async fn verify_blocking(password: String, hash: String) -> Result<bool, Error> {
    tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| Error::Internal(e.into()))
}

type UserRow = (Uuid, Uuid, String, String, String, String, bool);

const USER_BY_EMAIL: &str =
    "SELECT u.id, u.tenant_id, t.slug, u.email, u.password_hash, u.role, u.active \
     FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE u.email = $1";

pub async fn login(state: &AppState, email: &str, password: &str) -> Result<Issued, Error> {
    let email = email.trim().to_lowercase();
    let row: Option<UserRow> = sqlx::query_as(USER_BY_EMAIL)
        .bind(&email)
        .fetch_optional(&state.pool)
        .await?;
    let hash = row
        .as_ref()
        .map_or_else(|| DUMMY_HASH.clone(), |r| r.4.clone());
    let verified = verify_blocking(password.to_owned(), hash).await?;
    let Some((user_id, tenant_id, slug, email, _, role, active)) = row else {
        return Err(Error::Unauthorized(AuthError::BadCredentials));
    };
    if !verified || !active {
        return Err(Error::Unauthorized(AuthError::BadCredentials));
    }
    let role: Role = role
        .parse()
        .map_err(|e| anyhow::anyhow!("stored role: {e}"))?;

    let session_id = Uuid::now_v7();
    let refresh_token = new_refresh_token();
    let mut tx = state.pool.begin().await?;
    sqlx::query("INSERT INTO sessions (id, user_id, tenant_id) VALUES ($1, $2, $3)")
        .bind(session_id)
        .bind(user_id)
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
    insert_refresh_token(&mut tx, state, session_id, &refresh_token).await?;
    tx.commit().await?;
    tracing::info!(%user_id, %session_id, "logged in");
    Ok(issue(
        state,
        user_id,
        &email,
        role,
        tenant_id,
        &slug,
        session_id,
        refresh_token,
    ))
}

async fn insert_refresh_token(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    session_id: Uuid,
    token: &str,
) -> Result<(), Error> {
    let ttl = ChronoDuration::from_std(state.config.jwt_refresh_expires_in)
        .map_err(|e| Error::Internal(e.into()))?;
    sqlx::query(
        "INSERT INTO refresh_tokens (id, session_id, token_hash, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(Uuid::now_v7())
    .bind(session_id)
    .bind(hash_token(token))
    .bind(Utc::now() + ttl)
    .execute(tx)
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn issue(
    state: &AppState,
    user_id: Uuid,
    email: &str,
    role: Role,
    tenant_id: Uuid,
    tenant_slug: &str,
    session_id: Uuid,
    refresh_token: String,
) -> Issued {
    Issued {
        token: state
            .jwt
            .issue(user_id, tenant_id, tenant_slug, role, session_id),
        refresh_token,
        expires_in: state.jwt.ttl.as_secs(),
        user: SessionUser {
            id: user_id,
            email: email.to_owned(),
            role,
            tenant_id,
            tenant_slug: tenant_slug.to_owned(),
        },
    }
}

/// Trades a refresh token for a new pair. Each token works once: presenting a used
/// one means it was copied, so the whole session (its family) is revoked.
pub async fn refresh(state: &AppState, token: &str) -> Result<Issued, Error> {
    let invalid = || Error::Unauthorized(AuthError::InvalidRefresh);
    let mut tx = state.pool.begin().await?;
    type Row = (
        Uuid,
        Uuid,
        bool,
        bool,
        bool,
        Uuid,
        Uuid,
        String,
        String,
        String,
        bool,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT rt.id, rt.session_id, rt.used_at IS NOT NULL, rt.expires_at <= now(), \
                s.revoked_at IS NOT NULL, u.id, u.tenant_id, t.slug, u.email, u.role, u.active \
         FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id \
         JOIN users u ON u.id = s.user_id JOIN tenants t ON t.id = u.tenant_id \
         WHERE rt.token_hash = $1 FOR UPDATE OF rt",
    )
    .bind(hash_token(token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((
        token_id,
        session_id,
        used,
        expired,
        revoked,
        user_id,
        tenant_id,
        slug,
        email,
        role,
        active,
    )) = row
    else {
        return Err(invalid());
    };
    if used {
        drop(tx);
        tracing::warn!(%session_id, %user_id, "refresh token reused: revoking its session");
        revoke_session(state, session_id, "reuse").await?;
        return Err(invalid());
    }
    if expired || revoked || !active {
        return Err(invalid());
    }
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE id = $1")
        .bind(token_id)
        .execute(&mut *tx)
        .await?;
    let next = new_refresh_token();
    insert_refresh_token(&mut tx, state, session_id, &next).await?;
    tx.commit().await?;
    let role: Role = role
        .parse()
        .map_err(|e| anyhow::anyhow!("stored role: {e}"))?;
    Ok(issue(
        state, user_id, &email, role, tenant_id, &slug, session_id, next,
    ))
}

pub async fn revoke_session(state: &AppState, session_id: Uuid, why: &str) -> Result<(), Error> {
    let mut tx = state.pool.begin().await?;
    sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_why = $2 WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(session_id)
    .bind(why)
    .execute(&mut *tx)
    .await?;
    state
        .auth_caches
        .revoke(&mut tx, Revoked::Session(session_id))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Ends the session a refresh token belongs to; unknown tokens end nothing.
pub async fn logout(
    state: &AppState,
    refresh_token: Option<&str>,
    current: Option<Uuid>,
) -> Result<(), Error> {
    if let Some(token) = refresh_token {
        let session: Option<Uuid> =
            sqlx::query_scalar("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(hash_token(token))
                .fetch_optional(&state.pool)
                .await?;
        if let Some(session_id) = session {
            revoke_session(state, session_id, "logout").await?;
        }
    }
    if let Some(session_id) = current {
        revoke_session(state, session_id, "logout").await?;
    }
    Ok(())
}

/// Changes the caller's password and ends every other session of theirs.
pub async fn change_password(
    state: &AppState,
    principal: &Principal,
    current: &str,
    new: &str,
) -> Result<(), Error> {
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(principal.user_id)
        .fetch_one(&state.pool)
        .await?;
    if !verify_blocking(current.to_owned(), hash).await? {
        return Err(Error::Forbidden("the current password is wrong".into()));
    }
    if current == new {
        return Err(Error::field(
            "newPassword",
            "must differ from the current password",
        ));
    }
    PasswordPolicy::check(new, &principal.email)
        .map_err(|e| Error::field("newPassword", e.to_string()))?;
    let new_hash = {
        let new = new.to_owned();
        tokio::task::spawn_blocking(move || hash_password(&new))
            .await
            .map_err(|e| Error::Internal(e.into()))??
    };
    let mut tx = state.pool.begin().await?;
    sqlx::query("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1")
        .bind(principal.user_id)
        .bind(new_hash)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_why = 'password_change' \
         WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2",
    )
    .bind(principal.user_id)
    .bind(principal.session_id())
    .execute(&mut *tx)
    .await?;
    state
        .auth_caches
        .revoke(&mut tx, Revoked::Everything)
        .await?;
    tx.commit().await?;
    Ok(())
}
