//! The RPC steps of sending a transaction: estimating, signing offline, broadcasting raw bytes
//! and reading receipts. The pipeline that orders them (and writes each step down first) is
//! the `TxSender` in the actors crate.

use std::time::Duration;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::{RpcError, TransportErrorKind};
use serde::{Deserialize, Serialize};

use crate::Chain;

/// How long one RPC call may take before it counts as a transport failure.
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// The window the gas budget counts over.
pub const GAS_BUDGET_WINDOW_MS: i64 = 60 * 60 * 1000;
/// The default gas budget per chain and hour: above what the benchmarks spend in a run (10,000
/// auto-investments at about 60,000 gas each, reserved at their estimate plus the margin until
/// their receipts arrive, about 720 million) so they run unchanged, and still a ceiling.
pub const GAS_BUDGET_PER_HOUR_DEFAULT: u64 = 1_000_000_000;

/// How transactions are sent on one chain (`[chains.tx]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TxSettings {
    /// Blocks (the receipt's included) before an outcome is final.
    pub confirmations: u64,
    /// The most a transaction may pay per gas, in gwei. While the network asks for more,
    /// transactions wait.
    pub max_fee_per_gas_gwei: u64,
    /// The tip per gas, in gwei (used when the node suggests more).
    pub max_priority_fee_per_gas_gwei: u64,
    /// Added to the node's gas estimate, in percent.
    pub gas_margin_percent: u64,
    /// A transaction with no receipt after this long is replaced with higher fees.
    pub stuck_after_secs: u64,
    /// Each replacement raises both fees by this much, in percent (nodes want at least 10).
    pub fee_bump_percent: u64,
    /// How often open transactions are checked; RPC failures back off from here.
    pub poll_interval_ms: u64,
    /// The longest wait between checks while the node keeps failing.
    pub max_backoff_ms: u64,
    /// One process at a time sends for a (chain, signer): it holds a lease in the database,
    /// renewed every round, that another process may take once it is this old.
    pub lease_ttl_ms: u64,
    /// The most gas the platform's transactions on this chain may use in any hour (counted
    /// from the recorded intents: gas used, or the gas limit while in flight). A transaction
    /// that would go over waits, unsent, until older ones leave the window.
    pub gas_budget_per_hour: u64,
}

impl Default for TxSettings {
    fn default() -> Self {
        Self {
            confirmations: 1,
            max_fee_per_gas_gwei: 500,
            max_priority_fee_per_gas_gwei: 2,
            gas_margin_percent: 20,
            stuck_after_secs: 120,
            fee_bump_percent: 20,
            poll_interval_ms: 1000,
            max_backoff_ms: 30_000,
            lease_ttl_ms: 15_000,
            gas_budget_per_hour: GAS_BUDGET_PER_HOUR_DEFAULT,
        }
    }
}

impl TxSettings {
    pub fn max_fee_per_gas_wei(&self) -> u128 {
        u128::from(self.max_fee_per_gas_gwei) * 1_000_000_000
    }

    pub fn max_priority_fee_per_gas_wei(&self) -> u128 {
        u128::from(self.max_priority_fee_per_gas_gwei) * 1_000_000_000
    }
}

/// Why an RPC step failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TxError {
    /// The node could not be reached or did not answer in time: try again later.
    #[error("RPC unavailable: {0}")]
    Unavailable(String),
    /// The call would revert (from a gas estimate).
    #[error("execution reverted: {0}")]
    Reverted(String),
    /// The node refused the transaction or call.
    #[error("rejected by the node: {0}")]
    Rejected(String),
    #[error("signing failed: {0}")]
    Signing(String),
}

/// What broadcasting said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broadcast {
    Accepted,
    /// The node already has it (a rebroadcast after a restart).
    AlreadyKnown,
    /// The nonce is spent: the transaction, or another one with its nonce, was mined.
    NonceTooLow,
}

/// An unsigned EIP-1559 transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedTx {
    pub chain_id: u64,
    pub nonce: u64,
    pub to: Address,
    pub data: Bytes,
    pub value: U256,
    pub gas_limit: u64,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
}

/// Signs offline; returns the raw EIP-2718 bytes and the transaction hash.
pub fn sign(signer: &PrivateKeySigner, tx: &UnsignedTx) -> Result<(Bytes, B256), TxError> {
    let mut unsigned = TxEip1559 {
        chain_id: tx.chain_id,
        nonce: tx.nonce,
        gas_limit: tx.gas_limit,
        max_fee_per_gas: tx.max_fee_per_gas,
        max_priority_fee_per_gas: tx.max_priority_fee_per_gas,
        to: TxKind::Call(tx.to),
        value: tx.value,
        access_list: Default::default(),
        input: tx.data.clone(),
    };
    let signature = signer
        .sign_transaction_sync(&mut unsigned)
        .map_err(|e| TxError::Signing(e.to_string()))?;
    let signed = unsigned.into_signed(signature);
    let hash = *signed.hash();
    let envelope = TxEnvelope::from(signed);
    Ok((Bytes::from(envelope.encoded_2718()), hash))
}

pub(crate) fn classify(error: RpcError<TransportErrorKind>) -> TxError {
    match &error {
        RpcError::ErrorResp(payload) => {
            let message = payload.message.to_string();
            if message.to_ascii_lowercase().contains("revert") {
                let data = payload
                    .as_revert_data()
                    .map(|d| format!(" (data {d})"))
                    .unwrap_or_default();
                TxError::Reverted(format!("{message}{data}"))
            } else {
                TxError::Rejected(message)
            }
        }
        _ => {
            // The transport's own message is generic; its causes say what happened.
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            TxError::Unavailable(message)
        }
    }
}

pub(crate) async fn timed<T>(
    call: impl std::future::IntoFuture<Output = Result<T, RpcError<TransportErrorKind>>>,
) -> Result<T, TxError> {
    match tokio::time::timeout(RPC_TIMEOUT, call.into_future()).await {
        Ok(result) => result.map_err(classify),
        Err(_) => Err(TxError::Unavailable(format!(
            "no answer within {}s",
            RPC_TIMEOUT.as_secs()
        ))),
    }
}

impl Chain {
    /// The next nonce of `address`, counting transactions in the node's pool.
    pub async fn pending_nonce(&self, address: Address) -> Result<u64, TxError> {
        timed(self.provider().get_transaction_count(address).pending()).await
    }

    /// The nonce of `address` as of the latest block.
    pub async fn latest_nonce(&self, address: Address) -> Result<u64, TxError> {
        timed(self.provider().get_transaction_count(address).latest()).await
    }

    pub async fn block_number(&self) -> Result<u64, TxError> {
        timed(self.provider().get_block_number()).await
    }

    /// The node's EIP-1559 fee suggestion: (max fee, priority fee) per gas.
    pub async fn suggested_fees(&self) -> Result<(u128, u128), TxError> {
        let estimate = timed(self.provider().estimate_eip1559_fees()).await?;
        Ok((estimate.max_fee_per_gas, estimate.max_priority_fee_per_gas))
    }

    /// Estimates the gas of a call from `from`. A call that would revert is
    /// [`TxError::Reverted`].
    pub async fn estimate_gas(
        &self,
        from: Address,
        to: Address,
        data: Bytes,
        value: U256,
    ) -> Result<u64, TxError> {
        let request = TransactionRequest::default()
            .from(from)
            .to(to)
            .input(data.into())
            .value(value);
        timed(self.provider().estimate_gas(request)).await
    }

    /// Broadcasts signed bytes.
    pub async fn broadcast(&self, raw: &[u8]) -> Result<Broadcast, TxError> {
        match timed(self.provider().send_raw_transaction(raw)).await {
            Ok(_) => Ok(Broadcast::Accepted),
            Err(TxError::Rejected(message)) | Err(TxError::Reverted(message)) => {
                let lower = message.to_ascii_lowercase();
                if lower.contains("already known") || lower.contains("already imported") {
                    Ok(Broadcast::AlreadyKnown)
                } else if lower.contains("nonce too low") || lower.contains("nonce is too low") {
                    Ok(Broadcast::NonceTooLow)
                } else {
                    Err(TxError::Rejected(message))
                }
            }
            Err(other) => Err(other),
        }
    }

    pub async fn receipt(&self, hash: B256) -> Result<Option<TransactionReceipt>, TxError> {
        timed(self.provider().get_transaction_receipt(hash)).await
    }
}
