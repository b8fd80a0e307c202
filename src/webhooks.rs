//! Standard Webhooks: signing what the broker sends and verifying what it receives.
//!
//! Why it exists: approval callbacks from other systems (ServiceNow, Jira, PagerDuty, portals)
//! change who holds access, and the broker's outbound events are what those systems act on, so
//! both directions use one well-known format that existing libraries verify: `webhook-id`,
//! `webhook-timestamp` (Unix seconds), `webhook-signature` (`v1,<base64 HMAC-SHA256>` over
//! `id.timestamp.body`, several space-separated during a key rotation), secrets written
//! `whsec_<base64 key>`. The spec's published test vector is checked in the tests below.
//!
//! What it must never do: parse a body before its signature is verified, compare signatures
//! with `==` (timing), accept a timestamp outside the tolerance in either direction, or print a
//! secret (keys are held in [`SecretBox`]es and redacted in `Debug`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// A signing key, decoded from `whsec_<base64>`.
pub struct WebhookSecret {
    key: SecretBox<Vec<u8>>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl Clone for WebhookSecret {
    fn clone(&self) -> Self {
        WebhookSecret {
            key: SecretBox::new(Box::new(self.key.expose_secret().clone())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret must be `whsec_` followed by base64 of at least 16 bytes")]
    Malformed,
}

impl WebhookSecret {
    pub fn parse(text: &str) -> Result<WebhookSecret, SecretError> {
        let b64 = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or(SecretError::Malformed)?;
        let key = B64.decode(b64).map_err(|_| SecretError::Malformed)?;
        if key.len() < 16 {
            return Err(SecretError::Malformed);
        }
        Ok(WebhookSecret {
            key: SecretBox::new(Box::new(key)),
        })
    }

    /// Several secrets in one value (whitespace- or comma-separated): the rotation form.
    pub fn parse_many(text: &SecretString) -> Result<Vec<WebhookSecret>, SecretError> {
        let list: Vec<WebhookSecret> = text
            .expose_secret()
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .map(WebhookSecret::parse)
            .collect::<Result<_, _>>()?;
        if list.is_empty() {
            return Err(SecretError::Malformed);
        }
        Ok(list)
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
        let mut mac = match HmacSha256::new_from_slice(self.key.expose_secret()) {
            Ok(m) => m,
            Err(_) => unreachable_hmac(),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64 signature>` of `id.timestamp.body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let sig = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", B64.encode(sig))
    }
}

#[allow(clippy::panic)]
fn unreachable_hmac() -> ! {
    // `Hmac::new_from_slice` only fails for fixed-key-size MACs, which HMAC is not.
    panic!("HMAC-SHA256 refused a key")
}

/// Why a delivery was not accepted. The HTTP answer never says which (I7): every variant maps
/// to the same 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("a webhook header is missing or malformed")]
    MissingHeader,
    #[error("the timestamp is outside the tolerance")]
    Timestamp,
    #[error("no signature matches")]
    Signature,
}

/// The three headers, as received.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signatures: &'a str,
}

/// Checks the timestamp window (both ways) and then every `v1,` signature in the header
/// against every secret, in constant time per comparison. Returns the index of the secret that
/// matched (which integration, which key of a rotation).
pub fn verify(
    secrets: &[&WebhookSecret],
    h: Signed<'_>,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<usize, VerifyError> {
    if h.id.is_empty() || h.id.len() > 256 || h.signatures.is_empty() {
        return Err(VerifyError::MissingHeader);
    }
    let ts: i64 = h
        .timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::MissingHeader)?;
    // `abs_diff`: a timestamp near i64::MIN or i64::MAX overflowed `now - ts` (found by the
    // property tests: a panic, answered 500, in debug builds).
    if now_s.abs_diff(ts) > tolerance_s.unsigned_abs() {
        return Err(VerifyError::Timestamp);
    }
    let presented: Vec<Vec<u8>> = h
        .signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b| B64.decode(b).ok())
        .collect();
    let mut found = None;
    for (i, secret) in secrets.iter().enumerate() {
        let expected = secret.mac(h.id, ts, body).finalize().into_bytes();
        for p in &presented {
            if bool::from(expected.as_slice().ct_eq(p.as_slice())) && found.is_none() {
                found = Some(i);
            }
        }
    }
    found.ok_or(VerifyError::Signature)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn h<'a>(sig: &'a str, ts: &'a str) -> Signed<'a> {
        Signed {
            id: ID,
            timestamp: ts,
            signatures: sig,
        }
    }

    #[test]
    fn the_specification_test_vector_signs_and_verifies() {
        let s = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(s.sign(ID, TS, BODY), SIG);
        assert_eq!(verify(&[&s], h(SIG, "1614265330"), BODY, TS, 300), Ok(0));
    }

    #[test]
    fn rotation_accepts_any_listed_signature_and_any_configured_key() {
        let old = WebhookSecret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        let s = WebhookSecret::parse(SECRET).unwrap();
        let both = format!("v1,bm9wZQ== {SIG}");
        assert_eq!(
            verify(&[&old, &s], h(&both, "1614265330"), BODY, TS, 300),
            Ok(1)
        );
    }

    #[test]
    fn refuses_tampering_old_and_future_timestamps_and_garbage() {
        let s = WebhookSecret::parse(SECRET).unwrap();
        let tampered = br#"{"test": 2432232315}"#;
        assert_eq!(
            verify(&[&s], h(SIG, "1614265330"), tampered, TS, 300),
            Err(VerifyError::Signature)
        );
        assert_eq!(
            verify(&[&s], h(SIG, "1614265330"), BODY, TS + 301, 300),
            Err(VerifyError::Timestamp)
        );
        assert_eq!(
            verify(&[&s], h(SIG, "1614265330"), BODY, TS - 301, 300),
            Err(VerifyError::Timestamp)
        );
        assert_eq!(
            verify(&[&s], h(SIG, "soon"), BODY, TS, 300),
            Err(VerifyError::MissingHeader)
        );
        assert_eq!(
            verify(&[&s], h("v2,abc v1,!!!", "1614265330"), BODY, TS, 300),
            Err(VerifyError::Signature)
        );
        let other = WebhookSecret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert_eq!(
            verify(&[&other], h(SIG, "1614265330"), BODY, TS, 300),
            Err(VerifyError::Signature)
        );
    }

    #[test]
    fn secrets_are_checked_and_never_printed() {
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(WebhookSecret::parse("whsec_!!").is_err());
        assert!(WebhookSecret::parse("whsec_YWJj").is_err());
        let s = WebhookSecret::parse(SECRET).unwrap();
        assert!(!format!("{s:?}").contains("MfKQ"));
        let many = WebhookSecret::parse_many(&SecretString::from(format!(
            "{SECRET} whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        )))
        .unwrap();
        assert_eq!(many.len(), 2);
    }
}
