//! PersistentVolumeClaims: the `kubectl get persistentvolumeclaims` table (phase, bound
//! volume, its capacity and access modes, and the claim's classes).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::defaulting::{default_claim_spec, drop_generation};
use super::persistentvolumes::{BETA_STORAGE_CLASS, or_unset, phase, quantity};
use super::printing::{self, AGE, NAME, column, text, wide};
use super::{Column, Kind};

pub struct PersistentVolumeClaims;

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    column(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    column(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
    ),
    column(
        "Access Modes",
        "string",
        "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1",
    ),
    column("StorageClass", "string", "StorageClass of the pvc"),
    column(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.",
    ),
];

impl Kind for PersistentVolumeClaims {
    fn returns_deleted_object(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, object: &mut Value) {
        drop_generation(object);
        if let Some(spec) = object.get_mut("spec").filter(|s| s.is_object()) {
            default_claim_spec(spec);
        }
        object["status"] = json!({ "phase": "Pending" });
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        if let Some(spec) = new.get_mut("spec").filter(|s| s.is_object()) {
            default_claim_spec(spec);
        }
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

fn row(claim: &Value, now: OffsetDateTime) -> Vec<Value> {
    let (spec, status) = (&claim["spec"], &claim["status"]);
    let volume = text(&spec["volumeName"]);
    // Capacity and access modes are the bound volume's, so unbound claims show none.
    let (capacity, access_modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(&status["capacity"]["storage"]).to_owned(),
            printing::access_modes(&status["accessModes"]),
        )
    };
    let class = match claim["metadata"]["annotations"][BETA_STORAGE_CLASS].as_str() {
        Some(class) => class,
        None => text(&spec["storageClassName"]),
    };
    vec![
        printing::name(claim),
        phase(claim).into(),
        volume.into(),
        capacity.into(),
        access_modes.into(),
        class.into(),
        or_unset(&spec["volumeAttributesClassName"]).into(),
        printing::age(claim, now),
        or_unset(&spec["volumeMode"]).into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn claims_start_pending_with_a_filesystem() {
        let mut claim = json!({"metadata": {"name": "c", "generation": 1}, "spec": {}});
        PersistentVolumeClaims.prepare_for_create(&mut claim);
        assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
        assert_eq!(claim["status"], json!({"phase": "Pending"}));
        assert!(claim["metadata"].get("generation").is_none());
    }

    #[test]
    fn a_bound_claim_shows_its_volume_capacity_and_modes() {
        let claim = json!({
            "metadata": { "name": "data-pg-0", "creationTimestamp": "2026-03-01T11:59:00Z" },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": { "requests": { "storage": "5Gi" } },
                "storageClassName": "local",
                "volumeName": "pv-1",
                "volumeMode": "Filesystem",
            },
            "status": { "phase": "Bound", "capacity": { "storage": "10Gi" }, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"] },
        });
        assert_eq!(
            json!(row(&claim, at("2026-03-01T12:00:00Z"))),
            json!([
                "data-pg-0",
                "Bound",
                "pv-1",
                "10Gi",
                "RWO,ROX",
                "local",
                "<unset>",
                "60s",
                "Filesystem"
            ])
        );
    }

    #[test]
    fn a_pending_claim_shows_no_capacity() {
        let claim = json!({
            "spec": { "resources": { "requests": { "storage": "5Gi" } } },
            "status": { "phase": "Pending" },
        });
        let cells = row(&claim, at("2026-03-01T12:00:00Z"));
        assert_eq!(json!(cells[1..6]), json!(["Pending", "", "", "", ""]));
    }
}
