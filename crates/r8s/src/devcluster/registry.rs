//! The devcluster's registry mirror (`up --images DIR`): Debian's `docker-registry` in the
//! first node's namespace, holding every docker.io image of the tarballs, so that pulls
//! (`:latest`, `imagePullPolicy: Always`) work with no internet, as at an air-gapped site
//! whose nodes point `docker.io` at a local mirror.

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Layout;
use super::process::Detached;

const PORT: u16 = 5000;

/// Starts the registry at `address`, pushes the images, and returns the mirror's URL.
pub fn start(layout: &Layout, address: Ipv4Addr, tarballs: &[PathBuf]) -> anyhow::Result<String> {
    for (binary, package) in [("docker-registry", "docker-registry"), ("skopeo", "skopeo")] {
        if !super::up::on_path(binary) {
            bail!(
                "{binary} is not on PATH: --images serves the images from a registry mirror (Debian: apt-get install {package})"
            );
        }
    }
    let config = layout.registry_config();
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}:{PORT}\n",
            layout.registry_dir().display()
        ),
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    let mut command = Command::new("docker-registry");
    command.arg("serve").arg(&config);
    let recorded = layout.registry();
    let log = layout.dir.join("registry.log");
    let mut child = Detached {
        command,
        netns: &layout.node(1),
        log: &log,
        pid_file: &recorded.pid_file,
        listener: None,
    }
    .spawn()?;

    let mirror = format!("{address}:{PORT}");
    for tarball in tarballs {
        for tag in repo_tags(tarball)? {
            let Some(path) = docker_hub_path(&tag) else {
                eprintln!("  {tag}: not a docker.io image, so only imported, not mirrored");
                continue;
            };
            push(
                layout,
                &mut child,
                tarball,
                &tag,
                &format!("{mirror}/{path}"),
            )?;
        }
    }
    Ok(format!("http://{mirror}"))
}

/// `skopeo copy` into the registry, retried while it is starting.
fn push(
    layout: &Layout,
    registry: &mut std::process::Child,
    tarball: &Path,
    tag: &str,
    to: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = registry.try_wait()? {
            bail!(
                "docker-registry exited ({status}); see {}",
                layout.dir.join("registry.log").display()
            );
        }
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &layout.node(1),
                "skopeo",
                "copy",
                "--quiet",
            ])
            .arg("--dest-tls-verify=false")
            .arg(format!("docker-archive:{}:{tag}", tarball.display()))
            .arg(format!("docker://{to}"))
            .output()
            .context("cannot run skopeo")?;
        if out.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&out.stderr);
        // Only a registry not yet listening is worth waiting for.
        if Instant::now() >= deadline || !said.contains("connection refused") {
            bail!(
                "cannot push {tag} from {} to the mirror: {}",
                tarball.display(),
                said.trim()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `RepoTags` of a docker-archive tarball (`docker save`'s `manifest.json`).
fn repo_tags(tarball: &Path) -> anyhow::Result<Vec<String>> {
    let file = std::fs::File::open(tarball)
        .with_context(|| format!("cannot open {}", tarball.display()))?;
    let gzipped = tarball
        .extension()
        .is_some_and(|ext| ext == "gz" || ext == "tgz");
    let reader: Box<dyn Read> = if gzipped {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive
        .entries()
        .with_context(|| format!("{} is not a tar archive", tarball.display()))?
    {
        let mut entry = entry.with_context(|| format!("cannot read {}", tarball.display()))?;
        if entry.path()?.as_os_str() != "manifest.json" {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text)?;
        let manifest: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("the manifest.json of {} is not JSON", tarball.display()))?;
        return Ok(manifest
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|image| image["RepoTags"].as_array().cloned().unwrap_or_default())
            .filter_map(|tag| tag.as_str().map(str::to_owned))
            .collect());
    }
    bail!(
        "{} has no manifest.json: not a docker-archive (docker save) tarball",
        tarball.display()
    )
}

/// Where a docker.io image lives in a mirror (`busybox:1` → `library/busybox:1`), or `None`
/// for another registry's image.
fn docker_hub_path(tag: &str) -> Option<String> {
    let (first, rest) = match tag.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (tag, None),
    };
    let is_registry =
        rest.is_some() && (first.contains('.') || first.contains(':') || first == "localhost");
    let path = match (is_registry, rest) {
        (true, Some(rest)) if first == "docker.io" || first == "index.docker.io" => rest,
        (true, _) => return None,
        (false, _) => tag,
    };
    Some(if path.contains('/') {
        path.to_owned()
    } else {
        format!("library/{path}")
    })
}

#[cfg(test)]
mod tests {
    use super::docker_hub_path;

    #[test]
    fn docker_hub_images_map_to_their_mirror_paths() {
        assert_eq!(
            docker_hub_path("busybox:1").as_deref(),
            Some("library/busybox:1")
        );
        assert_eq!(
            docker_hub_path("bitnami/nginx:1").as_deref(),
            Some("bitnami/nginx:1")
        );
        assert_eq!(
            docker_hub_path("docker.io/library/nginx:latest").as_deref(),
            Some("library/nginx:latest")
        );
        assert_eq!(
            docker_hub_path("docker.io/nginx:latest").as_deref(),
            Some("library/nginx:latest")
        );
        assert_eq!(docker_hub_path("quay.io/coreos/etcd:v3"), None);
        assert_eq!(docker_hub_path("localhost:5000/x:1"), None);
    }
}
