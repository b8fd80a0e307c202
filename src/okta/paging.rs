//! Lists as streams that follow Okta's `Link: <…>; rel="next"` headers.
//!
//! Why it exists: Okta's cursors are opaque and its page sizes differ per endpoint; a client
//! that builds `after=` itself breaks when Okta changes the cursor. The stream fetches a page
//! only when the previous one is consumed, so a sync of a huge group holds one page in memory.
//!
//! What it must never do: follow a `next` link to another origin (the request would carry the
//! token there), or loop on a link that points at the page it came from.

use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::de::DeserializeOwned;

use super::error::OktaError;
use super::transport::Call;
use super::types::Priority;
use super::OktaClient;

/// The `rel="next"` target among all `Link` header lines (one relation per line in practice,
/// but a comma-separated list is valid HTTP and is accepted too).
pub(crate) fn next_link(
    headers: &HeaderMap,
    base: &url::Url,
) -> Result<Option<url::Url>, OktaError> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        for part in text.split(",") {
            let mut pieces = part.split(';');
            let Some(target) = pieces.next() else {
                continue;
            };
            let is_next = pieces.any(|p| {
                let p = p.trim();
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            });
            if !is_next {
                continue;
            }
            let target = target.trim().trim_start_matches('<').trim_end_matches('>');
            let url = base
                .join(target)
                .map_err(|e| OktaError::Protocol(format!("bad next link: {e}")))?;
            if url.origin() != base.origin() {
                return Err(OktaError::Protocol(
                    "next link points to another origin; not followed".into(),
                ));
            }
            return Ok(Some(url));
        }
    }
    Ok(None)
}

impl OktaClient {
    /// Streams every item of a list, page by page.
    pub(crate) fn paginate<W, T>(
        &self,
        op: &'static str,
        template: &'static str,
        first: Result<url::Url, OktaError>,
        priority: Priority,
    ) -> BoxStream<'_, Result<T, OktaError>>
    where
        W: DeserializeOwned + Into<T> + Send + 'static,
        T: Send + 'static,
    {
        let inner = &self.inner;
        let start = match first {
            Ok(u) => Some(u),
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        stream::try_unfold(start, move |next| async move {
            let Some(url) = next else {
                return Ok(None);
            };
            let reply = inner
                .execute(Call {
                    op,
                    method: Method::GET,
                    template,
                    url: url.clone(),
                    body: None,
                    priority,
                })
                .await?;
            if reply.status != 200 {
                return Err(reply.error());
            }
            let items: Vec<W> = reply.json(op)?;
            let next = next_link(&reply.headers, &inner.base)?;
            if next.as_ref() == Some(&url) {
                return Err(OktaError::Protocol(
                    "next link repeats the current page".into(),
                ));
            }
            Ok(Some((items, next)))
        })
        .map_ok(|items| stream::iter(items.into_iter().map(|w| Ok(w.into()))))
        .try_flatten()
        .boxed()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, LINK};

    fn base() -> url::Url {
        url::Url::parse("https://example.okta.com").unwrap()
    }

    #[test]
    fn finds_next_among_lines() {
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static(
                "<https://example.okta.com/api/v1/users?limit=2>; rel=\"self\"",
            ),
        );
        h.append(
            LINK,
            HeaderValue::from_static(
                "<https://example.okta.com/api/v1/users?after=abc&limit=2>; rel=\"next\"",
            ),
        );
        let n = next_link(&h, &base()).unwrap().unwrap();
        assert_eq!(n.query(), Some("after=abc&limit=2"));
    }

    #[test]
    fn no_next_ends() {
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static("<https://example.okta.com/api/v1/users>; rel=\"self\""),
        );
        assert!(next_link(&h, &base()).unwrap().is_none());
    }

    #[test]
    fn foreign_origin_refused() {
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static("<https://evil.example/x>; rel=\"next\""),
        );
        assert!(next_link(&h, &base()).is_err());
    }
}
