//! ServiceAccount tokens with the real kubectl: `kubectl create token` issues a JWT signed by
//! the cluster's key, and a request bearing it is the ServiceAccount — until the token is
//! forged, the ServiceAccount is gone, or the object it is bound to is.

use crate::common;

use base64::Engine;
use common::TestServer;
use serde_json::Value;

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

fn token(server: &TestServer, args: &[&str]) -> String {
    let mut all = vec!["create", "token"];
    all.extend_from_slice(args);
    server.kubectl_ok(&all).trim().to_owned()
}

/// GET `path` with only the token as credentials; (HTTP code, body).
fn with_token(server: &TestServer, token: &str, path: &str) -> (u16, String) {
    let tls = server.data_dir.path().join("server/tls");
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(tls.join("ca.crt"))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("{}{path}", server.url))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("curl printed a code");
    (code.trim().parse().unwrap(), body.to_owned())
}

#[test]
fn create_token_issues_a_jwt_for_the_service_account() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "serviceaccount", "robot"]);
    let jwt = token(&server, &["robot", "--duration=20m"]);
    let claims = claims(&jwt);
    assert_eq!(claims["sub"], "system:serviceaccount:default:robot");
    assert_eq!(
        claims["aud"],
        serde_json::json!(["https://kubernetes.default.svc.cluster.local"])
    );
    assert_eq!(
        claims["iss"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        1200
    );
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["name"], "robot");
}

#[test]
fn a_token_authenticates_its_service_account() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "serviceaccount", "robot"]);
    let jwt = token(&server, &["robot"]);
    // Authenticated (not 401); what it may do is RBAC's answer.
    let (code, body) = with_token(&server, &jwt, "/api/v1/namespaces/default/configmaps");
    assert_ne!(code, 401, "{body}");
    assert!(
        body.contains("system:serviceaccount:default:robot"),
        "{body}"
    );
}

#[test]
fn a_forged_or_garbled_token_is_unauthorized() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "serviceaccount", "robot"]);
    let jwt = token(&server, &["robot"]);
    let (header, rest) = jwt.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    // Claims of another account under this token's signature.
    let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"sub":"system:serviceaccount:kube-system:admin"}"#);
    let forged = format!("{header}.{forged_claims}.{signature}");
    for bad in [forged.as_str(), "not-a-token"] {
        let (code, body) = with_token(&server, bad, "/api/v1/namespaces");
        assert_eq!(code, 401, "{body}");
        assert!(body.contains(r#""reason":"Unauthorized""#), "{body}");
    }
}

#[test]
fn a_deleted_service_accounts_token_stops_working() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "serviceaccount", "robot"]);
    let jwt = token(&server, &["robot"]);
    server.kubectl_ok(&["delete", "serviceaccount", "robot"]);
    let (code, body) = with_token(&server, &jwt, "/api/v1/namespaces");
    assert_eq!(code, 401, "{body}");
    // A new account of the same name is another account: the old token stays dead.
    server.kubectl_ok(&["create", "serviceaccount", "robot"]);
    let (code, _) = with_token(&server, &jwt, "/api/v1/namespaces");
    assert_eq!(code, 401);
}

#[test]
fn a_token_bound_to_a_pod_dies_with_the_pod() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "serviceaccount", "robot"]);
    server.create_ok(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\nspec:\n  containers:\n  - name: c\n    image: busybox\n",
    );
    let jwt = token(
        &server,
        &[
            "robot",
            "--bound-object-kind=Pod",
            "--bound-object-name=app",
        ],
    );
    assert_eq!(claims(&jwt)["kubernetes.io"]["pod"]["name"], "app");
    assert_ne!(with_token(&server, &jwt, "/api/v1/namespaces").0, 401);
    server.kubectl_ok(&["delete", "pod", "app"]);
    assert_eq!(with_token(&server, &jwt, "/api/v1/namespaces").0, 401);
}

#[test]
fn bad_token_requests_are_refused() {
    let server = TestServer::start();
    let missing = server.kubectl(&["create", "token", "nobody"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains(r#"serviceaccounts "nobody" not found"#)
    );
    server.kubectl_ok(&["create", "serviceaccount", "robot"]);
    let short = server.kubectl(&["create", "token", "robot", "--duration=1m"]);
    assert!(!short.status.success());
    assert!(
        String::from_utf8_lossy(&short.stderr)
            .contains("may not specify a duration less than 10 minutes"),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );
    let unbound = server.kubectl(&[
        "create",
        "token",
        "robot",
        "--bound-object-kind=Pod",
        "--bound-object-name=ghost",
    ]);
    assert!(!unbound.status.success());
    assert!(String::from_utf8_lossy(&unbound.stderr).contains(r#"pods "ghost" not found"#));
}
