//! Donations over real HTTP with the Stripe stand-in on loopback, on SQLite and PostgreSQL:
//! creating one sets up its PaymentIntent in Stripe's wire format, the caller reads and lists
//! their donations, bad bodies and Stripe's errors are answered with the envelope, and the
//! donation's actor refuses illegal moves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use ampflow_actors::donation::{DonationError, Moved};
use ampflow_actors::organisations::NewOrganisation;
use ampflow_http::config::Secret;
use ampflow_standins::stripe::{API_VERSION, StripeStandIn};
use ampflow_storage::DonationStatus;
use ampflow_storage::testdb::Backend;
use ampflow_types::DonationId;
use common::{TestApp, Wallet, assert_error, wait_until};
use serde_json::{Value, json};

on_both_databases!(
    a_donation_gets_a_payment_intent_and_is_read_back_by_its_donor,
    donations_are_listed_newest_first_in_pages,
    bad_donation_bodies_are_refused_and_reach_no_payment,
    stripe_errors_answer_payment_error_and_fail_the_donation,
    the_donation_actor_refuses_illegal_moves_and_survives_a_kill,
    donations_left_without_a_payment_intent_get_it_or_fail_when_too_old,
);

pub const SECRET_KEY: &str = "sk_test_donations";
pub const WEBHOOK_SECRET: &str = "whsec_donations";

/// The app configured against a fresh Stripe stand-in.
async fn start(backend: Backend) -> Option<(TestApp, StripeStandIn)> {
    let stripe = StripeStandIn::start(SECRET_KEY, WEBHOOK_SECRET)
        .await
        .unwrap();
    let base_url = stripe.base_url();
    let app = TestApp::start_with(backend, |s| {
        s.stripe.secret_key = Some(Secret::new(SECRET_KEY));
        s.stripe.webhook_secrets = vec![Secret::new(WEBHOOK_SECRET)];
        s.stripe.base_url = base_url;
        s.stripe.request_timeout_ms = 2_000;
        s.stripe.retry_backoff_ms = 10;
    })
    .await?;
    Some((app, stripe))
}

/// An organisation with one fund: (organisation id, fund id).
async fn organisation(app: &TestApp, status: &str) -> (String, String) {
    let new = NewOrganisation {
        name: "Clean Water".into(),
        country: "KE".into(),
        status: status.into(),
        ..Default::default()
    };
    let org = app
        .app()
        .actors()
        .organisations()
        .create(&new)
        .await
        .unwrap();
    let fund = app
        .app()
        .actors()
        .organisations()
        .add_fund(&org.id, "Wells", None)
        .await
        .unwrap();
    (org.id, fund.id)
}

fn body(org: &str, fund: &str, amount: i64) -> Value {
    json!({
        "organisation_id": org,
        "fund_id": fund,
        "amount": amount,
        "currency": "EUR",
        "donor_email": "donor@example.com",
        "donor_name": "Jane Donor",
    })
}

async fn a_donation_gets_a_payment_intent_and_is_read_back_by_its_donor(backend: Backend) {
    let Some((app, stripe)) = start(backend).await else {
        return;
    };
    let (org, fund) = organisation(&app, "verified").await;
    let donor = Wallet::random();
    let token = app.access_token(&donor).await;
    let response = app
        .client
        .post(app.url("/donations"))
        .bearer_auth(&token)
        .header("x-request-id", "req_donation_1")
        .json(&body(&org, &fund, 5000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["meta"]["request_id"], "req_donation_1");
    let id = created["data"]["id"].as_str().unwrap().to_string();
    assert!(DonationId::parse(&id).is_ok(), "{id}");
    assert_eq!(created["data"]["status"], "pending");
    let client_secret = created["data"]["client_secret"].as_str().unwrap();

    // Stripe's side: one PaymentIntent, created in its wire format.
    let intents = stripe.payment_intents();
    assert_eq!(intents.len(), 1);
    let intent = &intents[0];
    assert_eq!(intent.client_secret, client_secret);
    assert_eq!((intent.amount, intent.currency.as_str()), (5000, "eur"));
    assert_eq!(intent.metadata["donation_id"], id);
    assert_eq!(intent.metadata["organisation_id"], org);
    assert_eq!(intent.receipt_email.as_deref(), Some("donor@example.com"));
    let request = &stripe.requests()[0];
    assert_eq!(request.idempotency_key.as_deref(), Some(id.as_str()));
    assert_eq!(request.stripe_version.as_deref(), Some(API_VERSION));
    assert!(request.authorized);

    // The donor reads it back, without the client secret.
    let (status, got) = app.get_auth(&format!("/donations/{id}"), &token).await;
    assert_eq!(status, 200, "{got}");
    let data = &got["data"];
    assert_eq!(data["id"], id.as_str());
    assert_eq!(data["status"], "pending");
    assert_eq!(data["amount"], 5000);
    assert_eq!(data["currency"], "EUR");
    assert_eq!(data["organisation_id"], org.as_str());
    assert_eq!(data["fund_id"], fund.as_str());
    assert_eq!(data["donor_name"], "Jane Donor");
    assert_eq!(data["stripe_payment_intent_id"], intent.id.as_str());
    assert!(data.get("client_secret").is_none());
    assert!(got["meta"]["request_id"].is_string());
    assert!(!got.to_string().contains(client_secret));

    // Nobody else does, and not without a token.
    let other = app.access_token(&Wallet::random()).await;
    let (status, answer) = app.get_auth(&format!("/donations/{id}"), &other).await;
    assert_error(status, &answer, 404, "not_found", None);
    let (status, answer) = app
        .send(app.client.get(app.url(&format!("/donations/{id}"))))
        .await;
    assert_error(status, &answer, 401, "authentication_error", None);
    for unknown in ["don_123", "nope", &format!("don_{}", "0".repeat(32))] {
        let (status, answer) = app.get_auth(&format!("/donations/{unknown}"), &token).await;
        assert_error(status, &answer, 404, "not_found", None);
    }
    let (status, answer) = app
        .send(
            app.client
                .post(app.url("/donations"))
                .json(&body(&org, &fund, 5000)),
        )
        .await;
    assert_error(status, &answer, 401, "authentication_error", None);

    // The client secret is stored nowhere: not in the SQLite files.
    if backend == Backend::Sqlite {
        let path = app
            .db
            .url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap()
            .to_string();
        for file in [path.clone(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                let needle = client_secret.as_bytes();
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "the client secret is in {file}"
                );
            }
        }
    }
    app.stop().await;
}

async fn donations_are_listed_newest_first_in_pages(backend: Backend) {
    let Some((app, _stripe)) = start(backend).await else {
        return;
    };
    let (org, fund) = organisation(&app, "verified").await;
    let donor = Wallet::random();
    let token = app.access_token(&donor).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, created) = app
            .post_auth("/donations", &token, body(&org, &fund, 1000 + i))
            .await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["data"]["id"].as_str().unwrap().to_string());
        app.clock.advance_ms(1);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut path = "/donations?limit=2".to_string();
    loop {
        let (status, page) = app.get_auth(&path, &token).await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|d| d["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                assert_eq!(page["has_more"], true);
                assert!(cursor.starts_with("cur_"));
                path = format!("/donations?limit=2&cursor={cursor}");
            }
            None => {
                assert_eq!(page["has_more"], false);
                break;
            }
        }
    }
    assert_eq!(seen, ids, "every donation once, newest first");
    let (_, all) = app.get_auth("/donations", &token).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 5);
    assert_eq!(all["data"][0]["amount"], 1004);

    let other = app.access_token(&Wallet::random()).await;
    let (status, none) = app.get_auth("/donations", &other).await;
    assert_eq!(status, 200);
    assert_eq!(
        none,
        json!({"data": [], "has_more": false, "next_cursor": null})
    );
    for bad in [
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=abc",
        "cursor=cur_MTIzOmZvbw",
    ] {
        let (status, answer) = app.get_auth(&format!("/donations?{bad}"), &token).await;
        assert_error(status, &answer, 400, "invalid_request", None);
    }
    let (status, answer) = app.send(app.client.get(app.url("/donations"))).await;
    assert_error(status, &answer, 401, "authentication_error", None);
    app.stop().await;
}

async fn bad_donation_bodies_are_refused_and_reach_no_payment(backend: Backend) {
    let Some((app, stripe)) = start(backend).await else {
        return;
    };
    let (org, fund) = organisation(&app, "verified").await;
    let (other_org, other_fund) = organisation(&app, "verified").await;
    let (suspended, suspended_fund) = organisation(&app, "suspended").await;
    let token = app.access_token(&Wallet::random()).await;
    let with = |field: &str, value: Value| {
        let mut body = body(&org, &fund, 5000);
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = body(&org, &fund, 5000);
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let cases = [
        (with("amount", json!(0)), "amount"),
        (with("amount", json!(-100)), "amount"),
        (with("amount", json!(12.5)), "amount"),
        (with("amount", json!("5000")), "amount"),
        (with("amount", json!(100_000_000)), "amount"),
        (without("amount"), "amount"),
        (with("currency", json!("XXX")), "currency"),
        (with("currency", json!("EURO")), "currency"),
        (with("currency", json!(978)), "currency"),
        (without("currency"), "currency"),
        (with("donor_email", json!("not-an-email")), "donor_email"),
        (with("donor_email", json!("")), "donor_email"),
        (without("donor_email"), "donor_email"),
        (with("donor_name", json!("x".repeat(201))), "donor_name"),
        (with("organisation_id", json!("nope")), "organisation_id"),
        (
            with("organisation_id", json!(format!("org_{}", "0".repeat(32)))),
            "organisation_id",
        ),
        (with("organisation_id", json!(suspended)), "organisation_id"),
        (without("organisation_id"), "organisation_id"),
        (with("fund_id", json!("fund_nope")), "fund_id"),
        (with("fund_id", json!(other_fund)), "fund_id"),
        (with("fund_id", json!(suspended_fund)), "fund_id"),
    ];
    for (body, param) in cases {
        let (status, answer) = app.post_auth("/donations", &token, body.clone()).await;
        assert_error(status, &answer, 400, "invalid_request", Some(param));
    }
    assert!(stripe.payment_intents().is_empty());
    assert!(stripe.requests().is_empty());
    let (_, listed) = app.get_auth("/donations", &token).await;
    assert_eq!(listed["data"], json!([]));

    // The fund is optional, and lowercase currencies are fine.
    let mut to_org = body(&other_org, &other_fund, 700);
    to_org.as_object_mut().unwrap().remove("fund_id");
    to_org["currency"] = json!("usd");
    let (status, created) = app.post_auth("/donations", &token, to_org).await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap();
    let (_, got) = app.get_auth(&format!("/donations/{id}"), &token).await;
    assert_eq!(got["data"]["fund_id"], Value::Null);
    assert_eq!(got["data"]["currency"], "USD");
    app.stop().await;
}

async fn stripe_errors_answer_payment_error_and_fail_the_donation(backend: Backend) {
    let Some((app, stripe)) = start(backend).await else {
        return;
    };
    let (org, fund) = organisation(&app, "verified").await;
    let token = app.access_token(&Wallet::random()).await;

    // Below Stripe's minimum charge: Stripe refuses the amount.
    let (status, answer) = app
        .post_auth("/donations", &token, body(&org, &fund, 10))
        .await;
    assert_error(status, &answer, 400, "payment_error", Some("amount"));
    app.clock.advance_ms(1);
    // Stripe down for every attempt: the same idempotency key each time, then 502.
    stripe.fail_next_requests(3, 500);
    let (status, answer) = app
        .post_auth("/donations", &token, body(&org, &fund, 5000))
        .await;
    assert_error(status, &answer, 502, "payment_error", None);
    let keys = stripe.idempotency_keys();
    assert_eq!(keys.len(), 4);
    assert!(keys[1..].iter().all(|k| *k == keys[1]));
    assert_ne!(keys[0], keys[1]);
    assert!(stripe.payment_intents().is_empty());

    // Both donations are failed, with the reason.
    let (_, listed) = app.get_auth("/donations", &token).await;
    let listed = listed["data"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for donation in listed {
        assert_eq!(donation["status"], "failed", "{donation}");
        assert!(
            donation["failure_reason"]
                .as_str()
                .unwrap()
                .contains("stripe")
        );
        assert_eq!(donation["stripe_payment_intent_id"], Value::Null);
    }
    assert_eq!(listed[1]["id"].as_str(), Some(keys[0].as_str()));

    // A short outage is ridden out: one PaymentIntent, the key reused.
    stripe.fail_next_requests(2, 503);
    let (status, created) = app
        .post_auth("/donations", &token, body(&org, &fund, 5000))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap();
    assert_eq!(stripe.payment_intents().len(), 1);
    assert_eq!(&stripe.idempotency_keys()[4..], &[id, id, id]);
    app.stop().await;
}

async fn the_donation_actor_refuses_illegal_moves_and_survives_a_kill(backend: Backend) {
    let Some((app, _stripe)) = start(backend).await else {
        return;
    };
    let (org, fund) = organisation(&app, "verified").await;
    let token = app.access_token(&Wallet::random()).await;
    let (_, created) = app
        .post_auth("/donations", &token, body(&org, &fund, 5000))
        .await;
    let id = DonationId::parse(created["data"]["id"].as_str().unwrap()).unwrap();
    let donations = app.app().actors().donations();
    let illegal =
        |r: Result<Moved, DonationError>| matches!(r, Err(DonationError::IllegalTransition { .. }));

    assert!(illegal(
        donations
            .transition(&id, DonationStatus::Refunded, None)
            .await
    ));
    let moved = donations
        .transition(&id, DonationStatus::Succeeded, None)
        .await
        .unwrap();
    assert!(matches!(moved, Moved::Applied(_)));
    assert!(matches!(
        donations
            .transition(&id, DonationStatus::Succeeded, None)
            .await,
        Ok(Moved::AlreadyThere(_))
    ));
    // A failure after the success does not undo it.
    assert!(illegal(
        donations
            .transition(&id, DonationStatus::Failed, Some("late decline".into()))
            .await
    ));
    assert!(illegal(
        donations
            .transition(&id, DonationStatus::Cancelled, None)
            .await
    ));
    assert!(illegal(
        donations
            .transition(&id, DonationStatus::Pending, None)
            .await
    ));

    // Killed mid-life, the actor comes back with its state from storage.
    let registry = donations.registry().clone();
    let before = registry.running(&id).expect("the donation's actor runs");
    before.kill();
    let restarted = wait_until(Duration::from_secs(10), || {
        let registry = registry.clone();
        let id = id.clone();
        let before_id = before.get_id();
        async move {
            registry
                .running(&id)
                .is_some_and(|a| a.get_id() != before_id)
        }
    })
    .await;
    assert!(restarted, "the supervisor restarts the killed actor");
    assert!(illegal(
        donations
            .transition(&id, DonationStatus::Failed, None)
            .await
    ));
    let refunded = donations
        .transition(&id, DonationStatus::Refunded, None)
        .await
        .unwrap();
    assert_eq!(refunded.record().status, DonationStatus::Refunded);
    let (_, got) = app
        .get_auth(&format!("/donations/{}", id.as_str()), &token)
        .await;
    assert_eq!(got["data"]["status"], "refunded");
    assert_eq!(got["data"]["failure_reason"], Value::Null);
    app.stop().await;
}

/// Without `[stripe]`, donations answer 503 `stripe_not_configured` (bad bodies still 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn donations_answer_503_while_stripe_is_not_configured() {
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let (org, fund) = organisation(&app, "verified").await;
    let token = app.access_token(&Wallet::random()).await;
    let (status, answer) = app
        .post_auth("/donations", &token, body(&org, &fund, 5000))
        .await;
    assert_error(status, &answer, 503, "stripe_not_configured", None);
    let (status, answer) = app
        .post_auth("/donations", &token, body(&org, &fund, 0))
        .await;
    assert_error(status, &answer, 400, "invalid_request", Some("amount"));
    let (status, listed) = app.get_auth("/donations", &token).await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"], json!([]));
    app.stop().await;
}

/// A crash between storing a donation and recording Stripe's answer leaves it pending without
/// a PaymentIntent. The sweep creates it again with the same idempotency key (Stripe answers
/// the same PaymentIntent) and records it; while Stripe fails it is retried, and a donation
/// too old is failed. A donation still within the grace period is left alone.
async fn donations_left_without_a_payment_intent_get_it_or_fail_when_too_old(backend: Backend) {
    use ampflow_actors::donation::{ORPHAN_GIVE_UP_MS, ORPHAN_GRACE_MS, OrphanSweep};
    use ampflow_storage::{DonationRecord, prefixed_id};
    use ampflow_types::Clock;

    let Some((app, stripe)) = start(backend).await else {
        return;
    };
    let (org, fund) = organisation(&app, "verified").await;
    let storage = app.app().storage();
    let donations = app.app().state().actors().donations();
    let stored = |created_at_ms: i64| DonationRecord {
        id: prefixed_id("don"),
        organisation_id: org.clone(),
        fund_id: Some(fund.clone()),
        wallet_address: Some(
            ampflow_types::WalletAddress::parse(&Wallet::random().address()).unwrap(),
        ),
        amount: 2500,
        currency: "EUR".into(),
        donor_email: "donor@example.com".into(),
        donor_name: None,
        status: DonationStatus::Pending,
        stripe_payment_intent_id: None,
        failure_reason: None,
        created_at_ms,
        updated_at_ms: created_at_ms,
        version: 0,
        source: ampflow_storage::DonationSource::Stripe,
    };
    let now = app.clock.now_ms();
    let orphan = stored(now - ORPHAN_GRACE_MS - 1_000);
    let too_old = stored(now - ORPHAN_GIVE_UP_MS - 1_000);
    let recent = stored(now);
    // A partner's donation has no PaymentIntent by design: the sweeper leaves it alone.
    let partner = DonationRecord {
        source: ampflow_storage::DonationSource::Partner,
        ..stored(now - ORPHAN_GIVE_UP_MS - 1_000)
    };
    for d in [&orphan, &too_old, &recent, &partner] {
        storage.donations().insert_donation(d).await.unwrap();
    }

    // Stripe down: nothing changes, the orphan is retried later; the old one is failed.
    stripe.fail_next_requests(100, 500);
    let sweep = donations.resume_orphaned().await.unwrap();
    assert_eq!(
        sweep,
        OrphanSweep {
            attached: 0,
            failed: 1,
            left: 1
        }
    );
    let failed = storage
        .donations()
        .donation(&too_old.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, DonationStatus::Failed);
    assert!(failed.failure_reason.unwrap().contains("PaymentIntent"));

    stripe.fail_next_requests(0, 500);
    let sweep = donations.resume_orphaned().await.unwrap();
    assert_eq!(
        sweep,
        OrphanSweep {
            attached: 1,
            failed: 0,
            left: 0
        }
    );
    let attached = storage
        .donations()
        .donation(&orphan.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attached.status, DonationStatus::Pending);
    let pi = attached.stripe_payment_intent_id.expect("a PaymentIntent");
    let intent = stripe.payment_intent(&pi).expect("created at Stripe");
    assert_eq!(intent.metadata.get("donation_id"), Some(&orphan.id));
    assert_eq!(intent.amount, 2500);
    assert!(
        stripe.idempotency_keys().iter().all(|k| *k == orphan.id),
        "every attempt used the donation id as its key: {:?}",
        stripe.idempotency_keys()
    );
    assert_eq!(
        stripe.payment_intents().len(),
        1,
        "one PaymentIntent however many attempts"
    );
    let untouched = storage
        .donations()
        .donation(&recent.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        untouched.stripe_payment_intent_id, None,
        "still within its grace period"
    );

    // A second sweep finds nothing left to do.
    assert_eq!(
        donations.resume_orphaned().await.unwrap(),
        OrphanSweep::default()
    );
    assert_eq!(
        storage
            .donations()
            .donation(&partner.id)
            .await
            .unwrap()
            .unwrap(),
        partner,
        "a partner's donation is not an orphan"
    );
}
