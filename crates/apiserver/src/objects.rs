//! Generic object plumbing: storage keys, metadata the server owns (uid, timestamps,
//! resourceVersion, generation), names, and request query parameters.

use r8s_api::Resource;
use r8s_store::Revision;
use serde_json::{Value, json};

use crate::status::ApiError;

/// The storage key of one object.
pub fn key(resource: &Resource, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{}/{ns}/{name}", resource.storage_prefix()),
        None => format!("{}/{name}", resource.storage_prefix()),
    }
}

/// The storage prefix of a collection: one namespace's objects, or all of them.
pub fn collection(resource: &Resource, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{}/{ns}", resource.storage_prefix()),
        None => resource.storage_prefix(),
    }
}

pub fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// Decodes a stored object and stamps its resourceVersion, which is never stored.
pub fn decode(bytes: &[u8], revision: Revision) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("stored object does not decode: {e}")))?;
    set_resource_version(&mut object, revision);
    Ok(object)
}

/// Decodes a stored object as `resource` serves it (converted, when it is stored as another).
pub fn decode_as(resource: &Resource, bytes: &[u8], revision: Revision) -> Result<Value, ApiError> {
    Ok(served(resource, decode(bytes, revision)?))
}

/// A stored object as `resource` serves it: converted from the entry it is stored as, or to
/// the CRD version asked for.
pub fn served(resource: &Resource, stored: Value) -> Value {
    match resource.stored_as {
        None => crate::crd::conversion::served(resource, stored),
        Some(_) => r8s_api::kinds::behaviour(resource).to_served(stored),
    }
}

/// What a write of `object`, served as `resource`, stores, and the object as readers then see
/// it: upstream answers a write with what it stored, converted back.
pub fn to_store(resource: &Resource, object: Value) -> Result<(bytes::Bytes, Value), ApiError> {
    if resource.stored_as.is_none() {
        if crate::crd::conversion::of(resource).is_some() {
            let stored = crate::crd::conversion::stored(resource, object);
            let bytes = encode(&stored)?;
            return Ok((bytes, crate::crd::conversion::served(resource, stored)));
        }
        return Ok((encode(&object)?, object));
    }
    let kind = r8s_api::kinds::behaviour(resource);
    let stored = kind.to_storage(object);
    Ok((encode(&stored)?, kind.to_served(stored)))
}

pub fn set_resource_version(object: &mut Value, revision: Revision) {
    object["metadata"]["resourceVersion"] = json!(revision.to_string());
}

/// The bytes stored for an object: everything but its resourceVersion.
pub fn encode(object: &Value) -> Result<bytes::Bytes, ApiError> {
    serde_json::to_vec(&Skipping {
        object,
        path: &["metadata", "resourceVersion"],
    })
    .map(bytes::Bytes::from)
    .map_err(|e| ApiError::internal(format!("object does not encode: {e}")))
}

/// An object serialized without the field at `path`, written as it goes rather than copied
/// without it first: every write encodes its object.
struct Skipping<'a> {
    object: &'a Value,
    path: &'a [&'a str],
}

impl serde::Serialize for Skipping<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (Value::Object(map), [first, rest @ ..]) = (self.object, self.path) else {
            return self.object.serialize(serializer);
        };
        let skipped = rest.is_empty() && map.contains_key(*first);
        let mut out = serializer.serialize_map(Some(map.len() - usize::from(skipped)))?;
        for (key, value) in map {
            if key != first {
                out.serialize_entry(key, value)?;
            } else if !rest.is_empty() {
                let inner = Skipping {
                    object: value,
                    path: rest,
                };
                out.serialize_entry(key, &inner)?;
            }
        }
        out.end()
    }
}

pub fn now_rfc3339() -> String {
    rfc3339_after(0)
}

/// The time `seconds` from now, as metadata timestamps are written.
pub fn rfc3339_after(seconds: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
        .format(&format)
        .unwrap_or_default()
}

pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Five characters from upstream's alphabet (no vowels, no look-alikes).
pub fn generated_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Upstream's name rules: most kinds take a DNS-1123 subdomain, namespaces a DNS-1123 label.
pub fn name_problems(resource: &Resource, name: &str) -> Option<String> {
    // RBAC objects take any path segment (upstream's ValidateRBACName): `system:node` is valid.
    if resource.group == "rbac.authorization.k8s.io" {
        let problem = match name {
            "." | ".." => format!("may not be '{name}'"),
            _ => ['/', '%']
                .into_iter()
                .find(|c| name.contains(*c))
                .map(|c| format!("may not contain '{c}'"))?,
        };
        return Some(format!("Invalid value: {name:?}: {problem}"));
    }
    let label_only = resource.plural == "namespaces";
    let max = if label_only { 63 } else { 253 };
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let valid = name.len() <= max
        && if label_only {
            valid_label(name)
        } else {
            name.split('.').all(valid_label)
        };
    if valid {
        return None;
    }
    Some(if label_only {
        format!(
            "Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        )
    } else {
        format!(
            "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    })
}

/// The query parameters the REST verbs understand.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub watch: bool,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: bool,
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// `force` of server-side apply: `Some` when given at all (it is refused elsewhere).
    pub force: Option<bool>,
    /// The request's User-Agent, which names the field manager when `fieldManager` does not.
    pub user_agent: Option<String>,
    pub field_validation: Option<String>,
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub orphan_dependents: Option<bool>,
    /// Who the request acts as, for admission; `None` for the server's own writes.
    pub user: Option<crate::authz::User>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut query = Self::default();
        let Some(raw) = raw else { return Ok(query) };
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            let value = value.into_owned();
            let number = |v: &str| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid {key}: {v:?}")))
            };
            let flag = |v: &str| matches!(v, "true" | "1" | "");
            match &*key {
                "labelSelector" => query.label_selector = Some(value),
                "fieldSelector" => query.field_selector = Some(value),
                "limit" => query.limit = number(&value)?.max(0) as usize,
                "continue" if !value.is_empty() => query.continue_token = Some(value),
                "resourceVersion" if !value.is_empty() => query.resource_version = Some(value),
                "resourceVersionMatch" if !value.is_empty() => {
                    query.resource_version_match = Some(value)
                }
                "watch" => query.watch = flag(&value),
                "timeoutSeconds" => query.timeout_seconds = Some(number(&value)?.max(0) as u64),
                "allowWatchBookmarks" => query.allow_watch_bookmarks = flag(&value),
                "dryRun" => {
                    if value != "All" {
                        return Err(ApiError::bad_request(format!(
                            "Invalid dry run value: {value:?}: supported values: \"All\""
                        )));
                    }
                    query.dry_run = true;
                }
                "fieldManager" => query.field_manager = Some(value),
                "force" => {
                    query.force = Some(match value.as_str() {
                        "true" | "1" => true,
                        "false" | "0" | "" => false,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "invalid force: {other:?}: true or false"
                            )));
                        }
                    })
                }
                "fieldValidation" => query.field_validation = Some(value),
                "propagationPolicy" => query.propagation_policy = Some(value),
                "gracePeriodSeconds" => query.grace_period_seconds = Some(number(&value)?),
                "orphanDependents" => query.orphan_dependents = Some(flag(&value)),
                _ => {}
            }
        }
        Ok(query)
    }

    /// The field manager this request writes as.
    pub fn manager(&self) -> String {
        crate::managed::manager_name(self.field_manager.as_deref(), self.user_agent.as_deref())
    }

    pub fn resource_version(&self) -> Result<Option<Revision>, ApiError> {
        match self.resource_version.as_deref() {
            None => Ok(None),
            Some(rv) => rv
                .parse::<Revision>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_bytes_leave_out_the_resource_version_and_keep_everything_else() {
        let object = json!({
            "kind": "ConfigMap",
            "metadata": {"name": "a", "resourceVersion": "7", "labels": {"resourceVersion": "x"}},
            "data": {"resourceVersion": "y"},
        });
        let stored: Value = serde_json::from_slice(&encode(&object).unwrap()).unwrap();
        let mut expected = object.clone();
        expected["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
        assert_eq!(stored, expected);
        let odd = json!({"metadata": "not an object", "n": 1});
        let stored: Value = serde_json::from_slice(&encode(&odd).unwrap()).unwrap();
        assert_eq!(stored, odd);
    }
}
