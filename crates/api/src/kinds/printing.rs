//! What upstream's table printers (`kubectl get`) share: human ages, label and selector
//! strings, container cells, and the columns most kinds print (Name, Age, Containers, …).
//! Cells are computed as upstream's server computes them, always with the `-o wide` cells:
//! kubectl hides priority-1 columns itself.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::Column;

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// A column `kubectl get` always shows.
pub const fn column(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        description,
        priority: 0,
    }
}

/// A column only `kubectl get -o wide` shows.
pub const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        priority: 1,
        ..column(name, kind, description)
    }
}

pub const NAME: Column = Column {
    format: "name",
    ..column("Name", "string", NAME_DESCRIPTION)
};
pub const AGE: Column = column("Age", "string", AGE_DESCRIPTION);
pub const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
pub const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

/// A duration as upstream's `HumanDuration` prints it: about two significant figures
/// (`90s`, `5m30s`, `3h12m`, `2d3h`, `400d`, `4y`).
pub fn human_duration(d: Duration) -> String {
    // Up to a second in the future is clock skew between machines, so it reads as now.
    let seconds = d.whole_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 2 * 60 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    if hours < 24 * 365 * 8 {
        return with_remainder(days / 365, "y", days % 365, "d");
    }
    format!("{}y", days / 365)
}

fn with_remainder(whole: i64, unit: &str, rest: i64, rest_unit: &str) -> String {
    if rest == 0 {
        format!("{whole}{unit}")
    } else {
        format!("{whole}{unit}{rest}{rest_unit}")
    }
}

/// A timestamp field's RFC 3339 value, if it holds one.
pub fn timestamp(value: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value.as_str()?, &Rfc3339).ok()
}

/// How long ago a timestamp field was; `<unknown>` when it is unset.
pub fn since(value: &Value, now: OffsetDateTime) -> String {
    match timestamp(value) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

/// The Age cell: how long ago the object was created.
pub fn age(object: &Value, now: OffsetDateTime) -> Value {
    since(&object["metadata"]["creationTimestamp"], now).into()
}

/// The Name cell.
pub fn name(object: &Value) -> Value {
    text(&object["metadata"]["name"]).into()
}

/// A string field, empty when unset (Go's zero value).
pub fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// An integer field, zero when unset (Go's zero value).
pub fn int(value: &Value) -> i64 {
    value.as_i64().unwrap_or_default()
}

/// An array field, empty when unset.
pub fn items(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A map of labels as `a=1,b=2`, sorted by key; `<none>` when empty.
pub fn format_labels(labels: &Value) -> String {
    let pairs = labels.as_object().map(|map| {
        let mut pairs: Vec<String> = map
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect();
        pairs.sort();
        pairs.join(",")
    });
    match pairs {
        Some(pairs) if !pairs.is_empty() => pairs,
        _ => "<none>".into(),
    }
}

/// A `LabelSelector` in the query syntax (`app=web,tier in (a,b),!legacy`), requirements
/// sorted by key; `None` when an expression has an unknown operator.
pub fn selector_string(selector: &Value) -> Option<String> {
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector["matchLabels"].as_object() {
        let mut labels: Vec<_> = labels.iter().collect();
        labels.sort_by_key(|(k, _)| *k);
        for (key, value) in labels {
            requirements.push((key.clone(), format!("{key}={}", text(value))));
        }
    }
    for expression in items(&selector["matchExpressions"]) {
        let key = text(&expression["key"]);
        let mut values: Vec<&str> = items(&expression["values"]).iter().map(text).collect();
        values.sort_unstable();
        let values = values.join(",");
        let requirement = match text(&expression["operator"]) {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key.to_owned(), requirement));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    let requirements: Vec<String> = requirements.into_iter().map(|(_, r)| r).collect();
    Some(requirements.join(","))
}

/// A `LabelSelector` cell: `<none>` when it selects nothing or everything, `<error>` when
/// it cannot be read.
pub fn format_label_selector(selector: &Value) -> String {
    match selector_string(selector) {
        Some(s) if s.is_empty() => "<none>".into(),
        Some(s) => s,
        None => "<error>".into(),
    }
}

/// The Containers and Images cells of a pod spec: names and images, comma-separated.
pub fn container_cells(pod_spec: &Value) -> [Value; 2] {
    let containers = items(&pod_spec["containers"]);
    let names: Vec<&str> = containers.iter().map(|c| text(&c["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(&c["image"])).collect();
    [names.join(",").into(), images.join(",").into()]
}

/// Access modes in upstream's short form, always in the order RWO,ROX,RWX,RWOP.
pub fn access_modes(modes: &Value) -> String {
    let modes = items(modes);
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.iter().any(|m| m == mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// Load-balancer ingress points (IP, else hostname), sorted and without duplicates, as
/// Services and Ingresses print them (never cut short: the server prints wide cells).
pub fn load_balancer_addresses(ingress_points: &Value) -> String {
    let mut addresses: Vec<&str> = items(ingress_points)
        .iter()
        .map(|point| match text(&point["ip"]) {
            "" => text(&point["hostname"]),
            ip => ip,
        })
        .filter(|a| !a.is_empty())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    addresses.join(",")
}

/// Parses a timestamp in tests.
#[cfg(test)]
pub fn at(rfc3339: &str) -> OffsetDateTime {
    OffsetDateTime::parse(rfc3339, &Rfc3339).expect("test timestamp")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn human(seconds: i64) -> String {
        human_duration(Duration::seconds(seconds))
    }

    #[test]
    fn ages_under_two_minutes_are_seconds() {
        assert_eq!(human(0), "0s");
        assert_eq!(human(5), "5s");
        assert_eq!(human(119), "119s");
    }

    #[test]
    fn ages_a_second_in_the_future_are_now_and_beyond_are_invalid() {
        assert_eq!(human(-1), "0s");
        assert_eq!(human(-2), "<invalid>");
    }

    #[test]
    fn ages_under_ten_minutes_keep_their_seconds() {
        assert_eq!(human(120), "2m");
        assert_eq!(human(5 * 60 + 30), "5m30s");
        assert_eq!(human(10 * 60 - 1), "9m59s");
    }

    #[test]
    fn ages_under_three_hours_are_minutes() {
        assert_eq!(human(10 * 60), "10m");
        assert_eq!(human(3 * 3600 - 1), "179m");
    }

    #[test]
    fn ages_under_eight_hours_keep_their_minutes() {
        assert_eq!(human(3 * 3600), "3h");
        assert_eq!(human(3 * 3600 + 12 * 60), "3h12m");
        assert_eq!(human(8 * 3600 - 1), "7h59m");
    }

    #[test]
    fn ages_under_two_days_are_hours() {
        assert_eq!(human(8 * 3600), "8h");
        assert_eq!(human(48 * 3600 - 1), "47h");
    }

    #[test]
    fn ages_under_eight_days_keep_their_hours() {
        assert_eq!(human(2 * 86400), "2d");
        assert_eq!(human(2 * 86400 + 3 * 3600), "2d3h");
        assert_eq!(human(8 * 86400 - 1), "7d23h");
    }

    #[test]
    fn ages_under_two_years_are_days() {
        assert_eq!(human(8 * 86400), "8d");
        assert_eq!(human(2 * 365 * 86400 - 1), "729d");
    }

    #[test]
    fn ages_under_eight_years_keep_their_days() {
        assert_eq!(human(2 * 365 * 86400), "2y");
        assert_eq!(human((3 * 365 + 10) * 86400), "3y10d");
    }

    #[test]
    fn ages_from_eight_years_are_years() {
        assert_eq!(human(8 * 365 * 86400), "8y");
        assert_eq!(human((9 * 365 + 100) * 86400), "9y");
    }

    #[test]
    fn the_age_of_an_object_without_a_creation_time_is_unknown() {
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(age(&json!({ "metadata": {} }), now), "<unknown>");
        let object = json!({ "metadata": { "creationTimestamp": "2025-12-31T23:55:00Z" } });
        assert_eq!(age(&object, now), "5m");
    }

    #[test]
    fn labels_print_sorted_or_none() {
        assert_eq!(format_labels(&json!({ "b": "2", "a": "1" })), "a=1,b=2");
        assert_eq!(format_labels(&json!({})), "<none>");
        assert_eq!(format_labels(&Value::Null), "<none>");
    }

    #[test]
    fn selectors_print_in_query_syntax_sorted_by_key() {
        let selector = json!({
            "matchLabels": { "app": "web" },
            "matchExpressions": [
                { "key": "tier", "operator": "In", "values": ["b", "a"] },
                { "key": "legacy", "operator": "DoesNotExist" },
                { "key": "env", "operator": "NotIn", "values": ["dev"] },
                { "key": "zone", "operator": "Exists" },
            ],
        });
        assert_eq!(
            format_label_selector(&selector),
            "app=web,env notin (dev),!legacy,tier in (a,b),zone"
        );
        assert_eq!(format_label_selector(&json!({})), "<none>");
        let bad = json!({ "matchExpressions": [{ "key": "a", "operator": "Near" }] });
        assert_eq!(format_label_selector(&bad), "<error>");
    }

    #[test]
    fn access_modes_print_short_in_a_fixed_order() {
        let modes = json!(["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"]);
        assert_eq!(access_modes(&modes), "RWO,RWX");
    }
}

/// The printers as the server reaches them, including the two kinds whose files keep their
/// own tests to other behaviour (Services, Namespaces).
#[cfg(test)]
mod served {
    use serde_json::{Value, json};

    use crate::kinds::{Kind, behaviour};

    fn printer(group: &str, version: &str, plural: &str) -> &'static dyn Kind {
        behaviour(crate::find(group, version, plural).expect("served resource"))
    }

    #[test]
    fn every_printed_resource_gives_one_cell_per_column_in_every_served_version() {
        let printed = [
            ("", "v1", "configmaps"),
            ("", "v1", "endpoints"),
            ("", "v1", "events"),
            ("events.k8s.io", "v1", "events"),
            ("", "v1", "namespaces"),
            ("", "v1", "nodes"),
            ("", "v1", "persistentvolumeclaims"),
            ("", "v1", "persistentvolumes"),
            ("", "v1", "pods"),
            ("", "v1", "secrets"),
            ("", "v1", "serviceaccounts"),
            ("", "v1", "services"),
            ("apps", "v1", "daemonsets"),
            ("apps", "v1", "deployments"),
            ("apps", "v1", "replicasets"),
            ("apps", "v1", "statefulsets"),
            ("autoscaling", "v2", "horizontalpodautoscalers"),
            ("autoscaling", "v1", "horizontalpodautoscalers"),
            ("batch", "v1", "cronjobs"),
            ("batch", "v1", "jobs"),
            ("coordination.k8s.io", "v1", "leases"),
            ("networking.k8s.io", "v1", "ingresses"),
        ];
        for (group, version, plural) in printed {
            let kind = printer(group, version, plural);
            let columns = kind.columns().expect(plural);
            assert_eq!(kind.cells(&json!({})).len(), columns.len(), "{plural}");
            let names = columns.iter().filter(|c| c.format == "name").count();
            assert_eq!(names, 1, "{plural} has one name column");
        }
    }

    fn service_cells(service: Value) -> Vec<Value> {
        printer("", "v1", "services").cells(&service)
    }

    #[test]
    fn node_port_services_print_each_port_with_its_node_port() {
        let cells = service_cells(json!({
            "metadata": { "name": "web" },
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.43.0.20",
                "clusterIPs": ["10.43.0.20"],
                "selector": { "app": "web" },
                "ports": [
                    { "name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080 },
                    { "name": "https", "port": 443, "protocol": "TCP", "nodePort": 30443 },
                ],
            },
        }));
        assert_eq!(
            json!([&cells[..5], &cells[6..]].concat()),
            json!([
                "web",
                "NodePort",
                "10.43.0.20",
                "<none>",
                "80:30080/TCP,443:30443/TCP",
                "app=web"
            ])
        );
    }

    #[test]
    fn cluster_ip_services_print_ports_and_external_ips() {
        let cells = service_cells(json!({
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "None",
                "externalIPs": ["203.0.113.7"],
                "ports": [{ "port": 53, "protocol": "UDP" }],
            },
        }));
        assert_eq!(
            json!(cells[1..5]),
            json!(["ClusterIP", "None", "203.0.113.7", "53/UDP"])
        );
        assert_eq!(cells[6], "<none>");
    }

    #[test]
    fn load_balancer_services_are_pending_until_they_have_an_ingress_point() {
        let pending = service_cells(json!({ "spec": { "type": "LoadBalancer" } }));
        assert_eq!(pending[3], "<pending>");
        assert_eq!(pending[4], "<none>");
        let balanced = service_cells(json!({
            "spec": { "type": "LoadBalancer", "externalIPs": ["203.0.113.7"] },
            "status": { "loadBalancer": { "ingress": [{ "hostname": "lb.example.com" }, { "ip": "198.51.100.2" }] } },
        }));
        assert_eq!(balanced[3], "198.51.100.2,lb.example.com,203.0.113.7");
    }

    #[test]
    fn external_name_services_print_their_external_name() {
        let cells = service_cells(json!({
            "spec": { "type": "ExternalName", "externalName": "db.example.com" },
        }));
        assert_eq!(
            json!(cells[1..4]),
            json!(["ExternalName", "<none>", "db.example.com"])
        );
    }

    #[test]
    fn namespaces_print_their_phase() {
        let cells = printer("", "v1", "namespaces").cells(&json!({
            "metadata": { "name": "team" },
            "status": { "phase": "Terminating" },
        }));
        assert_eq!(json!(cells[..2]), json!(["team", "Terminating"]));
    }
}
