//! Dashboard passwords: argon2id hashes, verified in constant time against the PHC string's
//! own parameters, with a bound on the hashes computed at once (each holds
//! `argon2_memory_kib` of memory) and a dummy hash for unknown emails, so an unknown email
//! takes as long as a wrong password.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Longest password accepted (hashing a huge one costs CPU for nothing).
pub const PASSWORD_LENGTH_MAX: usize = 1_024;

/// `auth.argon2_*`, `auth.password_length_min` and `auth.password_hashing_*`.
#[derive(Debug, Clone)]
pub struct PasswordSettings {
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub length_min: usize,
    pub hashing_concurrency_max: u32,
    pub hashing_waiters_max: u32,
    pub hashing_wait_ms: u64,
}

impl PasswordSettings {
    /// Whether argon2 takes these costs (memory in KiB, passes, lanes).
    pub fn check_argon2(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<(), String> {
        Params::new(memory_kib, iterations, parallelism, None)
            .map(drop)
            .map_err(|e| format!("auth.argon2_*: {e}"))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    /// Every hashing turn is taken and the waiting room is full, or the wait ran out.
    #[error("too many password checks are running; retry in a few seconds")]
    Busy,
    /// A new password that breaks the length rule.
    #[error("{0}")]
    Rejected(String),
    #[error("hash a password: {0}")]
    Hashing(String),
}

pub struct Passwords {
    settings: PasswordSettings,
    params: Params,
    dummy_hash: OnceLock<String>,
    hashing: Arc<Semaphore>,
    hashing_waiters: AtomicU32,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").finish_non_exhaustive()
    }
}

impl Passwords {
    pub fn new(settings: PasswordSettings) -> Result<Self, String> {
        let params = Params::new(
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.argon2_parallelism,
            None,
        )
        .map_err(|e| format!("auth.argon2_*: {e}"))?;
        Ok(Self {
            hashing: Arc::new(Semaphore::new(settings.hashing_concurrency_max as usize)),
            settings,
            params,
            dummy_hash: OnceLock::new(),
            hashing_waiters: AtomicU32::new(0),
        })
    }

    /// A turn to compute a hash. At most `hashing_concurrency_max` run at once; a caller
    /// waits up to `hashing_wait_ms` behind at most `hashing_waiters_max` others, else `Busy`.
    pub async fn permit(&self) -> Result<OwnedSemaphorePermit, PasswordError> {
        if let Ok(permit) = self.hashing.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let waiting = self.hashing_waiters.fetch_add(1, Ordering::AcqRel);
        let result = if waiting >= self.settings.hashing_waiters_max {
            None
        } else {
            tokio::time::timeout(
                Duration::from_millis(self.settings.hashing_wait_ms),
                self.hashing.clone().acquire_owned(),
            )
            .await
            .ok()
            .and_then(Result::ok)
        };
        self.hashing_waiters.fetch_sub(1, Ordering::AcqRel);
        result.ok_or_else(|| {
            tracing::warn!("password hashing is saturated; a request was turned away");
            PasswordError::Busy
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// The argon2id PHC string of `password`, with a fresh salt. CPU-heavy: call it from a
    /// blocking task, or use [`Passwords::hash`].
    pub fn hash_now(&self, password: &str) -> Result<String, PasswordError> {
        self.argon2()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| PasswordError::Hashing(e.to_string()))
    }

    /// The hash an unknown email's password is verified against. Made once (the server warms
    /// it at start, so the first unknown email takes no longer than the others).
    pub fn dummy_hash(&self) -> &str {
        self.dummy_hash.get_or_init(|| {
            self.hash_now("not a password anyone has")
                .unwrap_or_default()
        })
    }

    /// Whether `password` matches `hash`; with no hash (unknown email), verifies against the
    /// dummy hash so the answer takes as long, and answers false. CPU-heavy.
    pub fn verify_now(&self, password: &str, hash: Option<&str>) -> bool {
        let (hash, real) = match hash {
            Some(hash) => (hash, true),
            None => (self.dummy_hash(), false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        // The parameters come from the PHC string, so hashes made with older settings verify.
        let ok = self
            .argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && real
    }

    /// [`Passwords::verify_now`] off the async workers, once a hashing turn is free.
    pub async fn verify(
        self: &Arc<Self>,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, PasswordError> {
        let permit = self.permit().await?;
        let passwords = self.clone();
        Ok(tokio::task::spawn_blocking(move || {
            let _permit = permit;
            passwords.verify_now(&password, hash.as_deref())
        })
        .await
        .unwrap_or(false))
    }

    /// A new password's hash, once it passes [`Passwords::check_new`], off the async workers.
    pub async fn hash(self: &Arc<Self>, password: String) -> Result<String, PasswordError> {
        self.check_new(&password)?;
        let permit = self.permit().await?;
        let passwords = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            passwords.hash_now(&password)
        })
        .await
        .map_err(|e| PasswordError::Hashing(e.to_string()))?
    }

    /// A new password's problems, if any.
    pub fn check_new(&self, password: &str) -> Result<(), PasswordError> {
        let length = password.chars().count();
        if length < self.settings.length_min || password.len() > PASSWORD_LENGTH_MAX {
            return Err(PasswordError::Rejected(format!(
                "the password must be {} to {PASSWORD_LENGTH_MAX} characters",
                self.settings.length_min
            )));
        }
        Ok(())
    }

    #[cfg(test)]
    fn waiters(&self) -> u32 {
        self.hashing_waiters.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PasswordSettings {
        PasswordSettings {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            length_min: 12,
            hashing_concurrency_max: 4,
            hashing_waiters_max: 64,
            hashing_wait_ms: 1_000,
        }
    }

    #[test]
    fn passwords_verify_and_unknown_accounts_never_do() {
        let passwords = Passwords::new(settings()).unwrap();
        let hash = passwords.hash_now("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(passwords.verify_now("correct horse battery", Some(&hash)));
        assert!(!passwords.verify_now("wrong", Some(&hash)));
        assert!(!passwords.verify_now("not a password anyone has", None));
        assert!(!passwords.verify_now("x", Some("garbage")));
        assert!(matches!(
            passwords.check_new("short"),
            Err(PasswordError::Rejected(_))
        ));
        assert_eq!(passwords.check_new("long enough, surely"), Ok(()));
    }

    #[tokio::test]
    async fn hashing_turns_are_bounded_in_number_and_waiting() {
        let passwords = Arc::new(
            Passwords::new(PasswordSettings {
                hashing_concurrency_max: 1,
                hashing_waiters_max: 1,
                ..settings()
            })
            .unwrap(),
        );
        let first = passwords.permit().await.unwrap();
        // One waiter is allowed: it times out while the turn is held.
        assert_eq!(passwords.permit().await.unwrap_err(), PasswordError::Busy);
        // With the waiting room full, a caller is refused at once.
        let waiting = tokio::spawn({
            let passwords = passwords.clone();
            async move { passwords.permit().await.map(drop) }
        });
        while passwords.waiters() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(passwords.permit().await.unwrap_err(), PasswordError::Busy);
        // A turn handed back lets the waiter in.
        drop(first);
        waiting.await.unwrap().unwrap();
        drop(passwords.permit().await.unwrap());
    }
}
