//! An issuer key's delegation on the wire (issue 14): `delegable_policies` and
//! `delegable_keys` in the bodies that create and change a key, checked against the
//! organisation's keys. Only a key holding `tokens:issue` has one; dropping `tokens:issue`
//! drops it. The rule that reads it when a token is minted is
//! [`crate::auth::api_keys::delegation`].

use ampflow_actors::api_keys::ApiKeyRecord;
use serde::{Deserialize, Deserializer};

use crate::auth::api_keys::Policy;
use crate::auth::api_keys::delegation::{
    is_delegable_target, parse_delegable_keys, parse_delegable_policies,
};
use crate::error::ApiError;
use crate::state::AppState;

/// What an issuer may delegate, as a key stores it (see [`ApiKeyRecord::delegable_policies`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Delegation {
    pub policies: Option<Vec<String>>,
    pub keys: Option<Vec<String>>,
}

impl Delegation {
    pub fn of(key: &ApiKeyRecord) -> Self {
        Self {
            policies: key.delegable_policies.clone(),
            keys: key.delegable_keys.clone(),
        }
    }
}

/// A delegation field as a body gives it: absent (`None`: unchanged), `null` (`Some(None)`:
/// removed) or a list.
pub(super) type DelegationField = Option<Option<Vec<String>>>;

/// Deserializes a [`DelegationField`], telling `null` from absent.
pub(super) fn nullable_list<'de, D: Deserializer<'de>>(d: D) -> Result<DelegationField, D::Error> {
    Option::<Vec<String>>::deserialize(d).map(Some)
}

/// What a body asks of a key's delegation, each field as a [`DelegationField`].
pub(super) struct DelegationRequest<'a> {
    pub policies: Option<Option<&'a [String]>>,
    pub keys: Option<Option<&'a [String]>>,
}

impl<'a> DelegationRequest<'a> {
    /// A create body's fields: absent and null both mean not limited.
    pub fn create(policies: &'a Option<Vec<String>>, keys: &'a Option<Vec<String>>) -> Self {
        Self {
            policies: policies.as_deref().map(Some),
            keys: keys.as_deref().map(Some),
        }
    }

    /// A patch's fields.
    pub fn patch(policies: &'a DelegationField, keys: &'a DelegationField) -> Self {
        Self {
            policies: policies.as_ref().map(Option::as_deref),
            keys: keys.as_ref().map(Option::as_deref),
        }
    }

    fn names_a_list(&self) -> Option<&'static str> {
        if matches!(self.policies, Some(Some(_))) {
            Some("delegable_policies")
        } else if matches!(self.keys, Some(Some(_))) {
            Some("delegable_keys")
        } else {
            None
        }
    }
}

/// The delegation key `holder` (of `organisation_id`; `None` while it is being made) has once
/// it holds `policies_after` and `request` applies to `current`. 400 when the request names a
/// delegation for a key without `tokens:issue`, an undelegable or unknown policy, or a key
/// that is not a live one of the organisation without `keys:admin` and `tokens:issue`.
pub(super) async fn delegation_after(
    state: &AppState,
    organisation_id: &str,
    holder: Option<&str>,
    policies_after: &[String],
    current: Delegation,
    request: DelegationRequest<'_>,
) -> Result<Delegation, ApiError> {
    if !policies_after
        .iter()
        .any(|p| p == Policy::TokensIssue.as_str())
    {
        if let Some(param) = request.names_a_list() {
            return Err(ApiError::invalid_param(
                param,
                "only a key holding tokens:issue delegates; add tokens:issue or leave this out",
            ));
        }
        return Ok(Delegation::default());
    }
    let policies = match request.policies {
        None => current.policies,
        Some(None) => None,
        Some(Some(names)) => Some(parse_delegable_policies(names)?),
    };
    let keys = match request.keys {
        None => current.keys,
        Some(None) => None,
        Some(Some(ids)) => Some(delegable_keys(state, organisation_id, holder, ids).await?),
    };
    Ok(Delegation { policies, keys })
}

/// `ids` as an issuer's `delegable_keys`: each a live key of `organisation_id`, not the issuer
/// itself, holding neither `keys:admin` nor `tokens:issue` (minting checks that again, as
/// the key may gain them later).
async fn delegable_keys(
    state: &AppState,
    organisation_id: &str,
    holder: Option<&str>,
    ids: &[String],
) -> Result<Vec<String>, ApiError> {
    const PARAM: &str = "delegable_keys";
    let ids = parse_delegable_keys(ids)?;
    let found = state
        .actors()
        .api_keys()
        .live_with_ids(&ids)
        .await
        .map_err(ApiError::storage)?;
    for id in &ids {
        if Some(id.as_str()) == holder {
            return Err(ApiError::invalid_param(
                PARAM,
                "an issuer key may not mint tokens for itself",
            ));
        }
        let key = found
            .iter()
            .find(|k| &k.id == id && k.organisation_id == organisation_id)
            .ok_or_else(|| {
                ApiError::invalid_param(PARAM, format!("no key of this organisation is {id}"))
            })?;
        if !is_delegable_target(key) {
            return Err(ApiError::invalid_param(
                PARAM,
                format!("{id} holds keys:admin or tokens:issue; no issuer mints for it"),
            ));
        }
    }
    Ok(ids)
}
