//! KYC repository guarantees, on SQLite and PostgreSQL: Veriff sessions round-trip, a decision
//! and the user it completes are written together or not at all, and the document's expiry is
//! kept for whitelisting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ampflow_storage::testdb::{Backend, TestDatabase};
use ampflow_storage::*;
use ampflow_types::WalletAddress;
use chrono::NaiveDate;

macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() { super::$name(ampflow_storage::testdb::Backend::Sqlite).await }
            #[tokio::test]
            async fn postgres() { super::$name(ampflow_storage::testdb::Backend::Postgres).await }
        }
    )*};
}

on_both_databases!(
    veriff_sessions_round_trip_and_the_latest_is_found,
    a_decision_and_its_user_are_written_together_or_not_at_all,
);

const ADDRESS: &str = "0x00000000000000000000000000000000000000bb";

fn wallet() -> WalletAddress {
    WalletAddress::parse(ADDRESS).unwrap()
}

async fn storage(backend: Backend) -> Option<(Storage, TestDatabase)> {
    let db = TestDatabase::create(backend).await?;
    let storage = Storage::connect(&db.settings()).await.unwrap();
    storage.migrate().await.unwrap();
    Some((storage, db))
}

/// A user, created the way a first login creates it.
async fn create_user(storage: &Storage) -> UserRecord {
    storage
        .identity()
        .insert_challenge(&ChallengeRecord {
            id: "c1".into(),
            address: Some(wallet()),
            message: "m".into(),
            created_at_ms: 0,
            expires_at_ms: 600_000,
            used_at_ms: None,
        })
        .await
        .unwrap();
    let write = LoginWrite {
        challenge_id: "c1".into(),
        create_user: Some(UserRecord::new(wallet(), 0)),
        session: SessionRecord {
            id: "s1".into(),
            address: wallet(),
            created_at_ms: 0,
            expires_at_ms: 1_000_000,
            revoked_at_ms: None,
            revoked_reason: None,
            refresh_token_hash: "h1".into(),
            chain_id: None,
        },
    };
    match storage.identity().login(&write, 0).await.unwrap() {
        LoginOutcome::LoggedIn(Some(user)) => user,
        other => panic!("{other:?}"),
    }
}

fn session(id: &str, created_at_ms: i64) -> VeriffSessionRecord {
    VeriffSessionRecord {
        id: id.into(),
        address: wallet(),
        url: format!("https://alchemy.veriff.com/v/{id}"),
        created_at_ms,
        last_event: None,
        last_event_code: None,
        last_event_at_ms: None,
        decision: None,
        decided_at_ms: None,
        version: 0,
    }
}

fn approved(valid_until: NaiveDate) -> VeriffDecision {
    VeriffDecision {
        status: VeriffDecisionStatus::Approved,
        code: 9001,
        reason: None,
        reason_code: None,
        decision_time: Some("2019-11-06T07:18:36.916Z".into()),
        acceptance_time: None,
        person_first_name: Some("SARAH".into()),
        person_last_name: Some("MORGAN".into()),
        document_type: Some("PASSPORT".into()),
        document_country: Some("GB".into()),
        document_valid_until: Some(valid_until),
    }
}

async fn veriff_sessions_round_trip_and_the_latest_is_found(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    assert!(
        storage
            .identity()
            .latest_veriff_session(&wallet())
            .await
            .unwrap()
            .is_none()
    );
    storage
        .identity()
        .insert_veriff_session(&session("v1", 10))
        .await
        .unwrap();
    storage
        .identity()
        .insert_veriff_session(&session("v2", 20))
        .await
        .unwrap();
    let latest = storage
        .identity()
        .latest_veriff_session(&wallet())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest, session("v2", 20));

    let mut decided = latest.clone();
    decided.decision = Some(approved(NaiveDate::from_ymd_opt(2030, 1, 2).unwrap()));
    decided.decided_at_ms = Some(30);
    decided.last_event = Some("submitted".into());
    decided.last_event_code = Some(7002);
    decided.version = 1;
    assert!(
        storage
            .identity()
            .update_veriff_session(&decided, None)
            .await
            .unwrap()
    );
    assert_eq!(
        storage.identity().find_veriff_session("v2").await.unwrap(),
        Some(decided)
    );
    assert!(
        storage
            .identity()
            .find_veriff_session("nope")
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_decision_and_its_user_are_written_together_or_not_at_all(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let user = create_user(&storage).await;
    assert_eq!(
        storage
            .identity()
            .kyc_status(&wallet())
            .await
            .unwrap()
            .map(|k| k.completed),
        Some(false)
    );
    storage
        .identity()
        .insert_veriff_session(&session("v1", 10))
        .await
        .unwrap();
    let valid_until = NaiveDate::from_ymd_opt(2030, 1, 2).unwrap();

    let mut decided = session("v1", 10);
    decided.decision = Some(approved(valid_until));
    decided.version = 1;
    let mut verified = user.clone();
    verified.kyc_completed = true;
    verified.kyc_session_id = Some("v1".into());
    verified.kyc_document_valid_until = Some(valid_until);
    verified.version += 1;

    // A stale user version: the session is not written either.
    let mut stale = verified.clone();
    stale.version += 5;
    assert!(
        !storage
            .identity()
            .update_veriff_session(&decided, Some(&stale))
            .await
            .unwrap()
    );
    assert_eq!(
        storage.identity().find_veriff_session("v1").await.unwrap(),
        Some(session("v1", 10))
    );

    assert!(
        storage
            .identity()
            .update_veriff_session(&decided, Some(&verified))
            .await
            .unwrap()
    );
    let status = storage
        .identity()
        .kyc_status(&wallet())
        .await
        .unwrap()
        .unwrap();
    assert!(status.completed);
    assert_eq!(status.document_valid_until, Some(valid_until));
    assert_eq!(status.session_id.as_deref(), Some("v1"));
    assert!(status.is_valid_on(valid_until));
    assert!(status.is_expired_on(valid_until.succ_opt().unwrap()));

    // Replaying the same versions loses: exactly one writer applies a decision.
    assert!(
        !storage
            .identity()
            .update_veriff_session(&decided, Some(&verified))
            .await
            .unwrap()
    );
    assert_eq!(
        storage
            .identity()
            .kyc_status(
                &WalletAddress::parse("0x00000000000000000000000000000000000000cc").unwrap()
            )
            .await
            .unwrap(),
        None
    );
}
