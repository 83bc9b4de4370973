//! Endpoints: the `kubectl get endpoints` table (the first three ready addresses with their
//! ports, and how many more there are).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::defaulting::{drop_generation, items_mut, set_default};
use super::printing::{self, AGE, NAME, column, int, items, text};
use super::{Column, Kind};

pub struct Endpoints;

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.",
    ),
    AGE,
];

const SHOWN: usize = 3;

impl Kind for Endpoints {
    fn prepare_for_create(&self, object: &mut Value) {
        drop_generation(object);
        default_ports(object);
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_ports(new);
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

/// `ip:port` for every ready address and port (bare IPs for subsets without ports).
fn format_endpoints(endpoints: &Value) -> String {
    let subsets = items(&endpoints["subsets"]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut shown = Vec::new();
    let mut total = 0;
    for subset in subsets {
        let addresses = items(&subset["addresses"]);
        let ports = items(&subset["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            total += addresses.len();
            for address in addresses.iter().take(SHOWN.saturating_sub(shown.len())) {
                shown.push(text(&address["ip"]).to_owned());
            }
            continue;
        }
        for port in ports {
            total += addresses.len();
            for address in addresses.iter().take(SHOWN.saturating_sub(shown.len())) {
                shown.push(host_port(text(&address["ip"]), int(&port["port"])));
            }
        }
    }
    with_more(&shown, total, SHOWN)
}

/// `host:port`, bracketing IPv6 hosts.
fn host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The shown entries, with `+ N more...` for those past `max`.
fn with_more(shown: &[String], total: usize, max: usize) -> String {
    let joined = shown.join(",");
    if total > max {
        format!("{joined} + {} more...", total - max)
    } else {
        joined
    }
}

fn row(endpoints: &Value, now: OffsetDateTime) -> Vec<Value> {
    vec![
        printing::name(endpoints),
        format_endpoints(endpoints).into(),
        printing::age(endpoints, now),
    ]
}

/// Endpoint ports speak TCP unless they say otherwise.
fn default_ports(endpoints: &mut Value) {
    for subset in items_mut(endpoints, "subsets") {
        for port in items_mut(subset, "ports") {
            set_default(port, "protocol", json!("TCP"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn endpoint_ports_default_to_tcp_and_have_no_generation() {
        let mut object = json!({"metadata": {"name": "x", "generation": 1},
            "subsets": [{"ports": [{"port": 80}]}]});
        Endpoints.prepare_for_create(&mut object);
        assert_eq!(object["subsets"][0]["ports"][0]["protocol"], "TCP");
        assert!(object["metadata"].get("generation").is_none());
    }

    #[test]
    fn endpoints_show_three_addresses_and_count_the_rest() {
        let endpoints = json!({
            "metadata": { "name": "web", "creationTimestamp": "2026-03-01T11:00:00Z" },
            "subsets": [{
                "addresses": [{ "ip": "10.42.0.5" }, { "ip": "10.42.1.7" }],
                "ports": [{ "name": "http", "port": 80 }, { "name": "https", "port": 443 }],
            }],
        });
        assert_eq!(
            json!(row(&endpoints, at("2026-03-01T12:00:00Z"))),
            json!([
                "web",
                "10.42.0.5:80,10.42.1.7:80,10.42.0.5:443 + 1 more...",
                "60m"
            ])
        );
    }

    #[test]
    fn headless_endpoints_without_ports_show_bare_addresses() {
        let endpoints = json!({ "subsets": [{ "addresses": [{ "ip": "fd00::1" }] }] });
        assert_eq!(format_endpoints(&endpoints), "fd00::1");
        let ported = json!({ "subsets": [{ "addresses": [{ "ip": "fd00::1" }], "ports": [{ "port": 53 }] }] });
        assert_eq!(format_endpoints(&ported), "[fd00::1]:53");
    }

    #[test]
    fn endpoints_without_subsets_show_none() {
        assert_eq!(format_endpoints(&json!({})), "<none>");
        let not_ready = json!({ "subsets": [{ "notReadyAddresses": [{ "ip": "10.0.0.1" }] }] });
        assert_eq!(format_endpoints(&not_ready), "");
    }
}
