//! What a session knows of its client at the edge: the address and the `User-Agent` (parsed
//! by `ampflow_actors::accounts::parse_user_agent`), the country and city from a MaxMind
//! database when one is configured. (Whether a later request breaks the user's IP binding is
//! `ampflow_actors::accounts::breaks_binding`.)

use std::net::IpAddr;

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
