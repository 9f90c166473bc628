//! The registry of trusted contracts and the gas counted against the per-chain budget, on
//! SQLite and PostgreSQL: entries are per chain and kind, added once, removed; the gas of the
//! last hour counts what was used, or the gas limit while in flight, and nothing unsent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ampflow_storage::testdb::{Backend, TestDatabase};
use ampflow_storage::*;
use ampflow_types::{ChainId, TokenAmount, TrustedKind, WalletAddress};

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
    the_registry_is_per_chain_and_kind,
    gas_of_the_last_hour_counts_what_was_sent,
);

const CHAIN: ChainId = ChainId::new(31337);
const OTHER_CHAIN: ChainId = ChainId::new(1);
const A: &str = "0x00000000000000000000000000000000000000a1";
const B: &str = "0x00000000000000000000000000000000000000b2";

fn addr(text: &str) -> WalletAddress {
    WalletAddress::parse(text).unwrap()
}

async fn storage(backend: Backend) -> Option<(Storage, TestDatabase)> {
    let db = TestDatabase::create(backend).await?;
    let storage = Storage::connect(&db.settings()).await.unwrap();
    storage.migrate().await.unwrap();
    Some((storage, db))
}

async fn the_registry_is_per_chain_and_kind(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    let campaign = TrustedKind::Campaign;
    assert_eq!(
        storage
            .trusted()
            .add_trusted_contracts(CHAIN, campaign, &[addr(A), addr(B)], 5)
            .await
            .unwrap(),
        2
    );
    // Adding again changes nothing, and keeps the first time.
    assert_eq!(
        storage
            .trusted()
            .add_trusted_contracts(CHAIN, campaign, &[addr(A)], 9)
            .await
            .unwrap(),
        0
    );
    let found = storage
        .trusted()
        .trusted_among(
            CHAIN,
            campaign,
            &[addr(A), addr("0x00000000000000000000000000000000000000ff")],
        )
        .await
        .unwrap();
    assert_eq!(found.into_iter().collect::<Vec<_>>(), vec![addr(A)]);
    // Another kind or another chain is another registry.
    assert!(
        storage
            .trusted()
            .trusted_among(CHAIN, TrustedKind::Issuer, &[addr(A)])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        storage
            .trusted()
            .trusted_among(OTHER_CHAIN, campaign, &[addr(A)])
            .await
            .unwrap()
            .is_empty()
    );
    let listed = storage
        .trusted()
        .trusted_contracts(CHAIN, campaign, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].address, A);
    assert_eq!(listed[0].added_at_ms, 5);
    assert_eq!(listed[0].kind, campaign);

    assert!(
        storage
            .trusted()
            .remove_trusted_contract(CHAIN, campaign, &addr(A))
            .await
            .unwrap()
    );
    assert!(
        !storage
            .trusted()
            .remove_trusted_contract(CHAIN, campaign, &addr(A))
            .await
            .unwrap()
    );
    assert!(
        storage
            .trusted()
            .trusted_among(CHAIN, campaign, &[addr(A)])
            .await
            .unwrap()
            .is_empty()
    );
    // Many at once.
    let many: Vec<WalletAddress> = (0..2_500u32)
        .map(|i| addr(&format!("0x{i:040x}")))
        .collect();
    assert_eq!(
        storage
            .trusted()
            .add_trusted_contracts(CHAIN, TrustedKind::Issuer, &many, 1)
            .await
            .unwrap(),
        2_500
    );
}

fn intent(key: &str, gas_limit: Option<u64>) -> NewTxIntent {
    NewTxIntent {
        idempotency_key: key.into(),
        purpose: "test".into(),
        chain_id: CHAIN,
        signer: addr("0x00000000000000000000000000000000000000ee"),
        to: addr("0x00000000000000000000000000000000000000ff"),
        calldata: "0x".into(),
        value_wei: TokenAmount::ZERO,
        gas_limit,
    }
}

fn signed(nonce: u64, gas_limit: u64) -> SignedTx {
    SignedTx {
        nonce,
        raw_tx: "0x00".into(),
        tx_hash: format!("0x{nonce:064x}"),
        gas_limit,
        max_fee_per_gas: 1,
        max_priority_fee_per_gas: 1,
    }
}

async fn gas_of_the_last_hour_counts_what_was_sent(backend: Backend) {
    let Some((storage, _db)) = storage(backend).await else {
        return;
    };
    assert_eq!(storage.trusted().gas_sent_since(CHAIN, 0).await.unwrap(), 0);
    // Sent at 1,000 and mined using 60,000 of its 100,000.
    let mined = storage
        .chain()
        .insert_tx_intent(intent("mined", None), 900)
        .await
        .unwrap();
    assert!(
        storage
            .chain()
            .record_signed_tx(&mined.id, &signed(0, 100_000), 1_000)
            .await
            .unwrap()
    );
    storage
        .chain()
        .finalize_tx_intent(
            &mined.id,
            &TxFinal::Confirmed {
                tx_hash: format!("0x{:064x}", 0),
                block_number: 1,
                gas_used: 60_000,
            },
            1_100,
        )
        .await
        .unwrap();
    // Sent at 2,000, no receipt yet: its whole limit counts.
    let flying = storage
        .chain()
        .insert_tx_intent(intent("flying", None), 1_900)
        .await
        .unwrap();
    storage
        .chain()
        .record_signed_tx(&flying.id, &signed(1, 250_000), 2_000)
        .await
        .unwrap();
    // Written down with a fixed limit but never signed (waiting, or refused by the estimate):
    // nothing.
    storage
        .chain()
        .insert_tx_intent(intent("unsent", Some(1_000_000)), 2_100)
        .await
        .unwrap();

    assert_eq!(
        storage.trusted().gas_sent_since(CHAIN, 0).await.unwrap(),
        310_000
    );
    assert_eq!(
        storage
            .trusted()
            .gas_sent_since(CHAIN, 1_500)
            .await
            .unwrap(),
        250_000
    );
    assert_eq!(
        storage
            .trusted()
            .gas_sent_since(CHAIN, 2_001)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        storage
            .trusted()
            .gas_sent_since(OTHER_CHAIN, 0)
            .await
            .unwrap(),
        0,
        "per chain"
    );
}
