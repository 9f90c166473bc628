//! The partners façade (seed 003): partners' signing keys (`ampflow partner create`,
//! `revoke`; read by the signed-request extractor) and the ads served to their sites
//! (`ampflow partner add-ad`; read by the widget through `Donations::partner_ads`).

use std::sync::Arc;

use ampflow_storage::{Storage, StorageError};
use ampflow_types::Clock;
use base64::Engine;
use rand::RngCore;

pub use ampflow_storage::{PartnerAdRecord, PartnerKeyRecord};

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

#[derive(Debug, thiserror::Error)]
pub enum PartnerError {
    /// Input that breaks a rule, or a record that does not exist; the text says which.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn refused(message: impl Into<String>) -> PartnerError {
    PartnerError::Refused(message.into())
}

/// Partner keys and the widget's ads (seed 003), as the operator manages them, and a key as
/// the signed-request extractor reads it.
#[derive(Clone)]
pub struct Partners {
    storage: Storage,
    clock: Arc<dyn Clock>,
}

impl Partners {
    pub fn new(storage: Storage, clock: Arc<dyn Clock>) -> Self {
        Self { storage, clock }
    }

    /// The key with this id, revoked or not (the extractor tells them apart).
    pub async fn key(&self, id: &str) -> Result<Option<PartnerKeyRecord>, StorageError> {
        self.storage.partners().partner_key(id).await
    }

    /// A new key's id and secret: printed once, by `ampflow partner create`.
    /// A new key for the organisation, allowed from `allowed_ips` (addresses or CIDRs;
    /// none: anywhere): `ampflow partner create`.
    pub async fn create_key(
        &self,
        organisation_id: &str,
        allowed_ips: &[String],
        name: Option<&str>,
    ) -> Result<PartnerKeyRecord, PartnerError> {
        create_key(
            &self.storage,
            self.clock.as_ref(),
            organisation_id,
            allowed_ips,
            name,
        )
        .await
    }

    /// `ampflow partner revoke`.
    pub async fn revoke_key(&self, id: &str) -> Result<(), PartnerError> {
        if self.storage.partners().partner_key(id).await?.is_none() {
            return Err(refused(format!("no partner key has the id {id}")));
        }
        if !self
            .storage
            .partners()
            .revoke_partner_key(id, self.clock.now_ms())
            .await?
        {
            return Err(refused(format!("the key {id} is revoked already")));
        }
        Ok(())
    }

    /// `ampflow partner add-ad`: an ad for the widget, for one publisher campaign or all.
    pub async fn add_ad(
        &self,
        publisher_campaign_guid: Option<&str>,
        ad_json: &str,
    ) -> Result<PartnerAdRecord, PartnerError> {
        let record = ad_record(publisher_campaign_guid, ad_json, self.clock.now_ms())?;
        self.storage.partners().insert_partner_ad(&record).await?;
        Ok(record)
    }
}

async fn create_key(
    storage: &Storage,
    clock: &dyn Clock,
    organisation_id: &str,
    allowed_ips: &[String],
    name: Option<&str>,
) -> Result<PartnerKeyRecord, PartnerError> {
    if storage
        .organisations()
        .organisation(organisation_id)
        .await?
        .is_none()
    {
        return Err(refused(format!(
            "no organisation has the id {organisation_id}"
        )));
    }
    if allowed_ips.len() > ALLOWED_IPS_MAX {
        return Err(refused(format!(
            "at most {ALLOWED_IPS_MAX} --allow-ip entries"
        )));
    }
    let mut cidrs = Vec::with_capacity(allowed_ips.len());
    for text in allowed_ips {
        cidrs.push(cidr(text)?);
    }
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.chars().count() > NAME_LENGTH_MAX) {
        return Err(refused(format!(
            "the name must be at most {NAME_LENGTH_MAX} characters"
        )));
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
    storage.partners().insert_partner_key(&key).await?;
    Ok(key)
}

/// A CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address, in canonical form.
fn cidr(text: &str) -> Result<String, PartnerError> {
    let text = text.trim();
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net.trunc().to_string());
    }
    let ip: std::net::IpAddr = text
        .parse()
        .map_err(|_| refused(format!("{text} is not an IP address or a CIDR")))?;
    Ok(ipnet::IpNet::from(ip).to_string())
}

/// The ad record of `ad_json`, checked: a JSON object of at most 16 KiB with the widget's
/// string fields, its `guid` kept (or made, when absent) canonical; for a publisher campaign,
/// or a default ad (served for unknown campaigns) without one.
fn ad_record(
    publisher_campaign_guid: Option<&str>,
    ad_json: &str,
    now: ampflow_types::UnixMillis,
) -> Result<PartnerAdRecord, PartnerError> {
    if ad_json.len() > AD_LENGTH_MAX {
        return Err(refused(format!(
            "the ad must be at most {AD_LENGTH_MAX} bytes of JSON"
        )));
    }
    let mut ad: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(ad_json).map_err(|_| refused("the ad must be a JSON object"))?;
    for field in ["nonProfitname", "nonProfitguid", "adImage"] {
        if !ad.get(field).is_some_and(serde_json::Value::is_string) {
            return Err(refused(format!("the ad needs a string {field:?}")));
        }
    }
    let guid = match ad.get("guid") {
        None => uuid::Uuid::new_v4(),
        Some(value) => value
            .as_str()
            .and_then(|g| uuid::Uuid::try_parse(g).ok())
            .ok_or_else(|| refused("the ad's guid must be a guid"))?,
    };
    let guid = guid.hyphenated().to_string();
    ad.insert("guid".into(), guid.clone().into());
    let campaign = publisher_campaign_guid
        .map(|g| {
            uuid::Uuid::try_parse(g.trim())
                .map(|u| u.hyphenated().to_string())
                .map_err(|_| refused("the publisher campaign must be a guid"))
        })
        .transpose()?;
    Ok(PartnerAdRecord {
        id: guid,
        publisher_campaign_guid: campaign,
        ad_json: serde_json::Value::Object(ad).to_string(),
        created_at_ms: now,
    })
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
