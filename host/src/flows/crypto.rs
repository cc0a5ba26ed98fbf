//! Factor data at rest: ChaCha20-Poly1305 under the `FactorKey` connection string, with a random
//! nonce per write and the person and method as associated data, so a row copied to another
//! person or method doesn't decrypt.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

/// The connection string that holds the key (any text: the key is its SHA-256 under a label).
pub const FACTOR_KEY: &str = "FactorKey";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FactorCryptoError {
    #[error(
        "no FactorKey connection string is configured, so factor data can't be stored or read"
    )]
    NoKey,
    #[error("stored factor data doesn't decrypt with the FactorKey (changed key, or tampered)")]
    Undecryptable,
    #[error("cannot get random bytes: {0}")]
    Random(String),
}

/// The key factor data is sealed with. `Debug` never shows it.
#[derive(Clone)]
pub struct FactorKey(Key);

impl std::fmt::Debug for FactorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FactorKey(***)")
    }
}

fn aad(person_uid: &str, method: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(person_uid.len() + method.len() + 1);
    v.extend_from_slice(person_uid.as_bytes());
    v.push(0);
    v.extend_from_slice(method.as_bytes());
    v
}

impl FactorKey {
    /// Derives the key from the configured text; `None` when it is empty.
    pub fn from_secret(secret: &str) -> Option<Self> {
        if secret.trim().is_empty() {
            return None;
        }
        let mut h = Sha256::new();
        h.update(b"prp factor key v1\0");
        h.update(secret.as_bytes());
        Some(Self(h.finalize()))
    }

    /// The key of the settings' `FactorKey` connection string, if any.
    pub fn from_settings(settings: &crate::config::Settings) -> Option<Self> {
        settings
            .connection_strings
            .iter()
            .find(|c| c.name().eq_ignore_ascii_case(FACTOR_KEY))
            .and_then(|c| Self::from_secret(c.expose()))
    }

    pub fn seal(
        &self,
        person_uid: &str,
        method: &str,
        plain: &str,
    ) -> Result<String, FactorCryptoError> {
        let mut nonce = [0u8; 12];
        getrandom::getrandom(&mut nonce).map_err(|e| FactorCryptoError::Random(e.to_string()))?;
        let cipher = ChaCha20Poly1305::new(&self.0);
        let aad = aad(person_uid, method);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| FactorCryptoError::Undecryptable)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(hex::encode(out))
    }

    pub fn open(
        &self,
        person_uid: &str,
        method: &str,
        stored: &str,
    ) -> Result<String, FactorCryptoError> {
        let bytes = hex::decode(stored).map_err(|_| FactorCryptoError::Undecryptable)?;
        if bytes.len() < 12 + 16 {
            return Err(FactorCryptoError::Undecryptable);
        }
        let (nonce, sealed) = bytes.split_at(12);
        let aad = aad(person_uid, method);
        let plain = ChaCha20Poly1305::new(&self.0)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| FactorCryptoError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| FactorCryptoError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_for_its_person_method_and_key() {
        let key = FactorKey::from_secret("k1").unwrap();
        let sealed = key.seal("P-1", "totp", "totp-v1:ABC").unwrap();
        assert!(!sealed.contains("ABC"));
        assert_eq!(key.open("P-1", "totp", &sealed).unwrap(), "totp-v1:ABC");
        // A fresh nonce each time.
        assert_ne!(key.seal("P-1", "totp", "totp-v1:ABC").unwrap(), sealed);
        assert_eq!(
            key.open("P-2", "totp", &sealed),
            Err(FactorCryptoError::Undecryptable)
        );
        assert_eq!(
            key.open("P-1", "other", &sealed),
            Err(FactorCryptoError::Undecryptable)
        );
        let other = FactorKey::from_secret("k2").unwrap();
        assert_eq!(
            other.open("P-1", "totp", &sealed),
            Err(FactorCryptoError::Undecryptable)
        );
        let mut tampered = sealed.clone();
        tampered.replace_range(30..32, if &sealed[30..32] == "00" { "01" } else { "00" });
        assert_eq!(
            key.open("P-1", "totp", &tampered),
            Err(FactorCryptoError::Undecryptable)
        );
        assert!(FactorKey::from_secret("  ").is_none());
        assert_eq!(format!("{key:?}"), "FactorKey(***)");
    }
}
