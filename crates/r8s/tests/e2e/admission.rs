//! Admission with the real kubectl: the ServiceAccount, LimitRanger, ResourceQuota and
//! DefaultStorageClass plugins, and the serviceaccount, root-ca-cert-publisher and
//! resourcequota controllers they lean on.

use crate::common;

use common::TestServer;
use serde_json::Value;

fn exists(server: &TestServer, args: &[&str]) -> bool {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    server.kubectl(&all).status.success()
}

fn pod(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{extra_spec}  containers:\n  - name: app\n    image: nginx\n"
    )
}

/// kubectl's stderr for a create that must fail.
fn refused(server: &TestServer, args: &[&str], yaml: &str) -> String {
    let out = server.kubectl_input(args, yaml);
    assert!(!out.status.success(), "the create was accepted: {yaml}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_new_namespace_gets_a_default_service_account_and_the_root_ca() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "team"]);
    common::wait_for("the default ServiceAccount", || {
        exists(&server, &["serviceaccount", "default", "-n", "team"])
    });
    common::wait_for("kube-root-ca.crt", || {
        exists(&server, &["configmap", "kube-root-ca.crt", "-n", "team"])
    });
    let map = server.get_json(&["configmap", "kube-root-ca.crt", "-n", "team"]);
    let ca = std::fs::read_to_string(server.data_dir.path().join("server/tls/ca.crt")).unwrap();
    assert_eq!(map["data"]["ca.crt"], Value::String(ca));
    assert!(
        map["metadata"]["annotations"]["kubernetes.io/description"]
            .as_str()
            .unwrap()
            .starts_with("Contains a CA bundle")
    );

    // Deleted, they come back.
    server.kubectl_ok(&["delete", "serviceaccount", "default", "-n", "team"]);
    server.kubectl_ok(&["delete", "configmap", "kube-root-ca.crt", "-n", "team"]);
    common::wait_for("the default ServiceAccount again", || {
        exists(&server, &["serviceaccount", "default", "-n", "team"])
    });
    common::wait_for("kube-root-ca.crt again", || {
        exists(&server, &["configmap", "kube-root-ca.crt", "-n", "team"])
    });
}

#[test]
fn pods_run_as_a_service_account_with_its_token_mounted() {
    let server = TestServer::start();
    server.create_ok(&pod("plain", ""));
    let plain = server.get_json(&["pod", "plain"]);
    assert_eq!(plain["spec"]["serviceAccountName"], "default");
    let volume = &plain["spec"]["volumes"][0];
    let volume_name = volume["name"].as_str().unwrap();
    assert!(volume_name.starts_with("kube-api-access-") && volume_name.len() == 21);
    let sources = &volume["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
    assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(sources[2]["downwardAPI"]["items"][0]["path"], "namespace");
    let mount = &plain["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(
        mount["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    assert_eq!(mount["readOnly"], true);
    assert_eq!(mount["name"], volume_name);

    // Opting out in the pod, or in its ServiceAccount, leaves the token out.
    server.create_ok(&pod("opted-out", "  automountServiceAccountToken: false\n"));
    let opted_out = server.get_json(&["pod", "opted-out"]);
    assert_eq!(opted_out["spec"]["serviceAccountName"], "default");
    assert!(opted_out["spec"]["volumes"].is_null());
    assert!(opted_out["spec"]["containers"][0]["volumeMounts"].is_null());
    server.create_ok(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: quiet\nautomountServiceAccountToken: false\n",
    );
    server.create_ok(&pod("quiet", "  serviceAccountName: quiet\n"));
    assert!(server.get_json(&["pod", "quiet"])["spec"]["volumes"].is_null());

    let stderr = refused(
        &server,
        &["create", "-f", "-"],
        &pod("ghost", "  serviceAccountName: ghost\n"),
    );
    assert!(
        stderr.contains(
            r#"pods "ghost" is forbidden: error looking up service account default/ghost: serviceaccount "ghost" not found"#
        ),
        "{stderr}"
    );
    assert!(!exists(&server, &["pod", "ghost"]));
}

#[test]
fn limit_range_defaults_land_in_pods_and_pods_above_max_are_refused() {
    let server = TestServer::start();
    server.create_ok(
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: limits\nspec:\n  limits:\n  - type: Container\n    default:\n      cpu: 500m\n      memory: 256Mi\n    defaultRequest:\n      cpu: 100m\n    max:\n      cpu: \"1\"\n",
    );
    server.create_ok(&pod("defaulted", ""));
    let defaulted = server.get_json(&["pod", "defaulted"]);
    let resources = &defaulted["spec"]["containers"][0]["resources"];
    assert_eq!(resources["limits"]["cpu"], "500m");
    assert_eq!(resources["limits"]["memory"], "256Mi");
    assert_eq!(resources["requests"]["cpu"], "100m");
    assert_eq!(resources["requests"]["memory"], "256Mi");
    assert_eq!(
        defaulted["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"
    );
    assert_eq!(defaulted["status"]["qosClass"], "Burstable");

    let big = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\nspec:\n  containers:\n  - name: app\n    image: nginx\n    resources:\n      limits:\n        cpu: \"2\"\n";
    let stderr = refused(&server, &["create", "-f", "-"], big);
    assert!(
        stderr.contains(
            r#"pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#
        ),
        "{stderr}"
    );
}

#[test]
fn a_pod_quota_refuses_the_pod_past_it_and_describe_shows_usage() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "quota", "pods", "--hard=pods=2,configmaps=10"]);
    common::wait_for("the quota's status", || {
        let quota = server.get_json(&["quota", "pods"]);
        quota["status"]["used"]["pods"] == "0"
    });
    server.create_ok(&pod("one", ""));
    server.create_ok(&pod("two", ""));
    let stderr = refused(&server, &["create", "-f", "-"], &pod("three", ""));
    assert!(
        stderr.contains(
            r#"pods "three" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2"#
        ),
        "{stderr}"
    );
    // A dry run is refused just the same and charges nothing.
    let stderr = refused(
        &server,
        &["create", "--dry-run=server", "-f", "-"],
        &pod("three", ""),
    );
    assert!(stderr.contains("exceeded quota: pods"), "{stderr}");

    let described = server.kubectl_ok(&["describe", "quota", "pods"]);
    let row = described
        .lines()
        .find(|l| l.starts_with("pods "))
        .unwrap_or_else(|| panic!("no pods row in {described}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["pods", "2", "2"]
    );

    // Deleting a pod gives its share back.
    server.kubectl_ok(&["delete", "pod", "one", "--wait=false"]);
    common::wait_for("the quota to count one pod", || {
        server.get_json(&["quota", "pods"])["status"]["used"]["pods"] == "1"
    });
    server.create_ok(&pod("three", ""));
}

#[test]
fn a_claim_without_a_class_gets_the_default_class() {
    let server = TestServer::start();
    server.create_ok(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: fast\n  annotations:\n    storageclass.kubernetes.io/is-default-class: \"true\"\nprovisioner: example.com/fast\n---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: slow\nprovisioner: example.com/slow\n",
    );
    let claim = |name: &str, class: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n{class}  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n"
        )
    };
    server.create_ok(&claim("unnamed", ""));
    server.create_ok(&claim("chosen", "  storageClassName: slow\n"));
    server.create_ok(&claim("none", "  storageClassName: \"\"\n"));
    let class = |name: &str| server.get_json(&["pvc", name])["spec"]["storageClassName"].clone();
    assert_eq!(class("unnamed"), "fast");
    assert_eq!(class("chosen"), "slow");
    assert_eq!(class("none"), "");
}
