//! Pod volumes on the node: directories under `<pods-dir>/<uid>/volumes/<plugin>/<name>` that
//! containers mount. configMap, secret, downwardAPI and projected contents are written as
//! upstream's atomic writer does (a timestamped directory, the `..data` symlink swapped in one
//! rename, and one symlink per top-level entry), so running pods see updates whole.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use crate::pods::env::{ConfigError, Sources, pod_field, resource_field};

const DATA: &str = "..data";

/// A file a volume holds: contents and mode.
type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// ServiceAccount tokens the node holds, renewed when 80% of their life is gone.
#[derive(Default)]
pub struct TokenCache {
    tokens: HashMap<TokenKey, (String, Instant, Duration)>,
}

/// Pod uid, ServiceAccount, audience and lifetime.
type TokenKey = (String, String, Option<String>, i64);

impl TokenCache {
    /// Drops the tokens of a pod that is gone.
    pub fn forget(&mut self, uid: &str) {
        self.tokens.retain(|(pod, ..), _| pod != uid);
    }
}

pub struct VolumeContext<'a> {
    pub client: &'a Client,
    pub pod_dir: &'a Path,
    pub host_ip: &'a str,
    pub node_allocatable: &'a BTreeMap<String, String>,
    pub tokens: &'a mut TokenCache,
}

fn plugin_dir(volume: &Volume) -> Option<&'static str> {
    Some(if volume.empty_dir.is_some() {
        "kubernetes.io~empty-dir"
    } else if volume.config_map.is_some() {
        "kubernetes.io~configmap"
    } else if volume.secret.is_some() {
        "kubernetes.io~secret"
    } else if volume.downward_api.is_some() {
        "kubernetes.io~downward-api"
    } else if volume.projected.is_some() {
        "kubernetes.io~projected"
    } else {
        return None;
    })
}

/// Makes every volume of the pod ready and returns each one's host path. Called again to
/// refresh contents: an unchanged volume is left as it is.
pub async fn prepare(
    pod: &Pod,
    ctx: &mut VolumeContext<'_>,
) -> Result<BTreeMap<String, PathBuf>, ConfigError> {
    let mut paths = BTreeMap::new();
    let namespace = pod.namespace().unwrap_or_default();
    let mut sources = Sources::new(ctx.client.clone(), &namespace);
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = prepare_one(pod, volume, ctx, &mut sources).await?;
        paths.insert(volume.name.clone(), path);
    }
    Ok(paths)
}

async fn prepare_one(
    pod: &Pod,
    volume: &Volume,
    ctx: &mut VolumeContext<'_>,
    sources: &mut Sources,
) -> Result<PathBuf, ConfigError> {
    let fail = |what: &str, e: std::io::Error| {
        ConfigError(format!("volume {:?}: cannot {what}: {e}", volume.name))
    };
    if let Some(host) = &volume.host_path {
        return host_path(&host.path, host.type_.as_deref().unwrap_or(""))
            .map_err(|e| ConfigError(format!("volume {:?}: {e}", volume.name)));
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        return claimed_path(
            ctx.client,
            &pod.namespace().unwrap_or_default(),
            &claim.claim_name,
        )
        .await
        .map_err(|e| ConfigError(format!("volume {:?}: {e}", volume.name)));
    }
    let Some(plugin) = plugin_dir(volume) else {
        return Err(ConfigError(format!(
            "volume {:?}: this volume type is not supported by r8s's kubelet yet",
            volume.name
        )));
    };
    let dir = ctx.pod_dir.join("volumes").join(plugin).join(&volume.name);
    let fresh = !dir.exists();
    std::fs::create_dir_all(&dir).map_err(|e| fail("create its directory", e))?;
    if let Some(empty) = &volume.empty_dir {
        if fresh && empty.medium.as_deref() == Some("Memory") {
            let size = empty
                .size_limit
                .as_ref()
                .and_then(|q| r8s_api::quantity::Quantity::parse(&q.0))
                .map(|q| q.value());
            mount_tmpfs(&dir, size).map_err(|e| fail("mount its tmpfs", e))?;
        }
        if fresh {
            // World-writable, as upstream makes emptyDirs, for containers running as any user.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| fail("set its mode", e))?;
        }
        return Ok(dir);
    }
    // Secrets never touch the node's disk: they live on a tmpfs, as upstream keeps them.
    if fresh && (volume.secret.is_some() || volume.projected.is_some()) {
        mount_tmpfs(&dir, None).map_err(|e| fail("mount its tmpfs", e))?;
    }
    let files = match volume_files(pod, volume, ctx, sources).await? {
        Some(files) => files,
        None => return Ok(dir),
    };
    write_atomic(&dir, &files).map_err(|e| fail("write its files", e))?;
    Ok(dir)
}

async fn volume_files(
    pod: &Pod,
    volume: &Volume,
    ctx: &mut VolumeContext<'_>,
    sources: &mut Sources,
) -> Result<Option<Files>, ConfigError> {
    let mut files = Files::new();
    if let Some(cm) = &volume.config_map {
        let mode = cm.default_mode.unwrap_or(0o644) as u32;
        project_keys(
            &mut files,
            sources.config_map_data(&cm.name).await?,
            "configmap",
            cm.items.as_deref(),
            mode,
            cm.optional,
            &cm.name,
        )?;
    } else if let Some(secret) = &volume.secret {
        let mode = secret.default_mode.unwrap_or(0o644) as u32;
        let name = secret.secret_name.clone().unwrap_or_default();
        project_keys(
            &mut files,
            sources.secret_data(&name).await?,
            "secret",
            secret.items.as_deref(),
            mode,
            secret.optional,
            &name,
        )?;
    } else if let Some(downward) = &volume.downward_api {
        let mode = downward.default_mode.unwrap_or(0o644) as u32;
        downward_files(
            &mut files,
            pod,
            downward.items.as_deref().unwrap_or_default(),
            mode,
            ctx,
        )?;
    } else if let Some(projected) = &volume.projected {
        let mode = projected.default_mode.unwrap_or(0o644) as u32;
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                project_keys(
                    &mut files,
                    sources.config_map_data(&cm.name).await?,
                    "configmap",
                    cm.items.as_deref(),
                    mode,
                    cm.optional,
                    &cm.name,
                )?;
            } else if let Some(secret) = &source.secret {
                project_keys(
                    &mut files,
                    sources.secret_data(&secret.name).await?,
                    "secret",
                    secret.items.as_deref(),
                    mode,
                    secret.optional,
                    &secret.name,
                )?;
            } else if let Some(downward) = &source.downward_api {
                downward_files(
                    &mut files,
                    pod,
                    downward.items.as_deref().unwrap_or_default(),
                    mode,
                    ctx,
                )?;
            } else if let Some(token) = &source.service_account_token {
                let value = service_account_token(
                    ctx,
                    pod,
                    token.audience.clone(),
                    token.expiration_seconds.unwrap_or(3600),
                )
                .await?;
                files.insert(token.path.clone(), (value.into_bytes(), mode));
            } else {
                return Err(ConfigError(format!(
                    "volume {:?}: a projected source r8s's kubelet does not support yet",
                    volume.name
                )));
            }
        }
    } else {
        return Ok(None);
    }
    Ok(Some(files))
}

/// The keys of a ConfigMap or Secret (`kind`) as files; a missing object is an error unless
/// the reference is optional.
fn project_keys(
    files: &mut Files,
    data: Option<BTreeMap<String, Vec<u8>>>,
    kind: &str,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: Option<bool>,
    name: &str,
) -> Result<(), ConfigError> {
    let data = match data {
        Some(data) => data,
        None if optional == Some(true) => return Ok(()),
        None => return Err(ConfigError(format!("{kind} \"{name}\" not found"))),
    };
    let data = &data;
    match items {
        None => {
            for (key, value) in data {
                files.insert(key.clone(), (value.clone(), mode));
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(value) => {
                        let mode = item.mode.map_or(mode, |m| m as u32);
                        files.insert(item.path.clone(), (value.clone(), mode));
                    }
                    None if optional == Some(true) => {}
                    None => {
                        return Err(ConfigError(format!(
                            "configuration of {name:?} has no key {:?}",
                            item.key
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

fn downward_files(
    files: &mut Files,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    mode: u32,
    ctx: &VolumeContext<'_>,
) -> Result<(), ConfigError> {
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            match field.field_path.as_str() {
                "metadata.labels" => format_map(pod.metadata.labels.as_ref()),
                "metadata.annotations" => format_map(pod.metadata.annotations.as_ref()),
                path => pod_field(pod, path, ctx.host_ip, &pod_ip)
                    .ok_or_else(|| ConfigError(format!("unsupported fieldPath {path:?}")))?,
            }
        } else if let Some(resource) = &item.resource_field_ref {
            let containers: Vec<&Container> =
                pod.spec.iter().flat_map(|s| s.containers.iter()).collect();
            let container = containers
                .iter()
                .find(|c| Some(c.name.as_str()) == resource.container_name.as_deref())
                .or(containers.first())
                .ok_or_else(|| ConfigError("the pod has no containers".into()))?;
            resource_field(
                container,
                &resource.resource,
                resource.divisor.as_ref().map(|d| d.0.as_str()),
                ctx.node_allocatable,
            )
            .ok_or_else(|| ConfigError(format!("unsupported resource {:?}", resource.resource)))?
        } else {
            continue;
        };
        let mode = item.mode.map_or(mode, |m| m as u32);
        files.insert(item.path.clone(), (value.into_bytes(), mode));
    }
    Ok(())
}

/// `key="value"` lines, sorted, as upstream writes labels and annotations.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn service_account_token(
    ctx: &mut VolumeContext<'_>,
    pod: &Pod,
    audience: Option<String>,
    expiration_seconds: i64,
) -> Result<String, ConfigError> {
    let namespace = pod.namespace().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let key = (
        pod.uid().unwrap_or_default(),
        account.clone(),
        audience.clone(),
        expiration_seconds,
    );
    if let Some((token, issued, life)) = ctx.tokens.tokens.get(&key)
        && issued.elapsed() < life.mul_f64(0.8)
    {
        return Ok(token.clone());
    }
    let request: TokenRequest = serde_json::from_value(serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": audience.into_iter().collect::<Vec<_>>(),
            "expirationSeconds": expiration_seconds,
            "boundObjectRef": {
                "apiVersion": "v1", "kind": "Pod",
                "name": pod.name_any(), "uid": pod.uid().unwrap_or_default(),
            },
        },
    }))
    .map_err(|e| ConfigError(e.to_string()))?;
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let answer: TokenRequest = api
        .create_subresource("token", &account, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            ConfigError(format!(
                "cannot get a token for serviceaccount {account:?}: {e}"
            ))
        })?;
    let token = answer.status.and_then(|s| s.token).unwrap_or_default();
    let life = Duration::from_secs(expiration_seconds.max(600) as u64);
    ctx.tokens
        .tokens
        .insert(key, (token.clone(), Instant::now(), life));
    Ok(token)
}

/// The hostPath, checked (or made) by its type, as upstream's hostPath plugin does.
fn host_path(path: &str, type_: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::FileTypeExt;
    let p = PathBuf::from(path);
    let meta = std::fs::metadata(&p);
    let check = |ok: bool, what: &str| {
        if ok {
            Ok(p.clone())
        } else {
            Err(format!(
                "hostPath type check failed: {path} is not a {what}"
            ))
        }
    };
    match type_ {
        "" => Ok(p.clone()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(&p).map_err(|e| format!("cannot create {path}: {e}"))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| e.to_string())?;
            }
            check(std::fs::metadata(&p).is_ok_and(|m| m.is_dir()), "directory")
        }
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                std::fs::write(&p, b"").map_err(|e| format!("cannot create {path}: {e}"))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
                    .map_err(|e| e.to_string())?;
            }
            check(std::fs::metadata(&p).is_ok_and(|m| m.is_file()), "file")
        }
        "Directory" => check(meta.is_ok_and(|m| m.is_dir()), "directory"),
        "File" => check(meta.is_ok_and(|m| m.is_file()), "file"),
        "Socket" => check(meta.is_ok_and(|m| m.file_type().is_socket()), "socket"),
        "CharDevice" => check(
            meta.is_ok_and(|m| m.file_type().is_char_device()),
            "character device",
        ),
        "BlockDevice" => check(
            meta.is_ok_and(|m| m.file_type().is_block_device()),
            "block device",
        ),
        other => Err(format!("unknown hostPath type {other:?}")),
    }
}

/// A claim's volume on this node: a bound `local` or `hostPath` PersistentVolume.
async fn claimed_path(client: &Client, namespace: &str, claim: &str) -> Result<PathBuf, String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = claims
        .get_opt(claim)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("persistentvolumeclaim {claim:?} not found"))?;
    let volume_name = pvc
        .spec
        .and_then(|s| s.volume_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("persistentvolumeclaim {claim:?} is not bound"))?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = volumes.get(&volume_name).await.map_err(|e| e.to_string())?;
    let spec = pv.spec.unwrap_or_default();
    if let Some(local) = spec.local {
        return host_path(&local.path, "Directory");
    }
    if let Some(host) = spec.host_path {
        return host_path(&host.path, host.type_.as_deref().unwrap_or(""));
    }
    Err(format!(
        "persistentvolume {volume_name:?} is neither local nor hostPath, which r8s's kubelet cannot mount yet"
    ))
}

fn mount_tmpfs(dir: &Path, size: Option<i128>) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let target = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let options = match size {
        Some(bytes) => format!("mode=0777,size={bytes}"),
        None => "mode=0755".into(),
    };
    let options = std::ffi::CString::new(options)?;
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Writes `files` into `dir` the way upstream's atomic writer does; nothing happens when the
/// volume already holds exactly these files.
pub fn write_atomic(dir: &Path, files: &Files) -> std::io::Result<()> {
    let current = std::fs::read_link(dir.join(DATA)).ok();
    if let Some(current) = &current
        && same_contents(&dir.join(current), files)
    {
        return Ok(());
    }
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let staging = dir.join(&stamp);
    std::fs::create_dir(&staging)?;
    for (path, (data, mode)) in files {
        let target = staging.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, data)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode))?;
    }
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755))?;
    let link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&link);
    symlink(&stamp, &link)?;
    std::fs::rename(&link, dir.join(DATA))?;
    let tops: std::collections::BTreeSet<String> = files
        .keys()
        .filter_map(|p| p.split('/').find(|s| !s.is_empty()).map(str::to_string))
        .collect();
    for top in &tops {
        let entry = dir.join(top);
        if std::fs::symlink_metadata(&entry).is_err() {
            symlink(format!("{DATA}/{top}"), &entry)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            if name != DATA && name != stamp {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        } else if !tops.contains(&name) && entry.file_type()?.is_symlink() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn same_contents(dir: &Path, files: &Files) -> bool {
    let mut count = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            return false;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                count += 1;
            }
        }
    }
    count == files.len()
        && files.iter().all(|(path, (data, mode))| {
            let p = dir.join(path);
            std::fs::read(&p).is_ok_and(|d| &d == data)
                && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
        })
}

/// Unmounts what the pod's volumes mounted and removes its directory.
pub fn teardown(pod_dir: &Path) -> std::io::Result<()> {
    if !pod_dir.exists() {
        return Ok(());
    }
    for mount in mounts_under(pod_dir) {
        use std::os::unix::ffi::OsStrExt;
        let target = std::ffi::CString::new(mount.as_os_str().as_bytes())?;
        if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
            let e = std::io::Error::last_os_error();
            tracing::warn!("cannot unmount {}: {e}", mount.display());
        }
    }
    std::fs::remove_dir_all(pod_dir)
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> Files {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (v.as_bytes().to_vec(), 0o644)))
            .collect()
    }

    #[test]
    fn atomic_writes_swap_the_data_link_and_drop_stale_keys() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), &files(&[("a", "1"), ("sub/b", "2")])).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "1");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/b")).unwrap(),
            "2"
        );
        let first = std::fs::read_link(dir.path().join(DATA)).unwrap();
        write_atomic(dir.path(), &files(&[("a", "1"), ("sub/b", "2")])).unwrap();
        assert_eq!(
            std::fs::read_link(dir.path().join(DATA)).unwrap(),
            first,
            "unchanged"
        );
        write_atomic(dir.path(), &files(&[("a", "3")])).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(dir.path().join("sub")).is_err());
        assert!(
            !dir.path().join(&first).exists(),
            "the old version is removed"
        );
    }

    #[test]
    fn host_path_types_are_checked_and_created() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("made");
        host_path(d.to_str().unwrap(), "DirectoryOrCreate").unwrap();
        assert!(d.is_dir());
        assert!(host_path(d.to_str().unwrap(), "File").is_err());
        let f = dir.path().join("f");
        host_path(f.to_str().unwrap(), "FileOrCreate").unwrap();
        assert!(f.is_file());
        assert!(host_path(dir.path().join("none").to_str().unwrap(), "Directory").is_err());
        assert!(host_path("/", "Bogus").is_err());
    }

    #[test]
    fn labels_are_written_as_upstream_quotes_them() {
        let map = BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("b".to_string(), "x\"y".to_string()),
        ]);
        assert_eq!(format_map(Some(&map)), "app=\"web\"\nb=\"x\\\"y\"");
    }
}
