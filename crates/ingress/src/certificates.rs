//! TLS certificates chosen by SNI from the served Ingresses' `spec.tls` entries, each naming a
//! `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`) in the Ingress's namespace.
//!
//! A name no entry covers (or a client sending no SNI) gets the certificate of an entry that
//! lists no hosts, if one exists, else a self-signed one made at start. Handing out another
//! host's certificate instead would fail verification anyway and reveal which names are served;
//! ingress-nginx's "fake certificate" does the same.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::Snapshot;

/// The certificates of the served Ingresses, by host name.
#[derive(Debug, Default)]
pub struct Certificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by what follows `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// From an entry without hosts.
    hostless: Option<Arc<CertifiedKey>>,
}

impl Certificates {
    /// The certificates of `ingresses` (served ones, oldest first: it wins a host named twice),
    /// from `secrets`. Entries that cannot be used are described in `problems`.
    pub fn build(
        ingresses: &[&Ingress],
        secrets: &[Secret],
        problems: &mut Vec<String>,
    ) -> Certificates {
        let provider = rustls::crypto::ring::default_provider();
        let mut certificates = Certificates::default();
        // Parsed once per Secret, however many entries name it.
        let mut parsed: HashMap<(&str, &str), Option<Arc<CertifiedKey>>> = HashMap::new();
        for ingress in ingresses {
            let namespace = ingress.metadata.namespace.as_deref().unwrap_or("default");
            let name = ingress.metadata.name.as_deref().unwrap_or("");
            for entry in ingress.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
                let Some(secret_name) = entry.secret_name.as_deref() else {
                    continue;
                };
                let key = parsed
                    .entry((namespace, secret_name))
                    .or_insert_with(|| {
                        match load(secrets, namespace, secret_name, &provider) {
                            Ok(key) => Some(Arc::new(key)),
                            Err(why) => {
                                problems.push(format!(
                                    "Ingress {namespace}/{name}: TLS secret {namespace}/{secret_name} {why}"
                                ));
                                None
                            }
                        }
                    })
                    .clone();
                let Some(key) = key else { continue };
                let hosts = entry.hosts.as_deref().unwrap_or_default();
                if hosts.is_empty() {
                    certificates.hostless.get_or_insert(key);
                    continue;
                }
                for host in hosts {
                    let host = host.to_ascii_lowercase();
                    match host.strip_prefix("*.") {
                        Some(parent) => certificates.wildcard.entry(parent.to_owned()),
                        None => certificates.exact.entry(host),
                    }
                    .or_insert_with(|| key.clone());
                }
            }
        }
        certificates
    }

    /// The certificate for SNI `name`, if an Ingress provides one.
    pub fn for_name(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let covered = name.and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&name).cloned().or_else(|| {
                let (label, parent) = name.split_once('.')?;
                (!label.is_empty())
                    .then(|| self.wildcard.get(parent).cloned())
                    .flatten()
            })
        });
        covered.or_else(|| self.hostless.clone())
    }
}

/// The Secret's `tls.crt` chain and `tls.key`, checked to belong together.
fn load(
    secrets: &[Secret],
    namespace: &str,
    name: &str,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let secret = secrets
        .iter()
        .find(|s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && s.metadata.name.as_deref() == Some(name)
        })
        .ok_or("not found (it must be of type kubernetes.io/tls)")?;
    let field = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.as_slice())
            .ok_or(format!("has no {key}"))
    };
    let chain = CertificateDer::pem_slice_iter(field("tls.crt")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("has an unreadable tls.crt: {e}"))?;
    if chain.is_empty() {
        return Err("has no certificate in tls.crt".into());
    }
    let key = PrivateKeyDer::from_pem_slice(field("tls.key")?)
        .map_err(|e| format!("has an unreadable tls.key: {e}"))?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| format!("has a tls.key that does not fit tls.crt: {e}"))
}

/// A self-signed certificate for names no Ingress covers; clients are expected to reject it.
pub fn self_signed() -> anyhow::Result<Arc<CertifiedKey>> {
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_owned()])?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "r8s Ingress Controller Fake Certificate",
    );
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let key = PrivateKeyDer::try_from(key.serialize_der()).map_err(anyhow::Error::msg)?;
    let provider = rustls::crypto::ring::default_provider();
    Ok(Arc::new(CertifiedKey::from_der(
        vec![cert.der().clone()],
        key,
        &provider,
    )?))
}

/// Picks each handshake's certificate from the snapshot current at that moment, so a new
/// certificate applies to new connections without touching open ones.
#[derive(Debug)]
pub(crate) struct SniResolver {
    pub(crate) snapshots: watch::Receiver<Arc<Snapshot>>,
    pub(crate) fallback: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.snapshots.borrow().clone();
        let chosen = snapshot.certificates.for_name(hello.server_name());
        Some(chosen.unwrap_or_else(|| self.fallback.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A Secret `name` holding a fresh self-signed certificate for `host`.
    fn secret(name: &str, host: &str) -> Secret {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(
                [
                    ("tls.crt", cert.pem().into_bytes()),
                    ("tls.key", key.serialize_pem().into_bytes()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), k8s_openapi::ByteString(v)))
                .collect(),
            ),
            ..Default::default()
        }
    }

    fn ingress(tls: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"tls": tls},
        }))
        .unwrap()
    }

    fn subject(key: &CertifiedKey) -> Vec<u8> {
        key.end_entity_cert().unwrap().to_vec()
    }

    #[test]
    fn sni_picks_the_exact_then_wildcard_entry() {
        let secrets = [
            secret("exact", "a.example.com"),
            secret("wild", "*.example.com"),
        ];
        let web = ingress(json!([
            {"hosts": ["a.example.com"], "secretName": "exact"},
            {"hosts": ["*.example.com"], "secretName": "wild"},
        ]));
        let mut problems = Vec::new();
        let certificates = Certificates::build(&[&web], &secrets, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let exact = certificates.for_name(Some("A.example.com")).unwrap();
        let wild = certificates.for_name(Some("b.example.com")).unwrap();
        assert_ne!(subject(&exact), subject(&wild));
        assert!(certificates.for_name(Some("a.b.example.com")).is_none());
        assert!(certificates.for_name(None).is_none());
    }

    #[test]
    fn an_entry_without_hosts_covers_every_other_name() {
        let secrets = [secret("any", "example.com")];
        let web = ingress(json!([{"secretName": "any"}]));
        let certificates = Certificates::build(&[&web], &secrets, &mut Vec::new());
        assert!(certificates.for_name(Some("other.org")).is_some());
        assert!(certificates.for_name(None).is_some());
    }

    #[test]
    fn missing_or_mismatched_secrets_are_problems_not_certificates() {
        let mut mismatched = secret("mismatched", "a.example.com");
        let other = secret("other", "a.example.com");
        mismatched.data.as_mut().unwrap().insert(
            "tls.key".into(),
            other.data.as_ref().unwrap()["tls.key"].clone(),
        );
        let web = ingress(json!([
            {"hosts": ["a.example.com"], "secretName": "mismatched"},
            {"hosts": ["b.example.com"], "secretName": "absent"},
        ]));
        let mut problems = Vec::new();
        let certificates = Certificates::build(&[&web], &[mismatched], &mut problems);
        assert!(certificates.for_name(Some("a.example.com")).is_none());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("does not fit"), "{problems:?}");
        assert!(problems[1].contains("not found"), "{problems:?}");
    }

    #[test]
    fn the_fallback_certificate_is_self_signed_and_usable() {
        let key = self_signed().unwrap();
        assert_eq!(key.cert.len(), 1);
        key.keys_match().unwrap();
    }
}
