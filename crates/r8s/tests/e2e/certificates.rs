//! CertificateSigningRequests with the real kubectl: a request is made, then approved or denied
//! through the `approval` subresource (`kubectl certificate approve|deny`).

use crate::common;

use common::TestServer;
use std::process::Command;

fn request(server: &TestServer, name: &str) {
    let dir = server.data_dir.path();
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-subj", &format!("/CN={name}"), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .output()
        .expect("run openssl");
    assert!(out.status.success());
    use base64::Engine;
    let pem = std::fs::read(&csr).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(pem);
    server.create_ok(&format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {encoded}\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n"
    ));
}

#[test]
fn certificate_approve_and_deny_set_the_requests_condition() {
    let server = TestServer::start();
    request(&server, "jane");
    request(&server, "mallory");
    let pending = server.kubectl_ok(&["get", "csr", "jane"]);
    assert!(pending.contains("Pending"), "{pending}");
    assert!(
        pending.contains("kubernetes.io/kube-apiserver-client"),
        "{pending}"
    );
    let approved = server.kubectl_ok(&["certificate", "approve", "jane"]);
    assert!(approved.contains("approved"), "{approved}");
    server.kubectl_ok(&["certificate", "deny", "mallory"]);
    let table = server.kubectl_ok(&["get", "csr"]);
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("jane").ends_with("Approved"), "{table}");
    assert!(line("mallory").ends_with("Denied"), "{table}");
    // A request both approved and denied is refused by the server itself (kubectl would not
    // send one), and approvers cannot issue the certificate through `approval`.
    let mut csr: serde_json::Value =
        serde_json::from_str(&server.kubectl_ok(&["get", "csr", "mallory", "-o", "json"])).unwrap();
    csr["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({ "type": "Approved", "status": "True" }));
    let url = format!(
        "{}/apis/certificates.k8s.io/v1/certificatesigningrequests/mallory/approval",
        server.url
    );
    let (code, body) = server.curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "--data",
        &csr.to_string(),
        &url,
    ]);
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("mutually exclusive"), "{body}");
    let mut jane: serde_json::Value =
        serde_json::from_str(&server.kubectl_ok(&["get", "csr", "jane", "-o", "json"])).unwrap();
    jane["status"]["certificate"] = serde_json::json!("Zm9v");
    let url = url.replace("mallory", "jane");
    let (code, body) = server.curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "--data",
        &jane.to_string(),
        &url,
    ]);
    assert_eq!(code, 200, "{body}");
    let after = server.kubectl_ok(&["get", "csr", "jane", "-o", "json"]);
    assert!(!after.contains("Zm9v"), "{after}");
}

#[test]
fn a_request_that_is_not_a_certificate_request_is_invalid() {
    let server = TestServer::start();
    let out = server.create(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: bad\nspec:\n  request: bm90IGEgY3Ny\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("spec.request"), "{stderr}");
}
