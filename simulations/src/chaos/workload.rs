//! The workload: actors that use the product as its users do, each driven by its own stream
//! of the seed, until the campaign's deadline. What the product acknowledged is written into
//! the [`Book`], which the invariants check at the end; what must hold at once (a replayed
//! login refused, a partner retry answered with the same donation) is checked on the spot.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use ampflow_standins::recaptcha::RecaptchaStandIn;
use ampflow_standins::stripe::{StripeStandIn, TestCard};
use ampflow_standins::veriff::{Decision, SignatureScheme, VeriffStandIn};
use rand::Rng;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Answer, Auth, Client};
use super::rng::{Stream, stream};
use super::setup::{ADMIN_EMAIL, ADMIN_PASSWORD, CHAIN_ID, STRIPE_SECRET_KEY, World};
use super::timeline::Timeline;
use crate::flows;

/// An auto-invest task as the product last acknowledged it.
#[derive(Debug, Clone)]
pub struct TaskAck {
    pub wallet: String,
    pub campaign: String,
    /// The amount of the last acknowledged submit or merge.
    pub amount: String,
    /// The last acknowledgement was a cancel.
    pub cancelled: bool,
}

#[derive(Debug, Clone)]
pub struct DonationAck {
    pub id: String,
    pub organisation: String,
    pub amount: i64,
    pub payment_intent: String,
}

/// What the product acknowledged, and what was found wrong on the spot.
#[derive(Debug, Default, Clone)]
pub struct Book {
    /// (request id, wallet).
    pub faucet: Vec<(String, String)>,
    /// (request id or none when already approved, wallet).
    pub whitelist: Vec<(Option<String>, String)>,
    pub tasks: BTreeMap<String, TaskAck>,
    pub donations: Vec<DonationAck>,
    /// publisherTransactionId → guid.
    pub partner: BTreeMap<String, String>,
    pub partner_cancelled: BTreeSet<String>,
    pub kyc_approved: BTreeSet<String>,
    pub key_rotations: u64,
    pub ledger_reads: u64,
    pub exports: u64,
    pub checkpoint_runs: u64,
    pub checkpoint_failures: Vec<String>,
    pub violations: Vec<String>,
}

pub struct Shared {
    pub seed: u64,
    pub client: Client,
    pub book: Mutex<Book>,
    pub timeline: Arc<Timeline>,
    pub stripe: Arc<StripeStandIn>,
    pub veriff: Arc<VeriffStandIn>,
    pub recaptcha: Arc<RecaptchaStandIn>,
    pub world: Arc<World>,
    pub binary: PathBuf,
    pub deadline: Instant,
    /// The run's clock (the partner's `Date` header is on it).
    pub clocks: Arc<super::clock::Clocks>,
}

impl Shared {
    fn book(&self, change: impl FnOnce(&mut Book)) {
        if let Ok(mut book) = self.book.lock() {
            change(&mut book);
        }
    }

    fn violation(&self, text: String) {
        self.timeline.record("VIOLATION", &text);
        self.book(|b| b.violations.push(text));
    }

    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }
}

/// How many actors of each kind.
pub struct Mix {
    pub wallets: usize,
    pub donors: usize,
}

/// Starts every actor; answers their handles.
pub fn start(shared: &Arc<Shared>, mix: &Mix) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for i in 0..mix.wallets {
        handles.push(tokio::spawn(wallet_user(shared.clone(), i as u64)));
    }
    for i in 0..shared.world.investors.len() {
        handles.push(tokio::spawn(investor(shared.clone(), i)));
    }
    for i in 0..mix.donors {
        handles.push(tokio::spawn(donor(shared.clone(), i as u64)));
    }
    handles.push(tokio::spawn(dashboard(shared.clone())));
    handles.push(tokio::spawn(partner(shared.clone())));
    handles.push(tokio::spawn(checkpoints(shared.clone())));
    handles
}

async fn think(rng: &mut Stream) {
    tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
}

/// A signed-in wallet: its tokens.
struct Session {
    access: String,
    refresh: String,
    /// A refresh of this session was sent to a node that did not answer and then to another:
    /// the first may still carry it out later, see a spent token and revoke the session.
    tainted: bool,
}

/// `/authorize` → sign → `/authorize/jwt`; with `replay`, the same signed login is sent
/// again and must be refused (the nonce is single-use, on every node).
async fn sign_in(
    shared: &Shared,
    rng: &mut Stream,
    signer: &PrivateKeySigner,
    replay: bool,
) -> Option<Session> {
    let address = format!("{:#x}", signer.address());
    let client = &shared.client;
    let body = json!({"address": address});
    let answer = client
        .call(
            rng,
            "authorize",
            Method::POST,
            "/authorize",
            Some(&body),
            Auth::None,
        )
        .await?;
    let message = answer.body["payload"].as_str()?.to_string();
    let signature = signer.sign_message_sync(message.as_bytes()).ok()?;
    let login = json!({"address": address, "signed_payload": alloy::hex::encode_prefixed(signature.as_bytes())});
    let answer = client
        .call(
            rng,
            "login",
            Method::POST,
            "/authorize/jwt",
            Some(&login),
            Auth::None,
        )
        .await?;
    if !answer.ok() {
        return None;
    }
    if replay
        && let Some(again) = client
            .call(
                rng,
                "login_replay",
                Method::POST,
                "/authorize/jwt",
                Some(&login),
                Auth::None,
            )
            .await
        && again.ok()
    {
        shared.violation(format!("a replayed login of {address} was accepted"));
    }
    Some(Session {
        access: answer.body["access_token"].as_str()?.to_string(),
        refresh: answer.body["refresh_token"].as_str()?.to_string(),
        tainted: false,
    })
}

/// Wallets that sign in, refresh (sometimes replaying a spent refresh token), read their user
/// and ask the faucet, then move on to a fresh wallet.
async fn wallet_user(shared: Arc<Shared>, index: u64) {
    let mut rng = stream(shared.seed, "wallet", index);
    let mut tokens_issued = 0u64;
    while shared.running() {
        let signer = flows::wallet(&mut rng);
        let address = format!("{:#x}", signer.address());
        let replay = rng.random_bool(0.2);
        let Some(mut session) = sign_in(&shared, &mut rng, &signer, replay).await else {
            think(&mut rng).await;
            continue;
        };
        for _ in 0..rng.random_range(1..6) {
            if !shared.running() {
                return;
            }
            match rng.random_range(0..10) {
                0..=4 => {
                    tokens_issued += 1;
                    let token = format!("chaos-{}-{index}-{tokens_issued}", shared.seed);
                    shared.recaptcha.issue(&token, 0.9);
                    faucet(&shared, &mut rng, &session, &address, &token).await;
                }
                5..=7 => {
                    let replay = rng.random_bool(0.25);
                    match refresh(&shared, &mut rng, &session, replay).await {
                        Some(next) => session = next,
                        None => break,
                    }
                }
                _ => {
                    let answer = shared
                        .client
                        .call(
                            &mut rng,
                            "user",
                            Method::GET,
                            "/user",
                            None,
                            Auth::Bearer(&session.access),
                        )
                        .await;
                    if let Some(answer) = answer
                        && answer.status == 401
                        && !session.tainted
                    {
                        shared.violation(format!(
                            "node {} refused the live session of {address}: {}",
                            answer.node, answer.body
                        ));
                        break;
                    }
                }
            }
            think(&mut rng).await;
        }
    }
}

async fn faucet(shared: &Shared, rng: &mut Stream, session: &Session, address: &str, token: &str) {
    let path = format!("/faucet/{CHAIN_ID}");
    let body = json!({"re_captcha_token": token});
    let Some(answer) = shared
        .client
        .call(
            rng,
            "faucet",
            Method::POST,
            &path,
            Some(&body),
            Auth::Bearer(&session.access),
        )
        .await
    else {
        return;
    };
    if (answer.status == 200 || answer.status == 202)
        && let Some(id) = answer.body["id"].as_str()
    {
        let (id, wallet) = (id.to_string(), address.to_string());
        shared.book(|b| b.faucet.push((id, wallet)));
    }
}

/// Rotates the refresh token; with `replay`, presents the spent one again, which must be
/// refused and ends the session (the caller signs in afresh).
async fn refresh(
    shared: &Shared,
    rng: &mut Stream,
    session: &Session,
    replay: bool,
) -> Option<Session> {
    let body = json!({"refresh_token": session.refresh});
    let answer = shared
        .client
        .call(
            rng,
            "refresh",
            Method::POST,
            "/authorize/refresh",
            Some(&body),
            Auth::None,
        )
        .await?;
    if !answer.ok() {
        return None;
    }
    if replay {
        let again = shared
            .client
            .call(
                rng,
                "refresh_replay",
                Method::POST,
                "/authorize/refresh",
                Some(&body),
                Auth::None,
            )
            .await;
        if again.as_ref().is_some_and(Answer::ok) {
            shared.violation("a spent refresh token was accepted again".into());
        }
        return None;
    }
    Some(Session {
        access: answer.body["access_token"].as_str()?.to_string(),
        refresh: answer.body["refresh_token"].as_str()?.to_string(),
        tainted: session.tainted || answer.fell_over,
    })
}

/// An investor: signs in, passes KYC through the Veriff stand-in (whose decision webhook may
/// be sent twice), asks to be whitelisted, then submits, merges and cancels auto-investments
/// across the campaigns.
async fn investor(shared: Arc<Shared>, index: usize) {
    let mut rng = stream(shared.seed, "investor", index as u64);
    let signer = shared.world.investors[index].clone();
    let address = format!("{:#x}", signer.address());
    let mut session = None;
    let mut whitelisted = false;
    while shared.running() {
        let Some(current) = session.as_ref() else {
            session = sign_in(&shared, &mut rng, &signer, false).await;
            think(&mut rng).await;
            continue;
        };
        let access = current.access.clone();
        if !whitelisted {
            match kyc_and_whitelist(&shared, &mut rng, &access, &address).await {
                Some(true) => whitelisted = true,
                Some(false) => {}
                None => session = None,
            }
            think(&mut rng).await;
            continue;
        }
        if auto_invest(&shared, &mut rng, &access, &address).await {
            session = None;
        }
        think(&mut rng).await;
    }
}

/// Submits (or, one time in five, cancels) an auto-investment in a campaign drawn at random,
/// and now and then reads the investor's tasks back; answers whether the session was refused.
async fn auto_invest(shared: &Shared, rng: &mut Stream, access: &str, address: &str) -> bool {
    let campaign = shared.world.campaigns[rng.random_range(0..shared.world.campaigns.len())];
    let campaign = format!("{campaign:#x}");
    let path = format!("/auto_invest/{CHAIN_ID}/{campaign}");
    let answer = if rng.random_bool(0.2) {
        shared
            .client
            .call(
                rng,
                "auto_invest_cancel",
                Method::DELETE,
                &path,
                None,
                Auth::Bearer(access),
            )
            .await
    } else {
        let amount = (rng.random_range(1..1000u64) * 1000).to_string();
        let body = json!({"amount": amount});
        shared
            .client
            .call(
                rng,
                "auto_invest",
                Method::POST,
                &path,
                Some(&body),
                Auth::Bearer(access),
            )
            .await
    };
    let mut refused = false;
    if let Some(answer) = answer {
        refused = answer.status == 401;
        record_task(shared, &answer, address, &campaign);
    }
    if rng.random_bool(0.2) {
        let list = format!("/auto_invest/{CHAIN_ID}/{address}");
        let _ = shared
            .client
            .call(
                rng,
                "auto_invest_list",
                Method::GET,
                &list,
                None,
                Auth::None,
            )
            .await;
    }
    refused
}

fn record_task(shared: &Shared, answer: &Answer, wallet: &str, campaign: &str) {
    if !answer.ok() {
        return;
    }
    let task = &answer.body;
    let (Some(id), Some(status), Some(amount)) = (
        task["id"].as_str(),
        task["status"].as_str(),
        task["amount"].as_str(),
    ) else {
        return;
    };
    let ack = TaskAck {
        wallet: wallet.to_string(),
        campaign: campaign.to_string(),
        amount: amount.to_string(),
        cancelled: status == "cancelled",
    };
    let id = id.to_string();
    shared.book(|b| {
        b.tasks.insert(id, ack);
    });
}

/// KYC, then the whitelisting request; `Some(true)` once it is acknowledged, `None` when the
/// session is no longer valid.
async fn kyc_and_whitelist(
    shared: &Shared,
    rng: &mut Stream,
    access: &str,
    address: &str,
) -> Option<bool> {
    let approved = shared
        .book
        .lock()
        .map(|b| b.kyc_approved.contains(address))
        .unwrap_or(false);
    if !approved {
        pass_kyc(shared, rng, access, address).await?;
        return Some(false);
    }
    let issuer = format!("{:#x}", shared.world.contracts.issuer);
    let body = json!({"issuer_address": issuer, "chain_id": CHAIN_ID});
    let answer = shared
        .client
        .call(
            rng,
            "whitelist",
            Method::POST,
            "/user/whitelist",
            Some(&body),
            Auth::Bearer(access),
        )
        .await?;
    if answer.status == 401 {
        return None;
    }
    if answer.status == 200 || answer.status == 202 {
        let id = answer.body["id"].as_str().map(str::to_string);
        let wallet = address.to_string();
        shared.book(|b| b.whitelist.push((id, wallet)));
        return Some(true);
    }
    Some(false)
}

/// A Veriff session, then its approval sent back as the decision webhook (twice, three times
/// in ten); an approval acknowledged is booked. `None` when the session call is unanswered or
/// refused with 401, or the stand-in holds no session for `address`.
async fn pass_kyc(shared: &Shared, rng: &mut Stream, access: &str, address: &str) -> Option<()> {
    let answer = shared
        .client
        .call(
            rng,
            "veriff_session",
            Method::POST,
            "/veriff/session",
            Some(&json!({})),
            Auth::Bearer(access),
        )
        .await?;
    if answer.status == 401 {
        return None;
    }
    let session = shared
        .veriff
        .sessions()
        .into_iter()
        .rev()
        .find(|s| s.vendor_data.eq_ignore_ascii_case(address))?;
    let copies = if rng.random_bool(0.3) { 2 } else { 1 };
    for _ in 0..copies {
        let sent = shared
            .veriff
            .send_decision(&session.id, &Decision::approved(), SignatureScheme::Hmac)
            .await;
        if matches!(sent, Ok(200)) {
            let address = address.to_string();
            shared.book(|b| {
                b.kyc_approved.insert(address);
            });
        }
    }
    Some(())
}

/// A donor: donates through Stripe (the stand-in plays the donor's browser: a good card, or a
/// declined one and sometimes a second try), and sometimes asks for a full or partial refund.
async fn donor(shared: Arc<Shared>, index: u64) {
    let mut rng = stream(shared.seed, "donor", index);
    let stripe_http = reqwest::Client::new();
    while shared.running() {
        let signer = flows::wallet(&mut rng);
        let Some(session) = sign_in(&shared, &mut rng, &signer, false).await else {
            think(&mut rng).await;
            continue;
        };
        for n in 0..rng.random_range(1..4) {
            if !shared.running() {
                return;
            }
            let organisation = shared.world.organisations
                [rng.random_range(0..shared.world.organisations.len())]
            .clone();
            let amount: i64 = rng.random_range(100..10_000);
            let body = json!({
                "organisation_id": organisation, "amount": amount, "currency": "EUR",
                "donor_email": format!("donor{index}-{n}@example.org"), "donor_name": format!("Donor {index}"),
            });
            let answer = shared
                .client
                .call(
                    &mut rng,
                    "donation",
                    Method::POST,
                    "/donations",
                    Some(&body),
                    Auth::Bearer(&session.access),
                )
                .await;
            let Some(answer) = answer.filter(|a| a.status == 201) else {
                think(&mut rng).await;
                continue;
            };
            let data = &answer.body["data"];
            let (Some(id), Some(secret)) = (data["id"].as_str(), data["client_secret"].as_str())
            else {
                continue;
            };
            let payment_intent = secret
                .split("_secret_")
                .next()
                .unwrap_or_default()
                .to_string();
            shared.book(|b| {
                b.donations.push(DonationAck {
                    id: id.to_string(),
                    organisation,
                    amount,
                    payment_intent: payment_intent.clone(),
                })
            });
            think(&mut rng).await;
            pay(&shared, &mut rng, &stripe_http, &payment_intent, amount).await;
            think(&mut rng).await;
        }
    }
}

async fn pay(
    shared: &Shared,
    rng: &mut Stream,
    stripe_http: &reqwest::Client,
    payment_intent: &str,
    amount: i64,
) {
    let card = if rng.random_bool(0.15) {
        TestCard::Declined
    } else {
        TestCard::Visa
    };
    let _ = shared.stripe.confirm(payment_intent, card);
    if card == TestCard::Declined {
        if !rng.random_bool(0.5) {
            return;
        }
        let _ = shared.stripe.confirm(payment_intent, TestCard::Visa);
    }
    if !rng.random_bool(0.3) {
        return;
    }
    // A full refund, or one or two partial ones.
    let parts: Vec<i64> = match rng.random_range(0..3) {
        0 => vec![amount],
        1 => vec![amount / 3],
        _ => vec![amount / 4, amount / 5],
    };
    for part in parts.into_iter().filter(|p| *p > 0) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..1500))).await;
        let url = format!("{}/v1/refunds", shared.stripe.base_url());
        let form = [
            ("payment_intent", payment_intent.to_string()),
            ("amount", part.to_string()),
        ];
        let _ = stripe_http
            .post(url)
            .bearer_auth(STRIPE_SECRET_KEY)
            .form(&form)
            .send()
            .await;
    }
}

/// What the dashboard admin holds between turns.
#[derive(Default)]
struct Admin {
    /// The session cookie, once signed in.
    cookie: Option<String>,
    /// The API key's id and secret, once made.
    key: Option<(String, String)>,
    /// The last access token minted with the key.
    token: Option<String>,
}

/// The organisations' admin: signs in to the dashboard, makes an API key, rotates it now and
/// then, mints access tokens, and reads and exports the ledgers with them.
async fn dashboard(shared: Arc<Shared>) {
    let mut rng = stream(shared.seed, "dashboard", 0);
    let mut admin = Admin::default();
    let organisation = shared.world.organisations[0].clone();
    while shared.running() {
        think(&mut rng).await;
        think(&mut rng).await;
        let Some(session) = admin.cookie.clone() else {
            admin.cookie = dashboard_login(&shared, &mut rng).await;
            continue;
        };
        let Some((key_id, secret)) = admin.key.clone() else {
            create_api_key(&shared, &mut rng, &mut admin, &organisation, &session).await;
            continue;
        };
        // The key reads its own organisation's ledger; another organisation's is read anonymously.
        let (org, anonymous) = if rng.random_bool(0.7) {
            (organisation.clone(), false)
        } else {
            (shared.world.organisations[1].clone(), true)
        };
        match rng.random_range(0..10) {
            0 => rotate_api_key(&shared, &mut rng, &session, &key_id).await,
            1 => {
                if let Some(minted) = mint_token(&shared, &mut rng, &session, &key_id).await {
                    admin.token = Some(minted);
                }
            }
            2 => {
                let auth = if anonymous {
                    Auth::None
                } else {
                    Auth::Bearer(&secret)
                };
                export_ledger(&shared, &mut rng, &org, auth).await;
            }
            3 => {
                let path = format!("/donations?organisation_id={organisation}");
                dashboard_get(&shared, &mut rng, "dashboard_donations", &path, &session).await;
            }
            4 => {
                let path = "/me/organisations";
                dashboard_get(&shared, &mut rng, "dashboard_orgs", path, &session).await;
            }
            5 => {
                // Signs out; the next turn signs in again.
                dashboard_logout(&shared, &mut rng, &session).await;
                admin.cookie = None;
            }
            _ => {
                let credential = match (&admin.token, rng.random_bool(0.5)) {
                    (Some(token), true) => token.clone(),
                    _ => secret.clone(),
                };
                let auth = if anonymous {
                    Auth::None
                } else {
                    Auth::Bearer(&credential)
                };
                read_ledger(&shared, &mut rng, &org, auth).await;
            }
        }
    }
}

/// Signs the admin in to the dashboard; answers the session cookie.
async fn dashboard_login(shared: &Shared, rng: &mut Stream) -> Option<String> {
    let body = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
    let answer = shared
        .client
        .call(
            rng,
            "dashboard_login",
            Method::POST,
            "/auth/login",
            Some(&body),
            Auth::None,
        )
        .await;
    answer.and_then(|a| a.set_cookie)
}

/// Makes the admin's API key for `organisation`; a 401 signs the admin out.
async fn create_api_key(
    shared: &Shared,
    rng: &mut Stream,
    admin: &mut Admin,
    organisation: &str,
    session: &str,
) {
    let body = json!({"organisation_id": organisation, "name": "chaos reader", "policies": ["ledger:read", "donations:read"]});
    let answer = shared
        .client
        .call(
            rng,
            "api_key_create",
            Method::POST,
            "/admin/api-keys",
            Some(&body),
            Auth::Cookie(session),
        )
        .await;
    if let Some(answer) = answer {
        if answer.status == 401 {
            admin.cookie = None;
        }
        let data = &answer.body["data"];
        if let (Some(id), Some(secret)) = (data["id"].as_str(), data["key"].as_str()) {
            admin.key = Some((id.to_string(), secret.to_string()));
        }
    }
}

/// Rotates the API key; a rotation acknowledged is counted.
async fn rotate_api_key(shared: &Shared, rng: &mut Stream, session: &str, key_id: &str) {
    let path = format!("/admin/api-keys/{key_id}/rotate");
    let answer = shared
        .client
        .call(
            rng,
            "api_key_rotate",
            Method::POST,
            &path,
            Some(&json!({})),
            Auth::Cookie(session),
        )
        .await;
    if answer.as_ref().is_some_and(Answer::ok) {
        shared.book(|b| b.key_rotations += 1);
    }
}

/// Mints an access token with the API key; answers it, if one came back.
async fn mint_token(
    shared: &Shared,
    rng: &mut Stream,
    session: &str,
    key_id: &str,
) -> Option<String> {
    let path = format!("/admin/api-keys/{key_id}/tokens");
    let answer = shared
        .client
        .call(
            rng,
            "api_token_mint",
            Method::POST,
            &path,
            Some(&json!({})),
            Auth::Cookie(session),
        )
        .await;
    answer.and_then(|a| {
        a.body["data"]["token"]
            .as_str()
            .or(a.body["token"].as_str())
            .map(str::to_string)
    })
}

/// Exports `org`'s ledger; an export answered is counted.
async fn export_ledger(shared: &Shared, rng: &mut Stream, org: &str, auth: Auth<'_>) {
    let path = format!("/public/organisations/{org}/ledger/export");
    let answer = shared
        .client
        .call(rng, "ledger_export", Method::GET, &path, None, auth)
        .await;
    if answer.as_ref().is_some_and(Answer::ok) {
        shared.book(|b| b.exports += 1);
    }
}

/// Reads a page of `org`'s ledger; a read answered is counted.
async fn read_ledger(shared: &Shared, rng: &mut Stream, org: &str, auth: Auth<'_>) {
    let path = format!("/public/organisations/{org}/ledger?limit=50");
    let answer = shared
        .client
        .call(rng, "ledger_read", Method::GET, &path, None, auth)
        .await;
    if answer.as_ref().is_some_and(Answer::ok) {
        shared.book(|b| b.ledger_reads += 1);
    }
}

/// A dashboard page the admin reads with the session; the answer is not looked at.
async fn dashboard_get(
    shared: &Shared,
    rng: &mut Stream,
    op: &'static str,
    path: &str,
    session: &str,
) {
    let _ = shared
        .client
        .call(rng, op, Method::GET, path, None, Auth::Cookie(session))
        .await;
}

/// Signs the admin out of the dashboard.
async fn dashboard_logout(shared: &Shared, rng: &mut Stream, session: &str) {
    let _ = shared
        .client
        .call(
            rng,
            "dashboard_logout",
            Method::POST,
            "/auth/logout",
            Some(&json!({})),
            Auth::Cookie(session),
        )
        .await;
}

/// A partner: signed donation requests (seed 003), retried with the same transaction id
/// (which must answer the same donation), read back and sometimes cancelled.
async fn partner(shared: Arc<Shared>) {
    let mut rng = stream(shared.seed, "partner", 0);
    let mut sent = 0u64;
    while shared.running() {
        think(&mut rng).await;
        think(&mut rng).await;
        let known: Vec<(String, String)> = shared
            .book
            .lock()
            .map(|b| {
                b.partner
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let roll = rng.random_range(0..10);
        if roll < 6 || known.is_empty() {
            // A new donation, or a retry of one sent before.
            partner_donate(&shared, &mut rng, &known, &mut sent).await;
            continue;
        }
        let (_, guid) = known[rng.random_range(0..known.len())].clone();
        let path = format!("/igive-api/v1_0/donation/{guid}");
        if roll < 9 {
            let _ = partner_call(&shared, &mut rng, "partner_read", "GET", &path, None).await;
        } else if let Some(answer) =
            partner_call(&shared, &mut rng, "partner_cancel", "DELETE", &path, None).await
            && answer.status == 201
        {
            shared.book(|b| {
                b.partner_cancelled.insert(guid);
            });
        }
    }
}

/// A partner donation: a new transaction id (counted in `sent`), or three times in ten a
/// retry of one in `known`, which must be answered with the same donation as before.
async fn partner_donate(
    shared: &Shared,
    rng: &mut Stream,
    known: &[(String, String)],
    sent: &mut u64,
) {
    let retry = !known.is_empty() && rng.random_bool(0.3);
    let (txid, amount): (String, f64) = if retry {
        let (txid, _) = &known[rng.random_range(0..known.len())];
        (txid.clone(), partner_amount(txid))
    } else {
        *sent += 1;
        let txid = format!("chaos-{}-{sent}", shared.seed);
        (txid.clone(), partner_amount(&txid))
    };
    let body = partner_body(&txid, amount);
    let Some(answer) = partner_call(
        shared,
        rng,
        "partner_donation",
        "POST",
        "/igive-api/v1_0/donation",
        Some(&body),
    )
    .await
    else {
        return;
    };
    if answer.status == 201
        && let Some(guid) = answer.body["guid"].as_str()
    {
        let earlier = known
            .iter()
            .find(|(t, _)| *t == txid)
            .map(|(_, g)| g.clone());
        match earlier {
            Some(earlier) if earlier != guid => shared.violation(format!(
                "partner transaction {txid} answered {guid}, earlier {earlier}"
            )),
            _ => {
                let guid = guid.to_string();
                shared.book(|b| {
                    b.partner.insert(txid.clone(), guid);
                })
            }
        }
    }
}

/// The amount a transaction id always carries (a retry must repeat it exactly).
fn partner_amount(txid: &str) -> f64 {
    let sum: u64 = txid.bytes().map(u64::from).sum();
    (100 + sum % 9_000) as f64 / 100.0
}

fn partner_body(txid: &str, amount: f64) -> Value {
    json!({
        "amount": amount,
        "nonProfitCampaignGuid": "8aec529c-dc93-4e5a-a02d-2965f16d327e",
        "publisherCampaignGuid": "59e680df-df0a-42c3-969a-800d35ca5684",
        "publisherTransactionId": txid,
        "publisherAccountGuid": "ca712410-8e11-46a5-872c-de8ba7744e42",
        "donor": {
            "publisherDonorId": "42", "firstName": "Chaos", "lastName": "Donor",
            "sharePersonalInfo": false, "billingAddress1": "1 Loopback Road",
            "billingCity": "Berlin", "billingCountry": "DE", "email": "partner-donor@example.org"
        }
    })
}

async fn partner_call(
    shared: &Shared,
    rng: &mut Stream,
    op: &'static str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Option<Answer> {
    let date = shared
        .clocks
        .now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let text = body.map(Value::to_string).unwrap_or_default();
    let content_type = if body.is_some() {
        "application/json"
    } else {
        ""
    };
    let signature = ampflow_standins::partner::sign(
        &shared.world.partner_secret,
        method,
        &text,
        content_type,
        &date,
        path,
    );
    let headers = vec![
        ("date".to_string(), date),
        (
            "authorization".to_string(),
            format!("IGF {}:{signature}", shared.world.partner_key_id),
        ),
    ];
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    shared
        .client
        .call(rng, op, method, path, body, Auth::Headers(headers))
        .await
}

/// `ampflow ledger checkpoint` now and then, while the nodes' own job may run too.
async fn checkpoints(shared: Arc<Shared>) {
    let mut rng = stream(shared.seed, "checkpoints", 0);
    while shared.running() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(10_000..25_000))).await;
        if !shared.running() {
            return;
        }
        let (binary, env) = (shared.binary.clone(), shared.world.env.clone());
        let built = tokio::task::spawn_blocking(move || {
            super::infra::ampflow(&binary, &env, &["ledger", "checkpoint"], None)
        })
        .await;
        match built {
            Ok(Ok(out)) => {
                shared
                    .timeline
                    .record("work", format!("ledger checkpoint: {}", out.trim()));
                shared.book(|b| b.checkpoint_runs += 1);
            }
            Ok(Err(e)) => {
                let text = format!("{e:#}");
                shared
                    .timeline
                    .record("work", format!("ledger checkpoint failed: {text}"));
                shared.book(|b| b.checkpoint_failures.push(text));
            }
            Err(e) => shared
                .timeline
                .record("work", format!("ledger checkpoint task: {e}")),
        }
    }
}
