//! ValidatingAdmissionPolicy with the real kubectl: a bound policy denies or warns with its
//! message, reads parameters, variables and match conditions, and follows its failure policy.

use crate::common;
use common::output_text as text;

use common::TestServer;
use serde_json::{Value, json};

/// A policy on Deployment creates and updates in namespaces labelled `policies=on`.
fn policy(name: &str, spec: Value) -> String {
    let mut full = json!({
        "matchConstraints": {
            "resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["deployments"],
            }],
            "namespaceSelector": { "matchLabels": { "policies": "on" } },
        },
    });
    for (key, value) in spec.as_object().unwrap() {
        full[key] = value.clone();
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": { "name": name },
        "spec": full,
    })
    .to_string()
}

fn binding(name: &str, policy: &str, spec: Value) -> String {
    let mut full = json!({ "policyName": policy, "validationActions": ["Deny"] });
    for (key, value) in spec.as_object().unwrap() {
        full[key] = value.clone();
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": { "name": name },
        "spec": full,
    })
    .to_string()
}

fn server_with_labelled_namespace() -> TestServer {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "guarded"]);
    server.kubectl_ok(&["label", "namespace", "guarded", "policies=on"]);
    server
}

/// Creates a deployment with `replicas` in `namespace`; its kubectl output.
fn deploy(server: &TestServer, name: &str, namespace: &str, replicas: u32) -> std::process::Output {
    let replicas = format!("--replicas={replicas}");
    server.kubectl(&[
        "create",
        "deployment",
        name,
        "--image=nginx",
        &replicas,
        "-n",
        namespace,
    ])
}

#[test]
fn a_bound_policy_denies_a_deployment_with_its_message() {
    let server = server_with_labelled_namespace();
    server.create_ok(&policy(
        "replicas",
        json!({ "validations": [{
            "expression": "object.spec.replicas > 1",
            "messageExpression": "'wants replicas > 1, got ' + string(object.spec.replicas)",
        }] }),
    ));
    server.create_ok(&binding("replicas-binding", "replicas", json!({})));
    let mut attempt = 0;
    let mut said = String::new();
    common::wait_for("the policy to deny", || {
        attempt += 1;
        let out = deploy(&server, &format!("single-{attempt}"), "guarded", 1);
        said = text(&out);
        !out.status.success()
    });
    assert!(
        said.contains("ValidatingAdmissionPolicy 'replicas' with binding 'replicas-binding' denied request: wants replicas > 1, got 1"),
        "{said}"
    );
    // Denied as Invalid (422), the reason kubectl shows for a manifest.
    let manifest = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "from-manifest", "namespace": "guarded" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "m" } },
            "template": {
                "metadata": { "labels": { "app": "m" } },
                "spec": { "containers": [{ "name": "c", "image": "nginx" }] },
            },
        },
    });
    let out = server.create(&manifest.to_string());
    assert!(
        text(&out).contains(r#"The deployments "from-manifest" is invalid"#),
        "{}",
        text(&out)
    );
    let out = deploy(&server, "replicated", "guarded", 2);
    assert!(out.status.success(), "{}", text(&out));
    // Outside the selected namespace the policy does not apply.
    let out = deploy(&server, "single", "default", 1);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn parameters_variables_and_warnings() {
    let server = server_with_labelled_namespace();
    server.kubectl_ok(&[
        "create",
        "configmap",
        "limits",
        "-n",
        "guarded",
        "--from-literal=maxReplicas=3",
    ]);
    server.create_ok(&policy(
        "limit",
        json!({
            "paramKind": { "apiVersion": "v1", "kind": "ConfigMap" },
            "matchConditions": [{ "name": "not-exempt", "expression": "!object.metadata.name.startsWith('exempt-')" }],
            "variables": [
                { "name": "limit", "expression": "int(params.data.maxReplicas)" },
                { "name": "over", "expression": "object.spec.replicas > variables.limit" },
            ],
            "validations": [{ "expression": "!variables.over", "message": "too many replicas" }],
        }),
    ));
    server.create_ok(&binding(
        "limit-warn",
        "limit",
        json!({
            "validationActions": ["Warn"],
            "paramRef": { "name": "limits", "parameterNotFoundAction": "Deny" },
        }),
    ));
    let mut attempt = 0;
    let mut said = String::new();
    common::wait_for("the policy to warn", || {
        attempt += 1;
        let out = deploy(&server, &format!("big-{attempt}"), "guarded", 5);
        said = text(&out);
        assert!(out.status.success(), "Warn must not deny: {said}");
        said.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'limit' with binding 'limit-warn': too many replicas")
    });
    let out = deploy(&server, "small", "guarded", 2);
    assert!(!text(&out).contains("Warning"), "{}", text(&out));
    let out = deploy(&server, "exempt-big", "guarded", 9);
    assert!(
        !text(&out).contains("Warning"),
        "a false match condition skips: {}",
        text(&out)
    );
    // Without its parameters, a binding with parameterNotFoundAction Deny refuses.
    server.kubectl_ok(&["delete", "configmap", "limits", "-n", "guarded"]);
    common::wait_for("the missing parameters to deny", || {
        attempt += 1;
        let out = deploy(&server, &format!("any-{attempt}"), "guarded", 1);
        text(&out)
            .contains("no params found for policy binding with `Deny` parameterNotFoundAction")
    });
}

#[test]
fn an_expression_that_fails_follows_the_failure_policy() {
    let server = server_with_labelled_namespace();
    server.create_ok(&policy(
        "broken",
        json!({ "validations": [{ "expression": "object.spec.nope > 1" }] }),
    ));
    server.create_ok(&binding("broken-binding", "broken", json!({})));
    let mut attempt = 0;
    common::wait_for("the failing policy to deny", || {
        attempt += 1;
        let out = deploy(&server, &format!("d-{attempt}"), "guarded", 1);
        text(&out).contains("expression 'object.spec.nope > 1' resulted in error")
    });
    let patch = r#"{"spec":{"failurePolicy":"Ignore"}}"#;
    server.kubectl_ok(&[
        "patch",
        "validatingadmissionpolicy",
        "broken",
        "--type=merge",
        "-p",
        patch,
    ]);
    common::wait_for("the ignored failure to admit", || {
        attempt += 1;
        deploy(&server, &format!("d-{attempt}"), "guarded", 1)
            .status
            .success()
    });
}

#[test]
fn policies_are_type_checked_against_the_kinds_they_match() {
    let server = TestServer::start();
    server.create_ok(&policy(
        "correct",
        json!({ "validations": [{ "expression": "object.spec.replicas > 1" }] }),
    ));
    let correct = server.get_json(&["validatingadmissionpolicy", "correct"]);
    assert!(correct["status"]["typeChecking"].is_object(), "{correct}");
    assert!(correct["status"]["typeChecking"]["expressionWarnings"].is_null());
    server.create_ok(&policy(
        "confused",
        json!({ "validations": [{
            "expression": "object.spec.replicas > '1'",
            "messageExpression": "'wants replicas > 1, got ' + object.spec.replicas",
        }] }),
    ));
    let confused = server.get_json(&["validatingadmissionpolicy", "confused"]);
    let warnings = confused["status"]["typeChecking"]["expressionWarnings"]
        .as_array()
        .unwrap_or_else(|| panic!("{confused}"))
        .clone();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0]["fieldRef"], "spec.validations[0].expression");
    let first = warnings[0]["warning"].as_str().unwrap();
    assert!(
        first.contains("apps/v1, Kind=Deployment: ERROR: <input>:1:22: found no matching overload for '_>_' applied to '(int, string)'"),
        "{first}"
    );
    assert_eq!(
        warnings[1]["fieldRef"],
        "spec.validations[0].messageExpression"
    );
    assert!(
        warnings[1]["warning"]
            .as_str()
            .unwrap()
            .contains("found no matching overload for '_+_' applied to '(string, int)'")
    );
    assert_eq!(confused["status"]["observedGeneration"], 1);
    // An expression that does not parse, or reads an unknown variable, is refused.
    let out = server.create(&policy(
        "broken",
        json!({ "validations": [{ "expression": "object.spec.replicas >" }] }),
    ));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("spec.validations[0].expression: Invalid value: \"object.spec.replicas >\": compilation failed: ERROR: <input>:1:"),
        "{}",
        text(&out)
    );
    let out = server.create(&policy(
        "unknown",
        json!({ "validations": [{ "expression": "objekt.spec.replicas > 1" }] }),
    ));
    assert!(
        text(&out).contains("undeclared reference to 'objekt'"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_authorizer_variable_asks_rbac_about_the_requester() {
    let server = server_with_labelled_namespace();
    server.create_ok(&policy(
        "secret-readers-only",
        json!({ "validations": [{
            "expression": "authorizer.group('').resource('secrets').namespace(object.metadata.namespace).check('list').allowed()",
            "message": "only those who may list secrets may create deployments here",
        }, {
            "expression": "authorizer.requestResource.check('create').allowed()",
        }] }),
    ));
    server.create_ok(&binding(
        "secret-readers-only",
        "secret-readers-only",
        json!({}),
    ));
    // alice may create deployments in the namespace, but not list its secrets.
    server.kubectl_ok(&[
        "create",
        "role",
        "deployer",
        "-n",
        "guarded",
        "--verb=create,get,list",
        "--resource=deployments",
    ]);
    server.kubectl_ok(&[
        "create",
        "rolebinding",
        "alice-deploys",
        "-n",
        "guarded",
        "--role=deployer",
        "--user=alice",
    ]);
    let mut attempt = 0;
    let mut said = String::new();
    common::wait_for("the policy to deny alice", || {
        attempt += 1;
        let name = format!("by-alice-{attempt}");
        let out = server.kubectl(&[
            "create",
            "deployment",
            &name,
            "--image=nginx",
            "-n",
            "guarded",
            "--as=alice",
        ]);
        said = text(&out);
        said.contains("only those who may list secrets may create deployments here")
    });
    // The administrator may list secrets: allowed.
    let out = deploy(&server, "by-admin", "guarded", 1);
    assert!(out.status.success(), "{}", text(&out));
    // Once alice may list secrets, she passes too.
    server.kubectl_ok(&[
        "create",
        "role",
        "secret-lister",
        "-n",
        "guarded",
        "--verb=list",
        "--resource=secrets",
    ]);
    server.kubectl_ok(&[
        "create",
        "rolebinding",
        "alice-lists",
        "-n",
        "guarded",
        "--role=secret-lister",
        "--user=alice",
    ]);
    common::wait_for("alice to be allowed", || {
        attempt += 1;
        let name = format!("by-alice-{attempt}");
        server
            .kubectl(&[
                "create",
                "deployment",
                &name,
                "--image=nginx",
                "-n",
                "guarded",
                "--as=alice",
            ])
            .status
            .success()
    });
}

#[test]
fn mutating_admission_policies_are_refused_rather_than_ignored() {
    let server = TestServer::start();
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": { "name": "add-label" },
        "spec": {
            "matchConstraints": { "resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"],
            }] },
            "reinvocationPolicy": "Never",
            "mutations": [{ "patchType": "JSONPatch", "jsonPatch": {
                "expression": "[JSONPatch{op: 'add', path: '/metadata/labels', value: {'a': 'b'}}]",
            } }],
        },
    });
    let out = server.create(&policy.to_string());
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "mutatingadmissionpolicies.admissionregistration.k8s.io are not built in r8s yet"
        ),
        "{}",
        text(&out)
    );
    // Listing still answers.
    server.kubectl_ok(&["get", "mutatingadmissionpolicies"]);
}
