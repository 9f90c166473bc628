//! Donations recorded by partners (seed 003). A partner collects the money on its own site and
//! settles it with the platform in batches, so a partner donation has no PaymentIntent: it is
//! stored with source `partner`, `pending` until the partner's batch is settled, and moves
//! through the same actor and state machine as any donation (a partner's DELETE is the
//! `pending` → `cancelled` move). It reaches the ledger when it succeeds, like any donation.

use ampflow_storage::{DonationRecord, DonationSource, DonationStatus, PartnerDonationRecord};
use ampflow_types::{Currency, DonationId};

use super::{DonationError, DonationMsg, Donations, Moved};

/// A donation a partner records, parsed and checked at the edge.
#[derive(Debug, Clone)]
pub struct NewPartnerDonation {
    /// The organisation of the partner's key.
    pub organisation_id: String,
    pub partner_key_id: String,
    /// Minor units, > 0.
    pub amount: i64,
    pub currency: Currency,
    pub donor_email: String,
    pub donor_name: Option<String>,
    pub nonprofit_campaign_guid: String,
    pub publisher_campaign_guid: String,
    pub publisher_account_guid: String,
    pub sponsor_campaign_guid: Option<String>,
    pub sponsor_matching_percentage: Option<i32>,
    pub publisher_transaction_id: Option<String>,
    pub donor_json: String,
}

/// A partner donation with everything the seed's answer shows.
#[derive(Debug, Clone)]
pub struct PartnerDonation {
    pub donation: DonationRecord,
    pub partner: PartnerDonationRecord,
    pub organisation_name: String,
    /// The name of the key that recorded it, when it has one.
    pub publisher_name: Option<String>,
}

impl Donations {
    /// Up to `max` ads for a widget: the campaign's (a publisher campaign GUID), or every
    /// campaign's when it has none or none is given.
    pub async fn partner_ads(
        &self,
        campaign: Option<&str>,
        max: u64,
    ) -> Result<Vec<ampflow_storage::PartnerAdRecord>, DonationError> {
        let ads = match campaign {
            Some(guid) => self.storage.partners().partner_ads(Some(guid), max).await?,
            None => Vec::new(),
        };
        if !ads.is_empty() {
            return Ok(ads);
        }
        Ok(self.storage.partners().partner_ads(None, max).await?)
    }

    /// Stores the partner's donation as pending, through its actor.
    pub async fn create_partner(
        &self,
        new: NewPartnerDonation,
    ) -> Result<DonationRecord, DonationError> {
        let org = self
            .storage
            .organisations()
            .organisation(&new.organisation_id)
            .await?
            .ok_or(DonationError::OrganisationUnknown)?;
        if org.status == ampflow_storage::OrganisationStatus::Suspended {
            return Err(DonationError::OrganisationSuspended);
        }
        // A retry of a POST (same key, same publisher transaction id) answers the donation
        // the first one recorded, instead of recording it twice.
        let replay = new
            .publisher_transaction_id
            .clone()
            .map(|txid| (new.partner_key_id.clone(), txid, new.amount, new.currency));
        if let Some((key, txid, amount, currency)) = &replay
            && let Some(existing) = self.replayed(key, txid, *amount, *currency).await?
        {
            return Ok(existing);
        }
        let id = DonationId::from_bytes(*uuid::Uuid::new_v4().as_bytes());
        let now = self.clock.now_ms();
        let (record, partner) = partner_records(&id, org.id, new, now);
        let created = match self
            .donations
            .call(&id, |reply| DonationMsg::CreatePartner {
                record: Box::new(record.clone()),
                partner: Box::new(partner.clone()),
                reply,
            })
            .await?
        {
            Ok(created) => created,
            Err(error) => {
                // A concurrent retry may have recorded it first (the transaction id is
                // unique per key, so this insert was refused and wrote nothing).
                if let Some((key, txid, amount, currency)) = &replay
                    && let Some(existing) = self.replayed(key, txid, *amount, *currency).await?
                {
                    return Ok(existing);
                }
                return Err(error);
            }
        };
        tracing::info!(donation = %id, organisation = %created.organisation_id, amount = created.amount, "partner donation recorded");
        Ok(created)
    }

    /// The donation the key recorded with this transaction id, if any; refused when it was
    /// for another amount or currency.
    async fn replayed(
        &self,
        partner_key_id: &str,
        publisher_transaction_id: &str,
        amount: i64,
        currency: Currency,
    ) -> Result<Option<DonationRecord>, DonationError> {
        let Some(partner) = self
            .storage
            .partners()
            .partner_donation_by_transaction(partner_key_id, publisher_transaction_id)
            .await?
        else {
            return Ok(None);
        };
        let id = DonationId::parse(&partner.donation_id)
            .map_err(|_| DonationError::Storage(format!("stored id {}", partner.donation_id)))?;
        let donation = self
            .donations
            .call(&id, |reply| DonationMsg::Get { reply })
            .await??
            .ok_or(DonationError::NotFound)?;
        if donation.amount != amount || donation.currency != currency.as_str() {
            return Err(DonationError::TransactionIdReused);
        }
        tracing::info!(donation = %id, "partner donation retried: the recorded one is answered");
        Ok(Some(donation))
    }

    /// A partner donation of `organisation_id` (any other donation is `NotFound`).
    pub async fn partner_donation(
        &self,
        id: &DonationId,
        organisation_id: &str,
    ) -> Result<PartnerDonation, DonationError> {
        let donation = self
            .donations
            .call(id, |reply| DonationMsg::Get { reply })
            .await??
            .filter(|d| d.source == DonationSource::Partner && d.organisation_id == organisation_id)
            .ok_or(DonationError::NotFound)?;
        let partner = self
            .storage
            .partners()
            .partner_donation(&donation.id)
            .await?
            .ok_or(DonationError::NotFound)?;
        let organisation_name = self
            .storage
            .organisations()
            .organisation(&donation.organisation_id)
            .await?
            .map(|o| o.name)
            .unwrap_or_default();
        let publisher_name = self
            .storage
            .partners()
            .partner_key(&partner.partner_key_id)
            .await?
            .and_then(|k| k.name);
        Ok(PartnerDonation {
            donation,
            partner,
            organisation_name,
            publisher_name,
        })
    }

    /// Cancels a partner donation of `organisation_id` through its actor: only a pending one
    /// can be cancelled (an illegal move is refused); cancelling a cancelled one is a no-op.
    pub async fn cancel_partner(
        &self,
        id: &DonationId,
        organisation_id: &str,
    ) -> Result<Moved, DonationError> {
        self.partner_donation(id, organisation_id).await?;
        self.transition(id, DonationStatus::Cancelled, None).await
    }
}

/// The pending donation and its partner record, as the partner's request states them.
fn partner_records(
    id: &DonationId,
    organisation_id: String,
    new: NewPartnerDonation,
    now: ampflow_types::UnixMillis,
) -> (DonationRecord, PartnerDonationRecord) {
    let record = DonationRecord {
        id: id.to_string(),
        organisation_id,
        fund_id: None,
        wallet_address: None,
        amount: new.amount,
        currency: new.currency.as_str().to_string(),
        donor_email: new.donor_email,
        donor_name: new.donor_name,
        status: DonationStatus::Pending,
        stripe_payment_intent_id: None,
        failure_reason: None,
        created_at_ms: now,
        updated_at_ms: now,
        version: 0,
        source: DonationSource::Partner,
    };
    let partner = PartnerDonationRecord {
        donation_id: id.to_string(),
        partner_key_id: new.partner_key_id,
        nonprofit_campaign_guid: new.nonprofit_campaign_guid,
        publisher_campaign_guid: new.publisher_campaign_guid,
        publisher_account_guid: new.publisher_account_guid,
        sponsor_campaign_guid: new.sponsor_campaign_guid,
        sponsor_matching_percentage: new.sponsor_matching_percentage,
        publisher_transaction_id: new.publisher_transaction_id,
        donor_json: new.donor_json,
    };
    (record, partner)
}
