//! sealing: the cluster's data key and the values sealed with it (the registry credentials
//! kept in the state).
//!
//! The key is derived (HKDF-SHA256) from the cluster CA's private key, which every master
//! holds and no worker does: a joining master receives it over mutual TLS, every backup
//! carries it, and a single master made a cluster later keeps it. So any master opens what
//! any master sealed, and the state file, its Raft log or a snapshot alone reveal nothing.
//!
//! A sealed value is `v1:` + base64(nonce ‖ AES-256-GCM ciphertext ‖ tag), with a fresh
//! random nonce each time. The caller names a context (e.g. the registry), bound in as the
//! additional data: a value copied to another row does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{hkdf, rand};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

const VERSION: &str = "v1:";

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the cluster's data key could not be derived from the CA key")]
    Key,
    #[error("no random nonce could be drawn")]
    Random,
    #[error("the sealed value is not in the v1 form (v1:<base64>)")]
    Form,
    #[error(
        "the sealed value does not open with this cluster's key (sealed by another cluster, \
         for another name, or damaged)"
    )]
    Open,
}

/// The key that seals values in the state.
pub struct DataKey(LessSafeKey);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// The data key of the cluster whose CA key is `ca_key_pem` (the same on every master).
    pub fn from_ca_key(ca_key_pem: &str) -> Result<DataKey, SealError> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"dash cluster data key");
        let prk = salt.extract(ca_key_pem.trim().as_bytes());
        let info: &[&[u8]] = &[b"v1 aes-256-gcm"];
        let okm = prk.expand(info, &AES_256_GCM).map_err(|_| SealError::Key)?;
        Ok(DataKey(LessSafeKey::new(UnboundKey::from(okm))))
    }

    /// A data key from 32 random bytes of [`DataKey::random`] (or kept ones).
    pub fn from_bytes(bytes: &[u8]) -> Result<DataKey, SealError> {
        UnboundKey::new(&AES_256_GCM, bytes)
            .map(|k| DataKey(LessSafeKey::new(k)))
            .map_err(|_| SealError::Key)
    }

    /// 32 random bytes for a new data key.
    pub fn random() -> Result<[u8; 32], SealError> {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes).map_err(|_| SealError::Random)?;
        Ok(bytes)
    }

    /// `plain` sealed for `context`.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut data = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .map_err(|_| SealError::Key)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{VERSION}{}", BASE64.encode(out)))
    }

    /// The plain value of `sealed`, which must have been sealed for `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let body = sealed.strip_prefix(VERSION).ok_or(SealError::Form)?;
        let mut bytes = BASE64.decode(body).map_err(|_| SealError::Form)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Form);
        }
        let mut data = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SealError::Form)?;
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(ca: &str) -> DataKey {
        DataKey::from_ca_key(ca).unwrap()
    }

    #[test]
    fn a_value_opens_with_the_same_ca_key_and_context_only() {
        let sealed = key("ca one").seal("registry.local", b"user:pw").unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("user"), "{sealed}");
        // Another master derives the same key from the same CA key.
        assert_eq!(
            key("ca one").open("registry.local", &sealed).unwrap(),
            b"user:pw"
        );
        assert_eq!(
            key("ca two").open("registry.local", &sealed),
            Err(SealError::Open)
        );
        assert_eq!(
            key("ca one").open("other.registry", &sealed),
            Err(SealError::Open)
        );
    }

    #[test]
    fn each_seal_draws_a_new_nonce() {
        let k = key("ca");
        assert_ne!(k.seal("r", b"x").unwrap(), k.seal("r", b"x").unwrap());
    }

    #[test]
    fn damaged_or_foreign_forms_are_refused() {
        let k = key("ca");
        let sealed = k.seal("r", b"secret").unwrap();
        assert_eq!(k.open("r", "secret"), Err(SealError::Form));
        assert_eq!(k.open("r", "v1:!!!"), Err(SealError::Form));
        assert_eq!(k.open("r", "v1:AAAA"), Err(SealError::Form));
        // Every byte of nonce, ciphertext and tag is covered: one bit changed anywhere fails.
        let bytes = BASE64.decode(sealed.strip_prefix("v1:").unwrap()).unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[i] ^= 1;
            let text = format!("v1:{}", BASE64.encode(&damaged));
            assert_eq!(k.open("r", &text), Err(SealError::Open), "byte {i}");
        }
    }
}
