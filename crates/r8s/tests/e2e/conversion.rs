//! Resources served in two versions over one storage, driven by the real kubectl and curl:
//! core and events.k8s.io events are the same objects under two sets of field names, and
//! autoscaling/v1 autoscalers are the stored autoscaling/v2 ones.

use crate::common;

use std::time::Duration;

use common::{SimNodes, TestServer, eventually};
use serde_json::{Value, json};

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn events_k8s_io(server: &TestServer, rest: &str) -> String {
    format!(
        "{}/apis/events.k8s.io/v1/namespaces/default/events{rest}",
        server.url
    )
}

/// POSTs an events.k8s.io/v1 Event about pod `pod` with curl.
fn post_new_event(server: &TestServer, name: &str, pod: &str, uid: &str, note: &str) {
    let event = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": { "name": name },
        "eventTime": "2026-03-01T12:00:00.000000Z",
        "reportingController": "example.com/checker",
        "reportingInstance": "checker-1",
        "action": "Checking",
        "reason": "Checked",
        "note": note,
        "type": "Normal",
        "regarding": { "apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": pod, "uid": uid },
    });
    let (code, body) = server.curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        &event.to_string(),
        &events_k8s_io(server, ""),
    ]);
    assert_eq!(code, 201, "{body}");
    let created = parse(&body);
    assert_eq!(created["apiVersion"], "events.k8s.io/v1", "{created:#}");
    assert_eq!(created["note"], note);
    assert!(created.get("message").is_none(), "{created:#}");
}

/// A core v1 Event about configmap `about`, reported by `component`.
fn core_event(name: &str, about: &str, component: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: {name}\ninvolvedObject: {{kind: ConfigMap, name: {about}, namespace: default}}\nreason: Rotated\nmessage: rotated the keys\ntype: Normal\ncount: 2\nsource: {{component: {component}, host: node-1}}\nfirstTimestamp: \"2026-03-01T11:00:00Z\"\nlastTimestamp: \"2026-03-01T11:30:00Z\"\n"
    )
}

#[test]
fn an_events_k8s_io_event_is_listed_and_described_as_a_core_event() {
    let server = TestServer::start();
    server.kubectl_ok(&["run", "web", "--image=nginx"]);
    let uid = server.kubectl_ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"]);
    post_new_event(&server, "web.checked", "web", &uid, "looked at the pod");

    let core = server.get_json(&["event", "web.checked"]);
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["involvedObject"]["name"], "web");
    assert_eq!(core["involvedObject"]["uid"], uid.as_str());
    assert_eq!(core["message"], "looked at the pod");
    assert_eq!(core["reportingComponent"], "example.com/checker");
    assert!(core.get("note").is_none(), "{core:#}");

    let table = server.kubectl_ok(&["get", "events"]);
    assert!(
        table.contains("Checked")
            && table.contains("pod/web")
            && table.contains("looked at the pod"),
        "{table}"
    );
    let described = server.kubectl_ok(&["describe", "pod", "web"]);
    assert!(
        described.contains("Checked") && described.contains("looked at the pod"),
        "{described}"
    );
    let selected = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web,reason=Checked",
        "-o",
        "name",
    ]);
    assert_eq!(selected.trim(), "event/web.checked");
    let none = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=other",
        "-o",
        "name",
    ]);
    assert!(none.trim().is_empty(), "{none}");
}

#[test]
fn a_core_event_reads_as_events_k8s_io_with_its_field_selectors() {
    let server = TestServer::start();
    server.create_ok(&core_event("keys.1", "keys", "rotator"));

    let (code, body) = server.curl(&[&events_k8s_io(&server, "/keys.1")]);
    assert_eq!(code, 200, "{body}");
    let event = parse(&body);
    assert_eq!(event["apiVersion"], "events.k8s.io/v1");
    assert_eq!(event["regarding"]["name"], "keys");
    assert_eq!(event["note"], "rotated the keys");
    assert_eq!(event["deprecatedSource"]["component"], "rotator");
    assert_eq!(event["deprecatedCount"], 2);
    assert_eq!(event["deprecatedFirstTimestamp"], "2026-03-01T11:00:00Z");
    assert!(event.get("involvedObject").is_none(), "{event:#}");

    let names = server.kubectl_ok(&[
        "get",
        "events.v1.events.k8s.io",
        "--field-selector",
        "regarding.name=keys,regarding.kind=ConfigMap,source=rotator",
        "-o",
        "name",
    ]);
    assert_eq!(names.trim(), "event.events.k8s.io/keys.1");
    let (code, body) = server.curl(&[&events_k8s_io(
        &server,
        "?fieldSelector=involvedObject.name%3Dkeys",
    )]);
    assert_eq!(
        code, 400,
        "core field names are not events.k8s.io's: {body}"
    );
    // The table reads the same either way.
    let table = server.kubectl_ok(&["get", "events.v1.events.k8s.io"]);
    assert!(
        table.contains("configmap/keys") && table.contains("rotated the keys"),
        "{table}"
    );
}

#[test]
fn writes_through_either_api_change_the_one_stored_event() {
    let server = TestServer::start();
    server.create_ok(&core_event("keys.2", "keys", "rotator"));
    // A merge patch through events.k8s.io names its fields; core reads the result.
    let (code, body) = server.curl(&[
        "-X",
        "PATCH",
        "-H",
        "Content-Type: application/merge-patch+json",
        "--data",
        r#"{"note":"rotated again","deprecatedCount":3}"#,
        &events_k8s_io(&server, "/keys.2"),
    ]);
    assert_eq!(code, 200, "{body}");
    let patched = parse(&body);
    assert_eq!(patched["note"], "rotated again");
    let core = server.get_json(&["event", "keys.2"]);
    assert_eq!(core["message"], "rotated again");
    assert_eq!(core["count"], 3);
    assert_eq!(
        core["metadata"]["resourceVersion"], patched["metadata"]["resourceVersion"],
        "one object, one resourceVersion"
    );

    // A core update is seen through events.k8s.io.
    server.kubectl_ok(&["label", "event", "keys.2", "checked=yes"]);
    let (_, body) = server.curl(&[&events_k8s_io(&server, "/keys.2")]);
    let event = parse(&body);
    assert_eq!(event["metadata"]["labels"]["checked"], "yes");
    assert_eq!(event["note"], "rotated again");

    // Server-side apply through events.k8s.io records its manager in that version.
    let applied =
        "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: keys.2\nnote: applied\n";
    let out = server.kubectl_input(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        applied,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let core = server.get_json(&["event", "keys.2", "--show-managed-fields"]);
    assert_eq!(core["message"], "applied");
    let entries = core["metadata"]["managedFields"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["manager"] == "kubectl" && e["apiVersion"] == "events.k8s.io/v1"),
        "{entries:#?}"
    );

    // Deleted through events.k8s.io, gone from core.
    let (code, body) = server.curl(&["-X", "DELETE", &events_k8s_io(&server, "/keys.2")]);
    assert_eq!(code, 200, "{body}");
    let out = server.kubectl(&["get", "event", "keys.2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
}

#[test]
fn an_events_k8s_io_watch_sees_core_events_created_after_it() {
    let server = TestServer::start();
    let (_, list) = server.curl(&[&events_k8s_io(&server, "")]);
    let listed = parse(&list);
    assert_eq!(listed["kind"], "EventList");
    assert_eq!(listed["apiVersion"], "events.k8s.io/v1");
    let rv = listed["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    server.create_ok(&core_event("watched.1", "watched", "rotator"));
    server.create_ok(&core_event("other.1", "other", "rotator"));
    let url = events_k8s_io(
        &server,
        &format!(
            "?watch=true&resourceVersion={rv}&fieldSelector=regarding.name%3Dwatched&timeoutSeconds=2"
        ),
    );
    let (code, body) = server.curl(&[&url]);
    assert_eq!(code, 200, "{body}");
    let seen: Vec<Value> = body.lines().map(parse).collect();
    assert_eq!(seen.len(), 1, "{body}");
    assert_eq!(seen[0]["type"], "ADDED");
    let object = &seen[0]["object"];
    assert_eq!(object["apiVersion"], "events.k8s.io/v1");
    assert_eq!(object["metadata"]["name"], "watched.1");
    assert_eq!(object["regarding"]["name"], "watched");
    assert_eq!(object["note"], "rotated the keys");
}

#[test]
fn kubectl_autoscale_reads_back_as_autoscaling_v1() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "deployment", "web", "--image=nginx"]);
    server.kubectl_ok(&[
        "autoscale",
        "deployment",
        "web",
        "--cpu=50%",
        "--memory=200Mi",
        "--min=2",
        "--max=5",
    ]);
    let v2 = server.get_json(&["horizontalpodautoscalers.v2.autoscaling", "web"]);
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    assert_eq!(
        v2["spec"]["metrics"].as_array().map(Vec::len),
        Some(2),
        "{v2:#}"
    );
    let v1 = server.get_json(&["horizontalpodautoscalers.v1.autoscaling", "web"]);
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50, "{v1:#}");
    assert_eq!(v1["spec"]["minReplicas"], 2);
    assert_eq!(v1["spec"]["maxReplicas"], 5);
    assert!(v1["spec"].get("metrics").is_none(), "{v1:#}");
    // What v1 cannot say is kept in an annotation, in v1's metric shape.
    let others = &v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"];
    assert_eq!(
        parse(others.as_str().expect("a metrics annotation")),
        json!([{ "type": "Resource", "resource": { "name": "memory", "targetAverageValue": "200Mi" } }])
    );
    let listed = server.get_json(&["horizontalpodautoscalers.v1.autoscaling"]);
    assert_eq!(
        listed["items"][0]["spec"]["targetCPUUtilizationPercentage"],
        50
    );
}

#[test]
fn a_v1_autoscaler_is_read_as_v2_and_keeps_its_other_metrics_through_v1_writes() {
    let server = TestServer::start();
    server.create_ok(
        r#"apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata:
  name: api
  annotations:
    autoscaling.alpha.kubernetes.io/metrics: '[{"type":"Resource","resource":{"name":"memory","targetAverageValue":"200Mi"}}]'
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: api}
  maxReplicas: 4
  targetCPUUtilizationPercentage: 70
"#,
    );
    let v2 = server.get_json(&["horizontalpodautoscalers.v2.autoscaling", "api"]);
    assert_eq!(
        v2["spec"]["metrics"],
        json!([
            { "type": "Resource", "resource": { "name": "memory", "target": { "type": "AverageValue", "averageValue": "200Mi" } } },
            { "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 70 } } },
        ]),
        "{v2:#}"
    );
    assert_eq!(v2["spec"]["minReplicas"], 1);
    assert!(
        v2["metadata"].get("annotations").is_none(),
        "the annotation became a metric: {v2:#}"
    );

    server.kubectl_ok(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "api",
        "--type=merge",
        "-p",
        r#"{"spec":{"targetCPUUtilizationPercentage":60}}"#,
    ]);
    let v2 = server.get_json(&["horizontalpodautoscalers.v2.autoscaling", "api"]);
    let metrics = v2["spec"]["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 2, "{v2:#}");
    assert_eq!(metrics[0]["resource"]["name"], "memory");
    assert_eq!(metrics[1]["resource"]["target"]["averageUtilization"], 60);
    let table = server.kubectl_ok(&["get", "hpa", "api"]);
    assert!(table.contains("memory: <unknown>/200Mi"), "{table}");
}

#[test]
fn a_pod_scheduled_on_a_hollow_node_shows_its_scheduled_event_in_describe() {
    let server = TestServer::start();
    let _nodes = SimNodes::start(&server, 1);
    server.kubectl_ok(&["run", "sleeper", "--image=busybox"]);
    let mut described = String::new();
    let shown = eventually(Duration::from_secs(30), || {
        described = server.kubectl_ok(&["describe", "pod", "sleeper"]);
        described.contains("Scheduled")
            && described.contains("Successfully assigned default/sleeper to hollow-0")
    });
    assert!(shown, "{described}");
}
