//! The addresses an image URL may not lead to, so fetching images does not make the proxy a
//! way into its network: loopback, private, link-local, unique-local and cloud-metadata
//! addresses (unless the operator allows private networks; metadata never).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address may not be fetched from, or `None` when it may.
pub(crate) fn forbidden_reason(ip: IpAddr, allow_private_networks: bool) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    if is_metadata(ip) {
        return Some("a cloud metadata address");
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return Some("not a unicast address");
    }
    if let IpAddr::V4(v4) = ip
        && (v4.is_broadcast() || v4.octets()[0] == 0 || v4.octets()[0] >= 240)
    {
        return Some("a reserved address");
    }
    if allow_private_networks {
        return None;
    }
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_private() || is_shared_v4(v4) {
                Some("a private address")
            } else if v4.is_link_local() {
                Some("a link-local address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("a loopback address")
            } else if first & 0xfe00 == 0xfc00 {
                Some("a unique-local address")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else {
                None
            }
        }
    }
}

/// 100.64.0.0/10, carrier-grade NAT: private in practice.
fn is_shared_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    a == 100 && (64..128).contains(&b)
}

fn is_metadata(ip: IpAddr) -> bool {
    match ip {
        // AWS, GCP, Azure, OpenStack and others; Alibaba uses 100.100.100.200.
        IpAddr::V4(v4) => {
            v4 == Ipv4Addr::new(169, 254, 169, 254)
                || v4 == Ipv4Addr::new(169, 254, 170, 2)
                || v4 == Ipv4Addr::new(100, 100, 100, 200)
        }
        // AWS's IPv6 metadata endpoint.
        IpAddr::V6(v6) => v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(ip: &str) -> Option<&'static str> {
        forbidden_reason(ip.parse().unwrap(), false)
    }

    #[test]
    fn internal_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "fd00:ec2::254",
            "255.255.255.255",
        ] {
            assert!(reason(ip).is_some(), "{ip} should be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert_eq!(reason(ip), None, "{ip} should be allowed");
        }
    }

    #[test]
    fn private_networks_can_be_allowed_but_metadata_never() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(forbidden_reason(ip, true), None);
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        assert!(forbidden_reason(metadata, true).is_some());
    }
}
