//! The `r8s` command line, run as a user runs it.

use std::process::{Command, Output};

use r8s_store::etcd_server::EtcdServer;

const R8S: &str = env!("CARGO_BIN_EXE_r8s");

fn r8s(args: &[&str]) -> Output {
    Command::new(R8S).args(args).output().expect("run r8s")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn server_opens_the_store_and_says_the_api_server_is_not_built() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let out = r8s(&["server", "--data-dir", data_dir]);
    assert!(
        !out.status.success(),
        "nothing is served, so it must not claim success"
    );
    assert!(
        text(&out.stdout).contains("store ready"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("API server is not built yet"),
        "{}",
        text(&out.stderr)
    );
    assert!(dir.path().join("server/db/state.db").is_file());
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
async fn server_uses_an_etcd_datastore_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(dir.path()).await.unwrap();
    let endpoint = etcd.endpoint().replace("http://", "etcd://");
    let out = Command::new(R8S)
        .args(["server", "--data-dir", dir.path().to_str().unwrap()])
        .args(["--datastore-endpoint", &endpoint])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("store ready: {endpoint}")),
        "{stdout}"
    );
    assert!(
        !dir.path().join("server/db/state.db").exists(),
        "no embedded store with etcd"
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

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
