//! Helpers for checking r8s-cluster's output with the real openssl and kubectl.

#![allow(dead_code)] // each test binary uses its own share of these helpers

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use r8s_cluster::ServingNames;

/// Names as the server would pass them: loopback plus one advertise IP and the service IP.
pub fn names() -> ServingNames {
    ServingNames::for_apiserver(&[ip("192.0.2.10")], ip("10.96.0.1"))
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Runs `openssl <args>` and returns stdout; panics with stderr if it fails.
pub fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `openssl x509 -noout <args> -in <cert>`.
pub fn x509(cert: &Path, args: &[&str]) -> String {
    let cert = cert.to_str().unwrap();
    let mut all = vec!["x509", "-noout", "-in", cert];
    all.extend_from_slice(args);
    openssl(&all)
}

/// The directory holding the real kubectl: `$R8S_TOOLS_BIN`, else what
/// scripts/fetch-k8s-tools.sh reports (it only downloads when its cache is empty).
pub fn tools_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("R8S_TOOLS_BIN") {
        return PathBuf::from(dir);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fetch-k8s-tools.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run fetch-k8s-tools.sh");
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("bin dir on the last line")
            .trim(),
    )
}
