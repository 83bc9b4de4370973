//! A pod's status from what the runtime reports: container states, restart counts, the phase
//! and the conditions, by upstream's rules (`getPhase`, `generateContainersReadyCondition`, …).

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::cri::v1;

/// One container as the runtime reports it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub id: String,
    pub attempt: u32,
    pub state: v1::ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image_ref: String,
    pub hash: String,
}

impl Observed {
    pub fn running(&self) -> bool {
        self.state == v1::ContainerState::ContainerRunning
    }

    pub fn exited(&self) -> bool {
        self.state == v1::ContainerState::ContainerExited
    }
}

pub fn time(nanos: i64) -> Option<Time> {
    (nanos > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(nanos)).ok())
        .flatten()
        .map(Time)
}

pub fn container_id(id: &str) -> String {
    format!("containerd://{id}")
}

fn terminated(c: &Observed, message: Option<&str>) -> Value {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    let mut state = json!({
        "exitCode": c.exit_code,
        "reason": reason,
        "startedAt": time(c.started_at),
        "finishedAt": time(c.finished_at),
        "containerID": container_id(&c.id),
    });
    let message = message.unwrap_or(&c.message);
    if !message.is_empty() {
        state["message"] = json!(message);
    }
    state
}

/// What the kubelet knows of one container beyond the runtime's view.
pub struct ContainerView<'a> {
    pub spec: &'a Container,
    pub latest: Option<&'a Observed>,
    pub previous: Option<&'a Observed>,
    /// Why it is not running, when the kubelet knows better than "ContainerCreating":
    /// ErrImagePull, CrashLoopBackOff, CreateContainerConfigError, PodInitializing, …
    pub waiting: Option<(String, String)>,
    pub ready: bool,
    pub started: bool,
    /// The termination message read from the latest (exited) container.
    pub termination_message: Option<String>,
}

pub fn container_status(view: &ContainerView<'_>) -> Value {
    let image = view.spec.image.clone().unwrap_or_default();
    let restart_count = view.latest.map_or(0, |c| c.attempt);
    let mut status = json!({
        "name": view.spec.name,
        "image": image,
        "imageID": view.latest.map(|c| c.image_ref.clone()).unwrap_or_default(),
        "ready": false,
        "restartCount": restart_count,
        "started": false,
        "lastState": {},
    });
    if let Some(c) = view.latest {
        status["containerID"] = json!(container_id(&c.id));
    }
    let last = |c: &Observed| json!({ "terminated": terminated(c, None) });
    match (view.latest, &view.waiting) {
        (Some(c), None) if c.running() => {
            status["state"] = json!({ "running": { "startedAt": time(c.started_at) } });
            status["ready"] = json!(view.ready);
            status["started"] = json!(view.started);
            if let Some(prev) = view.previous {
                status["lastState"] = last(prev);
            }
        }
        (Some(c), None) if c.exited() => {
            status["state"] =
                json!({ "terminated": terminated(c, view.termination_message.as_deref()) });
            if let Some(prev) = view.previous {
                status["lastState"] = last(prev);
            }
        }
        (latest, waiting) => {
            let (reason, message) = waiting
                .clone()
                .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
            let mut state = json!({ "reason": reason });
            if !message.is_empty() {
                state["message"] = json!(message);
            }
            status["state"] = json!({ "waiting": state });
            // While waiting to restart, the last run is the latest container.
            if let Some(c) = latest.filter(|c| c.exited()) {
                status["lastState"] =
                    json!({ "terminated": terminated(c, view.termination_message.as_deref()) });
            } else if let Some(prev) = view.previous {
                status["lastState"] = last(prev);
            }
        }
    }
    status
}

fn state_of(status: &Value) -> &str {
    let state = &status["state"];
    if state.get("running").is_some() {
        "running"
    } else if state.get("terminated").is_some() {
        "terminated"
    } else {
        "waiting"
    }
}

/// Upstream's `getPhase` for a pod whose init containers are done.
pub fn phase(
    restart_policy: &str,
    statuses: &[Value],
    init_done: bool,
    init_failed: bool,
) -> &'static str {
    if init_failed && restart_policy == "Never" {
        return "Failed";
    }
    if !init_done {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for status in statuses {
        match state_of(status) {
            "running" => running += 1,
            "terminated" => {
                stopped += 1;
                if status["state"]["terminated"]["exitCode"] == 0 {
                    succeeded += 1;
                }
            }
            _ => {
                if status["lastState"].get("terminated").is_some() {
                    stopped += 1;
                } else {
                    waiting += 1;
                }
            }
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

/// A condition, keeping its transition time from `old` while its status is unchanged.
pub fn condition(
    old: &[Value],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> Value {
    let status = if ok { "True" } else { "False" };
    let transition = old
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == status)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(Time(Timestamp::now())));
    let mut c = json!({
        "type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": transition,
    });
    if let Some(reason) = reason {
        c["reason"] = json!(reason);
    }
    if let Some(message) = message {
        c["message"] = json!(message);
    }
    c
}

/// The names of containers whose status fails `test`, as upstream lists them in messages.
pub fn names_where(statuses: &[Value], test: impl Fn(&Value) -> bool) -> Vec<String> {
    statuses
        .iter()
        .filter(|s| test(s))
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect()
}

/// The pod's conditions; `old` are the conditions it has (PodScheduled and others the
/// kubelet does not own are kept).
pub fn conditions(
    pod: &Pod,
    sandbox_ready: bool,
    init_statuses: &[Value],
    statuses: &[Value],
    phase: &str,
) -> Vec<Value> {
    let old: Vec<Value> = pod
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(&s.conditions).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let ours = [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    ];
    let mut out: Vec<Value> = old
        .iter()
        .filter(|c| !ours.contains(&c["type"].as_str().unwrap_or_default()))
        .cloned()
        .collect();
    out.push(condition(
        &old,
        "PodReadyToStartContainers",
        sandbox_ready,
        None,
        None,
    ));
    // Sidecars (init containers that always restart) count once started, the others once
    // they have succeeded.
    let sidecars: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let uninitialized = names_where(init_statuses, |s| {
        if sidecars.contains(&s["name"].as_str().unwrap_or_default()) {
            s["started"] != true
        } else {
            s["state"]["terminated"]["exitCode"] != 0
        }
    });
    out.push(if uninitialized.is_empty() {
        condition(&old, "Initialized", true, None, None)
    } else {
        condition(
            &old,
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                uninitialized.join(" ")
            )),
        )
    });
    let completed = phase == "Succeeded" || phase == "Failed";
    let unready = names_where(statuses, |s| s["ready"] != true);
    let gates_ok = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .into_iter()
        .flatten()
        .all(|gate| {
            old.iter()
                .any(|c| c["type"] == gate.condition_type.as_str() && c["status"] == "True")
        });
    let (reason, message) = if completed {
        (Some("PodCompleted"), None)
    } else if unready.is_empty() {
        (None, None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let ready = !completed && unready.is_empty();
    out.push(condition(
        &old,
        "ContainersReady",
        ready,
        reason,
        message.clone(),
    ));
    let (ready_reason, ready_message) = if ready && !gates_ok {
        (
            Some("ReadinessGatesNotReady"),
            Some("corresponding condition of pod readiness gate is not true".to_string()),
        )
    } else {
        (reason, message)
    };
    out.push(condition(
        &old,
        "Ready",
        ready && gates_ok,
        ready_reason,
        ready_message,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: Value, last: Value) -> Value {
        json!({ "name": "c", "state": state, "lastState": last })
    }

    #[test]
    fn phases_follow_upstream() {
        let running = status(json!({"running": {}}), json!({}));
        let ok = status(json!({"terminated": {"exitCode": 0}}), json!({}));
        let failed = status(json!({"terminated": {"exitCode": 1}}), json!({}));
        let creating = status(
            json!({"waiting": {"reason": "ContainerCreating"}}),
            json!({}),
        );
        let backoff = status(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 1}}),
        );
        assert_eq!(
            phase("Always", std::slice::from_ref(&running), true, false),
            "Running"
        );
        assert_eq!(
            phase("Always", std::slice::from_ref(&creating), true, false),
            "Pending"
        );
        assert_eq!(phase("Always", &[backoff], true, false), "Running");
        assert_eq!(
            phase("Never", std::slice::from_ref(&ok), true, false),
            "Succeeded"
        );
        assert_eq!(
            phase("OnFailure", std::slice::from_ref(&ok), true, false),
            "Succeeded"
        );
        assert_eq!(phase("Never", &[ok, failed.clone()], true, false), "Failed");
        assert_eq!(phase("OnFailure", &[failed], true, false), "Running");
        assert_eq!(
            phase("Never", std::slice::from_ref(&creating), false, true),
            "Failed"
        );
        assert_eq!(phase("Always", &[creating], false, false), "Pending");
    }

    #[test]
    fn ready_conditions_name_unready_containers() {
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": []},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}}),
        )
        .unwrap();
        let statuses = vec![
            json!({"name": "a", "ready": true}),
            json!({"name": "b", "ready": false}),
        ];
        let conditions = conditions(&pod, true, &[], &statuses, "Running");
        let by_type = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap().clone();
        assert_eq!(by_type("PodScheduled")["status"], "True");
        assert_eq!(by_type("Ready")["status"], "False");
        assert_eq!(
            by_type("Ready")["message"],
            "containers with unready status: [b]"
        );
        assert_eq!(by_type("Initialized")["status"], "True");
        assert_eq!(by_type("PodReadyToStartContainers")["status"], "True");
    }
}
