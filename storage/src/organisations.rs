//! Organisations and their funds: created by an operator (`ampflow org create`), listed
//! publicly with a cursor.

use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::entities::{funds, organisations};
use crate::keyset::{Keyset, Order};
use crate::{Context, OrganisationRepo, Result, StorageError};
use ampflow_types::UnixMillis;

/// Where an organisation stands with the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrganisationStatus {
    /// Created, not checked yet.
    Pending,
    Verified,
    /// Takes no donations.
    Suspended,
}

impl OrganisationStatus {
    pub const ALL: [Self; 3] = [Self::Pending, Self::Verified, Self::Suspended];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Verified => "verified",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganisationRecord {
    /// `org_<32 hex>`
    pub id: String,
    pub name: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    pub status: OrganisationStatus,
    pub description: Option<String>,
    pub website: Option<String>,
    pub logo_url: Option<String>,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundRecord {
    /// `fund_<32 hex>`
    pub id: String,
    pub organisation_id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at_ms: UnixMillis,
}

pub use ampflow_types::prefixed_id;

impl OrganisationRepo {
    pub async fn insert_organisation(&self, org: &OrganisationRecord) -> Result<()> {
        organisations::Entity::insert(organisations::ActiveModel {
            id: Set(org.id.clone()),
            name: Set(org.name.clone()),
            country: Set(org.country.clone()),
            status: Set(org.status.as_str().into()),
            description: Set(org.description.clone()),
            website: Set(org.website.clone()),
            logo_url: Set(org.logo_url.clone()),
            created_at_ms: Set(org.created_at_ms),
            updated_at_ms: Set(org.updated_at_ms),
        })
        .exec_without_returning(&self.db)
        .await
        .context("insert organisation")?;
        Ok(())
    }

    pub async fn organisation(&self, id: &str) -> Result<Option<OrganisationRecord>> {
        organisations::Entity::find_by_id(id.to_string())
            .one(&self.reader)
            .await
            .context("find organisation")?
            .map(organisation_record)
            .transpose()
    }

    /// Organisations, oldest first, after `cursor`, optionally in one country.
    pub async fn list_organisations(
        &self,
        country: Option<&str>,
        cursor: Option<&Keyset>,
        limit: u64,
    ) -> Result<Vec<OrganisationRecord>> {
        let mut query = organisations::Entity::find();
        if let Some(country) = country {
            query = query.filter(organisations::Column::Country.eq(country));
        }
        crate::keyset::page(
            query,
            (
                organisations::Column::CreatedAtMs,
                organisations::Column::Id,
            ),
            Order::OldestFirst,
            cursor,
            limit,
        )
        .all(&self.reader)
        .await
        .context("list organisations")?
        .into_iter()
        .map(organisation_record)
        .collect()
    }

    pub async fn insert_fund(&self, fund: &FundRecord) -> Result<()> {
        funds::Entity::insert(funds::ActiveModel {
            id: Set(fund.id.clone()),
            organisation_id: Set(fund.organisation_id.clone()),
            name: Set(fund.name.clone()),
            description: Set(fund.description.clone()),
            created_at_ms: Set(fund.created_at_ms),
        })
        .exec_without_returning(&self.db)
        .await
        .context("insert fund")?;
        Ok(())
    }

    pub async fn fund(&self, id: &str) -> Result<Option<FundRecord>> {
        Ok(funds::Entity::find_by_id(id.to_string())
            .one(&self.reader)
            .await
            .context("find fund")?
            .map(fund_record))
    }

    /// An organisation's funds, oldest first.
    pub async fn funds_of(&self, organisation_id: &str) -> Result<Vec<FundRecord>> {
        Ok(funds::Entity::find()
            .filter(funds::Column::OrganisationId.eq(organisation_id))
            .order_by_asc(funds::Column::CreatedAtMs)
            .order_by_asc(funds::Column::Id)
            .all(&self.reader)
            .await
            .context("list funds")?
            .into_iter()
            .map(fund_record)
            .collect())
    }
}

pub(crate) fn organisation_record(m: organisations::Model) -> Result<OrganisationRecord> {
    let status = OrganisationStatus::parse(&m.status)
        .ok_or_else(|| StorageError::Corrupt(format!("organisation status {}", m.status)))?;
    Ok(OrganisationRecord {
        id: m.id,
        name: m.name,
        country: m.country,
        status,
        description: m.description,
        website: m.website,
        logo_url: m.logo_url,
        created_at_ms: m.created_at_ms,
        updated_at_ms: m.updated_at_ms,
    })
}

fn fund_record(m: funds::Model) -> FundRecord {
    FundRecord {
        id: m.id,
        organisation_id: m.organisation_id,
        name: m.name,
        description: m.description,
        created_at_ms: m.created_at_ms,
    }
}
