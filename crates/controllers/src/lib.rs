//! The r8s controller manager: one module per controller, each a `reconcile(object, ctx)` over
//! informers (kube-rs's `Controller`), idempotent and reading the world from the API, never
//! from memory of past runs.
//!
//! Controllers talk to the API server only through the Kubernetes API (a kube-rs `Client`), like
//! upstream's kube-controller-manager. This crate must not use the store or the API server's
//! internals; it may use `r8s_api` (the catalogue).

pub mod namespace;

use kube::Client;

/// Runs every controller until one fails.
pub async fn run(client: Client) -> anyhow::Result<()> {
    namespace::run(client).await
}
