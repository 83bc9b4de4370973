//! The address pool of `r8s server --lb-pool` and its allocator, as MetalLB's controller hands
//! out addresses: each `LoadBalancer` Service gets one, the lowest free unless its
//! `spec.loadBalancerIP` asks for one; no address ever goes to two Services.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// One `--lb-pool` value: every address from `first` to `last`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error(
        "{0:?} is not an address range: give a CIDR (10.0.0.240/28) or FIRST-LAST (10.0.0.240-10.0.0.250)"
    )]
    Syntax(String),
    #[error("{0:?}: IPv6 pools are not supported (nodes announce pool addresses by ARP)")]
    Ipv6(String),
    #[error("{0:?}: the first address is above the last")]
    Reversed(String),
}

fn ipv4(text: &str, whole: &str) -> Result<Ipv4Addr, RangeError> {
    match text.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => Ok(ip),
        Ok(IpAddr::V6(_)) => Err(RangeError::Ipv6(whole.to_owned())),
        Err(_) => Err(RangeError::Syntax(whole.to_owned())),
    }
}

impl FromStr for AddressRange {
    type Err = RangeError;

    /// `A.B.C.D/N` (every address of the block, as MetalLB uses a CIDR), `FIRST-LAST`, or one
    /// address.
    fn from_str(text: &str) -> Result<Self, RangeError> {
        let syntax = || RangeError::Syntax(text.to_owned());
        if let Some((address, bits)) = text.split_once('/') {
            let base = ipv4(address, text)?;
            let bits: u32 = bits.trim().parse().map_err(|_| syntax())?;
            if bits > 32 {
                return Err(syntax());
            }
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            let first = u32::from(base) & mask;
            return Ok(Self {
                first: first.into(),
                last: (first | !mask).into(),
            });
        }
        let (first, last) = match text.split_once('-') {
            Some((first, last)) => (ipv4(first, text)?, ipv4(last, text)?),
            None => {
                let only = ipv4(text, text)?;
                (only, only)
            }
        };
        if first > last {
            return Err(RangeError::Reversed(text.to_owned()));
        }
        Ok(Self { first, last })
    }
}

impl AddressRange {
    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &AddressRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// The addresses load balancers get: the union of the `--lb-pool` ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Sorted, disjoint and not touching: overlapping or adjacent ranges are merged.
    ranges: Vec<(u32, u32)>,
}

impl Pool {
    pub fn new(ranges: &[AddressRange]) -> Self {
        let mut sorted: Vec<(u32, u32)> = ranges
            .iter()
            .map(|r| (u32::from(r.first), u32::from(r.last)))
            .collect();
        sorted.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(sorted.len());
        for (first, last) in sorted {
            match merged.last_mut() {
                Some((_, end)) if first <= end.saturating_add(1) => *end = (*end).max(last),
                _ => merged.push((first, last)),
            }
        }
        Self { ranges: merged }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        self.ranges
            .iter()
            .any(|&(first, last)| first <= ip && ip <= last)
    }

    /// How many addresses the pool has.
    pub fn size(&self) -> u64 {
        self.ranges
            .iter()
            .map(|&(first, last)| u64::from(last - first) + 1)
            .sum()
    }

    /// The lowest address of the pool not in `used`.
    fn lowest_free<V>(&self, used: &BTreeMap<Ipv4Addr, V>) -> Option<Ipv4Addr> {
        for &(first, last) in &self.ranges {
            let mut candidate = u64::from(first);
            for taken in used.range(Ipv4Addr::from(first)..=Ipv4Addr::from(last)) {
                if u64::from(u32::from(*taken.0)) != candidate {
                    break;
                }
                candidate += 1;
            }
            if candidate <= u64::from(last) {
                return u32::try_from(candidate).ok().map(Ipv4Addr::from);
            }
        }
        None
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranges: Vec<String> = self
            .ranges
            .iter()
            .map(|&(first, last)| format!("{}-{}", Ipv4Addr::from(first), Ipv4Addr::from(last)))
            .collect();
        f.write_str(&ranges.join(", "))
    }
}

/// A Service as the allocator knows it: by UID (a Service deleted and made again under the
/// same name is another Service), named for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub uid: String,
    /// `namespace/name`.
    pub key: String,
}

/// Why a Service got no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("spec.loadBalancerIP {0:?} is not an IPv4 address")]
    Invalid(String),
    #[error("spec.loadBalancerIP {ip} is not in the pool ({pool})")]
    NotInPool { ip: Ipv4Addr, pool: String },
    #[error("spec.loadBalancerIP {ip} is already in use by {by}")]
    InUse { ip: Ipv4Addr, by: String },
    #[error("no available IPs: all {size} addresses of the pool ({pool}) are in use")]
    Exhausted { size: u64, pool: String },
}

/// Who holds which address of the pool. Kept in memory across passes because a status the
/// controller just wrote reaches its cache later; recovered from the Services' status when the
/// controller starts, so addresses survive restarts.
#[derive(Debug)]
pub struct Allocator {
    pool: Pool,
    owners: BTreeMap<Ipv4Addr, Holder>,
    held: HashMap<String, Ipv4Addr>,
}

impl Allocator {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            owners: BTreeMap::new(),
            held: HashMap::new(),
        }
    }

    /// The address the Service with `uid` holds.
    pub fn held_by(&self, uid: &str) -> Option<Ipv4Addr> {
        self.held.get(uid).copied()
    }

    /// The Services holding addresses, by UID.
    pub fn holders(&self) -> impl Iterator<Item = &str> {
        self.held.keys().map(String::as_str)
    }

    /// Frees the address of the Service with `uid`, if it held one.
    pub fn release(&mut self, uid: &str) -> Option<Ipv4Addr> {
        let ip = self.held.remove(uid)?;
        self.owners.remove(&ip);
        self.check();
        Some(ip)
    }

    fn take(&mut self, holder: &Holder, ip: Ipv4Addr) {
        debug_assert!(!self.owners.contains_key(&ip), "{ip} given twice");
        debug_assert!(!self.held.contains_key(&holder.uid), "{holder:?} holds two");
        self.owners.insert(ip, holder.clone());
        self.held.insert(holder.uid.clone(), ip);
        self.check();
    }

    fn check(&self) {
        debug_assert_eq!(self.owners.len(), self.held.len());
        debug_assert!(
            self.owners
                .iter()
                .all(|(ip, h)| self.held.get(&h.uid) == Some(ip))
        );
    }

    /// Gives back to `holder` the first of the addresses its status shows that is in the
    /// pool and free: what it had before the controller restarted.
    pub fn recover(&mut self, holder: &Holder, status: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        if let Some(ip) = self.held_by(&holder.uid) {
            return Some(ip);
        }
        let ip = status
            .iter()
            .copied()
            .find(|ip| self.pool.contains(*ip) && !self.owners.contains_key(ip))?;
        self.take(holder, ip);
        Some(ip)
    }

    /// An address for `holder`: `requested` (its `spec.loadBalancerIP`) when given, else the
    /// lowest free one. A holder keeps what it has.
    pub fn assign(
        &mut self,
        holder: &Holder,
        requested: Option<&str>,
    ) -> Result<Ipv4Addr, Failure> {
        if let Some(ip) = self.held_by(&holder.uid) {
            return Ok(ip);
        }
        let ip = match requested {
            Some(text) => {
                let ip: Ipv4Addr = text
                    .parse()
                    .map_err(|_| Failure::Invalid(text.to_owned()))?;
                if !self.pool.contains(ip) {
                    return Err(Failure::NotInPool {
                        ip,
                        pool: self.pool.to_string(),
                    });
                }
                if let Some(owner) = self.owners.get(&ip) {
                    return Err(Failure::InUse {
                        ip,
                        by: owner.key.clone(),
                    });
                }
                ip
            }
            None => self
                .pool
                .lowest_free(&self.owners)
                .ok_or_else(|| Failure::Exhausted {
                    size: self.pool.size(),
                    pool: self.pool.to_string(),
                })?,
        };
        self.take(holder, ip);
        Ok(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> AddressRange {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn holder(name: &str) -> Holder {
        Holder {
            uid: format!("uid-{name}"),
            key: format!("default/{name}"),
        }
    }

    #[test]
    fn a_cidr_is_every_address_of_its_block() {
        assert_eq!(
            range("10.0.0.240/28"),
            AddressRange {
                first: ip("10.0.0.240"),
                last: ip("10.0.0.255")
            }
        );
        // Host bits are dropped, as net.ParseCIDR does.
        assert_eq!(range("10.0.0.245/28"), range("10.0.0.240/28"));
        assert_eq!(range("10.0.0.7/32"), range("10.0.0.7"));
    }

    #[test]
    fn a_dash_range_includes_both_ends() {
        let r = range(" 10.0.0.240 - 10.0.0.250 ");
        assert_eq!((r.first, r.last), (ip("10.0.0.240"), ip("10.0.0.250")));
        assert_eq!(Pool::new(&[r]).size(), 11);
    }

    #[test]
    fn malformed_reversed_and_ipv6_ranges_are_refused() {
        for text in [
            "",
            "10.0.0.0/33",
            "10.0.0.1/x",
            "10.0.0.256-10.0.1.1",
            "pool",
        ] {
            assert!(
                matches!(text.parse::<AddressRange>(), Err(RangeError::Syntax(_))),
                "{text:?}"
            );
        }
        assert_eq!(
            "10.0.0.9-10.0.0.1".parse::<AddressRange>(),
            Err(RangeError::Reversed("10.0.0.9-10.0.0.1".into()))
        );
        assert!(matches!(
            "fd00::/120".parse::<AddressRange>(),
            Err(RangeError::Ipv6(_))
        ));
    }

    #[test]
    fn ranges_overlap_when_they_share_an_address() {
        let cluster = range("10.96.0.0/12");
        assert!(range("10.100.0.0-10.200.0.0").overlaps(&cluster));
        assert!(range("10.111.255.255").overlaps(&cluster));
        assert!(!range("10.112.0.0/28").overlaps(&cluster));
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        let pool = Pool::new(&[
            range("10.0.0.8-10.0.0.12"),
            range("10.0.0.0/29"),
            range("10.0.0.10-10.0.0.20"),
            range("10.0.1.0/31"),
        ]);
        assert_eq!(pool.to_string(), "10.0.0.0-10.0.0.20, 10.0.1.0-10.0.1.1");
        assert_eq!(pool.size(), 23);
        assert!(pool.contains(ip("10.0.0.20")) && !pool.contains(ip("10.0.0.21")));
    }

    #[test]
    fn the_whole_address_space_is_a_pool_too() {
        let pool = Pool::new(&[range("0.0.0.0/0")]);
        assert_eq!(pool.size(), 1 << 32);
        let mut allocator = Allocator::new(Pool::new(&[range("255.255.255.255")]));
        assert_eq!(
            allocator.assign(&holder("a"), None),
            Ok(ip("255.255.255.255"))
        );
    }

    #[test]
    fn services_get_the_lowest_free_address_across_ranges() {
        let pool = Pool::new(&[range("10.0.1.0-10.0.1.1"), range("10.0.0.5-10.0.0.6")]);
        let mut allocator = Allocator::new(pool);
        let got: Vec<Ipv4Addr> = ["a", "b", "c"]
            .iter()
            .map(|n| allocator.assign(&holder(n), None).unwrap())
            .collect();
        assert_eq!(got, [ip("10.0.0.5"), ip("10.0.0.6"), ip("10.0.1.0")]);
        // A holder keeps its address.
        assert_eq!(allocator.assign(&holder("b"), None), Ok(ip("10.0.0.6")));
        // A freed address is the lowest free again.
        assert_eq!(allocator.release("uid-a"), Some(ip("10.0.0.5")));
        assert_eq!(allocator.assign(&holder("d"), None), Ok(ip("10.0.0.5")));
    }

    #[test]
    fn an_exhausted_pool_says_so() {
        let mut allocator = Allocator::new(Pool::new(&[range("10.0.0.1-10.0.0.2")]));
        allocator.assign(&holder("a"), None).unwrap();
        allocator.assign(&holder("b"), None).unwrap();
        let failure = allocator.assign(&holder("c"), None).unwrap_err();
        assert_eq!(
            failure.to_string(),
            "no available IPs: all 2 addresses of the pool (10.0.0.1-10.0.0.2) are in use"
        );
        assert_eq!(allocator.held_by("uid-c"), None);
    }

    #[test]
    fn a_requested_address_is_given_only_when_in_the_pool_and_free() {
        let mut allocator = Allocator::new(Pool::new(&[range("10.0.0.0/29")]));
        assert_eq!(
            allocator.assign(&holder("a"), Some("10.0.0.6")),
            Ok(ip("10.0.0.6"))
        );
        assert_eq!(
            allocator.assign(&holder("b"), Some("10.0.0.6")),
            Err(Failure::InUse {
                ip: ip("10.0.0.6"),
                by: "default/a".into()
            })
        );
        assert_eq!(
            allocator.assign(&holder("b"), Some("10.0.1.6")),
            Err(Failure::NotInPool {
                ip: ip("10.0.1.6"),
                pool: "10.0.0.0-10.0.0.7".into()
            })
        );
        assert_eq!(
            allocator.assign(&holder("b"), Some("fd00::1")),
            Err(Failure::Invalid("fd00::1".into()))
        );
        // The lowest free skips the requested one.
        assert_eq!(allocator.assign(&holder("b"), None), Ok(ip("10.0.0.0")));
    }

    #[test]
    fn recovery_keeps_addresses_in_the_pool_and_never_gives_one_twice() {
        let mut allocator = Allocator::new(Pool::new(&[range("10.0.0.0/29")]));
        assert_eq!(
            allocator.recover(&holder("a"), &[ip("192.168.0.1"), ip("10.0.0.3")]),
            Some(ip("10.0.0.3"))
        );
        // A second Service showing the same address (a status written by hand) does not get it.
        assert_eq!(allocator.recover(&holder("b"), &[ip("10.0.0.3")]), None);
        // Nor does one whose address is outside the pool (the pool changed).
        assert_eq!(allocator.recover(&holder("c"), &[ip("10.0.1.3")]), None);
        assert_eq!(allocator.assign(&holder("b"), None), Ok(ip("10.0.0.0")));
    }
}
