//! Slack's v0 request signature, checked on the raw bytes before anything is parsed.
//!
//! Why it exists: a slash command or a button click is an instruction to grant access; only
//! Slack, holding the app's signing secret, may give it. Every inbound request is checked here:
//! both headers present, the timestamp within 5 minutes either way, `v0=` + hex HMAC-SHA256 of
//! `v0:{timestamp}:{body}` under one of the configured secrets (several during a rotation),
//! compared in constant time; then its signature is recorded so the same delivery replayed
//! inside the window changes nothing.
//!
//! What it must never do: parse or act on a body that failed any check, compare with `==`, or
//! say in the answer which check failed beyond what a caller can see for itself.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::store::Store;

/// How far a request's timestamp may be from our clock, either way.
pub const WINDOW_SECS: i64 = 300;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("missing X-Slack-Signature or X-Slack-Request-Timestamp")]
    MissingHeader,
    #[error("the request timestamp is not a number")]
    BadTimestamp,
    #[error("the request timestamp is more than 5 minutes from now")]
    Stale,
    #[error("the signature does not match")]
    BadSignature,
}

/// `v0=` + lowercase hex HMAC-SHA256 over `v0:{ts}:{body}`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this arm is unreachable in practice.
        Err(_) => return String::new(),
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks headers, window and signature. Returns the signature (the replay key) when valid.
pub fn verify(
    secrets: &[SecretString],
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
) -> Result<String, VerifyError> {
    let sig = headers
        .get("x-slack-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or(VerifyError::MissingHeader)?;
    let ts = headers
        .get("x-slack-request-timestamp")
        .and_then(|v| v.to_str().ok())
        .ok_or(VerifyError::MissingHeader)?;
    let secs: i64 = ts.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
    if (now_ms / 1000).saturating_sub(secs).abs() > WINDOW_SECS {
        return Err(VerifyError::Stale);
    }
    // Every secret is tried (no early exit), so timing says nothing about which one matched.
    let mut ok = subtle::Choice::from(0u8);
    for s in secrets {
        let expected = sign(s.expose_secret(), ts, body);
        ok |= expected.as_bytes().ct_eq(sig.as_bytes());
    }
    if bool::from(ok) {
        Ok(sig.to_string())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// The purge of `slack_deliveries` past twice the timestamp window (task `slack.purge`): an
/// older signature protects nothing, its timestamp fails the check first.
pub const DELIVERIES: crate::store::purge::Table = crate::store::purge::Table {
    task: "slack.purge",
    table: "slack_deliveries",
    key: "signature",
    time: "received_at",
    keep: std::time::Duration::from_secs(2 * WINDOW_SECS as u64),
};

/// Records a verified delivery; `false` when the same signature was seen before (a replay).
/// Old rows are pruned in passing: anything older than the window fails the timestamp check.
pub async fn first_delivery(
    store: &Store,
    signature: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let mut conn = store.pool().acquire().await?;
    let inserted = sqlx::query(
        "INSERT INTO slack_deliveries (signature, received_at) VALUES ($1, $2) \
         ON CONFLICT (signature) DO NOTHING",
    )
    .bind(signature)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    // Pruning on about one delivery in 16 (a signature's last hex digit is uniform) keeps the
    // table small without a second statement per request.
    if signature.ends_with('0') {
        sqlx::query("DELETE FROM slack_deliveries WHERE received_at < $1")
            .bind(now_ms - 2 * WINDOW_SECS * 1000)
            .execute(&mut *conn)
            .await?;
    }
    Ok(inserted == 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(sig: &str, ts: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("X-Slack-Signature", sig.parse().unwrap());
        h.insert("X-Slack-Request-Timestamp", ts.parse().unwrap());
        h
    }

    /// The example in Slack's "Verifying requests from Slack" documentation.
    #[test]
    fn slack_documentation_vector() {
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let s = sign("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body);
        assert_eq!(
            s,
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn window_both_ways_and_rotation() {
        let secrets = vec![SecretString::from("new"), SecretString::from("old")];
        let now = 1_700_000_000_000i64;
        let ts = (now / 1000).to_string();
        let body = b"a=b";
        let by_old = sign("old", &ts, body);
        assert!(verify(&secrets, &headers(&by_old, &ts), body, now).is_ok());
        let wrong = sign("other", &ts, body);
        assert_eq!(
            verify(&secrets, &headers(&wrong, &ts), body, now),
            Err(VerifyError::BadSignature)
        );
        for off in [-360i64, 360] {
            let t = (now / 1000 + off).to_string();
            let s = sign("new", &t, body);
            assert_eq!(
                verify(&secrets, &headers(&s, &t), body, now),
                Err(VerifyError::Stale)
            );
        }
        assert_eq!(
            verify(&secrets, &HeaderMap::new(), body, now),
            Err(VerifyError::MissingHeader)
        );
        let good = sign("new", &ts, body);
        assert_eq!(
            verify(&secrets, &headers(&good, &ts), b"a=c", now),
            Err(VerifyError::BadSignature)
        );
    }
}
