//! `r8s server`: the control plane. Today it brings up the store; the API server, scheduler
//! and controllers come with their issues.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

#[derive(Args)]
pub struct ServerArgs {
    /// Where the server keeps its state.
    #[arg(long, default_value = "/var/lib/r8s")]
    data_dir: PathBuf,
    /// etcd cluster to use instead of the embedded store: etcd://HOST:PORT[,HOST:PORT…]
    #[arg(long)]
    datastore_endpoint: Option<String>,
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let store_dir = args.data_dir.join("server").join("db");
    let store = r8s_store::open(args.datastore_endpoint.as_deref(), &store_dir)
        .await
        .context("cannot open the store")?;
    let revision = store.current_revision().await?;
    let location = match &args.datastore_endpoint {
        Some(endpoint) => endpoint.clone(),
        None => store_dir
            .join(r8s_store::embedded::DB_FILE)
            .display()
            .to_string(),
    };
    println!("store ready: {location} at revision {revision}");
    bail!("the API server is not built yet, so there is nothing to serve; the store above is ready")
}
