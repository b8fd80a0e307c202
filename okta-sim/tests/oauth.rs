//! OAuth 2.0 client credentials with private_key_jwt, scoped Bearer tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use okta_sim::seed::{ALICE, PROD_ADMINS};
use okta_sim::{OAuthConfig, PermissionLevel, SimConfig};
use serde_json::{json, Value};

const CLIENT: &str = "0oa1jitbrokerclient1";
const KEY: &str = include_str!("fixtures/test-client-key.pem");
const PUB: &str = include_str!("fixtures/test-client-pub.pem");
const OTHER: &str = include_str!("fixtures/other-key.pem");

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn assertion(key: &str, iss: &str, aud: &str, exp: i64, jti: &str) -> String {
    let claims =
        json!({"iss": iss, "sub": CLIENT, "aud": aud, "exp": exp, "iat": now(), "jti": jti});
    encode(
        &Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(key.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn token_req(c: &reqwest::Client, base: &str, jwt: &str, scope: &str) -> reqwest::Response {
    c.post(format!("{base}/oauth2/v1/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", jwt),
        ])
        .send()
        .await
        .unwrap()
}

async fn sim(level: PermissionLevel) -> okta_sim::SimHandle {
    okta_sim::spawn(SimConfig {
        oauth: Some(OAuthConfig::new(CLIENT, PUB, level)),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn valid_assertion_gets_a_scoped_token() {
    let sim = sim(PermissionLevel::GroupAppAdmin).await;
    let c = client();
    let base = sim.base_url();
    let aud = format!("{base}/oauth2/v1/token");
    let jwt = assertion(KEY, CLIENT, &aud, now() + 300, "j1");
    let r = token_req(&c, &base, &jwt, "okta.groups.manage okta.users.read").await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 3600);
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let r = c
        .put(format!("{base}/api/v1/groups/{PROD_ADMINS}/users/{ALICE}"))
        .header("Authorization", &bearer)
        .header("Content-Length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(sim.is_member(PROD_ADMINS, ALICE));
    // Reading users is in scope; writing apps is not.
    let r = c
        .get(format!("{base}/api/v1/users/{ALICE}"))
        .header("Authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{base}/api/v1/apps/0oa1payroll000000001/users"))
        .header("Authorization", &bearer)
        .json(&json!({"id": ALICE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Replaying the same assertion (same jti) is refused.
    let r = token_req(&c, &base, &jwt, "okta.groups.manage").await;
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{base}/api/v1/users/{ALICE}"))
        .header("Authorization", "Bearer sim.forged")
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "E0000011").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_assertions_are_refused() {
    let sim = sim(PermissionLevel::SuperAdmin).await;
    let c = client();
    let base = sim.base_url();
    let aud = format!("{base}/oauth2/v1/token");
    let cases = [
        (
            "wrong key",
            assertion(OTHER, CLIENT, &aud, now() + 300, "a"),
            401,
        ),
        (
            "wrong aud",
            assertion(
                KEY,
                CLIENT,
                "https://elsewhere/oauth2/v1/token",
                now() + 300,
                "b",
            ),
            401,
        ),
        (
            "expired",
            assertion(KEY, CLIENT, &aud, now() - 10, "c"),
            401,
        ),
        (
            "iss != sub",
            assertion(KEY, "0oaother", &aud, now() + 300, "d"),
            401,
        ),
        ("garbage", "not.a.jwt".to_string(), 401),
    ];
    for (name, jwt, status) in cases {
        let r = token_req(&c, &base, &jwt, "okta.groups.read").await;
        assert_eq!(r.status(), status, "{name}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "invalid_client",
            "{name}"
        );
    }
    let r = token_req(
        &c,
        &base,
        &assertion(KEY, CLIENT, &aud, now() + 300, "e"),
        "okta.everything.manage",
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_scope");
    sim.shutdown().await;
}

#[tokio::test]
async fn access_tokens_expire() {
    let mut oauth = OAuthConfig::new(CLIENT, PUB, PermissionLevel::ReadOnly);
    oauth.token_ttl = std::time::Duration::from_secs(1);
    let sim = okta_sim::spawn(SimConfig {
        oauth: Some(oauth),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = client();
    let base = sim.base_url();
    let jwt = assertion(
        KEY,
        CLIENT,
        &format!("{base}/oauth2/v1/token"),
        now() + 300,
        "x1",
    );
    let t: Value = token_req(&c, &base, &jwt, "okta.users.read")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["expires_in"], 1);
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let url = format!("{base}/api/v1/users/{ALICE}");
    let first = c
        .get(&url)
        .header("Authorization", &bearer)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(first, 200);
    let expired = wait_until(std::time::Duration::from_secs(5), || async {
        c.get(&url)
            .header("Authorization", &bearer)
            .send()
            .await
            .unwrap()
            .status()
            == 401
    })
    .await;
    assert!(expired);
    sim.shutdown().await;
}
