#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Auto-invest against a real anvil with the contracts deployed, on SQLite and PostgreSQL: the
//! investor gives the campaign a stablecoin allowance (through alloy), queues a task, and the
//! executor invests once the wallet is ready — exactly once, across restarts and across two
//! processes sharing one database.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use ampflow_chain::contracts::{Campaign, InvestService, Issuer, TestStablecoin};
use ampflow_chain::deploy::{DeployedContracts, FaucetFunding, deploy_platform};
use ampflow_chain::{AutoInvestSettings, ChainSettings};
use ampflow_storage::testdb::Backend;
use ampflow_storage::{AutoInvestStatus, AutoInvestTask};
use common::anvil::{Anvil, CHAIN_ID, DEV_KEY_0};
use common::{TestApp, Wallet, assert_error};
use serde_json::{Value, json};

on_both_databases!(
    a_ready_wallet_is_invested_once,
    a_smaller_allowance_invests_what_it_allows,
    a_wallet_not_whitelisted_waits_with_the_reason,
    in_process_refuses_changes_and_pending_merges,
    a_pending_task_expires,
    one_failing_record_does_not_fail_the_batch,
    a_restart_between_send_and_receipt_invests_once,
    a_task_in_process_shows_its_transaction_before_it_is_mined,
    a_task_completes_only_after_its_confirmations,
    bad_requests_are_refused,
);

/// The platform's executor signs with anvil's second account; the first owns the contracts.
const EXECUTOR_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
/// One stablecoin (6 decimals).
const USDC: u64 = 1_000_000;

struct Setup {
    anvil: Anvil,
    app: TestApp,
    contracts: DeployedContracts,
    /// The contracts' owner.
    owner: DynProvider,
}

fn executor() -> PrivateKeySigner {
    EXECUTOR_KEY.parse().unwrap()
}

fn chain_settings(
    anvil: &Anvil,
    contracts: &DeployedContracts,
    settings: AutoInvestSettings,
) -> ChainSettings {
    ChainSettings {
        chain_id: CHAIN_ID,
        name: "anvil".into(),
        rpc_url: anvil.url.clone(),
        contracts: Some(contracts.clone()),
        tx: ampflow_chain::tx::TxSettings {
            poll_interval_ms: 100,
            max_backoff_ms: 1_000,
            ..Default::default()
        },
        auto_invest: Some(settings),
        ..Default::default()
    }
}

fn fast_settings() -> AutoInvestSettings {
    AutoInvestSettings {
        tick_interval_ms: 100,
        recheck_interval_ms: 100,
        retry_backoff_ms: 100,
        ..AutoInvestSettings::default()
    }
}

async fn setup(backend: Backend, tweak: impl FnOnce(&mut AutoInvestSettings)) -> Option<Setup> {
    setup_with(backend, tweak, |_| {}).await
}

async fn setup_with(
    backend: Backend,
    tweak: impl FnOnce(&mut AutoInvestSettings),
    tweak_tx: impl FnOnce(&mut ampflow_chain::tx::TxSettings),
) -> Option<Setup> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let anvil = Anvil::start().await;
    let deployer: PrivateKeySigner = DEV_KEY_0.parse().unwrap();
    let contracts = deploy_platform(
        &anvil.url,
        deployer.clone(),
        FaucetFunding {
            reward_wei: U256::from(1u64),
            balance_threshold_wei: U256::from(1u64),
            initial_balance_wei: U256::ZERO,
        },
    )
    .await
    .unwrap();
    let owner = ProviderBuilder::new()
        .wallet(deployer)
        .connect_http(anvil.url.parse().unwrap())
        .erased();
    InvestService::new(contracts.invest_service, &owner)
        .updateCallerStatus(executor().address(), true)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let mut settings = fast_settings();
    tweak(&mut settings);
    let mut chain = chain_settings(&anvil, &contracts, settings);
    tweak_tx(&mut chain.tx);
    let signers = HashMap::from([(CHAIN_ID, executor())]);
    let app = TestApp::start_signing(backend, signers, |s| s.chains = vec![chain]).await?;
    // The deployment registered the sample campaign on chain; the database learns it as
    // `ampflow chain deploy` records it.
    trust(&app, &[contracts.campaign]).await;
    Some(Setup {
        anvil,
        app,
        contracts,
        owner,
    })
}

/// Records campaigns in the database's registry of trusted contracts.
async fn trust(app: &TestApp, campaigns: &[Address]) {
    app.app()
        .actors()
        .trusted()
        .record(CHAIN_ID, ampflow_types::TrustedKind::Campaign, campaigns)
        .await
        .unwrap();
}

impl Setup {
    /// A wallet with gas money, `balance` stablecoin, an allowance of `allowance` to
    /// `campaign`, whitelisted on the issuer when asked.
    async fn investor(
        &self,
        campaign: Address,
        balance: u64,
        allowance: u64,
        whitelisted: bool,
    ) -> Wallet {
        let wallet = Wallet::random();
        let _: () = self
            .owner
            .raw_request(
                "anvil_setBalance".into(),
                (
                    wallet.alloy_address(),
                    U256::from(10u64).pow(U256::from(18u64)),
                ),
            )
            .await
            .unwrap();
        if balance > 0 {
            TestStablecoin::new(self.contracts.stablecoin, &self.owner)
                .mint(wallet.alloy_address(), U256::from(balance))
                .send()
                .await
                .unwrap()
                .get_receipt()
                .await
                .unwrap();
        }
        if whitelisted {
            self.whitelist(&wallet).await;
        }
        if allowance > 0 {
            let own = ProviderBuilder::new()
                .wallet(wallet.signer())
                .connect_http(self.anvil.url.parse().unwrap());
            TestStablecoin::new(self.contracts.stablecoin, &own)
                .approve(campaign, U256::from(allowance))
                .send()
                .await
                .unwrap()
                .get_receipt()
                .await
                .unwrap();
        }
        wallet
    }

    async fn whitelist(&self, wallet: &Wallet) {
        Issuer::new(self.contracts.issuer, &self.owner)
            .approveWallet(wallet.alloy_address())
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
    }

    async fn raised(&self, campaign: Address) -> U256 {
        Campaign::new(campaign, &self.owner)
            .totalFundsRaised()
            .call()
            .await
            .unwrap()
    }

    async fn claimed(&self, campaign: Address, wallet: &Wallet) -> U256 {
        Campaign::new(campaign, &self.owner)
            .claimedAmount(wallet.alloy_address())
            .call()
            .await
            .unwrap()
    }

    async fn executor_nonce(&self) -> u64 {
        self.owner
            .get_transaction_count(executor().address())
            .await
            .unwrap()
    }

    /// A second campaign on the same stablecoin and issuer, trusting the InvestService when
    /// asked, and registered as trusted (on chain and in the database).
    async fn campaign(&self, trusted: bool) -> Address {
        let campaign = Campaign::deploy(
            &self.owner,
            self.contracts.stablecoin,
            self.contracts.issuer,
        )
        .await
        .unwrap();
        if trusted {
            campaign
                .setInvestService(self.contracts.invest_service)
                .send()
                .await
                .unwrap()
                .get_receipt()
                .await
                .unwrap();
        }
        InvestService::new(self.contracts.invest_service, &self.owner)
            .setCampaignStatus(*campaign.address(), true)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        trust(&self.app, &[*campaign.address()]).await;
        *campaign.address()
    }
}

async fn queue(app: &TestApp, token: &str, campaign: Address, amount: &str) -> (u16, Value) {
    app.post_auth(
        &format!("/auto_invest/{CHAIN_ID}/{campaign:#x}"),
        token,
        json!({"amount": amount}),
    )
    .await
}

async fn task(app: &TestApp, id: &str) -> AutoInvestTask {
    app.app()
        .storage()
        .auto_invest()
        .auto_invest_task(id)
        .await
        .unwrap()
        .expect("task")
}

/// Polls the task until `done` holds, letting the manual clock run so rechecks come due.
async fn wait_for(
    app: &TestApp,
    id: &str,
    what: &str,
    done: impl Fn(&AutoInvestTask) -> bool,
) -> AutoInvestTask {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let current = task(app, id).await;
        if done(&current) {
            return current;
        }
        assert!(Instant::now() < deadline, "task never {what}: {current:?}");
        app.clock.advance_ms(100);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_status(app: &TestApp, id: &str, status: AutoInvestStatus) -> AutoInvestTask {
    wait_for(app, id, status.as_str(), |t| t.status == status).await
}

async fn a_ready_wallet_is_invested_once(backend: Backend) {
    let Some(setup) = setup(backend, |_| {}).await else {
        return;
    };
    let campaign = setup.contracts.campaign;
    let wallet = setup
        .investor(campaign, 1_000 * USDC, 500 * USDC, true)
        .await;
    let token = setup.app.access_token(&wallet).await;
    let amount = (500 * USDC).to_string();
    // Any letter case: the campaign in EIP-55 form.
    let (status, body) = setup
        .app
        .post_auth(
            &format!("/auto_invest/{CHAIN_ID}/{}", campaign.to_checksum(None)),
            &token,
            json!({"amount": amount}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["wallet_address"], wallet.address());
    assert_eq!(body["campaign_address"], format!("{campaign:#x}"));
    assert_eq!(body["amount"], amount);
    let id = body["id"].as_str().unwrap().to_string();

    let done = wait_for_status(&setup.app, &id, AutoInvestStatus::Success).await;
    assert_eq!(
        done.invested_amount.map(|a| a.to_string()).as_deref(),
        Some(amount.as_str())
    );
    assert!(done.tx_hash.as_deref().unwrap().starts_with("0x"));
    assert_eq!(setup.raised(campaign).await, U256::from(500 * USDC));
    assert_eq!(
        setup.claimed(campaign, &wallet).await,
        U256::from(500 * USDC)
    );
    let stablecoin = TestStablecoin::new(setup.contracts.stablecoin, &setup.owner);
    assert_eq!(
        stablecoin.balanceOf(campaign).call().await.unwrap(),
        U256::from(500 * USDC),
        "the campaign's balance went up by the amount"
    );
    assert_eq!(
        stablecoin
            .balanceOf(wallet.alloy_address())
            .call()
            .await
            .unwrap(),
        U256::from(500 * USDC)
    );

    // The open list is empty; the history shows it.
    let (status, open) = setup
        .app
        .get_auth(
            &format!("/auto_invest/{CHAIN_ID}/{}", wallet.address()),
            &token,
        )
        .await;
    assert_eq!(status, 200, "{open}");
    assert_eq!(open, json!({"auto_invests": [], "next_cursor": null}));
    let (status, history) = setup
        .app
        .get_auth(
            &format!(
                "/auto_invest/{CHAIN_ID}/{}/history",
                wallet.checksum_address()
            ),
            &token,
        )
        .await;
    assert_eq!(status, 200, "{history}");
    let item = &history["auto_invests"][0];
    assert_eq!(item["status"], "success");
    assert_eq!(item["amount"], amount);
    assert_eq!(item["invested_amount"], amount);
    assert_eq!(item["tx_hash"], done.tx_hash.clone().unwrap());

    // Nothing more is sent: one investFor transaction in all.
    let nonce = setup.executor_nonce().await;
    setup.app.clock.advance_ms(1_000);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(setup.executor_nonce().await, nonce);
    assert_eq!(nonce, 1);
    setup.app.stop().await;
}

async fn a_smaller_allowance_invests_what_it_allows(backend: Backend) {
    let Some(setup) = setup(backend, |_| {}).await else {
        return;
    };
    let campaign = setup.contracts.campaign;
    let wallet = setup
        .investor(campaign, 1_000 * USDC, 120 * USDC, true)
        .await;
    let token = setup.app.access_token(&wallet).await;
    let (status, body) = queue(&setup.app, &token, campaign, &(300 * USDC).to_string()).await;
    assert_eq!(status, 200, "{body}");
    let done = wait_for_status(
        &setup.app,
        body["id"].as_str().unwrap(),
        AutoInvestStatus::Success,
    )
    .await;
    assert_eq!(done.amount, (300 * USDC).to_string());
    assert_eq!(
        done.invested_amount.map(|a| a.to_string()),
        Some((120 * USDC).to_string())
    );
    assert_eq!(setup.raised(campaign).await, U256::from(120 * USDC));
    let (_, history) = setup
        .app
        .get_auth(
            &format!("/auto_invest/{CHAIN_ID}/{}/history", wallet.address()),
            &token,
        )
        .await;
    assert_eq!(
        history["auto_invests"][0]["amount"],
        (300 * USDC).to_string()
    );
    assert_eq!(
        history["auto_invests"][0]["invested_amount"],
        (120 * USDC).to_string()
    );
    setup.app.stop().await;
}

async fn a_wallet_not_whitelisted_waits_with_the_reason(backend: Backend) {
    let Some(setup) = setup(backend, |_| {}).await else {
        return;
    };
    let campaign = setup.contracts.campaign;
    let wallet = setup
        .investor(campaign, 100 * USDC, 100 * USDC, false)
        .await;
    let token = setup.app.access_token(&wallet).await;
    let (status, body) = queue(&setup.app, &token, campaign, &(50 * USDC).to_string()).await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let waiting = wait_for(&setup.app, &id, "got a reason", |t| t.reason.is_some()).await;
    assert_eq!(waiting.status, AutoInvestStatus::Pending);
    assert!(
        waiting.reason.as_deref().unwrap().contains("not approved"),
        "{waiting:?}"
    );
    // The campaign owner sees it, with the reason.
    let (status, list) = setup
        .app
        .get_auth(
            &format!("/auto_invest/{CHAIN_ID}/campaign/{campaign:#x}"),
            &token,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["auto_invests"][0]["id"], id.as_str());
    assert_eq!(list["auto_invests"][0]["status"], "pending");
    assert!(
        list["auto_invests"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not approved")
    );
    assert_eq!(setup.raised(campaign).await, U256::ZERO);

    // Whitelisted later: the task goes through.
    setup.whitelist(&wallet).await;
    wait_for_status(&setup.app, &id, AutoInvestStatus::Success).await;
    assert_eq!(setup.raised(campaign).await, U256::from(50 * USDC));
    setup.app.stop().await;
}

async fn in_process_refuses_changes_and_pending_merges(backend: Backend) {
    let Some(setup) = setup(backend, |_| {}).await else {
        return;
    };
    let campaign = setup.contracts.campaign;
    let wallet = setup
        .investor(campaign, 1_000 * USDC, 1_000 * USDC, false)
        .await;
    let token = setup.app.access_token(&wallet).await;
    let (_, first) = queue(&setup.app, &token, campaign, "1000").await;
    let id = first["id"].as_str().unwrap().to_string();
    wait_for(&setup.app, &id, "got a reason", |t| t.reason.is_some()).await;
    // Pending: a second request replaces the amount and restarts the expiry.
    setup.app.clock.advance_ms(5_000);
    let (status, merged) = queue(&setup.app, &token, campaign, "2000").await;
    assert_eq!(status, 200, "{merged}");
    assert_eq!(merged["id"], id.as_str());
    assert_eq!(merged["amount"], "2000");
    assert!(merged["expires_at"].as_i64().unwrap() > first["expires_at"].as_i64().unwrap());
    let (_, list) = setup
        .app
        .get_auth(
            &format!("/auto_invest/{CHAIN_ID}/{}", wallet.address()),
            &token,
        )
        .await;
    assert_eq!(list["auto_invests"].as_array().unwrap().len(), 1, "{list}");

    // In process (mining paused, so the transaction waits for its receipt): refused.
    let _: () = setup
        .owner
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    setup.whitelist_pending(&wallet).await;
    wait_for_status(&setup.app, &id, AutoInvestStatus::InProcess).await;
    let (status, body) = queue(&setup.app, &token, campaign, "3000").await;
    assert_error(status, &body, 400, "auto_invest_in_process", None);
    let (status, body) = setup
        .app
        .delete_auth(&format!("/auto_invest/{CHAIN_ID}/{campaign:#x}"), &token)
        .await;
    assert_error(status, &body, 400, "auto_invest_in_process", None);
    let _: () = setup
        .owner
        .raw_request("evm_setAutomine".into(), (true,))
        .await
        .unwrap();
    let _: Value = setup
        .owner
        .raw_request("evm_mine".into(), ())
        .await
        .unwrap();
    let done = wait_for_status(&setup.app, &id, AutoInvestStatus::Success).await;
    assert_eq!(
        done.invested_amount.map(|a| a.to_string()).as_deref(),
        Some("2000")
    );

    // Finished: a new request starts a new task, which can be cancelled while pending.
    let (status, again) = queue(&setup.app, &token, campaign, "7").await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(again["id"], id.as_str());
    let (status, cancelled) = setup
        .app
        .delete_auth(&format!("/auto_invest/{CHAIN_ID}/{campaign:#x}"), &token)
        .await;
    // It may already be in process if the executor was quick; then it is refused.
    if status == 200 {
        assert_eq!(cancelled["status"], "cancelled");
        let (status, body) = setup
            .app
            .delete_auth(&format!("/auto_invest/{CHAIN_ID}/{campaign:#x}"), &token)
            .await;
        assert_error(status, &body, 404, "not_found", None);
    } else {
        assert_error(status, &cancelled, 400, "auto_invest_in_process", None);
    }
    setup.app.stop().await;
}

impl Setup {
    /// Whitelists with mining paused: mines the approval alone first.
    async fn whitelist_pending(&self, wallet: &Wallet) {
        let pending = Issuer::new(self.contracts.issuer, &self.owner)
            .approveWallet(wallet.alloy_address())
            .send()
            .await
            .unwrap();
        let _: Value = self.owner.raw_request("evm_mine".into(), ()).await.unwrap();
        pending.get_receipt().await.unwrap();
    }
}

async fn a_pending_task_expires(backend: Backend) {
    let Some(setup) = setup(backend, |s| s.timeout_secs = 3_600).await else {
        return;
    };
    let campaign = setup.contracts.campaign;
    let wallet = setup.investor(campaign, 0, 0, false).await;
    let token = setup.app.access_token(&wallet).await;
    let (_, body) = queue(&setup.app, &token, campaign, "10").await;
    let id = body["id"].as_str().unwrap().to_string();
    let waiting = wait_for(&setup.app, &id, "got a reason", |t| t.reason.is_some()).await;
    assert_eq!(waiting.status, AutoInvestStatus::Pending);
    setup.app.clock.advance_ms(3_600 * 1000);
    let expired = wait_for_status(&setup.app, &id, AutoInvestStatus::Expired).await;
    assert!(expired.finished_at_ms.is_some());
    let (_, history) = setup
        .app
        .get_auth(
            &format!("/auto_invest/{CHAIN_ID}/{}/history", wallet.address()),
            &token,
        )
        .await;
    assert_eq!(history["auto_invests"][0]["status"], "expired");
    assert!(history["auto_invests"][0]["reason"].as_str().is_some());
    setup.app.stop().await;
}

async fn one_failing_record_does_not_fail_the_batch(backend: Backend) {
    let Some(setup) = setup(backend, |s| s.attempts_max = 1).await else {
        return;
    };
    let trusted = setup.contracts.campaign;
    // getStatus says ready (whitelisted, balance, allowance), but this campaign does not trust
    // the InvestService: its record fails inside investFor.
    let untrusted = setup.campaign(false).await;
    // Queued before the wallets are whitelisted, so both become ready at the same moment
    // (the manual clock stands still until `wait_for` moves it) and ride in one batch.
    let good = setup.investor(trusted, 100 * USDC, 100 * USDC, false).await;
    let bad = setup
        .investor(untrusted, 100 * USDC, 100 * USDC, false)
        .await;
    let good_token = setup.app.access_token(&good).await;
    let bad_token = setup.app.access_token(&bad).await;
    let (_, g) = queue(&setup.app, &good_token, trusted, "100").await;
    let (_, b) = queue(&setup.app, &bad_token, untrusted, "100").await;
    for id in [&g["id"], &b["id"]] {
        wait_for(&setup.app, id.as_str().unwrap(), "got a reason", |t| {
            t.reason.is_some()
        })
        .await;
    }
    setup.whitelist(&good).await;
    setup.whitelist(&bad).await;
    let good_task = wait_for_status(
        &setup.app,
        g["id"].as_str().unwrap(),
        AutoInvestStatus::Success,
    )
    .await;
    let bad_task = wait_for_status(
        &setup.app,
        b["id"].as_str().unwrap(),
        AutoInvestStatus::Failed,
    )
    .await;
    assert_eq!(good_task.tx_hash, bad_task.tx_hash, "one transaction");
    assert!(
        bad_task
            .reason
            .as_deref()
            .unwrap()
            .contains("caller may not invest"),
        "{bad_task:?}"
    );
    assert_eq!(bad_task.invested_amount, None);
    assert_eq!(setup.raised(trusted).await, U256::from(100u64));
    assert_eq!(setup.raised(untrusted).await, U256::ZERO);
    setup.app.stop().await;
}

/// Mining paused, the investFor transaction is sent, the server stops, and a new one takes
/// over: the recorded bytes are rebroadcast, one investment lands, the task completes.
async fn a_restart_between_send_and_receipt_invests_once(backend: Backend) {
    let Some(mut setup) = setup(backend, |_| {}).await else {
        return;
    };
    let campaign = setup.contracts.campaign;
    let wallet = setup.investor(campaign, 100 * USDC, 100 * USDC, true).await;
    let token = setup.app.access_token(&wallet).await;
    let _: () = setup
        .owner
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let (_, body) = queue(&setup.app, &token, campaign, "100").await;
    let id = body["id"].as_str().unwrap().to_string();
    wait_for_status(&setup.app, &id, AutoInvestStatus::InProcess).await;
    let storage = setup.app.app().storage().clone();
    assert!(
        common::wait_until(Duration::from_secs(30), || async {
            storage
                .chain()
                .tx_intents_for_purpose("auto_invest", 10)
                .await
                .unwrap()
                .iter()
                .any(|i| i.status == ampflow_storage::TxIntentStatus::Sent)
        })
        .await,
        "the investFor transaction was never sent"
    );
    setup.app.restart().await;
    let _: () = setup
        .owner
        .raw_request("evm_setAutomine".into(), (true,))
        .await
        .unwrap();
    let _: Value = setup
        .owner
        .raw_request("evm_mine".into(), ())
        .await
        .unwrap();
    wait_for_status(&setup.app, &id, AutoInvestStatus::Success).await;
    assert_eq!(setup.raised(campaign).await, U256::from(100u64));
    assert_eq!(setup.executor_nonce().await, 1, "one transaction");
    let intents = setup
        .app
        .app()
        .storage()
        .chain()
        .tx_intents_for_purpose("auto_invest", 10)
        .await
        .unwrap();
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].send_attempts, 1, "signed once");
    setup.app.stop().await;
}

/// With mining paused, the `investFor` transaction waits in the node's pool: the task in
/// process shows its hash in the wallet's and the campaign's listings, the replacement's once
/// it is stuck and fee-bumped, and keeps the mined one once it succeeds.
async fn a_task_in_process_shows_its_transaction_before_it_is_mined(backend: Backend) {
    let Some(setup) = setup(backend, |_| {}).await else {
        return;
    };
    let campaign = setup.contracts.campaign;
    let wallet = setup.investor(campaign, 100 * USDC, 100 * USDC, true).await;
    let token = setup.app.access_token(&wallet).await;
    let _: () = setup
        .owner
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let (_, body) = queue(&setup.app, &token, campaign, "100").await;
    assert_eq!(body["tx_hash"], Value::Null, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let sent = wait_for(&setup.app, &id, "sent", |t| t.tx_hash.is_some()).await;
    assert_eq!(sent.status, AutoInvestStatus::InProcess);
    let storage = setup.app.app().storage().clone();
    let intent_id = sent.tx_intent_id.clone().unwrap();
    let intent = storage
        .chain()
        .tx_intent(&intent_id)
        .await
        .unwrap()
        .unwrap();
    let first = intent.tx_hash.clone().unwrap();
    assert_eq!(sent.tx_hash.as_deref(), Some(first.as_str()));
    let listed = |path: String| {
        let app = &setup.app;
        async move {
            let (status, body) = app.send(app.client.get(app.url(&path))).await;
            assert_eq!(status, 200, "{body}");
            body["auto_invests"][0].clone()
        }
    };
    let by_wallet = format!("/auto_invest/{CHAIN_ID}/{}", wallet.address());
    let by_campaign = format!("/auto_invest/{CHAIN_ID}/campaign/{campaign:#x}");
    for path in [&by_wallet, &by_campaign] {
        let shown = listed(path.clone()).await;
        assert_eq!(shown["status"], "in_process", "{shown}");
        assert_eq!(shown["tx_hash"], first.as_str(), "{shown}");
    }

    // Stuck past `stuck_after_secs` (120 s): replaced at the same nonce with higher fees.
    setup.app.clock.advance_ms(121_000);
    let bumped = wait_for(&setup.app, &id, "bumped", |t| {
        t.tx_hash.as_deref().is_some_and(|h| h != first)
    })
    .await;
    let second = bumped.tx_hash.unwrap();
    let replaced = storage
        .chain()
        .tx_intent(&intent_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replaced.replaced_hashes, vec![first.clone()]);
    assert_eq!(replaced.tx_hash.as_deref(), Some(second.as_str()));
    let shown = listed(by_wallet.clone()).await;
    assert_eq!(shown["tx_hash"], second.as_str(), "{shown}");

    let _: () = setup
        .owner
        .raw_request("evm_setAutomine".into(), (true,))
        .await
        .unwrap();
    let _: Value = setup
        .owner
        .raw_request("evm_mine".into(), ())
        .await
        .unwrap();
    let done = wait_for_status(&setup.app, &id, AutoInvestStatus::Success).await;
    assert_eq!(done.tx_hash.as_deref(), Some(second.as_str()));
    let (_, history) = setup
        .app
        .send(
            setup
                .app
                .client
                .get(setup.app.url(&format!("{by_wallet}/history"))),
        )
        .await;
    assert_eq!(
        history["auto_invests"][0]["tx_hash"],
        second.as_str(),
        "{history}"
    );
    assert_eq!(setup.raised(campaign).await, U256::from(100u64));
    setup.app.stop().await;
}

/// With three confirmations, a mined investment stays in process until two more blocks are
/// on top of it.
async fn a_task_completes_only_after_its_confirmations(backend: Backend) {
    let Some(setup) = setup_with(backend, |_| {}, |tx| tx.confirmations = 3).await else {
        return;
    };
    let campaign = setup.contracts.campaign;
    let wallet = setup.investor(campaign, 100 * USDC, 100 * USDC, true).await;
    let token = setup.app.access_token(&wallet).await;
    let (_, body) = queue(&setup.app, &token, campaign, "100").await;
    let id = body["id"].as_str().unwrap().to_string();
    // Mined (automine): the investment is on chain, but not yet final.
    assert!(
        common::wait_until(Duration::from_secs(30), || async {
            setup.raised(campaign).await == U256::from(100u64)
        })
        .await,
        "the investment was never mined"
    );
    setup.app.clock.advance_ms(500);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        task(&setup.app, &id).await.status,
        AutoInvestStatus::InProcess
    );
    for _ in 0..2 {
        let _: Value = setup
            .owner
            .raw_request("evm_mine".into(), ())
            .await
            .unwrap();
    }
    let done = wait_for_status(&setup.app, &id, AutoInvestStatus::Success).await;
    assert_eq!(
        done.invested_amount.map(|a| a.to_string()).as_deref(),
        Some("100")
    );
    setup.app.stop().await;
}

async fn bad_requests_are_refused(backend: Backend) {
    let Some(setup) = setup(backend, |s| s.max_open_per_wallet = 2).await else {
        return;
    };
    let app = &setup.app;
    let wallet = Wallet::random();
    let token = app.access_token(&wallet).await;
    let campaign = format!("{:#x}", setup.contracts.campaign);

    // No JWT.
    let (status, body) = app
        .post(
            &format!("/auto_invest/{CHAIN_ID}/{campaign}"),
            json!({"amount": "5"}),
        )
        .await;
    assert_error(status, &body, 401, "authentication_error", None);
    let (status, body) = app
        .send(
            app.client
                .delete(app.url(&format!("/auto_invest/{CHAIN_ID}/{campaign}"))),
        )
        .await;
    assert_error(status, &body, 401, "authentication_error", None);

    // Malformed chain id, address and amounts.
    let post = |path: String, body: Value| {
        let token = token.clone();
        async move { app.post_auth(&path, &token, body).await }
    };
    let (status, body) = post(
        format!("/auto_invest/abc/{campaign}"),
        json!({"amount": "5"}),
    )
    .await;
    assert_error(status, &body, 400, "invalid_request", Some("chainId"));
    let (status, body) = post(
        format!("/auto_invest/{CHAIN_ID}/0x12"),
        json!({"amount": "5"}),
    )
    .await;
    assert_error(status, &body, 400, "invalid_request", Some("campaign"));
    for amount in [
        json!("0"),
        json!("-5"),
        json!("1.5"),
        json!(""),
        json!(5),
        json!(null),
    ] {
        let (status, body) = post(
            format!("/auto_invest/{CHAIN_ID}/{campaign}"),
            json!({"amount": amount}),
        )
        .await;
        assert_error(status, &body, 400, "invalid_request", Some("amount"));
    }
    let (status, body) = post(format!("/auto_invest/{CHAIN_ID}/{campaign}"), json!({})).await;
    assert_error(status, &body, 400, "invalid_request", Some("amount"));
    let (status, body) = post(
        format!("/auto_invest/80001/{campaign}"),
        json!({"amount": "5"}),
    )
    .await;
    assert_error(status, &body, 400, "unsupported_chain", Some("chainId"));

    // Listings: bad wallet, bad limit, forged cursor, unsupported chain.
    for (path, param) in [
        (format!("/auto_invest/{CHAIN_ID}/nope"), "wallet"),
        (format!("/auto_invest/{CHAIN_ID}/campaign/nope"), "campaign"),
        (
            format!("/auto_invest/{CHAIN_ID}/{}?limit=0", wallet.address()),
            "limit",
        ),
        (
            format!("/auto_invest/{CHAIN_ID}/{}?limit=101", wallet.address()),
            "limit",
        ),
        (
            format!("/auto_invest/{CHAIN_ID}/{}?cursor=forged", wallet.address()),
            "cursor",
        ),
        (format!("/auto_invest/x/{}", wallet.address()), "chainId"),
    ] {
        let (status, body) = app.send(app.client.get(app.url(&path))).await;
        assert_error(status, &body, 400, "invalid_request", Some(param));
    }
    let (status, body) = app
        .send(
            app.client
                .get(app.url(&format!("/auto_invest/80001/{}", wallet.address()))),
        )
        .await;
    assert_error(status, &body, 400, "unsupported_chain", Some("chainId"));

    // Nothing to cancel.
    let (status, body) = app
        .delete_auth(&format!("/auto_invest/{CHAIN_ID}/{campaign}"), &token)
        .await;
    assert_error(status, &body, 404, "not_found", None);
    // Cancelling with a malformed chain id or campaign, or on an unsupported chain.
    let (status, body) = app
        .delete_auth(&format!("/auto_invest/x/{campaign}"), &token)
        .await;
    assert_error(status, &body, 400, "invalid_request", Some("chainId"));
    let (status, body) = app
        .delete_auth(&format!("/auto_invest/{CHAIN_ID}/0x12"), &token)
        .await;
    assert_error(status, &body, 400, "invalid_request", Some("campaign"));
    let (status, body) = app
        .delete_auth(&format!("/auto_invest/80001/{campaign}"), &token)
        .await;
    assert_error(status, &body, 400, "unsupported_chain", Some("chainId"));

    // A campaign that is not in the registry.
    let stranger = Wallet::random().address();
    let (status, body) = post(
        format!("/auto_invest/{CHAIN_ID}/{stranger}"),
        json!({"amount": "5"}),
    )
    .await;
    assert_error(
        status,
        &body,
        400,
        "campaign_not_registered",
        Some("campaign"),
    );

    // The open-task limit per wallet, and pages with a cursor (on campaigns the registry
    // holds, though nothing is deployed there: the executor's getStatus says they are not
    // registered on chain, so they wait).
    let campaigns: Vec<String> = (0..3).map(|_| Wallet::random().address()).collect();
    let addresses: Vec<Address> = campaigns.iter().map(|c| c.parse().unwrap()).collect();
    trust(app, &addresses).await;
    for c in &campaigns[..2] {
        let (status, body) = post(
            format!("/auto_invest/{CHAIN_ID}/{c}"),
            json!({"amount": "5"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        app.clock.advance_ms(1);
    }
    let (status, body) = post(
        format!("/auto_invest/{CHAIN_ID}/{}", campaigns[2]),
        json!({"amount": "5"}),
    )
    .await;
    assert_error(status, &body, 400, "auto_invest_limit", None);
    let (status, first) = app
        .send(app.client.get(app.url(&format!(
            "/auto_invest/{CHAIN_ID}/{}?limit=1",
            wallet.address()
        ))))
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["auto_invests"][0]["campaign_address"],
        campaigns[1].as_str()
    );
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app
        .send(app.client.get(app.url(&format!(
            "/auto_invest/{CHAIN_ID}/{}?limit=1&cursor={cursor}",
            wallet.address()
        ))))
        .await;
    assert_eq!(
        second["auto_invests"][0]["campaign_address"],
        campaigns[0].as_str()
    );
    assert_eq!(second["next_cursor"], Value::Null);
    setup.app.stop().await;
}

/// Two server processes on one PostgreSQL database: only the executor holding the chain's
/// lease invests, so each task is invested exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_database_invest_each_task_once() {
    let Some(setup) = setup(Backend::Postgres, |_| {}).await else {
        return;
    };
    let second = setup.app.another_process("second-process").await;
    let campaign = setup.contracts.campaign;
    let mut ids = Vec::new();
    let mut total = 0u64;
    for i in 0..6u64 {
        let wallet = setup.investor(campaign, 100, 100, true).await;
        let token = setup.app.access_token(&wallet).await;
        // Half the tasks arrive through each process.
        let base = if i % 2 == 0 {
            setup.app.app().base_url()
        } else {
            second.base_url()
        };
        let response = setup
            .app
            .client
            .post(format!("{base}/auto_invest/{CHAIN_ID}/{campaign:#x}"))
            .bearer_auth(&token)
            .json(&json!({"amount": (10 + i).to_string()}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_string());
        total += 10 + i;
    }
    for id in &ids {
        wait_for_status(&setup.app, id, AutoInvestStatus::Success).await;
    }
    assert_eq!(setup.raised(campaign).await, U256::from(total));
    let intents = setup
        .app
        .app()
        .storage()
        .chain()
        .tx_intents_for_purpose("auto_invest", 100)
        .await
        .unwrap();
    assert_eq!(
        setup.executor_nonce().await,
        intents.len() as u64,
        "every transaction sent is a recorded intent"
    );
    second.shutdown().await;
    setup.app.stop().await;
}
