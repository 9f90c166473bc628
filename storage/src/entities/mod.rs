//! sea-orm entities, one file per table. Rows never leave this crate as-is: repositories map
//! them to the record types in [`crate::records`].

pub mod api_keys;
pub mod audit_events;
pub mod auto_invest_open_counts;
pub mod auto_invest_tasks;
pub mod checkpoint_keys;
pub mod checkpoints;
pub mod dashboard_sessions;
pub mod dashboard_users;
pub mod donations;
pub mod entity_failures;
pub mod faucet_requests;
pub mod funds;
pub mod jwt_keys;
pub mod leases;
pub mod ledger_entries;
pub mod ledger_heads;
pub mod ledger_leaves;
pub mod login_challenges;
pub mod login_failures;
pub mod memberships;
pub mod merkle_nodes;
pub mod nodes;
pub mod organisations;
pub mod partner_ads;
pub mod partner_donations;
pub mod partner_keys;
pub mod sessions;
pub mod spent_refresh_tokens;
pub mod stripe_amount_mismatches;
pub mod stripe_events;
pub mod trusted_contracts;
pub mod tx_intents;
pub mod users;
pub mod veriff_sessions;
pub mod whitelist_requests;
