#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The platform spends gas only on what it trusts (issue 14), against a real anvil on SQLite
//! and PostgreSQL. Hostile contracts (one that lies that every investor is ready, one that
//! reverts, one that burns all its gas, one that answers a megabyte, and an issuer that names
//! the platform's WalletApprover as its own) are refused at the door, and even when the
//! database is made to trust them the contracts' own registries stop them: the signer's
//! transaction count does not move. A campaign removed from the registry keeps its queued
//! tasks from being invested; a refusal on chain is not retried; and the per-chain gas budget
//! holds transactions back, across a restart, until the hour has passed.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use ampflow_actors::trusted::OnChain;
use ampflow_chain::contracts::{Campaign, Issuer, TestStablecoin, WalletApprover};
use ampflow_chain::deploy::{DeployedContracts, FaucetFunding, allow_executor, deploy_platform};
use ampflow_chain::{AutoInvestSettings, BatchSettings, ChainSettings, FaucetSettings};
use ampflow_storage::testdb::Backend;
use ampflow_storage::{AutoInvestStatus, AutoInvestTask, TxIntentStatus};
use ampflow_types::TrustedKind;
use common::anvil::{Anvil, CHAIN_ID, DEV_KEY_0};
use common::{TestApp, Wallet, assert_error};
use serde_json::{Value, json};

alloy::sol!(
    #[sol(rpc)]
    LiarCampaign,
    "../chain/contracts/artifacts/hostile/LiarCampaign.json"
);
alloy::sol!(
    #[sol(rpc)]
    FakeIssuer,
    "../chain/contracts/artifacts/hostile/FakeIssuer.json"
);
alloy::sol!(
    #[sol(rpc)]
    RevertingContract,
    "../chain/contracts/artifacts/hostile/RevertingContract.json"
);
alloy::sol!(
    #[sol(rpc)]
    GasBurner,
    "../chain/contracts/artifacts/hostile/GasBurner.json"
);
alloy::sol!(
    #[sol(rpc)]
    HugeReturner,
    "../chain/contracts/artifacts/hostile/HugeReturner.json"
);

on_both_databases!(
    hostile_campaigns_are_refused_and_the_signer_sends_nothing,
    hostile_campaigns_trusted_by_the_database_alone_are_never_invested,
    hostile_issuers_are_refused_and_the_signer_sends_nothing,
    a_fake_issuer_trusted_by_the_database_alone_is_never_sent,
    a_removed_campaign_keeps_its_queued_task_from_being_invested,
    a_campaign_that_refuses_is_not_retried,
    a_reverted_approval_is_not_retried,
    the_gas_budget_holds_transactions_until_the_hour_has_passed,
);

/// The platform's signer: anvil's second account. The first owns the contracts (the operator).
const EXECUTOR_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const FAUCET_REWARD_WEI: u64 = 1_000_000_000_000_000;

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

async fn setup(backend: Backend, gas_budget_per_hour: Option<u64>) -> Option<Setup> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let anvil = Anvil::start().await;
    let operator: PrivateKeySigner = DEV_KEY_0.parse().unwrap();
    let reward = U256::from(FAUCET_REWARD_WEI);
    let contracts = deploy_platform(
        &anvil.url,
        operator.clone(),
        FaucetFunding {
            reward_wei: reward,
            balance_threshold_wei: reward,
            initial_balance_wei: reward * U256::from(100u64),
        },
    )
    .await
    .unwrap();
    allow_executor(
        &anvil.url,
        operator.clone(),
        &contracts,
        executor().address(),
    )
    .await
    .unwrap();
    let owner = ProviderBuilder::new()
        .wallet(operator)
        .connect_http(anvil.url.parse().unwrap())
        .erased();
    let mut tx = ampflow_chain::tx::TxSettings {
        poll_interval_ms: 100,
        max_backoff_ms: 1_000,
        ..Default::default()
    };
    if let Some(budget) = gas_budget_per_hour {
        tx.gas_budget_per_hour = budget;
    }
    let fast = BatchSettings {
        max_wait_ms: 100,
        retry_backoff_ms: 100,
        ..Default::default()
    };
    let chain = ChainSettings {
        chain_id: CHAIN_ID,
        name: "anvil".into(),
        rpc_url: anvil.url.clone(),
        contracts: Some(contracts.clone()),
        tx,
        faucet: Some(FaucetSettings {
            max_wait_ms: 100,
            retry_backoff_ms: 100,
            per_ip_max: 0,
            ..Default::default()
        }),
        whitelist: fast,
        auto_invest: Some(AutoInvestSettings {
            tick_interval_ms: 100,
            recheck_interval_ms: 100,
            retry_backoff_ms: 100,
            ..Default::default()
        }),
        ..Default::default()
    };
    let signers = HashMap::from([(CHAIN_ID, executor())]);
    let app = TestApp::start_signing(backend, signers, |s| s.chains = vec![chain]).await?;
    // As `ampflow chain deploy` does: the sample campaign and the issuer are trusted.
    trust(&app, TrustedKind::Campaign, contracts.campaign).await;
    trust(&app, TrustedKind::Issuer, contracts.issuer).await;
    Some(Setup {
        anvil,
        app,
        contracts,
        owner,
    })
}

/// Records a contract in the database's registry only (what a compromised server, or a
/// mistaken operator, could do): the contract's own registry is left as it is.
async fn trust(app: &TestApp, kind: TrustedKind, address: Address) {
    app.app()
        .actors()
        .trusted()
        .record(CHAIN_ID, kind, &[address])
        .await
        .unwrap();
}

impl Setup {
    /// Transactions the platform's signer has sent, mined or not.
    async fn sent(&self) -> u64 {
        self.owner
            .get_transaction_count(executor().address())
            .pending()
            .await
            .unwrap()
    }

    /// The four hostile contracts that could pose as a campaign.
    async fn hostile_campaigns(&self) -> Vec<(&'static str, Address)> {
        vec![
            (
                "liar",
                *LiarCampaign::deploy(&self.owner).await.unwrap().address(),
            ),
            (
                "reverter",
                *RevertingContract::deploy(&self.owner)
                    .await
                    .unwrap()
                    .address(),
            ),
            (
                "gas burner",
                *GasBurner::deploy(&self.owner).await.unwrap().address(),
            ),
            (
                "huge answer",
                *HugeReturner::deploy(&self.owner).await.unwrap().address(),
            ),
        ]
    }

    /// The hostile contracts that could pose as an issuer: a fake naming the platform's
    /// WalletApprover as its approver, and the reverter, burner and huge answer.
    async fn hostile_issuers(&self) -> Vec<(&'static str, Address)> {
        let fake = FakeIssuer::deploy(&self.owner, self.contracts.wallet_approver)
            .await
            .unwrap();
        assert_eq!(
            fake.walletApprover().call().await.unwrap(),
            self.contracts.wallet_approver,
            "the fake claims the platform's approver"
        );
        let mut issuers = vec![("fake issuer", *fake.address())];
        issuers.extend(self.hostile_campaigns().await.into_iter().skip(1));
        issuers
    }

    /// A signed-in wallet with gas money, `balance` stablecoin and an allowance of `balance`
    /// to `campaign`.
    async fn investor(&self, campaign: Address, balance: u64) -> (Wallet, String) {
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
            let own = ProviderBuilder::new()
                .wallet(wallet.signer())
                .connect_http(self.anvil.url.parse().unwrap());
            TestStablecoin::new(self.contracts.stablecoin, &own)
                .approve(campaign, U256::from(balance))
                .send()
                .await
                .unwrap()
                .get_receipt()
                .await
                .unwrap();
        }
        let token = self.app.access_token(&wallet).await;
        (wallet, token)
    }

    /// A signed-in wallet whose KYC is complete (test mode).
    async fn kyc_wallet(&self) -> (Wallet, String) {
        let wallet = Wallet::random();
        let token = self.app.access_token(&wallet).await;
        let (status, body) = self
            .app
            .post_auth(
                "/test/kyc",
                &token,
                json!({"address": wallet.address(), "first_name": "Ada", "last_name": "Lovelace"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        (wallet, token)
    }

    async fn whitelist_on_chain(&self, wallet: &Wallet) {
        Issuer::new(self.contracts.issuer, &self.owner)
            .approveWallet(wallet.alloy_address())
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
    }

    /// Lets the executor, the batchers and the sender run many rounds, with the manual clock
    /// moving (rechecks and batches come due), but less than the gas budget's hour.
    async fn let_time_pass(&self) {
        for _ in 0..15 {
            self.app.clock.advance_ms(200);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn intents(&self, purpose: &str) -> Vec<ampflow_storage::TxIntentRecord> {
        self.app
            .app()
            .storage()
            .chain()
            .tx_intents_for_purpose(purpose, 100)
            .await
            .unwrap()
    }
}

async fn invest(app: &TestApp, token: &str, campaign: Address, amount: &str) -> (u16, Value) {
    app.post_auth(
        &format!("/auto_invest/{CHAIN_ID}/{campaign:#x}"),
        token,
        json!({"amount": amount}),
    )
    .await
}

async fn ask_whitelisting(app: &TestApp, token: &str, issuer: Address) -> (u16, Value) {
    app.post_auth(
        "/user/whitelist",
        token,
        json!({"issuer_address": format!("{issuer:#x}"), "chain_id": CHAIN_ID}),
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

/// Polls until `done` holds, letting the manual clock run.
async fn wait_for_task(
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

/// Polls the caller's whitelisting requests until `id` has `status`.
async fn wait_for_approval(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = app.get_auth("/user/whitelist", token).await;
        assert_eq!(code, 200, "{body}");
        let request = body["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap();
        if request["status"] == status {
            return request;
        }
        assert!(
            Instant::now() < deadline,
            "request {id} never reached {status}: {request}"
        );
        app.clock.advance_ms(100);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh wallet with no funds and no KYC names each hostile contract as a campaign: every
/// request is refused, nothing is queued, and the signer sends nothing.
async fn hostile_campaigns_are_refused_and_the_signer_sends_nothing(backend: Backend) {
    let Some(setup) = setup(backend, None).await else {
        return;
    };
    let before = setup.sent().await;
    let wallet = Wallet::random();
    let token = setup.app.access_token(&wallet).await;
    for (name, campaign) in setup.hostile_campaigns().await {
        let (status, body) = invest(&setup.app, &token, campaign, "1000000").await;
        assert_error(
            status,
            &body,
            400,
            "campaign_not_registered",
            Some("campaign"),
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("registry"),
            "{name}: {body}"
        );
    }
    setup.let_time_pass().await;
    assert_eq!(setup.sent().await, before, "the signer sent nothing");
    assert!(setup.intents("auto_invest").await.is_empty());
    let (_, open) = setup
        .app
        .get_auth(
            &format!("/auto_invest/{CHAIN_ID}/{}", wallet.address()),
            &token,
        )
        .await;
    assert_eq!(open["auto_invests"], json!([]));
    setup.app.stop().await;
}

/// The database is made to trust the hostile contracts (a compromised server or a mistake):
/// the tasks are queued, but the InvestService's own registry answers "not registered"
/// without calling them, so the tasks wait with that reason and the signer sends nothing.
async fn hostile_campaigns_trusted_by_the_database_alone_are_never_invested(backend: Backend) {
    let Some(setup) = setup(backend, None).await else {
        return;
    };
    let before = setup.sent().await;
    let wallet = Wallet::random();
    let token = setup.app.access_token(&wallet).await;
    let mut ids = Vec::new();
    for (_, campaign) in setup.hostile_campaigns().await {
        trust(&setup.app, TrustedKind::Campaign, campaign).await;
        let (status, body) = invest(&setup.app, &token, campaign, "1000000").await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let waiting = wait_for_task(&setup.app, id, "got a reason", |t| t.reason.is_some()).await;
        assert_eq!(waiting.status, AutoInvestStatus::Pending);
        assert!(
            waiting
                .reason
                .as_deref()
                .unwrap()
                .contains("not registered on the InvestService"),
            "{waiting:?}"
        );
    }
    setup.let_time_pass().await;
    assert_eq!(setup.sent().await, before, "the signer sent nothing");
    assert!(setup.intents("auto_invest").await.is_empty());
    for id in &ids {
        assert_eq!(task(&setup.app, id).await.status, AutoInvestStatus::Pending);
    }
    setup.app.stop().await;
}

/// A KYC'd wallet names each hostile contract as an issuer, the fake one claiming the
/// platform's WalletApprover: refused, nothing queued, nothing sent.
async fn hostile_issuers_are_refused_and_the_signer_sends_nothing(backend: Backend) {
    let Some(setup) = setup(backend, None).await else {
        return;
    };
    let before = setup.sent().await;
    let (_, token) = setup.kyc_wallet().await;
    for (name, issuer) in setup.hostile_issuers().await {
        let (status, body) = ask_whitelisting(&setup.app, &token, issuer).await;
        assert_error(
            status,
            &body,
            400,
            "issuer_not_registered",
            Some("issuer_address"),
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("registry"),
            "{name}: {body}"
        );
    }
    setup.let_time_pass().await;
    assert_eq!(setup.sent().await, before, "the signer sent nothing");
    let (_, list) = setup.app.get_auth("/user/whitelist", &token).await;
    assert_eq!(list, json!({"requests": []}));
    setup.app.stop().await;
}

/// The database is made to trust the fake issuer: the approval is queued (the fake says the
/// WalletApprover is its approver), but before the batch is sent the WalletApprover's own
/// registry is read, so the request fails with the reason and nothing is sent.
async fn a_fake_issuer_trusted_by_the_database_alone_is_never_sent(backend: Backend) {
    let Some(setup) = setup(backend, None).await else {
        return;
    };
    let before = setup.sent().await;
    let (_, token) = setup.kyc_wallet().await;
    let (_, fake) = setup.hostile_issuers().await[0];
    trust(&setup.app, TrustedKind::Issuer, fake).await;
    let (status, body) = ask_whitelisting(&setup.app, &token, fake).await;
    assert_eq!(status, 202, "{body}");
    let failed =
        wait_for_approval(&setup.app, &token, body["id"].as_str().unwrap(), "failed").await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("not registered on the WalletApprover"),
        "{failed}"
    );
    assert_eq!(failed["attempts"], 0, "{failed}");
    setup.let_time_pass().await;
    assert_eq!(setup.sent().await, before, "the signer sent nothing");
    assert!(setup.intents("whitelist").await.is_empty());
    setup.app.stop().await;
}

/// A task waits (the wallet is not whitelisted yet); an operator removes its campaign from the
/// registry; the wallet becomes ready, but the task is not invested: it waits with the
/// reason, and new requests for the campaign are refused. Added again, it is invested.
async fn a_removed_campaign_keeps_its_queued_task_from_being_invested(backend: Backend) {
    let Some(setup) = setup(backend, None).await else {
        return;
    };
    let campaign = setup.contracts.campaign;
    let (wallet, token) = setup.investor(campaign, 100).await;
    let (status, body) = invest(&setup.app, &token, campaign, "100").await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    wait_for_task(&setup.app, &id, "got a reason", |t| t.reason.is_some()).await;

    let trusted = setup.app.app().actors().trusted();
    let change = trusted
        .remove(CHAIN_ID, TrustedKind::Campaign, campaign, None)
        .await
        .unwrap();
    assert!(change.in_database);
    assert!(
        matches!(change.on_chain, OnChain::OwnerMustCall { .. }),
        "without the operator key the chain is left as it is: {change:?}"
    );
    let before = setup.sent().await;
    setup.whitelist_on_chain(&wallet).await;
    let parked = wait_for_task(&setup.app, &id, "was parked", |t| {
        t.reason
            .as_deref()
            .is_some_and(|r| r.contains("not in the platform's registry"))
    })
    .await;
    assert_eq!(parked.status, AutoInvestStatus::Pending);
    setup.let_time_pass().await;
    assert_eq!(setup.sent().await, before, "nothing was invested");
    assert_eq!(
        task(&setup.app, &id).await.status,
        AutoInvestStatus::Pending
    );
    let (status, body) = invest(&setup.app, &token, campaign, "50").await;
    assert_error(
        status,
        &body,
        400,
        "campaign_not_registered",
        Some("campaign"),
    );

    trust(&setup.app, TrustedKind::Campaign, campaign).await;
    let done = wait_for_task(&setup.app, &id, "succeeded", |t| {
        t.status == AutoInvestStatus::Success
    })
    .await;
    assert_eq!(
        done.invested_amount.map(|a| a.to_string()).as_deref(),
        Some("100")
    );
    assert_eq!(setup.sent().await, before + 1);
    setup.app.stop().await;
}

/// A registered campaign refuses the investment inside `investFor` (it does not trust the
/// InvestService): the task fails after its first attempt, not after `attempts_max` paid ones.
async fn a_campaign_that_refuses_is_not_retried(backend: Backend) {
    let Some(setup) = setup(backend, None).await else {
        return;
    };
    let refusing = *Campaign::deploy(
        &setup.owner,
        setup.contracts.stablecoin,
        setup.contracts.issuer,
    )
    .await
    .unwrap()
    .address();
    let (wallet, token) = setup.investor(refusing, 100).await;
    setup.whitelist_on_chain(&wallet).await;
    // Last with the operator's key: `setup.owner` keeps its own count of the key's nonces.
    let trusted = setup.app.app().actors().trusted();
    let operator: PrivateKeySigner = DEV_KEY_0.parse().unwrap();
    let change = trusted
        .add(CHAIN_ID, TrustedKind::Campaign, refusing, Some(operator))
        .await
        .unwrap();
    assert!(
        matches!(change.on_chain, OnChain::Sent(_)),
        "the operator key registers it on chain: {change:?}"
    );
    let before = setup.sent().await;
    let (status, body) = invest(&setup.app, &token, refusing, "100").await;
    assert_eq!(status, 200, "{body}");
    let failed = wait_for_task(&setup.app, body["id"].as_str().unwrap(), "failed", |t| {
        t.status == AutoInvestStatus::Failed
    })
    .await;
    assert_eq!(failed.attempts, 1, "attempts_max is 5: {failed:?}");
    let reason = failed.reason.as_deref().unwrap();
    assert!(reason.contains("not retried"), "{reason}");
    assert!(reason.contains("caller may not invest"), "{reason}");
    setup.let_time_pass().await;
    assert_eq!(setup.sent().await, before + 1, "one transaction");
    setup.app.stop().await;
}

/// The approval is sent, then the issuer is unregistered on chain in the same block, ahead of
/// it: the transaction reverts on chain. The request fails after that one attempt; nothing is
/// sent again.
async fn a_reverted_approval_is_not_retried(backend: Backend) {
    let Some(setup) = setup(backend, None).await else {
        return;
    };
    let (wallet, token) = setup.kyc_wallet().await;
    let before = setup.sent().await;
    let _: () = setup
        .owner
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let (status, body) = ask_whitelisting(&setup.app, &token, setup.contracts.issuer).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while setup.sent().await == before {
        assert!(Instant::now() < deadline, "the approval was never sent");
        setup.app.clock.advance_ms(100);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The owner's change pays a much higher tip, so it is mined first in the block.
    let gwei = 1_000_000_000u128;
    let pending = WalletApprover::new(setup.contracts.wallet_approver, &setup.owner)
        .setIssuerStatus(setup.contracts.issuer, false)
        .max_priority_fee_per_gas(50 * gwei)
        .max_fee_per_gas(500 * gwei)
        .send()
        .await
        .unwrap();
    let _: Value = setup
        .owner
        .raw_request("evm_mine".into(), ())
        .await
        .unwrap();
    let _: () = setup
        .owner
        .raw_request("evm_setAutomine".into(), (true,))
        .await
        .unwrap();
    assert!(pending.get_receipt().await.unwrap().status());

    let failed = wait_for_approval(&setup.app, &token, &id, "failed").await;
    assert_eq!(failed["attempts"], 1, "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("not retried"), "{reason}");
    assert!(reason.contains("reverted"), "{reason}");
    let intents = setup.intents("whitelist").await;
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert!(intents[0].block_number.is_some() && intents[0].gas_used.is_some());
    setup.let_time_pass().await;
    assert_eq!(setup.sent().await, before + 1, "sent once, not again");
    let issuer = Issuer::new(setup.contracts.issuer, &setup.owner);
    assert!(
        !issuer
            .isWalletApproved(wallet.alloy_address())
            .call()
            .await
            .unwrap()
    );
    setup.app.stop().await;
}

/// Gas for about one faucet transaction an hour: the first payout goes out, the second waits
/// (its request stays submitted, its intent queued and unsigned) through a restart, the
/// metric counts the episode, and once the hour has passed it is paid.
async fn the_gas_budget_holds_transactions_until_the_hour_has_passed(backend: Backend) {
    const BUDGET: u64 = 120_000;
    let Some(mut setup) = setup(backend, Some(BUDGET)).await else {
        return;
    };
    let metric = format!("chain_gas_budget_exhausted_total{{chain_id=\"{CHAIN_ID}\"}}");
    let episodes = || async {
        let (_, text) = setup
            .app
            .send(setup.app.client.get(setup.app.url("/metrics")))
            .await;
        let text = text.as_str().unwrap_or_default().to_string();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{metric} ")))
            .map_or(0, |v| v.trim().parse::<u64>().unwrap())
    };
    let first_episodes = episodes().await;
    let before = setup.sent().await;
    let path = format!("/faucet/{CHAIN_ID}");
    let body = json!({"re_captcha_token": "t"});
    let first = setup.app.access_token(&Wallet::random()).await;
    let (status, request) = setup.app.post_auth(&path, &first, body.clone()).await;
    assert_eq!(status, 202, "{request}");
    let paid = faucet_status(&setup.app, &first, &request, "paid").await;
    assert_eq!(paid["amount"], FAUCET_REWARD_WEI.to_string());
    let intents = setup.intents("faucet").await;
    let (limit, used) = (intents[0].gas_limit.unwrap(), intents[0].gas_used.unwrap());
    assert!(
        limit <= BUDGET && used + limit > BUDGET,
        "the budget fits one payout, not two: limit {limit}, used {used}"
    );

    let second = setup.app.access_token(&Wallet::random()).await;
    let (status, waiting) = setup.app.post_auth(&path, &second, body).await;
    assert_eq!(status, 202, "{waiting}");
    faucet_status(&setup.app, &second, &waiting, "submitted").await;
    setup.let_time_pass().await;
    assert_eq!(setup.sent().await, before + 1, "the second payout waits");
    let queued = |intents: Vec<ampflow_storage::TxIntentRecord>| {
        intents
            .iter()
            .filter(|i| i.status == TxIntentStatus::Queued)
            .count()
    };
    assert_eq!(queued(setup.intents("faucet").await), 1);
    assert!(episodes().await > first_episodes, "the metric counts it");

    // Counted from the database: a restarted server keeps waiting.
    setup.app.restart().await;
    setup.let_time_pass().await;
    assert_eq!(setup.sent().await, before + 1);
    assert_eq!(queued(setup.intents("faucet").await), 1);

    setup
        .app
        .clock
        .advance_ms(ampflow_chain::tx::GAS_BUDGET_WINDOW_MS);
    faucet_status(&setup.app, &second, &waiting, "paid").await;
    assert_eq!(setup.sent().await, before + 2);
    setup.app.stop().await;
}

/// Polls the faucet request until it has `status`.
async fn faucet_status(app: &TestApp, token: &str, request: &Value, status: &str) -> Value {
    let path = format!(
        "/faucet/{CHAIN_ID}/requests/{}",
        request["id"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = app.get_auth(&path, token).await;
        assert_eq!(code, 200, "{body}");
        if body["status"] == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "the request never reached {status}: {body}"
        );
        app.clock.advance_ms(100);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
