//! Errors that say what is wrong without repeating the value: configuration errors and the
//! errors of calls to operator-configured URLs.
//!
//! Why it exists: the libraries under the configuration quote what they could not parse
//! (serde: `found string "…"`, TOML: the offending source line), and a value in a secret-bearing
//! key is a secret: a Slack signing secret, an inline `whsec_…` in `callbacks.integrations`, a
//! password in a database URL. `check-config` and `serve` print these errors, so they reach
//! terminals, CI logs and log shippers. Here every configuration error is rebuilt from its parts
//! with the value left out, for every key (a key added later cannot forget), and a library's
//! free-text message is dropped altogether under a secret-bearing key. Likewise `reqwest`
//! errors carry the URL they were for, and an outbound endpoint's URL may hold a credential.
//!
//! The other way round, [`shown`] bounds what outside input (a duration or time someone typed)
//! an error may quote back to them.
//!
//! What it must never do: put a configuration value, or a URL an error came from, into a
//! message.

use figment::error::{Actual, Kind};

/// Keys whose value is, or may contain, a secret: the secrets themselves, lists of tables that
/// carry one inline (`callbacks.integrations`, `outbound.endpoints`, `auth.tokens`), and URLs
/// that may carry a password.
pub fn is_secret_key(path: &[String]) -> bool {
    const PREFIXES: [&str; 7] = [
        "audit.witness_urls",
        "callbacks.integrations",
        "oncall.sources",
        "outbound.endpoints",
        "auth.tokens",
        "database.url",
        "redis.url",
    ];
    const WORDS: [&str; 5] = ["secret", "token", "password", "private_key", "key"];
    let joined = path.join(".");
    // No path: the error is about a whole source, which may hold anything.
    path.is_empty()
        || PREFIXES.iter().any(|p| joined.starts_with(p))
        || path
            .iter()
            .any(|seg| WORDS.iter().any(|w| seg.to_ascii_lowercase().contains(w)))
}

/// What kind of value serde found, never the value itself.
fn kind_of(a: &Actual) -> &'static str {
    match a {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) => "a number",
        Actual::Char(_) => "a character",
        Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit => "nothing",
        Actual::Option => "an optional value",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        _ => "a value",
    }
}

/// A figment error kind as a sentence without the offending value. `secret`: the key is
/// secret-bearing, so a library's free-text message (which may quote the value) is not shown.
pub fn figment_kind(kind: &Kind, secret: bool) -> String {
    match kind {
        Kind::InvalidType(a, expected) => {
            format!("invalid type: found {}, expected {expected}", kind_of(a))
        }
        Kind::InvalidValue(a, expected) => {
            format!("invalid value: found {}, expected {expected}", kind_of(a))
        }
        Kind::InvalidLength(n, expected) => {
            format!("invalid length {n}, expected {expected}")
        }
        Kind::UnknownVariant(_, expected) => format!(
            "unknown value; expected one of {}",
            expected
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Kind::DuplicateField(f) => format!("duplicate key `{f}`"),
        Kind::Unsupported(a) => format!("unsupported value: {}", kind_of(a)),
        Kind::UnsupportedKey(a, _) => format!("unsupported key: {}", kind_of(a)),
        Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => "number out of range".into(),
        Kind::Message(m) if !secret => m.clone(),
        // Unknown and missing fields are handled by the caller (they name keys, not values).
        _ => "invalid value (not shown: this key holds a secret)".into(),
    }
}

/// A TOML syntax error as "line L, column C: what", without the source line TOML quotes.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let what = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            format!("line {line}, column {column}: {what}")
        }
        None => what,
    }
}

/// A `reqwest` error's cause chain without the URL it was for.
pub fn http_error(e: reqwest::Error) -> String {
    crate::error::chain(&e.without_url())
}

/// Outside input quoted back in an error (`99h`, `1 fortnight`, as written): at most 40
/// characters, control characters replaced, so an error can say what was typed without
/// becoming a channel for anything else. Never for secrets or configuration values.
pub fn shown(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(str::to_string).collect()
    }

    #[test]
    fn secret_keys_are_recognised() {
        for k in [
            "slack.signing_secrets",
            "slack.bot_token",
            "okta.api_token",
            "okta.private_key",
            "console.client_secret",
            "events.previous_secret",
            "database.password",
            "database.url",
            "redis.url",
            "callbacks.integrations.0.name",
            "outbound.endpoints",
            "auth.tokens",
        ] {
            assert!(is_secret_key(&p(k)), "{k}");
        }
        for k in ["server.listen", "log.format", "events.retention"] {
            assert!(!is_secret_key(&p(k)), "{k}");
        }
    }

    #[test]
    fn kinds_never_show_the_value() {
        let m = figment_kind(
            &Kind::InvalidType(Actual::Str("MARKER".into()), "a sequence".into()),
            true,
        );
        assert!(!m.contains("MARKER") && m.contains("a string"), "{m}");
        let m = figment_kind(&Kind::Message("bad MARKER".into()), true);
        assert!(!m.contains("MARKER"), "{m}");
        let m = figment_kind(
            &Kind::UnknownVariant("MARKER".into(), &["text", "json"]),
            false,
        );
        assert!(!m.contains("MARKER") && m.contains("`json`"), "{m}");
    }

    #[test]
    fn toml_errors_name_the_place_not_the_line() {
        let text = "[a]\nsecret = \"MARKER\nb = 1\n";
        let e = text.parse::<toml::Table>().unwrap_err();
        let m = toml_error(text, &e);
        assert!(!m.contains("MARKER") && m.starts_with("line 2"), "{m}");
    }
}
