//! Access tokens: HS256 JWTs with the claims api.md names, plus `sid` (the session)
//! so that ending a session ends its access tokens too, not 15 minutes later.

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vulnledger_aggregates::Role;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub sub: Uuid,
    pub tenant_id: Uuid,
    pub tenant_slug: String,
    pub role: Role,
    pub exp: i64,
    pub iat: i64,
    pub jti: Uuid,
    pub sid: Uuid,
}

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub ttl: Duration,
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        // Only HS256: a token that names another algorithm (or `none`) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    pub fn issue(
        &self,
        user_id: Uuid,
        tenant_id: Uuid,
        tenant_slug: &str,
        role: Role,
        session_id: Uuid,
    ) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            tenant_id,
            tenant_slug: tenant_slug.to_owned(),
            role,
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            jti: Uuid::now_v7(),
            sid: session_id,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(900),
        )
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims() {
        let (user, tenant, sid) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let token = keys().issue(user, tenant, "acme", Role::Analyst, sid);
        let claims = keys().verify(&token).unwrap();
        assert_eq!(
            (claims.sub, claims.tenant_id, claims.sid),
            (user, tenant, sid)
        );
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let other = JwtKeys::new(
            b"another-secret-another-secret-xx",
            Duration::from_secs(900),
        );
        let token = other.issue(
            Uuid::now_v7(),
            Uuid::now_v7(),
            "a",
            Role::Admin,
            Uuid::now_v7(),
        );
        assert!(keys().verify(&token).is_none());
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = Utc::now().timestamp();
        let claims = serde_json::json!({
            "sub": Uuid::now_v7(), "tenantId": Uuid::now_v7(), "tenantSlug": "a",
            "role": "admin", "iat": now, "exp": now + 600, "jti": Uuid::now_v7(), "sid": Uuid::now_v7()
        });
        let token = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(claims.to_string())
        );
        assert!(keys().verify(&token).is_none());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(1));
        let mut claims = keys
            .verify(&keys.issue(
                Uuid::now_v7(),
                Uuid::now_v7(),
                "a",
                Role::Admin,
                Uuid::now_v7(),
            ))
            .unwrap();
        claims.iat -= 3600;
        claims.exp -= 3600;
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        assert!(keys.verify(&token).is_none());
    }
}
