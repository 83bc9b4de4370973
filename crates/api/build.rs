//! Compiles the upstream Kubernetes `.proto` files in `proto/` into one `FileDescriptorSet`
//! that `src/protobuf` embeds: the schema of the protobuf wire format, read at run time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

fn main() {
    // Read at run time: a build script binary may be reused for a checkout at another path.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let proto_dir = Path::new(&manifest_dir).join("proto");
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    println!("cargo:rerun-if-env-changed=PROTOC");

    let mut files = Vec::new();
    collect_protos(&proto_dir, &mut files);
    files.sort();

    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("kubernetes.fds");
    // PROTOC lets a machine without protobuf-compiler on PATH point at its own protoc.
    let protoc = env::var_os("PROTOC").unwrap_or_else(|| "protoc".into());
    let status = Command::new(&protoc)
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", out.display()))
        .arg(format!("--proto_path={}", proto_dir.display()))
        .args(&files)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; install protobuf-compiler (scripts/deps.sh) or set PROTOC",
                protoc.to_string_lossy()
            )
        });
    assert!(
        status.success(),
        "protoc failed to compile {}",
        proto_dir.display()
    );
}

fn collect_protos(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("proto/ is readable") {
        let path = entry.expect("proto/ is readable").path();
        if path.is_dir() {
            collect_protos(&path, files);
        } else if path.extension().is_some_and(|e| e == "proto") {
            files.push(path);
        }
    }
}
