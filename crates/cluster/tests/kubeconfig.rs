//! `write_kubeconfig`, read back by the real kubectl.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{names, tools_bin};
use r8s_cluster::{ensure_server_pki, write_kubeconfig};

#[test]
fn kubectl_reads_the_kubeconfig_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = ensure_server_pki(&tmp.path().join("tls"), &names()).unwrap();
    let path = tmp.path().join("admin.kubeconfig");
    write_kubeconfig(
        &path,
        "https://127.0.0.1:6443",
        &pki.ca.cert,
        "kubernetes-admin",
        &pki.admin,
    )
    .unwrap();

    let out = Command::new(tools_bin().join("kubectl"))
        .args(["config", "view", "--raw", "-o", "json", "--kubeconfig"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(config["current-context"], "kubernetes-admin@r8s");
    assert_eq!(config["contexts"][0]["context"]["cluster"], "r8s");
    assert_eq!(config["contexts"][0]["context"]["user"], "kubernetes-admin");
    let cluster = &config["clusters"][0];
    assert_eq!(cluster["name"], "r8s");
    assert_eq!(cluster["cluster"]["server"], "https://127.0.0.1:6443");
    let decode = |v: &serde_json::Value| {
        String::from_utf8(STANDARD.decode(v.as_str().unwrap()).unwrap()).unwrap()
    };
    let ca_crt = fs::read_to_string(tmp.path().join("tls/ca.crt")).unwrap();
    assert_eq!(
        decode(&cluster["cluster"]["certificate-authority-data"]),
        ca_crt
    );
    let user = &config["users"][0];
    assert_eq!(user["name"], "kubernetes-admin");
    assert_eq!(
        decode(&user["user"]["client-certificate-data"]),
        pki.admin.cert
    );
    assert_eq!(decode(&user["user"]["client-key-data"]), pki.admin.key);
}

#[test]
fn kubeconfig_is_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = ensure_server_pki(&tmp.path().join("tls"), &names()).unwrap();
    let path = tmp.path().join("admin.kubeconfig");
    write_kubeconfig(
        &path,
        "https://127.0.0.1:6443",
        &pki.ca.cert,
        "kubernetes-admin",
        &pki.admin,
    )
    .unwrap();

    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn rewriting_a_kubeconfig_replaces_it_and_leaves_no_temp_files() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = ensure_server_pki(&tmp.path().join("tls"), &names()).unwrap();
    let path = tmp.path().join("admin.kubeconfig");
    for url in ["https://127.0.0.1:6443", "https://192.0.2.10:6443"] {
        write_kubeconfig(&path, url, &pki.ca.cert, "kubernetes-admin", &pki.admin).unwrap();
    }

    assert!(
        fs::read_to_string(&path)
            .unwrap()
            .contains("https://192.0.2.10:6443")
    );
    let entries: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
}
