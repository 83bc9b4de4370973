//! CertificateSigningRequests with the real kubectl: a request is made, then approved or denied
//! through the `approval` subresource (`kubectl certificate approve|deny`); csrapproving
//! approves kubelet client requests and csrsigning issues approved requests with the cluster CA.

use crate::common;

use base64::Engine;
use common::{TestServer, eventually, tools_bin};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn request(server: &TestServer, name: &str) {
    server.create_ok(&csr_yaml(
        server,
        name,
        &format!("/CN={name}"),
        "kubernetes.io/kube-apiserver-client",
        "[client auth]",
    ));
}

/// A CertificateSigningRequest `name` for a fresh P-256 key (written to the data dir) with
/// `subject`, for `signer` and `usages`.
fn csr_yaml(server: &TestServer, name: &str, subject: &str, signer: &str, usages: &str) -> String {
    csr_yaml_with(server, name, subject, &[], signer, usages)
}

/// [`csr_yaml`] with more `openssl req` arguments (`-addext subjectAltName=…`).
fn csr_yaml_with(
    server: &TestServer,
    name: &str,
    subject: &str,
    openssl_args: &[&str],
    signer: &str,
    usages: &str,
) -> String {
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
        .args(openssl_args)
        .args(["-nodes", "-subj", subject, "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .output()
        .expect("run openssl");
    assert!(out.status.success());
    let pem = std::fs::read(&csr).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(pem);
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {encoded}\n  signerName: {signer}\n  usages: {usages}\n"
    )
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
    assert!(line("jane").contains("Approved"), "{table}");
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
    // csrsigning issues jane's certificate; the write below must not race it.
    issued_certificate(&server, "jane");
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

/// kubectl as the holder of `crt`/`key` (a user other than the admin), with `input` on stdin.
fn kubectl_as(server: &TestServer, crt: &Path, key: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let ca = server.data_dir.path().join("server/tls/ca.crt");
    let mut child = Command::new(tools_bin().join("kubectl"))
        .arg("--kubeconfig=/dev/null")
        .arg(format!("--server={}", server.url))
        .arg(format!("--certificate-authority={}", ca.display()))
        .arg(format!("--client-certificate={}", crt.display()))
        .arg(format!("--client-key={}", key.display()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().expect("kubectl output")
}

/// Asserts that the API server recorded who made request `name` (spec.username and groups),
/// which csrapproving reviews.
fn assert_requester(server: &TestServer, name: &str, user: &str, group: &str) {
    let csr = server.get_json(&["csr", name]);
    assert_eq!(
        csr["spec"]["username"], user,
        "the API server did not record the requester: {csr:#}"
    );
    let groups = csr["spec"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(groups.iter().any(|g| g == group), "{csr:#}");
}

/// Waits until the request's certificate is issued and writes it to `<name>.crt` in the data dir.
fn issued_certificate(server: &TestServer, name: &str) -> std::path::PathBuf {
    let mut csr = serde_json::Value::Null;
    let issued = eventually(Duration::from_secs(30), || {
        csr = server.get_json(&["csr", name]);
        csr["status"]["certificate"].as_str().is_some()
    });
    assert!(issued, "no certificate was issued: {csr:#}");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(csr["status"]["certificate"].as_str().unwrap())
        .unwrap();
    let path = server.data_dir.path().join(format!("{name}.crt"));
    std::fs::write(&path, pem).unwrap();
    path
}

/// `openssl x509 -noout -subject` of a certificate, and whether `openssl verify` trusts it
/// through the cluster CA.
fn subject_and_verified(server: &TestServer, crt: &Path) -> (String, bool) {
    let subject = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(crt)
        .output()
        .expect("run openssl");
    assert!(subject.status.success(), "{subject:?}");
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(server.data_dir.path().join("server/tls/ca.crt"))
        .arg(crt)
        .output()
        .expect("run openssl");
    (
        String::from_utf8_lossy(&subject.stdout).trim().to_owned(),
        verify.status.success(),
    )
}

#[test]
fn a_nodes_client_certificate_request_is_approved_and_issued_by_the_controllers() {
    let server = TestServer::start();
    let scratch = tempfile::tempdir().unwrap();
    let (crt, key) = server.client_cert(scratch.path(), "system:node:n1", "system:nodes");
    let yaml = csr_yaml(
        &server,
        "node-n1",
        "/O=system:nodes/CN=system:node:n1",
        "kubernetes.io/kube-apiserver-client-kubelet",
        "[digital signature, client auth]",
    );
    let out = kubectl_as(&server, &crt, &key, &["create", "-f", "-"], &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_requester(&server, "node-n1", "system:node:n1", "system:nodes");
    let certificate = issued_certificate(&server, "node-n1");
    let csr = server.get_json(&["csr", "node-n1"]);
    let approved = csr["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Approved")
        .unwrap_or_else(|| panic!("not approved: {csr:#}"));
    assert_eq!(approved["reason"], "AutoApproved");
    assert_eq!(
        approved["message"],
        "Auto approving self kubelet client certificate after SubjectAccessReview."
    );
    let (subject, verified) = subject_and_verified(&server, &certificate);
    assert_eq!(subject, "subject=O = system:nodes, CN = system:node:n1");
    assert!(verified, "the cluster CA does not verify the certificate");
}

#[test]
fn an_approved_apiserver_client_request_is_issued_by_the_cluster_ca() {
    let server = TestServer::start();
    request(&server, "jane");
    // Nobody approves an API server client certificate but an approver.
    std::thread::sleep(Duration::from_secs(1));
    let pending = server.get_json(&["csr", "jane"]);
    assert!(pending["status"]["certificate"].is_null(), "{pending:#}");
    server.kubectl_ok(&["certificate", "approve", "jane"]);
    let certificate = issued_certificate(&server, "jane");
    let (subject, verified) = subject_and_verified(&server, &certificate);
    assert_eq!(subject, "subject=CN = jane");
    assert!(verified, "the cluster CA does not verify the certificate");
    let table = server.kubectl_ok(&["get", "csr", "jane"]);
    assert!(table.contains("Approved,Issued"), "{table}");
}

#[test]
fn an_approved_request_the_signer_refuses_gets_a_failed_condition() {
    let server = TestServer::start();
    server.create_ok(&csr_yaml(
        &server,
        "not-a-node",
        "/O=other/CN=system:node:n2",
        "kubernetes.io/kube-apiserver-client-kubelet",
        "[digital signature, client auth]",
    ));
    server.kubectl_ok(&["certificate", "approve", "not-a-node"]);
    let mut csr = serde_json::Value::Null;
    let failed = eventually(Duration::from_secs(30), || {
        csr = server.get_json(&["csr", "not-a-node"]);
        csr["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Failed")
    });
    assert!(failed, "no Failed condition: {csr:#}");
    let condition = csr["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap();
    assert_eq!(condition["status"], "True");
    assert_eq!(condition["reason"], "SignerValidationFailure");
    assert_eq!(
        condition["message"],
        "subject organization is not system:nodes"
    );
    assert!(csr["status"]["certificate"].is_null(), "{csr:#}");
}

#[test]
fn a_nodes_serving_request_naming_its_addresses_is_approved_and_issued() {
    let server = TestServer::start();
    server.create_ok("apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n");
    server.kubectl_ok(&[
        "patch",
        "node",
        "n1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.1"},{"type":"Hostname","address":"n1"}]}}"#,
    ]);
    let scratch = tempfile::tempdir().unwrap();
    let (crt, key) = server.client_cert(scratch.path(), "system:node:n1", "system:nodes");
    let serving = |name: &str, names: &str| {
        csr_yaml_with(
            &server,
            name,
            "/O=system:nodes/CN=system:node:n1",
            &["-addext", &format!("subjectAltName={names}")],
            "kubernetes.io/kubelet-serving",
            "[digital signature, server auth]",
        )
    };
    let stranger = serving("n1-stranger", "DNS:n1,IP:10.9.9.9");
    let out = kubectl_as(&server, &crt, &key, &["create", "-f", "-"], &stranger);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let own = serving("n1-serving", "DNS:n1,IP:10.0.0.1");
    let out = kubectl_as(&server, &crt, &key, &["create", "-f", "-"], &own);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_requester(&server, "n1-serving", "system:node:n1", "system:nodes");
    let certificate = issued_certificate(&server, "n1-serving");
    let csr = server.get_json(&["csr", "n1-serving"]);
    let approved = &csr["status"]["conditions"][0];
    assert_eq!(approved["type"], "Approved", "{csr:#}");
    assert_eq!(approved["reason"], "AutoApproved");
    assert_eq!(
        approved["message"],
        "Auto approving kubelet serving certificate: its names are the node's addresses."
    );
    let (_, verified) = subject_and_verified(&server, &certificate);
    assert!(verified, "the cluster CA does not verify the certificate");
    let text = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-ext",
            "subjectAltName,extendedKeyUsage",
            "-in",
        ])
        .arg(&certificate)
        .output()
        .expect("run openssl");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("DNS:n1, IP Address:10.0.0.1"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    // A name that is not the node's keeps its request pending.
    let stranger = server.get_json(&["csr", "n1-stranger"]);
    assert!(stranger["status"]["conditions"].is_null(), "{stranger:#}");
}
