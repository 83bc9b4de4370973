//! The PodSecurity admission plugin with the real kubectl: namespace labels that enforce or warn
//! a Pod Security Standards level on pods and on workload templates.

use crate::common;

use common::TestServer;

const ENFORCE: &str = "pod-security.kubernetes.io/enforce";
const WARN: &str = "pod-security.kubernetes.io/warn";

fn pod(name: &str, container: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: app\n    image: nginx\n{container}"
    )
}

const PRIVILEGED: &str = "    securityContext:\n      privileged: true\n";

const HARDENED: &str = "    securityContext:
      allowPrivilegeEscalation: false
      runAsNonRoot: true
      capabilities: {drop: [ALL]}
      seccompProfile: {type: RuntimeDefault}
";

fn namespace_with(server: &TestServer, name: &str, label: &str) {
    server.kubectl_ok(&["create", "namespace", name]);
    server.kubectl_ok(&["label", "namespace", name, label]);
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_enforced_restricted_namespace_refuses_a_plain_pod_and_admits_a_hardened_one() {
    let server = TestServer::start();
    namespace_with(&server, "locked", &format!("{ENFORCE}=restricted"));
    let expected = r#"pods "plain" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "app" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "app" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "app" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#;
    for dry_run in [&[][..], &["--dry-run=server"][..]] {
        let mut args = vec!["create", "-n", "locked", "-f", "-"];
        args.extend_from_slice(dry_run);
        let out = server.kubectl_input(&args, &pod("plain", ""));
        assert!(!out.status.success(), "a plain pod was admitted");
        assert!(stderr(&out).contains(expected), "{}", stderr(&out));
        assert!(stderr(&out).contains("(Forbidden)"), "{}", stderr(&out));
    }
    let out = server.kubectl_input(
        &["create", "-n", "locked", "-f", "-"],
        &pod("hardened", HARDENED),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("PodSecurity"), "{}", stderr(&out));

    // An invalid level is refused as upstream refuses it.
    let out = server.kubectl(&["label", "namespace", "locked", &format!("{WARN}=loud")]);
    assert!(!out.status.success(), "an invalid label was accepted");
    assert!(
        stderr(&out).contains(r#"metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "loud": must be one of privileged, baseline, restricted"#),
        "{}",
        stderr(&out)
    );
}

#[test]
fn warn_admits_with_a_warning_and_templates_are_warned_not_enforced() {
    let server = TestServer::start();
    namespace_with(&server, "loose", &format!("{WARN}=baseline"));
    let out = server.kubectl_input(
        &["create", "-n", "loose", "-f", "-"],
        &pod("root", PRIVILEGED),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(r#"Warning: would violate PodSecurity "baseline:latest": privileged (container "app" must not set securityContext.privileged=true)"#),
        "{}",
        stderr(&out)
    );
    server.kubectl_ok(&["get", "pod", "root", "-n", "loose"]);

    namespace_with(&server, "strict", &format!("{ENFORCE}=baseline"));
    let deployment = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx
        securityContext:
          privileged: true
";
    let out = server.kubectl_input(&["create", "-n", "strict", "-f", "-"], deployment);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(r#"Warning: would violate PodSecurity "baseline:latest": privileged (container "app" must not set securityContext.privileged=true)"#),
        "{}",
        stderr(&out)
    );
    let out = server.kubectl_input(
        &["create", "-n", "strict", "-f", "-"],
        &pod("root", PRIVILEGED),
    );
    assert!(!out.status.success(), "a privileged pod was admitted");
    assert!(
        stderr(&out).contains(r#"violates PodSecurity "baseline:latest": privileged"#),
        "{}",
        stderr(&out)
    );
}

#[test]
fn tightening_enforce_warns_about_existing_pods_that_violate_it() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "team"]);
    server.create_ok(&pod("plain", "").replace("metadata:\n", "metadata:\n  namespace: team\n"));
    server
        .create_ok(&pod("good", HARDENED).replace("metadata:\n", "metadata:\n  namespace: team\n"));
    let out = server.kubectl(&[
        "label",
        "namespace",
        "team",
        &format!("{ENFORCE}=restricted"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings = stderr(&out);
    assert!(
        warnings.contains(r#"Warning: existing pods in namespace "team" violate the new PodSecurity enforce level "restricted:latest""#),
        "{warnings}"
    );
    assert!(
        warnings.contains("Warning: plain: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"),
        "{warnings}"
    );
    assert!(!warnings.contains("good:"), "{warnings}");
    let labels = server.get_json(&["namespace", "team"])["metadata"]["labels"].clone();
    assert_eq!(labels[ENFORCE], "restricted");
}
