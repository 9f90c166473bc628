use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "checkpoint_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub verifier_key: String,
    pub private_key: String,
    pub created_at_ms: i64,
}

// Written by hand so that the private key never reaches a log line.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("checkpoint_keys::Model")
            .field("verifier_key", &self.verifier_key)
            .field("private_key", &"[redacted]")
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
