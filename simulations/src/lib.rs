//! Load generators, benchmarks and (in later issues) stand-ins for the outside services that
//! cannot be reached from a test machine. Every benchmark prints its figures, a ratio against a
//! baseline measured in the same run, and the seed it used; it only ever targets loopback and
//! stops by itself.

pub mod anvil;
pub mod chaos;
pub mod client;
pub mod flows;
pub mod logs;
pub mod pgdb;
pub mod procfs;
pub mod rpc_proxy;
pub mod stats;
