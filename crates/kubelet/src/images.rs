//! Images that come without a registry: r8s's own sandbox ("pause") image, built in memory
//! from the program compiled by build.rs, and `r8s images import` of docker-archive and
//! OCI-archive tarballs (air-gapped installs). Imports go through containerd's own client,
//! `ctr`, into the `k8s.io` namespace where its CRI plugin finds them.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use sha2::{Digest, Sha256};

/// The sandbox image's name. Not a registry's: it only ever comes from [`pause_archive`].
pub const PAUSE_IMAGE: &str = "r8s.local/pause:1";

const PAUSE_PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// The containerd namespace the CRI plugin serves.
pub const CRI_NAMESPACE: &str = "k8s.io";

fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn tar_entry(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    mode: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data)
}

/// The pause image as a docker-archive tarball (the layout `docker save` writes): one layer
/// holding `/pause`, the same bytes for the same program.
pub fn pause_archive() -> Vec<u8> {
    let mut layer = tar::Builder::new(Vec::new());
    tar_entry(&mut layer, "pause", 0o755, PAUSE_PROGRAM).expect("tar into memory");
    let layer = layer.into_inner().expect("tar into memory");
    let layer_digest = sha256_hex(&layer);
    let config = serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": { "Entrypoint": ["/pause"], "User": "65535:65535" },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
    });
    let config = serde_json::to_vec(&config).expect("JSON");
    let config_name = format!("{}.json", sha256_hex(&config));
    let layer_name = format!("{layer_digest}/layer.tar");
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [PAUSE_IMAGE],
        "Layers": [layer_name],
    }]);
    let manifest = serde_json::to_vec(&manifest).expect("JSON");
    let mut archive = tar::Builder::new(Vec::new());
    for (path, data) in [
        (config_name.as_str(), &config[..]),
        (layer_name.as_str(), &layer[..]),
        ("manifest.json", &manifest[..]),
    ] {
        tar_entry(&mut archive, path, 0o644, data).expect("tar into memory");
    }
    archive.into_inner().expect("tar into memory")
}

/// Imports image tarballs into the containerd at `socket`, with `ctr` (from containerd's
/// package). Each is unpacked for the overlayfs snapshotter, ready for pods.
pub async fn import(socket: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    for file in files {
        let output = tokio::process::Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["--namespace", CRI_NAMESPACE, "images", "import"])
            .arg(file)
            .stdin(Stdio::null())
            .output()
            .await
            .context("cannot run ctr (from the containerd package)")?;
        anyhow::ensure!(
            output.status.success(),
            "cannot import {}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Imports the pause image, and every tarball in `dir` (`<data-dir>/agent/images`), if any.
pub async fn import_at_start(socket: &Path, dir: &Path, scratch: &Path) -> anyhow::Result<()> {
    let pause = scratch.join("pause-image.tar");
    std::fs::write(&pause, pause_archive())
        .with_context(|| format!("cannot write {}", pause.display()))?;
    let mut files = vec![pause];
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut found: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.extension()
                    .is_some_and(|ext| ext == "tar" || ext == "gz" || ext == "tgz")
            })
            .collect();
        found.sort();
        files.extend(found);
    }
    import(socket, &files).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_archive_is_a_docker_archive_and_deterministic() {
        let archive = pause_archive();
        assert_eq!(archive, pause_archive());
        let mut names = Vec::new();
        let mut manifest = None;
        for entry in tar::Archive::new(&archive[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            if name == "manifest.json" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
                manifest = Some(serde_json::from_str::<serde_json::Value>(&text).unwrap());
            }
            names.push(name);
        }
        let manifest = manifest.expect("a manifest.json");
        assert_eq!(manifest[0]["RepoTags"][0], PAUSE_IMAGE);
        assert!(names.contains(&manifest[0]["Config"].as_str().unwrap().to_string()));
        assert!(names.contains(&manifest[0]["Layers"][0].as_str().unwrap().to_string()));
    }

    #[test]
    fn pause_program_is_static() {
        // An ELF without a PT_INTERP header needs no loader, so it runs in an empty image.
        let elf = PAUSE_PROGRAM;
        assert_eq!(&elf[..4], b"\x7fELF");
        let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
        let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
        let (size, count) = (u16_at(0x36), u16_at(0x38));
        const PT_INTERP: u32 = 3;
        for i in 0..count {
            let at = phoff + i * size;
            let kind = u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
            assert_ne!(kind, PT_INTERP, "the pause program is dynamically linked");
        }
    }
}
