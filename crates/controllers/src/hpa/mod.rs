//! The horizontal pod autoscaler controller (autoscaling/v2): every 15 s it reads the target's
//! scale, clamps it to minReplicas/maxReplicas, computes a recommendation per metric from the
//! resource metrics API (`metrics.k8s.io/v1beta1` PodMetrics) as upstream's replica calculator
//! does, stabilizes and rate-limits it, scales the target through its `scale` subresource, and
//! reports status and conditions. When the metrics API is not served it says so in the
//! ScalingActive condition and an event, as upstream does, and only clamps.

pub mod replicas;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use r8s_api::quantity::Quantity;
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::events::{EventRecorder, reference};
use replicas::{PodSample, Target};

/// Upstream's `--horizontal-pod-autoscaler-sync-period`.
const SYNC_PERIOD: Duration = Duration::from_secs(15);
const DOWN_WINDOW_DEFAULT: i64 = 300;

#[derive(Debug, thiserror::Error)]
#[error("horizontalpodautoscaler {key}: {message}")]
pub struct Error {
    key: String,
    message: String,
}

struct Context {
    client: Client,
    clock: Arc<dyn Clock>,
    events: EventRecorder,
    /// Recent recommendations per autoscaler, for stabilization (upstream keeps them in
    /// memory too).
    history: Mutex<HashMap<String, BTreeMap<i64, i32>>>,
}

/// The API resource behind a `scaleTargetRef`.
fn target_resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.to_string()),
    };
    let plural = format!("{}s", kind.to_lowercase());
    ApiResource {
        group,
        version,
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        plural,
    }
}

/// A condition, keeping its transition time while its status is unchanged.
fn condition(
    old: &[Value],
    now: &Time,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
) -> Value {
    let status = if ok { "True" } else { "False" };
    let transition = old
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == status)
        .map(|c| c["lastTransitionTime"].clone())
        .unwrap_or_else(|| json!(now));
    json!({ "type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": transition })
}

/// Milli-units of a quantity string.
fn milli(text: &str) -> Option<i64> {
    Quantity::parse(text).map(|q| q.millis as i64)
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn pod_request(pod: &Pod, resource: &str, container: Option<&str>) -> Option<i64> {
    let mut total = 0;
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        if container.is_some_and(|name| name != c.name) {
            continue;
        }
        let request = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource))?;
        total += milli(&request.0)?;
    }
    Some(total)
}

/// The resource metrics API's usage per pod (milli-units), or why it cannot be had.
async fn pod_usage(
    client: &Client,
    namespace: &str,
    selector: &str,
    resource: &str,
    container: Option<&str>,
) -> Result<HashMap<String, i64>, String> {
    let api = ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    };
    let metrics: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &api);
    let list = metrics
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| {
            let detail = match &e {
                kube::Error::Api(s) if s.code == 404 => {
                    "the server could not find the requested resource (get pods.metrics.k8s.io)"
                        .to_string()
                }
                other => other.to_string(),
            };
            format!(
                "unable to get metrics for resource {resource}: unable to fetch metrics from resource metrics API: {detail}"
            )
        })?;
    // Upstream's metrics client treats an empty answer as an error, not as zero usage.
    if list.items.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    let mut usage = HashMap::new();
    for item in list.items {
        let mut total = 0;
        for c in item.data["containers"].as_array().into_iter().flatten() {
            if container.is_some_and(|name| c["name"] != name) {
                continue;
            }
            total += c["usage"][resource].as_str().and_then(milli).unwrap_or(0);
        }
        usage.insert(item.name_any(), total);
    }
    Ok(usage)
}

/// A recommendation for one metric spec, with the status entry it reports.
async fn metric_replicas(
    ctx: &Context,
    namespace: &str,
    selector: &str,
    current: i32,
    metric: &Value,
) -> Result<(i32, Value, String), (String, String)> {
    let kind = metric["type"].as_str().unwrap_or_default();
    let (source, container) = match kind {
        "Resource" => (&metric["resource"], None),
        "ContainerResource" => (
            &metric["containerResource"],
            metric["containerResource"]["container"].as_str(),
        ),
        other => {
            let reason = format!("FailedGet{other}Metric");
            return Err((
                reason,
                format!(
                    "unable to get {other} metric: the custom and external metrics APIs are not served by this cluster"
                ),
            ));
        }
    };
    let resource = source["name"].as_str().unwrap_or_default();
    let target = match source["target"]["type"].as_str() {
        Some("Utilization") => Target::Utilization(
            source["target"]["averageUtilization"]
                .as_i64()
                .unwrap_or(80) as i32,
        ),
        Some("AverageValue") => Target::AverageValue(
            source["target"]["averageValue"]
                .as_str()
                .and_then(milli)
                .unwrap_or(0),
        ),
        other => {
            return Err((
                "FailedGetResourceMetric".into(),
                format!("invalid target type {other:?} for resource {resource}"),
            ));
        }
    };
    let usage = pod_usage(&ctx.client, namespace, selector, resource, container)
        .await
        .map_err(|m| ("FailedGetResourceMetric".to_string(), m))?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| ("FailedGetResourceMetric".to_string(), e.to_string()))?;
    let samples: Vec<PodSample> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Failed" | "Succeeded")
            )
        })
        .map(|p| PodSample {
            name: p.name_any(),
            request: pod_request(p, resource, container),
            usage: usage.get(&p.name_any()).copied(),
            ready: pod_ready(p),
        })
        .collect();
    let recommendation = replicas::resource_replicas(current, &samples, &target)
        .map_err(|m| ("FailedComputeMetricsReplicas".to_string(), m))?;
    let mut current_metric = json!({ "averageValue": Quantity { millis: i128::from(recommendation.average_milli), binary: resource == "memory" }.to_string() });
    if let Some(utilization) = recommendation.utilization {
        current_metric["averageUtilization"] = json!(utilization);
    }
    let status = match container {
        None => {
            json!({ "type": "Resource", "resource": { "name": resource, "current": current_metric } })
        }
        Some(c) => {
            json!({ "type": "ContainerResource", "containerResource": { "name": resource, "container": c, "current": current_metric } })
        }
    };
    let what = match target {
        Target::Utilization(_) => {
            format!("{resource} resource utilization (percentage of request)")
        }
        Target::AverageValue(_) => format!("{resource} resource"),
    };
    Ok((recommendation.replicas, status, what))
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = hpa.namespace().unwrap_or_default();
    let name = hpa.name_any();
    let key = format!("{namespace}/{name}");
    let fail = |message: String| Error {
        key: key.clone(),
        message,
    };
    if hpa.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = hpa.spec.clone();
    let hpa_json = serde_json::to_value(&*hpa).map_err(|e| fail(e.to_string()))?;
    let old_conditions: Vec<Value> = hpa_json["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let now = Time(ctx.clock.now());
    let regarding = reference("autoscaling/v2", "HorizontalPodAutoscaler", &hpa.metadata);
    let target = target_resource(
        spec.scale_target_ref
            .api_version
            .as_deref()
            .unwrap_or("apps/v1"),
        &spec.scale_target_ref.kind,
    );
    let targets: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &namespace, &target);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &namespace);
    let post = |status: Value| {
        let hpas = hpas.clone();
        let name = name.clone();
        async move {
            hpas.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
        }
    };
    let scale = match targets.get_scale(&spec.scale_target_ref.name).await {
        Ok(scale) => scale,
        Err(e) => {
            let message =
                format!("the HPA controller was unable to get the target's current scale: {e}");
            ctx.events
                .warning(&regarding, "FailedGetScale", "GetScale", message.clone())
                .await;
            let status = json!({
                "currentReplicas": hpa.status.as_ref().and_then(|s| s.current_replicas).unwrap_or(0),
                "desiredReplicas": hpa.status.as_ref().map_or(0, |s| s.desired_replicas),
                "observedGeneration": hpa.metadata.generation,
                "conditions": [condition(&old_conditions, &now, "AbleToScale", false, "FailedGetScale", message)],
            });
            post(status).await.map_err(|e| fail(e.to_string()))?;
            return Ok(Action::requeue(SYNC_PERIOD));
        }
    };
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let selector = scale
        .status
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let mut conditions = Vec::new();
    let mut current_metrics = Vec::new();
    let mut desired;
    let mut reason_text = String::new();
    if current == 0 && min != 0 {
        desired = 0;
        conditions.push(condition(
            &old_conditions,
            &now,
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero".into(),
        ));
    } else if current > max {
        desired = max;
        reason_text = "Current number of replicas above Spec.MaxReplicas".into();
    } else if current < min {
        desired = min;
        reason_text = "Current number of replicas below Spec.MinReplicas".into();
    } else {
        let metrics = hpa_json["spec"]["metrics"].as_array().cloned().unwrap_or_else(|| {
            // autoscaling/v2 defaults to 80% CPU when no metric is given.
            vec![json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}})]
        });
        let mut proposal: Option<(i32, String)> = None;
        let mut failure: Option<(String, String)> = None;
        for metric in &metrics {
            match metric_replicas(&ctx, &namespace, &selector, current, metric).await {
                Ok((replicas, status, what)) => {
                    current_metrics.push(status);
                    if proposal.as_ref().is_none_or(|(r, _)| replicas > *r) {
                        proposal = Some((replicas, what));
                    }
                }
                Err(e) => failure = Some(e),
            }
        }
        match (proposal, failure) {
            (Some((replicas, what)), _) => {
                conditions.push(condition(
                    &old_conditions,
                    &now,
                    "ScalingActive",
                    true,
                    "ValidMetricFound",
                    format!(
                        "the HPA was able to successfully calculate a replica count from {what}"
                    ),
                ));
                let down_window =
                    hpa_json["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
                        .as_i64()
                        .unwrap_or(DOWN_WINDOW_DEFAULT);
                let up_window =
                    hpa_json["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"]
                        .as_i64()
                        .unwrap_or(0);
                let stabilized = {
                    let mut history = ctx.history.lock().expect("history lock");
                    let entry = history.entry(key.clone()).or_default();
                    replicas::stabilize(
                        entry,
                        now.0.as_second(),
                        replicas,
                        current,
                        down_window,
                        up_window,
                    )
                };
                desired = replicas::rate_limit(current, stabilized);
                if desired != current {
                    reason_text = if desired > current {
                        format!("{what} above target")
                    } else {
                        "All metrics below target".into()
                    };
                }
            }
            (None, Some((reason, message))) => {
                ctx.events
                    .warning(
                        &regarding,
                        &reason,
                        "ComputeMetricsReplicas",
                        message.clone(),
                    )
                    .await;
                conditions.push(condition(
                    &old_conditions,
                    &now,
                    "ScalingActive",
                    false,
                    &reason,
                    format!("the HPA was unable to compute the replica count: {message}"),
                ));
                desired = current;
            }
            (None, None) => desired = current,
        }
    }
    let limited = desired.clamp(min.min(max), max);
    let limited_condition = if desired > max {
        condition(
            &old_conditions,
            &now,
            "ScalingLimited",
            true,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count".into(),
        )
    } else if desired < min {
        condition(
            &old_conditions,
            &now,
            "ScalingLimited",
            true,
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count".into(),
        )
    } else {
        condition(
            &old_conditions,
            &now,
            "ScalingLimited",
            false,
            "DesiredWithinRange",
            "the desired count is within the acceptable range".into(),
        )
    };
    if current != 0 || min == 0 {
        desired = limited;
    }
    let mut last_scale_time = hpa_json["status"]["lastScaleTime"].clone();
    if desired != current && !(current == 0 && min != 0) {
        targets
            .patch_scale(
                &spec.scale_target_ref.name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "replicas": desired } })),
            )
            .await
            .map_err(|e| fail(format!("cannot rescale: {e}")))?;
        let note = format!("New size: {desired}; reason: {reason_text}");
        ctx.events
            .normal(&regarding, "SuccessfulRescale", "Rescale", note)
            .await;
        conditions.insert(
            0,
            condition(
                &old_conditions,
                &now,
                "AbleToScale",
                true,
                "SucceededRescale",
                format!("the HPA controller was able to update the target scale to {desired}"),
            ),
        );
        last_scale_time = json!(now);
    } else {
        conditions.insert(
            0,
            condition(
                &old_conditions,
                &now,
                "AbleToScale",
                true,
                "ReadyForNewScale",
                "recommended size matches current size".into(),
            ),
        );
    }
    conditions.push(limited_condition);
    let mut status = json!({
        "currentReplicas": current,
        "desiredReplicas": desired,
        "observedGeneration": hpa.metadata.generation,
        "conditions": conditions,
        "currentMetrics": if current_metrics.is_empty() { Value::Null } else { json!(current_metrics) },
    });
    if !last_scale_time.is_null() {
        status["lastScaleTime"] = last_scale_time;
    }
    if status["conditions"] != hpa_json["status"]["conditions"]
        || status["desiredReplicas"] != hpa_json["status"]["desiredReplicas"]
        || status["currentReplicas"] != hpa_json["status"]["currentReplicas"]
        || status["currentMetrics"] != hpa_json["status"]["currentMetrics"]
        || status["observedGeneration"] != hpa_json["status"]["observedGeneration"]
    {
        post(status).await.map_err(|e| fail(e.to_string()))?;
    }
    Ok(Action::requeue(SYNC_PERIOD))
}

fn error_policy(_: Arc<HorizontalPodAutoscaler>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!("{error}");
    Action::requeue(SYNC_PERIOD)
}

pub async fn run(client: Client, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let hpas: Api<HorizontalPodAutoscaler> = Api::all(client.clone());
    let ctx = Arc::new(Context {
        events: EventRecorder::new(client.clone(), "horizontal-pod-autoscaler"),
        client,
        clock,
        history: Mutex::default(),
    });
    Controller::new(hpas, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_targets_name_their_plural() {
        let r = target_resource("apps/v1", "Deployment");
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.plural.as_str()),
            ("apps", "v1", "deployments")
        );
        let r = target_resource("v1", "ReplicationController");
        assert_eq!(
            (r.group.as_str(), r.plural.as_str()),
            ("", "replicationcontrollers")
        );
    }

    #[test]
    fn requests_add_up_over_containers() {
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "0.25"}}}]}}))
            .unwrap();
        assert_eq!(pod_request(&pod, "cpu", None), Some(350));
        assert_eq!(pod_request(&pod, "cpu", Some("b")), Some(250));
        assert_eq!(pod_request(&pod, "memory", None), None);
    }
}
