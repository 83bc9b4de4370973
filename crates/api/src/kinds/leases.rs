//! Leases: the `kubectl get leases` table (who holds each lease).

use serde_json::Value;
use time::OffsetDateTime;

use super::defaulting::drop_generation;
use super::printing::{self, AGE, NAME, column, text};
use super::{Column, Kind};

pub struct Leases;

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.",
    ),
    AGE,
];

impl Kind for Leases {
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

fn row(lease: &Value, now: OffsetDateTime) -> Vec<Value> {
    vec![
        printing::name(lease),
        text(&lease["spec"]["holderIdentity"]).into(),
        printing::age(lease, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn leases_have_no_generation() {
        let mut object = json!({"metadata": {"name": "x", "generation": 1}});
        Leases.prepare_for_create(&mut object);
        assert!(object["metadata"].get("generation").is_none());
    }

    #[test]
    fn a_lease_shows_its_holder_or_nothing() {
        let lease = json!({
            "metadata": { "name": "kube-scheduler", "creationTimestamp": "2026-03-01T04:00:00Z" },
            "spec": { "holderIdentity": "server-1_abc" },
        });
        assert_eq!(
            json!(row(&lease, at("2026-03-01T12:00:00Z"))),
            json!(["kube-scheduler", "server-1_abc", "8h"])
        );
        assert_eq!(row(&json!({}), at("2026-03-01T12:00:00Z"))[1], "");
    }
}
