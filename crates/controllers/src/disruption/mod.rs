//! The disruption controller: keeps each PodDisruptionBudget's status (expected pods, current
//! and desired healthy, disruptions allowed, the DisruptionAllowed condition) and prunes the
//! `disruptedPods` entries the eviction API writes once the pod is going or two minutes have
//! passed. Percentages and maxUnavailable count from the owning controllers' scale, read through
//! their scale subresource as upstream's finders do.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use r8s_informers::Informers;

use crate::clock::Clock;
use crate::replicaset::pods::is_ready;
use crate::{ownership, selector};

/// How long an eviction's entry holds a pod out of the healthy count before the controller
/// assumes the deletion is not coming (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("poddisruptionbudget {key}: {action}: {source}")]
    Api {
        key: String,
        action: String,
        source: kube::Error,
    },
}

pub struct Context {
    pub client: Client,
    pub pods: Store<Pod>,
    pub clock: Arc<dyn Clock>,
}

/// The pods a budget covers: a nil selector covers none, an empty one every pod of the
/// namespace (policy/v1).
pub fn covered_pods(pdb: &PodDisruptionBudget, pods: &Store<Pod>) -> Vec<Arc<Pod>> {
    let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    let mut covered = pods.state_filter(|p| {
        p.namespace() == pdb.namespace() && selector::matches(selector, p.metadata.labels.as_ref())
    });
    covered.sort_by_key(|p| p.name_any());
    covered
}

/// Resolves an int-or-percent against `total`, rounding percentages up as upstream does.
pub fn scaled(value: &IntOrString, total: i32) -> Option<i32> {
    match value {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(text) => {
            let percent: i64 = text.strip_suffix('%')?.parse().ok()?;
            Some(((percent * i64::from(total) + 99) / 100) as i32)
        }
    }
}

fn needs_scale(pdb: &PodDisruptionBudget) -> bool {
    let spec = pdb.spec.as_ref();
    spec.is_some_and(|s| {
        s.max_unavailable.is_some() || matches!(s.min_available, Some(IntOrString::String(_)))
    })
}

/// The new status, and when the next disruptedPods entry expires.
pub fn status(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    expected_scale: Option<i32>,
    now: Timestamp,
) -> (PodDisruptionBudgetStatus, Option<Timestamp>) {
    let spec = pdb.spec.clone().unwrap_or_default();
    let old = pdb.status.clone().unwrap_or_default();
    let recorded = old.disrupted_pods.clone().unwrap_or_default();
    let mut disrupted = BTreeMap::new();
    let mut next_expiry: Option<Timestamp> = None;
    for pod in pods {
        let name = pod.name_any();
        let Some(since) = recorded.get(&name) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let expires = since.0 + DELETION_TIMEOUT;
        if expires <= now {
            continue;
        }
        next_expiry = Some(next_expiry.map_or(expires, |t| t.min(expires)));
        disrupted.insert(name, since.clone());
    }
    let current_healthy = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && is_ready(p)
                && !disrupted.contains_key(&p.name_any())
        })
        .count() as i32;
    let (expected, desired) = match (&spec.max_unavailable, &spec.min_available) {
        (Some(max), _) => {
            let expected = expected_scale.unwrap_or(0);
            let max = scaled(max, expected).unwrap_or(0);
            (expected, (expected - max).max(0))
        }
        (None, Some(IntOrString::Int(min))) => (pods.len() as i32, *min),
        (None, Some(min)) => {
            let expected = expected_scale.unwrap_or(0);
            (expected, scaled(min, expected).unwrap_or(0))
        }
        (None, None) => (pods.len() as i32, 0),
    };
    let allowed = if expected <= 0 {
        0
    } else {
        (current_healthy - desired).max(0)
    };
    let (state, reason, message) = if allowed > 0 {
        ("True", "SufficientPods", "")
    } else {
        ("False", "InsufficientPods", "")
    };
    let previous = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed");
    let transition = match previous {
        Some(c) if c.status == state => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: "DisruptionAllowed".into(),
        status: state.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: pdb.metadata.generation,
        last_transition_time: transition,
    };
    let status = PodDisruptionBudgetStatus {
        conditions: Some(vec![condition]),
        current_healthy: Some(current_healthy),
        desired_healthy: Some(desired),
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        disruptions_allowed: Some(allowed),
        expected_pods: Some(expected),
        observed_generation: pdb.metadata.generation,
    };
    (status, next_expiry)
}

/// The API resource of a known scalable kind, as upstream's finders know them; other kinds are
/// looked up through discovery.
fn scalable(kind: &str, api_version: &str) -> Option<ApiResource> {
    let (group, plural) = match (kind, api_version) {
        ("ReplicaSet", "apps/v1") => ("apps", "replicasets"),
        ("Deployment", "apps/v1") => ("apps", "deployments"),
        ("StatefulSet", "apps/v1") => ("apps", "statefulsets"),
        ("ReplicationController", "v1") => ("", "replicationcontrollers"),
        _ => return None,
    };
    Some(ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    })
}

/// The summed replicas of the covered pods' controllers (a ReplicaSet a Deployment owns counts
/// as that Deployment), each counted once.
async fn expected_scale(client: &Client, namespace: &str, pods: &[Arc<Pod>]) -> kube::Result<i32> {
    let mut controllers = BTreeMap::new();
    for pod in pods {
        if let Some(owner) = ownership::controller_of(&pod.metadata) {
            controllers.insert(owner.uid.clone(), owner.clone());
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    for owner in controllers.into_values() {
        let mut target = owner;
        if target.kind == "ReplicaSet" {
            let sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
                Api::namespaced(client.clone(), namespace);
            if let Some(rs) = sets.get_opt(&target.name).await?
                && let Some(deployment) = ownership::controller_of(&rs.metadata)
                && deployment.kind == "Deployment"
            {
                target = deployment.clone();
            }
        }
        if !seen.insert(target.uid.clone()) {
            continue;
        }
        let resource = match scalable(&target.kind, &target.api_version) {
            Some(resource) => resource,
            None => {
                let (group, version) = target
                    .api_version
                    .split_once('/')
                    .unwrap_or(("", &target.api_version));
                let gvk = kube::api::GroupVersionKind::gvk(group, version, &target.kind);
                kube::discovery::pinned_kind(client, &gvk).await?.0
            }
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let scale = api.get_scale(&target.name).await?;
        total += scale.spec.and_then(|s| s.replicas).unwrap_or(0);
    }
    Ok(total)
}

async fn sync(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = pdb.namespace().unwrap_or_default();
    let name = pdb.name_any();
    let err = |action: &str| {
        let (key, action) = (format!("{namespace}/{name}"), action.to_owned());
        move |source| Error::Api {
            key,
            action,
            source,
        }
    };
    let pods = covered_pods(&pdb, &ctx.pods);
    let scale = if needs_scale(&pdb) {
        Some(
            expected_scale(&ctx.client, &namespace, &pods)
                .await
                .map_err(err("read the controllers' scale"))?,
        )
    } else {
        None
    };
    let now = ctx.clock.now();
    let (status, next_expiry) = status(&pdb, &pods, scale, now);
    if pdb.status.as_ref() != Some(&status) {
        let mut updated = (*pdb).clone();
        updated.status = Some(status);
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &namespace);
        api.replace_status(&name, &PostParams::default(), &updated)
            .await
            .map_err(err("update status"))?;
    }
    Ok(match next_expiry {
        Some(at) => Action::requeue(at.duration_since(now).unsigned_abs() + RETRY),
        // The controllers' scale is not watched: look again now and then, as upstream's resync.
        None if scale.is_some() => Action::requeue(Duration::from_secs(30)),
        None => Action::await_change(),
    })
}

fn error_policy(_pdb: Arc<PodDisruptionBudget>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "disruption budget sync");
    Action::requeue(RETRY)
}

/// The budgets a pod event concerns: those covering it or holding it in `disruptedPods`.
pub fn budgets_of(
    pod: &Pod,
    budgets: &Store<PodDisruptionBudget>,
) -> Vec<ObjectRef<PodDisruptionBudget>> {
    let name = pod.name_any();
    budgets
        .state_filter(|b| {
            let covers = b
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|s| selector::matches(s, pod.metadata.labels.as_ref()));
            let lists = b
                .status
                .as_ref()
                .and_then(|s| s.disrupted_pods.as_ref())
                .is_some_and(|d| d.contains_key(&name));
            b.namespace() == pod.namespace() && (covers || lists)
        })
        .iter()
        .map(|b| ObjectRef::from_obj(&**b))
        .collect()
}

pub async fn run(informers: Arc<Informers>, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let (pods, pod_events) = informers.cache_and_touched::<Pod>().await;
    let controller = crate::controller_for::<PodDisruptionBudget>(&informers).await;
    let budgets = controller.store();
    let ctx = Arc::new(Context {
        client,
        pods,
        clock,
    });
    controller
        .watches_shared_stream(pod_events, move |pod: Arc<Pod>| budgets_of(&pod, &budgets))
        .run(sync, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}
