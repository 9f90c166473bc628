//! Daily checkpoints over real HTTP, on SQLite and PostgreSQL: entries of two organisations
//! over two days (a manual clock moves past midnight and the grace period), the periodic job
//! builds one signed checkpoint per day, every entry's inclusion proof verifies against the
//! signed head (checked here independently of the server's code), a wrong leaf fails,
//! `ampflow ledger verify --checkpoint` accepts the export and catches a flipped byte, and
//! `ampflow ledger checkpoint --date` builds one at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use ampflow_storage::NewLedgerEntry;
use ampflow_storage::testdb::Backend;
use ampflow_types::Clock;
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{TestApp, assert_error, wait_until};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

on_both_databases!(
    daily_checkpoints_prove_every_entry_and_verify_offline,
    checkpoint_queries_are_checked,
    a_configured_key_signs_and_must_carry_the_origin,
);

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// 2025-01-15T00:00:00Z
const JAN_15: i64 = 1_736_899_200_000;
const JAN_16: i64 = JAN_15 + DAY_MS;
const JAN_17: i64 = JAN_16 + DAY_MS;

async fn start(backend: Backend) -> Option<TestApp> {
    TestApp::start_with(backend, |settings| {
        settings.checkpoints.interval_ms = 20;
        settings.checkpoints.grace_ms = 60_000;
        settings.checkpoints.origin = "test.example/ledger".into();
    })
    .await
}

async fn organisation(app: &TestApp, name: &str) -> String {
    common::verified_organisation(app, name, None).await
}

async fn append(app: &TestApp, org: &str, n: i64, amount: i64, at_ms: i64) -> String {
    let entry = NewLedgerEntry {
        amount,
        ..common::donation_entry(n, at_ms)
    };
    app.app()
        .actors()
        .ledger()
        .append(org, entry)
        .await
        .unwrap()
        .content
        .id
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    app.send(app.client.get(app.url(path))).await
}

fn set_clock(app: &TestApp, ms: i64) {
    app.clock.advance_ms(ms - app.clock.now_ms());
}

async fn wait_for_checkpoint(app: &TestApp, id: &str) -> Value {
    let path = format!("/public/checkpoints/{id}");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            get(app, &path).await.0 == 200
        })
        .await,
        "{id} was not built"
    );
    get(app, &path).await.1["data"].clone()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Checks a C2SP signed note against a vkey from scratch (no ampflow code) and answers the
/// checkpoint body's (origin, size, root).
fn check_note(note: &str, vkey: &str) -> (String, u64, [u8; 32]) {
    // The key's base64 may itself hold '+'.
    let parts: Vec<&str> = vkey.splitn(3, '+').collect();
    assert_eq!(parts.len(), 3, "{vkey}");
    let (name, id_hex, key_b64) = (parts[0], parts[1], parts[2]);
    let key = BASE64.decode(key_b64).unwrap();
    assert_eq!(key.len(), 33);
    assert_eq!(key[0], 0x01, "Ed25519");
    let mut id_input = name.as_bytes().to_vec();
    id_input.extend_from_slice(&[0x0a, 0x01]);
    id_input.extend_from_slice(&key[1..]);
    assert_eq!(hex::encode(&sha256(&id_input)[..4]), id_hex);

    let (body, signatures) = note.split_once("\n\n").unwrap();
    let body = format!("{body}\n");
    let line = signatures.strip_suffix('\n').unwrap();
    let blob = line
        .strip_prefix(&format!("\u{2014} {name} "))
        .map(|b| BASE64.decode(b).unwrap())
        .unwrap();
    assert_eq!(blob.len(), 68);
    assert_eq!(hex::encode(&blob[..4]), id_hex);
    UnparsedPublicKey::new(&ED25519, &key[1..])
        .verify(body.as_bytes(), &blob[4..])
        .expect("the note's signature verifies");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 3, "{body}");
    let root: [u8; 32] = BASE64.decode(lines[2]).unwrap().try_into().unwrap();
    (lines[0].to_string(), lines[1].parse().unwrap(), root)
}

/// RFC 9162 §2.1.3.2, written out again here.
fn proof_leads_to(
    leaf: [u8; 32],
    index: u64,
    size: u64,
    path: &[[u8; 32]],
    root: [u8; 32],
) -> bool {
    let node = |l: &[u8; 32], r: &[u8; 32]| {
        let mut input = vec![0x01];
        input.extend_from_slice(l);
        input.extend_from_slice(r);
        sha256(&input)
    };
    if index >= size {
        return false;
    }
    let (mut f, mut s, mut r) = (index, size - 1, leaf);
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == root
}

fn entry_leaf(entry_hash: &str) -> [u8; 32] {
    let mut input = vec![0x00];
    input.extend(hex::decode(entry_hash.strip_prefix("sha256:").unwrap()).unwrap());
    sha256(&input)
}

fn decode_path(proof: &Value) -> Vec<[u8; 32]> {
    proof["audit_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

async fn daily_checkpoints_prove_every_entry_and_verify_offline(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    let (org_a, org_b) = (organisation(&app, "A").await, organisation(&app, "B").await);
    set_clock(&app, JAN_15 + 60 * MINUTE_MS);
    let mut day_one = Vec::new();
    for n in 0..3 {
        day_one.push(append(&app, &org_a, n, 1_000, JAN_15 + (10 + n) * MINUTE_MS).await);
        if n < 2 {
            day_one.push(append(&app, &org_b, 10 + n, 500, JAN_15 + (20 + n) * MINUTE_MS).await);
        }
    }
    // Nothing is built before the day is over and the grace period has passed.
    set_clock(&app, JAN_16 + 30_000);
    let due = app.app().actors().checkpoints().build_due().await.unwrap();
    assert!(due.is_empty(), "{due:?}");
    let (status, page) = get(&app, "/public/checkpoints").await;
    assert_eq!(status, 200);
    assert_eq!(page["data"], json!([]), "{page}");
    set_clock(&app, JAN_16 + 2 * MINUTE_MS);
    let first = wait_for_checkpoint(&app, "chk_2025-01-15").await;
    assert_eq!(first["checkpoint_date"], "2025-01-15");
    assert_eq!(first["entry_count"], 5);
    assert_eq!(first["total_volume"], 4_000);

    // Day two, and a late entry still dated day one (it joins day two's checkpoint).
    let mut day_two = vec![
        append(&app, &org_a, 3, -250, JAN_16 + 5 * MINUTE_MS).await,
        append(&app, &org_b, 12, 700, JAN_16 + 6 * MINUTE_MS).await,
        append(&app, &org_b, 13, 300, JAN_16 - 1).await,
    ];
    let day_three = append(&app, &org_a, 4, 1, JAN_17 + MINUTE_MS).await;
    set_clock(&app, JAN_17 + 2 * MINUTE_MS);
    let second = wait_for_checkpoint(&app, "chk_2025-01-16").await;
    assert_eq!(second["entry_count"], 8);
    assert_eq!(second["total_volume"], 4_000 - 250 + 700 + 300);
    assert_eq!(second["volume_by_currency"]["EUR"], 4_750);

    // The list, newest first, in pages.
    let (_, page) = get(&app, "/public/checkpoints?limit=1").await;
    assert_eq!(page["data"][0]["id"], "chk_2025-01-16");
    assert_eq!(page["has_more"], true);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, page) = get(
        &app,
        &format!("/public/checkpoints?limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(page["data"][0]["id"], "chk_2025-01-15");
    assert_eq!(page["has_more"], false);

    // The key, and the notes checked from scratch.
    let (status, key) = get(&app, "/public/checkpoints/key").await;
    assert_eq!(status, 200, "{key}");
    let vkey = key["data"]["verifier_key"].as_str().unwrap().to_string();
    assert!(vkey.starts_with("test.example/ledger+"), "{vkey}");
    assert_eq!(second["verifier_key"], vkey.as_str());
    assert!(key["meta"]["request_id"].is_string());
    let (origin, size, root) = check_note(second["signed_note"].as_str().unwrap(), &vkey);
    assert_eq!((origin.as_str(), size), ("test.example/ledger", 8));
    assert_eq!(
        second["cumulative_hash"],
        format!("sha256:{}", hex::encode(root))
    );
    let (_, size_one, root_one) = check_note(first["signed_note"].as_str().unwrap(), &vkey);
    assert_eq!(size_one, 5);

    // Every entry proves against the newest head; a wrong leaf does not.
    day_two.extend(day_one.iter().cloned());
    let mut seen_indexes = Vec::new();
    for id in &day_two {
        let (status, body) = get(&app, &format!("/public/ledger/entries/{id}/proof")).await;
        assert_eq!(status, 200, "{body}");
        let proof = &body["data"];
        assert_eq!(proof["checkpoint_id"], "chk_2025-01-16");
        assert_eq!(proof["tree_size"], 8);
        let index = proof["leaf_index"].as_u64().unwrap();
        seen_indexes.push(index);
        let leaf = entry_leaf(proof["entry_hash"].as_str().unwrap());
        assert_eq!(proof["leaf_hash"], hex::encode(leaf));
        let path = decode_path(proof);
        assert!(proof_leads_to(leaf, index, 8, &path, root), "{id}: {proof}");
        let wrong = entry_leaf(&format!("sha256:{}", "00".repeat(32)));
        assert!(!proof_leads_to(wrong, index, 8, &path, root));
        // Day one's entries also prove against day one's head.
        if day_one.contains(id) {
            let (status, body) = get(
                &app,
                &format!("/public/ledger/entries/{id}/proof?checkpoint=chk_2025-01-15"),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let old = &body["data"];
            let old_index = old["leaf_index"].as_u64().unwrap();
            assert!(proof_leads_to(
                leaf,
                old_index,
                5,
                &decode_path(old),
                root_one
            ));
        }
    }
    seen_indexes.sort();
    assert_eq!(seen_indexes, (0..8).collect::<Vec<u64>>());
    // The late entry (dated day one, committed after its checkpoint) is not in day one's.
    let late = &day_two[2];
    let (status, body) = get(
        &app,
        &format!("/public/ledger/entries/{late}/proof?checkpoint=chk_2025-01-15"),
    )
    .await;
    assert_error(status, &body, 409, "not_checkpointed", None);
    let (status, body) = get(&app, &format!("/public/ledger/entries/{day_three}/proof")).await;
    assert_error(status, &body, 409, "not_checkpointed", None);

    verify_offline(&app, &org_a, &vkey).await;

    // The operator command builds day three now (its day is long over on the real clock).
    let built = Command::new(env!("CARGO_BIN_EXE_ampflow"))
        .args(["ledger", "checkpoint", "--date", "2025-01-17"])
        .env("DATABASE_URL", &app.db.url)
        .env("AMPFLOW_CHECKPOINTS__JOB_ENABLED", "false")
        .env("AMPFLOW_CHECKPOINTS__ORIGIN", "test.example/ledger")
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    assert!(
        String::from_utf8_lossy(&built.stdout).contains("built chk_2025-01-17: 9 entries"),
        "{built:?}"
    );
    let (status, third) = get(&app, "/public/checkpoints/chk_2025-01-17").await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(third["data"]["verifier_key"], vkey.as_str());
    check_note(third["data"]["signed_note"].as_str().unwrap(), &vkey);
    app.stop().await;
}

/// `ampflow ledger verify export.json --checkpoint file`: ok, then each kind of tampering.
async fn verify_offline(app: &TestApp, org: &str, vkey: &str) {
    let export = app
        .client
        .get(app.url(&format!("/public/organisations/{org}/ledger/export")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let parsed: Value = serde_json::from_slice(&export).unwrap();
    let (_, checkpoint) = get(app, "/public/checkpoints/chk_2025-01-16").await;
    let mut proofs = Vec::new();
    for entry in parsed["entries"].as_array().unwrap() {
        let id = entry["id"].as_str().unwrap();
        let (status, body) = get(
            app,
            &format!("/public/ledger/entries/{id}/proof?checkpoint=chk_2025-01-16"),
        )
        .await;
        if status == 200 {
            proofs.push(body["data"].clone());
        }
    }
    assert_eq!(proofs.len(), 4, "three on day one, one on day two");
    let file = json!({"checkpoint": checkpoint["data"], "proofs": proofs});

    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("export.json"), &export).unwrap();
    let verify = |name: &str, content: &Value, key: Option<&str>| {
        let path = folder.path().join(name);
        std::fs::write(&path, content.to_string()).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ampflow"));
        command
            .args(["ledger", "verify"])
            .arg(folder.path().join("export.json"))
            .arg("--checkpoint")
            .arg(&path);
        if let Some(key) = key {
            command.args(["--key", key]);
        }
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
        )
    };
    let (code, said) = verify("good.json", &file, Some(vkey));
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.starts_with("ok: 5 entries of") && said.contains("4 in checkpoint chk_2025-01-16"),
        "{said}"
    );
    assert!(said.contains("1 without a proof"), "{said}");
    let (code, said) = verify("own-key.json", &file, None);
    assert_eq!(code, Some(0), "{said}");

    // The organisation's proofs in one request are the same file, and its pages merge.
    let bundle_path =
        format!("/public/organisations/{org}/ledger/proofs?checkpoint=chk_2025-01-16");
    let (status, bundle) = get(app, &bundle_path).await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["checkpoint"], file["checkpoint"]);
    assert_eq!(bundle["proofs"], file["proofs"]);
    assert_eq!(bundle["has_more"], false);
    let (code, said) = verify("bundle.json", &bundle, Some(vkey));
    assert_eq!(code, Some(0), "{said}");
    let (_, first_page) = get(app, &format!("{bundle_path}&limit=2")).await;
    assert_eq!(first_page["has_more"], true);
    let cursor = first_page["next_cursor"].as_str().unwrap();
    let (_, second_page) = get(app, &format!("{bundle_path}&limit=2&cursor={cursor}")).await;
    let mut merged = first_page["proofs"].as_array().unwrap().clone();
    merged.extend(second_page["proofs"].as_array().unwrap().iter().cloned());
    assert_eq!(Value::Array(merged), file["proofs"]);

    // A flipped byte in the signed root.
    let mut bad = file.clone();
    let note = bad["checkpoint"]["signed_note"]
        .as_str()
        .unwrap()
        .to_string();
    let lines: Vec<&str> = note.split('\n').collect();
    let root_line = lines[2];
    let mut root = BASE64.decode(root_line).unwrap();
    root[0] ^= 1;
    bad["checkpoint"]["signed_note"] = note.replacen(root_line, &BASE64.encode(root), 1).into();
    let (code, said) = verify("note.json", &bad, Some(vkey));
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.starts_with("broken: checkpoint chk_2025-01-16"),
        "{said}"
    );
    // A flipped byte in an audit path.
    let mut bad = file.clone();
    let hash = bad["proofs"][1]["audit_path"][0]
        .as_str()
        .unwrap()
        .to_string();
    let flipped = format!(
        "{}{}",
        if hash.starts_with('0') { "1" } else { "0" },
        &hash[1..]
    );
    bad["proofs"][1]["audit_path"][0] = flipped.into();
    let (code, said) = verify("path.json", &bad, Some(vkey));
    assert_eq!(code, Some(1), "{said}");
    assert!(said.starts_with("broken: proof 1 "), "{said}");
    // A wrong leaf: proof 0's path claimed for another entry of the export.
    let mut bad = file.clone();
    bad["proofs"][0]["entry_id"] = file["proofs"][1]["entry_id"].clone();
    let (code, said) = verify("leaf.json", &bad, Some(vkey));
    assert_eq!(code, Some(1), "{said}");
    assert!(said.starts_with("broken: proof 0 "), "{said}");
    // A checkpoint that disagrees with its note, and a key that did not sign it.
    let mut bad = file.clone();
    bad["checkpoint"]["entry_count"] = 9.into();
    let (code, said) = verify("count.json", &bad, Some(vkey));
    assert_eq!(code, Some(1), "{said}");
    let other = ampflow_types::note::NoteSigner::generate("test.example/ledger").unwrap();
    let (code, said) = verify("other-key.json", &file, Some(&other.verifier().vkey()));
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("no signature by"), "{said}");
}

async fn checkpoint_queries_are_checked(backend: Backend) {
    let Some(app) = start(backend).await else {
        return;
    };
    for path in [
        "/public/checkpoints/chk_2025-01-15",
        "/public/checkpoints/2025-01-15",
        "/public/checkpoints/chk_2025-02-30",
        "/public/ledger/entries/led_0123456789abcdef0123456789abcdef/proof",
        "/public/ledger/entries/nope/proof",
    ] {
        let (status, body) = get(&app, path).await;
        assert_error(status, &body, 404, "not_found", None);
    }
    for (query, param) in [
        ("/public/checkpoints?limit=0", "limit"),
        ("/public/checkpoints?limit=101", "limit"),
        ("/public/checkpoints?cursor=cur_zzz", "cursor"),
        (
            "/public/ledger/entries/led_0123456789abcdef0123456789abcdef/proof?checkpoint=x",
            "checkpoint",
        ),
    ] {
        let (status, body) = get(&app, query).await;
        assert_error(status, &body, 400, "invalid_request", Some(param));
    }
    let (status, page) = get(&app, "/public/checkpoints").await;
    assert_eq!(status, 200);
    assert_eq!(
        page,
        json!({"data": [], "has_more": false, "next_cursor": null})
    );
    let (status, body) = get(&app, "/public/organisations/org_nope/ledger/proofs").await;
    assert_error(status, &body, 404, "not_found", None);
    let org = organisation(&app, "Early").await;
    let (status, body) = get(&app, &format!("/public/organisations/{org}/ledger/proofs")).await;
    assert_error(status, &body, 409, "not_checkpointed", None);
    for (query, param) in [
        ("limit=10001", "limit"),
        ("cursor=x", "cursor"),
        ("checkpoint=x", "checkpoint"),
    ] {
        let (status, body) = get(
            &app,
            &format!("/public/organisations/{org}/ledger/proofs?{query}"),
        )
        .await;
        assert_error(status, &body, 400, "invalid_request", Some(param));
    }
    app.stop().await;
}

async fn a_configured_key_signs_and_must_carry_the_origin(backend: Backend) {
    let signer = ampflow_types::note::NoteSigner::generate("configured.example/ledger").unwrap();
    let key = signer.private_key_text();
    let configured = key.clone();
    let Some(app) = TestApp::start_with(backend, move |settings| {
        settings.checkpoints.origin = "configured.example/ledger".into();
        settings.checkpoints.signing_key = Some(ampflow_http::config::Secret::new(configured));
    })
    .await
    else {
        return;
    };
    let (status, body) = get(&app, "/public/checkpoints/key").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["verifier_key"], signer.verifier().vkey());
    assert_eq!(body["data"]["origin"], "configured.example/ledger");
    // `PRIVATE+KEY+<name>+<hex id>+<base64>`: the base64 may itself hold a '+'.
    let secret = key.splitn(5, '+').nth(4).unwrap();
    assert!(secret.len() >= 40, "{secret}");
    assert!(!body.to_string().contains(secret));
    // The same key under another origin would rename the log: refused at start.
    let mut settings = app.settings.clone();
    settings.checkpoints.origin = "renamed.example/ledger".into();
    // Another process: another node.
    settings.node.id = Some("renamed-origin".into());
    let refused = ampflow_http::start(settings, ampflow_http::StartOptions::default()).await;
    let error = format!("{:#}", refused.err().expect("a renamed origin is refused"));
    assert!(error.contains("a log keeps its origin"), "{error}");
    app.stop().await;
}
