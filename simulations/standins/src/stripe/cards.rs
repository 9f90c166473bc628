//! Stripe's test cards: the `pm_card_*` tokens and the raw test numbers, and what each one does
//! on confirmation. A Luhn-valid number that is not a test card is declined in test mode as
//! Stripe declines a real card there (`test_mode_live_card`); a test card in live mode is
//! declined with `live_mode_test_card`.

use serde_json::{Value, json};

use super::error::ApiError;
use super::form::Params;

/// The test cards the stand-in knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestCard {
    /// 4242 4242 4242 4242, `pm_card_visa`: succeeds.
    Visa,
    /// 5555 5555 5555 4444, `pm_card_mastercard`: succeeds.
    Mastercard,
    /// 4000 0000 0000 0002, `pm_card_chargeDeclined`: `card_declined` / `generic_decline`.
    Declined,
    /// 4000 0000 0000 9995, `pm_card_chargeDeclinedInsufficientFunds`:
    /// `card_declined` / `insufficient_funds`.
    InsufficientFunds,
}

const TEST_CARDS: [TestCard; 4] = [
    TestCard::Visa,
    TestCard::Mastercard,
    TestCard::Declined,
    TestCard::InsufficientFunds,
];

impl TestCard {
    pub fn number(self) -> &'static str {
        match self {
            Self::Visa => "4242424242424242",
            Self::Mastercard => "5555555555554444",
            Self::Declined => "4000000000000002",
            Self::InsufficientFunds => "4000000000009995",
        }
    }

    /// The PaymentMethod token Stripe's docs give for this card.
    pub fn token(self) -> &'static str {
        match self {
            Self::Visa => "pm_card_visa",
            Self::Mastercard => "pm_card_mastercard",
            Self::Declined => "pm_card_chargeDeclined",
            Self::InsufficientFunds => "pm_card_chargeDeclinedInsufficientFunds",
        }
    }

    /// The `decline_code` confirming with this card gets, if it is declined.
    pub fn decline_code(self) -> Option<&'static str> {
        match self {
            Self::Visa | Self::Mastercard => None,
            Self::Declined => Some("generic_decline"),
            Self::InsufficientFunds => Some("insufficient_funds"),
        }
    }

    fn brand(self) -> &'static str {
        match self {
            Self::Mastercard => "mastercard",
            Self::Visa | Self::Declined | Self::InsufficientFunds => "visa",
        }
    }

    /// The card a confirmation in `livemode` uses, with its outcome.
    pub(crate) fn card(self, livemode: bool) -> Card {
        let decline_code = if livemode {
            Some("live_mode_test_card")
        } else {
            self.decline_code()
        };
        Card {
            brand: self.brand().into(),
            last4: self.number()[12..].into(),
            decline_code: decline_code.map(str::to_string),
        }
    }
}

/// A card as a PaymentMethod holds it, with what confirming with it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    pub brand: String,
    pub last4: String,
    /// `None`: the charge succeeds.
    pub decline_code: Option<String>,
}

impl Card {
    pub(crate) fn details_json(&self) -> Value {
        json!({
            "brand": self.brand, "country": "US", "exp_month": 12, "exp_year": 2034,
            "fingerprint": format!("fp{}{}", self.brand, self.last4), "funding": "credit",
            "last4": self.last4, "network": self.brand,
        })
    }

    pub(crate) fn payment_method_json(&self, id: &str, livemode: bool, created: i64) -> Value {
        json!({
            "id": id, "object": "payment_method", "billing_details": {
                "address": null, "email": null, "name": null, "phone": null,
            },
            "card": self.details_json(), "created": created, "customer": null,
            "livemode": livemode, "metadata": {}, "type": "card",
        })
    }
}

/// Stripe's customer-facing message for a decline code.
pub(crate) fn decline_message(decline_code: &str) -> &'static str {
    match decline_code {
        "insufficient_funds" => "Your card has insufficient funds.",
        "test_mode_live_card" => {
            "Your card was declined. Your request was in test mode, but used a non test (live) card. For a list of valid test cards, visit: https://stripe.com/docs/testing."
        }
        "live_mode_test_card" => {
            "Your card was declined. Your request was in live mode, but used a known test card."
        }
        _ => "Your card was declined.",
    }
}

/// The card a `pm_card_*` token stands for.
pub(crate) fn card_for_token(token: &str, livemode: bool) -> Option<Card> {
    TEST_CARDS
        .iter()
        .find(|card| card.token() == token)
        .map(|card| card.card(livemode))
}

const CARD_NUMBER_PARAM: &str = "payment_method_data[card][number]";

/// The card in `payment_method_data[…]`, as Stripe reads it when it creates the PaymentMethod.
pub(crate) fn card_from_data(params: &Params, livemode: bool) -> Result<Card, ApiError> {
    match params.get("payment_method_data[type]") {
        Some("card") => {}
        Some(other) => {
            return Err(ApiError::param(
                "payment_method_data[type]",
                "parameter_invalid_string",
                &format!("The stand-in only takes card payment methods, not {other:?}."),
            ));
        }
        None => return Err(ApiError::missing_param("payment_method_data[type]")),
    }
    let number: String = params
        .get(CARD_NUMBER_PARAM)
        .ok_or_else(|| ApiError::missing_param(CARD_NUMBER_PARAM))?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if !luhn_valid(&number) {
        return Err(ApiError::card(
            "incorrect_number",
            "Your card number is incorrect.",
            vec![("param", json!(CARD_NUMBER_PARAM))],
        ));
    }
    if let Some(card) = TEST_CARDS.iter().find(|card| card.number() == number) {
        return Ok(card.card(livemode));
    }
    let brand = if number.starts_with('5') {
        "mastercard"
    } else {
        "visa"
    };
    Ok(Card {
        brand: brand.into(),
        last4: number[number.len() - 4..].into(),
        decline_code: (!livemode).then(|| "test_mode_live_card".into()),
    })
}

fn luhn_valid(number: &str) -> bool {
    if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_card_numbers_pass_luhn() {
        for card in TEST_CARDS {
            assert!(luhn_valid(card.number()), "{card:?}");
        }
        assert!(!luhn_valid("4242424242424241"));
        assert!(!luhn_valid("42424242"));
    }
}
