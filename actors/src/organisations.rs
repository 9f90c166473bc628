//! The organisations façade: organisations and their funds, as the public, their members and
//! the operator's CLI see and change them. The routes (`/public/organisations…`,
//! `/me/organisations`, `/organisations/{id}`) and `ampflow org …` call it, and it holds the
//! rules their input must pass (names, descriptions, https URLs, country codes); who may call
//! which method is the trust boundary's to decide before the call.

use std::sync::Arc;

use ampflow_storage::{
    AuditActor, AuditEvent, DashboardUserRecord, Keyset, Storage, StorageError, prefixed_id,
};

pub use ampflow_storage::{
    FundRecord, OrganisationChanges, OrganisationRecord, OrganisationStatus, Role,
};
use ampflow_types::Clock;

const NAME_LENGTH_MAX: usize = 200;
const DESCRIPTION_LENGTH_MAX: usize = 5_000;
const URL_LENGTH_MAX: usize = 2_048;
/// An organisation id is `org_` and 32 hex digits; anything longer is no id.
const ID_LENGTH_MAX: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum OrganisationError {
    #[error("no organisation has this id")]
    NotFound,
    /// The organisation exists and the user is not a member of it.
    #[error("only members of this organisation may do this")]
    NotMember,
    /// Input that breaks a rule; `param` names the field.
    #[error("{message}")]
    Invalid {
        param: &'static str,
        message: String,
    },
    /// An operator's request that cannot be carried out; the text says why.
    #[error("{0}")]
    Refused(String),
    /// A patch that changes nothing.
    #[error("nothing to change: give name or profile fields")]
    NothingToChange,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl OrganisationError {
    fn invalid(param: &'static str) -> impl FnOnce(String) -> Self {
        move |message| Self::Invalid { param, message }
    }
}

/// A new organisation, as the operator gives it.
#[derive(Debug, Clone, Default)]
pub struct NewOrganisation {
    pub name: String,
    pub country: String,
    pub status: String,
    pub description: Option<String>,
    pub website: Option<String>,
    pub logo_url: Option<String>,
}

/// Changes an admin asks for; absent leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct OrganisationPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub website: Option<Option<String>>,
    pub logo_url: Option<Option<String>>,
}

#[derive(Clone)]
pub struct Organisations {
    storage: Storage,
    clock: Arc<dyn Clock>,
}

impl Organisations {
    pub fn new(storage: Storage, clock: Arc<dyn Clock>) -> Self {
        Self { storage, clock }
    }

    /// One page of organisations, oldest first, in `country` when given (any case).
    pub async fn page(
        &self,
        country: Option<&str>,
        cursor: Option<&Keyset>,
        limit: u64,
    ) -> Result<Vec<OrganisationRecord>, OrganisationError> {
        let country = country
            .map(country_code)
            .transpose()
            .map_err(OrganisationError::invalid("country"))?;
        Ok(self
            .storage
            .organisations()
            .list_organisations(country.as_deref(), cursor, limit)
            .await?)
    }

    /// The organisation, or `NotFound` (for a text that cannot be an id too).
    pub async fn get(&self, id: &str) -> Result<OrganisationRecord, OrganisationError> {
        if !id.starts_with("org_") || id.len() > ID_LENGTH_MAX {
            return Err(OrganisationError::NotFound);
        }
        self.storage
            .organisations()
            .organisation(id)
            .await?
            .ok_or(OrganisationError::NotFound)
    }

    /// The organisation and its funds, oldest fund first.
    pub async fn with_funds(
        &self,
        id: &str,
    ) -> Result<(OrganisationRecord, Vec<FundRecord>), OrganisationError> {
        let organisation = self.get(id).await?;
        let funds = self
            .storage
            .organisations()
            .funds_of(&organisation.id)
            .await?;
        Ok((organisation, funds))
    }

    /// The user's role in the organisation: `NotMember` when the organisation exists and they
    /// are not in it, `NotFound` when it does not exist.
    pub async fn role_of(
        &self,
        organisation_id: &str,
        user_id: &str,
    ) -> Result<Role, OrganisationError> {
        if let Some(role) = self
            .storage
            .organisations()
            .membership(organisation_id, user_id)
            .await?
        {
            return Ok(role);
        }
        match self
            .storage
            .organisations()
            .organisation(organisation_id)
            .await?
        {
            Some(_) => Err(OrganisationError::NotMember),
            None => Err(OrganisationError::NotFound),
        }
    }

    /// Gives the user with `email` `role` (member or admin) in the organisation
    /// (`ampflow org add-member`; `membership.added` by the system); answers the user and
    /// the role they had before.
    pub async fn set_member(
        &self,
        organisation_id: &str,
        email: &str,
        role: &str,
    ) -> Result<(DashboardUserRecord, Option<Role>), OrganisationError> {
        let role = Role::parse(role)
            .ok_or_else(|| OrganisationError::Refused("the role must be member or admin".into()))?;
        let user = self.member(organisation_id, email).await?;
        let now = self.clock.now_ms();
        let audit = AuditEvent::new(AuditActor::System, "membership.added", now)
            .target("user", &user.id)
            .organisation(organisation_id);
        let previous = self
            .storage
            .organisations()
            .set_membership(organisation_id, &user.id, role, now, &audit)
            .await?;
        Ok((user, previous))
    }

    /// Takes the user with `email` out of the organisation (`ampflow org remove-member`;
    /// `membership.removed` by the system).
    pub async fn remove_member(
        &self,
        organisation_id: &str,
        email: &str,
    ) -> Result<(), OrganisationError> {
        let user = self.member(organisation_id, email).await?;
        let audit = AuditEvent::new(
            AuditActor::System,
            "membership.removed",
            self.clock.now_ms(),
        )
        .target("user", &user.id)
        .organisation(organisation_id);
        if !self
            .storage
            .organisations()
            .remove_membership(organisation_id, &user.id, &audit)
            .await?
        {
            return Err(OrganisationError::Refused(format!(
                "{email} is not a member of {organisation_id}"
            )));
        }
        Ok(())
    }

    /// The dashboard user with `email`, once the organisation is known to exist.
    async fn member(
        &self,
        organisation_id: &str,
        email: &str,
    ) -> Result<DashboardUserRecord, OrganisationError> {
        if self
            .storage
            .organisations()
            .organisation(organisation_id)
            .await?
            .is_none()
        {
            return Err(OrganisationError::Refused(format!(
                "no organisation has the id {organisation_id}"
            )));
        }
        self.storage
            .dashboard()
            .dashboard_user_by_email(&crate::accounts::normalise_email(email))
            .await?
            .ok_or_else(|| OrganisationError::Refused(format!("no user has the email {email}")))
    }

    /// The organisations a user belongs to, with the user's role, oldest membership first.
    pub async fn of_user(
        &self,
        user_id: &str,
        limit: u64,
    ) -> Result<Vec<(OrganisationRecord, Role)>, OrganisationError> {
        Ok(self
            .storage
            .organisations()
            .organisations_of(user_id, limit)
            .await?)
    }

    /// The checked changes of a patch: `Invalid` for a field that breaks a rule, or when it
    /// changes nothing.
    pub fn check_patch(patch: OrganisationPatch) -> Result<OrganisationChanges, OrganisationError> {
        let changes = OrganisationChanges {
            name: patch
                .name
                .as_deref()
                .map(|n| name(n, "the name"))
                .transpose()
                .map_err(OrganisationError::invalid("name"))?,
            description: patch
                .description
                .map(|d| description(d.as_deref()))
                .transpose()
                .map_err(OrganisationError::invalid("profile.description"))?,
            website: patch
                .website
                .map(|w| https_url(w.as_deref(), "the website"))
                .transpose()
                .map_err(OrganisationError::invalid("profile.website"))?,
            logo_url: patch
                .logo_url
                .map(|l| https_url(l.as_deref(), "the logo URL"))
                .transpose()
                .map_err(OrganisationError::invalid("profile.logo_url"))?,
        };
        if changes == OrganisationChanges::default() {
            return Err(OrganisationError::NothingToChange);
        }
        Ok(changes)
    }

    /// Applies checked changes and writes `audit` with them, in one transaction.
    pub async fn update(
        &self,
        id: &str,
        changes: &OrganisationChanges,
        audit: &AuditEvent,
    ) -> Result<(), OrganisationError> {
        let now = self.clock.now_ms();
        if self
            .storage
            .organisations()
            .update_organisation(id, changes, now, audit)
            .await?
        {
            Ok(())
        } else {
            Err(OrganisationError::NotFound)
        }
    }

    /// A new organisation (`ampflow org create`).
    pub async fn create(
        &self,
        new: &NewOrganisation,
    ) -> Result<OrganisationRecord, OrganisationError> {
        let status = OrganisationStatus::parse(&new.status).ok_or_else(|| {
            OrganisationError::invalid("status")(
                "the status must be pending, verified or suspended".into(),
            )
        })?;
        let now = self.clock.now_ms();
        let organisation = OrganisationRecord {
            id: prefixed_id("org"),
            name: name(&new.name, "the name").map_err(OrganisationError::invalid("name"))?,
            country: country_code(&new.country).map_err(OrganisationError::invalid("country"))?,
            status,
            description: description(new.description.as_deref())
                .map_err(OrganisationError::invalid("description"))?,
            website: https_url(new.website.as_deref(), "the website")
                .map_err(OrganisationError::invalid("website"))?,
            logo_url: https_url(new.logo_url.as_deref(), "the logo URL")
                .map_err(OrganisationError::invalid("logo_url"))?,
            created_at_ms: now,
            updated_at_ms: now,
        };
        self.storage
            .organisations()
            .insert_organisation(&organisation)
            .await?;
        Ok(organisation)
    }

    /// A new fund of the organisation (`ampflow org add-fund`).
    pub async fn add_fund(
        &self,
        organisation_id: &str,
        fund_name: &str,
        fund_description: Option<&str>,
    ) -> Result<FundRecord, OrganisationError> {
        let organisation = self.get(organisation_id).await?;
        let fund = FundRecord {
            id: prefixed_id("fund"),
            organisation_id: organisation.id,
            name: name(fund_name, "the fund's name").map_err(OrganisationError::invalid("name"))?,
            description: description(fund_description)
                .map_err(OrganisationError::invalid("description"))?,
            created_at_ms: self.clock.now_ms(),
        };
        self.storage.organisations().insert_fund(&fund).await?;
        Ok(fund)
    }
}

/// A name of 1 to 200 characters, trimmed; `what` names it in the error.
pub fn name(text: &str, what: &str) -> Result<String, String> {
    let name = text.trim();
    if name.is_empty() || name.chars().count() > NAME_LENGTH_MAX {
        return Err(format!("{what} must be 1 to {NAME_LENGTH_MAX} characters"));
    }
    Ok(name.to_string())
}

/// A description of at most 5,000 characters, trimmed; blank is none.
pub fn description(text: Option<&str>) -> Result<Option<String>, String> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) if t.chars().count() > DESCRIPTION_LENGTH_MAX => Err(format!(
            "the description must be at most {DESCRIPTION_LENGTH_MAX} characters"
        )),
        other => Ok(other.map(str::to_string)),
    }
}

/// An https URL with a host, of at most 2,048 characters; blank is none.
pub fn https_url(text: Option<&str>, what: &str) -> Result<Option<String>, String> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let url = url::Url::parse(text).map_err(|_| format!("{what} is not a URL"))?;
    if url.scheme() != "https" || url.host_str().is_none() || text.len() > URL_LENGTH_MAX {
        return Err(format!(
            "{what} must be an https URL of at most {URL_LENGTH_MAX} characters"
        ));
    }
    Ok(Some(url.to_string()))
}

/// An ISO 3166-1 alpha-2 code in any case, stored upper case.
pub fn country_code(text: &str) -> Result<String, String> {
    let code = text.trim().to_ascii_uppercase();
    if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err("the country must be an ISO 3166-1 alpha-2 code, e.g. DE".into());
    }
    Ok(code)
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

    #[test]
    fn a_patch_is_checked_field_by_field_and_must_change_something() {
        let changes = Organisations::check_patch(OrganisationPatch {
            name: Some(" New ".into()),
            website: Some(None),
            ..OrganisationPatch::default()
        })
        .unwrap();
        assert_eq!(changes.name.as_deref(), Some("New"));
        assert_eq!(changes.website, Some(None));
        assert_eq!(changes.description, None);
        let bad_logo = OrganisationPatch {
            logo_url: Some(Some("http://x.org".into())),
            ..OrganisationPatch::default()
        };
        match Organisations::check_patch(bad_logo) {
            Err(OrganisationError::Invalid { param, .. }) => assert_eq!(param, "profile.logo_url"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Organisations::check_patch(OrganisationPatch::default()),
            Err(OrganisationError::NothingToChange)
        ));
    }
}
