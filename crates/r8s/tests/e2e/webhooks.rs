//! Dynamic admission webhooks with the real kubectl: an HTTPS webhook server runs in the test
//! (its own CA given as `caBundle`, reached by `url` on 127.0.0.1), and
//! ValidatingWebhookConfigurations and MutatingWebhookConfigurations send it ConfigMap writes.

use crate::common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::TestServer;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// Polls `check` for up to 20 seconds: configurations reach the server's watch cache a moment
/// after they are created.
/// What the test webhook answers: the `response` of an AdmissionReview, less its uid.
type Decide = fn(&str, &Value) -> Value;

/// An HTTPS webhook server on 127.0.0.1 with a certificate from its own CA; it records every
/// review it is sent.
struct WebhookServer {
    port: u16,
    ca_pem: String,
    reviews: Arc<Mutex<Vec<Value>>>,
    _runtime: tokio::runtime::Runtime,
}

impl WebhookServer {
    fn start(decide: Decide) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "webhook test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let reviews = Arc::new(Mutex::new(Vec::new()));
        let recorded = reviews.clone();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, recorded) = (acceptor.clone(), recorded.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        answer(request, decide, recorded.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            port,
            ca_pem: ca.pem(),
            reviews,
            _runtime: runtime,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn reviews(&self) -> Vec<Value> {
        self.reviews.lock().unwrap().clone()
    }
}

async fn answer(
    request: Request<Incoming>,
    decide: Decide,
    recorded: Arc<Mutex<Vec<Value>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let review: Value = serde_json::from_slice(&body).unwrap();
    recorded.lock().unwrap().push(review.clone());
    let mut response = decide(&path, &review["request"]);
    response["uid"] = review["request"]["uid"].clone();
    // A ConversionReview is answered as one; everything else is admission.
    let answer = match review["kind"].as_str() {
        Some("ConversionReview") => json!({
            "apiVersion": review["apiVersion"],
            "kind": "ConversionReview",
            "response": response,
        }),
        _ => json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": response,
        }),
    };
    Ok(Response::new(Full::new(Bytes::from(answer.to_string()))))
}

/// `/validate` refuses objects labelled `deny` (the deleted one, for a delete), with a warning
/// on every answer; `/mutate` labels objects `mutated: "yes"`; `/allow` allows everything.
fn decide(path: &str, request: &Value) -> Value {
    let object = match &request["object"] {
        Value::Null => &request["oldObject"],
        object => object,
    };
    match path {
        "/validate" if !object["metadata"]["labels"]["deny"].is_null() => json!({
            "allowed": false,
            "status": { "code": 403, "message": "objects labelled deny are not welcome" },
        }),
        "/validate" => json!({ "allowed": true, "warnings": ["checked by the test webhook"] }),
        "/mutate" => {
            let patch = if request["object"]["metadata"]["labels"].is_object() {
                json!([{ "op": "add", "path": "/metadata/labels/mutated", "value": "yes" }])
            } else {
                json!([{ "op": "add", "path": "/metadata/labels", "value": { "mutated": "yes" } }])
            };
            json!({
                "allowed": true,
                "patchType": "JSONPatch",
                "patch": B64.encode(patch.to_string()),
            })
        }
        "/mutate-copy" => {
            // Copies the label the /mutate webhook sets, so its answer depends on running after it.
            let labels = &request["object"]["metadata"]["labels"];
            let copied = labels["mutated"].as_str().unwrap_or("none");
            let patch = if labels.is_object() {
                json!([{ "op": "add", "path": "/metadata/labels/copied", "value": copied }])
            } else {
                json!([{ "op": "add", "path": "/metadata/labels", "value": { "copied": copied } }])
            };
            json!({
                "allowed": true,
                "patchType": "JSONPatch",
                "patch": B64.encode(patch.to_string()),
            })
        }
        "/convert" => {
            // Gadgets: v1 has spec.size, v1beta1 calls it spec.dimension.
            let desired = request["desiredAPIVersion"].as_str().unwrap_or_default();
            let converted: Vec<Value> = request["objects"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|object| {
                    let mut object = object.clone();
                    let spec = object["spec"].as_object_mut().unwrap();
                    let (from, to) = match desired {
                        "example.com/v1beta1" => ("size", "dimension"),
                        _ => ("dimension", "size"),
                    };
                    if let Some(value) = spec.remove(from) {
                        spec.insert(to.to_owned(), value);
                    }
                    object["apiVersion"] = json!(desired);
                    object
                })
                .collect();
            json!({ "result": { "status": "Success" }, "convertedObjects": converted })
        }
        _ => json!({ "allowed": true }),
    }
}

/// A webhook configuration of `kind` with one webhook on ConfigMap creates and updates.
fn configuration(kind: &str, name: &str, webhook: Value) -> String {
    let mut hook = json!({
        "name": format!("{name}.r8s.test"),
        "rules": [{
            "operations": ["CREATE", "UPDATE"], "apiGroups": [""],
            "apiVersions": ["v1"], "resources": ["configmaps"],
        }],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    for (key, value) in webhook.as_object().unwrap() {
        hook[key] = value.clone();
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": { "name": name },
        "webhooks": [hook],
    })
    .to_string()
}

fn client_config(server: &WebhookServer, path: &str) -> Value {
    json!({ "url": server.url(path), "caBundle": B64.encode(&server.ca_pem) })
}

fn create_configmap(server: &TestServer, args: &[&str]) -> std::process::Output {
    let mut all = vec!["create", "configmap"];
    all.extend_from_slice(args);
    server.kubectl(&all)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A configmap manifest with labels, for `kubectl create -f -`.
fn labelled_configmap(name: &str, namespace: &str, labels: Value) -> String {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": namespace, "labels": labels },
        "data": { "k": "v" },
    })
    .to_string()
}

#[test]
fn validating_webhook_denial_reaches_kubectl_with_upstreams_text() {
    let server = TestServer::start();
    let webhook = WebhookServer::start(decide);
    server.create_ok(&configuration(
        "ValidatingWebhookConfiguration",
        "deny",
        json!({ "clientConfig": client_config(&webhook, "/validate") }),
    ));
    let mut refusal = String::new();
    let mut attempt = 0;
    common::wait_for("the validating webhook to refuse", || {
        attempt += 1;
        let name = format!("denied-{attempt}");
        let out = server.create(&labelled_configmap(
            &name,
            "default",
            json!({ "deny": "yes" }),
        ));
        refusal = stderr(&out);
        !out.status.success()
    });
    assert!(
        refusal.contains(
            r#"admission webhook "deny.r8s.test" denied the request: objects labelled deny are not welcome"#
        ),
        "kubectl said: {refusal}"
    );
    let out = create_configmap(&server, &["welcome", "--from-literal=k=v"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Warning: checked by the test webhook"),
        "the webhook's warning reaches kubectl: {}",
        stderr(&out)
    );
    // An update is sent with the stored object as oldObject, and refused the same way.
    let out = server.kubectl(&["label", "configmap", "welcome", "deny=now"]);
    assert!(!out.status.success(), "the label was accepted");
    assert!(stderr(&out).contains(r#"admission webhook "deny.r8s.test" denied the request"#));
    let reviews = webhook.reviews();
    let update = reviews
        .iter()
        .rev()
        .find(|r| r["request"]["operation"] == "UPDATE")
        .expect("the update was reviewed");
    let request = &update["request"];
    assert_eq!(
        request["kind"],
        json!({ "group": "", "version": "v1", "kind": "ConfigMap" })
    );
    assert_eq!(request["resource"]["resource"], "configmaps");
    assert_eq!(request["name"], "welcome");
    assert_eq!(request["namespace"], "default");
    assert_eq!(request["dryRun"], false);
    assert_eq!(
        request["oldObject"]["metadata"]["labels"]["deny"],
        Value::Null
    );
    assert_eq!(request["object"]["metadata"]["labels"]["deny"], "now");
    assert!(
        !request["userInfo"]["username"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(request["options"]["kind"], "UpdateOptions");
}

#[test]
fn validating_webhook_is_asked_about_deletes_with_the_old_object() {
    let server = TestServer::start();
    let webhook = WebhookServer::start(decide);
    let rules = json!([{
        "operations": ["DELETE"], "apiGroups": [""],
        "apiVersions": ["v1"], "resources": ["configmaps"],
    }]);
    server.create_ok(&configuration(
        "ValidatingWebhookConfiguration",
        "keep",
        json!({ "clientConfig": client_config(&webhook, "/validate"), "rules": rules }),
    ));
    let mut refusal = String::new();
    let mut attempt = 0;
    common::wait_for("the webhook to refuse a delete", || {
        attempt += 1;
        let name = format!("kept-{attempt}");
        server.create_ok(&labelled_configmap(
            &name,
            "default",
            json!({ "deny": "yes" }),
        ));
        let out = server.kubectl(&["delete", "configmap", &name]);
        refusal = stderr(&out);
        !out.status.success()
    });
    assert!(
        refusal.contains(r#"admission webhook "keep.r8s.test" denied the request: objects labelled deny are not welcome"#),
        "kubectl said: {refusal}"
    );
    let name = format!("kept-{attempt}");
    assert!(
        server
            .kubectl(&["get", "configmap", &name])
            .status
            .success()
    );
    let reviews = webhook.reviews();
    let request = &reviews.last().expect("the delete was reviewed")["request"];
    assert_eq!(request["operation"], "DELETE");
    assert_eq!(request["name"], name.as_str());
    assert_eq!(request["object"], Value::Null);
    assert_eq!(request["oldObject"]["metadata"]["labels"]["deny"], "yes");
    assert_eq!(request["options"]["kind"], "DeleteOptions");
    server.kubectl_ok(&["create", "configmap", "unlabelled"]);
    server.kubectl_ok(&["delete", "configmap", "unlabelled"]);
}

#[test]
fn mutating_webhook_json_patch_labels_the_object() {
    let server = TestServer::start();
    let webhook = WebhookServer::start(decide);
    server.create_ok(&configuration(
        "MutatingWebhookConfiguration",
        "label",
        json!({ "clientConfig": client_config(&webhook, "/mutate") }),
    ));
    let mut attempt = 0;
    common::wait_for("the mutating webhook to label a new ConfigMap", || {
        attempt += 1;
        let name = format!("plain-{attempt}");
        server.kubectl_ok(&["create", "configmap", &name, "--from-literal=k=v"]);
        let created = server.get_json(&["configmap", &name]);
        created["metadata"]["labels"]["mutated"] == "yes"
    });
    server.create_ok(&labelled_configmap(
        "labelled",
        "default",
        json!({ "team": "a" }),
    ));
    let labels = server.get_json(&["configmap", "labelled"])["metadata"]["labels"].clone();
    assert_eq!(labels, json!({ "team": "a", "mutated": "yes" }));
}

#[test]
fn failure_policy_fail_refuses_and_ignore_admits_when_the_webhook_is_down() {
    let server = TestServer::start();
    let webhook = WebhookServer::start(decide);
    // A port nothing listens on any more.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}/validate",
        down.local_addr().unwrap().port()
    );
    drop(down);
    let hook = |policy: &str| {
        json!({
            "failurePolicy": policy,
            "clientConfig": { "url": url, "caBundle": B64.encode(&webhook.ca_pem) },
        })
    };
    server.create_ok(&configuration(
        "ValidatingWebhookConfiguration",
        "down",
        hook("Fail"),
    ));
    let mut refusal = String::new();
    let mut attempt = 0;
    common::wait_for("the unreachable webhook to fail the request", || {
        attempt += 1;
        let out = create_configmap(&server, &[&format!("closed-{attempt}")]);
        refusal = stderr(&out);
        !out.status.success()
    });
    assert!(
        refusal.contains(r#"Internal error occurred: failed calling webhook "down.r8s.test": failed to call webhook: Post"#)
            && refusal.contains("connection refused"),
        "kubectl said: {refusal}"
    );
    let ignore = configuration("ValidatingWebhookConfiguration", "down", hook("Ignore"));
    let out = server.kubectl_input(&["replace", "-f", "-"], &ignore);
    assert!(out.status.success(), "{}", stderr(&out));
    common::wait_for("failurePolicy Ignore to let the request through", || {
        attempt += 1;
        create_configmap(&server, &[&format!("open-{attempt}")])
            .status
            .success()
    });
}

#[test]
fn namespace_selector_leaves_an_excluded_namespace_alone() {
    let server = TestServer::start();
    let webhook = WebhookServer::start(decide);
    server.kubectl_ok(&["create", "namespace", "exempt"]);
    server.kubectl_ok(&["label", "namespace", "exempt", "webhooks=skip"]);
    server.create_ok(&configuration(
        "ValidatingWebhookConfiguration",
        "deny",
        json!({
            "clientConfig": client_config(&webhook, "/validate"),
            "namespaceSelector": { "matchExpressions": [
                { "key": "webhooks", "operator": "NotIn", "values": ["skip"] },
            ] },
        }),
    ));
    let mut attempt = 0;
    common::wait_for("the webhook to refuse in the default namespace", || {
        attempt += 1;
        let name = format!("denied-{attempt}");
        let yaml = labelled_configmap(&name, "default", json!({ "deny": "yes" }));
        !server.create(&yaml).status.success()
    });
    let reviewed = webhook.reviews().len();
    let yaml = labelled_configmap("tolerated", "exempt", json!({ "deny": "yes" }));
    let out = server.create(&yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        webhook.reviews().len(),
        reviewed,
        "the webhook was not asked"
    );
}

#[test]
fn dry_run_is_refused_by_a_webhook_with_side_effects() {
    let server = TestServer::start();
    let webhook = WebhookServer::start(decide);
    server.create_ok(&configuration(
        "ValidatingWebhookConfiguration",
        "effects",
        json!({ "clientConfig": client_config(&webhook, "/allow"), "sideEffects": "Some" }),
    ));
    let mut refusal = String::new();
    let mut attempt = 0;
    common::wait_for("the dry run to be refused", || {
        attempt += 1;
        let name = format!("dry-{attempt}");
        let out = create_configmap(&server, &[&name, "--dry-run=server"]);
        refusal = stderr(&out);
        !out.status.success()
    });
    assert!(
        refusal.contains(r#"admission webhook "effects.r8s.test" does not support dry run"#),
        "kubectl said: {refusal}"
    );
    assert!(
        webhook
            .reviews()
            .iter()
            .all(|r| r["request"]["dryRun"] == false),
        "a dry run is never sent to a webhook with side effects"
    );
    let out = create_configmap(&server, &["real", "--from-literal=k=v"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn match_conditions_decide_which_requests_reach_the_webhook() {
    let server = TestServer::start();
    let webhook = WebhookServer::start(decide);
    server.create_ok(&configuration(
        "ValidatingWebhookConfiguration",
        "deny",
        json!({
            "clientConfig": client_config(&webhook, "/validate"),
            "matchConditions": [
                { "name": "only-checked", "expression": "object.metadata.name.startsWith('checked-')" },
                { "name": "not-admins", "expression": "!('system:masters' in request.userInfo.groups) || request.operation == 'CREATE'" },
            ],
        }),
    ));
    let mut attempt = 0;
    common::wait_for("the webhook to refuse a checked configmap", || {
        attempt += 1;
        let yaml = labelled_configmap(
            &format!("checked-{attempt}"),
            "default",
            json!({ "deny": "yes" }),
        );
        !server.create(&yaml).status.success()
    });
    let reviewed = webhook.reviews().len();
    // The first condition is false: the webhook is not asked and the deny label passes.
    let yaml = labelled_configmap("unchecked", "default", json!({ "deny": "yes" }));
    let out = server.create(&yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(webhook.reviews().len(), reviewed, "the webhook was asked");
    // A condition that cannot be evaluated fails closed under the default failurePolicy.
    server.kubectl_ok(&["delete", "validatingwebhookconfiguration", "deny"]);
    server.create_ok(&configuration(
        "ValidatingWebhookConfiguration",
        "broken",
        json!({
            "clientConfig": client_config(&webhook, "/validate"),
            "matchConditions": [{ "name": "broken", "expression": "object.nope.deeper == 1" }],
        }),
    ));
    common::wait_for("the broken condition to refuse", || {
        attempt += 1;
        let out = create_configmap(&server, &[&format!("any-{attempt}"), "--from-literal=k=v"]);
        stderr(&out).contains("failed to evaluate matchCondition 'broken'")
    });
}

#[test]
fn a_webhook_asking_for_reinvocation_sees_the_changes_of_later_webhooks() {
    let server = TestServer::start();
    let webhook = WebhookServer::start(decide);
    // Configurations run in name order: the copier first, then the labeller.
    server.create_ok(&configuration(
        "MutatingWebhookConfiguration",
        "a-copy",
        json!({
            "clientConfig": client_config(&webhook, "/mutate-copy"),
            "reinvocationPolicy": "IfNeeded",
        }),
    ));
    server.create_ok(&configuration(
        "MutatingWebhookConfiguration",
        "b-label",
        json!({ "clientConfig": client_config(&webhook, "/mutate") }),
    ));
    let mut attempt = 0;
    let mut labels = Value::Null;
    common::wait_for("both webhooks to mutate", || {
        attempt += 1;
        let name = format!("cm-{attempt}");
        let out = create_configmap(&server, &[&name, "--from-literal=k=v"]);
        assert!(out.status.success(), "{}", stderr(&out));
        labels = server.get_json(&["configmap", &name])["metadata"]["labels"].clone();
        labels["mutated"] == "yes" && !labels["copied"].is_null()
    });
    assert_eq!(
        labels["copied"], "yes",
        "the copier was not called again: {labels}"
    );
}

#[test]
fn a_conversion_webhook_converts_custom_resources_between_versions() {
    let server = TestServer::start();
    let webhook = WebhookServer::start(decide);
    let version = |name: &str, storage: bool, field: &str| {
        json!({
            "name": name, "served": true, "storage": storage,
            "schema": { "openAPIV3Schema": { "type": "object", "properties": {
                "spec": { "type": "object", "properties": { field: { "type": "string" } } },
            } } },
        })
    };
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "gadgets.example.com" },
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": { "plural": "gadgets", "singular": "gadget", "kind": "Gadget" },
            "conversion": { "strategy": "Webhook", "webhook": {
                "conversionReviewVersions": ["v1"],
                "clientConfig": client_config(&webhook, "/convert"),
            } },
            "versions": [version("v1", true, "size"), version("v1beta1", false, "dimension")],
        },
    });
    server.apply_crd(&crd.to_string(), "gadgets.example.com");
    let gadget = json!({
        "apiVersion": "example.com/v1beta1", "kind": "Gadget",
        "metadata": { "name": "g", "namespace": "default" },
        "spec": { "dimension": "large" },
    });
    server.create_ok(&gadget.to_string());
    // Stored in v1 through the webhook, and served in each version.
    let v1 = server.get_json(&["gadgets.v1.example.com", "g"]);
    assert_eq!(v1["apiVersion"], "example.com/v1");
    assert_eq!(v1["spec"], json!({ "size": "large" }));
    let beta = server.get_json(&["gadgets.v1beta1.example.com", "g"]);
    assert_eq!(beta["spec"], json!({ "dimension": "large" }));
    let listed = server.get_json(&["gadgets.v1beta1.example.com"]);
    assert_eq!(listed["items"][0]["apiVersion"], "example.com/v1beta1");
    assert_eq!(listed["items"][0]["spec"], json!({ "dimension": "large" }));
    let watched = server.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/example.com/v1beta1/namespaces/default/gadgets?watch=true&timeoutSeconds=2",
    ]);
    let event: Value = serde_json::from_str(watched.lines().next().unwrap()).unwrap();
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["spec"], json!({ "dimension": "large" }));
    let reviews = webhook.reviews();
    assert!(
        reviews.iter().any(|r| r["kind"] == "ConversionReview"
            && r["request"]["desiredAPIVersion"] == "example.com/v1"),
        "the write was converted to the storage version by the webhook"
    );
    // A webhook that is gone fails the read rather than serving the wrong version.
    drop(webhook);
    let out = server.kubectl(&["get", "gadgets.v1beta1.example.com", "g"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("conversion webhook for gadgets.example.com failed"),
        "{}",
        stderr(&out)
    );
}
