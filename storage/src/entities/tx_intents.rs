use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tx_intents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(unique)]
    pub idempotency_key: String,
    pub purpose: String,
    pub chain_id: i64,
    pub signer: String,
    pub to_address: String,
    pub calldata: String,
    pub value_wei: String,
    pub gas_limit: Option<i64>,
    pub status: String,
    pub nonce: Option<i64>,
    pub raw_tx: Option<String>,
    pub tx_hash: Option<String>,
    pub replaced_hashes: String,
    pub max_fee_per_gas: Option<String>,
    pub max_priority_fee_per_gas: Option<String>,
    pub send_attempts: i32,
    pub sent_at_ms: Option<i64>,
    pub block_number: Option<i64>,
    pub gas_used: Option<i64>,
    pub failure: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
