//! ServiceAccount tokens as upstream issues and checks them: the TokenRequest API
//! (`serviceaccounts/token`, `kubectl create token`) signs a JWT with the cluster's service
//! account key, optionally bound to a Pod, Secret or Node; a request bearing such a token is
//! the ServiceAccount, for as long as the token has not expired and the ServiceAccount (and the
//! bound object) still exist with the same UID.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::objects::{self, Query};
use crate::registry::Registry;
use crate::router::ResourcePath;
use crate::status::{ApiError, Subject};
use crate::tls::Identity;

/// Upstream's bounds on a requested lifetime.
const MIN_EXPIRATION_SECONDS: i64 = 600;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Clock skew tolerated when checking `exp`/`nbf`, as upstream's validator.
const LEEWAY_SECONDS: u64 = 60;

/// A name and UID, as the `kubernetes.io` claim records each object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub iss: String,
    pub jti: String,
    pub sub: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// Signs and checks tokens with the cluster's service account key.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    key_id: String,
    issuer: String,
    /// What a token is for when the request names no audience (upstream's API audiences).
    api_audiences: Vec<String>,
}

impl TokenIssuer {
    /// From the PKCS#8 private key and SPKI public key (PEM) and the issuer URL.
    pub fn new(private_pem: &str, public_pem: &str, issuer: &str) -> anyhow::Result<Self> {
        let encoding = EncodingKey::from_ec_pem(private_pem.as_bytes())?;
        let decoding = DecodingKey::from_ec_pem(public_pem.as_bytes())?;
        // As upstream, the key ID is the unpadded URL-safe base64 of the public key's SHA-256.
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(public_pem.as_bytes())
            .map(|d: rustls_pki_types::SubjectPublicKeyInfoDer| d.as_ref().to_vec())
            .map_err(|e| anyhow::anyhow!("the service account public key: {e:?}"))?;
        let key_id = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            Sha256::digest(&der),
        );
        Ok(Self {
            encoding,
            decoding,
            key_id,
            issuer: issuer.to_owned(),
            api_audiences: vec![issuer.to_owned()],
        })
    }

    fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| ApiError::internal(format!("cannot sign the token: {e}")))
    }

    /// The claims of a token this issuer signed for the API, if it is still valid in time.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.api_audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }

    /// Who a bearer token says the request is from: its ServiceAccount, if the token is ours,
    /// unexpired, and everything it names still exists as it was.
    pub async fn authenticate(
        &self,
        registry: &Registry,
        token: &str,
    ) -> Result<Identity, ApiError> {
        let claims = self.verify(token).map_err(|why| {
            tracing::debug!(%why, "bearer token refused");
            ApiError::unauthorized()
        })?;
        let k8s = &claims.kubernetes;
        let namespace = Some(k8s.namespace.as_str());
        let alive = |kind: &str, namespace: Option<&str>, object: &ObjectRef| {
            let path = object_path(kind, namespace);
            let uid = object.uid.clone();
            let name = object.name.clone();
            async move {
                match registry.get(&path, &name).await {
                    Ok(found) => {
                        found["metadata"]["uid"] == uid.as_str()
                            && found["metadata"]["deletionTimestamp"]
                                .as_str()
                                .is_none_or(|t| t > objects::now_rfc3339().as_str())
                    }
                    Err(_) => false,
                }
            }
        };
        let mut valid = alive("serviceaccounts", namespace, &k8s.serviceaccount).await;
        if let Some(pod) = &k8s.pod {
            valid = valid && alive("pods", namespace, pod).await;
        }
        if let Some(secret) = &k8s.secret {
            valid = valid && alive("secrets", namespace, secret).await;
        }
        if k8s.pod.is_none()
            && let Some(node) = &k8s.node
        {
            valid = valid && alive("nodes", None, node).await;
        }
        if !valid {
            return Err(ApiError::unauthorized());
        }
        Ok(service_account_identity(
            &k8s.namespace,
            &k8s.serviceaccount.name,
        ))
    }
}

/// The user and groups upstream gives a ServiceAccount.
pub fn service_account_identity(namespace: &str, name: &str) -> Identity {
    Identity {
        user: format!("system:serviceaccount:{namespace}:{name}"),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ],
    }
}

fn object_path(plural: &str, namespace: Option<&str>) -> ResourcePath {
    ResourcePath {
        resource: r8s_api::find("", "v1", plural).expect("catalogue has core kinds"),
        namespace: namespace.map(str::to_owned),
        name: None,
        subresource: None,
    }
}

fn invalid(name: &str, field: &str, why: String) -> ApiError {
    ApiError::invalid(
        "TokenRequest",
        "authentication.k8s.io",
        name,
        vec![(field.into(), why)],
    )
}

/// POST `serviceaccounts/<name>/token`: a signed token for the ServiceAccount, as a
/// TokenRequest with its status filled.
pub async fn request(
    issuer: &TokenIssuer,
    registry: &Registry,
    accounts: &ResourcePath,
    name: &str,
    body: &Value,
    query: &Query,
) -> Result<Value, ApiError> {
    let account = registry.get(accounts, name).await?;
    let namespace = accounts.namespace.clone().unwrap_or_default();
    let spec = &body["spec"];
    let expiration = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION_SECONDS,
        value => value
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
    };
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
        ));
    }
    if expiration > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            format!(
                "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::bad_request("spec.audiences must be strings"))?,
        _ => issuer.api_audiences.clone(),
    };
    let mut k8s = KubernetesClaims {
        namespace: namespace.clone(),
        serviceaccount: ObjectRef {
            name: name.to_owned(),
            uid: account["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        },
        pod: None,
        secret: None,
        node: None,
    };
    let bound = &spec["boundObjectRef"];
    if !bound.is_null() {
        bind(registry, &namespace, bound, &mut k8s).await?;
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = Claims {
        aud: audiences.clone(),
        exp: now + expiration,
        iat: now,
        nbf: now,
        iss: issuer.issuer.clone(),
        jti: objects::new_uid(),
        sub: format!("system:serviceaccount:{namespace}:{name}"),
        kubernetes: k8s,
    };
    // A dry run checks everything but hands out nothing that works.
    let token = if query.dry_run {
        String::new()
    } else {
        issuer.sign(&claims)?
    };
    let mut spec = json!({ "audiences": audiences, "expirationSeconds": expiration });
    if !bound.is_null() {
        spec["boundObjectRef"] = bound.clone();
    }
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": { "name": name, "namespace": namespace, "creationTimestamp": null },
        "spec": spec,
        "status": {
            "token": token,
            "expirationTimestamp": objects::rfc3339_after(expiration),
        },
    }))
}

/// Records the object a token is bound to, which must exist (with the UID given, if any).
async fn bind(
    registry: &Registry,
    namespace: &str,
    bound: &Value,
    claims: &mut KubernetesClaims,
) -> Result<(), ApiError> {
    let kind = bound["kind"].as_str().unwrap_or_default();
    let name = bound["name"].as_str().unwrap_or_default();
    let (plural, scoped) = match kind {
        "Pod" => ("pods", Some(namespace)),
        "Secret" => ("secrets", Some(namespace)),
        "Node" => ("nodes", None),
        other => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {other}"
            )));
        }
    };
    if bound["apiVersion"].as_str().is_some_and(|v| v != "v1") {
        return Err(ApiError::bad_request(format!(
            "cannot bind token to object of apiVersion {}",
            bound["apiVersion"]
        )));
    }
    let object = registry.get(&object_path(plural, scoped), name).await?;
    let uid = object["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if let Some(wanted) = bound["uid"].as_str().filter(|u| !u.is_empty())
        && wanted != uid
    {
        return Err(ApiError::conflict(
            Subject {
                group: "",
                plural,
                name,
            },
            &format!(
                "the UID in the bound object reference ({wanted}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    let reference = ObjectRef {
        name: name.to_owned(),
        uid,
    };
    match kind {
        "Pod" => {
            // A pod's token also names its node, as upstream does since 1.32.
            if let Some(node) = object["spec"]["nodeName"]
                .as_str()
                .filter(|n| !n.is_empty())
                && let Ok(found) = registry.get(&object_path("nodes", None), node).await
            {
                claims.node = Some(ObjectRef {
                    name: node.to_owned(),
                    uid: found["metadata"]["uid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
            claims.pod = Some(reference);
        }
        "Secret" => claims.secret = Some(reference),
        _ => claims.node = Some(reference),
    }
    Ok(())
}

/// The token of an `Authorization: Bearer …` header, if the request carries one.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        let key = rcgen::KeyPair::generate().unwrap();
        TokenIssuer::new(
            &key.serialize_pem(),
            &key.public_key_pem(),
            "https://kubernetes.default.svc.cluster.local",
        )
        .unwrap()
    }

    fn claims(issuer: &TokenIssuer, exp_from_now: i64) -> Claims {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Claims {
            aud: issuer.api_audiences.clone(),
            exp: now + exp_from_now,
            iat: now,
            nbf: now,
            iss: issuer.issuer.clone(),
            jti: "j".into(),
            sub: "system:serviceaccount:default:robot".into(),
            kubernetes: KubernetesClaims {
                namespace: "default".into(),
                serviceaccount: ObjectRef {
                    name: "robot".into(),
                    uid: "u".into(),
                },
                pod: None,
                secret: None,
                node: None,
            },
        }
    }

    #[test]
    fn a_token_verifies_with_the_key_that_signed_it() {
        let issuer = issuer();
        let signed = claims(&issuer, 600);
        let token = issuer.sign(&signed).unwrap();
        assert_eq!(issuer.verify(&token).unwrap(), signed);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let issuer = issuer();
        let token = issuer.sign(&claims(&issuer, -3600)).unwrap();
        assert!(issuer.verify(&token).unwrap_err().contains("xpired"));
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        let ours = issuer();
        let theirs = issuer();
        let token = theirs.sign(&claims(&theirs, 600)).unwrap();
        assert!(ours.verify(&token).is_err());
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let issuer = issuer();
        let mut elsewhere = claims(&issuer, 600);
        elsewhere.aud = vec!["vault".into()];
        let token = issuer.sign(&elsewhere).unwrap();
        assert!(issuer.verify(&token).is_err());
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            "Bearer abc.def".parse().unwrap(),
        );
        assert_eq!(bearer_token(&headers), Some("abc.def"));
        headers.insert(http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), None);
    }
}
