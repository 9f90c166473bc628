//! KYC through Veriff over real HTTP, on SQLite and PostgreSQL, against the Veriff stand-in:
//! sessions (creation, reuse, replacement), decision and event webhooks with both signature
//! schemes, forged and repeated deliveries, and Veriff missing or down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ampflow_http::config::Secret;
use ampflow_standins::veriff::{Decision, SignatureScheme, VeriffStandIn};
use ampflow_storage::testdb::Backend;
use ampflow_types::WalletAddress;
use chrono::NaiveDate;
use common::{TestApp, Wallet, assert_error};
use serde_json::{Value, json};

on_both_databases!(
    a_session_is_created_at_veriff_stored_and_reused,
    concurrent_requests_share_one_new_session,
    a_session_older_than_seven_days_is_replaced,
    approved_completes_kyc_and_stores_the_document,
    an_expired_document_is_reported_for_whitelisting,
    resubmission_keeps_the_session_and_declined_or_expired_replace_it,
    events_record_the_users_progress,
    both_signature_schemes_are_accepted,
    forged_webhooks_answer_401_and_change_nothing,
    a_repeated_delivery_changes_nothing,
    webhooks_for_an_unknown_session_answer_404,
    a_malformed_webhook_answers_400,
    a_session_needs_a_valid_jwt,
    without_veriff_configured_kyc_answers_503,
    veriff_unreachable_or_refusing_answers_503,
);

const API_KEY: &str = "a2b3005f-e324-4e7e-a328-4aecd11a091b";
const SHARED_SECRET: &str = "veriff-shared-secret-for-tests";
const CALLBACK_URL: &str = "https://app.example.org/kyc/done";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// (what is wrong, body, headers) of a delivery that must be refused.
type ForgedDelivery = (&'static str, Vec<u8>, Vec<(&'static str, String)>);

/// The app configured for the Veriff stand-in at `base_url`.
async fn start_app(backend: Backend, base_url: String, api_key: &str) -> Option<TestApp> {
    let api_key = api_key.to_string();
    TestApp::start_with(backend, move |s| {
        s.veriff.base_url = base_url;
        s.veriff.api_key = Some(Secret::new(api_key));
        s.veriff.shared_secret = Some(Secret::new(SHARED_SECRET));
        s.veriff.callback_url = Some(CALLBACK_URL.into());
        s.veriff.request_timeout_ms = 2_000;
    })
    .await
}

/// The app and a Veriff stand-in that sends its webhooks to it.
async fn start(backend: Backend) -> Option<(TestApp, VeriffStandIn)> {
    let veriff = VeriffStandIn::start(API_KEY, SHARED_SECRET).await.unwrap();
    let app = start_app(backend, veriff.base_url(), API_KEY).await?;
    veriff.set_webhook_base(&app.app().base_url());
    Some((app, veriff))
}

async fn veriff_session(app: &TestApp, token: &str) -> (u16, Value) {
    app.send(
        app.client
            .post(app.url("/veriff/session"))
            .bearer_auth(token),
    )
    .await
}

/// `POST /veriff/session` that must succeed.
async fn session_ok(app: &TestApp, token: &str) -> Value {
    let (status, body) = veriff_session(app, token).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The Veriff session id behind a verification URL the app answered.
fn session_id_of(veriff: &VeriffStandIn, url: &str) -> String {
    veriff
        .sessions()
        .into_iter()
        .find(|s| s.url == url)
        .expect("a stand-in session with this url")
        .id
}

async fn kyc_completed(app: &TestApp, token: &str) -> bool {
    let (status, user) = app.get_auth("/user", token).await;
    assert_eq!(status, 200, "{user}");
    user["kyc_completed"].as_bool().unwrap()
}

async fn stored_session(app: &TestApp, id: &str) -> ampflow_storage::VeriffSessionRecord {
    app.app()
        .storage()
        .identity()
        .find_veriff_session(id)
        .await
        .unwrap()
        .expect("stored session")
}

async fn a_session_is_created_at_veriff_stored_and_reused(backend: Backend) {
    let Some((mut app, veriff)) = start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;

    let first = session_ok(&app, &token).await;
    let sessions = veriff.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        first,
        json!({"verification_url": sessions[0].url, "state": "created", "decision": null})
    );
    let request = &sessions[0].request;
    assert_eq!(request["vendorData"], wallet.address());
    assert_eq!(request["callback"], CALLBACK_URL);
    assert!(request["person"].is_object(), "{request}");
    assert!(request["timestamp"].as_str().unwrap().ends_with('Z'));

    assert_eq!(session_ok(&app, &token).await, first);
    assert_eq!(veriff.sessions().len(), 1, "a fresh session is reused");

    // Stored before it was answered: a restarted server still reuses it.
    app.restart().await;
    veriff.set_webhook_base(&app.app().base_url());
    assert_eq!(session_ok(&app, &token).await, first);
    assert_eq!(veriff.sessions().len(), 1);
    app.stop().await;
}

async fn concurrent_requests_share_one_new_session(backend: Backend) {
    let Some((app, veriff)) = start(backend).await else {
        return;
    };
    let token = app.access_token(&Wallet::random()).await;
    let answers = futures::future::join_all((0..6).map(|_| veriff_session(&app, &token))).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body, &answers[0].1);
    }
    assert_eq!(veriff.sessions().len(), 1);
    app.stop().await;
}

async fn a_session_older_than_seven_days_is_replaced(backend: Backend) {
    let Some((app, veriff)) = start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let first = session_ok(&app, &app.access_token(&wallet).await).await;

    // Access tokens last a day, so each step logs in again.
    app.clock.advance_ms(7 * DAY_MS - 60_000);
    let token = app.access_token(&wallet).await;
    assert_eq!(session_ok(&app, &token).await, first);
    assert_eq!(veriff.sessions().len(), 1);

    app.clock.advance_ms(60_000);
    let replaced = session_ok(&app, &token).await;
    assert_eq!(veriff.sessions().len(), 2);
    assert_eq!(replaced["verification_url"], veriff.sessions()[1].url);
    assert_ne!(replaced["verification_url"], first["verification_url"]);
    assert_eq!(replaced["state"], "created");
    assert_eq!(session_ok(&app, &token).await, replaced);
    app.stop().await;
}

async fn approved_completes_kyc_and_stores_the_document(backend: Backend) {
    let Some((app, veriff)) = start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    let session = session_ok(&app, &token).await;
    let id = session_id_of(&veriff, session["verification_url"].as_str().unwrap());
    assert!(!kyc_completed(&app, &token).await);

    let decision = Decision::approved()
        .with_names("Ada", "Lovelace")
        .with_valid_until(Some("2031-05-17"));
    let status = veriff
        .send_decision(&id, &decision, SignatureScheme::Hmac)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(kyc_completed(&app, &token).await);

    let address = WalletAddress::parse(&wallet.address()).unwrap();
    let kyc = app
        .app()
        .actors()
        .kyc()
        .status(&address)
        .await
        .unwrap()
        .unwrap();
    let valid_until = NaiveDate::from_ymd_opt(2031, 5, 17).unwrap();
    assert!(kyc.completed);
    assert_eq!(kyc.first_name.as_deref(), Some("Ada"));
    assert_eq!(kyc.last_name.as_deref(), Some("Lovelace"));
    assert_eq!(kyc.document_type.as_deref(), Some("DRIVERS_LICENSE"));
    assert_eq!(kyc.document_country.as_deref(), Some("GB"));
    assert_eq!(kyc.document_valid_until, Some(valid_until));
    assert_eq!(kyc.session_id.as_deref(), Some(id.as_str()));
    assert!(kyc.is_valid_on(valid_until));
    assert!(!kyc.is_valid_on(valid_until.succ_opt().unwrap()));

    let stored = stored_session(&app, &id).await;
    let stored_decision = stored.decision.unwrap();
    assert_eq!(stored_decision.code, 9001);
    assert_eq!(stored_decision.document_valid_until, Some(valid_until));
    assert_eq!(
        stored_decision.person_last_name.as_deref(),
        Some("Lovelace")
    );

    // Approved sessions are reused, with their decision.
    let again = session_ok(&app, &token).await;
    assert_eq!(again["verification_url"], session["verification_url"]);
    assert_eq!(again["decision"]["status"], "approved");
    assert_eq!(again["decision"]["code"], 9001);
    assert_eq!(again["decision"]["session_id"], id);
    assert_eq!(
        again["decision"]["decision_time"],
        "2019-11-06T07:18:36.916Z"
    );
    assert_eq!(veriff.sessions().len(), 1);
    app.stop().await;
}

async fn an_expired_document_is_reported_for_whitelisting(backend: Backend) {
    let Some((app, veriff)) = start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    let session = session_ok(&app, &token).await;
    let id = session_id_of(&veriff, session["verification_url"].as_str().unwrap());
    let decision = Decision::approved().with_valid_until(Some("2020-01-31"));
    let status = veriff
        .send_decision(&id, &decision, SignatureScheme::Legacy)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let address = WalletAddress::parse(&wallet.address()).unwrap();
    let kyc = app
        .app()
        .actors()
        .kyc()
        .status(&address)
        .await
        .unwrap()
        .unwrap();
    let today = chrono::Utc::now().date_naive();
    assert!(kyc.completed);
    assert!(kyc.is_expired_on(today));
    assert!(!kyc.is_valid_on(today));
    // A wallet that never logged in has no KYC at all.
    let stranger = WalletAddress::parse(&Wallet::random().address()).unwrap();
    assert_eq!(
        app.app().actors().kyc().status(&stranger).await.unwrap(),
        None
    );
    app.stop().await;
}

async fn resubmission_keeps_the_session_and_declined_or_expired_replace_it(backend: Backend) {
    let Some((app, veriff)) = start(backend).await else {
        return;
    };
    let token = app.access_token(&Wallet::random()).await;
    let first = session_ok(&app, &token).await;
    let first_id = session_id_of(&veriff, first["verification_url"].as_str().unwrap());

    let send = |id: String, decision: Decision| {
        let veriff = &veriff;
        async move {
            let status = veriff
                .send_decision(&id, &decision, SignatureScheme::Hmac)
                .await
                .unwrap();
            assert_eq!(status, 200);
        }
    };
    send(first_id.clone(), Decision::resubmission_requested()).await;
    let again = session_ok(&app, &token).await;
    assert_eq!(again["verification_url"], first["verification_url"]);
    assert_eq!(again["decision"]["status"], "resubmission_requested");
    assert_eq!(again["decision"]["code"], 9103);
    assert_eq!(veriff.sessions().len(), 1);

    send(first_id.clone(), Decision::declined()).await;
    assert_eq!(
        stored_session(&app, &first_id).await.decision.unwrap().code,
        9102
    );
    let second = session_ok(&app, &token).await;
    assert_eq!(veriff.sessions().len(), 2);
    assert_ne!(second["verification_url"], first["verification_url"]);
    assert_eq!(second["state"], "created");
    assert_eq!(
        second["decision"],
        json!({"session_id": first_id, "status": "declined", "code": 9102,
            "reason": "Physical document not used", "reason_code": 101,
            "decision_time": "2019-11-06T07:18:36.916Z",
            "acceptance_time": "2019-11-06T07:15:27.000Z"})
    );
    // The new session is reused from now on, with its own (no) decision.
    let reused = session_ok(&app, &token).await;
    assert_eq!(reused["verification_url"], second["verification_url"]);
    assert_eq!(reused["decision"], Value::Null);

    let second_id = session_id_of(&veriff, second["verification_url"].as_str().unwrap());
    send(second_id.clone(), Decision::expired()).await;
    let third = session_ok(&app, &token).await;
    assert_eq!(veriff.sessions().len(), 3);
    assert_eq!(third["decision"]["status"], "expired");
    assert_eq!(third["decision"]["code"], 9104);
    assert_eq!(third["decision"]["session_id"], second_id);

    let third_id = session_id_of(&veriff, third["verification_url"].as_str().unwrap());
    send(third_id.clone(), Decision::abandoned()).await;
    let fourth = session_ok(&app, &token).await;
    assert_eq!(veriff.sessions().len(), 4);
    assert_eq!(fourth["decision"]["status"], "abandoned");
    assert!(!kyc_completed(&app, &token).await);
    app.stop().await;
}

async fn events_record_the_users_progress(backend: Backend) {
    let Some((app, veriff)) = start(backend).await else {
        return;
    };
    let token = app.access_token(&Wallet::random()).await;
    let session = session_ok(&app, &token).await;
    let id = session_id_of(&veriff, session["verification_url"].as_str().unwrap());
    for (code, action) in [(7001, "started"), (7002, "submitted")] {
        let status = veriff
            .send_event(&id, code, action, SignatureScheme::Hmac)
            .await
            .unwrap();
        assert_eq!(status, 200);
        let answer = session_ok(&app, &token).await;
        assert_eq!(answer["state"], action);
        assert_eq!(answer["verification_url"], session["verification_url"]);
        let stored = stored_session(&app, &id).await;
        assert_eq!(stored.last_event_code, Some(code));
    }
    assert_eq!(veriff.sessions().len(), 1);
    app.stop().await;
}

async fn both_signature_schemes_are_accepted(backend: Backend) {
    let Some((app, veriff)) = start(backend).await else {
        return;
    };
    let token = app.access_token(&Wallet::random()).await;
    let session = session_ok(&app, &token).await;
    let id = session_id_of(&veriff, session["verification_url"].as_str().unwrap());
    let status = veriff
        .send_event(&id, 7001, "started", SignatureScheme::Legacy)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let status = veriff
        .send_event(&id, 7002, "submitted", SignatureScheme::Hmac)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let status = veriff
        .send_decision(&id, &Decision::approved(), SignatureScheme::Legacy)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(kyc_completed(&app, &token).await);

    // Both headers at once are accepted too, when both are right.
    let body = veriff.decision_body(&id, &Decision::approved());
    let mut headers = veriff.signed_headers(&body, SignatureScheme::Hmac);
    headers.extend(
        veriff
            .signed_headers(&body, SignatureScheme::Legacy)
            .into_iter()
            .skip(1),
    );
    let status = veriff
        .post_webhook("/veriff/webhook/decision", body, &headers)
        .await
        .unwrap();
    assert_eq!(status, 200);
    app.stop().await;
}

async fn forged_webhooks_answer_401_and_change_nothing(backend: Backend) {
    let Some((app, veriff)) = start(backend).await else {
        return;
    };
    let token = app.access_token(&Wallet::random()).await;
    let session = session_ok(&app, &token).await;
    let id = session_id_of(&veriff, session["verification_url"].as_str().unwrap());
    let before = stored_session(&app, &id).await;

    let bodies = [
        (
            "/veriff/webhook/decision",
            veriff.decision_body(&id, &Decision::approved()),
        ),
        (
            "/veriff/webhook/event",
            veriff.event_body(&id, 7002, "submitted"),
        ),
    ];
    let other_secret = b"not-the-shared-secret";
    for (path, body) in bodies {
        let hmac = ampflow_standins::veriff::hmac_signature(SHARED_SECRET.as_bytes(), &body);
        let legacy = ampflow_standins::veriff::legacy_signature(SHARED_SECRET.as_bytes(), &body);
        let wrong_hmac = ampflow_standins::veriff::hmac_signature(other_secret, &body);
        let wrong_legacy = ampflow_standins::veriff::legacy_signature(other_secret, &body);
        let mut tampered = body.clone();
        let last = tampered.len() - 1;
        tampered.insert(last, b' ');
        let tampered_text = String::from_utf8(body.clone())
            .unwrap()
            .replace("selfid", "selfie")
            .replace("MORGAN", "MORGAM")
            .into_bytes();
        let cases: Vec<ForgedDelivery> = vec![
            (
                "wrong HMAC",
                body.clone(),
                vec![
                    ("X-AUTH-CLIENT", API_KEY.into()),
                    ("X-HMAC-SIGNATURE", wrong_hmac),
                ],
            ),
            (
                "wrong legacy",
                body.clone(),
                vec![
                    ("X-AUTH-CLIENT", API_KEY.into()),
                    ("X-SIGNATURE", wrong_legacy),
                ],
            ),
            (
                "HMAC in the legacy header",
                body.clone(),
                vec![
                    ("X-AUTH-CLIENT", API_KEY.into()),
                    ("X-SIGNATURE", hmac.clone()),
                ],
            ),
            (
                "right HMAC, wrong legacy",
                body.clone(),
                vec![
                    ("X-AUTH-CLIENT", API_KEY.into()),
                    ("X-HMAC-SIGNATURE", hmac.clone()),
                    ("X-SIGNATURE", "00".repeat(32)),
                ],
            ),
            (
                "not hex",
                body.clone(),
                vec![
                    ("X-AUTH-CLIENT", API_KEY.into()),
                    ("X-HMAC-SIGNATURE", "zz".repeat(32)),
                ],
            ),
            (
                "no signature",
                body.clone(),
                vec![("X-AUTH-CLIENT", API_KEY.into())],
            ),
            (
                "no X-AUTH-CLIENT",
                body.clone(),
                vec![("X-HMAC-SIGNATURE", hmac.clone())],
            ),
            ("no headers", body.clone(), vec![]),
            (
                "wrong X-AUTH-CLIENT",
                body.clone(),
                vec![
                    ("X-AUTH-CLIENT", "someone-else".into()),
                    ("X-HMAC-SIGNATURE", hmac.clone()),
                ],
            ),
            (
                "wrong X-AUTH-CLIENT, legacy",
                body.clone(),
                vec![
                    ("X-AUTH-CLIENT", format!("{API_KEY}x")),
                    ("X-SIGNATURE", legacy.clone()),
                ],
            ),
            (
                "tampered body, HMAC",
                tampered.clone(),
                vec![
                    ("X-AUTH-CLIENT", API_KEY.into()),
                    ("X-HMAC-SIGNATURE", hmac.clone()),
                ],
            ),
            (
                "tampered body, legacy",
                tampered_text.clone(),
                vec![
                    ("X-AUTH-CLIENT", API_KEY.into()),
                    ("X-SIGNATURE", legacy.clone()),
                ],
            ),
        ];
        for (case, body, headers) in cases {
            let mut request = app
                .client
                .post(app.url(path))
                .header("content-type", "application/json")
                .body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let (status, answer) = app.send(request).await;
            assert_eq!(status, 401, "{path} {case}: {answer}");
            assert_error(status, &answer, 401, "authentication_error", None);
        }
    }
    assert_eq!(stored_session(&app, &id).await, before);
    assert!(!kyc_completed(&app, &token).await);
    assert_eq!(session_ok(&app, &token).await, session);
    app.stop().await;
}

async fn a_repeated_delivery_changes_nothing(backend: Backend) {
    let Some((app, veriff)) = start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    let session = session_ok(&app, &token).await;
    let id = session_id_of(&veriff, session["verification_url"].as_str().unwrap());

    let event = veriff.event_body(&id, 7001, "started");
    let event_headers = veriff.signed_headers(&event, SignatureScheme::Hmac);
    let decision = veriff.decision_body(&id, &Decision::approved());
    let decision_headers = veriff.signed_headers(&decision, SignatureScheme::Hmac);
    for (path, body, headers) in [
        ("/veriff/webhook/event", &event, &event_headers),
        ("/veriff/webhook/decision", &decision, &decision_headers),
    ] {
        let status = veriff
            .post_webhook(path, body.clone(), headers)
            .await
            .unwrap();
        assert_eq!(status, 200);
        let stored = stored_session(&app, &id).await;
        let user = app
            .app()
            .storage()
            .identity()
            .find_user(&ampflow_types::WalletAddress::parse(&wallet.address()).unwrap())
            .await
            .unwrap();
        for _ in 0..2 {
            let status = veriff
                .post_webhook(path, body.clone(), headers)
                .await
                .unwrap();
            assert_eq!(status, 200, "a repeated delivery is acknowledged");
            assert_eq!(stored_session(&app, &id).await, stored);
            let again = app
                .app()
                .storage()
                .identity()
                .find_user(&ampflow_types::WalletAddress::parse(&wallet.address()).unwrap())
                .await
                .unwrap();
            assert_eq!(again, user);
        }
    }
    // After a final decision, a different one is acknowledged but not applied.
    let stored = stored_session(&app, &id).await;
    let status = veriff
        .send_decision(&id, &Decision::declined(), SignatureScheme::Legacy)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(stored_session(&app, &id).await, stored);
    assert!(kyc_completed(&app, &token).await);
    app.stop().await;
}

async fn webhooks_for_an_unknown_session_answer_404(backend: Backend) {
    let Some((app, veriff)) = start(backend).await else {
        return;
    };
    let unknown = uuid::Uuid::new_v4().to_string();
    for (path, body) in [
        (
            "/veriff/webhook/decision",
            veriff.decision_body(&unknown, &Decision::approved()),
        ),
        (
            "/veriff/webhook/event",
            veriff.event_body(&unknown, 7001, "started"),
        ),
    ] {
        let headers = veriff.signed_headers(&body, SignatureScheme::Hmac);
        let mut request = app.client.post(app.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let (status, answer) = app.send(request).await;
        assert_error(status, &answer, 404, "not_found", None);
    }
    app.stop().await;
}

async fn a_malformed_webhook_answers_400(backend: Backend) {
    let Some((app, veriff)) = start(backend).await else {
        return;
    };
    let token = app.access_token(&Wallet::random()).await;
    let session = session_ok(&app, &token).await;
    let id = session_id_of(&veriff, session["verification_url"].as_str().unwrap());
    let bad_date = String::from_utf8(veriff.decision_body(&id, &Decision::approved()))
        .unwrap()
        .replace("2222-04-20", "20/04/2222");
    let bad_status = String::from_utf8(veriff.decision_body(&id, &Decision::approved()))
        .unwrap()
        .replace("\"approved\"", "\"maybe\"");
    for (path, body, param) in [
        ("/veriff/webhook/decision", "{\"status\":".to_string(), None),
        ("/veriff/webhook/decision", "{}".to_string(), Some("status")),
        (
            "/veriff/webhook/decision",
            bad_date,
            Some("verification.document.validUntil"),
        ),
        (
            "/veriff/webhook/decision",
            bad_status,
            Some("verification.status"),
        ),
        (
            "/veriff/webhook/event",
            json!({"id": id, "code": "x"}).to_string(),
            Some("code"),
        ),
    ] {
        let body = body.into_bytes();
        let headers = veriff.signed_headers(&body, SignatureScheme::Hmac);
        let mut request = app.client.post(app.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let (status, answer) = app.send(request).await;
        assert_error(status, &answer, 400, "invalid_request", param);
    }
    assert_eq!(stored_session(&app, &id).await.version, 0);
    app.stop().await;
}

async fn a_session_needs_a_valid_jwt(backend: Backend) {
    let Some((app, veriff)) = start(backend).await else {
        return;
    };
    let (status, body) = app.send(app.client.post(app.url("/veriff/session"))).await;
    assert_error(status, &body, 401, "authentication_error", None);
    let (status, body) = veriff_session(&app, "not.a.token").await;
    assert_error(status, &body, 401, "authentication_error", None);

    // A logged-out session's token is refused too.
    let token = app.access_token(&Wallet::random()).await;
    let (status, _) = app.post_auth("/user/logout", &token, json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = veriff_session(&app, &token).await;
    assert_error(status, &body, 401, "authentication_error", None);
    assert!(veriff.sessions().is_empty());
    app.stop().await;
}

async fn without_veriff_configured_kyc_answers_503(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let token = app.access_token(&Wallet::random()).await;
    let (status, body) = veriff_session(&app, &token).await;
    assert_error(status, &body, 503, "veriff_not_configured", None);
    for path in ["/veriff/webhook/decision", "/veriff/webhook/event"] {
        let request = app
            .client
            .post(app.url(path))
            .header("X-AUTH-CLIENT", API_KEY)
            .header("X-HMAC-SIGNATURE", "00")
            .body("{}");
        let (status, body) = app.send(request).await;
        assert_error(status, &body, 503, "veriff_not_configured", None);
    }
    app.stop().await;
}

async fn veriff_unreachable_or_refusing_answers_503(backend: Backend) {
    // A port nobody listens on: bound, then released.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let Some(app) = start_app(backend, format!("http://{closed}"), API_KEY).await else {
        return;
    };
    let token = app.access_token(&Wallet::random()).await;
    for _ in 0..2 {
        let (status, body) = veriff_session(&app, &token).await;
        assert_error(status, &body, 503, "veriff_unavailable", None);
        assert!(!body.to_string().contains(&closed.to_string()), "{body}");
    }
    app.stop().await;

    // Veriff refusing our credentials: still 503, and nothing is stored.
    let veriff = VeriffStandIn::start(API_KEY, SHARED_SECRET).await.unwrap();
    let app = start_app(backend, veriff.base_url(), "not-the-api-key")
        .await
        .unwrap();
    let token = app.access_token(&Wallet::random()).await;
    let (status, body) = veriff_session(&app, &token).await;
    assert_error(status, &body, 503, "veriff_unavailable", None);
    assert_eq!(veriff.rejected_requests(), 1);
    assert!(veriff.sessions().is_empty());
    app.stop().await;
}
