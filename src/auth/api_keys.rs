//! API keys for scanners and CI: `vlk_<prefix>_<secret>`, shown once, stored as a
//! SHA-256 of the secret (256 random bits need no slow hash).

use chrono::{DateTime, Utc};
use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;
use vulnledger_aggregates::Role;

use serde::Serialize;
use utoipa::ToSchema;

use super::{Principal, Scope, Via};
use crate::http::Error;

pub const KEY_PREFIX: &str = "vlk_";
const PREFIX_LEN: usize = 12;
const SECRET_LEN: usize = 43;

/// A key as the lookup needs it, joined with its creator's current standing.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant_slug: String,
    pub user_id: Uuid,
    pub email: String,
    pub role: Role,
    pub user_active: bool,
    pub secret_hash: Vec<u8>,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

impl KeyRecord {
    pub fn accepts(&self, secret: &str) -> bool {
        let matches: bool = hash(secret).ct_eq(&self.secret_hash).into();
        matches
            && !self.revoked
            && self.user_active
            && self.expires_at.is_none_or(|at| at > Utc::now())
    }

    /// Scopes the creator's role no longer covers are dropped, so demoting a person
    /// shrinks their keys too.
    pub fn principal(&self) -> Principal {
        Principal {
            tenant_id: self.tenant_id,
            tenant_slug: self.tenant_slug.clone(),
            user_id: self.user_id,
            email: self.email.clone(),
            role: self.role,
            via: Via::ApiKey {
                key_id: self.id,
                scopes: self
                    .scopes
                    .iter()
                    .copied()
                    .filter(|s| self.role.at_least(s.least_role()))
                    .collect(),
            },
        }
    }
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_by: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub view: ApiKeyView,
    /// The whole key. Shown once: only its hash is kept.
    pub key: String,
}

pub const COLUMNS: &str =
    "id, name, prefix, scopes, user_id AS created_by, expires_at, created_at, revoked_at";

/// Creates a key for `creator`, whose role bounds the scopes it may carry.
pub async fn create(
    pool: &PgPool,
    creator: &Principal,
    name: &str,
    mut scopes: Vec<Scope>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<CreatedApiKey, Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::field("name", "must be 1 to 100 characters"));
    }
    scopes.sort_by_key(|s| s.as_str());
    scopes.dedup();
    if scopes.is_empty() {
        return Err(Error::field("scopes", "name at least one scope"));
    }
    if let Some(scope) = scopes
        .iter()
        .find(|s| !creator.role.at_least(s.least_role()))
    {
        return Err(Error::Forbidden(format!(
            "your role ({}) cannot grant {scope}",
            creator.role
        )));
    }
    if expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(Error::field("expiresAt", "must be in the future"));
    }
    let (prefix, secret, key) = generate();
    let scope_names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let view: ApiKeyView = sqlx::query_as(&format!(
        "INSERT INTO api_keys (id, tenant_id, user_id, name, prefix, secret_hash, scopes, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(creator.tenant_id)
    .bind(creator.user_id)
    .bind(name)
    .bind(&prefix)
    .bind(hash(&secret))
    .bind(&scope_names)
    .bind(expires_at)
    .fetch_one(pool)
    .await?;
    Ok(CreatedApiKey { view, key })
}

pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// `(prefix, secret)` of a well-formed key.
pub fn split(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (prefix, secret) = rest.split_once('_')?;
    let alnum = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    (prefix.len() == PREFIX_LEN && secret.len() == SECRET_LEN && alnum(prefix) && alnum(secret))
        .then_some((prefix, secret))
}

/// A new key: `(prefix, secret, full key)`.
pub fn generate() -> (String, String, String) {
    let mut rng = rand::rngs::OsRng;
    let prefix = Alphanumeric.sample_string(&mut rng, PREFIX_LEN);
    let secret = Alphanumeric.sample_string(&mut rng, SECRET_LEN);
    let full = format!("{KEY_PREFIX}{prefix}_{secret}");
    (prefix, secret, full)
}

pub async fn find_by_prefix(pool: &PgPool, prefix: &str) -> Result<Option<KeyRecord>, sqlx::Error> {
    type Row = (
        Uuid,
        Uuid,
        String,
        Uuid,
        String,
        String,
        bool,
        Vec<u8>,
        Vec<String>,
        Option<DateTime<Utc>>,
        bool,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT k.id, k.tenant_id, t.slug, u.id, u.email, u.role, u.active, k.secret_hash, \
                k.scopes, k.expires_at, k.revoked_at IS NOT NULL \
         FROM api_keys k JOIN users u ON u.id = k.user_id JOIN tenants t ON t.id = k.tenant_id \
         WHERE k.prefix = $1",
    )
    .bind(prefix)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(
        |(
            id,
            tenant_id,
            tenant_slug,
            user_id,
            email,
            role,
            user_active,
            secret_hash,
            scopes,
            expires_at,
            revoked,
        )| {
            Some(KeyRecord {
                id,
                tenant_id,
                tenant_slug,
                user_id,
                email,
                role: role.parse().ok()?,
                user_active,
                secret_hash,
                scopes: scopes.iter().filter_map(|s| s.parse().ok()).collect(),
                expires_at,
                revoked,
            })
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_splits_back_into_its_parts() {
        let (prefix, secret, full) = generate();
        assert!(full.starts_with("vlk_"));
        assert_eq!(split(&full), Some((prefix.as_str(), secret.as_str())));
    }

    #[test]
    fn malformed_keys_do_not_split() {
        for bad in [
            "",
            "vlk_",
            "vlk_short_secret",
            "xyz_abcdefghijkl_x",
            "vlk_abcdefghijk!_aaaa",
        ] {
            assert_eq!(split(bad), None, "{bad}");
        }
    }
}
