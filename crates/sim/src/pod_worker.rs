//! The pods of every hollow node, from one watch over all bound pods: events are dispatched by
//! `spec.nodeName`, each pod is synced (its status reported, or its deletion finished) by at
//! most one task at a time, with a bounded number in flight, and only pods with work pending
//! are held in memory.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::node::HollowNode;
use crate::pod_ips::PodIps;
use crate::pod_status::{self, Placement};
use crate::{FIELD_MANAGER, is_status};

/// How soon a pod whose sync failed is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The smallest JSON merge patch turning `old` into `new`, or `None` when they are equal.
pub fn merge_diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = serde_json::Map::new();
            for (key, value) in new {
                let change = match old.get(key) {
                    Some(previous) => merge_diff(previous, value),
                    None => Some(value.clone()),
                };
                if let Some(change) = change {
                    patch.insert(key.clone(), change);
                }
            }
            for key in old.keys().filter(|k| !new.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        _ => (old != new).then(|| new.clone()),
    }
}

/// Which of our nodes a pod is bound to.
fn node_index(nodes: &[HollowNode], prefix: &str, node_name: &str) -> Option<usize> {
    let index: usize = node_name.strip_prefix(prefix)?.parse().ok()?;
    nodes
        .get(index)
        .filter(|n| n.name == node_name)
        .map(|_| index)
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// The kubelet's status write, then, for a pod being deleted, the final delete.
async fn sync(
    api: Api<Pod>,
    pod: Arc<Pod>,
    placement: Placement,
) -> kube::Result<Option<Duration>> {
    let report = pod_status::pod_status(&pod, placement, Timestamp::now());
    let old = serde_json::to_value(pod.status.clone().unwrap_or_default()).unwrap_or_default();
    let new = serde_json::to_value(&report.status).unwrap_or_default();
    let name = pod.name_any();
    if let Some(status) = merge_diff(&old, &new) {
        // The resourceVersion makes the write conditional: a pod changed meanwhile is a 409,
        // and its newer version is already on its way through the watch.
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": pod.resource_version() },
            "status": status,
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        // The answer (the whole pod) is not read: the watch brings the pod as written, and
        // thousands of hollow kubelets share this process's CPU with what they measure.
        let request = kube::core::Request::new(api.resource_url())
            .patch_subresource("status", &name, &params, &Patch::Merge(&patch))
            .map_err(kube::Error::BuildRequest)?;
        api.clone().into_client().request_text(request).await?;
    }
    if pod.metadata.deletion_timestamp.is_some() {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
            Err(e) => return Err(e),
        }
        return Ok(None);
    }
    Ok(report.recheck_after)
}

/// The pods this process looks after, and the work it owes them.
struct PodWorker {
    client: Client,
    nodes: Arc<[HollowNode]>,
    prefix: String,
    concurrency: usize,
    node_ips: Vec<PodIps>,
    /// Pod UID → its node and address, to free the address when the pod goes.
    pod_ips: HashMap<String, (usize, Ipv4Addr)>,
    /// The newest version of each pod with work pending, in flight or on a timer.
    pending: HashMap<String, Arc<Pod>>,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    in_flight: HashSet<String>,
    /// Pods that changed while a sync of theirs was in flight.
    redo: HashSet<String>,
    timers: BTreeSet<(Instant, String)>,
    /// UIDs seen since the watch last (re)listed, to free addresses of pods deleted meanwhile.
    relisted: Option<HashSet<String>>,
    tasks: JoinSet<(String, kube::Result<Option<Duration>>)>,
}

impl PodWorker {
    fn node_of(&self, pod: &Pod) -> Option<usize> {
        let node_name = pod.spec.as_ref()?.node_name.as_deref()?;
        node_index(&self.nodes, &self.prefix, node_name)
    }

    fn enqueue(&mut self, key: String) {
        if self.in_flight.contains(&key) {
            self.redo.insert(key);
        } else if self.queued.insert(key.clone()) {
            self.queue.push_back(key);
        }
    }

    fn release(&mut self, uid: &str) {
        if let Some((node, ip)) = self.pod_ips.remove(uid) {
            let cidr = self.nodes[node].pod_cidr;
            self.node_ips[node].release(&cidr, ip);
        }
    }

    /// Gives the pod its address: the one it already reports, or the next free one.
    fn address(&mut self, pod: &Pod, node: usize) {
        let uid = pod.uid().unwrap_or_default();
        if self.pod_ips.contains_key(&uid) {
            return;
        }
        let cidr = self.nodes[node].pod_cidr;
        let reported = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let ip = match reported {
            Some(ip) => self.node_ips[node].claim(&cidr, ip).then_some(ip),
            None => self.node_ips[node].allocate(&cidr),
        };
        match ip {
            Some(ip) => {
                self.pod_ips.insert(uid, (node, ip));
            }
            None if reported.is_none() => tracing::warn!(
                pod = %pod_key(pod),
                node = %self.nodes[node].name,
                "no free pod IP in {cidr}"
            ),
            None => {}
        }
    }

    fn applied(&mut self, pod: Pod) {
        let Some(node) = self.node_of(&pod) else {
            return;
        };
        let uid = pod.uid().unwrap_or_default();
        if let Some(seen) = self.relisted.as_mut() {
            seen.insert(uid.clone());
        }
        if pod_status::is_terminal(&pod) {
            // Its sandbox is gone: the address is free again, as host-local IPAM frees it.
            self.release(&uid);
            if pod.metadata.deletion_timestamp.is_none() {
                self.pending.remove(&pod_key(&pod));
                return;
            }
        } else {
            self.address(&pod, node);
        }
        let key = pod_key(&pod);
        self.pending.insert(key.clone(), Arc::new(pod));
        self.enqueue(key);
    }

    fn deleted(&mut self, pod: &Pod) {
        self.release(&pod.uid().unwrap_or_default());
        let key = pod_key(pod);
        self.pending.remove(&key);
    }

    fn relist_done(&mut self) {
        if let Some(seen) = self.relisted.take() {
            let gone: Vec<String> = self
                .pod_ips
                .keys()
                .filter(|uid| !seen.contains(*uid))
                .cloned()
                .collect();
            for uid in gone {
                self.release(&uid);
            }
        }
    }

    fn on_event(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => self.relisted = Some(HashSet::new()),
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => self.applied(pod),
            watcher::Event::InitDone => self.relist_done(),
            watcher::Event::Delete(pod) => self.deleted(&pod),
        }
    }

    fn start_syncs(&mut self) {
        while self.tasks.len() < self.concurrency {
            let Some(key) = self.queue.pop_front() else {
                return;
            };
            self.queued.remove(&key);
            let Some(pod) = self.pending.get(&key).cloned() else {
                continue;
            };
            let Some(node) = self.node_of(&pod) else {
                continue;
            };
            let pod_ip = self
                .pod_ips
                .get(&pod.uid().unwrap_or_default())
                .map(|(_, ip)| *ip);
            let reported = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_ref())
                .is_some();
            if pod_ip.is_none()
                && !reported
                && !pod_status::is_terminal(&pod)
                && pod.metadata.deletion_timestamp.is_none()
            {
                // No address, no sandbox: the pod stays Pending until one is free.
                self.timers.insert((Instant::now() + RETRY * 10, key));
                continue;
            }
            let placement = Placement {
                host_ip: self.nodes[node].internal_ip,
                pod_ip,
            };
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            self.in_flight.insert(key.clone());
            self.tasks
                .spawn(async move { (key, sync(api, pod, placement).await) });
        }
    }

    fn finished(&mut self, key: String, result: kube::Result<Option<Duration>>) {
        self.in_flight.remove(&key);
        let recheck = match result {
            Ok(recheck) => recheck,
            Err(e) => {
                if !is_status(&e, 409) && !is_status(&e, 404) {
                    tracing::warn!(pod = %key, "pod status update failed: {e}");
                }
                Some(RETRY)
            }
        };
        if self.redo.remove(&key) {
            self.enqueue(key);
        } else if let Some(after) = recheck {
            self.timers.insert((Instant::now() + after, key));
        } else {
            self.pending.remove(&key);
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some((at, _)) = self.timers.first() {
            if *at > now {
                break;
            }
            let (_, key) = self.timers.pop_first().expect("a first timer");
            if self.pending.contains_key(&key) {
                self.enqueue(key);
            }
        }
    }
}

/// Watches every bound pod and syncs those on our nodes, forever.
pub async fn run(client: Client, nodes: Arc<[HollowNode]>, prefix: String, concurrency: usize) {
    let api: Api<Pod> = Api::all(client.clone());
    let events =
        watcher(api, watcher::Config::default().fields("spec.nodeName!=")).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut worker = PodWorker {
        client,
        node_ips: vec![PodIps::default(); nodes.len()],
        nodes,
        prefix,
        concurrency,
        pod_ips: HashMap::new(),
        pending: HashMap::new(),
        queue: VecDeque::new(),
        queued: HashSet::new(),
        in_flight: HashSet::new(),
        redo: HashSet::new(),
        timers: BTreeSet::new(),
        relisted: None,
        tasks: JoinSet::new(),
    };
    loop {
        let next_timer = worker.timers.first().map(|(at, _)| *at);
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => worker.on_event(event),
                Some(Err(e)) => tracing::warn!("pod watch failed, retrying: {e}"),
                None => return,
            },
            Some(done) = worker.tasks.join_next() => match done {
                Ok((key, result)) => worker.finished(key, result),
                Err(e) => tracing::error!("a pod sync panicked: {e}"),
            },
            _ = sleep_until(next_timer) => worker.fire_timers(),
        }
        worker.start_syncs();
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_diff_sends_only_what_changed_and_nulls_what_went() {
        let old =
            json!({ "phase": "Pending", "state": { "waiting": { "reason": "x" } }, "same": 1 });
        let new = json!({ "phase": "Running", "state": { "running": {} }, "same": 1 });
        assert_eq!(
            merge_diff(&old, &new),
            Some(json!({ "phase": "Running", "state": { "running": {}, "waiting": null } }))
        );
        assert_eq!(merge_diff(&new, &new), None);
    }

    #[test]
    fn merge_diff_replaces_lists_whole() {
        let old = json!({ "conditions": [{ "type": "Ready", "status": "False" }] });
        let new = json!({ "conditions": [{ "type": "Ready", "status": "True" }] });
        assert_eq!(merge_diff(&old, &new), Some(new.clone()));
    }

    #[test]
    fn pods_are_dispatched_only_to_nodes_of_this_process() {
        let node = |name: &str| HollowNode {
            name: name.into(),
            internal_ip: Ipv4Addr::LOCALHOST,
            pod_cidr: "10.244.0.0/24".parse().unwrap(),
        };
        let nodes = [node("hollow-0"), node("hollow-1")];
        assert_eq!(node_index(&nodes, "hollow-", "hollow-1"), Some(1));
        assert_eq!(node_index(&nodes, "hollow-", "hollow-2"), None);
        assert_eq!(node_index(&nodes, "hollow-", "hollow-01"), None);
        assert_eq!(node_index(&nodes, "hollow-", "worker-1"), None);
    }
}
