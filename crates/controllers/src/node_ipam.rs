//! The node IPAM controller: every Node gets a pod CIDR (`spec.podCIDR` and `spec.podCIDRs`),
//! the lowest free block of the cluster CIDR, as upstream's range allocator gives with
//! `--allocate-node-cidrs`. Kubelets wait for it before their pods get addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use r8s_informers::Informers;

/// The cluster CIDR and the size of each node's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranges {
    pub cluster: (Ipv4Addr, u8),
    pub node_mask: u8,
}

impl Default for Ranges {
    /// Upstream's usual `--cluster-cidr 10.244.0.0/16` with /24 per node.
    fn default() -> Self {
        Self {
            cluster: (Ipv4Addr::new(10, 244, 0, 0), 16),
            node_mask: 24,
        }
    }
}

impl Ranges {
    fn blocks(&self) -> u32 {
        1u32 << (self.node_mask - self.cluster.1).min(31)
    }

    fn base(&self) -> u32 {
        u32::from(self.cluster.0)
            & (u32::MAX
                .checked_shl(32 - u32::from(self.cluster.1))
                .unwrap_or(0))
    }

    fn block_size(&self) -> u32 {
        1u32 << (32 - u32::from(self.node_mask))
    }

    fn block(&self, index: u32) -> String {
        let start = self.base() + index * self.block_size();
        format!("{}/{}", Ipv4Addr::from(start), self.node_mask)
    }

    /// Which block a CIDR is, if it is one of this range's (by arithmetic: this runs for every
    /// node on every Node event).
    fn index_of(&self, cidr: &str) -> Option<u32> {
        let (addr, mask) = cidr.split_once('/')?;
        let addr = u32::from(addr.parse::<Ipv4Addr>().ok()?);
        if mask.parse::<u8>().ok()? != self.node_mask {
            return None;
        }
        let offset = addr.checked_sub(self.base())?;
        let index = offset / self.block_size();
        (offset % self.block_size() == 0 && index < self.blocks()).then_some(index)
    }

    /// The lowest block not in `used`.
    pub fn allocate(&self, used: &BTreeSet<u32>) -> Option<(u32, String)> {
        (0..self.blocks())
            .find(|i| !used.contains(i))
            .map(|i| (i, self.block(i)))
    }
}

/// Watches Nodes and gives each one without a pod CIDR the next free block. One loop, so no
/// two nodes get the same block.
pub async fn run(informers: Arc<Informers>, ranges: Ranges) -> anyhow::Result<()> {
    anyhow::ensure!(
        ranges.node_mask >= ranges.cluster.1 && ranges.node_mask <= 30,
        "node CIDR mask /{} does not fit the cluster CIDR /{}",
        ranges.node_mask,
        ranges.cluster.1
    );
    let api: Api<Node> = Api::all(informers.client().clone());
    let nodes = informers.store::<Node>().await;
    let mut changes = informers.subscribe::<Node>().await;
    // Blocks handed out whose node the cache does not show with them yet.
    let mut pending: BTreeMap<String, u32> = BTreeMap::new();
    while changes.next().await.is_some() {
        // Decide over the whole cache once the changes at hand are in it.
        while let Some(Some(_)) = changes.next().now_or_never() {}
        let all = nodes.state();
        let cidr_of = |n: &Node| n.spec.as_ref()?.pod_cidr.clone();
        let by_name: BTreeMap<String, &Arc<Node>> = all.iter().map(|n| (n.name_any(), n)).collect();
        pending.retain(|name, _| by_name.get(name).is_some_and(|n| cidr_of(n).is_none()));
        let mut used: BTreeSet<u32> = all
            .iter()
            .filter_map(|n| ranges.index_of(&cidr_of(n)?))
            .chain(pending.values().copied())
            .collect();
        let waiting = by_name.iter().filter(|(name, n)| {
            cidr_of(n).is_none()
                && n.metadata.deletion_timestamp.is_none()
                && !pending.contains_key(*name)
        });
        let waiting: Vec<String> = waiting.map(|(name, _)| name.clone()).collect();
        for name in waiting {
            let Some((index, cidr)) = ranges.allocate(&used) else {
                tracing::warn!("node {name}: no pod CIDR is left in the cluster CIDR");
                break;
            };
            let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {
                    used.insert(index);
                    pending.insert(name, index);
                }
                Err(e) => tracing::warn!("node {name}: cannot set its pod CIDR: {e}"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_handed_out_lowest_first() {
        let ranges = Ranges::default();
        let mut used = BTreeSet::new();
        assert_eq!(ranges.allocate(&used).unwrap().1, "10.244.0.0/24");
        used.insert(0);
        used.insert(2);
        assert_eq!(ranges.allocate(&used).unwrap().1, "10.244.1.0/24");
        assert_eq!(ranges.index_of("10.244.2.0/24"), Some(2));
        assert_eq!(ranges.index_of("10.245.2.0/24"), None);
        assert_eq!(ranges.index_of("10.244.2.0/25"), None);
        assert_eq!(
            ranges.index_of("10.244.2.5/24"),
            None,
            "not a block's start"
        );
        assert_eq!(ranges.index_of("10.243.255.0/24"), None, "below the range");
        assert_eq!(ranges.index_of("10.244.255.0/24"), Some(255));
        for i in [0, 1, 17, 255] {
            assert_eq!(ranges.index_of(&ranges.block(i)), Some(i));
        }
    }

    #[test]
    fn a_full_range_allocates_nothing() {
        let ranges = Ranges {
            cluster: (Ipv4Addr::new(10, 0, 0, 0), 30),
            node_mask: 30,
        };
        let used = BTreeSet::from([0]);
        assert_eq!(ranges.allocate(&used), None);
        assert_eq!(ranges.allocate(&BTreeSet::new()).unwrap().1, "10.0.0.0/30");
    }
}
