use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "partner_donations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub donation_id: String,
    pub partner_key_id: String,
    pub nonprofit_campaign_guid: String,
    pub publisher_campaign_guid: String,
    pub publisher_account_guid: String,
    pub sponsor_campaign_guid: Option<String>,
    pub sponsor_matching_percentage: Option<i32>,
    pub publisher_transaction_id: Option<String>,
    pub donor: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
