//! Client addresses as limits count them.
//!
//! One IPv6 subscriber usually holds a whole /64 (SLAAC, privacy addresses), so a limit keyed
//! by the full address gives one machine 2^64 budgets. Every limit that is keyed by an IP
//! (rate-limit tiers, auto-block, card testing, login failures, the faucet's per-IP limit,
//! connection caps) keys by [`ip_key`] instead.

use std::net::IpAddr;

/// The key a per-IP limit counts `ip` under: an IPv4 address as it is (IPv4-mapped IPv6 is
/// IPv4), an IPv6 address as its /64 (the interface half zeroed).
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::from(segments)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_grouped_by_its_64_and_ipv4_is_kept_whole() {
        let key = |s: &str| ip_key(s.parse().unwrap()).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
    }
}
