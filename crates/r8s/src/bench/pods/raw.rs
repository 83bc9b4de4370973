//! The runtime alone, for reference: sandbox+container starts through CRI against the node's
//! containerd, with the configs the kubelet makes for the bench's pod.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use futures::{StreamExt, TryStreamExt};
use r8s_kubelet::cri::{Cri, v1};
use r8s_kubelet::pods::spec;

use super::{IMAGE, Latencies, NAMESPACE, bench_pod};
use crate::bench::node::NetnsNode;

/// `count` sandbox+container starts through CRI alone, `concurrency` at a time, with the
/// sandbox and container configs the kubelet makes for the bench's pod. The server is stopped
/// meanwhile: its housekeeping would remove sandboxes no pod owns.
pub async fn raw_starts(
    node: &NetnsNode,
    cri: &Cri,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Latencies> {
    let image_ref = cri
        .images
        .clone()
        .image_status(v1::ImageStatusRequest {
            image: Some(v1::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await?
        .into_inner()
        .image
        .map(|i| i.id)
        .with_context(|| format!("the node has no image {IMAGE}"))?;
    let raw = RawStarts {
        cri,
        image_ref,
        cgroup_root: format!("/r8s/{}/bench-raw", node.node_name),
        dir: node.scratch(),
        resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        made: Mutex::default(),
    };
    let frozen = node.freeze();
    let measured = async {
        // One start first, untimed: the first use of the pause image and the CNI plugins.
        raw.start("bench-raw-warmup".into()).await?;
        let begun = Instant::now();
        let samples = futures::stream::iter(0..count)
            .map(|i| raw.start(format!("bench-raw-{i}")))
            .buffer_unordered(concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        anyhow::Ok(Latencies::new(samples, begun.elapsed()))
    }
    .await;
    raw.remove_all().await;
    drop(frozen);
    measured
}

struct RawStarts<'a> {
    cri: &'a Cri,
    image_ref: String,
    cgroup_root: String,
    dir: PathBuf,
    resolv_conf: String,
    /// Sandboxes made, to remove afterwards whatever happened.
    made: Mutex<Vec<String>>,
}

impl RawStarts<'_> {
    /// RunPodSandbox, CreateContainer, StartContainer for the pod `name`: their time.
    async fn start(&self, name: String) -> anyhow::Result<Duration> {
        let mut pod = bench_pod(&name);
        pod.metadata.namespace = Some(NAMESPACE.into());
        pod.metadata.uid = Some(format!("{name}-{}", std::process::id()));
        let settings = spec::NodeSettings {
            cgroup_root: &self.cgroup_root,
            logs_dir: &self.dir.join("logs"),
            cluster_dns: &["10.96.0.10".into()],
            cluster_domain: "cluster.local",
            host_resolv_conf: &self.resolv_conf,
        };
        let pod_dir = self.dir.join("pods").join(&name);
        std::fs::create_dir_all(&pod_dir)?;
        std::fs::write(
            spec::hosts_file(&pod_dir),
            spec::etc_hosts(&pod, &[], "cluster.local"),
        )?;
        let sandbox = spec::sandbox_config(&pod, 0, &settings);
        let container = &pod.spec.as_ref().expect("a spec").containers[0];
        let inputs = spec::ContainerInputs {
            image_ref: self.image_ref.clone(),
            attempt: 0,
            env: Vec::new(),
            volumes: &BTreeMap::new(),
            pod_dir: &pod_dir,
            memory_capacity: 0,
        };
        let config = spec::container_config(&pod, container, &inputs)
            .map_err(|e| anyhow!("container config: {}", e.0))?;
        let mut runtime = self.cri.runtime.clone();
        let begun = Instant::now();
        let sandbox_id = runtime
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(sandbox.clone()),
                runtime_handler: String::new(),
            })
            .await
            .with_context(|| format!("RunPodSandbox {name}"))?
            .into_inner()
            .pod_sandbox_id;
        self.made.lock().expect("poisoned").push(sandbox_id.clone());
        let container_id = runtime
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: sandbox_id,
                config: Some(config),
                sandbox_config: Some(sandbox),
            })
            .await
            .with_context(|| format!("CreateContainer in {name}"))?
            .into_inner()
            .container_id;
        runtime
            .start_container(v1::StartContainerRequest { container_id })
            .await
            .with_context(|| format!("StartContainer in {name}"))?;
        Ok(begun.elapsed())
    }

    /// Stops and removes every sandbox made, and the pod cgroups runc left.
    async fn remove_all(&self) {
        let made = std::mem::take(&mut *self.made.lock().expect("poisoned"));
        remove_sandboxes(self.cri, made).await;
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let root = hierarchy
                .path()
                .join(self.cgroup_root.trim_start_matches('/'));
            for pod in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                let _ = std::fs::remove_dir(pod.path());
            }
            let _ = std::fs::remove_dir(&root);
        }
    }
}

/// Stops and removes sandboxes through the runtime.
pub async fn remove_sandboxes(cri: &Cri, ids: Vec<String>) {
    let mut runtime = cri.runtime.clone();
    for pod_sandbox_id in ids {
        let stop = v1::StopPodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.clone(),
        };
        if let Err(e) = runtime.stop_pod_sandbox(stop).await {
            eprintln!("bench pods: cannot stop sandbox {pod_sandbox_id}: {e}");
        }
        let remove = v1::RemovePodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.clone(),
        };
        if let Err(e) = runtime.remove_pod_sandbox(remove).await {
            eprintln!("bench pods: cannot remove sandbox {pod_sandbox_id}: {e}");
        }
    }
}
