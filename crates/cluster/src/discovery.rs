//! Finding the cluster CA from a join command, as `kubeadm join --discovery-token-ca-cert-hash`
//! pins it: one TLS handshake with the server reads the chain it presents (the API server sends
//! the CA after its own certificate), and the certificate whose public key hashes to the pinned
//! value is the CA. Nothing is sent over that connection; every later connection verifies the
//! server against the CA found, so a server that merely shows a copy of the CA fails there.

use std::sync::{Arc, Mutex};

use base64::Engine;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::{PkiError, ca_cert_hash};

/// Accepts any chain, keeping a copy: only used to read what the server presents.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = self.chain.lock().expect("recorder lock");
        chain.push(end_entity.clone().into_owned());
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn pem_of(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

fn failed(reason: impl Into<String>) -> PkiError {
    PkiError::Tls {
        what: "the cluster CA discovery",
        reason: reason.into(),
    }
}

/// The PEM of the CA the server at `host:port` presents whose hash is `pinned`
/// (`sha256:<hex>`, see [`ca_cert_hash`]).
pub async fn discover_ca(host: &str, port: u16, pinned: &str) -> Result<String, PkiError> {
    let pinned = pinned.trim().to_lowercase();
    if !pinned.starts_with("sha256:") || pinned.len() != 7 + 64 {
        return Err(failed(format!(
            "the CA hash {pinned:?} is not of the form sha256:<64 hex digits>"
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).map_err(|e| failed(e.to_string()))?;
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| failed(format!("cannot connect to {host}:{port}: {e}")))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| failed(format!("TLS handshake with {host}:{port} failed: {e}")))?;
    let chain = recorder.chain.lock().expect("recorder lock").clone();
    for cert in &chain {
        let pem = pem_of(cert);
        if ca_cert_hash(&pem).is_ok_and(|hash| hash == pinned) {
            return Ok(pem);
        }
    }
    Err(failed(format!(
        "the server at {host}:{port} did not present a CA with hash {pinned} ({} certificates \
         presented): it is not the cluster the join command names",
        chain.len()
    )))
}
