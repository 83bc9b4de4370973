use std::path::PathBuf;

use time::OffsetDateTime;

/// Why the PKI could not be loaded, created or written. File problems name the file, so an
/// operator knows which one to restore or remove.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("{}: not a usable PEM certificate: {reason}", path.display())]
    InvalidCertFile { path: PathBuf, reason: String },
    #[error("{}: not a usable PEM private key: {reason}", path.display())]
    InvalidKeyFile { path: PathBuf, reason: String },
    #[error(
        "{}: the CA private key is missing but {} exists; restore the key (without it no \
         certificate can be issued), or remove both to create a new CA",
        key.display(),
        cert.display()
    )]
    CaKeyMissing { cert: PathBuf, key: PathBuf },
    #[error(
        "{}: this private key does not belong to the CA certificate {}; restore the matching \
         pair, or remove both to create a new CA (every issued certificate and kubeconfig must \
         then be replaced)",
        key.display(),
        cert.display()
    )]
    CaKeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: not a CA certificate (basicConstraints CA:TRUE is missing)", path.display())]
    NotCa { path: PathBuf },
    #[error(
        "{}: the CA certificate expired on {not_after}; replace the CA (and everything it signed)",
        path.display()
    )]
    CaExpired {
        path: PathBuf,
        not_after: OffsetDateTime,
    },
    /// PEM handed in by the caller rather than read from a file.
    #[error("invalid {what}: {reason}")]
    InvalidPem { what: &'static str, reason: String },
    #[error("cannot use {what} for TLS: {reason}")]
    Tls { what: &'static str, reason: String },
    #[error("cannot issue {what}: {reason}")]
    Issue { what: String, reason: String },
    #[error("cannot encode kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
}
