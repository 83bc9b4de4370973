//! The `r8s` command line, run as a user runs it.

use crate::common;

use std::process::{Command, Output};

use r8s_store::etcd_server::EtcdServer;

use common::R8S;

fn r8s(args: &[&str]) -> Output {
    Command::new(R8S).args(args).output().expect("run r8s")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn server_with_a_read_only_data_dir_says_so() {
    assert!(
        is_root(),
        "this test mounts a read-only tmpfs and must run as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    // A private mount namespace: the read-only tmpfs vanishes with the process.
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o ro tmpfs "$1" && exec "$2" server --data-dir "$1""#)
        .args(["sh", data_dir, R8S])
        .output()
        .expect("run unshare");
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(data_dir), "{stderr}");
    assert!(
        stderr.contains("Read-only file system") || stderr.contains("not writable"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn server_with_a_corrupt_database_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("server/db");
    std::fs::create_dir_all(&db_dir).unwrap();
    let db = db_dir.join("state.db");
    std::fs::write(&db, vec![0x5a; 64 * 1024]).unwrap();
    let out = r8s(&["server", "--data-dir", dir.path().to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(stderr.contains("corrupt"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The damaged file is left as it was for the operator to inspect.
    assert_eq!(std::fs::read(&db).unwrap(), vec![0x5a; 64 * 1024]);
}

#[test]
fn server_rejects_a_malformed_datastore_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = r8s(&[
        "server",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--datastore-endpoint",
        "http://127.0.0.1:2379",
    ]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("expected etcd://HOST:PORT"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_keeps_its_objects_in_an_etcd_datastore() {
    let etcd_dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(etcd_dir.path()).await.unwrap();
    let endpoint = etcd.endpoint().replace("http://", "etcd://");
    let data_dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_with(data_dir, &["--datastore-endpoint", &endpoint]);
    server.create_ok("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: in-etcd\n");
    assert!(
        !server.data_dir.path().join("server/db/state.db").exists(),
        "no embedded store with etcd"
    );
    // The object is in etcd, under upstream's key layout.
    let store = r8s_store::EtcdStore::connect(&[etcd.endpoint().to_owned()])
        .await
        .unwrap();
    use r8s_store::Store;
    assert!(
        store
            .get("/registry/configmaps/default/in-etcd")
            .await
            .unwrap()
            .is_some()
    );
}

#[test]
fn bench_store_json_reports_every_figure_for_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let out = r8s(&[
        "bench",
        "store",
        "--json",
        "--writes-1",
        "20",
        "--writes",
        "256",
        "--churn-updates",
        "2000",
        "--churn-keys",
        "20",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().expect("output");
    let json: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    let results = json["results"].as_array().expect("results");
    for backend in ["embedded", "etcd"] {
        for op in ["write", "write_1", "watch"] {
            let figure = results
                .iter()
                .find(|r| r["backend"] == backend && r["op"] == op)
                .unwrap_or_else(|| panic!("no {backend} {op} figure in {last}"));
            assert!(figure["ops_per_s"].as_f64().unwrap() > 0.0, "{figure}");
            let (p50, p99) = (
                figure["p50_ms"].as_f64().unwrap(),
                figure["p99_ms"].as_f64().unwrap(),
            );
            assert!(p50 >= 0.0 && p99 >= p50, "{figure}");
        }
    }
    let churn = results
        .iter()
        .find(|r| r["op"] == "churn")
        .expect("churn figure");
    assert!(churn["db_mib"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_controllers_json_reports_every_figure() {
    let out = r8s(&[
        "bench",
        "controllers",
        "--json",
        "--deployments",
        "5",
        "--replicas",
        "2",
        "--nodes",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().expect("output");
    let json: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    let results = json["results"].as_array().expect("results");
    let figure = |op: &str| {
        results
            .iter()
            .find(|r| r["backend"] == "r8s" && r["op"] == op)
            .unwrap_or_else(|| panic!("no {op} figure in {last}"))
    };
    for op in [
        "register_nodes",
        "create_deploys",
        "available",
        "pods_ready",
    ] {
        let f = figure(op);
        assert!(f["ops_per_s"].as_f64().unwrap() > 0.0, "{f}");
        let (p50, p99) = (f["p50_ms"].as_f64().unwrap(), f["p99_ms"].as_f64().unwrap());
        assert!(p50 >= 0.0 && p99 >= p50, "{f}");
    }
    let available = figure("available");
    let total_s = available["total_s"].as_f64().unwrap();
    assert!(total_s > 0.0, "{available}");
    assert_eq!(available["deployments"], 5, "{available}");
    // Every Deployment's latency lies within the whole run.
    assert!(
        available["p99_ms"].as_f64().unwrap() <= total_s * 1000.0,
        "{available}"
    );
    // Ten pods became ready in the time the five Deployments took.
    let pods_per_s = figure("pods_ready")["ops_per_s"].as_f64().unwrap();
    assert!(
        (pods_per_s * total_s - 10.0).abs() < 1e-6,
        "{pods_per_s} × {total_s}"
    );
    assert!(figure("rss")["rss_mib"].as_f64().unwrap() > 0.0);
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
