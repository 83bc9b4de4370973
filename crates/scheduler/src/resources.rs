//! Resource quantities as the scheduler counts them: CPU in millicores, everything else in
//! units, and a pod's effective requests computed as upstream's `PodRequests` does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Upstream's defaults for containers without requests, used only for scoring so that
/// best-effort pods still spread.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended resources (`example.com/gpu`, hugepages-*), by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        for (name, value) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() += value;
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        for (name, value) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() -= value;
        }
    }

    /// Each resource the larger of the two (an init container runs alone).
    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, value) in &other.scalar {
            let entry = self.scalar.entry(name.clone()).or_default();
            *entry = (*entry).max(*value);
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }

    /// Reads a `ResourceList` (requests, allocatable, overhead).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let mut resources = Resources::default();
        for (name, quantity) in list {
            match name.as_str() {
                "cpu" => resources.milli_cpu = milli_value(quantity),
                "memory" => resources.memory = value(quantity),
                "ephemeral-storage" => resources.ephemeral_storage = value(quantity),
                // Pods are counted by NodeResourcesFit separately; other native names carry no
                // scheduling meaning.
                "pods" | "storage" => {}
                _ => {
                    resources.scalar.insert(name.clone(), value(quantity));
                }
            }
        }
        resources
    }
}

/// A pod's requests: what the scheduler reserves (`requests`) and what it scores with
/// (`non_zero`: CPU and memory with upstream's defaults for containers that ask for nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    pub requests: Resources,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
}

impl PodRequests {
    /// Upstream's `PodRequests`: regular containers and restartable init containers (sidecars)
    /// run together; each other init container runs with the sidecars started before it; the
    /// pod needs the larger of the two, plus its overhead. Pod-level `resources` win when set.
    pub fn of(spec: &PodSpec) -> Self {
        let requests_of = |c: &Container| -> Resources {
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .map(Resources::from_list)
                .unwrap_or_default()
        };
        let non_zero_of = |c: &Container| -> (i64, i64) {
            let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
            let cpu = r.and_then(|r| r.get("cpu")).map(milli_value);
            let memory = r.and_then(|r| r.get("memory")).map(value);
            (
                cpu.unwrap_or(DEFAULT_MILLI_CPU_REQUEST),
                memory.unwrap_or(DEFAULT_MEMORY_REQUEST),
            )
        };

        let mut requests = Resources::default();
        let mut non_zero = (0, 0);
        for container in &spec.containers {
            requests.add(&requests_of(container));
            let (cpu, memory) = non_zero_of(container);
            non_zero.0 += cpu;
            non_zero.1 += memory;
        }

        let mut sidecars = Resources::default();
        let mut sidecars_non_zero = (0, 0);
        let mut init_max = Resources::default();
        let mut init_max_non_zero = (0, 0);
        for container in spec.init_containers.iter().flatten() {
            let own = requests_of(container);
            let own_non_zero = non_zero_of(container);
            if container.restart_policy.as_deref() == Some("Always") {
                // A sidecar keeps running next to everything started after it.
                sidecars.add(&own);
                sidecars_non_zero.0 += own_non_zero.0;
                sidecars_non_zero.1 += own_non_zero.1;
                requests.add(&own);
                non_zero.0 += own_non_zero.0;
                non_zero.1 += own_non_zero.1;
                init_max.max_with(&sidecars);
                init_max_non_zero.0 = init_max_non_zero.0.max(sidecars_non_zero.0);
                init_max_non_zero.1 = init_max_non_zero.1.max(sidecars_non_zero.1);
            } else {
                let mut during = own;
                during.add(&sidecars);
                init_max.max_with(&during);
                init_max_non_zero.0 = init_max_non_zero
                    .0
                    .max(own_non_zero.0 + sidecars_non_zero.0);
                init_max_non_zero.1 = init_max_non_zero
                    .1
                    .max(own_non_zero.1 + sidecars_non_zero.1);
            }
        }
        requests.max_with(&init_max);
        non_zero.0 = non_zero.0.max(init_max_non_zero.0);
        non_zero.1 = non_zero.1.max(init_max_non_zero.1);

        // Pod-level resources replace the container sum for the resources they name.
        if let Some(pod_level) = spec.resources.as_ref().and_then(|r| r.requests.as_ref()) {
            let pod_level = Resources::from_list(pod_level);
            if pod_level.milli_cpu > 0 {
                requests.milli_cpu = pod_level.milli_cpu;
                non_zero.0 = pod_level.milli_cpu;
            }
            if pod_level.memory > 0 {
                requests.memory = pod_level.memory;
                non_zero.1 = pod_level.memory;
            }
        }

        if let Some(overhead) = &spec.overhead {
            let overhead = Resources::from_list(overhead);
            requests.add(&overhead);
            non_zero.0 += overhead.milli_cpu;
            non_zero.1 += overhead.memory;
        }
        PodRequests {
            requests,
            non_zero_milli_cpu: non_zero.0,
            non_zero_memory: non_zero.1,
        }
    }
}

/// A quantity in thousandths, rounded up (`100m` → 100, `1` → 1000, `0.5` → 500).
pub fn milli_value(quantity: &Quantity) -> i64 {
    parse_quantity(&quantity.0)
        .map(|v| (v * 1000.0).ceil() as i64)
        .unwrap_or(0)
}

/// A quantity in units, rounded up (`1Ki` → 1024, `1k` → 1000, `100m` → 1).
pub fn value(quantity: &Quantity) -> i64 {
    parse_quantity(&quantity.0)
        .map(|v| v.ceil() as i64)
        .unwrap_or(0)
}

/// Parses Kubernetes' quantity syntax: a decimal number with an optional binary (`Ki`…`Ei`),
/// decimal (`m`, `k`…`E`) or exponent (`e3`) suffix.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => {
            10f64.powi(exponent[1..].parse::<i32>().ok()?)
        }
        _ => return None,
    };
    Some(number * multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn container(cpu: &str, memory: &str, restart: Option<&str>) -> Container {
        let mut requests = BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert("cpu".to_owned(), Quantity(cpu.to_owned()));
        }
        if !memory.is_empty() {
            requests.insert("memory".to_owned(), Quantity(memory.to_owned()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            restart_policy: restart.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn quantities_parse_in_every_suffix() {
        assert_eq!(milli_value(&Quantity("100m".into())), 100);
        assert_eq!(milli_value(&Quantity("2".into())), 2000);
        assert_eq!(milli_value(&Quantity("0.5".into())), 500);
        assert_eq!(value(&Quantity("1Gi".into())), 1 << 30);
        assert_eq!(value(&Quantity("128974848".into())), 128974848);
        assert_eq!(value(&Quantity("129e6".into())), 129_000_000);
        assert_eq!(value(&Quantity("1k".into())), 1000);
    }

    #[test]
    fn init_containers_count_as_the_largest_one_alone() {
        let spec = PodSpec {
            containers: vec![container("100m", "", None), container("200m", "", None)],
            init_containers: Some(vec![
                container("500m", "", None),
                container("100m", "", None),
            ]),
            ..Default::default()
        };
        assert_eq!(PodRequests::of(&spec).requests.milli_cpu, 500);
    }

    #[test]
    fn sidecars_add_to_containers_and_to_later_init_containers() {
        let spec = PodSpec {
            containers: vec![container("100m", "", None)],
            init_containers: Some(vec![
                container("50m", "", Some("Always")),
                container("300m", "", None),
            ]),
            ..Default::default()
        };
        // max(100 + 50, 300 + 50)
        assert_eq!(PodRequests::of(&spec).requests.milli_cpu, 350);
    }

    #[test]
    fn overhead_is_added_and_missing_requests_score_as_defaults() {
        let spec = PodSpec {
            containers: vec![container("", "", None)],
            overhead: Some(BTreeMap::from([("cpu".to_owned(), Quantity("10m".into()))])),
            ..Default::default()
        };
        let requests = PodRequests::of(&spec);
        assert_eq!(requests.requests.milli_cpu, 10);
        assert_eq!(requests.non_zero_milli_cpu, DEFAULT_MILLI_CPU_REQUEST + 10);
        assert_eq!(requests.non_zero_memory, DEFAULT_MEMORY_REQUEST);
    }
}
