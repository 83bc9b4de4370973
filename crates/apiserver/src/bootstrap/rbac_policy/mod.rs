//! Upstream's RBAC bootstrap policy (kube-apiserver 1.37, default feature gates) as compact
//! tables: the default ClusterRoles, the `system:controller:*` roles of the controller manager,
//! the ClusterRoleBindings, and the Roles and RoleBindings in kube-system and kube-public.
//! [`objects`] renders them as the API objects upstream creates.

mod bindings;
mod cluster_roles;
mod controller_roles;
pub mod kubeadm;

use serde_json::{Map, Value, json};

pub use bindings::{CLUSTER_ROLE_BINDINGS, NAMESPACED_ROLES, ROLE_BINDINGS};
pub use cluster_roles::CLUSTER_ROLES;
pub use controller_roles::CONTROLLER_ROLES;

pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const BOOTSTRAPPING: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");
/// Controller roles are `system:controller:<controller>`, bound to the controller's
/// ServiceAccount in kube-system.
const CONTROLLER_PREFIX: &str = "system:controller:";

/// One PolicyRule. Lists are written in any order; they are sorted when rendered, as upstream's
/// rule builder sorts them.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub verbs: &'static [&'static str],
    pub groups: &'static [&'static str],
    pub resources: &'static [&'static str],
    pub names: &'static [&'static str],
    pub urls: &'static [&'static str],
}

pub const fn rule(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
) -> Rule {
    Rule {
        verbs,
        groups,
        resources,
        names: &[],
        urls: &[],
    }
}

/// A rule limited to objects with the given names.
pub const fn named(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    names: &'static [&'static str],
) -> Rule {
    Rule {
        names,
        ..rule(verbs, groups, resources)
    }
}

/// A rule over non-resource URLs (`/healthz`, `/api/*`, …).
pub const fn urls(verbs: &'static [&'static str], urls: &'static [&'static str]) -> Rule {
    Rule {
        urls,
        ..rule(verbs, &[], &[])
    }
}

pub const READ: &[&str] = &["get", "list", "watch"];
pub const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
pub const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
pub const LIST_WATCH: &[&str] = &["list", "watch"];
pub const PATCH_UPDATE: &[&str] = &["patch", "update"];
pub const CREATE: &[&str] = &["create"];
pub const GET: &[&str] = &["get"];
pub const UPDATE: &[&str] = &["update"];

pub const CORE: &[&str] = &[""];
pub const APPS_EXTENSIONS: &[&str] = &["apps", "extensions"];
pub const STORAGE: &[&str] = &["storage.k8s.io"];
pub const RESOURCE: &[&str] = &["resource.k8s.io"];
pub const COORDINATION: &[&str] = &["coordination.k8s.io"];
pub const CERTIFICATES: &[&str] = &["certificates.k8s.io"];
pub const ALL: &[&str] = &["*"];

/// Writing events through either events API: every controller and most components have it.
pub const EVENTS: Rule = rule(
    &["create", "patch", "update"],
    &["", "events.k8s.io"],
    &["events"],
);

/// A ClusterRole, or a Role once placed in a namespace.
pub struct Role {
    pub name: &'static str,
    /// Labels besides `kubernetes.io/bootstrapping` (the aggregate-to-* labels).
    pub labels: &'static [&'static str],
    /// For aggregated roles: the label (set to "true") that selects the roles aggregated here.
    pub aggregates: Option<&'static str>,
    pub rules: &'static [Rule],
}

pub const fn role(name: &'static str, rules: &'static [Rule]) -> Role {
    Role {
        name,
        labels: &[],
        aggregates: None,
        rules,
    }
}

/// A controller's role: `system:controller:<controller>`, bound to its ServiceAccount.
pub struct ControllerRole {
    pub controller: &'static str,
    pub rules: &'static [Rule],
}

pub struct NamespacedRole {
    pub namespace: &'static str,
    pub role: Role,
}

#[derive(Clone, Copy, Debug)]
pub enum Subject {
    User(&'static str),
    Group(&'static str),
    /// (namespace, name)
    ServiceAccount(&'static str, &'static str),
}

/// A ClusterRoleBinding to a ClusterRole, or (with a namespace) a RoleBinding to a Role.
pub struct Binding {
    pub namespace: Option<&'static str>,
    pub name: &'static str,
    pub role: &'static str,
    pub subjects: &'static [Subject],
}

pub const fn cluster_binding(
    name: &'static str,
    role: &'static str,
    subjects: &'static [Subject],
) -> Binding {
    Binding {
        namespace: None,
        name,
        role,
        subjects,
    }
}

pub const fn role_binding(
    namespace: &'static str,
    name: &'static str,
    role: &'static str,
    subjects: &'static [Subject],
) -> Binding {
    Binding {
        namespace: Some(namespace),
        name,
        role,
        subjects,
    }
}

/// The four RBAC kinds, in the order they are written (roles before what binds them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    ClusterRole,
    Role,
    ClusterRoleBinding,
    RoleBinding,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::ClusterRole,
        Kind::Role,
        Kind::ClusterRoleBinding,
        Kind::RoleBinding,
    ];

    pub fn plural(self) -> &'static str {
        match self {
            Kind::ClusterRole => "clusterroles",
            Kind::Role => "roles",
            Kind::ClusterRoleBinding => "clusterrolebindings",
            Kind::RoleBinding => "rolebindings",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::ClusterRole => "ClusterRole",
            Kind::Role => "Role",
            Kind::ClusterRoleBinding => "ClusterRoleBinding",
            Kind::RoleBinding => "RoleBinding",
        }
    }
}

/// One default object, rendered as upstream creates it.
pub struct PolicyObject {
    pub kind: Kind,
    pub namespace: Option<&'static str>,
    pub name: String,
    pub object: Value,
}

/// Every default RBAC object.
pub fn objects() -> Vec<PolicyObject> {
    let mut out = Vec::new();
    for role in CLUSTER_ROLES {
        out.push(role_object(Kind::ClusterRole, None, role.name, role));
    }
    for controller in CONTROLLER_ROLES {
        let name = format!("{CONTROLLER_PREFIX}{}", controller.controller);
        out.push(role_object(
            Kind::ClusterRole,
            None,
            &name,
            &role("", controller.rules),
        ));
    }
    for NamespacedRole { namespace, role } in NAMESPACED_ROLES {
        out.push(role_object(Kind::Role, Some(namespace), role.name, role));
    }
    out.extend(
        CLUSTER_ROLE_BINDINGS
            .iter()
            .chain(ROLE_BINDINGS)
            .map(binding_of),
    );
    for controller in CONTROLLER_ROLES {
        let name = format!("{CONTROLLER_PREFIX}{}", controller.controller);
        let sa = subject(Subject::ServiceAccount(
            "kube-system",
            controller.controller,
        ));
        out.push(binding_object(None, &name, &name, vec![sa]));
    }
    out
}

/// [`kubeadm`]'s additions, kept apart from upstream's own defaults.
pub fn kubeadm_objects() -> Vec<PolicyObject> {
    let mut out: Vec<PolicyObject> = kubeadm::CLUSTER_ROLES
        .iter()
        .map(|role| role_object(Kind::ClusterRole, None, role.name, role))
        .collect();
    out.extend(kubeadm::CLUSTER_ROLE_BINDINGS.iter().map(binding_of));
    out
}

fn binding_of(binding: &Binding) -> PolicyObject {
    let subjects: Vec<Value> = binding.subjects.iter().map(|s| subject(*s)).collect();
    binding_object(binding.namespace, binding.name, binding.role, subjects)
}

fn metadata(namespace: Option<&str>, name: &str, labels: &[&str]) -> Value {
    let mut label_map = Map::new();
    label_map.insert(BOOTSTRAPPING.0.into(), BOOTSTRAPPING.1.into());
    for label in labels {
        label_map.insert((*label).into(), "true".into());
    }
    let mut meta = json!({
        "name": name,
        "labels": label_map,
        "annotations": { AUTOUPDATE: "true" },
    });
    if let Some(namespace) = namespace {
        meta["namespace"] = namespace.into();
    }
    meta
}

fn role_object(
    kind: Kind,
    namespace: Option<&'static str>,
    name: &str,
    role: &Role,
) -> PolicyObject {
    let mut object = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind.name(),
        "metadata": metadata(namespace, name, role.labels),
        "rules": role.rules.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
    });
    if let Some(label) = role.aggregates {
        object["aggregationRule"] =
            json!({ "clusterRoleSelectors": [{ "matchLabels": { label: "true" } }] });
    }
    PolicyObject {
        kind,
        namespace,
        name: name.to_owned(),
        object,
    }
}

fn binding_object(
    namespace: Option<&'static str>,
    name: &str,
    role: &str,
    subjects: Vec<Value>,
) -> PolicyObject {
    let (kind, role_kind) = match namespace {
        Some(_) => (Kind::RoleBinding, "Role"),
        None => (Kind::ClusterRoleBinding, "ClusterRole"),
    };
    let mut object = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind.name(),
        "metadata": metadata(namespace, name, &[]),
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role },
    });
    // Upstream leaves `subjects` out when there are none (system:node's binding).
    if !subjects.is_empty() {
        object["subjects"] = subjects.into();
    }
    PolicyObject {
        kind,
        namespace,
        name: name.to_owned(),
        object,
    }
}

fn subject(subject: Subject) -> Value {
    match subject {
        Subject::User(name) => {
            json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name })
        }
        Subject::Group(name) => {
            json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name })
        }
        Subject::ServiceAccount(namespace, name) => {
            json!({ "kind": "ServiceAccount", "name": name, "namespace": namespace })
        }
    }
}

impl Rule {
    pub fn to_json(self) -> Value {
        let sorted = |list: &[&str]| {
            let mut list = list.to_vec();
            list.sort_unstable();
            Value::from(list)
        };
        let mut rule = Map::new();
        rule.insert("verbs".into(), sorted(self.verbs));
        if !self.urls.is_empty() {
            rule.insert("nonResourceURLs".into(), sorted(self.urls));
        } else {
            rule.insert("apiGroups".into(), sorted(self.groups));
            rule.insert("resources".into(), sorted(self.resources));
        }
        if !self.names.is_empty() {
            rule.insert("resourceNames".into(), sorted(self.names));
        }
        Value::Object(rule)
    }
}

#[cfg(test)]
mod tests;
