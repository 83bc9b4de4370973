//! The controller manager's per-controller roles (upstream's `controller_policy.go`): each
//! becomes ClusterRole `system:controller:<controller>`, bound to ServiceAccount
//! `kube-system/<controller>`.

use super::*;

const fn controller(controller: &'static str, rules: &'static [Rule]) -> ControllerRole {
    ControllerRole { controller, rules }
}

const FINALIZE: &[&str] = &["update"];
const READ_UPDATE: &[&str] = &["get", "list", "update", "watch"];
const MANAGE: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const CREATE_DELETE_LIST_PATCH_WATCH: &[&str] = &["create", "delete", "list", "patch", "watch"];
const ENDPOINTS_WRITE: &[&str] = &["create", "delete", "get", "list", "update", "watch"];
const APPS: &[&str] = &["apps"];
const BATCH: &[&str] = &["batch"];
const NETWORKING: &[&str] = &["networking.k8s.io"];
const DISCOVERY: &[&str] = &["discovery.k8s.io"];

pub static CONTROLLER_ROLES: &[ControllerRole] = &[
    controller(
        "attachdetach-controller",
        &[
            rule(
                LIST_WATCH,
                CORE,
                &["persistentvolumeclaims", "persistentvolumes"],
            ),
            rule(READ, CORE, &["nodes"]),
            rule(PATCH_UPDATE, CORE, &["nodes/status"]),
            rule(LIST_WATCH, CORE, &["pods"]),
            EVENTS,
            rule(
                &["create", "delete", "get", "list", "watch"],
                STORAGE,
                &["volumeattachments"],
            ),
            rule(READ, STORAGE, &["csidrivers"]),
            rule(READ, STORAGE, &["csinodes"]),
        ],
    ),
    controller(
        "certificate-controller",
        &[
            rule(
                &["delete", "get", "list", "watch"],
                CERTIFICATES,
                &["certificatesigningrequests"],
            ),
            rule(
                UPDATE,
                CERTIFICATES,
                &[
                    "certificatesigningrequests/approval",
                    "certificatesigningrequests/status",
                ],
            ),
            named(
                &["approve"],
                CERTIFICATES,
                &["signers"],
                &["kubernetes.io/kube-apiserver-client-kubelet"],
            ),
            named(
                &["sign"],
                CERTIFICATES,
                &["signers"],
                &[
                    "kubernetes.io/kube-apiserver-client",
                    "kubernetes.io/kube-apiserver-client-kubelet",
                    "kubernetes.io/kubelet-serving",
                    "kubernetes.io/legacy-unknown",
                ],
            ),
            rule(CREATE, &["authorization.k8s.io"], &["subjectaccessreviews"]),
            EVENTS,
        ],
    ),
    // Upstream gives this one no events rule.
    controller(
        "clusterrole-aggregation-controller",
        &[rule(
            &["escalate", "get", "list", "patch", "update", "watch"],
            &["rbac.authorization.k8s.io"],
            &["clusterroles"],
        )],
    ),
    controller(
        "cronjob-controller",
        &[
            rule(READ_UPDATE, BATCH, &["cronjobs"]),
            rule(MANAGE, BATCH, &["jobs"]),
            rule(UPDATE, BATCH, &["cronjobs/status"]),
            rule(FINALIZE, BATCH, &["cronjobs/finalizers"]),
            rule(&["delete", "list", "watch"], CORE, &["pods"]),
            EVENTS,
        ],
    ),
    controller(
        "daemon-set-controller",
        &[
            rule(READ, APPS_EXTENSIONS, &["daemonsets"]),
            rule(UPDATE, APPS_EXTENSIONS, &["daemonsets/status"]),
            rule(FINALIZE, APPS_EXTENSIONS, &["daemonsets/finalizers"]),
            rule(LIST_WATCH, CORE, &["nodes"]),
            rule(CREATE_DELETE_LIST_PATCH_WATCH, CORE, &["pods"]),
            rule(CREATE, CORE, &["pods/binding"]),
            rule(MANAGE, APPS, &["controllerrevisions"]),
            EVENTS,
        ],
    ),
    controller(
        "deployment-controller",
        &[
            rule(READ_UPDATE, APPS_EXTENSIONS, &["deployments"]),
            rule(UPDATE, APPS_EXTENSIONS, &["deployments/status"]),
            rule(FINALIZE, APPS_EXTENSIONS, &["deployments/finalizers"]),
            rule(MANAGE, APPS_EXTENSIONS, &["replicasets"]),
            rule(READ_UPDATE, CORE, &["pods"]),
            EVENTS,
        ],
    ),
    controller(
        "disruption-controller",
        &[
            rule(READ, APPS_EXTENSIONS, &["deployments"]),
            rule(READ, APPS_EXTENSIONS, &["replicasets"]),
            rule(READ, CORE, &["replicationcontrollers"]),
            rule(READ, &["policy"], &["poddisruptionbudgets"]),
            rule(READ, APPS, &["statefulsets"]),
            rule(UPDATE, &["policy"], &["poddisruptionbudgets/status"]),
            rule(PATCH_UPDATE, CORE, &["pods/status"]),
            rule(GET, ALL, &["*/scale"]),
            EVENTS,
        ],
    ),
    controller(
        "endpoint-controller",
        &[
            rule(READ, CORE, &["pods", "services"]),
            rule(ENDPOINTS_WRITE, CORE, &["endpoints"]),
            rule(CREATE, CORE, &["endpoints/restricted"]),
            EVENTS,
        ],
    ),
    controller(
        "endpointslice-controller",
        &[
            rule(READ, CORE, &["nodes", "pods", "services"]),
            rule(FINALIZE, CORE, &["services/finalizers"]),
            rule(ENDPOINTS_WRITE, DISCOVERY, &["endpointslices"]),
            EVENTS,
        ],
    ),
    controller(
        "endpointslicemirroring-controller",
        &[
            rule(READ, CORE, &["endpoints", "services"]),
            rule(FINALIZE, CORE, &["services/finalizers"]),
            rule(FINALIZE, CORE, &["endpoints/finalizers"]),
            rule(ENDPOINTS_WRITE, DISCOVERY, &["endpointslices"]),
            EVENTS,
        ],
    ),
    controller(
        "ephemeral-volume-controller",
        &[
            rule(READ, CORE, &["pods"]),
            rule(FINALIZE, CORE, &["pods/finalizers"]),
            rule(
                &["create", "get", "list", "watch"],
                CORE,
                &["persistentvolumeclaims"],
            ),
            EVENTS,
        ],
    ),
    controller(
        "expand-controller",
        &[
            rule(
                &["get", "list", "patch", "update", "watch"],
                CORE,
                &["persistentvolumes"],
            ),
            rule(PATCH_UPDATE, CORE, &["persistentvolumeclaims/status"]),
            rule(READ, CORE, &["persistentvolumeclaims"]),
            EVENTS,
            rule(GET, CORE, &["services"]),
        ],
    ),
    controller(
        "generic-garbage-collector",
        &[
            rule(
                &["delete", "get", "list", "patch", "update", "watch"],
                ALL,
                ALL,
            ),
            EVENTS,
        ],
    ),
    controller(
        "horizontal-pod-autoscaler",
        &[
            rule(READ, &["autoscaling"], &["horizontalpodautoscalers"]),
            rule(
                UPDATE,
                &["autoscaling"],
                &["horizontalpodautoscalers/status"],
            ),
            rule(&["get", "update"], ALL, &["*/scale"]),
            rule(LIST_WATCH, CORE, &["pods"]),
            rule(READ, ALL, ALL),
            rule(LIST_WATCH, &["metrics.k8s.io"], &["pods"]),
            rule(READ, &["custom.metrics.k8s.io"], ALL),
            rule(READ, &["external.metrics.k8s.io"], ALL),
            EVENTS,
        ],
    ),
    controller(
        "job-controller",
        &[
            rule(
                &["get", "list", "patch", "update", "watch"],
                BATCH,
                &["jobs"],
            ),
            rule(UPDATE, BATCH, &["jobs/status"]),
            rule(FINALIZE, BATCH, &["jobs/finalizers"]),
            rule(CREATE_DELETE_LIST_PATCH_WATCH, CORE, &["pods"]),
            EVENTS,
        ],
    ),
    controller(
        "legacy-service-account-token-cleaner",
        &[
            named(
                GET,
                CORE,
                &["configmaps"],
                &["kube-apiserver-legacy-service-account-token-tracking"],
            ),
            rule(&["delete", "patch"], CORE, &["secrets"]),
        ],
    ),
    controller(
        "namespace-controller",
        &[
            rule(&["delete", "get", "list", "watch"], CORE, &["namespaces"]),
            rule(UPDATE, CORE, &["namespaces/finalize", "namespaces/status"]),
            rule(
                &["delete", "deletecollection", "get", "list", "watch"],
                ALL,
                ALL,
            ),
        ],
    ),
    controller(
        "node-controller",
        &[
            rule(
                &["delete", "get", "list", "patch", "update", "watch"],
                CORE,
                &["nodes"],
            ),
            rule(PATCH_UPDATE, CORE, &["nodes/status"]),
            rule(PATCH_UPDATE, CORE, &["pods/status"]),
            rule(&["delete", "get", "list", "watch"], CORE, &["pods"]),
            EVENTS,
        ],
    ),
    controller(
        "persistent-volume-binder",
        &[
            rule(
                &["create", "delete", "get", "list", "update", "watch"],
                CORE,
                &["persistentvolumes"],
            ),
            rule(UPDATE, CORE, &["persistentvolumes/status"]),
            rule(READ_UPDATE, CORE, &["persistentvolumeclaims"]),
            rule(UPDATE, CORE, &["persistentvolumeclaims/status"]),
            rule(
                &["create", "delete", "get", "list", "watch"],
                CORE,
                &["pods"],
            ),
            rule(READ, STORAGE, &["storageclasses"]),
            rule(LIST_WATCH, CORE, &["nodes"]),
            EVENTS,
            rule(&["watch"], CORE, &["events"]),
            rule(GET, CORE, &["services"]),
        ],
    ),
    controller(
        "pod-garbage-collector",
        &[
            rule(&["delete", "list", "watch"], CORE, &["pods"]),
            rule(READ, CORE, &["nodes"]),
            rule(&["patch"], CORE, &["pods/status"]),
        ],
    ),
    controller(
        "podcertificaterequestcleaner",
        &[rule(
            &["delete", "get", "list", "watch"],
            CERTIFICATES,
            &["podcertificaterequests"],
        )],
    ),
    controller(
        "pv-protection-controller",
        &[rule(READ_UPDATE, CORE, &["persistentvolumes"]), EVENTS],
    ),
    controller(
        "pvc-protection-controller",
        &[
            rule(READ_UPDATE, CORE, &["persistentvolumeclaims"]),
            rule(READ, CORE, &["pods"]),
            EVENTS,
        ],
    ),
    controller(
        "replicaset-controller",
        &[
            rule(READ_UPDATE, APPS_EXTENSIONS, &["replicasets"]),
            rule(UPDATE, APPS_EXTENSIONS, &["replicasets/status"]),
            rule(FINALIZE, APPS_EXTENSIONS, &["replicasets/finalizers"]),
            rule(CREATE_DELETE_LIST_PATCH_WATCH, CORE, &["pods"]),
            EVENTS,
        ],
    ),
    controller(
        "replication-controller",
        &[
            rule(READ_UPDATE, CORE, &["replicationcontrollers"]),
            rule(UPDATE, CORE, &["replicationcontrollers/status"]),
            rule(FINALIZE, CORE, &["replicationcontrollers/finalizers"]),
            rule(CREATE_DELETE_LIST_PATCH_WATCH, CORE, &["pods"]),
            EVENTS,
        ],
    ),
    controller(
        "resource-claim-controller",
        &[
            rule(READ, CORE, &["pods"]),
            rule(FINALIZE, CORE, &["pods/finalizers"]),
            rule(
                &["create", "delete", "get", "list", "watch"],
                RESOURCE,
                &["resourceclaims"],
            ),
            rule(
                PATCH_UPDATE,
                RESOURCE,
                &["resourceclaims", "resourceclaims/status"],
            ),
            rule(PATCH_UPDATE, CORE, &["pods/status"]),
            EVENTS,
        ],
    ),
    controller(
        "resourcequota-controller",
        &[
            rule(LIST_WATCH, ALL, ALL),
            rule(UPDATE, CORE, &["resourcequotas/status"]),
            EVENTS,
        ],
    ),
    controller(
        "root-ca-cert-publisher",
        &[rule(&["create", "update"], CORE, &["configmaps"]), EVENTS],
    ),
    controller(
        "route-controller",
        &[
            rule(LIST_WATCH, CORE, &["nodes"]),
            rule(&["patch"], CORE, &["nodes/status"]),
            EVENTS,
        ],
    ),
    controller(
        "selinux-warning-controller",
        &[
            EVENTS,
            rule(READ, CORE, &["persistentvolumes"]),
            rule(READ, CORE, &["persistentvolumeclaims"]),
            rule(READ, CORE, &["pods"]),
            rule(READ, STORAGE, &["csidrivers"]),
        ],
    ),
    controller(
        "service-account-controller",
        &[rule(CREATE, CORE, &["serviceaccounts"]), EVENTS],
    ),
    controller(
        "service-cidrs-controller",
        &[
            rule(
                &["get", "list", "patch", "update", "watch"],
                NETWORKING,
                &["servicecidrs"],
            ),
            rule(PATCH_UPDATE, NETWORKING, &["servicecidrs/finalizers"]),
            rule(PATCH_UPDATE, NETWORKING, &["servicecidrs/status"]),
            rule(READ, NETWORKING, &["ipaddresses"]),
            EVENTS,
        ],
    ),
    controller(
        "service-controller",
        &[
            rule(READ, CORE, &["services"]),
            rule(PATCH_UPDATE, CORE, &["services/status"]),
            rule(LIST_WATCH, CORE, &["nodes"]),
            EVENTS,
        ],
    ),
    controller(
        "statefulset-controller",
        &[
            rule(LIST_WATCH, CORE, &["pods"]),
            rule(READ, APPS, &["statefulsets"]),
            rule(UPDATE, APPS, &["statefulsets/status"]),
            rule(FINALIZE, APPS, &["statefulsets/finalizers"]),
            rule(
                &["create", "delete", "get", "patch", "update"],
                CORE,
                &["pods"],
            ),
            rule(MANAGE, APPS, &["controllerrevisions"]),
            rule(
                &["create", "get", "list", "watch"],
                CORE,
                &["persistentvolumeclaims"],
            ),
            EVENTS,
            rule(&["delete", "update"], CORE, &["persistentvolumeclaims"]),
            rule(FINALIZE, CORE, &["pods/finalizers"]),
        ],
    ),
    controller(
        "ttl-after-finished-controller",
        &[
            rule(&["delete", "get", "list", "watch"], BATCH, &["jobs"]),
            EVENTS,
        ],
    ),
    controller(
        "ttl-controller",
        &[
            rule(&["list", "patch", "update", "watch"], CORE, &["nodes"]),
            EVENTS,
        ],
    ),
    controller(
        "validatingadmissionpolicy-status-controller",
        &[
            rule(
                READ,
                &["admissionregistration.k8s.io"],
                &["validatingadmissionpolicies"],
            ),
            rule(
                &["get", "patch", "update"],
                &["admissionregistration.k8s.io"],
                &["validatingadmissionpolicies/status"],
            ),
            EVENTS,
        ],
    ),
];
