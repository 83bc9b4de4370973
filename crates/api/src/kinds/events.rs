//! Events: core `v1` events, the stored form, and `events.k8s.io/v1` events, the same objects
//! under newer field names (upstream's `pkg/apis/events/v1` conversion): the `kubectl get
//! events` table, the field selectors of both APIs, and the conversion between them.

use serde_json::Value;
use time::OffsetDateTime;

use super::conversion::{Conversion, Converted};
use super::defaulting::drop_generation;
use super::printing::{self, NAME, column, int, text, wide};
use super::{Column, Kind, at_path};

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
            "source",
            "type",
        ]
    }

    // `source` selects by the reporting component under either of its names.
    fn selectable_value(&self, event: &Value, field: &str) -> Value {
        match field {
            "source" => match text(&event["source"]["component"]) {
                "" => text(&event["reportingComponent"]).into(),
                component => component.into(),
            },
            _ => at_path(event, field).clone(),
        }
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

/// The first of two string fields that is set.
fn first_set<'a>(a: &'a Value, b: &'a Value) -> &'a str {
    match text(a) {
        "" => text(b),
        value => value,
    }
}

/// `component, host` of the reporter; the host is left out when unknown.
fn source(event: &Value) -> String {
    let source = &event["source"];
    let component = first_set(&source["component"], &event["reportingComponent"]);
    let host = first_set(&source["host"], &event["reportingInstance"]);
    if host.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {host}")
    }
}

fn row(event: &Value, now: OffsetDateTime) -> Vec<Value> {
    let first_seen = match &event["firstTimestamp"] {
        Value::Null => printing::since(&event["eventTime"], now),
        first => printing::since(first, now),
    };
    let mut last_seen = match &event["lastTimestamp"] {
        Value::Null => first_seen.clone(),
        last => printing::since(last, now),
    };
    let mut count = int(&event["count"]);
    let series = &event["series"];
    if series.is_object() {
        last_seen = printing::since(&series["lastObservedTime"], now);
        count = int(&series["count"]);
    } else if count == 0 {
        // Singleton events of the new API have no count.
        count = 1;
    }
    let object = &event["involvedObject"];
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
        text(&event["message"]).trim().into(),
        first_seen.into(),
        count.into(),
        printing::name(event),
    ]
}

/// events.k8s.io/v1 events: core events under newer names.
pub static EVENTS_K8S_IO: Converted = Converted {
    stored: &Events,
    conversion: &EventsK8sIo,
};

struct EventsK8sIo;

/// events.k8s.io names and the core names of the same fields; the rest are named alike.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// The field selector labels upstream accepts on events.k8s.io and the core labels they
/// select by.
const FIELD_LABELS: &[(&str, &str)] = &[
    ("reason", "reason"),
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    (
        "regarding.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
    ("source", "source"),
    ("type", "type"),
];

/// Moves each field from its first name to its second, and stamps the apiVersion.
fn renamed(
    mut event: Value,
    api_version: &str,
    names: impl Iterator<Item = (&'static str, &'static str)>,
) -> Value {
    let Some(fields) = event.as_object_mut() else {
        return event;
    };
    for (from, to) in names {
        if let Some(value) = fields.remove(from) {
            fields.insert(to.to_owned(), value);
        }
    }
    fields.insert("apiVersion".to_owned(), api_version.into());
    event
}

impl Conversion for EventsK8sIo {
    fn to_storage(&self, event: Value) -> Value {
        renamed(event, "v1", RENAMED.iter().copied())
    }

    fn to_served(&self, event: Value) -> Value {
        let names = RENAMED.iter().map(|&(new, core)| (core, new));
        renamed(event, "events.k8s.io/v1", names)
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        const LABELS: [&str; FIELD_LABELS.len()] = {
            let mut labels = [""; FIELD_LABELS.len()];
            let mut i = 0;
            while i < labels.len() {
                labels[i] = FIELD_LABELS[i].0;
                i += 1;
            }
            labels
        };
        &LABELS
    }

    fn stored_field_label<'a>(&self, label: &'a str) -> &'a str {
        FIELD_LABELS
            .iter()
            .find(|(served, _)| *served == label)
            .map_or(label, |(_, stored)| stored)
    }
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
    fn an_events_k8s_io_event_prints_as_the_core_event_it_is() {
        let event = json!({
            "apiVersion": "events.k8s.io/v1",
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
            json!(row(&EventsK8sIo.to_storage(event), at(NOW))),
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

    fn core_event() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": { "name": "web.1", "namespace": "default" },
            "involvedObject": { "kind": "Pod", "name": "web", "namespace": "default", "uid": "u-1" },
            "reason": "Pulled",
            "message": "pulled",
            "source": { "component": "kubelet", "host": "node-1" },
            "firstTimestamp": "2026-03-01T11:50:00Z",
            "lastTimestamp": "2026-03-01T11:58:00Z",
            "count": 3,
            "type": "Normal",
            "eventTime": null,
            "series": { "count": 2, "lastObservedTime": "2026-03-01T11:58:00.000000Z" },
            "action": "Pulling",
            "related": { "kind": "Node", "name": "node-1" },
            "reportingComponent": "kubelet",
            "reportingInstance": "node-1",
        })
    }

    #[test]
    fn a_core_event_reads_in_events_k8s_io_names_and_converts_back_unchanged() {
        let served = EventsK8sIo.to_served(core_event());
        assert_eq!(served["apiVersion"], "events.k8s.io/v1");
        assert_eq!(served["regarding"]["name"], "web");
        assert_eq!(served["note"], "pulled");
        assert_eq!(served["reportingController"], "kubelet");
        assert_eq!(served["deprecatedSource"]["host"], "node-1");
        assert_eq!(served["deprecatedFirstTimestamp"], "2026-03-01T11:50:00Z");
        assert_eq!(served["deprecatedLastTimestamp"], "2026-03-01T11:58:00Z");
        assert_eq!(served["deprecatedCount"], 3);
        assert_eq!(served["series"]["count"], 2);
        assert_eq!(served["related"]["kind"], "Node");
        for core in [
            "involvedObject",
            "message",
            "source",
            "count",
            "reportingComponent",
        ] {
            assert!(served.get(core).is_none(), "{core} left in {served}");
        }
        assert_eq!(EventsK8sIo.to_storage(served), core_event());
    }

    #[test]
    fn an_events_k8s_io_event_round_trips_through_storage() {
        let event = json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": { "name": "e" },
            "eventTime": "2026-03-01T11:59:30.000000Z",
            "regarding": { "kind": "Pod", "name": "web-2" },
            "note": "scheduled",
            "reportingController": "default-scheduler",
            "reportingInstance": "default-scheduler-x",
            "action": "Binding",
            "reason": "Scheduled",
            "type": "Normal",
        });
        let stored = EventsK8sIo.to_storage(event.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "web-2");
        assert_eq!(stored["message"], "scheduled");
        assert_eq!(stored["reportingComponent"], "default-scheduler");
        assert_eq!(EventsK8sIo.to_served(stored), event);
    }

    #[test]
    fn events_k8s_io_field_labels_select_by_their_core_fields() {
        let kind = &EVENTS_K8S_IO;
        assert!(kind.selectable_fields().contains(&"regarding.name"));
        assert!(!kind.selectable_fields().contains(&"involvedObject.name"));
        assert_eq!(
            kind.stored_field_label("regarding.name"),
            "involvedObject.name"
        );
        assert_eq!(
            kind.stored_field_label("reportingController"),
            "reportingComponent"
        );
        assert_eq!(kind.stored_field_label("type"), "type");
        for label in kind.selectable_fields() {
            let stored = kind.stored_field_label(label);
            assert!(Events.selectable_fields().contains(&stored), "{stored}");
        }
    }

    #[test]
    fn source_selects_the_reporting_component_when_the_source_names_none() {
        let event = core_event();
        assert_eq!(Events.selectable_value(&event, "source"), "kubelet");
        let new_api = json!({ "source": {}, "reportingComponent": "default-scheduler" });
        assert_eq!(
            Events.selectable_value(&new_api, "source"),
            "default-scheduler"
        );
        assert_eq!(Events.selectable_value(&event, "involvedObject.uid"), "u-1");
    }
}
