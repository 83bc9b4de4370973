//! Pods: the `kubectl get pods` table. STATUS is upstream's one-word summary of the phase,
//! init progress and the containers' waiting or terminated reasons; RESTARTS counts restarts
//! and says how long ago the last one was. Defaults, admission and the starting status are in
//! `pod_creation`.

use serde_json::Value;
use time::OffsetDateTime;

use super::pod_creation;
use super::printing::{self, AGE, NAME, column, int, items, text, wide};
use super::{Column, Kind};

pub struct Pods;

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    column(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    column(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    wide(
        "Node",
        "string",
        "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename",
    ),
    wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
    ),
];

impl Kind for Pods {
    fn returns_deleted_object(&self) -> bool {
        true
    }

    // As upstream: the requested period, else the pod's own; a pod no kubelet runs (unbound)
    // or that has finished has nothing to stop and goes at once.
    fn grace_period(&self, pod: &Value, requested: Option<i64>) -> Option<i64> {
        let period = requested
            .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        let unbound = pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
        let finished = matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        Some(if unbound || finished {
            0
        } else if period < 0 {
            1
        } else {
            period
        })
    }
    // The fields upstream's field selectors accept for this kind.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    fn prepare_for_create(&self, object: &mut Value) {
        pod_creation::prepare_new_pod(object);
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        pod_creation::default_pod(new);
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

/// Restarts of a group of containers and when the latest of them ended.
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<OffsetDateTime>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += int(&status["restartCount"]);
        let finished = printing::timestamp(&status["lastState"]["terminated"]["finishedAt"]);
        if finished > self.last {
            self.last = finished;
        }
    }
}

/// Whether a pod condition of this type is present and True.
fn condition_is_true(pod: &Value, kind: &str) -> bool {
    items(&pod["status"]["conditions"])
        .iter()
        .find(|c| c["type"] == kind)
        .is_some_and(|c| c["status"] == "True")
}

/// Reason for a terminated container without one: its signal, else its exit code.
fn exit_reason(terminated: &Value) -> String {
    match int(&terminated["signal"]) {
        0 => format!("ExitCode:{}", int(&terminated["exitCode"])),
        signal => format!("Signal:{signal}"),
    }
}

fn row(pod: &Value, now: OffsetDateTime) -> Vec<Value> {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let phase = text(&status["phase"]);
    let mut reason = match text(&status["reason"]) {
        "" => phase.to_owned(),
        r => r.to_owned(),
    };
    let gated = items(&status["conditions"])
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated");
    if gated {
        reason = "SchedulingGated".into();
    }

    // Sidecars (init containers that restart Always) count as containers of the pod.
    let init_specs = items(&spec["initContainers"]);
    let is_sidecar = |name: &Value| {
        init_specs
            .iter()
            .any(|c| &c["name"] == name && c["restartPolicy"] == "Always")
    };
    let mut total = items(&spec["containers"]).len();
    total += init_specs
        .iter()
        .filter(|c| c["restartPolicy"] == "Always")
        .count();
    let mut ready = 0;
    let mut restarts = Restarts::default();
    let mut sidecar_restarts = Restarts::default();

    let mut initializing = false;
    for (i, container) in items(&status["initContainerStatuses"]).iter().enumerate() {
        restarts.add(container);
        let sidecar = is_sidecar(&container["name"]);
        if sidecar {
            sidecar_restarts.add(container);
        }
        let state = &container["state"];
        let terminated = &state["terminated"];
        let waiting_reason = text(&state["waiting"]["reason"]);
        if terminated.is_object() && int(&terminated["exitCode"]) == 0 {
            continue;
        }
        if sidecar && container["started"] == true {
            if container["ready"] == true {
                ready += 1;
            }
            continue;
        }
        reason = if terminated.is_object() {
            match text(&terminated["reason"]) {
                "" => format!("Init:{}", exit_reason(terminated)),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_is_true(pod, "Initialized") {
        // Once initialized, only sidecar restarts still count among init containers.
        restarts = sidecar_restarts;
        let mut has_running = false;
        for container in items(&status["containerStatuses"]).iter().rev() {
            restarts.add(container);
            let state = &container["state"];
            let terminated = &state["terminated"];
            let waiting_reason = text(&state["waiting"]["reason"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_owned();
            } else if terminated.is_object() {
                reason = match text(&terminated["reason"]) {
                    "" => exit_reason(terminated),
                    r => r.to_owned(),
                };
            } else if container["ready"] == true && state["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but others still run is still running.
        if reason == "Completed" && has_running {
            reason = if condition_is_true(pod, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    let deleting = !pod["metadata"]["deletionTimestamp"].is_null();
    if deleting && text(&status["reason"]) == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && !matches!(phase, "Succeeded" | "Failed") {
        reason = "Terminating".into();
    }

    let restarts_cell = match restarts.last {
        Some(last) if restarts.count != 0 => format!(
            "{} ({} ago)",
            restarts.count,
            printing::human_duration(now - last)
        ),
        _ => restarts.count.to_string(),
    };

    vec![
        printing::name(pod),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_cell.into(),
        printing::age(pod, now),
        or_none(pod_ip(status)).into(),
        or_none(text(&spec["nodeName"])).into(),
        or_none(text(&status["nominatedNodeName"])).into(),
        readiness_gates(pod).into(),
    ]
}

fn or_none(value: &str) -> &str {
    if value.is_empty() { "<none>" } else { value }
}

/// The pod's primary IP: `podIP` wins over `podIPs`, as upstream's conversion decides.
fn pod_ip(status: &Value) -> &str {
    match text(&status["podIP"]) {
        "" => text(&status["podIPs"][0]["ip"]),
        ip => ip,
    }
}

/// `true/total` of the readiness gates' conditions, or `<none>` without gates.
fn readiness_gates(pod: &Value) -> String {
    let gates = items(&pod["spec"]["readinessGates"]);
    if gates.is_empty() {
        return "<none>".into();
    }
    let conditions = items(&pod["status"]["conditions"]);
    let met = gates
        .iter()
        .filter(|gate| {
            conditions
                .iter()
                .find(|c| c["type"] == gate["conditionType"])
                .is_some_and(|c| c["status"] == "True")
        })
        .count();
    format!("{met}/{}", gates.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    const NOW: &str = "2026-03-01T12:00:00Z";

    fn cells(pod: Value) -> Vec<Value> {
        row(&pod, at(NOW))
    }

    fn running(name: &str, restarts: i64) -> Value {
        json!({
            "name": name, "ready": true, "restartCount": restarts,
            "state": { "running": { "startedAt": "2026-03-01T11:00:00Z" } },
        })
    }

    #[test]
    fn a_running_pod_shows_ready_containers_and_when_it_last_restarted() {
        let mut b = running("b", 2);
        b["lastState"] =
            json!({ "terminated": { "exitCode": 1, "finishedAt": "2026-03-01T11:55:00Z" } });
        let pod = json!({
            "metadata": { "name": "web", "creationTimestamp": "2026-02-28T09:00:00Z" },
            "spec": { "nodeName": "n1", "containers": [{ "name": "a" }, { "name": "b" }] },
            "status": {
                "phase": "Running", "podIP": "10.42.0.5",
                "containerStatuses": [running("a", 1), b],
            },
        });
        assert_eq!(
            json!(cells(pod)),
            json!([
                "web",
                "2/2",
                "Running",
                "3 (5m ago)",
                "27h",
                "10.42.0.5",
                "n1",
                "<none>",
                "<none>"
            ])
        );
    }

    #[test]
    fn restarts_without_a_last_termination_time_are_a_bare_count() {
        let pod = json!({
            "spec": { "containers": [{ "name": "a" }] },
            "status": { "phase": "Running", "containerStatuses": [running("a", 4)] },
        });
        assert_eq!(cells(pod)[3], "4");
    }

    #[test]
    fn a_crash_looping_pod_shows_the_waiting_reason() {
        let pod = json!({
            "spec": { "containers": [{ "name": "a" }] },
            "status": {
                "phase": "Running",
                "containerStatuses": [{
                    "name": "a", "ready": false, "restartCount": 7,
                    "state": { "waiting": { "reason": "CrashLoopBackOff" } },
                    "lastState": { "terminated": { "exitCode": 1, "reason": "Error", "finishedAt": "2026-03-01T11:59:30Z" } },
                }],
            },
        });
        let cells = cells(pod);
        assert_eq!(cells[1], "0/1");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "7 (30s ago)");
    }

    #[test]
    fn a_pod_being_deleted_shows_terminating() {
        let pod = json!({
            "metadata": { "deletionTimestamp": "2026-03-01T11:59:00Z" },
            "spec": { "containers": [{ "name": "a" }] },
            "status": { "phase": "Running", "containerStatuses": [running("a", 0)] },
        });
        assert_eq!(cells(pod)[2], "Terminating");
    }

    #[test]
    fn a_finished_pod_being_deleted_keeps_its_final_status() {
        let pod = json!({
            "metadata": { "deletionTimestamp": "2026-03-01T11:59:00Z" },
            "spec": { "containers": [{ "name": "a" }] },
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [{ "name": "a", "state": { "terminated": { "exitCode": 0, "reason": "Completed" } } }],
            },
        });
        assert_eq!(cells(pod)[2], "Completed");
    }

    #[test]
    fn a_pod_on_a_lost_node_being_deleted_is_unknown() {
        let pod = json!({
            "metadata": { "deletionTimestamp": "2026-03-01T11:59:00Z" },
            "spec": { "containers": [{ "name": "a" }] },
            "status": { "phase": "Running", "reason": "NodeLost" },
        });
        assert_eq!(cells(pod)[2], "Unknown");
    }

    #[test]
    fn a_pod_running_init_containers_shows_their_progress() {
        let pod = json!({
            "spec": {
                "initContainers": [{ "name": "i1" }, { "name": "i2" }],
                "containers": [{ "name": "a" }],
            },
            "status": {
                "phase": "Pending",
                "initContainerStatuses": [
                    { "name": "i1", "state": { "terminated": { "exitCode": 0, "reason": "Completed" } } },
                    { "name": "i2", "state": { "running": {} } },
                ],
                "containerStatuses": [{ "name": "a", "state": { "waiting": { "reason": "PodInitializing" } } }],
            },
        });
        assert_eq!(cells(pod)[2], "Init:1/2");
    }

    #[test]
    fn a_failing_init_container_shows_its_reason_or_exit_code() {
        let failing = |terminated: Value| {
            json!({
                "spec": { "initContainers": [{ "name": "i" }], "containers": [{ "name": "a" }] },
                "status": {
                    "phase": "Pending",
                    "initContainerStatuses": [{ "name": "i", "state": { "terminated": terminated } }],
                },
            })
        };
        assert_eq!(
            cells(failing(json!({ "exitCode": 1, "reason": "Error" })))[2],
            "Init:Error"
        );
        assert_eq!(
            cells(failing(json!({ "exitCode": 2 })))[2],
            "Init:ExitCode:2"
        );
        assert_eq!(
            cells(failing(json!({ "exitCode": 137, "signal": 9 })))[2],
            "Init:Signal:9"
        );
    }

    #[test]
    fn a_waiting_init_container_shows_its_reason() {
        let pod = json!({
            "spec": { "initContainers": [{ "name": "i" }], "containers": [{ "name": "a" }] },
            "status": {
                "phase": "Pending",
                "initContainerStatuses": [{ "name": "i", "state": { "waiting": { "reason": "ImagePullBackOff" } } }],
            },
        });
        assert_eq!(cells(pod)[2], "Init:ImagePullBackOff");
    }

    #[test]
    fn started_sidecars_count_as_ready_containers() {
        let pod = json!({
            "spec": {
                "initContainers": [{ "name": "proxy", "restartPolicy": "Always" }],
                "containers": [{ "name": "a" }],
            },
            "status": {
                "phase": "Running",
                "conditions": [{ "type": "Initialized", "status": "True" }],
                "initContainerStatuses": [{
                    "name": "proxy", "started": true, "ready": true, "restartCount": 1,
                    "state": { "running": {} },
                }],
                "containerStatuses": [running("a", 0)],
            },
        });
        let cells = cells(pod);
        assert_eq!(cells[1], "2/2");
        assert_eq!(cells[2], "Running");
        assert_eq!(cells[3], "1");
    }

    #[test]
    fn a_completed_container_beside_a_running_one_reads_not_ready_until_the_pod_is_ready() {
        let pod = |ready: &str| {
            json!({
                "spec": { "containers": [{ "name": "a" }, { "name": "b" }] },
                "status": {
                    "phase": "Running",
                    "conditions": [{ "type": "Ready", "status": ready }],
                    "containerStatuses": [
                        running("a", 0),
                        { "name": "b", "state": { "terminated": { "exitCode": 0, "reason": "Completed" } } },
                    ],
                },
            })
        };
        assert_eq!(cells(pod("False"))[2], "NotReady");
        assert_eq!(cells(pod("True"))[2], "Running");
    }

    #[test]
    fn a_terminated_container_without_a_reason_shows_its_signal() {
        let pod = json!({
            "spec": { "containers": [{ "name": "a" }] },
            "status": {
                "phase": "Failed",
                "containerStatuses": [{ "name": "a", "state": { "terminated": { "exitCode": 137, "signal": 9 } } }],
            },
        });
        assert_eq!(cells(pod)[2], "Signal:9");
    }

    #[test]
    fn a_scheduling_gated_pod_says_so() {
        let pod = json!({
            "spec": { "containers": [{ "name": "a" }] },
            "status": {
                "phase": "Pending",
                "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "SchedulingGated" }],
            },
        });
        assert_eq!(cells(pod)[2], "SchedulingGated");
    }

    #[test]
    fn readiness_gates_count_true_conditions() {
        let pod = json!({
            "spec": {
                "containers": [{ "name": "a" }],
                "readinessGates": [{ "conditionType": "lb/ready" }, { "conditionType": "other" }],
            },
            "status": {
                "phase": "Running",
                "podIPs": [{ "ip": "fd00::5" }],
                "nominatedNodeName": "n2",
                "conditions": [{ "type": "lb/ready", "status": "True" }],
            },
        });
        let cells = cells(pod);
        assert_eq!(cells[5], "fd00::5");
        assert_eq!(cells[7], "n2");
        assert_eq!(cells[8], "1/2");
    }
}
