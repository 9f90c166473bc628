use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "veriff_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub address: String,
    pub url: String,
    pub created_at_ms: i64,
    pub last_event: Option<String>,
    pub last_event_code: Option<i32>,
    pub last_event_at_ms: Option<i64>,
    pub decision_status: Option<String>,
    pub decision_code: Option<i32>,
    pub decision_reason: Option<String>,
    pub decision_reason_code: Option<i32>,
    pub decision_time: Option<String>,
    pub acceptance_time: Option<String>,
    pub decided_at_ms: Option<i64>,
    pub person_first_name: Option<String>,
    pub person_last_name: Option<String>,
    pub document_type: Option<String>,
    pub document_country: Option<String>,
    pub document_valid_until: Option<Date>,
    pub version: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
