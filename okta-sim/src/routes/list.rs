//! What every management route shares: the parsed query of a list call (page request, `q`
//! prefix, `filter`/`search` expressions), the paged JSON answer with its `Link` headers, and
//! the `write_route!` macro for "check write access, make one change, answer" handlers.
//!
//! Why it exists: users, groups, apps and their sub-lists parse, filter and page the same way;
//! one implementation keeps their error order (limit/cursor first, then filter) and links
//! identical across routes.
//!
//! What it must never do: parse `filter`/`search` for a route that does not ask for it (apps
//! ignore them, as Okta's list-apps call does for these parameters), or hold the org lock.

use std::collections::BTreeMap;

use axum::response::Response;
use serde_json::Value;

use crate::error::OktaError;
use crate::filter::{self, Expr};
use crate::http_util::ok_json;
use crate::pagination::{page, page_req, with_links, PageReq, Params};

/// The parsed query of one list call.
pub struct ListQuery {
    pub params: Params,
    pub req: PageReq,
    /// The `q` parameter, lowercased (a case-insensitive prefix match).
    prefix: Option<String>,
}

impl ListQuery {
    /// Parses the raw query; `limit` defaults to `default` and is clamped to `max`.
    pub fn parse(raw: Option<&str>, default: usize, max: usize) -> Result<Self, OktaError> {
        let params = Params::parse(raw);
        let req = page_req(&params, default, max)?;
        let prefix = params.get("q").map(str::to_lowercase);
        Ok(Self {
            params,
            req,
            prefix,
        })
    }

    /// The non-blank `filter` and `search` expressions, each checked against `attrs`.
    pub fn exprs(&self, attrs: &[&str]) -> Result<Vec<Expr>, OktaError> {
        let mut exprs = Vec::new();
        for key in ["filter", "search"] {
            if let Some(f) = self.params.get(key).filter(|f| !f.trim().is_empty()) {
                let e = filter::parse(f)?;
                e.check_attrs(&|a| attrs.contains(&a))?;
                exprs.push(e);
            }
        }
        Ok(exprs)
    }

    /// True without `q`, else when one of `fields` starts with it (case-insensitively).
    pub fn q_matches(&self, fields: &[&str]) -> bool {
        self.prefix
            .as_deref()
            .is_none_or(|p| fields.iter().any(|f| f.to_lowercase().starts_with(p)))
    }

    /// One page of `map` (items passing `keep`), each rendered by `render` (`None` skips an
    /// item after paging, as a dangling index entry would), plus the key to continue from.
    pub fn render_page<'a, V>(
        &self,
        map: &'a BTreeMap<String, V>,
        keep: impl FnMut(&V) -> bool,
        render: impl FnMut((&'a String, &'a V)) -> Option<Value>,
    ) -> (Vec<Value>, Option<String>) {
        let (items, next) = page(map, &self.req, keep);
        (items.into_iter().filter_map(render).collect(), next)
    }

    /// The page as a JSON array with `self` (and, when more remain, `next`) links to `path`.
    pub fn respond(
        &self,
        base_url: &str,
        path: &str,
        body: Vec<Value>,
        next: Option<String>,
    ) -> Response {
        with_links(
            ok_json(&Value::Array(body)),
            base_url,
            path,
            &self.params,
            self.req.limit,
            next.as_deref(),
        )
    }
}

/// `?activate=` of a create call: true unless it is exactly `false`.
pub fn activate_param(raw: Option<&str>) -> bool {
    Params::parse(raw)
        .get("activate")
        .is_none_or(|a| a != "false")
}

/// The empty object lifecycle calls answer with.
pub fn empty_ok() -> Response {
    ok_json(&serde_json::json!({}))
}

/// Defines a handler that checks write access to `$area`, runs one org change with the
/// caller as actor and answers `$reply`:
/// `write_route!(name, Area::X, id => String, |org, actor| org.change(actor, &id), no_content());`
/// or with two path parameters `(a, b) => (String, String)`.
macro_rules! write_route {
    (
        $name:ident, $area:expr, $path:pat => $ty:ty,
        |$org:ident, $actor:ident| $change:expr, $reply:expr
    ) => {
        pub async fn $name(
            ::axum::extract::State(sim): ::axum::extract::State<::std::sync::Arc<$crate::sim::Sim>>,
            p: $crate::auth::Principal,
            ::axum::extract::Path($path): ::axum::extract::Path<$ty>,
        ) -> $crate::routes::ListResult {
            p.require_write($area)?;
            let $actor = &p.actor;
            sim.mutate(|$org| $change)?;
            Ok($reply)
        }
    };
}
pub(crate) use write_route;
