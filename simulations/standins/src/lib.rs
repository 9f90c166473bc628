//! Stand-ins for the outside services a test machine cannot reach. Each one serves the real
//! service's wire format on a loopback port (port 0 picks a free one), so the product talks to
//! it exactly as it would to the real thing; the product never depends on this crate.

pub mod partner;
pub mod recaptcha;
pub mod stripe;
pub mod veriff;
