pub mod identity;
pub mod ops;
