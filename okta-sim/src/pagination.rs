//! Cursor pagination with `Link` headers, as Okta does it.
//!
//! Why it exists: clients must follow `rel="next"` links and never build cursors. The cursor
//! here is base64url of `v1:<last key>`, opaque to clients, stable under concurrent inserts
//! (it names the last item, not an offset), and a malformed one answers 400 E0000029 like the
//! recording.
//!
//! What it must never do: accept a bare offset or id as a cursor, or emit a `next` link on the
//! last page.

use std::collections::BTreeMap;
use std::ops::Bound;

use axum::http::{header, HeaderValue};
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::OktaError;

/// Parsed query parameters of a list call, in order (kept for the links).
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Self {
        Params(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `limit` and decoded `after` of one page request.
#[derive(Debug, Clone)]
pub struct PageReq {
    pub limit: usize,
    pub after: Option<String>,
}

/// Reads `limit` (default `default`, values above `max` clamped to `max` — Okta's tolerant
/// behaviour) and `after`.
pub fn page_req(p: &Params, default: usize, max: usize) -> Result<PageReq, OktaError> {
    let limit = match p.get("limit") {
        None | Some("") => default,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 1 => (n as usize).min(max),
            _ => {
                return Err(OktaError::validation("limit")
                    .with_cause("limit: The limit must be a positive integer."))
            }
        },
    };
    let after = match p.get("after") {
        None | Some("") => None,
        Some(c) => Some(decode_cursor(c).ok_or_else(OktaError::invalid_paging)?),
    };
    Ok(PageReq { limit, after })
}

pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{key}"))
}

fn decode_cursor(c: &str) -> Option<String> {
    let raw = URL_SAFE_NO_PAD.decode(c.trim_end_matches('=')).ok()?;
    let s = String::from_utf8(raw).ok()?;
    s.strip_prefix("v1:").map(str::to_string)
}

/// One page of a key-ordered map: items after the cursor that pass `keep`, plus the key to
/// continue from when more items remain.
pub fn page<'a, V>(
    map: &'a BTreeMap<String, V>,
    req: &PageReq,
    mut keep: impl FnMut(&V) -> bool,
) -> (Vec<(&'a String, &'a V)>, Option<String>) {
    let lower = match &req.after {
        Some(a) => Bound::Excluded(a.clone()),
        None => Bound::Unbounded,
    };
    let mut out = Vec::with_capacity(req.limit.min(1024));
    let mut next = None;
    let mut last_key: Option<&String> = None;
    for (k, v) in map.range::<String, _>((lower, Bound::Unbounded)) {
        if !keep(v) {
            continue;
        }
        if out.len() == req.limit {
            next = last_key.cloned();
            break;
        }
        out.push((k, v));
        last_key = Some(k);
    }
    (out, next)
}

/// One page of a sorted id set (group members).
pub fn page_set<'a>(
    set: &'a std::collections::BTreeSet<String>,
    req: &PageReq,
    mut keep: impl FnMut(&str) -> bool,
) -> (Vec<&'a String>, Option<String>) {
    let lower = match &req.after {
        Some(a) => Bound::Excluded(a.clone()),
        None => Bound::Unbounded,
    };
    let mut out: Vec<&String> = Vec::with_capacity(req.limit.min(1024));
    let mut next = None;
    for k in set.range::<String, _>((lower, Bound::Unbounded)) {
        if !keep(k) {
            continue;
        }
        if out.len() == req.limit {
            next = out.last().map(|s| s.to_string());
            break;
        }
        out.push(k);
    }
    (out, next)
}

/// Adds `Link` headers: `rel="self"` always, `rel="next"` with a cursor after `next_key`.
pub fn with_links(
    mut resp: Response,
    base: &str,
    path: &str,
    p: &Params,
    limit: usize,
    next_key: Option<&str>,
) -> Response {
    let others: Vec<(String, String)> =
        p.0.iter()
            .filter(|(k, _)| k != "after" && k != "limit")
            .cloned()
            .collect();
    let build = |after: Option<&str>| {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &others {
            ser.append_pair(k, v);
        }
        if let Some(a) = after {
            ser.append_pair("after", a);
        }
        ser.append_pair("limit", &limit.to_string());
        format!("{base}{path}?{}", ser.finish())
    };
    let self_after = p.get("after").filter(|a| !a.is_empty());
    let mut links = vec![format!("<{}>; rel=\"self\"", build(self_after))];
    if let Some(k) = next_key {
        links.push(format!(
            "<{}>; rel=\"next\"",
            build(Some(&encode_cursor(k)))
        ));
    }
    for l in links {
        if let Ok(v) = HeaderValue::from_str(&l) {
            resp.headers_mut().append(header::LINK, v);
        }
    }
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_raw_ids() {
        let p = Params::parse(Some(&format!("after={}&limit=5", encode_cursor("00u123"))));
        let req = page_req(&p, 200, 200).unwrap();
        assert_eq!(req.after.as_deref(), Some("00u123"));
        assert_eq!(req.limit, 5);
        assert!(page_req(&Params::parse(Some("after=00u123")), 200, 200).is_err());
    }

    #[test]
    fn pages_cover_the_map_exactly_once() {
        let map: BTreeMap<String, u32> = (0..25).map(|i| (format!("k{i:03}"), i)).collect();
        let mut req = PageReq {
            limit: 10,
            after: None,
        };
        let mut seen = Vec::new();
        loop {
            let (items, next) = page(&map, &req, |v| v % 2 == 0);
            seen.extend(items.iter().map(|(_, v)| **v));
            match next {
                Some(k) => req.after = Some(k),
                None => break,
            }
        }
        assert_eq!(seen, (0..25).filter(|v| v % 2 == 0).collect::<Vec<_>>());
    }
}
