//! Custom resources of CRDs with several versions, as apiextensions-apiserver converts them:
//! objects are stored in the CRD's storage version and served in the version asked for. With
//! `conversion.strategy: None` (the default) converting is rewriting `apiVersion`; objects
//! stored before the storage version changed are converted on read too.
//!
//! With `strategy: Webhook` the CRD's webhook converts: one `ConversionReview` per request
//! (a whole list at once), its answer checked as upstream checks it (same count, the desired
//! version, metadata unchanged but for labels and annotations). The synchronous helpers
//! leave such objects alone: reads, lists, watches and writes convert them on their
//! asynchronous paths ([`convert`]) first.

use std::sync::atomic::{AtomicBool, Ordering};

use r8s_api::Resource;
use serde_json::{Value, json};

use super::catalogue;
use crate::registry::Registry;
use crate::status::ApiError;

/// Whether any served CRD has more than one version: built-in resources and single-version
/// CRDs then skip every lookup here.
static ANY: AtomicBool = AtomicBool::new(false);

/// Called when the catalogue is rebuilt.
pub(super) fn set_any(any: bool) {
    ANY.store(any, Ordering::Relaxed);
}

/// How a CRD converts between its versions.
#[derive(Debug, Clone, PartialEq)]
pub struct Versions {
    /// `group/version` of the storage version.
    pub storage: String,
    /// Under `strategy: Webhook`: the CRD's name, its webhook's `clientConfig`, and the
    /// ConversionReview apiVersion it speaks.
    pub webhook: Option<(String, Value, &'static str)>,
}

/// The conversion of the CRD `resource` is a version of, if it has several versions.
pub fn of(resource: &Resource) -> Option<Versions> {
    if !ANY.load(Ordering::Relaxed) || resource.stored_as.is_some() {
        return None;
    }
    catalogue::of(resource)?.versions.clone()
}

/// Whether objects of `resource` are converted by a webhook.
pub fn by_webhook(resource: &Resource) -> bool {
    of(resource).is_some_and(|v| v.webhook.is_some())
}

/// The strategy None's conversion for `resource`, or `None` when there is nothing to do here
/// (one version, or a webhook's job).
fn rewriting(resource: &Resource) -> Option<Versions> {
    of(resource).filter(|v| v.webhook.is_none())
}

/// `object` as `api_version`: the None strategy's conversion.
fn to(mut object: Value, api_version: &str) -> Value {
    if object["apiVersion"] != api_version {
        object["apiVersion"] = json!(api_version);
    }
    object
}

/// A stored object as `resource` serves it.
pub fn served(resource: &Resource, stored: Value) -> Value {
    match rewriting(resource) {
        Some(_) => to(stored, &resource.api_version()),
        None => stored,
    }
}

/// An object written through `resource`, as it is stored.
pub fn stored(resource: &Resource, object: Value) -> Value {
    match rewriting(resource) {
        Some(versions) => to(object, &versions.storage),
        None => object,
    }
}

/// The JSON of a cached object as `resource` serves it, when that differs from the stored
/// JSON.
pub fn served_json(resource: &Resource, stored: &str) -> Option<String> {
    rewriting(resource)?;
    let wanted = resource.api_version();
    let object: Value = serde_json::from_str(stored).ok()?;
    (object["apiVersion"] != wanted.as_str()).then(|| to(object, &wanted).to_string())
}

/// The conversion settings of a CRD with several versions.
pub(super) fn versions_of(crd: &Value) -> Option<Versions> {
    let spec = &crd["spec"];
    let versions = spec["versions"].as_array()?;
    if versions.len() < 2 {
        return None;
    }
    let group = spec["group"].as_str()?;
    let storage = versions
        .iter()
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())?;
    let conversion = &spec["conversion"];
    let webhook = (conversion["strategy"] == "Webhook").then(|| {
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let speaks_v1 = conversion["webhook"]["conversionReviewVersions"]
            .as_array()
            .is_none_or(|versions| versions.iter().any(|v| v == "v1"));
        let review = match speaks_v1 {
            true => "apiextensions.k8s.io/v1",
            false => "apiextensions.k8s.io/v1beta1",
        };
        (name, conversion["webhook"]["clientConfig"].clone(), review)
    });
    Some(Versions {
        storage: format!("{group}/{storage}"),
        webhook,
    })
}

/// `objects` (of the CRD `resource` belongs to) as `desired` (`group/version`): those in
/// another version are sent to the CRD's webhook in one review.
pub async fn convert(
    registry: &Registry,
    resource: &Resource,
    mut objects: Vec<Value>,
    desired: &str,
) -> Result<Vec<Value>, ApiError> {
    let Some(versions) = of(resource) else {
        return Ok(objects);
    };
    let Some((crd, client_config, review_version)) = &versions.webhook else {
        return Ok(objects.into_iter().map(|o| to(o, desired)).collect());
    };
    let pending: Vec<usize> = (0..objects.len())
        .filter(|&i| objects[i]["apiVersion"] != desired)
        .collect();
    if pending.is_empty() {
        return Ok(objects);
    }
    let uid = crate::objects::new_uid();
    let sent: Vec<Value> = pending.iter().map(|&i| objects[i].clone()).collect();
    let review = json!({
        "apiVersion": review_version,
        "kind": "ConversionReview",
        "request": { "uid": uid, "desiredAPIVersion": desired, "objects": sent },
    });
    let failed =
        |why: String| ApiError::internal(format!("conversion webhook for {crd} failed: {why}"));
    let answer = crate::admission::convert_review(registry, crd, client_config, &review)
        .await
        .map_err(failed)?;
    let converted = checked(&answer, &uid, desired, &sent).map_err(failed)?;
    for (i, object) in pending.into_iter().zip(converted) {
        objects[i] = object;
    }
    Ok(objects)
}

/// The converted objects of a webhook's answer, as upstream accepts them; each keeps the
/// metadata it was sent with, but for the labels and annotations the webhook set.
fn checked(answer: &Value, uid: &str, desired: &str, sent: &[Value]) -> Result<Vec<Value>, String> {
    let response = &answer["response"];
    if !response.is_object() {
        return Err("conversion review has no response".to_owned());
    }
    if response["uid"] != uid {
        return Err(format!(
            "expected response uid {uid:?}, got {}",
            response["uid"]
        ));
    }
    if response["result"]["status"] != "Success" {
        let message = response["result"]["message"]
            .as_str()
            .unwrap_or("conversion failed");
        return Err(message.to_owned());
    }
    let converted = response["convertedObjects"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if converted.len() != sent.len() {
        return Err(format!(
            "returned {} objects, expected {}",
            converted.len(),
            sent.len()
        ));
    }
    converted
        .into_iter()
        .zip(sent)
        .map(|(mut object, original)| {
            if object["apiVersion"] != desired {
                return Err(format!(
                    "invalid converted object: wrong apiVersion {}, expected {desired:?}",
                    object["apiVersion"]
                ));
            }
            if object["kind"] != original["kind"] {
                return Err(format!(
                    "invalid converted object: wrong kind {}, expected {}",
                    object["kind"], original["kind"]
                ));
            }
            let mut metadata = original["metadata"].clone();
            for field in ["labels", "annotations"] {
                match object["metadata"].get(field) {
                    Some(value) => metadata[field] = value.clone(),
                    None => {
                        if let Some(m) = metadata.as_object_mut() {
                            m.remove(field);
                        }
                    }
                }
            }
            object["metadata"] = metadata;
            Ok(object)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhooks_answer_is_checked_and_keeps_the_sent_metadata() {
        let sent = vec![json!({ "apiVersion": "g/v1", "kind": "K",
            "metadata": { "name": "a", "uid": "1", "labels": { "x": "1" } }, "spec": { "old": 1 } })];
        let answer = |objects: Value| json!({ "response": { "uid": "u", "result": { "status": "Success" }, "convertedObjects": objects } });
        let good = answer(json!([{ "apiVersion": "g/v2", "kind": "K",
            "metadata": { "name": "renamed", "labels": { "y": "2" } }, "spec": { "new": 1 } }]));
        let converted = checked(&good, "u", "g/v2", &sent).unwrap();
        assert_eq!(converted[0]["metadata"]["name"], "a");
        assert_eq!(converted[0]["metadata"]["uid"], "1");
        assert_eq!(converted[0]["metadata"]["labels"], json!({ "y": "2" }));
        assert_eq!(converted[0]["spec"], json!({ "new": 1 }));
        let wrong_version = answer(json!([{ "apiVersion": "g/v1", "kind": "K", "metadata": {} }]));
        assert!(
            checked(&wrong_version, "u", "g/v2", &sent)
                .unwrap_err()
                .contains("wrong apiVersion")
        );
        assert!(
            checked(&answer(json!([])), "u", "g/v2", &sent)
                .unwrap_err()
                .contains("returned 0 objects")
        );
        assert!(
            checked(&good, "other", "g/v2", &sent)
                .unwrap_err()
                .contains("uid")
        );
        let failure = json!({ "response": { "uid": "u", "result": { "status": "Failure", "message": "cannot" } } });
        assert_eq!(checked(&failure, "u", "g/v2", &sent).unwrap_err(), "cannot");
    }
}
