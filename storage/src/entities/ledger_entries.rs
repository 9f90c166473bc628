use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_entries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub organisation_id: String,
    pub seq: i64,
    pub entry_type: String,
    pub amount: i64,
    pub currency: String,
    pub donation_id: Option<String>,
    pub donor_name: Option<String>,
    pub stripe_payment_intent_id: Option<String>,
    pub created_at_ms: i64,
    pub entry_hash: String,
    pub prev_entry_hash: Option<String>,
    pub dedupe_key: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
