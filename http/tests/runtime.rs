//! The actor runtime seen from outside: supervision, restart caps, passivation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use ampflow_storage::testdb::Backend;
use ampflow_types::WalletAddress;
use common::{TestApp, Wallet, assert_error, wait_until};
use serde_json::json;

on_both_databases!(
    a_killed_wallet_actor_is_restarted_and_the_next_request_succeeds,
    an_entity_that_keeps_crashing_is_marked_failed_until_cleared,
    idle_actors_stop_and_their_state_is_reloaded_on_the_next_request,
);

async fn a_killed_wallet_actor_is_restarted_and_the_next_request_succeeds(backend: Backend) {
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let wallet = Wallet::random();
    let key = WalletAddress::parse(&wallet.address()).unwrap();
    let payload = app.payload(&wallet.address()).await;

    let wallets = app.app().actors().wallets().clone();
    let before = wallets
        .running(&key)
        .expect("the wallet actor runs after /authorize");
    before.kill();
    let restarted = wait_until(Duration::from_secs(10), || {
        let wallets = wallets.clone();
        let before_id = before.get_id();
        async move {
            wallets
                .running(&key)
                .is_some_and(|a| a.get_id() != before_id)
        }
    })
    .await;
    assert!(restarted, "the supervisor restarts the killed actor");

    // Mid-flow: the nonce issued before the kill was reloaded from storage.
    let (status, body) = app
        .post(
            "/authorize/jwt",
            json!({"address": wallet.address(), "signed_payload": wallet.sign(&payload)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

async fn an_entity_that_keeps_crashing_is_marked_failed_until_cleared(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |s| s.actors.restarts_max = 2).await else {
        return;
    };
    let wallet = Wallet::random();
    let key = WalletAddress::parse(&wallet.address()).unwrap();
    let wallets = app.app().actors().wallets().clone();
    let storage = app.app().storage().clone();
    app.post("/authorize", json!({"address": wallet.address()}))
        .await;

    for _ in 0..3 {
        let actor = wallets.running(&key).expect("running");
        let id = actor.get_id();
        actor.kill();
        let storage = storage.clone();
        let wallets = wallets.clone();
        let moved_on = wait_until(Duration::from_secs(10), || {
            let (storage, wallets) = (storage.clone(), wallets.clone());
            async move {
                let failed = storage
                    .failures()
                    .entity_failure("wallet", &key.to_string())
                    .await
                    .unwrap()
                    .is_some();
                failed || wallets.running(&key).is_some_and(|a| a.get_id() != id)
            }
        })
        .await;
        assert!(moved_on);
    }
    let failure = storage
        .failures()
        .entity_failure("wallet", &key.to_string())
        .await
        .unwrap()
        .expect("marked failed");
    assert!(failure.reason.contains("killed"), "{failure:?}");
    assert!(wallets.running(&key).is_none());

    let (status, body) = app
        .post("/authorize", json!({"address": wallet.address()}))
        .await;
    assert_error(status, &body, 503, "entity_failed", None);
    assert!(
        !body.to_string().contains("killed"),
        "internals stay out of the answer: {body}"
    );

    assert!(
        storage
            .failures()
            .clear_entity_failure("wallet", &key.to_string())
            .await
            .unwrap()
    );
    let (status, _) = app
        .post("/authorize", json!({"address": wallet.address()}))
        .await;
    assert_eq!(status, 200);
    app.stop().await;
}

async fn idle_actors_stop_and_their_state_is_reloaded_on_the_next_request(backend: Backend) {
    let Some(app) = TestApp::start_with(backend, |s| s.actors.idle_timeout_ms = 100).await else {
        return;
    };
    let wallets = app.app().actors().wallets().clone();
    let wallet = Wallet::random();
    let tokens = app.login(&wallet).await;
    let payload = app.payload(&wallet.address()).await;

    // Idleness is read on the injected clock: the actors have been idle for 150 ms.
    app.clock.advance_ms(150);
    let passivated = wait_until(Duration::from_secs(10), || {
        let wallets = wallets.clone();
        async move { wallets.live_count() == 0 }
    })
    .await;
    assert!(passivated, "an idle actor stops");

    assert_eq!(
        app.get_auth("/user", tokens["access_token"].as_str().unwrap())
            .await
            .0,
        200
    );
    let (status, _) = app
        .post(
            "/authorize/jwt",
            json!({"address": wallet.address(), "signed_payload": wallet.sign(&payload)}),
        )
        .await;
    assert_eq!(status, 200, "the pending nonce was reloaded from storage");
    app.stop().await;
}

/// Many concurrent requests while every actor idle for a millisecond of the injected clock is
/// retired (the clock moves on between rounds; the sweeper ticks every 50 ms): none is lost
/// or fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retiring_idle_actors_never_loses_a_request() {
    let app = TestApp::start_with(Backend::Sqlite, |s| s.actors.idle_timeout_ms = 1)
        .await
        .unwrap();
    let wallets: Vec<Wallet> = (0..4).map(|_| Wallet::random()).collect();
    let sessions: Vec<String> = {
        let mut tokens = Vec::new();
        for wallet in &wallets {
            tokens.push(
                app.login(wallet).await["access_token"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        tokens
    };
    for _ in 0..25 {
        app.clock.advance_ms(2);
        let requests = sessions.iter().map(|token| app.get_auth("/user", token));
        for (status, body) in futures::future::join_all(requests).await {
            assert_eq!(status, 200, "{body}");
        }
    }
    app.stop().await;
}
