//! reCAPTCHA v3 through Google's `siteverify` API: the token is posted with the secret, and the
//! answer must say `success` with a score at or above the configured minimum. With no secret
//! configured the check is off.

use std::time::Duration;

use serde::Deserialize;

use crate::config::RecaptchaConfig;
use crate::error::{ApiError, ErrorCode};

#[derive(Debug, Deserialize)]
struct SiteVerify {
    success: bool,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
}

/// Checks a reCAPTCHA token.
#[derive(Clone)]
pub struct Recaptcha {
    config: RecaptchaConfig,
    client: reqwest::Client,
}

impl Recaptcha {
    pub fn new(config: RecaptchaConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()?;
        Ok(Self { config, client })
    }

    /// Ok when the check is off or the token passes; a 400 `recaptcha_failed` when it does
    /// not, a 503 when Google cannot be asked.
    pub async fn verify(&self, token: Option<&str>, client_ip: &str) -> Result<(), ApiError> {
        let Some(secret) = &self.config.secret else {
            return Ok(());
        };
        let failed = |message: String| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                ErrorCode::RecaptchaFailed,
                message,
            )
            .with_param("re_captcha_token")
        };
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| failed("re_captcha_token is required".into()))?;
        let answer = self
            .client
            .post(&self.config.verify_url)
            .form(&[
                ("secret", secret.expose()),
                ("response", token),
                ("remoteip", client_ip),
            ])
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| {
                tracing::warn!(error = %e.without_url(), "reCAPTCHA siteverify failed");
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::RecaptchaUnavailable,
                    "the reCAPTCHA check could not be made; try again",
                )
            })?
            .json::<SiteVerify>()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e.without_url(), "reCAPTCHA answer unreadable");
                ApiError::unavailable("the reCAPTCHA check could not be made; try again")
            })?;
        if !answer.success {
            return Err(failed(format!(
                "the reCAPTCHA token was refused ({})",
                answer.error_codes.join(", ")
            )));
        }
        let score = answer.score.unwrap_or(0.0);
        if score < self.config.min_score {
            return Err(failed(format!(
                "the reCAPTCHA score {score} is below {}",
                self.config.min_score
            )));
        }
        Ok(())
    }
}
