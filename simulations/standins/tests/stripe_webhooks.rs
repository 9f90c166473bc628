//! The Stripe stand-in's webhooks, received by a small axum endpoint that checks Stripe's
//! signature with its own HMAC code: signing and rotation, retries, copies, reordering, delays,
//! pause and resume, and forged deliveries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use ampflow_standins::stripe::{
    API_VERSION, ReleaseOrder, StripeStandIn, TestCard, signature_header, unix_now,
};
use serde_json::json;
use support::{Client, Receiver, SECRET_KEY, TOLERANCE_S, WEBHOOK_SECRET, wait_until};

const FAST_RETRIES: [Duration; 3] = [Duration::from_millis(5); 3];

async fn stand_in_posting_to(receiver: &Receiver) -> (StripeStandIn, Client) {
    let stripe = StripeStandIn::start(SECRET_KEY, WEBHOOK_SECRET)
        .await
        .expect("start the stand-in");
    stripe.set_webhook_url(&receiver.url);
    stripe.set_retry_delays(&FAST_RETRIES);
    let client = Client::new(&stripe.base_url(), SECRET_KEY);
    (stripe, client)
}

#[tokio::test]
async fn events_are_signed_with_stripes_scheme() {
    let receiver = Receiver::start(&[WEBHOOK_SECRET], 0).await;
    let (stripe, client) = stand_in_posting_to(&receiver).await;
    let form = [
        ("amount", "5000"),
        ("currency", "eur"),
        ("metadata[donation_id]", "don_7"),
    ];
    let created = client
        .post("/v1/payment_intents", &form, Some("don_7"))
        .await;
    let id = created.body["id"].as_str().unwrap().to_string();
    stripe.confirm(&id, TestCard::Visa).unwrap();
    wait_until("three events", || receiver.received().len() == 3).await;

    let received = receiver.received();
    assert!(received.iter().all(|r| r.status == 200), "{received:?}");
    for webhook in &received {
        let parts: Vec<&str> = webhook.signature.split(',').collect();
        let timestamp: i64 = parts[0].strip_prefix("t=").unwrap().parse().unwrap();
        assert!((unix_now() - timestamp).abs() <= TOLERANCE_S);
        assert!(parts[1].starts_with("v1="));
        assert!(parts[2].starts_with("v0="), "test mode adds a v0 entry");
        let body = std::str::from_utf8(&webhook.body).unwrap();
        assert!(body.starts_with("{\n  \""), "Stripe pretty-prints bodies");
    }
    assert_eq!(
        receiver.accepted_types(),
        [
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.succeeded"
        ]
    );
    let created_event = received[0].event();
    assert!(created_event["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(created_event["object"], "event");
    assert_eq!(created_event["api_version"], API_VERSION);
    assert_eq!(created_event["livemode"], false);
    assert_eq!(created_event["pending_webhooks"], 1);
    assert_eq!(created_event["request"]["idempotency_key"], "don_7");
    assert!(created_event["created"].as_i64().unwrap() > 1_700_000_000);
    let succeeded = received[2].event();
    assert_eq!(succeeded["data"]["object"]["id"], id.as_str());
    assert_eq!(
        succeeded["data"]["object"]["metadata"]["donation_id"],
        "don_7"
    );
    assert_eq!(succeeded["data"]["object"]["status"], "succeeded");
    wait_until("three acknowledgements", || {
        stripe.acknowledged_event_ids().len() == 3
    })
    .await;
}

#[tokio::test]
async fn a_second_secret_adds_a_second_v1_during_rotation() {
    let new_secret = "whsec_rotated_fedcba9876543210";
    let receiver = Receiver::start(&[new_secret], 0).await;
    let (stripe, _client) = stand_in_posting_to(&receiver).await;
    stripe.add_webhook_secret(new_secret);
    stripe.emit(stripe.build_event("payment_intent.created", json!({"id": "pi_1"})));
    wait_until("the event", || receiver.received().len() == 1).await;
    let webhook = &receiver.received()[0];
    assert_eq!(webhook.status, 200, "the new secret alone verifies");
    assert_eq!(webhook.signature.matches("v1=").count(), 2);
    let old_only = [WEBHOOK_SECRET.to_string()];
    assert!(support::verify(
        &webhook.signature,
        &webhook.body,
        &old_only,
        TOLERANCE_S
    ));

    stripe.remove_webhook_secret(WEBHOOK_SECRET);
    let event = stripe.build_event("payment_intent.created", json!({"id": "pi_2"}));
    stripe.emit(event);
    wait_until("the second event", || receiver.received().len() == 2).await;
    let webhook = &receiver.received()[1];
    assert_eq!(webhook.signature.matches("v1=").count(), 1);
    assert!(!support::verify(
        &webhook.signature,
        &webhook.body,
        &old_only,
        TOLERANCE_S
    ));
}

#[tokio::test]
async fn a_failed_delivery_is_retried_until_acknowledged() {
    let receiver = Receiver::start(&[WEBHOOK_SECRET], 1).await;
    let (stripe, client) = stand_in_posting_to(&receiver).await;
    stripe.set_enabled_events(Some(&["payment_intent.succeeded"]));
    let pi = client.create_payment_intent().await;
    stripe
        .confirm(pi["id"].as_str().unwrap(), TestCard::Visa)
        .unwrap();
    wait_until("the retry", || receiver.accepted().len() == 1).await;

    let received = receiver.received();
    assert_eq!(
        received.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 200]
    );
    assert_eq!(
        received[0].body, received[1].body,
        "a retry sends the same event"
    );
    wait_until("both attempts recorded", || stripe.deliveries().len() == 2).await;
    let attempts = stripe.deliveries();
    assert_eq!((attempts[0].attempt, attempts[0].status), (1, Some(500)));
    assert_eq!((attempts[1].attempt, attempts[1].status), (2, Some(200)));
    assert!(
        attempts
            .iter()
            .all(|a| a.event_type == "payment_intent.succeeded")
    );
}

#[tokio::test]
async fn delivery_gives_up_after_the_last_retry() {
    // Bind a port and free it, so nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/webhooks/stripe", listener.local_addr().unwrap());
    drop(listener);
    let stripe = StripeStandIn::start(SECRET_KEY, WEBHOOK_SECRET)
        .await
        .unwrap();
    stripe.set_webhook_url(&dead_url);
    stripe.set_retry_delays(&FAST_RETRIES[..2]);
    stripe.emit(stripe.build_event("payment_intent.succeeded", json!({"id": "pi_1"})));
    wait_until("the last attempt", || {
        stripe.deliveries().iter().any(|a| a.gave_up)
    })
    .await;
    let attempts = stripe.deliveries();
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(
        attempts
            .iter()
            .all(|a| a.status.is_none() && a.error.is_some())
    );
}

#[tokio::test]
async fn copies_deliver_the_same_event_several_times() {
    let receiver = Receiver::start(&[WEBHOOK_SECRET], 0).await;
    let (stripe, _client) = stand_in_posting_to(&receiver).await;
    stripe.set_copies(3);
    let event = stripe.build_event("payment_intent.succeeded", json!({"id": "pi_1"}));
    stripe.emit(event.clone());
    wait_until("three copies", || receiver.accepted().len() == 3).await;
    assert!(receiver.received().iter().all(|r| r.event_id() == event.id));

    stripe.set_copies(1);
    assert!(stripe.redeliver(&event.id));
    wait_until("a resend", || receiver.accepted().len() == 4).await;
    assert!(!stripe.redeliver("evt_unknown"));
}

#[tokio::test]
async fn held_events_are_released_reversed_or_in_a_given_order() {
    let receiver = Receiver::start(&[WEBHOOK_SECRET], 0).await;
    let (stripe, _client) = stand_in_posting_to(&receiver).await;
    let raise = |name: &str| {
        let event = stripe.build_event(name, json!({"id": name}));
        stripe.emit(event.clone());
        event
    };
    stripe.hold_deliveries();
    let (a, b, c) = (raise("test.a"), raise("test.b"), raise("test.c"));
    assert_eq!(stripe.held_events().len(), 3);
    assert_eq!(stripe.release_held(ReleaseOrder::Reversed), 3);
    wait_until("the reversed batch", || receiver.accepted().len() == 3).await;
    assert_eq!(receiver.accepted_types(), ["test.c", "test.b", "test.a"]);

    stripe.hold_deliveries();
    for event in [&a, &b, &c] {
        stripe.emit(event.clone());
    }
    let order = vec![b.id.clone(), c.id.clone()];
    stripe.release_held(ReleaseOrder::ByIds(order));
    wait_until("the second batch", || receiver.accepted().len() == 6).await;
    assert_eq!(
        receiver.accepted_types()[3..],
        ["test.b", "test.c", "test.a"]
    );
}

#[tokio::test]
async fn a_delayed_event_is_overtaken_by_a_later_one() {
    let receiver = Receiver::start(&[WEBHOOK_SECRET], 0).await;
    let (stripe, client) = stand_in_posting_to(&receiver).await;
    stripe.set_enabled_events(Some(&["charge.succeeded", "payment_intent.succeeded"]));
    stripe.set_delivery_delay_for("payment_intent.succeeded", Duration::from_millis(300));
    let pi = client.create_payment_intent().await;
    stripe
        .confirm(pi["id"].as_str().unwrap(), TestCard::Visa)
        .unwrap();
    let failed_late = stripe
        .payment_intent_event(pi["id"].as_str().unwrap(), "payment_intent.payment_failed")
        .unwrap();
    stripe.set_enabled_events(None);
    stripe.emit(failed_late);
    wait_until("three events", || receiver.accepted().len() == 3).await;
    assert_eq!(
        receiver.accepted_types(),
        [
            "charge.succeeded",
            "payment_intent.payment_failed",
            "payment_intent.succeeded"
        ]
    );
}

#[tokio::test]
async fn paused_deliveries_wait_for_resume() {
    let receiver = Receiver::start(&[WEBHOOK_SECRET], 0).await;
    let (stripe, _client) = stand_in_posting_to(&receiver).await;
    stripe.pause_deliveries();
    let queued = stripe.build_event("test.queued", json!({"id": "queued"}));
    stripe.emit(queued.clone());
    // A direct send passes the paused worker: once it has arrived, the queued event has had a
    // full round trip's time to arrive, and has not.
    let direct = stripe.build_event("test.direct", json!({"id": "direct"}));
    assert_eq!(stripe.send_event(&direct).await.unwrap(), 200);
    assert_eq!(receiver.accepted_types(), ["test.direct"]);
    assert!(stripe.deliveries().is_empty());
    stripe.resume_deliveries();
    wait_until("the queued event", || receiver.accepted().len() == 2).await;
    assert_eq!(receiver.accepted()[1]["id"], queued.id.as_str());
}

#[tokio::test]
async fn stale_and_forged_signatures_are_sent_as_asked() {
    let receiver = Receiver::start(&[WEBHOOK_SECRET], 0).await;
    let (stripe, _client) = stand_in_posting_to(&receiver).await;
    let event = stripe.build_event("payment_intent.succeeded", json!({"id": "pi_1"}));
    let stale = unix_now() - TOLERANCE_S - 60;
    assert_eq!(
        stripe.send_event_signed_at(&event, stale).await.unwrap(),
        400
    );
    assert_eq!(
        stripe
            .send_event_signed_with(&event, "whsec_wrong")
            .await
            .unwrap(),
        400
    );
    let header = signature_header(WEBHOOK_SECRET, unix_now(), b"another body");
    assert_eq!(
        stripe
            .send_event_with_header(&event, &header)
            .await
            .unwrap(),
        400
    );
    let mut live = event.clone();
    live.json["livemode"] = json!(true);
    assert_eq!(stripe.send_event(&live).await.unwrap(), 200);
    let good = signature_header(WEBHOOK_SECRET, unix_now(), &event.body());
    assert_eq!(
        stripe.send_event_with_header(&event, &good).await.unwrap(),
        200
    );

    let received = receiver.received();
    assert!(
        !received[3].signature.contains("v0="),
        "live mode has no v0 entry"
    );
    let stale_header = &received[0].signature;
    assert!(
        stale_header.starts_with(&format!("t={stale},")),
        "{stale_header}"
    );
}
