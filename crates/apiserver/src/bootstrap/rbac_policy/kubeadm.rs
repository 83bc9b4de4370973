//! What `kubeadm init` adds to the default policy so nodes can join with a bootstrap token
//! (`r8s server` plays kubeadm init): bootstrappers may create CSRs and have their kubelet
//! client CSRs approved, and joined nodes may renew their own client certificates. And what
//! r8s's agent runs besides the kubelet under the node's identity, where a kubeadm cluster
//! runs kube-proxy, CoreDNS and an ingress controller with accounts of their own: the service
//! proxy, the cluster DNS and the ingress controller.

use super::*;

use Subject::Group;

/// The group `r8s token create` puts its tokens in, as kubeadm names its default join token's.
pub const DEFAULT_NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
const DEFAULT_NODE_TOKEN: Subject = Group(DEFAULT_NODE_TOKEN_GROUP);

const NODES: Subject = Group("system:nodes");

pub static CLUSTER_ROLES: &[Role] = &[
    role("kubeadm:get-nodes", &[rule(&["get"], CORE, &["nodes"])]),
    // What CoreDNS's `system:coredns` role allows.
    role(
        "r8s:node-dns",
        &[
            rule(
                &["list", "watch"],
                CORE,
                &["services", "namespaces", "endpoints"],
            ),
            rule(
                &["list", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
        ],
    ),
    role(
        "r8s:node-ingress",
        &[
            rule(
                &["list", "watch"],
                &["networking.k8s.io"],
                &["ingresses", "ingressclasses"],
            ),
            rule(&["create"], &["networking.k8s.io"], &["ingressclasses"]),
            rule(
                &["patch", "update"],
                &["networking.k8s.io"],
                &["ingresses/status"],
            ),
            rule(&["list", "watch"], CORE, &["secrets", "services"]),
            rule(
                &["list", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
        ],
    ),
];

pub static CLUSTER_ROLE_BINDINGS: &[Binding] = &[
    cluster_binding(
        "kubeadm:get-nodes",
        "kubeadm:get-nodes",
        &[DEFAULT_NODE_TOKEN],
    ),
    cluster_binding(
        "kubeadm:kubelet-bootstrap",
        "system:node-bootstrapper",
        &[DEFAULT_NODE_TOKEN],
    ),
    cluster_binding(
        "kubeadm:node-autoapprove-bootstrap",
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        &[DEFAULT_NODE_TOKEN],
    ),
    cluster_binding(
        "kubeadm:node-autoapprove-certificate-rotation",
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        &[NODES],
    ),
    cluster_binding("r8s:node-proxier", "system:node-proxier", &[NODES]),
    cluster_binding("r8s:node-dns", "r8s:node-dns", &[NODES]),
    cluster_binding("r8s:node-ingress", "r8s:node-ingress", &[NODES]),
];
