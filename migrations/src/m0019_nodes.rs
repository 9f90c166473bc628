//! The nodes (`ampflow serve` processes) that hold leases, each with a stable id
//! (`node.id`) and a count of its runs: a run takes its leases as `<node id>#<incarnation>`,
//! so a restarted node can tell its own previous run's leases (a lower incarnation) from
//! another node's and take them back at once instead of waiting for them to expire.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("nodes")
                    .col(string_len("node_id", 40).primary_key())
                    // Bumped by every start of the node.
                    .col(big_integer("incarnation"))
                    .col(big_integer("started_at_ms"))
                    // Where the latest run started, for operators.
                    .col(string_len("hostname", 255))
                    .col(big_integer("pid"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("nodes").to_owned())
            .await
    }
}
