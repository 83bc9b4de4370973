//! Certificates and keys: parsing what is on disk, and issuing new ones from the CA.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;

use crate::PkiError;

/// Subject of the self-signed cluster CA.
pub const CA_COMMON_NAME: &str = "r8s-ca";
/// Subject of the apiserver's serving certificate, as upstream names it.
pub const APISERVER_COMMON_NAME: &str = "kube-apiserver";
/// The CA outlives many leaf rotations, like kubeadm's.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// Lifetime of the serving and client certificates this crate issues.
pub const LEAF_VALIDITY: Duration = Duration::days(365);
/// Tolerates clocks of other machines that run a little behind ours.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// A certificate and its private key, both PEM (the key as PKCS#8 "PRIVATE KEY").
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl fmt::Debug for Pem {
    // Keeps private keys out of logs and panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pem")
            .field("cert", &self.cert)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The names a serving certificate must be valid for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingNames {
    pub ips: Vec<IpAddr>,
    pub dns: Vec<String>,
}

impl ServingNames {
    /// What upstream's apiserver certificate covers: 127.0.0.1, the given bind/advertise IPs,
    /// the first service IP (e.g. 10.96.0.1), and the DNS names localhost, kubernetes,
    /// kubernetes.default, kubernetes.default.svc, kubernetes.default.svc.cluster.local and
    /// this machine's hostname. Unspecified addresses (0.0.0.0, ::) are skipped: they are
    /// bind wildcards, never an address a client dials. Duplicates are dropped.
    pub fn for_apiserver(extra_ips: &[IpAddr], service_ip: IpAddr) -> Self {
        let mut ips = Vec::new();
        let candidates = [IpAddr::V4(Ipv4Addr::LOCALHOST)]
            .into_iter()
            .chain(extra_ips.iter().copied())
            .chain([service_ip]);
        for ip in candidates {
            if !ip.is_unspecified() && !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        let mut dns: Vec<String> = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .map(String::from)
        .into();
        if let Some(host) = hostname().filter(|host| !dns.contains(host)) {
            dns.push(host);
        }
        ServingNames { ips, dns }
    }

    /// The names `cert` does not cover, as text for a message; empty if it covers them all.
    pub(crate) fn missing_from(&self, cert: &CertFacts) -> Vec<String> {
        let ips = self
            .ips
            .iter()
            .filter(|ip| !cert.ips.contains(ip))
            .map(IpAddr::to_string);
        let dns = self
            .dns
            .iter()
            .filter(|name| !cert.dns.iter().any(|have| have.eq_ignore_ascii_case(name)))
            .cloned();
        ips.chain(dns).collect()
    }
}

/// The machine's hostname, lowercased as DNS names compare; `None` if it cannot be read or
/// is not a plausible DNS name (then the certificate simply does not list it).
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&buf[..len]).ok()?.to_ascii_lowercase();
    let plausible = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    plausible.then_some(name)
}

/// Issues a client certificate signed by the CA (for admin now, for nodes later): subject
/// CN=`common_name` and O=`organizations` (Kubernetes reads them as user and groups), extended
/// key usage clientAuth, a fresh ECDSA P-256 key, valid for `validity` from now but never past
/// the CA's own expiry. At most one organization is supported: rcgen encodes one value per
/// subject attribute.
pub fn issue_client_cert(
    ca: &Pem,
    common_name: &str,
    organizations: &[&str],
    validity: Duration,
) -> Result<Pem, PkiError> {
    let ca = CertificateAuthority::from_pem(ca)?;
    ca.issue(
        &LeafProfile::Client {
            common_name,
            organizations,
        },
        validity,
        OffsetDateTime::now_utc(),
    )
}

/// The SHA-256 of the CA's SubjectPublicKeyInfo, formatted like kubeadm's
/// `--discovery-token-ca-cert-hash`: `sha256:<64 lowercase hex digits>`.
pub fn ca_cert_hash(ca_cert_pem: &str) -> Result<String, PkiError> {
    let ca = parse_cert(ca_cert_pem).map_err(|reason| PkiError::InvalidPem {
        what: "CA certificate",
        reason,
    })?;
    let digest = Sha256::digest(&ca.spki);
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

/// What this crate needs to know about a certificate, copied out of the parsed DER.
pub(crate) struct CertFacts {
    der: Vec<u8>,
    /// DER of the SubjectPublicKeyInfo.
    spki: Vec<u8>,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    pub(crate) is_ca: bool,
    ips: Vec<IpAddr>,
    dns: Vec<String>,
}

impl CertFacts {
    /// Whether `key` is the private half of this certificate's public key.
    pub(crate) fn matches_key(&self, key: &KeyPair) -> bool {
        key.subject_public_key_info() == self.spki
    }

    /// Whether `issuer`'s key signed this certificate (a name match alone would accept a
    /// certificate from an earlier CA with the same subject).
    pub(crate) fn is_signed_by(&self, issuer: &CertFacts) -> bool {
        let (Ok((_, cert)), Ok((_, issuer))) = (
            x509_parser::parse_x509_certificate(&self.der),
            x509_parser::parse_x509_certificate(&issuer.der),
        ) else {
            return false;
        };
        cert.verify_signature(Some(issuer.public_key())).is_ok()
    }
}

/// Parses the first PEM block of `pem` as an X.509 certificate; the error is a reason for a
/// message.
pub(crate) fn parse_cert(pem: &str) -> Result<CertFacts, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|err| format!("no PEM block ({err})"))?;
    if block.label != "CERTIFICATE" {
        return Err(format!(
            "PEM block is {:?}, expected \"CERTIFICATE\"",
            block.label
        ));
    }
    let cert = block
        .parse_x509()
        .map_err(|err| format!("bad X.509 DER ({err})"))?;
    let is_ca = cert
        .basic_constraints()
        .map_err(|err| format!("bad basicConstraints ({err})"))?
        .is_some_and(|ext| ext.value.ca);
    let mut ips = Vec::new();
    let mut dns = Vec::new();
    let sans = cert
        .subject_alternative_name()
        .map_err(|err| format!("bad subjectAltName ({err})"))?;
    for name in sans.iter().flat_map(|ext| &ext.value.general_names) {
        match name {
            GeneralName::DNSName(name) => dns.push(name.to_string()),
            GeneralName::IPAddress(bytes) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                    ips.push(IpAddr::from(v4));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                    ips.push(IpAddr::from(v6));
                }
            }
            _ => {}
        }
    }
    Ok(CertFacts {
        spki: cert.public_key().raw.to_vec(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        is_ca,
        ips,
        dns,
        der: block.contents,
    })
}

/// Parses a PKCS#8 PEM private key (ECDSA, Ed25519 or RSA); the error is a reason for a message.
pub(crate) fn parse_key(pem: &str) -> Result<KeyPair, String> {
    KeyPair::from_pem(pem).map_err(|err| err.to_string())
}

/// The kind of leaf certificate to issue.
pub(crate) enum LeafProfile<'a> {
    /// Server auth for `names`, with subject CN=`common_name` (and O=`organization`).
    Serving {
        common_name: &'a str,
        organization: Option<&'a str>,
        names: &'a ServingNames,
    },
    Client {
        common_name: &'a str,
        organizations: &'a [&'a str],
    },
}

/// A CA whose key is at hand, ready to sign.
pub(crate) struct CertificateAuthority {
    pub(crate) pem: Pem,
    pub(crate) facts: CertFacts,
    issuer: Issuer<'static, KeyPair>,
}

impl CertificateAuthority {
    /// A new self-signed CA certificate for `key`.
    pub(crate) fn self_signed(key: KeyPair, now: OffsetDateTime) -> Result<Self, PkiError> {
        let issue_error = |err: rcgen::Error| PkiError::Issue {
            what: "CA certificate".into(),
            reason: err.to_string(),
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, CA_COMMON_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key).map_err(issue_error)?;
        let pem = Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        let facts = parse_cert(&pem.cert).map_err(|reason| PkiError::Issue {
            what: "CA certificate".into(),
            reason: format!("rcgen produced an unparsable certificate: {reason}"),
        })?;
        Ok(CertificateAuthority {
            pem,
            facts,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA from PEM handed in by a caller; checks what `ensure_server_pki` checks on disk.
    pub(crate) fn from_pem(ca: &Pem) -> Result<Self, PkiError> {
        let invalid = |what, reason| PkiError::InvalidPem { what, reason };
        let facts = parse_cert(&ca.cert).map_err(|reason| invalid("CA certificate", reason))?;
        let key = parse_key(&ca.key).map_err(|reason| invalid("CA key", reason))?;
        if !facts.is_ca {
            return Err(invalid(
                "CA certificate",
                "basicConstraints CA:TRUE is missing".into(),
            ));
        }
        if !facts.matches_key(&key) {
            return Err(invalid(
                "CA key",
                "it does not belong to the CA certificate".into(),
            ));
        }
        Self::from_parts(ca.clone(), facts, key).map_err(|reason| invalid("CA certificate", reason))
    }

    /// Wraps an already validated certificate and its matching key.
    pub(crate) fn from_parts(pem: Pem, facts: CertFacts, key: KeyPair) -> Result<Self, String> {
        let issuer = Issuer::from_ca_cert_pem(&pem.cert, key).map_err(|err| err.to_string())?;
        Ok(CertificateAuthority { pem, facts, issuer })
    }

    /// Issues a leaf certificate with a fresh ECDSA P-256 key.
    pub(crate) fn issue(
        &self,
        profile: &LeafProfile<'_>,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<Pem, PkiError> {
        let what = match profile {
            LeafProfile::Serving { common_name, .. } => {
                format!("serving certificate for {common_name:?}")
            }
            LeafProfile::Client { common_name, .. } => {
                format!("client certificate for {common_name:?}")
            }
        };
        let issue_error = |reason: String| PkiError::Issue {
            what: what.clone(),
            reason,
        };
        if validity <= Duration::ZERO {
            return Err(issue_error(format!("validity {validity} is not positive")));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        match profile {
            LeafProfile::Serving {
                common_name,
                organization,
                names,
            } => {
                params
                    .distinguished_name
                    .push(DnType::CommonName, *common_name);
                if let Some(organization) = organization {
                    params
                        .distinguished_name
                        .push(DnType::OrganizationName, *organization);
                }
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                params.subject_alt_names =
                    names.ips.iter().copied().map(SanType::IpAddress).collect();
                for name in &names.dns {
                    let name = name.clone().try_into().map_err(|err: rcgen::Error| {
                        issue_error(format!("DNS name {name:?}: {err}"))
                    })?;
                    params.subject_alt_names.push(SanType::DnsName(name));
                }
            }
            LeafProfile::Client {
                common_name,
                organizations,
            } => {
                params
                    .distinguished_name
                    .push(DnType::CommonName, *common_name);
                match organizations {
                    [] => {}
                    [organization] => params
                        .distinguished_name
                        .push(DnType::OrganizationName, *organization),
                    _ => {
                        return Err(issue_error(format!(
                            "{} organizations given, at most one is supported",
                            organizations.len()
                        )));
                    }
                }
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
        }
        // ECDSA keys sign; keyEncipherment only means something for RSA.
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - CLOCK_SKEW;
        // A certificate outliving its CA would only fail verification later, more confusingly.
        params.not_after = (now + validity).min(self.facts.not_after);
        let key = KeyPair::generate().map_err(|err| issue_error(err.to_string()))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|err| issue_error(err.to_string()))?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}
