use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use vulnledger_aggregates::Role;

use super::{find_tenant_by_slug, hash_password, violates, IdentityError, PasswordPolicy};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub role: Role,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

pub struct NewUser<'a> {
    pub tenant_slug: &'a str,
    pub email: &'a str,
    pub password: &'a str,
    pub role: Role,
}

/// Validates everything before writing anything: an unknown tenant, a bad email, a
/// weak password or a taken email all leave the database unchanged.
pub async fn create_user(pool: &PgPool, new: NewUser<'_>) -> Result<User, IdentityError> {
    let email = normalize_email(new.email)?;
    let tenant = find_tenant_by_slug(pool, new.tenant_slug).await?;
    PasswordPolicy::check(new.password, &email)?;
    let hash = hash_password(new.password)?;
    let (id, created_at): (Uuid, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO users (id, tenant_id, email, password_hash, role) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(tenant.id)
    .bind(&email)
    .bind(&hash)
    .bind(new.role.to_string())
    .fetch_one(pool)
    .await
    .map_err(|e| {
        if violates(&e, "users_email_key") {
            IdentityError::DuplicateEmail(email.clone())
        } else {
            e.into()
        }
    })?;
    Ok(User {
        id,
        tenant_id: tenant.id,
        email,
        role: new.role,
        active: true,
        created_at,
    })
}

/// Lower-cased and trimmed; a deliberately loose shape check (one @, a dot in the
/// domain, no spaces), since the real test of an address is mail reaching it.
pub fn normalize_email(raw: &str) -> Result<String, IdentityError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.contains(char::is_whitespace)
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if valid {
        Ok(email)
    } else {
        Err(IdentityError::Invalid {
            field: "email",
            message: "is not an email address".into(),
        })
    }
}

/// The active user `email` of tenant `slug`, as a principal acting in person
/// (for operator commands such as `api-key create`).
pub async fn principal_of(
    pool: &PgPool,
    slug: &str,
    email: &str,
) -> Result<crate::auth::Principal, IdentityError> {
    let tenant = find_tenant_by_slug(pool, slug).await?;
    let email = normalize_email(email)?;
    let row: Option<(Uuid, String, bool)> =
        sqlx::query_as("SELECT id, role, active FROM users WHERE tenant_id = $1 AND email = $2")
            .bind(tenant.id)
            .bind(&email)
            .fetch_optional(pool)
            .await?;
    let Some((user_id, role, true)) = row else {
        return Err(IdentityError::UnknownUser(email));
    };
    Ok(crate::auth::Principal {
        tenant_id: tenant.id,
        tenant_slug: tenant.slug,
        user_id,
        email,
        role: role.parse().map_err(|_| IdentityError::Invalid {
            field: "role",
            message: format!("stored role {role:?} is unknown"),
        })?,
        via: crate::auth::Via::Session {
            session_id: Uuid::nil(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::normalize_email;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(
            normalize_email("  Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "alice",
            "@example.com",
            "a@b",
            "a b@example.com",
            "a@@b.com",
            "a@b.",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
    }
}
