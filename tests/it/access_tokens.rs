//! Okta access tokens (`okta::jwt`) against okta-sim's custom authorization server: a token from
//! a real device login verifies; expired, not-yet-valid, wrong `aud`, wrong `iss`, an unknown
//! `kid` (keys refetched once, then refused, and not again within the interval), a foreign key,
//! `alg: none`, HS256 keyed with the public key, no user and a missing scope are refused with the
//! right error; a key rotation is picked up with one refetch. No SQL state: one store suffices.

use std::time::Duration;

use jit_broker::clock::Clock;
use jit_broker::okta::jwt::{
    AccessTokenVerifier, AccessTokensConfig, Rejection, TokenError, VerifiedToken,
};
use okta_sim::authz::{DeviceDecision, MintSpec, Signing};
use okta_sim::{SimConfig, SimHandle};
use serde_json::Value;

const ALICE: &str = "alice@example.com";
const ALICE_ID: &str = "00u1alice00000000001";

fn config(sim: &SimHandle) -> AccessTokensConfig {
    AccessTokensConfig {
        issuer: sim.auth_server_issuer("default"),
        audience: "api://default".into(),
        jwks_uri: String::new(),
        clock_skew: Duration::from_secs(30),
        // Long enough that no test crosses it by accident.
        jwks_refresh_min_interval: Duration::from_secs(3600),
        jwks_max_age: Duration::from_secs(3600),
        person_cache_ttl: Duration::from_secs(60),
        client_ids: Vec::new(),
    }
}

async fn setup() -> (SimHandle, AccessTokenVerifier) {
    let sim = okta_sim::spawn(SimConfig::default()).await.unwrap();
    let v = AccessTokenVerifier::new(config(&sim), Clock::system()).unwrap();
    (sim, v)
}

fn spec(scopes: &[&str]) -> MintSpec {
    MintSpec {
        login: ALICE.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..MintSpec::default()
    }
}

async fn refused(v: &AccessTokenVerifier, token: &str) -> TokenError {
    v.verify(token).await.expect_err("the token was accepted")
}

#[tokio::test]
async fn a_minted_token_verifies_and_names_the_person_and_scopes() {
    let (sim, v) = setup().await;
    let token = sim
        .mint_access_token(&spec(&["jit.read", "jit.request"]))
        .unwrap();
    let t: VerifiedToken = v.verify(&token).await.unwrap();
    assert_eq!(t.user_id, ALICE_ID);
    assert_eq!(t.login, ALICE);
    assert_eq!(t.client_id, "jit-cli");
    assert_eq!(t.scopes, vec!["jit.read", "jit.request"]);
    t.require_scopes(&["jit.read"]).unwrap();
    // A second token: keys come from the cache.
    let again = sim.mint_access_token(&spec(&["jit.read"])).unwrap();
    v.verify(&again).await.unwrap();
    assert_eq!(
        sim.jwks_fetches(),
        1,
        "keys must be cached, not fetched per token"
    );
    sim.shutdown().await;
}

/// With `client_ids` set, a token another app of the same authorization server obtained for the
/// person is refused: only the listed clients speak for people.
#[tokio::test]
async fn a_token_of_another_client_is_refused_when_clients_are_listed() {
    let sim = okta_sim::spawn(SimConfig::default()).await.unwrap();
    let mut cfg = config(&sim);
    cfg.client_ids = vec!["jit-cli".into()];
    let v = AccessTokenVerifier::new(cfg, Clock::system()).unwrap();
    let ours = sim.mint_access_token(&spec(&["jit.read"])).unwrap();
    assert_eq!(v.verify(&ours).await.unwrap().client_id, "jit-cli");
    let other = sim
        .mint_access_token(&MintSpec {
            client_id: Some("intranet-spa".into()),
            ..spec(&["jit.read", "jit.approve"])
        })
        .unwrap();
    assert_eq!(refused(&v, &other).await, TokenError::Client);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_missing_scope_is_forbidden_not_unauthorized() {
    let (sim, v) = setup().await;
    let token = sim.mint_access_token(&spec(&["jit.read"])).unwrap();
    let t = v.verify(&token).await.unwrap();
    let e = t.require_scopes(&["jit.read", "jit.approve"]).unwrap_err();
    assert_eq!(e, TokenError::MissingScope("jit.approve".into()));
    assert_eq!(e.rejection(), Rejection::Forbidden);
    sim.shutdown().await;
}

#[tokio::test]
async fn time_claims_are_checked_with_the_skew() {
    let (sim, v) = setup().await;
    let expired = sim
        .mint_access_token(&MintSpec {
            expires_in: Some(-120),
            ..spec(&["jit.read"])
        })
        .unwrap();
    assert_eq!(refused(&v, &expired).await, TokenError::Expired);
    assert_eq!(TokenError::Expired.rejection(), Rejection::Unauthorized);
    // Ten seconds past `exp` is within the 30 s skew.
    let just = sim
        .mint_access_token(&MintSpec {
            expires_in: Some(-10),
            ..spec(&["jit.read"])
        })
        .unwrap();
    v.verify(&just).await.unwrap();
    let early = sim
        .mint_access_token(&MintSpec {
            not_before_in: Some(300),
            ..spec(&["jit.read"])
        })
        .unwrap();
    assert_eq!(refused(&v, &early).await, TokenError::NotYetValid);
    let mut no_exp = spec(&["jit.read"]);
    no_exp.claims.insert("exp".into(), Value::Null);
    let no_exp = sim.mint_access_token(&no_exp).unwrap();
    assert_eq!(refused(&v, &no_exp).await, TokenError::MissingClaim("exp"));
    sim.shutdown().await;
}

#[tokio::test]
async fn another_audience_or_issuer_is_refused() {
    let (sim, v) = setup().await;
    let aud = sim
        .mint_access_token(&MintSpec {
            audience: Some("api://someone-else".into()),
            ..spec(&["jit.read"])
        })
        .unwrap();
    assert_eq!(refused(&v, &aud).await, TokenError::Audience);
    let iss = sim
        .mint_access_token(&MintSpec {
            issuer: Some(format!("{}/oauth2/aus1other", sim.base_url())),
            ..spec(&["jit.read"])
        })
        .unwrap();
    assert_eq!(refused(&v, &iss).await, TokenError::Issuer);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_then_is_refused_without_more_fetches() {
    let (sim, v) = setup().await;
    let good = sim.mint_access_token(&spec(&["jit.read"])).unwrap();
    v.verify(&good).await.unwrap();
    assert_eq!(sim.jwks_fetches(), 1);
    let unknown = sim
        .mint_access_token(&MintSpec {
            kid: Some("not-a-published-kid".into()),
            ..spec(&["jit.read"])
        })
        .unwrap();
    assert_eq!(refused(&v, &unknown).await, TokenError::UnknownKey);
    assert_eq!(
        sim.jwks_fetches(),
        2,
        "an unknown kid refetches the keys once"
    );
    // A flood of unknown kids within the interval reaches Okta no more.
    for i in 0..20 {
        let t = sim
            .mint_access_token(&MintSpec {
                kid: Some(format!("forged-{i}")),
                ..spec(&["jit.read"])
            })
            .unwrap();
        assert_eq!(refused(&v, &t).await, TokenError::UnknownKey);
    }
    assert_eq!(sim.jwks_fetches(), 2);
    // The known key still works from the cache.
    v.verify(&good).await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_with_one_refetch() {
    let (sim, v) = setup().await;
    let before = sim.mint_access_token(&spec(&["jit.read"])).unwrap();
    v.verify(&before).await.unwrap();
    let kid = sim.rotate_signing_key();
    assert_eq!(kid, "sim-as-2");
    let after = sim.mint_access_token(&spec(&["jit.read"])).unwrap();
    v.verify(&after).await.unwrap();
    assert_eq!(sim.jwks_fetches(), 2);
    // Tokens signed before the rotation still verify (the old key stays published).
    v.verify(&before).await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn forged_signatures_and_algorithms_are_refused() {
    let (sim, v) = setup().await;
    let forge = |signing| {
        sim.mint_access_token(&MintSpec {
            signing,
            ..spec(&["jit.read", "jit.approve"])
        })
        .unwrap()
    };
    assert_eq!(
        refused(&v, &forge(Signing::Foreign)).await,
        TokenError::Signature
    );
    assert_eq!(
        refused(&v, &forge(Signing::None)).await,
        TokenError::Algorithm("none".into())
    );
    assert_eq!(
        refused(&v, &forge(Signing::Hs256PublicKey)).await,
        TokenError::Algorithm("HS256".into())
    );
    // A valid token with its signature cut off, or with a payload swapped in.
    let good = forge(Signing::Published);
    let parts: Vec<&str> = good.split('.').collect();
    assert_eq!(
        refused(&v, &format!("{}.{}.", parts[0], parts[1])).await,
        TokenError::Signature
    );
    let other = sim.mint_access_token(&spec(&["jit.approve"])).unwrap();
    let other_payload = other.split('.').nth(1).unwrap();
    assert_eq!(
        refused(&v, &format!("{}.{}.{}", parts[0], other_payload, parts[2])).await,
        TokenError::Signature
    );
    assert_eq!(refused(&v, "not-a-jwt").await, TokenError::Malformed);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_token_without_a_user_is_refused() {
    let (sim, v) = setup().await;
    // A client-credentials token has no uid: it speaks for an app, not a person.
    let mut s = spec(&["jit.read"]);
    s.claims.insert("uid".into(), Value::Null);
    let t = sim.mint_access_token(&s).unwrap();
    assert_eq!(refused(&v, &t).await, TokenError::NotAUser);
    sim.shutdown().await;
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_are_unavailable_not_unauthorized() {
    let (sim, _) = setup().await;
    let token = sim.mint_access_token(&spec(&["jit.read"])).unwrap();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cfg = config(&sim);
    cfg.jwks_uri = format!("http://127.0.0.1:{port}/v1/keys");
    let v = AccessTokenVerifier::new(cfg, Clock::system()).unwrap();
    let e = refused(&v, &token).await;
    assert!(matches!(e, TokenError::KeysUnavailable(_)), "{e:?}");
    assert_eq!(e.rejection(), Rejection::Unavailable);
    assert!(
        !e.to_string().contains(&token),
        "the error printed the token"
    );
    sim.shutdown().await;
}

/// RFC 8628 end to end: authorize, poll (pending, slow_down), approve, tokens, refresh.
#[tokio::test]
async fn a_device_login_yields_a_token_the_verifier_accepts() {
    let mut cfg = SimConfig::default();
    cfg.auth_servers[0].device_poll_interval = Duration::from_secs(1);
    let sim = okta_sim::spawn(cfg).await.unwrap();
    let v = AccessTokenVerifier::new(config(&sim), Clock::system()).unwrap();
    let http = reqwest::Client::new();
    let iss = sim.auth_server_issuer("default");
    let disc: Value = http
        .get(format!("{iss}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disc["issuer"], iss.as_str());
    let dev: Value = http
        .post(disc["device_authorization_endpoint"].as_str().unwrap())
        .form(&[
            ("client_id", "jit-cli"),
            ("scope", "openid offline_access jit.read"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device_code = dev["device_code"].as_str().unwrap().to_string();
    let user_code = dev["user_code"].as_str().unwrap().to_string();
    assert_eq!(dev["interval"], 1);
    assert!(dev["verification_uri"]
        .as_str()
        .unwrap()
        .ends_with("/activate"));
    let token_url = disc["token_endpoint"].as_str().unwrap().to_string();
    let poll = || {
        http.post(&token_url)
            .form(&[
                ("client_id", "jit-cli"),
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code.as_str()),
            ])
            .send()
    };
    let r = poll().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "authorization_pending"
    );
    let r = poll().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "slow_down");
    sim.decide_device(&user_code, ALICE, DeviceDecision::Approve)
        .unwrap();
    // Poll at the interval until the tokens arrive (bounded by a deadline, not a fixed sleep).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let tokens: Value = loop {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = poll().await.unwrap();
        let body: Value = r.json().await.unwrap();
        if body["access_token"].is_string() {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "no tokens: {body}");
    };
    let t = v
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!((t.user_id.as_str(), t.login.as_str()), (ALICE_ID, ALICE));
    assert_eq!(t.scopes, vec!["openid", "offline_access", "jit.read"]);
    assert!(tokens["id_token"].is_string());
    // The device code is spent.
    let r = poll().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // Refresh rotates: the new refresh token works, the old one no longer does.
    let rt = tokens["refresh_token"].as_str().unwrap().to_string();
    let refresh = |rt: String| {
        http.post(&token_url)
            .form(&[
                ("client_id", "jit-cli".to_string()),
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", rt),
            ])
            .send()
    };
    let fresh: Value = refresh(rt.clone()).await.unwrap().json().await.unwrap();
    v.verify(fresh["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_ne!(fresh["refresh_token"], rt.as_str());
    let r = refresh(rt).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    sim.shutdown().await;
}
