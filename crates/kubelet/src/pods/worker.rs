//! One pod's worker: it drives the runtime toward the pod's spec (sandbox, then init containers
//! in order, then containers, restarted by the restart policy with upstream's back-off), runs
//! probes and hooks, posts the status, and on deletion stops everything within the grace
//! period and removes the pod for good.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::cri::v1;
use crate::events::container_path;
use crate::pods::Shared;
use crate::pods::env::{self, ConfigError, Sources};
use crate::pods::spec::{self, CONTAINER_HASH, CONTAINER_NAME, POD_UID};
use crate::pods::status::{self, ContainerView, Observed};
use crate::probes::{Kind, Probes};
use crate::volumes::{self, VolumeContext};

/// Upstream's container restart back-off: 10 s doubling to 5 min, forgiven after 10 min of
/// running well.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often a steady pod is looked at (container exits, probes).
const RESYNC: Duration = Duration::from_secs(1);
/// How often volume contents (configMap, secret, projected) are refreshed.
const VOLUME_REFRESH: Duration = Duration::from_secs(10);

pub struct Worker {
    shared: Arc<Shared>,
    uid: String,
    pod_dir: PathBuf,
    probes: Probes,
    /// Image pull back-off per image: when the next pull may be tried, and the wait after it.
    pull_backoff: HashMap<String, (Instant, Duration)>,
    waiting: HashMap<String, (String, String)>,
    volumes: Option<(BTreeMap<String, PathBuf>, Instant)>,
    last_status: Option<Value>,
    /// When each running container was first seen running, for probe delays.
    running_since: HashMap<String, Instant>,
    /// Containers being stopped in the background (liveness failures, changed specs): left
    /// alone until they exit.
    stopping: std::collections::HashSet<String>,
}

fn rpc<T>(what: &str, result: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|e| anyhow::anyhow!("{what}: {}", e.message()))
}

fn restart_policy(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// An init container with `restartPolicy: Always`: a sidecar (upstream's KEP-753).
fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

fn deadline_exceeded(pod: &Pod) -> bool {
    let Some(deadline) = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds) else {
        return false;
    };
    let Some(start) = pod.status.as_ref().and_then(|s| s.start_time.as_ref()) else {
        return false;
    };
    let elapsed = Timestamp::now().duration_since(start.0);
    elapsed.as_secs() >= deadline
}

fn backoff_delay(restarts: u32) -> Duration {
    if restarts == 0 {
        return Duration::ZERO;
    }
    BACKOFF_INITIAL
        .saturating_mul(1u32 << (restarts - 1).min(10))
        .min(BACKOFF_MAX)
}

impl Worker {
    pub fn new(shared: Arc<Shared>, uid: String) -> Self {
        let pod_dir = shared.pods_dir.join(&uid);
        Self {
            shared,
            uid,
            pod_dir,
            probes: Probes::default(),
            pull_backoff: HashMap::new(),
            waiting: HashMap::new(),
            volumes: None,
            last_status: None,
            running_since: HashMap::new(),
            stopping: Default::default(),
        }
    }

    /// Runs until the pod is gone from the API and from the node.
    pub async fn run(mut self, mut updates: watch::Receiver<Option<Arc<Pod>>>) {
        loop {
            let pod = updates.borrow_and_update().clone();
            let Some(pod) = pod else {
                if let Err(e) = self.kill(None, Duration::ZERO).await {
                    tracing::warn!("pod {}: cannot stop it: {e:#}", self.uid);
                }
                return;
            };
            let next = if pod.metadata.deletion_timestamp.is_some() {
                match self.terminate(&pod).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!("pod {}: cannot finish its deletion: {e:#}", pod.name_any());
                        Duration::from_secs(2)
                    }
                }
            } else {
                match self.sync(&pod).await {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::warn!(
                            "pod {}/{}: {e:#}",
                            pod.namespace().unwrap_or_default(),
                            pod.name_any()
                        );
                        Duration::from_secs(2)
                    }
                }
            };
            tokio::select! {
                changed = updates.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(next) => {}
            }
        }
    }

    fn settings(&self) -> spec::NodeSettings<'_> {
        self.shared.settings()
    }

    async fn sandboxes(&self) -> anyhow::Result<Vec<v1::PodSandbox>> {
        let filter = v1::PodSandboxFilter {
            label_selector: HashMap::from([(POD_UID.to_string(), self.uid.clone())]),
            ..Default::default()
        };
        let mut items = rpc(
            "list sandboxes",
            self.shared
                .cri
                .runtime
                .clone()
                .list_pod_sandbox(v1::ListPodSandboxRequest {
                    filter: Some(filter),
                })
                .await,
        )?
        .items;
        items.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(items)
    }

    /// The containers of one sandbox by name, newest first, with their full status.
    async fn containers(&self, sandbox_id: &str) -> anyhow::Result<HashMap<String, Vec<Observed>>> {
        let filter = v1::ContainerFilter {
            pod_sandbox_id: sandbox_id.to_string(),
            ..Default::default()
        };
        let list = rpc(
            "list containers",
            self.shared
                .cri
                .runtime
                .clone()
                .list_containers(v1::ListContainersRequest {
                    filter: Some(filter),
                })
                .await,
        )?
        .containers;
        let mut by_name: HashMap<String, Vec<Observed>> = HashMap::new();
        for c in list {
            let name = c.labels.get(CONTAINER_NAME).cloned().unwrap_or_default();
            let status = match self
                .shared
                .cri
                .runtime
                .clone()
                .container_status(v1::ContainerStatusRequest {
                    container_id: c.id.clone(),
                    verbose: false,
                })
                .await
            {
                Ok(answer) => answer.into_inner().status.unwrap_or_default(),
                Err(_) => continue,
            };
            by_name.entry(name).or_default().push(Observed {
                id: c.id.clone(),
                attempt: c.metadata.map_or(0, |m| m.attempt),
                state: status.state(),
                created_at: status.created_at,
                started_at: status.started_at,
                finished_at: status.finished_at,
                exit_code: status.exit_code,
                reason: status.reason,
                message: status.message,
                image_ref: status.image_ref,
                hash: c
                    .annotations
                    .get(CONTAINER_HASH)
                    .cloned()
                    .unwrap_or_default(),
            });
        }
        for list in by_name.values_mut() {
            list.sort_by_key(|c| std::cmp::Reverse((c.attempt, c.created_at)));
        }
        Ok(by_name)
    }

    async fn sync(&mut self, pod: &Pod) -> anyhow::Result<Duration> {
        if is_terminal(pod) {
            // Finished pods keep their exited containers (for `kubectl logs`) but nothing runs.
            for sandbox in self.sandboxes().await? {
                if sandbox.state() == v1::PodSandboxState::SandboxReady {
                    self.stop_sandbox(&sandbox.id).await?;
                }
            }
            return Ok(Duration::from_secs(3600));
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = restart_policy(pod);
        std::fs::create_dir_all(&self.pod_dir)?;
        if deadline_exceeded(pod) {
            return self.fail_for_deadline(pod).await;
        }

        // Volumes first: without them no container can start.
        let refresh = self
            .volumes
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= VOLUME_REFRESH);
        if refresh {
            let host_ip = self.shared.node_ip.to_string();
            let mut tokens = self.shared.tokens.lock().await;
            let mut ctx = VolumeContext {
                client: &self.shared.client,
                pod_dir: &self.pod_dir,
                host_ip: &host_ip,
                node_allocatable: &self.shared.allocatable,
                tokens: &mut tokens,
            };
            match volumes::prepare(pod, &mut ctx).await {
                Ok(paths) => self.volumes = Some((paths, Instant::now())),
                Err(ConfigError(message)) if self.volumes.is_none() => {
                    drop(tokens);
                    self.shared
                        .events
                        .pod(pod, None, true, "FailedMount", message.clone());
                    self.post_status(pod, false, &HashMap::new(), None).await?;
                    return Ok(Duration::from_secs(2));
                }
                Err(ConfigError(message)) => {
                    tracing::warn!(
                        "pod {}: cannot refresh its volumes: {message}",
                        pod.name_any()
                    );
                }
            }
        }

        // The sandbox: the one that is ready, or a new one.
        let sandboxes = self.sandboxes().await?;
        let ready = sandboxes
            .iter()
            .find(|s| s.state() == v1::PodSandboxState::SandboxReady)
            .cloned();
        let sandbox_config = spec::sandbox_config(
            pod,
            ready
                .as_ref()
                .and_then(|s| s.metadata.as_ref())
                .map_or(sandboxes.len() as u32, |m| m.attempt),
            &self.settings(),
        );
        let sandbox_id = match ready {
            Some(s) => s.id,
            None => {
                for old in &sandboxes {
                    let _ = self.remove_sandbox(&old.id).await;
                }
                let id = match self
                    .shared
                    .cri
                    .runtime
                    .clone()
                    .run_pod_sandbox(v1::RunPodSandboxRequest {
                        config: Some(sandbox_config.clone()),
                        runtime_handler: String::new(),
                    })
                    .await
                {
                    Ok(answer) => answer.into_inner().pod_sandbox_id,
                    Err(e) => {
                        let message = format!("Failed to create pod sandbox: {}", e.message());
                        self.shared
                            .events
                            .pod(pod, None, true, "FailedCreatePodSandBox", message);
                        self.post_status(pod, false, &HashMap::new(), None).await?;
                        return Ok(Duration::from_secs(5));
                    }
                };
                if !sandboxes.is_empty() {
                    self.shared.events.pod(
                        pod,
                        None,
                        false,
                        "SandboxChanged",
                        "Pod sandbox changed, it will be killed and re-created.".into(),
                    );
                }
                id
            }
        };
        let sandbox_status = rpc(
            "sandbox status",
            self.shared
                .cri
                .runtime
                .clone()
                .pod_sandbox_status(v1::PodSandboxStatusRequest {
                    pod_sandbox_id: sandbox_id.clone(),
                    verbose: false,
                })
                .await,
        )?
        .status
        .unwrap_or_default();
        let pod_ips: Vec<String> = if spec::host_network(pod) {
            vec![self.shared.node_ip.to_string()]
        } else {
            sandbox_status
                .network
                .as_ref()
                .map(|n| {
                    std::iter::once(n.ip.clone())
                        .chain(n.additional_ips.iter().map(|ip| ip.ip.clone()))
                        .filter(|ip| !ip.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let hosts = spec::etc_hosts(pod, &pod_ips, &self.shared.cluster_domain);
        let hosts_path = spec::hosts_file(&self.pod_dir);
        if std::fs::read_to_string(&hosts_path).ok().as_deref() != Some(hosts.as_str()) {
            std::fs::write(&hosts_path, hosts)?;
        }
        let pod_ip = pod_ips.first().cloned().unwrap_or_default();

        let mut observed = self.containers(&sandbox_id).await?;
        let mut next = RESYNC;
        self.waiting.clear();

        // Init containers, one at a time, in order.
        let mut init_done = true;
        let mut init_failed = false;
        for container in spec.init_containers.iter().flatten() {
            let latest = observed
                .get(&container.name)
                .and_then(|l| l.first())
                .cloned();
            if is_sidecar(container) {
                // A sidecar keeps running beside the containers; the next init container
                // waits only until it has started.
                match &latest {
                    Some(c) if c.running() => {
                        if self.stopping.contains(&c.id) {
                            continue;
                        }
                        self.liveness_failed(pod, container, c, &pod_ip, true).await;
                        if self.started(container, &c.id) {
                            continue;
                        }
                        init_done = false;
                        break;
                    }
                    _ => {
                        if let Some(wait) = self
                            .restart(
                                pod,
                                container,
                                &sandbox_id,
                                &sandbox_config,
                                latest.as_ref(),
                                true,
                                &pod_ip,
                            )
                            .await
                        {
                            next = next.min(wait);
                        }
                        if latest.is_none() {
                            init_done = false;
                            break;
                        }
                        continue;
                    }
                }
            }
            match latest {
                Some(c) if c.exited() && c.exit_code == 0 => continue,
                Some(c) if c.running() => {
                    init_done = false;
                    break;
                }
                Some(c) if c.exited() => {
                    init_done = false;
                    if policy == "Never" {
                        init_failed = true;
                        break;
                    }
                    if let Some(wait) = self
                        .restart(
                            pod,
                            container,
                            &sandbox_id,
                            &sandbox_config,
                            Some(&c),
                            true,
                            &pod_ip,
                        )
                        .await
                    {
                        next = next.min(wait);
                    }
                    break;
                }
                other => {
                    init_done = false;
                    if let Some(wait) = self
                        .restart(
                            pod,
                            container,
                            &sandbox_id,
                            &sandbox_config,
                            other.as_ref(),
                            true,
                            &pod_ip,
                        )
                        .await
                    {
                        next = next.min(wait);
                    }
                    break;
                }
            }
        }

        // Containers, once initialised.
        if init_done {
            for container in &spec.containers {
                let latest = observed
                    .get(&container.name)
                    .and_then(|l| l.first())
                    .cloned();
                let restart = match &latest {
                    None => true,
                    Some(c) if c.running() && self.stopping.contains(&c.id) => false,
                    Some(c) if c.running() => {
                        if c.hash != spec::container_hash(container) {
                            self.shared.events.pod(
                                pod,
                                container_path(false, &container.name),
                                false,
                                "Killing",
                                format!(
                                    "Container {} definition changed, will be restarted",
                                    container.name
                                ),
                            );
                            self.stop_in_background(pod, container, &c.id, None);
                            continue;
                        }
                        self.liveness_failed(pod, container, c, &pod_ip, false)
                            .await;
                        false
                    }
                    Some(c) if c.exited() => match policy.as_str() {
                        "Always" => true,
                        "OnFailure" => c.exit_code != 0,
                        _ => false,
                    },
                    Some(_) => true,
                };
                if restart
                    && let Some(wait) = self
                        .restart(
                            pod,
                            container,
                            &sandbox_id,
                            &sandbox_config,
                            latest.as_ref(),
                            false,
                            &pod_ip,
                        )
                        .await
                {
                    next = next.min(wait);
                }
            }
        } else {
            for container in &spec.containers {
                self.waiting.insert(
                    container.name.clone(),
                    ("PodInitializing".into(), String::new()),
                );
            }
        }
        observed = self.containers(&sandbox_id).await?;
        let status = self
            .build_status(pod, &observed, &pod_ips, init_done, init_failed)
            .await;
        self.post(pod, status).await?;
        Ok(next)
    }

    /// Starts (or restarts) a container when its back-off allows; returns how long to wait
    /// when it does not yet.
    #[allow(clippy::too_many_arguments)]
    async fn restart(
        &mut self,
        pod: &Pod,
        container: &Container,
        sandbox_id: &str,
        sandbox_config: &v1::PodSandboxConfig,
        latest: Option<&Observed>,
        init: bool,
        pod_ip: &str,
    ) -> Option<Duration> {
        let attempt = latest.map_or(0, |c| c.attempt + 1);
        if let Some(c) = latest.filter(|c| c.exited()) {
            let ran = Duration::from_nanos((c.finished_at - c.started_at).max(0) as u64);
            let delay = if ran >= BACKOFF_RESET {
                Duration::ZERO
            } else {
                backoff_delay(c.attempt)
            };
            let finished = Duration::from_nanos(c.finished_at.max(0) as u64);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let since = now.saturating_sub(finished);
            if since < delay {
                let message = format!(
                    "back-off {}s restarting failed container={} pod={}_{}({})",
                    delay.as_secs(),
                    container.name,
                    pod.name_any(),
                    pod.namespace().unwrap_or_default(),
                    self.uid
                );
                if self
                    .waiting
                    .insert(
                        container.name.clone(),
                        ("CrashLoopBackOff".into(), message.clone()),
                    )
                    .is_none()
                    && since < Duration::from_secs(2)
                {
                    self.shared.events.pod(
                        pod,
                        container_path(init, &container.name),
                        true,
                        "BackOff",
                        "Back-off restarting failed container".into(),
                    );
                }
                return Some(delay - since);
            }
        }
        // Remove exited instances older than the previous one: `logs --previous` needs one.
        if let Some(c) = latest
            && c.exited()
        {
            self.prune(sandbox_id, &container.name, &c.id).await;
        }
        match self
            .start(
                pod,
                container,
                sandbox_id,
                sandbox_config,
                attempt,
                init,
                pod_ip,
            )
            .await
        {
            Ok(()) => None,
            Err((reason, message, wait)) => {
                self.waiting
                    .insert(container.name.clone(), (reason, message));
                Some(wait)
            }
        }
    }

    async fn prune(&self, sandbox_id: &str, name: &str, keep: &str) {
        let Ok(observed) = self.containers(sandbox_id).await else {
            return;
        };
        for c in observed.get(name).into_iter().flatten() {
            if c.id != keep && c.exited() {
                let _ = self
                    .shared
                    .cri
                    .runtime
                    .clone()
                    .remove_container(v1::RemoveContainerRequest {
                        container_id: c.id.clone(),
                    })
                    .await;
            }
        }
    }

    /// Pulls the image as its policy says; Err is (reason, message, retry after).
    async fn ensure_image(
        &mut self,
        pod: &Pod,
        container: &Container,
        init: bool,
    ) -> Result<String, (String, String, Duration)> {
        let image = container.image.clone().unwrap_or_default();
        let field = container_path(init, &container.name);
        let tagged = {
            let last = image.rsplit('/').next().unwrap_or(&image);
            last.contains(':') || image.contains('@')
        };
        let policy = container.image_pull_policy.clone().unwrap_or_else(|| {
            if !tagged || image.ends_with(":latest") {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let spec = v1::ImageSpec {
            image: image.clone(),
            ..Default::default()
        };
        let present = self
            .shared
            .cri
            .images
            .clone()
            .image_status(v1::ImageStatusRequest {
                image: Some(spec.clone()),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|a| a.into_inner().image);
        if policy != "Always"
            && let Some(found) = &present
        {
            return Ok(found.id.clone());
        }
        if policy == "Never" {
            let message =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            self.shared
                .events
                .pod(pod, field, true, "ErrImageNeverPull", message.clone());
            return Err(("ErrImageNeverPull".into(), message, Duration::from_secs(5)));
        }
        if let Some((at, wait)) = self.pull_backoff.get(&image)
            && Instant::now() < *at
        {
            let message = format!("Back-off pulling image \"{image}\"");
            return Err((
                "ImagePullBackOff".into(),
                message,
                (*at - Instant::now()).min(*wait),
            ));
        }
        self.shared.events.pod(
            pod,
            field.clone(),
            false,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        let began = Instant::now();
        let auth = crate::pods::pull_secrets::auth_for(&self.shared.client, pod, &image).await;
        let pulled = self
            .shared
            .cri
            .images
            .clone()
            .pull_image(v1::PullImageRequest {
                image: Some(spec),
                auth,
                sandbox_config: None,
            })
            .await;
        match pulled {
            Ok(answer) => {
                self.pull_backoff.remove(&image);
                self.shared.events.pod(
                    pod,
                    field,
                    false,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {:.3}s",
                        began.elapsed().as_secs_f64()
                    ),
                );
                Ok(answer.into_inner().image_ref)
            }
            Err(e) => {
                let wait = self
                    .pull_backoff
                    .get(&image)
                    .map_or(BACKOFF_INITIAL, |(_, w)| (*w * 2).min(BACKOFF_MAX));
                self.pull_backoff
                    .insert(image.clone(), (Instant::now() + wait, wait));
                let message = format!("Failed to pull image \"{image}\": {}", e.message());
                self.shared
                    .events
                    .pod(pod, field.clone(), true, "Failed", message.clone());
                self.shared
                    .events
                    .pod(pod, field, true, "Failed", "Error: ErrImagePull".into());
                Err(("ErrImagePull".into(), message, wait))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn start(
        &mut self,
        pod: &Pod,
        container: &Container,
        sandbox_id: &str,
        sandbox_config: &v1::PodSandboxConfig,
        attempt: u32,
        init: bool,
        pod_ip: &str,
    ) -> Result<(), (String, String, Duration)> {
        let field = container_path(init, &container.name);
        let image_ref = self.ensure_image(pod, container, init).await?;
        let config_error = |message: String| {
            (
                "CreateContainerConfigError".to_string(),
                message,
                Duration::from_secs(2),
            )
        };
        let namespace = pod.namespace().unwrap_or_default();
        let mut sources = Sources::new(self.shared.client.clone(), &namespace);
        let links = sources.service_links(pod).await;
        let env = env::container_env(
            pod,
            container,
            &mut sources,
            &links,
            &self.shared.node_ip.to_string(),
            pod_ip,
            &self.shared.allocatable,
        )
        .await
        .map_err(|ConfigError(m)| {
            self.shared
                .events
                .pod(pod, field.clone(), true, "Failed", format!("Error: {m}"));
            config_error(m)
        })?;
        let volumes = self
            .volumes
            .as_ref()
            .map(|(v, _)| v.clone())
            .unwrap_or_default();
        let inputs = spec::ContainerInputs {
            image_ref,
            attempt,
            env,
            volumes: &volumes,
            pod_dir: &self.pod_dir,
            memory_capacity: self.shared.memory_capacity,
        };
        let config = spec::container_config(pod, container, &inputs)
            .map_err(|ConfigError(m)| config_error(m))?;
        let created = self
            .shared
            .cri
            .runtime
            .clone()
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                config: Some(config),
                sandbox_config: Some(sandbox_config.clone()),
            })
            .await;
        let id = match created {
            Ok(answer) => answer.into_inner().container_id,
            Err(e) => {
                let message = e.message().to_string();
                self.shared
                    .events
                    .pod(pod, field, true, "Failed", format!("Error: {message}"));
                return Err((
                    "CreateContainerError".into(),
                    message,
                    Duration::from_secs(2),
                ));
            }
        };
        self.shared.events.pod(
            pod,
            field.clone(),
            false,
            "Created",
            format!("Created container {}", container.name),
        );
        if let Err(e) = self
            .shared
            .cri
            .runtime
            .clone()
            .start_container(v1::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            let message = e.message().to_string();
            self.shared
                .events
                .pod(pod, field, true, "Failed", format!("Error: {message}"));
            return Err(("RunContainerError".into(), message, Duration::from_secs(2)));
        }
        self.shared.events.pod(
            pod,
            field.clone(),
            false,
            "Started",
            format!("Started container {}", container.name),
        );
        self.running_since.insert(id.clone(), Instant::now());
        if let Some(hook) = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
            && let Err(message) =
                crate::pods::hooks::run(&self.shared.cri, container, &id, hook, pod_ip).await
        {
            self.shared
                .events
                .pod(pod, field, true, "FailedPostStartHook", message);
            self.stop_container(pod, container, &id, Some(Duration::ZERO))
                .await;
        }
        Ok(())
    }

    /// Runs startup and liveness probes; a failed one stops the container (in the background,
    /// within its grace period) for the restart policy to bring back.
    async fn liveness_failed(
        &mut self,
        pod: &Pod,
        container: &Container,
        c: &Observed,
        pod_ip: &str,
        init: bool,
    ) -> bool {
        let since = *self
            .running_since
            .entry(c.id.clone())
            .or_insert_with(Instant::now);
        for (kind, probe, name) in [
            (Kind::Startup, container.startup_probe.as_ref(), "Startup"),
            (
                Kind::Liveness,
                container.liveness_probe.as_ref(),
                "Liveness",
            ),
        ] {
            let Some(probe) = probe else { continue };
            if kind == Kind::Liveness && !self.started(container, &c.id) {
                break;
            }
            let (result, failure) = self
                .probes
                .check(
                    &self.shared.cri,
                    container,
                    &c.id,
                    since,
                    kind,
                    probe,
                    pod_ip,
                )
                .await;
            let field = container_path(init, &container.name);
            if let Some(message) = failure {
                self.shared.events.pod(
                    pod,
                    field.clone(),
                    true,
                    "Unhealthy",
                    format!("{name} probe failed: {message}"),
                );
            }
            if result == Some(false) {
                self.shared.events.pod(
                    pod,
                    field,
                    false,
                    "Killing",
                    format!(
                        "Container {} failed {} probe, will be restarted",
                        container.name,
                        name.to_lowercase()
                    ),
                );
                let grace = probe
                    .termination_grace_period_seconds
                    .map(|s| Duration::from_secs(s.max(0) as u64));
                self.stop_in_background(pod, container, &c.id, grace);
                self.probes.forget(&c.id);
                return true;
            }
            if kind == Kind::Startup && result != Some(true) {
                break;
            }
        }
        false
    }

    /// Stops a container without holding up the worker; it is left alone until it exits.
    fn stop_in_background(
        &mut self,
        pod: &Pod,
        container: &Container,
        id: &str,
        grace: Option<Duration>,
    ) {
        if !self.stopping.insert(id.to_string()) {
            return;
        }
        let (shared, pod, container, id) = (
            self.shared.clone(),
            pod.clone(),
            container.clone(),
            id.to_string(),
        );
        tokio::spawn(async move {
            stop_container(&shared, &pod, &container, &id, grace).await;
        });
    }

    /// A pod past its `activeDeadlineSeconds`: its containers are stopped and it fails with
    /// reason DeadlineExceeded, as upstream's kubelet does.
    async fn fail_for_deadline(&mut self, pod: &Pod) -> anyhow::Result<Duration> {
        let sandboxes = self.sandboxes().await?;
        let mut observed = HashMap::new();
        for sandbox in &sandboxes {
            let containers = self.containers(&sandbox.id).await?;
            let spec = pod.spec.clone().unwrap_or_default();
            for (name, list) in &containers {
                for c in list.iter().filter(|c| c.running()) {
                    if let Some(container) = spec
                        .containers
                        .iter()
                        .chain(spec.init_containers.iter().flatten())
                        .find(|c| &c.name == name)
                    {
                        stop_container(&self.shared, pod, container, &c.id, None).await;
                    }
                }
            }
            if sandbox.state() == v1::PodSandboxState::SandboxReady {
                observed = self.containers(&sandbox.id).await?;
            }
        }
        let mut status = self.build_status(pod, &observed, &[], true, false).await;
        status["phase"] = json!("Failed");
        status["reason"] = json!("DeadlineExceeded");
        status["message"] = json!("Pod was active on the node longer than the specified deadline");
        self.shared.events.pod(
            pod,
            None,
            false,
            "DeadlineExceeded",
            "Pod was active on the node longer than the specified deadline".into(),
        );
        self.post(pod, status).await?;
        Ok(Duration::from_secs(1))
    }

    fn started(&self, container: &Container, id: &str) -> bool {
        container.startup_probe.is_none() || self.probes_result(id, Kind::Startup) == Some(true)
    }

    fn probes_result(&self, id: &str, kind: Kind) -> Option<bool> {
        self.probes.result(id, kind)
    }

    async fn build_status(
        &mut self,
        pod: &Pod,
        observed: &HashMap<String, Vec<Observed>>,
        pod_ips: &[String],
        init_done: bool,
        init_failed: bool,
    ) -> Value {
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_ip = pod_ips.first().cloned().unwrap_or_default();
        let mut views = Vec::new();
        for (init, container) in spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| (true, c))
            .chain(spec.containers.iter().map(|c| (false, c)))
        {
            let list = observed.get(&container.name);
            let latest = list.and_then(|l| l.first());
            let previous = list.and_then(|l| l.get(1));
            let mut ready = false;
            let mut started = false;
            if let Some(c) = latest.filter(|c| c.running()) {
                started = self.started(container, &c.id);
                ready = started;
                if !init
                    && let Some(probe) = &container.readiness_probe
                    && started
                {
                    let since = *self
                        .running_since
                        .entry(c.id.clone())
                        .or_insert_with(Instant::now);
                    let (result, failure) = self
                        .probes
                        .check(
                            &self.shared.cri,
                            container,
                            &c.id,
                            since,
                            Kind::Readiness,
                            probe,
                            &pod_ip,
                        )
                        .await;
                    if let Some(message) = failure {
                        self.shared.events.pod(
                            pod,
                            container_path(false, &container.name),
                            true,
                            "Unhealthy",
                            format!("Readiness probe failed: {message}"),
                        );
                    }
                    ready = result == Some(true);
                }
            }
            let termination_message = latest
                .filter(|c| c.exited())
                .map(|c| self.termination_message(container, c));
            views.push((
                init,
                container,
                latest.cloned(),
                previous.cloned(),
                ready,
                started,
                termination_message,
            ));
        }
        let live: Vec<String> = views
            .iter()
            .filter_map(|v| v.2.as_ref().map(|c| c.id.clone()))
            .collect();
        self.probes.retain(&live);
        self.running_since.retain(|id, _| live.contains(id));
        let running: Vec<&String> = views
            .iter()
            .filter_map(|v| v.2.as_ref().filter(|c| c.running()).map(|c| &c.id))
            .collect();
        self.stopping.retain(|id| running.contains(&id));
        let mut init_statuses = Vec::new();
        let mut statuses = Vec::new();
        for (init, container, latest, previous, ready, started, termination_message) in &views {
            let view = ContainerView {
                spec: container,
                latest: latest.as_ref(),
                previous: previous.as_ref(),
                waiting: self.waiting.get(&container.name).cloned(),
                ready: *ready,
                started: *started,
                termination_message: termination_message.clone(),
            };
            let status = status::container_status(&view);
            if *init {
                init_statuses.push(status);
            } else {
                statuses.push(status);
            }
        }
        let policy = restart_policy(pod);
        let phase = status::phase(&policy, &statuses, init_done, init_failed);
        let conditions =
            status::conditions(pod, !pod_ips.is_empty(), &init_statuses, &statuses, phase);
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .unwrap_or_else(|| Time(Timestamp::now()));
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.shared.node_ip.to_string(),
            "hostIPs": [{ "ip": self.shared.node_ip.to_string() }],
            "startTime": start_time,
            "containerStatuses": statuses,
            "qosClass": spec::qos_class(pod),
        });
        if !pod_ips.is_empty() {
            status["podIP"] = json!(pod_ip);
            status["podIPs"] = json!(
                pod_ips
                    .iter()
                    .map(|ip| json!({ "ip": ip }))
                    .collect::<Vec<_>>()
            );
        }
        if !init_statuses.is_empty() {
            status["initContainerStatuses"] = json!(init_statuses);
        }
        status
    }

    fn termination_message(&self, container: &Container, c: &Observed) -> String {
        let file = spec::termination_file(&self.pod_dir, &container.name, c.attempt);
        let mut message = std::fs::read(&file).unwrap_or_default();
        message.truncate(4096);
        let mut text = String::from_utf8_lossy(&message).into_owned();
        if text.is_empty()
            && c.exit_code != 0
            && container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        {
            text = crate::logs::tail_text(&self.log_file(container, c.attempt), 80, 2048);
        }
        text
    }

    fn log_file(&self, container: &Container, attempt: u32) -> PathBuf {
        self.shared
            .logs_dir_for_uid(&self.uid)
            .map_or_else(PathBuf::new, |dir| {
                dir.join(&container.name).join(format!("{attempt}.log"))
            })
    }

    /// Posts a status for a pod whose sandbox or volumes are not ready yet.
    async fn post_status(
        &mut self,
        pod: &Pod,
        _sandbox_ready: bool,
        observed: &HashMap<String, Vec<Observed>>,
        _ip: Option<&str>,
    ) -> anyhow::Result<()> {
        let status = self.build_status(pod, observed, &[], true, false).await;
        self.post(pod, status).await
    }

    async fn post(&mut self, pod: &Pod, status: Value) -> anyhow::Result<()> {
        if self.last_status.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        let params = PatchParams {
            field_manager: Some(crate::FIELD_MANAGER.into()),
            ..Default::default()
        };
        let patch = json!({ "metadata": { "uid": self.uid }, "status": status });
        match api
            .patch_status(&pod.name_any(), &params, &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                self.last_status = Some(status);
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(anyhow::anyhow!("cannot post the pod's status: {e}")),
        }
    }

    /// Stops a container: its preStop hook, then SIGTERM and SIGKILL after the grace period.
    async fn stop_container(
        &self,
        pod: &Pod,
        container: &Container,
        id: &str,
        grace: Option<Duration>,
    ) {
        stop_container(&self.shared, pod, container, id, grace).await;
    }

    async fn stop_sandbox(&self, id: &str) -> anyhow::Result<()> {
        rpc(
            "stop sandbox",
            self.shared
                .cri
                .runtime
                .clone()
                .stop_pod_sandbox(v1::StopPodSandboxRequest {
                    pod_sandbox_id: id.to_string(),
                })
                .await,
        )?;
        Ok(())
    }

    async fn remove_sandbox(&self, id: &str) -> anyhow::Result<()> {
        self.stop_sandbox(id).await?;
        rpc(
            "remove sandbox",
            self.shared
                .cri
                .runtime
                .clone()
                .remove_pod_sandbox(v1::RemovePodSandboxRequest {
                    pod_sandbox_id: id.to_string(),
                })
                .await,
        )?;
        Ok(())
    }

    /// Stops every container (running ones get `grace`, with their preStop hooks when the pod
    /// is known), then removes the sandboxes, volumes and logs.
    async fn kill(&mut self, pod: Option<&Pod>, grace: Duration) -> anyhow::Result<()> {
        let sandboxes = self.sandboxes().await?;
        let mut stops = Vec::new();
        for sandbox in &sandboxes {
            let observed = self.containers(&sandbox.id).await?;
            for (name, list) in &observed {
                for c in list.iter().filter(|c| c.running()) {
                    let container = pod.and_then(|p| {
                        p.spec.as_ref().and_then(|s| {
                            s.containers
                                .iter()
                                .chain(s.init_containers.iter().flatten())
                                .find(|c| &c.name == name)
                        })
                    });
                    stops.push((container.cloned(), c.id.clone()));
                }
            }
        }
        let this = &*self;
        futures::future::join_all(stops.into_iter().map(|(container, id)| async move {
            match (pod, container) {
                (Some(pod), Some(container)) => {
                    this.shared.events.pod(
                        pod,
                        container_path(false, &container.name),
                        false,
                        "Killing",
                        format!("Stopping container {}", container.name),
                    );
                    this.stop_container(pod, &container, &id, Some(grace)).await
                }
                _ => {
                    let _ = this
                        .shared
                        .cri
                        .runtime
                        .clone()
                        .stop_container(v1::StopContainerRequest {
                            container_id: id,
                            timeout: grace.as_secs() as i64,
                        })
                        .await;
                }
            }
        }))
        .await;
        for sandbox in &sandboxes {
            self.remove_sandbox(&sandbox.id).await?;
        }
        crate::pods::remove_pod_cgroups(&self.shared.cgroup_root, &self.uid);
        volumes::teardown(&self.pod_dir)?;
        if let Some(dir) = self.shared.logs_dir_for_uid(&self.uid) {
            let _ = std::fs::remove_dir_all(dir);
        }
        self.shared.tokens.lock().await.forget(&self.uid);
        Ok(())
    }

    /// A pod being deleted: stop it within its grace period, then remove it from the API.
    async fn terminate(&mut self, pod: &Pod) -> anyhow::Result<()> {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or(pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30)
            .max(0);
        self.kill(Some(pod), Duration::from_secs(grace as u64))
            .await?;
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&pod.name_any(), &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(anyhow::anyhow!("cannot delete the pod: {e}")),
        }
    }
}

/// Stops a container: its preStop hook, then SIGTERM and SIGKILL after the grace period.
async fn stop_container(
    shared: &Shared,
    pod: &Pod,
    container: &Container,
    id: &str,
    grace: Option<Duration>,
) {
    let grace = grace.unwrap_or_else(|| {
        Duration::from_secs(
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
                .max(0) as u64,
        )
    });
    let began = Instant::now();
    if let Some(hook) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    {
        let pod_ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let run = crate::pods::hooks::run(&shared.cri, container, id, hook, &pod_ip);
        match tokio::time::timeout(grace, run).await {
            Ok(Err(message)) => shared.events.pod(
                pod,
                container_path(false, &container.name),
                true,
                "FailedPreStopHook",
                message,
            ),
            Err(_) => {}
            Ok(Ok(())) => {}
        }
    }
    let left = grace.saturating_sub(began.elapsed());
    let _ = shared
        .cri
        .runtime
        .clone()
        .stop_container(v1::StopContainerRequest {
            container_id: id.to_string(),
            timeout: left.as_secs() as i64,
        })
        .await;
}
