//! TLS configurations built from the cluster's PEM, shared by every HTTPS endpoint of r8s (the
//! apiserver, the kubelet) and their clients: client certificates signed by the cluster CA are
//! an identity (CN = user, O = groups), as upstream's x509 authenticator reads them.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{ADMIN_ORGANIZATION, Pem, PkiError};

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// An authenticated `user` in `groups`, plus `system:authenticated` as upstream's
    /// authenticators add it.
    pub fn authenticated(user: String, mut groups: Vec<String>) -> Self {
        groups.push("system:authenticated".into());
        Identity { user, groups }
    }

    /// Whether the identity is in `system:masters`, the group every authorizer allows.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == ADMIN_ORGANIZATION)
    }
}

fn tls_error(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> PkiError {
    move |err| PkiError::Tls {
        what,
        reason: err.to_string(),
    }
}

fn roots(ca_pem: &str) -> Result<RootCertStore, PkiError> {
    let error = tls_error("the CA certificate");
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| error(&e))?)
            .map_err(|e| error(&e))?;
    }
    if roots.is_empty() {
        return Err(error(&"no certificate in the PEM"));
    }
    Ok(roots)
}

fn chain_and_key(
    cert_pem: &str,
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error("the certificate")(&e))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls_error("the key")(&e))?;
    Ok((chain, key))
}

/// A certificate and key that can be replaced while in use: new TLS handshakes, client or
/// server side, present the latest one (certificate rotation).
pub struct RotatingIdentity {
    current: std::sync::RwLock<(Pem, Arc<rustls::sign::CertifiedKey>)>,
}

impl std::fmt::Debug for RotatingIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingIdentity").finish_non_exhaustive()
    }
}

fn certified_key(pem: &Pem) -> Result<Arc<rustls::sign::CertifiedKey>, PkiError> {
    let (chain, key) = chain_and_key(&pem.cert, &pem.key)?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key, &provider)
        .map(Arc::new)
        .map_err(|e| tls_error("the certificate and key")(&e))
}

impl RotatingIdentity {
    pub fn new(pem: &Pem) -> Result<Arc<Self>, PkiError> {
        Ok(Arc::new(Self {
            current: std::sync::RwLock::new((pem.clone(), certified_key(pem)?)),
        }))
    }

    /// Presents `pem` from the next handshake on; a bad pair leaves the current one in use.
    pub fn replace(&self, pem: &Pem) -> Result<(), PkiError> {
        let key = certified_key(pem)?;
        *self.current.write().expect("identity lock poisoned") = (pem.clone(), key);
        Ok(())
    }

    /// The certificate and key in use.
    pub fn pem(&self) -> Pem {
        self.current
            .read()
            .expect("identity lock poisoned")
            .0
            .clone()
    }

    fn key(&self) -> Arc<rustls::sign::CertifiedKey> {
        self.current
            .read()
            .expect("identity lock poisoned")
            .1
            .clone()
    }
}

impl rustls::client::ResolvesClientCert for RotatingIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for RotatingIdentity {
    fn resolve(
        &self,
        _client_hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.key())
    }
}

/// [`server_config`] presenting whatever `identity` holds at each handshake.
pub fn rotating_server_config(
    ca_pem: &str,
    identity: Arc<RotatingIdentity>,
) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let error = tls_error("the server TLS configuration");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| error(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error(&e))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// [`client_config`] presenting whatever `identity` holds at each handshake.
pub fn rotating_client_config(
    ca_pem: &str,
    identity: Arc<RotatingIdentity>,
) -> Result<rustls::ClientConfig, PkiError> {
    let error = tls_error("the client TLS configuration");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error(&e))?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_cert_resolver(identity))
}

/// A server configuration with `cert_pem`/`key_pem` that asks for client certificates and
/// verifies those it is given against `ca_pem`. A client without one is let through, so the
/// server can answer 401 (or serve it as anonymous) rather than fail the handshake. Offers
/// HTTP/2 and HTTP/1.1.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let pem = Pem {
        cert: cert_pem.to_owned(),
        key: key_pem.to_owned(),
    };
    rotating_server_config(ca_pem, RotatingIdentity::new(&pem)?)
}

/// A client configuration that presents `client` and trusts only servers whose certificate
/// chains to `ca_pem` and names the address dialled. No ALPN: HTTP/1.1.
pub fn client_config(ca_pem: &str, client: &Pem) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    rotating_client_config(ca_pem, RotatingIdentity::new(client)?).map(Arc::new)
}

/// The identity in a verified client certificate: CN the user, each O a group, plus
/// `system:authenticated` as upstream's authenticators add it.
pub fn identity(cert: &CertificateDer) -> Option<Identity> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let user = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some(Identity::authenticated(user, groups))
}

/// How long a client may take over its TLS handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves HTTPS (HTTP/1.1 with upgrades, and HTTP/2) on `listener` until it fails: each
/// connection's client certificate, if any, becomes the [`Identity`] handed to `handle` with
/// every request. Shared by the API server and the kubelet's API.
pub async fn serve_https<H, F, B>(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    name: &'static str,
    handle: H,
) -> std::io::Result<()>
where
    H: Fn(Option<Identity>, http::Request<hyper::body::Incoming>) -> F
        + Clone
        + Send
        + Sync
        + 'static,
    F: std::future::Future<Output = http::Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    loop {
        let (tcp, peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handle = handle.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "{name}: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(identity);
            let service = hyper::service::service_fn(move |request| {
                let response = handle(identity.clone(), request);
                async move { Ok::<_, std::convert::Infallible>(response.await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "{name}: connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ServingNames, ensure_server_pki, issue_client_cert};

    fn pki() -> (tempfile::TempDir, crate::ServerPki) {
        let tmp = tempfile::tempdir().unwrap();
        let names = ServingNames::for_apiserver(&[], "10.96.0.1".parse().unwrap());
        let pki = ensure_server_pki(tmp.path(), &names).unwrap();
        (tmp, pki)
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn identity_is_cn_and_organizations_plus_authenticated() {
        let (_tmp, pki) = pki();
        let identity = identity(&der(&pki.kubelet_client.cert)).unwrap();
        assert_eq!(identity.user, "kube-apiserver-kubelet-client");
        assert_eq!(identity.groups, ["system:masters", "system:authenticated"]);
        assert!(identity.is_master());
        let plain = issue_client_cert(&pki.ca, "jane", &[], time::Duration::days(1)).unwrap();
        let jane = super::identity(&der(&plain.cert)).unwrap();
        assert_eq!(jane.groups, ["system:authenticated"]);
        assert!(!jane.is_master());
    }

    #[test]
    fn configs_build_from_the_cluster_pem() {
        let (_tmp, pki) = pki();
        server_config(&pki.ca.cert, &pki.serving.cert, &pki.serving.key).unwrap();
        client_config(&pki.ca.cert, &pki.kubelet_client).unwrap();
    }

    #[test]
    fn a_ca_without_certificates_is_an_error() {
        let (_tmp, pki) = pki();
        let err = client_config("", &pki.admin).unwrap_err();
        assert!(err.to_string().contains("CA certificate"), "{err}");
    }
}
