//! Repository guarantees the actors rely on, on SQLite and PostgreSQL: conditional updates let
//! exactly one writer win.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ampflow_storage::testdb::{Backend, TestDatabase};
use ampflow_storage::*;
use ampflow_types::WalletAddress;

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
    a_challenge_is_consumed_by_exactly_one_login,
    concurrent_logins_are_group_committed_and_each_gets_its_own_answer,
    an_expired_challenge_cannot_be_consumed,
    a_refresh_token_is_spent_once,
    a_stale_user_version_loses,
    failed_entities_are_recorded_and_cleared,
    expired_rows_are_deleted,
    ended_dashboard_sessions_are_deleted,
    migrations_are_idempotent,
    processes_starting_at_once_agree_on_one_signing_key,
);

const ADDRESS: &str = "0x00000000000000000000000000000000000000aa";

fn wallet() -> WalletAddress {
    WalletAddress::parse(ADDRESS).unwrap()
}

async fn storage(backend: Backend) -> Option<(Storage, TestDatabase)> {
    let db = TestDatabase::create(backend).await?;
    let storage = Storage::connect(&db.settings()).await.unwrap();
    storage.migrate().await.unwrap();
    Some((storage, db))
}

fn challenge(id: &str, now: i64) -> ChallengeRecord {
    ChallengeRecord {
        id: id.into(),
        address: Some(wallet()),
        message: format!("message {id}"),
        created_at_ms: now,
        expires_at_ms: now + 600_000,
        used_at_ms: None,
    }
}

fn login_write(challenge_id: &str, session_id: &str, now: i64) -> LoginWrite {
    LoginWrite {
        challenge_id: challenge_id.into(),
        create_user: Some(UserRecord::new(wallet(), now)),
        session: SessionRecord {
            id: session_id.into(),
            address: wallet(),
            created_at_ms: now,
            expires_at_ms: now + 1_000_000,
            revoked_at_ms: None,
            revoked_reason: None,
            refresh_token_hash: format!("hash-{session_id}"),
            chain_id: None,
        },
    }
}

async fn a_challenge_is_consumed_by_exactly_one_login(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let now = 1_000_000;
    storage
        .identity()
        .insert_challenge(&challenge("c1", now))
        .await
        .unwrap();
    let attempts = (0..6).map(|i| {
        let storage = storage.clone();
        tokio::spawn(async move {
            storage
                .identity()
                .login(&login_write("c1", &format!("s{i}"), now), now)
                .await
                .unwrap()
        })
    });
    let outcomes = futures::future::join_all(attempts).await;
    let winners = outcomes
        .iter()
        .filter(|o| matches!(o.as_ref().unwrap(), LoginOutcome::LoggedIn(_)))
        .count();
    assert_eq!(winners, 1);
    let snapshot = storage
        .identity()
        .load_wallet(&wallet(), now)
        .await
        .unwrap();
    assert!(snapshot.user.is_some());
    assert!(
        snapshot.challenges.is_empty(),
        "the used challenge is no longer pending"
    );
}

async fn an_expired_challenge_cannot_be_consumed(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    storage
        .identity()
        .insert_challenge(&challenge("c1", 0))
        .await
        .unwrap();
    let later = 600_001;
    assert_eq!(
        storage
            .identity()
            .login(&login_write("c1", "s1", later), later)
            .await
            .unwrap(),
        LoginOutcome::ChallengeUnavailable
    );
    assert!(
        storage
            .identity()
            .find_user(&wallet())
            .await
            .unwrap()
            .is_none(),
        "nothing of the login was written"
    );
    assert!(
        storage
            .identity()
            .find_session("s1")
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_refresh_token_is_spent_once(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    storage
        .identity()
        .insert_challenge(&challenge("c1", 0))
        .await
        .unwrap();
    storage
        .identity()
        .login(&login_write("c1", "s1", 0), 0)
        .await
        .unwrap();
    assert_eq!(
        storage
            .identity()
            .rotate_refresh_token("hash-s1", "hash-2", "s1", 10)
            .await
            .unwrap(),
        RotateOutcome::Rotated
    );
    assert_eq!(
        storage
            .identity()
            .rotate_refresh_token("hash-s1", "hash-3", "s1", 20)
            .await
            .unwrap(),
        RotateOutcome::AlreadySpent
    );
    let (state, session) = storage
        .identity()
        .find_refresh_token("hash-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (state, session.id.as_str()),
        (RefreshTokenState::Current, "s1")
    );
    let (state, session) = storage
        .identity()
        .find_refresh_token("hash-s1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (state, session.id.as_str()),
        (RefreshTokenState::Spent, "s1")
    );
    assert!(
        storage
            .identity()
            .find_refresh_token("hash-3")
            .await
            .unwrap()
            .is_none(),
        "a losing rotation writes nothing"
    );
    assert!(
        storage
            .identity()
            .revoke_session("s1", "test", 30)
            .await
            .unwrap()
    );
    assert!(
        !storage
            .identity()
            .revoke_session("s1", "test", 40)
            .await
            .unwrap(),
        "revoking twice is a no-op"
    );
}

async fn a_stale_user_version_loses(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    storage
        .identity()
        .insert_challenge(&challenge("c1", 0))
        .await
        .unwrap();
    let LoginOutcome::LoggedIn(Some(user)) = storage
        .identity()
        .login(&login_write("c1", "s1", 0), 0)
        .await
        .unwrap()
    else {
        panic!()
    };
    let mut first = user.clone();
    first.email = Some("a@example.org".into());
    first.version += 1;
    let mut second = user.clone();
    second.email = Some("b@example.org".into());
    second.version += 1;
    assert!(storage.identity().update_user(&first).await.unwrap());
    assert!(
        !storage.identity().update_user(&second).await.unwrap(),
        "the writer that read version 0 second loses"
    );
    assert_eq!(
        storage
            .identity()
            .find_user(&wallet())
            .await
            .unwrap()
            .unwrap()
            .email
            .as_deref(),
        Some("a@example.org")
    );
}

async fn failed_entities_are_recorded_and_cleared(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let failure = EntityFailure {
        kind: "wallet".into(),
        entity_key: ADDRESS.into(),
        reason: "boom".into(),
        restarts: 6,
        failed_at_ms: 5,
    };
    storage
        .failures()
        .mark_entity_failed(&failure)
        .await
        .unwrap();
    storage
        .failures()
        .mark_entity_failed(&EntityFailure {
            reason: "boom again".into(),
            ..failure.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        storage
            .failures()
            .entity_failure("wallet", ADDRESS)
            .await
            .unwrap()
            .unwrap()
            .reason,
        "boom again"
    );
    assert_eq!(
        storage
            .failures()
            .list_entity_failures(10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        storage
            .failures()
            .clear_entity_failure("wallet", ADDRESS)
            .await
            .unwrap()
    );
    assert!(
        storage
            .failures()
            .entity_failure("wallet", ADDRESS)
            .await
            .unwrap()
            .is_none()
    );
}

async fn expired_rows_are_deleted(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    storage
        .identity()
        .insert_challenge(&challenge("old", 0))
        .await
        .unwrap();
    storage
        .identity()
        .insert_challenge(&challenge("new", 10_000_000))
        .await
        .unwrap();
    storage
        .identity()
        .login(&login_write("old", "s-old", 0), 0)
        .await
        .unwrap();
    storage
        .identity()
        .rotate_refresh_token("hash-s-old", "hash-next", "s-old", 1)
        .await
        .unwrap();
    let deleted = storage
        .identity()
        .delete_expired_identity_rows(5_000_000)
        .await
        .unwrap();
    assert_eq!(
        deleted, 3,
        "the old challenge, its session and the session's refresh token"
    );
    assert!(
        storage
            .identity()
            .find_challenge("new")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        storage
            .identity()
            .find_session("s-old")
            .await
            .unwrap()
            .is_none()
    );
}

async fn ended_dashboard_sessions_are_deleted(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let session =
        |id: &str, expires_at_ms: i64, revoked_at_ms: Option<i64>| DashboardSessionRecord {
            id: id.into(),
            user_id: "usr_1".into(),
            token_hash: "00".repeat(32),
            security_stamp: "stamp".into(),
            created_at_ms: 0,
            last_activity_ms: 0,
            expires_at_ms,
            revoked_at_ms,
            revoked_reason: revoked_at_ms.map(|_| "logout".into()),
            ip_address: "203.0.113.1".into(),
            user_agent: None,
            ip_country: None,
            ip_city: None,
            binding_violation_at_ms: None,
            binding_violation_ip: None,
        };
    for s in [
        session("ses_expired", 1_000, None),
        session("ses_revoked", 10_000_000, Some(2_000)),
        session("ses_active", 10_000_000, None),
    ] {
        storage
            .dashboard()
            .insert_dashboard_session(
                &s,
                &LoginSuccess {
                    cleared_keys: &[],
                    refunded: &[],
                },
                &[],
            )
            .await
            .unwrap();
    }
    let deleted = storage
        .identity()
        .delete_expired_identity_rows(5_000_000)
        .await
        .unwrap();
    assert_eq!(deleted, 2, "the expired and the revoked session");
    assert!(
        storage
            .dashboard()
            .dashboard_session("ses_expired")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        storage
            .dashboard()
            .dashboard_session("ses_revoked")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        storage
            .dashboard()
            .dashboard_session("ses_active")
            .await
            .unwrap()
            .is_some()
    );
}

async fn migrations_are_idempotent(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    assert!(storage.pending_migrations().await.unwrap().is_empty());
    storage.migrate().await.unwrap();
    storage.ping().await.unwrap();
}

async fn concurrent_logins_are_group_committed_and_each_gets_its_own_answer(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let now = 1_000_000;
    let address = |i: usize| WalletAddress::parse(&format!("0x{i:040x}")).unwrap();
    // 30 wallets with a fresh challenge each, 5 with an expired one; each fresh challenge is
    // presented twice at once.
    let mut challenges = Vec::new();
    for i in 0..35 {
        let created = if i < 30 { now } else { now - 700_000 };
        let challenge = ChallengeRecord {
            id: format!("c{i}"),
            address: Some(address(i)),
            ..challenge("x", created)
        };
        challenges.push(challenge);
    }
    let inserts = challenges
        .iter()
        .map(|c| storage.identity().insert_challenge(c));
    for result in futures::future::join_all(inserts).await {
        result.unwrap();
    }
    let mut writes = Vec::new();
    for i in 0..35 {
        for copy in 0..2 {
            let mut write = login_write(&format!("c{i}"), &format!("s{i}-{copy}"), now);
            write.session.address = address(i);
            write.create_user = Some(UserRecord::new(address(i), now));
            writes.push(write);
        }
    }
    let logins = writes.iter().map(|w| storage.identity().login(w, now));
    let outcomes = futures::future::join_all(logins).await;
    for i in 0..35 {
        let pair = [&outcomes[2 * i], &outcomes[2 * i + 1]];
        let winners: Vec<_> = pair
            .iter()
            .filter_map(|o| match o.as_ref().unwrap() {
                LoginOutcome::LoggedIn(user) => Some(user.clone()),
                LoginOutcome::ChallengeUnavailable => None,
            })
            .collect();
        if i < 30 {
            assert_eq!(
                winners.len(),
                1,
                "wallet {i}: exactly one of the two logins wins"
            );
            assert_eq!(winners[0].as_ref().unwrap().address, address(i));
            assert!(
                storage
                    .identity()
                    .find_user(&address(i))
                    .await
                    .unwrap()
                    .is_some()
            );
        } else {
            assert!(
                winners.is_empty(),
                "wallet {i}: an expired challenge never logs in"
            );
            assert!(
                storage
                    .identity()
                    .find_user(&address(i))
                    .await
                    .unwrap()
                    .is_none()
            );
        }
    }
    let sessions = (0..35).flat_map(|i| [format!("s{i}-0"), format!("s{i}-1")]);
    let mut opened = 0;
    for id in sessions {
        opened += usize::from(
            storage
                .identity()
                .find_session(&id)
                .await
                .unwrap()
                .is_some(),
        );
    }
    assert_eq!(
        opened, 30,
        "one session per winning login, none for the losers"
    );
}

/// Two processes (two pools) starting at once on an empty database each generate a key; both
/// must sign with the same one, the JWT key and the checkpoint key alike. The second candidate
/// is older, so "the oldest key" read after both inserted would differ from what the first
/// process kept.
async fn processes_starting_at_once_agree_on_one_signing_key(backend: Backend) {
    let Some((first, db)) = storage(backend).await else {
        return;
    };
    let second = Storage::connect(&db.settings()).await.unwrap();
    let key = |kid: &str, at: i64| StoredJwtKey {
        kid: kid.into(),
        private_key_pkcs8_b64: format!("key-{kid}"),
        created_at_ms: at,
    };
    let (a, b) = (key("kid-b", 2_000), key("kid-a", 1_000));
    let (one, two) = tokio::join!(
        first.signing_keys().first_jwt_key(&a),
        second.signing_keys().first_jwt_key(&b)
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(one.kid, two.kid);
    assert_eq!(
        first
            .signing_keys()
            .load_jwt_key()
            .await
            .unwrap()
            .unwrap()
            .kid,
        one.kid
    );

    let (one, two) = tokio::join!(
        first
            .checkpoints()
            .first_checkpoint_key("v+b", "PRIVATE+KEY+b", 2_000),
        second
            .checkpoints()
            .first_checkpoint_key("v+a", "PRIVATE+KEY+a", 1_000)
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(one, two);
    assert_eq!(
        first
            .checkpoints()
            .load_checkpoint_key()
            .await
            .unwrap()
            .unwrap(),
        one
    );
    second.close().await.unwrap();
}
