//! Okta-looking identifiers and timestamps.
//!
//! Why it exists: clients (and humans reading logs) recognise objects by their id prefixes
//! (`00u` users, `00g` groups, `0oa` apps, `0ua` app users), and Okta formats times as
//! RFC 3339 UTC with milliseconds. Object ids come from the org's seeded RNG, so a seeded run
//! creates the same ids every time; request and error ids only need to be unique.
//!
//! What it must never do: produce ids a client could mistake for a cursor or an offset.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An Okta id: `prefix` followed by base62 characters, 20 characters in all.
pub fn object_id(prefix: &str, rng: &mut impl Rng) -> String {
    let mut s = String::with_capacity(20);
    s.push_str(prefix);
    while s.len() < 20 {
        s.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    s
}

static REQ_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A unique request id shaped like Okta's (`X0f4XZ5Kk@1h6qjS2ssjmQAAACM`, 27 characters).
pub fn request_id() -> String {
    let n = REQ_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut s = String::with_capacity(27);
    let mut rng = rand::thread_rng();
    while s.len() < 19 {
        s.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    s.push_str(&format!("{:08X}", n & 0xFFFF_FFFF));
    s
}

/// A unique `errorId` (`oae` + 22 characters).
pub fn error_id() -> String {
    let mut rng = rand::thread_rng();
    let mut s = String::from("oae");
    while s.len() < 25 {
        s.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    s
}

/// Wall-clock milliseconds since the Unix epoch (the simulator plays a remote server: its
/// own clock is the one clients must read from headers, never assume).
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `2020-08-27T18:15:58.000Z`.
pub fn fmt_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 time (as used in filters) to Unix ms.
pub fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// A standard UUID string for events and envelopes.
pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
