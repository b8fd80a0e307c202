//! `jit-broker reviews …`: the same service as the API from the command line, with clear
//! refusals and exit codes for bad input.

use serde_json::Value;

use super::*;

fn cli(e: &Env, args: &[&str]) -> (i32, String, String) {
    let c = &e.app.config;
    let out = broker_cmd()
        .args(["reviews"])
        .args(args)
        .env("JIT_DATABASE__URL", &c.database.url)
        .env("JIT_REDIS__URL", &c.redis.url)
        .env("JIT_REDIS__KEY_PREFIX", &c.redis.key_prefix)
        .env("JIT_OKTA__BASE_URL", &c.okta.base_url)
        .env("JIT_OKTA__API_TOKEN", "sim-super-admin-token")
        .env(
            "JIT_POLICY__FILE",
            c.policy.file.as_ref().unwrap().to_str().unwrap(),
        )
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn reviews_cli_creates_lists_reports_and_refuses(db: Db) {
    let e = env(db).await;
    let due = due_in(Duration::from_secs(3600));
    let (code, out, err) = cli(
        &e,
        &[
            "create",
            "--name",
            "cli review",
            "--resources",
            "db-owners,payroll",
            "--fallback",
            "dave@example.com",
            "--due",
            &due,
            "--default",
            "keep",
            "--as",
            "it-owner",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let c: Value = serde_json::from_str(&out).unwrap();
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["owner"], "it-owner");
    let (code, out, _) = cli(&e, &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id) && out.contains("cli review"), "{out}");
    let (code, out, _) = cli(&e, &["show", &id]);
    assert_eq!(code, 0);
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["counts"]["items"], 3);
    // The CSV and JSON reports agree with the API's.
    let (_, api) = e.get(&format!("/v1/reviews/{id}/report")).await;
    let (code, out, _) = cli(&e, &["report", &id, "--format", "json"]);
    assert_eq!(code, 0);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["items"], api["items"]);
    assert_eq!(j["audit"]["seq_start"], api["audit"]["seq_start"]);
    let (code, out, _) = cli(&e, &["report", &id, "--format", "csv"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.starts_with("item,user_login,"), "{out}");
    // The PDF to a file: a document with the campaign's name and every holder's login.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("evidence.pdf");
    let (code, out, err) = cli(
        &e,
        &[
            "report",
            &id,
            "--format",
            "pdf",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let pdf = std::fs::read(&file).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let text = String::from_utf8_lossy(&pdf);
    assert!(text.contains("(cli review)"), "the title");
    for login in j["items"].as_array().unwrap() {
        let login = login["user_login"].as_str().unwrap();
        assert!(text.contains(&format!("({login})")), "{login}");
    }

    // Delegation: an operator hands alice's db-owners item to dave; to its holder is refused.
    let (_, items) = e.get(&format!("/v1/reviews/{id}/items")).await;
    let n = item_no(&items, ALICE, "db-owners").to_string();
    let (code, _, err) = cli(
        &e,
        &["delegate", &id, "--item", &n, "--to", "alice@example.com"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("self_review"), "{err}");
    let (code, _, err) = cli(
        &e,
        &[
            "delegate",
            &id,
            "--item",
            &n,
            "--to",
            "dave@example.com",
            "--as",
            "it-ops",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (_, items) = e.get(&format!("/v1/reviews/{id}/items")).await;
    assert_eq!(
        item(&items, ALICE, "db-owners")["reviewer"],
        "dave@example.com"
    );
    let (code, _, err) = cli(
        &e,
        &["delegate", &id, "--item", "x", "--to", "dave@example.com"],
    );
    assert_eq!(code, 2, "{err}");

    // Bad input: a clear message, exit 2 (usage) or 1 (refused), nothing created.
    let (_, before) = e.get("/v1/reviews").await;
    let (c1, _, err) = cli(&e, &["report", &id, "--format", "xls"]);
    assert_eq!(c1, 2, "{err}");
    let (c2, _, err) = cli(&e, &["show", &uuid::Uuid::now_v7().to_string()]);
    assert_eq!(c2, 1, "{err}");
    assert!(err.contains("unknown_campaign"), "{err}");
    let (c3, _, err) = cli(
        &e,
        &[
            "create",
            "--name",
            "x",
            "--resources",
            "nope",
            "--fallback",
            "dave@example.com",
            "--due",
            &due,
            "--default",
            "keep",
        ],
    );
    assert_eq!(c3, 1, "{err}");
    assert!(err.contains("unknown_resource"), "{err}");
    let (c4, _, err) = cli(
        &e,
        &[
            "create",
            "--name",
            "x",
            "--resources",
            "payroll",
            "--fallback",
            "dave@example.com",
            "--due",
            "soon",
            "--default",
            "keep",
        ],
    );
    assert_eq!(c4, 1, "{err}");
    assert!(err.contains("RFC 3339"), "{err}");
    let (c5, _, err) = cli(&e, &["create", "--name", "x"]);
    assert_eq!(c5, 2, "{err}");
    let (_, after) = e.get("/v1/reviews").await;
    assert_eq!(before, after);
}

async fn reviews_cli_scope_options_manager_rule_and_stop_recurring(db: Db) {
    let e = env(db).await;
    let due = due_in(Duration::from_secs(3 * 24 * 3600));
    let (code, out, err) = cli(
        &e,
        &[
            "create",
            "--name",
            "cli recurring",
            "--resources",
            "*",
            "--reviewer",
            "manager",
            "--include-unmanaged",
            "--standing-only",
            "--fallback",
            "dave@example.com",
            "--due",
            &due,
            "--default",
            "keep",
            "--recur",
            "0 0 9 * * Mon",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let c: Value = serde_json::from_str(&out).unwrap();
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["reviewer"], json!({"rule": "manager"}));
    assert_eq!(
        (
            c["include_unmanaged"].as_bool(),
            c["standing_only"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert!(c["next_run_at"].is_i64());
    for _ in 0..2 {
        let (code, out, err) = cli(&e, &["stop-recurring", &id, "--as", "it-owner"]);
        assert_eq!(code, 0, "{err}");
        let s: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(s["next_run_at"], Value::Null);
    }
    let (_, a) = e.get("/v1/audit?limit=1000").await;
    let stops: Vec<&Value> = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["action"] == "review.recur_stopped")
        .collect();
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0]["actor"], "it-owner");
    let (code, _, err) = cli(
        &e,
        &["stop-recurring", "01900000-0000-7000-8000-000000000000"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown_campaign"), "{err}");
}

both_backends!(
    reviews_cli_creates_lists_reports_and_refuses,
    reviews_cli_scope_options_manager_rule_and_stop_recurring
);
