//! PersistentVolumes: the `kubectl get persistentvolumes` table (capacity, access modes,
//! reclaim policy, phase, the claim bound to it and its classes).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::defaulting::{created_at, drop_generation, set_default};
use super::printing::{self, AGE, NAME, column, text, wide};
use super::{Column, Kind};

pub struct PersistentVolumes;

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Capacity",
        "string",
        "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity",
    ),
    column(
        "Access Modes",
        "string",
        "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes",
    ),
    column(
        "Reclaim Policy",
        "string",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming",
    ),
    column(
        "Status",
        "string",
        "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase",
    ),
    column(
        "Claim",
        "string",
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding",
    ),
    column("StorageClass", "string", "StorageClass of the pv"),
    column(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pv",
    ),
    column(
        "Reason",
        "string",
        "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.",
    ),
];

/// The annotation that named a volume's class before `storageClassName`; it still wins.
pub const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

impl Kind for PersistentVolumes {
    fn returns_deleted_object(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, object: &mut Value) {
        drop_generation(object);
        default_volume(object);
        object["status"] = json!({
            "phase": "Pending",
            "lastPhaseTransitionTime": created_at(object),
        });
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_volume(new);
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

/// A quantity as stored, `0` when unset (Go's zero quantity).
pub fn quantity(value: &Value) -> &str {
    value.as_str().unwrap_or("0")
}

/// The phase, or `Terminating` once deletion has begun.
pub fn phase(object: &Value) -> &str {
    if object["metadata"]["deletionTimestamp"].is_null() {
        text(&object["status"]["phase"])
    } else {
        "Terminating"
    }
}

/// An optional name field, `<unset>` when absent.
pub fn or_unset(value: &Value) -> &str {
    value.as_str().unwrap_or("<unset>")
}

fn row(volume: &Value, now: OffsetDateTime) -> Vec<Value> {
    let spec = &volume["spec"];
    let claim = match &spec["claimRef"] {
        Value::Null => String::new(),
        claim => format!("{}/{}", text(&claim["namespace"]), text(&claim["name"])),
    };
    let class = match volume["metadata"]["annotations"][BETA_STORAGE_CLASS].as_str() {
        Some(class) => class,
        None => text(&spec["storageClassName"]),
    };
    vec![
        printing::name(volume),
        quantity(&spec["capacity"]["storage"]).into(),
        printing::access_modes(&spec["accessModes"]).into(),
        text(&spec["persistentVolumeReclaimPolicy"]).into(),
        phase(volume).into(),
        claim.into(),
        class.into(),
        or_unset(&spec["volumeAttributesClassName"]).into(),
        text(&volume["status"]["reason"]).into(),
        printing::age(volume, now),
        or_unset(&spec["volumeMode"]).into(),
    ]
}

/// Upstream's PersistentVolume defaults: volumes are retained and hold a filesystem.
fn default_volume(volume: &mut Value) {
    let Some(spec) = volume.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
    set_default(spec, "volumeMode", json!("Filesystem"));
    if let Some(host_path) = spec.get_mut("hostPath").filter(|h| h.is_object()) {
        set_default(host_path, "type", json!(""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn volumes_start_pending_retained_and_with_a_filesystem() {
        let mut volume = json!({"metadata": {"name": "v", "generation": 1,
            "creationTimestamp": "2026-03-01T12:00:00Z"},
            "spec": {"hostPath": {"path": "/data"}}});
        PersistentVolumes.prepare_for_create(&mut volume);
        assert_eq!(volume["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(volume["spec"]["volumeMode"], "Filesystem");
        assert_eq!(volume["spec"]["hostPath"]["type"], "");
        assert_eq!(
            volume["status"],
            json!({"phase": "Pending", "lastPhaseTransitionTime": "2026-03-01T12:00:00Z"})
        );
        assert!(volume["metadata"].get("generation").is_none());
    }

    #[test]
    fn a_bound_volume_shows_its_claim_and_class() {
        let volume = json!({
            "metadata": { "name": "pv-1", "creationTimestamp": "2026-03-01T11:00:00Z" },
            "spec": {
                "capacity": { "storage": "10Gi" },
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "claimRef": { "namespace": "db", "name": "data-pg-0" },
                "storageClassName": "local",
                "volumeMode": "Filesystem",
            },
            "status": { "phase": "Bound" },
        });
        assert_eq!(
            json!(row(&volume, at("2026-03-01T12:00:00Z"))),
            json!([
                "pv-1",
                "10Gi",
                "RWO",
                "Retain",
                "Bound",
                "db/data-pg-0",
                "local",
                "<unset>",
                "",
                "60m",
                "Filesystem"
            ])
        );
    }

    #[test]
    fn a_volume_being_deleted_is_terminating_and_the_beta_class_annotation_wins() {
        let volume = json!({
            "metadata": {
                "deletionTimestamp": "2026-03-01T11:00:00Z",
                "annotations": { BETA_STORAGE_CLASS: "old" },
            },
            "spec": { "storageClassName": "new" },
            "status": { "phase": "Released" },
        });
        let cells = row(&volume, at("2026-03-01T12:00:00Z"));
        assert_eq!(cells[1], "0");
        assert_eq!(cells[4], "Terminating");
        assert_eq!(cells[6], "old");
    }
}
