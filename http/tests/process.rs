//! The `ampflow` binary as a process: killed with SIGKILL mid-flow, stopped with SIGTERM, and
//! its JSON logs checked for secrets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::U256;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use ampflow_chain::contracts::{Campaign, Issuer, TestStablecoin};
use ampflow_chain::deploy::{FaucetFunding, deploy_platform};
use ampflow_storage::testdb::{Backend, TestDatabase};
use common::anvil::{Anvil, CHAIN_ID, DEV_KEY_0};
use common::{Wallet, wait_until};
use futures::FutureExt;
use serde_json::{Value, json};

on_both_databases!(
    sigkill_mid_flow_loses_no_nonce_and_reuses_none,
    sigkill_between_send_and_receipt_pays_and_invests_once,
    sigkill_with_webhooks_in_flight_records_each_payment_once,
    a_node_restarted_after_sigkill_takes_its_leases_back_and_another_node_waits,
);

struct Server {
    child: Child,
    base: String,
    logs: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

impl Server {
    async fn start(envs: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ampflow"));
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AMPFLOW_LISTEN", "127.0.0.1:0")
            .env("AMPFLOW_LOG_FORMAT", "json")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in envs {
            command.env(key, value);
        }
        if let Some(id) = postgres_node_id(envs) {
            command.env("AMPFLOW_NODE_ID", id);
        }
        let mut child = command.spawn().expect("spawn ampflow");
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let found = wait_until(Duration::from_secs(30), || {
            let logs = logs.clone();
            async move { listening_addr(&logs).is_some() }
        })
        .await;
        assert!(
            found,
            "the server did not log its address: {:?}",
            logs.lock().unwrap()
        );
        let base = format!("http://{}", listening_addr(&logs).unwrap());
        Self {
            child,
            base,
            logs,
            client: reqwest::Client::new(),
        }
    }

    async fn get_auth(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post_auth(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Logs `wallet` in and answers its access token.
    async fn login(&self, wallet: &Wallet) -> String {
        let (_, body) = self
            .post("/authorize", json!({"address": wallet.address()}))
            .await;
        let login = json!({"address": wallet.address(), "signed_payload": wallet.sign(body["payload"].as_str().unwrap())});
        let (status, tokens) = self.post("/authorize/jwt", login).await;
        assert_eq!(status, 200, "{tokens}");
        tokens["access_token"].as_str().unwrap().to_string()
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..1500 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server did not exit");
    }

    fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With PostgreSQL and no node id given, one named after the test's database: the default id
/// file (`data/node_id` in the working directory) would be shared by every test running at
/// once. (With SQLite the default file sits beside the test's own database.)
fn postgres_node_id(envs: &[(&str, &str)]) -> Option<String> {
    if envs
        .iter()
        .any(|(key, _)| *key == "AMPFLOW_NODE_ID" || *key == "AMPFLOW_NODE__ID_FILE")
    {
        return None;
    }
    let url = envs.iter().find(|(key, _)| *key == "DATABASE_URL")?.1;
    if !url.starts_with("postgres") {
        return None;
    }
    let name = url.split('?').next()?.rsplit('/').next()?;
    let id: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect();
    Some(id)
}

fn listening_addr(logs: &Mutex<Vec<String>>) -> Option<String> {
    logs.lock().unwrap().iter().find_map(|line| {
        let value: Value = serde_json::from_str(line).ok()?;
        (value["message"] == "listening")
            .then(|| value["addr"].as_str().map(str::to_string))
            .flatten()
    })
}

async fn sigkill_mid_flow_loses_no_nonce_and_reuses_none(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let env = [("DATABASE_URL", db.url.as_str())];
    let (pending, used) = (Wallet::random(), Wallet::random());

    let mut server = Server::start(&env).await;
    let (_, body) = server
        .post("/authorize", json!({"address": pending.address()}))
        .await;
    let pending_login = json!({"address": pending.address(), "signed_payload": pending.sign(body["payload"].as_str().unwrap())});
    let (_, body) = server
        .post("/authorize", json!({"address": used.address()}))
        .await;
    let used_login = json!({"address": used.address(), "signed_payload": used.sign(body["payload"].as_str().unwrap())});
    assert_eq!(
        server.post("/authorize/jwt", used_login.clone()).await.0,
        200
    );

    server.signal("KILL");
    server.wait_exit().await;
    drop(server);

    let server = Server::start(&env).await;
    let (status, body) = server.post("/authorize/jwt", pending_login).await;
    assert_eq!(
        status, 200,
        "an acknowledged nonce survives SIGKILL: {body}"
    );
    assert_eq!(
        server.post("/authorize/jwt", used_login).await.0,
        401,
        "a used nonce stays used"
    );
}

/// The faucet and auto-invest through the real binary, killed with SIGKILL after both
/// transactions reached the node (mining is paused, so there is no receipt yet). The next
/// process finds the intents with their recorded bytes, rebroadcasts them rather than signing
/// again, and settles the faucet request and the auto-invest task once the block is mined: two
/// transactions, one payout, one investment.
async fn sigkill_between_send_and_receipt_pays_and_invests_once(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let anvil = Anvil::start().await;
    let signer: PrivateKeySigner = DEV_KEY_0.parse().unwrap();
    let contracts = platform(&anvil).await;
    let folder = tempfile::tempdir().unwrap();
    // The killed process's leases run out quickly, so the next one takes over whatever its
    // node id.
    let config = chain_config(folder.path(), &anvil.url, &contracts, 1_000);
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("AMPFLOW_CONFIG", config.to_str().unwrap()),
        ("TEST_CHAIN_KEY", DEV_KEY_0),
    ];
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    let nonce = |tag: BlockNumberOrTag| {
        let provider = provider.clone();
        let address = signer.address();
        async move {
            provider
                .get_transaction_count(address)
                .block_id(tag.into())
                .await
                .unwrap()
        }
    };
    // An investor, ready before the server starts: whitelisted, funded, allowance given.
    let owner = ProviderBuilder::new()
        .wallet(signer.clone())
        .connect_http(anvil.url.parse().unwrap());
    let investor = Wallet::random();
    let _: () = provider
        .raw_request(
            "anvil_setBalance".into(),
            (
                investor.alloy_address(),
                U256::from(10u64).pow(U256::from(18u64)),
            ),
        )
        .await
        .unwrap();
    TestStablecoin::new(contracts.stablecoin, &owner)
        .mint(investor.alloy_address(), U256::from(500u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    Issuer::new(contracts.issuer, &owner)
        .approveWallet(investor.alloy_address())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    TestStablecoin::new(
        contracts.stablecoin,
        ProviderBuilder::new()
            .wallet(investor.signer())
            .connect_http(anvil.url.parse().unwrap()),
    )
    .approve(contracts.campaign, U256::from(500u64))
    .send()
    .await
    .unwrap()
    .get_receipt()
    .await
    .unwrap();

    // The operator's registry: the deployment registered the campaign on chain; the command
    // records it in the database (it finds it registered on chain already).
    let added = std::process::Command::new(env!("CARGO_BIN_EXE_ampflow"))
        .args(["chain", "campaign", "add", "--chain", &CHAIN_ID.to_string()])
        .arg(format!("{:#x}", contracts.campaign))
        .envs(env)
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");

    let nonce_before = nonce(BlockNumberOrTag::Latest).await;
    let _: () = provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();

    let mut server = Server::start(&env).await;
    let wallet = Wallet::random();
    let token = server.login(&wallet).await;
    let (status, request) = server
        .post_auth(&format!("/faucet/{CHAIN_ID}"), &token, json!({}))
        .await;
    assert_eq!(status, 202, "{request}");
    let id = request["id"].as_str().unwrap().to_string();
    let investor_token = server.login(&investor).await;
    let (status, task) = server
        .post_auth(
            &format!("/auto_invest/{CHAIN_ID}/{:#x}", contracts.campaign),
            &investor_token,
            json!({"amount": "300"}),
        )
        .await;
    assert_eq!(status, 200, "{task}");
    assert!(
        wait_until(Duration::from_secs(30), || nonce(BlockNumberOrTag::Pending)
            .map(|pending| pending > nonce_before + 1))
        .await,
        "the faucet and investFor transactions never both reached the node"
    );
    server.signal("KILL");
    server.wait_exit().await;
    drop(server);

    let server = Server::start(&env).await;
    let _: () = provider
        .raw_request("evm_setAutomine".into(), (true,))
        .await
        .unwrap();
    let _: Value = provider.raw_request("evm_mine".into(), ()).await.unwrap();
    let path = format!("/faucet/{CHAIN_ID}/requests/{id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = server.get_auth(&path, &token).await;
        assert_eq!(status, 200, "{body}");
        if body["status"] == "paid" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the request never completed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let history = format!("/auto_invest/{CHAIN_ID}/{}/history", investor.address());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = server.get_auth(&history, &investor_token).await;
        assert_eq!(status, 200, "{body}");
        if body["auto_invests"][0]["status"] == "success" {
            assert_eq!(body["auto_invests"][0]["invested_amount"], "300");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the auto-invest never completed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a wrongly re-signed transaction the chance to show up, then count.
    let _: Value = provider.raw_request("evm_mine".into(), ()).await.unwrap();
    assert_eq!(nonce(BlockNumberOrTag::Latest).await, nonce_before + 2);
    assert_eq!(nonce(BlockNumberOrTag::Pending).await, nonce_before + 2);
    assert_eq!(
        Campaign::new(contracts.campaign, &provider)
            .totalFundsRaised()
            .call()
            .await
            .unwrap(),
        U256::from(300u64),
        "invested exactly once"
    );
    assert_eq!(
        provider.get_balance(wallet.alloy_address()).await.unwrap(),
        FAUCET_REWARD,
        "paid exactly once"
    );
    drop(server);
    let storage = ampflow_storage::Storage::connect(&ampflow_storage::DatabaseSettings {
        url: db.url.clone(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(10),
        sqlite_sync: ampflow_storage::SqliteSync::Normal,
        group_commit: true,
    })
    .await
    .unwrap();
    for purpose in ["faucet", "auto_invest"] {
        let intents = storage
            .chain()
            .tx_intents_for_purpose(purpose, 10)
            .await
            .unwrap();
        assert_eq!(intents.len(), 1, "{intents:?}");
        assert_eq!(intents[0].send_attempts, 1, "signed once");
    }
}

/// A configuration file with the anvil chain and its contracts, fast rounds, and leases of
/// `lease_ttl_ms` (the transaction sender's and the auto-invest executor's).
/// 0.1 ETH.
const FAUCET_REWARD: U256 = U256::from_limbs([100_000_000_000_000_000, 0, 0, 0]);

/// The platform's contracts on `anvil`, deployed by the signer, with a faucet that pays
/// 0.1 ETH to a wallet below 0.1 ETH and holds ten payouts.
async fn platform(anvil: &Anvil) -> ampflow_chain::deploy::DeployedContracts {
    deploy_platform(
        &anvil.url,
        DEV_KEY_0.parse().unwrap(),
        FaucetFunding {
            reward_wei: FAUCET_REWARD,
            balance_threshold_wei: FAUCET_REWARD,
            initial_balance_wei: FAUCET_REWARD * U256::from(10u64),
        },
    )
    .await
    .unwrap()
}

fn chain_config(
    folder: &std::path::Path,
    rpc_url: &str,
    contracts: &ampflow_chain::deploy::DeployedContracts,
    lease_ttl_ms: u64,
) -> std::path::PathBuf {
    let config = folder.join("ampflow.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[chains]]
chain_id = {CHAIN_ID}
name = "anvil"
rpc_url = "{rpc_url}"
signer_key_env = "TEST_CHAIN_KEY"

[chains.contracts]
stablecoin = "{stablecoin}"
wallet_approver = "{wallet_approver}"
issuer = "{issuer}"
faucet = "{faucet}"
invest_service = "{invest_service}"
campaign = "{campaign}"

[chains.tx]
poll_interval_ms = 100
max_backoff_ms = 1000
lease_ttl_ms = {lease_ttl_ms}

[chains.faucet]
max_wait_ms = 100
per_ip_max = 0

[chains.auto_invest]
tick_interval_ms = 100
recheck_interval_ms = 100
lease_ttl_ms = {lease_ttl_ms}
"#,
            stablecoin = contracts.stablecoin,
            wallet_approver = contracts.wallet_approver,
            issuer = contracts.issuer,
            faucet = contracts.faucet,
            invest_service = contracts.invest_service,
            campaign = contracts.campaign,
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_gracefully() {
    let db = TestDatabase::sqlite();
    let mut server = Server::start(&[("DATABASE_URL", db.url.as_str())]).await;
    let wallet = Wallet::random();
    assert_eq!(
        server
            .post("/authorize", json!({"address": wallet.address()}))
            .await
            .0,
        200
    );
    server.signal("TERM");
    let status = server.wait_exit().await;
    assert!(status.success(), "{status:?}");
    let logs = server.log_text();
    assert!(
        logs.contains("shutting down") && logs.contains("\"stopped\""),
        "{logs}"
    );
}

/// JSON logs at debug level, a configured signing key and a database password: every line is
/// JSON, the configured key signs the tokens, and no secret reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_and_never_contain_secrets() {
    let db = match TestDatabase::create(Backend::Postgres).await {
        Some(db) => db,
        None => TestDatabase::sqlite(),
    };
    // PostgreSQL here trusts loopback, so a password in the URL is accepted and ignored.
    let url = match db.url.split_once('@') {
        Some((user, rest)) if db.backend == Backend::Postgres => {
            format!("{user}:pg-password-123@{rest}")
        }
        _ => db.url.clone(),
    };
    let (key, modulus) = generate_rsa_pem();
    let key_body: String = key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    let mut server =
        Server::start(&[("DATABASE_URL", &url), ("AMPFLOW_JWT_PRIVATE_KEY", &key)]).await;

    let wallet = Wallet::random();
    let (_, body) = server
        .post("/authorize", json!({"address": wallet.address()}))
        .await;
    let (status, tokens) = server
        .post("/authorize/jwt", json!({"address": wallet.address(), "signed_payload": wallet.sign(body["payload"].as_str().unwrap())}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .post(
            "/authorize/refresh",
            json!({"refresh_token": tokens["refresh_token"]}),
        )
        .await;
    assert_eq!(status, 200);
    let jwks: Value = server
        .client
        .get(format!("{}/.well-known/jwks.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        jwks["keys"][0]["n"], modulus,
        "the configured key signs the tokens"
    );
    server.signal("TERM");
    server.wait_exit().await;

    let logs = server.log_text();
    for line in logs.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    for secret in [
        &key_body[..40],
        "pg-password-123",
        tokens["refresh_token"].as_str().unwrap(),
        tokens["access_token"].as_str().unwrap(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    assert!(!logs.contains("generated a new JWT signing key"), "{logs}");
}

/// A PKCS#8 PEM RSA key and its modulus in JWK form.
fn generate_rsa_pem() -> (String, String) {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;
    use base64::Engine;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let modulus = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(key.public_key().modulus().big_endian_without_leading_zero());
    let der = key.as_der().unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    (
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        ),
        modulus,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_pending_migrations_and_exits() {
    let db = TestDatabase::sqlite();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_ampflow"))
            .arg("migrate")
            .env("DATABASE_URL", &db.url)
            .output()
            .expect("run ampflow migrate")
    };
    let first = run();
    assert!(first.status.success(), "{first:?}");
    let names: Vec<String> =
        <ampflow_migrations::Migrator as ampflow_migrations::MigratorTrait>::migrations()
            .iter()
            .map(|m| m.name().to_string())
            .collect();
    assert!(
        names.len() >= 15 && names[0] == "m0001_identity",
        "{names:?}"
    );
    assert!(
        String::from_utf8_lossy(&first.stdout).contains(&format!(
            "applied {} migration(s): {}",
            names.len(),
            names.join(", ")
        )),
        "{first:?}"
    );
    let second = run();
    assert!(second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("applied 0 migration(s)"),
        "{second:?}"
    );
}

/// Stripe (the stand-in, which retries) delivers `payment_intent.succeeded` for many donations
/// at once to the real binary, which is killed with SIGKILL while deliveries are in flight:
/// some acknowledged, some moved but not yet in the ledger, some not yet read. A new process
/// takes the redeliveries, and every payment ends with exactly one ledger entry on a chain
/// that verifies. (Where exactly the kill lands varies from run to run; the invariant is the
/// same wherever it lands.)
async fn sigkill_with_webhooks_in_flight_records_each_payment_once(backend: Backend) {
    use ampflow_standins::stripe::{StripeStandIn, unix_now};
    use ampflow_storage::{DonationRecord, DonationStatus, LedgerRange, prefixed_id};
    use ampflow_types::ledger::{ExportEntry, LedgerExport, verify_export};

    const SECRET_KEY: &str = "sk_test_process";
    const WEBHOOK_SECRET: &str = "whsec_process";
    const DONATIONS: usize = 300;
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let stripe = StripeStandIn::start(SECRET_KEY, WEBHOOK_SECRET)
        .await
        .unwrap();
    // Retries span the restart: the first ones fail while no process listens.
    stripe.set_retry_delays(&[Duration::from_millis(200); 40]);
    let stripe_url = stripe.base_url();
    let secrets = format!("[{WEBHOOK_SECRET}]");
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("AMPFLOW_STRIPE__SECRET_KEY", SECRET_KEY),
        ("AMPFLOW_STRIPE__WEBHOOK_SECRETS", secrets.as_str()),
        ("AMPFLOW_STRIPE__BASE_URL", stripe_url.as_str()),
    ];
    // The first process lets 20 deliveries through, then stops every later one right after its
    // donation's move is committed and before its ledger entry (a fail point, compiled into
    // test builds only): the kill then lands between the two, every time.
    let mut first = env.to_vec();
    first.push(("FAILPOINTS", "stripe_webhook_after_move=20*off->pause"));
    let mut server = Server::start(&first).await;

    // The donations, pending with their PaymentIntents, as `POST /donations` leaves them.
    let mut settings = ampflow_http::config::Settings::default();
    settings.database.url = ampflow_http::config::Secret::new(db.url.clone());
    let storage = ampflow_http::app::open_storage(&settings).await.unwrap();
    let org = ampflow_actors::Organisations::new(
        storage.clone(),
        std::sync::Arc::new(ampflow_types::SystemClock),
    )
    .create(&ampflow_actors::organisations::NewOrganisation {
        name: "Kill test".into(),
        country: "DE".into(),
        status: "verified".into(),
        description: None,
        website: None,
        logo_url: None,
    })
    .await
    .unwrap();
    let now = unix_now() * 1000;
    let mut donations = Vec::new();
    for i in 0..DONATIONS {
        let donation = DonationRecord {
            id: prefixed_id("don"),
            organisation_id: org.id.clone(),
            fund_id: None,
            wallet_address: Some(
                ampflow_types::WalletAddress::parse(&format!("0x{:040x}", i + 1)).unwrap(),
            ),
            amount: 100 + i as i64,
            currency: "EUR".into(),
            donor_email: format!("donor{i}@example.org"),
            donor_name: Some(format!("Donor {i}")),
            status: DonationStatus::Pending,
            stripe_payment_intent_id: Some(prefixed_id("pi")),
            failure_reason: None,
            created_at_ms: now,
            updated_at_ms: now,
            version: 0,
            source: ampflow_storage::DonationSource::Stripe,
        };
        storage
            .donations()
            .insert_donation(&donation)
            .await
            .unwrap();
        donations.push(donation);
    }

    stripe.set_webhook_url(&format!("{}/webhooks/stripe", server.base));
    for d in &donations {
        let intent = json!({
            "id": d.stripe_payment_intent_id, "object": "payment_intent", "amount": d.amount,
            "amount_received": d.amount, "currency": "eur", "status": "succeeded",
            "livemode": false, "metadata": {"donation_id": d.id}, "created": unix_now(),
        });
        stripe.emit(stripe.build_event("payment_intent.succeeded", intent));
    }
    // Killed once deliveries were acknowledged and a donation moved without its entry.
    let some_acknowledged = wait_until(Duration::from_secs(30), || {
        let acknowledged = stripe.acknowledged_event_ids().len();
        async move { acknowledged >= 10 }
    })
    .await;
    assert!(some_acknowledged, "no delivery was acknowledged");
    let stopped_between = wait_until(Duration::from_secs(30), || async {
        let mut moved = 0;
        for d in &donations {
            let stored = storage.donations().donation(&d.id).await.unwrap().unwrap();
            moved += u64::from(stored.status == DonationStatus::Succeeded);
        }
        moved > storage.ledger().ledger_head(&org.id).await.unwrap().0
    })
    .await;
    assert!(
        stopped_between,
        "no delivery stopped between its move and its entry"
    );
    server.signal("KILL");
    server.wait_exit().await;
    let acknowledged_before = stripe.acknowledged_event_ids().len();
    assert!(
        acknowledged_before < DONATIONS,
        "every delivery was acknowledged before the kill; nothing was in flight"
    );
    drop(server);
    // Where the kill landed: donations moved whose entry was not appended yet are the case
    // the redelivery must repair.
    let mut moved_at_kill = 0;
    for d in &donations {
        let stored = storage.donations().donation(&d.id).await.unwrap().unwrap();
        moved_at_kill += usize::from(stored.status == DonationStatus::Succeeded);
    }
    let entries_at_kill = storage.ledger().ledger_head(&org.id).await.unwrap().0;
    assert!(
        moved_at_kill as u64 > entries_at_kill,
        "the kill landed between move and entry"
    );

    let server = Server::start(&env).await;
    stripe.set_webhook_url(&format!("{}/webhooks/stripe", server.base));
    let all_acknowledged = wait_until(Duration::from_secs(60), || {
        let mut ids = stripe.acknowledged_event_ids();
        ids.sort();
        ids.dedup();
        async move { ids.len() == DONATIONS }
    })
    .await;
    assert!(
        all_acknowledged,
        "not every event was acknowledged after the restart: {}",
        server.log_text()
    );

    let entries = storage
        .ledger()
        .ledger_entries(&org.id, LedgerRange::default(), 10_000)
        .await
        .unwrap();
    assert_eq!(entries.len(), DONATIONS, "one entry per payment");
    let mut recorded: Vec<String> = entries
        .iter()
        .map(|e| e.content.metadata.donation_id.clone().unwrap())
        .collect();
    recorded.sort();
    recorded.dedup();
    assert_eq!(recorded.len(), DONATIONS, "no payment recorded twice");
    let export = LedgerExport {
        downloaded_at: String::new(),
        organisation_id: org.id.clone(),
        entry_count: entries.len() as u64,
        entries: entries
            .into_iter()
            .map(|e| ExportEntry::new(e.content, e.entry_hash))
            .collect(),
    };
    assert_eq!(verify_export(&export).unwrap(), DONATIONS as u64);
    for d in &donations {
        let stored = storage.donations().donation(&d.id).await.unwrap().unwrap();
        assert_eq!(stored.status, DonationStatus::Succeeded);
    }
    eprintln!(
        "at the kill: {acknowledged_before} of {DONATIONS} deliveries acknowledged, \
         {moved_at_kill} donations moved, {entries_at_kill} ledger entries"
    );
    storage.close().await.unwrap();
}

/// The wall clock the server's leases are stamped with.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn open_storage(db: &TestDatabase) -> ampflow_storage::Storage {
    ampflow_storage::Storage::connect(&ampflow_storage::DatabaseSettings {
        url: db.url.clone(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(10),
        sqlite_sync: ampflow_storage::SqliteSync::Normal,
        group_commit: true,
    })
    .await
    .unwrap()
}

/// Asks the faucet for a fresh wallet and waits until it is paid; answers when it was seen
/// paid.
async fn faucet_paid(server: &Server, deadline: Duration) -> i64 {
    let wallet = Wallet::random();
    let token = server.login(&wallet).await;
    let (status, request) = server
        .post_auth(&format!("/faucet/{CHAIN_ID}"), &token, json!({}))
        .await;
    assert_eq!(status, 202, "{request}");
    let path = format!(
        "/faucet/{CHAIN_ID}/requests/{}",
        request["id"].as_str().unwrap()
    );
    let paid = wait_until(deadline, || async {
        server.get_auth(&path, &token).await.1["status"] == "paid"
    })
    .await;
    assert!(
        paid,
        "not paid within {deadline:?}: {}",
        server.get_auth(&path, &token).await.1
    );
    now_ms()
}

/// A node killed with SIGKILL leaves its leases (the transaction sender's, the auto-invest
/// executor's) behind, unexpired. Started again with the same node id (on SQLite the id kept
/// beside the database, on PostgreSQL a configured one), it takes them back at once and pays
/// a faucet request long before they would have expired; a node with another id started
/// after the next SIGKILL waits for their expiry before it sends anything.
async fn a_node_restarted_after_sigkill_takes_its_leases_back_and_another_node_waits(
    backend: Backend,
) {
    const LEASE_TTL_MS: u64 = 10_000;
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let anvil = Anvil::start().await;
    let contracts = platform(&anvil).await;
    let folder = tempfile::tempdir().unwrap();
    let config = chain_config(folder.path(), &anvil.url, &contracts, LEASE_TTL_MS);
    let mut env = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("AMPFLOW_CONFIG", config.to_str().unwrap()),
        ("TEST_CHAIN_KEY", DEV_KEY_0),
        // The test polls faster than the public tier allows.
        ("AMPFLOW_RATE_LIMIT__ENABLED", "false"),
    ];
    if backend == Backend::Postgres {
        env.push(("AMPFLOW_NODE_ID", "node-a"));
    }
    let signer: PrivateKeySigner = DEV_KEY_0.parse().unwrap();
    let sender_lease = format!("tx_sender:{CHAIN_ID}:{:#x}", signer.address());
    let executor_lease = format!("auto_invest:{CHAIN_ID}");
    let storage = open_storage(&db).await;
    let holder = |name: String| {
        let storage = storage.clone();
        async move { storage.leases().lease(&name).await.unwrap() }
    };

    let mut first = Server::start(&env).await;
    faucet_paid(&first, Duration::from_secs(30)).await;
    let (first_run, _) = holder(sender_lease.clone())
        .await
        .expect("the sender's lease");
    let node = first_run.rsplit_once('#').unwrap().0.to_string();
    if backend == Backend::Postgres {
        assert_eq!(first_run, "node-a#1");
    } else {
        let kept = std::fs::read_to_string(format!(
            "{}.node_id",
            ampflow_storage::sqlite_file(&db.url).unwrap().display()
        ))
        .unwrap();
        assert_eq!(
            kept.trim(),
            node,
            "the generated id is kept beside the database"
        );
    }
    first.signal("KILL");
    first.wait_exit().await;
    drop(first);
    let (_, sender_expiry) = holder(sender_lease.clone()).await.unwrap();
    let (executor_run, executor_expiry) = holder(executor_lease.clone()).await.unwrap();
    assert_eq!(executor_run, first_run, "one holder per run");

    // The same node again: its run 2 holds both leases at once and pays well before run 1's
    // leases would have expired.
    let mut second = Server::start(&env).await;
    let paid_at = faucet_paid(&second, Duration::from_millis(LEASE_TTL_MS / 2)).await;
    assert!(
        paid_at < sender_expiry && paid_at < executor_expiry,
        "paid before the killed run's leases expired"
    );
    let second_run = format!("{node}#2");
    assert_eq!(holder(sender_lease.clone()).await.unwrap().0, second_run);
    let taken = wait_until(Duration::from_secs(5), || async {
        holder(executor_lease.clone()).await.unwrap().0 == second_run
    })
    .await;
    assert!(taken, "the executor's lease was not taken back");
    assert!(
        second
            .log_text()
            .contains("took back this node's lease from its previous run"),
        "{}",
        second.log_text()
    );
    second.signal("KILL");
    second.wait_exit().await;
    drop(second);
    let (_, sender_expiry) = holder(sender_lease.clone()).await.unwrap();

    // Another node: it waits for the leases to expire before it sends anything.
    let mut other_env = env.clone();
    other_env.retain(|(key, _)| *key != "AMPFLOW_NODE_ID");
    other_env.push(("AMPFLOW_NODE_ID", "node-b"));
    let other = Server::start(&other_env).await;
    assert!(
        now_ms() < sender_expiry,
        "started while the lease still held"
    );
    let paid_at = faucet_paid(&other, Duration::from_millis(3 * LEASE_TTL_MS)).await;
    assert!(
        paid_at >= sender_expiry,
        "paid at {paid_at}, before the lease expired at {sender_expiry}"
    );
    assert_eq!(holder(sender_lease).await.unwrap().0, "node-b#1");
    assert!(
        other
            .log_text()
            .contains("another process holds the sender's lease; waiting"),
        "{}",
        other.log_text()
    );
}

/// Node a sends, then is paused (SIGSTOP) past its sender lease; node b takes the lease, sends
/// the next nonce, and dies; when node a resumes and has work again, its lease is free and it
/// takes it, with no other state seen in between. It must read the nonce again rather than
/// use the one it had cached, which node b has used (that transaction would be refused as
/// nonce too low and its work failed once, "used by another transaction").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_whose_lease_lapsed_while_paused_reads_the_nonce_again() {
    const LEASE_TTL_MS: u64 = 2_000;
    // Two processes at once: PostgreSQL only.
    let Some(db) = TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    let anvil = Anvil::start().await;
    let contracts = platform(&anvil).await;
    let folder = tempfile::tempdir().unwrap();
    let config = chain_config(folder.path(), &anvil.url, &contracts, LEASE_TTL_MS);
    let env = |node: &'static str| {
        vec![
            ("DATABASE_URL", db.url.as_str()),
            ("AMPFLOW_CONFIG", config.to_str().unwrap()),
            ("TEST_CHAIN_KEY", DEV_KEY_0),
            ("AMPFLOW_RATE_LIMIT__ENABLED", "false"),
            ("AMPFLOW_NODE_ID", node),
        ]
    };
    let signer: PrivateKeySigner = DEV_KEY_0.parse().unwrap();
    let sender_lease = format!("tx_sender:{CHAIN_ID}:{:#x}", signer.address());
    let storage = open_storage(&db).await;

    let a = Server::start(&env("node-a")).await;
    faucet_paid(&a, Duration::from_secs(30)).await;
    a.signal("STOP");
    let mut b = Server::start(&env("node-b")).await;
    faucet_paid(&b, Duration::from_secs(30)).await;
    assert_eq!(
        storage
            .leases()
            .lease(&sender_lease)
            .await
            .unwrap()
            .unwrap()
            .0,
        "node-b#1"
    );
    b.signal("KILL");
    b.wait_exit().await;
    let (_, expiry) = storage
        .leases()
        .lease(&sender_lease)
        .await
        .unwrap()
        .unwrap();
    let lapsed = wait_until(Duration::from_secs(10), || async { now_ms() > expiry }).await;
    assert!(lapsed);

    a.signal("CONT");
    faucet_paid(&a, Duration::from_secs(30)).await;
    // Three payouts, three transactions, none failed.
    let intents = storage
        .chain()
        .tx_intents_for_purpose("faucet", 10)
        .await
        .unwrap();
    let failed: Vec<_> = intents.iter().filter_map(|i| i.failure.as_ref()).collect();
    assert!(
        failed.is_empty(),
        "node a sent with a nonce node b had used: {failed:?}"
    );
    assert_eq!(intents.len(), 3);
    assert!(
        a.log_text()
            .contains("took the sender's lease again after it lapsed")
    );
    a.signal("KILL");
}
