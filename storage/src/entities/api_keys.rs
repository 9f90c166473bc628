use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub organisation_id: String,
    pub name: String,
    pub mode: String,
    pub policies: String,
    pub key_hash: String,
    pub key_hint: String,
    pub secret_id: String,
    pub secret: String,
    pub secret_created_at_ms: i64,
    pub deposed_secret_id: Option<String>,
    pub deposed_secret: Option<String>,
    pub deposed_until_ms: Option<i64>,
    pub created_by: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub deleted_at_ms: Option<i64>,
    pub delegable_policies: Option<String>,
    pub delegable_keys: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
