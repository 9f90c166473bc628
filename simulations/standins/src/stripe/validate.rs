//! Parameter checks with Stripe's error codes and messages: integers, booleans, currencies,
//! minimum and maximum amounts, metadata limits, emails.

use std::collections::BTreeMap;

use super::error::ApiError;
use super::form::Params;

/// Stripe's cap on a charge amount in minor units (8 digits).
const AMOUNT_MAX: i64 = 99_999_999;
/// Stripe's metadata limits.
const METADATA_KEYS_MAX: usize = 50;
const METADATA_KEY_CHARS_MAX: usize = 40;
const METADATA_VALUE_CHARS_MAX: usize = 500;

/// Currencies Stripe settles in that the stand-in accepts (lowercase ISO 4217).
const CURRENCIES: &[&str] = &[
    "aed", "ars", "aud", "bgn", "brl", "cad", "chf", "clp", "cny", "cop", "czk", "dkk", "egp",
    "eur", "gbp", "hkd", "huf", "idr", "ils", "inr", "isk", "jpy", "krw", "mxn", "myr", "ngn",
    "nok", "nzd", "php", "pkr", "pln", "ron", "rsd", "sar", "sek", "sgd", "thb", "try", "twd",
    "uah", "usd", "vnd", "zar",
];

/// Stripe's minimum charge, in minor units, for the two-decimal currencies whose minimum the
/// stand-in enforces; others have no minimum here.
const MINIMUM_AMOUNTS: &[(&str, i64)] = &[
    ("aud", 50),
    ("cad", 50),
    ("chf", 50),
    ("eur", 50),
    ("gbp", 30),
    ("nzd", 50),
    ("sgd", 50),
    ("usd", 50),
];

/// An integer parameter; `None` when absent.
pub(crate) fn integer(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    text.parse::<i64>().map(Some).map_err(|_| {
        ApiError::param(
            name,
            "parameter_invalid_integer",
            &format!("Invalid integer: {text}"),
        )
    })
}

/// A boolean parameter (`true`/`false`); `None` when absent.
pub(crate) fn boolean(params: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(text) => Err(ApiError::param(
            name,
            "parameter_invalid_boolean",
            &format!("Invalid boolean: {text}"),
        )),
    }
}

/// A charge amount: required, at least 1, at most Stripe's maximum.
pub(crate) fn amount(params: &Params) -> Result<i64, ApiError> {
    let amount = integer(params, "amount")?.ok_or_else(|| ApiError::missing_param("amount"))?;
    if amount < 1 {
        return Err(ApiError::param(
            "amount",
            "parameter_invalid_integer",
            "This value must be greater than or equal to 1.",
        ));
    }
    if amount > AMOUNT_MAX {
        return Err(ApiError::param(
            "amount",
            "amount_too_large",
            &format!("Amount must be no more than {AMOUNT_MAX} in the smallest currency unit."),
        ));
    }
    Ok(amount)
}

/// A currency, answered lowercase as Stripe does.
pub(crate) fn currency(params: &Params) -> Result<String, ApiError> {
    let text = params
        .get("currency")
        .ok_or_else(|| ApiError::missing_param("currency"))?;
    let currency = text.to_ascii_lowercase();
    if !CURRENCIES.contains(&currency.as_str()) {
        return Err(ApiError::param(
            "currency",
            "parameter_invalid_string",
            &format!(
                "Invalid currency: {text}. Stripe currently supports these currencies: {}",
                CURRENCIES.join(", ")
            ),
        ));
    }
    Ok(currency)
}

/// `amount_too_small` below Stripe's minimum charge for the currency.
pub(crate) fn minimum_amount(amount: i64, currency: &str) -> Result<(), ApiError> {
    let minimum = MINIMUM_AMOUNTS
        .iter()
        .find(|(code, _)| *code == currency)
        .map(|(_, minimum)| *minimum);
    match minimum {
        Some(minimum) if amount < minimum => Err(ApiError::param(
            "amount",
            "amount_too_small",
            &format!(
                "Amount must be at least {}.{:02} {currency}",
                minimum / 100,
                minimum % 100
            ),
        )),
        _ => Ok(()),
    }
}

/// `metadata[key]=value` entries; an empty value leaves the key out, as on Stripe.
pub(crate) fn metadata(params: &Params) -> Result<BTreeMap<String, String>, ApiError> {
    let mut metadata = BTreeMap::new();
    for (key, value) in params.bracketed("metadata") {
        let param = format!("metadata[{key}]");
        if key.is_empty()
            || key.contains(['[', ']'])
            || key.chars().count() > METADATA_KEY_CHARS_MAX
        {
            return Err(ApiError::param(
                &param,
                "parameter_invalid_string",
                &format!(
                    "Invalid metadata key: keys must be 1 to {METADATA_KEY_CHARS_MAX} characters without square brackets."
                ),
            ));
        }
        if value.chars().count() > METADATA_VALUE_CHARS_MAX {
            return Err(ApiError::param(
                &param,
                "parameter_invalid_string",
                &format!(
                    "Metadata values can have up to {METADATA_VALUE_CHARS_MAX} characters, but you passed in a value that is {} characters.",
                    value.chars().count()
                ),
            ));
        }
        if value.is_empty() {
            metadata.remove(key);
        } else {
            metadata.insert(key.to_string(), value.to_string());
        }
    }
    if metadata.len() > METADATA_KEYS_MAX {
        return Err(ApiError::param(
            "metadata",
            "parameter_invalid_string",
            &format!("Metadata can have up to {METADATA_KEYS_MAX} keys."),
        ));
    }
    Ok(metadata)
}

/// An optional email parameter, checked for the shape Stripe checks.
pub(crate) fn email(params: &Params, name: &str) -> Result<Option<String>, ApiError> {
    let Some(email) = params.get(name) else {
        return Ok(None);
    };
    if email.is_empty() {
        return Ok(None);
    }
    let valid = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !valid {
        return Err(ApiError::param(
            name,
            "email_invalid",
            &format!("Invalid email address: {email}"),
        ));
    }
    Ok(Some(email.to_string()))
}

/// An optional string that must be one of `allowed`.
pub(crate) fn one_of(
    params: &Params,
    name: &str,
    allowed: &[&str],
) -> Result<Option<String>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(value) if allowed.contains(&value) => Ok(Some(value.to_string())),
        Some(value) => Err(ApiError::param(
            name,
            "parameter_invalid_string",
            &format!(
                "Invalid {name}: must be one of {}; got {value:?}",
                allowed.join(", ")
            ),
        )),
    }
}

/// Refuses the first parameter the endpoint does not take.
pub(crate) fn known_params(
    params: &Params,
    allowed: &[&str],
    allowed_prefixes: &[&str],
) -> Result<(), ApiError> {
    match params.unknown(allowed, allowed_prefixes) {
        Some(key) => Err(ApiError::unknown_param(key)),
        None => Ok(()),
    }
}
