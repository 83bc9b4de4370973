//! `ensure_server_pki`: what it creates, checked with openssl, and what it does on a restart.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{ip, names, openssl, x509};
use r8s_cluster::{
    IssueReason, Issued, PkiError, ServingNames, ensure_server_pki, issue_client_cert,
};

const FILES: [&str; 8] = [
    "ca.crt",
    "ca.key",
    "serving.crt",
    "serving.key",
    "admin.crt",
    "admin.key",
    "apiserver-kubelet-client.crt",
    "apiserver-kubelet-client.key",
];

fn read_all(dir: &Path) -> Vec<Vec<u8>> {
    FILES
        .iter()
        .map(|f| fs::read(dir.join(f)).unwrap())
        .collect()
}

fn verify(dir: &Path, purpose: &str, cert: &str) {
    let out = openssl(&[
        "verify",
        "-purpose",
        purpose,
        "-CAfile",
        dir.join("ca.crt").to_str().unwrap(),
        dir.join(cert).to_str().unwrap(),
    ]);
    assert!(out.trim_end().ends_with(": OK"), "{out}");
}

#[test]
fn ca_is_a_self_signed_ca_named_r8s_ca() {
    let tmp = tempfile::tempdir().unwrap();
    ensure_server_pki(tmp.path(), &names()).unwrap();
    let ca = tmp.path().join("ca.crt");
    assert_eq!(x509(&ca, &["-subject"]).trim(), "subject=CN = r8s-ca");
    assert_eq!(x509(&ca, &["-issuer"]).trim(), "issuer=CN = r8s-ca");
    assert!(x509(&ca, &["-ext", "basicConstraints"]).contains("CA:TRUE"));
    // 10 years, give or take the clock-skew allowance.
    x509(&ca, &["-checkend", &(9 * 365 * 86400).to_string()]);
}

#[test]
fn serving_cert_verifies_for_server_auth_and_covers_the_names() {
    let tmp = tempfile::tempdir().unwrap();
    ensure_server_pki(tmp.path(), &names()).unwrap();
    verify(tmp.path(), "sslserver", "serving.crt");
    let serving = tmp.path().join("serving.crt");
    let eku = x509(&serving, &["-ext", "extendedKeyUsage"]);
    assert!(eku.contains("TLS Web Server Authentication"), "{eku}");
    let san = x509(&serving, &["-ext", "subjectAltName"]);
    for name in [
        "IP Address:127.0.0.1",
        "IP Address:192.0.2.10",
        "IP Address:10.96.0.1",
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
    .into_iter()
    .map(String::from)
    .chain(names().dns.iter().map(|name| format!("DNS:{name}")))
    {
        assert!(
            san.contains(&format!("{name},")) || san.trim_end().ends_with(&name),
            "{name} missing from {san}"
        );
    }
}

#[test]
fn admin_cert_verifies_for_client_auth_as_kubernetes_admin_in_system_masters() {
    let tmp = tempfile::tempdir().unwrap();
    ensure_server_pki(tmp.path(), &names()).unwrap();
    verify(tmp.path(), "sslclient", "admin.crt");
    let admin = tmp.path().join("admin.crt");
    assert_eq!(
        x509(&admin, &["-subject"]).trim(),
        "subject=CN = kubernetes-admin, O = system:masters"
    );
    let eku = x509(&admin, &["-ext", "extendedKeyUsage"]);
    assert!(eku.contains("TLS Web Client Authentication"), "{eku}");
    assert!(!eku.contains("Server"), "{eku}");
}

#[test]
fn kubelet_client_cert_verifies_for_client_auth_as_the_apiserver_in_system_masters() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = ensure_server_pki(tmp.path(), &names()).unwrap();
    verify(tmp.path(), "sslclient", "apiserver-kubelet-client.crt");
    let cert = tmp.path().join("apiserver-kubelet-client.crt");
    assert_eq!(
        x509(&cert, &["-subject"]).trim(),
        "subject=CN = kube-apiserver-kubelet-client, O = system:masters"
    );
    assert_eq!(pki.kubelet_client.cert, fs::read_to_string(&cert).unwrap());
}

#[test]
fn keys_are_ecdsa_p256() {
    let tmp = tempfile::tempdir().unwrap();
    ensure_server_pki(tmp.path(), &names()).unwrap();
    for key in [
        "ca.key",
        "serving.key",
        "admin.key",
        "apiserver-kubelet-client.key",
    ] {
        let text = openssl(&[
            "pkey",
            "-noout",
            "-text",
            "-in",
            tmp.path().join(key).to_str().unwrap(),
        ]);
        assert!(text.contains("NIST CURVE: P-256"), "{key}: {text}");
    }
}

#[test]
fn key_files_are_owner_only_and_certs_world_readable() {
    let tmp = tempfile::tempdir().unwrap();
    ensure_server_pki(tmp.path(), &names()).unwrap();
    for file in FILES {
        let mode = fs::metadata(tmp.path().join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        let want = if file.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode, want, "{file} has mode {mode:o}");
    }
}

#[test]
fn returned_pem_is_what_is_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = ensure_server_pki(tmp.path(), &names()).unwrap();
    let on_disk = |f: &str| fs::read_to_string(tmp.path().join(f)).unwrap();
    assert_eq!(pki.ca.cert, on_disk("ca.crt"));
    assert_eq!(pki.ca.key, on_disk("ca.key"));
    assert_eq!(pki.serving.cert, on_disk("serving.crt"));
    assert_eq!(pki.admin.key, on_disk("admin.key"));
    assert_eq!(pki.dir, tmp.path());
    assert_eq!(pki.issued.len(), 4, "{:?}", pki.issued);
}

#[test]
fn second_run_reuses_every_file_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    ensure_server_pki(tmp.path(), &names()).unwrap();
    let before = read_all(tmp.path());
    let pki = ensure_server_pki(tmp.path(), &names()).unwrap();
    assert_eq!(read_all(tmp.path()), before);
    assert!(pki.issued.is_empty(), "{:?}", pki.issued);
}

#[test]
fn new_ip_reissues_only_the_serving_cert_which_then_covers_it() {
    let tmp = tempfile::tempdir().unwrap();
    ensure_server_pki(tmp.path(), &names()).unwrap();
    let before = read_all(tmp.path());
    let more =
        ServingNames::for_apiserver(&[ip("192.0.2.10"), ip("198.51.100.7")], ip("10.96.0.1"));
    let pki = ensure_server_pki(tmp.path(), &more).unwrap();
    let after = read_all(tmp.path());
    for (i, file) in FILES.iter().enumerate() {
        assert_eq!(after[i] != before[i], file.starts_with("serving"), "{file}");
    }
    assert_eq!(
        pki.issued,
        vec![Issued {
            cert: tmp.path().join("serving.crt"),
            reason: IssueReason::NamesNotCovered(vec!["198.51.100.7".into()]),
        }]
    );
    verify(tmp.path(), "sslserver", "serving.crt");
    let san = x509(&tmp.path().join("serving.crt"), &["-ext", "subjectAltName"]);
    assert!(san.contains("IP Address:198.51.100.7"), "{san}");
}

#[test]
fn cert_expiring_within_30_days_is_reissued() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = ensure_server_pki(tmp.path(), &names()).unwrap();
    let soon = issue_client_cert(
        &pki.ca,
        "kubernetes-admin",
        &["system:masters"],
        time::Duration::days(20),
    )
    .unwrap();
    fs::write(tmp.path().join("admin.crt"), &soon.cert).unwrap();
    fs::write(tmp.path().join("admin.key"), &soon.key).unwrap();

    let pki = ensure_server_pki(tmp.path(), &names()).unwrap();
    assert_eq!(pki.issued.len(), 1, "{:?}", pki.issued);
    assert!(
        matches!(pki.issued[0].reason, IssueReason::ExpiresSoon { .. }),
        "{:?}",
        pki.issued
    );
    x509(
        &tmp.path().join("admin.crt"),
        &["-checkend", &(300 * 86400).to_string()],
    );
}

#[test]
fn cert_whose_key_was_replaced_is_reissued() {
    // What a crash between writing a new key and its certificate leaves behind.
    let tmp = tempfile::tempdir().unwrap();
    let pki = ensure_server_pki(tmp.path(), &names()).unwrap();
    fs::write(tmp.path().join("serving.key"), &pki.admin.key).unwrap();

    let pki = ensure_server_pki(tmp.path(), &names()).unwrap();
    assert_eq!(pki.issued.len(), 1, "{:?}", pki.issued);
    assert_eq!(pki.issued[0].reason, IssueReason::KeyMismatch);
    verify(tmp.path(), "sslserver", "serving.crt");
}

#[test]
fn certs_from_a_replaced_ca_are_reissued() {
    let tmp = tempfile::tempdir().unwrap();
    ensure_server_pki(tmp.path(), &names()).unwrap();
    fs::remove_file(tmp.path().join("ca.crt")).unwrap();
    fs::remove_file(tmp.path().join("ca.key")).unwrap();

    let pki = ensure_server_pki(tmp.path(), &names()).unwrap();
    let reasons: Vec<_> = pki.issued.iter().map(|i| i.reason.clone()).collect();
    assert_eq!(
        reasons,
        [
            IssueReason::Missing,
            IssueReason::NotSignedByCa,
            IssueReason::NotSignedByCa,
            IssueReason::NotSignedByCa
        ]
    );
    verify(tmp.path(), "sslserver", "serving.crt");
    verify(tmp.path(), "sslclient", "admin.crt");
    verify(tmp.path(), "sslclient", "apiserver-kubelet-client.crt");
}

#[test]
fn ca_key_left_without_its_cert_is_certified_again_and_leaves_stay_valid() {
    // What a crash between writing ca.key and ca.crt leaves behind.
    let tmp = tempfile::tempdir().unwrap();
    ensure_server_pki(tmp.path(), &names()).unwrap();
    let key = fs::read(tmp.path().join("ca.key")).unwrap();
    fs::remove_file(tmp.path().join("ca.crt")).unwrap();

    let pki = ensure_server_pki(tmp.path(), &names()).unwrap();
    assert_eq!(fs::read(tmp.path().join("ca.key")).unwrap(), key);
    assert_eq!(pki.issued.len(), 1, "{:?}", pki.issued);
    verify(tmp.path(), "sslserver", "serving.crt");
}

fn error_text(err: PkiError) -> String {
    err.to_string()
}

#[test]
fn corrupt_ca_crt_is_an_error_naming_the_file_and_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    ensure_server_pki(tmp.path(), &names()).unwrap();
    let ca_crt = tmp.path().join("ca.crt");
    fs::write(
        &ca_crt,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();

    let err = ensure_server_pki(tmp.path(), &names()).unwrap_err();
    assert!(matches!(err, PkiError::InvalidCertFile { .. }), "{err:?}");
    assert!(error_text(err).contains(ca_crt.to_str().unwrap()));
    assert!(fs::read_to_string(&ca_crt).unwrap().contains("not base64"));
}

#[test]
fn ca_key_from_another_ca_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    ensure_server_pki(tmp.path(), &names()).unwrap();
    ensure_server_pki(other.path(), &names()).unwrap();
    let ca_key = tmp.path().join("ca.key");
    fs::copy(other.path().join("ca.key"), &ca_key).unwrap();

    let err = ensure_server_pki(tmp.path(), &names()).unwrap_err();
    assert!(matches!(err, PkiError::CaKeyMismatch { .. }), "{err:?}");
    assert!(error_text(err).starts_with(ca_key.to_str().unwrap()));
}

#[test]
fn missing_ca_key_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    ensure_server_pki(tmp.path(), &names()).unwrap();
    let ca_key = tmp.path().join("ca.key");
    fs::remove_file(&ca_key).unwrap();

    let err = ensure_server_pki(tmp.path(), &names()).unwrap_err();
    assert!(matches!(err, PkiError::CaKeyMissing { .. }), "{err:?}");
    assert!(error_text(err).starts_with(ca_key.to_str().unwrap()));
    assert!(!ca_key.exists());
}

#[test]
fn unparsable_leaf_key_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    ensure_server_pki(tmp.path(), &names()).unwrap();
    let key = tmp.path().join("admin.key");
    fs::write(&key, "garbage").unwrap();

    let err = ensure_server_pki(tmp.path(), &names()).unwrap_err();
    assert!(matches!(err, PkiError::InvalidKeyFile { .. }), "{err:?}");
    assert!(error_text(err).contains(key.to_str().unwrap()));
}

#[test]
fn loosened_key_mode_is_tightened_on_reuse() {
    let tmp = tempfile::tempdir().unwrap();
    ensure_server_pki(tmp.path(), &names()).unwrap();
    let key = tmp.path().join("serving.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();

    ensure_server_pki(tmp.path(), &names()).unwrap();
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
