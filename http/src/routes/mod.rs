pub mod auto_invest;
pub mod checkpoints;
pub mod faucet;
pub mod identity;
pub mod kyc;
pub mod ops;
pub mod public;
pub mod whitelist;
