//! Passwords: Argon2id with the `argon2` crate's default (OWASP-recommended) parameters —
//! 19 MiB of memory, 2 passes, 1 lane — always computed on the blocking pool, never on
//! the async threads, where tens of milliseconds of hashing would stall every other
//! request on that thread.

use std::sync::OnceLock;

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

use crate::error::ApiError;

/// Hashes `password` into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`). Blocking.
pub fn hash_blocking(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|err| {
        tracing::error!(error = %err, "no randomness for a salt");
        ApiError::Internal
    })?;
    let salt = SaltString::encode_b64(&salt).map_err(|err| {
        tracing::error!(error = %err, "salt encoding");
        ApiError::Internal
    })?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| {
            tracing::error!(error = %err, "password hashing");
            ApiError::Internal
        })
}

/// Whether `password` matches `stored`. With no stored hash (no such account, or one
/// that cannot log in) it checks against a dummy hash of the same cost and answers
/// `false`, so both cases take the same time. Blocking.
pub fn verify_blocking(password: &str, stored: Option<&str>) -> bool {
    let dummy = dummy_hash();
    let (target, real) = match stored {
        Some(stored) => (stored, true),
        None => (dummy, false),
    };
    let Ok(parsed) = PasswordHash::new(target) else {
        tracing::error!("a stored password hash does not parse");
        return false;
    };
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    matches && real
}

/// [`hash_blocking`] on the blocking pool.
pub async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "hashing task failed");
            ApiError::Internal
        })?
}

/// [`verify_blocking`] on the blocking pool.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || verify_blocking(&password, stored.as_deref()))
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "verification task failed");
            ApiError::Internal
        })
}

/// A hash of a random password, made once per process with the same parameters.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut secret = [0u8; 24];
        // Even an all-zero fallback is fine: the dummy's answer is discarded.
        let _ = getrandom::fill(&mut secret);
        hash_blocking(&String::from_utf8_lossy(&secret))
            .unwrap_or_else(|_| "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$invalid".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_argon2id_with_default_parameters() {
        let stored = hash_blocking("correct horse").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(verify_blocking("correct horse", Some(&stored)));
        assert!(!verify_blocking("wrong horse", Some(&stored)));
        assert_ne!(stored, hash_blocking("correct horse").unwrap(), "salted");
    }

    #[test]
    fn a_missing_account_never_verifies() {
        assert!(!verify_blocking("", None));
        assert!(!verify_blocking("anything", None));
        assert!(!verify_blocking("x", Some("not a phc string")));
    }
}
