//! The pods bound to this node: one watch (field selector `spec.nodeName`), one worker per
//! pod, and housekeeping that removes from the runtime what no pod owns any more.

pub mod env;
mod hooks;
mod pull_secrets;
pub mod spec;
pub mod status;
mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::{Mutex, watch};

use crate::cri::{Cri, v1};
use crate::events::Recorder;
use crate::volumes::TokenCache;

/// What every pod worker shares.
pub struct Shared {
    pub client: Client,
    pub cri: Cri,
    pub node_name: String,
    pub node_ip: IpAddr,
    pub pods_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub cgroup_root: String,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub host_resolv_conf: String,
    pub allocatable: BTreeMap<String, String>,
    pub memory_capacity: i128,
    pub tokens: Mutex<TokenCache>,
    pub events: Recorder,
}

impl Shared {
    pub fn settings(&self) -> spec::NodeSettings<'_> {
        spec::NodeSettings {
            cgroup_root: &self.cgroup_root,
            logs_dir: &self.logs_dir,
            cluster_dns: &self.cluster_dns,
            cluster_domain: &self.cluster_domain,
            host_resolv_conf: &self.host_resolv_conf,
        }
    }

    /// The pod's log directory (`<ns>_<name>_<uid>`), found by its uid.
    pub fn logs_dir_for_uid(&self, uid: &str) -> Option<PathBuf> {
        find_by_uid(&self.logs_dir, uid)
    }
}

/// Removes the pod's cgroup (`<cgroup-root>/pod<uid>`) from every hierarchy, once runc has
/// removed its containers' cgroups below it.
pub fn remove_pod_cgroups(cgroup_root: &str, uid: &str) {
    let relative = format!("{}/pod{uid}", cgroup_root.trim_matches('/'));
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = hierarchy.path().join(&relative);
        if dir.is_dir()
            && let Err(e) = std::fs::remove_dir(&dir)
        {
            tracing::debug!("cannot remove {}: {e}", dir.display());
        }
    }
}

fn find_by_uid(dir: &Path, uid: &str) -> Option<PathBuf> {
    let suffix = format!("_{uid}");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(&suffix))
        })
}

type Workers = HashMap<String, watch::Sender<Option<Arc<Pod>>>>;

/// Watches the node's pods and keeps one worker per pod until the pod is gone.
pub async fn run(shared: Arc<Shared>) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.node_name));
    let mut events = watcher(pods, config).boxed();
    let workers: Arc<std::sync::Mutex<Workers>> = Arc::default();
    let mut listed: Option<HashSet<String>> = None;
    // Housekeeping waits for the first full list: before it, every pod looks unknown.
    let mut synced = false;
    let mut housekeeping = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                let event = match event {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::warn!("pod watch: {e}");
                        continue;
                    }
                };
                match event {
                    watcher::Event::Init => listed = Some(HashSet::new()),
                    watcher::Event::InitApply(pod) => {
                        if let Some(listed) = listed.as_mut() {
                            listed.insert(pod.uid().unwrap_or_default());
                        }
                        dispatch(&shared, &workers, pod);
                    }
                    watcher::Event::InitDone => {
                        // Pods deleted while the watch was down: their workers end.
                        let listed = listed.take().unwrap_or_default();
                        let mut workers = workers.lock().expect("workers lock");
                        for (uid, sender) in workers.iter() {
                            if !listed.contains(uid) {
                                let _ = sender.send(None);
                            }
                        }
                        workers.retain(|uid, _| listed.contains(uid));
                        synced = true;
                    }
                    watcher::Event::Apply(pod) => dispatch(&shared, &workers, pod),
                    watcher::Event::Delete(pod) => {
                        let uid = pod.uid().unwrap_or_default();
                        if let Some(sender) = workers.lock().expect("workers lock").remove(&uid) {
                            let _ = sender.send(None);
                        }
                    }
                }
            }
            _ = housekeeping.tick(), if synced => {
                let known: HashSet<String> = workers.lock().expect("workers lock").keys().cloned().collect();
                if let Err(e) = remove_orphans(&shared, &known).await {
                    tracing::warn!("housekeeping: {e:#}");
                }
            }
        }
    }
    Ok(())
}

fn dispatch(shared: &Arc<Shared>, workers: &Arc<std::sync::Mutex<Workers>>, pod: Pod) {
    let uid = pod.uid().unwrap_or_default();
    let mut map = workers.lock().expect("workers lock");
    if let Some(sender) = map.get(&uid)
        && !sender.is_closed()
    {
        let _ = sender.send(Some(Arc::new(pod)));
        return;
    }
    let (sender, receiver) = watch::channel(Some(Arc::new(pod)));
    map.insert(uid.clone(), sender);
    let worker = worker::Worker::new(shared.clone(), uid.clone());
    let workers = workers.clone();
    tokio::spawn(async move {
        worker.run(receiver).await;
        let mut map = workers.lock().expect("workers lock");
        if map
            .get(&uid)
            .is_some_and(|s| s.is_closed() || s.borrow().is_none())
        {
            map.remove(&uid);
        }
    });
}

/// Sandboxes, pod directories and logs of pods no worker owns: left by pods deleted while the
/// agent was down.
async fn remove_orphans(shared: &Shared, known: &HashSet<String>) -> anyhow::Result<()> {
    let items = shared
        .cri
        .runtime
        .clone()
        .list_pod_sandbox(v1::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    for sandbox in items {
        let uid = sandbox
            .labels
            .get(spec::POD_UID)
            .cloned()
            .unwrap_or_default();
        if known.contains(&uid) {
            continue;
        }
        tracing::info!("removing the sandbox of a pod no longer on this node ({uid})");
        let mut runtime = shared.cri.runtime.clone();
        let _ = runtime
            .stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: sandbox.id.clone(),
            })
            .await;
        let _ = runtime
            .remove_pod_sandbox(v1::RemovePodSandboxRequest {
                pod_sandbox_id: sandbox.id.clone(),
            })
            .await;
        remove_pod_cgroups(&shared.cgroup_root, &uid);
    }
    if let Ok(entries) = std::fs::read_dir(&shared.pods_dir) {
        for entry in entries.flatten() {
            let uid = entry.file_name().to_string_lossy().into_owned();
            if !known.contains(&uid) {
                let _ = crate::volumes::teardown(&entry.path());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(&shared.logs_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let uid = name.rsplit('_').next().unwrap_or_default();
            if !known.contains(uid) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(())
}
