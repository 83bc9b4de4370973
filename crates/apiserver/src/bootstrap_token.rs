//! Bootstrap tokens (`<id>.<secret>`, e.g. `abcdef.0123456789abcdef`) as upstream's bootstrap
//! token authenticator checks them: the `kube-system/bootstrap-token-<id>` Secret of type
//! `bootstrap.kubernetes.io/token` must hold the same secret, allow authentication, not be
//! expired or being deleted. The user is `system:bootstrap:<id>` in `system:bootstrappers`
//! and the Secret's extra groups. What `r8s agent --token` joins with.

use base64::Engine;
use serde_json::Value;

use crate::objects;
use crate::registry::Registry;
use crate::router::ResourcePath;
use crate::status::ApiError;
use crate::tls::Identity;

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
const GROUP: &str = "system:bootstrappers";

/// The token's id and secret, if it has a bootstrap token's shape.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

fn field(secret: &Value, key: &str) -> Option<String> {
    let encoded = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Compares without stopping at the first difference, so timing does not tell how much of a
/// guessed secret was right.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The identity `secret` (the token's Secret) grants for the token `id.token_secret`, or why
/// not; `now` is RFC 3339.
pub fn identity_from(
    secret: &Value,
    id: &str,
    token_secret: &str,
    now: &str,
) -> Result<Identity, String> {
    if secret["type"] != SECRET_TYPE {
        return Err(format!("secret has type {}", secret["type"]));
    }
    if secret["metadata"]["deletionTimestamp"].is_string() {
        return Err("the token is being deleted".into());
    }
    let stored = field(secret, "token-secret").unwrap_or_default();
    if !same(&stored, token_secret) || field(secret, "token-id").as_deref() != Some(id) {
        return Err("the token does not match its secret".into());
    }
    if let Some(expiration) = field(secret, "expiration") {
        // Both are UTC RFC 3339; a timestamp that does not parse counts as expired.
        let expires = time::OffsetDateTime::parse(
            &expiration,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|_| format!("invalid expiration {expiration:?}"))?;
        let now = time::OffsetDateTime::parse(now, &time::format_description::well_known::Rfc3339)
            .map_err(|e| e.to_string())?;
        if expires <= now {
            return Err(format!("the token expired at {expiration}"));
        }
    }
    if field(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err("the token may not be used for authentication".into());
    }
    let mut groups = vec![GROUP.to_owned()];
    for extra in field(secret, "auth-extra-groups")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        if !extra.starts_with("system:bootstrappers:") {
            return Err(format!(
                "extra group {extra:?} is not a bootstrappers group"
            ));
        }
        groups.push(extra.to_owned());
    }
    groups.push("system:authenticated".into());
    Ok(Identity {
        user: format!("system:bootstrap:{id}"),
        groups,
    })
}

/// Authenticates a bearer token of the bootstrap shape (see [`parse`]).
pub async fn authenticate(
    registry: &Registry,
    id: &str,
    secret: &str,
) -> Result<Identity, ApiError> {
    let secrets = ResourcePath {
        resource: r8s_api::find("", "v1", "secrets").expect("catalogue has secrets"),
        namespace: Some("kube-system".into()),
        name: None,
        subresource: None,
    };
    let found = registry
        .get(&secrets, &format!("bootstrap-token-{id}"))
        .await
        .map_err(|_| ApiError::unauthorized())?;
    identity_from(&found, id, secret, &objects::now_rfc3339()).map_err(|why| {
        tracing::debug!(token = id, %why, "bootstrap token refused");
        ApiError::unauthorized()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn secret(fields: &[(&str, &str)]) -> Value {
        let data: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| {
                let encoded = base64::engine::general_purpose::STANDARD.encode(v);
                ((*k).to_owned(), json!(encoded))
            })
            .collect();
        json!({ "type": SECRET_TYPE, "metadata": { "name": "bootstrap-token-abcdef" }, "data": data })
    }

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn valid() -> Vec<(&'static str, &'static str)> {
        vec![
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-authentication", "true"),
            (
                "auth-extra-groups",
                "system:bootstrappers:kubeadm:default-node-token",
            ),
            ("expiration", "2026-01-02T00:00:00Z"),
        ]
    }

    #[test]
    fn only_the_bootstrap_shape_is_a_bootstrap_token() {
        assert_eq!(
            parse("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        for not in [
            "abcdef.0123456789abcde",
            "ABCDEF.0123456789abcdef",
            "abcdef0123456789abcdef",
            "eyJhbGciOi.x.y",
        ] {
            assert_eq!(parse(not), None, "{not}");
        }
    }

    #[test]
    fn a_valid_token_is_a_bootstrapper() {
        let identity = identity_from(&secret(&valid()), "abcdef", "0123456789abcdef", NOW).unwrap();
        assert_eq!(identity.user, "system:bootstrap:abcdef");
        assert_eq!(
            identity.groups,
            [
                "system:bootstrappers",
                "system:bootstrappers:kubeadm:default-node-token",
                "system:authenticated"
            ]
        );
    }

    #[test]
    fn wrong_expired_unusable_or_deleted_tokens_are_refused() {
        let wrong = identity_from(&secret(&valid()), "abcdef", "0123456789abcdee", NOW);
        assert!(wrong.is_err());
        let mut expired = valid();
        expired[4] = ("expiration", "2025-12-31T23:59:59Z");
        assert!(
            identity_from(&secret(&expired), "abcdef", "0123456789abcdef", NOW)
                .unwrap_err()
                .contains("expired")
        );
        let mut unusable = valid();
        unusable[2] = ("usage-bootstrap-authentication", "false");
        assert!(identity_from(&secret(&unusable), "abcdef", "0123456789abcdef", NOW).is_err());
        let mut foreign_group = valid();
        foreign_group[3] = ("auth-extra-groups", "system:masters");
        assert!(identity_from(&secret(&foreign_group), "abcdef", "0123456789abcdef", NOW).is_err());
        let mut deleted = secret(&valid());
        deleted["metadata"]["deletionTimestamp"] = json!(NOW);
        assert!(identity_from(&deleted, "abcdef", "0123456789abcdef", NOW).is_err());
        let mut opaque = secret(&valid());
        opaque["type"] = json!("Opaque");
        assert!(identity_from(&opaque, "abcdef", "0123456789abcdef", NOW).is_err());
    }
}
