//! What `ampflow user create` reads besides its flags: the new user's password, never from the
//! command line. (The commands themselves call the accounts and organisations façades.)

use anyhow::{Context, bail};

/// The environment variable `ampflow user create` reads the password from (else stdin).
pub const PASSWORD_ENV: &str = "AMPFLOW_USER_PASSWORD";

/// The new user's password: from [`PASSWORD_ENV`] when set, else the first line of stdin
/// (never from the command line, where other users could read it).
pub fn read_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var(PASSWORD_ENV) {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("no password: set {PASSWORD_ENV} or write it on stdin");
    }
    Ok(password)
}
