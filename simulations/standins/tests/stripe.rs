//! The Stripe stand-in's API over real HTTP on loopback: form encoding, authentication,
//! validation, idempotency, retrieval, confirmation with test cards, refunds and faults.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use ampflow_standins::stripe::{PaymentIntentStatus, StripeStandIn, TestCard};
use support::{Client, SECRET_KEY, STRIPE_VERSION, WEBHOOK_SECRET};

/// A form body as (field, value) pairs.
type Form<'a> = &'a [(&'a str, &'a str)];

async fn stand_in() -> (StripeStandIn, Client) {
    let stripe = StripeStandIn::start(SECRET_KEY, WEBHOOK_SECRET)
        .await
        .expect("start the stand-in");
    let client = Client::new(&stripe.base_url(), SECRET_KEY);
    (stripe, client)
}

#[tokio::test]
async fn creates_a_payment_intent_from_a_form_body() {
    let (stripe, client) = stand_in().await;
    let form = [
        ("amount", "5000"),
        ("currency", "EUR"),
        ("metadata[donation_id]", "don_abc123"),
        ("metadata[donor_name]", "Jane Donor"),
        ("description", "Donation to org_xyz"),
        ("receipt_email", "donor@example.com"),
        ("automatic_payment_methods[enabled]", "true"),
    ];
    let answer = client.post("/v1/payment_intents", &form, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let pi = &answer.body;
    let id = pi["id"].as_str().unwrap();
    assert!(id.starts_with("pi_"), "{id}");
    assert_eq!(pi["object"], "payment_intent");
    assert_eq!(pi["amount"], 5000);
    assert_eq!(pi["currency"], "eur");
    assert_eq!(pi["status"], "requires_payment_method");
    let secret = pi["client_secret"].as_str().unwrap();
    assert!(secret.starts_with(&format!("{id}_secret_")), "{secret}");
    assert_eq!(pi["metadata"]["donation_id"], "don_abc123");
    assert_eq!(pi["metadata"]["donor_name"], "Jane Donor");
    assert_eq!(pi["description"], "Donation to org_xyz");
    assert_eq!(pi["receipt_email"], "donor@example.com");
    assert_eq!(pi["automatic_payment_methods"]["enabled"], true);
    assert_eq!(pi["livemode"], false);
    assert!(pi["created"].as_i64().unwrap() > 1_700_000_000);
    assert!(pi["latest_charge"].is_null() && pi["last_payment_error"].is_null());
    assert!(answer.header("request-id").unwrap().starts_with("req_"));
    assert_eq!(answer.header("stripe-version"), Some(STRIPE_VERSION));

    let fetched = client.get(&format!("/v1/payment_intents/{id}")).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(&fetched.body, pi);

    let requests = stripe.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].path, "/v1/payment_intents");
    let sent_metadata = (
        "metadata[donation_id]".to_string(),
        "don_abc123".to_string(),
    );
    assert!(requests[0].params.contains(&sent_metadata));
    assert_eq!(
        stripe.stripe_versions(),
        vec![Some(STRIPE_VERSION.to_string()); 2]
    );
    let stored = stripe.payment_intent(id).unwrap();
    assert_eq!(stored.status, PaymentIntentStatus::RequiresPaymentMethod);
}

#[tokio::test]
async fn refuses_missing_and_wrong_api_keys() {
    let (stripe, client) = stand_in().await;
    let form = [("amount", "5000"), ("currency", "eur")];
    let url = format!("{}/v1/payment_intents", stripe.base_url());
    let missing = support::answer(client.http.post(&url).form(&form).send().await.unwrap()).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.body["error"]["type"], "invalid_request_error");
    let message = missing.body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("You did not provide an API key."),
        "{message}"
    );

    let wrong = Client::new(&stripe.base_url(), "sk_test_wrongkey00001234");
    let answer = wrong.post("/v1/payment_intents", &form, None).await;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.body["error"]["message"],
        "Invalid API Key provided: sk_test_************1234"
    );
    assert!(stripe.payment_intents().is_empty());
    assert!(stripe.requests().iter().all(|r| !r.authorized));
}

#[tokio::test]
async fn validates_parameters_as_stripe_does() {
    let (stripe, client) = stand_in().await;
    let cases: [(Form, &str, &str); 7] = [
        (&[("currency", "eur")], "amount", "parameter_missing"),
        (
            &[("amount", "12.5"), ("currency", "eur")],
            "amount",
            "parameter_invalid_integer",
        ),
        (
            &[("amount", "0"), ("currency", "eur")],
            "amount",
            "parameter_invalid_integer",
        ),
        (
            &[("amount", "10"), ("currency", "eur")],
            "amount",
            "amount_too_small",
        ),
        (&[("amount", "5000")], "currency", "parameter_missing"),
        (
            &[("amount", "5000"), ("currency", "xyz")],
            "currency",
            "parameter_invalid_string",
        ),
        (
            &[("amount", "5000"), ("currency", "eur"), ("colour", "red")],
            "colour",
            "parameter_unknown",
        ),
    ];
    for (form, param, code) in cases {
        let answer = client.post("/v1/payment_intents", form, None).await;
        assert_eq!(answer.status, 400, "{form:?}: {}", answer.body);
        let error = &answer.body["error"];
        assert_eq!(error["type"], "invalid_request_error", "{form:?}");
        assert_eq!(error["param"], param, "{form:?}");
        assert_eq!(error["code"], code, "{form:?}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let json = client
        .http
        .post(format!("{}/v1/payment_intents", stripe.base_url()))
        .bearer_auth(SECRET_KEY)
        .json(&serde_json::json!({"amount": 5000, "currency": "eur"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 400, "a JSON body is not Stripe's encoding");
    assert!(stripe.payment_intents().is_empty());
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer_and_refuses_other_parameters() {
    let (stripe, client) = stand_in().await;
    let form = [
        ("amount", "5000"),
        ("currency", "eur"),
        ("metadata[donation_id]", "don_1"),
    ];
    let first = client
        .post("/v1/payment_intents", &form, Some("don_1"))
        .await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("idempotent-replayed"), None);
    // The same fields in another order are the same request.
    let reordered = [form[2], form[0], form[1]];
    let replay = client
        .post("/v1/payment_intents", &reordered, Some("don_1"))
        .await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, first.body);
    assert_eq!(stripe.payment_intents().len(), 1);

    let other = [
        ("amount", "6000"),
        ("currency", "eur"),
        ("metadata[donation_id]", "don_1"),
    ];
    let mismatch = client
        .post("/v1/payment_intents", &other, Some("don_1"))
        .await;
    assert_eq!(mismatch.status, 400);
    assert_eq!(mismatch.body["error"]["type"], "idempotency_error");
    assert_eq!(stripe.payment_intents().len(), 1);

    // A refused parameter is not saved: the key stays free for a corrected request.
    let bad = client
        .post("/v1/payment_intents", &[("amount", "5000")], Some("don_2"))
        .await;
    assert_eq!(bad.status, 400);
    let good = client
        .post("/v1/payment_intents", &form, Some("don_2"))
        .await;
    assert_eq!(good.status, 200);
    assert_eq!(good.header("idempotent-replayed"), None);
    assert_ne!(good.body["id"], first.body["id"]);

    // Keys belong to one API key.
    let second_key = "sk_test_51SecondAccountKey";
    stripe.add_api_key(second_key);
    let other_client = Client::new(&stripe.base_url(), second_key);
    let separate = other_client
        .post("/v1/payment_intents", &form, Some("don_1"))
        .await;
    assert_eq!(separate.status, 200);
    assert_eq!(separate.header("idempotent-replayed"), None);
    assert_ne!(separate.body["id"], first.body["id"]);
    assert_eq!(
        stripe.idempotency_keys(),
        ["don_1", "don_1", "don_1", "don_2", "don_2", "don_1"]
    );
}

#[tokio::test]
async fn retrieves_by_id_within_the_keys_mode() {
    let (stripe, client) = stand_in().await;
    let missing = client.get("/v1/payment_intents/pi_doesnotexist").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"]["code"], "resource_missing");
    assert_eq!(missing.body["error"]["type"], "invalid_request_error");

    let test_pi = client.create_payment_intent().await;
    let live_key = "sk_live_51StandInLiveKey";
    stripe.add_api_key(live_key);
    let live = Client::new(&stripe.base_url(), live_key);
    let hidden = live
        .get(&format!(
            "/v1/payment_intents/{}",
            test_pi["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(hidden.status, 404);
    let message = hidden.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("exists in test mode"), "{message}");
    let live_pi = live.create_payment_intent().await;
    assert_eq!(live_pi["livemode"], true);
    assert_eq!(test_pi["livemode"], false);
}

#[tokio::test]
async fn confirming_with_4242_succeeds_once() {
    let (stripe, client) = stand_in().await;
    let pi = client.create_payment_intent().await;
    let id = pi["id"].as_str().unwrap();
    let answer = client
        .confirm_with_number(id, TestCard::Visa.number())
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["status"], "succeeded");
    assert_eq!(answer.body["amount_received"], 5000);
    let charge_id = answer.body["latest_charge"].as_str().unwrap();
    assert!(charge_id.starts_with("ch_"));
    assert!(
        answer.body["payment_method"]
            .as_str()
            .unwrap()
            .starts_with("pm_")
    );
    let charge = client.get(&format!("/v1/charges/{charge_id}")).await;
    assert_eq!(charge.body["status"], "succeeded");
    assert_eq!(charge.body["payment_intent"], id);
    assert_eq!(
        charge.body["payment_method_details"]["card"]["last4"],
        "4242"
    );

    let types: Vec<String> = stripe
        .events()
        .iter()
        .map(|e| e.event_type.clone())
        .collect();
    assert_eq!(
        types,
        [
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.succeeded"
        ]
    );
    let succeeded = &stripe.events()[2];
    assert_eq!(succeeded.object()["id"], id);
    assert_eq!(succeeded.object()["status"], "succeeded");

    let again = client
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_visa")],
            None,
        )
        .await;
    assert_eq!(again.status, 400);
    assert_eq!(
        again.body["error"]["code"],
        "payment_intent_unexpected_state"
    );
    assert_eq!(again.body["error"]["payment_intent"]["status"], "succeeded");
}

#[tokio::test]
async fn confirming_with_4000000000000002_declines_and_can_be_retried() {
    let (stripe, client) = stand_in().await;
    let pi = client.create_payment_intent().await;
    let id = pi["id"].as_str().unwrap();
    let declined = client
        .confirm_with_number(id, TestCard::Declined.number())
        .await;
    assert_eq!(declined.status, 402, "{}", declined.body);
    let error = &declined.body["error"];
    assert_eq!(error["type"], "card_error");
    assert_eq!(error["code"], "card_declined");
    assert_eq!(error["decline_code"], "generic_decline");
    assert_eq!(error["message"], "Your card was declined.");
    assert_eq!(error["payment_intent"]["id"], id);
    assert_eq!(error["payment_intent"]["status"], "requires_payment_method");

    let fetched = client.get(&format!("/v1/payment_intents/{id}")).await;
    assert_eq!(fetched.body["status"], "requires_payment_method");
    assert_eq!(
        fetched.body["last_payment_error"]["decline_code"],
        "generic_decline"
    );
    let failed = stripe.events();
    assert_eq!(
        failed.last().unwrap().event_type,
        "payment_intent.payment_failed"
    );
    assert_eq!(
        failed.last().unwrap().object()["last_payment_error"]["code"],
        "card_declined"
    );

    let token = client
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_chargeDeclined")],
            None,
        )
        .await;
    assert_eq!(token.status, 402);
    let retried = client
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_visa")],
            None,
        )
        .await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.body["status"], "succeeded");
    assert!(retried.body["last_payment_error"].is_null());
    assert_eq!(stripe.charges().len(), 3);
}

#[tokio::test]
async fn confirms_at_creation_and_through_the_test_helper() {
    let (stripe, client) = stand_in().await;
    let form = [
        ("amount", "2500"),
        ("currency", "usd"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
    ];
    let answer = client.post("/v1/payment_intents", &form, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["status"], "succeeded");

    let pi = client.create_payment_intent().await;
    let id = pi["id"].as_str().unwrap();
    let declined = stripe.confirm(id, TestCard::Declined).unwrap();
    assert_eq!(declined.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert_eq!(
        declined.last_payment_error.unwrap()["decline_code"],
        "generic_decline"
    );
    let paid = stripe.confirm(id, TestCard::Visa).unwrap();
    assert_eq!(paid.status, PaymentIntentStatus::Succeeded);
    assert!(stripe.confirm(id, TestCard::Visa).is_err());
    let fetched = client.get(&format!("/v1/payment_intents/{id}")).await;
    assert_eq!(fetched.body["status"], "succeeded");
}

#[tokio::test]
async fn refunds_in_part_then_in_full() {
    let (stripe, client) = stand_in().await;
    let pi = client.create_payment_intent().await;
    let id = pi["id"].as_str().unwrap();
    let early = client
        .post("/v1/refunds", &[("payment_intent", id)], None)
        .await;
    assert_eq!(early.status, 400, "nothing to refund yet");
    let paid = stripe.confirm(id, TestCard::Visa).unwrap();

    let partial = client
        .post(
            "/v1/refunds",
            &[("payment_intent", id), ("amount", "2000")],
            None,
        )
        .await;
    assert_eq!(partial.status, 200, "{}", partial.body);
    assert!(partial.body["id"].as_str().unwrap().starts_with("re_"));
    assert_eq!(partial.body["object"], "refund");
    assert_eq!(partial.body["status"], "succeeded");
    assert_eq!(partial.body["amount"], 2000);
    let refunded = stripe
        .events()
        .into_iter()
        .find(|e| e.event_type == "charge.refunded")
        .unwrap();
    assert_eq!(refunded.object()["object"], "charge");
    assert_eq!(refunded.object()["amount_refunded"], 2000);
    assert_eq!(refunded.object()["refunded"], false);
    assert_eq!(refunded.object()["payment_intent"], id);

    let too_much = client
        .post(
            "/v1/refunds",
            &[("payment_intent", id), ("amount", "3001")],
            None,
        )
        .await;
    assert_eq!(too_much.status, 400);
    let charge = paid.latest_charge.unwrap();
    let rest = client
        .post("/v1/refunds", &[("charge", charge.as_str())], None)
        .await;
    assert_eq!(rest.status, 200, "{}", rest.body);
    assert_eq!(rest.body["amount"], 3000);
    let last = stripe
        .events()
        .into_iter()
        .rev()
        .find(|e| e.event_type == "charge.refunded")
        .unwrap();
    assert_eq!(last.object()["amount_refunded"], 5000);
    assert_eq!(last.object()["refunded"], true);
    let again = client
        .post("/v1/refunds", &[("payment_intent", id)], None)
        .await;
    assert_eq!(again.status, 400);
    assert_eq!(again.body["error"]["code"], "charge_already_refunded");
    assert_eq!(stripe.refunds().len(), 2);
}

#[tokio::test]
async fn a_retry_after_an_outage_or_a_timeout_reuses_the_idempotency_key() {
    let (stripe, client) = stand_in().await;
    let form = [("amount", "5000"), ("currency", "eur")];
    stripe.fail_next_requests(1, 503);
    let outage = client
        .post("/v1/payment_intents", &form, Some("don_9"))
        .await;
    assert_eq!(outage.status, 503);
    assert_eq!(outage.body["error"]["type"], "api_error");
    assert!(stripe.payment_intents().is_empty());

    stripe.set_response_delay(Duration::from_millis(500));
    let impatient = client
        .http
        .post(format!("{}/v1/payment_intents", stripe.base_url()))
        .bearer_auth(SECRET_KEY)
        .header("Idempotency-Key", "don_9")
        .timeout(Duration::from_millis(50))
        .form(&form)
        .send()
        .await;
    assert!(impatient.is_err_and(|error| error.is_timeout()));
    assert_eq!(
        stripe.payment_intents().len(),
        1,
        "Stripe did the work all the same"
    );

    stripe.set_response_delay(Duration::ZERO);
    let retry = client
        .post("/v1/payment_intents", &form, Some("don_9"))
        .await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.body["id"], stripe.payment_intents()[0].id.as_str());
    assert_eq!(stripe.payment_intents().len(), 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_payment_intent() {
    let (stripe, client) = stand_in().await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = client.clone();
        tasks.spawn(async move {
            let form = [("amount", "5000"), ("currency", "eur")];
            client
                .post("/v1/payment_intents", &form, Some("don_same"))
                .await
        });
    }
    let answers = tasks.join_all().await;
    let first_id = &answers[0].body["id"];
    assert!(
        answers
            .iter()
            .all(|a| a.status == 200 && &a.body["id"] == first_id)
    );
    let replayed = answers
        .iter()
        .filter(|a| a.header("idempotent-replayed").is_some());
    assert_eq!(replayed.count(), 7);
    assert_eq!(stripe.payment_intents().len(), 1);
}

#[tokio::test]
async fn cancels_and_retrieves_charges_refunds_and_events() {
    let (stripe, client) = stand_in().await;
    let pi = client.create_payment_intent().await;
    let id = pi["id"].as_str().unwrap();
    let cancel_path = format!("/v1/payment_intents/{id}/cancel");
    let reason = [("cancellation_reason", "abandoned")];
    let canceled = client.post(&cancel_path, &reason, None).await;
    assert_eq!(canceled.status, 200, "{}", canceled.body);
    assert_eq!(canceled.body["status"], "canceled");
    assert_eq!(canceled.body["cancellation_reason"], "abandoned");
    let again = client.post(&cancel_path, &[], None).await;
    assert_eq!(
        again.body["error"]["code"],
        "payment_intent_unexpected_state"
    );
    assert!(stripe.confirm(id, TestCard::Visa).is_err());
    let event = stripe.events().pop().unwrap();
    assert_eq!(event.event_type, "payment_intent.canceled");
    let fetched = client.get(&format!("/v1/events/{}", event.id)).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body, event.json);

    let paid = client.create_payment_intent().await;
    let paid = stripe
        .confirm(paid["id"].as_str().unwrap(), TestCard::Mastercard)
        .unwrap();
    let refund = client
        .post("/v1/refunds", &[("payment_intent", paid.id.as_str())], None)
        .await;
    let refund_id = refund.body["id"].as_str().unwrap();
    let fetched = client.get(&format!("/v1/refunds/{refund_id}")).await;
    assert_eq!(fetched.body, refund.body);
    let charge_id = paid.latest_charge.unwrap();
    let charge = client.get(&format!("/v1/charges/{charge_id}")).await;
    assert_eq!(charge.body["amount_refunded"], 5000);
    assert_eq!(
        charge.body["payment_method_details"]["card"]["brand"],
        "mastercard"
    );

    let unknown = client.get("/v1/customers").await;
    assert_eq!(unknown.status, 404);
    let message = unknown.body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("Unrecognized request URL (GET: /v1/customers)"));
}
