//! The partner API's signatures (seed 003), computed independently from the seed's recipe.

use ampflow_types::Clock;
use serde_json::{Value, json};

use super::TestApp;

/// An HTTP date `offset_secs` from the app's clock.
pub fn http_date(app: &TestApp, offset_secs: i64) -> String {
    chrono::DateTime::from_timestamp_millis(app.clock.now_ms() + offset_secs * 1000)
        .unwrap()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// The seed's recipe, from the stand-ins (independent of the server's check).
#[allow(unused_imports)] // Not every test binary signs partner requests.
pub use ampflow_standins::partner::sign;

/// A valid partner donation body, the seed's example.
pub fn donation_body() -> Value {
    json!({
        "amount": 42.80,
        "sponsorMatchingPercentage": 20,
        "nonProfitCampaignGuid": "8aec529c-dc93-4e5a-a02d-2965f16d327e",
        "publisherCampaignGuid": "59e680df-df0a-42c3-969a-800d35ca5684",
        "sponsorCampaignGuid": "ca712410-8e11-46a5-872c-de8ba7744e42",
        "publisherTransactionId": "42",
        "publisherAccountGuid": "ca712410-8e11-46a5-872c-de8ba7744e42",
        "donor": {
            "publisherDonorId": "42",
            "firstName": "Frodo",
            "lastName": "Baggins",
            "sharePersonalInfo": false,
            "billingAddress1": "123 Shire Blvd",
            "billingAddress2": "Lower Hobbit Hole",
            "billingCity": "Denver",
            "billingState": "CO",
            "billingZip": "80125",
            "billingCountry": "US",
            "email": "frodo@example.org",
            "cellPhoneNumber": "3035511234"
        }
    })
}
