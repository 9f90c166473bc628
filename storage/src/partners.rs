//! The partner API's records (seed 003): partners' signing keys, the partner's side of the
//! donations they record, and the ads served to their sites.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait, sea_query::Expr,
};

use crate::donations::donation_model;
use crate::entities::{donations, partner_ads, partner_donations, partner_keys};
use crate::{Context, DonationRecord, PartnerRepo, Result, StorageError};
use ampflow_types::UnixMillis;

/// A partner's signing key. The secret is kept as is: verifying an HMAC needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct PartnerKeyRecord {
    /// The access key id.
    pub id: String,
    pub secret: String,
    pub organisation_id: String,
    pub name: Option<String>,
    /// CIDRs; empty = any address.
    pub allowed_ips: Vec<String>,
    pub created_at_ms: UnixMillis,
    pub revoked_at_ms: Option<UnixMillis>,
}

impl std::fmt::Debug for PartnerKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerKeyRecord")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .field("organisation_id", &self.organisation_id)
            .field("allowed_ips", &self.allowed_ips)
            .field("revoked_at_ms", &self.revoked_at_ms)
            .finish_non_exhaustive()
    }
}

/// The partner's side of a partner donation: the seed's fields the donation row has no place
/// for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerDonationRecord {
    pub donation_id: String,
    /// The key that recorded it.
    pub partner_key_id: String,
    pub nonprofit_campaign_guid: String,
    pub publisher_campaign_guid: String,
    pub publisher_account_guid: String,
    pub sponsor_campaign_guid: Option<String>,
    /// 0–100.
    pub sponsor_matching_percentage: Option<i32>,
    pub publisher_transaction_id: Option<String>,
    /// The donor object, JSON.
    pub donor_json: String,
}

/// An ad for `GET /nonprofit-json/{guid}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerAdRecord {
    pub id: String,
    /// `None` = a default ad, served for unknown publisher campaigns.
    pub publisher_campaign_guid: Option<String>,
    /// The ad object in the seed's shape, JSON.
    pub ad_json: String,
    pub created_at_ms: UnixMillis,
}

impl PartnerRepo {
    pub async fn insert_partner_key(&self, key: &PartnerKeyRecord) -> Result<()> {
        let allowed_ips = serde_json::to_string(&key.allowed_ips)
            .map_err(|e| StorageError::Corrupt(format!("allowed ips: {e}")))?;
        partner_keys::Entity::insert(partner_keys::ActiveModel {
            id: Set(key.id.clone()),
            secret: Set(key.secret.clone()),
            organisation_id: Set(key.organisation_id.clone()),
            name: Set(key.name.clone()),
            allowed_ips: Set(allowed_ips),
            created_at_ms: Set(key.created_at_ms),
            revoked_at_ms: Set(key.revoked_at_ms),
        })
        .exec_without_returning(&self.db)
        .await
        .context("insert partner key")?;
        Ok(())
    }

    pub async fn partner_key(&self, id: &str) -> Result<Option<PartnerKeyRecord>> {
        let Some(m) = partner_keys::Entity::find_by_id(id.to_string())
            .one(&self.reader)
            .await
            .context("find partner key")?
        else {
            return Ok(None);
        };
        let allowed_ips = serde_json::from_str(&m.allowed_ips).map_err(|e| {
            StorageError::Corrupt(format!("partner key {}: allowed ips: {e}", m.id))
        })?;
        Ok(Some(PartnerKeyRecord {
            id: m.id,
            secret: m.secret,
            organisation_id: m.organisation_id,
            name: m.name,
            allowed_ips,
            created_at_ms: m.created_at_ms,
            revoked_at_ms: m.revoked_at_ms,
        }))
    }

    /// Marks the key revoked (once); false when there is no such key or it was revoked.
    pub async fn revoke_partner_key(&self, id: &str, now: UnixMillis) -> Result<bool> {
        let result = partner_keys::Entity::update_many()
            .col_expr(partner_keys::Column::RevokedAtMs, Expr::value(now))
            .filter(partner_keys::Column::Id.eq(id))
            .filter(partner_keys::Column::RevokedAtMs.is_null())
            .exec(&self.db)
            .await
            .context("revoke partner key")?;
        Ok(result.rows_affected == 1)
    }

    /// Writes a partner's donation and its partner details in one transaction.
    pub async fn insert_partner_donation(
        &self,
        donation: &DonationRecord,
        partner: &PartnerDonationRecord,
    ) -> Result<()> {
        let txn = self.db.begin().await.context("begin partner donation")?;
        donations::Entity::insert(donation_model(donation))
            .exec_without_returning(&txn)
            .await
            .context("insert donation")?;
        partner_donations::Entity::insert(partner_donations::ActiveModel {
            donation_id: Set(partner.donation_id.clone()),
            partner_key_id: Set(partner.partner_key_id.clone()),
            nonprofit_campaign_guid: Set(partner.nonprofit_campaign_guid.clone()),
            publisher_campaign_guid: Set(partner.publisher_campaign_guid.clone()),
            publisher_account_guid: Set(partner.publisher_account_guid.clone()),
            sponsor_campaign_guid: Set(partner.sponsor_campaign_guid.clone()),
            sponsor_matching_percentage: Set(partner.sponsor_matching_percentage),
            publisher_transaction_id: Set(partner.publisher_transaction_id.clone()),
            donor: Set(partner.donor_json.clone()),
        })
        .exec_without_returning(&txn)
        .await
        .context("insert partner donation")?;
        txn.commit().await.context("commit partner donation")?;
        Ok(())
    }

    pub async fn partner_donation(
        &self,
        donation_id: &str,
    ) -> Result<Option<PartnerDonationRecord>> {
        Ok(
            partner_donations::Entity::find_by_id(donation_id.to_string())
                .one(&self.reader)
                .await
                .context("find partner donation")?
                .map(partner_donation_record),
        )
    }

    /// The donation a partner's key recorded with this transaction id, read from the writer
    /// (a decision follows: a retried POST answers the donation it created).
    pub async fn partner_donation_by_transaction(
        &self,
        partner_key_id: &str,
        publisher_transaction_id: &str,
    ) -> Result<Option<PartnerDonationRecord>> {
        Ok(partner_donations::Entity::find()
            .filter(partner_donations::Column::PartnerKeyId.eq(partner_key_id))
            .filter(partner_donations::Column::PublisherTransactionId.eq(publisher_transaction_id))
            .one(&self.db)
            .await
            .context("find partner donation by transaction id")?
            .map(partner_donation_record))
    }

    pub async fn insert_partner_ad(&self, ad: &PartnerAdRecord) -> Result<()> {
        partner_ads::Entity::insert(partner_ads::ActiveModel {
            id: Set(ad.id.clone()),
            publisher_campaign_guid: Set(ad.publisher_campaign_guid.clone()),
            ad: Set(ad.ad_json.clone()),
            created_at_ms: Set(ad.created_at_ms),
        })
        .exec_without_returning(&self.db)
        .await
        .context("insert partner ad")?;
        Ok(())
    }

    /// The ads of a publisher campaign (`None`: the default ads), oldest first, at most
    /// `limit`.
    pub async fn partner_ads(
        &self,
        publisher_campaign_guid: Option<&str>,
        limit: u64,
    ) -> Result<Vec<PartnerAdRecord>> {
        let column = partner_ads::Column::PublisherCampaignGuid;
        let filter = match publisher_campaign_guid {
            Some(guid) => column.eq(guid),
            None => column.is_null(),
        };
        Ok(partner_ads::Entity::find()
            .filter(filter)
            .order_by_asc(partner_ads::Column::CreatedAtMs)
            .order_by_asc(partner_ads::Column::Id)
            .limit(limit)
            .all(&self.reader)
            .await
            .context("list partner ads")?
            .into_iter()
            .map(|m| PartnerAdRecord {
                id: m.id,
                publisher_campaign_guid: m.publisher_campaign_guid,
                ad_json: m.ad,
                created_at_ms: m.created_at_ms,
            })
            .collect())
    }
}

fn partner_donation_record(m: partner_donations::Model) -> PartnerDonationRecord {
    PartnerDonationRecord {
        donation_id: m.donation_id,
        partner_key_id: m.partner_key_id,
        nonprofit_campaign_guid: m.nonprofit_campaign_guid,
        publisher_campaign_guid: m.publisher_campaign_guid,
        publisher_account_guid: m.publisher_account_guid,
        sponsor_campaign_guid: m.sponsor_campaign_guid,
        sponsor_matching_percentage: m.sponsor_matching_percentage,
        publisher_transaction_id: m.publisher_transaction_id,
        donor_json: m.donor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_never_prints_its_secret() {
        let key = PartnerKeyRecord {
            id: "IGFKEY".into(),
            secret: "hunter2secret".into(),
            organisation_id: "org_1".into(),
            name: None,
            allowed_ips: vec![],
            created_at_ms: 0,
            revoked_at_ms: None,
        };
        let shown = format!("{key:?}");
        assert!(
            shown.contains("IGFKEY") && !shown.contains("hunter2secret"),
            "{shown}"
        );
    }
}
