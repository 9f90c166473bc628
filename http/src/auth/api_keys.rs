//! Organisation API keys and their access tokens (seeds 000 and 001).
//!
//! A key is `sk_live_…` or `sk_test_…` followed by 43 base64url characters (32 random bytes).
//! It is shown once; the server keeps its SHA-256, finds the key by it and compares it again
//! in constant time. A key is used directly (`Authorization: Bearer sk_…`) or through access
//! tokens: JWTs (HS256) signed with the key's internal secret, whose header's `kid` names the
//! key and the secret (`key_…:sec_…`). Rotating the secret deposes the previous one, which
//! keeps verifying its tokens until its window ends; revoking drops the deposed secret (old
//! tokens) or replaces the current one too (all tokens). A token an issuer key minted carries
//! a signed scope, and a key's effective policies are its own within that scope
//! ([`KeyCredential::grants`]); [`delegation`] holds the issuer rule.

pub mod delegation;

use ampflow_actors::api_keys::{ApiKeyRecord, KeySecret, new_secret, random_text};
use ampflow_actors::organisations::Role;
use ampflow_types::UnixMillis;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::auth::{secret_hash, secret_matches};
use crate::error::ApiError;
use crate::state::AppState;
use delegation::TokenScope;

/// What a key may do. Dashboard sessions get the same checks through their role: a member
/// holds the read policies, an admin all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// List and read the organisation's donations.
    DonationsRead,
    /// Create donations for the organisation.
    DonationsWrite,
    /// Read the organisation's ledger through the API-key rate tier.
    LedgerRead,
    /// Read the organisation.
    OrganisationsRead,
    /// Change the organisation's name and profile.
    OrganisationsWrite,
    /// Read the organisation's audit log.
    AuditRead,
    /// Create, change, rotate, revoke and delete the organisation's keys, and mint tokens.
    KeysAdmin,
    /// Mint access tokens for the organisation's keys (seed 001's issuer tokens).
    TokensIssue,
}

impl Policy {
    pub const ALL: [Self; 8] = [
        Self::DonationsRead,
        Self::DonationsWrite,
        Self::LedgerRead,
        Self::OrganisationsRead,
        Self::OrganisationsWrite,
        Self::AuditRead,
        Self::KeysAdmin,
        Self::TokensIssue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DonationsRead => "donations:read",
            Self::DonationsWrite => "donations:write",
            Self::LedgerRead => "ledger:read",
            Self::OrganisationsRead => "organisations:read",
            Self::OrganisationsWrite => "organisations:write",
            Self::AuditRead => "audit:read",
            Self::KeysAdmin => "keys:admin",
            Self::TokensIssue => "tokens:issue",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// Whether a member with `role` holds this policy.
    pub fn granted_to(self, role: Role) -> bool {
        match role {
            Role::Admin => true,
            Role::Member => matches!(
                self,
                Self::DonationsRead | Self::LedgerRead | Self::OrganisationsRead
            ),
        }
    }
}

/// `live` keys on a server whose Stripe key is live, `test` keys elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    Live,
    Test,
}

impl KeyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Live, Self::Test]
            .into_iter()
            .find(|m| m.as_str() == text)
    }

    fn prefix(self) -> &'static str {
        match self {
            Self::Live => "sk_live_",
            Self::Test => "sk_test_",
        }
    }
}

/// Characters of base64url that 32 bytes make.
const RANDOM_CHARS: usize = 43;
const TOKEN_ISSUER: &str = "ampflow";
const TOKEN_AUDIENCE: &str = "ampflow-api-key";
/// Clock skew allowed on `exp` between processes.
const TOKEN_LEEWAY_SECS: u64 = 5;
/// Longest bearer credential looked at (a token carries a few ids and times).
const TOKEN_LENGTH_MAX: usize = 2_048;

/// A new key: the record to store and the `sk_…` string, shown once.
pub struct NewKey {
    pub record: ApiKeyRecord,
    pub key: SecretString,
}

/// What a new key is made of.
pub struct KeySpec<'a> {
    pub organisation_id: &'a str,
    pub name: &'a str,
    pub policies: Vec<String>,
    pub mode: KeyMode,
    pub created_by: &'a str,
    /// For an issuer: see [`ApiKeyRecord::delegable_policies`].
    pub delegable_policies: Option<Vec<String>>,
    /// For an issuer: see [`ApiKeyRecord::delegable_keys`].
    pub delegable_keys: Option<Vec<String>>,
}

pub fn generate_key(spec: KeySpec<'_>, now: UnixMillis) -> NewKey {
    let random = random_text();
    let key = format!("{}{random}", spec.mode.prefix());
    let hint = format!(
        "{}{}…{}",
        spec.mode.prefix(),
        &random[..4],
        &random[random.len() - 4..]
    );
    let record = ApiKeyRecord {
        id: ampflow_types::prefixed_id("key"),
        organisation_id: spec.organisation_id.to_string(),
        name: spec.name.to_string(),
        mode: spec.mode.as_str().to_string(),
        policies: spec.policies,
        key_hash: secret_hash(&key),
        key_hint: hint,
        secret: new_secret(),
        secret_created_at_ms: now,
        deposed: None,
        created_by: spec.created_by.to_string(),
        created_at_ms: now,
        updated_at_ms: now,
        last_used_at_ms: None,
        deleted_at_ms: None,
        delegable_policies: spec.delegable_policies,
        delegable_keys: spec.delegable_keys,
    };
    NewKey {
        record,
        key: key.into(),
    }
}

/// Policy names, checked, without duplicates and sorted; 400 naming the first unknown one.
pub fn parse_policies(names: &[String]) -> Result<Vec<String>, ApiError> {
    Ok(parse_policy_list("policies", names)?
        .iter()
        .map(|p| p.as_str().to_string())
        .collect())
}

/// At least one known policy, sorted by name, without duplicates; 400 on `param` otherwise.
fn parse_policy_list(param: &str, names: &[String]) -> Result<Vec<Policy>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::invalid_param(param, "give at least one policy"));
    }
    let mut policies = Vec::with_capacity(names.len());
    for name in names {
        let policy = Policy::parse(name.trim()).ok_or_else(|| {
            let known: Vec<_> = Policy::ALL.iter().map(|p| p.as_str()).collect();
            ApiError::invalid_param(
                param,
                format!("unknown policy {name:?}; known: {}", known.join(", ")),
            )
        })?;
        policies.push(policy);
    }
    policies.sort_by_key(|p| p.as_str());
    policies.dedup();
    Ok(policies)
}

#[derive(Debug, Serialize, Deserialize)]
struct TokenClaims {
    iss: String,
    aud: String,
    /// The key's id.
    sub: String,
    /// The key's organisation.
    org: String,
    iat: i64,
    exp: i64,
    /// `tok_…`, named in the audit log.
    jti: String,
    /// Minted by an issuer key: the policies the token may use (see [`TokenScope`]). Absent:
    /// the key's own policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// A minted access token.
pub struct MintedToken {
    pub token: SecretString,
    /// `tok_…`
    pub id: String,
    pub expires_at_ms: UnixMillis,
}

/// An access token for `key`, signed with its current secret, expiring at `expires_at_ms`
/// (whole seconds), limited to `scope` when an issuer mints it.
pub fn mint_token(
    key: &ApiKeyRecord,
    now: UnixMillis,
    expires_at_ms: UnixMillis,
    scope: Option<&TokenScope>,
) -> Result<MintedToken, ApiError> {
    let id = ampflow_types::prefixed_id("tok");
    let claims = TokenClaims {
        iss: TOKEN_ISSUER.into(),
        aud: TOKEN_AUDIENCE.into(),
        sub: key.id.clone(),
        org: key.organisation_id.clone(),
        iat: now.div_euclid(1000),
        exp: expires_at_ms.div_euclid(1000),
        jti: id.clone(),
        scope: scope.map(TokenScope::to_claim),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(format!("{}:{}", key.id, key.secret.id));
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(key.secret.value.as_bytes()),
    )
    .map_err(ApiError::internal)?;
    Ok(MintedToken {
        token: token.into(),
        id,
        expires_at_ms: claims.exp * 1000,
    })
}

/// A key whose credential verified, and how it was presented.
#[derive(Debug, Clone)]
pub struct VerifiedKey {
    pub key: ApiKeyRecord,
    pub credential: KeyCredential,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCredential {
    /// `Bearer sk_…`
    Direct,
    /// An access token (`tok_…`); `scope` when an issuer key minted it.
    Token {
        id: String,
        scope: Option<TokenScope>,
    },
}

impl KeyCredential {
    /// Whether `key`, presented with this credential, may use `policy`: the key holds it and,
    /// for a token an issuer minted, the token's scope names it. A scope only narrows, so a
    /// delegated token loses a policy its key loses and never gains one its key gains.
    pub fn grants(&self, key: &ApiKeyRecord, policy: Policy) -> bool {
        let scoped = match self {
            KeyCredential::Token {
                scope: Some(scope), ..
            } => scope.contains(policy),
            KeyCredential::Direct | KeyCredential::Token { scope: None, .. } => true,
        };
        scoped && key.has_policy(policy.as_str())
    }
}

/// An API key credential, recognised from its shape (nothing verified yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyBearer<'a> {
    /// `sk_live_…` / `sk_test_…`
    Key(&'a str),
    /// A JWT whose header names an API key and its secret (`kid: key_…:sec_…`).
    Token {
        token: &'a str,
        key_id: String,
        secret_id: String,
    },
}

/// The bearer credential as an API key's, or `None` for anything else (a wallet's access
/// token, or garbage).
pub fn key_bearer_of(token: &str) -> Option<KeyBearer<'_>> {
    if token.starts_with("sk_live_") || token.starts_with("sk_test_") {
        return Some(KeyBearer::Key(token));
    }
    if token.len() > TOKEN_LENGTH_MAX {
        return None;
    }
    let (key_id, secret_id) = token_kid(token)?;
    Some(KeyBearer::Token {
        token,
        key_id,
        secret_id,
    })
}

/// The key and secret ids an HS256 token's header names.
fn token_kid(token: &str) -> Option<(String, String)> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    if header.alg != Algorithm::HS256 {
        return None;
    }
    let (key_id, secret_id) = header
        .kid?
        .split_once(':')
        .map(|(k, s)| (k.to_string(), s.to_string()))?;
    (key_id.starts_with("key_") && secret_id.starts_with("sec_")).then_some((key_id, secret_id))
}

fn refused() -> ApiError {
    ApiError::authentication("the API key or access token is invalid, revoked or expired")
}

/// The key behind an API key credential; 401 when it does not verify (unknown, deleted, of
/// the other mode, expired, signed with a dropped or unknown secret, or forged).
pub async fn verify_bearer(
    state: &AppState,
    bearer: KeyBearer<'_>,
) -> Result<VerifiedKey, ApiError> {
    let now = state.clock().now_ms();
    let verified = match bearer {
        KeyBearer::Key(token) => {
            if token.len() != "sk_live_".len() + RANDOM_CHARS {
                return Err(refused());
            }
            let key = state
                .actors()
                .api_keys()
                .by_hash(&secret_hash(token))
                .await
                .map_err(ApiError::storage)?
                .filter(|k| secret_matches(token, &k.key_hash))
                .ok_or_else(refused)?;
            VerifiedKey {
                key,
                credential: KeyCredential::Direct,
            }
        }
        KeyBearer::Token {
            token,
            key_id,
            secret_id,
        } => {
            let key = state
                .actors()
                .api_keys()
                .record(&key_id)
                .await
                .map_err(ApiError::storage)?
                .ok_or_else(refused)?;
            let secret = key.secret_for(&secret_id, now).ok_or_else(refused)?;
            let claims = verify_token(token, secret, now)?;
            if claims.sub != key.id || claims.org != key.organisation_id {
                return Err(refused());
            }
            let scope = match claims.scope.as_deref() {
                Some(claim) => Some(TokenScope::from_claim(claim).ok_or_else(refused)?),
                None => None,
            };
            VerifiedKey {
                credential: KeyCredential::Token {
                    id: claims.jti,
                    scope,
                },
                key,
            }
        }
    };
    if verified.key.deleted_at_ms.is_some() {
        return Err(refused());
    }
    let mode = state.auth().key_mode();
    if verified.key.mode != mode.as_str() {
        return Err(ApiError::authentication(format!(
            "this server takes {} keys (sk_{}_…)",
            mode.as_str(),
            mode.as_str()
        )));
    }
    Ok(verified)
}

/// The token's claims if its signature (HMAC-SHA256, compared in constant time by the JWT
/// library), issuer, audience and expiry check out.
fn verify_token(token: &str, secret: &KeySecret, now: UnixMillis) -> Result<TokenClaims, ApiError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[TOKEN_ISSUER]);
    validation.set_audience(&[TOKEN_AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // Expiry is checked below against the server's clock (tests move it).
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<TokenClaims>(
        token,
        &DecodingKey::from_secret(secret.value.as_bytes()),
        &validation,
    )
    .map_err(|_| refused())?
    .claims;
    if claims.exp.saturating_add(TOKEN_LEEWAY_SECS as i64) * 1000 <= now {
        return Err(ApiError::authentication("the access token has expired"));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn key() -> NewKey {
        generate_key(
            KeySpec {
                organisation_id: "org_1",
                name: "ci",
                policies: vec!["donations:read".into()],
                mode: KeyMode::Test,
                created_by: "usr_1",
                delegable_policies: None,
                delegable_keys: None,
            },
            1_700_000_000_000,
        )
    }

    #[test]
    fn keys_have_their_prefix_and_only_their_hash_is_kept() {
        let new = key();
        let text = new.key.expose_secret();
        assert!(text.starts_with("sk_test_"), "{text}");
        assert_eq!(text.len(), "sk_test_".len() + RANDOM_CHARS);
        assert_eq!(new.record.key_hash, secret_hash(text));
        assert!(!format!("{:?}", new.record).contains(&new.record.secret.value));
        assert!(new.record.key_hint.starts_with("sk_test_"));
        assert_eq!(key_bearer_of(text), Some(KeyBearer::Key(text)));
    }

    #[test]
    fn tokens_verify_with_their_secret_only_and_expire() {
        let new = key();
        let now = 1_700_000_000_000;
        let minted = mint_token(&new.record, now, now + 3_600_000, None).unwrap();
        let token = minted.token.expose_secret();
        let Some(KeyBearer::Token {
            key_id, secret_id, ..
        }) = key_bearer_of(token)
        else {
            panic!("an access token is a key's credential");
        };
        assert_eq!(key_id, new.record.id);
        assert_eq!(secret_id, new.record.secret.id);
        let claims = verify_token(token, &new.record.secret, now).unwrap();
        assert_eq!(claims.jti, minted.id);
        assert!(verify_token(token, &new_secret(), now).is_err());
        assert!(verify_token(token, &new.record.secret, now + 3_700_000).is_err());
        // Another key's claims under this token's signature.
        let other = mint_token(&key().record, now, now + 3_600_000, None).unwrap();
        let (head, rest) = token.split_once('.').unwrap();
        let signature = rest.rsplit_once('.').unwrap().1;
        let payload = other.token.expose_secret().split('.').nth(1).unwrap();
        let forged = format!("{head}.{payload}.{signature}");
        assert!(verify_token(&forged, &new.record.secret, now).is_err());
        assert_eq!(key_bearer_of("eyJhbGciOiJSUzI1NiJ9.e30.x"), None);
    }

    #[test]
    fn a_scoped_token_grants_its_keys_policies_within_its_scope_only() {
        let mut new = key();
        new.record.policies = vec!["audit:read".into(), "donations:read".into()];
        let now = 1_700_000_000_000;
        let scope = TokenScope::from_claim("donations:read ledger:read").unwrap();
        let minted = mint_token(&new.record, now, now + 3_600_000, Some(&scope)).unwrap();
        let token = minted.token.expose_secret();
        let claims = verify_token(token, &new.record.secret, now).unwrap();
        assert_eq!(claims.scope.as_deref(), Some("donations:read ledger:read"));
        let scoped = KeyCredential::Token {
            id: minted.id.clone(),
            scope: Some(scope),
        };
        let grants = |credential: &KeyCredential| {
            Policy::ALL
                .into_iter()
                .filter(|p| credential.grants(&new.record, *p))
                .collect::<Vec<_>>()
        };
        // Within the scope and held by the key: not audit:read (outside the scope), not
        // ledger:read (the key lacks it).
        assert_eq!(grants(&scoped), [Policy::DonationsRead]);
        let unscoped = KeyCredential::Token {
            id: minted.id,
            scope: None,
        };
        assert_eq!(
            grants(&unscoped),
            [Policy::DonationsRead, Policy::AuditRead]
        );
        assert_eq!(grants(&KeyCredential::Direct), grants(&unscoped));
    }

    #[test]
    fn policies_are_checked_sorted_and_deduplicated() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_policies(&names(&["ledger:read", "donations:read", "ledger:read"])).unwrap(),
            names(&["donations:read", "ledger:read"])
        );
        assert!(parse_policies(&names(&["root"])).is_err());
        assert!(parse_policies(&[]).is_err());
        assert!(Policy::DonationsRead.granted_to(Role::Member));
        assert!(!Policy::KeysAdmin.granted_to(Role::Member));
        assert!(Policy::KeysAdmin.granted_to(Role::Admin));
    }
}
