//! Checks the test toolchain in `scripts/`: the kubectl/helm fetcher and the
//! busybox test-image builder that later end-to-end tests rely on.
//!
//! These shell out to the scripts exactly as CI and developers do, so a broken
//! script fails here rather than deep inside an end-to-end test.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Runs `cmd`, panics with its stderr unless it succeeds, returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

fn sha256_file(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    out.split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_owned()
}

/// Builds the test images into `out`; returns the written tarballs by file name.
fn build_images(out: &Path, extra_tags: &[&str]) -> BTreeMap<String, PathBuf> {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("scripts/build-test-images.py"))
        .arg("--out")
        .arg(out);
    for tag in extra_tags {
        cmd.args(["--tag", tag]);
    }
    let stdout = run(&mut cmd);
    let images: BTreeMap<String, PathBuf> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let path = PathBuf::from(l.trim());
            assert!(
                path.is_file(),
                "script printed {path:?}, which is not a file"
            );
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, path)
        })
        .collect();
    let names: Vec<&str> = images.keys().map(String::as_str).collect();
    assert_eq!(names, ["busybox_latest.tar", "nginx_latest.tar"]);
    images
}

fn untar(tarball: &Path, into: &Path) {
    run(Command::new("tar")
        .arg("-xpf")
        .arg(tarball)
        .arg("-C")
        .arg(into));
}

/// Entry names of a tar file, without trailing slashes on directories.
fn tar_entries(tarball: &Path) -> Vec<String> {
    run(Command::new("tar").arg("-tf").arg(tarball))
        .lines()
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect()
}

fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {path:?}: {e}"))
}

/// A docker-archive unpacked into a tempdir, checked for internal consistency.
struct Archive {
    // Holds the unpacked files; removed when the Archive is dropped.
    _dir: TempDir,
    repo_tags: Vec<String>,
    config: Value,
    layers: Vec<PathBuf>,
}

fn open_archive(tarball: &Path) -> Archive {
    let dir = TempDir::new().unwrap();
    untar(tarball, dir.path());

    let manifest = read_json(&dir.path().join("manifest.json"));
    let entries = manifest.as_array().expect("manifest.json is an array");
    assert_eq!(entries.len(), 1, "one image per tarball: {manifest}");
    let entry = &entries[0];

    let repo_tags: Vec<String> = entry["RepoTags"]
        .as_array()
        .expect("RepoTags")
        .iter()
        .map(|t| t.as_str().expect("tag is a string").to_owned())
        .collect();

    // The image ID is the config's digest, so the name must match its bytes.
    let config_name = entry["Config"].as_str().expect("Config");
    let config_path = dir.path().join(config_name);
    assert_eq!(
        config_name,
        format!("{}.json", sha256_file(&config_path)),
        "config file is not named by its sha256"
    );
    let config = read_json(&config_path);

    let layers: Vec<PathBuf> = entry["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| dir.path().join(l.as_str().expect("layer path is a string")))
        .collect();
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .expect("rootfs.diff_ids")
        .iter()
        .map(|d| d.as_str().expect("diff_id is a string"))
        .collect();
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(diff_ids.len(), layers.len(), "one diff_id per layer");
    for (layer, diff_id) in layers.iter().zip(&diff_ids) {
        assert_eq!(
            *diff_id,
            format!("sha256:{}", sha256_file(layer)),
            "diff_id does not match {layer:?}"
        );
    }

    let want_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(config["architecture"], want_arch);
    assert_eq!(config["os"], "linux");

    Archive {
        _dir: dir,
        repo_tags,
        config,
        layers,
    }
}

#[test]
fn fetch_k8s_tools_provides_kubectl_1_37_and_helm_4() {
    let script = repo_root().join("scripts/fetch-k8s-tools.sh");
    let stdout = run(Command::new("bash").arg(script));
    let bin_dir = PathBuf::from(
        stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .expect("script printed the bin dir")
            .trim(),
    );

    let kubectl =
        run(Command::new(bin_dir.join("kubectl")).args(["version", "--client", "-o", "json"]));
    let version: Value = serde_json::from_str(&kubectl).expect("kubectl version JSON");
    assert_eq!(version["clientVersion"]["major"], "1", "{version}");
    assert_eq!(version["clientVersion"]["minor"], "37", "{version}");

    let helm = run(Command::new(bin_dir.join("helm")).args(["version", "--short"]));
    assert!(helm.trim().starts_with("v4."), "helm version: {helm}");
}

#[test]
fn test_images_are_valid_docker_archives() {
    let out = TempDir::new().unwrap();
    let images = build_images(out.path(), &["registry.local/busybox:1.0"]);

    // busybox: one layer with the whole rootfs, extra tag attached.
    let busybox = open_archive(&images["busybox_latest.tar"]);
    assert_eq!(
        busybox.repo_tags,
        ["busybox:latest", "registry.local/busybox:1.0"]
    );
    assert_eq!(busybox.config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(busybox.layers.len(), 1);
    let entries = tar_entries(&busybox.layers[0]);
    for want in [
        "bin/busybox",
        "bin/sh",
        "bin/bash",
        "usr/bin/env",
        "etc/passwd",
        "etc/group",
        "tmp",
        "root",
    ] {
        assert!(
            entries.iter().any(|e| e == want),
            "busybox layer lacks {want}"
        );
    }

    // nginx: the same base layer plus the html layer, serving on port 80.
    let nginx = open_archive(&images["nginx_latest.tar"]);
    assert_eq!(nginx.repo_tags, ["nginx:latest"]);
    assert_eq!(
        sha256_file(&nginx.layers[0]),
        sha256_file(&busybox.layers[0]),
        "nginx should share the busybox base layer"
    );
    let cmd: Vec<&str> = nginx.config["config"]["Cmd"]
        .as_array()
        .expect("nginx Cmd")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cmd.first(), Some(&"httpd"), "nginx Cmd: {cmd:?}");
    assert!(cmd.contains(&"/usr/share/nginx/html"), "nginx Cmd: {cmd:?}");
    assert!(
        nginx.config["config"]["ExposedPorts"]
            .get("80/tcp")
            .is_some(),
        "nginx must expose 80/tcp: {}",
        nginx.config
    );

    let index = "usr/share/nginx/html/index.html";
    let layer = nginx
        .layers
        .iter()
        .find(|l| tar_entries(l).iter().any(|e| e == index))
        .expect("a layer with index.html");
    let html = run(Command::new("tar").arg("-xOf").arg(layer).arg(index));
    assert!(html.contains("Welcome to nginx!"), "index.html: {html}");
}

#[test]
fn test_images_are_deterministic() {
    let (a, b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let first = build_images(a.path(), &["registry.local/busybox:1.0"]);
    let second = build_images(b.path(), &["registry.local/busybox:1.0"]);
    for (name, path) in &first {
        let one = fs::read(path).unwrap();
        let two = fs::read(&second[name]).unwrap();
        assert!(one == two, "{name} differs between two builds");
    }
}

#[test]
fn busybox_image_rootfs_runs() {
    // chroot needs root; CI and the dev machines run as root.
    let uid = run(Command::new("id").arg("-u"));
    assert_eq!(
        uid.trim(),
        "0",
        "busybox_image_rootfs_runs needs root for chroot"
    );

    let out = TempDir::new().unwrap();
    let images = build_images(out.path(), &[]);
    let busybox = open_archive(&images["busybox_latest.tar"]);
    let rootfs = TempDir::new().unwrap();
    for layer in &busybox.layers {
        untar(layer, rootfs.path());
    }

    let chroot = if Path::new("/usr/sbin/chroot").exists() {
        "/usr/sbin/chroot"
    } else {
        "chroot"
    };
    // Only the image's own PATH, so nothing from the host can be picked up.
    let stdout = run(Command::new(chroot)
        .arg(rootfs.path())
        .args(["/bin/sh", "-c", r#"echo ok; bash -c "echo bash-ok""#])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"));
    assert_eq!(stdout, "ok\nbash-ok\n");
}
