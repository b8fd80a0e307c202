//! A real headless Chromium through WebDriver (Debian's `chromium` and `chromium-driver`):
//! sign in through okta-sim's page as a requester, request access, approve it in a second
//! browser as the approver, see the grant on the first, end it and see it gone in okta-sim;
//! then a step-up approval that goes through Okta's sign-in again; then a sign-in link started
//! by someone else (login CSRF), refused in both browsers.
//! Every page is saved as a screenshot under the tests' output directory
//! (`target/tmp/console-screenshots/`), to be looked at.
//!
//! Skipped (with a message) only when `chromedriver` is missing and `CI` is not set; in CI a
//! missing driver fails the test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use super::*;
use crate::helpers::*;

struct Driver {
    child: Child,
    url: String,
    _profiles: Vec<tempfile::TempDir>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn driver_path() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("chromedriver"))
            .find(|p| p.is_file())
    })
}

async fn start_driver() -> Option<Driver> {
    let Some(path) = driver_path() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromedriver is missing in CI: .ci/run installs chromium-driver");
        }
        eprintln!(
            "skipping: chromedriver not installed (apt-get install chromium chromium-driver)"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_until(WAIT, || async {
        http.get(format!("{url}/status"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    Some(Driver {
        child,
        url,
        _profiles: Vec::new(),
    })
}

async fn browser(d: &mut Driver) -> Client {
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1100,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    d._profiles.push(profile);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&d.url)
        .await
        .unwrap()
}

fn shots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

async fn wait_for_path(c: &Client, path: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let u = c.current_url().await.unwrap();
        if u.path() == path {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still on {u}, expected {path}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sign_in(c: &Client, base: &str, login: &str, shot_name: Option<&str>) {
    c.goto(&format!("{base}/")).await.unwrap();
    if let Some(n) = shot_name {
        shot(c, &format!("{n}-landing")).await;
    }
    c.find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let field = c.wait().for_element(Locator::Id("login")).await.unwrap();
    if let Some(n) = shot_name {
        shot(c, &format!("{n}-okta-sign-in")).await;
    }
    field.send_keys(login).await.unwrap();
    c.find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(c, "/access").await;
}

async fn body(c: &Client) -> String {
    c.find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_approve_see_and_revoke_in_real_browsers() {
    let Some(mut driver) = start_driver().await else {
        return;
    };
    let env = console_env(Db::Sqlite, |_| {}).await;
    let base = env.app.base.clone();
    let alice = browser(&mut driver).await;
    sign_in(&alice, &base, "alice@example.com", Some("01")).await;
    shot(&alice, "02-access-empty").await;
    assert!(body(&alice).await.contains("You hold no access"));

    alice.goto(&format!("{base}/request")).await.unwrap();
    shot(&alice, "03-request").await;
    alice
        .find(Locator::Id("res-prod-admins"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    alice
        .find(Locator::Id("duration"))
        .await
        .unwrap()
        .send_keys("2h")
        .await
        .unwrap();
    alice
        .find(Locator::Id("reason"))
        .await
        .unwrap()
        .send_keys("deploy hotfix")
        .await
        .unwrap();
    alice
        .find(Locator::Id("submit-request"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&alice, "/access").await;
    shot(&alice, "04-access-pending").await;
    assert!(body(&alice).await.contains("sent to its approvers"));

    let bob = browser(&mut driver).await;
    sign_in(&bob, &base, "bob@example.com", None).await;
    bob.goto(&format!("{base}/approvals")).await.unwrap();
    shot(&bob, "05-approvals").await;
    bob.find(Locator::Css("a[id^='open-']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    bob.wait()
        .for_element(Locator::Id("approve"))
        .await
        .unwrap();
    shot(&bob, "06-approval-detail").await;
    bob.find(Locator::Id("comment"))
        .await
        .unwrap()
        .send_keys("ok for the hotfix")
        .await
        .unwrap();
    bob.find(Locator::Id("approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&bob, "/approvals").await;
    shot(&bob, "07-approvals-decided").await;
    wait_until(WAIT, || async { env.sim.is_member(PROD_ADMINS, ALICE) }).await;

    alice.goto(&format!("{base}/access")).await.unwrap();
    shot(&alice, "08-access-active").await;
    assert!(body(&alice).await.contains("prod-admins"));
    alice.set_window_size(320, 900).await.unwrap();
    shot(&alice, "09-access-320px").await;
    alice.set_window_size(1100, 900).await.unwrap();
    alice
        .find(Locator::Css("button[id^='revoke-']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&alice, "/access").await;
    shot(&alice, "10-access-revoked").await;
    wait_until(WAIT, || async { !env.sim.is_member(PROD_ADMINS, ALICE) }).await;

    // Bob is an admin: the admin pages, for the screenshots and a look at their contents.
    for (path, name) in [
        ("/admin/grants", "11-admin-grants"),
        ("/admin/failed", "12-admin-failed"),
        ("/admin/audit", "13-admin-audit"),
        ("/admin/outbox", "13b-admin-dead-letters"),
        ("/admin/events", "13c-admin-inbound-dead-letters"),
        ("/admin/sync", "13d-admin-sync-runs"),
    ] {
        bob.goto(&format!("{base}{path}")).await.unwrap();
        shot(&bob, name).await;
        if path == "/admin/audit" {
            assert!(body(&bob).await.contains("Audit chain: verified up to #"));
        }
    }
    bob.set_window_size(320, 900).await.unwrap();
    bob.goto(&format!("{base}/approvals")).await.unwrap();
    shot(&bob, "14-approvals-320px").await;
    bob.set_window_size(1100, 900).await.unwrap();

    // Step-up: alice asks for on-call; bob's Okta sign-in is 20 minutes old (his console
    // session, opened again through Okta's SSO, carries that auth_time), so approving sends
    // him through Okta's sign-in page again and back to the request, where it succeeds.
    alice.goto(&format!("{base}/request")).await.unwrap();
    alice
        .find(Locator::Id("res-on-call"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    alice
        .find(Locator::Id("reason"))
        .await
        .unwrap()
        .send_keys("incident 42")
        .await
        .unwrap();
    alice
        .find(Locator::Id("submit-request"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&alice, "/access").await;
    env.sim.oidc_age_sessions(Duration::from_secs(20 * 60));
    bob.goto(&format!("{base}/login")).await.unwrap();
    wait_for_path(&bob, "/access").await;
    bob.goto(&format!("{base}/approvals")).await.unwrap();
    bob.find(Locator::Css("a[id^='open-']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    bob.wait()
        .for_element(Locator::Id("approve"))
        .await
        .unwrap();
    shot(&bob, "15-step-up-request").await;
    // A comment typed before the step-up is still there after it (issue 22).
    bob.find(Locator::Id("comment"))
        .await
        .unwrap()
        .send_keys("approved for incident 42")
        .await
        .unwrap();
    bob.find(Locator::Id("approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let field = bob.wait().for_element(Locator::Id("login")).await.unwrap();
    shot(&bob, "16-step-up-okta-again").await;
    field.send_keys("bob@example.com").await.unwrap();
    bob.find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    bob.wait()
        .for_element(Locator::Id("approve"))
        .await
        .unwrap();
    shot(&bob, "17-step-up-back").await;
    assert!(body(&bob).await.contains("You signed in again"));
    let kept = bob
        .find(Locator::Id("comment"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("approved for incident 42"));
    bob.find(Locator::Id("approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&bob, "/approvals").await;
    wait_until(WAIT, || async { env.sim.is_member(ON_CALL, ALICE) }).await;
    let (_, reqs) = admin_get(&env.app.http, &env.app.base, "/v1/requests?limit=100").await;
    let decided: Vec<&serde_json::Value> = reqs["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resource"] == "on-call")
        .collect();
    assert_eq!(decided.len(), 1, "{reqs}");
    let id = decided[0]["id"].as_str().unwrap();
    let (_, r) = admin_get(&env.app.http, &env.app.base, &format!("/v1/requests/{id}")).await;
    assert_eq!(
        r["decisions"][0]["comment"], "approved for incident 42",
        "{r}"
    );

    // Login CSRF: mallory starts a sign-in as himself (here without a browser), stops at Okta's
    // redirect and sends the callback link to alice. Her Chromium refuses it with a page saying
    // so, and she is still herself.
    let mallory = Browser::new(&base);
    let authorize = mallory.start_sign_in("/login").await;
    let link = mallory.okta_sign_in(&authorize, "dave@example.com").await;
    alice.goto(&link).await.unwrap();
    shot(&alice, "18-login-csrf-refused").await;
    let page = body(&alice).await;
    assert!(page.contains("not started in this browser"), "{page}");
    alice.goto(&format!("{base}/access")).await.unwrap();
    wait_for_path(&alice, "/access").await;
    let who = alice
        .find(Locator::Css(".who"))
        .await
        .unwrap()
        .attr("title")
        .await
        .unwrap();
    assert_eq!(who.as_deref(), Some("alice@example.com"));
    // In a browser with no session either: refused, and still signed out.
    let fresh = browser(&mut driver).await;
    fresh.goto(&link).await.unwrap();
    assert!(body(&fresh).await.contains("not started in this browser"));
    fresh.goto(&format!("{base}/access")).await.unwrap();
    assert!(fresh
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("/authorize"));
    fresh.close().await.unwrap();
    alice.close().await.unwrap();
    bob.close().await.unwrap();
}
