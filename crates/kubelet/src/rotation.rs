//! Certificate rotation, as upstream's kubelet does it with `rotateCertificates` and
//! `serverTLSBootstrap`: a new certificate is requested through a CSR at a jittered 70–90% of
//! the current one's lifetime, written beside the old one's files, and presented from the next
//! TLS handshake on (a [`RotatingIdentity`] behind the API client and the kubelet API).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use kube::client::ConfigExt;
use r8s_cluster::Pem;
use r8s_cluster::tls::RotatingIdentity;

/// How long a failed renewal waits before the next try, at most.
const MAX_RETRY: Duration = Duration::from_secs(300);

/// When to renew a certificate valid from `not_before` to `not_after`: at `fraction` (0..1)
/// of the way past 70% of its lifetime, so nodes renewing together spread out.
pub fn renewal_time(not_before: SystemTime, not_after: SystemTime, fraction: f64) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    not_before + lifetime.mul_f64(0.7 + 0.2 * fraction.clamp(0.0, 1.0))
}

/// A number in [0, 1) that differs between processes and calls; jitter needs no more.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The certificate's validity as system times.
fn validity(cert_pem: &str) -> anyhow::Result<(SystemTime, SystemTime)> {
    let (from, to) = r8s_cluster::cert_validity(cert_pem)?;
    Ok((from.into(), to.into()))
}

/// Whether `pem` holds a certificate that is valid now.
pub fn still_valid(pem: &Pem) -> bool {
    validity(&pem.cert).is_ok_and(|(from, to)| {
        let now = SystemTime::now();
        from <= now && now < to
    })
}

/// What a rotated certificate is for.
pub enum Kind {
    /// The client certificate of `system:node:<name>`.
    Client,
    /// The kubelet API's serving certificate for the node's addresses.
    Serving(Vec<IpAddr>),
}

/// One certificate kept rotated: its files are `dir/<name>.crt|key`.
pub struct Rotation {
    pub kind: Kind,
    pub node_name: String,
    pub dir: PathBuf,
    pub name: &'static str,
    pub identity: Arc<RotatingIdentity>,
}

impl Rotation {
    /// Requests a new certificate (with the client's current credentials) and returns it.
    async fn renew(&self, client: &kube::Client) -> anyhow::Result<Pem> {
        let (ips, signer, usages) = match &self.kind {
            Kind::Client => (
                None,
                crate::csr::CLIENT_SIGNER,
                &["digital signature", "client auth"],
            ),
            Kind::Serving(ips) => (
                Some(ips.as_slice()),
                crate::csr::SERVING_SIGNER,
                &["digital signature", "server auth"],
            ),
        };
        let csr = r8s_cluster::node_csr(&self.node_name, ips)?;
        let cert = crate::csr::request_certificate(client, &csr.csr_pem, signer, usages).await?;
        Ok(Pem {
            cert,
            key: csr.key_pem,
        })
    }

    /// Renews the certificate whenever it is due, for as long as the agent runs; `rotated`
    /// sees each new one after it is in use and written.
    pub async fn run(self, client: kube::Client, rotated: impl Fn(&Pem)) {
        let mut retry = Duration::from_secs(5);
        loop {
            let current = self.identity.pem();
            let due = match validity(&current.cert) {
                Ok((from, to)) => renewal_time(from, to, jitter()),
                Err(e) => {
                    tracing::error!("cannot read the {} certificate: {e:#}", self.name);
                    SystemTime::now()
                }
            };
            let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
            tracing::info!(certificate = self.name, ?wait, "next certificate rotation");
            tokio::time::sleep(wait).await;
            loop {
                match self.renew(&client).await.and_then(|pem| self.keep(pem)) {
                    Ok(pem) => {
                        tracing::info!(certificate = self.name, "certificate rotated");
                        rotated(&pem);
                        retry = Duration::from_secs(5);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("cannot rotate the {} certificate: {e:#}", self.name);
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(MAX_RETRY);
                    }
                }
            }
        }
    }

    /// Puts `pem` in use and in the files a restarted agent reads.
    fn keep(&self, pem: Pem) -> anyhow::Result<Pem> {
        self.identity.replace(&pem)?;
        crate::csr::write_pair(&self.dir, self.name, &pem)?;
        Ok(pem)
    }
}

/// An API client for `url` that trusts `ca_pem` and presents whatever `identity` holds at
/// each new connection, so a rotated certificate is used without restarting anything.
pub fn client(
    url: &str,
    ca_pem: &str,
    identity: Arc<RotatingIdentity>,
) -> anyhow::Result<kube::Client> {
    let config = kube::Config::new(url.parse().context("the server URL")?);
    let tls = r8s_cluster::tls::rotating_client_config(ca_pem, identity)?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(30)));
    // Finds a server that went away under a long watch, as kube's read timeout would.
    http.set_keepalive(Some(Duration::from_secs(30)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, kube::client::Body>(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .service(client);
    Ok(kube::Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_between_seventy_and_ninety_percent_of_the_lifetime() {
        let from = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let to = from + Duration::from_secs(100);
        assert_eq!(renewal_time(from, to, 0.0), from + Duration::from_secs(70));
        assert_eq!(renewal_time(from, to, 1.0), from + Duration::from_secs(90));
        assert_eq!(renewal_time(from, to, 7.0), from + Duration::from_secs(90));
        let spread: Vec<f64> = (0..50).map(|_| jitter()).collect();
        assert!(spread.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(spread.iter().any(|j| (j - spread[0]).abs() > 1e-9));
    }
}
