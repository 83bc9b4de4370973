//! `r8s images import FILE…`: loads docker-archive and OCI-archive tarballs into the node's
//! containerd, where pods find them (for air-gapped nodes).

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum ImagesCommand {
    /// Import image tarballs (docker save / OCI archives) into the node's runtime.
    Import(ImportArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    /// The agent's data dir (its containerd socket is `<data-dir>/agent/containerd/containerd.sock`).
    #[arg(long, default_value = "/var/lib/r8s")]
    data_dir: PathBuf,
    /// The tarballs.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub async fn run(command: ImagesCommand) -> anyhow::Result<()> {
    match command {
        ImagesCommand::Import(args) => {
            let socket = args.data_dir.join("agent/containerd/containerd.sock");
            anyhow::ensure!(
                socket.exists(),
                "no node agent runs with data dir {} (no socket at {})",
                args.data_dir.display(),
                socket.display()
            );
            r8s_kubelet::images::import(&socket, &args.files).await?;
            for file in &args.files {
                println!("imported {}", file.display());
            }
            Ok(())
        }
    }
}
