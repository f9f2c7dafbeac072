//! A small CIDR type on top of `std::net` (enough for subnet validation and picking).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network: address and prefix length, IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address as written (not necessarily the network address).
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix_len: u8,
}

impl Cidr {
    fn bits(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    fn as_u128(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        }
    }

    fn ip_of(&self, v: u128) -> IpAddr {
        if self.addr.is_ipv4() {
            IpAddr::V4(Ipv4Addr::from((v & 0xffff_ffff) as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(v))
        }
    }

    fn mask(&self) -> u128 {
        let host_bits = u32::from(self.bits() - self.prefix_len);
        let all = if self.bits() == 32 {
            0xffff_ffffu128
        } else {
            u128::MAX
        };
        if host_bits >= 128 {
            0
        } else {
            all & !((1u128 << host_bits) - 1)
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        self.ip_of(Self::as_u128(self.addr) & self.mask())
    }

    /// The last address of the network (broadcast for IPv4).
    pub fn last(&self) -> IpAddr {
        let all = if self.bits() == 32 {
            0xffff_ffffu128
        } else {
            u128::MAX
        };
        self.ip_of((Self::as_u128(self.addr) & self.mask()) | (all & !self.mask()))
    }

    /// The first host address (network + 1), or the network address for /31, /32, /127, /128.
    pub fn first_host(&self) -> IpAddr {
        let net = Self::as_u128(self.network());
        if self.bits() - self.prefix_len <= 1 {
            self.ip_of(net)
        } else {
            self.ip_of(net + 1)
        }
    }

    /// Whether `ip` lies in this network (same family).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && (Self::as_u128(*ip) & self.mask()) == (Self::as_u128(self.addr) & self.mask())
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(&other.network()) || other.contains(&self.network())
    }

    /// The same network with its host bits cleared.
    pub fn canonical(&self) -> Cidr {
        Cidr {
            addr: self.network(),
            prefix_len: self.prefix_len,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid CIDR \"{s}\": missing /prefix"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("invalid CIDR \"{s}\": bad address \"{a}\""))?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid CIDR \"{s}\": bad prefix length \"{p}\""));
        }
        let prefix_len: u8 = p
            .parse()
            .map_err(|_| format!("invalid CIDR \"{s}\": bad prefix length \"{p}\""))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(format!(
                "invalid CIDR \"{s}\": prefix length {prefix_len} exceeds {max}"
            ));
        }
        Ok(Cidr { addr, prefix_len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_math() {
        let c: Cidr = "10.78.3.7/24".parse().unwrap();
        assert_eq!(c.network().to_string(), "10.78.3.0");
        assert_eq!(c.first_host().to_string(), "10.78.3.1");
        assert_eq!(c.last().to_string(), "10.78.3.255");
        assert!(c.contains(&"10.78.3.200".parse().unwrap()));
        assert!(!c.contains(&"10.78.4.1".parse().unwrap()));
        let big: Cidr = "10.78.0.0/16".parse().unwrap();
        assert!(big.overlaps(&c) && c.overlaps(&big));
        let v6: Cidr = "fd00::/64".parse().unwrap();
        assert_eq!(v6.first_host().to_string(), "fd00::1");
        assert!(!v6.contains(&"10.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(&"1.2.3.4".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("10.0.0.0/+8".parse::<Cidr>().is_err());
        assert!("x/8".parse::<Cidr>().is_err());
    }
}
