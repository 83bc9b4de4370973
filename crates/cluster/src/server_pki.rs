//! The control plane's certificate directory: a CA, the apiserver's serving certificate, the
//! admin's client certificate and the apiserver's client certificate for kubelets, created on
//! first start and kept valid on every restart.

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::KeyPair;
use time::{Duration, OffsetDateTime};

use crate::atomic_file::{
    PRIVATE, PUBLIC, create_private_dir, read_if_exists, restrict_to_owner, write_atomically,
};
use crate::certs::{
    CertFacts, CertificateAuthority, LEAF_VALIDITY, LeafProfile, parse_cert, parse_key,
};
use crate::{APISERVER_COMMON_NAME, Pem, PkiError, ServingNames};

/// The admin's user name, as kubeadm's admin certificate has it.
pub const ADMIN_COMMON_NAME: &str = "kubernetes-admin";
/// The group RBAC binds to cluster-admin without any binding object in the store.
pub const ADMIN_ORGANIZATION: &str = "system:masters";
/// The user the apiserver is to kubelets (logs, exec…), as kubeadm's
/// `apiserver-kubelet-client` certificate names it.
pub const KUBELET_CLIENT_COMMON_NAME: &str = "kube-apiserver-kubelet-client";
/// Certificates closer than this to expiry are reissued on start, as kubeadm's renewal window.
pub const RENEW_BEFORE: Duration = Duration::days(30);

/// The loaded (or just created) PEM of every certificate in `dir`.
#[derive(Clone, Debug)]
pub struct ServerPki {
    pub ca: Pem,
    pub serving: Pem,
    pub admin: Pem,
    /// The apiserver's identity towards kubelets.
    pub kubelet_client: Pem,
    pub dir: PathBuf,
    /// What this call wrote and why, for the server to log; empty when all was reused.
    pub issued: Vec<Issued>,
}

/// A certificate `ensure_server_pki` (re)issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub cert: PathBuf,
    pub reason: IssueReason,
}

impl fmt::Display for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "issued {}: {}", self.cert.display(), self.reason)
    }
}

/// Why a certificate was (re)issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssueReason {
    Missing,
    KeyMissing,
    /// The key file holds another key, as a crash between writing key and certificate leaves it.
    KeyMismatch,
    /// Signed by another CA, e.g. one that was replaced since.
    NotSignedByCa,
    ExpiresSoon {
        not_after: OffsetDateTime,
    },
    /// The serving certificate lacks these names (IPs and DNS names as text).
    NamesNotCovered(Vec<String>),
}

impl fmt::Display for IssueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssueReason::Missing => f.write_str("the certificate did not exist"),
            IssueReason::KeyMissing => f.write_str("its private key did not exist"),
            IssueReason::KeyMismatch => f.write_str("its private key did not match"),
            IssueReason::NotSignedByCa => f.write_str("it was not signed by the current CA"),
            IssueReason::ExpiresSoon { not_after } => write!(f, "it expires on {not_after}"),
            IssueReason::NamesNotCovered(names) => {
                write!(f, "it did not cover {}", names.join(", "))
            }
        }
    }
}

/// Loads or creates, in `dir` (e.g. `<data-dir>/server/tls`):
/// - `ca.crt`/`ca.key`: self-signed CA, CN "r8s-ca", 10 years;
/// - `serving.crt`/`.key`: server auth, SANs from `names`, 1 year, signed by the CA;
/// - `admin.crt`/`.key`: client auth, CN "kubernetes-admin", O "system:masters", 1 year;
/// - `apiserver-kubelet-client.crt`/`.key`: client auth, CN "kube-apiserver-kubelet-client",
///   O "system:masters", 1 year: what the apiserver shows kubelets.
///
/// Keys are ECDSA P-256; files are 0600 (keys) / 0644 (certs), written atomically. On a
/// restart what exists is reused byte for byte. A leaf certificate is reissued (with a fresh
/// key) when it expires within 30 days, when the serving one does not cover all `names`, and
/// when it no longer pairs with its key or the CA (what a crash mid-write or a replaced CA
/// leaves). The CA itself is never replaced: a CA key that does not match the CA certificate,
/// a missing CA key, an expired CA or any unparsable file is an error naming the file.
pub fn ensure_server_pki(dir: &Path, names: &ServingNames) -> Result<ServerPki, PkiError> {
    create_private_dir(dir)?;
    let now = OffsetDateTime::now_utc();
    let mut issued = Vec::new();
    let ca = ensure_ca(dir, now, &mut issued)?;
    let serving = ensure_leaf(
        &ca,
        dir,
        "serving",
        &LeafProfile::Serving {
            common_name: APISERVER_COMMON_NAME,
            organization: None,
            names,
        },
        now,
        &mut issued,
    )?;
    let admin = ensure_leaf(
        &ca,
        dir,
        "admin",
        &LeafProfile::Client {
            common_name: ADMIN_COMMON_NAME,
            organizations: &[ADMIN_ORGANIZATION],
        },
        now,
        &mut issued,
    )?;
    let kubelet_client = ensure_leaf(
        &ca,
        dir,
        "apiserver-kubelet-client",
        &LeafProfile::Client {
            common_name: KUBELET_CLIENT_COMMON_NAME,
            organizations: &[ADMIN_ORGANIZATION],
        },
        now,
        &mut issued,
    )?;
    Ok(ServerPki {
        ca: ca.pem,
        serving,
        admin,
        kubelet_client,
        dir: dir.to_path_buf(),
        issued,
    })
}

fn ensure_ca(
    dir: &Path,
    now: OffsetDateTime,
    issued: &mut Vec<Issued>,
) -> Result<CertificateAuthority, PkiError> {
    let cert_path = dir.join("ca.crt");
    let key_path = dir.join("ca.key");
    match (read_if_exists(&cert_path)?, read_if_exists(&key_path)?) {
        (Some(cert), Some(key_pem)) => {
            let facts = parse_cert(&cert).map_err(|reason| PkiError::InvalidCertFile {
                path: cert_path.clone(),
                reason,
            })?;
            let key = read_key(&key_path, &key_pem)?;
            if !facts.is_ca {
                return Err(PkiError::NotCa { path: cert_path });
            }
            if !facts.matches_key(&key) {
                return Err(PkiError::CaKeyMismatch {
                    cert: cert_path,
                    key: key_path,
                });
            }
            if facts.not_after <= now {
                return Err(PkiError::CaExpired {
                    path: cert_path,
                    not_after: facts.not_after,
                });
            }
            restrict_to_owner(&key_path)?;
            let pem = Pem { cert, key: key_pem };
            CertificateAuthority::from_parts(pem, facts, key).map_err(|reason| {
                PkiError::InvalidCertFile {
                    path: cert_path,
                    reason,
                }
            })
        }
        (Some(_), None) => Err(PkiError::CaKeyMissing {
            cert: cert_path,
            key: key_path,
        }),
        (None, existing_key) => {
            // A key without a certificate is what a crash between the two writes leaves (the key
            // goes first); nothing can trust a certificate never written, so certify that key.
            let key = match &existing_key {
                Some(key_pem) => {
                    restrict_to_owner(&key_path)?;
                    read_key(&key_path, key_pem)?
                }
                None => {
                    let key = KeyPair::generate().map_err(|err| PkiError::Issue {
                        what: "CA key".into(),
                        reason: err.to_string(),
                    })?;
                    write_atomically(&key_path, key.serialize_pem().as_bytes(), PRIVATE)?;
                    key
                }
            };
            let mut ca = CertificateAuthority::self_signed(key, now)?;
            if let Some(key_pem) = existing_key {
                ca.pem.key = key_pem;
            }
            write_atomically(&cert_path, ca.pem.cert.as_bytes(), PUBLIC)?;
            issued.push(Issued {
                cert: cert_path,
                reason: IssueReason::Missing,
            });
            Ok(ca)
        }
    }
}

/// Reuses `<stem>.crt`/`<stem>.key` if still good, else issues and writes a new pair.
pub(crate) fn ensure_leaf(
    ca: &CertificateAuthority,
    dir: &Path,
    stem: &str,
    profile: &LeafProfile<'_>,
    now: OffsetDateTime,
    issued: &mut Vec<Issued>,
) -> Result<Pem, PkiError> {
    let cert_path = dir.join(format!("{stem}.crt"));
    let key_path = dir.join(format!("{stem}.key"));
    let reason = match read_if_exists(&cert_path)? {
        None => IssueReason::Missing,
        Some(cert) => {
            let facts = parse_cert(&cert).map_err(|reason| PkiError::InvalidCertFile {
                path: cert_path.clone(),
                reason,
            })?;
            match read_if_exists(&key_path)? {
                None => IssueReason::KeyMissing,
                Some(key_pem) => {
                    let key = read_key(&key_path, &key_pem)?;
                    match reissue_reason(ca, &facts, &key, profile, now) {
                        Some(reason) => reason,
                        None => {
                            restrict_to_owner(&key_path)?;
                            return Ok(Pem { cert, key: key_pem });
                        }
                    }
                }
            }
        }
    };
    let pem = ca.issue(profile, LEAF_VALIDITY, now)?;
    // Key first: a crash in between leaves a mismatched pair, which the next start reissues.
    write_atomically(&key_path, pem.key.as_bytes(), PRIVATE)?;
    write_atomically(&cert_path, pem.cert.as_bytes(), PUBLIC)?;
    issued.push(Issued {
        cert: cert_path,
        reason,
    });
    Ok(pem)
}

fn reissue_reason(
    ca: &CertificateAuthority,
    cert: &CertFacts,
    key: &KeyPair,
    profile: &LeafProfile<'_>,
    now: OffsetDateTime,
) -> Option<IssueReason> {
    if !cert.matches_key(key) {
        return Some(IssueReason::KeyMismatch);
    }
    if !cert.is_signed_by(&ca.facts) {
        return Some(IssueReason::NotSignedByCa);
    }
    if cert.not_after - now < RENEW_BEFORE {
        return Some(IssueReason::ExpiresSoon {
            not_after: cert.not_after,
        });
    }
    if let LeafProfile::Serving { names, .. } = profile {
        let missing = names.missing_from(cert);
        if !missing.is_empty() {
            return Some(IssueReason::NamesNotCovered(missing));
        }
    }
    None
}

fn read_key(path: &Path, pem: &str) -> Result<KeyPair, PkiError> {
    parse_key(pem).map_err(|reason| PkiError::InvalidKeyFile {
        path: path.to_path_buf(),
        reason,
    })
}
