//! Services: upstream's defaults (type, session affinity, protocols, target ports, IP family,
//! traffic policies), validation of ports and types, and the addresses a Service holds: a
//! ClusterIP from the service range and, for NodePort and LoadBalancer Services, node ports.

use serde_json::{Value, json};

use super::defaulting::drop_generation;
use super::{Allocation, FieldError, Kind, Pool};

pub struct Services;

const TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];

fn service_type(object: &Value) -> &str {
    object["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

fn uses_node_ports(object: &Value) -> bool {
    matches!(service_type(object), "NodePort" | "LoadBalancer")
}

fn is_headless(object: &Value) -> bool {
    object["spec"]["clusterIP"] == "None"
}

fn set_default(object: &mut Value, field: &str, value: Value) {
    if object.get(field).is_none_or(Value::is_null) {
        object[field] = value;
    }
}

impl Kind for Services {
    fn returns_deleted_object(&self) -> bool {
        true
    }
    // The fields upstream's field selectors accept for this kind.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }

    fn prepare_for_create(&self, object: &mut Value) {
        drop_generation(object);
        let external_name = service_type(object) == "ExternalName";
        let node_ports = uses_node_ports(object);
        let spec = &mut object["spec"];
        set_default(spec, "type", json!("ClusterIP"));
        set_default(spec, "sessionAffinity", json!("None"));
        if !external_name {
            set_default(spec, "ipFamilies", json!(["IPv4"]));
            set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
            set_default(spec, "internalTrafficPolicy", json!("Cluster"));
        }
        if node_ports {
            set_default(spec, "externalTrafficPolicy", json!("Cluster"));
        }
        if spec["type"] == "LoadBalancer" {
            set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
        }
        if let Some(ports) = spec["ports"].as_array_mut() {
            for port in ports {
                set_default(port, "protocol", json!("TCP"));
                if !external_name {
                    let number = port["port"].clone();
                    set_default(port, "targetPort", number);
                }
            }
        }
        set_default(object, "status", json!({ "loadBalancer": {} }));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // An update that leaves out the ClusterIP keeps it (kubectl apply does), and ports
        // keep their node ports unless they ask for others.
        for field in ["clusterIP", "clusterIPs"] {
            if new["spec"].get(field).is_none_or(Value::is_null) && !old["spec"][field].is_null() {
                new["spec"][field] = old["spec"][field].clone();
            }
        }
        if uses_node_ports(new) {
            let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
            if let Some(ports) = new["spec"]["ports"].as_array_mut() {
                for port in ports {
                    if port["nodePort"].is_null() {
                        let same = old_ports.iter().find(|p| {
                            p["port"] == port["port"]
                                && p["protocol"].as_str().unwrap_or("TCP")
                                    == port["protocol"].as_str().unwrap_or("TCP")
                        });
                        if let Some(old_port) = same {
                            port["nodePort"] = old_port["nodePort"].clone();
                        }
                    }
                }
            }
        }
        self.prepare_for_create(new);
    }

    fn validate(&self, object: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let kind = service_type(object);
        if !TYPES.contains(&kind) {
            errors.push((
                "spec.type".into(),
                format!("Unsupported value: {kind:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
            ));
        }
        if kind == "ExternalName" {
            if object["spec"]["externalName"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                errors.push(("spec.externalName".into(), "Required value".into()));
            }
            return errors;
        }
        let ports = object["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if ports.is_empty() && !is_headless(object) {
            errors.push(("spec.ports".into(), "Required value".into()));
        }
        let mut names = std::collections::HashSet::new();
        for (i, port) in ports.iter().enumerate() {
            match port["port"].as_i64() {
                Some(1..=65535) => {}
                _ => errors.push((
                    format!("spec.ports[{i}].port"),
                    format!(
                        "Invalid value: {}: must be between 1 and 65535, inclusive",
                        port["port"]
                    ),
                )),
            }
            let protocol = port["protocol"].as_str().unwrap_or("TCP");
            if !["TCP", "UDP", "SCTP"].contains(&protocol) {
                errors.push((
                    format!("spec.ports[{i}].protocol"),
                    format!("Unsupported value: {protocol:?}: supported values: \"SCTP\", \"TCP\", \"UDP\""),
                ));
            }
            if ports.len() > 1 {
                match port["name"].as_str() {
                    None | Some("") => {
                        errors.push((format!("spec.ports[{i}].name"), "Required value".into()))
                    }
                    Some(name) if !names.insert(name.to_owned()) => errors.push((
                        format!("spec.ports[{i}].name"),
                        format!("Duplicate value: {name:?}"),
                    )),
                    _ => {}
                }
            }
            if !port["nodePort"].is_null() && !uses_node_ports(object) {
                errors.push((
                    format!("spec.ports[{i}].nodePort"),
                    format!("Forbidden: may not be used when `type` is '{kind}'"),
                ));
            }
        }
        errors
    }

    fn allocations(&self, object: &Value) -> Vec<Allocation> {
        let mut wanted = Vec::new();
        if service_type(object) == "ExternalName" {
            return wanted;
        }
        if !is_headless(object) {
            wanted.push(Allocation {
                pool: Pool::ServiceIp,
                requested: object["spec"]["clusterIP"]
                    .as_str()
                    .filter(|ip| !ip.is_empty())
                    .map(str::to_owned),
                field: vec!["spec".into(), "clusterIP".into()],
            });
        }
        if uses_node_ports(object) {
            for (i, port) in object["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                wanted.push(Allocation {
                    pool: Pool::NodePort,
                    requested: port["nodePort"]
                        .as_i64()
                        .filter(|p| *p != 0)
                        .map(|p| p.to_string()),
                    field: vec![
                        "spec".into(),
                        "ports".into(),
                        i.to_string(),
                        "nodePort".into(),
                    ],
                });
            }
        }
        wanted
    }

    fn after_allocation(&self, object: &mut Value) {
        let spec = &mut object["spec"];
        if let Some(ip) = spec["clusterIP"].as_str().map(str::to_owned) {
            spec["clusterIPs"] = json!([ip]);
        }
    }

    fn immutable_fields(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let (old_ip, new_ip) = (&old["spec"]["clusterIP"], &new["spec"]["clusterIP"]);
        let same_type = service_type(old) == service_type(new);
        if same_type && !old_ip.is_null() && old_ip != new_ip {
            return vec![(
                "spec.clusterIPs[0]".into(),
                format!("Invalid value: {new_ip}: may not change once set"),
            )];
        }
        Vec::new()
    }

    fn columns(&self) -> Option<&'static [super::Column]> {
        use super::printing::{AGE, NAME, column, wide};
        const COLUMNS: &[super::Column] = &[
            NAME,
            column(
                "Type",
                "string",
                "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types",
            ),
            column(
                "Cluster-IP",
                "string",
                "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
            ),
            column(
                "External-IP",
                "string",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.",
            ),
            column(
                "Port(s)",
                "string",
                "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
            ),
            AGE,
            wide(
                "Selector",
                "string",
                "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/",
            ),
        ];
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        use super::printing::{self, items, text};
        let spec = &object["spec"];
        // `clusterIP` wins over `clusterIPs`, as upstream's conversion decides.
        let cluster_ip = match text(&spec["clusterIP"]) {
            "" => spec["clusterIPs"][0].as_str().unwrap_or("<none>"),
            ip => ip,
        };
        let external_ips: Vec<&str> = items(&spec["externalIPs"]).iter().map(text).collect();
        let external_ip = match text(&spec["type"]) {
            "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".into(),
            "ClusterIP" | "NodePort" => external_ips.join(","),
            "LoadBalancer" => {
                let balancers =
                    printing::load_balancer_addresses(&object["status"]["loadBalancer"]["ingress"]);
                let all: Vec<&str> = Some(balancers.as_str())
                    .filter(|b| !b.is_empty())
                    .into_iter()
                    .chain(external_ips)
                    .collect();
                if all.is_empty() {
                    "<pending>".into()
                } else {
                    all.join(",")
                }
            }
            "ExternalName" => text(&spec["externalName"]).to_owned(),
            _ => "<unknown>".into(),
        };
        let ports: Vec<String> = items(&spec["ports"])
            .iter()
            .map(|p| {
                let (port, protocol) = (p["port"].as_i64().unwrap_or(0), text(&p["protocol"]));
                match p["nodePort"].as_i64().unwrap_or(0) {
                    0 => format!("{port}/{protocol}"),
                    node_port => format!("{port}:{node_port}/{protocol}"),
                }
            })
            .collect();
        let ports = if ports.is_empty() {
            "<none>".into()
        } else {
            ports.join(",")
        };
        vec![
            printing::name(object),
            spec["type"].as_str().unwrap_or_default().into(),
            cluster_ip.into(),
            external_ip.into(),
            ports.into(),
            printing::age(object, time::OffsetDateTime::now_utc()),
            printing::format_labels(&spec["selector"]).into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_services_get_upstream_defaults() {
        let mut svc =
            json!({ "metadata": { "name": "web" }, "spec": { "ports": [{ "port": 80 }] } });
        Services.prepare_for_create(&mut svc);
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(svc["spec"]["sessionAffinity"], "None");
        assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv4"]));
    }

    #[test]
    fn node_port_services_want_an_ip_and_a_port_each() {
        let svc = json!({ "spec": { "type": "NodePort", "ports": [{ "port": 80 }, { "port": 443, "nodePort": 30443 }] } });
        let wanted = Services.allocations(&svc);
        assert_eq!(wanted.len(), 3);
        assert_eq!(wanted[0].pool, Pool::ServiceIp);
        assert_eq!(wanted[2].requested.as_deref(), Some("30443"));
    }

    #[test]
    fn headless_and_external_name_services_hold_no_ip() {
        let headless = json!({ "spec": { "clusterIP": "None", "ports": [{ "port": 80 }] } });
        assert!(Services.allocations(&headless).is_empty());
        let external = json!({ "spec": { "type": "ExternalName", "externalName": "example.com" } });
        assert!(Services.allocations(&external).is_empty());
    }

    #[test]
    fn invalid_ports_and_types_are_reported_by_field() {
        let svc = json!({ "spec": { "type": "Bogus", "ports": [{ "port": 70000 }] } });
        let fields: Vec<String> = Services
            .validate(&svc)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(fields, ["spec.type", "spec.ports[0].port"]);
    }

    #[test]
    fn the_cluster_ip_cannot_change() {
        let old = json!({ "spec": { "clusterIP": "10.96.0.10" } });
        let new = json!({ "spec": { "clusterIP": "10.96.0.11" } });
        assert_eq!(Services.immutable_fields(&old, &new).len(), 1);
    }
}
