//! Reads of the InvestService contract the auto-invest executor makes: which records are ready
//! to invest (`getStatus`), and why the others are not (`getStatusReasons`).

use alloy::primitives::{Address, U256};

use crate::Chain;
use crate::contracts::InvestService;
use crate::tx::{RPC_TIMEOUT, TxError, classify};

/// One (investor, campaign, requested amount) record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvestRecord {
    pub investor: Address,
    pub campaign: Address,
    pub amount: U256,
}

/// What `getStatus` says about a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvestStatus {
    /// What can be invested now: min(requested, balance, allowance to the campaign).
    pub amount: U256,
    /// Whitelisted on the campaign's issuer, and `amount` > 0.
    pub ready: bool,
}

pub(crate) fn to_sol(records: &[InvestRecord]) -> Vec<InvestService::InvestmentRecord> {
    records
        .iter()
        .map(|r| InvestService::InvestmentRecord {
            investor: r.investor,
            campaign: r.campaign,
            amount: r.amount,
        })
        .collect()
}

/// The `investFor(records)` calldata.
pub fn invest_for_calldata(records: &[InvestRecord]) -> alloy::primitives::Bytes {
    use alloy::sol_types::SolCall;
    InvestService::investForCall {
        investments: to_sol(records),
    }
    .abi_encode()
    .into()
}

/// A contract read under the RPC timeout: transport failures are classified like every RPC
/// failure; an answer that does not decode is a rejection.
pub(crate) async fn contract_call<T>(
    call: impl std::future::IntoFuture<Output = Result<T, alloy::contract::Error>>,
) -> Result<T, TxError> {
    match tokio::time::timeout(RPC_TIMEOUT, call.into_future()).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(alloy::contract::Error::TransportError(e))) => Err(classify(e)),
        Ok(Err(other)) => Err(TxError::Rejected(other.to_string())),
        Err(_) => Err(TxError::Unavailable(format!(
            "no answer within {}s",
            RPC_TIMEOUT.as_secs()
        ))),
    }
}

impl Chain {
    /// `getStatus` of each record, in order (one `eth_call`).
    pub async fn invest_status(
        &self,
        invest_service: Address,
        records: &[InvestRecord],
    ) -> Result<Vec<InvestStatus>, TxError> {
        let contract = InvestService::new(invest_service, self.provider());
        let statuses = contract_call(contract.getStatus(to_sol(records)).call()).await?;
        if statuses.len() != records.len() {
            return Err(TxError::Rejected(format!(
                "getStatus answered {} records for {}",
                statuses.len(),
                records.len()
            )));
        }
        Ok(statuses
            .into_iter()
            .map(|s| InvestStatus {
                amount: s.amount,
                ready: s.readyToInvest,
            })
            .collect())
    }

    /// Why each record is not ready (empty when it is), in order (one `eth_call`).
    pub async fn invest_status_reasons(
        &self,
        invest_service: Address,
        records: &[InvestRecord],
    ) -> Result<Vec<String>, TxError> {
        let contract = InvestService::new(invest_service, self.provider());
        contract_call(contract.getStatusReasons(to_sol(records)).call()).await
    }
}
