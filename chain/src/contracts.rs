//! Bindings to the platform's contracts, generated from the committed artifacts in
//! `chain/contracts/artifacts/` (rebuild them with `scripts/compile-contracts`).
#![allow(missing_docs, clippy::too_many_arguments)]

alloy::sol!(
    #[sol(rpc)]
    TestStablecoin,
    "contracts/artifacts/TestStablecoin.json"
);
alloy::sol!(
    #[sol(rpc)]
    Issuer,
    "contracts/artifacts/Issuer.json"
);
alloy::sol!(
    #[sol(rpc)]
    WalletApprover,
    "contracts/artifacts/WalletApprover.json"
);
alloy::sol!(
    #[sol(rpc)]
    Faucet,
    "contracts/artifacts/Faucet.json"
);
alloy::sol!(
    #[sol(rpc)]
    Campaign,
    "contracts/artifacts/Campaign.json"
);
alloy::sol!(
    #[sol(rpc)]
    InvestService,
    "contracts/artifacts/InvestService.json"
);
alloy::sol!(
    #[sol(rpc)]
    MinimalEip1271Wallet,
    "contracts/artifacts/MinimalEip1271Wallet.json"
);
