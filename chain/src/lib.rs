//! EVM access for ampflow. For now: wallet signature checks (EIP-191 personal_sign). Providers,
//! the transaction pipeline and EIP-1271 contract-wallet checks arrive with the chain issue.

pub mod signature;

pub use signature::{SignatureError, WalletSignature};
