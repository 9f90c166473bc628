//! What a session knows of its client: the address, the browser, OS and device parsed from
//! `User-Agent` (woothee), and the country and city from a MaxMind database when one is
//! configured; and whether a later request breaks the user's IP binding.

use std::net::IpAddr;

use ampflow_storage::IpBinding;

/// Longest `User-Agent` kept.
pub const USER_AGENT_LENGTH_MAX: usize = 512;

/// A MaxMind City database, read into memory at start.
pub struct Geoip(maxminddb::Reader<Vec<u8>>);

/// Where an address is, as far as the database knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    /// In English.
    pub city: Option<String>,
}

impl Geoip {
    pub fn open(path: &std::path::Path) -> Result<Self, String> {
        maxminddb::Reader::open_readfile(path)
            .map(Self)
            .map_err(|e| format!("geoip.database_path {}: {e}", path.display()))
    }

    pub fn locate(&self, ip: IpAddr) -> Location {
        let Ok(found) = self.0.lookup(ip) else {
            return Location::default();
        };
        let text = |path: &[maxminddb::PathElement<'_>]| -> Option<String> {
            found.decode_path::<String>(path).ok().flatten()
        };
        Location {
            country: text(&maxminddb::path!["country", "iso_code"])
                .filter(|c| c.len() == 2)
                .map(|c| c.to_ascii_uppercase()),
            city: text(&maxminddb::path!["city", "names", "en"])
                .map(|c| c.chars().take(200).collect()),
        }
    }
}

/// The browser, OS and device a `User-Agent` names; `None` fields when it names none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub browser_family: Option<String>,
    pub os_family: Option<String>,
    /// desktop, mobile, tablet, bot or other.
    pub device_type: Option<String>,
}

pub fn parse_user_agent(user_agent: Option<&str>) -> Device {
    let Some(parsed) = user_agent.and_then(|ua| woothee::parser::Parser::new().parse(ua)) else {
        return Device::default();
    };
    let known = |v: &str| (!v.is_empty() && v != "UNKNOWN").then(|| v.to_string());
    let os_family = match parsed.os {
        os if os.starts_with("Windows") => Some("Windows".to_string()),
        "Mac OSX" => Some("macOS".to_string()),
        "iPhone" | "iPad" | "iPod" => Some("iOS".to_string()),
        other => known(other),
    };
    let device_type = match (parsed.category, parsed.os) {
        (_, "iPad") => "tablet",
        ("pc", _) => "desktop",
        ("smartphone" | "mobilephone", _) => "mobile",
        ("crawler", _) => "bot",
        _ => "other",
    };
    Device {
        browser_family: known(parsed.name),
        os_family,
        device_type: Some(device_type.to_string()),
    }
}

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
    match crate::net::ip_key(ip) {
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
    fn user_agents_are_parsed_into_families() {
        let chrome = parse_user_agent(Some(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        ));
        assert_eq!(chrome.browser_family.as_deref(), Some("Chrome"));
        assert_eq!(chrome.os_family.as_deref(), Some("Windows"));
        assert_eq!(chrome.device_type.as_deref(), Some("desktop"));
        let iphone = parse_user_agent(Some(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        ));
        assert_eq!(iphone.browser_family.as_deref(), Some("Safari"));
        assert_eq!(iphone.os_family.as_deref(), Some("iOS"));
        assert_eq!(iphone.device_type.as_deref(), Some("mobile"));
        assert_eq!(parse_user_agent(None), Device::default());
    }

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
