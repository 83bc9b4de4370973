//! The ResourceQuota plugin: a write that would take a namespace past a quota's `status.hard`
//! is refused with upstream's message; one that fits is charged to `status.used` before it is
//! stored, each quota written compare-and-swap so racing writes cannot both take the last unit.
//! The resourcequota controller later recounts `used` from the objects themselves, which also
//! returns what deleted objects (or writes that failed after charging) held.

use std::collections::BTreeSet;

use r8s_api::quantity::Quantity;
use r8s_api::quota::{self, ResourceList, resource_list};
use r8s_store::{KeyValue, RangeOptions, StoreError};
use serde_json::Value;

use super::{Attributes, cached};
use crate::objects;
use crate::registry::Registry;
use crate::status::ApiError;

/// How many times charging retries after another writer changed a quota first.
const MAX_ATTEMPTS: usize = 16;

pub async fn validate(
    registry: &Registry,
    attributes: &Attributes<'_>,
    object: &Value,
) -> Result<(), ApiError> {
    let (Some(namespace), None) = (attributes.namespace, attributes.subresource) else {
        return Ok(());
    };
    let (group, plural) = (attributes.resource.group, attributes.resource.plural);
    let mut delta = quota::usage(group, plural, object);
    if let Some(old) = attributes.old {
        delta = increase(&delta, &quota::usage(group, plural, old));
    }
    if delta.values().all(|q| q.millis == 0) && attributes.old.is_some() {
        return Ok(());
    }
    // Most namespaces have no quota: the cache says so without a store read.
    if cached(registry, "", "resourcequotas", Some(namespace))
        .await?
        .is_empty()
    {
        return Ok(());
    }
    let quotas = r8s_api::find("", "v1", "resourcequotas").expect("catalogue has resourcequotas");
    let prefix = format!("{}/", objects::collection(quotas, Some(namespace)));
    let mut charged = BTreeSet::new();
    for _ in 0..MAX_ATTEMPTS {
        let found = registry
            .store
            .range(&prefix, RangeOptions::default())
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut writes: Vec<(KeyValue, Value)> = Vec::new();
        for kv in found.kvs {
            let current = objects::decode(&kv.value, kv.mod_revision)?;
            let name = objects::name_of(&current).to_owned();
            if charged.contains(&name) || !quota::matches(&current["spec"], group, plural, object) {
                continue;
            }
            let charge = evaluate(&current, group, plural, object, &delta)
                .map_err(|why| attributes.forbidden(why))?;
            if let Some(used) = charge {
                let mut updated = current;
                updated["status"]["used"] = quota::to_json(&used);
                writes.push((kv, updated));
            }
        }
        if attributes.dry_run {
            return Ok(());
        }
        let mut lost_race = false;
        for (kv, updated) in writes {
            let name = objects::name_of(&updated).to_owned();
            let bytes = objects::encode(&updated)?;
            match registry
                .store
                .update(&kv.key, bytes, kv.mod_revision, None)
                .await
            {
                Ok(_) => {
                    charged.insert(name);
                }
                // Changed or deleted meanwhile: look at it again.
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => lost_race = true,
                Err(e) => return Err(ApiError::internal(e.to_string())),
            }
        }
        if !lost_race {
            return Ok(());
        }
    }
    Err(attributes
        .forbidden("unable to charge the resource quota: too many concurrent writers; try again"))
}

/// What `new` asks for beyond `old`, per resource (never negative).
fn increase(new: &ResourceList, old: &ResourceList) -> ResourceList {
    new.iter()
        .map(|(name, q)| {
            let before = old.get(name).copied().unwrap_or_default();
            let more = *q - before;
            (
                name.clone(),
                if more.millis > 0 {
                    more
                } else {
                    Quantity::default()
                },
            )
        })
        .collect()
}

/// Checks one quota: the new `used` to store, `None` when nothing it tracks changes, or
/// upstream's reason for refusing.
pub fn evaluate(
    quota_object: &Value,
    group: &str,
    plural: &str,
    object: &Value,
    delta: &ResourceList,
) -> Result<Option<ResourceList>, String> {
    let name = objects::name_of(quota_object);
    let hard = resource_list(&quota_object["status"]["hard"]);
    let used = resource_list(&quota_object["status"]["used"]);
    let restricted: Vec<String> = hard
        .keys()
        .filter(|r| quota::covers(group, plural, r))
        .cloned()
        .collect();
    if restricted.is_empty() {
        return Ok(None);
    }
    if group.is_empty() && plural == "pods" {
        quota::pod_constraints(&restricted, object)
            .map_err(|why| format!("failed quota: {name}: {why}"))?;
    }
    let unknown: Vec<&str> = restricted
        .iter()
        .filter(|r| !used.contains_key(*r))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "status unknown for quota: {name}, resources: {}",
            unknown.join(",")
        ));
    }
    let requested: ResourceList = restricted
        .iter()
        .map(|r| (r.clone(), delta.get(r).copied().unwrap_or_default()))
        .collect();
    if requested.values().all(|q| q.millis == 0) {
        return Ok(None);
    }
    let mut new_used = used.clone();
    for (r, q) in &requested {
        new_used.insert(r.clone(), used[r] + *q);
    }
    let exceeded: Vec<&String> = restricted
        .iter()
        .filter(|r| requested[*r].millis > 0 && new_used[*r].millis > hard[*r].millis)
        .collect();
    if !exceeded.is_empty() {
        let show = |list: &ResourceList| {
            exceeded
                .iter()
                .map(|r| format!("{r}={}", list[*r]))
                .collect::<Vec<_>>()
                .join(",")
        };
        return Err(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            show(&requested),
            show(&used),
            show(&hard)
        ));
    }
    Ok(Some(new_used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quota(hard: Value, used: Value) -> Value {
        json!({ "metadata": { "name": "q" }, "spec": { "hard": hard }, "status": { "hard": hard, "used": used } })
    }

    fn pod(cpu: &str) -> Value {
        json!({ "spec": { "containers": [{ "name": "c", "resources": { "requests": { "cpu": cpu }, "limits": { "cpu": cpu } } }] } })
    }

    fn charge(quota: &Value, object: &Value) -> Result<Option<ResourceList>, String> {
        evaluate(quota, "", "pods", object, &quota::usage("", "pods", object))
    }

    #[test]
    fn a_pod_within_the_quota_is_charged() {
        let q = quota(
            json!({ "pods": "2", "requests.cpu": "1" }),
            json!({ "pods": "1", "requests.cpu": "500m" }),
        );
        let used = charge(&q, &pod("250m")).unwrap().unwrap();
        assert_eq!(
            quota::to_json(&used),
            json!({ "pods": "2", "requests.cpu": "750m" })
        );
    }

    #[test]
    fn the_pod_past_the_quota_is_refused_with_upstreams_message() {
        let q = quota(json!({ "pods": "2" }), json!({ "pods": "2" }));
        assert_eq!(
            charge(&q, &pod("1")),
            Err("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2".into())
        );
    }

    #[test]
    fn only_exceeded_resources_are_named() {
        let q = quota(
            json!({ "pods": "5", "limits.cpu": "1" }),
            json!({ "pods": "0", "limits.cpu": "800m" }),
        );
        assert_eq!(
            charge(&q, &pod("500m")),
            Err("exceeded quota: q, requested: limits.cpu=500m, used: limits.cpu=800m, limited: limits.cpu=1".into())
        );
    }

    #[test]
    fn a_quota_not_yet_counted_refuses_until_its_status_is_known() {
        let q = json!({ "metadata": { "name": "q" }, "status": { "hard": { "pods": "2" } } });
        assert_eq!(
            charge(&q, &pod("1")),
            Err("status unknown for quota: q, resources: pods".into())
        );
    }

    #[test]
    fn a_cpu_quota_refuses_a_pod_without_cpu_requests() {
        let q = quota(
            json!({ "requests.cpu": "1" }),
            json!({ "requests.cpu": "0" }),
        );
        let bare = json!({ "spec": { "containers": [{ "name": "c" }] } });
        assert_eq!(
            charge(&q, &bare),
            Err("failed quota: q: must specify requests.cpu for: c".into())
        );
    }

    #[test]
    fn quotas_on_other_resources_are_not_touched() {
        let q = quota(json!({ "configmaps": "1" }), json!({ "configmaps": "1" }));
        assert_eq!(charge(&q, &pod("1")), Ok(None));
    }

    #[test]
    fn an_update_charges_only_what_grows() {
        let old = quota::usage(
            "",
            "persistentvolumeclaims",
            &json!({ "spec": { "resources": { "requests": { "storage": "1Gi" } } } }),
        );
        let new = quota::usage(
            "",
            "persistentvolumeclaims",
            &json!({ "spec": { "resources": { "requests": { "storage": "3Gi" } } } }),
        );
        let grown = increase(&new, &old);
        assert_eq!(grown["requests.storage"].to_string(), "2Gi");
        assert_eq!(grown["persistentvolumeclaims"].millis, 0);
    }
}
