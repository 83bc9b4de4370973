//! Cluster identity and bootstrap: the control plane's PKI (a CA, the apiserver's serving
//! certificate, client certificates), a node's serving certificate, the kubeconfigs that carry
//! them, as kubeadm's `init` phases `certs` and `kubeconfig` make them, and the TLS
//! configurations built from them; later also bootstrap tokens and the join flows that use
//! them.
//!
//! Only files and crypto live here. No apiserver, store or HTTP code: the server calls in to
//! get PEM, and this crate must not depend on any other r8s crate, so agents and tools can use
//! it without pulling in the control plane.

mod atomic_file;
mod certs;
mod discovery;
mod error;
mod kubeconfig;
mod node_pki;
mod server_pki;
mod service_account_key;
pub mod tls;

pub use certs::{
    APISERVER_COMMON_NAME, CA_COMMON_NAME, CA_VALIDITY, LEAF_VALIDITY, Pem, ServingNames,
    ca_cert_hash, issue_client_cert,
};
pub use discovery::discover_ca;
pub use error::PkiError;
pub use kubeconfig::{CLUSTER_NAME, write_kubeconfig};
pub use node_pki::{
    NODES_GROUP, NodeCsr, NodeServing, cert_not_after, cert_validity, ensure_node_serving_cert,
    node_csr,
};
pub use server_pki::{
    ADMIN_COMMON_NAME, ADMIN_ORGANIZATION, IssueReason, Issued, KUBELET_CLIENT_COMMON_NAME,
    RENEW_BEFORE, ServerPki, ensure_server_pki,
};
pub use service_account_key::{ServiceAccountKey, ensure_service_account_key};
