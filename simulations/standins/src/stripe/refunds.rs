//! `POST /v1/refunds`: refunds all or part of a succeeded charge, named by itself or by its
//! PaymentIntent, raising `charge.refunded` (with the charge's new `amount_refunded`) and
//! `refund.created`.

use serde_json::Value;

use super::error::ApiError;
use super::event::Event;
use super::form::Params;
use super::objects::{PaymentIntentStatus, Refund, new_id, unix_now};
use super::operations::{Caller, Store};
use super::validate;

const REFUND_PARAMS: &[&str] = &["amount", "charge", "metadata", "payment_intent", "reason"];
const REFUND_REASONS: &[&str] = &["duplicate", "fraudulent", "requested_by_customer"];

impl Store {
    /// `POST /v1/refunds`: refunds a charge, given itself or its PaymentIntent.
    pub(crate) fn create_refund(
        &mut self,
        caller: &Caller,
        params: &Params,
        events: &mut Vec<Event>,
    ) -> Result<Value, ApiError> {
        validate::known_params(params, REFUND_PARAMS, &["metadata["])?;
        let amount = validate::integer(params, "amount")?;
        let reason = validate::one_of(params, "reason", REFUND_REASONS)?;
        let metadata = validate::metadata(params)?;
        self.check_room()?;
        let charge_id = self.refundable_charge(caller, params)?;
        let Some(charge) = self.charges.get_mut(&charge_id) else {
            return Err(ApiError::no_such_param("charge", "charge", &charge_id));
        };
        let unrefunded = charge.amount - charge.amount_refunded;
        let amount = amount.unwrap_or(unrefunded);
        if amount < 1 {
            return Err(ApiError::param(
                "amount",
                "parameter_invalid_integer",
                "This value must be greater than or equal to 1.",
            ));
        }
        if amount > unrefunded {
            return Err(ApiError::param(
                "amount",
                "amount_too_large",
                &format!(
                    "Refund amount ({amount}) is greater than unrefunded amount on charge ({unrefunded})"
                ),
            ));
        }
        charge.amount_refunded += amount;
        let refund = Refund {
            id: new_id("re"),
            amount,
            charge: charge.id.clone(),
            payment_intent: charge.payment_intent.clone(),
            currency: charge.currency.clone(),
            reason,
            metadata,
            livemode: charge.livemode,
            created: unix_now(),
        };
        let refund_json = refund.to_json();
        events.push(caller.event("charge.refunded", charge.to_json()));
        events.push(caller.event("refund.created", refund_json.clone()));
        self.refunds.insert(&refund.id.clone(), refund);
        Ok(refund_json)
    }

    /// The charge a refund request names, checked to have money left to refund.
    fn refundable_charge(&self, caller: &Caller, params: &Params) -> Result<String, ApiError> {
        let by_intent = match params.get("payment_intent") {
            Some(id) => {
                let payment_intent = match self.payment_intent(caller, id) {
                    Ok(pi) => pi,
                    Err(_) => {
                        return Err(ApiError::no_such_param(
                            "payment_intent",
                            "payment_intent",
                            id,
                        ));
                    }
                };
                if payment_intent.status != PaymentIntentStatus::Succeeded {
                    return Err(ApiError::unexpected_state(
                        "charge_not_refundable",
                        &format!(
                            "This PaymentIntent ({id}) does not have a successful charge to refund."
                        ),
                        None,
                    ));
                }
                payment_intent.latest_charge.clone()
            }
            None => None,
        };
        let charge_id = match (params.get("charge"), by_intent) {
            (Some(charge), Some(latest)) if charge != latest => {
                return Err(ApiError::invalid_request(&format!(
                    "The charge {charge} does not belong to the PaymentIntent you gave."
                )));
            }
            (_, Some(latest)) => latest,
            (Some(charge), None) => charge.to_string(),
            (None, None) => {
                return Err(ApiError::invalid_request(
                    "One of the following params should be provided for this request: payment_intent or charge.",
                ));
            }
        };
        let charge = match self.charges.get(&charge_id) {
            Some(charge) if charge.livemode == caller.livemode => charge,
            _ => return Err(ApiError::no_such_param("charge", "charge", &charge_id)),
        };
        if !charge.paid() {
            return Err(ApiError::unexpected_state(
                "charge_not_refundable",
                &format!("Charge {charge_id} has not succeeded, so it cannot be refunded."),
                None,
            ));
        }
        if charge.refunded() {
            return Err(ApiError::unexpected_state(
                "charge_already_refunded",
                &format!("Charge {charge_id} has already been refunded."),
                None,
            ));
        }
        Ok(charge_id)
    }
}
