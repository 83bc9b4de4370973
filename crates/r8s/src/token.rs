//! `r8s token create|list|delete`: bootstrap tokens as kubeadm keeps them, `kube-system` Secrets
//! of type `bootstrap.kubernetes.io/token` named `bootstrap-token-<id>`, and the join command an
//! agent runs with one (`--ca-cert-hash` pins the cluster CA, as kubeadm's join does).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

const NAMESPACE: &str = "kube-system";
const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
const PREFIX: &str = "bootstrap-token-";
/// The group the API server's kubeadm bindings let join (CSR creation and auto-approval).
const JOIN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

#[derive(Args, Debug)]
pub struct Connection {
    /// The admin kubeconfig (default: <data-dir>/admin.kubeconfig).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The server's data directory, where its admin kubeconfig is.
    #[arg(long, default_value = "/var/lib/r8s")]
    data_dir: PathBuf,
}

impl Connection {
    fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.kubeconfig"))
    }
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a bootstrap token that lets a node join.
    Create {
        /// The token (`[a-z0-9]{6}.[a-z0-9]{16}`); a random one by default.
        token: Option<String>,
        /// How long the token is valid (Go duration, e.g. 24h, 90m); 0 means forever.
        #[arg(long, default_value = "24h", value_parser = crate::server::parse_go_duration)]
        ttl: Duration,
        /// A note kept with the token.
        #[arg(long)]
        description: Option<String>,
        /// Print the whole `r8s agent` command that joins a node with this token.
        #[arg(long)]
        print_join_command: bool,
        /// The server URL the join command names (default: the kubeconfig's, else this
        /// machine's address).
        #[arg(long)]
        server: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the bootstrap tokens.
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete bootstrap tokens, by token or by token ID.
    Delete {
        #[arg(required = true)]
        tokens: Vec<String>,
        #[command(flatten)]
        connection: Connection,
    },
}

fn valid_part(part: &str, len: usize) -> bool {
    part.len() == len
        && part
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// Splits a token into its ID and secret, refusing any other shape.
pub fn parse_token(token: &str) -> anyhow::Result<(&str, &str)> {
    match token.split_once('.') {
        Some((id, secret)) if valid_part(id, 6) && valid_part(secret, 16) => Ok((id, secret)),
        _ => bail!("token {token:?} is not of the form [a-z0-9]{{6}}.[a-z0-9]{{16}}"),
    }
}

/// A random token from the kernel's generator, each character uniform over `[a-z0-9]`.
fn random_token() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut random = std::fs::File::open("/dev/urandom").context("cannot open /dev/urandom")?;
    let mut out = String::new();
    let mut byte = [0u8; 1];
    while out.len() < 22 {
        random.read_exact(&mut byte)?;
        // 252 = 7 * 36: rejecting the rest keeps every character equally likely.
        if byte[0] < 252 {
            out.push(ALPHABET[usize::from(byte[0] % 36)] as char);
        }
    }
    out.insert(6, '.');
    Ok(out)
}

/// The Secret that holds `token`, as kubeadm writes it.
pub fn token_secret(
    token: &str,
    ttl: Duration,
    description: Option<&str>,
    now: Timestamp,
) -> anyhow::Result<Secret> {
    let (id, secret) = parse_token(token)?;
    let mut data = BTreeMap::from([
        ("token-id".to_owned(), id.to_owned()),
        ("token-secret".to_owned(), secret.to_owned()),
        (
            "usage-bootstrap-authentication".to_owned(),
            "true".to_owned(),
        ),
        ("usage-bootstrap-signing".to_owned(), "true".to_owned()),
        ("auth-extra-groups".to_owned(), JOIN_GROUP.to_owned()),
    ]);
    if !ttl.is_zero() {
        let expires = now
            .checked_add(k8s_openapi::jiff::SignedDuration::try_from(ttl)?)
            .context("the TTL is too long")?;
        data.insert(
            "expiration".into(),
            expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    }
    if let Some(description) = description {
        data.insert("description".into(), description.to_owned());
    }
    Ok(Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{PREFIX}{id}")),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        type_: Some(SECRET_TYPE.into()),
        string_data: Some(data),
        ..Default::default()
    })
}

fn field(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Where agents reach the API server: `--server`, else the kubeconfig's URL unless it is a
/// loopback one, else this machine's address on the kubeconfig's port.
fn join_server(explicit: Option<&str>, kubeconfig_url: &str) -> anyhow::Result<String> {
    if let Some(server) = explicit {
        return Ok(server.trim_end_matches('/').to_owned());
    }
    let uri: http::Uri = kubeconfig_url
        .parse()
        .with_context(|| format!("the kubeconfig's server {kubeconfig_url:?} is not a URL"))?;
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Ok(kubeconfig_url.trim_end_matches('/').to_owned());
    }
    let ip = r8s_kubelet::detect_node_ip()
        .context("cannot find this machine's address for the join command: pass --server")?;
    let port = uri.port_u16().unwrap_or(6443);
    Ok(format!("https://{}", std::net::SocketAddr::new(ip, port)))
}

pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            token,
            ttl,
            description,
            print_join_command,
            server,
            connection,
        } => {
            let token = match token {
                Some(token) => token,
                None => random_token()?,
            };
            let secret = token_secret(&token, ttl, description.as_deref(), Timestamp::now())?;
            let kubeconfig = connection.kubeconfig();
            let client = crate::agent::admin_client(&kubeconfig).await?;
            let secrets: Api<Secret> = Api::namespaced(client, NAMESPACE);
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .context("cannot create the token's Secret")?;
            if !print_join_command {
                println!("{token}");
                return Ok(());
            }
            let config = kube::config::Kubeconfig::read_from(&kubeconfig)?;
            let cluster = config
                .clusters
                .first()
                .and_then(|c| c.cluster.as_ref())
                .context("the kubeconfig names no cluster")?;
            let ca = cluster
                .certificate_authority_data
                .as_deref()
                .context("the kubeconfig has no CA data")?;
            let ca_pem = base64_decode(ca)?;
            let hash = r8s_cluster::ca_cert_hash(&ca_pem)?;
            let url = join_server(server.as_deref(), cluster.server.as_deref().unwrap_or(""))?;
            println!("r8s agent --server {url} --token {token} --ca-cert-hash {hash}");
            Ok(())
        }
        TokenCommand::List { connection } => {
            let client = crate::agent::admin_client(&connection.kubeconfig()).await?;
            let secrets: Api<Secret> = Api::namespaced(client, NAMESPACE);
            let list = secrets
                .list(&ListParams::default().fields(&format!("type={SECRET_TYPE}")))
                .await
                .context("cannot list the tokens")?;
            println!(
                "{:<24}{:<8}{:<22}{:<26}{:<16}EXTRA GROUPS",
                "TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION"
            );
            let now = Timestamp::now();
            for secret in &list.items {
                let (Some(id), Some(token_secret)) =
                    (field(secret, "token-id"), field(secret, "token-secret"))
                else {
                    continue;
                };
                let expires = field(secret, "expiration");
                let ttl = match expires.as_deref().map(str::parse::<Timestamp>) {
                    None => "<forever>".to_owned(),
                    Some(Ok(at)) if at <= now => "<invalid>".to_owned(),
                    Some(Ok(at)) => {
                        format!("{}h", (at.as_second() - now.as_second() + 1799) / 3600)
                    }
                    Some(Err(_)) => "<invalid>".to_owned(),
                };
                let usages: Vec<&str> = ["authentication", "signing"]
                    .into_iter()
                    .filter(|u| {
                        field(secret, &format!("usage-bootstrap-{u}")).as_deref() == Some("true")
                    })
                    .collect();
                println!(
                    "{:<24}{:<8}{:<22}{:<26}{:<16}{}",
                    format!("{id}.{token_secret}"),
                    ttl,
                    expires.unwrap_or_else(|| "<never>".into()),
                    usages.join(","),
                    field(secret, "description").unwrap_or_else(|| "<none>".into()),
                    field(secret, "auth-extra-groups").unwrap_or_default(),
                );
            }
            Ok(())
        }
        TokenCommand::Delete { tokens, connection } => {
            let client = crate::agent::admin_client(&connection.kubeconfig()).await?;
            let secrets: Api<Secret> = Api::namespaced(client, NAMESPACE);
            for token in tokens {
                let id = match token.split_once('.') {
                    Some(_) => parse_token(&token)?.0.to_owned(),
                    None if valid_part(&token, 6) => token.clone(),
                    None => bail!("{token:?} is neither a token nor a token ID"),
                };
                secrets
                    .delete(&format!("{PREFIX}{id}"), &DeleteParams::default())
                    .await
                    .with_context(|| format!("cannot delete token {id:?}"))?;
                println!("bootstrap token {id:?} deleted");
            }
            Ok(())
        }
    }
}

fn base64_decode(text: &str) -> anyhow::Result<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("the kubeconfig's CA data is not base64")?;
    String::from_utf8(bytes).context("the kubeconfig's CA is not PEM text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_bootstrap_shape() {
        for _ in 0..20 {
            let token = random_token().unwrap();
            assert!(parse_token(&token).is_ok(), "{token}");
        }
        assert!(parse_token("abcdef.0123456789abcdef").is_ok());
        assert!(parse_token("abcdef.0123456789ABCDEF").is_err());
        assert!(parse_token("abc.def").is_err());
    }

    #[test]
    fn the_secret_is_the_one_kubeadm_writes() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let secret = token_secret(
            "abcdef.0123456789abcdef",
            Duration::from_secs(24 * 3600),
            Some("for n2"),
            now,
        )
        .unwrap();
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("bootstrap-token-abcdef")
        );
        assert_eq!(secret.type_.as_deref(), Some(SECRET_TYPE));
        let data = secret.string_data.unwrap();
        assert_eq!(data["expiration"], "2026-01-02T00:00:00Z");
        assert_eq!(data["auth-extra-groups"], JOIN_GROUP);
        assert_eq!(data["usage-bootstrap-authentication"], "true");
        assert_eq!(data["description"], "for n2");
        let forever = token_secret("abcdef.0123456789abcdef", Duration::ZERO, None, now).unwrap();
        assert!(!forever.string_data.unwrap().contains_key("expiration"));
    }

    #[test]
    fn the_join_server_is_never_a_loopback_address_by_default() {
        assert_eq!(
            join_server(None, "https://10.0.0.5:6443").unwrap(),
            "https://10.0.0.5:6443"
        );
        assert_eq!(
            join_server(Some("https://lb:6443/"), "https://127.0.0.1:6443").unwrap(),
            "https://lb:6443"
        );
        if let Ok(url) = join_server(None, "https://127.0.0.1:7443") {
            assert!(
                url.ends_with(":7443") && !url.contains("127.0.0.1"),
                "{url}"
            );
        }
    }
}
