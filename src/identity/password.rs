use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use super::IdentityError;

/// Length over composition rules (NIST SP 800-63B): long enough, not trivially
/// repetitive, not the account's own email.
pub struct PasswordPolicy;

impl PasswordPolicy {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_BYTES: usize = 1024;

    pub fn check(password: &str, email: &str) -> Result<(), IdentityError> {
        let weak = |why: &str| Err(IdentityError::WeakPassword(why.to_owned()));
        if password.trim().is_empty() {
            return weak("it is empty");
        }
        if password.chars().count() < Self::MIN_CHARS {
            return weak(&format!("use at least {} characters", Self::MIN_CHARS));
        }
        if password.len() > Self::MAX_BYTES {
            return weak(&format!("use at most {} bytes", Self::MAX_BYTES));
        }
        let mut distinct: Vec<char> = password.chars().collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 5 {
            return weak("use at least 5 different characters");
        }
        let lowered = password.to_lowercase();
        let local_part = email.split('@').next().unwrap_or_default();
        if lowered == email || (local_part.len() >= 4 && lowered.contains(local_part)) {
            return weak("it must not contain the email address");
        }
        Ok(())
    }
}

/// argon2id with the crate's defaults (19 MiB, 2 passes), in PHC string form.
pub fn hash_password(password: &str) -> Result<String, IdentityError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| IdentityError::Hashing(e.to_string()))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        let email = "alice.smith@example.com";
        for weak in [
            "",
            "            ",
            "short",
            "aaaaaaaaaaaaaaaa",
            "abababababab",
            "alice.smith-2026",
        ] {
            let err = PasswordPolicy::check(weak, email).unwrap_err();
            assert!(matches!(err, IdentityError::WeakPassword(_)), "{weak:?}");
        }
        PasswordPolicy::check("correct horse battery", email).unwrap();
    }

    #[test]
    fn a_hash_verifies_only_its_own_password() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("anything", "not a phc string"));
    }
}
