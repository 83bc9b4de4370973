//! Per-kind behaviour: what is special about one resource lives in one file here, and the
//! generic server calls it through [`Kind`]. A resource without a file behaves as every
//! object does by default.

mod certificatesigningrequests;
mod configmaps;
mod conversion;
mod cronjobs;
pub mod customresourcedefinitions;
mod daemonsets;
mod defaulting;
mod deployments;
mod endpoints;
mod endpointslices;
mod events;
mod horizontalpodautoscalers;
mod ingresses;
mod jobs;
mod leases;
mod namespaces;
mod networkpolicies;
mod nodes;
mod persistentvolumeclaims;
mod persistentvolumes;
mod pod_creation;
mod poddisruptionbudgets;
mod pods;
pub mod printing;
mod priorityclasses;
mod rbac;
mod replicasets;
mod secrets;
mod serviceaccounts;
mod services;
mod statefulsets;
mod storageclasses;

use serde_json::Value;

use crate::Resource;

/// One invalid field: its path (`spec.finalizers[0]`) and what is wrong with it.
pub type FieldError = (String, String);

/// A range of addresses the API server hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pool {
    /// ClusterIPs, from the service CIDR.
    ServiceIp,
    /// Node ports, from the node port range.
    NodePort,
}

/// One address an object holds (or asks for) from a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub pool: Pool,
    /// The value the object names, if any; otherwise the server picks one.
    pub requested: Option<String>,
    /// Where the value goes in the object, as path segments (`spec`, `ports`, `0`, `nodePort`).
    pub field: Vec<String>,
}

/// A column of the table `kubectl get` prints (server-side printing).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// As upstream names it: `Name`, `Ready`, `Age`, …
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub kind: &'static str,
    /// `name` for the name column, otherwise usually empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: i32,
}

/// What DELETE does with an object that has no metadata finalizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// Remove it now.
    Now,
    /// Mark it (deletionTimestamp) and keep it until its kind-specific finalization is done.
    Finalize,
}

/// Behaviour of one kind. Every method has the default every object gets.
pub trait Kind: Sync {
    /// Server-set fields and defaults of a new object (name and namespace are already set).
    fn prepare_for_create(&self, _object: &mut Value) {}

    /// Whether a created object records who created it in `spec.username`, `uid`, `groups`
    /// and `extra` (CertificateSigningRequests), which the server fills from the request's
    /// authentication after `prepare_for_create` has dropped any claimed values.
    fn records_requester(&self) -> bool {
        false
    }

    /// Server-kept fields when `new` replaces `old`.
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// What is wrong with an object, field by field.
    fn validate(&self, _object: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Fields a field selector may use, besides `metadata.name` and `metadata.namespace`.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// The stored form's name for a selectable field (upstream's field label conversion:
    /// events.k8s.io's `regarding.name` is a core event's `involvedObject.name`).
    fn stored_field_label<'a>(&self, label: &'a str) -> &'a str {
        label
    }

    /// The value a field selector compares for one of the selectable fields: the field at that
    /// path, unless the kind derives it.
    fn selectable_value(&self, object: &Value, field: &str) -> Value {
        at_path(object, field).clone()
    }

    /// Server-kept fields when a subresource writes `new` over `old` (after the subresource's
    /// fields were taken from the request and the rest from `old`).
    fn prepare_for_subresource_update(&self, _subresource: &str, _new: &mut Value, _old: &Value) {}

    /// The top-level paths a subresource writes; the rest of the object is kept.
    fn subresource_fields(&self, subresource: &str) -> Option<&'static [&'static str]> {
        (subresource == "status").then_some(&["status"][..])
    }

    /// Addresses the object holds from the server's pools.
    fn allocations(&self, _object: &Value) -> Vec<Allocation> {
        Vec::new()
    }

    /// Fills fields derived from allocated values (e.g. `clusterIPs` from `clusterIP`).
    fn after_allocation(&self, _object: &mut Value) {}

    /// Fields that may not change from `old` to `new`.
    fn immutable_fields(&self, _old: &Value, _new: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// The columns of this kind's table, as upstream's printers define them; `None` gives the
    /// default Name and Created At.
    fn columns(&self) -> Option<&'static [Column]> {
        None
    }

    /// One row's cells, in [`Kind::columns`] order (ages as upstream prints them: `5m`, `2d`).
    fn cells(&self, _object: &Value) -> Vec<Value> {
        Vec::new()
    }

    /// What DELETE does; may change the object it is about to mark (e.g. a phase).
    fn on_delete(&self, _object: &mut Value) -> Deletion {
        Deletion::Now
    }

    /// Seconds a DELETE leaves for the object's owner to finish with it (a kubelet stopping a
    /// pod's containers), given the grace period the client asked for; `None`: the kind is not
    /// deleted gracefully.
    fn grace_period(&self, _object: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Whether a DELETE answers the deleted object (upstream's `ReturnDeletedObject`) rather
    /// than a `Status`.
    fn returns_deleted_object(&self) -> bool {
        false
    }

    /// The object in the form its resource is stored in ([`Resource::stored_as`]); objects
    /// of a resource stored as served are kept as they are.
    fn to_storage(&self, object: Value) -> Value {
        object
    }

    /// A stored object in this resource's form: the inverse of [`Kind::to_storage`].
    fn to_served(&self, object: Value) -> Value {
        object
    }
}

/// The value at a dotted path (`involvedObject.name`); null when absent.
fn at_path<'a>(object: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(object, |node, part| &node[part])
}

struct Default;

impl Kind for Default {}

/// The behaviour of a resource's objects.
pub fn behaviour(resource: &Resource) -> &'static dyn Kind {
    match (resource.group, resource.plural) {
        ("", "configmaps") => &configmaps::ConfigMaps,
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            &customresourcedefinitions::CustomResourceDefinitions
        }
        ("certificates.k8s.io", "certificatesigningrequests") => {
            &certificatesigningrequests::CertificateSigningRequests
        }
        ("", "endpoints") => &endpoints::Endpoints,
        ("discovery.k8s.io", "endpointslices") => &endpointslices::EndpointSlices,
        ("", "events") => &events::Events,
        // The same objects as core events, in the newer shape.
        ("events.k8s.io", "events") => &events::EVENTS_K8S_IO,
        ("", "namespaces") => &namespaces::Namespaces,
        ("", "nodes") => &nodes::Nodes,
        ("", "persistentvolumeclaims") => &persistentvolumeclaims::PersistentVolumeClaims,
        ("", "persistentvolumes") => &persistentvolumes::PersistentVolumes,
        ("", "pods") => &pods::Pods,
        ("", "secrets") => &secrets::Secrets,
        ("", "serviceaccounts") => &serviceaccounts::ServiceAccounts,
        ("", "services") => &services::Services,
        ("apps", "daemonsets") => &daemonsets::DaemonSets,
        ("apps", "deployments") => &deployments::Deployments,
        ("apps", "replicasets") => &replicasets::ReplicaSets,
        ("apps", "statefulsets") => &statefulsets::StatefulSets,
        // Stored as autoscaling/v2; v1 objects are converted to it.
        ("autoscaling", "horizontalpodautoscalers") if resource.version == "v1" => {
            &horizontalpodautoscalers::AUTOSCALING_V1
        }
        ("autoscaling", "horizontalpodautoscalers") => {
            &horizontalpodautoscalers::HorizontalPodAutoscalers
        }
        ("batch", "cronjobs") => &cronjobs::CronJobs,
        ("batch", "jobs") => &jobs::Jobs,
        ("coordination.k8s.io", "leases") => &leases::Leases,
        ("networking.k8s.io", "ingresses") => &ingresses::Ingresses,
        ("networking.k8s.io", "networkpolicies") => &networkpolicies::NetworkPolicies,
        ("policy", "poddisruptionbudgets") => &poddisruptionbudgets::PodDisruptionBudgets,
        ("rbac.authorization.k8s.io", "roles" | "clusterroles") => &rbac::Roles,
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => &rbac::Bindings,
        ("scheduling.k8s.io", "priorityclasses") => &priorityclasses::PriorityClasses,
        ("storage.k8s.io", "storageclasses") => &storageclasses::StorageClasses,
        _ => &Default,
    }
}
