//! Events: the `kubectl get events` table, for core events and events.k8s.io events alike
//! (upstream converts both to one shape before printing; here each field is read under
//! either name).

use serde_json::Value;
use time::OffsetDateTime;

use super::defaulting::drop_generation;
use super::printing::{self, NAME, column, int, text, wide};
use super::{Column, Kind};

pub struct Events;

const COLUMNS: &[Column] = &[
    column(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    column(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    column(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    column("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.",
    ),
    wide(
        "Source",
        "string",
        "The component reporting this event. Should be a short machine understandable string.",
    ),
    column(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
    ),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide(
        "Count",
        "string",
        "The number of times this event has occurred.",
    ),
    Column {
        priority: 1,
        ..NAME
    },
];

impl Kind for Events {
    // The fields upstream's field selectors accept for this kind.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "type",
        ]
    }

    fn prepare_for_create(&self, object: &mut Value) {
        drop_generation(object);
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

/// A field under its core name, else under its events.k8s.io name.
fn field<'a>(event: &'a Value, core: &str, events_v1: &str) -> &'a Value {
    match &event[core] {
        Value::Null => &event[events_v1],
        value => value,
    }
}

/// The first of two string fields that is set.
fn first_set<'a>(a: &'a Value, b: &'a Value) -> &'a str {
    match text(a) {
        "" => text(b),
        value => value,
    }
}

/// `component, host` of the reporter; the host is left out when unknown.
fn source(event: &Value) -> String {
    let source = field(event, "source", "deprecatedSource");
    // Core events call the reporting controller `reportingComponent`.
    let controller = field(event, "reportingComponent", "reportingController");
    let component = first_set(&source["component"], controller);
    let host = first_set(&source["host"], &event["reportingInstance"]);
    if host.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {host}")
    }
}

fn row(event: &Value, now: OffsetDateTime) -> Vec<Value> {
    let first_time = field(event, "firstTimestamp", "deprecatedFirstTimestamp");
    let first_seen = if first_time.is_null() {
        printing::since(&event["eventTime"], now)
    } else {
        printing::since(first_time, now)
    };
    let last_time = field(event, "lastTimestamp", "deprecatedLastTimestamp");
    let mut last_seen = if last_time.is_null() {
        first_seen.clone()
    } else {
        printing::since(last_time, now)
    };
    let mut count = int(field(event, "count", "deprecatedCount"));
    let series = &event["series"];
    if series.is_object() {
        last_seen = printing::since(&series["lastObservedTime"], now);
        count = int(&series["count"]);
    } else if count == 0 {
        // Singleton events of the new API have no count.
        count = 1;
    }
    let object = field(event, "involvedObject", "regarding");
    let kind = text(&object["kind"]).to_lowercase();
    let target = match text(&object["name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    vec![
        last_seen.into(),
        text(&event["type"]).into(),
        text(&event["reason"]).into(),
        target.into(),
        text(&object["fieldPath"]).into(),
        source(event).into(),
        text(field(event, "message", "note")).trim().into(),
        first_seen.into(),
        count.into(),
        printing::name(event),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn events_have_no_generation() {
        let mut object = json!({"metadata": {"name": "x", "generation": 1}});
        Events.prepare_for_create(&mut object);
        assert!(object["metadata"].get("generation").is_none());
    }

    const NOW: &str = "2026-03-01T12:00:00Z";

    #[test]
    fn a_core_event_shows_when_what_and_why() {
        let event = json!({
            "metadata": { "name": "web-1.17f" },
            "type": "Normal",
            "reason": "Pulled",
            "message": "Successfully pulled image \"nginx\"\n",
            "involvedObject": { "kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{nginx}" },
            "source": { "component": "kubelet", "host": "node-1" },
            "firstTimestamp": "2026-03-01T11:50:00Z",
            "lastTimestamp": "2026-03-01T11:58:00Z",
            "count": 3,
        });
        assert_eq!(
            json!(row(&event, at(NOW))),
            json!([
                "2m",
                "Normal",
                "Pulled",
                "pod/web-1",
                "spec.containers{nginx}",
                "kubelet, node-1",
                "Successfully pulled image \"nginx\"",
                "10m",
                3,
                "web-1.17f"
            ])
        );
    }

    #[test]
    fn an_events_k8s_io_event_reads_its_own_field_names() {
        let event = json!({
            "metadata": { "name": "e" },
            "type": "Warning",
            "reason": "FailedScheduling",
            "note": "0/1 nodes are available",
            "regarding": { "kind": "Pod", "name": "web-2" },
            "reportingController": "default-scheduler",
            "eventTime": "2026-03-01T11:59:30.000000Z",
            "series": { "count": 4, "lastObservedTime": "2026-03-01T11:59:50.500000Z" },
        });
        assert_eq!(
            json!(row(&event, at(NOW))),
            json!([
                "9s",
                "Warning",
                "FailedScheduling",
                "pod/web-2",
                "",
                "default-scheduler",
                "0/1 nodes are available",
                "30s",
                4,
                "e"
            ])
        );
    }

    #[test]
    fn a_singleton_event_counts_once_and_last_seen_is_first_seen() {
        let event = json!({
            "involvedObject": { "kind": "Node" },
            "eventTime": "2026-03-01T11:59:00.000000Z",
        });
        let cells = row(&event, at(NOW));
        assert_eq!(cells[0], "60s");
        assert_eq!(cells[3], "node");
        assert_eq!(cells[8], 1);
    }
}
