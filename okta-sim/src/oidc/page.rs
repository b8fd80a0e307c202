//! The simulator's sign-in page: pick a user from a list or type a login.
//!
//! Why it exists: a browser (or a test driving one) signs in through the same redirects as with
//! Okta, without passwords or MFA, which the simulator does not model.
//!
//! What it must never do: echo a parameter into the page without escaping it.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AuthParams;

pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn hidden(name: &str, v: Option<&str>) -> String {
    match v {
        Some(v) => format!(r#"<input type="hidden" name="{name}" value="{}">"#, esc(v)),
        None => String::new(),
    }
}

/// The page, with `users` (login, name) to pick from and an optional error.
pub fn sign_in(p: &AuthParams, users: &[(String, String)], error: Option<&str>) -> Response {
    let fields = [
        hidden("client_id", Some(&p.client_id)),
        hidden("redirect_uri", Some(&p.redirect_uri)),
        hidden("response_type", Some(&p.response_type)),
        hidden("scope", Some(&p.scope)),
        hidden("state", Some(&p.state)),
        hidden("nonce", p.nonce.as_deref()),
        hidden("code_challenge", p.code_challenge.as_deref()),
        hidden("code_challenge_method", p.code_challenge_method.as_deref()),
        hidden("max_age", p.max_age.as_deref()),
    ]
    .concat();
    let options: String = users
        .iter()
        .map(|(login, name)| {
            format!(
                r#"<option value="{}">{} ({})</option>"#,
                esc(login),
                esc(name),
                esc(login)
            )
        })
        .collect();
    let err = error
        .map(|e| format!(r#"<p role="alert" class="err">{}</p>"#, esc(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · okta-sim</title>
<style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem}}
label{{display:block;margin:.8rem 0 .3rem;font-weight:600}}input,select,button{{font-size:1rem;width:100%;padding:.5rem;box-sizing:border-box}}
button{{margin-top:1rem;background:#00297a;color:#fff;border:0;border-radius:4px}}.err{{color:#a00}}</style></head>
<body><main><h1>Sign in</h1><p>okta-sim: choose who you are. There are no passwords here.</p>{err}
<form method="post" action="/oauth2/v1/authorize">{fields}
<label for="login">Okta login</label>
<input id="login" name="login" list="users" autocomplete="username" required>
<datalist id="users">{options}</datalist>
<button type="submit" id="sign-in">Sign in</button></form></main></body></html>"#
    );
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
