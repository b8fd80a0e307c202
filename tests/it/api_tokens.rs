//! Okta access tokens on `/v1`: a person signed in through okta-sim's authorization server asks
//! for access and another approves, as themselves, with scopes per verb; roles come from the same
//! Okta groups the console reads; every forged, expired or misdirected token, and a missing scope,
//! is refused and changes nothing (rows, audit); the keys are fetched once, not per request.

use std::time::Duration;

use okta_sim::authz::{MintSpec, Signing};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

both_backends!(
    a_person_requests_and_another_approves_with_okta_tokens,
    refused_tokens_change_nothing,
    roles_come_from_the_consoles_groups_and_an_inactive_person_is_refused,
    an_admins_token_acts_as_admin_only_with_the_admin_scope,
);

const READ: &str = "jit.read";
const REQUEST: &str = "jit.request";
const APPROVE: &str = "jit.approve";
const ADMIN: &str = "jit.admin";

async fn env(db: Db, tweak: impl FnOnce(&mut jit_broker::Config) + Send) -> Env {
    EnvBuilder::new(db, REQUESTS_POLICY)
        .okta_tokens()
        .tweak(tweak)
        .start()
        .await
}

fn prod_admins() -> Value {
    json!({"resource": "prod-admins", "duration": "1h", "reason": "incident 42"})
}

async fn a_person_requests_and_another_approves_with_okta_tokens(db: Db) {
    let e = env(db, |_| {}).await;
    let alice = e.jwt("alice@example.com", &[READ, REQUEST]);
    // What she may ask for, and what each asks of her.
    let (s, r) = e.get_bearer(&alice, "/v1/resources").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let names: Vec<&str> = r["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"prod-admins"), "{r}");
    let pa = r["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "prod-admins")
        .unwrap();
    assert_eq!(pa["require_reason"], true, "{pa}");
    assert_eq!(pa["max_duration"], "4h", "{pa}");
    let aws = r["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "aws-prod")
        .unwrap();
    assert_eq!(aws["step_up"], true, "{aws}");
    assert!(
        pa.get("okta_id").is_none(),
        "the org's ids are not shown: {pa}"
    );
    let (s, b) = e.post_bearer(&alice, "/v1/requests", prod_admins()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["request"]["id"].as_str().unwrap().to_string();
    assert_eq!(b["request"]["requested_by"], "alice@example.com", "{b}");
    assert_eq!(b["request"]["user_id"], ALICE, "{b}");
    // Bob, in db-owners, sees it and approves with his own token.
    let bob = e.jwt("bob@example.com", &[READ, APPROVE]);
    let (s, inbox) = e
        .get_bearer(&bob, "/v1/requests?mine_to_approve=true")
        .await;
    assert_eq!(s, StatusCode::OK, "{inbox}");
    assert_eq!(inbox["requests"][0]["id"], id.as_str(), "{inbox}");
    let (s, v) = e
        .post_bearer(
            &bob,
            &format!("/v1/requests/{id}/approve"),
            json!({"comment": "ok"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["grant"]["state"], "active", "{v}");
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));
    let v = e.show(&id).await;
    assert_eq!(v["decisions"][0]["approver"], "bob@example.com");
    assert_eq!(v["decisions"][0]["channel"], "api");
    // Alice sees her grant with a read token.
    let (s, g) = e.get_bearer(&alice, "/v1/grants").await;
    assert_eq!(s, StatusCode::OK, "{g}");
    // The audit log names the people, not a token.
    let (_, audit) = e.get("/v1/audit?limit=500").await;
    let actors: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap(),
                a["actor"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        actors.contains(&("request.created", "alice@example.com")),
        "{actors:?}"
    );
    assert!(
        actors.contains(&("request.approved", "bob@example.com")),
        "{actors:?}"
    );
    // Two people, five calls: the keys were fetched once.
    assert_eq!(
        e.sim.jwks_fetches(),
        1,
        "keys must not be fetched per request"
    );
    // Static tokens keep working beside Okta tokens.
    let (s, _) = e.get("/v1/requests").await;
    assert_eq!(s, StatusCode::OK);
    e.audit_ok().await;
}

async fn refused_tokens_change_nothing(db: Db) {
    let e = env(db, |_| {}).await;
    // A first good read loads the keys.
    let (s, b) = e
        .get_bearer(&e.jwt("alice@example.com", &[READ]), "/v1/requests")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(e.sim.jwks_fetches(), 1);
    let before = e.footprint().await;
    let mint = |f: &dyn Fn(&mut MintSpec)| {
        let mut spec = MintSpec {
            login: "alice@example.com".into(),
            scopes: vec![READ.into(), REQUEST.into()],
            ..Default::default()
        };
        f(&mut spec);
        e.sim.mint_access_token(&spec).unwrap()
    };
    let refused = [
        ("expired", mint(&|s| s.expires_in = Some(-300))),
        ("not yet valid", mint(&|s| s.not_before_in = Some(600))),
        (
            "wrong aud",
            mint(&|s| s.audience = Some("api://someone-else".into())),
        ),
        (
            "wrong iss",
            mint(&|s| s.issuer = Some(format!("{}/oauth2/aus1other", e.sim.base_url()))),
        ),
        ("alg none", mint(&|s| s.signing = Signing::None)),
        (
            "HS256 keyed with the public key",
            mint(&|s| s.signing = Signing::Hs256PublicKey),
        ),
        ("foreign key", mint(&|s| s.signing = Signing::Foreign)),
    ];
    for (what, token) in &refused {
        let (s, b) = e.post_bearer(token, "/v1/requests", prod_admins()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {b}");
        assert_eq!(code(&b), "invalid_token", "{what}: {b}");
        let msg = b["message"].as_str().unwrap();
        assert!(
            !msg.contains(token.as_str()),
            "{what}: the token was echoed"
        );
    }
    assert_eq!(e.sim.jwks_fetches(), 1, "no refused token refetched keys");
    // An unknown kid refetches the keys once, then is refused; a second one fetches no more.
    for i in 0..2 {
        let t = mint(&|s| s.kid = Some(format!("unknown-kid-{i}")));
        let (s, b) = e.post_bearer(&t, "/v1/requests", prod_admins()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
        assert_eq!(code(&b), "invalid_token", "{b}");
    }
    assert_eq!(
        e.sim.jwks_fetches(),
        2,
        "an unknown kid refetches exactly once"
    );
    // A valid token without the verb's scope: 403, for requesting and for approving.
    let read_only = e.jwt("alice@example.com", &[READ]);
    let (s, b) = e
        .post_bearer(&read_only, "/v1/requests", prod_admins())
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(code(&b), "insufficient_scope", "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("jit.request"),
        "{b}"
    );
    // A JWT is never looked up among the static tokens.
    let (s, _) = e
        .post_bearer(
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
            "/v1/requests",
            prod_admins(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        e.footprint().await,
        before,
        "a refused token changed something"
    );
    // Approving needs `jit.approve`: bob's request token cannot, and the request stays pending.
    let alice = e.jwt("alice@example.com", &[READ, REQUEST]);
    let (s, b) = e.post_bearer(&alice, "/v1/requests", prod_admins()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = b["request"]["id"].as_str().unwrap().to_string();
    let before = e.footprint().await;
    let bob = e.jwt("bob@example.com", &[READ, REQUEST]);
    let (s, b) = e
        .post_bearer(&bob, &format!("/v1/requests/{id}/approve"), json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(code(&b), "insufficient_scope", "{b}");
    assert_eq!(e.show(&id).await["state"], "pending");
    assert_eq!(e.footprint().await, before);
    // Admin verbs need `jit.admin`, whatever the person's roles.
    let (s, b) = e
        .post_bearer(
            &alice,
            "/v1/grants",
            json!({"user": "alice@example.com", "resource": "prod-admins", "duration": "1h", "reason": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(code(&b), "insufficient_scope", "{b}");
    assert_eq!(e.footprint().await, before);
    e.audit_ok().await;
}

async fn roles_come_from_the_consoles_groups_and_an_inactive_person_is_refused(db: Db) {
    // Carol is in on-call, named as an auditor group; no person cache, so a change in Okta
    // shows at the next call.
    let e = env(db, |c| {
        c.console.auditor_groups = vec![ON_CALL.into()];
        c.access_tokens.person_cache_ttl = Duration::ZERO;
    })
    .await;
    let carol = e.jwt("carol@example.com", &[READ]);
    let (s, b) = e.get_bearer(&carol, "/v1/audit").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let alice = e.jwt("alice@example.com", &[READ, REQUEST]);
    let (s, b) = e.get_bearer(&alice, "/v1/audit").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(code(&b), "forbidden", "{b}");
    // Out of the group, out of the role.
    e.sim.admin("test").remove_member(ON_CALL, CAROL).unwrap();
    let (s, b) = e.get_bearer(&carol, "/v1/audit").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // A deactivated person's unexpired token is refused and changes nothing.
    e.sim.admin("test").deactivate_user(ALICE).unwrap();
    let before = e.footprint().await;
    let (s, b) = e.post_bearer(&alice, "/v1/requests", prod_admins()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(code(&b), "invalid_token", "{b}");
    assert_eq!(e.footprint().await, before);
}

/// An admin's terminal token (never `jit.admin`) is a person's token: the admin branches of the
/// rules (reading the audit log, ending or extending anyone's grant) need the admin scope too.
async fn an_admins_token_acts_as_admin_only_with_the_admin_scope(db: Db) {
    let e = env(db, |c| {
        c.console.admin_groups = vec![ON_CALL.into()];
    })
    .await;
    let terminal = e.jwt("carol@example.com", &[READ, REQUEST, APPROVE]);
    let before = e.footprint().await;
    let (s, b) = e.get_bearer(&terminal, "/v1/audit").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(code(&b), "forbidden", "{b}");
    assert_eq!(e.footprint().await, before);
    let operator = e.jwt("carol@example.com", &[READ, ADMIN]);
    let (s, b) = e.get_bearer(&operator, "/v1/audit").await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// With `[access_tokens]` off, a valid Okta token is just an unknown static token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_tokens_are_refused_when_access_tokens_are_off() {
    let e = EnvBuilder::new(Db::Sqlite, REQUESTS_POLICY).start().await;
    let (s, b) = e
        .get_bearer(&e.jwt("alice@example.com", &[READ]), "/v1/requests")
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(e.sim.jwks_fetches(), 0);
}
