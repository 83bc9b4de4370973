//! The node agent: a kubelet that speaks CRI v1 to a container runtime (by default a containerd
//! it starts and supervises itself), registers its Node, runs the pods bound to it, reports
//! their status and serves the kubelet API (container logs) to the API server.
//!
//! A node-side crate: it talks to the control plane only through the Kubernetes API, and must
//! never import control-plane crates (the store, the API server, controllers, the scheduler).

pub mod agent;
pub mod cleanup;
pub mod cni;
pub mod containerd;
pub mod cri;
pub mod csr;
pub mod events;
pub mod images;
pub mod logs;
pub mod node;
pub mod pods;
pub mod probes;
pub mod rotation;
pub mod server;
pub mod stats;
pub mod volumes;

pub use agent::{Agent, AgentConfig, ServingTls, detect_node_ip};
pub use server::KubeletTls;

/// The field manager of the kubelet's writes, as upstream's kubelet names itself.
pub const FIELD_MANAGER: &str = "kubelet";
