//! The `AdmissionReview` a webhook is sent and what its answer may say, as upstream's
//! `webhook/request` builds and verifies them, and the JSON patch a mutating webhook returns.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::Request;
use super::matching::{Invocation, kind_of};

/// The AdmissionReview versions r8s speaks, in the order upstream prefers them.
const KNOWN_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// The first AdmissionReview version the webhook accepts that r8s speaks.
pub fn version_for(accepted: &[String]) -> Result<&'static str, String> {
    accepted
        .iter()
        .find_map(|v| KNOWN_VERSIONS.iter().find(|k| **k == v.as_str()).copied())
        .ok_or_else(|| {
            "webhook does not accept known AdmissionReview versions (v1, v1beta1)".to_owned()
        })
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "version": version, "kind": kind })
}

fn gvr(group: &str, version: &str, plural: &str) -> Value {
    json!({ "group": group, "version": version, "resource": plural })
}

/// The review sent: `kind`/`resource` as the webhook asked for them (an equivalent version under
/// `matchPolicy: Equivalent`), `requestKind`/`requestResource` as the client sent them.
pub fn build(
    version: &str,
    uid: &str,
    request: &Request<'_>,
    invocation: &Invocation,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Value {
    let requested = request.resource;
    let request_kind = kind_of(requested, request.subresource);
    let user = match request.user {
        Some(user) => {
            let mut info = json!({ "username": user.name, "groups": user.groups });
            if !user.uid.is_empty() {
                info["uid"] = json!(user.uid);
            }
            if !user.extra.is_empty() {
                info["extra"] = json!(user.extra);
            }
            info
        }
        // The server's own writes, as upstream's loopback client is known.
        None => json!({ "username": "system:apiserver", "groups": ["system:masters"] }),
    };
    let options_kind = match request.operation {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        _ => "DeleteOptions",
    };
    let mut options = json!({ "kind": options_kind, "apiVersion": "meta.k8s.io/v1" });
    if request.dry_run {
        options["dryRun"] = json!(["All"]);
    }
    let mut sent = json!({
        "uid": uid,
        "kind": gvk(invocation.kind.group, invocation.kind.version, invocation.kind.kind),
        "resource": gvr(
            invocation.resource.group,
            invocation.resource.version,
            invocation.resource.plural,
        ),
        "requestKind": gvk(request_kind.group, request_kind.version, request_kind.kind),
        "requestResource": gvr(requested.group, requested.version, requested.plural),
        "name": request.name,
        "operation": request.operation,
        "userInfo": user,
        "object": object.cloned().unwrap_or(Value::Null),
        "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": request.dry_run,
        "options": options,
    });
    if let Some(subresource) = request.subresource {
        sent["subResource"] = json!(subresource);
        sent["requestSubResource"] = json!(subresource);
    }
    if let Some(namespace) = request.namespace.filter(|n| !n.is_empty()) {
        sent["namespace"] = json!(namespace);
    }
    json!({
        "kind": "AdmissionReview",
        "apiVersion": format!("admission.k8s.io/{version}"),
        "request": sent,
    })
}

/// What a webhook answered, once checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub allowed: bool,
    /// The `metav1.Status` explaining a denial, if any.
    pub result: Value,
    pub warnings: Vec<String>,
    /// A decoded patch and its type, from a mutating webhook.
    pub patch: Option<(Vec<u8>, String)>,
}

/// Checks the answer as upstream's `VerifyAdmissionResponse`: a v1 answer names its uid and
/// kind; only mutating webhooks may patch, and they give patch and patchType together.
pub fn verify(
    version: &str,
    uid: &str,
    mutating: bool,
    review: &Value,
) -> Result<Response, String> {
    let response = &review["response"];
    if !response.is_object() {
        return Err("webhook response was absent".into());
    }
    let patch = match &response["patch"] {
        Value::Null => None,
        Value::String(text) if text.is_empty() => None,
        Value::String(text) => Some(
            B64.decode(text)
                .map_err(|e| format!("response.patch is not base64: {e}"))?,
        ),
        _ => return Err("response.patch is not a base64 string".into()),
    };
    let patch_type = response["patchType"].as_str();
    let patch = if version == "v1" {
        let answered = response["uid"].as_str().unwrap_or_default();
        if answered != uid {
            return Err(format!("expected response.uid={uid:?}, got {answered:?}"));
        }
        let (api_version, kind) = (
            review["apiVersion"].as_str().unwrap_or_default(),
            review["kind"].as_str().unwrap_or_default(),
        );
        if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
            return Err(format!(
                "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {api_version}, Kind={kind}"
            ));
        }
        match (mutating, patch, patch_type) {
            (true, Some(_), None) => {
                return Err("webhook returned response.patch but not response.patchType".into());
            }
            (true, None, Some(_)) => {
                return Err("webhook returned response.patchType but not response.patch".into());
            }
            (true, _, Some("")) => {
                return Err("webhook returned invalid response.patchType of \"\"".into());
            }
            (true, Some(patch), Some(kind)) => Some((patch, kind.to_owned())),
            (false, Some(_), _) => {
                return Err("validating webhook may not return response.patch".into());
            }
            (false, _, Some(_)) => {
                return Err("validating webhook may not return response.patchType".into());
            }
            _ => None,
        }
    } else {
        // v1beta1 checked neither uid nor patch type; a patch there is a JSON patch.
        patch
            .filter(|_| mutating)
            .map(|patch| (patch, "JSONPatch".to_owned()))
    };
    Ok(Response {
        allowed: response["allowed"].as_bool().unwrap_or(false),
        result: response["status"].clone(),
        warnings: response["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect(),
        patch,
    })
}

/// Why a webhook's patch did not apply.
#[derive(Debug, PartialEq)]
pub enum PatchError {
    /// The webhook sent something that is not a JSON patch: counts as failing to call it.
    Undecodable(String),
    /// A well-formed patch that does not apply to the object: the server's error, as upstream.
    NotApplicable(String),
}

/// Applies a webhook's JSON patch to `object`; whether it changed anything.
pub fn apply_patch(object: &mut Value, patch: &[u8], patch_type: &str) -> Result<bool, PatchError> {
    if patch_type != "JSONPatch" {
        return Err(PatchError::Undecodable(format!(
            "unsupported patch type {patch_type:?}"
        )));
    }
    let operations: json_patch::Patch = serde_json::from_slice(patch).map_err(|e| {
        PatchError::Undecodable(format!(
            "received undecodable patch in webhook response: {e}"
        ))
    })?;
    if operations.0.is_empty() {
        return Ok(false);
    }
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &operations)
        .map_err(|e| PatchError::NotApplicable(e.to_string()))?;
    if !patched.is_object() {
        return Err(PatchError::NotApplicable(
            "the patched object is not a JSON object".into(),
        ));
    }
    let changed = patched != *object;
    *object = patched;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(response: Value) -> Value {
        json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response })
    }

    #[test]
    fn webhook_json_patch_adds_a_label() {
        let mut object = json!({ "metadata": { "name": "cm" }, "data": { "a": "b" } });
        let patch = br#"[{"op":"add","path":"/metadata/labels","value":{"mutated":"yes"}}]"#;
        assert_eq!(apply_patch(&mut object, patch, "JSONPatch"), Ok(true));
        assert_eq!(object["metadata"]["labels"]["mutated"], "yes");
        assert_eq!(object["data"]["a"], "b");
    }

    #[test]
    fn webhook_empty_or_idempotent_patch_changes_nothing() {
        let mut object = json!({ "metadata": { "name": "cm", "labels": { "a": "b" } } });
        assert_eq!(apply_patch(&mut object, b"[]", "JSONPatch"), Ok(false));
        let same = br#"[{"op":"replace","path":"/metadata/labels/a","value":"b"}]"#;
        assert_eq!(apply_patch(&mut object, same, "JSONPatch"), Ok(false));
    }

    #[test]
    fn webhook_patch_that_does_not_apply_leaves_the_object_alone() {
        let mut object = json!({ "metadata": { "name": "cm" } });
        let before = object.clone();
        let remove = br#"[{"op":"remove","path":"/spec/missing"}]"#;
        assert!(matches!(
            apply_patch(&mut object, remove, "JSONPatch"),
            Err(PatchError::NotApplicable(_))
        ));
        assert_eq!(object, before);
        assert!(matches!(
            apply_patch(&mut object, b"{not json", "JSONPatch"),
            Err(PatchError::Undecodable(_))
        ));
        assert!(matches!(
            apply_patch(&mut object, b"[]", "MergePatch"),
            Err(PatchError::Undecodable(_))
        ));
    }

    #[test]
    fn webhook_v1_response_must_echo_the_uid_and_kind() {
        let ok = review(json!({ "uid": "u1", "allowed": true, "warnings": ["careful"] }));
        let answer = verify("v1", "u1", false, &ok).expect("valid");
        assert!(answer.allowed);
        assert_eq!(answer.warnings, vec!["careful".to_owned()]);
        assert_eq!(
            verify("v1", "u2", false, &ok),
            Err(r#"expected response.uid="u2", got "u1""#.into())
        );
        let untyped = json!({ "response": { "uid": "u1", "allowed": true } });
        assert!(verify("v1", "u1", false, &untyped).is_err());
        assert!(verify("v1beta1", "other", false, &untyped).is_ok());
        assert_eq!(
            verify("v1", "u1", false, &json!({})),
            Err("webhook response was absent".into())
        );
    }

    #[test]
    fn webhook_patches_come_with_their_type_and_only_from_mutating_webhooks() {
        let patch = B64.encode(b"[]");
        let typed = review(
            json!({ "uid": "u", "allowed": true, "patch": patch, "patchType": "JSONPatch" }),
        );
        let answer = verify("v1", "u", true, &typed).expect("valid");
        assert_eq!(answer.patch, Some((b"[]".to_vec(), "JSONPatch".into())));
        assert_eq!(
            verify("v1", "u", false, &typed),
            Err("validating webhook may not return response.patch".into())
        );
        let untyped = review(json!({ "uid": "u", "allowed": true, "patch": patch }));
        assert_eq!(
            verify("v1", "u", true, &untyped),
            Err("webhook returned response.patch but not response.patchType".into())
        );
    }

    #[test]
    fn webhook_review_version_is_the_first_known_one_accepted() {
        assert_eq!(
            version_for(&["v2".into(), "v1beta1".into(), "v1".into()]),
            Ok("v1beta1")
        );
        assert!(version_for(&["v2".into()]).is_err());
    }
}
