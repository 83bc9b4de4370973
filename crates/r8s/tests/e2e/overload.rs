//! Under overload the API server answers 429 with `Retry-After` (upstream's max-in-flight
//! filter) instead of queueing without bound; cluster administrators are always served.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;

#[test]
fn a_full_server_answers_429_with_retry_after_but_serves_administrators() {
    let server = TestServer::start_with(
        tempfile::tempdir().unwrap(),
        &["--max-mutating-requests-inflight", "1"],
    );
    let tls = server.data_dir.path().join("server/tls");
    let scratch = tempfile::tempdir().unwrap();
    let (crt, key) = server.client_cert(scratch.path(), "jane", "developers");
    let url = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    // An administrator's create whose body trickles in holds the one mutating slot.
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"slow"}},"data":{{"pad":"{}"}}}}"#,
        "x".repeat(4000)
    );
    let mut slow = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "--limit-rate",
            "200",
            "-X",
            "POST",
        ])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
        ])
        .arg("--cacert")
        .arg(tls.join("ca.crt"))
        .arg("--cert")
        .arg(tls.join("admin.crt"))
        .arg("--key")
        .arg(tls.join("admin.key"))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start curl");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last;
    let refused = loop {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-i",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
            ])
            .args(["--data", r#"{"metadata":{"name":"quick"}}"#])
            .arg("--cacert")
            .arg(tls.join("ca.crt"))
            .arg("--cert")
            .arg(&crt)
            .arg("--key")
            .arg(&key)
            .arg(&url)
            .output()
            .expect("run curl");
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if last.starts_with("HTTP/2 429") || last.starts_with("HTTP/1.1 429") {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // An administrator is answered even now.
    let (code, out) = server.curl(&[&format!("{url}?limit=1")]);
    let _ = slow.kill();
    let _ = slow.wait();
    assert!(
        refused,
        "never refused while the slot was held; last answer:\n{last}"
    );
    let lower = last.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1"), "{last}");
    assert!(last.contains(r#""reason":"TooManyRequests""#), "{last}");
    assert_eq!(code, 200, "{out}");
}
