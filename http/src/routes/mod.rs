pub mod faucet;
pub mod identity;
pub mod ops;
