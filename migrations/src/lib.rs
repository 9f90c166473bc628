//! The schema history. Every timestamp column holds Unix milliseconds (`BIGINT`), so SQLite and
//! PostgreSQL store identical values.

pub use sea_orm_migration::prelude::*;

mod m0001_identity;
mod m0002_chain;
mod m0003_kyc;
mod m0004_auto_invest;
mod m0005_organisations;
mod m0006_ledger;
mod m0007_donations;
mod m0008_stripe_events;
mod m0009_checkpoints;
mod m0010_partners;
mod m0011_ledger_refunds;
mod m0012_auto_invest_counts;
mod m0013_dashboard_access;
mod m0014_api_keys;
mod m0015_trusted_contracts;
mod m0016_api_key_delegation;
mod m0017_session_chain;
mod m0018_stripe_amount_mismatches;
mod m0019_nodes;

pub struct Migrator;

/// Creates a (non-unique) index `name` on `table` over `columns`, in order.
pub(crate) async fn index(
    manager: &SchemaManager<'_>,
    table: &'static str,
    name: &'static str,
    columns: &[&'static str],
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table);
    for column in columns {
        index.col(*column);
    }
    manager.create_index(index.to_owned()).await
}

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_identity::Migration),
            Box::new(m0002_chain::Migration),
            Box::new(m0003_kyc::Migration),
            Box::new(m0004_auto_invest::Migration),
            Box::new(m0005_organisations::Migration),
            Box::new(m0006_ledger::Migration),
            Box::new(m0007_donations::Migration),
            Box::new(m0008_stripe_events::Migration),
            Box::new(m0009_checkpoints::Migration),
            Box::new(m0010_partners::Migration),
            Box::new(m0011_ledger_refunds::Migration),
            Box::new(m0012_auto_invest_counts::Migration),
            Box::new(m0013_dashboard_access::Migration),
            Box::new(m0014_api_keys::Migration),
            Box::new(m0015_trusted_contracts::Migration),
            Box::new(m0016_api_key_delegation::Migration),
            Box::new(m0017_session_chain::Migration),
            Box::new(m0018_stripe_amount_mismatches::Migration),
            Box::new(m0019_nodes::Migration),
        ]
    }
}
