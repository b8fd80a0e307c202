//! The web console over real HTTP: okta-sim's OIDC pages and endpoints, the broker's console
//! routes, SQL sessions on both backends, real Redis. `Browser` is a cookie-keeping HTTP client
//! that follows no redirects by itself, so each hop of the sign-in can be checked (and spoiled);
//! `webdriver` drives a real headless Chromium through the same pages.

mod flow;
mod security;
mod webdriver;

use std::time::Duration;

use reqwest::StatusCode;

use crate::grants::{env_with, Env};

pub const DB_OWNERS: &str = "00g1dbowners00000002";
pub const ON_CALL: &str = "00g1oncall0000000003";

/// bob approves `prod-admins`; `on-call` needs a step-up (an Okta sign-in within 10 minutes).
/// bob is a console admin (db-owners), carol an auditor (on-call), alice and dave requesters.
pub const POLICY: &str = r#"
[[resource]]
name = "prod-admins"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
description = "Administer production"
default_duration = "1h"
max_duration = "4h"
require_reason = true
approvers = { users = ["bob@example.com"] }

[[resource]]
name = "engineering"
kind = "okta_group"
okta_id = "00g1engineering00004"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0

[[resource]]
name = "on-call"
kind = "okta_group"
okta_id = "00g1oncall0000000003"
description = "Page the on-call rotation"
default_duration = "30m"
max_duration = "2h"
approvers = { users = ["bob@example.com"] }
approval_step_up = "10m"
"#;

pub async fn console_env(
    db: crate::helpers::Db,
    tweak: impl FnOnce(&mut jit_broker::Config),
) -> Env {
    env_with(db, POLICY, |c| {
        c.console.issuer = c.okta.base_url.clone();
        c.console.client_id = okta_sim::oidc::DEFAULT_CLIENT_ID.into();
        c.console.client_secret = Some(secrecy::SecretString::from(
            okta_sim::oidc::DEFAULT_CLIENT_SECRET,
        ));
        c.console.admin_groups = vec![DB_OWNERS.into()];
        c.console.auditor_groups = vec![ON_CALL.into()];
        tweak(c)
    })
    .await
}

/// One person's browser: its own cookies (the broker's session and okta-sim's SSO session).
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
}

pub struct Page {
    pub status: StatusCode,
    pub location: String,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Page {
    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        let i = self
            .body
            .find(r#"name="csrf" value=""#)
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        let rest = &self.body[i + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
        }
    }

    async fn page(r: reqwest::Response) -> Page {
        let status = r.status();
        let headers = r.headers().clone();
        let location = headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        Page {
            status,
            location,
            body: r.text().await.unwrap(),
            headers,
        }
    }

    pub async fn get(&self, path_or_url: &str) -> Page {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        Self::page(self.http.get(url).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        Self::page(
            self.http
                .post(format!("{}{path}", self.base))
                .form(form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Starts a sign-in: the URL of okta-sim's authorize endpoint the console sends us to.
    pub async fn start_sign_in(&self, login_path: &str) -> String {
        let p = self.get(login_path).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        assert!(
            p.location.contains("/oauth2/v1/authorize?"),
            "{}",
            p.location
        );
        p.location
    }

    /// Answers okta-sim's sign-in page as `login`: the callback URL it redirects to.
    pub async fn okta_sign_in(&self, authorize_url: &str, login: &str) -> String {
        let page = self.get(authorize_url).await;
        if page.status == StatusCode::SEE_OTHER {
            // An SSO session answered without the page.
            return page.location;
        }
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("Sign in"));
        let u = url::Url::parse(authorize_url).unwrap();
        let mut form: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        form.push(("login".into(), login.into()));
        let r = self
            .http
            .post(format!("{}://{}{}", u.scheme(), u.authority(), u.path()))
            .form(&form)
            .send()
            .await
            .unwrap();
        let p = Self::page(r).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        p.location
    }

    /// The whole sign-in as `login`; returns the page the console lands on.
    pub async fn sign_in(&self, login: &str) -> Page {
        let authorize = self.start_sign_in("/login").await;
        let callback = self.okta_sign_in(&authorize, login).await;
        let p = self.get(&callback).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        assert!(
            p.headers
                .get("set-cookie")
                .is_some_and(|c| c.to_str().unwrap().contains("HttpOnly")),
            "{:?}",
            p.headers
        );
        let landing = p.location.clone();
        self.get(&landing).await
    }
}

/// The request id in a page that links `/approvals/{id}` or shows `request-{id}`.
pub fn request_id_in(body: &str) -> String {
    for marker in ["/approvals/", "request-"] {
        if let Some(i) = body.find(marker) {
            let rest = &body[i + marker.len()..];
            let id: String = rest
                .chars()
                .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
                .collect();
            if id.len() == 36 {
                return id;
            }
        }
    }
    panic!("no request id in {body}");
}

pub const WAIT: Duration = Duration::from_secs(20);
