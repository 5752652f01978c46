//! Network addresses as policy sees them: CIDR blocks (`[smtp] trusted_networks`,
//! `[server] callback_allow`) and which addresses are internal, so that a URL a user gives
//! cannot make the server call into its own network.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A block of addresses: `10.0.0.0/8`, `::1/128`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    /// Whether `ip` is in the block. An IPv4 address written as IPv6 (`::ffff:10.0.0.1`)
    /// is taken as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xFFu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| {
            format!("\"{s}\" is not a network: write it like 10.0.0.0/8 or fd00::/8")
        })?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("\"{s}\": the prefix length must be 0 to {max}"))?,
        };
        let net = net.to_canonical();
        Ok(Cidr {
            net,
            len: if net.is_ipv4() { len.min(32) } else { len },
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

/// Parses a list of blocks, naming the first that is wrong.
pub fn parse_cidrs(items: &[String]) -> Result<Vec<Cidr>, String> {
    items.iter().map(|s| s.parse()).collect()
}

/// Whether an address is not a public unicast address: loopback, private (RFC 1918, RFC 4193
/// unique local), link-local, carrier-grade NAT (RFC 6598), multicast, broadcast, unspecified,
/// documentation and other reserved blocks, and IPv6 forms that carry one of those IPv4
/// addresses (mapped, compatible, NAT64's well-known prefix, 6to4).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_unspecified()
        || a.is_documentation()
        || o[0] == 0 // "this network" (RFC 791)
        || (o[0] == 100 && (o[1] & 0xC0) == 64) // 100.64.0.0/10, shared address space
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24, protocol assignments
        || (o[0] == 198 && (o[1] & 0xFE) == 18) // 198.18.0.0/15, benchmarking
        || o[0] >= 240 // reserved, and broadcast
}

fn internal_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    let embedded_v4 =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    a.is_loopback()
        || a.is_unspecified()
        || a.is_multicast()
        || (s[0] & 0xFE00) == 0xFC00 // fc00::/7, unique local
        || (s[0] & 0xFFC0) == 0xFE80 // fe80::/10, link-local
        || (s[0] & 0xFFC0) == 0xFEC0 // fec0::/10, old site-local
        || (s[0] == 0x2001 && s[1] == 0x0DB8) // documentation
        // ::a.b.c.d (compatible) and 64:ff9b::a.b.c.d (NAT64) reach IPv4 addresses.
        || (s[..6] == [0; 6] && internal_v4(embedded_v4(s[6], s[7])))
        || (s[0] == 0x0064 && s[1] == 0xFF9B && internal_v4(embedded_v4(s[6], s[7])))
        // 2002:a.b.c.d::/48, 6to4.
        || (s[0] == 0x2002 && internal_v4(embedded_v4(s[1], s[2])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses_only() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.255.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(
            c.contains(ip("::ffff:10.1.0.9")),
            "IPv4-mapped is the IPv4 address"
        );
        let c: Cidr = "192.168.1.128/25".parse().unwrap();
        assert!(c.contains(ip("192.168.1.200")) && !c.contains(ip("192.168.1.127")));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        assert_eq!("fd00::/8".parse::<Cidr>().unwrap().to_string(), "fd00::/8");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com/8"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("10.0.0.0/8"));
    }

    #[test]
    fn internal_addresses_are_recognised_in_every_spelling() {
        for a in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd12::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:0a00:0001::1",
            "0.1.2.3",
            "198.18.0.1",
        ] {
            assert!(is_internal(ip(a)), "{a} is internal");
        }
        for a in [
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700::1111",
            "64:ff9b::8.8.8.8",
            "100.128.0.1",
        ] {
            assert!(!is_internal(ip(a)), "{a} is public");
        }
    }
}
