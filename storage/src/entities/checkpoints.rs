use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "checkpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub checkpoint_date: String,
    pub day_end_ms: i64,
    pub tree_size: i64,
    pub root_hash: String,
    pub total_volume: i64,
    pub volume_by_currency: String,
    pub signed_note: String,
    pub verifier_key: String,
    pub created_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
