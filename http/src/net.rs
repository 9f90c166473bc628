//! Client addresses as limits count them: [`ip_key`] (in `ampflow_types::net`, so the login
//! throttle and the session bindings of the accounts façade group addresses the same way).

pub use ampflow_types::net::ip_key;
