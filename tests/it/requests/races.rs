//! Concurrent deciders: two approvers clicking at once on a one-approval request, N approvals
//! arriving together for N required, and double clicks, on many requests at once. Each request
//! must end with exactly one grant and one decision per person.

use reqwest::StatusCode;
use serde_json::json;

use super::*;

both_backends!(concurrent_approvals_make_exactly_one_grant);

const APPROVERS: [&str; 3] = ["bob@example.com", "carol@example.com", "dave@example.com"];

async fn concurrent_approvals_make_exactly_one_grant(db: Db) {
    let e = std::sync::Arc::new(env(db).await);
    // Every engineer asks for both resources: one needs any one approver, one needs all three.
    let mut ids = Vec::new();
    for i in 1..=ENGINEERS {
        let who = format!("eng{i}@example.com");
        for res in ["any-one", "all-three"] {
            let id = e.pending(&who, json!({"resource": res})).await;
            ids.push((res, id));
        }
    }
    // Each approver clicks each request three times, all at once.
    let mut tasks = tokio::task::JoinSet::new();
    for (res, id) in &ids {
        for a in APPROVERS {
            for _ in 0..3 {
                let (e, id, res) = (e.clone(), id.clone(), *res);
                tasks.spawn(async move {
                    let (s, b) = e.decide(a, &id, "approve", "").await;
                    (res, s, code(&b).to_string())
                });
            }
        }
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        let (_res, s, c) = r.unwrap();
        match s {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => assert!(
                ["already_decided", "request_not_pending"].contains(&c.as_str()),
                "unexpected refusal {c}"
            ),
            other => panic!("unexpected answer {other} {c}"),
        }
    }
    assert!(
        ok >= ids.len(),
        "every request got at least one accepted decision"
    );
    for (res, id) in &ids {
        let v = e.show(id).await;
        assert_eq!(v["state"], "approved", "{res}: {v}");
        assert_eq!(v["grant"]["state"], "active", "{res}: {v}");
        let decisions = v["decisions"].as_array().unwrap();
        let mut people: Vec<&str> = decisions
            .iter()
            .map(|d| d["approver"].as_str().unwrap())
            .collect();
        let n = people.len();
        people.dedup();
        assert_eq!(people.len(), n, "one person counted twice: {v}");
        match *res {
            "all-three" => assert_eq!(n, 3, "{v}"),
            _ => assert_eq!(n, 1, "a one-approval request took {n} decisions: {v}"),
        }
    }
    // Exactly one grant per request.
    use sqlx::Row;
    let store = e.app.store().await;
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM grants WHERE request_id IS NOT NULL")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(n as usize, ids.len());
    store.close().await;
    e.audit_ok().await;
}
