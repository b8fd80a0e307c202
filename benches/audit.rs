//! Audit log figures: appends per second on SQLite and PostgreSQL (one writer, eight concurrent
//! writers, one transaction per append as the broker does, each extending the Merkle tree), and
//! over a million entries on each store: `audit verify` (the chain), building the tree over an
//! existing log (the upgrade), one checkpoint, `audit verify --checkpoint` (every leaf
//! recomputed, root and consistency proof), and an inclusion proof's size and offline check.
//!
//! Run: `cargo bench --bench audit` (needs PostgreSQL on 127.0.0.1:5432 like the tests; set
//! `BENCH_POSTGRES_URL` to point elsewhere, `BENCH_VERIFY_ENTRIES` to change the million on
//! SQLite, `BENCH_PG_VERIFY_ENTRIES` on PostgreSQL, 0 to skip).
//! It prints figures; it asserts nothing about speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use jit_broker::audit::checkpoint;
use jit_broker::audit::export::{self, ExportFormat};
use jit_broker::audit::{self, canonical, entry_hash, NewEntry, GENESIS_HASH};
use jit_broker::audit::{merkle, proof};
use jit_broker::clock::Clock;
use jit_broker::store::Store;
use jit_broker::Config;
use sqlx::Connection;

const SINGLE: usize = 2_000;
const WRITERS: usize = 8;
const PER_WRITER: usize = 500;

fn details(i: usize) -> serde_json::Value {
    serde_json::json!({"grant": format!("g-{i}"), "resource": "prod-db-admin", "duration_s": 3600, "reason": "incident INC-1234"})
}

async fn store_for(url: &str) -> Store {
    let mut cfg = Config::load_with_env(None, Vec::new()).unwrap().database;
    cfg.url = url.to_string();
    cfg.max_connections = 16;
    let s = Store::connect(&cfg).await.unwrap();
    s.migrate().await.unwrap();
    s
}

/// `tree`: false detaches the Merkle tree first (`tree_size` that can never equal the head's
/// seq), so appends take the chain-only path the broker had before the tree: the "before"
/// figure, measured by the same binary in the same run.
async fn appends(label: &str, url: &str, tree: bool) {
    let store = store_for(url).await;
    if !tree {
        sqlx::query("UPDATE audit_head SET tree_size = -1 WHERE id = 1")
            .execute(store.pool())
            .await
            .unwrap();
    }
    let clock = Clock::system();
    let t = Instant::now();
    for i in 0..SINGLE {
        audit::append_now(
            &store,
            &clock,
            NewEntry::new("bench", "grant.activated", format!("grant:{i}"), details(i)),
        )
        .await
        .unwrap();
    }
    let single = SINGLE as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut hs = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        hs.push(tokio::spawn(async move {
            let clock = Clock::system();
            for i in 0..PER_WRITER {
                audit::append_now(
                    &store,
                    &clock,
                    NewEntry::new(
                        format!("bench-{w}"),
                        "grant.activated",
                        format!("grant:{w}-{i}"),
                        details(i),
                    ),
                )
                .await
                .unwrap();
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    let concurrent = (WRITERS * PER_WRITER) as f64 / t.elapsed().as_secs_f64();
    let report = audit::verify(&store).await.unwrap();
    assert!(report.ok(), "{report:?}");
    println!("{label:<16} appends/s: 1 writer {single:>8.0}   {WRITERS} writers {concurrent:>8.0}   (chain of {} verified)", report.entries);
    store.close().await;
}

/// Writes a valid chain of `n` entries fast: hashes computed here, rows inserted in large
/// transactions with a reused prepared statement.
async fn bulk_chain(store: &Store, n: usize) {
    let mut prev = GENESIS_HASH.to_string();
    let start_ms = 1_780_000_000_000_i64;
    let batch = 50_000;
    let mut seq = 0_i64;
    while (seq as usize) < n {
        let mut tx = store.begin().await.unwrap();
        for _ in 0..batch.min(n - seq as usize) {
            seq += 1;
            let at = start_ms + seq;
            let d = details(seq as usize).to_string();
            let subject = format!("grant:{seq}");
            let hash = entry_hash(
                &prev,
                &canonical(seq, at, "bench", "grant.activated", &subject, &d),
            );
            sqlx::query("INSERT INTO audit_log (seq, at_ms, actor, action, subject, details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(seq)
                .bind(at)
                .bind("bench")
                .bind("grant.activated")
                .bind(&subject)
                .bind(&d)
                .bind(&prev)
                .bind(&hash)
                .execute(tx.conn())
                .await
                .unwrap();
            prev = hash;
        }
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(&prev)
            .execute(tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

async fn verify_million(dir: &std::path::Path) {
    let n: usize = std::env::var("BENCH_VERIFY_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // `BENCH_KEEP_DIR` keeps the database afterwards, e.g. to measure `audit export`'s memory.
    let dir = std::env::var("BENCH_KEEP_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.to_path_buf());
    let _ = std::fs::remove_file(dir.join("verify.db"));
    let url = format!("sqlite://{}", dir.join("verify.db").display());
    let store = store_for(&url).await;
    let t = Instant::now();
    bulk_chain(&store, n).await;
    let fill = t.elapsed();
    let t = Instant::now();
    let report = audit::verify(&store).await.unwrap();
    let took = t.elapsed();
    assert!(report.ok() && report.entries == n as u64, "{report:?}");
    let t = Instant::now();
    let exported = export::export(&store, None, None, ExportFormat::Jsonl, std::io::sink())
        .await
        .unwrap();
    let export_took = t.elapsed();
    assert_eq!(exported, n as u64);
    println!(
        "export     {n} entries as JSON Lines: {:.2} s ({:.0} entries/s)",
        export_took.as_secs_f64(),
        n as f64 / export_took.as_secs_f64()
    );
    println!(
        "verify     {n} entries on SQLite: {:.2} s ({:.0} entries/s); bulk fill took {:.1} s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        fill.as_secs_f64()
    );
    tree_figures("SQLite", &store, n).await;
    let size = std::fs::metadata(dir.join("verify.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "SQLite     file with chain and tree: {} MB",
        size / 1_000_000
    );
    store.close().await;
}

/// The Merkle tree over a bulk-filled chain of `n` entries: building it, a checkpoint, a full
/// check against it, a proof.
async fn tree_figures(label: &str, store: &Store, n: usize) {
    let t = Instant::now();
    let added = merkle::catch_up(store).await.unwrap();
    assert_eq!(added, n as u64);
    println!(
        "{label:<10} tree built over {n} existing entries (the upgrade): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let (skey, vkey) = checkpoint::generate_key("bench").unwrap();
    let signer = checkpoint::Signer::parse(&skey).unwrap();
    let clock = Clock::system();
    let t = Instant::now();
    let c = checkpoint::prepare(store, &clock, "bench/audit", Some(&signer))
        .await
        .unwrap()
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    checkpoint::store_in(&mut tx, &c).await.unwrap();
    tx.commit().await.unwrap();
    println!(
        "{label:<10} checkpoint at {n} entries (read head, root, sign, store): {:.2} ms; note {} bytes",
        t.elapsed().as_secs_f64() * 1000.0,
        c.note.len()
    );
    let keys = vec![vkey];
    let cp = checkpoint::verify(&c.note, &keys, Some("bench/audit"), false).unwrap();
    let t = Instant::now();
    let check = proof::check_log(store, &cp, &keys).await.unwrap();
    let took = t.elapsed();
    assert!(check.ok(), "{check:?}");
    println!(
        "{label:<10} audit verify --checkpoint over {n} entries: {:.2} s ({:.0} entries/s)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    let seq = (n / 2) as i64 + 1;
    let t = Instant::now();
    let p = proof::prove(store, seq, &c.note, n as u64).await.unwrap();
    let prove_took = t.elapsed();
    let json = serde_json::to_vec(&p).unwrap();
    const ROUNDS: u32 = 200;
    let t = Instant::now();
    for _ in 0..ROUNDS {
        let parsed: proof::InclusionProof = serde_json::from_slice(&json).unwrap();
        proof::verify_offline(&parsed, &keys, false).unwrap();
    }
    let per = t.elapsed() / ROUNDS;
    println!(
        "{label:<10} inclusion proof of entry {seq} of {n}: {} hashes, {} bytes JSON; built in {:.2} ms; verify-proof (parse, signature, path) {:.0} us",
        p.audit_path.len(),
        json.len(),
        prove_took.as_secs_f64() * 1000.0,
        per.as_secs_f64() * 1e6
    );
}

async fn verify_postgres(url: &str) {
    let n: usize = std::env::var("BENCH_PG_VERIFY_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if n == 0 {
        return;
    }
    let store = store_for(url).await;
    let t = Instant::now();
    bulk_chain(&store, n).await;
    let fill = t.elapsed();
    let t = Instant::now();
    let report = audit::verify(&store).await.unwrap();
    let took = t.elapsed();
    assert!(report.ok() && report.entries == n as u64, "{report:?}");
    println!(
        "verify     {n} entries on PostgreSQL: {:.2} s ({:.0} entries/s); bulk fill took {:.1} s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        fill.as_secs_f64()
    );
    tree_figures("PostgreSQL", &store, n).await;
    store.close().await;
}

async fn postgres_db() -> Option<(String, String)> {
    let admin = std::env::var("BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn =
        tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&admin))
            .await
            .ok()?
            .ok()?;
    let name = format!("jit_bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .ok()?;
    let mut url = url::Url::parse(&admin).ok()?;
    url.set_path(&name);
    Some((url.to_string(), name))
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported, so ignore arguments.
    let dir = tempfile::tempdir().unwrap();
    for (tree, name) in [(false, "no-tree"), (true, "tree")] {
        appends(
            &format!("SQLite {name}"),
            &format!(
                "sqlite://{}",
                dir.path().join(format!("appends-{name}.db")).display()
            ),
            tree,
        )
        .await;
        match postgres_db().await {
            Some((url, _)) => appends(&format!("PG {name}"), &url, tree).await,
            None => println!("PostgreSQL not reachable: skipped"),
        }
    }
    verify_million(dir.path()).await;
    match postgres_db().await {
        Some((url, _)) => verify_postgres(&url).await,
        None => println!("PostgreSQL not reachable: skipped"),
    }
}
