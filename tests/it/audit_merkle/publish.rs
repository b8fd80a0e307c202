//! Checkpoints leave the building (outbox notification, witness, `GET /v1/audit/checkpoint`),
//! proofs for auditors (`GET /v1/audit/{seq}/proof`, `audit prove`, `audit verify-proof`
//! offline), keys (rotation, unconfigured keys, unsigned mode, `audit keygen`) and the
//! configuration's checks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jit_broker::audit::checkpoint::{self, StoredCheckpoint};
use jit_broker::audit::proof::{self, InclusionProof};
use jit_broker::error::ErrorBody;
use jit_broker::{Config, RunOptions};

use super::*;
use crate::helpers::*;

/// An HTTP endpoint that keeps every body POSTed to it (a witness).
async fn witness() -> (String, Arc<Mutex<Vec<String>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: String| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body);
                "stored"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/"), got)
}

async fn checkpoints_are_published_and_entries_proven(db: Db) {
    let (sk, vk, _) = key("jit-test");
    let (witness_url, witnessed) = witness().await;
    let test_db = TestDb::new(db).await;
    let mut config = base_config(&test_db);
    config.audit.signing_key = Some(sk);
    config.audit.checkpoint_interval = Duration::from_secs(1);
    config.audit.witness_urls = vec![witness_url];
    let app = spawn_app_with(test_db, config, RunOptions::default()).await;
    let store = app.store().await;
    append_n(&store, 0, 5).await;

    // The newest checkpoint, for auditors; it covers the 5 entries within a round or two.
    let get = |path: &str, token: Option<&str>| {
        let mut r = app.http.get(app.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    wait_until(Duration::from_secs(20), || async {
        let r = get("/v1/audit/checkpoint", Some(AUDITOR_TOKEN))
            .await
            .unwrap();
        r.status() == 200 && r.json::<StoredCheckpoint>().await.unwrap().tree_size >= 5
    })
    .await;
    let c: StoredCheckpoint = get("/v1/audit/checkpoint", Some(AUDITOR_TOKEN))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(c.signed);
    assert_eq!(c.key_name.as_deref(), Some("jit-test"));
    let v = checkpoint::verify(&c.note, std::slice::from_ref(&vk), Some(ORIGIN), false).unwrap();
    assert_eq!(v.size, c.tree_size);
    assert_eq!(
        get("/v1/audit/checkpoint", None).await.unwrap().status(),
        401
    );
    assert_eq!(
        get("/v1/audit/checkpoint", Some(REQUESTER_TOKEN))
            .await
            .unwrap()
            .status(),
        403
    );

    // Published: an `audit.checkpoint` notification in the outbox, and the note at the witness.
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE kind = 'audit.checkpoint'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(n >= 1);
    wait_until(Duration::from_secs(20), || async {
        witnessed.lock().unwrap().iter().any(|note| {
            checkpoint::verify(note, std::slice::from_ref(&vk), Some(ORIGIN), false).is_ok()
        })
    })
    .await;

    // An entry's proof over HTTP verifies offline, and through the command line.
    let r = get("/v1/audit/3/proof", Some(AUDITOR_TOKEN)).await.unwrap();
    assert_eq!(r.status(), 200);
    let p: InclusionProof = r.json().await.unwrap();
    assert_eq!((p.entry.seq, p.leaf_index), (3, 2));
    proof::verify_offline(&p, std::slice::from_ref(&vk), false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proof.json");
    std::fs::write(&file, serde_json::to_string(&p).unwrap()).unwrap();
    let out = broker_cmd()
        .args([
            "audit",
            "verify-proof",
            file.to_str().unwrap(),
            "--key",
            &vk,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("proof verified: entry 3"));
    // The same proof with the entry re-attributed is refused.
    let mut forged = p.clone();
    forged.entry.actor = "mallory".into();
    assert!(matches!(
        proof::verify_offline(&forged, std::slice::from_ref(&vk), false),
        Err(proof::ProofError::LeafMismatch)
    ));
    std::fs::write(&file, serde_json::to_string(&forged).unwrap()).unwrap();
    let out = broker_cmd()
        .args([
            "audit",
            "verify-proof",
            file.to_str().unwrap(),
            "--key",
            &vk,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // A forged path is refused too.
    let mut forged = p.clone();
    forged.audit_path.reverse();
    if forged.audit_path != p.audit_path {
        assert!(proof::verify_offline(&forged, std::slice::from_ref(&vk), false).is_err());
    }

    // Bad input: a clear 4xx, never a 500.
    for (path, status, code) in [
        ("/v1/audit/abc/proof", 400, "invalid_seq"),
        ("/v1/audit/0/proof", 400, "invalid_seq"),
        ("/v1/audit/-3/proof", 400, "invalid_seq"),
        ("/v1/audit/99999/proof", 409, "not_checkpointed"),
        ("/v1/audit/1/proof?tree_size=77777", 404, "not_found"),
        ("/v1/audit/1/proof?tree_size=x", 400, "invalid_query"),
        ("/v1/audit/1/proof?bogus=1", 400, "invalid_query"),
    ] {
        let r = get(path, Some(AUDITOR_TOKEN)).await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(r.json::<ErrorBody>().await.unwrap().code, code, "{path}");
    }
    assert_eq!(get("/v1/audit/1/proof", None).await.unwrap().status(), 401);

    // A clean shutdown checkpoints what the log gained since the last round.
    append_n(&store, 5, 2).await;
    // `stop_keep`: the database outlives the app (a SQLite file would go with it).
    let (_db, _) = app.stop_keep().await;
    let last = checkpoint::latest(&store).await.unwrap().unwrap();
    assert_eq!(last.tree_size, 7);
}

/// No key: the broker starts, checkpoints are unsigned and marked, and refused by `audit
/// verify` unless explicitly allowed.
async fn without_a_key_checkpoints_are_unsigned_and_marked(db: Db) {
    let test_db = TestDb::new(db).await;
    let mut config = base_config(&test_db);
    config.audit.checkpoint_interval = Duration::from_secs(1);
    let app = spawn_app_with(test_db, config, RunOptions::default()).await;
    let store = app.store().await;
    append_n(&store, 0, 3).await;
    wait_until(Duration::from_secs(20), || async {
        matches!(checkpoint::latest(&store).await.unwrap(), Some(c) if c.tree_size >= 3)
    })
    .await;
    let c = checkpoint::latest(&store).await.unwrap().unwrap();
    assert!(!c.signed && c.key_name.is_none());
    assert!(matches!(
        checkpoint::verify(&c.note, &[], None, false),
        Err(checkpoint::CheckpointError::Unsigned)
    ));
    let v = checkpoint::verify(&c.note, &[], None, true).unwrap();
    assert!(v.signed_by.is_empty());
    assert!(proof::check_log(&store, &v, &[]).await.unwrap().ok());
    app.stop().await.unwrap();
}

/// Rotation: checkpoints signed by the retired key still verify when its public key stays in
/// `audit.verification_keys`; a key never configured is refused.
async fn rotation_keeps_old_checkpoints_verifiable(db: Db) {
    let (_db, store) = fresh_store(db).await;
    let (_, old_vk, old) = key("jit-2025");
    let (new_sk, _, new) = key("jit-2026");
    let (_, _, stranger) = key("jit-2026");
    append_n(&store, 0, 3).await;
    let before = take_checkpoint(&store, Some(&old)).await;
    append_n(&store, 3, 3).await;
    let after = take_checkpoint(&store, Some(&new)).await;
    append_n(&store, 6, 1).await;
    let forged = checkpoint::sign(
        &checkpoint::body(
            ORIGIN,
            7,
            audit::merkle::stored_root(&store, 7).await.unwrap(),
        )
        .unwrap(),
        Some(&stranger),
    )
    .unwrap();

    let env = vec![
        (
            "JIT_AUDIT__SIGNING_KEY".to_string(),
            secrecy::ExposeSecret::expose_secret(&new_sk).to_string(),
        ),
        (
            "JIT_AUDIT__VERIFICATION_KEYS".to_string(),
            format!("[\"{old_vk}\"]"),
        ),
    ];
    let config = Config::load_with_env(None, env).unwrap();
    let keys = config.audit.verifier_keys();
    assert_eq!(keys.len(), 2);
    for note in [&before, &after] {
        let v = checkpoint::verify(note, &keys, Some(ORIGIN), false).unwrap();
        assert!(proof::check_log(&store, &v, &keys).await.unwrap().ok());
    }
    assert!(matches!(
        checkpoint::verify(&forged, &keys, Some(ORIGIN), false),
        Err(checkpoint::CheckpointError::NotVerified(_))
    ));
}

/// `audit keygen` writes a private key file readable by its owner only and prints the public
/// key; bad input to the new verbs and config keys is refused with a clear message.
async fn keygen_and_bad_input(db: Db) {
    let (test_db, store) = fresh_store(db).await;
    append_n(&store, 0, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signing-key");
    let out = broker_cmd()
        .args(["audit", "keygen", "jit.example.com-1", "--output"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let vk = stdout
        .lines()
        .find_map(|l| l.strip_prefix("verifier key (audit.verification_keys): "))
        .unwrap()
        .to_string();
    assert!(!stdout.contains("PRIVATE+KEY"), "the key went to the file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let skey = std::fs::read_to_string(&file).unwrap();
    let signer = checkpoint::Signer::parse(&secrecy::SecretString::from(skey)).unwrap();
    assert_eq!(signer.public, vk);
    // Never overwrites a key.
    let again = broker_cmd()
        .args(["audit", "keygen", "other", "--output"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    let bad = broker_cmd()
        .args(["audit", "keygen", "has space"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");

    // `audit prove` before any checkpoint, and of an entry that is not in it.
    let run = |args: &[&str]| {
        broker_cmd()
            .env("JIT_DATABASE__URL", &test_db.url)
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(run(&["audit", "prove", "1"]).status.code(), Some(2));
    take_checkpoint(&store, Some(&signer)).await;
    assert_eq!(run(&["audit", "prove", "0"]).status.code(), Some(2));
    assert_eq!(run(&["audit", "prove", "3"]).status.code(), Some(2));
    let out = run(&["audit", "prove", "2"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let p: InclusionProof = serde_json::from_slice(&out.stdout).unwrap();
    proof::verify_offline(&p, std::slice::from_ref(&vk), false).unwrap();
    // A proof file that is not one.
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{\"format\": 1}").unwrap();
    let out = run(&[
        "audit",
        "verify-proof",
        junk.to_str().unwrap(),
        "--key",
        &vk,
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // Configuration: every bad key named, no secret quoted.
    let secret = "PRIVATE+KEY+x+00000000+c2VjcmV0LWJ5dGVz";
    let env = vec![
        (
            "JIT_AUDIT__CHECKPOINT_INTERVAL".to_string(),
            "0s".to_string(),
        ),
        ("JIT_AUDIT__SIGNING_KEY".to_string(), secret.to_string()),
        (
            "JIT_AUDIT__VERIFICATION_KEYS".to_string(),
            "[\"not-a-key\"]".to_string(),
        ),
        (
            "JIT_AUDIT__WITNESS_URLS".to_string(),
            "[\"ftp://x\"]".to_string(),
        ),
        ("JIT_AUDIT__ORIGIN".to_string(), " ".to_string()),
    ];
    let errors = Config::load_with_env(None, env).unwrap_err();
    let text = errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    for k in [
        "audit.checkpoint_interval",
        "audit.signing_key",
        "audit.verification_keys[0]",
        "audit.witness_urls[0]",
        "audit.origin",
    ] {
        assert!(text.contains(k), "{k} in {text}");
    }
    assert!(!text.contains("c2VjcmV0"), "{text}");
}

both_backends!(
    checkpoints_are_published_and_entries_proven,
    without_a_key_checkpoints_are_unsigned_and_marked,
    rotation_keeps_old_checkpoints_verifiable,
    keygen_and_bad_input,
);
