//! The devcluster's network: a switch (a network namespace holding bridge `br0`) and one
//! network namespace per node, plugged into the switch by a veth, on a /24 of their own. No
//! interface of it is in the host's namespace, so nothing of it routes out of the machine.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, bail};

/// A /24, written as its first three octets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet(pub [u8; 3]);

impl Subnet {
    /// One of the 2048 /24s of 10.200.0.0/13, picked by `hash`: well away from the pod
    /// (10.244.0.0/16) and service (10.96.0.0/12) ranges.
    pub fn from_hash(hash: u64) -> Self {
        Self([
            10,
            200 + ((hash >> 32) % 8) as u8,
            ((hash >> 40) % 256) as u8,
        ])
    }

    /// `A.B.C.0/24`, the only prefix length a devcluster uses.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let (address, length) = text
            .split_once('/')
            .with_context(|| format!("{text:?} is not A.B.C.0/24"))?;
        let address: Ipv4Addr = address
            .parse()
            .with_context(|| format!("{text:?} is not A.B.C.0/24"))?;
        let [a, b, c, d] = address.octets();
        if length != "24" || d != 0 {
            bail!("{text:?} is not A.B.C.0/24");
        }
        Ok(Self([a, b, c]))
    }

    pub fn host(self, index: u8) -> Ipv4Addr {
        let [a, b, c] = self.0;
        Ipv4Addr::new(a, b, c, index)
    }

    fn overlaps(self, (address, length): (Ipv4Addr, u8)) -> bool {
        let shorter = length.min(24);
        let mask = if shorter == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(shorter))
        };
        u32::from(self.host(0)) & mask == u32::from(address) & mask
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/24", self.host(0))
    }
}

/// `ip` with `args`, its stderr in the error.
pub fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (Debian: apt-get install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The IPv4 prefixes the host routes or holds (every routing table and every address), less
/// the default route, which overlaps everything by definition.
fn host_prefixes() -> anyhow::Result<Vec<(Ipv4Addr, u8, String)>> {
    const ROUTE_TYPES: &[&str] = &[
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "throw",
        "unreachable",
        "prohibit",
        "blackhole",
        "nat",
        "anycast",
    ];
    let mut found = Vec::new();
    let routes = ip(&["-4", "-o", "route", "show", "table", "all"])?;
    for line in routes.lines() {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_some_and(|w| ROUTE_TYPES.contains(w)) {
            words.next();
        }
        if let Some(prefix) = words.next().and_then(parse_prefix) {
            found.push((prefix.0, prefix.1, format!("route {}", line.trim())));
        }
    }
    let addresses = ip(&["-4", "-o", "addr", "show"])?;
    for line in addresses.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(prefix) = words.get(3).copied().and_then(parse_prefix) {
            found.push((
                prefix.0,
                prefix.1,
                format!("address {} on {}", words[3], words[1]),
            ));
        }
    }
    found.retain(|(_, length, _)| *length > 0);
    Ok(found)
}

fn parse_prefix(text: &str) -> Option<(Ipv4Addr, u8)> {
    match text.split_once('/') {
        Some((address, length)) => Some((address.parse().ok()?, length.parse().ok()?)),
        None => Some((text.parse().ok()?, 32)),
    }
}

/// Refuses a subnet the host already uses: its nodes would shadow those addresses for pods.
pub fn check_host_collision(subnet: Subnet) -> anyhow::Result<()> {
    if let Some((_, _, what)) = host_prefixes()?
        .into_iter()
        .find(|(address, length, _)| subnet.overlaps((*address, *length)))
    {
        bail!(
            "the devcluster's node network {subnet} overlaps the host's {what}: \
             choose another with --subnet A.B.C.0/24"
        );
    }
    Ok(())
}

/// The network namespaces under /run/netns whose name starts with `prefix`.
pub fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// The switch: a namespace with bridge `br0`, up.
pub fn create_switch(netns: &str) -> anyhow::Result<()> {
    ip(&["netns", "add", netns])?;
    ip(&["-n", netns, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", netns, "link", "set", "br0", "up"])?;
    Ok(())
}

/// A node's namespace: `eth0` at `address`/24, its peer `port` on the switch's bridge.
pub fn create_node(netns: &str, switch: &str, port: &str, address: Ipv4Addr) -> anyhow::Result<()> {
    ip(&["netns", "add", netns])?;
    ip(&["-n", netns, "link", "set", "lo", "up"])?;
    ip(&[
        "-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", switch,
    ])?;
    ip(&["-n", switch, "link", "set", port, "master", "br0", "up"])?;
    ip(&[
        "-n",
        netns,
        "addr",
        "add",
        &format!("{address}/24"),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", netns, "link", "set", "eth0", "up"])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_stay_inside_the_devcluster_range() {
        for hash in [0, u64::MAX, 0x1234_5678_9abc_def0, 7 << 32, 255 << 40] {
            let [a, b, _] = Subnet::from_hash(hash).0;
            assert_eq!(a, 10);
            assert!((200..208).contains(&b), "{hash:x}");
        }
    }

    #[test]
    fn overlap_is_by_the_shorter_prefix() {
        let subnet = Subnet([10, 201, 7]);
        assert!(subnet.overlaps((Ipv4Addr::new(10, 0, 0, 0), 8)));
        assert!(subnet.overlaps((Ipv4Addr::new(10, 201, 7, 9), 32)));
        assert!(subnet.overlaps((Ipv4Addr::new(10, 201, 0, 0), 16)));
        assert!(!subnet.overlaps((Ipv4Addr::new(10, 201, 8, 0), 24)));
        assert!(!subnet.overlaps((Ipv4Addr::new(192, 0, 2, 0), 24)));
    }

    #[test]
    fn only_a_slash_24_is_a_subnet() {
        assert_eq!(Subnet::parse("10.9.8.0/24").unwrap(), Subnet([10, 9, 8]));
        assert!(Subnet::parse("10.9.8.1/24").is_err());
        assert!(Subnet::parse("10.9.0.0/16").is_err());
        assert!(Subnet::parse("10.9.8.0").is_err());
        assert_eq!(
            parse_prefix("192.0.2.2"),
            Some((Ipv4Addr::new(192, 0, 2, 2), 32))
        );
    }
}
