//! The default ClusterRoles (upstream's `policy.go`), in upstream's order of rules.

use super::*;

const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

const AUTHENTICATION: &[&str] = &["authentication.k8s.io"];
const AUTHORIZATION: &[&str] = &["authorization.k8s.io"];
const TOKEN_REVIEWS: Rule = rule(CREATE, AUTHENTICATION, &["tokenreviews"]);
const SUBJECT_ACCESS_REVIEWS: Rule = rule(CREATE, AUTHORIZATION, &["subjectaccessreviews"]);

/// Approving CSRs for one signer.
const fn approve(signer: &'static [&'static str]) -> Rule {
    named(&["approve"], CERTIFICATES, &["signers"], signer)
}

pub static CLUSTER_ROLES: &[Role] = &[
    Role {
        name: "admin",
        labels: &[],
        aggregates: Some(AGGREGATE_TO_ADMIN),
        rules: &[],
    },
    // The "root" role: anything, anywhere.
    role("cluster-admin", &[rule(ALL, ALL, ALL), urls(ALL, ALL)]),
    Role {
        name: "edit",
        labels: &[AGGREGATE_TO_ADMIN],
        aggregates: Some(AGGREGATE_TO_EDIT),
        rules: &[],
    },
    Role {
        name: "view",
        labels: &[AGGREGATE_TO_EDIT],
        aggregates: Some(AGGREGATE_TO_VIEW),
        rules: &[],
    },
    Role {
        name: "system:aggregate-to-admin",
        labels: &[AGGREGATE_TO_ADMIN],
        aggregates: None,
        rules: &[
            rule(CREATE, AUTHORIZATION, &["localsubjectaccessreviews"]),
            rule(
                READ_WRITE,
                &["rbac.authorization.k8s.io"],
                &["rolebindings", "roles"],
            ),
        ],
    },
    Role {
        name: "system:aggregate-to-edit",
        labels: &[AGGREGATE_TO_EDIT],
        aggregates: None,
        rules: &[
            // Reading these can escalate, so view does not have them.
            rule(
                READ,
                CORE,
                &[
                    "pods/attach",
                    "pods/exec",
                    "pods/portforward",
                    "pods/proxy",
                    "secrets",
                    "services/proxy",
                ],
            ),
            rule(&["impersonate"], CORE, &["serviceaccounts"]),
            rule(
                WRITE,
                CORE,
                &[
                    "pods",
                    "pods/attach",
                    "pods/exec",
                    "pods/portforward",
                    "pods/proxy",
                ],
            ),
            rule(CREATE, CORE, &["pods/eviction"]),
            rule(
                WRITE,
                CORE,
                &[
                    "configmaps",
                    "persistentvolumeclaims",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "secrets",
                    "serviceaccounts",
                    "services",
                    "services/proxy",
                ],
            ),
            rule(CREATE, CORE, &["serviceaccounts/token"]),
            rule(WRITE, &["", "events.k8s.io"], &["events"]),
            rule(
                WRITE,
                &["apps"],
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "replicasets",
                    "replicasets/scale",
                    "statefulsets",
                    "statefulsets/scale",
                ],
            ),
            rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
            rule(WRITE, &["batch"], &["cronjobs", "jobs"]),
            rule(
                WRITE,
                &["extensions"],
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "ingresses",
                    "networkpolicies",
                    "replicasets",
                    "replicasets/scale",
                    "replicationcontrollers/scale",
                ],
            ),
            rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
            rule(
                WRITE,
                &["networking.k8s.io"],
                &["ingresses", "networkpolicies"],
            ),
            rule(READ_WRITE, COORDINATION, &["leases"]),
            rule(
                WRITE,
                RESOURCE,
                &["resourceclaims", "resourceclaimtemplates"],
            ),
        ],
    },
    Role {
        name: "system:aggregate-to-view",
        labels: &[AGGREGATE_TO_VIEW],
        aggregates: None,
        rules: &[
            rule(
                READ,
                CORE,
                &[
                    "configmaps",
                    "endpoints",
                    "persistentvolumeclaims",
                    "persistentvolumeclaims/status",
                    "pods",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "serviceaccounts",
                    "services",
                    "services/status",
                ],
            ),
            rule(
                READ,
                CORE,
                &[
                    "bindings",
                    "limitranges",
                    "namespaces/status",
                    "pods/log",
                    "pods/status",
                    "replicationcontrollers/status",
                    "resourcequotas",
                    "resourcequotas/status",
                ],
            ),
            // Reading namespaces at namespace scope means reading *this* namespace.
            rule(READ, CORE, &["namespaces"]),
            rule(READ, &["", "events.k8s.io"], &["events"]),
            rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
            rule(
                READ,
                &["apps"],
                &[
                    "controllerrevisions",
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "statefulsets",
                    "statefulsets/scale",
                    "statefulsets/status",
                ],
            ),
            rule(
                READ,
                &["autoscaling"],
                &[
                    "horizontalpodautoscalers",
                    "horizontalpodautoscalers/status",
                ],
            ),
            rule(
                READ,
                &["batch"],
                &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            ),
            rule(
                READ,
                &["extensions"],
                &[
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "ingresses",
                    "ingresses/status",
                    "networkpolicies",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "replicationcontrollers/scale",
                ],
            ),
            rule(
                READ,
                &["policy"],
                &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            ),
            rule(
                READ,
                &["networking.k8s.io"],
                &["ingresses", "ingresses/status", "networkpolicies"],
            ),
            rule(
                READ,
                RESOURCE,
                &[
                    "resourceclaims",
                    "resourceclaims/status",
                    "resourceclaimtemplates",
                ],
            ),
        ],
    },
    role(
        "system:auth-delegator",
        &[TOKEN_REVIEWS, SUBJECT_ACCESS_REVIEWS],
    ),
    role(
        "system:basic-user",
        &[
            rule(
                CREATE,
                AUTHORIZATION,
                &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            ),
            rule(CREATE, AUTHENTICATION, &["selfsubjectreviews"]),
        ],
    ),
    role(
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        &[rule(
            CREATE,
            CERTIFICATES,
            &["certificatesigningrequests/nodeclient"],
        )],
    ),
    role(
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        &[rule(
            CREATE,
            CERTIFICATES,
            &["certificatesigningrequests/selfnodeclient"],
        )],
    ),
    role(
        "system:certificates.k8s.io:kube-apiserver-client-approver",
        &[approve(&["kubernetes.io/kube-apiserver-client"])],
    ),
    role(
        "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
        &[approve(&["kubernetes.io/kube-apiserver-client-kubelet"])],
    ),
    role(
        "system:certificates.k8s.io:kubelet-serving-approver",
        &[approve(&["kubernetes.io/kubelet-serving"])],
    ),
    role(
        "system:certificates.k8s.io:legacy-unknown-approver",
        &[approve(&["kubernetes.io/legacy-unknown"])],
    ),
    // Just enough to check readiness and discover API versions for negotiation.
    role(
        "system:discovery",
        &[urls(
            GET,
            &[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ],
        )],
    ),
    role(
        "system:heapster",
        &[
            rule(READ, CORE, &["events", "namespaces", "nodes", "pods"]),
            rule(READ, &["extensions"], &["deployments"]),
        ],
    ),
    role(
        "system:kube-aggregator",
        &[rule(READ, CORE, &["endpoints", "services"])],
    ),
    role(
        "system:kube-controller-manager",
        &[
            EVENTS,
            rule(CREATE, COORDINATION, &["leases"]),
            named(
                &["get", "update"],
                COORDINATION,
                &["leases"],
                &["kube-controller-manager"],
            ),
            rule(CREATE, CORE, &["secrets", "serviceaccounts"]),
            rule(&["delete"], CORE, &["secrets"]),
            rule(
                GET,
                CORE,
                &["configmaps", "namespaces", "secrets", "serviceaccounts"],
            ),
            rule(UPDATE, CORE, &["secrets", "serviceaccounts"]),
            TOKEN_REVIEWS,
            SUBJECT_ACCESS_REVIEWS,
            rule(LIST_WATCH, ALL, ALL),
            rule(CREATE, CORE, &["serviceaccounts/token"]),
        ],
    ),
    role(
        "system:kube-dns",
        &[rule(LIST_WATCH, CORE, &["endpoints", "services"])],
    ),
    role(
        "system:kube-scheduler",
        &[
            EVENTS,
            rule(CREATE, COORDINATION, &["leases"]),
            named(
                &["get", "list", "update", "watch"],
                COORDINATION,
                &["leases"],
                &["kube-scheduler"],
            ),
            rule(READ_WRITE, COORDINATION, &["leasecandidates"]),
            rule(READ, CORE, &["nodes"]),
            rule(&["delete", "get", "list", "watch"], CORE, &["pods"]),
            rule(CREATE, CORE, &["bindings", "pods/binding"]),
            rule(PATCH_UPDATE, CORE, &["pods/status"]),
            rule(READ, CORE, &["replicationcontrollers", "services"]),
            rule(READ, APPS_EXTENSIONS, &["replicasets"]),
            rule(READ, &["apps"], &["statefulsets"]),
            rule(READ, &["policy"], &["poddisruptionbudgets"]),
            rule(READ, CORE, &["persistentvolumeclaims", "persistentvolumes"]),
            TOKEN_REVIEWS,
            SUBJECT_ACCESS_REVIEWS,
            rule(READ, STORAGE, &["csinodes"]),
            rule(READ, STORAGE, &["volumeattachments"]),
            rule(READ, CORE, &["namespaces"]),
            rule(READ, STORAGE, &["csidrivers"]),
            rule(READ, STORAGE, &["csistoragecapacities"]),
            rule(READ, RESOURCE, &["deviceclasses"]),
            rule(
                &["get", "list", "patch", "update", "watch"],
                RESOURCE,
                &["resourceclaims"],
            ),
            rule(
                &["get", "list", "patch", "update", "watch"],
                RESOURCE,
                &["resourceclaims/status"],
            ),
            rule(UPDATE, CORE, &["pods/finalizers"]),
            rule(READ, RESOURCE, &["resourceslices"]),
            rule(&["create", "delete"], RESOURCE, &["resourceclaims"]),
        ],
    ),
    role(
        "system:kubelet-api-admin",
        &[
            rule(READ, CORE, &["nodes"]),
            rule(&["proxy"], CORE, &["nodes"]),
            rule(
                ALL,
                CORE,
                &["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"],
            ),
            rule(ALL, CORE, &["nodes/configz", "nodes/healthz", "nodes/pods"]),
        ],
    ),
    role(
        "system:monitoring",
        &[
            urls(
                GET,
                &[
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/metrics",
                    "/metrics/slis",
                    "/readyz",
                    "/readyz/*",
                    "/statusz",
                ],
            ),
            rule(GET, CORE, &["nodes/metrics"]),
        ],
    ),
    // What a kubelet needs; the Node authorizer and NodeRestriction narrow it to its own node.
    role(
        "system:node",
        &[
            TOKEN_REVIEWS,
            rule(
                CREATE,
                AUTHORIZATION,
                &["localsubjectaccessreviews", "subjectaccessreviews"],
            ),
            rule(READ, CORE, &["services"]),
            rule(&["create", "get", "list", "watch"], CORE, &["nodes"]),
            rule(PATCH_UPDATE, CORE, &["nodes/status"]),
            rule(PATCH_UPDATE, CORE, &["nodes"]),
            EVENTS,
            rule(READ, CORE, &["pods"]),
            rule(&["create", "delete"], CORE, &["pods"]),
            rule(PATCH_UPDATE, CORE, &["pods/status"]),
            rule(CREATE, CORE, &["pods/eviction"]),
            rule(READ, CORE, &["configmaps", "secrets"]),
            rule(GET, CORE, &["persistentvolumeclaims", "persistentvolumes"]),
            rule(GET, CORE, &["endpoints"]),
            rule(
                &["create", "get", "list", "watch"],
                CERTIFICATES,
                &["certificatesigningrequests"],
            ),
            rule(
                &["create", "delete", "get", "patch", "update"],
                COORDINATION,
                &["leases"],
            ),
            rule(GET, STORAGE, &["volumeattachments"]),
            rule(CREATE, CORE, &["serviceaccounts/token"]),
            rule(
                &["get", "patch", "update"],
                CORE,
                &["persistentvolumeclaims/status"],
            ),
            rule(READ, STORAGE, &["csidrivers"]),
            rule(
                &["create", "delete", "get", "patch", "update"],
                STORAGE,
                &["csinodes"],
            ),
            rule(READ, &["node.k8s.io"], &["runtimeclasses"]),
            rule(GET, RESOURCE, &["resourceclaims"]),
            rule(&["deletecollection"], RESOURCE, &["resourceslices"]),
            rule(GET, CORE, &["serviceaccounts"]),
        ],
    ),
    role(
        "system:node-bootstrapper",
        &[rule(
            &["create", "get", "list", "watch"],
            CERTIFICATES,
            &["certificatesigningrequests"],
        )],
    ),
    role(
        "system:node-problem-detector",
        &[
            rule(GET, CORE, &["nodes"]),
            rule(&["patch"], CORE, &["nodes/status"]),
            EVENTS,
        ],
    ),
    role(
        "system:node-proxier",
        &[
            rule(LIST_WATCH, CORE, &["endpoints", "services"]),
            rule(READ, CORE, &["nodes"]),
            EVENTS,
            rule(LIST_WATCH, &["networking.k8s.io"], &["servicecidrs"]),
            rule(LIST_WATCH, &["discovery.k8s.io"], &["endpointslices"]),
        ],
    ),
    role(
        "system:persistent-volume-provisioner",
        &[
            rule(
                &["create", "delete", "get", "list", "watch"],
                CORE,
                &["persistentvolumes"],
            ),
            rule(
                &["get", "list", "update", "watch"],
                CORE,
                &["persistentvolumeclaims"],
            ),
            rule(READ, STORAGE, &["storageclasses"]),
            rule(&["watch"], CORE, &["events"]),
            EVENTS,
        ],
    ),
    role(
        "system:public-info-viewer",
        &[urls(
            GET,
            &["/healthz", "/livez", "/readyz", "/version", "/version/"],
        )],
    ),
    role(
        "system:service-account-issuer-discovery",
        &[urls(
            GET,
            &[
                "/.well-known/openid-configuration",
                "/.well-known/openid-configuration/",
                "/openid/v1/jwks",
                "/openid/v1/jwks/",
            ],
        )],
    ),
    role(
        "system:volume-scheduler",
        &[
            rule(
                &["get", "list", "patch", "update", "watch"],
                CORE,
                &["persistentvolumes"],
            ),
            rule(READ, STORAGE, &["storageclasses"]),
            rule(
                &["get", "list", "patch", "update", "watch"],
                CORE,
                &["persistentvolumeclaims"],
            ),
        ],
    ),
];
