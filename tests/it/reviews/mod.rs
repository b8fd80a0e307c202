//! Access reviews end to end: the real application over HTTP, okta-sim over HTTP, real Redis and
//! both SQL backends. The inventory is filled by one real sync; tokens are named after Okta
//! logins (a reviewer's token decides as that person); the due date is reached by a service on
//! a clock ahead, calling `check_once` as the periodic task does.

mod cli;
mod console;
mod delegate;
mod input;
mod manager;
mod notify;
mod pdf;
mod recur;
mod scope;

use std::time::Duration;

use jit_broker::api::auth::Role;
use jit_broker::reviews::ReviewService;
use jit_broker::sync::{SyncOptions, Syncer};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// db-owners: jit_only reporting drift, so bob's seeded membership is `unexplained` and alice's
/// (allowed) is `standing`; aws-prod: dave holds it through the group aws-users (inherited);
/// payroll: alice gets a grant; user-admin: carol holds it standing, and is its approver.
pub const POLICY: &str = r#"
[[resource]]
name = "db-owners"
kind = "okta_group"
okta_id = "00g1dbowners00000002"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
jit_only = true
drift = "report"
allow_standing = ["alice@example.com"]
approvers = { users = ["bob@example.com", "carol@example.com"] }

[[resource]]
name = "aws-prod"
kind = "okta_app"
okta_id = "0oa1awsprod000000002"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
approvers = { users = ["carol@example.com"] }

[[resource]]
name = "payroll"
kind = "okta_app"
okta_id = "0oa1payroll000000001"
default_duration = "1h"
max_duration = "8h"
approvals_required = 0
approvers = { users = ["carol@example.com"] }

[[resource]]
name = "user-admin"
kind = "okta_role"
okta_id = "USER_ADMIN"
default_duration = "30m"
max_duration = "2h"
approvals_required = 0
allow_standing = ["carol@example.com"]
approvers = { users = ["carol@example.com"] }
"#;

/// The app with person tokens (every seeded person approves and requests), the Okta org set up,
/// one sync run, and a grant of payroll to alice (before the sync, so the inventory explains it
/// by the grant).
pub async fn env(db: Db) -> Env {
    env_tweaked(db, |_| {}).await
}

pub async fn env_tweaked(db: Db, tweak: impl FnOnce(&mut jit_broker::Config) + Send) -> Env {
    let e = EnvBuilder::new(db, POLICY)
        .tweak(tweak)
        .tweak(|c| {
            for login in [
                "alice@example.com",
                "bob@example.com",
                "carol@example.com",
                "dave@example.com",
            ] {
                c.auth
                    .tokens
                    .push(person(login, &[Role::Approver, Role::Requester]));
            }
        })
        .start()
        .await;
    let admin = e.sim.admin("it-admin@example.com");
    admin.add_member(DB_OWNERS, ALICE).unwrap();
    admin.assign_role(CAROL, "USER_ADMIN").unwrap();
    e.grant("alice@example.com", "payroll", "4h").await;
    let r = syncer(&e, Duration::ZERO)
        .await
        .run(SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.outcome, "succeeded", "{r:?}");
    e
}

/// A grants service on the app's database, Redis and Okta with a clock `ahead` of now.
pub async fn grants_at(e: &Env, ahead: Duration) -> jit_broker::grants::GrantService {
    grants_service(&e.app, clock_ahead(ahead), |_| {}).await
}

pub async fn syncer(e: &Env, ahead: Duration) -> Syncer {
    Syncer::new(grants_at(e, ahead).await, e.app.config.sync.clone())
}

/// The review service as the periodic task on a replica `ahead` of now would run it.
pub async fn reviews_at(e: &Env, ahead: Duration) -> ReviewService {
    ReviewService::new(grants_at(e, ahead).await)
}

pub fn due_in(d: Duration) -> String {
    (chrono::Utc::now() + chrono::Duration::from_std(d).unwrap()).to_rfc3339()
}

/// Creates a campaign over the four resources (approvers rule, fallback dave).
pub async fn campaign(e: &Env, default: &str) -> Value {
    let (s, c) = e
        .post(
            "/v1/reviews",
            json!({
                "name": "Q4 access review",
                "resources": ["db-owners", "aws-prod", "payroll", "user-admin"],
                "reviewer": { "rule": "approvers" },
                "fallback": "dave@example.com",
                "due_at": due_in(Duration::from_secs(3600)),
                "default": default,
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    c
}

/// The item of `user` on `resource` in an item list.
pub fn item<'a>(items: &'a Value, user: &str, resource: &str) -> &'a Value {
    items["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["user_id"] == user && i["resource"] == resource)
        .unwrap_or_else(|| panic!("no item for {user} on {resource} in {items:#}"))
}

pub fn item_no(items: &Value, user: &str, resource: &str) -> i64 {
    item(items, user, resource)["item_id"].as_i64().unwrap()
}

async fn campaign_snapshot_decide_remediate_report(db: Db) {
    let e = env(db).await;
    let c = campaign(&e, "revoke").await;
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["state"], "open");

    // The snapshot: who holds what, why, and who reviews it.
    let (s, all) = e.get(&format!("/v1/reviews/{id}/items")).await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(all["items"].as_array().unwrap().len(), 5, "{all:#}");
    let bob_db = item(&all, BOB, "db-owners");
    assert_eq!(bob_db["why"], "unexplained");
    // bob is db-owners' first approver, but never reviews his own access.
    assert_eq!(bob_db["reviewer"], "carol@example.com");
    let alice_db = item(&all, ALICE, "db-owners");
    assert_eq!(alice_db["why"], "standing");
    assert_eq!(alice_db["reviewer"], "bob@example.com");
    let dave_aws = item(&all, DAVE, "aws-prod");
    assert_eq!(
        (dave_aws["why"].as_str(), dave_aws["scope"].as_str()),
        (Some("standing"), Some("GROUP"))
    );
    let alice_pay = item(&all, ALICE, "payroll");
    assert_eq!(alice_pay["why"], "grant");
    assert!(alice_pay["grant_id"].is_string());
    assert_eq!(alice_pay["grants_90d"], 1);
    // carol approves user-admin and holds it: her item goes to the fallback.
    let carol_ua = item(&all, CAROL, "user-admin");
    assert_eq!(carol_ua["reviewer"], "dave@example.com");

    // A later change in Okta does not move the list under the reviewers.
    e.sim
        .admin("it-admin@example.com")
        .add_member(DB_OWNERS, DAVE)
        .unwrap();
    syncer(&e, Duration::ZERO)
        .await
        .run(SyncOptions::default())
        .await
        .unwrap();
    let (_, again) = e.get(&format!("/v1/reviews/{id}/items")).await;
    assert_eq!(again["items"], all["items"]);

    // carol's own items.
    let (s, mine) = e
        .get_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/items?reviewer=me"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{mine}");
    assert_eq!(mine["items"].as_array().unwrap().len(), 3);
    assert!(mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["reviewer"] == "carol@example.com"));

    // carol cannot decide her own access (its reviewer is dave), nor bob's item.
    let carol_item = item_no(&all, CAROL, "user-admin");
    let (s, err) = e
        .post_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/items/{carol_item}/decide"),
            json!({"decision": "keep", "comment": "mine"}),
        )
        .await;
    assert_eq!(
        (s, err["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("self_review"))
    );
    let alice_db_no = item_no(&all, ALICE, "db-owners");
    let (s, err) = e
        .post_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/items/{alice_db_no}/decide"),
            json!({"decision": "keep"}),
        )
        .await;
    assert_eq!(
        (s, err["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_your_item"))
    );

    // bob keeps alice's standing membership (a comment is optional for standing access).
    let (s, d) = e
        .post_as(
            "bob@example.com",
            &format!("/v1/reviews/{id}/items/{alice_db_no}/decide"),
            json!({"decision": "keep"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["decision"], "keep");

    // carol decides her three in bulk: first keeps bob's unexplained access, then changes her mind.
    let bob_no = item_no(&all, BOB, "db-owners");
    let dave_no = item_no(&all, DAVE, "aws-prod");
    let pay_no = item_no(&all, ALICE, "payroll");
    let (s, d) = e
        .post_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/decisions"),
            json!({"decisions": [
                {"item": bob_no, "decision": "keep", "comment": "on-call this quarter"},
                {"item": dave_no, "decision": "revoke"},
                {"item": pay_no, "decision": "revoke", "comment": "no longer in finance"},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["items"].as_array().unwrap().len(), 3);
    let (s, d) = e
        .post_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/items/{bob_no}/decide"),
            json!({"decision": "revoke", "comment": "not needed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");

    // Nothing is removed before the campaign closes.
    assert!(e.sim.is_member(DB_OWNERS, BOB));
    let early = reviews_at(&e, Duration::from_secs(60)).await;
    assert!(early.check_once().await.unwrap().is_empty());

    // At the due date: dave never decided carol's user-admin, so the default (revoke) applies.
    let late = reviews_at(&e, Duration::from_secs(2 * 3600)).await;
    assert_eq!(late.check_once().await.unwrap(), vec![id.clone()]);
    assert!(
        !e.sim.is_member(DB_OWNERS, BOB),
        "unexplained access removed"
    );
    assert!(e.sim.is_member(DB_OWNERS, ALICE), "kept access stays");
    assert_eq!(
        e.sim.app_assignment_scope(PAYROLL, ALICE),
        None,
        "grant revoked"
    );
    assert_eq!(
        e.sim.app_assignment_scope(AWS_PROD, DAVE).as_deref(),
        Some("GROUP"),
        "inherited stays"
    );
    assert!(
        e.sim.user_roles(CAROL).is_empty(),
        "standing role removed by the default"
    );
    let gid = alice_pay["grant_id"].as_str().unwrap();
    assert_eq!(e.state(gid).await, "revoked");

    // Decisions are closed now.
    let (s, err) = e
        .post_as(
            "bob@example.com",
            &format!("/v1/reviews/{id}/items/{alice_db_no}/decide"),
            json!({"decision": "revoke"}),
        )
        .await;
    assert_eq!(
        (s, err["code"].as_str()),
        (StatusCode::CONFLICT, Some("campaign_closed"))
    );

    // A checkpoint of the audit log first, so the report carries each decision's proof.
    {
        use jit_broker::audit::checkpoint;
        let store = e.app.store().await;
        let clock = jit_broker::clock::Clock::system();
        let c = checkpoint::prepare(&store, &clock, "jit-broker/audit", None)
            .await
            .unwrap()
            .unwrap();
        let mut tx = store.begin().await.unwrap();
        checkpoint::store_in(&mut tx, &c).await.unwrap();
        tx.commit().await.unwrap();
    }
    // The report: each item's decision, outcome and read-back, with the audit range.
    let (s, r) = e.get(&format!("/v1/reviews/{id}/report?format=json")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // Every decision with its audit entry and inclusion proof, checkable in isolation.
    let proofs: Vec<jit_broker::reviews::report::DecisionProof> =
        serde_json::from_value(r["decision_proofs"].clone()).unwrap();
    assert!(!proofs.is_empty(), "{r}");
    assert!(r["checkpoint"]["tree_size"].as_u64().is_some(), "{r}");
    for p in &proofs {
        assert_eq!(p.proof.entry.action, "review.decided");
        assert_eq!(p.proof.entry.subject, format!("review:{id}"));
        let details: Value = serde_json::from_str(&p.proof.entry.details).unwrap();
        assert_eq!(details["item"], p.item_id);
        // The test broker has no signing key: its checkpoints are unsigned.
        jit_broker::audit::proof::verify_offline(&p.proof, &[], true).unwrap();
    }
    let outcome = |u: &str, res: &str| {
        let i = item(&r, u, res);
        (
            i["decision"].as_str().map(str::to_string),
            i["remediation"].as_str().map(str::to_string),
            i["read_back"].as_str().map(str::to_string),
        )
    };
    let t = |a: &str, b: Option<&str>, c: Option<&str>| {
        (
            Some(a.to_string()),
            b.map(str::to_string),
            c.map(str::to_string),
        )
    };
    assert_eq!(outcome(ALICE, "db-owners"), t("keep", None, None));
    assert_eq!(
        outcome(BOB, "db-owners"),
        t("revoke", Some("done"), Some("gone"))
    );
    assert_eq!(
        outcome(ALICE, "payroll"),
        t("revoke", Some("done"), Some("gone"))
    );
    assert_eq!(
        outcome(DAVE, "aws-prod"),
        t("revoke", Some("flagged"), Some("present"))
    );
    assert_eq!(
        outcome(CAROL, "user-admin"),
        t("revoke", Some("done"), Some("gone"))
    );
    assert!(item(&r, DAVE, "aws-prod")["remediation_detail"]
        .as_str()
        .unwrap()
        .contains("inherited"));
    assert_eq!(item(&r, BOB, "db-owners")["comment"], "not needed");
    assert_eq!(item(&r, CAROL, "user-admin")["decided_by"], "system:review");
    assert!(item(&r, BOB, "db-owners")["read_back_at"].is_i64());
    assert_eq!(r["counts"]["remediation_flagged"], 1);
    assert_eq!(r["counts"]["read_back_gone"], 3);
    // Every revoke is confirmed gone or flagged: the campaign is complete.
    assert_eq!(r["counts"]["revokes_unsettled"], 0);
    assert_eq!(r["counts"]["complete"], true);
    let (start, end, head) = (
        r["audit"]["seq_start"].as_i64().unwrap(),
        r["audit"]["seq_end"].as_i64().unwrap(),
        r["audit"]["head_seq"].as_i64().unwrap(),
    );
    assert!(start < end && end <= head, "{}", r["audit"]);
    // The chain verifies, and its entries in the range are this campaign's story.
    e.audit_ok().await;
    let (_, a) = e.get("/v1/audit?limit=1000").await;
    let actions: Vec<&str> = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["subject"] == format!("review:{id}"))
        .map(|x| x["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "review.decided").count(),
        5
    );
    assert!(actions.contains(&"review.created") && actions.contains(&"review.closed"));
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "review.remediated")
            .count(),
        4
    );
    let head_hash = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["seq"] == head)
        .map(|x| x["hash"].clone());
    assert_eq!(head_hash, Some(r["audit"]["head_hash"].clone()));

    // The CSV says the same.
    let resp = e
        .app
        .http
        .get(e.app.url(&format!("/v1/reviews/{id}/report?format=csv")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    let hdr = rd.headers().unwrap().clone();
    let col = |n: &str| hdr.iter().position(|h| h == n).unwrap();
    let rows: Vec<csv::StringRecord> = rd.records().map(|x| x.unwrap()).collect();
    assert_eq!(rows.len(), 5);
    for row in &rows {
        let j = item(&r, &row[col("user_id")], &row[col("resource")]);
        assert_eq!(&row[col("decision")], j["decision"].as_str().unwrap());
        assert_eq!(
            &row[col("remediation")],
            j["remediation"].as_str().unwrap_or("")
        );
        assert_eq!(
            &row[col("read_back")],
            j["read_back"].as_str().unwrap_or("")
        );
        assert_eq!(&row[col("audit_seq_range")], format!("{start}-{end}"));
        assert_eq!(
            &row[col("audit_head_hash")],
            r["audit"]["head_hash"].as_str().unwrap()
        );
    }

    // And the PDF, for people: the head hash on the title page, a row per item with its login.
    let resp = e
        .app
        .http
        .get(e.app.url(&format!("/v1/reviews/{id}/report?format=pdf")))
        .bearer_auth(AUDITOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    let pdf = resp.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let text = String::from_utf8_lossy(&pdf);
    assert!(text.contains(r["audit"]["head_hash"].as_str().unwrap()));
    assert!(
        text.contains(&format!("(sequence {start} to {end})")),
        "range"
    );
    for row in &rows {
        assert!(text.contains(&format!("({})", &row[col("user_login")])));
    }
}

async fn undecided_items_follow_keep_and_escalate(db: Db) {
    let e = env(db).await;
    let keep = campaign(&e, "keep").await;
    let esc = campaign(&e, "escalate").await;
    let (kid, eid) = (keep["id"].as_str().unwrap(), esc["id"].as_str().unwrap());
    let late = reviews_at(&e, Duration::from_secs(2 * 3600)).await;
    let mut moved = late.check_once().await.unwrap();
    moved.sort();
    let mut want = vec![kid.to_string(), eid.to_string()];
    want.sort();
    assert_eq!(moved, want);
    // keep: everything kept, nothing removed.
    let (_, r) = e.get(&format!("/v1/reviews/{kid}/report")).await;
    assert_eq!(r["campaign"]["state"], "closed");
    assert_eq!(r["counts"]["keep"], 5);
    assert!(e.sim.is_member(DB_OWNERS, BOB));
    // escalate: every undecided item now belongs to dave, who can still decide it.
    let (_, r) = e.get(&format!("/v1/reviews/{eid}/items")).await;
    assert_eq!(r["campaign"]["state"], "escalated");
    assert!(r["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["reviewer"] == "dave@example.com"));
    let bob_no = item_no(&r, BOB, "db-owners");
    let (s, d) = e
        .post_as(
            "dave@example.com",
            &format!("/v1/reviews/{eid}/items/{bob_no}/decide"),
            json!({"decision": "revoke"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    // The owner closes it; the revoke then takes effect on the next check.
    let (s, c) = e.post(&format!("/v1/reviews/{eid}/close"), json!({})).await;
    assert_eq!((s, c["state"].as_str()), (StatusCode::OK, Some("closed")));
    late.check_once().await.unwrap();
    assert!(!e.sim.is_member(DB_OWNERS, BOB));
    let (_, r) = e
        .get(&format!("/v1/reviews/{eid}/report?format=json"))
        .await;
    assert_eq!(r["counts"]["undecided"], 4);
    // Metrics are process-wide (other tests run alongside): their presence is what is checked.
    let m = e.app.metrics().await;
    for name in [
        "jit_review_open_items{state=\"undecided\"}",
        "jit_review_overdue_items",
        "jit_review_decisions_total{decision=\"revoke\"}",
        "jit_review_remediations_total{outcome=\"done\"}",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
    assert_eq!(r["counts"]["read_back_gone"], 1);
    assert_eq!(r["counts"]["complete"], true);
    e.audit_ok().await;
}

both_backends!(
    campaign_snapshot_decide_remediate_report,
    undecided_items_follow_keep_and_escalate,
);

/// A campaign that allows self-review: the rule's choice stands even for the reviewer's own
/// access, and they may decide it; without the option the same item goes to the fallback.
async fn self_review_only_when_the_campaign_allows_it(db: Db) {
    let e = env(db).await;
    let (s, c) = e
        .post(
            "/v1/reviews",
            json!({
                "name": "self-review allowed",
                "resources": ["db-owners", "user-admin"],
                "allow_self_review": true,
                "reviewer": { "rule": "approvers" },
                "fallback": "dave@example.com",
                "due_at": due_in(Duration::from_secs(3600)),
                "default": "keep",
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["allow_self_review"], true);
    let id = c["id"].as_str().unwrap();
    let (_, all) = e.get(&format!("/v1/reviews/{id}/items")).await;
    assert_eq!(item(&all, BOB, "db-owners")["reviewer"], "bob@example.com");
    assert_eq!(
        item(&all, CAROL, "user-admin")["reviewer"],
        "carol@example.com"
    );
    let n = item_no(&all, CAROL, "user-admin");
    let (s, d) = e
        .post_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/items/{n}/decide"),
            json!({"decision": "keep", "comment": "still on call for user admin"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["decision"], "keep");

    // The default: never. carol's own item went to the fallback, and she cannot decide it.
    let c = campaign(&e, "keep").await;
    assert_eq!(c["allow_self_review"], false);
    let id = c["id"].as_str().unwrap();
    let (_, all) = e.get(&format!("/v1/reviews/{id}/items")).await;
    assert_eq!(
        item(&all, CAROL, "user-admin")["reviewer"],
        "dave@example.com"
    );
    let n = item_no(&all, CAROL, "user-admin");
    let (s, d) = e
        .post_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/items/{n}/decide"),
            json!({"decision": "keep"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{d}");
    assert!(item(
        &e.get(&format!("/v1/reviews/{id}/items")).await.1,
        CAROL,
        "user-admin"
    )["decision"]
        .is_null());
}

both_backends!(self_review_only_when_the_campaign_allows_it);
