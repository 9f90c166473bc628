//! Operator commands that write records no API creates yet: organisations and their funds
//! (`ampflow org create`, `ampflow org add-fund`). Input is checked the way an API would.

use ampflow_storage::{FundRecord, OrganisationRecord, OrganisationStatus, Storage, prefixed_id};
use ampflow_types::Clock;
use anyhow::{Context, bail};

const NAME_LENGTH_MAX: usize = 200;
const DESCRIPTION_LENGTH_MAX: usize = 5_000;
const URL_LENGTH_MAX: usize = 2_048;

/// A new organisation, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct NewOrganisation {
    pub name: String,
    pub country: String,
    pub status: String,
    pub description: Option<String>,
    pub website: Option<String>,
    pub logo_url: Option<String>,
}

pub(crate) fn name(text: &str, what: &str) -> anyhow::Result<String> {
    let name = text.trim();
    if name.is_empty() || name.chars().count() > NAME_LENGTH_MAX {
        bail!("{what} must be 1 to {NAME_LENGTH_MAX} characters");
    }
    Ok(name.to_string())
}

pub(crate) fn description(text: Option<&str>) -> anyhow::Result<Option<String>> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) if t.chars().count() > DESCRIPTION_LENGTH_MAX => {
            bail!("the description must be at most {DESCRIPTION_LENGTH_MAX} characters")
        }
        other => Ok(other.map(str::to_string)),
    }
}

pub(crate) fn https_url(text: Option<&str>, what: &str) -> anyhow::Result<Option<String>> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let url = url::Url::parse(text).with_context(|| format!("{what} is not a URL"))?;
    if url.scheme() != "https" || url.host_str().is_none() || text.len() > URL_LENGTH_MAX {
        bail!("{what} must be an https URL of at most {URL_LENGTH_MAX} characters");
    }
    Ok(Some(url.to_string()))
}

/// An ISO 3166-1 alpha-2 code in any case, stored upper case.
pub fn country_code(text: &str) -> anyhow::Result<String> {
    let code = text.trim().to_ascii_uppercase();
    if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        bail!("the country must be an ISO 3166-1 alpha-2 code, e.g. DE");
    }
    Ok(code)
}

pub async fn create_organisation(
    storage: &Storage,
    clock: &dyn Clock,
    new: &NewOrganisation,
) -> anyhow::Result<OrganisationRecord> {
    let status = OrganisationStatus::parse(&new.status)
        .context("the status must be pending, verified or suspended")?;
    let now = clock.now_ms();
    let org = OrganisationRecord {
        id: prefixed_id("org"),
        name: name(&new.name, "the name")?,
        country: country_code(&new.country)?,
        status,
        description: description(new.description.as_deref())?,
        website: https_url(new.website.as_deref(), "the website")?,
        logo_url: https_url(new.logo_url.as_deref(), "the logo URL")?,
        created_at_ms: now,
        updated_at_ms: now,
    };
    storage.insert_organisation(&org).await?;
    Ok(org)
}

pub async fn add_fund(
    storage: &Storage,
    clock: &dyn Clock,
    organisation_id: &str,
    fund_name: &str,
    fund_description: Option<&str>,
) -> anyhow::Result<FundRecord> {
    if storage.organisation(organisation_id).await?.is_none() {
        bail!("no organisation has the id {organisation_id}");
    }
    let fund = FundRecord {
        id: prefixed_id("fund"),
        organisation_id: organisation_id.to_string(),
        name: name(fund_name, "the fund's name")?,
        description: description(fund_description)?,
        created_at_ms: clock.now_ms(),
    };
    storage.insert_fund(&fund).await?;
    Ok(fund)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_checked() {
        assert_eq!(country_code(" de ").unwrap(), "DE");
        for bad in ["", "D", "DEU", "1A", "ÄB"] {
            assert!(country_code(bad).is_err(), "{bad}");
        }
        assert_eq!(
            https_url(Some("https://example.org/a"), "w").unwrap(),
            Some("https://example.org/a".into())
        );
        assert_eq!(https_url(Some("  "), "w").unwrap(), None);
        for bad in [
            "http://example.org",
            "javascript:alert(1)",
            "example.org",
            "https://",
        ] {
            assert!(https_url(Some(bad), "w").is_err(), "{bad}");
        }
        assert!(name("  ", "n").is_err());
        assert!(name(&"x".repeat(201), "n").is_err());
        assert_eq!(name(" Help ", "n").unwrap(), "Help");
    }
}
