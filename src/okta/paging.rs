//! Lists as streams that follow Okta's `Link: <…>; rel="next"` headers.
//!
//! Why it exists: Okta's cursors are opaque and its page sizes differ per endpoint; a client
//! that builds `after=` itself breaks when Okta changes the cursor. The stream fetches a page
//! only when the previous one is consumed, so a sync of a huge group holds one page in memory.
//!
//! The list calls themselves (`list_users`, `list_groups`, …) live here too: each is just a
//! first URL with Okta's largest page size for that endpoint.
//!
//! What it must never do: follow a `next` link to another origin (the request would carry the
//! token there), or loop on a link that points at the page it came from.

use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::de::DeserializeOwned;

use super::client::check_id;
use super::error::OktaError;
use super::transport::Call;
use super::types::*;
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
            return same_origin(base, target).map(Some);
        }
    }
    Ok(None)
}

/// `target` resolved against `base`, refused unless it stays on `base`'s origin.
fn same_origin(base: &url::Url, target: &str) -> Result<url::Url, OktaError> {
    let url = base
        .join(target)
        .map_err(|e| OktaError::Protocol(format!("bad next link: {e}")))?;
    if url.origin() != base.origin() {
        return Err(OktaError::Protocol(
            "next link points to another origin; not followed".into(),
        ));
    }
    Ok(url)
}

/// Okta's largest page per list (FACTS: users 200, app users 500, members 1000, groups 10000).
const MAX_USERS: u32 = 200;
const MAX_APP_USERS: u32 = 500;
const MAX_APPS: u32 = 200;
const MAX_MEMBERS: u32 = 1000;
const MAX_GROUPS: u32 = 10000;

const T_USERS: &str = "/api/v1/users";
const T_GROUPS: &str = "/api/v1/groups";
const T_GROUP_USERS: &str = "/api/v1/groups/{groupId}/users";
const T_APP_USERS: &str = "/api/v1/apps/{appId}/users";
const T_APPS: &str = "/api/v1/apps";
const T_ROLE_ASSIGNEES: &str = "/api/v1/iam/assignees/users";
/// The role-assignees list's largest page (its default, 100).
const MAX_ROLE_ASSIGNEES: u32 = 100;

/// One page of `GET /api/v1/iam/assignees/users`: Okta's IAM lists page in the body.
#[derive(serde::Deserialize)]
struct AssigneesPage {
    #[serde(default)]
    value: Vec<Assignee>,
    #[serde(default, rename = "_links")]
    links: Option<AssigneesLinks>,
}

#[derive(serde::Deserialize)]
struct Assignee {
    id: String,
}

#[derive(serde::Deserialize)]
struct AssigneesLinks {
    next: Option<Href>,
}

#[derive(serde::Deserialize)]
struct Href {
    href: String,
}

impl OktaClient {
    fn limit(&self, max: u32) -> (&'static str, String) {
        ("limit", self.inner.page_size.min(max).to_string())
    }

    pub fn list_group_members(
        &self,
        group_id: &str,
        p: Priority,
    ) -> BoxStream<'_, Result<User, OktaError>> {
        let first = check_id(group_id).and_then(|g| {
            self.url(
                &["api", "v1", "groups", g, "users"],
                &[self.limit(MAX_MEMBERS)],
            )
        });
        self.paginate::<WireUser, User>("list_group_members", T_GROUP_USERS, first, p)
    }

    /// Every group at Okta's largest page (10,000) and members at theirs (1,000), whatever
    /// `okta.page_size` says: rate limits count calls, and a sync reads whole lists.
    pub fn list_all_groups(&self, p: Priority) -> BoxStream<'_, Result<Group, OktaError>> {
        let first = self.url(
            &["api", "v1", "groups"],
            &[("limit", MAX_GROUPS.to_string())],
        );
        self.paginate::<WireGroup, Group>("list_groups", T_GROUPS, first, p)
    }

    /// All members of a group at Okta's largest page (see [`OktaClient::list_all_groups`]).
    pub fn list_all_group_members(
        &self,
        group_id: &str,
        p: Priority,
    ) -> BoxStream<'_, Result<User, OktaError>> {
        let first = check_id(group_id).and_then(|g| {
            self.url(
                &["api", "v1", "groups", g, "users"],
                &[("limit", MAX_MEMBERS.to_string())],
            )
        });
        self.paginate::<WireUser, User>("list_group_members", T_GROUP_USERS, first, p)
    }

    /// Every app (Okta's largest page, 200).
    pub fn list_apps(&self, p: Priority) -> BoxStream<'_, Result<App, OktaError>> {
        let first = self.url(&["api", "v1", "apps"], &[("limit", MAX_APPS.to_string())]);
        self.paginate::<WireApp, App>("list_apps", T_APPS, first, p)
    }

    pub fn list_groups(
        &self,
        query: &GroupQuery,
        p: Priority,
    ) -> BoxStream<'_, Result<Group, OktaError>> {
        let mut q = vec![self.limit(MAX_GROUPS)];
        for (k, v) in [
            ("search", &query.search),
            ("filter", &query.filter),
            ("q", &query.q),
        ] {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        }
        let first = self.url(&["api", "v1", "groups"], &q);
        self.paginate::<WireGroup, Group>("list_groups", T_GROUPS, first, p)
    }

    pub fn list_app_users(
        &self,
        app_id: &str,
        p: Priority,
    ) -> BoxStream<'_, Result<AppUser, OktaError>> {
        let first = check_id(app_id).and_then(|a| {
            self.url(
                &["api", "v1", "apps", a, "users"],
                &[self.limit(MAX_APP_USERS)],
            )
        });
        self.paginate::<WireAppUser, AppUser>("list_app_users", T_APP_USERS, first, p)
    }

    pub fn list_users(&self, p: Priority) -> BoxStream<'_, Result<User, OktaError>> {
        let first = self.url(&["api", "v1", "users"], &[self.limit(MAX_USERS)]);
        self.paginate::<WireUser, User>("list_users", T_USERS, first, p)
    }

    /// Ids of every user holding at least one admin role (Okta's "list all users with role
    /// assignments"): how a sync finds roles given by hand to people the broker has never
    /// granted anything. Unlike the other lists, this one pages with `_links.next` in the body;
    /// the same rules hold (same origin only, never the same page twice).
    pub async fn list_role_assignees(&self, p: Priority) -> Result<Vec<String>, OktaError> {
        const OP: &str = "list_role_assignees";
        let mut next = Some(self.url(
            &["api", "v1", "iam", "assignees", "users"],
            &[self.limit(MAX_ROLE_ASSIGNEES)],
        )?);
        let mut ids = Vec::new();
        while let Some(url) = next.take() {
            let reply = self
                .call(OP, Method::GET, T_ROLE_ASSIGNEES, url.clone(), None, p)
                .await?;
            if reply.status != 200 {
                return Err(reply.error());
            }
            let page: AssigneesPage = reply.json(OP)?;
            ids.extend(page.value.into_iter().map(|a| a.id));
            if let Some(href) = page.links.and_then(|l| l.next) {
                let n = same_origin(&self.inner.base, &href.href)?;
                if n == url {
                    return Err(OktaError::Protocol(
                        "next link repeats the current page".into(),
                    ));
                }
                next = Some(n);
            }
        }
        Ok(ids)
    }

    /// Users whose profile email is `email` (Okta's `search`, exact and case-insensitive): how a
    /// person is found when their login is not their email address. An email with a quote or a
    /// backslash matches nobody (it could not be written into the expression safely).
    pub fn find_users_by_email(
        &self,
        email: &str,
        p: Priority,
    ) -> BoxStream<'_, Result<User, OktaError>> {
        let first = if email.contains(['"', '\\']) || email.chars().any(char::is_control) {
            Err(OktaError::InvalidId(email.to_string()))
        } else {
            self.url(
                &["api", "v1", "users"],
                &[
                    self.limit(MAX_USERS),
                    ("search", format!("profile.email eq \"{email}\"")),
                ],
            )
        };
        self.paginate::<WireUser, User>("search_users", T_USERS, first, p)
    }

    /// Users with the profile fields reviews need. `updated_since`: only users whose
    /// `lastUpdated` is later (Okta's `filter=lastUpdated gt "…"`), the sync's delta read.
    pub fn list_user_records(
        &self,
        updated_since: Option<chrono::DateTime<chrono::Utc>>,
        p: Priority,
    ) -> BoxStream<'_, Result<UserRecord, OktaError>> {
        let mut q = vec![self.limit(MAX_USERS)];
        if let Some(t) = updated_since {
            q.push((
                "filter",
                format!(
                    "lastUpdated gt \"{}\"",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                ),
            ));
        }
        let first = self.url(&["api", "v1", "users"], &q);
        self.paginate::<WireUserRecord, UserRecord>("list_users", T_USERS, first, p)
    }

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
