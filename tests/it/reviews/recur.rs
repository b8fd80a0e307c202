//! Recurring campaigns: a bad `recur` is refused and stores nothing; when the template's time
//! comes the check creates exactly one run (even when two replicas check at once), with the
//! template's scope and rules, a fresh snapshot and the template's review window; checking again
//! at the same time makes nothing.

use serde_json::Value;

use super::*;

fn body(recur: &str) -> Value {
    json!({
        "name": "Quarterly payroll review",
        "resources": ["db-owners", "payroll"],
        "reviewer": { "rule": "approvers" },
        "fallback": "dave@example.com",
        "due_at": due_in(Duration::from_secs(3 * 24 * 3600)),
        "default": "keep",
        "recur": recur,
    })
}

async fn campaigns(e: &Env) -> Vec<Value> {
    let (s, l) = e.get("/v1/reviews").await;
    assert_eq!(s, StatusCode::OK);
    l["campaigns"].as_array().unwrap().clone()
}

async fn audit_actions(e: &Env, action: &str) -> Vec<Value> {
    let (_, a) = e.get("/v1/audit?limit=1000").await;
    a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["action"] == action)
        .cloned()
        .collect()
}

async fn bad_recur_is_refused_and_stores_nothing(db: Db) {
    let e = env(db).await;
    let before = campaigns(&e).await;
    for bad in [
        "every monday",
        "0 0 9 * *",
        "* * * * * *",
        "0 0 9 30 2 * 2020",
    ] {
        let (s, v) = e.post("/v1/reviews", body(bad)).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_input")),
            "{bad}: {v}"
        );
        assert!(v["message"].as_str().unwrap().contains("recur"), "{v}");
    }
    assert_eq!(campaigns(&e).await, before);
    assert!(audit_actions(&e, "review.created").await.is_empty());
}

async fn a_recurring_campaign_runs_once_per_time(db: Db) {
    let e = env(db).await;
    // Every Monday at 09:00 UTC.
    let (s, tpl) = e.post("/v1/reviews", body("0 0 9 * * Mon")).await;
    assert_eq!(s, StatusCode::CREATED, "{tpl}");
    let tid = tpl["id"].as_str().unwrap().to_string();
    let next = tpl["next_run_at"].as_i64().unwrap();
    assert_eq!(tpl["recur"], "0 0 9 * * Mon");
    let at = jit_broker::clock::ms_to_datetime(next);
    assert_eq!(at.format("%a %H:%M:%S").to_string(), "Mon 09:00:00");
    let now = chrono::Utc::now().timestamp_millis();
    assert!(next > now && next - now <= 7 * 24 * 3600 * 1000);

    // Before its time: nothing.
    let early = reviews_at(&e, Duration::ZERO).await;
    assert!(early.run_recurring().await.unwrap().is_empty());
    assert_eq!(campaigns(&e).await.len(), 1);

    // At its time, two replicas check at once: one run.
    let ahead = Duration::from_millis((next - now + 1_000) as u64);
    let (a, b) = (reviews_at(&e, ahead).await, reviews_at(&e, ahead).await);
    let (ra, rb) = tokio::join!(a.check_once(), b.check_once());
    ra.unwrap();
    rb.unwrap();
    let all = campaigns(&e).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    let run = all.iter().find(|c| c["id"] != tid.as_str()).unwrap();
    assert_eq!(run["parent_id"], tid.as_str());
    assert_eq!(run["run_at"], next);
    assert_eq!(run["recur"], Value::Null, "runs do not recur themselves");
    assert_eq!(run["resources"], tpl["resources"]);
    assert_eq!(run["reviewer"], tpl["reviewer"]);
    assert_eq!(run["fallback"], tpl["fallback"]);
    assert_eq!(run["default"], tpl["default"]);
    assert_eq!(run["state"], "open");
    assert!(run["name"]
        .as_str()
        .unwrap()
        .starts_with("Quarterly payroll review ("));
    let window = tpl["due_at"].as_i64().unwrap() - tpl["created_at"].as_i64().unwrap();
    assert_eq!(
        run["due_at"].as_i64().unwrap() - run["created_at"].as_i64().unwrap(),
        window
    );
    // A fresh snapshot: the same holders as the template's.
    let rid = run["id"].as_str().unwrap();
    let (_, ti) = e.get(&format!("/v1/reviews/{tid}/items")).await;
    let (_, ri) = e.get(&format!("/v1/reviews/{rid}/items")).await;
    let holders = |v: &Value| {
        let mut h: Vec<(String, String)> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["user_id"].as_str().unwrap().to_string(),
                    i["resource"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        h.sort();
        h
    };
    assert_eq!(holders(&ri), holders(&ti));
    assert!(!holders(&ri).is_empty());
    // The template's schedule moved on a week.
    let (_, t2) = e.get(&format!("/v1/reviews/{tid}")).await;
    assert_eq!(
        t2["campaign"]["next_run_at"].as_i64().unwrap(),
        next + 7 * 24 * 3600 * 1000
    );
    // Audited: the run (on the template) and the run's own creation.
    let recurred = audit_actions(&e, "review.recurred").await;
    assert_eq!(recurred.len(), 1, "{recurred:#?}");
    assert_eq!(recurred[0]["subject"], format!("review:{tid}"));
    assert_eq!(recurred[0]["details"]["run"], rid);
    assert_eq!(audit_actions(&e, "review.created").await.len(), 2);

    // A second check at the same time makes nothing.
    let again = reviews_at(&e, ahead).await;
    assert!(again.run_recurring().await.unwrap().is_empty());
    assert_eq!(campaigns(&e).await.len(), 2);
    assert_eq!(audit_actions(&e, "review.recurred").await.len(), 1);
    e.audit_ok().await;
}

async fn a_stopped_schedule_makes_no_more_runs(db: Db) {
    let e = env(db).await;
    let (s, tpl) = e.post("/v1/reviews", body("0 0 9 * * Mon")).await;
    assert_eq!(s, StatusCode::CREATED, "{tpl}");
    let tid = tpl["id"].as_str().unwrap().to_string();
    let next = tpl["next_run_at"].as_i64().unwrap();
    let path = format!("/v1/reviews/{tid}/stop-recurring");

    // Admins only; a reviewer's token changes nothing.
    let (s, _) = e.post_as("carol@example.com", &path, json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(audit_actions(&e, "review.recur_stopped").await.is_empty());

    let (s, stopped) = e.post(&path, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{stopped}");
    assert_eq!(stopped["next_run_at"], Value::Null);
    assert_eq!(stopped["recur"], "0 0 9 * * Mon", "kept for the record");
    // Idempotent: again is fine and writes no second entry.
    let (s, again) = e.post(&path, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["next_run_at"], Value::Null);
    let entries = audit_actions(&e, "review.recur_stopped").await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["actor"], "admin");
    assert_eq!(entries[0]["details"]["next_run_at"], next);

    // Past the time it would have run, and a week later: nothing is created.
    let now = chrono::Utc::now().timestamp_millis();
    for extra in [1_000, 7 * 24 * 3600 * 1000 + 1_000] {
        let ahead = Duration::from_millis((next - now + extra) as u64);
        let svc = reviews_at(&e, ahead).await;
        assert!(svc.run_recurring().await.unwrap().is_empty());
        svc.check_once().await.unwrap();
    }
    assert_eq!(campaigns(&e).await.len(), 1);
    assert!(audit_actions(&e, "review.recurred").await.is_empty());

    // Unknown campaign; a campaign that does not recur: refused, nothing written.
    let (s, v) = e
        .post(
            "/v1/reviews/01900000-0000-7000-8000-000000000000/stop-recurring",
            json!({}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_campaign"))
    );
    let once = campaign(&e, "keep").await;
    let (s, v) = e
        .post(
            &format!(
                "/v1/reviews/{}/stop-recurring",
                once["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_recurring"))
    );
    assert_eq!(audit_actions(&e, "review.recur_stopped").await.len(), 1);
    e.audit_ok().await;
}

both_backends!(
    bad_recur_is_refused_and_stores_nothing,
    a_recurring_campaign_runs_once_per_time,
    a_stopped_schedule_makes_no_more_runs
);
