//! What `kubeadm init` adds to the default policy so nodes can join with a bootstrap token
//! (`r8s server` plays kubeadm init): bootstrappers may create CSRs and have their kubelet
//! client CSRs approved, and joined nodes may renew their own client certificates.

use super::*;

use Subject::Group;

/// The group `r8s token create` puts its tokens in, as kubeadm names its default join token's.
pub const DEFAULT_NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
const DEFAULT_NODE_TOKEN: Subject = Group(DEFAULT_NODE_TOKEN_GROUP);

pub static CLUSTER_ROLES: &[Role] = &[role(
    "kubeadm:get-nodes",
    &[rule(&["get"], CORE, &["nodes"])],
)];

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
        &[Group("system:nodes")],
    ),
];
