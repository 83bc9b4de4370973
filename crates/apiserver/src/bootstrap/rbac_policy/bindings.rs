//! The default ClusterRoleBindings (`policy.go`) and the Roles and RoleBindings in kube-system
//! and kube-public (`namespace_policy.go`). Controller roles bring their own bindings.

use super::*;

use Subject::{Group, ServiceAccount, User};

const KUBE_SYSTEM: &str = "kube-system";
const KUBE_PUBLIC: &str = "kube-public";
const SCHEDULER: Subject = User("system:kube-scheduler");
const CONTROLLER_MANAGER: Subject = User("system:kube-controller-manager");
const AUTHENTICATED: Subject = Group("system:authenticated");

pub static CLUSTER_ROLE_BINDINGS: &[Binding] = &[
    cluster_binding("cluster-admin", "cluster-admin", &[Group("system:masters")]),
    cluster_binding("system:basic-user", "system:basic-user", &[AUTHENTICATED]),
    cluster_binding("system:discovery", "system:discovery", &[AUTHENTICATED]),
    cluster_binding(
        "system:kube-controller-manager",
        "system:kube-controller-manager",
        &[CONTROLLER_MANAGER],
    ),
    cluster_binding(
        "system:kube-dns",
        "system:kube-dns",
        &[ServiceAccount(KUBE_SYSTEM, "kube-dns")],
    ),
    cluster_binding(
        "system:kube-scheduler",
        "system:kube-scheduler",
        &[SCHEDULER],
    ),
    cluster_binding(
        "system:monitoring",
        "system:monitoring",
        &[Group("system:monitoring")],
    ),
    // Kept without subjects: the Node authorizer, not this binding, grants nodes their access.
    cluster_binding("system:node", "system:node", &[]),
    cluster_binding(
        "system:node-proxier",
        "system:node-proxier",
        &[User("system:kube-proxy")],
    ),
    cluster_binding(
        "system:public-info-viewer",
        "system:public-info-viewer",
        &[AUTHENTICATED, Group("system:unauthenticated")],
    ),
    cluster_binding(
        "system:service-account-issuer-discovery",
        "system:service-account-issuer-discovery",
        &[Group("system:serviceaccounts")],
    ),
    cluster_binding(
        "system:volume-scheduler",
        "system:volume-scheduler",
        &[SCHEDULER],
    ),
];

const LEADER_LOCKING: &[Rule] = &[
    rule(
        &["create", "get", "list", "update", "watch"],
        COORDINATION,
        &["leases"],
    ),
    rule(
        &["create", "get", "list", "update", "watch"],
        COORDINATION,
        &["leasecandidates"],
    ),
];

const fn in_namespace(namespace: &'static str, role: Role) -> NamespacedRole {
    NamespacedRole { namespace, role }
}

pub static NAMESPACED_ROLES: &[NamespacedRole] = &[
    in_namespace(
        KUBE_PUBLIC,
        role(
            "system:controller:bootstrap-signer",
            &[
                rule(READ, CORE, &["configmaps"]),
                named(UPDATE, CORE, &["configmaps"], &["cluster-info"]),
                EVENTS,
            ],
        ),
    ),
    in_namespace(
        KUBE_SYSTEM,
        role(
            "extension-apiserver-authentication-reader",
            &[named(
                READ,
                CORE,
                &["configmaps"],
                &["extension-apiserver-authentication"],
            )],
        ),
    ),
    in_namespace(
        KUBE_SYSTEM,
        role(
            "system::leader-locking-kube-controller-manager",
            LEADER_LOCKING,
        ),
    ),
    in_namespace(
        KUBE_SYSTEM,
        role("system::leader-locking-kube-scheduler", LEADER_LOCKING),
    ),
    in_namespace(
        KUBE_SYSTEM,
        role(
            "system:controller:bootstrap-signer",
            &[rule(READ, CORE, &["secrets"])],
        ),
    ),
    in_namespace(
        KUBE_SYSTEM,
        role(
            "system:controller:cloud-provider",
            &[rule(
                &["create", "get", "list", "watch"],
                CORE,
                &["configmaps"],
            )],
        ),
    ),
    in_namespace(
        KUBE_SYSTEM,
        role(
            "system:controller:token-cleaner",
            &[
                rule(&["delete", "get", "list", "watch"], CORE, &["secrets"]),
                EVENTS,
            ],
        ),
    ),
];

pub static ROLE_BINDINGS: &[Binding] = &[
    role_binding(
        KUBE_PUBLIC,
        "system:controller:bootstrap-signer",
        "system:controller:bootstrap-signer",
        &[ServiceAccount(KUBE_SYSTEM, "bootstrap-signer")],
    ),
    role_binding(
        KUBE_SYSTEM,
        "system::extension-apiserver-authentication-reader",
        "extension-apiserver-authentication-reader",
        &[CONTROLLER_MANAGER, SCHEDULER],
    ),
    role_binding(
        KUBE_SYSTEM,
        "system::leader-locking-kube-controller-manager",
        "system::leader-locking-kube-controller-manager",
        &[
            CONTROLLER_MANAGER,
            ServiceAccount(KUBE_SYSTEM, "kube-controller-manager"),
            ServiceAccount(KUBE_SYSTEM, "leader-election-controller"),
        ],
    ),
    role_binding(
        KUBE_SYSTEM,
        "system::leader-locking-kube-scheduler",
        "system::leader-locking-kube-scheduler",
        &[SCHEDULER, ServiceAccount(KUBE_SYSTEM, "kube-scheduler")],
    ),
    role_binding(
        KUBE_SYSTEM,
        "system:controller:bootstrap-signer",
        "system:controller:bootstrap-signer",
        &[ServiceAccount(KUBE_SYSTEM, "bootstrap-signer")],
    ),
    role_binding(
        KUBE_SYSTEM,
        "system:controller:cloud-provider",
        "system:controller:cloud-provider",
        &[ServiceAccount(KUBE_SYSTEM, "cloud-provider")],
    ),
    role_binding(
        KUBE_SYSTEM,
        "system:controller:token-cleaner",
        "system:controller:token-cleaner",
        &[ServiceAccount(KUBE_SYSTEM, "token-cleaner")],
    ),
];
