//! The dashboard accounts façade: the passwords of dashboard users and the login throttle
//! that guards them. The login and password-change routes and `ampflow user create` use it.

mod passwords;
mod throttle;

use std::sync::Arc;

use ampflow_storage::Storage;

pub use passwords::{PASSWORD_LENGTH_MAX, PasswordError, PasswordSettings, Passwords};
pub use throttle::{Attempt, Keys, LoginThrottle, ThrottleError, ThrottleSettings};

/// `auth.*`, as far as accounts go.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    pub passwords: PasswordSettings,
    pub throttle: ThrottleSettings,
}

#[derive(Clone)]
pub struct Accounts {
    passwords: Arc<Passwords>,
    throttle: LoginThrottle,
}

impl Accounts {
    pub fn new(storage: Storage, settings: AccountSettings) -> Result<Self, String> {
        Ok(Self {
            passwords: Arc::new(Passwords::new(settings.passwords)?),
            throttle: LoginThrottle::new(storage, settings.throttle),
        })
    }

    pub fn passwords(&self) -> &Arc<Passwords> {
        &self.passwords
    }

    pub fn throttle(&self) -> &LoginThrottle {
        &self.throttle
    }
}
