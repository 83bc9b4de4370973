//! Certificates through the `certificates.k8s.io/v1` API, as upstream's kubelet gets them on
//! TLS bootstrap: a CertificateSigningRequest is created, then read until the signer has
//! issued it (or someone denied it).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

/// The signer of kubelet client certificates.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of kubelet serving certificates.
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The files (`.crt`, `.key`) of the kubelet's client and serving certificates.
pub const CLIENT_NAME: &str = "kubelet-client";
pub const SERVING_NAME: &str = "kubelet-serving";
/// How long a request may wait for approval and signing.
const WAIT: Duration = Duration::from_secs(300);

/// Submits `csr_pem` to `signer` with `usages` and waits for the certificate (PEM).
pub async fn request_certificate(
    client: &Client,
    csr_pem: &str,
    signer: &str,
    usages: &[&str],
) -> anyhow::Result<String> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let request = CertificateSigningRequest {
        metadata: kube::api::ObjectMeta {
            generate_name: Some("csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.as_bytes().to_vec()),
            signer_name: signer.into(),
            usages: Some(usages.iter().map(|u| (*u).to_owned()).collect()),
            ..Default::default()
        },
        status: None,
    };
    let created = api
        .create(&PostParams::default(), &request)
        .await
        .with_context(|| format!("cannot create a certificate signing request for {signer}"))?;
    let name = created.metadata.name.unwrap_or_default();
    tracing::info!(csr = %name, signer, "waiting for the certificate to be issued");
    let began = tokio::time::Instant::now();
    loop {
        let current = api
            .get(&name)
            .await
            .with_context(|| format!("cannot read certificate signing request {name}"))?;
        let status = current.status.unwrap_or_default();
        for condition in status.conditions.iter().flatten() {
            if matches!(condition.type_.as_str(), "Denied" | "Failed") && condition.status == "True"
            {
                bail!(
                    "certificate signing request {name} was {}: {}",
                    condition.type_.to_lowercase(),
                    condition.message.clone().unwrap_or_default()
                );
            }
        }
        if let Some(certificate) = status.certificate.filter(|c| !c.0.is_empty()) {
            return String::from_utf8(certificate.0)
                .context("the issued certificate is not PEM text");
        }
        if began.elapsed() > WAIT {
            bail!(
                "certificate signing request {name} was not issued within {WAIT:?}: approve it with \
                 `kubectl certificate approve {name}`"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Reuses `dir/<name>.crt` and `.key` while the certificate is valid (rotation renews it
/// before it ends); otherwise gets a new one with `fresh` and keeps it there.
pub async fn kept_certificate<F, Fut>(
    dir: &Path,
    name: &str,
    fresh: F,
) -> anyhow::Result<r8s_cluster::Pem>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<r8s_cluster::Pem>>,
{
    if let (Ok(cert), Ok(key)) = (
        std::fs::read_to_string(dir.join(format!("{name}.crt"))),
        std::fs::read_to_string(dir.join(format!("{name}.key"))),
    ) {
        let pem = r8s_cluster::Pem { cert, key };
        if crate::rotation::still_valid(&pem) {
            return Ok(pem);
        }
    }
    let pem = fresh().await?;
    write_pair(dir, name, &pem)?;
    Ok(pem)
}

/// Writes `dir/<name>.key` (private) and `dir/<name>.crt`.
pub fn write_pair(dir: &Path, name: &str, pem: &r8s_cluster::Pem) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_private(&dir.join(format!("{name}.key")), &pem.key)?;
    let cert_path = dir.join(format!("{name}.crt"));
    std::fs::write(&cert_path, &pem.cert)
        .with_context(|| format!("cannot write {}", cert_path.display()))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// A serving certificate for the kubelet API from the `kubelet-serving` signer (kept in
/// `dir/kubelet-serving.*`), for a node that joined with a bootstrap token.
pub async fn serving_certificate(
    client: &Client,
    dir: &Path,
    node_name: &str,
    node_ip: std::net::IpAddr,
) -> anyhow::Result<r8s_cluster::Pem> {
    kept_certificate(dir, SERVING_NAME, || async {
        let csr = r8s_cluster::node_csr(node_name, Some(&[node_ip]))?;
        let cert = request_certificate(
            client,
            &csr.csr_pem,
            SERVING_SIGNER,
            &["digital signature", "server auth"],
        )
        .await?;
        Ok(r8s_cluster::Pem {
            cert,
            key: csr.key_pem,
        })
    })
    .await
}
