//! The cluster CA as csrsigning signs with it (upstream's `pkg/controller/certificates/authority`
//! with its `PermissiveSigningPolicy`): the request's subject, key and subjectAltNames, the
//! usages of spec.usages, backdated five minutes, never outliving the CA.

use std::time::Duration;

use base64::Engine;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use rcgen::{KeyPair, PublicKeyData, SigningKey};
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER;

use super::der;
use super::request::CertificateRequest;

/// How far NotBefore goes back, for clocks of other machines a little behind ours.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// Certificates living shorter than this do not lose the backdate from their end.
pub const SHORT: Duration = Duration::from_secs(8 * 3600);

const KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
const BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const AUTHORITY_KEY_IDENTIFIER: &[u64] = &[2, 5, 29, 35];
const EXTENDED_KEY_USAGE: &[u64] = &[2, 5, 29, 37];

/// spec.usages that are key usages, and their bit in the keyUsage extension.
const KEY_USAGES: &[(&str, u16)] = &[
    ("signing", 0),
    ("digital signature", 0),
    ("content commitment", 1),
    ("key encipherment", 2),
    ("data encipherment", 3),
    ("key agreement", 4),
    ("cert sign", 5),
    ("crl sign", 6),
    ("encipher only", 7),
    ("decipher only", 8),
];

/// spec.usages that are extended key usages, in the order Go sorts them, with their OIDs.
const EXTENDED_KEY_USAGES: &[(&str, &[u64])] = &[
    ("any", &[2, 5, 29, 37, 0]),
    ("server auth", &[1, 3, 6, 1, 5, 5, 7, 3, 1]),
    ("client auth", &[1, 3, 6, 1, 5, 5, 7, 3, 2]),
    ("code signing", &[1, 3, 6, 1, 5, 5, 7, 3, 3]),
    ("email protection", &[1, 3, 6, 1, 5, 5, 7, 3, 4]),
    ("s/mime", &[1, 3, 6, 1, 5, 5, 7, 3, 4]),
    ("ipsec end system", &[1, 3, 6, 1, 5, 5, 7, 3, 5]),
    ("ipsec tunnel", &[1, 3, 6, 1, 5, 5, 7, 3, 6]),
    ("ipsec user", &[1, 3, 6, 1, 5, 5, 7, 3, 7]),
    ("timestamping", &[1, 3, 6, 1, 5, 5, 7, 3, 8]),
    ("ocsp signing", &[1, 3, 6, 1, 5, 5, 7, 3, 9]),
    ("microsoft sgc", &[1, 3, 6, 1, 4, 1, 311, 10, 3, 3]),
    ("netscape sgc", &[2, 16, 840, 1, 113730, 4, 1]),
];

/// Why a certificate was not issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Something about the request that no retry changes.
    #[error("{0}")]
    Request(String),
    /// The CA cannot sign now (expired, or its key failed).
    #[error("{0}")]
    Authority(String),
}

/// A CA whose key is at hand.
pub struct Authority {
    key: KeyPair,
    /// The CA's subject, the issuer of what it signs.
    subject_der: Vec<u8>,
    key_id: Option<Vec<u8>>,
    not_after: Timestamp,
    /// The AlgorithmIdentifier of the CA key's signatures.
    signature_algorithm: Vec<u8>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// The CA from its certificate and PKCS#8 private key, both PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        let (_, block) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|err| format!("CA certificate: no PEM block ({err})"))?;
        let cert = block
            .parse_x509()
            .map_err(|err| format!("CA certificate: bad X.509 ({err})"))?;
        let key = KeyPair::from_pem(key_pem).map_err(|err| format!("CA key: {err}"))?;
        if key.subject_public_key_info() != cert.public_key().raw {
            return Err("CA key: it does not belong to the CA certificate".into());
        }
        let signature_algorithm = signature_algorithm(&key)?;
        let key_id = match cert.get_extension_unique(&OID_X509_EXT_SUBJECT_KEY_IDENTIFIER) {
            Ok(Some(ext)) => match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            },
            _ => None,
        };
        let not_after = Timestamp::from_second(cert.validity().not_after.timestamp())
            .map_err(|err| format!("CA certificate: NotAfter: {err}"))?;
        Ok(Authority {
            subject_der: cert.subject().as_raw().to_vec(),
            key_id,
            not_after,
            signature_algorithm,
            key,
        })
    }

    /// Signs `request` for `usages` (spec.usages), valid for `ttl` from `now`, under `serial`;
    /// the certificate as PEM. The request's signature is checked first.
    pub fn sign(
        &self,
        request: &CertificateRequest,
        usages: &[String],
        ttl: Duration,
        now: Timestamp,
        serial: [u8; 16],
    ) -> Result<String, SignError> {
        request.verify_signature().map_err(SignError::Request)?;
        let (key_usage, extended) = key_usages(usages).map_err(SignError::Request)?;
        let (not_before, not_after) = self.boundaries(now, ttl)?;
        let mut extensions = Vec::new();
        if key_usage != 0 {
            extensions.push(extension(KEY_USAGE, true, &der::named_bits(key_usage)));
        }
        if !extended.is_empty() {
            let oids: Vec<Vec<u8>> = extended.iter().map(|arcs| der::oid(arcs)).collect();
            let oids: Vec<&[u8]> = oids.iter().map(Vec::as_slice).collect();
            extensions.push(extension(EXTENDED_KEY_USAGE, false, &der::sequence(&oids)));
        }
        // Not a CA: basicConstraints with cA left at its default, false.
        extensions.push(extension(BASIC_CONSTRAINTS, true, &der::sequence(&[])));
        if let Some(id) = &self.key_id {
            let identifier = der::implicit(0, id);
            extensions.push(extension(
                AUTHORITY_KEY_IDENTIFIER,
                false,
                &der::sequence(&[&identifier]),
            ));
        }
        let names = subject_alt_names(request);
        if !names.is_empty() {
            let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
            // RFC 5280: with an empty subject, the names are the identity and critical.
            let empty_subject = request.subject_der == der::sequence(&[]);
            extensions.push(extension(
                SUBJECT_ALT_NAME,
                empty_subject,
                &der::sequence(&names),
            ));
        }
        let extensions: Vec<&[u8]> = extensions.iter().map(Vec::as_slice).collect();
        let tbs = der::sequence(&[
            &der::explicit(0, &der::unsigned(&[2])),
            &der::unsigned(&serial),
            &self.signature_algorithm,
            &self.subject_der,
            &der::sequence(&[&der::time(not_before), &der::time(not_after)]),
            &request.subject_der,
            &request.public_key_der,
            &der::explicit(3, &der::sequence(&extensions)),
        ]);
        let signature = self
            .key
            .sign(&tbs)
            .map_err(|err| SignError::Authority(format!("failed to sign certificate: {err}")))?;
        let cert = der::sequence(&[
            &tbs,
            &self.signature_algorithm,
            &der::bit_string(&signature),
        ]);
        Ok(pem("CERTIFICATE", &cert))
    }

    /// NotBefore and NotAfter (upstream's `PermissiveSigningPolicy`): backdated five minutes;
    /// the end too unless the certificate is short-lived; never past the CA's own end.
    pub fn boundaries(
        &self,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<(Timestamp, Timestamp), SignError> {
        let span = |d: Duration| SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
        let later = |d: Duration| now.checked_add(span(d)).unwrap_or(Timestamp::MAX);
        let not_before = now.checked_sub(span(BACKDATE)).unwrap_or(Timestamp::MIN);
        let not_after = if ttl < SHORT {
            later(ttl)
        } else {
            later(ttl.saturating_sub(BACKDATE))
        };
        if not_before >= self.not_after {
            return Err(SignError::Authority(format!(
                "the signer has expired: NotAfter={}",
                self.not_after
            )));
        }
        if now >= self.not_after {
            return Err(SignError::Authority(format!(
                "refusing to sign a certificate that expired in the past: NotAfter={}",
                self.not_after
            )));
        }
        Ok((not_before, not_after.min(self.not_after)))
    }
}

/// The AlgorithmIdentifier the CA's key signs under.
fn signature_algorithm(key: &KeyPair) -> Result<Vec<u8>, String> {
    let algorithm = key.algorithm();
    if algorithm == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Ok(der::sequence(&[&der::oid(&[1, 2, 840, 10045, 4, 3, 2])]))
    } else if algorithm == &rcgen::PKCS_ECDSA_P384_SHA384 {
        Ok(der::sequence(&[&der::oid(&[1, 2, 840, 10045, 4, 3, 3])]))
    } else if algorithm == &rcgen::PKCS_ED25519 {
        Ok(der::sequence(&[&der::oid(&[1, 3, 101, 112])]))
    } else if algorithm == &rcgen::PKCS_RSA_SHA256 {
        Ok(der::sequence(&[
            &der::oid(&[1, 2, 840, 113549, 1, 1, 11]),
            &der::null(),
        ]))
    } else {
        Err(format!("CA key: cannot sign with a {algorithm:?} key"))
    }
}

/// The keyUsage bits and the extended key usages of spec.usages (upstream's
/// `keyUsagesFromStrings`); an unknown usage is an error.
pub fn key_usages(usages: &[String]) -> Result<(u16, Vec<&'static [u64]>), String> {
    let mut bits = 0u16;
    let mut extended = Vec::new();
    let mut unrecognized = Vec::new();
    for usage in usages {
        if let Some((_, bit)) = KEY_USAGES.iter().find(|(name, _)| name == usage) {
            bits |= 1 << bit;
        } else if let Some(position) = EXTENDED_KEY_USAGES.iter().position(|(n, _)| n == usage) {
            extended.push(position);
        } else {
            unrecognized.push(format!("{usage:?}"));
        }
    }
    if !unrecognized.is_empty() {
        return Err(format!(
            "unrecognized usage values: [{}]",
            unrecognized.join(" ")
        ));
    }
    let mut oids: Vec<&'static [u64]> = extended
        .into_iter()
        .map(|i| EXTENDED_KEY_USAGES[i].1)
        .collect();
    oids.sort_by_key(|oid| EXTENDED_KEY_USAGES.iter().position(|(_, o)| o == oid));
    oids.dedup();
    Ok((bits, oids))
}

fn subject_alt_names(request: &CertificateRequest) -> Vec<Vec<u8>> {
    let dns = request
        .dns_names
        .iter()
        .map(|n| der::implicit(2, n.as_bytes()));
    let emails = request
        .emails
        .iter()
        .map(|e| der::implicit(1, e.as_bytes()));
    let ips = request.ips.iter().map(|ip| match ip {
        std::net::IpAddr::V4(v4) => der::implicit(7, &v4.octets()),
        std::net::IpAddr::V6(v6) => der::implicit(7, &v6.octets()),
    });
    let uris = request.uris.iter().map(|u| der::implicit(6, u.as_bytes()));
    // The order Go writes them in.
    dns.chain(emails).chain(ips).chain(uris).collect()
}

fn extension(id: &[u64], critical: bool, value: &[u8]) -> Vec<u8> {
    let id = der::oid(id);
    let value = der::octet_string(value);
    if critical {
        der::sequence(&[&id, &der::boolean(true), &value])
    } else {
        der::sequence(&[&id, &value])
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let base64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in base64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::certificates::request::tests::{parsed, request_pem};
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyUsagePurpose,
    };
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::GeneralName;

    pub(crate) const SERIAL: [u8; 16] = [0x9a; 16];

    /// A self-signed CA like `r8s server`'s, valid from `not_before` for `days`: (cert, key).
    pub(crate) fn ca_pem(not_before: Timestamp, days: i64) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "r8s-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let start = time::OffsetDateTime::from_unix_timestamp(not_before.as_second()).unwrap();
        params.not_before = start;
        params.not_after = start + time::Duration::days(days);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub(crate) fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn authority() -> (Authority, String) {
        let (cert, key) = ca_pem(now() - SignedDuration::from_hours(24), 3650);
        (Authority::from_pem(&cert, &key).unwrap(), cert)
    }

    fn strings(usages: &[&str]) -> Vec<String> {
        usages.iter().map(|s| s.to_string()).collect()
    }

    /// Parses `pem` and hands the certificate to `check`.
    pub(crate) fn with_certificate(pem: &str, check: impl FnOnce(&X509Certificate<'_>)) {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        assert_eq!(block.label, "CERTIFICATE");
        check(&block.parse_x509().unwrap());
    }

    #[test]
    fn a_signed_certificate_has_the_requests_subject_key_and_names() {
        let (ca, ca_cert) = authority();
        let request = parsed("system:node:n1", &["system:nodes"], &["n1", "10.0.0.7"]);
        let pem = ca
            .sign(
                &request,
                &strings(&["digital signature", "server auth"]),
                Duration::from_secs(3600),
                now(),
                SERIAL,
            )
            .unwrap();
        with_certificate(&pem, |cert| {
            let subject = cert.subject();
            let cn: Vec<_> = subject
                .iter_common_name()
                .map(|a| a.as_str().unwrap())
                .collect();
            let o: Vec<_> = subject
                .iter_organization()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(cn, ["system:node:n1"]);
            assert_eq!(o, ["system:nodes"]);
            assert_eq!(cert.public_key().raw, request.public_key_der);
            assert_eq!(cert.serial.to_bytes_be(), SERIAL);
            let names = &cert
                .subject_alternative_name()
                .unwrap()
                .unwrap()
                .value
                .general_names;
            assert_eq!(
                names,
                &[
                    GeneralName::DNSName("n1"),
                    GeneralName::IPAddress(&[10, 0, 0, 7])
                ]
            );
            let ku = cert.key_usage().unwrap().unwrap();
            assert!(ku.critical);
            assert!(ku.value.digital_signature() && !ku.value.key_encipherment());
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.server_auth && !eku.client_auth);
            assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
            // Signed by the CA, and named after it.
            let (_, ca_block) = x509_parser::pem::parse_x509_pem(ca_cert.as_bytes()).unwrap();
            let ca_x509 = ca_block.parse_x509().unwrap();
            assert_eq!(cert.issuer(), ca_x509.subject());
            cert.verify_signature(Some(ca_x509.public_key())).unwrap();
            let aki = cert
                .extensions()
                .iter()
                .find(|e| e.oid.to_id_string() == "2.5.29.35")
                .expect("an authority key identifier");
            assert!(!aki.critical);
        });
    }

    #[test]
    fn a_subject_with_several_organizations_keeps_them_all() {
        let (ca, _) = authority();
        let request = parsed("jane", &["dev", "ops"], &[]);
        let pem = ca
            .sign(
                &request,
                &strings(&["client auth"]),
                Duration::from_secs(3600),
                now(),
                SERIAL,
            )
            .unwrap();
        with_certificate(&pem, |cert| {
            let o: Vec<_> = cert
                .subject()
                .iter_organization()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(o, ["dev", "ops"]);
            assert!(
                cert.key_usage().unwrap().is_none(),
                "no key usage was asked for"
            );
        });
    }

    #[test]
    fn a_long_lived_certificate_is_backdated_at_both_ends() {
        let (ca, _) = authority();
        let year = Duration::from_secs(365 * 24 * 3600);
        let (from, to) = ca.boundaries(now(), year).unwrap();
        assert_eq!(from, now() - SignedDuration::from_mins(5));
        assert_eq!(
            to,
            now() + SignedDuration::try_from(year).unwrap() - SignedDuration::from_mins(5)
        );
    }

    #[test]
    fn a_short_lived_certificate_keeps_its_whole_end() {
        let (ca, _) = authority();
        let (from, to) = ca.boundaries(now(), Duration::from_secs(600)).unwrap();
        assert_eq!(from, now() - SignedDuration::from_mins(5));
        assert_eq!(to, now() + SignedDuration::from_mins(10));
    }

    #[test]
    fn no_certificate_outlives_its_ca() {
        let (cert, key) = ca_pem(now() - SignedDuration::from_hours(24), 2);
        let ca = Authority::from_pem(&cert, &key).unwrap();
        let (_, to) = ca
            .boundaries(now(), Duration::from_secs(365 * 24 * 3600))
            .unwrap();
        assert_eq!(to, now() + SignedDuration::from_hours(24));
    }

    #[test]
    fn an_expired_ca_signs_nothing() {
        let (cert, key) = ca_pem(now() - SignedDuration::from_hours(72), 1);
        let ca = Authority::from_pem(&cert, &key).unwrap();
        let err = ca.boundaries(now(), Duration::from_secs(3600)).unwrap_err();
        assert!(matches!(err, SignError::Authority(_)), "{err}");
    }

    #[test]
    fn a_key_that_is_not_the_cas_is_refused() {
        let (cert, _) = ca_pem(now(), 10);
        let other = KeyPair::generate().unwrap().serialize_pem();
        let err = Authority::from_pem(&cert, &other).unwrap_err();
        assert!(err.contains("does not belong"), "{err}");
    }

    #[test]
    fn usages_map_to_key_usage_bits_and_sorted_extended_usages() {
        let (bits, extended) = key_usages(&strings(&[
            "client auth",
            "digital signature",
            "key encipherment",
            "server auth",
        ]))
        .unwrap();
        assert_eq!(bits, 0b101);
        assert_eq!(
            extended,
            [
                &[1, 3, 6, 1, 5, 5, 7, 3, 1][..],
                &[1, 3, 6, 1, 5, 5, 7, 3, 2][..]
            ]
        );
        assert_eq!(
            key_usages(&strings(&["client auth", "teleport"])).unwrap_err(),
            "unrecognized usage values: [\"teleport\"]"
        );
    }

    #[test]
    fn a_request_with_a_forged_signature_is_not_signed() {
        let (ca, _) = authority();
        let pem = request_pem("jane", &[], &[]);
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let mut der = block.contents;
        *der.last_mut().unwrap() ^= 1;
        let forged = super::pem("CERTIFICATE REQUEST", &der);
        let request = CertificateRequest::parse(forged.as_bytes()).unwrap();
        let err = ca
            .sign(
                &request,
                &strings(&["client auth"]),
                Duration::from_secs(3600),
                now(),
                SERIAL,
            )
            .unwrap_err();
        assert!(matches!(err, SignError::Request(_)), "{err}");
    }
}
