//! The test harness: the real app on port 0 with a fresh database, a typed client, and wallets
//! that sign with real secp256k1 keys through alloy's local signer.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod anvil;
pub mod dashboard;
pub mod partner;

use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use ampflow_http::config::{Secret, Settings};
use ampflow_http::{RunningApp, StartOptions};
use ampflow_storage::testdb::{Backend, TestDatabase};
use ampflow_types::ManualClock;
use serde_json::{Value, json};

/// Generates one test per backend for each named async fn taking a `Backend`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(ampflow_storage::testdb::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(ampflow_storage::testdb::Backend::Postgres).await
            }
        }
    )*};
}

pub struct TestApp {
    pub app: Option<RunningApp>,
    pub db: TestDatabase,
    pub clock: ManualClock,
    pub settings: Settings,
    pub client: reqwest::Client,
    pub signers: HashMap<ampflow_types::ChainId, PrivateKeySigner>,
}

pub fn settings_for(db: &TestDatabase) -> Settings {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..Settings::default()
    };
    settings.database.url = Secret::new(db.url.clone());
    settings.database.max_connections = 8;
    settings.test_mode = true;
    settings.http.shutdown_grace_ms = 5_000;
    // Tests send bursts from one loopback address; tests/rate_limit.rs turns limits on with
    // its own small numbers.
    settings.rate_limit.enabled = false;
    // With SQLite the node id is generated and kept beside the test's own database; with
    // PostgreSQL its default file (`data/node_id` in the working directory) would be shared by
    // every test at once, so each test's app is a node of its own. A second app on the same
    // database must be given another id (two live processes never share one).
    if db.backend == Backend::Postgres {
        settings.node.id = Some(format!(
            "test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
    }
    settings
}

impl TestApp {
    /// A running app on a fresh database, or `None` when the backend is not available here
    /// (PostgreSQL without `TEST_DATABASE_URL`).
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Option<Self> {
        Self::start_signing(backend, HashMap::new(), tweak).await
    }

    /// Like `start_with`, with transaction signers for chains.
    pub async fn start_signing(
        backend: Backend,
        signers: HashMap<ampflow_types::ChainId, PrivateKeySigner>,
        tweak: impl FnOnce(&mut Settings),
    ) -> Option<Self> {
        let Some(db) = TestDatabase::create(backend).await else {
            eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL variant");
            return None;
        };
        let mut settings = settings_for(&db);
        tweak(&mut settings);
        let clock = ManualClock::starting_now();
        let app = ampflow_http::start(
            settings.clone(),
            StartOptions {
                clock: Arc::new(clock.clone()),
                chain_signers: signers.clone(),
            },
        )
        .await
        .expect("start the app");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Some(Self {
            app: Some(app),
            db,
            clock,
            settings,
            client,
            signers,
        })
    }

    pub fn app(&self) -> &RunningApp {
        self.app.as_ref().expect("app is running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.app().base_url(), path)
    }

    /// A second server process on the same database, clock and signers, as another node
    /// (two live processes never share a node id). Its copies of entities only go stale by
    /// the manual clock, which stands still unless a test moves it.
    pub async fn another_process(&self, node_id: &str) -> RunningApp {
        let mut settings = self.settings.clone();
        settings.node.id = Some(node_id.into());
        ampflow_http::start(
            settings,
            StartOptions {
                clock: Arc::new(self.clock.clone()),
                chain_signers: self.signers.clone(),
            },
        )
        .await
        .expect("start another process")
    }

    /// Stops the server gracefully and starts a new one on the same database.
    pub async fn restart(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        let app = ampflow_http::start(
            self.settings.clone(),
            StartOptions {
                clock: Arc::new(self.clock.clone()),
                chain_signers: self.signers.clone(),
            },
        )
        .await
        .expect("restart the app");
        self.app = Some(app);
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.client.post(self.url(path)).json(&body))
            .await
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    pub async fn delete_auth(&self, path: &str, token: &str) -> (u16, Value) {
        self.send(self.client.delete(self.url(path)).bearer_auth(token))
            .await
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> (u16, Value) {
        self.send(self.client.get(self.url(path)).bearer_auth(token))
            .await
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("send request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("read body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    /// A fresh `/authorize` payload for `address`.
    pub async fn payload(&self, address: &str) -> String {
        let (status, body) = self.post("/authorize", json!({"address": address})).await;
        assert_eq!(status, 200, "{body}");
        body["payload"].as_str().expect("payload").to_string()
    }

    /// The `/authorize/jwt` body for `wallet`: a fresh payload, signed with its key.
    pub async fn signed_login(&self, wallet: &Wallet) -> Value {
        let payload = self.payload(&wallet.address()).await;
        json!({"address": wallet.address(), "signed_payload": wallet.sign(&payload)})
    }

    /// `/authorize` → sign → `/authorize/jwt`, returning the token response.
    /// A fresh login's access token.
    pub async fn access_token(&self, wallet: &Wallet) -> String {
        self.login(wallet).await["access_token"]
            .as_str()
            .expect("an access token")
            .to_string()
    }

    pub async fn login(&self, wallet: &Wallet) -> Value {
        let (status, tokens) = self
            .post("/authorize/jwt", self.signed_login(wallet).await)
            .await;
        assert_eq!(status, 200, "{tokens}");
        tokens
    }
}

/// A wallet with a real secp256k1 key.
pub struct Wallet(PrivateKeySigner);

impl Wallet {
    pub fn random() -> Self {
        Self(PrivateKeySigner::random())
    }

    /// The lowercase address.
    pub fn address(&self) -> String {
        format!("{:#x}", self.0.address())
    }

    pub fn alloy_address(&self) -> alloy::primitives::Address {
        self.0.address()
    }

    /// The wallet's key, to send transactions from it.
    pub fn signer(&self) -> PrivateKeySigner {
        self.0.clone()
    }

    /// The EIP-55 mixed-case address.
    pub fn checksum_address(&self) -> String {
        self.0.address().to_checksum(None)
    }

    /// An EIP-191 personal_sign signature, 0x-hex, with v as 27/28.
    pub fn sign(&self, message: &str) -> String {
        let signature = self.0.sign_message_sync(message.as_bytes()).expect("sign");
        format!("0x{}", hex_encode(&signature.as_bytes()))
    }
}

pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Polls `condition` every 20 ms until it holds or `deadline` passes.
pub async fn wait_until<F, Fut>(deadline: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

pub fn assert_error(
    status: u16,
    body: &Value,
    expected_status: u16,
    code: &str,
    param: Option<&str>,
) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    if let Some(param) = param {
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// A verified organisation in Germany named `name`, made through the operator code: its id.
pub async fn verified_organisation(app: &TestApp, name: &str, description: Option<&str>) -> String {
    let new = ampflow_actors::organisations::NewOrganisation {
        name: name.into(),
        country: "DE".into(),
        status: "verified".into(),
        description: description.map(str::to_string),
        ..Default::default()
    };
    app.app()
        .actors()
        .organisations()
        .create(&new)
        .await
        .expect("create an organisation")
        .id
}

/// The malleable twin of a 65-byte `r ‖ s ‖ v` signature: (r, n − s, v flipped) recovers the
/// same key.
pub fn high_s_twin(signature: &[u8]) -> Vec<u8> {
    use alloy::primitives::U256;
    let order = U256::from_be_bytes(alloy::primitives::hex!(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
    ));
    let s = U256::from_be_slice(&signature[32..64]);
    let mut twin = signature.to_vec();
    twin[32..64].copy_from_slice(&(order - s).to_be_bytes::<32>());
    twin[64] = match signature[64] {
        27 => 28,
        28 => 27,
        v => v ^ 1,
    };
    twin
}

/// The `donation_received` ledger entry of donation `don_{n}` (amount 1,000 + n EUR), made at
/// `at_ms`, for tests that append to a ledger directly.
pub fn donation_entry(n: i64, at_ms: i64) -> ampflow_storage::NewLedgerEntry {
    ampflow_storage::NewLedgerEntry {
        entry_type: "donation_received".into(),
        amount: 1_000 + n,
        currency: "EUR".into(),
        metadata: ampflow_types::ledger::LedgerMetadata {
            donation_id: Some(format!("don_{n}")),
            donor_name: Some(format!("Donor {n}")),
            stripe_payment_intent_id: Some(format!("pi_{n}")),
        },
        created_at_ms: at_ms,
        dedupe_key: Some(format!("donation_received:don_{n}")),
        rule: Default::default(),
    }
}
