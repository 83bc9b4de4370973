//! The status a kubelet reports for a pod, computed from the pod alone: hollow containers run
//! nothing, so a container's command decides its fate (`true` exits 0, `false` exits 1, anything
//! else runs until the pod is deleted). Every time in the status is carried over from the pod's
//! current status unless something changed, so reporting twice writes nothing the second time.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Upstream's container restart back-off: the first restart is immediate, then 10 s doubling.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What a hollow container does once started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs until the pod is deleted.
    Runs,
    /// Exits at once with this code.
    Exits(i32),
}

pub fn behaviour(container: &Container) -> Behaviour {
    match container.command.as_deref() {
        Some([c]) if c == "true" || c == "/bin/true" => Behaviour::Exits(0),
        Some([c]) if c == "false" || c == "/bin/false" => Behaviour::Exits(1),
        _ => Behaviour::Runs,
    }
}

/// How long the kubelet waits before restarting a container already restarted `restarts`
/// times (CrashLoopBackOff).
pub fn restart_backoff(restarts: i32) -> Duration {
    if restarts <= 0 {
        return Duration::ZERO;
    }
    let doublings = (restarts - 1).min(16) as u32;
    (BACKOFF_INITIAL * 2u32.pow(doublings)).min(BACKOFF_MAX)
}

/// Where the pod runs: its node's address and the address given to the pod.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub host_ip: Ipv4Addr,
    pub pod_ip: Option<Ipv4Addr>,
}

/// The status to report, and when to look at the pod again (a container waiting in back-off).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub status: PodStatus,
    pub recheck_after: Option<Duration>,
}

pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// One container's fate: its status, whether it will never run again, and when to recheck.
struct Outcome {
    status: ContainerStatus,
    finished: bool,
    recheck_after: Option<Duration>,
}

struct PodIdentity<'a> {
    name: &'a str,
    namespace: &'a str,
    uid: &'a str,
}

pub fn pod_status(pod: &Pod, placement: Placement, now: Timestamp) -> Report {
    let old = pod.status.clone().unwrap_or_default();
    let Some(spec) = pod.spec.as_ref() else {
        return Report {
            status: old,
            recheck_after: None,
        };
    };
    // A finished pod never runs again; the kubelet leaves its status alone.
    if is_terminal(pod) {
        return Report {
            status: old,
            recheck_after: None,
        };
    }
    let now = Time(Timestamp::from_second(now.as_second()).unwrap_or(now));
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let id = PodIdentity {
        name: pod.metadata.name.as_deref().unwrap_or_default(),
        namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
        uid: pod.metadata.uid.as_deref().unwrap_or_default(),
    };
    let mut recheck: Option<Duration> = None;
    let mut soonest = |after: Option<Duration>| {
        if let Some(after) = after {
            recheck = Some(recheck.map_or(after, |r| r.min(after)));
        }
    };

    let mut initialized = true;
    let mut init_failed = false;
    let mut init_statuses = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        let prev = find(&old.init_container_statuses, &c.name);
        if !initialized {
            init_statuses.push(waiting(c, prev, &id, "PodInitializing"));
            continue;
        }
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        let outcome = if sidecar && !deleting {
            running(c, prev, &id, &now)
        } else {
            let code = match behaviour(c) {
                Behaviour::Exits(code) => code,
                Behaviour::Runs => 0,
            };
            let restarts = !deleting && code != 0 && policy != "Never";
            exited(c, prev, &id, code, restarts, &now)
        };
        soonest(outcome.recheck_after);
        if !sidecar && !outcome.finished {
            initialized = false;
        }
        if outcome.finished && exit_code(&outcome.status) != Some(0) && !sidecar && !deleting {
            init_failed = true;
            initialized = false;
        }
        init_statuses.push(outcome.status);
    }

    let mut container_statuses = Vec::new();
    let mut all_finished = true;
    let mut all_succeeded = true;
    for c in &spec.containers {
        let prev = find(&old.container_statuses, &c.name);
        if !initialized {
            container_statuses.push(waiting(c, prev, &id, "PodInitializing"));
            continue;
        }
        let outcome = match (behaviour(c), deleting) {
            // A deleted pod's containers exit cleanly on SIGTERM: nothing runs in them.
            (Behaviour::Runs, true) => exited(c, prev, &id, 0, false, &now),
            (Behaviour::Runs, false) => running(c, prev, &id, &now),
            (Behaviour::Exits(code), _) => {
                let restarts =
                    !deleting && (policy == "Always" || (policy == "OnFailure" && code != 0));
                exited(c, prev, &id, code, restarts, &now)
            }
        };
        soonest(outcome.recheck_after);
        all_finished &= outcome.finished;
        all_succeeded &= !outcome.finished || exit_code(&outcome.status) == Some(0);
        container_statuses.push(outcome.status);
    }

    let phase = if init_failed {
        "Failed"
    } else if !initialized {
        "Pending"
    } else if all_finished {
        if all_succeeded { "Succeeded" } else { "Failed" }
    } else {
        "Running"
    };
    let terminal = matches!(phase, "Succeeded" | "Failed");

    let mut status = old.clone();
    status.phase = Some(phase.to_owned());
    status.host_ip = Some(placement.host_ip.to_string());
    status.host_ips = Some(vec![HostIP {
        ip: placement.host_ip.to_string(),
    }]);
    if let Some(ip) = placement.pod_ip {
        status.pod_ip = Some(ip.to_string());
        status.pod_ips = Some(vec![PodIP { ip: ip.to_string() }]);
    }
    status.start_time = old.start_time.clone().or_else(|| Some(now.clone()));
    status.init_container_statuses = (!init_statuses.is_empty()).then_some(init_statuses);
    status.conditions = Some(conditions(
        pod,
        &old,
        &container_statuses,
        initialized,
        terminal,
        &now,
    ));
    status.container_statuses = Some(container_statuses);
    Report {
        status,
        recheck_after: recheck,
    }
}

fn find<'a>(statuses: &'a Option<Vec<ContainerStatus>>, name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().flatten().find(|s| s.name == name)
}

fn exit_code(status: &ContainerStatus) -> Option<i32> {
    status
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code)
}

fn base(c: &Container, prev: Option<&ContainerStatus>, id: &PodIdentity) -> ContainerStatus {
    let image = c.image.clone().unwrap_or_default();
    let restarts = prev.map_or(0, |p| p.restart_count);
    ContainerStatus {
        name: c.name.clone(),
        image_id: format!("hollow://{image}"),
        image,
        container_id: Some(format!("hollow://{}/{}/{restarts}", id.uid, c.name)),
        restart_count: restarts,
        last_state: prev.and_then(|p| p.last_state.clone()),
        ..Default::default()
    }
}

fn waiting(
    c: &Container,
    prev: Option<&ContainerStatus>,
    id: &PodIdentity,
    reason: &str,
) -> ContainerStatus {
    ContainerStatus {
        container_id: None,
        ready: false,
        started: Some(false),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.to_owned()),
                message: None,
            }),
            ..Default::default()
        }),
        ..base(c, prev, id)
    }
}

fn running(c: &Container, prev: Option<&ContainerStatus>, id: &PodIdentity, now: &Time) -> Outcome {
    let started_at = prev
        .and_then(|p| p.state.as_ref())
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.clone())
        .unwrap_or_else(|| now.clone());
    Outcome {
        status: ContainerStatus {
            ready: true,
            started: Some(true),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started_at),
                }),
                ..Default::default()
            }),
            ..base(c, prev, id)
        },
        finished: false,
        recheck_after: None,
    }
}

fn terminated(code: i32, started_at: Option<Time>, finished_at: Time) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: code,
        reason: Some(if code == 0 { "Completed" } else { "Error" }.to_owned()),
        started_at: Some(started_at.unwrap_or_else(|| finished_at.clone())),
        finished_at: Some(finished_at),
        ..Default::default()
    }
}

/// A container that has exited with `code`; `restarts` says whether the kubelet starts it again
/// (after the back-off since its last exit).
fn exited(
    c: &Container,
    prev: Option<&ContainerStatus>,
    id: &PodIdentity,
    code: i32,
    restarts: bool,
    now: &Time,
) -> Outcome {
    let prev_state = prev.and_then(|p| p.state.as_ref());
    let prev_terminated = prev_state.and_then(|s| s.terminated.as_ref());
    let prev_started = prev_state
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.clone());
    if !restarts {
        let state = match prev_terminated {
            Some(t) => t.clone(),
            None => terminated(code, prev_started, now.clone()),
        };
        return Outcome {
            status: ContainerStatus {
                ready: false,
                started: Some(false),
                state: Some(ContainerState {
                    terminated: Some(state),
                    ..Default::default()
                }),
                ..base(c, prev, id)
            },
            finished: true,
            recheck_after: None,
        };
    }
    let mut status = base(c, prev, id);
    status.ready = false;
    status.started = Some(false);
    // The last exit: the current terminated state, or the one remembered while in back-off.
    let last_exit = prev_terminated
        .or_else(|| {
            prev.and_then(|p| p.last_state.as_ref())
                .filter(|_| prev_state.is_some_and(|s| s.waiting.is_some()))
                .and_then(|s| s.terminated.as_ref())
        })
        .and_then(|t| t.finished_at.clone());
    let Some(last_exit) = last_exit else {
        // First run: it exits at once.
        status.state = Some(ContainerState {
            terminated: Some(terminated(code, prev_started, now.clone())),
            ..Default::default()
        });
        return Outcome {
            status,
            finished: false,
            recheck_after: Some(restart_backoff(status_restarts(prev))),
        };
    };
    let restarts_so_far = status_restarts(prev);
    let due = last_exit.0 + restart_backoff(restarts_so_far);
    if now.0 < due {
        status.state = prev_state.cloned();
        return Outcome {
            status,
            finished: false,
            recheck_after: Some(Duration::from_secs(
                (due.as_second() - now.0.as_second()) as u64,
            )),
        };
    }
    // Back-off over: the container starts again and exits again at once.
    let restarts = restarts_so_far + 1;
    let backoff = restart_backoff(restarts);
    status.restart_count = restarts;
    status.container_id = Some(format!("hollow://{}/{}/{restarts}", id.uid, c.name));
    status.last_state = Some(ContainerState {
        terminated: Some(terminated(code, Some(now.clone()), now.clone())),
        ..Default::default()
    });
    status.state = Some(ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some("CrashLoopBackOff".to_owned()),
            message: Some(format!(
                "back-off {}s restarting failed container={} pod={}_{}({})",
                backoff.as_secs(),
                c.name,
                id.name,
                id.namespace,
                id.uid
            )),
        }),
        ..Default::default()
    });
    Outcome {
        status,
        finished: false,
        recheck_after: Some(backoff),
    }
}

fn status_restarts(prev: Option<&ContainerStatus>) -> i32 {
    prev.map_or(0, |p| p.restart_count)
}

const KUBELET_CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

fn conditions(
    pod: &Pod,
    old: &PodStatus,
    containers: &[ContainerStatus],
    initialized: bool,
    terminal: bool,
    now: &Time,
) -> Vec<PodCondition> {
    let old_conditions = old.conditions.as_deref().unwrap_or_default();
    let condition = |type_: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let prev = old_conditions.iter().find(|c| c.type_ == type_);
        let last_transition_time = match prev {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
        PodCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: (!ok).then(|| reason.map(str::to_owned)).flatten(),
            message: (!ok).then_some(message).flatten(),
            last_transition_time,
            ..Default::default()
        }
    };
    let unready: Vec<&str> = containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let containers_ready = initialized && unready.is_empty();
    let (reason, message) = if terminal {
        ("PodCompleted", None)
    } else if !initialized {
        (
            "ContainersNotInitialized",
            Some("containers with incomplete status: [init]".to_owned()),
        )
    } else {
        (
            "ContainersNotReady",
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let gates_ready = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .into_iter()
        .flatten()
        .all(|g| {
            old_conditions
                .iter()
                .any(|c| c.type_ == g.condition_type && c.status == "True")
        });
    let ready = if containers_ready && !gates_ready {
        condition(
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some("the status of pod readiness gate is not \"True\"".to_owned()),
        )
    } else {
        condition("Ready", containers_ready, Some(reason), message.clone())
    };
    let init_reason = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotInitialized"
    };
    let scheduled = old_conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "True")
        .cloned()
        .unwrap_or_else(|| condition("PodScheduled", true, None, None));
    let mut out = vec![
        condition("PodReadyToStartContainers", !terminal, None, None),
        condition(
            "Initialized",
            initialized,
            Some(init_reason),
            (!initialized).then(|| "containers with incomplete status".to_owned()),
        ),
        ready,
        condition("ContainersReady", containers_ready, Some(reason), message),
        scheduled,
    ];
    out.extend(
        old_conditions
            .iter()
            .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
            .cloned(),
    );
    out
}

#[cfg(test)]
#[path = "pod_status_tests.rs"]
mod tests;
