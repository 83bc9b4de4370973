//! Container lifecycle hooks (postStart, preStop): exec through CRI, or an HTTP GET.

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};

use crate::cri::Cri;
use crate::probes::{Outcome, run_handler};

/// Runs a hook; Err carries the message upstream's events give.
pub async fn run(
    cri: &Cri,
    container: &Container,
    id: &str,
    hook: &LifecycleHandler,
    pod_ip: &str,
) -> Result<(), String> {
    if let Some(sleep) = &hook.sleep {
        tokio::time::sleep(std::time::Duration::from_secs(sleep.seconds.max(0) as u64)).await;
        return Ok(());
    }
    // A hook runs like a probe without a timeout of its own (the grace period bounds it).
    let probe = Probe {
        exec: hook.exec.clone(),
        http_get: hook.http_get.clone(),
        tcp_socket: hook.tcp_socket.clone(),
        timeout_seconds: Some(i32::MAX / 2),
        ..Default::default()
    };
    match run_handler(cri, container, id, &probe, pod_ip).await {
        Outcome::Success => Ok(()),
        Outcome::Failure(message) => Err(message),
    }
}
