//! The partner API (seed 003): signed requests (signatures computed here, independently, from
//! the seed's recipe), partner donations, and ad serving, on both databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ampflow_actors::organisations::NewOrganisation;
use ampflow_storage::testdb::Backend;
use ampflow_storage::{DonationSource, DonationStatus};
use common::TestApp;
use common::partner::{donation_body, http_date, sign};
use serde_json::{Value, json};

on_both_databases!(
    a_valid_signature_records_reads_and_cancels_a_donation,
    bad_signatures_and_dates_answer_401,
    an_address_not_on_the_list_and_a_revoked_key_answer_403,
    forwarded_addresses_count_only_when_trusted,
    malformed_bodies_answer_400_and_put_answers_405,
    ads_are_served_as_json_or_jsonp_with_defaults_for_unknown_campaigns,
    a_retried_post_answers_the_donation_it_recorded,
);

struct Key {
    id: String,
    secret: String,
}

/// An organisation and a key acting for it, allowed from `allow` (empty = anywhere).
async fn setup(app: &TestApp, allow: &[&str]) -> (String, Key) {
    let org = app
        .app()
        .actors()
        .organisations()
        .create(&NewOrganisation {
            name: "Hobbits for Humanity".into(),
            country: "US".into(),
            status: "verified".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let key = new_key(app, &org.id, allow).await;
    (org.id, key)
}

async fn new_key(app: &TestApp, org: &str, allow: &[&str]) -> Key {
    let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
    let key = app
        .app()
        .actors()
        .partners()
        .create_key(org, &allow, Some("Publisher Name"))
        .await
        .unwrap();
    Key {
        id: key.id,
        secret: key.secret,
    }
}

/// How to sign a request; each field can be spoiled on purpose.
#[derive(Clone)]
struct Signing<'a> {
    key_id: &'a str,
    secret: &'a str,
    /// The timestamp signed.
    signed_date: String,
    /// The `Date` header sent (`None`: no header).
    date_header: Option<String>,
    /// The resource signed, when it differs from the path requested.
    signed_uri: Option<&'a str>,
}

impl<'a> Signing<'a> {
    fn new(app: &TestApp, key: &'a Key) -> Self {
        Self::dated(app, key, 0)
    }

    /// Signed and sent with a `Date` `offset_secs` from the app's clock.
    fn dated(app: &TestApp, key: &'a Key, offset_secs: i64) -> Self {
        let date = http_date(app, offset_secs);
        Self {
            key_id: &key.id,
            secret: &key.secret,
            signed_date: date.clone(),
            date_header: Some(date),
            signed_uri: None,
        }
    }
}

async fn signed(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<&Value>,
    signing: &Signing<'_>,
) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let content_type = if body.is_empty() {
        ""
    } else {
        "application/json"
    };
    let signature = sign(
        signing.secret,
        method,
        &body,
        content_type,
        &signing.signed_date,
        signing.signed_uri.unwrap_or(path),
    );
    let mut request = app
        .client
        .request(method.parse().unwrap(), app.url(path))
        .header("Accept", "application/json")
        .header(
            "Authorization",
            format!("IGF {}:{signature}", signing.key_id),
        );
    if let Some(date) = &signing.date_header {
        request = request.header("Date", date);
    }
    if !body.is_empty() {
        request = request.header("Content-Type", content_type).body(body);
    }
    app.send(request).await
}

fn assert_partner_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert!(
        body["errors"][0].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["error"]["code"], code, "{body}");
}

const DONATION: &str = "/igive-api/v1_0/donation";

async fn post(app: &TestApp, body: &Value, signing: Signing<'_>) -> (u16, Value) {
    signed(app, "POST", DONATION, Some(body), &signing).await
}

async fn a_valid_signature_records_reads_and_cancels_a_donation(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (org, key) = setup(&app, &[]).await;
    let signing = Signing::new(&app, &key);
    let (status, created) = signed(&app, "POST", DONATION, Some(&donation_body()), &signing).await;
    assert_eq!(status, 201, "{created}");
    let guid = created["guid"].as_str().unwrap().to_string();
    assert_eq!(guid.len(), 36);

    // The donation is the organisation's, recorded without a PaymentIntent.
    let id = format!("don_{}", guid.replace('-', ""));
    let stored = app
        .app()
        .storage()
        .donations()
        .donation(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.organisation_id, org);
    assert_eq!(stored.source, DonationSource::Partner);
    assert_eq!(stored.status, DonationStatus::Pending);
    assert_eq!((stored.amount, stored.currency.as_str()), (4280, "USD"));
    assert_eq!(stored.stripe_payment_intent_id, None);

    let path = format!("{DONATION}/{guid}");
    let (status, donation) = signed(&app, "GET", &path, None, &signing).await;
    assert_eq!(status, 200, "{donation}");
    assert_eq!(donation["guid"], guid);
    assert_eq!(donation["amount"], 42.8);
    assert_eq!(donation["sponsorMatchingPercentage"], 20);
    assert_eq!(
        donation["nonProfitCampaignGuid"],
        "8aec529c-dc93-4e5a-a02d-2965f16d327e"
    );
    assert_eq!(donation["publisherTransactionId"], "42");
    assert_eq!(donation["donor"]["firstName"], "Frodo");
    assert_eq!(donation["donor"]["billingCountry"], "US");
    assert_eq!(donation["status"], "PENDING_BATCH");
    assert_eq!(donation["nonProfitName"], "Hobbits for Humanity");
    assert_eq!(donation["publisherName"], "Publisher Name");
    assert!(donation["dateCreated"].as_str().unwrap().ends_with('Z'));

    // The seed's StringToSign examples spell the resource /igive-api/v1/…: accepted too.
    let v1 = format!("/igive-api/v1/donation/{guid}");
    let aliased = Signing {
        signed_uri: Some(&v1),
        ..Signing::new(&app, &key)
    };
    let (status, _) = signed(&app, "GET", &path, None, &aliased).await;
    assert_eq!(status, 200);

    // Another organisation's key does not see it.
    let (other_org, _) = setup(&app, &[]).await;
    let other = new_key(&app, &other_org, &[]).await;
    let (status, body) = signed(&app, "GET", &path, None, &Signing::new(&app, &other)).await;
    assert_partner_error(status, &body, 404, "not_found");
    let (status, body) = signed(&app, "DELETE", &path, None, &Signing::new(&app, &other)).await;
    assert_partner_error(status, &body, 404, "not_found");

    // DELETE cancels through the donation's state machine and answers 201 with the guid.
    let (status, body) = signed(&app, "DELETE", &path, None, &signing).await;
    assert_eq!((status, &body), (201, &json!(guid)));
    let (_, donation) = signed(&app, "GET", &path, None, &signing).await;
    assert_eq!(donation["status"], "CANCELLED");
    let (status, _) = signed(&app, "DELETE", &path, None, &signing).await;
    assert_eq!(status, 201);

    // A settled donation cannot be cancelled: the actor refuses the move.
    let mut second = donation_body();
    second["publisherTransactionId"] = json!("second");
    let (_, created) = signed(&app, "POST", DONATION, Some(&second), &signing).await;
    let guid = created["guid"].as_str().unwrap().to_string();
    let id = ampflow_types::DonationId::parse(&format!("don_{}", guid.replace('-', ""))).unwrap();
    app.app()
        .actors()
        .donations()
        .transition(&id, DonationStatus::Succeeded, None)
        .await
        .unwrap();
    let path = format!("{DONATION}/{guid}");
    let (status, body) = signed(&app, "DELETE", &path, None, &signing).await;
    assert_partner_error(status, &body, 409, "conflict");
    let (_, donation) = signed(&app, "GET", &path, None, &signing).await;
    assert_eq!(donation["status"], "PUBLISHER_BATCH_COMPLETED");

    let (status, body) = signed(
        &app,
        "GET",
        &format!("{DONATION}/not-a-guid"),
        None,
        &signing,
    )
    .await;
    assert_partner_error(status, &body, 404, "not_found");
    app.stop().await;
}

async fn bad_signatures_and_dates_answer_401(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (_, key) = setup(&app, &[]).await;
    let body = donation_body();

    // Within the default skew (900 s) either way: accepted.
    for offset in [-800, 800] {
        let (status, answer) = post(&app, &body, Signing::dated(&app, &key, offset)).await;
        assert_eq!(status, 201, "{offset}: {answer}");
    }
    // A skewed date, signed correctly.
    for offset in [-1000, 1000, -86_400] {
        let (status, answer) = post(&app, &body, Signing::dated(&app, &key, offset)).await;
        assert_partner_error(status, &answer, 401, "authentication_error");
    }
    // A Date header that is not the signed timestamp.
    let (status, answer) = post(
        &app,
        &body,
        Signing {
            date_header: Some(http_date(&app, 1)),
            ..Signing::new(&app, &key)
        },
    )
    .await;
    assert_partner_error(status, &answer, 401, "authentication_error");
    // No Date header.
    let (status, answer) = post(
        &app,
        &body,
        Signing {
            date_header: None,
            ..Signing::new(&app, &key)
        },
    )
    .await;
    assert_partner_error(status, &answer, 401, "authentication_error");
    // A wrong secret.
    let wrong = Key {
        id: key.id.clone(),
        secret: "d3Jvbmcgc2VjcmV0IGJ1dCB3ZWxsIGZvcm1lZA==".into(),
    };
    let (status, answer) = post(&app, &body, Signing::new(&app, &wrong)).await;
    assert_partner_error(status, &answer, 401, "authentication_error");
    // An unknown key.
    let unknown = Key {
        id: "IGFAAAAAAAAAAAAAAAAA".into(),
        secret: key.secret.clone(),
    };
    let (status, answer) = post(&app, &body, Signing::new(&app, &unknown)).await;
    assert_partner_error(status, &answer, 401, "authentication_error");
    // A signature over another resource, or a changed body.
    let (status, answer) = post(
        &app,
        &body,
        Signing {
            signed_uri: Some("/igive-api/v1_0/donation/other"),
            ..Signing::new(&app, &key)
        },
    )
    .await;
    assert_partner_error(status, &answer, 401, "authentication_error");
    let date = http_date(&app, 0);
    let signature = sign(
        &key.secret,
        "POST",
        &body.to_string(),
        "application/json",
        &date,
        DONATION,
    );
    let mut tampered = body.clone();
    tampered["amount"] = json!(4280.0);
    let (status, answer) = app
        .send(
            app.client
                .post(app.url(DONATION))
                .header("Date", &date)
                .header("Content-Type", "application/json")
                .header("Authorization", format!("IGF {}:{signature}", key.id))
                .body(tampered.to_string()),
        )
        .await;
    assert_partner_error(status, &answer, 401, "authentication_error");
    // No Authorization, another scheme, garbage.
    for authorization in [
        None,
        Some("Bearer abc".to_string()),
        Some(format!("IGF {}", key.id)),
    ] {
        let mut request = app
            .client
            .get(app.url(&format!("{DONATION}/{}", uuid::Uuid::new_v4())));
        request = request.header("Date", http_date(&app, 0));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let (status, answer) = app.send(request).await;
        assert_partner_error(status, &answer, 401, "authentication_error");
    }
    app.stop().await;
}

async fn an_address_not_on_the_list_and_a_revoked_key_answer_403(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (org, elsewhere) = setup(&app, &["10.0.0.0/8", "2001:db8::/32"]).await;
    let (status, answer) = signed(
        &app,
        "POST",
        DONATION,
        Some(&donation_body()),
        &Signing::new(&app, &elsewhere),
    )
    .await;
    assert_partner_error(status, &answer, 403, "authorization_error");

    let loopback = new_key(&app, &org, &["10.0.0.0/8", "127.0.0.1"]).await;
    let (status, answer) = signed(
        &app,
        "POST",
        DONATION,
        Some(&donation_body()),
        &Signing::new(&app, &loopback),
    )
    .await;
    assert_eq!(status, 201, "{answer}");

    app.app()
        .actors()
        .partners()
        .revoke_key(&loopback.id)
        .await
        .unwrap();
    let (status, answer) = signed(
        &app,
        "POST",
        DONATION,
        Some(&donation_body()),
        &Signing::new(&app, &loopback),
    )
    .await;
    assert_partner_error(status, &answer, 403, "authorization_error");
    app.stop().await;
}

/// A signed POST sent with `X-Forwarded-For: forwarded`.
async fn post_forwarded(app: &TestApp, key: &Key, forwarded: &str) -> (u16, Value) {
    let body = donation_body().to_string();
    let date = http_date(app, 0);
    let signature = sign(
        &key.secret,
        "POST",
        &body,
        "application/json",
        &date,
        DONATION,
    );
    app.send(
        app.client
            .post(app.url(DONATION))
            .header("Date", &date)
            .header("Content-Type", "application/json")
            .header("Authorization", format!("IGF {}:{signature}", key.id))
            .header("X-Forwarded-For", forwarded)
            .body(body),
    )
    .await
}

async fn forwarded_addresses_count_only_when_trusted(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |s| {
        s.http.trusted_proxies = vec!["127.0.0.1".into()]
    })
    .await
    else {
        return;
    };
    let (_, key) = setup(&app, &["203.0.113.0/24"]).await;
    let (status, answer) = post_forwarded(&app, &key, "198.51.100.1, 203.0.113.7").await;
    assert_eq!(status, 201, "{answer}");
    // The last entry is the one the trusted proxy appended.
    let (status, answer) = post_forwarded(&app, &key, "203.0.113.7, 198.51.100.1").await;
    assert_partner_error(status, &answer, 403, "authorization_error");
    app.stop().await;

    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (_, key) = setup(&app, &["203.0.113.0/24"]).await;
    let (status, answer) = post_forwarded(&app, &key, "203.0.113.7").await;
    assert_partner_error(status, &answer, 403, "authorization_error");
    app.stop().await;
}

async fn malformed_bodies_answer_400_and_put_answers_405(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (_, key) = setup(&app, &[]).await;
    let mut cases = Vec::new();
    for (field, value) in [
        ("amount", json!(0)),
        ("amount", json!(1.234)),
        ("amount", json!("42.80")),
        ("sponsorMatchingPercentage", json!(120)),
        ("nonProfitCampaignGuid", json!("nope")),
        ("publisherAccountGuid", json!(null)),
    ] {
        let mut body = donation_body();
        body[field] = value;
        cases.push((field.to_string(), body));
    }
    let mut body = donation_body();
    body["donor"]["email"] = json!("not an address");
    cases.push(("donor.email".into(), body));
    let mut body = donation_body();
    body["donor"].as_object_mut().unwrap().remove("lastName");
    cases.push(("donor.lastName".into(), body));
    for (param, body) in cases {
        let (status, answer) = signed(
            &app,
            "POST",
            DONATION,
            Some(&body),
            &Signing::new(&app, &key),
        )
        .await;
        assert_partner_error(status, &answer, 400, "invalid_request");
        assert_eq!(answer["error"]["param"], param.as_str(), "{answer}");
    }

    for path in [
        DONATION.to_string(),
        format!("{DONATION}/{}", uuid::Uuid::new_v4()),
    ] {
        let response = app
            .client
            .put(app.url(&path))
            .json(&donation_body())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
        let body: Value = response.json().await.unwrap();
        assert_partner_error(405, &body, 405, "method_not_allowed");
    }
    app.stop().await;
}

async fn ads_are_served_as_json_or_jsonp_with_defaults_for_unknown_campaigns(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let campaign = "59e680df-df0a-42c3-969a-800d35ca5684";
    let ad = |name: &str| {
        json!({
            "nonProfitdescription": "This is the description",
            "adImage": "https://cdn.example.org/large.jpg",
            "thumbImage": "https://cdn.example.org/small.jpg",
            "nonProfitwebsiteUrl": "http://www.redcross.com",
            "nonProfitname": name,
            "nonProfitguid": "fc1d6a1b-fc7f-401a-8488-c76080caac4c",
            "reliefTypes": ["People Disaster Relief"],
            "city": "Denver",
            "state": "Colorado",
            "ein": "1246578"
        })
        .to_string()
    };
    let default = app
        .app()
        .actors()
        .partners()
        .add_ad(None, &ad("Default Relief"))
        .await
        .unwrap();
    let own = app
        .app()
        .actors()
        .partners()
        .add_ad(Some(campaign), &ad("American Red Cross"))
        .await
        .unwrap();

    let (status, ads) = app
        .send(
            app.client
                .get(app.url(&format!("/nonprofit-json/{campaign}"))),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ads.as_array().unwrap().len(), 1, "{ads}");
    assert_eq!(ads[0]["guid"], own.id);
    assert_eq!(ads[0]["nonProfitname"], "American Red Cross");
    assert_eq!(ads[0]["reliefTypes"][0], "People Disaster Relief");

    for unknown in [
        uuid::Uuid::new_v4().to_string(),
        "qqrda85324-a379-40af".to_string(),
    ] {
        let (status, ads) = app
            .send(
                app.client
                    .get(app.url(&format!("/nonprofit-json/{unknown}"))),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(ads.as_array().unwrap().len(), 1, "{ads}");
        assert_eq!(ads[0]["guid"], default.id);
    }

    let response = app
        .client
        .get(app.url(&format!(
            "/nonprofit-json/{campaign}?callback=jQuery1_2.done"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/javascript");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let text = response.text().await.unwrap();
    let inner = text
        .strip_prefix("/**/jQuery1_2.done(")
        .and_then(|t| t.strip_suffix(");"))
        .unwrap_or_else(|| panic!("not JSONP: {text}"));
    let ads: Value = serde_json::from_str(inner).unwrap();
    assert_eq!(ads[0]["guid"], own.id);

    for bad in ["alert(1)", "a;b", "1x", "<script>", &"a".repeat(65)] {
        let response = app
            .client
            .get(app.url(&format!(
                "/nonprofit-json/{campaign}?callback={}",
                url::form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>()
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let body: Value = response.json().await.unwrap();
        assert_partner_error(400, &body, 400, "invalid_request");
    }
    app.stop().await;
}

/// A partner retrying a POST (same key, same `publisherTransactionId`), one after the other
/// or both at once, gets the donation the first one recorded; the same id for another amount
/// is refused; another key's same id is its own donation.
async fn a_retried_post_answers_the_donation_it_recorded(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let (org, key) = setup(&app, &[]).await;
    let signing = Signing::new(&app, &key);
    let body = donation_body();
    let (status, first) = post(&app, &body, signing.clone()).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = post(&app, &body, signing.clone()).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["guid"], first["guid"]);

    // Two retries at once of a new transaction: one donation.
    let mut concurrent = donation_body();
    concurrent["publisherTransactionId"] = json!("43");
    let (a, b) = tokio::join!(
        post(&app, &concurrent, signing.clone()),
        post(&app, &concurrent, signing.clone())
    );
    assert_eq!((a.0, b.0), (201, 201), "{a:?} {b:?}");
    assert_eq!(a.1["guid"], b.1["guid"]);
    assert_ne!(a.1["guid"], first["guid"]);

    // The same transaction id for another amount: refused, nothing recorded.
    let mut changed = donation_body();
    changed["amount"] = json!(10.0);
    let (status, refused) = post(&app, &changed, signing.clone()).await;
    assert_partner_error(status, &refused, 409, "idempotency_conflict");

    // Another key (another publisher) may use the same id for its own donation.
    let other = new_key(&app, &org, &[]).await;
    let (status, theirs) = post(&app, &body, Signing::new(&app, &other)).await;
    assert_eq!(status, 201, "{theirs}");
    assert_ne!(theirs["guid"], first["guid"]);

    let storage = app.app().storage();
    for (key_id, txid) in [(&key.id, "42"), (&key.id, "43"), (&other.id, "42")] {
        assert!(
            storage
                .partners()
                .partner_donation_by_transaction(key_id, txid)
                .await
                .unwrap()
                .is_some()
        );
    }
}
