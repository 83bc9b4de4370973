//! The key that signs ServiceAccount tokens (kubeadm's `sa.key`/`sa.pub`): made once, kept
//! forever, because replacing it would invalidate every token already handed out.

use std::path::Path;

use rcgen::KeyPair;

use crate::PkiError;
use crate::atomic_file::{
    PRIVATE, PUBLIC, create_private_dir, read_if_exists, restrict_to_owner, write_atomically,
};
use crate::certs::parse_key;

/// The signing key (PKCS#8 PEM, ECDSA P-256) and its public half (SPKI PEM).
#[derive(Clone, Debug)]
pub struct ServiceAccountKey {
    pub private_pem: String,
    pub public_pem: String,
}

/// Loads `dir/sa.key`, or creates it (and `sa.pub`) on first start. An unreadable key is an
/// error naming the file, never silently replaced.
pub fn ensure_service_account_key(dir: &Path) -> Result<ServiceAccountKey, PkiError> {
    create_private_dir(dir)?;
    let key_path = dir.join("sa.key");
    let key = match read_if_exists(&key_path)? {
        Some(pem) => {
            let key = parse_key(&pem).map_err(|reason| PkiError::InvalidKeyFile {
                path: key_path.clone(),
                reason,
            })?;
            restrict_to_owner(&key_path)?;
            key
        }
        None => {
            let key = KeyPair::generate().map_err(|e| PkiError::InvalidKeyFile {
                path: key_path.clone(),
                reason: format!("cannot generate a key: {e}"),
            })?;
            write_atomically(&key_path, key.serialize_pem().as_bytes(), PRIVATE)?;
            key
        }
    };
    let public_pem = key.public_key_pem();
    // The public half is derived, so it is rewritten whenever it is missing or stale.
    let pub_path = dir.join("sa.pub");
    if read_if_exists(&pub_path)?.as_deref() != Some(public_pem.as_str()) {
        write_atomically(&pub_path, public_pem.as_bytes(), PUBLIC)?;
    }
    Ok(ServiceAccountKey {
        private_pem: key.serialize_pem(),
        public_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_service_account_key(dir.path()).unwrap();
        let again = ensure_service_account_key(dir.path()).unwrap();
        assert_eq!(first.private_pem, again.private_pem);
        assert!(first.public_pem.contains("BEGIN PUBLIC KEY"));
        assert!(dir.path().join("sa.pub").exists());
    }

    #[test]
    fn a_corrupt_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sa.key"), "not a key").unwrap();
        let err = ensure_service_account_key(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("sa.key"), "{err}");
    }
}
