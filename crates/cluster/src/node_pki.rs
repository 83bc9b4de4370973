//! A node's own certificate: the kubelet's serving certificate, signed by the cluster CA so the
//! apiserver can verify it when it calls the kubelet (logs, exec…).

use std::net::IpAddr;
use std::path::Path;

use time::OffsetDateTime;

use crate::atomic_file::create_private_dir;
use crate::certs::{CertificateAuthority, LeafProfile};
use crate::server_pki::ensure_leaf;
use crate::{Issued, Pem, PkiError, ServingNames};

/// The group of every node's identity, as upstream's kubelet certificates carry it.
pub const NODES_GROUP: &str = "system:nodes";

/// What `ensure_node_serving_cert` returns.
#[derive(Clone, Debug)]
pub struct NodeServing {
    pub pem: Pem,
    /// Set when this call (re)issued the certificate, for the caller to log.
    pub issued: Option<Issued>,
}

/// Loads or issues `dir/kubelet.crt` and `dir/kubelet.key` (e.g. `<data-dir>/agent/tls`): server
/// auth, subject CN `system:node:<node_name>` O `system:nodes` (what upstream's
/// kubelet-serving CSRs ask for), SANs the node's IPs and its name, 1 year, signed by `ca`.
///
/// What exists is reused byte for byte unless it expires within 30 days, no longer pairs with
/// its key or the CA, or does not cover the node's current name and IPs; then a new key and
/// certificate are written (key 0600, certificate 0644, atomically).
pub fn ensure_node_serving_cert(
    dir: &Path,
    ca: &Pem,
    node_name: &str,
    node_ips: &[IpAddr],
) -> Result<NodeServing, PkiError> {
    let ca = CertificateAuthority::from_pem(ca)?;
    create_private_dir(dir)?;
    let names = node_serving_names(node_name, node_ips);
    let common_name = format!("system:node:{node_name}");
    let profile = LeafProfile::Serving {
        common_name: &common_name,
        organization: Some(NODES_GROUP),
        names: &names,
    };
    let mut issued = Vec::new();
    let pem = ensure_leaf(
        &ca,
        dir,
        "kubelet",
        &profile,
        OffsetDateTime::now_utc(),
        &mut issued,
    )?;
    Ok(NodeServing {
        pem,
        issued: issued.pop(),
    })
}

/// The node's IPs (unspecified addresses and duplicates dropped) and its name.
/// A new private key and a certificate signing request (both PEM) for a node's identity.
#[derive(Clone)]
pub struct NodeCsr {
    pub key_pem: String,
    pub csr_pem: String,
}

/// A key and CSR with subject CN `system:node:<node_name>` O `system:nodes`, as upstream's
/// kubelet asks for its certificates: a client one (`serving_ips` None), or a serving one whose
/// SANs are the node's name and `serving_ips`.
pub fn node_csr(node_name: &str, serving_ips: Option<&[IpAddr]>) -> Result<NodeCsr, PkiError> {
    let error = |reason: rcgen::Error| PkiError::Tls {
        what: "the node's certificate request",
        reason: reason.to_string(),
    };
    let mut params = rcgen::CertificateParams::default();
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(
        rcgen::DnType::CommonName,
        format!("system:node:{node_name}"),
    );
    subject.push(rcgen::DnType::OrganizationName, NODES_GROUP);
    params.distinguished_name = subject;
    if let Some(ips) = serving_ips {
        let names = node_serving_names(node_name, ips);
        for dns in names.dns {
            params
                .subject_alt_names
                .push(rcgen::SanType::DnsName(dns.try_into().map_err(error)?));
        }
        params
            .subject_alt_names
            .extend(names.ips.into_iter().map(rcgen::SanType::IpAddress));
    }
    let key = rcgen::KeyPair::generate().map_err(error)?;
    let csr = params.serialize_request(&key).map_err(error)?;
    Ok(NodeCsr {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem().map_err(error)?,
    })
}

/// When the certificate in `cert_pem` expires.
pub fn cert_not_after(cert_pem: &str) -> Result<OffsetDateTime, PkiError> {
    crate::certs::parse_cert(cert_pem)
        .map(|facts| facts.not_after)
        .map_err(|reason| PkiError::InvalidPem {
            what: "certificate",
            reason,
        })
}

/// When the certificate in `cert_pem` starts and stops being valid.
pub fn cert_validity(cert_pem: &str) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
    crate::certs::parse_cert(cert_pem)
        .map(|facts| (facts.not_before, facts.not_after))
        .map_err(|reason| PkiError::InvalidPem {
            what: "certificate",
            reason,
        })
}

fn node_serving_names(node_name: &str, node_ips: &[IpAddr]) -> ServingNames {
    let mut ips = Vec::new();
    for ip in node_ips {
        if !ip.is_unspecified() && !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    ServingNames {
        ips,
        dns: vec![node_name.to_ascii_lowercase()],
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use x509_parser::extensions::GeneralName;

    use super::*;
    use crate::IssueReason;
    use crate::certs::parse_cert;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cluster_ca(dir: &Path) -> Pem {
        let names = ServingNames::for_apiserver(&[], ip("10.96.0.1"));
        crate::ensure_server_pki(dir, &names).unwrap().ca
    }

    /// Subject and SANs as text, read back from the PEM.
    fn subject_and_sans(pem: &str) -> (String, Vec<String>) {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = block.parse_x509().unwrap();
        let sans = cert
            .subject_alternative_name()
            .unwrap()
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .map(|name| match name {
                        GeneralName::DNSName(dns) => format!("DNS:{dns}"),
                        GeneralName::IPAddress(bytes) => {
                            format!("IP:{}", IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap()))
                        }
                        other => format!("{other:?}"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        (cert.subject().to_string(), sans)
    }

    #[test]
    fn node_serving_cert_names_the_node_and_covers_its_ip_and_name() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = cluster_ca(&tmp.path().join("server"));
        let dir = tmp.path().join("agent");
        let node = ensure_node_serving_cert(&dir, &ca, "worker-1", &[ip("10.201.0.1")]).unwrap();
        let (subject, sans) = subject_and_sans(&node.pem.cert);
        assert_eq!(subject, "CN=system:node:worker-1, O=system:nodes");
        assert_eq!(sans, ["IP:10.201.0.1", "DNS:worker-1"]);
        let facts = parse_cert(&node.pem.cert).unwrap();
        assert!(facts.is_signed_by(&parse_cert(&ca.cert).unwrap()));
        assert_eq!(
            node.issued.map(|i| i.reason),
            Some(IssueReason::Missing),
            "a first start issues it"
        );
        assert_eq!(
            fs::read_to_string(dir.join("kubelet.crt")).unwrap(),
            node.pem.cert
        );
        assert_eq!(
            fs::read_to_string(dir.join("kubelet.key")).unwrap(),
            node.pem.key
        );
    }

    #[test]
    fn node_serving_cert_is_reused_while_it_still_fits() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = cluster_ca(&tmp.path().join("server"));
        let dir = tmp.path().join("agent");
        let first = ensure_node_serving_cert(&dir, &ca, "n", &[ip("10.0.0.5")]).unwrap();
        let again = ensure_node_serving_cert(&dir, &ca, "n", &[ip("10.0.0.5")]).unwrap();
        assert_eq!(again.pem, first.pem);
        assert!(again.issued.is_none(), "{:?}", again.issued);
    }

    #[test]
    fn node_serving_cert_is_reissued_for_a_new_ip() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = cluster_ca(&tmp.path().join("server"));
        let dir = tmp.path().join("agent");
        ensure_node_serving_cert(&dir, &ca, "n", &[ip("10.0.0.5")]).unwrap();
        let moved = ensure_node_serving_cert(&dir, &ca, "n", &[ip("10.0.0.6")]).unwrap();
        assert_eq!(
            moved.issued.map(|i| i.reason),
            Some(IssueReason::NamesNotCovered(vec!["10.0.0.6".into()]))
        );
        assert_eq!(
            subject_and_sans(&moved.pem.cert).1,
            ["IP:10.0.0.6", "DNS:n"]
        );
    }

    #[test]
    fn node_serving_cert_from_another_ca_is_reissued() {
        let tmp = tempfile::tempdir().unwrap();
        let old_ca = cluster_ca(&tmp.path().join("old"));
        let new_ca = cluster_ca(&tmp.path().join("new"));
        let dir = tmp.path().join("agent");
        ensure_node_serving_cert(&dir, &old_ca, "n", &[ip("10.0.0.5")]).unwrap();
        let node = ensure_node_serving_cert(&dir, &new_ca, "n", &[ip("10.0.0.5")]).unwrap();
        assert_eq!(
            node.issued.map(|i| i.reason),
            Some(IssueReason::NotSignedByCa)
        );
    }

    #[test]
    fn node_serving_cert_needs_the_ca_key() {
        let tmp = tempfile::tempdir().unwrap();
        let mut ca = cluster_ca(&tmp.path().join("server"));
        ca.key = "not a key".into();
        let err = ensure_node_serving_cert(&tmp.path().join("agent"), &ca, "n", &[]).unwrap_err();
        assert!(matches!(err, PkiError::InvalidPem { .. }), "{err:?}");
    }
}
