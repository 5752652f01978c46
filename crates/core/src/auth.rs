//! Credentials. Passwords are hashed with argon2id (PHC strings, so parameters can change
//! later without invalidating old hashes). API keys are 192 random bits: far beyond guessing,
//! so a fast SHA-256 is enough to store them, and a lookup by hash needs no per-user salt.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};

/// The prefix of every API key; it lets secret scanners and people recognise one.
pub const API_KEY_PREFIX: &str = "tg_";

/// A credential could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The operating system's random source failed.
    #[error("the system random source failed: {0}")]
    Random(String),
    /// argon2 refused the input.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(buf)
}

/// Lower-case hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// An argon2id PHC string for the password.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt_bytes: [u8; 16] = random_bytes()?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Whether the password matches the stored hash; a malformed hash never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A new API key as shown once to its owner: `tg_` and 48 hex digits.
pub fn generate_api_key() -> Result<String, AuthError> {
    let bytes: [u8; 24] = random_bytes()?;
    Ok(format!("{API_KEY_PREFIX}{}", hex(&bytes)))
}

/// A new API key and what the store keeps of it.
pub struct NewKey {
    /// The key, shown once to its owner.
    pub key: String,
    /// Its SHA-256, which the store keeps.
    pub hash: String,
    /// Its first characters, to recognise it in lists.
    pub label: String,
    /// A secret that signs the status callbacks of messages sent with it, when asked for.
    /// Kept as it is (it signs what the server sends, so it cannot be hashed).
    pub webhook_secret: Option<String>,
}

/// Makes a new API key, with a webhook secret of its own if asked.
pub fn new_api_key(webhook_secret: bool) -> Result<NewKey, AuthError> {
    let key = generate_api_key()?;
    let label = format!("{}…", &key[..7.min(key.len())]);
    let webhook_secret = if webhook_secret {
        Some(format!(
            "whsec_{}",
            &generate_api_key()?[API_KEY_PREFIX.len()..]
        ))
    } else {
        None
    };
    Ok(NewKey {
        hash: hash_api_key(&key),
        key,
        label,
        webhook_secret,
    })
}

/// A generated password: 20 characters from an alphabet without look-alikes.
pub fn generate_password() -> Result<String, AuthError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes: [u8; 20] = random_bytes()?;
    Ok(bytes
        .iter()
        // 56 symbols: the modulo bias (256 % 56 = 32) costs well under a bit of the ~116.
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// What the store keeps of an API key: hex SHA-256 of the whole key.
pub fn hash_api_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// A random token of `n` bytes in hex (session ids, webhook secrets).
pub fn random_token(n: usize) -> Result<String, AuthError> {
    let mut buf = vec![0u8; n];
    getrandom::getrandom(&mut buf).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(hex(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_verifies_only_the_password() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsf", &h));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn api_keys_are_unique_and_hash_stably() {
        let a = generate_api_key().unwrap();
        let b = generate_api_key().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("tg_") && a.len() == 51);
        assert_eq!(hash_api_key(&a), hash_api_key(&a));
        assert_ne!(hash_api_key(&a), hash_api_key(&b));
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn generated_passwords_are_long_and_varied() {
        let p = generate_password().unwrap();
        assert_eq!(p.chars().count(), 20);
        assert_ne!(p, generate_password().unwrap());
    }
}
