//! Generates the CRI v1 client from `proto/cri.proto` and the gRPC health protocol (client for
//! probes, server for their tests) from `proto/health.proto`, and builds the sandbox ("pause")
//! program that r8s packs into its own pause image.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    // Read at run time: a build script binary may be reused for a checkout at another path.
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let proto = manifest_dir.join("proto").join("cri.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&[proto.as_path()], &[proto.parent().expect("proto dir")])
        .expect("cannot compile proto/cri.proto (is protobuf-compiler installed?)");
    let health = manifest_dir.join("proto").join("health.proto");
    println!("cargo:rerun-if-changed={}", health.display());
    tonic_prost_build::configure()
        .compile_protos(&[health.as_path()], &[health.parent().expect("proto dir")])
        .expect("cannot compile proto/health.proto");

    build_pause(
        &manifest_dir.join("pause").join("pause.c"),
        &out_dir.join("pause"),
    );
}

/// The pause program must run in an image with nothing else in it: link it statically.
fn build_pause(source: &Path, out: &Path) {
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-env-changed=CC");
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let status = Command::new(&cc)
        .args(["-static", "-Os", "-s", "-o"])
        .arg(out)
        .arg(source)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cc:?} to build the pause program: {e}"));
    assert!(
        status.success(),
        "{cc:?} failed to build {}",
        source.display()
    );
}
