//! Reviews in the console: a reviewer signs in (okta-sim's OIDC), sees the campaign with their
//! items, and decides through the same service as the API; refusals change nothing.

use reqwest::StatusCode;

use super::*;
use crate::console::Browser;

/// The reviews env with the console configured (no console admins: alice is in db-owners here).
async fn console_reviews_env(db: Db) -> Env {
    env_tweaked(db, |c| {
        c.console.issuer = c.okta.base_url.clone();
        c.console.client_id = okta_sim::oidc::DEFAULT_CLIENT_ID.into();
        c.console.client_secret = Some(secrecy::SecretString::from(
            okta_sim::oidc::DEFAULT_CLIENT_SECRET,
        ));
        c.console.auditor_groups = vec![ON_CALL.into()];
    })
    .await
}

async fn decision_of(e: &Env, id: &str, user: &str, resource: &str) -> Value {
    let (_, all) = e.get(&format!("/v1/reviews/{id}/items")).await;
    item(&all, user, resource)["decision"].clone()
}

async fn reviewer_decides_in_the_console(db: Db) {
    let e = console_reviews_env(db).await;
    let c = campaign(&e, "keep").await;
    let id = c["id"].as_str().unwrap().to_string();
    let (_, all) = e.get(&format!("/v1/reviews/{id}/items")).await;
    let bob_db = item_no(&all, BOB, "db-owners");
    let alice_db = item_no(&all, ALICE, "db-owners");

    let carol = Browser::new(&e.app.base);
    carol.sign_in("carol@example.com").await;
    let list = carol.get("/reviews").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("Q4 access review"), "{}", list.body);
    // carol's row: three items, none decided yet.
    assert!(list.body.contains("<td>3</td><td>3</td>"), "{}", list.body);
    assert!(
        list.body.contains(&format!("/reviews/{id}")),
        "{}",
        list.body
    );
    let page = carol.get(&format!("/reviews/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("bob@example.com: db-owners"),
        "{}",
        page.body
    );
    assert!(page.body.contains("nothing explains it"), "{}", page.body);
    // Not carol's: alice's db-owners is bob's to review.
    assert!(!page.body.contains(&format!("id=\"item-{alice_db}\"")));

    // Keeping unexplained access needs a comment: refused, nothing recorded.
    let path = format!("/reviews/{id}/items/{bob_db}/decide");
    let refused = carol
        .post(
            &path,
            &[
                ("csrf", &page.csrf()),
                ("decision", "keep"),
                ("comment", ""),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(decision_of(&e, &id, BOB, "db-owners").await.is_null());
    // Without the form's token: refused, nothing recorded.
    let forged = carol
        .post(&path, &[("csrf", "forged"), ("decision", "revoke")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(decision_of(&e, &id, BOB, "db-owners").await.is_null());

    let done = carol
        .post(
            &path,
            &[
                ("csrf", &page.csrf()),
                ("decision", "revoke"),
                ("comment", "left the team"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location, format!("/reviews/{id}?done=reviewed"));
    assert_eq!(decision_of(&e, &id, BOB, "db-owners").await, "revoke");
    let after = carol.get(&done.location).await;
    assert!(after.body.contains("Your review decision was recorded."));
    assert!(after.body.contains("left the team"));
    let list = carol.get("/reviews").await;
    assert!(list.body.contains("<td>3</td><td>2</td>"), "{}", list.body);

    // bob may not decide carol's item, nor anything with a bad id or decision.
    let bob = Browser::new(&e.app.base);
    bob.sign_in("bob@example.com").await;
    let bob_page = bob.get(&format!("/reviews/{id}")).await;
    let not_his = bob
        .post(
            &path,
            &[
                ("csrf", &bob_page.csrf()),
                ("decision", "keep"),
                ("comment", "mine"),
            ],
        )
        .await;
    assert_eq!(not_his.status, StatusCode::FORBIDDEN, "{}", not_his.body);
    assert_eq!(decision_of(&e, &id, BOB, "db-owners").await, "revoke");
    for (p, want) in [
        (
            format!("/reviews/{id}/items/x/decide"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/reviews/not-a-campaign/items/{alice_db}/decide"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/reviews/{id}/items/{alice_db}/decide"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = bob
            .post(&p, &[("csrf", &bob_page.csrf()), ("decision", "maybe")])
            .await;
        assert_eq!(r.status, want, "{p}: {}", r.body);
    }
    assert!(decision_of(&e, &id, ALICE, "db-owners").await.is_null());
    assert_eq!(
        bob.get("/reviews/not-a-campaign").await.status,
        StatusCode::NOT_FOUND
    );

    // bob hands alice's db-owners to dave; not to alice herself (her own access).
    let bob_page = bob.get(&format!("/reviews/{id}")).await;
    let to_holder = bob
        .post(
            &format!("/reviews/{id}/items/{alice_db}/delegate"),
            &[("csrf", &bob_page.csrf()), ("to", "alice@example.com")],
        )
        .await;
    assert_eq!(
        to_holder.status,
        StatusCode::FORBIDDEN,
        "{}",
        to_holder.body
    );
    let handed = bob
        .post(
            &format!("/reviews/{id}/items/{alice_db}/delegate"),
            &[("csrf", &bob_page.csrf()), ("to", "dave@example.com")],
        )
        .await;
    assert_eq!(handed.status, StatusCode::SEE_OTHER, "{}", handed.body);
    assert_eq!(handed.location, format!("/reviews/{id}?done=delegated"));
    let (_, all) = e.get(&format!("/v1/reviews/{id}/items")).await;
    let moved = item(&all, ALICE, "db-owners");
    assert_eq!(
        (moved["reviewer"].as_str(), moved["delegated_from"].as_str()),
        (Some("dave@example.com"), Some("bob@example.com"))
    );
    let dave = Browser::new(&e.app.base);
    dave.sign_in("dave@example.com").await;
    let page = dave.get(&format!("/reviews/{id}")).await;
    assert!(
        page.body.contains("alice@example.com: db-owners"),
        "{}",
        page.body
    );
}

both_backends!(reviewer_decides_in_the_console);
