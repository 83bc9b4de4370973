//! The node's pod network config for containerd's CNI: a bridge (`r8s0`) with host-local
//! addresses from the node's pod CIDR, and portmap for hostPorts. containerd adds loopback.

use std::path::{Path, PathBuf};

pub const BRIDGE: &str = "r8s0";
const CONFLIST: &str = "10-r8s.conflist";

/// The conflist for a node whose pods take addresses from `pod_cidr`; IPAM state lives in
/// `ipam_dir` (not the machine-wide `/var/lib/cni`), so nodes sharing a machine keep apart.
pub fn conflist(bridge: &str, pod_cidr: &str, ipam_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "r8s",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                // No masquerading: pods reach the node and each other directly; traffic to the
                // outside world is the service proxy's and the node's business.
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": ipam_dir,
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true },
        ],
    })
}

/// Writes the conflist (atomically: containerd watches the directory).
pub fn write(
    conf_dir: &Path,
    bridge: &str,
    pod_cidr: &str,
    ipam_dir: &Path,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(conf_dir)?;
    std::fs::create_dir_all(ipam_dir)?;
    let path = conf_dir.join(CONFLIST);
    let text = serde_json::to_string_pretty(&conflist(bridge, pod_cidr, ipam_dir))?;
    let staging = conf_dir.join(format!(".{CONFLIST}.tmp"));
    std::fs::write(&staging, text)?;
    std::fs::rename(&staging, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_uses_the_pod_cidr_and_own_ipam_dir() {
        let list = conflist("r8s0", "10.244.3.0/24", Path::new("/data/ipam"));
        assert_eq!(
            list["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.3.0/24"
        );
        assert_eq!(list["plugins"][0]["ipam"]["dataDir"], "/data/ipam");
        assert_eq!(list["plugins"][1]["type"], "portmap");
    }
}
