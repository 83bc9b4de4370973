//! Addresses: the per-node pod CIDRs carved from the cluster CIDR, and each node's pod IPs,
//! handed out from its pod CIDR as host-local IPAM does (`.1` is the bridge's gateway, addresses
//! are taken round-robin so a freed one is not reused at once).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The prefix length of each node's pod CIDR, as upstream's default `--node-cidr-mask-size`.
pub const NODE_CIDR_PREFIX: u8 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not an IPv4 CIDR such as 10.244.0.0/16")]
pub struct CidrError {
    text: String,
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let err = || CidrError { text: text.into() };
        let (ip, prefix) = text.split_once('/').ok_or_else(err)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        if prefix > 32 {
            return Err(err());
        }
        Ok(Self::new(ip, prefix))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl Cidr {
    /// The CIDR holding `ip` with this prefix (host bits cleared).
    pub fn new(ip: Ipv4Addr, prefix: u8) -> Self {
        assert!(prefix <= 32, "prefix {prefix} is longer than 32 bits");
        Self {
            base: u32::from(ip) & mask(prefix),
            prefix,
        }
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many node pod CIDRs this cluster CIDR holds.
    pub fn node_cidrs(&self) -> u64 {
        1u64 << NODE_CIDR_PREFIX.saturating_sub(self.prefix)
    }

    /// The `index`-th node pod CIDR, if this cluster CIDR is large enough.
    pub fn node_cidr(&self, index: u64) -> Option<Cidr> {
        (index < self.node_cidrs() && self.prefix <= NODE_CIDR_PREFIX).then(|| Cidr {
            base: self.base + ((index as u32) << (32 - NODE_CIDR_PREFIX)),
            prefix: NODE_CIDR_PREFIX,
        })
    }

    /// This CIDR, widened (its base re-aligned) until it holds `nodes` node pod CIDRs.
    pub fn widened_for(self, nodes: u64) -> Cidr {
        let mut cidr = self;
        while cidr.node_cidrs() < nodes && cidr.prefix > 0 {
            cidr = Cidr::new(Ipv4Addr::from(cidr.base), cidr.prefix - 1);
        }
        cidr
    }

    pub fn address(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base.wrapping_add(offset))
    }

    /// `ip`'s offset inside this CIDR, if it is inside.
    pub fn offset_of(&self, ip: Ipv4Addr) -> Option<u32> {
        (u32::from(ip) & mask(self.prefix) == self.base).then(|| u32::from(ip) - self.base)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// The pod IPs in use on one node: offsets 2..=254 of its pod CIDR (0 is the network, 1 the
/// gateway, 255 the broadcast address of a /24). Larger CIDRs use their first 256 addresses.
#[derive(Debug, Default, Clone)]
pub struct PodIps {
    used: [u64; 4],
    next: u8,
}

const FIRST: u32 = 2;
const LAST: u32 = 254;

impl PodIps {
    fn usable(cidr: &Cidr) -> u32 {
        // A /25 or smaller has fewer addresses; its last one is its broadcast address.
        let size = 1u64 << (32 - cidr.prefix.max(24));
        LAST.min(size as u32 - 2)
    }

    /// Hands out the next free address after the last one given, wrapping around.
    pub fn allocate(&mut self, cidr: &Cidr) -> Option<Ipv4Addr> {
        let last = Self::usable(cidr);
        if last < FIRST {
            return None;
        }
        let span = last - FIRST + 1;
        let start = u32::from(self.next).clamp(FIRST, last) - FIRST;
        for step in 0..span {
            let offset = FIRST + (start + step) % span;
            if !self.is_used(offset) {
                self.set(offset, true);
                self.next = (offset + 1) as u8;
                return Some(cidr.address(offset));
            }
        }
        None
    }

    /// Marks an address already given (a pod reported before this process started).
    pub fn claim(&mut self, cidr: &Cidr, ip: Ipv4Addr) -> bool {
        match cidr.offset_of(ip) {
            Some(offset) if (FIRST..=Self::usable(cidr)).contains(&offset) => {
                self.set(offset, true);
                true
            }
            _ => false,
        }
    }

    pub fn release(&mut self, cidr: &Cidr, ip: Ipv4Addr) {
        if let Some(offset) = cidr.offset_of(ip).filter(|o| *o <= LAST) {
            self.set(offset, false);
        }
    }

    #[cfg(test)]
    fn in_use(&self) -> u32 {
        self.used.iter().map(|w| w.count_ones()).sum()
    }

    fn is_used(&self, offset: u32) -> bool {
        self.used[(offset / 64) as usize] & (1 << (offset % 64)) != 0
    }

    fn set(&mut self, offset: u32, used: bool) {
        let word = &mut self.used[(offset / 64) as usize];
        if used {
            *word |= 1 << (offset % 64);
        } else {
            *word &= !(1 << (offset % 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn node_cidrs_are_consecutive_slash_24s_of_the_cluster_cidr() {
        let cluster = cidr("10.244.0.0/16");
        assert_eq!(cluster.node_cidrs(), 256);
        assert_eq!(cluster.node_cidr(0).unwrap().to_string(), "10.244.0.0/24");
        assert_eq!(cluster.node_cidr(1).unwrap().to_string(), "10.244.1.0/24");
        assert_eq!(
            cluster.node_cidr(255).unwrap().to_string(),
            "10.244.255.0/24"
        );
        assert_eq!(cluster.node_cidr(256), None);
    }

    #[test]
    fn a_cluster_cidr_widens_to_hold_every_node() {
        let cluster = cidr("10.244.0.0/16").widened_for(5000);
        assert_eq!(cluster.to_string(), "10.224.0.0/11");
        assert!(cluster.node_cidrs() >= 5000);
        assert_eq!(cidr("10.244.0.0/16").widened_for(3), cidr("10.244.0.0/16"));
    }

    #[test]
    fn parsing_rejects_what_is_not_a_cidr() {
        assert!("10.244.0.0".parse::<Cidr>().is_err());
        assert!("10.244.0.0/33".parse::<Cidr>().is_err());
        assert_eq!(cidr("10.244.3.7/16").to_string(), "10.244.0.0/16");
    }

    #[test]
    fn pod_ips_skip_network_and_gateway_and_are_unique() {
        let node = cidr("10.244.1.0/24");
        let mut ips = PodIps::default();
        let all: Vec<Ipv4Addr> = std::iter::from_fn(|| ips.allocate(&node)).collect();
        assert_eq!(all.len(), 253);
        assert_eq!(all[0], Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(*all.last().unwrap(), Ipv4Addr::new(10, 244, 1, 254));
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
        assert_eq!(ips.allocate(&node), None, "the CIDR is full");
    }

    #[test]
    fn a_released_ip_is_reused_only_after_the_others() {
        let node = cidr("10.244.1.0/24");
        let mut ips = PodIps::default();
        let first = ips.allocate(&node).unwrap();
        ips.release(&node, first);
        assert_ne!(ips.allocate(&node), Some(first));
        assert_eq!(ips.in_use(), 1);
    }

    #[test]
    fn claimed_ips_are_not_handed_out_again() {
        let node = cidr("10.244.1.0/24");
        let mut ips = PodIps::default();
        assert!(ips.claim(&node, Ipv4Addr::new(10, 244, 1, 2)));
        assert!(
            !ips.claim(&node, Ipv4Addr::new(10, 244, 2, 2)),
            "outside the CIDR"
        );
        assert_eq!(ips.allocate(&node), Some(Ipv4Addr::new(10, 244, 1, 3)));
    }

    #[test]
    fn a_small_pod_cidr_keeps_its_broadcast_address_free() {
        let node = cidr("10.244.1.0/30");
        let mut ips = PodIps::default();
        assert_eq!(ips.allocate(&node), Some(Ipv4Addr::new(10, 244, 1, 2)));
        assert_eq!(ips.allocate(&node), None);
    }
}
