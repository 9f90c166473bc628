//! IP binding (seed 000, "Security Settings"): whether a request breaks the binding its
//! user chose for the session that logged in from another address. Bindings alert (the
//! session is flagged once, with an audit row); they do not refuse.

use std::net::IpAddr;

use ampflow_storage::IpBinding;

/// Whether a request from `now_ip` (located at `now_country`) breaks `binding` for a session
/// that logged in from `login_ip` (at `login_country`). Country binding needs both countries;
/// without GeoIP nothing is flagged.
pub fn breaks_binding(
    binding: IpBinding,
    login_ip: IpAddr,
    login_country: Option<&str>,
    now_ip: IpAddr,
    now_country: Option<&str>,
) -> bool {
    match binding {
        IpBinding::None => false,
        IpBinding::Strict => login_ip != now_ip,
        IpBinding::Subnet => subnet(login_ip) != subnet(now_ip),
        IpBinding::Country => match (login_country, now_country) {
            (Some(a), Some(b)) => a != b,
            _ => false,
        },
    }
}

/// The /24 of an IPv4 address or the /64 of an IPv6 one.
fn subnet(ip: IpAddr) -> IpAddr {
    match ampflow_types::net::ip_key(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        v6 => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_flag_what_they_promise() {
        let a: IpAddr = "203.0.113.45".parse().unwrap();
        let same_subnet: IpAddr = "203.0.113.99".parse().unwrap();
        let other: IpAddr = "198.51.100.22".parse().unwrap();
        assert!(!breaks_binding(IpBinding::None, a, None, other, None));
        assert!(breaks_binding(
            IpBinding::Strict,
            a,
            None,
            same_subnet,
            None
        ));
        assert!(!breaks_binding(
            IpBinding::Subnet,
            a,
            None,
            same_subnet,
            None
        ));
        assert!(breaks_binding(IpBinding::Subnet, a, None, other, None));
        assert!(!breaks_binding(IpBinding::Country, a, None, other, None));
        assert!(breaks_binding(
            IpBinding::Country,
            a,
            Some("DE"),
            other,
            Some("FR")
        ));
        assert!(!breaks_binding(
            IpBinding::Country,
            a,
            Some("DE"),
            other,
            Some("DE")
        ));
        let v6: IpAddr = "2001:db8:1:2:3::1".parse().unwrap();
        let v6_same: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(!breaks_binding(IpBinding::Subnet, v6, None, v6_same, None));
    }
}
