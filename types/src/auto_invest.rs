//! Auto-invest tasks and the rules that decide them: what a submit does to its (wallet,
//! campaign, chain) and what a task looks like afterwards. Pure functions over values, so
//! storage's transactions apply them to the state they read (a group commit decides each
//! submit in turn) and nothing else holds a copy of the rule.

use crate::{ChainId, TokenAmount, UnixMillis, WalletAddress};

/// Where a task stands: pending → in_process → success | failed, or back to pending after a
/// failed attempt with attempts left; pending → expired | cancelled. Finished tasks never
/// change, and each move is a conditional update on the status it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AutoInvestStatus {
    /// Waiting for the wallet to be ready (whitelisted, funded, allowance given).
    Pending,
    /// In an `investFor` transaction that has no final outcome yet.
    InProcess,
    Success,
    Failed,
    Expired,
    Cancelled,
}

impl AutoInvestStatus {
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::InProcess,
        Self::Success,
        Self::Failed,
        Self::Expired,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProcess => "in_process",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Pending or in process: the triple's one open task.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::InProcess)
    }
}

/// One auto-invest task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoInvestTask {
    pub id: String,
    pub chain_id: ChainId,
    pub wallet: WalletAddress,
    pub campaign: WalletAddress,
    /// Requested, in stablecoin base units.
    pub amount: TokenAmount,
    /// Invested, once it succeeded.
    pub invested_amount: Option<TokenAmount>,
    pub status: AutoInvestStatus,
    pub version: i64,
    pub attempts: u32,
    pub next_check_at_ms: UnixMillis,
    pub expires_at_ms: UnixMillis,
    pub tx_intent_id: Option<String>,
    pub tx_hash: Option<String>,
    pub reason: Option<String>,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
    pub finished_at_ms: Option<UnixMillis>,
}

/// A request to queue (or merge into) the triple's task.
#[derive(Debug, Clone)]
pub struct AutoInvestSubmit {
    pub chain_id: ChainId,
    pub wallet: WalletAddress,
    pub campaign: WalletAddress,
    pub amount: TokenAmount,
    pub now: UnixMillis,
    /// When the task expires if it is still pending: now + the timeout.
    pub expires_at_ms: UnixMillis,
    /// Open tasks a wallet may have on a chain.
    pub max_open_per_wallet: u64,
}

/// What a submit does to its (wallet, campaign, chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitDecision {
    /// The triple's task is being invested: left alone.
    InProcess,
    /// The triple's pending task becomes this one: the new amount and expiry, checked at once,
    /// one version on. Written only if the task is still at the version read.
    Merge(AutoInvestTask),
    /// No open task, and the wallet has as many open tasks on the chain as allowed.
    TooMany,
    /// No open task: this new one, checked at once.
    Create(AutoInvestTask),
}

/// Decides a submit from the triple's open task and, when it has none, the wallet's count
/// of open tasks on the chain (a merge opens nothing, so the count does not matter then).
pub fn decide_submit(
    open: Option<&AutoInvestTask>,
    wallet_open_count: u64,
    submit: &AutoInvestSubmit,
) -> SubmitDecision {
    match open {
        Some(task) if task.status == AutoInvestStatus::InProcess => SubmitDecision::InProcess,
        Some(task) => SubmitDecision::Merge(AutoInvestTask {
            amount: submit.amount,
            version: task.version + 1,
            expires_at_ms: submit.expires_at_ms,
            next_check_at_ms: submit.now,
            updated_at_ms: submit.now,
            ..task.clone()
        }),
        None if wallet_open_count >= submit.max_open_per_wallet => SubmitDecision::TooMany,
        None => SubmitDecision::Create(AutoInvestTask {
            id: uuid::Uuid::new_v4().to_string(),
            chain_id: submit.chain_id,
            wallet: submit.wallet,
            campaign: submit.campaign,
            amount: submit.amount,
            invested_amount: None,
            status: AutoInvestStatus::Pending,
            version: 0,
            attempts: 0,
            next_check_at_ms: submit.now,
            expires_at_ms: submit.expires_at_ms,
            tx_intent_id: None,
            tx_hash: None,
            reason: None,
            created_at_ms: submit.now,
            updated_at_ms: submit.now,
            finished_at_ms: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(units: u128) -> TokenAmount {
        TokenAmount::from(units)
    }

    fn created(decision: SubmitDecision) -> AutoInvestTask {
        match decision {
            SubmitDecision::Create(task) => task,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_submit_merges_into_a_pending_task_leaves_one_in_process_and_counts_the_wallet() {
        let submit = AutoInvestSubmit {
            chain_id: ChainId::new(1),
            wallet: WalletAddress::parse(&format!("0x{}", "a".repeat(40))).unwrap(),
            campaign: WalletAddress::parse(&format!("0x{}", "c".repeat(40))).unwrap(),
            amount: amount(7),
            now: 1_000,
            expires_at_ms: 5_000,
            max_open_per_wallet: 2,
        };
        let first = AutoInvestSubmit {
            amount: amount(5),
            now: 100,
            ..submit.clone()
        };
        let new = created(decide_submit(None, 0, &first));
        assert_eq!(
            (
                new.amount,
                new.status,
                new.version,
                new.next_check_at_ms,
                new.created_at_ms
            ),
            (amount(5), AutoInvestStatus::Pending, 0, 100, 100)
        );
        let pending = AutoInvestTask {
            version: 3,
            next_check_at_ms: 400,
            ..new
        };
        let in_process = AutoInvestTask {
            status: AutoInvestStatus::InProcess,
            ..pending.clone()
        };
        assert_eq!(
            decide_submit(Some(&in_process), 0, &submit),
            SubmitDecision::InProcess
        );
        let SubmitDecision::Merge(after) = decide_submit(Some(&pending), 9, &submit) else {
            panic!("a merge opens nothing: the wallet's count does not matter");
        };
        assert_eq!(
            (
                after.amount,
                after.version,
                after.expires_at_ms,
                after.next_check_at_ms,
                after.updated_at_ms
            ),
            (amount(7), 4, 5_000, 1_000, 1_000)
        );
        assert_eq!(
            (after.id, after.created_at_ms),
            (pending.id, pending.created_at_ms)
        );
        assert_eq!(created(decide_submit(None, 1, &submit)).amount, amount(7));
        assert_eq!(decide_submit(None, 2, &submit), SubmitDecision::TooMany);
    }
}
