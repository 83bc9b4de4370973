//! Calling a webhook: where its `clientConfig` points, TLS trusting its `caBundle` (the
//! system roots without one), and one HTTPS `POST` of the review within `timeoutSeconds`.
//!
//! A `service` reference is dialled at a ready address of the Service's Endpoints, not its
//! ClusterIP: the API server process has no service proxy in front of it (with
//! `--disable-agent` nothing routes ClusterIPs on its host), so it resolves the Service as the
//! `services/proxy` subresource and upstream's `--enable-aggregator-routing` do. The
//! certificate must still name `<service>.<namespace>.svc`, as upstream checks it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Hook;
use crate::admission::cached;
use crate::registry::Registry;

/// Where a webhook's `clientConfig` says to send reviews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `url`: `https://host[:port]/path`.
    Url(String),
    /// `service`: a Service's port, reached through its endpoints.
    Service {
        namespace: String,
        name: String,
        port: u16,
        path: String,
    },
}

impl Endpoint {
    pub fn parse(client_config: &Value) -> Result<Self, String> {
        if let Some(url) = client_config["url"].as_str() {
            return Ok(Self::Url(url.to_owned()));
        }
        let service = &client_config["service"];
        if !service.is_object() {
            return Err("webhook clientConfig has neither url nor service".into());
        }
        Ok(Self::Service {
            namespace: service["namespace"].as_str().unwrap_or_default().to_owned(),
            name: service["name"].as_str().unwrap_or_default().to_owned(),
            port: service["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(443),
            path: service["path"].as_str().unwrap_or("/").to_owned(),
        })
    }
}

/// A resolved target: what to dial, the name the certificate must carry, and the URL as
/// upstream shows it in errors.
struct Target {
    host: String,
    port: u16,
    server_name: String,
    path: String,
    url: String,
}

fn url_target(url: &str) -> Result<Target, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid webhook url {url:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "invalid webhook url {url:?}: 'https' is the only allowed URL scheme"
        ));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("invalid webhook url {url:?}: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    Ok(Target {
        server_name: host.clone(),
        port: uri.port_u16().unwrap_or(443),
        host,
        path,
        url: url.to_owned(),
    })
}

/// A ready address of the Service's endpoints on the port the Service maps `port` to.
async fn service_target(
    registry: &Registry,
    namespace: &str,
    name: &str,
    port: u16,
    path: &str,
) -> Result<Target, String> {
    let named = |objects: Vec<Value>| objects.into_iter().find(|o| o["metadata"]["name"] == name);
    let not_found = |what: &str| format!("{what} \"{name}\" not found in namespace {namespace}");
    let services = cached(registry, "", "services", Some(namespace))
        .await
        .map_err(|e| e.message)?;
    let service = named(services).ok_or_else(|| not_found("service"))?;
    let service_port = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_u64() == Some(u64::from(port)))
        .ok_or_else(|| format!("service \"{name}\" has no port {port}"))?;
    let port_name = service_port["name"].as_str().unwrap_or("");
    let endpoints = cached(registry, "", "endpoints", Some(namespace))
        .await
        .map_err(|e| e.message)?;
    let endpoints = named(endpoints).ok_or_else(|| not_found("endpoints"))?;
    let (ip, target_port) = endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|subset| {
            let target_port = subset["ports"]
                .as_array()?
                .iter()
                .find(|p| p["name"].as_str().unwrap_or("") == port_name)?["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())?;
            let ip = subset["addresses"].as_array()?.first()?["ip"].as_str()?;
            Some((ip.to_owned(), target_port))
        })
        .ok_or_else(|| format!("service \"{name}\" has no ready endpoints on port {port}"))?;
    let server_name = format!("{name}.{namespace}.svc");
    Ok(Target {
        url: format!("https://{server_name}:{port}{path}"),
        host: ip,
        port: target_port,
        server_name,
        path: path.to_owned(),
    })
}

/// Client configurations by CA bundle: building one parses certificates, so each bundle is
/// built once. Bounded, as bundles come from objects anyone with RBAC can write.
static TLS_CONFIGS: LazyLock<Mutex<HashMap<Vec<u8>, Arc<rustls::ClientConfig>>>> =
    LazyLock::new(Default::default);
const TLS_CONFIGS_KEPT: usize = 64;

fn tls_config(ca_bundle: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    if let Some(config) = TLS_CONFIGS.lock().expect("poisoned").get(ca_bundle) {
        return Ok(config.clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    if ca_bundle.is_empty() {
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
    } else {
        for cert in CertificateDer::pem_slice_iter(ca_bundle) {
            let cert = cert.map_err(|e| format!("invalid caBundle: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("invalid caBundle: {e}"))?;
        }
        if roots.is_empty() {
            return Err("invalid caBundle: no certificates".into());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    let mut configs = TLS_CONFIGS.lock().expect("poisoned");
    if configs.len() >= TLS_CONFIGS_KEPT {
        configs.clear();
    }
    configs.insert(ca_bundle.to_vec(), config.clone());
    Ok(config)
}

/// POSTs `review` to the webhook and decodes its answer; the error is the reason upstream
/// gives after `failed to call webhook: `.
pub async fn post(registry: &Registry, hook: &Hook, review: &Value) -> Result<Value, String> {
    let timeout = hook.timeout;
    let seconds = timeout.as_secs();
    let target = match hook.endpoint.as_ref().map_err(String::clone)? {
        Endpoint::Url(url) => url_target(url)?,
        Endpoint::Service {
            namespace,
            name,
            port,
            path,
        } => service_target(registry, namespace, name, *port, path).await?,
    };
    let separator = if target.path.contains('?') { '&' } else { '?' };
    let path = format!("{}{separator}timeout={seconds}s", target.path);
    let shown = format!(
        "Post \"{}{separator}timeout={seconds}s\"",
        target.url.trim_end_matches('?')
    );
    let exchange = exchange(hook, &target, path, review);
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(why)) => Err(format!("{shown}: {why}")),
        Err(_) => Err(format!("{shown}: context deadline exceeded")),
    }
}

async fn exchange(
    hook: &Hook,
    target: &Target,
    path: String,
    review: &Value,
) -> Result<Value, String> {
    let config = tls_config(hook.ca_bundle.as_ref().map_err(String::clone)?)?;
    let server_name = ServerName::try_from(target.server_name.clone())
        .map_err(|e| format!("invalid host {:?}: {e}", target.server_name))?;
    let authority = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("dial tcp {authority}: connect: {}", e.kind()))?;
    let _ = tcp.set_nodelay(true);
    let tls = TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "webhook connection ended with an error");
        }
    });
    let request = Request::post(path)
        .header(header::HOST, &target.server_name)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(review.to_string())))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(format!(
            "an error on the server ({:?}) has prevented the request from succeeding (status {})",
            text.trim(),
            status.as_u16()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("the webhook's answer is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn webhook_url_target_is_https_with_default_port() {
        let target = url_target("https://127.0.0.1/validate").expect("valid");
        assert_eq!((target.host.as_str(), target.port), ("127.0.0.1", 443));
        assert_eq!(target.path, "/validate");
        let target = url_target("https://[::1]:9443/v?x=1").expect("valid");
        assert_eq!((target.host.as_str(), target.port), ("::1", 9443));
        assert_eq!(target.path, "/v?x=1");
        assert!(url_target("http://127.0.0.1/validate").is_err());
    }

    #[test]
    fn webhook_ca_bundle_must_hold_certificates() {
        assert!(tls_config(b"not a certificate").is_err());
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["webhook-ca".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(tls_config(ca.pem().as_bytes()).is_ok());
    }

    #[test]
    fn webhook_service_reference_defaults_port_and_path() {
        let endpoint =
            Endpoint::parse(&json!({ "service": { "namespace": "ns", "name": "hook" } }));
        assert_eq!(
            endpoint,
            Ok(Endpoint::Service {
                namespace: "ns".into(),
                name: "hook".into(),
                port: 443,
                path: "/".into(),
            })
        );
        assert!(Endpoint::parse(&json!({})).is_err());
    }
}
