//! `issue_client_cert` and `ca_cert_hash`, checked against openssl.

mod common;

use std::fs;
use std::process::Command;

use common::{names, openssl, x509};
use r8s_cluster::{PkiError, ca_cert_hash, ensure_server_pki, issue_client_cert};

#[test]
fn client_cert_verifies_and_carries_user_and_group() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = ensure_server_pki(tmp.path(), &names()).unwrap();
    let node = issue_client_cert(
        &pki.ca,
        "system:node:worker-1",
        &["system:nodes"],
        time::Duration::days(7),
    )
    .unwrap();
    let path = tmp.path().join("node.crt");
    fs::write(&path, &node.cert).unwrap();

    let ca = tmp.path().join("ca.crt");
    let out = openssl(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        ca.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    assert!(out.trim_end().ends_with(": OK"), "{out}");
    assert_eq!(
        x509(&path, &["-subject"]).trim(),
        "subject=CN = system:node:worker-1, O = system:nodes"
    );
    x509(&path, &["-checkend", &(6 * 86400).to_string()]);
    let eight_days = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-in",
            path.to_str().unwrap(),
            "-checkend",
            &(8 * 86400).to_string(),
        ])
        .status()
        .unwrap();
    assert!(
        !eight_days.success(),
        "a 7-day certificate must expire within 8 days"
    );
}

#[test]
fn client_cert_from_a_mismatched_ca_pair_is_refused() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let mut ca = ensure_server_pki(one.path(), &names()).unwrap().ca;
    ca.key = ensure_server_pki(two.path(), &names()).unwrap().ca.key;

    let err = issue_client_cert(&ca, "x", &[], time::Duration::days(1)).unwrap_err();
    assert!(
        matches!(err, PkiError::InvalidPem { what: "CA key", .. }),
        "{err:?}"
    );
}

#[test]
fn ca_cert_hash_matches_kubeadms_openssl_recipe() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = ensure_server_pki(tmp.path(), &names()).unwrap();
    // https://kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-join/
    let recipe = format!(
        "openssl x509 -pubkey -noout -in '{}' | openssl pkey -pubin -outform der | sha256sum",
        tmp.path().join("ca.crt").display()
    );
    let out = Command::new("sh").args(["-c", &recipe]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hex = String::from_utf8(out.stdout).unwrap();
    let hex = hex.split_whitespace().next().unwrap();

    assert_eq!(ca_cert_hash(&pki.ca.cert).unwrap(), format!("sha256:{hex}"));
}
