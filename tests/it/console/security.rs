//! What the console must refuse: spoiled ID tokens, a wrong state, a reused code, forms without
//! their CSRF token, requesters on admin pages, sessions after sign-out or past their timeouts.
//! Each refusal is checked to have changed nothing.

use std::time::Duration;

use okta_sim::oidc::Tamper;
use reqwest::StatusCode;

use super::*;
use crate::helpers::*;

both_backends!(
    a_callback_from_another_browser_is_refused,
    anonymous_sign_in_starts_write_nothing,
    spoiled_id_tokens_open_no_session,
    wrong_state_and_reused_code_are_refused,
    forms_without_their_csrf_token_change_nothing,
    requesters_cannot_open_admin_pages,
    sessions_end_at_sign_out,
    sessions_end_past_their_idle_and_absolute_timeouts,
    cookie_secure_follows_public_url,
);

/// The console's cookies are `Secure` when browsers reach it over https (`console.public_url`),
/// whatever the broker listens on: here loopback behind an imagined TLS proxy, where they used
/// to be sent without `Secure`. Without `public_url` (plain http) they cannot be `Secure`.
async fn cookie_secure_follows_public_url(db: Db) {
    for (public_url, secure) in [("https://jit.example.com", true), ("", false)] {
        let e = console_env(db, |c| c.console.public_url = public_url.into()).await;
        let page = Browser::new(&e.app.base).get("/login").await;
        let cookies: Vec<String> = page
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert!(!cookies.is_empty(), "{public_url}: /login sets its cookie");
        for c in &cookies {
            assert_eq!(
                c.split(';').any(|a| a.trim() == "Secure"),
                secure,
                "{public_url}: {c}"
            );
        }
    }
}

/// The broker's session cookie from a callback answer.
fn session_cookie(p: &Page) -> String {
    let c = p.headers.get("set-cookie").unwrap().to_str().unwrap();
    c.split(';').next().unwrap().to_string()
}

/// The `jit_session` cookies a page sets.
fn session_cookies(p: &Page) -> Vec<String> {
    p.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .filter(|c| c.starts_with("jit_session="))
        .collect()
}

/// Login CSRF: mallory starts a sign-in as himself, stops at Okta's redirect and sends the
/// callback link to alice. Opened in her browser (signed in, signed out, or with a sign-in of
/// her own under way) it is refused with a page saying so, and changes nothing: she stays
/// herself. Her own sign-in, and mallory's in his own browser, still work.
async fn a_callback_from_another_browser_is_refused(db: Db) {
    let env = console_env(db, |_| {}).await;
    let mallory = Browser::new(&env.app.base);
    let authorize = mallory.start_sign_in("/login").await;
    let link = mallory.okta_sign_in(&authorize, "dave@example.com").await;
    assert!(link.contains("/auth/callback?"), "{link}");

    let alice = Browser::new(&env.app.base);
    alice.sign_in("alice@example.com").await;
    let fresh = Browser::new(&env.app.base);
    let midway = Browser::new(&env.app.base);
    midway.start_sign_in("/login").await;
    for (who, b) in [
        ("signed in", &alice),
        ("fresh", &fresh),
        ("mid-sign-in", &midway),
    ] {
        let p = b.get(&link).await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{who}: {}", p.body);
        assert!(p.body.contains("sign_in_not_started_here"), "{who}");
        assert!(
            p.body.contains("not started in this browser"),
            "{who}: {}",
            p.body
        );
        assert!(session_cookies(&p).is_empty(), "{who}");
    }
    // Alice is still alice; the others are still signed out.
    let access = alice.get("/access").await;
    assert_eq!(access.status, StatusCode::OK);
    assert!(access.body.contains("alice@example.com"), "{}", access.body);
    assert!(!access.body.contains("dave@example.com"));
    assert_eq!(fresh.get("/access").await.status, StatusCode::SEE_OTHER);
    // The browser in the middle of its own sign-in finishes it.
    let authorize = midway.start_sign_in("/login").await;
    let own = midway.okta_sign_in(&authorize, "carol@example.com").await;
    assert_eq!(midway.get(&own).await.status, StatusCode::SEE_OTHER);
    assert!(midway
        .get("/access")
        .await
        .body
        .contains("carol@example.com"));
    // The link was refused before its code was spent: in mallory's own browser it works.
    let p = mallory.get(&link).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(session_cookies(&p).len(), 1);
}

/// Every table's row count.
async fn row_counts(store: &jit_broker::store::Store, db: Db) -> Vec<(String, i64)> {
    let list = match db {
        Db::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        Db::Postgres => "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    };
    let names: Vec<String> = sqlx::query_scalar(list)
        .fetch_all(store.pool())
        .await
        .unwrap();
    let mut out = Vec::new();
    for n in names {
        let c: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{n}\""))
            .fetch_one(store.pool())
            .await
            .unwrap();
        out.push((n, c));
    }
    out
}

/// Thirty anonymous `GET /login`s (with and without cookies kept) write no row anywhere, and
/// the sign-ins they started still work from the browser that started them.
async fn anonymous_sign_in_starts_write_nothing(db: Db) {
    let env = console_env(db, |_| {}).await;
    let store = env.app.store().await;
    let before = row_counts(&store, db).await;
    let keeper = Browser::new(&env.app.base);
    let mut started = Vec::new();
    for i in 0..30 {
        let b = if i % 2 == 0 {
            Browser::new(&env.app.base)
        } else {
            Browser {
                http: keeper.http.clone(),
                base: env.app.base.clone(),
            }
        };
        started.push(b.start_sign_in("/login?return_to=/approvals").await);
    }
    assert_eq!(row_counts(&store, db).await, before);
    // The newest sign-in of the browser that kept its cookie finishes; it holds at most four.
    let callback = keeper
        .okta_sign_in(started.last().unwrap(), "alice@example.com")
        .await;
    let p = keeper.get(&callback).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location, "/approvals");
}

async fn signed_out(base: &str, cookie: &str) -> bool {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}/access"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    r.status() == StatusCode::SEE_OTHER
        && r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login?return_to=%2Faccess")
}

async fn spoiled_id_tokens_open_no_session(db: Db) {
    let env = console_env(db, |_| {}).await;
    for t in [
        Tamper::ForeignKey,
        Tamper::Expired,
        Tamper::WrongNonce,
        Tamper::WrongAudience,
    ] {
        let b = Browser::new(&env.app.base);
        let authorize = b.start_sign_in("/login").await;
        let callback = b.okta_sign_in(&authorize, "alice@example.com").await;
        env.sim.oidc_tamper_next(t);
        let p = b.get(&callback).await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{t:?}: {}", p.body);
        assert!(p.body.contains("sign_in_rejected"), "{t:?}");
        assert!(session_cookies(&p).is_empty(), "{t:?}");
        assert_eq!(
            b.get("/access").await.status,
            StatusCode::SEE_OTHER,
            "{t:?}"
        );
    }
}

async fn wrong_state_and_reused_code_are_refused(db: Db) {
    let env = console_env(db, |_| {}).await;
    let b = Browser::new(&env.app.base);
    let authorize = b.start_sign_in("/login").await;
    let callback = b.okta_sign_in(&authorize, "alice@example.com").await;
    let mut u = url::Url::parse(&callback).unwrap();
    let code = u
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    // A state the console never issued.
    u.query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", "forged-state");
    let p = b.get(u.as_str()).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(p.body.contains("sign_in_not_started_here"), "{}", p.body);
    // The real callback works once...
    let ok = b.get(&callback).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    // ...and not twice (its state is used up).
    let again = b.get(&callback).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    // The used code with a fresh, genuine state: Okta refuses the code.
    let other = Browser::new(&env.app.base);
    let authorize = other.start_sign_in("/login").await;
    let state = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let p = other
        .get(&format!(
            "/auth/callback?code={code}&state={}",
            url::form_urlencoded::byte_serialize(state.as_bytes()).collect::<String>()
        ))
        .await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);
    assert!(p.body.contains("sign_in_rejected"));
    assert_eq!(other.get("/access").await.status, StatusCode::SEE_OTHER);
    // Malformed and missing parameters.
    assert_eq!(
        b.get("/auth/callback").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        b.get("/login?max_age=soon").await.status,
        StatusCode::BAD_REQUEST
    );
    // A return path off this console is ignored.
    let evil = Browser::new(&env.app.base);
    let authorize = evil
        .start_sign_in("/login?return_to=//evil.example/x")
        .await;
    let callback = evil.okta_sign_in(&authorize, "alice@example.com").await;
    assert_eq!(evil.get(&callback).await.location, "/access");
}

async fn forms_without_their_csrf_token_change_nothing(db: Db) {
    let env = console_env(db, |_| {}).await;
    let alice = Browser::new(&env.app.base);
    let page = alice.sign_in("alice@example.com").await;
    let form = [
        ("resource", "prod-admins"),
        ("duration", "1h"),
        ("reason", "x"),
    ];
    let missing = alice.post("/request", &form).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.body.contains("csrf_invalid"));
    let mut wrong = form.to_vec();
    wrong.push(("csrf", "not-the-token"));
    assert_eq!(
        alice.post("/request", &wrong).await.status,
        StatusCode::FORBIDDEN
    );
    // Another session's token is wrong for this one.
    let bob = Browser::new(&env.app.base);
    let bobs = bob.sign_in("bob@example.com").await.csrf();
    let mut foreign = form.to_vec();
    foreign.push(("csrf", &bobs));
    assert_eq!(
        alice.post("/request", &foreign).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        alice.post("/logout", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let access = alice.get("/access").await;
    assert!(
        access.body.contains("No requests waiting"),
        "{}",
        access.body
    );
    // Still signed in (the refused sign-out did nothing); out-of-range input is refused too.
    let bad = alice
        .post(
            "/request",
            &[
                ("csrf", &page.csrf()),
                ("resource", "prod-admins"),
                ("duration", "40h"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("duration_exceeds_max"), "{}", bad.body);
    assert!(bad.body.contains("longer than this resource allows"));
}

async fn requesters_cannot_open_admin_pages(db: Db) {
    let env = console_env(db, |_| {}).await;
    let alice = Browser::new(&env.app.base);
    let page = alice.sign_in("alice@example.com").await;
    for path in [
        "/admin/grants",
        "/admin/failed",
        "/admin/audit",
        "/admin/audit/export",
    ] {
        let p = alice.get(path).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path}");
    }
    let p = alice
        .post("/admin/audit/verify", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // Headers every page carries.
    let h = &page.headers;
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(!page.body.contains(okta_sim::oidc::DEFAULT_CLIENT_SECRET));
    assert!(!page.body.contains("<script>"));
}

async fn sign_in_cookie(base: &str) -> (Browser, String) {
    let b = Browser::new(base);
    let authorize = b.start_sign_in("/login").await;
    let callback = b.okta_sign_in(&authorize, "alice@example.com").await;
    let cookie = session_cookie(&b.get(&callback).await);
    (b, cookie)
}

async fn sessions_end_at_sign_out(db: Db) {
    let env = console_env(db, |_| {}).await;
    // Sign-out ends the session on the server: the old cookie opens nothing.
    let (b, cookie) = sign_in_cookie(&env.app.base).await;
    assert!(!signed_out(&env.app.base, &cookie).await);
    let page = b.get("/access").await;
    let out = b.post("/logout", &[("csrf", &page.csrf())]).await;
    assert_eq!(out.location, "/?done=signed_out");
    assert!(signed_out(&env.app.base, &cookie).await);
    let landing = b.get("/?done=signed_out").await;
    assert!(landing.body.contains("You are signed out"));
    // A form posted without a session is refused, not redirected.
    let p = b.post("/request", &[("csrf", &page.csrf())]).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
}

async fn sessions_end_past_their_idle_and_absolute_timeouts(db: Db) {
    // Idle: a session in use stays (each use is recorded), one unused past the idle timeout is
    // over. The wait reads the session's recorded last use, not the session itself (a use).
    let env = console_env(db, |c| {
        c.console.session_idle_timeout = Duration::from_secs(2);
    })
    .await;
    let (_b, cookie) = sign_in_cookie(&env.app.base).await;
    let store = env.app.store().await;
    let idle_for = || async {
        let last: i64 = sqlx::query_scalar("SELECT MAX(last_seen_ms) FROM console_sessions")
            .fetch_one(store.pool())
            .await
            .unwrap();
        chrono::Utc::now().timestamp_millis() - last
    };
    // In use for longer than the idle timeout: still signed in.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        assert!(
            !signed_out(&env.app.base, &cookie).await,
            "signed out while in use"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until(WAIT, || async { idle_for().await > 2_100 }).await;
    assert!(signed_out(&env.app.base, &cookie).await);

    // Absolute: however busy, a session ends this long after sign-in.
    let env = console_env(db, |c| {
        c.console.session_absolute_timeout = Duration::from_secs(2);
    })
    .await;
    let (_b, cookie) = sign_in_cookie(&env.app.base).await;
    wait_until(WAIT, || signed_out(&env.app.base, &cookie)).await;
}
