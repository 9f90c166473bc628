//! Access and refresh tokens.
//!
//! Access tokens are RS256 JWTs with a `kid`, carrying the wallet address and the session id
//! (`sid`); the session is checked on every request, so logging out revokes them. Verification
//! accepts RS256 only: a token whose header says `none`, HS256 or anything else is refused
//! before any key is used.
//!
//! Signing and verification use aws-lc-rs with the parsed keys kept in memory. `jsonwebtoken`
//! rebuilds the RSA key on every call (for verification that means recomputing its Montgomery
//! constants, which profiling showed cost more than the signature check itself and a quarter of
//! the CPU of an authenticated request). The format handled here is deliberately narrow: three
//! base64url parts, a header whose `alg` is exactly `RS256` with this server's `kid`, and a
//! PKCS#1 v1.5 SHA-256 signature by the one key. `jsonwebtoken` is used in the tests to check
//! that what is minted here is a standard JWT.
//!
//! Refresh tokens are 48 random bytes, base64url; only their SHA-256 is stored.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    KeyPair, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use ampflow_storage::{Storage, StoredJwtKey};
use ampflow_types::{Clock, UnixMillis};

/// The `iss` claim of every access token.
pub const ISSUER: &str = "ampflow";
/// Tokens whose signature was already checked, kept so that a client presenting the same token
/// on every request pays for the RSA verification once. When full, the cache is emptied.
const VERIFIED_TOKENS_MAX: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is malformed, expired or not signed by this server")]
    Invalid,
    #[error("signing key: {0}")]
    Key(String),
    #[error(transparent)]
    Storage(#[from] ampflow_storage::StorageError),
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    /// The lowercase wallet address.
    pub sub: String,
    /// Kept from the original service's tokens, which clients may read.
    pub address: String,
    /// The session (refresh-token family) this token belongs to.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
}

/// A public key in JWK form, for `/.well-known/jwks.json`.
#[derive(Debug, Clone, Serialize)]
pub struct PublicJwk {
    pub kty: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub alg: &'static str,
    pub kid: String,
    pub n: String,
    pub e: String,
}

pub struct TokenService {
    kid: String,
    signing_key: RsaKeyPair,
    verifying_key: ParsedPublicKey,
    /// Exact token text → its claims, for tokens whose signature verified.
    verified: parking_lot::Mutex<std::collections::HashMap<Box<str>, AccessClaims>>,
    jwk: PublicJwk,
    access_ttl_ms: i64,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    /// Uses the configured key when there is one; otherwise the key stored in the database,
    /// generating and storing one on first start. All processes on one database converge on
    /// the oldest stored key.
    pub async fn load_or_create(
        storage: &Storage,
        configured_pem: Option<&SecretString>,
        clock: &dyn Clock,
        access_ttl_ms: i64,
    ) -> Result<Self, TokenError> {
        if let Some(pem) = configured_pem {
            let der = pem_to_der(pem.expose_secret())?;
            let key = RsaKeyPair::from_pkcs8(&der)
                .or_else(|_| RsaKeyPair::from_der(&der))
                .map_err(|e| TokenError::Key(format!("configured key is not an RSA key: {e}")))?;
            return Self::from_key_pair(key, access_ttl_ms);
        }
        let stored = match storage.signing_keys().load_jwt_key().await? {
            Some(stored) => stored,
            None => {
                let key = RsaKeyPair::generate(KeySize::Rsa2048)
                    .map_err(|_| TokenError::Key("RSA key generation failed".into()))?;
                let pkcs8 = key
                    .as_der()
                    .map_err(|_| TokenError::Key("cannot encode the generated key".into()))?;
                let candidate = StoredJwtKey {
                    kid: key_id(&key),
                    private_key_pkcs8_b64: STANDARD.encode(pkcs8.as_ref()),
                    created_at_ms: clock.now_ms(),
                };
                let stored = storage.signing_keys().first_jwt_key(&candidate).await?;
                if stored.kid == candidate.kid {
                    tracing::info!(kid = %stored.kid, "generated a new JWT signing key");
                }
                stored
            }
        };
        let der = STANDARD
            .decode(&stored.private_key_pkcs8_b64)
            .map_err(|_| TokenError::Key("stored key is not base64".into()))?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| TokenError::Key(format!("stored key is not an RSA key: {e}")))?;
        Self::from_key_pair(key, access_ttl_ms)
    }

    fn from_key_pair(key: RsaKeyPair, access_ttl_ms: i64) -> Result<Self, TokenError> {
        let kid = key_id(&key);
        let public = key.public_key();
        let modulus = public.modulus().big_endian_without_leading_zero().to_vec();
        let exponent = public.exponent().big_endian_without_leading_zero().to_vec();
        let verifying_key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public.as_ref())
            .map_err(|e| TokenError::Key(format!("cannot parse the public key: {e}")))?;
        let jwk = PublicJwk {
            kty: "RSA",
            use_: "sig",
            alg: "RS256",
            kid: kid.clone(),
            n: URL_SAFE_NO_PAD.encode(&modulus),
            e: URL_SAFE_NO_PAD.encode(&exponent),
        };
        Ok(Self {
            kid,
            signing_key: key,
            verifying_key,
            verified: parking_lot::Mutex::new(std::collections::HashMap::new()),
            jwk,
            access_ttl_ms,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn access_ttl_ms(&self) -> i64 {
        self.access_ttl_ms
    }

    pub fn jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    /// An RS256 access token for `address` in session `sid`.
    pub fn mint_access(
        &self,
        address: &str,
        sid: &str,
        now: UnixMillis,
    ) -> Result<String, TokenError> {
        let claims = AccessClaims {
            iss: ISSUER.to_string(),
            sub: address.to_string(),
            address: address.to_string(),
            sid: sid.to_string(),
            iat: now / 1000,
            exp: (now + self.access_ttl_ms) / 1000,
        };
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let mut token = format!("{}.{}", b64_json(&header), b64_json(&claims));
        let mut signature = vec![0u8; self.signing_key.public_modulus_len()];
        self.signing_key
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                token.as_bytes(),
                &mut signature,
            )
            .map_err(|_| TokenError::Key("RSA signing failed".into()))?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(&signature));
        Ok(token)
    }

    /// The claims of a valid, unexpired access token signed by this server's key.
    pub fn verify_access(&self, token: &str, now: UnixMillis) -> Result<AccessClaims, TokenError> {
        let cached = self.verified.lock().get(token).cloned();
        let claims = match cached {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signature(token)?;
                let mut verified = self.verified.lock();
                if verified.len() >= VERIFIED_TOKENS_MAX {
                    verified.clear();
                }
                verified.insert(token.into(), claims.clone());
                claims
            }
        };
        if claims.exp * 1000 <= now {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    /// Checks the token's form, header and signature; answers its claims.
    fn verify_signature(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        let signing_input = &token[..header.len() + 1 + claims.len()];
        let header: JwtHeader = decode_json_part(header)?;
        if header.alg != "RS256" || header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenError::Invalid);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Invalid)?;
        self.verifying_key
            .verify_sig(signing_input.as_bytes(), &signature)
            .map_err(|_| TokenError::Invalid)?;
        let claims: AccessClaims = decode_json_part(claims)?;
        if claims.iss != ISSUER {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }
}

#[derive(Deserialize)]
struct JwtHeader {
    alg: String,
    kid: Option<String>,
}

fn decode_json_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Invalid)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Invalid)
}

/// A new refresh token and the hash under which it is stored.
pub fn new_refresh_token() -> Result<(SecretString, String), TokenError> {
    let mut bytes = [0u8; 48];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TokenError::Key("no randomness available".into()))?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    Ok((SecretString::from(token), hash))
}

/// The stored form of a refresh token.
pub fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

fn key_id(key: &RsaKeyPair) -> String {
    let public = key.public_key();
    let digest = Sha256::digest(public.as_ref());
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, TokenError> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("-----") && !line.is_empty())
        .collect();
    STANDARD
        .decode(body)
        .map_err(|_| TokenError::Key("the configured JWT key is not PEM".into()))
}

/// base64url of the JSON form of `value`, as in a JWT's first two parts.
fn b64_json<T: Serialize>(value: &T) -> String {
    // Serialising plain structs and `json!` values cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ampflow_storage::testdb::TestDatabase;
    use ampflow_types::SystemClock;

    async fn service() -> (TokenService, TestDatabase) {
        let db = TestDatabase::sqlite();
        let storage = Storage::connect(&db.settings()).await.unwrap();
        storage.migrate().await.unwrap();
        let tokens = TokenService::load_or_create(&storage, None, &SystemClock, 86_400_000)
            .await
            .unwrap();
        (tokens, db)
    }

    fn forge(header: serde_json::Value, claims: &AccessClaims, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64_json(&header),
            b64_json(claims),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    #[tokio::test]
    async fn a_minted_token_verifies_and_carries_its_session() {
        let (tokens, _db) = service().await;
        let now = SystemClock.now_ms();
        let token = tokens.mint_access("0xabc", "sid-1", now).unwrap();
        let claims = tokens.verify_access(&token, now).unwrap();
        assert_eq!(claims.address, "0xabc");
        assert_eq!(claims.sid, "sid-1");
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some(tokens.kid()));
        // A standard JWT: a general-purpose library verifies it with the published JWK.
        let jwk = tokens.jwk();
        let key = jsonwebtoken::DecodingKey::from_rsa_components(&jwk.n, &jwk.e).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(&[ISSUER]);
        let decoded = jsonwebtoken::decode::<AccessClaims>(&token, &key, &validation).unwrap();
        assert_eq!(decoded.claims, claims);
        // Tampering with any part is caught.
        let mut tampered = token.clone();
        tampered.insert(token.len() / 2, 'A');
        assert!(tokens.verify_access(&tampered, now).is_err());
        assert!(tokens.verify_access(&format!("{token}.x"), now).is_err());
        // and it expires
        assert!(
            tokens
                .verify_access(&token, now + 86_400_000 + 1000)
                .is_err()
        );
    }

    #[tokio::test]
    async fn alg_none_and_hs256_keyed_with_the_public_key_are_rejected() {
        let (tokens, _db) = service().await;
        let now = SystemClock.now_ms();
        let claims = tokens
            .verify_access(&tokens.mint_access("0xabc", "s", now).unwrap(), now)
            .unwrap();

        let none = forge(
            serde_json::json!({"alg": "none", "kid": tokens.kid()}),
            &claims,
            b"",
        );
        assert!(tokens.verify_access(&none, now).is_err());

        // HS256 "signed" with the RSA public key as the HMAC secret (the classic confusion).
        use hmac::{KeyInit, Mac};
        let public_key = tokens.signing_key.public_key().as_ref().to_vec();
        let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": tokens.kid()});
        let signing_input = format!("{}.{}", b64_json(&header), b64_json(&claims));
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&public_key).unwrap();
        mac.update(signing_input.as_bytes());
        let forged = format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert!(tokens.verify_access(&forged, now).is_err());
    }

    #[tokio::test]
    async fn the_key_is_persisted_and_reused() {
        let db = TestDatabase::sqlite();
        let storage = Storage::connect(&db.settings()).await.unwrap();
        storage.migrate().await.unwrap();
        let first = TokenService::load_or_create(&storage, None, &SystemClock, 1000)
            .await
            .unwrap();
        let second = TokenService::load_or_create(&storage, None, &SystemClock, 1000)
            .await
            .unwrap();
        assert_eq!(first.kid(), second.kid());
        let now = SystemClock.now_ms();
        let token = first.mint_access("0xabc", "s", now).unwrap();
        assert!(second.verify_access(&token, now).is_ok());
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, hash_a) = new_refresh_token().unwrap();
        let (b, _) = new_refresh_token().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(hash_refresh_token(a.expose_secret()), hash_a);
        assert_eq!(hash_a.len(), 64);
    }
}
