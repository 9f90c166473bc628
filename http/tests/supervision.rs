#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every background task runs under the supervisor: a panic injected into it (fail points,
//! compiled into test builds only) is survived and the work completes, each restart is counted
//! in `/metrics`, and a task that keeps panicking past the cap is given up and named by
//! `/ready`.
//!
//! Fail points are global to the test process, so each test holds a `FailScenario` (which
//! serialises them and clears every fail point when dropped).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy::primitives::U256;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use ampflow_chain::deploy::{FaucetFunding, deploy_platform};
use ampflow_chain::{AutoInvestSettings, ChainSettings, FaucetSettings};
use ampflow_storage::testdb::Backend;
use ampflow_types::ledger::{LedgerExport, verify_export};
use common::anvil::{Anvil, CHAIN_ID, DEV_KEY_0};
use common::{TestApp, Wallet, assert_error, donation_entry, verified_organisation, wait_until};
use serde_json::json;

const REWARD_WEI: u64 = 100_000_000_000_000_000;
const DEADLINE: Duration = Duration::from_secs(30);
/// When the supervision test's ledger entries are made (2025-01-15).
const LEDGER_AT_MS: i64 = 1_736_899_200_000;

on_both_databases!(
    a_panicking_storage_batch_fails_its_callers_and_the_next_login_succeeds,
    a_panicking_ledger_writer_loses_no_entry_and_the_chain_stays_whole,
    panics_in_the_batcher_and_the_sender_still_pay_the_faucet_once,
    the_executor_the_checkpoint_job_and_the_chores_keep_running_after_a_panic,
    a_task_panicking_past_the_cap_is_named_by_ready,
);

/// `background_task_restarts_total{task}` as `/metrics` shows it now (the recorder is shared
/// by every test in this process, so tests compare before and after).
async fn restarts(app: &TestApp, task: &str) -> u64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("background_task_restarts_total{{task=\"{task}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

async fn restarted(app: &TestApp, task: &str, before: u64, times: u64) -> bool {
    wait_until(DEADLINE, || async {
        restarts(app, task).await >= before + times
    })
    .await
}

/// Counts the hits of a fail point from now on (after it has done its injected panics).
fn count_hits(name: &str) -> Arc<AtomicU64> {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    fail::cfg_callback(name, move || {
        counter.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    hits
}

async fn a_panicking_storage_batch_fails_its_callers_and_the_next_login_succeeds(backend: Backend) {
    let scenario = fail::FailScenario::setup();
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let before = restarts(&app, "storage_batch").await;
    fail::cfg("storage_batch_panic", "1*panic").unwrap();
    let wallet = Wallet::random();
    let (status, body) = app
        .post("/authorize", json!({"address": wallet.address()}))
        .await;
    // Nothing was written: a 503 the client may retry at once.
    assert_error(status, &body, 503, "storage_unavailable", None);
    assert!(restarted(&app, "storage_batch", before, 1).await);
    // The batcher runs again on the same queue.
    let login = app.login(&wallet).await;
    assert!(login["access_token"].is_string(), "{login}");
    let (status, _) = app
        .get_auth("/user", login["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, 200);
    assert!(app.app().actors().supervisor().failed().is_empty());
    drop(scenario);
}

async fn a_panicking_ledger_writer_loses_no_entry_and_the_chain_stays_whole(backend: Backend) {
    let scenario = fail::FailScenario::setup();
    let Some(app) = TestApp::start(backend).await else {
        return;
    };
    let org = verified_organisation(&app, "Supervised", None).await;
    let ledger = app.app().actors().ledger();
    let before = restarts(&app, "ledger").await;
    fail::cfg("ledger_writer_panic", "1*panic").unwrap();
    // The first append's group is abandoned: its caller gets an error, as a webhook would
    // (and Stripe delivers it again). Appending it again finds the chain as it was.
    assert!(matches!(
        ledger.append(&org, donation_entry(0, LEDGER_AT_MS)).await,
        Err(ampflow_actors::ledger::LedgerError::Unavailable(_))
    ));
    assert!(restarted(&app, "ledger", before, 1).await);
    let appends = (0..5).map(|n| ledger.append(&org, donation_entry(n, LEDGER_AT_MS + n)));
    for result in futures::future::join_all(appends).await {
        result.unwrap();
    }
    let export = app
        .client
        .get(app.url(&format!("/public/organisations/{org}/ledger/export")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let export: LedgerExport = serde_json::from_slice(&export).unwrap();
    assert_eq!(
        verify_export(&export),
        Ok(5),
        "every entry once, in one chain"
    );
    drop(scenario);
}

fn signer() -> PrivateKeySigner {
    DEV_KEY_0.parse().unwrap()
}

/// A server with the platform deployed on a fresh anvil, the faucet and auto-invest on.
async fn chain_app(
    backend: Backend,
    tweak: impl FnOnce(&mut ampflow_http::config::Settings),
) -> Option<(Anvil, TestApp)> {
    let anvil = Anvil::start().await;
    let contracts = deploy_platform(
        &anvil.url,
        signer(),
        FaucetFunding {
            reward_wei: U256::from(REWARD_WEI),
            balance_threshold_wei: U256::from(REWARD_WEI),
            initial_balance_wei: U256::from(100u64) * U256::from(REWARD_WEI),
        },
    )
    .await
    .unwrap();
    let chain = ChainSettings {
        chain_id: CHAIN_ID,
        name: "anvil".into(),
        rpc_url: anvil.url.clone(),
        contracts: Some(contracts),
        faucet: Some(FaucetSettings {
            max_wait_ms: 100,
            retry_backoff_ms: 100,
            ..FaucetSettings::default()
        }),
        auto_invest: Some(AutoInvestSettings {
            tick_interval_ms: 50,
            ..AutoInvestSettings::default()
        }),
        tx: ampflow_chain::tx::TxSettings {
            poll_interval_ms: 50,
            max_backoff_ms: 500,
            ..Default::default()
        },
        ..Default::default()
    };
    let app = TestApp::start_signing(backend, HashMap::from([(CHAIN_ID, signer())]), |s| {
        s.chains = vec![chain];
        tweak(s);
    })
    .await?;
    Some((anvil, app))
}

async fn panics_in_the_batcher_and_the_sender_still_pay_the_faucet_once(backend: Backend) {
    let scenario = fail::FailScenario::setup();
    let Some((anvil, app)) = chain_app(backend, |_| {}).await else {
        return;
    };
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    let nonce_before = provider
        .get_transaction_count(signer().address())
        .await
        .unwrap();
    let (batcher, sender) = (
        restarts(&app, "batcher").await,
        restarts(&app, "tx_sender").await,
    );
    fail::cfg("batcher_panic", "1*panic").unwrap();
    fail::cfg("tx_sender_panic", "1*panic").unwrap();

    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    let (status, body) = app
        .post_auth(
            &format!("/faucet/{CHAIN_ID}"),
            &token,
            json!({"re_captcha_token": "t"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let path = format!("/faucet/{CHAIN_ID}/requests/{id}");
    let paid = wait_until(DEADLINE, || async {
        app.clock.advance_ms(100);
        app.get_auth(&path, &token).await.1["status"] == "paid"
    })
    .await;
    assert!(paid, "{}", app.get_auth(&path, &token).await.1);
    assert!(restarted(&app, "batcher", batcher, 1).await);
    assert!(restarted(&app, "tx_sender", sender, 1).await);
    assert_eq!(
        provider.get_balance(wallet.alloy_address()).await.unwrap(),
        U256::from(REWARD_WEI),
        "paid exactly once"
    );
    assert_eq!(
        provider
            .get_transaction_count(signer().address())
            .await
            .unwrap(),
        nonce_before + 1,
        "one transaction"
    );
    drop(scenario);
}

async fn the_executor_the_checkpoint_job_and_the_chores_keep_running_after_a_panic(
    backend: Backend,
) {
    let scenario = fail::FailScenario::setup();
    // The sweepers tick every 50 ms with this idle timeout.
    let Some((_anvil, app)) = chain_app(backend, |s| {
        s.actors.idle_timeout_ms = 200;
        s.checkpoints.job_enabled = true;
        s.checkpoints.interval_ms = 50;
    })
    .await
    else {
        return;
    };
    for (task, point) in [
        ("executor", "executor_panic"),
        ("sweeper", "sweeper_panic"),
        ("checkpoints", "checkpoint_job_panic"),
    ] {
        let before = restarts(&app, task).await;
        fail::cfg(point, "1*panic").unwrap();
        assert!(restarted(&app, task, before, 1).await, "{task} restarted");
        let hits = count_hits(point);
        assert!(
            wait_until(DEADLINE, || async { hits.load(Ordering::SeqCst) >= 2 }).await,
            "{task} runs again after its restart"
        );
    }
    assert!(app.app().actors().supervisor().failed().is_empty());
    let (status, _) = app.send(app.client.get(app.url("/ready"))).await;
    assert_eq!(status, 200);
    drop(scenario);
}

async fn a_task_panicking_past_the_cap_is_named_by_ready(backend: Backend) {
    let scenario = fail::FailScenario::setup();
    // The janitor runs at start, then every ten minutes: every run panics at once.
    fail::cfg("janitor_panic", "panic").unwrap();
    let Some(app) = TestApp::start_with(backend, |s| s.actors.restarts_max = 2).await else {
        return;
    };
    let given_up = wait_until(DEADLINE, || async {
        !app.app().actors().supervisor().failed().is_empty()
    })
    .await;
    assert!(given_up);
    let failed = app.app().actors().supervisor().failed();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].task, "janitor");
    assert_eq!(failed[0].panics, 3, "the first run and two restarts");
    let (status, body) = app.send(app.client.get(app.url("/ready"))).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("janitor"),
        "{body}"
    );
    // Everything else still serves.
    let (status, _) = app.send(app.client.get(app.url("/health"))).await;
    assert_eq!(status, 200);
    drop(scenario);
}

/// Background work starts through the supervisor. A `tokio::spawn` in product code (outside
/// tests) must be one of these, each with the reason it is not a supervised task; a new one
/// fails this test until it goes through `Supervisor::spawn` or is listed here with its reason.
#[test]
fn background_tasks_start_only_through_the_supervisor() {
    let allowed: &[(&str, &str)] = &[
        ("runtime/src/lib.rs", "Supervisor::spawn itself"),
        (
            "actors/src/batcher.rs",
            "awaits Supervisor::supervise, then forgets a batcher given up",
        ),
        (
            "actors/src/registry.rs",
            "one-off: restarts a crashed entity actor (the entities' own supervision)",
        ),
        (
            "actors/src/wallet/kyc.rs",
            "one-off Veriff call, not idempotent: a panic answers its waiters with an error",
        ),
        (
            "http/src/server/mod.rs",
            "the accept loop, owned by RunningApp: its end is the server's",
        ),
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for crate_dir in ["types", "runtime", "storage", "chain", "actors", "http"] {
        let mut stack = vec![root.join(crate_dir).join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                // Unit tests sit at the end of a file, after `#[cfg(test)]`.
                let product = text.split("#[cfg(test)]").next().unwrap_or_default();
                let spawns = product.matches("tokio::spawn(").count()
                    + product.matches("task::spawn(").count();
                if spawns > 0 {
                    let relative = path
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    found.push((relative, spawns));
                }
            }
        }
    }
    found.sort();
    let unlisted: Vec<_> = found
        .iter()
        .filter(|(file, _)| !allowed.iter().any(|(a, _)| a == file))
        .collect();
    assert!(
        unlisted.is_empty(),
        "tokio::spawn outside the supervisor in {unlisted:?}: start background work with \
         Supervisor::spawn (ampflow_runtime), or list the file here with the reason"
    );
    for (file, spawns) in &found {
        assert_eq!(*spawns, 1, "{file}: one listed spawn, found {spawns}");
    }
}
