//! A snapshot as upstream's kubelet serves it: the Summary API (`stats/v1alpha1`) and the
//! Prometheus text of `/metrics/resource` that metrics-server scrapes.

use std::fmt::Write;
use std::time::SystemTime;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::{Measured, Snapshot};

fn time(at: SystemTime) -> Value {
    Timestamp::try_from(at).map_or(Value::Null, |t| json!(Time(t)))
}

fn cpu(m: &Measured) -> Value {
    let mut cpu = json!({ "time": time(m.at), "usageCoreNanoSeconds": m.usage.cpu_ns });
    if let Some(rate) = m.nano_cores {
        cpu["usageNanoCores"] = json!(rate);
    }
    cpu
}

fn memory(m: &Measured, limit: Option<u64>) -> Value {
    let u = &m.usage;
    let mut memory = json!({
        "time": time(m.at),
        "usageBytes": u.memory_bytes,
        "workingSetBytes": u.working_set_bytes,
        "rssBytes": u.rss_bytes,
        "pageFaults": u.page_faults,
        "majorPageFaults": u.major_page_faults,
    });
    if let Some(limit) = limit.or(u.memory_limit_bytes) {
        memory["availableBytes"] = json!(limit.saturating_sub(u.working_set_bytes));
    }
    memory
}

/// The Summary (`GET /stats/summary`).
pub fn summary(s: &Snapshot) -> Value {
    let mut node = json!({
        "nodeName": s.node_name,
        "startTime": time(s.boot_time),
        "cpu": cpu(&s.node),
        "memory": memory(&s.node, Some(s.memory_capacity)),
    });
    if let Some(fs) = s.fs {
        let fs = json!({
            "time": time(s.node.at),
            "availableBytes": fs.available_bytes,
            "capacityBytes": fs.capacity_bytes,
            "usedBytes": fs.used_bytes,
            "inodesFree": fs.inodes_free,
            "inodes": fs.inodes,
            "inodesUsed": fs.inodes - fs.inodes_free,
        });
        // Images live in the agent's data directory too.
        node["runtime"] = json!({ "imageFs": fs.clone() });
        node["fs"] = fs;
    }
    let pods: Vec<Value> = s
        .pods
        .iter()
        .map(|pod| {
            let containers: Vec<Value> = pod
                .containers
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "startTime": time(c.start),
                        "cpu": cpu(&c.measured),
                        "memory": memory(&c.measured, None),
                    })
                })
                .collect();
            json!({
                "podRef": { "name": pod.name, "namespace": pod.namespace, "uid": pod.uid },
                "startTime": time(pod.start),
                "containers": containers,
                "cpu": cpu(&pod.measured),
                "memory": memory(&pod.measured, None),
            })
        })
        .collect();
    json!({ "node": node, "pods": pods })
}

fn millis(at: SystemTime) -> u128 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// `GET /metrics/resource`: the stable resource metrics, with sample timestamps.
pub fn prometheus_resource(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, kind: &str, samples: Vec<(String, String, u128)>| {
        let _ = writeln!(out, "# HELP {name} [STABLE] {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value, at) in samples {
            let _ = writeln!(out, "{name}{labels} {value} {at}");
        }
    };
    let container_labels = |pod: &super::PodStats, container: &str| {
        format!(
            "{{container=\"{container}\",namespace=\"{}\",pod=\"{}\"}}",
            pod.namespace, pod.name
        )
    };
    let pod_labels =
        |pod: &super::PodStats| format!("{{namespace=\"{}\",pod=\"{}\"}}", pod.namespace, pod.name);
    let each_container = |value: &dyn Fn(&super::ContainerStats) -> String| {
        s.pods
            .iter()
            .flat_map(|pod| {
                pod.containers.iter().map(move |c| {
                    (
                        container_labels(pod, &c.name),
                        value(c),
                        millis(c.measured.at),
                    )
                })
            })
            .collect::<Vec<_>>()
    };
    family(
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the container in core-seconds",
        "counter",
        each_container(&|c| seconds(c.measured.usage.cpu_ns).to_string()),
    );
    family(
        "container_memory_working_set_bytes",
        "Current working set of the container in bytes",
        "gauge",
        each_container(&|c| c.measured.usage.working_set_bytes.to_string()),
    );
    family(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds",
        "gauge",
        each_container(&|c| (millis(c.start) as f64 / 1e3).to_string()),
    );
    let node_at = millis(s.node.at);
    family(
        "node_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the node in core-seconds",
        "counter",
        vec![(
            String::new(),
            seconds(s.node.usage.cpu_ns).to_string(),
            node_at,
        )],
    );
    family(
        "node_memory_working_set_bytes",
        "Current working set of the node in bytes",
        "gauge",
        vec![(
            String::new(),
            s.node.usage.working_set_bytes.to_string(),
            node_at,
        )],
    );
    let each_pod = |value: &dyn Fn(&Measured) -> String| {
        s.pods
            .iter()
            .map(|pod| {
                (
                    pod_labels(pod),
                    value(&pod.measured),
                    millis(pod.measured.at),
                )
            })
            .collect::<Vec<_>>()
    };
    family(
        "pod_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the pod in core-seconds",
        "counter",
        each_pod(&|m| seconds(m.usage.cpu_ns).to_string()),
    );
    family(
        "pod_memory_working_set_bytes",
        "Current working set of the pod in bytes",
        "gauge",
        each_pod(&|m| m.usage.working_set_bytes.to_string()),
    );
    let _ = writeln!(
        out,
        "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE resource_scrape_error gauge\nresource_scrape_error 0"
    );
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{ContainerStats, PodStats, cgroup::Usage};
    use super::*;

    fn snapshot() -> Snapshot {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let measured = |cpu_ns, working_set_bytes, nano_cores| Measured {
            at,
            usage: Usage {
                cpu_ns,
                memory_bytes: working_set_bytes + 100,
                working_set_bytes,
                memory_limit_bytes: None,
                ..Usage::default()
            },
            nano_cores,
        };
        Snapshot {
            node_name: "n1".into(),
            node: measured(9_000_000_000, 1 << 30, Some(250_000_000)),
            memory_capacity: 4 << 30,
            boot_time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000),
            fs: None,
            pods: vec![PodStats {
                namespace: "default".into(),
                name: "web".into(),
                uid: "u1".into(),
                start: at,
                measured: measured(2_000_000_000, 4096, Some(1_000_000)),
                containers: vec![ContainerStats {
                    name: "app".into(),
                    start: at,
                    measured: measured(1_500_000_000, 2048, None),
                }],
            }],
            window: Duration::from_secs(10),
        }
    }

    #[test]
    fn summary_has_rates_only_where_two_samples_gave_one() {
        let summary = summary(&snapshot());
        let node = &summary["node"];
        assert_eq!(node["nodeName"], "n1");
        assert_eq!(node["cpu"]["usageNanoCores"], 250_000_000);
        assert_eq!(node["memory"]["availableBytes"], (4u64 << 30) - (1 << 30));
        assert_eq!(node["startTime"], "2020-09-13T12:26:40Z");
        let pod = &summary["pods"][0];
        assert_eq!(pod["podRef"]["uid"], "u1");
        assert_eq!(pod["cpu"]["usageNanoCores"], 1_000_000);
        assert_eq!(pod["containers"][0]["memory"]["workingSetBytes"], 2048);
        assert!(pod["containers"][0]["cpu"].get("usageNanoCores").is_none());
        assert!(pod["memory"].get("availableBytes").is_none());
    }

    #[test]
    fn resource_metrics_are_prometheus_text() {
        let text = prometheus_resource(&snapshot());
        assert!(text.contains(
            "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web\"} 1.5 1700000000000\n"
        ));
        assert!(text.contains("node_memory_working_set_bytes 1073741824 1700000000000\n"));
        assert!(text.contains("pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"} 2 "));
        assert!(text.contains("# TYPE container_memory_working_set_bytes gauge\n"));
        assert!(text.ends_with("resource_scrape_error 0\n"));
    }
}
