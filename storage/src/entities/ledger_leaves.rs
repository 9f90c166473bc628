use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_leaves")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub leaf_index: i64,
    pub entry_id: String,
    pub checkpoint_date: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
