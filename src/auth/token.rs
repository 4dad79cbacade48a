//! Bearer tokens: 256 random bits, base64url without padding (43 characters), stored only
//! as their SHA-256 — a copy of the sessions table lets no one in.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Length of a token's text.
pub const TOKEN_LEN: usize = 43;

/// A fresh token.
///
/// ```
/// let token = pgbridge::auth::token::generate().unwrap();
/// assert!(pgbridge::auth::token::well_formed(&token));
/// ```
pub fn generate() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|err| {
        tracing::error!(error = %err, "no randomness for a token");
        ApiError::Internal
    })?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// What the sessions table stores for `token`: its SHA-256, kept as an array (no allocation
/// while a request looks its session up).
///
/// ```
/// use pgbridge::auth::token;
///
/// assert_eq!(token::hash("t").len(), 32);
/// assert_ne!(token::hash("t"), token::hash("u"));
/// ```
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `token` could be one [`generate`] made (checked before any database lookup).
pub fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_well_formed() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_ne!(a, b);
        assert!(well_formed(&a) && well_formed(&b));
        assert_eq!(hash(&a).len(), 32);
        for bad in ["", "short", &format!("{a}x"), &a.replace(&a[..1], "+")] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}
