//! Ingresses: the `kubectl get ingresses` table (class, hosts, load-balancer addresses and
//! the ports they answer on).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::printing::{self, AGE, NAME, column, items, text};
use super::{Column, Kind};

pub struct Ingresses;

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    column(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    column(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    column("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

const SHOWN_HOSTS: usize = 3;

impl Kind for Ingresses {
    fn prepare_for_create(&self, object: &mut Value) {
        object["status"] = json!({ "loadBalancer": {} });
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

/// The rules' first three hosts, `*` when none names one.
fn hosts(rules: &[Value]) -> String {
    let mut shown: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        // Any rule after the third host counts as more, whether it names a host or not.
        if shown.len() == SHOWN_HOSTS {
            more = true;
            break;
        }
        match text(&rule["host"]) {
            "" => {}
            host => shown.push(host),
        }
    }
    if shown.is_empty() {
        return "*".into();
    }
    let joined = shown.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - SHOWN_HOSTS)
    } else {
        joined
    }
}

fn row(ingress: &Value, now: OffsetDateTime) -> Vec<Value> {
    let spec = &ingress["spec"];
    let class = spec["ingressClassName"].as_str().unwrap_or("<none>");
    let ports = if items(&spec["tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        printing::name(ingress),
        class.into(),
        hosts(items(&spec["rules"])).into(),
        printing::load_balancer_addresses(&ingress["status"]["loadBalancer"]["ingress"]).into(),
        ports.into(),
        printing::age(ingress, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn ingresses_start_without_load_balancer_addresses() {
        let mut ingress =
            json!({"spec": {}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}});
        Ingresses.prepare_for_create(&mut ingress);
        assert_eq!(ingress["status"], json!({"loadBalancer": {}}));
    }

    #[test]
    fn an_ingress_shows_class_hosts_address_and_tls_ports() {
        let ingress = json!({
            "metadata": { "name": "web", "creationTimestamp": "2026-03-01T11:00:00Z" },
            "spec": {
                "ingressClassName": "r8s",
                "tls": [{ "hosts": ["a.example.com"] }],
                "rules": [{ "host": "a.example.com" }, { "host": "b.example.com" }],
            },
            "status": { "loadBalancer": { "ingress": [{ "ip": "192.168.1.11" }, { "ip": "192.168.1.10" }] } },
        });
        assert_eq!(
            json!(row(&ingress, at("2026-03-01T12:00:00Z"))),
            json!([
                "web",
                "r8s",
                "a.example.com,b.example.com",
                "192.168.1.10,192.168.1.11",
                "80, 443",
                "60m"
            ])
        );
    }

    #[test]
    fn an_ingress_without_hosts_matches_any_and_has_no_class() {
        let ingress = json!({ "spec": { "rules": [{ "http": {} }] } });
        let cells = row(&ingress, at("2026-03-01T12:00:00Z"));
        assert_eq!(json!(cells[1..5]), json!(["<none>", "*", "", "80"]));
    }

    #[test]
    fn hosts_past_the_third_are_counted_by_rule() {
        let rules: Vec<Value> = ["a", "", "c", "d", "e"]
            .iter()
            .map(|h| json!({ "host": h }))
            .collect();
        assert_eq!(hosts(&rules), "a,c,d + 2 more...");
        let three: Vec<Value> = ["a", "", "b", "c"]
            .iter()
            .map(|h| json!({ "host": h }))
            .collect();
        assert_eq!(hosts(&three), "a,b,c");
    }
}
