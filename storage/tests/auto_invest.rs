//! Auto-invest repository guarantees, on SQLite and PostgreSQL: one open task per triple,
//! merges and cancels only while pending, a claim that loses to a merge writes nothing,
//! settlement moves each task once (success, retry with backoff, failure at the cap), and
//! expiry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use ampflow_storage::testdb::{Backend, TestDatabase};
use ampflow_storage::*;
use ampflow_types::{ChainId, TokenAmount, WalletAddress};

macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() { super::$name(ampflow_storage::testdb::Backend::Sqlite).await }
            #[tokio::test]
            async fn postgres() { super::$name(ampflow_storage::testdb::Backend::Postgres).await }
        }
    )*};
}

on_both_databases!(
    one_open_task_per_triple_merges_while_pending,
    submits_arriving_together_are_decided_one_by_one,
    two_processes_submitting_one_triple_keep_one_open_task,
    a_claim_that_loses_to_a_merge_writes_nothing,
    settlement_completes_retries_and_gives_up,
    a_failed_transaction_counts_as_an_attempt,
    a_refusal_by_the_chain_is_not_retried,
    overdue_pending_tasks_expire,
    the_open_count_follows_every_change,
);

const WALLET: &str = "0x00000000000000000000000000000000000000aa";
const CAMPAIGN: &str = "0x00000000000000000000000000000000000000cc";
const CHAIN: ChainId = ChainId::new(31337);
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn addr(text: &str) -> WalletAddress {
    WalletAddress::parse(text).unwrap()
}

fn units(text: &str) -> TokenAmount {
    TokenAmount::parse(text).unwrap()
}

async fn storage(backend: Backend) -> Option<(Storage, TestDatabase)> {
    let db = TestDatabase::create(backend).await?;
    let storage = Storage::connect(&db.settings()).await.unwrap();
    storage.migrate().await.unwrap();
    Some((storage, db))
}

fn submit(campaign: &str, amount: &str, now: i64) -> AutoInvestSubmit {
    AutoInvestSubmit {
        chain_id: CHAIN,
        wallet: addr(WALLET),
        campaign: addr(campaign),
        amount: units(amount),
        now,
        expires_at_ms: now + 7 * DAY_MS,
        max_open_per_wallet: 3,
    }
}

fn intent(key: &str) -> NewTxIntent {
    NewTxIntent {
        idempotency_key: key.into(),
        purpose: "auto_invest".into(),
        chain_id: CHAIN,
        signer: addr("0x00000000000000000000000000000000000000ee"),
        to: addr("0x00000000000000000000000000000000000000ff"),
        calldata: "0x".into(),
        value_wei: TokenAmount::ZERO,
        gas_limit: None,
    }
}

fn confirmed() -> TxFinal {
    TxFinal::Confirmed {
        tx_hash: format!("0x{}", "ab".repeat(32)),
        block_number: 7,
        gas_used: 100_000,
    }
}

const RETRY: RetryPolicy = RetryPolicy {
    attempts_max: 2,
    backoff_base_ms: 1_000,
    backoff_max_ms: 10_000,
};

async fn created(storage: &Storage, campaign: &str, amount: &str, now: i64) -> AutoInvestTask {
    match storage
        .auto_invest()
        .submit_auto_invest(&submit(campaign, amount, now))
        .await
        .unwrap()
    {
        SubmitOutcome::Created(task) => task,
        other => panic!("expected a new task, got {other:?}"),
    }
}

async fn claim(storage: &Storage, task: &AutoInvestTask, key: &str) -> TxIntentRecord {
    storage
        .auto_invest()
        .claim_auto_invests(&[(task.id.clone(), task.version)], intent(key), 10)
        .await
        .unwrap()
        .expect("claimed")
}

async fn one_open_task_per_triple_merges_while_pending(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let task = created(&storage, CAMPAIGN, "500", 1).await;
    assert_eq!(task.status, AutoInvestStatus::Pending);

    let merged = storage
        .auto_invest()
        .submit_auto_invest(&submit(CAMPAIGN, "900", 5))
        .await
        .unwrap();
    let SubmitOutcome::Merged(merged) = merged else {
        panic!("{merged:?}")
    };
    assert_eq!(merged.id, task.id);
    assert_eq!(merged.amount, "900");
    assert_eq!(merged.version, task.version + 1);
    assert_eq!(merged.expires_at_ms, 5 + 7 * DAY_MS);
    assert_eq!(
        storage
            .auto_invest()
            .auto_invest_task(&task.id)
            .await
            .unwrap(),
        Some(merged.clone())
    );

    // In process: neither merged nor cancelled.
    claim(&storage, &merged, "k1").await;
    assert!(matches!(
        storage
            .auto_invest()
            .submit_auto_invest(&submit(CAMPAIGN, "1", 6))
            .await
            .unwrap(),
        SubmitOutcome::InProcess(_)
    ));
    assert!(matches!(
        storage
            .auto_invest()
            .cancel_auto_invest(CHAIN, &addr(WALLET), &addr(CAMPAIGN), 6)
            .await
            .unwrap(),
        CancelOutcome::InProcess(_)
    ));

    // Other campaigns: up to the per-wallet cap (3 open), then refused.
    let other = "0x00000000000000000000000000000000000000c1";
    created(&storage, other, "1", 7).await;
    created(
        &storage,
        "0x00000000000000000000000000000000000000c2",
        "1",
        8,
    )
    .await;
    assert_eq!(
        storage
            .auto_invest()
            .submit_auto_invest(&submit(
                "0x00000000000000000000000000000000000000c3",
                "1",
                9
            ))
            .await
            .unwrap(),
        SubmitOutcome::TooMany(3)
    );

    // Cancelled: finished, and the triple takes a new task.
    let CancelOutcome::Cancelled(cancelled) = storage
        .auto_invest()
        .cancel_auto_invest(CHAIN, &addr(WALLET), &addr(other), 10)
        .await
        .unwrap()
    else {
        panic!("not cancelled")
    };
    assert_eq!(cancelled.status, AutoInvestStatus::Cancelled);
    assert_eq!(
        storage
            .auto_invest()
            .cancel_auto_invest(CHAIN, &addr(WALLET), &addr(other), 11)
            .await
            .unwrap(),
        CancelOutcome::NotFound
    );
    let again = created(&storage, other, "2", 12).await;
    assert_ne!(again.id, cancelled.id);

    // Listings: open ones newest first, finished ones apart, pages by cursor.
    let open = storage
        .auto_invest()
        .list_auto_invests(CHAIN, TaskFilter::Wallet(addr(WALLET)), true, None, 10)
        .await
        .unwrap();
    assert_eq!(open.len(), 3);
    assert_eq!(open[0].id, again.id);
    let page = storage
        .auto_invest()
        .list_auto_invests(CHAIN, TaskFilter::Wallet(addr(WALLET)), true, None, 1)
        .await
        .unwrap();
    let cursor = Keyset {
        at_ms: page[0].created_at_ms,
        id: page[0].id.clone(),
    };
    let rest = storage
        .auto_invest()
        .list_auto_invests(
            CHAIN,
            TaskFilter::Wallet(addr(WALLET)),
            true,
            Some(&cursor),
            10,
        )
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|t| t.id != page[0].id));
    let finished = storage
        .auto_invest()
        .list_auto_invests(CHAIN, TaskFilter::Wallet(addr(WALLET)), false, None, 10)
        .await
        .unwrap();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].id, cancelled.id);
    let by_campaign = storage
        .auto_invest()
        .list_auto_invests(CHAIN, TaskFilter::Campaign(addr(CAMPAIGN)), true, None, 10)
        .await
        .unwrap();
    assert_eq!(by_campaign.len(), 1);
    assert_eq!(by_campaign[0].status, AutoInvestStatus::InProcess);
}

fn campaign(i: usize) -> String {
    format!("0x{i:040x}")
}

fn submit_for(wallet: &str, campaign: &str, amount: &str, now: i64, cap: u64) -> AutoInvestSubmit {
    AutoInvestSubmit {
        wallet: addr(wallet),
        max_open_per_wallet: cap,
        ..submit(campaign, amount, now)
    }
}

/// Submits sent at once are written in batches (group commit); each still gets the answer
/// it would get alone, in some order: merges stack up on the pending task, a task in process
/// is left alone, and the per-wallet cap counts the tasks created earlier in the same batch.
async fn submits_arriving_together_are_decided_one_by_one(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let pending = created(&storage, &campaign(1), "10", 1).await;
    let in_process = created(&storage, &campaign(2), "20", 1).await;
    claim(&storage, &in_process, "k1").await;
    let other_wallet = "0x00000000000000000000000000000000000000bb";

    let mut submits = Vec::new();
    for i in 0..8 {
        submits.push(submit_for(
            WALLET,
            &campaign(1),
            &format!("{}", 100 + i),
            5,
            3,
        ));
    }
    submits.push(submit_for(WALLET, &campaign(2), "7", 5, 3));
    for i in 10..20 {
        // WALLET has 2 open tasks and a cap of 3: one of these is created.
        submits.push(submit_for(WALLET, &campaign(i), "1", 5, 3));
        // The other wallet has none: three are created.
        submits.push(submit_for(other_wallet, &campaign(i), "1", 5, 3));
    }
    let outcomes = futures::future::join_all(
        submits
            .iter()
            .map(|s| storage.auto_invest().submit_auto_invest(s)),
    )
    .await;
    let outcomes: Vec<SubmitOutcome> = outcomes.into_iter().map(Result::unwrap).collect();

    // The merges into the pending task: each saw the one before it.
    let mut merges: Vec<&AutoInvestTask> = outcomes[..8]
        .iter()
        .map(|o| match o {
            SubmitOutcome::Merged(task) => task,
            other => panic!("expected a merge, got {other:?}"),
        })
        .collect();
    merges.sort_by_key(|t| t.version);
    let versions: Vec<i64> = merges.iter().map(|t| t.version).collect();
    assert_eq!(versions, (1..=8).collect::<Vec<i64>>());
    let last = merges.last().unwrap();
    assert!(merges.iter().all(|t| t.id == pending.id));
    assert_eq!(
        storage
            .auto_invest()
            .auto_invest_task(&pending.id)
            .await
            .unwrap()
            .as_ref(),
        Some(*last)
    );
    assert!(matches!(outcomes[8], SubmitOutcome::InProcess(ref t) if t.id == in_process.id));

    let created_for = |wallet: &str| {
        submits
            .iter()
            .zip(&outcomes)
            .skip(9)
            .filter(|(s, o)| s.wallet == wallet && matches!(o, SubmitOutcome::Created(_)))
            .count()
    };
    assert_eq!(created_for(WALLET), 1);
    assert_eq!(created_for(other_wallet), 3);
    assert!(
        outcomes[9..]
            .iter()
            .all(|o| matches!(o, SubmitOutcome::Created(_) | SubmitOutcome::TooMany(3)))
    );
    for wallet in [WALLET, other_wallet] {
        let open = storage
            .auto_invest()
            .list_auto_invests(CHAIN, TaskFilter::Wallet(addr(wallet)), true, None, 100)
            .await
            .unwrap();
        assert_eq!(open.len(), 3, "{wallet}");
    }
}

/// Two processes (two storage handles on one database) submitting the same new triples at
/// once: a batch that loses the race for a triple is written again one submit at a time, so
/// each triple ends with exactly one open task holding one of the amounts.
async fn two_processes_submitting_one_triple_keep_one_open_task(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let first = Storage::connect(&db.settings()).await.unwrap();
    first.migrate().await.unwrap();
    let second = Storage::connect(&db.settings()).await.unwrap();

    let submits: Vec<AutoInvestSubmit> = (0..40)
        .map(|i| submit_for(WALLET, &campaign(i), &format!("{}", i + 1), 5, 1000))
        .collect();
    let (a, b) = tokio::join!(
        futures::future::join_all(
            submits
                .iter()
                .map(|s| first.auto_invest().submit_auto_invest(s))
        ),
        futures::future::join_all(
            submits
                .iter()
                .map(|s| second.auto_invest().submit_auto_invest(s))
        ),
    );
    for (one, two) in a.into_iter().zip(b) {
        let (one, two) = (one.unwrap(), two.unwrap());
        let created = [&one, &two]
            .iter()
            .filter(|o| matches!(o, SubmitOutcome::Created(_)))
            .count();
        assert_eq!(created, 1, "{one:?} / {two:?}");
        assert!(
            [&one, &two]
                .iter()
                .all(|o| matches!(o, SubmitOutcome::Created(_) | SubmitOutcome::Merged(_)))
        );
    }
    let open = first
        .auto_invest()
        .list_auto_invests(CHAIN, TaskFilter::Wallet(addr(WALLET)), true, None, 100)
        .await
        .unwrap();
    assert_eq!(open.len(), 40);
}

async fn a_claim_that_loses_to_a_merge_writes_nothing(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let seen = created(&storage, CAMPAIGN, "500", 1).await;
    // The executor read `seen`; the investor changes the amount before the claim.
    storage
        .auto_invest()
        .submit_auto_invest(&submit(CAMPAIGN, "700", 2))
        .await
        .unwrap();
    let claimed = storage
        .auto_invest()
        .claim_auto_invests(&[(seen.id.clone(), seen.version)], intent("stale"), 3)
        .await
        .unwrap();
    assert_eq!(claimed, None);
    assert_eq!(
        storage.chain().tx_intent_by_key("stale").await.unwrap(),
        None,
        "no intent written"
    );
    let task = storage
        .auto_invest()
        .auto_invest_task(&seen.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.status, AutoInvestStatus::Pending);
    assert_eq!(task.amount, "700");
    // Deferrals of a stale version are ignored too.
    storage
        .auto_invest()
        .defer_auto_invests(
            &[Deferral {
                id: seen.id.clone(),
                version: seen.version,
                reason: "stale".into(),
                next_check_at_ms: 99,
            }],
            4,
        )
        .await
        .unwrap();
    assert_eq!(
        storage
            .auto_invest()
            .auto_invest_task(&seen.id)
            .await
            .unwrap()
            .unwrap()
            .reason,
        None
    );
}

async fn settlement_completes_retries_and_gives_up(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let good = created(&storage, CAMPAIGN, "500", 1).await;
    let bad = created(
        &storage,
        "0x00000000000000000000000000000000000000c1",
        "9",
        1,
    )
    .await;
    let record = storage
        .auto_invest()
        .claim_auto_invests(
            &[
                (good.id.clone(), good.version),
                (bad.id.clone(), bad.version),
            ],
            intent("batch-1"),
            2,
        )
        .await
        .unwrap()
        .unwrap();
    let outcomes = HashMap::from([
        (
            (addr(WALLET), addr(CAMPAIGN)),
            InvestOutcome {
                success: true,
                invested: units("300"),
                reason: None,
                retry: true,
            },
        ),
        (
            (addr(WALLET), bad.campaign),
            InvestOutcome {
                success: false,
                invested: units("0"),
                reason: Some("Campaign: caller may not invest for spender".into()),
                retry: true,
            },
        ),
    ]);
    assert!(
        storage
            .auto_invest()
            .settle_auto_invests(&record.id, &confirmed(), &outcomes, RETRY, 100)
            .await
            .unwrap()
    );
    // Settled once: a second settlement of the same intent changes nothing.
    assert!(
        !storage
            .auto_invest()
            .settle_auto_invests(&record.id, &confirmed(), &HashMap::new(), RETRY, 101)
            .await
            .unwrap()
    );

    let good = storage
        .auto_invest()
        .auto_invest_task(&good.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(good.status, AutoInvestStatus::Success);
    assert_eq!(good.invested_amount, Some(units("300")));
    assert_eq!(good.finished_at_ms, Some(100));
    let retried = storage
        .auto_invest()
        .auto_invest_task(&bad.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retried.status, AutoInvestStatus::Pending);
    assert_eq!(retried.attempts, 1);
    assert_eq!(retried.next_check_at_ms, 100 + 1_000, "behind the backoff");
    assert!(retried.reason.as_deref().unwrap().contains("will retry"));
    assert!(
        storage
            .auto_invest()
            .due_auto_invests(CHAIN, 1_099, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        storage
            .auto_invest()
            .due_auto_invests(CHAIN, 1_100, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // The second failure uses the last attempt.
    let record = claim(&storage, &retried, "batch-2").await;
    let outcomes = HashMap::from([(
        (addr(WALLET), retried.campaign),
        InvestOutcome {
            success: false,
            invested: units("0"),
            reason: Some("insufficient allowance".into()),
            retry: true,
        },
    )]);
    storage
        .auto_invest()
        .settle_auto_invests(&record.id, &confirmed(), &outcomes, RETRY, 2_000)
        .await
        .unwrap();
    let failed = storage
        .auto_invest()
        .auto_invest_task(&retried.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, AutoInvestStatus::Failed);
    assert_eq!(failed.attempts, 2);
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap()
            .starts_with("gave up after 2 attempts")
    );
    // Finished: the triple is free again.
    created(&storage, &retried.campaign.to_string(), "1", 2_001).await;
}

async fn a_failed_transaction_counts_as_an_attempt(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let task = created(&storage, CAMPAIGN, "500", 1).await;
    let record = claim(&storage, &task, "k").await;
    // Never mined (its nonce went to another transaction): nothing against a retry.
    let failed = TxFinal::Failed {
        reason: "nonce 3 was used by another transaction".into(),
        tx_hash: Some(format!("0x{}", "cd".repeat(32))),
        block_number: None,
        gas_used: None,
    };
    storage
        .auto_invest()
        .settle_auto_invests(&record.id, &failed, &HashMap::new(), RETRY, 50)
        .await
        .unwrap();
    let task = storage
        .auto_invest()
        .auto_invest_task(&task.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.status, AutoInvestStatus::Pending);
    assert_eq!(task.attempts, 1);
    assert_eq!(task.tx_intent_id, None);
    assert!(
        task.reason
            .as_deref()
            .unwrap()
            .contains("the transaction failed: nonce 3 was used")
    );
    assert_eq!(
        storage
            .chain()
            .tx_intent(&record.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        TxIntentStatus::Failed
    );
}

/// A campaign's own refusal, and a transaction that reverted on chain, fail their tasks at once
/// with attempts left: another attempt would pay again for the same refusal.
async fn a_refusal_by_the_chain_is_not_retried(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let refused = created(&storage, CAMPAIGN, "5", 1).await;
    let record = claim(&storage, &refused, "refused").await;
    let outcomes = HashMap::from([(
        (addr(WALLET), addr(CAMPAIGN)),
        InvestOutcome {
            success: false,
            invested: units("0"),
            reason: Some("hostile: always reverts".into()),
            retry: false,
        },
    )]);
    storage
        .auto_invest()
        .settle_auto_invests(&record.id, &confirmed(), &outcomes, RETRY, 20)
        .await
        .unwrap();
    let refused = storage
        .auto_invest()
        .auto_invest_task(&refused.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refused.status, AutoInvestStatus::Failed);
    assert_eq!(refused.attempts, 1, "one of two attempts used");
    assert_eq!(
        refused.reason.as_deref(),
        Some("refused on chain, not retried: hostile: always reverts")
    );

    let reverted = created(
        &storage,
        "0x00000000000000000000000000000000000000c2",
        "5",
        30,
    )
    .await;
    let record = claim(&storage, &reverted, "reverted").await;
    let failed = TxFinal::Failed {
        reason: "the transaction reverted in block 9".into(),
        tx_hash: Some(format!("0x{}", "ef".repeat(32))),
        block_number: Some(9),
        gas_used: Some(60_000),
    };
    assert!(failed.reverted_on_chain());
    storage
        .auto_invest()
        .settle_auto_invests(&record.id, &failed, &HashMap::new(), RETRY, 40)
        .await
        .unwrap();
    let reverted = storage
        .auto_invest()
        .auto_invest_task(&reverted.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reverted.status, AutoInvestStatus::Failed);
    assert_eq!(reverted.attempts, 1);
    assert!(
        reverted
            .reason
            .as_deref()
            .unwrap()
            .contains("not retried: the transaction failed: the transaction reverted in block 9"),
        "{reverted:?}"
    );
}

async fn overdue_pending_tasks_expire(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let old = created(&storage, CAMPAIGN, "1", 0).await;
    let young = created(
        &storage,
        "0x00000000000000000000000000000000000000c1",
        "1",
        DAY_MS,
    )
    .await;
    let busy = created(
        &storage,
        "0x00000000000000000000000000000000000000c2",
        "1",
        0,
    )
    .await;
    claim(&storage, &busy, "busy").await;
    let now = 7 * DAY_MS;
    assert_eq!(
        storage
            .auto_invest()
            .expire_auto_invests(CHAIN, now, 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        storage
            .auto_invest()
            .auto_invest_task(&old.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        AutoInvestStatus::Expired
    );
    assert_eq!(
        storage
            .auto_invest()
            .auto_invest_task(&young.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        AutoInvestStatus::Pending
    );
    assert_eq!(
        storage
            .auto_invest()
            .auto_invest_task(&busy.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        AutoInvestStatus::InProcess,
        "a task in process never expires under its transaction"
    );
    assert_eq!(
        storage
            .auto_invest()
            .expire_auto_invests(CHAIN, now, 100)
            .await
            .unwrap(),
        0
    );
}

/// The per-wallet open count (what the cap is checked against) goes up with each new task and
/// down with each finished one, however it finishes; merges, claims and retries leave it.
async fn the_open_count_follows_every_change(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let open = || async {
        storage
            .auto_invest()
            .open_auto_invest_count(CHAIN, &addr(WALLET))
            .await
            .unwrap()
    };
    let c = |i: u8| format!("0x00000000000000000000000000000000000000{i:02x}");
    assert_eq!(open().await, 0);
    created(&storage, &c(1), "1", 0).await;
    created(&storage, &c(2), "1", 0).await;
    let d = created(&storage, &c(3), "1", DAY_MS).await;
    assert_eq!(open().await, 3);
    // At the cap (3): refused, and merges do not count.
    assert!(matches!(
        storage
            .auto_invest()
            .submit_auto_invest(&submit(&c(4), "1", 1))
            .await
            .unwrap(),
        SubmitOutcome::TooMany(3)
    ));
    assert!(matches!(
        storage
            .auto_invest()
            .submit_auto_invest(&submit(&c(3), "2", DAY_MS))
            .await
            .unwrap(),
        SubmitOutcome::Merged(_)
    ));
    assert_eq!(open().await, 3);
    // Cancelled: one fewer, and the freed place can be taken.
    storage
        .auto_invest()
        .cancel_auto_invest(CHAIN, &addr(WALLET), &addr(&c(1)), 2)
        .await
        .unwrap();
    assert_eq!(open().await, 2);
    created(&storage, &c(5), "1", 3).await;
    assert_eq!(open().await, 3);
    // Expired: the tasks for campaigns 2 and 5 are old enough; 3's is young.
    assert_eq!(
        storage
            .auto_invest()
            .expire_auto_invests(CHAIN, 7 * DAY_MS + 3, 100)
            .await
            .unwrap(),
        2
    );
    assert_eq!(open().await, 1);
    // Claimed and retried: still open; then given up: closed.
    let d = storage
        .auto_invest()
        .auto_invest_task(&d.id)
        .await
        .unwrap()
        .unwrap();
    let record = claim(&storage, &d, "count-1").await;
    assert_eq!(open().await, 1);
    let refused = HashMap::from([(
        (addr(WALLET), addr(&c(3))),
        InvestOutcome {
            success: false,
            invested: units("0"),
            reason: Some("no allowance".into()),
            retry: true,
        },
    )]);
    storage
        .auto_invest()
        .settle_auto_invests(&record.id, &confirmed(), &refused, RETRY, 10)
        .await
        .unwrap();
    assert_eq!(open().await, 1, "back to pending for a retry");
    let d = storage
        .auto_invest()
        .auto_invest_task(&d.id)
        .await
        .unwrap()
        .unwrap();
    let record = claim(&storage, &d, "count-2").await;
    storage
        .auto_invest()
        .settle_auto_invests(&record.id, &confirmed(), &refused, RETRY, 20)
        .await
        .unwrap();
    assert_eq!(open().await, 0, "failed for good");
    // Completed: closed too.
    let f = created(&storage, &c(6), "7", 30).await;
    let record = claim(&storage, &f, "count-3").await;
    assert_eq!(open().await, 1);
    let invested = HashMap::from([(
        (addr(WALLET), addr(&c(6))),
        InvestOutcome {
            success: true,
            invested: units("7"),
            reason: None,
            retry: true,
        },
    )]);
    storage
        .auto_invest()
        .settle_auto_invests(&record.id, &confirmed(), &invested, RETRY, 40)
        .await
        .unwrap();
    assert_eq!(open().await, 0);
}
