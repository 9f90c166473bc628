//! The browser, OS and device a session's `User-Agent` names (woothee): shown with the
//! session, and compared with the user's recent sessions to notice a login from a new device.

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
}
