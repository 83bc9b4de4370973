//! `pods/eviction`: a delete that first asks the pod's PodDisruptionBudget, as `kubectl drain`
//! relies on. The budget's status (kept by the disruption controller) says how many pods may go;
//! an eviction spends one and records the pod in `disruptedPods` until the controller sees it
//! gone.

use http::StatusCode;
use serde_json::{Value, json};

use crate::deletion::DeleteOptions;
use crate::objects::{self, Query};
use crate::registry::Registry;
use crate::router::ResourcePath;
use crate::selectors::LabelSelector;
use crate::status::ApiError;

/// Upstream's bound on evictions a budget records before its controller confirms them.
const MAX_DISRUPTED_PODS: usize = 2000;

const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// Evicts pod `name` (the `Eviction` body may carry `deleteOptions`); answers upstream's
/// success `Status`.
pub async fn evict(
    registry: &Registry,
    pods: &ResourcePath,
    name: &str,
    eviction: &Value,
    query: &Query,
) -> Result<Value, ApiError> {
    if let Some(named) = eviction["metadata"]["name"].as_str()
        && named != name
    {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let mut options = match &eviction["deleteOptions"] {
        Value::Null => DeleteOptions::from_request(None, query)?,
        body => DeleteOptions::from_request(Some(body), query)?,
    };
    let pod = registry.get(pods, name).await?;
    if !ignores_budgets(&pod) {
        let budget = budget_of(registry, pods, &pod).await?;
        if let Some(budget) = budget {
            spend(registry, pods, &budget, &pod, options.dry_run).await?;
            // The pod must still be the one the budget was asked about.
            options.precondition_resource_version = pod["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_owned);
        }
    }
    registry.delete_with(pods, name, &options).await?;
    Ok(json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": StatusCode::CREATED.as_u16(),
    }))
}

/// Pods that are done, not yet running, or already going need no budget's leave.
fn ignores_budgets(pod: &Value) -> bool {
    !pod["metadata"]["deletionTimestamp"].is_null()
        || matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed" | "Pending")
        )
}

/// The budgets of the pods' namespace, or one budget's status.
fn budgets(pods: &ResourcePath, status_of: Option<&str>) -> ResourcePath {
    ResourcePath {
        resource: r8s_api::find("policy", "v1", "poddisruptionbudgets")
            .expect("catalogue has poddisruptionbudgets"),
        namespace: pods.namespace.clone(),
        name: status_of.map(str::to_owned),
        subresource: status_of.map(|_| "status".to_owned()),
    }
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The one budget whose selector picks the pod, if any.
async fn budget_of(
    registry: &Registry,
    pods: &ResourcePath,
    pod: &Value,
) -> Result<Option<Value>, ApiError> {
    let budgets_path = budgets(pods, None);
    let budgets = registry
        .list(&budgets_path, &Query::default())
        .await?
        .into_value();
    let mut matching = Vec::new();
    for budget in budgets["items"].as_array().into_iter().flatten() {
        let selector = &budget["spec"]["selector"];
        // A budget with no or an empty selector matches nothing here, as upstream.
        if selector.is_null() || selector.as_object().is_some_and(|s| s.is_empty()) {
            continue;
        }
        let Ok(selector) = LabelSelector::from_object(selector) else {
            continue;
        };
        if selector.matches(pod) {
            matching.push(budget.clone());
        }
    }
    if matching.len() > 1 {
        return Err(ApiError::internal(
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    Ok(matching.pop())
}

fn too_many_requests(cause: String) -> ApiError {
    ApiError {
        details: Some(json!({ "causes": [{ "reason": "DisruptionBudget", "message": cause }] })),
        ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", VIOLATION)
    }
}

/// Takes one allowed disruption from the budget (re-checked on every retry of the write).
async fn spend(
    registry: &Registry,
    pods: &ResourcePath,
    budget: &Value,
    pod: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let budget_name = objects::name_of(budget).to_owned();
    let pod_name = objects::name_of(pod).to_owned();
    let pod_ready = is_ready(pod);
    let check = |current: &Value| -> Result<Option<Value>, ApiError> {
        let status = &current["status"];
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(0);
        if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
            return Err(too_many_requests(format!(
                "The disruption budget {budget_name} is still being processed by the server."
            )));
        }
        let healthy = status["currentHealthy"].as_i64().unwrap_or(0);
        let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
        // An unready pod does not count towards the budget when the budget is met anyway
        // (IfHealthyBudget) or whenever the budget says so (AlwaysAllow).
        if !pod_ready {
            match current["spec"]["unhealthyPodEvictionPolicy"].as_str() {
                Some("AlwaysAllow") => return Ok(None),
                _ if healthy >= desired && desired > 0 => return Ok(None),
                _ => {}
            }
        }
        let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
        if allowed < 0 {
            return Err(ApiError::forbidden("pdb disruptions allowed is negative"));
        }
        let disrupted = status["disruptedPods"].as_object().map_or(0, |m| m.len());
        if disrupted > MAX_DISRUPTED_PODS {
            return Err(ApiError::forbidden(
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            ));
        }
        if allowed == 0 {
            return Err(too_many_requests(format!(
                "The disruption budget {budget_name} needs {desired} healthy pods and has {healthy} currently"
            )));
        }
        let mut spent = current.clone();
        spent["status"]["disruptionsAllowed"] = json!(allowed - 1);
        if !spent["status"]["disruptedPods"].is_object() {
            spent["status"]["disruptedPods"] = json!({});
        }
        spent["status"]["disruptedPods"][&pod_name] = json!(objects::now_rfc3339());
        Ok(Some(spent))
    };
    let budget_path = budgets(pods, Some(&budget_name));
    if dry_run {
        return check(budget).map(|_| ());
    }
    registry
        .modify(
            &budget_path,
            &budget_name,
            &Query::default(),
            None,
            |current| Ok(check(current)?.unwrap_or_else(|| current.clone())),
        )
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_pending_and_terminating_pods_skip_the_budget() {
        for phase in ["Succeeded", "Failed", "Pending"] {
            assert!(ignores_budgets(&json!({ "status": { "phase": phase } })));
        }
        assert!(!ignores_budgets(
            &json!({ "status": { "phase": "Running" } })
        ));
        assert!(ignores_budgets(&json!({
            "metadata": { "deletionTimestamp": "2026-01-01T00:00:00Z" },
            "status": { "phase": "Running" },
        })));
    }
}
