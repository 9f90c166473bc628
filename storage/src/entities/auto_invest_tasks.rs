use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auto_invest_tasks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub chain_id: i64,
    pub wallet: String,
    pub campaign: String,
    pub amount: String,
    pub invested_amount: Option<String>,
    pub status: String,
    pub open_key: Option<String>,
    pub version: i64,
    pub attempts: i32,
    pub next_check_at_ms: i64,
    pub expires_at_ms: i64,
    pub tx_intent_id: Option<String>,
    pub tx_hash: Option<String>,
    pub reason: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
