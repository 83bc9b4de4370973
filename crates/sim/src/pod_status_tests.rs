use super::*;
use serde_json::json;

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": "p", "namespace": "ns", "uid": "u1" },
        "spec": spec,
    }))
    .unwrap()
}

fn containers(commands: &[Option<&str>]) -> serde_json::Value {
    let list: Vec<_> = commands
        .iter()
        .enumerate()
        .map(|(i, command)| match command {
            Some(c) => json!({ "name": format!("c{i}"), "image": "busybox", "command": [c] }),
            None => json!({ "name": format!("c{i}"), "image": "busybox" }),
        })
        .collect();
    json!(list)
}

fn placement() -> Placement {
    Placement {
        host_ip: Ipv4Addr::new(172, 16, 0, 1),
        pod_ip: Some(Ipv4Addr::new(10, 244, 0, 2)),
    }
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

/// Reports the pod at `second`, then stores the report in the pod, as the API server would.
fn report(pod: &mut Pod, second: i64) -> Report {
    let report = pod_status(pod, placement(), at(second));
    pod.status = Some(report.status.clone());
    report
}

fn condition<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
    let conditions = status.conditions.as_ref().unwrap();
    conditions.iter().find(|c| c.type_ == type_).unwrap()
}

fn state(status: &PodStatus, i: usize) -> &ContainerState {
    status.container_statuses.as_ref().unwrap()[i]
        .state
        .as_ref()
        .unwrap()
}

#[test]
fn a_pod_runs_ready_with_its_addresses() {
    let mut p = pod(json!({ "containers": containers(&[None, Some("sleep")]) }));
    let status = report(&mut p, 0).status;
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.2"));
    assert_eq!(status.pod_ips.unwrap()[0].ip, "10.244.0.2");
    assert_eq!(status.host_ip.as_deref(), Some("172.16.0.1"));
    assert_eq!(status.start_time, Some(Time(at(0))));
    for type_ in KUBELET_CONDITIONS {
        assert_eq!(
            p.status
                .as_ref()
                .map(|s| condition(s, type_).status.as_str()),
            Some("True")
        );
    }
    let c = &status.container_statuses.unwrap()[0];
    assert!(c.ready && c.started == Some(true) && c.restart_count == 0);
    assert_eq!(c.container_id.as_deref(), Some("hollow://u1/c0/0"));
    assert_eq!(c.image_id, "hollow://busybox");
    assert!(c.state.as_ref().unwrap().running.is_some());
}

#[test]
fn reporting_again_changes_nothing() {
    let mut p = pod(json!({ "containers": containers(&[None]) }));
    let first = report(&mut p, 0);
    let second = report(&mut p, 30);
    assert_eq!(first, second);
}

#[test]
fn other_writers_conditions_are_kept() {
    let mut p = pod(json!({ "containers": containers(&[None]) }));
    report(&mut p, 0);
    let status = p.status.as_mut().unwrap();
    status.conditions.as_mut().unwrap().push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        ..Default::default()
    });
    let status = report(&mut p, 1).status;
    assert_eq!(condition(&status, "DisruptionTarget").status, "True");
}

#[test]
fn a_true_pod_that_never_restarts_succeeds() {
    for policy in ["Never", "OnFailure"] {
        let mut p =
            pod(json!({ "restartPolicy": policy, "containers": containers(&[Some("true")]) }));
        let status = report(&mut p, 0).status;
        assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{policy}");
        let t = state(&status, 0).terminated.as_ref().unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
        assert_eq!(
            condition(&status, "Ready").reason.as_deref(),
            Some("PodCompleted")
        );
        assert_eq!(
            condition(&status, "PodReadyToStartContainers").status,
            "False"
        );
    }
}

#[test]
fn a_false_pod_that_never_restarts_fails() {
    let mut p =
        pod(json!({ "restartPolicy": "Never", "containers": containers(&[Some("/bin/false")]) }));
    let status = report(&mut p, 0).status;
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    let t = state(&status, 0).terminated.as_ref().unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (1, Some("Error")));
}

#[test]
fn a_pod_waits_for_all_its_containers() {
    let mut p =
        pod(json!({ "restartPolicy": "Never", "containers": containers(&[Some("true"), None]) }));
    let status = report(&mut p, 0).status;
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(condition(&status, "Ready").status, "False");
    assert_eq!(
        condition(&status, "ContainersReady").message.as_deref(),
        Some("containers with unready status: [c0]")
    );
}

#[test]
fn a_failing_container_crash_loops_with_growing_back_off() {
    let mut p =
        pod(json!({ "restartPolicy": "Always", "containers": containers(&[Some("false")]) }));
    let first = report(&mut p, 0);
    assert_eq!(first.status.phase.as_deref(), Some("Running"));
    assert!(state(&first.status, 0).terminated.is_some());
    assert_eq!(first.recheck_after, Some(Duration::ZERO));
    // Restarted at once, it fails again and waits 10 s.
    let second = report(&mut p, 0);
    let c = &second.status.container_statuses.as_ref().unwrap()[0];
    assert_eq!(c.restart_count, 1);
    let waiting = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        waiting.message.as_deref(),
        Some("back-off 10s restarting failed container=c0 pod=p_ns(u1)")
    );
    let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(last.exit_code, 1);
    assert_eq!(second.recheck_after, Some(Duration::from_secs(10)));
    // Too early: nothing changes.
    let early = report(&mut p, 4);
    assert_eq!(early.status, second.status);
    assert_eq!(early.recheck_after, Some(Duration::from_secs(6)));
    let third = report(&mut p, 10);
    assert_eq!(
        third.status.container_statuses.as_ref().unwrap()[0].restart_count,
        2
    );
    assert_eq!(third.recheck_after, Some(Duration::from_secs(20)));
    assert_eq!(condition(&third.status, "Ready").status, "False");
}

#[test]
fn restart_back_off_doubles_up_to_five_minutes() {
    let seconds: Vec<u64> = (0..9).map(|n| restart_backoff(n).as_secs()).collect();
    assert_eq!(seconds, [0, 10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(restart_backoff(i32::MAX), BACKOFF_MAX);
}

#[test]
fn a_true_container_restarts_under_always_but_succeeds_under_on_failure() {
    let mut always =
        pod(json!({ "restartPolicy": "Always", "containers": containers(&[Some("true")]) }));
    report(&mut always, 0);
    let status = report(&mut always, 0).status;
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.container_statuses.unwrap()[0].restart_count, 1);
}

#[test]
fn init_containers_complete_before_the_containers_run() {
    let mut p = pod(json!({
        "initContainers": [{ "name": "init", "image": "busybox" }],
        "containers": containers(&[None]),
    }));
    let status = report(&mut p, 0).status;
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let init = &status.init_container_statuses.as_ref().unwrap()[0];
    let t = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    assert_eq!(condition(&status, "Initialized").status, "True");
}

#[test]
fn a_failing_init_container_fails_a_pod_that_never_restarts() {
    let mut p = pod(json!({
        "restartPolicy": "Never",
        "initContainers": [{ "name": "init", "image": "busybox", "command": ["false"] }],
        "containers": containers(&[None]),
    }));
    let status = report(&mut p, 0).status;
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    let waiting = state(&status, 0).waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("PodInitializing"));
}

#[test]
fn a_crash_looping_init_container_keeps_the_pod_pending() {
    let mut p = pod(json!({
        "initContainers": [{ "name": "init", "image": "busybox", "command": ["false"] }],
        "containers": containers(&[None]),
    }));
    report(&mut p, 0);
    let status = report(&mut p, 0).status;
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(condition(&status, "Initialized").status, "False");
    assert_eq!(status.init_container_statuses.unwrap()[0].restart_count, 1);
}

#[test]
fn a_deleted_pod_has_its_containers_stopped() {
    let mut p = pod(json!({ "containers": containers(&[None]) }));
    report(&mut p, 0);
    p.metadata.deletion_timestamp = Some(Time(at(5)));
    let status = report(&mut p, 5).status;
    let t = state(&status, 0).terminated.as_ref().unwrap();
    assert_eq!(t.exit_code, 0);
    assert_eq!(t.started_at, Some(Time(at(0))));
    assert_eq!(t.finished_at, Some(Time(at(5))));
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
}

#[test]
fn a_finished_pod_is_left_alone() {
    let mut p = pod(json!({ "restartPolicy": "Never", "containers": containers(&[Some("true")]) }));
    let done = report(&mut p, 0).status;
    assert_eq!(report(&mut p, 100).status, done);
}

#[test]
fn commands_decide_what_a_hollow_container_does() {
    let c = |command: serde_json::Value| -> Container {
        serde_json::from_value(json!({ "name": "c", "command": command })).unwrap()
    };
    assert_eq!(behaviour(&c(json!(["true"]))), Behaviour::Exits(0));
    assert_eq!(behaviour(&c(json!(["/bin/false"]))), Behaviour::Exits(1));
    assert_eq!(behaviour(&c(json!(["true", "x"]))), Behaviour::Runs);
    assert_eq!(behaviour(&c(json!(["sleep", "10"]))), Behaviour::Runs);
}
