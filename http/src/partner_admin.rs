//! Operator commands for the partner API (seed 003): partners' signing keys
//! (`ampflow partner create`, `ampflow partner revoke`) and the ads served to their sites
//! (`ampflow partner add-ad`).

use ampflow_storage::{PartnerAdRecord, PartnerKeyRecord, Storage};
use ampflow_types::Clock;
use anyhow::{Context, bail};
use base64::Engine;
use rand::RngCore;

/// Characters of an access key id after `IGF` (base32: no `:` and nothing to escape).
const KEY_ID_RANDOM_LENGTH: usize = 17;
const KEY_ID_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Random bytes in a secret: 240 bits, 40 Base64 characters.
const SECRET_BYTES: usize = 30;
const NAME_LENGTH_MAX: usize = 200;
/// CIDRs on one key's allowlist.
const ALLOWED_IPS_MAX: usize = 64;
/// Largest ad object, in bytes of JSON.
const AD_LENGTH_MAX: usize = 16 * 1024;

/// A new key's id and secret: printed once, by `ampflow partner create`.
pub async fn create_partner_key(
    storage: &Storage,
    clock: &dyn Clock,
    organisation_id: &str,
    allowed_ips: &[String],
    name: Option<&str>,
) -> anyhow::Result<PartnerKeyRecord> {
    if storage.organisation(organisation_id).await?.is_none() {
        bail!("no organisation has the id {organisation_id}");
    }
    if allowed_ips.len() > ALLOWED_IPS_MAX {
        bail!("at most {ALLOWED_IPS_MAX} --allow-ip entries");
    }
    let mut cidrs = Vec::with_capacity(allowed_ips.len());
    for text in allowed_ips {
        cidrs.push(cidr(text)?);
    }
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.chars().count() > NAME_LENGTH_MAX) {
        bail!("the name must be at most {NAME_LENGTH_MAX} characters");
    }
    let mut rng = rand::rng();
    let mut id_bytes = [0u8; KEY_ID_RANDOM_LENGTH];
    rng.fill_bytes(&mut id_bytes);
    let id: String = "IGF"
        .chars()
        .chain(
            id_bytes
                .iter()
                .map(|b| KEY_ID_ALPHABET[usize::from(*b) % 32] as char),
        )
        .collect();
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill_bytes(&mut secret);
    let key = PartnerKeyRecord {
        id,
        secret: base64::engine::general_purpose::STANDARD.encode(secret),
        organisation_id: organisation_id.to_string(),
        name: name.map(str::to_string),
        allowed_ips: cidrs,
        created_at_ms: clock.now_ms(),
        revoked_at_ms: None,
    };
    storage.insert_partner_key(&key).await?;
    Ok(key)
}

/// A CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address, in canonical form.
fn cidr(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net.trunc().to_string());
    }
    let ip: std::net::IpAddr = text
        .parse()
        .with_context(|| format!("{text} is not an IP address or a CIDR"))?;
    Ok(ipnet::IpNet::from(ip).to_string())
}

pub async fn revoke_partner_key(
    storage: &Storage,
    clock: &dyn Clock,
    id: &str,
) -> anyhow::Result<()> {
    if storage.partner_key(id).await?.is_none() {
        bail!("no partner key has the id {id}");
    }
    if !storage.revoke_partner_key(id, clock.now_ms()).await? {
        bail!("the key {id} is revoked already");
    }
    Ok(())
}

/// Adds an ad (a JSON object in the seed's shape) for a publisher campaign, or a default ad
/// (served for unknown campaigns) without one. The ad's `guid` is generated when absent.
pub async fn add_ad(
    storage: &Storage,
    clock: &dyn Clock,
    publisher_campaign_guid: Option<&str>,
    ad_json: &str,
) -> anyhow::Result<PartnerAdRecord> {
    if ad_json.len() > AD_LENGTH_MAX {
        bail!("the ad must be at most {AD_LENGTH_MAX} bytes of JSON");
    }
    let mut ad: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(ad_json).context("the ad must be a JSON object")?;
    for field in ["nonProfitname", "nonProfitguid", "adImage"] {
        if !ad.get(field).is_some_and(serde_json::Value::is_string) {
            bail!("the ad needs a string {field:?}");
        }
    }
    let guid = match ad.get("guid") {
        None => uuid::Uuid::new_v4(),
        Some(value) => value
            .as_str()
            .and_then(|g| uuid::Uuid::try_parse(g).ok())
            .context("the ad's guid must be a guid")?,
    };
    let guid = guid.hyphenated().to_string();
    ad.insert("guid".into(), guid.clone().into());
    let campaign = publisher_campaign_guid
        .map(|g| {
            uuid::Uuid::try_parse(g.trim())
                .map(|u| u.hyphenated().to_string())
                .context("the publisher campaign must be a guid")
        })
        .transpose()?;
    let record = PartnerAdRecord {
        id: guid,
        publisher_campaign_guid: campaign,
        ad_json: serde_json::Value::Object(ad).to_string(),
        created_at_ms: clock.now_ms(),
    };
    storage.insert_partner_ad(&record).await?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_checked_and_canonical() {
        assert_eq!(cidr("10.1.2.3/8").unwrap(), "10.0.0.0/8");
        assert_eq!(cidr(" 127.0.0.1 ").unwrap(), "127.0.0.1/32");
        assert_eq!(cidr("::1").unwrap(), "::1/128");
        for bad in ["", "10.0.0.0/33", "example.org", "1.2.3"] {
            assert!(cidr(bad).is_err(), "{bad}");
        }
    }
}
