//! The invariants, checked after the quiet period against the database, the chain's event
//! logs, the Stripe stand-in's own records (the truth about what was paid and refunded) and
//! the public API. Each answers its counts and, when it fails, what broke.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use alloy::primitives::Address;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent;
use ampflow_chain::contracts::{Faucet, InvestService, WalletApprover};
use ampflow_standins::stripe::{PaymentIntentStatus, StripeStandIn};
use ampflow_storage::{AutoInvestStatus, LedgerRange, RequestStatus, Storage, TaskFilter};
use ampflow_types::WalletAddress;
use anyhow::Context;

use super::setup::{CHAIN_ID, World};
use super::workload::Book;

/// Successful InvestFor events by (investor, campaign): (transaction, requested, invested).
type InvestEvents = BTreeMap<(String, String), Vec<(String, String, String)>>;

/// Details kept per failed invariant.
const DETAILS_MAX: usize = 20;

#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub counts: String,
    pub problems: Vec<String>,
    /// Problems beyond the ones kept.
    pub more: usize,
}

impl Check {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            counts: String::new(),
            problems: Vec::new(),
            more: 0,
        }
    }

    pub fn problem(&mut self, text: String) {
        if self.problems.len() < DETAILS_MAX {
            self.problems.push(text);
        } else {
            self.more += 1;
        }
    }

    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Every log of `event` the contract at `address` emitted.
async fn logs(
    rpc: &str,
    address: Address,
    signature: alloy::primitives::B256,
) -> anyhow::Result<Vec<Log>> {
    let provider = ProviderBuilder::new().connect_http(rpc.parse()?);
    let filter = Filter::new()
        .address(address)
        .event_signature(signature)
        .from_block(0u64);
    provider.get_logs(&filter).await.context("eth_getLogs")
}

/// Every acknowledged faucet request is paid, by exactly one FaucetPaid event for its wallet in
/// its own transaction, and no wallet was paid twice.
pub async fn faucet_paid_once(
    storage: &Storage,
    book: &Book,
    world: &World,
    rpc: &str,
) -> anyhow::Result<Check> {
    let mut check = Check::new("faucet paid exactly once");
    let mut paid_events: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for log in logs(
        rpc,
        world.contracts.faucet,
        Faucet::FaucetPaid::SIGNATURE_HASH,
    )
    .await?
    {
        let event = log.log_decode::<Faucet::FaucetPaid>()?;
        let tx = log
            .transaction_hash
            .map(|h| format!("{h:#x}"))
            .unwrap_or_default();
        paid_events
            .entry(format!("{:#x}", event.inner.data.wallet))
            .or_default()
            .push(tx);
    }
    let mut acknowledged: BTreeSet<&str> = BTreeSet::new();
    let mut paid = 0;
    for (id, wallet) in &book.faucet {
        if !acknowledged.insert(id) {
            continue;
        }
        let Some(row) = storage.chain().faucet_request(id).await? else {
            check.problem(format!(
                "acknowledged faucet request {id} of {wallet} is missing"
            ));
            continue;
        };
        if row.status != RequestStatus::Paid {
            check.problem(format!(
                "faucet request {id} of {wallet} ended {} ({:?})",
                row.status, row.reason
            ));
            continue;
        }
        paid += 1;
        let events = paid_events.get(wallet).cloned().unwrap_or_default();
        if events.len() != 1 || Some(&events[0]) != row.tx_hash.as_ref() {
            check.problem(format!(
                "faucet request {id} of {wallet} is paid in {:?}; FaucetPaid events in {events:?}",
                row.tx_hash
            ));
        }
    }
    for (wallet, events) in &paid_events {
        if events.len() > 1 {
            check.problem(format!(
                "{wallet} was paid {} times: {events:?}",
                events.len()
            ));
        }
    }
    check.counts = format!(
        "{} acknowledged, {paid} paid, {} FaucetPaid events for {} wallets",
        acknowledged.len(),
        paid_events.values().map(Vec::len).sum::<usize>(),
        paid_events.len()
    );
    Ok(check)
}

/// Every acknowledged whitelisting request is confirmed, and each wallet was approved by one
/// successful ApproveWallet event.
pub async fn whitelist_settled_once(
    storage: &Storage,
    book: &Book,
    world: &World,
    rpc: &str,
) -> anyhow::Result<Check> {
    let mut check = Check::new("whitelisting settled once");
    // Every ApproveWallet outcome, successful or not: one request, one outcome on chain.
    let mut approvals: BTreeMap<String, usize> = BTreeMap::new();
    for log in logs(
        rpc,
        world.contracts.wallet_approver,
        WalletApprover::ApproveWallet::SIGNATURE_HASH,
    )
    .await?
    {
        let event = log.log_decode::<WalletApprover::ApproveWallet>()?;
        *approvals
            .entry(format!("{:#x}", event.inner.data.wallet))
            .or_default() += 1;
    }
    let wallets: BTreeSet<&String> = book.whitelist.iter().map(|(_, w)| w).collect();
    let mut confirmed = 0;
    for wallet in &wallets {
        let address = WalletAddress::parse(wallet)?;
        let rows = storage
            .chain()
            .whitelist_requests_for(&address, 100)
            .await?;
        for (id, _) in book.whitelist.iter().filter(|(_, w)| w == *wallet) {
            let Some(id) = id else { continue };
            match rows.iter().find(|r| &r.id == id) {
                None => check.problem(format!(
                    "acknowledged whitelisting {id} of {wallet} is missing"
                )),
                Some(row) if row.status != RequestStatus::Confirmed => check.problem(format!(
                    "whitelisting {id} of {wallet} ended {} ({:?})",
                    row.status, row.reason
                )),
                Some(_) => confirmed += 1,
            }
        }
        if approvals.get(*wallet).copied().unwrap_or(0) != 1 {
            check.problem(format!(
                "{wallet} has {} ApproveWallet events",
                approvals.get(*wallet).copied().unwrap_or(0)
            ));
        }
    }
    check.counts = format!(
        "{} acknowledged for {} wallets, {confirmed} confirmed, {} ApproveWallet events",
        book.whitelist.len(),
        wallets.len(),
        approvals.values().sum::<usize>()
    );
    Ok(check)
}

/// Every successful task matches one successful InvestFor in its transaction, with its amount;
/// per (wallet, campaign) there are as many successful InvestFor events as successful tasks;
/// nothing is left in process; every acknowledged submit, merge and cancel is what the task
/// shows.
pub async fn auto_invest_once(
    storage: &Storage,
    book: &Book,
    world: &World,
    rpc: &str,
) -> anyhow::Result<Check> {
    let mut check = Check::new("auto-invest invested once");
    let events = invest_events(world, rpc).await?;
    let tasks = stored_tasks(storage, world).await?;
    tasks_match_events(&mut check, &tasks, &events);
    for (id, ack) in &book.tasks {
        match tasks.get(id) {
            None => check.problem(format!(
                "acknowledged task {id} of {} is missing",
                ack.wallet
            )),
            Some(task) if ack.cancelled && task.status != AutoInvestStatus::Cancelled => check
                .problem(format!(
                    "task {id}: its cancel was acknowledged, it ended {:?}",
                    task.status
                )),
            Some(task) if !ack.cancelled && task.amount != ack.amount => check.problem(format!(
                "task {id}: acknowledged amount {}, stored {}",
                ack.amount, task.amount
            )),
            Some(_) => {}
        }
    }
    let by_status = tasks
        .values()
        .fold(BTreeMap::<String, usize>::new(), |mut m, t| {
            *m.entry(format!("{:?}", t.status).to_lowercase())
                .or_default() += 1;
            m
        });
    check.counts = format!(
        "{} tasks {by_status:?}, {} acknowledged, {} successful InvestFor events",
        tasks.len(),
        book.tasks.len(),
        events.values().map(Vec::len).sum::<usize>()
    );
    Ok(check)
}

/// Every successful InvestFor event on the chain, by (investor, campaign).
async fn invest_events(world: &World, rpc: &str) -> anyhow::Result<InvestEvents> {
    let mut events = InvestEvents::new();
    for log in logs(
        rpc,
        world.contracts.invest_service,
        InvestService::InvestFor::SIGNATURE_HASH,
    )
    .await?
    {
        let event = log.log_decode::<InvestService::InvestFor>()?.inner.data;
        if !event.success {
            continue;
        }
        let tx = log
            .transaction_hash
            .map(|h| format!("{h:#x}"))
            .unwrap_or_default();
        events
            .entry((
                format!("{:#x}", event.investor),
                format!("{:#x}", event.campaign),
            ))
            .or_default()
            .push((tx, event.requested.to_string(), event.invested.to_string()));
    }
    Ok(events)
}

/// Every stored task of the investors, open or not, by id.
async fn stored_tasks(
    storage: &Storage,
    world: &World,
) -> anyhow::Result<BTreeMap<String, ampflow_storage::AutoInvestTask>> {
    let mut tasks = BTreeMap::new();
    for investor in &world.investors {
        let wallet = WalletAddress::from_alloy(investor.address());
        for open in [true, false] {
            for task in storage
                .auto_invest()
                .list_auto_invests(CHAIN_ID, TaskFilter::Wallet(wallet), open, None, 10_000)
                .await?
            {
                tasks.insert(task.id.clone(), task);
            }
        }
    }
    Ok(tasks)
}

/// No task left in process; per (wallet, campaign) as many successful tasks as successful
/// InvestFor events, and each successful task matching exactly one of them.
fn tasks_match_events(
    check: &mut Check,
    tasks: &BTreeMap<String, ampflow_storage::AutoInvestTask>,
    events: &InvestEvents,
) {
    let mut successes: BTreeMap<(String, String), Vec<&ampflow_storage::AutoInvestTask>> =
        BTreeMap::new();
    for task in tasks.values() {
        match task.status {
            AutoInvestStatus::Success => successes
                .entry((task.wallet.to_string(), task.campaign.to_string()))
                .or_default()
                .push(task),
            AutoInvestStatus::InProcess => {
                check.problem(format!("task {} is still in process", task.id))
            }
            _ => {}
        }
    }
    let pairs: BTreeSet<_> = successes.keys().chain(events.keys()).cloned().collect();
    for pair in &pairs {
        let done = successes.get(pair).map(Vec::as_slice).unwrap_or_default();
        let seen = events.get(pair).map(Vec::as_slice).unwrap_or_default();
        if done.len() != seen.len() {
            check.problem(format!(
                "{} in {}: {} successful tasks, {} successful InvestFor events {:?}",
                pair.0,
                pair.1,
                done.len(),
                seen.len(),
                seen.iter().map(|e| &e.0).collect::<Vec<_>>()
            ));
        }
        for task in done {
            let matching = seen
                .iter()
                .filter(|(tx, requested, invested)| {
                    Some(tx) == task.tx_hash.as_ref()
                        && task.amount == *requested
                        && Some(invested) == task.invested_amount.map(|a| a.to_string()).as_ref()
                })
                .count();
            if matching != 1 {
                check.problem(format!(
                    "task {} (amount {}, invested {:?}, tx {:?}) matches {matching} InvestFor events",
                    task.id, task.amount, task.invested_amount, task.tx_hash
                ));
            }
        }
    }
}

/// Against Stripe's own records: a paid donation has exactly one `donation_received` entry, its
/// refunds entries that add up to what Stripe refunded, and the status that goes with them; a
/// declined one is failed and has no entry.
pub async fn donations_recorded(
    storage: &Storage,
    book: &Book,
    world: &World,
    stripe: &StripeStandIn,
) -> anyhow::Result<Check> {
    let mut check = Check::new("donations and refunds recorded once");
    let (received, refunded) = ledger_donation_entries(storage, world).await?;
    let charges = refunded_at_stripe(stripe);
    let (mut paid, mut refunds, mut failed) = (0, 0, 0);
    for ack in &book.donations {
        let Some(row) = storage.donations().donation(&ack.id).await? else {
            check.problem(format!("acknowledged donation {} is missing", ack.id));
            continue;
        };
        let status = format!("{:?}", row.status).to_lowercase();
        let entries = received.get(&ack.id).copied().unwrap_or(0);
        let refunded_in_ledger = -refunded.get(&ack.id).copied().unwrap_or(0);
        let intent = stripe.payment_intent(&ack.payment_intent);
        let succeeded = intent
            .as_ref()
            .is_some_and(|pi| pi.status == PaymentIntentStatus::Succeeded);
        if succeeded {
            paid += 1;
            let at_stripe = charges.get(&ack.payment_intent).copied().unwrap_or(0);
            let expected = if at_stripe > 0 {
                "refunded"
            } else {
                "succeeded"
            };
            if at_stripe > 0 {
                refunds += 1;
            }
            if entries != 1 || refunded_in_ledger != at_stripe || status != expected {
                check.problem(format!(
                    "donation {} (paid {}, refunded {at_stripe} at Stripe) is {status} with {entries} donation_received and {refunded_in_ledger} refunded in the ledger",
                    ack.id, ack.amount
                ));
            }
        } else {
            let declined = intent
                .as_ref()
                .is_some_and(|pi| pi.last_payment_error.is_some());
            failed += u32::from(declined);
            let expected = if declined { "failed" } else { "pending" };
            if entries != 0 || refunded_in_ledger != 0 || status != expected {
                check.problem(format!(
                    "donation {} (not paid at Stripe, declined: {declined}) is {status} with {entries} ledger entries",
                    ack.id
                ));
            }
        }
    }
    for (donation, count) in &received {
        if *count > 1 {
            check.problem(format!("{donation} has {count} donation_received entries"));
        }
    }
    check.counts = format!(
        "{} acknowledged: {paid} paid ({refunds} refunded), {failed} declined; {} donation_received entries",
        book.donations.len(),
        received.values().sum::<usize>()
    );
    Ok(check)
}

/// The organisations' ledgers, per donation: how many `donation_received` entries it has,
/// and the sum of its `donation_refunded` entries (negative).
async fn ledger_donation_entries(
    storage: &Storage,
    world: &World,
) -> anyhow::Result<(BTreeMap<String, usize>, BTreeMap<String, i64>)> {
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    let mut refunded: BTreeMap<String, i64> = BTreeMap::new();
    for organisation in &world.organisations {
        for entry in storage
            .ledger()
            .ledger_entries(organisation, LedgerRange::default(), 1_000_000)
            .await?
        {
            let Some(donation) = entry.content.metadata.donation_id.clone() else {
                continue;
            };
            match entry.content.entry_type.as_str() {
                "donation_received" => *received.entry(donation).or_default() += 1,
                "donation_refunded" => {
                    *refunded.entry(donation).or_default() += entry.content.amount
                }
                _ => {}
            }
        }
    }
    Ok((received, refunded))
}

/// What Stripe refunded of each succeeded charge, by PaymentIntent.
fn refunded_at_stripe(stripe: &StripeStandIn) -> BTreeMap<String, i64> {
    stripe
        .charges()
        .into_iter()
        .filter(|c| c.status == "succeeded")
        .map(|c| (c.payment_intent.clone(), c.amount_refunded))
        .collect()
}

/// Every acknowledged partner donation exists; a cancel that was acknowledged holds.
pub async fn partner_donations_kept(storage: &Storage, book: &Book) -> anyhow::Result<Check> {
    let mut check = Check::new("partner donations kept");
    for (txid, guid) in &book.partner {
        let id = format!("don_{}", guid.replace('-', ""));
        match storage.donations().donation(&id).await? {
            None => check.problem(format!("partner donation {guid} ({txid}) is missing")),
            Some(row) => {
                let status = format!("{:?}", row.status).to_lowercase();
                if book.partner_cancelled.contains(guid) && status != "cancelled" {
                    check.problem(format!(
                        "partner donation {guid}: cancel acknowledged, it is {status}"
                    ));
                }
            }
        }
    }
    check.counts = format!(
        "{} acknowledged, {} cancels acknowledged",
        book.partner.len(),
        book.partner_cancelled.len()
    );
    Ok(check)
}

/// `ampflow ledger verify` accepts each organisation's export, downloaded from a node, and
/// every checkpoint with the organisation's proofs in it. The run's clock crosses midnight
/// UTC at `midnight_ms` (see `clock.rs`), so when the run made entries before it, the day's
/// checkpoint must have been built during the run and prove some of them.
pub async fn ledgers_verify(
    binary: &Path,
    dir: &Path,
    world: &World,
    node: &str,
    midnight_ms: i64,
) -> anyhow::Result<Check> {
    let mut check = Check::new("every ledger and checkpoint verifies");
    let client = reqwest::Client::new();
    let mut entries = Vec::new();
    let (mut before_midnight, mut proven) = (0usize, 0usize);
    let mut checkpoints = BTreeSet::new();
    for organisation in &world.organisations {
        let url = format!("{node}/public/organisations/{organisation}/ledger/export");
        let export = get_ok(&client, &url).await?;
        let path = dir.join(format!("export-{organisation}.json"));
        std::fs::write(&path, &export)?;
        let file = path.to_string_lossy().to_string();
        match super::infra::ampflow(binary, &[], &["ledger", "verify", &file], None) {
            Ok(out) => entries.push(out.trim().to_string()),
            Err(e) => check.problem(format!("{organisation}: {e:#}")),
        }
        let parsed: ampflow_types::ledger::LedgerExport = serde_json::from_slice(&export)?;
        before_midnight += parsed
            .entries
            .iter()
            .filter(|e| {
                chrono::DateTime::parse_from_rfc3339(&e.timestamp)
                    .is_ok_and(|t| t.timestamp_millis() < midnight_ms)
            })
            .count();
        let found =
            verify_checkpoints(&client, binary, dir, node, organisation, &path, &mut check).await?;
        proven += found.iter().map(|(_, n)| n).sum::<usize>();
        checkpoints.extend(found.into_iter().map(|(id, _)| id));
    }
    if before_midnight > 0 && proven == 0 {
        check.problem(format!(
            "{before_midnight} entries are dated before the run's midnight, but no checkpoint \
             built during the run proves any of them"
        ));
    }
    check.counts = format!(
        "{}; checkpoints {checkpoints:?} prove {proven} entries ({before_midnight} dated before the run's midnight)",
        entries.join("; ")
    );
    Ok(check)
}

/// Each checkpoint there is, with the organisation's proofs in it, verifies. Answers each
/// checkpoint's id with the number of the organisation's entries it proves.
async fn verify_checkpoints(
    client: &reqwest::Client,
    binary: &Path,
    dir: &Path,
    node: &str,
    organisation: &str,
    export: &Path,
    check: &mut Check,
) -> anyhow::Result<Vec<(String, usize)>> {
    let list: serde_json::Value = serde_json::from_slice(
        &get_ok(client, &format!("{node}/public/checkpoints?limit=100")).await?,
    )?;
    let mut found = Vec::new();
    for checkpoint in list["data"].as_array().cloned().unwrap_or_default() {
        let Some(id) = checkpoint["id"].as_str() else {
            continue;
        };
        let url = format!(
            "{node}/public/organisations/{organisation}/ledger/proofs?checkpoint={id}&limit=10000"
        );
        let proofs = get_ok(client, &url).await?;
        let count = serde_json::from_slice::<serde_json::Value>(&proofs)
            .ok()
            .and_then(|v| v["proofs"].as_array().map(Vec::len))
            .unwrap_or(0);
        let path = dir.join(format!("proofs-{organisation}-{id}.json"));
        std::fs::write(&path, &proofs)?;
        let (export, proofs) = (
            export.to_string_lossy().to_string(),
            path.to_string_lossy().to_string(),
        );
        match super::infra::ampflow(
            binary,
            &[],
            &["ledger", "verify", &export, "--checkpoint", &proofs],
            None,
        ) {
            Ok(_) => found.push((id.to_string(), count)),
            Err(e) => check.problem(format!("checkpoint {id} for {organisation}: {e:#}")),
        }
    }
    Ok(found)
}

/// How long a check's read may be answered "retry later" (429 or 503 with `Retry-After`)
/// before the check gives up.
const READ_RETRY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(90);

/// The body of a `GET` answered 200. A 429 or 503 is retried after its `Retry-After` (the
/// answer a client is told to follow) until [`READ_RETRY_DEADLINE`]; any other answer, or
/// the deadline, is an error that names the status and the body.
async fn get_ok(client: &reqwest::Client, url: &str) -> anyhow::Result<bytes::Bytes> {
    let deadline = tokio::time::Instant::now() + READ_RETRY_DEADLINE;
    loop {
        let response = client
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = response.bytes().await?;
        if status.is_success() {
            return Ok(body);
        }
        let retryable = matches!(status.as_u16(), 429 | 503);
        let wait = std::time::Duration::from_secs(retry_after.unwrap_or(1).clamp(1, 30));
        if !retryable || tokio::time::Instant::now() + wait > deadline {
            anyhow::bail!(
                "GET {url} answered {status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            );
        }
        eprintln!(
            "GET {url} answered {status} ({}); retrying in {wait:?}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        );
        tokio::time::sleep(wait).await;
    }
}

/// Whether the work queues are empty: no faucet or whitelisting request open, no task in
/// process, no transaction intent open, every Stripe event acknowledged at least once, and
/// every paid donation recorded. Answers what is still open.
pub async fn open_work(
    storage: &Storage,
    book: &Book,
    stripe: &StripeStandIn,
    signer: &str,
) -> anyhow::Result<Vec<String>> {
    let mut open = Vec::new();
    for (id, _) in &book.faucet {
        if let Some(row) = storage.chain().faucet_request(id).await?
            && row.status.is_open()
        {
            open.push(format!("faucet {id} {}", row.status));
        }
    }
    let wallets: BTreeSet<&String> = book.whitelist.iter().map(|(_, w)| w).collect();
    for wallet in wallets {
        for row in storage
            .chain()
            .whitelist_requests_for(&WalletAddress::parse(wallet)?, 100)
            .await?
        {
            if row.status.is_open() {
                open.push(format!("whitelisting {} {}", row.id, row.status));
            }
        }
    }
    for id in book.tasks.keys() {
        if let Some(task) = storage.auto_invest().auto_invest_task(id).await?
            && task.status == AutoInvestStatus::InProcess
        {
            open.push(format!("task {id} in process"));
        }
    }
    let intents = storage
        .chain()
        .open_tx_intents(CHAIN_ID, &WalletAddress::parse(signer)?, 100)
        .await?;
    if !intents.is_empty() {
        open.push(format!("{} transaction intents open", intents.len()));
    }
    let acknowledged: BTreeSet<String> = stripe.acknowledged_event_ids().into_iter().collect();
    let unacknowledged = stripe
        .events()
        .iter()
        .filter(|e| !acknowledged.contains(&e.id))
        .count();
    if unacknowledged > 0 {
        open.push(format!("{unacknowledged} Stripe events not acknowledged"));
    }
    if !stripe.held_events().is_empty() {
        open.push("Stripe events held".into());
    }
    Ok(open)
}
