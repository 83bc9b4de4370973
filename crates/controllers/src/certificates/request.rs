//! A CertificateSigningRequest's PKCS#10 request as upstream's approver and signers read it,
//! and the shapes the kubelet signers accept (upstream's `pkg/apis/certificates/helpers.go`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// The organization every node's certificate carries.
pub const NODES_GROUP: &str = "system:nodes";
/// How a node's user name (the certificate's common name) begins.
pub const NODE_USER_PREFIX: &str = "system:node:";

pub const USAGE_DIGITAL_SIGNATURE: &str = "digital signature";
pub const USAGE_KEY_ENCIPHERMENT: &str = "key encipherment";
pub const USAGE_CLIENT_AUTH: &str = "client auth";
pub const USAGE_SERVER_AUTH: &str = "server auth";

/// SubjectPublicKeyInfo algorithms of ML-DSA-44, -65 and -87 (FIPS 204).
const ML_DSA: [&[u64]; 3] = [
    &[2, 16, 840, 1, 101, 3, 4, 3, 17],
    &[2, 16, 840, 1, 101, 3, 4, 3, 18],
    &[2, 16, 840, 1, 101, 3, 4, 3, 19],
];

/// What a request asks for, copied out of its DER.
#[derive(Debug, Clone)]
pub struct CertificateRequest {
    /// The whole request, to check its signature.
    der: Vec<u8>,
    /// The last CN of the subject, as Go's `pkix.Name` keeps it.
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub emails: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub ml_dsa_key: bool,
    /// The subject Name and the SubjectPublicKeyInfo, DER, as the requester encoded them.
    pub(crate) subject_der: Vec<u8>,
    pub(crate) public_key_der: Vec<u8>,
}

impl CertificateRequest {
    /// Reads the first PEM block of `pem` (spec.request), which must be a CERTIFICATE REQUEST
    /// (upstream's `ParseCSR`); the error is a reason for a message.
    pub fn parse(pem: &[u8]) -> Result<Self, String> {
        let block = x509_parser::pem::parse_x509_pem(pem)
            .ok()
            .map(|(_, block)| block)
            .filter(|block| block.label == "CERTIFICATE REQUEST")
            .ok_or("PEM block type must be CERTIFICATE REQUEST")?;
        let (_, request) = X509CertificationRequest::from_der(&block.contents)
            .map_err(|err| format!("bad certificate request: {err}"))?;
        let info = &request.certification_request_info;
        let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
            attr.as_str()
                .map(str::to_owned)
                .map_err(|err| format!("bad subject attribute: {err}"))
        };
        let common_name = match info.subject.iter_common_name().last() {
            Some(attr) => text(attr)?,
            None => String::new(),
        };
        let organizations = info
            .subject
            .iter_organization()
            .map(text)
            .collect::<Result<_, _>>()?;
        let algorithm: Vec<u64> = info
            .subject_pki
            .algorithm
            .algorithm
            .iter()
            .map(Iterator::collect)
            .unwrap_or_default();
        let mut parsed = CertificateRequest {
            der: block.contents.clone(),
            common_name,
            organizations,
            dns_names: Vec::new(),
            emails: Vec::new(),
            ips: Vec::new(),
            uris: Vec::new(),
            ml_dsa_key: ML_DSA.contains(&algorithm.as_slice()),
            subject_der: info.subject.as_raw().to_vec(),
            public_key_der: info.subject_pki.raw.to_vec(),
        };
        let sans = request.requested_extensions().into_iter().flatten();
        for names in sans.filter_map(|ext| match ext {
            ParsedExtension::SubjectAlternativeName(san) => Some(&san.general_names),
            _ => None,
        }) {
            for name in names {
                match name {
                    GeneralName::DNSName(name) => parsed.dns_names.push((*name).to_owned()),
                    GeneralName::RFC822Name(name) => parsed.emails.push((*name).to_owned()),
                    GeneralName::URI(name) => parsed.uris.push((*name).to_owned()),
                    GeneralName::IPAddress(bytes) => parsed.ips.push(ip_of(bytes)?),
                    // Go's parser skips the other kinds, and its signer does not copy them.
                    _ => {}
                }
            }
        }
        Ok(parsed)
    }

    /// Whether the request is signed by the key it asks a certificate for (proof that the
    /// requester holds that key).
    pub fn verify_signature(&self) -> Result<(), String> {
        let (_, request) = X509CertificationRequest::from_der(&self.der)
            .map_err(|err| format!("bad certificate request: {err}"))?;
        request
            .verify_signature()
            .map_err(|err| format!("unable to verify certificate request signature: {err}"))
    }

    fn has_organizations(&self, wanted: &[&str]) -> bool {
        self.organizations
            .iter()
            .map(String::as_str)
            .eq(wanted.iter().copied())
    }
}

fn ip_of(bytes: &[u8]) -> Result<IpAddr, String> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Ok(IpAddr::from(v6))
    } else {
        Err(format!("bad IP subjectAltName of {} bytes", bytes.len()))
    }
}

/// spec.usages as a set, as upstream compares them.
pub fn usage_set(usages: &[String]) -> BTreeSet<&str> {
    usages.iter().map(String::as_str).collect()
}

/// How Go prints a sorted `[]string`: `[a b c]`.
fn listed(usages: &[&str]) -> String {
    let mut sorted = usages.to_vec();
    sorted.sort_unstable();
    format!("[{}]", sorted.join(" "))
}

/// The usages allowed with or without `key encipherment` (which only RSA keys use).
fn usages_match(usages: &BTreeSet<&str>, with_rsa: &[&str]) -> Result<(), String> {
    let without_rsa: BTreeSet<&str> = with_rsa
        .iter()
        .copied()
        .filter(|u| *u != USAGE_KEY_ENCIPHERMENT)
        .collect();
    let with_rsa_set: BTreeSet<&str> = with_rsa.iter().copied().collect();
    if *usages == with_rsa_set || *usages == without_rsa {
        Ok(())
    } else {
        Err(format!("usages did not match {}", listed(with_rsa)))
    }
}

/// Upstream's `ValidateKubeletClientCSR`: O exactly `system:nodes`, CN `system:node:…`, no
/// subjectAltNames, usages digital signature + client auth (+ key encipherment).
pub fn validate_kubelet_client(
    request: &CertificateRequest,
    usages: &BTreeSet<&str>,
) -> Result<(), String> {
    if !request.has_organizations(&[NODES_GROUP]) {
        return Err("subject organization is not system:nodes".into());
    }
    if !request.dns_names.is_empty() {
        return Err("DNS subjectAltNames are not allowed".into());
    }
    if !request.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !request.ips.is_empty() {
        return Err("IP subjectAltNames are not allowed".into());
    }
    if !request.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    if !request.common_name.starts_with(NODE_USER_PREFIX) {
        return Err("subject common name does not begin with system:node:".into());
    }
    usages_match(
        usages,
        &[
            USAGE_DIGITAL_SIGNATURE,
            USAGE_KEY_ENCIPHERMENT,
            USAGE_CLIENT_AUTH,
        ],
    )?;
    ml_dsa_usages(request, usages)
}

/// Upstream's `ValidateKubeletServingCSR`: O exactly `system:nodes`, at least one DNS or IP
/// subjectAltName and no others, usages digital signature + server auth (+ key encipherment),
/// CN `system:node:…`.
pub fn validate_kubelet_serving(
    request: &CertificateRequest,
    usages: &BTreeSet<&str>,
) -> Result<(), String> {
    if !request.has_organizations(&[NODES_GROUP]) {
        return Err("subject organization is not system:nodes".into());
    }
    if request.dns_names.is_empty() && request.ips.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if !request.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !request.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    usages_match(
        usages,
        &[
            USAGE_DIGITAL_SIGNATURE,
            USAGE_KEY_ENCIPHERMENT,
            USAGE_SERVER_AUTH,
        ],
    )?;
    ml_dsa_usages(request, usages)?;
    if !request.common_name.starts_with(NODE_USER_PREFIX) {
        return Err("subject common name does not begin with system:node:".into());
    }
    Ok(())
}

/// Upstream's `validAPIServerClientUsages`: client auth, optionally digital signature and key
/// encipherment, nothing else.
pub fn validate_apiserver_client_usages(
    request: &CertificateRequest,
    usages: &[String],
) -> Result<(), String> {
    let mut client_auth = false;
    for usage in usages {
        match usage.as_str() {
            USAGE_DIGITAL_SIGNATURE | USAGE_KEY_ENCIPHERMENT => {}
            USAGE_CLIENT_AUTH => client_auth = true,
            other => return Err(format!("invalid usage for client certificate: {other}")),
        }
    }
    if !client_auth {
        return Err(format!(
            "missing required usage for client certificate: {USAGE_CLIENT_AUTH}"
        ));
    }
    ml_dsa_usages(request, &usage_set(usages))
}

/// Upstream's `ValidateMLDSAKeyUsages`: an ML-DSA key only signs.
fn ml_dsa_usages(request: &CertificateRequest, usages: &BTreeSet<&str>) -> Result<(), String> {
    const DISALLOWED: [&str; 5] = [
        "key encipherment",
        "key agreement",
        "data encipherment",
        "encipher only",
        "decipher only",
    ];
    const AT_LEAST_ONE_OF: [&str; 4] = [
        "digital signature",
        "content commitment",
        "cert sign",
        "crl sign",
    ];
    if !request.ml_dsa_key {
        return Ok(());
    }
    let mut errors: Vec<String> = usages
        .iter()
        .filter(|u| DISALLOWED.contains(u))
        .map(|u| format!("usage {u} cannot be used with an ML-DSA signed certificate request"))
        .collect();
    if !usages.iter().any(|u| AT_LEAST_ONE_OF.contains(u)) {
        errors.push(format!(
            "usages must contain at least one of {}",
            listed(&AT_LEAST_ONE_OF)
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "validating usages for ml-dsa key: {}",
            errors.join("\n")
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    /// A PEM request for subject `/O=…/CN=…` with `sans`, signed by a fresh P-256 key.
    pub(crate) fn request_pem(common_name: &str, organizations: &[&str], sans: &[&str]) -> String {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        match organizations {
            [] => {}
            [one] => params
                .distinguished_name
                .push(DnType::OrganizationName, *one),
            // rcgen keeps one value per attribute type; a second O goes in under its OID.
            [one, two] => {
                params
                    .distinguished_name
                    .push(DnType::OrganizationName, *one);
                params
                    .distinguished_name
                    .push(DnType::CustomDnType(vec![2, 5, 4, 10]), *two);
            }
            _ => panic!("at most two organizations in tests"),
        }
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for san in sans {
            params.subject_alt_names.push(match san.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) if san.contains('@') => SanType::Rfc822Name((*san).try_into().unwrap()),
                Err(_) if san.contains("://") => SanType::URI((*san).try_into().unwrap()),
                Err(_) => SanType::DnsName((*san).try_into().unwrap()),
            });
        }
        let key = KeyPair::generate().unwrap();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    pub(crate) fn parsed(
        common_name: &str,
        organizations: &[&str],
        sans: &[&str],
    ) -> CertificateRequest {
        CertificateRequest::parse(request_pem(common_name, organizations, sans).as_bytes()).unwrap()
    }

    fn set<'a>(usages: &[&'a str]) -> BTreeSet<&'a str> {
        usages.iter().copied().collect()
    }

    const CLIENT: [&str; 2] = [USAGE_DIGITAL_SIGNATURE, USAGE_CLIENT_AUTH];
    const SERVING: [&str; 2] = [USAGE_DIGITAL_SIGNATURE, USAGE_SERVER_AUTH];

    #[test]
    fn a_request_is_read_for_its_subject_and_names() {
        let request = parsed(
            "system:node:n1",
            &[NODES_GROUP],
            &["n1", "10.0.0.1", "a@b.c"],
        );
        assert_eq!(request.common_name, "system:node:n1");
        assert_eq!(request.organizations, [NODES_GROUP]);
        assert_eq!(request.dns_names, ["n1"]);
        assert_eq!(request.ips, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(request.emails, ["a@b.c"]);
        assert!(request.verify_signature().is_ok());
    }

    #[test]
    fn only_a_certificate_request_pem_block_is_a_request() {
        let err = CertificateRequest::parse(b"not pem").unwrap_err();
        assert_eq!(err, "PEM block type must be CERTIFICATE REQUEST");
        let key = KeyPair::generate().unwrap().serialize_pem();
        assert!(CertificateRequest::parse(key.as_bytes()).is_err());
    }

    #[test]
    fn a_request_whose_signature_does_not_match_its_key_fails_verification() {
        let mut request = parsed("jane", &[], &[]);
        // Flip a bit of the signature, the last byte of the DER.
        *request.der.last_mut().unwrap() ^= 1;
        let err = request.verify_signature().unwrap_err();
        assert!(err.starts_with("unable to verify"), "{err}");
    }

    #[test]
    fn a_node_client_request_is_o_system_nodes_cn_system_node_and_no_names() {
        let request = parsed("system:node:n1", &[NODES_GROUP], &[]);
        assert_eq!(validate_kubelet_client(&request, &set(&CLIENT)), Ok(()));
        let legacy = set(&[
            USAGE_DIGITAL_SIGNATURE,
            USAGE_KEY_ENCIPHERMENT,
            USAGE_CLIENT_AUTH,
        ]);
        assert_eq!(validate_kubelet_client(&request, &legacy), Ok(()));
    }

    #[test]
    fn node_client_requests_of_other_shapes_are_refused_with_upstreams_reasons() {
        let check = |request: CertificateRequest, usages: &[&str]| {
            validate_kubelet_client(&request, &set(usages)).unwrap_err()
        };
        let nodes = &[NODES_GROUP][..];
        assert_eq!(
            check(parsed("system:node:n1", &["other"], &[]), &CLIENT),
            "subject organization is not system:nodes"
        );
        assert_eq!(
            check(parsed("system:node:n1", &[NODES_GROUP, "x"], &[]), &CLIENT),
            "subject organization is not system:nodes"
        );
        assert_eq!(
            check(parsed("system:node:n1", nodes, &["n1"]), &CLIENT),
            "DNS subjectAltNames are not allowed"
        );
        assert_eq!(
            check(parsed("system:node:n1", nodes, &["10.0.0.1"]), &CLIENT),
            "IP subjectAltNames are not allowed"
        );
        assert_eq!(
            check(parsed("system:node:n1", nodes, &["n@x.y"]), &CLIENT),
            "Email subjectAltNames are not allowed"
        );
        assert_eq!(
            check(parsed("system:node:n1", nodes, &["spiffe://x"]), &CLIENT),
            "URI subjectAltNames are not allowed"
        );
        assert_eq!(
            check(parsed("jane", nodes, &[]), &CLIENT),
            "subject common name does not begin with system:node:"
        );
        assert_eq!(
            check(
                parsed("system:node:n1", nodes, &[]),
                &[USAGE_CLIENT_AUTH, USAGE_SERVER_AUTH]
            ),
            "usages did not match [client auth digital signature key encipherment]"
        );
    }

    #[test]
    fn a_node_serving_request_needs_a_name_and_server_auth() {
        let nodes = &[NODES_GROUP][..];
        let ok = parsed("system:node:n1", nodes, &["n1", "10.0.0.1"]);
        assert_eq!(validate_kubelet_serving(&ok, &set(&SERVING)), Ok(()));
        let nameless = parsed("system:node:n1", nodes, &[]);
        assert_eq!(
            validate_kubelet_serving(&nameless, &set(&SERVING)).unwrap_err(),
            "DNS or IP subjectAltName is required"
        );
        assert_eq!(
            validate_kubelet_serving(&ok, &set(&CLIENT)).unwrap_err(),
            "usages did not match [digital signature key encipherment server auth]"
        );
        let not_a_node = parsed("jane", nodes, &["n1"]);
        assert_eq!(
            validate_kubelet_serving(&not_a_node, &set(&SERVING)).unwrap_err(),
            "subject common name does not begin with system:node:"
        );
    }

    #[test]
    fn an_apiserver_client_needs_client_auth_and_nothing_beyond_signing() {
        let request = parsed("jane", &["dev"], &[]);
        let usages = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            validate_apiserver_client_usages(&request, &usages(&CLIENT)),
            Ok(())
        );
        assert_eq!(
            validate_apiserver_client_usages(
                &request,
                &usages(&[USAGE_CLIENT_AUTH, USAGE_SERVER_AUTH])
            )
            .unwrap_err(),
            "invalid usage for client certificate: server auth"
        );
        assert_eq!(
            validate_apiserver_client_usages(&request, &usages(&[USAGE_DIGITAL_SIGNATURE]))
                .unwrap_err(),
            "missing required usage for client certificate: client auth"
        );
    }

    #[test]
    fn an_ml_dsa_key_may_not_encipher() {
        let mut request = parsed("system:node:n1", &[NODES_GROUP], &[]);
        request.ml_dsa_key = true;
        let legacy = set(&[
            USAGE_DIGITAL_SIGNATURE,
            USAGE_KEY_ENCIPHERMENT,
            USAGE_CLIENT_AUTH,
        ]);
        assert_eq!(
            validate_kubelet_client(&request, &legacy).unwrap_err(),
            "validating usages for ml-dsa key: usage key encipherment cannot be used with an ML-DSA signed certificate request"
        );
        assert_eq!(validate_kubelet_client(&request, &set(&CLIENT)), Ok(()));
    }
}
