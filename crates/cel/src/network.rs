//! Kubernetes' CEL IP and CIDR libraries: `isIP`, `ip()` with `family()`, `isUnspecified()`,
//! `isLoopback()`, `isLinkLocalMulticast()`, `isLinkLocalUnicast()`, `isGlobalUnicast()`,
//! `ip.isCanonical()`; `isCIDR`, `cidr()` with `containsIP()`, `containsCIDR()`, `ip()`,
//! `masked()`, `prefixLength()`; and `string()` of both. As upstream, IPv4-mapped IPv6
//! addresses and zones are refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use cel::common::functions::Function;
use cel::common::types::STRING_TYPE;
use cel::objects::Opaque;
use cel::{Env, Value};

use crate::library::{member_dyn, natives, opaque, text};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ip(IpAddr);

impl Opaque for Ip {
    fn runtime_type_name(&self) -> &str {
        "net.IP"
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cidr {
    ip: IpAddr,
    prefix: u8,
}

impl Opaque for Cidr {
    fn runtime_type_name(&self) -> &str {
        "net.CIDR"
    }
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| format!("IP Address {text:?} parse error during conversion from string"))?;
    if let IpAddr::V6(v6) = ip
        && v6.to_ipv4_mapped().is_some()
    {
        return Err(format!("IPv4-mapped IPv6 address {text:?} is not allowed"));
    }
    Ok(ip)
}

fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let invalid = || format!("network address {text:?} parse error during conversion from string");
    let (address, prefix) = text.split_once('/').ok_or_else(invalid)?;
    let ip = parse_ip(address).map_err(|_| invalid())?;
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= bits && !prefix.starts_with('+'))
        .ok_or_else(invalid)?;
    Ok(Cidr { ip, prefix })
}

fn ip_of(value: &Value) -> Result<IpAddr, String> {
    match value {
        Value::String(s) => parse_ip(s),
        other => opaque::<Ip>(other, "an IP").map(|ip| ip.0),
    }
}

fn cidr_of(value: &Value) -> Result<Cidr, String> {
    match value {
        Value::String(s) => parse_cidr(s),
        other => opaque::<Cidr>(other, "a CIDR"),
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn width(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// The network part of `ip` under a `prefix`-bit mask.
fn network(ip: IpAddr, prefix: u8) -> u128 {
    let host_bits = u32::from(width(ip) - prefix);
    bits(ip).checked_shr(host_bits).unwrap_or(0)
}

fn contains(cidr: &Cidr, ip: IpAddr) -> bool {
    cidr.ip.is_ipv4() == ip.is_ipv4() && network(cidr.ip, cidr.prefix) == network(ip, cidr.prefix)
}

fn masked(cidr: &Cidr) -> Cidr {
    let host_bits = u32::from(width(cidr.ip) - cidr.prefix);
    let kept = network(cidr.ip, cidr.prefix)
        .checked_shl(host_bits)
        .unwrap_or(0);
    let ip = match cidr.ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(kept as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(kept)),
    };
    Cidr {
        ip,
        prefix: cidr.prefix,
    }
}

fn ip_value(ip: IpAddr) -> Value {
    Value::Opaque(Arc::new(Ip(ip)))
}

fn is_ip(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Bool(parse_ip(text(&args[0])?).is_ok()))
}

fn ip(args: Vec<Value>) -> Result<Value, String> {
    match &args[0] {
        Value::String(s) => parse_ip(s).map(ip_value),
        // `cidr.ip()`: the address part.
        other => cidr_of(other).map(|c| ip_value(c.ip)),
    }
}

fn is_canonical(args: Vec<Value>) -> Result<Value, String> {
    let given = text(&args[0])?;
    Ok(Value::Bool(parse_ip(given)?.to_string() == given))
}

fn family(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Int(if ip_of(&args[0])?.is_ipv4() { 4 } else { 6 }))
}

fn is_unspecified(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Bool(ip_of(&args[0])?.is_unspecified()))
}

fn is_loopback(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Bool(ip_of(&args[0])?.is_loopback()))
}

fn is_link_local_multicast(args: Vec<Value>) -> Result<Value, String> {
    let local = match ip_of(&args[0])? {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.segments()[0] & 0xff0f == 0xff02,
    };
    Ok(Value::Bool(local))
}

fn is_link_local_unicast(args: Vec<Value>) -> Result<Value, String> {
    let local = match ip_of(&args[0])? {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    };
    Ok(Value::Bool(local))
}

/// Go's `IsGlobalUnicast`: not unspecified, loopback, multicast, link-local or broadcast.
fn is_global_unicast(args: Vec<Value>) -> Result<Value, String> {
    let ip = ip_of(&args[0])?;
    let link_local = is_link_local_unicast(vec![ip_value(ip)])? == Value::Bool(true);
    let global = !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || link_local)
        && ip != IpAddr::V4(Ipv4Addr::BROADCAST);
    Ok(Value::Bool(global))
}

fn is_cidr(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Bool(parse_cidr(text(&args[0])?).is_ok()))
}

fn cidr(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Opaque(Arc::new(parse_cidr(text(&args[0])?)?)))
}

fn contains_ip(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Bool(contains(&cidr_of(&args[0])?, ip_of(&args[1])?)))
}

fn contains_cidr(args: Vec<Value>) -> Result<Value, String> {
    let (outer, inner) = (cidr_of(&args[0])?, cidr_of(&args[1])?);
    Ok(Value::Bool(
        inner.prefix >= outer.prefix && contains(&outer, inner.ip),
    ))
}

fn masked_op(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Opaque(Arc::new(masked(&cidr_of(&args[0])?))))
}

fn prefix_length(args: Vec<Value>) -> Result<Value, String> {
    Ok(Value::Int(i64::from(cidr_of(&args[0])?.prefix)))
}

/// `string(ip)` and `string(cidr)`.
fn to_string(args: Vec<Value>) -> Result<Value, String> {
    let shown = match &args[0] {
        Value::Opaque(o) => match (o.downcast_ref::<Ip>(), o.downcast_ref::<Cidr>()) {
            (Some(ip), _) => ip.0.to_string(),
            (_, Some(c)) => format!("{}/{}", c.ip, c.prefix),
            _ => return Err("no string form".to_owned()),
        },
        _ => return Err("no string form".to_owned()),
    };
    Ok(Value::String(Arc::new(shown)))
}

natives! {
    is_ip_op = "isIP" => is_ip;
    ip_op = "ip" => ip;
    is_canonical_op = "ip.isCanonical" => is_canonical;
    family_op = "family" => family;
    is_unspecified_op = "isUnspecified" => is_unspecified;
    is_loopback_op = "isLoopback" => is_loopback;
    is_link_local_multicast_op = "isLinkLocalMulticast" => is_link_local_multicast;
    is_link_local_unicast_op = "isLinkLocalUnicast" => is_link_local_unicast;
    is_global_unicast_op = "isGlobalUnicast" => is_global_unicast;
    is_cidr_op = "isCIDR" => is_cidr;
    cidr_op = "cidr" => cidr;
    contains_ip_op = "containsIP" => contains_ip;
    contains_cidr_op = "containsCIDR" => contains_cidr;
    masked_op_op = "masked" => masked_op;
    prefix_length_op = "prefixLength" => prefix_length;
    to_string_op = "string" => to_string;
}

pub fn register(env: &mut Env) {
    let global = |env: &mut Env, name: &str, op: Function| {
        env.add_overload(name, &format!("k8s.{name}"), vec![STRING_TYPE], op)
            .unwrap_or_else(|e| panic!("registering {name}: {e:?}"));
    };
    global(env, "isIP", is_ip_op);
    global(env, "ip", ip_op);
    global(env, "ip.isCanonical", is_canonical_op);
    global(env, "isCIDR", is_cidr_op);
    global(env, "cidr", cidr_op);
    env.add_overload(
        "string",
        "k8s.string(net)",
        vec![cel::common::types::DYN_TYPE],
        to_string_op,
    )
    .expect("string of IPs and CIDRs");
    let members: [(&str, usize, Function); 11] = [
        ("family", 0, family_op),
        ("isUnspecified", 0, is_unspecified_op),
        ("isLoopback", 0, is_loopback_op),
        ("isLinkLocalMulticast", 0, is_link_local_multicast_op),
        ("isLinkLocalUnicast", 0, is_link_local_unicast_op),
        ("isGlobalUnicast", 0, is_global_unicast_op),
        ("containsIP", 1, contains_ip_op),
        ("containsCIDR", 1, contains_cidr_op),
        ("ip", 0, ip_op),
        ("masked", 0, masked_op_op),
        ("prefixLength", 0, prefix_length_op),
    ];
    for (name, args, op) in members {
        member_dyn(env, name, args, op);
    }
}

#[cfg(test)]
mod tests {
    use crate::library::eval;

    #[test]
    fn ips_parse_and_answer_their_family_and_kind() {
        assert_eq!(eval("isIP('10.0.0.1') && isIP('fd00::1')"), true.into());
        assert_eq!(
            eval("isIP('10.0.0.256') || isIP('::ffff:1.2.3.4') || isIP('01.2.3.4')"),
            false.into()
        );
        assert_eq!(eval("ip('10.0.0.1').family()"), 4.into());
        assert_eq!(eval("ip('fd00::1').family()"), 6.into());
        assert_eq!(
            eval("ip('127.0.0.1').isLoopback() && ip('::').isUnspecified()"),
            true.into()
        );
        assert_eq!(
            eval("ip('169.254.1.1').isLinkLocalUnicast() && ip('fe80::1').isLinkLocalUnicast()"),
            true.into()
        );
        assert_eq!(
            eval("ip('224.0.0.5').isLinkLocalMulticast() && ip('ff02::1').isLinkLocalMulticast()"),
            true.into()
        );
        assert_eq!(
            eval("ip('8.8.8.8').isGlobalUnicast() && !ip('127.0.0.1').isGlobalUnicast()"),
            true.into()
        );
        assert_eq!(
            eval("ip.isCanonical('fd00::1') && !ip.isCanonical('fd00:0::1')"),
            true.into()
        );
        assert_eq!(eval("string(ip('fd00:0::1'))"), "fd00::1".into());
        assert_eq!(eval("ip('10.0.0.1') == ip('10.0.0.1')"), true.into());
        // The standard conversions still answer first.
        assert_eq!(eval("string(1) + string(true)"), "1true".into());
    }

    #[test]
    fn cidrs_contain_addresses_and_networks() {
        assert_eq!(
            eval("isCIDR('10.0.0.0/8') && !isCIDR('10.0.0.0/33') && !isCIDR('10.0.0.0')"),
            true.into()
        );
        assert_eq!(
            eval("cidr('10.0.0.0/8').containsIP(ip('10.1.2.3'))"),
            true.into()
        );
        assert_eq!(
            eval("cidr('10.0.0.0/8').containsIP('11.0.0.1')"),
            false.into()
        );
        assert_eq!(
            eval("cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16')"),
            true.into()
        );
        assert_eq!(
            eval("cidr('10.1.0.0/16').containsCIDR(cidr('10.0.0.0/8'))"),
            false.into()
        );
        assert_eq!(
            eval(
                "cidr('fd00::/64').containsIP('fd00::5') && !cidr('fd00::/64').containsIP('10.0.0.1')"
            ),
            true.into()
        );
        assert_eq!(eval("cidr('10.1.2.3/8').prefixLength()"), 8.into());
        assert_eq!(
            eval("string(cidr('10.1.2.3/8').masked())"),
            "10.0.0.0/8".into()
        );
        assert_eq!(eval("string(cidr('10.1.2.3/8').ip())"), "10.1.2.3".into());
        assert_eq!(eval("cidr('0.0.0.0/0').containsIP('1.2.3.4')"), true.into());
    }
}
