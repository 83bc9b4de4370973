//! The data: every resource a default kube-apiserver 1.37 serves (GA groups, plus the GA
//! resources whose feature gates are on by default), in discovery order.
//!
//! Sources, all upstream kubernetes/kubernetes: `api/discovery/*.json` (verbs, short names,
//! categories, subresources and their kinds), `pkg/registry/**/storage/storage.go` (short names,
//! categories, status subresources of the resources new since those files were generated),
//! the aggregator's `DefaultGenericAPIServicePriorities` (group order) and the 1.37 feature gate
//! defaults (ClusterTrustBundle, PodCertificateRequest, DRADeviceTaintRules,
//! StorageVersionMigrator and MutatingAdmissionPolicy are on by default).

mod vocabulary;

use crate::resource::Resource;
use vocabulary::*;

/// The groups other than core, in `/apis` order, each with its versions newest-preferred first.
pub(crate) const GROUPS: &[(&str, &[&str])] = &[
    ("apiregistration.k8s.io", &["v1"]),
    ("apps", &["v1"]),
    ("events.k8s.io", &["v1"]),
    ("authentication.k8s.io", &["v1"]),
    ("authorization.k8s.io", &["v1"]),
    ("autoscaling", &["v2", "v1"]),
    ("batch", &["v1"]),
    ("certificates.k8s.io", &["v1"]),
    ("networking.k8s.io", &["v1"]),
    ("policy", &["v1"]),
    ("rbac.authorization.k8s.io", &["v1"]),
    ("storage.k8s.io", &["v1"]),
    ("admissionregistration.k8s.io", &["v1"]),
    ("apiextensions.k8s.io", &["v1"]),
    ("scheduling.k8s.io", &["v1"]),
    ("coordination.k8s.io", &["v1"]),
    ("node.k8s.io", &["v1"]),
    ("discovery.k8s.io", &["v1"]),
    ("flowcontrol.apiserver.k8s.io", &["v1"]),
    ("resource.k8s.io", &["v1"]),
    ("storagemigration.k8s.io", &["v1"]),
    // Built in, where upstream aggregates metrics-server's.
    ("metrics.k8s.io", &["v1beta1"]),
];

/// Core first, then the groups in [`GROUPS`] order; within a group/version, by plural.
pub(crate) static CATALOGUE: &[Resource] = &[
    // core v1
    CORE_V1
        .resource("Binding", "bindings", "binding", NAMESPACED)
        .with_verbs(CREATE),
    CORE_V1
        .resource(
            "ComponentStatus",
            "componentstatuses",
            "componentstatus",
            CLUSTER,
        )
        .with_verbs(GET_LIST)
        .with_short_names(&["cs"]),
    CORE_V1
        .resource("ConfigMap", "configmaps", "configmap", NAMESPACED)
        .with_short_names(&["cm"]),
    CORE_V1
        .resource("Endpoints", "endpoints", "endpoints", NAMESPACED)
        .with_short_names(&["ep"]),
    CORE_V1
        .resource("Event", "events", "event", NAMESPACED)
        .with_short_names(&["ev"]),
    CORE_V1
        .resource("LimitRange", "limitranges", "limitrange", NAMESPACED)
        .with_short_names(&["limits"]),
    CORE_V1
        .resource("Namespace", "namespaces", "namespace", CLUSTER)
        .with_verbs(CRUD_NO_DELETECOLLECTION)
        .with_short_names(&["ns"])
        .with_subresources(&[
            CORE_V1.sub("finalize", "Namespace", UPDATE),
            CORE_V1.status("Namespace"),
        ]),
    CORE_V1
        .resource("Node", "nodes", "node", CLUSTER)
        .with_short_names(&["no"])
        .with_subresources(&[
            CORE_V1.sub("proxy", "NodeProxyOptions", PROXY),
            CORE_V1.status("Node"),
        ]),
    CORE_V1
        .resource(
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            NAMESPACED,
        )
        .with_short_names(&["pvc"])
        .with_subresources(&[CORE_V1.status("PersistentVolumeClaim")]),
    CORE_V1
        .resource(
            "PersistentVolume",
            "persistentvolumes",
            "persistentvolume",
            CLUSTER,
        )
        .with_short_names(&["pv"])
        .with_subresources(&[CORE_V1.status("PersistentVolume")]),
    CORE_V1
        .resource("Pod", "pods", "pod", NAMESPACED)
        .with_short_names(&["po"])
        .with_categories(ALL)
        .with_subresources(&[
            CORE_V1.sub("attach", "PodAttachOptions", CONNECT),
            CORE_V1.sub("binding", "Binding", CREATE),
            CORE_V1.sub("ephemeralcontainers", "Pod", GET_PATCH_UPDATE),
            POLICY_V1.sub("eviction", "Eviction", CREATE),
            CORE_V1.sub("exec", "PodExecOptions", CONNECT),
            CORE_V1.sub("log", "Pod", GET),
            CORE_V1.sub("portforward", "PodPortForwardOptions", CONNECT),
            CORE_V1.sub("proxy", "PodProxyOptions", PROXY),
            CORE_V1.sub("resize", "Pod", GET_PATCH_UPDATE),
            CORE_V1.status("Pod"),
        ]),
    CORE_V1.resource("PodTemplate", "podtemplates", "podtemplate", NAMESPACED),
    CORE_V1
        .resource(
            "ReplicationController",
            "replicationcontrollers",
            "replicationcontroller",
            NAMESPACED,
        )
        .with_short_names(&["rc"])
        .with_categories(ALL)
        .with_subresources(&[SCALE, CORE_V1.status("ReplicationController")]),
    CORE_V1
        .resource(
            "ResourceQuota",
            "resourcequotas",
            "resourcequota",
            NAMESPACED,
        )
        .with_short_names(&["quota"])
        .with_subresources(&[CORE_V1.status("ResourceQuota")]),
    CORE_V1.resource("Secret", "secrets", "secret", NAMESPACED),
    CORE_V1
        .resource(
            "ServiceAccount",
            "serviceaccounts",
            "serviceaccount",
            NAMESPACED,
        )
        .with_short_names(&["sa"])
        .with_subresources(&[AUTHENTICATION_V1.sub("token", "TokenRequest", CREATE)]),
    CORE_V1
        .resource("Service", "services", "service", NAMESPACED)
        .with_short_names(&["svc"])
        .with_categories(ALL)
        .with_subresources(&[
            CORE_V1.sub("proxy", "ServiceProxyOptions", PROXY),
            CORE_V1.status("Service"),
        ]),
    // apiregistration.k8s.io/v1
    APIREGISTRATION_V1
        .resource("APIService", "apiservices", "apiservice", CLUSTER)
        .with_categories(API_EXTENSIONS)
        .with_subresources(&[APIREGISTRATION_V1.status("APIService")]),
    // apps/v1
    APPS_V1.resource(
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        NAMESPACED,
    ),
    APPS_V1
        .resource("DaemonSet", "daemonsets", "daemonset", NAMESPACED)
        .with_short_names(&["ds"])
        .with_categories(ALL)
        .with_subresources(&[APPS_V1.status("DaemonSet")]),
    APPS_V1
        .resource("Deployment", "deployments", "deployment", NAMESPACED)
        .with_short_names(&["deploy"])
        .with_categories(ALL)
        .with_subresources(&[SCALE, APPS_V1.status("Deployment")]),
    APPS_V1
        .resource("ReplicaSet", "replicasets", "replicaset", NAMESPACED)
        .with_short_names(&["rs"])
        .with_categories(ALL)
        .with_subresources(&[SCALE, APPS_V1.status("ReplicaSet")]),
    APPS_V1
        .resource("StatefulSet", "statefulsets", "statefulset", NAMESPACED)
        .with_short_names(&["sts"])
        .with_categories(ALL)
        .with_subresources(&[SCALE, APPS_V1.status("StatefulSet")]),
    // events.k8s.io/v1: the same objects as core events, served in the newer shape
    EVENTS_V1
        .resource("Event", "events", "event", NAMESPACED)
        .with_short_names(&["ev"])
        .stored_as(CORE_V1, "events"),
    // authentication.k8s.io/v1: create-only reviews, never stored
    AUTHENTICATION_V1
        .resource(
            "SelfSubjectReview",
            "selfsubjectreviews",
            "selfsubjectreview",
            CLUSTER,
        )
        .with_verbs(CREATE),
    AUTHENTICATION_V1
        .resource("TokenReview", "tokenreviews", "tokenreview", CLUSTER)
        .with_verbs(CREATE),
    // authorization.k8s.io/v1: create-only reviews, never stored
    AUTHORIZATION_V1
        .resource(
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            "localsubjectaccessreview",
            NAMESPACED,
        )
        .with_verbs(CREATE),
    AUTHORIZATION_V1
        .resource(
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            "selfsubjectaccessreview",
            CLUSTER,
        )
        .with_verbs(CREATE),
    AUTHORIZATION_V1
        .resource(
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            "selfsubjectrulesreview",
            CLUSTER,
        )
        .with_verbs(CREATE),
    AUTHORIZATION_V1
        .resource(
            "SubjectAccessReview",
            "subjectaccessreviews",
            "subjectaccessreview",
            CLUSTER,
        )
        .with_verbs(CREATE),
    // autoscaling/v2 and autoscaling/v1: one resource, two shapes, stored as v2
    AUTOSCALING_V2
        .resource(
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            NAMESPACED,
        )
        .with_short_names(&["hpa"])
        .with_categories(ALL)
        .with_subresources(&[AUTOSCALING_V2.status("HorizontalPodAutoscaler")]),
    AUTOSCALING_V1
        .resource(
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            NAMESPACED,
        )
        .with_short_names(&["hpa"])
        .with_categories(ALL)
        .with_subresources(&[AUTOSCALING_V1.status("HorizontalPodAutoscaler")])
        .stored_as(AUTOSCALING_V2, "horizontalpodautoscalers"),
    // batch/v1
    BATCH_V1
        .resource("CronJob", "cronjobs", "cronjob", NAMESPACED)
        .with_short_names(&["cj"])
        .with_categories(ALL)
        .with_subresources(&[BATCH_V1.status("CronJob")]),
    BATCH_V1
        .resource("Job", "jobs", "job", NAMESPACED)
        .with_categories(ALL)
        .with_subresources(&[BATCH_V1.status("Job")]),
    // certificates.k8s.io/v1
    CERTIFICATES_V1
        .resource(
            "CertificateSigningRequest",
            "certificatesigningrequests",
            "certificatesigningrequest",
            CLUSTER,
        )
        .with_short_names(&["csr"])
        .with_subresources(&[
            CERTIFICATES_V1.sub("approval", "CertificateSigningRequest", GET_PATCH_UPDATE),
            CERTIFICATES_V1.status("CertificateSigningRequest"),
        ]),
    CERTIFICATES_V1.resource(
        "ClusterTrustBundle",
        "clustertrustbundles",
        "clustertrustbundle",
        CLUSTER,
    ),
    CERTIFICATES_V1
        .resource(
            "PodCertificateRequest",
            "podcertificaterequests",
            "podcertificaterequest",
            NAMESPACED,
        )
        .with_subresources(&[CERTIFICATES_V1.status("PodCertificateRequest")]),
    // networking.k8s.io/v1
    NETWORKING_V1.resource("IngressClass", "ingressclasses", "ingressclass", CLUSTER),
    NETWORKING_V1
        .resource("Ingress", "ingresses", "ingress", NAMESPACED)
        .with_short_names(&["ing"])
        .with_subresources(&[NETWORKING_V1.status("Ingress")]),
    NETWORKING_V1
        .resource("IPAddress", "ipaddresses", "ipaddress", CLUSTER)
        .with_short_names(&["ip"]),
    NETWORKING_V1
        .resource(
            "NetworkPolicy",
            "networkpolicies",
            "networkpolicy",
            NAMESPACED,
        )
        .with_short_names(&["netpol"]),
    NETWORKING_V1
        .resource("ServiceCIDR", "servicecidrs", "servicecidr", CLUSTER)
        .with_subresources(&[NETWORKING_V1.status("ServiceCIDR")]),
    // policy/v1
    POLICY_V1
        .resource(
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            NAMESPACED,
        )
        .with_short_names(&["pdb"])
        .with_subresources(&[POLICY_V1.status("PodDisruptionBudget")]),
    // rbac.authorization.k8s.io/v1
    RBAC_V1.resource(
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        CLUSTER,
    ),
    RBAC_V1.resource("ClusterRole", "clusterroles", "clusterrole", CLUSTER),
    RBAC_V1.resource("RoleBinding", "rolebindings", "rolebinding", NAMESPACED),
    RBAC_V1.resource("Role", "roles", "role", NAMESPACED),
    // storage.k8s.io/v1
    STORAGE_V1.resource("CSIDriver", "csidrivers", "csidriver", CLUSTER),
    STORAGE_V1
        .resource("CSINode", "csinodes", "csinode", CLUSTER)
        .with_subresources(&[STORAGE_V1.status("CSINode")]),
    STORAGE_V1.resource(
        "CSIStorageCapacity",
        "csistoragecapacities",
        "csistoragecapacity",
        NAMESPACED,
    ),
    STORAGE_V1
        .resource("StorageClass", "storageclasses", "storageclass", CLUSTER)
        .with_short_names(&["sc"]),
    STORAGE_V1
        .resource(
            "VolumeAttachment",
            "volumeattachments",
            "volumeattachment",
            CLUSTER,
        )
        .with_subresources(&[STORAGE_V1.status("VolumeAttachment")]),
    STORAGE_V1
        .resource(
            "VolumeAttributesClass",
            "volumeattributesclasses",
            "volumeattributesclass",
            CLUSTER,
        )
        .with_short_names(&["vac"]),
    // admissionregistration.k8s.io/v1
    ADMISSIONREGISTRATION_V1
        .resource(
            "MutatingAdmissionPolicy",
            "mutatingadmissionpolicies",
            "mutatingadmissionpolicy",
            CLUSTER,
        )
        .with_categories(API_EXTENSIONS),
    ADMISSIONREGISTRATION_V1
        .resource(
            "MutatingAdmissionPolicyBinding",
            "mutatingadmissionpolicybindings",
            "mutatingadmissionpolicybinding",
            CLUSTER,
        )
        .with_categories(API_EXTENSIONS),
    ADMISSIONREGISTRATION_V1
        .resource(
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            "mutatingwebhookconfiguration",
            CLUSTER,
        )
        .with_categories(API_EXTENSIONS),
    ADMISSIONREGISTRATION_V1
        .resource(
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            "validatingadmissionpolicy",
            CLUSTER,
        )
        .with_categories(API_EXTENSIONS)
        .with_subresources(&[ADMISSIONREGISTRATION_V1.status("ValidatingAdmissionPolicy")]),
    ADMISSIONREGISTRATION_V1
        .resource(
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            "validatingadmissionpolicybinding",
            CLUSTER,
        )
        .with_categories(API_EXTENSIONS),
    ADMISSIONREGISTRATION_V1
        .resource(
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            "validatingwebhookconfiguration",
            CLUSTER,
        )
        .with_categories(API_EXTENSIONS),
    // apiextensions.k8s.io/v1
    APIEXTENSIONS_V1
        .resource(
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "customresourcedefinition",
            CLUSTER,
        )
        .with_short_names(&["crd", "crds"])
        .with_categories(API_EXTENSIONS)
        .with_subresources(&[APIEXTENSIONS_V1.status("CustomResourceDefinition")]),
    // scheduling.k8s.io/v1
    SCHEDULING_V1
        .resource("PriorityClass", "priorityclasses", "priorityclass", CLUSTER)
        .with_short_names(&["pc"]),
    // coordination.k8s.io/v1
    COORDINATION_V1.resource("Lease", "leases", "lease", NAMESPACED),
    // node.k8s.io/v1
    NODE_V1.resource("RuntimeClass", "runtimeclasses", "runtimeclass", CLUSTER),
    // discovery.k8s.io/v1
    DISCOVERY_V1.resource(
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        NAMESPACED,
    ),
    // flowcontrol.apiserver.k8s.io/v1
    FLOWCONTROL_V1
        .resource("FlowSchema", "flowschemas", "flowschema", CLUSTER)
        .with_subresources(&[FLOWCONTROL_V1.status("FlowSchema")]),
    FLOWCONTROL_V1
        .resource(
            "PriorityLevelConfiguration",
            "prioritylevelconfigurations",
            "prioritylevelconfiguration",
            CLUSTER,
        )
        .with_subresources(&[FLOWCONTROL_V1.status("PriorityLevelConfiguration")]),
    // resource.k8s.io/v1 (dynamic resource allocation)
    RESOURCE_V1.resource("DeviceClass", "deviceclasses", "deviceclass", CLUSTER),
    RESOURCE_V1
        .resource(
            "DeviceTaintRule",
            "devicetaintrules",
            "devicetaintrule",
            CLUSTER,
        )
        .with_subresources(&[RESOURCE_V1.status("DeviceTaintRule")]),
    RESOURCE_V1
        .resource(
            "ResourceClaim",
            "resourceclaims",
            "resourceclaim",
            NAMESPACED,
        )
        .with_subresources(&[RESOURCE_V1.status("ResourceClaim")]),
    RESOURCE_V1.resource(
        "ResourceClaimTemplate",
        "resourceclaimtemplates",
        "resourceclaimtemplate",
        NAMESPACED,
    ),
    RESOURCE_V1.resource("ResourceSlice", "resourceslices", "resourceslice", CLUSTER),
    // storagemigration.k8s.io/v1
    STORAGEMIGRATION_V1
        .resource(
            "StorageVersionMigration",
            "storageversionmigrations",
            "storageversionmigration",
            CLUSTER,
        )
        .with_subresources(&[STORAGEMIGRATION_V1.status("StorageVersionMigration")]),
    // metrics.k8s.io/v1beta1: read-only usage from the kubelets, never stored
    METRICS_V1BETA1
        .resource("NodeMetrics", "nodes", "nodemetrics", CLUSTER)
        .with_verbs(GET_LIST),
    METRICS_V1BETA1
        .resource("PodMetrics", "pods", "podmetrics", NAMESPACED)
        .with_verbs(GET_LIST),
];
