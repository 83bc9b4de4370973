//! kubeconfig files, in the format kubectl and client-go read.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::atomic_file::{PRIVATE, write_atomically};
use crate::certs::{parse_cert, parse_key};
use crate::{Pem, PkiError};

/// The cluster's name inside every kubeconfig this crate writes.
pub const CLUSTER_NAME: &str = "r8s";

/// Writes a kubeconfig (YAML, 0600 since it embeds a key, atomically) with one cluster "r8s"
/// (`server_url`, certificate-authority-data), one user `user` (client-certificate-data,
/// client-key-data) and one context "<user>@r8s", which is the current context.
pub fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    ca_cert_pem: &str,
    user: &str,
    client: &Pem,
) -> Result<(), PkiError> {
    // kubectl would only report bad PEM at connect time, far from whoever wrote the file.
    let invalid = |what, reason| PkiError::InvalidPem { what, reason };
    parse_cert(ca_cert_pem).map_err(|reason| invalid("CA certificate", reason))?;
    parse_cert(&client.cert).map_err(|reason| invalid("client certificate", reason))?;
    parse_key(&client.key).map_err(|reason| invalid("client key", reason))?;

    let context = format!("{user}@{CLUSTER_NAME}");
    let config = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: vec![Named {
            name: CLUSTER_NAME,
            cluster: Cluster {
                server: server_url,
                certificate_authority_data: STANDARD.encode(ca_cert_pem),
            },
        }],
        users: vec![NamedUser {
            name: user,
            user: User {
                client_certificate_data: STANDARD.encode(&client.cert),
                client_key_data: STANDARD.encode(&client.key),
            },
        }],
        contexts: vec![NamedContext {
            name: &context,
            context: Context {
                cluster: CLUSTER_NAME,
                user,
            },
        }],
        current_context: &context,
    };
    let yaml = serde_yaml_ng::to_string(&config).map_err(|source| PkiError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomically(path, yaml.as_bytes(), PRIVATE)
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    clusters: Vec<Named<'a>>,
    users: Vec<NamedUser<'a>>,
    contexts: Vec<NamedContext<'a>>,
    current_context: &'a str,
}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
    cluster: Cluster<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster<'a> {
    server: &'a str,
    certificate_authority_data: String,
}

#[derive(Serialize)]
struct NamedUser<'a> {
    name: &'a str,
    user: User,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    client_certificate_data: String,
    client_key_data: String,
}

#[derive(Serialize)]
struct NamedContext<'a> {
    name: &'a str,
    context: Context<'a>,
}

#[derive(Serialize)]
struct Context<'a> {
    cluster: &'a str,
    user: &'a str,
}
