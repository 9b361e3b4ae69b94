use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{violates, IdentityError};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Tenant {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

pub async fn create_tenant(pool: &PgPool, slug: &str, name: &str) -> Result<Tenant, IdentityError> {
    let slug = slug.trim();
    let name = name.trim();
    validate_slug(slug)?;
    if name.is_empty() || name.chars().count() > 200 {
        return Err(IdentityError::Invalid {
            field: "name",
            message: "must be 1 to 200 characters".into(),
        });
    }
    sqlx::query_as::<_, Tenant>(
        "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $3) \
         RETURNING id, slug, name, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(slug)
    .bind(name)
    .fetch_one(pool)
    .await
    .map_err(|e| {
        if violates(&e, "tenants_slug_key") {
            IdentityError::DuplicateSlug(slug.to_owned())
        } else {
            e.into()
        }
    })
}

pub async fn find_tenant_by_slug(pool: &PgPool, slug: &str) -> Result<Tenant, IdentityError> {
    sqlx::query_as::<_, Tenant>("SELECT id, slug, name, created_at FROM tenants WHERE slug = $1")
        .bind(slug.trim())
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| IdentityError::UnknownTenant(slug.trim().to_owned()))
}

/// Slugs go into URLs and subjects: lowercase letters, digits and inner hyphens.
fn validate_slug(slug: &str) -> Result<(), IdentityError> {
    let ok = (2..=63).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::Invalid {
            field: "slug",
            message: "use 2 to 63 lowercase letters, digits and inner hyphens".into(),
        })
    }
}
