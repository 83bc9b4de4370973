//! Metadata-only answers (upstream's `PartialObjectMetadata`): with
//! `Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1` (or
//! `as=PartialObjectMetadataList` for lists) gets, lists and watches carry only each object's
//! metadata. Metadata informers (the garbage collector's, client-go's and kube-rs's) watch every
//! resource this way, so they neither receive nor decode specs and statuses.

use serde::Deserialize;
use serde_json::{Value, json};

/// The version of `meta.k8s.io` a client asked metadata-only answers in, if it asked for them.
/// Entries in other encodings (protobuf) are skipped: a client lists JSON after them.
pub fn wanted(accept: &str) -> Option<&'static str> {
    accept.split(',').find_map(|entry| {
        let mut params = entry.split(';').map(str::trim);
        let media = params.next().unwrap_or_default();
        if media != "application/json" {
            return None;
        }
        let params: Vec<&str> = params.collect();
        let partial = params.contains(&"as=PartialObjectMetadata")
            || params.contains(&"as=PartialObjectMetadataList");
        if !partial || !params.contains(&"g=meta.k8s.io") {
            return None;
        }
        if params.contains(&"v=v1beta1") {
            Some("v1beta1")
        } else {
            Some("v1")
        }
    })
}

/// The Content-Type of a metadata-only answer.
pub fn content_type(version: &str, list: bool) -> String {
    let kind = if list {
        "PartialObjectMetadataList"
    } else {
        "PartialObjectMetadata"
    };
    format!("application/json;as={kind};g=meta.k8s.io;v={version}")
}

/// An object's metadata as a `PartialObjectMetadata`.
pub fn of(object: &Value, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": object["metadata"],
    })
}

/// A list's items as `PartialObjectMetadata`, in a `PartialObjectMetadataList`.
pub fn list(list: &Value, version: &str) -> Value {
    let items: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| of(item, version))
        .collect();
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": list["metadata"],
        "items": items,
    })
}

/// An object's serialized metadata as a serialized `PartialObjectMetadata`, copying the
/// metadata's text as it is (the rest of the object is skipped, and nothing is built).
pub fn of_json(object: &str, version: &str) -> String {
    #[derive(Deserialize)]
    struct MetadataOnly<'a> {
        #[serde(borrow)]
        metadata: Option<&'a serde_json::value::RawValue>,
    }
    let metadata = serde_json::from_str::<MetadataOnly>(object)
        .ok()
        .and_then(|o| o.metadata)
        .map_or("null", |m| m.get());
    format!(
        r#"{{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/{version}","metadata":{metadata}}}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_wanted_in_json_after_a_protobuf_entry() {
        let client_go = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(wanted(client_go), Some("v1"));
        assert_eq!(
            wanted("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1"),
            Some("v1beta1")
        );
        assert_eq!(wanted("application/json"), None);
        assert_eq!(wanted("application/json;as=Table;g=meta.k8s.io;v=v1"), None);
    }

    #[test]
    fn only_the_metadata_is_kept() {
        let pod = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","uid":"u"},"spec":{"containers":[]}}"#;
        let partial: Value = serde_json::from_str(&of_json(pod, "v1")).unwrap();
        assert_eq!(
            partial,
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"name": "a", "uid": "u"}})
        );
        let listed = list(
            &json!({"kind": "PodList", "metadata": {"resourceVersion": "7"},
                    "items": [serde_json::from_str::<Value>(pod).unwrap()]}),
            "v1",
        );
        assert_eq!(listed["kind"], "PartialObjectMetadataList");
        assert_eq!(listed["metadata"]["resourceVersion"], "7");
        assert_eq!(listed["items"][0], partial);
    }
}
