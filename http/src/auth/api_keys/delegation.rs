//! What an issuer key may delegate (issue 14). A key holding `tokens:issue` (seed 001's issuer)
//! mints access tokens for the organisation's other keys only within the delegation a
//! `keys:admin` named for it: the policies a token may carry (`delegable_policies`), the keys
//! it may mint for (`delegable_keys`), or both; with neither it delegates nothing. A token it
//! mints carries its scope (the target's policies within that delegation) as a signed claim,
//! so it never grants more than the scope, even once the target gains policies. An issuer
//! never mints for a key holding `keys:admin` or `tokens:issue`, since such a token would mint
//! or manage keys in turn and so widen itself; and it never rotates (that needs `keys:admin`).

use ampflow_actors::api_keys::ApiKeyRecord;

use super::{Policy, parse_policy_list};
use crate::error::ApiError;

/// Policies no delegation names and no delegated token carries: either would let the token
/// mint or manage keys, and so widen itself.
pub const UNDELEGABLE: [Policy; 2] = [Policy::KeysAdmin, Policy::TokensIssue];

/// Most keys one issuer's `delegable_keys` names (an organisation's default key limit).
pub const DELEGABLE_KEYS_MAX: usize = 100;

/// Longest key id looked at (`key_` and 32 hex digits).
const KEY_ID_LENGTH_MAX: usize = 40;

/// The policies a delegated token may use, fixed when it is minted: known, delegable, sorted,
/// never empty. The key's own policies still bound it when the token is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenScope(Vec<Policy>);

impl TokenScope {
    /// `policies` as a scope; `None` when there is none or one may not be delegated.
    fn of(mut policies: Vec<Policy>) -> Option<Self> {
        if policies.is_empty() || policies.iter().any(|p| UNDELEGABLE.contains(p)) {
            return None;
        }
        policies.sort_by_key(|p| p.as_str());
        policies.dedup();
        Some(Self(policies))
    }

    pub fn contains(&self, policy: Policy) -> bool {
        self.0.contains(&policy)
    }

    /// The policies' names, sorted, as the audit log and the README show them.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|p| p.as_str().to_string()).collect()
    }

    /// The token claim: the names separated by spaces, as OAuth's `scope` (RFC 8693).
    pub fn to_claim(&self) -> String {
        self.names().join(" ")
    }

    /// A token's `scope` claim; `None` when it names an unknown or undelegable policy or none
    /// (only a forged token would: the claim is signed).
    pub fn from_claim(claim: &str) -> Option<Self> {
        let policies = claim
            .split(' ')
            .map(Policy::parse)
            .collect::<Option<Vec<_>>>()?;
        Self::of(policies)
    }
}

/// Why an issuer may not mint a token for a key: each answers 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MintRefusal {
    #[error("an issuer key may not mint tokens for a key holding keys:admin or tokens:issue")]
    PrivilegedTarget,
    #[error(
        "this issuer key may delegate nothing; a keys:admin names its delegable_policies or delegable_keys"
    )]
    NothingDelegated,
    #[error("this issuer key may not mint tokens for this key (it is not in its delegable_keys)")]
    KeyNotDelegated,
    #[error("this key holds none of the policies this issuer key may delegate")]
    NothingInCommon,
}

impl From<MintRefusal> for ApiError {
    fn from(refusal: MintRefusal) -> Self {
        ApiError::authorization(refusal.to_string())
    }
}

/// Whether a key may receive delegated tokens: it holds no undelegable policy.
pub fn is_delegable_target(key: &ApiKeyRecord) -> bool {
    !UNDELEGABLE.iter().any(|p| key.has_policy(p.as_str()))
}

/// The scope of a token `issuer` mints for `target` (both of one organisation, checked
/// before): the target's policies within the issuer's delegable policies, for a target in its
/// delegable keys.
pub fn delegated_scope(
    issuer: &ApiKeyRecord,
    target: &ApiKeyRecord,
) -> Result<TokenScope, MintRefusal> {
    if !is_delegable_target(target) {
        return Err(MintRefusal::PrivilegedTarget);
    }
    if issuer.delegable_policies.is_none() && issuer.delegable_keys.is_none() {
        return Err(MintRefusal::NothingDelegated);
    }
    if let Some(keys) = &issuer.delegable_keys
        && !keys.contains(&target.id)
    {
        return Err(MintRefusal::KeyNotDelegated);
    }
    let policies = target
        .policies
        .iter()
        .filter(|p| {
            issuer
                .delegable_policies
                .as_ref()
                .is_none_or(|delegable| delegable.contains(p))
        })
        .filter_map(|p| Policy::parse(p))
        .collect();
    TokenScope::of(policies).ok_or(MintRefusal::NothingInCommon)
}

/// `delegable_policies` as given: at least one known policy, none of [`UNDELEGABLE`]; sorted,
/// without duplicates. 400 otherwise.
pub fn parse_delegable_policies(names: &[String]) -> Result<Vec<String>, ApiError> {
    const PARAM: &str = "delegable_policies";
    let policies = parse_policy_list(PARAM, names)?;
    if let Some(undelegable) = policies.iter().find(|p| UNDELEGABLE.contains(p)) {
        return Err(ApiError::invalid_param(
            PARAM,
            format!(
                "{} cannot be delegated: a token holding it could mint or manage keys",
                undelegable.as_str()
            ),
        ));
    }
    Ok(policies.iter().map(|p| p.as_str().to_string()).collect())
}

/// `delegable_keys` as given: 1 to [`DELEGABLE_KEYS_MAX`] key ids, sorted, without duplicates.
/// Whether each is a key the issuer may name is the caller's check (it needs storage). 400
/// otherwise.
pub fn parse_delegable_keys(ids: &[String]) -> Result<Vec<String>, ApiError> {
    const PARAM: &str = "delegable_keys";
    if ids.is_empty() {
        return Err(ApiError::invalid_param(
            PARAM,
            "give at least one key id, or leave delegable_keys out",
        ));
    }
    if ids.len() > DELEGABLE_KEYS_MAX {
        return Err(ApiError::invalid_param(
            PARAM,
            format!("at most {DELEGABLE_KEYS_MAX} keys"),
        ));
    }
    let mut keys = Vec::with_capacity(ids.len());
    for id in ids {
        let id = id.trim();
        if !id.starts_with("key_") || id.len() > KEY_ID_LENGTH_MAX {
            return Err(ApiError::invalid_param(
                PARAM,
                format!("{id:?} is not a key id (key_…)"),
            ));
        }
        keys.push(id.to_string());
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::api_keys::{KeyMode, KeySpec, generate_key};

    fn key(policies: &[&str]) -> ApiKeyRecord {
        generate_key(
            KeySpec {
                organisation_id: "org_1",
                name: "k",
                policies: policies.iter().map(|p| p.to_string()).collect(),
                mode: KeyMode::Test,
                created_by: "usr_1",
                delegable_policies: None,
                delegable_keys: None,
            },
            1_700_000_000_000,
        )
        .record
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn issuer(policies: Option<&[&str]>, keys: Option<&[&str]>) -> ApiKeyRecord {
        let mut issuer = key(&["tokens:issue"]);
        issuer.delegable_policies = policies.map(names);
        issuer.delegable_keys = keys.map(names);
        issuer
    }

    #[test]
    fn a_scope_is_the_targets_policies_within_the_delegation() {
        let target = key(&["donations:read", "ledger:read"]);
        let scope = |i: &ApiKeyRecord| delegated_scope(i, &target).map(|s| s.names());
        let by_policy = issuer(Some(&["ledger:read", "audit:read"]), None);
        assert_eq!(scope(&by_policy), Ok(names(&["ledger:read"])));
        let by_key = issuer(None, Some(&[&target.id]));
        assert_eq!(
            scope(&by_key),
            Ok(names(&["donations:read", "ledger:read"]))
        );
        let both = issuer(Some(&["donations:read"]), Some(&[&target.id]));
        assert_eq!(scope(&both), Ok(names(&["donations:read"])));
        let other_key = issuer(Some(&["donations:read"]), Some(&["key_other"]));
        assert_eq!(scope(&other_key), Err(MintRefusal::KeyNotDelegated));
        assert_eq!(
            scope(&issuer(None, None)),
            Err(MintRefusal::NothingDelegated)
        );
        let disjoint = issuer(Some(&["audit:read"]), None);
        assert_eq!(scope(&disjoint), Err(MintRefusal::NothingInCommon));
    }

    #[test]
    fn no_issuer_mints_for_a_key_that_can_mint_or_manage_keys() {
        let wide = issuer(Some(&["donations:read"]), None);
        for held in [
            ["donations:read", "keys:admin"],
            ["donations:read", "tokens:issue"],
        ] {
            let mut target = key(&held);
            assert_eq!(
                delegated_scope(&wide, &target),
                Err(MintRefusal::PrivilegedTarget)
            );
            let named = issuer(Some(&["donations:read"]), Some(&[&target.id]));
            assert_eq!(
                delegated_scope(&named, &target),
                Err(MintRefusal::PrivilegedTarget)
            );
            target.policies = names(&["donations:read"]);
            assert!(delegated_scope(&named, &target).is_ok());
        }
        // Nor for itself.
        let issuer = issuer(None, None);
        assert_eq!(
            delegated_scope(&issuer, &issuer),
            Err(MintRefusal::PrivilegedTarget)
        );
    }

    #[test]
    fn scope_claims_name_delegable_policies_only() {
        let scope = TokenScope::from_claim("ledger:read donations:read").unwrap();
        assert_eq!(scope.to_claim(), "donations:read ledger:read");
        assert!(scope.contains(Policy::LedgerRead));
        assert!(!scope.contains(Policy::AuditRead));
        for forged in [
            "",
            " ",
            "donations:read  ledger:read",
            "root",
            "keys:admin",
            "donations:read tokens:issue",
        ] {
            assert_eq!(TokenScope::from_claim(forged), None, "{forged:?}");
        }
    }

    #[test]
    fn delegations_are_checked_sorted_and_deduplicated() {
        assert_eq!(
            parse_delegable_policies(&names(&["ledger:read", "audit:read", "ledger:read"]))
                .unwrap(),
            names(&["audit:read", "ledger:read"])
        );
        for bad in [&[][..], &["keys:admin"], &["tokens:issue"], &["root"]] {
            assert!(parse_delegable_policies(&names(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_delegable_keys(&names(&["key_b", "key_a", "key_b"])).unwrap(),
            names(&["key_a", "key_b"])
        );
        let many: Vec<String> = (0..=DELEGABLE_KEYS_MAX)
            .map(|i| format!("key_{i}"))
            .collect();
        for bad in [vec![], names(&["org_1"]), many] {
            assert!(parse_delegable_keys(&bad).is_err(), "{bad:?}");
        }
    }
}
