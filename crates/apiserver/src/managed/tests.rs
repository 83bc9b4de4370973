use serde_json::{Value, json};

use super::fieldset::{FieldSet, PathElement};
use super::*;

fn deployments() -> &'static Resource {
    r8s_api::find("apps", "v1", "deployments").expect("catalogue has deployments")
}

fn field(name: &str) -> PathElement {
    PathElement::Field(name.to_owned())
}

fn config(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "default", "labels": { "app": "web" } },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "nginx", "image": image }] },
            },
        },
    })
}

fn entries_of(object: &Value) -> Vec<Value> {
    object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn entry<'a>(object: &'a Value, manager: &str) -> &'a Value {
    object["metadata"]["managedFields"]
        .as_array()
        .and_then(|list| list.iter().find(|e| e["manager"] == manager))
        .unwrap_or_else(|| panic!("no entry for {manager} in {object}"))
}

fn apply_as(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    apply(deployments(), None, live, config, manager, force)
}

/// What the registry does after an apply or update: the object as stored.
fn stored(mut object: Value) -> Value {
    object["metadata"]["uid"] = json!("u-1");
    object
}

#[test]
fn fields_v1_round_trips_with_upstream_order() {
    let text = r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{}}},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}},"f:finalizers":{"v:\"a<b\"":{}}}"#;
    let set = FieldSet::from_value(&serde_json::from_str(text).unwrap()).unwrap();
    assert!(set.has(&[field("metadata"), field("labels"), field("app")]));
    assert!(set.has(&[
        field("spec"),
        field("containers"),
        PathElement::Key(vec![("name".into(), json!("nginx"))]),
    ]));
    assert!(set.has(&[field("finalizers"), PathElement::Value(json!("a<b"))]));
    let again = set.to_json();
    assert!(again.contains(
        r#""k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}"#
    ));
    assert!(again.contains(r#""v:\"a\\u003cb\"":{}"#), "{again}");
    assert_eq!(
        FieldSet::from_value(&serde_json::from_str(&again).unwrap()).unwrap(),
        set
    );
}

#[test]
fn fields_v1_built_as_a_value_is_the_text_read_back() {
    let text = r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{}}}},"f:finalizers":{"v:\"a<b&c\"":{}}}"#;
    let set = FieldSet::from_value(&serde_json::from_str(text).unwrap()).unwrap();
    let read_back: Value = serde_json::from_str(&set.to_json()).unwrap();
    assert_eq!(set.to_value(), read_back);
    assert_eq!(FieldSet::new().to_value(), json!({}));
}

#[test]
fn fields_v1_orders_fields_before_keys_before_values() {
    let mut set = FieldSet::new();
    set.insert(&[field("l"), PathElement::Value(json!(2))]);
    set.insert(&[field("l"), PathElement::Value(json!(10))]);
    set.insert(&[
        field("l"),
        PathElement::Key(vec![("port".into(), json!(8080))]),
    ]);
    set.insert(&[
        field("l"),
        PathElement::Key(vec![("port".into(), json!(80))]),
    ]);
    set.insert(&[field("l"), field("z")]);
    assert_eq!(
        set.to_json(),
        r#"{"f:l":{"f:z":{},"k:{\"port\":80}":{},"k:{\"port\":8080}":{},"v:2":{},"v:10":{}}}"#
    );
}

#[test]
fn malformed_fields_v1_is_an_error_not_a_panic() {
    for bad in [
        json!([1]),
        json!({"k:{not json": {}}),
        json!({"f:a": 3}),
        json!({"x": {}}),
    ] {
        assert!(FieldSet::from_value(&bad).is_err(), "{bad}");
    }
    // Unknown element kinds are skipped, as upstream does.
    assert!(
        FieldSet::from_value(&json!({"z:future": {}}))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn first_apply_owns_exactly_the_configuration() {
    let created = apply_as(None, &config(1, "nginx:1"), "kubectl", false).unwrap();
    let entries = entries_of(&created);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["operation"], "Apply");
    assert_eq!(entries[0]["apiVersion"], "apps/v1");
    assert_eq!(
        entries[0]["fieldsV1"],
        json!({
            "f:metadata": { "f:labels": { "f:app": {} } },
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": { "f:labels": { "f:app": {} } },
                    "f:spec": { "f:containers": { "k:{\"name\":\"nginx\"}": { ".": {}, "f:image": {}, "f:name": {} } } },
                },
            },
        })
    );
}

#[test]
fn apply_conflicts_with_a_field_another_manager_changed() {
    let live = stored(apply_as(None, &config(1, "nginx:1"), "kubectl", false).unwrap());
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(3);
    record_update(
        deployments(),
        Some("scale"),
        Some(&live),
        &mut scaled,
        "kubectl-scale",
    );
    let error = apply_as(Some(&scaled), &config(1, "nginx:1"), "kubectl", false).unwrap_err();
    assert_eq!(error.code, StatusCode::CONFLICT);
    assert_eq!(
        error.message,
        r#"Apply failed with 1 conflict: conflict with "kubectl-scale" with subresource "scale" using apps/v1: .spec.replicas"#
    );
    assert_eq!(
        error.details.unwrap()["causes"],
        json!([{ "reason": "FieldManagerConflict", "message": "conflict with \"kubectl-scale\" with subresource \"scale\" using apps/v1", "field": ".spec.replicas" }])
    );
}

#[test]
fn applying_the_value_another_manager_set_shares_the_field() {
    let live = stored(apply_as(None, &config(1, "nginx:1"), "kubectl", false).unwrap());
    let shared = apply_as(Some(&live), &config(1, "nginx:1"), "other", false).unwrap();
    for manager in ["kubectl", "other"] {
        assert_eq!(
            entry(&shared, manager)["fieldsV1"]["f:spec"]["f:replicas"],
            json!({})
        );
    }
    // One applier letting go leaves the field to the other.
    let mut without_replicas = config(1, "nginx:1");
    without_replicas["spec"]
        .as_object_mut()
        .unwrap()
        .remove("replicas");
    let after = apply_as(Some(&stored(shared)), &without_replicas, "kubectl", false).unwrap();
    assert_eq!(after["spec"]["replicas"], 1);
}

#[test]
fn force_moves_the_conflicting_field_to_the_applier() {
    let live = stored(apply_as(None, &config(1, "nginx:1"), "kubectl", false).unwrap());
    let mut updated = live.clone();
    updated["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    record_update(deployments(), None, Some(&live), &mut updated, "editor");
    let error = apply_as(Some(&updated), &config(1, "nginx:3"), "kubectl", false).unwrap_err();
    assert!(
        error.message.ends_with(r#"conflict with "editor" using apps/v1: .spec.template.spec.containers[name="nginx"].image"#),
        "{}",
        error.message
    );
    let forced = apply_as(Some(&updated), &config(1, "nginx:3"), "kubectl", true).unwrap();
    assert_eq!(
        forced["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:3"
    );
    assert!(
        entries_of(&forced).iter().all(|e| e["manager"] != "editor"),
        "editor owned only the image: {forced}"
    );
}

#[test]
fn fields_dropped_from_the_configuration_are_removed() {
    let mut first = config(1, "nginx:1");
    first["metadata"]["labels"]["tier"] = json!("front");
    first["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "sidecar", "image": "busybox" }));
    let live = stored(apply_as(None, &first, "kubectl", false).unwrap());
    let second = apply_as(Some(&live), &config(1, "nginx:1"), "kubectl", false).unwrap();
    assert_eq!(second["metadata"]["labels"], json!({ "app": "web" }));
    let containers = second["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    assert!(
        entry(&second, "kubectl")["fieldsV1"]["f:metadata"]["f:labels"]
            .get("f:tier")
            .is_none()
    );
}

#[test]
fn an_update_takes_the_fields_it_changes() {
    let live = stored(apply_as(None, &config(1, "nginx:1"), "kubectl", false).unwrap());
    let mut updated = live.clone();
    updated["metadata"]["labels"]["app"] = json!("other");
    record_update(deployments(), None, Some(&live), &mut updated, "editor");
    let editor = entry(&updated, "editor");
    assert_eq!(editor["operation"], "Update");
    assert_eq!(
        editor["fieldsV1"],
        json!({ "f:metadata": { "f:labels": { "f:app": {} } } })
    );
    assert!(editor["time"].is_string());
    assert!(entry(&updated, "kubectl")["fieldsV1"]["f:metadata"].is_null());
    // Entries are sorted Apply first.
    assert_eq!(entries_of(&updated)[0]["operation"], "Apply");
}

#[test]
fn an_update_that_changes_nothing_keeps_the_entries_as_stored() {
    let live = stored(apply_as(None, &config(1, "nginx:1"), "kubectl", false).unwrap());
    let mut same = live.clone();
    record_update(deployments(), None, Some(&live), &mut same, "editor");
    assert_eq!(same, live);
}

#[test]
fn sent_managed_fields_reset_or_replace_the_entries() {
    let live = stored(apply_as(None, &config(1, "nginx:1"), "kubectl", false).unwrap());
    let mut reset = live.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    record_update(deployments(), None, Some(&live), &mut reset, "editor");
    assert!(reset["metadata"].get("managedFields").is_none());
    let mut broken = live.clone();
    broken["metadata"]["managedFields"] = json!([{ "manager": "x", "operation": "Bogus" }]);
    record_update(deployments(), None, Some(&live), &mut broken, "editor");
    assert_eq!(
        broken["metadata"]["managedFields"],
        live["metadata"]["managedFields"]
    );
}

#[test]
fn the_first_apply_to_an_untracked_object_records_before_first_apply() {
    let mut live = stored(config(2, "nginx:1"));
    live["metadata"]["creationTimestamp"] = json!("2024-01-01T00:00:00Z");
    let applied = apply_as(Some(&live), &config(1, "nginx:1"), "kubectl", false).unwrap_err();
    assert!(
        applied
            .message
            .contains(r#"conflict with "before-first-apply" using apps/v1: .spec.replicas"#)
    );
    let same = apply_as(Some(&live), &config(2, "nginx:1"), "helm", false).unwrap();
    let before = entry(&same, "before-first-apply");
    assert_eq!(before["operation"], "Update");
    assert!(
        before["fieldsV1"]["f:metadata"]
            .get("f:creationTimestamp")
            .is_none()
    );
}

#[test]
fn associative_lists_keep_live_order_and_append_new_elements() {
    let mut live = stored(config(1, "nginx:1"));
    live["spec"]["template"]["spec"]["containers"] = json!([
        { "name": "a", "image": "a" }, { "name": "b", "image": "b" }, { "name": "c", "image": "c" },
    ]);
    let mut applied = config(1, "x");
    applied["spec"]["template"]["spec"]["containers"] = json!([
        { "name": "c", "image": "c2" }, { "name": "d", "image": "d" },
    ]);
    let merged = apply_as(Some(&live), &applied, "helm", true).unwrap();
    let names: Vec<&str> = merged["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
}

#[test]
fn a_configuration_with_managed_fields_is_refused() {
    let mut bad = config(1, "nginx:1");
    bad["metadata"]["managedFields"] = json!([]);
    assert_eq!(
        apply_as(None, &bad, "kubectl", false).unwrap_err().code,
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn managers_default_to_the_user_agent_prefix() {
    assert_eq!(manager_name(Some("helm"), Some("kubectl/v1.37")), "helm");
    assert_eq!(
        manager_name(None, Some("kubectl/v1.37.0 (linux/amd64)")),
        "kubectl"
    );
    assert_eq!(manager_name(None, Some(&"x".repeat(300))).len(), 128);
    assert!(validate_options("PatchOptions", None, true, false).is_err());
    assert!(validate_options("PatchOptions", Some("a\u{7}"), false, false).is_err());
    assert!(validate_options("PatchOptions", Some("kubectl"), false, true).is_err());
}

#[test]
fn list_map_keys_take_upstream_defaults_when_omitted() {
    let services = r8s_api::find("", "v1", "services").expect("catalogue has services");
    let config = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web" },
        "spec": { "ports": [{ "port": 80 }] },
    });
    let mut live = apply(services, None, None, &config, "kubectl", false).unwrap();
    live["spec"]["ports"][0]["protocol"] = json!("TCP");
    let again = apply(services, None, Some(&live), &config, "kubectl", false).unwrap();
    assert_eq!(again["spec"]["ports"].as_array().unwrap().len(), 1);
    assert_eq!(
        entry(&again, "kubectl")["fieldsV1"]["f:spec"]["f:ports"],
        json!({ "k:{\"port\":80,\"protocol\":\"TCP\"}": { ".": {}, "f:port": {} } })
    );
}

#[test]
fn appliers_through_another_version_conflict_on_and_take_the_fields_it_names_differently() {
    let core = r8s_api::find("", "v1", "events").expect("catalogue has events");
    let events_k8s_io =
        r8s_api::find("events.k8s.io", "v1", "events").expect("catalogue has events.k8s.io");
    let created = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": { "name": "e", "namespace": "default" },
        "involvedObject": { "kind": "Pod", "name": "web" },
        "reason": "Pulled",
        "message": "pulled",
    });
    let mut live = created.clone();
    record_update(core, None, None, &mut live, "kubectl-create");
    let fields = &entry(&live, "kubectl-create")["fieldsV1"];
    assert!(fields.get("f:message").is_some(), "{fields}");
    // The same event as events.k8s.io serves it, with its note applied anew.
    let served = r8s_api::kinds::behaviour(events_k8s_io).to_served(live.clone());
    let config = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": { "name": "e", "namespace": "default" },
        "note": "pulled again",
    });
    let apply_note = |force| {
        apply(
            events_k8s_io,
            None,
            Some(&served),
            &config,
            "recorder",
            force,
        )
    };
    let err = apply_note(false).unwrap_err();
    assert_eq!(err.code, 409);
    assert!(
        err.message
            .contains(r#"conflict with "kubectl-create" using v1: .message"#),
        "{}",
        err.message
    );
    let applied = apply_note(true).unwrap();
    assert_eq!(applied["note"], "pulled again");
    let left = &entry(&applied, "kubectl-create")["fieldsV1"];
    assert!(left.get("f:message").is_none(), "{left}");
    assert!(left.get("f:reason").is_some(), "{left}");
    let recorder = entry(&applied, "recorder");
    assert_eq!(recorder["apiVersion"], "events.k8s.io/v1");
    assert!(recorder["fieldsV1"].get("f:note").is_some());
}
