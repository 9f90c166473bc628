use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub address: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub kyc_completed: bool,
    pub kyc_first_name: Option<String>,
    pub kyc_last_name: Option<String>,
    pub kyc_session_id: Option<String>,
    pub kyc_document_type: Option<String>,
    pub kyc_document_country: Option<String>,
    pub kyc_document_valid_until: Option<Date>,
    pub kyc_verified_at_ms: Option<i64>,
    pub version: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
