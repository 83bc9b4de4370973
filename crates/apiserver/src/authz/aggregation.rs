//! ClusterRole aggregation, as upstream's clusterrole-aggregation controller: a ClusterRole
//! with an `aggregationRule` holds exactly the rules of the ClusterRoles its selectors match
//! (admin, edit and view are filled from the `aggregate-to-*` roles this way). It runs beside
//! the API server, follows the ClusterRole watch cache, and writes through the registry like
//! any client; nested aggregates (view into edit into admin) settle over successive changes.

use std::sync::{Arc, Weak};

use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::PolicyRule;
use crate::cache::Start;
use crate::objects::Query;
use crate::registry::Body;
use crate::router::ResourcePath;
use crate::selectors::LabelSelector;
use crate::server::State;

const FIELD_MANAGER: &str = "clusterrole-aggregation-controller";

/// The rules an aggregated ClusterRole should hold, when they differ from what it holds.
pub fn desired_rules(role: &Value, all: &[Value]) -> Option<Vec<Value>> {
    let selectors = role["aggregationRule"]["clusterRoleSelectors"].as_array()?;
    let name = role["metadata"]["name"].as_str()?;
    let mut sorted: Vec<&Value> = all.iter().collect();
    sorted.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    let parse = |rule: &Value| serde_json::from_value::<PolicyRule>(rule.clone()).ok();
    let mut visited = std::collections::HashSet::new();
    let mut rules: Vec<(Value, Option<PolicyRule>)> = Vec::new();
    for selector in selectors {
        // An unparsable selector selects nothing, as a role cannot be half-aggregated.
        let Ok(selector) = LabelSelector::from_object(selector) else {
            continue;
        };
        for other in &sorted {
            let other_name = other["metadata"]["name"].as_str().unwrap_or_default();
            if other_name == name || !selector.matches(other) || !visited.insert(other_name) {
                continue;
            }
            for rule in other["rules"].as_array().into_iter().flatten() {
                let parsed = parse(rule);
                if !rules.iter().any(|(_, have)| *have == parsed) {
                    rules.push((rule.clone(), parsed));
                }
            }
        }
    }
    let current: Vec<Option<PolicyRule>> = role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(parse)
        .collect();
    let wanted: Vec<Option<PolicyRule>> = rules.iter().map(|(_, p)| p.clone()).collect();
    (current != wanted).then(|| rules.into_iter().map(|(rule, _)| rule).collect())
}

/// Keeps every aggregated ClusterRole filled until the server is gone.
pub async fn run(state: Weak<State>) {
    let subscribe = || {
        let state = state.upgrade()?;
        let cache = &state.authorizer.sources.cluster_roles;
        cache
            .subscribe(Start::After(cache.last_change()), "")
            .ok()
            .map(|s| s.live)
    };
    let Some(mut events) = subscribe() else {
        return;
    };
    loop {
        let Some(strong) = state.upgrade() else {
            return;
        };
        reconcile(&strong).await;
        drop(strong);
        match events.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            // The cache re-listed and replaced its channel: follow the new one.
            Err(RecvError::Closed) => match subscribe() {
                Some(fresh) => events = fresh,
                None => return,
            },
        }
        // A burst of changes (a start, an apply of many roles) is reconciled once.
        while events.try_recv().is_ok() {}
    }
}

async fn reconcile(state: &Arc<State>) {
    let resource = super::rbac_resource("clusterroles");
    let all = super::objects(&state.authorizer.sources.cluster_roles, resource);
    for role in &all {
        let Some(rules) = desired_rules(role, &all) else {
            continue;
        };
        let name = role["metadata"]["name"].as_str().unwrap_or_default();
        let mut updated = role.clone();
        updated["rules"] = Value::Array(rules);
        let path = ResourcePath {
            resource,
            namespace: None,
            name: Some(name.to_owned()),
            subresource: None,
        };
        let query = Query {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Query::default()
        };
        let body = Body { object: updated };
        // A conflict means the role changed: its event brings another pass.
        if let Err(e) = state.registry.update(&path, name, body, &query).await {
            tracing::debug!(role = name, error = %e, "cannot aggregate a cluster role");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn role(name: &str, labels: Value, rules: Value) -> Value {
        json!({ "metadata": { "name": name, "labels": labels }, "rules": rules })
    }

    fn aggregate(name: &str, label: &str, rules: Value) -> Value {
        let mut r = role(name, json!({}), rules);
        r["aggregationRule"] =
            json!({ "clusterRoleSelectors": [{ "matchLabels": { label: "true" } }] });
        r
    }

    #[test]
    fn an_aggregate_collects_the_rules_of_matching_roles_once() {
        let pods = json!({ "verbs": ["get"], "apiGroups": [""], "resources": ["pods"] });
        let jobs = json!({ "verbs": ["get"], "apiGroups": ["batch"], "resources": ["jobs"] });
        let all = vec![
            aggregate("view", "to-view", json!([])),
            role("a", json!({ "to-view": "true" }), json!([pods.clone()])),
            role(
                "b",
                json!({ "to-view": "true" }),
                json!([pods.clone(), jobs.clone()]),
            ),
            role("c", json!({ "other": "true" }), json!([{ "verbs": ["*"] }])),
        ];
        assert_eq!(desired_rules(&all[0], &all), Some(vec![pods, jobs]));
    }

    #[test]
    fn an_aggregate_that_holds_its_rules_needs_no_write() {
        let pods = json!({ "verbs": ["get"], "apiGroups": [""], "resources": ["pods"] });
        let all = vec![
            aggregate("view", "to-view", json!([pods.clone()])),
            role("a", json!({ "to-view": "true" }), json!([pods])),
        ];
        assert_eq!(desired_rules(&all[0], &all), None);
    }

    #[test]
    fn a_role_without_an_aggregation_rule_is_left_alone() {
        let all = vec![role("a", json!({}), json!([]))];
        assert_eq!(desired_rules(&all[0], &all), None);
    }
}
