//! The custom authorization server: discovery, JWKS and rotation, the device grant's refusals
//! (unknown client, undefined scope, denied, expired), the verification page, and the claims of
//! an issued access token. The verifier side is tested in the broker (`tests/it/access_tokens.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use okta_sim::authz::{DeviceDecision, MintSpec};
use okta_sim::{SimConfig, SimHandle};
use serde_json::Value;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn start(poll_interval: Duration, code_ttl: Duration) -> SimHandle {
    let mut cfg = SimConfig::default();
    cfg.auth_servers[0].device_poll_interval = poll_interval;
    cfg.auth_servers[0].device_code_ttl = code_ttl;
    okta_sim::spawn(cfg).await.unwrap()
}

async fn form(url: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

fn header(jwt: &str) -> Value {
    let h = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

#[tokio::test]
async fn discovery_and_jwks_follow_rotation() {
    let sim = start(Duration::from_secs(5), Duration::from_secs(600)).await;
    let iss = sim.auth_server_issuer("default");
    let d: Value = reqwest::get(format!("{iss}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], iss.as_str());
    assert_eq!(d["jwks_uri"], format!("{iss}/v1/keys").as_str());
    let kids = |v: Value| -> Vec<String> {
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    let jwks = || async {
        reqwest::get(format!("{iss}/v1/keys"))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(kids(jwks().await), vec!["sim-as-1"]);
    assert_eq!(sim.rotate_signing_key(), "sim-as-2");
    assert_eq!(kids(jwks().await), vec!["sim-as-2", "sim-as-1"]);
    assert_eq!(sim.rotate_signing_key(), "sim-as-3");
    assert_eq!(kids(jwks().await), vec!["sim-as-3", "sim-as-2"]);
    assert_eq!(sim.jwks_fetches(), 3);
    let r = reqwest::get(format!(
        "{}/oauth2/aus1nosuchserver/v1/keys",
        sim.base_url()
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn device_authorize_refuses_unknown_clients_and_undefined_scopes() {
    let sim = start(Duration::from_secs(5), Duration::from_secs(600)).await;
    let url = format!("{}/v1/device/authorize", sim.auth_server_issuer("default"));
    let (s, b) = form(&url, &[("client_id", "nobody"), ("scope", "openid")]).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_client")));
    let (s, b) = form(
        &url,
        &[("client_id", "jit-cli"), ("scope", "okta.users.manage")],
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_scope")));
    let (s, b) = form(&url, &[("client_id", "jit-cli")]).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_scope")));
    // A public client sending a secret is refused too.
    let (s, _) = form(
        &url,
        &[
            ("client_id", "jit-cli"),
            ("client_secret", "x"),
            ("scope", "openid"),
        ],
    )
    .await;
    assert_eq!(s, 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_denied_or_expired_device_code_never_yields_tokens() {
    let sim = start(Duration::from_millis(0), Duration::from_secs(1)).await;
    let iss = sim.auth_server_issuer("default");
    let authorize = || async {
        form(
            &format!("{iss}/v1/device/authorize"),
            &[("client_id", "jit-cli"), ("scope", "openid jit.read")],
        )
        .await
        .1
    };
    let poll = |code: String| {
        let url = format!("{iss}/v1/token");
        async move {
            form(
                &url,
                &[
                    ("client_id", "jit-cli"),
                    ("grant_type", DEVICE_GRANT),
                    ("device_code", &code),
                ],
            )
            .await
        }
    };
    let denied = authorize().await;
    sim.decide_device(
        denied["user_code"].as_str().unwrap(),
        "bob@example.com",
        DeviceDecision::Deny,
    )
    .unwrap();
    let (s, b) = poll(denied["device_code"].as_str().unwrap().into()).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("access_denied")));
    // An unknown login cannot approve.
    let other = authorize().await;
    let code = other["user_code"].as_str().unwrap();
    assert!(sim
        .decide_device(code, "nobody@example.com", DeviceDecision::Approve)
        .is_err());
    // Expired: the 1 s lifetime passes (poll until the deadline answer, bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, b) = poll(other["device_code"].as_str().unwrap().into()).await;
        if b["error"] == "expired_token" {
            break;
        }
        assert_eq!(b["error"], "authorization_pending");
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sim
        .decide_device(code, "bob@example.com", DeviceDecision::Approve)
        .is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn the_verification_page_approves_as_the_named_user() {
    let sim = start(Duration::from_millis(0), Duration::from_secs(600)).await;
    let iss = sim.auth_server_issuer("default");
    let (_, dev) = form(
        &format!("{iss}/v1/device/authorize"),
        &[("client_id", "jit-cli"), ("scope", "jit.request")],
    )
    .await;
    let page = reqwest::get(dev["verification_uri_complete"].as_str().unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let code = dev["user_code"].as_str().unwrap();
    assert!(page.contains(code));
    // People type codes in lower case with a dash; that still matches.
    let typed = format!("{}-{}", &code[..4], &code[4..]).to_lowercase();
    let r = reqwest::Client::new()
        .post(format!("{}/activate", sim.base_url()))
        .form(&[
            ("user_code", typed.as_str()),
            ("login", "carol@example.com"),
            ("action", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, tokens) = form(
        &format!("{iss}/v1/token"),
        &[
            ("client_id", "jit-cli"),
            ("grant_type", DEVICE_GRANT),
            ("device_code", dev["device_code"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(s, 200, "{tokens}");
    assert!(
        tokens.get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );
    let at = tokens["access_token"].as_str().unwrap();
    assert_eq!(header(at)["alg"], "RS256");
    assert_eq!(header(at)["kid"], "sim-as-1");
    let c = payload(at);
    let mut keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec![
            "aud",
            "auth_time",
            "cid",
            "exp",
            "iat",
            "iss",
            "jti",
            "scp",
            "sub",
            "uid",
            "ver"
        ]
    );
    assert_eq!(c["iss"], iss.as_str());
    assert_eq!(c["aud"], "api://default");
    assert_eq!(c["cid"], "jit-cli");
    assert_eq!(c["uid"], "00u1carol00000000003");
    assert_eq!(c["sub"], "carol@example.com");
    assert_eq!(c["scp"], serde_json::json!(["jit.request"]));
    assert_eq!(c["ver"], 1);
    assert!(c["jti"].as_str().unwrap().starts_with("AT."));
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    // Minting with an unknown login is refused.
    assert!(sim
        .mint_access_token(&MintSpec {
            login: "nobody@example.com".into(),
            ..MintSpec::default()
        })
        .is_err());
    sim.shutdown().await;
}
