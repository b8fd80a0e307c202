//! Sign-ins in progress, kept in the browser that started them: an encrypted, authenticated,
//! short-lived cookie (`jit_login`) holding each pending sign-in's `state`, nonce, PKCE verifier
//! and return path.
//!
//! Why it exists: a callback must finish only in the browser that started its sign-in. With the
//! pending sign-in on the server alone, an attacker could start a sign-in as himself, stop at
//! Okta's redirect and send the callback link to a victim, whose browser would then be signed in
//! as the attacker (login CSRF). Here the callback's `state` must match one sealed in this
//! browser's cookie, or nothing happens. Keeping the pending sign-in in the cookie also means an
//! anonymous `GET /login` writes nothing on the server, so hits cost no storage.
//!
//! The cookie is sealed with AES-256-GCM (the `cookie` crate's private jar, the cookie's name
//! as associated data), under a key derived from `console.client_secret` with HMAC-SHA256 and
//! HKDF: every replica derives the same key, rotating the client secret rotates it (only the
//! sign-ins in flight at that moment fail), and whoever holds the client secret can already
//! redeem codes at Okta as the console, so the derivation adds nothing to that secret's blast
//! radius. It is `HttpOnly`, `SameSite=Lax` (Okta's redirect back is a top-level GET, which Lax
//! lets through), `Path=/` and expires after `console.login_timeout`; the expiry inside the
//! sealed value is checked again on the server. Up to [`MAX_PENDING`] sign-ins wait at once (two
//! tabs, a step-up), newest kept, and fewer when needed to stay under 4096 bytes.
//!
//! What it must never do: let the nonce or the verifier be read or changed by the browser,
//! accept a sign-in sealed for another state, or accept one past `console.login_timeout`.

use axum::http::{header, HeaderMap, HeaderValue};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::error::ConsoleError;

pub const COOKIE: &str = "jit_login";
/// Sign-ins waiting at once in one browser; a fifth drops the oldest.
pub const MAX_PENDING: usize = 4;
/// The sealed value must stay under browsers' 4096 bytes per cookie (name and attributes
/// included): 2800 bytes of JSON seal to about 3800.
const MAX_JSON: usize = 2800;
/// Domain separation: this key is for this cookie only.
const KEY_LABEL: &[u8] = b"jit-broker console sign-in cookie v1";

/// One sign-in in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
    pub created_ms: i64,
}

/// Seals and opens `jit_login`.
#[derive(Clone)]
pub struct Sealer {
    key: cookie::Key,
}

impl Sealer {
    pub fn new(client_secret: &SecretString) -> Result<Sealer, ConsoleError> {
        let mut mac = Hmac::<Sha256>::new_from_slice(client_secret.expose_secret().as_bytes())
            .map_err(|_| ConsoleError::InvalidInput("console.client_secret is unusable".into()))?;
        mac.update(KEY_LABEL);
        let master = mac.finalize().into_bytes();
        Ok(Sealer {
            key: cookie::Key::derive_from(&master),
        })
    }

    /// The sign-ins sealed in this browser's cookie that are younger than `timeout_ms`; an
    /// absent, altered or foreign cookie is no sign-in at all.
    pub fn open(&self, headers: &HeaderMap, now: i64, timeout_ms: i64) -> Vec<PendingLogin> {
        let jar = cookie::CookieJar::new();
        let private = jar.private(&self.key);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .filter(|c| c.name() == COOKIE)
            .filter_map(|c| private.decrypt(c.into_owned()))
            .filter_map(|c| serde_json::from_str::<Vec<PendingLogin>>(c.value()).ok())
            .flatten()
            .filter(|p| now >= p.created_ms && now - p.created_ms <= timeout_ms)
            .collect()
    }

    /// The `Set-Cookie` holding `list` (the newest [`MAX_PENDING`]), or clearing the cookie
    /// when `list` is empty.
    pub fn seal(
        &self,
        list: &[PendingLogin],
        secure: bool,
        timeout_ms: i64,
    ) -> Result<HeaderValue, ConsoleError> {
        // The newest first, and no more than fits a browser's 4096-byte cookie once sealed
        // (nonce and tag, then base64: about 4/3 of the JSON plus 40 bytes).
        let mut keep = &list[list.len().saturating_sub(MAX_PENDING)..];
        let mut json = serde_json::to_string(keep)
            .map_err(|e| ConsoleError::InvalidInput(format!("sign-in cookie: {e}")))?;
        while json.len() > MAX_JSON && keep.len() > 1 {
            keep = &keep[1..];
            json = serde_json::to_string(keep)
                .map_err(|e| ConsoleError::InvalidInput(format!("sign-in cookie: {e}")))?;
        }
        let (value, max_age) = if keep.is_empty() {
            (String::new(), cookie::time::Duration::ZERO)
        } else {
            (json, cookie::time::Duration::milliseconds(timeout_ms))
        };
        let c = cookie::Cookie::build((COOKIE, value))
            .path("/")
            .http_only(true)
            .secure(secure)
            .same_site(cookie::SameSite::Lax)
            .max_age(max_age)
            .build();
        let sealed = if keep.is_empty() {
            c
        } else {
            let mut jar = cookie::CookieJar::new();
            jar.private_mut(&self.key).add(c);
            jar.get(COOKIE)
                .cloned()
                .ok_or_else(|| ConsoleError::InvalidInput("sign-in cookie not sealed".into()))?
        };
        HeaderValue::from_str(&sealed.to_string())
            .map_err(|_| ConsoleError::InvalidInput("sign-in cookie is not a header".into()))
    }
}

/// Takes the sign-in for `state` out of `list` (constant-time comparison): the sign-in and what
/// remains, or [`ConsoleError::NotStartedHere`] when this browser did not start it.
pub fn take(
    mut list: Vec<PendingLogin>,
    state: &str,
) -> Result<(PendingLogin, Vec<PendingLogin>), ConsoleError> {
    let i = list
        .iter()
        .position(|p| bool::from(p.state.as_bytes().ct_eq(state.as_bytes())))
        .ok_or(ConsoleError::NotStartedHere)?;
    let p = list.remove(i);
    Ok((p, list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(state: &str, at: i64) -> PendingLogin {
        PendingLogin {
            state: state.into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            return_to: "/access".into(),
            created_ms: at,
        }
    }

    fn as_request(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(pair).unwrap());
        h
    }

    #[test]
    fn sealed_cookie_round_trips_and_hides_its_content() {
        let s = Sealer::new(&SecretString::from("client-secret")).unwrap();
        let list: Vec<_> = (0..6)
            .map(|i| pending(&format!("state{i}"), 1_000))
            .collect();
        let v = s.seal(&list, true, 600_000).unwrap();
        let text = v.to_str().unwrap();
        assert!(
            text.contains("HttpOnly") && text.contains("SameSite=Lax"),
            "{text}"
        );
        assert!(
            text.contains("Secure") && text.contains("Max-Age=600"),
            "{text}"
        );
        assert!(
            !text.contains("state5") && !text.contains("access"),
            "{text}"
        );
        let back = s.open(&as_request(&v), 2_000, 600_000);
        let states: Vec<_> = back.iter().map(|p| p.state.as_str()).collect();
        assert_eq!(states, ["state2", "state3", "state4", "state5"]);
        // Too old, another key, a flipped byte: nothing.
        assert!(s.open(&as_request(&v), 700_000, 600_000).is_empty());
        let other = Sealer::new(&SecretString::from("another-secret")).unwrap();
        assert!(other.open(&as_request(&v), 2_000, 600_000).is_empty());
        let mut bytes = text.split(';').next().unwrap().as_bytes().to_vec();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_bytes(&bytes).unwrap());
        assert!(s.open(&h, 2_000, 600_000).is_empty());
        // Taking one leaves the others; an unknown state is refused.
        let (p, rest) = take(back, "state3").unwrap();
        assert_eq!(p.state, "state3");
        assert_eq!(rest.len(), 3);
        assert!(matches!(
            take(rest, "state3"),
            Err(ConsoleError::NotStartedHere)
        ));
        // Long return paths: fewer sign-ins kept, the newest, the cookie under 4096 bytes.
        let long: Vec<_> = (0..4)
            .map(|i| PendingLogin {
                state: format!("long{i}{}", "s".repeat(38)),
                nonce: "n".repeat(43),
                pkce_verifier: "v".repeat(43),
                return_to: format!("/{}", "x".repeat(511)),
                created_ms: 1_000,
            })
            .collect();
        let v = s.seal(&long, true, 600_000).unwrap();
        assert!(v.len() < 4096, "{}", v.len());
        let back = s.open(&as_request(&v), 2_000, 600_000);
        assert!(!back.is_empty() && back.len() < 4);
        assert!(back.last().unwrap().state.starts_with("long3"));
        // An empty list clears the cookie.
        let cleared = s.seal(&[], false, 600_000).unwrap();
        assert!(cleared.to_str().unwrap().contains("Max-Age=0"));
    }
}
