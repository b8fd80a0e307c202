//! The OAuth scopes an Okta access token needs for each `/v1` verb.
//!
//! Why it exists: a person who signs in a terminal client or an assistant consents to what it
//! may do in their name; the scopes are that consent. They narrow, never widen: a token with
//! `jit.approve` still approves only where the policy names the person (the roles and
//! [`crate::authz::decide`] answer that). Static tokens carry no scopes and are not checked here.
//!
//! The table (also in docs/api.md, "Okta access tokens"):
//!
//! | scope         | verbs                                                                  |
//! |---------------|------------------------------------------------------------------------|
//! | `jit.read`    | every `GET /v1/…`                                                      |
//! | `jit.request` | ask for access, cancel one's request, extend or end a grant             |
//! | `jit.approve` | approve or deny a request; decide or delegate access review items      |
//! | `jit.admin`   | direct grants, retries of events and outbox, opening and closing reviews |
//!
//! What it must never do: admit a route it does not know with less than `jit.admin` (a route
//! added without a line here fails closed), or grant a role.

use axum::http::Method;

pub const READ: &str = "jit.read";
pub const REQUEST: &str = "jit.request";
pub const APPROVE: &str = "jit.approve";
pub const ADMIN: &str = "jit.admin";

/// The scope `method` on the route `path` (the router's pattern, `/v1/requests/{id}/approve`)
/// needs. Unknown routes need [`ADMIN`].
pub fn required(method: &Method, path: &str) -> &'static str {
    if *method == Method::GET || *method == Method::HEAD {
        return READ;
    }
    if *method != Method::POST {
        return ADMIN;
    }
    match path {
        "/v1/requests"
        | "/v1/requests/{id}/cancel"
        | "/v1/grants/{id}/extend"
        | "/v1/grants/{id}/revoke" => REQUEST,
        "/v1/requests/{id}/approve"
        | "/v1/requests/{id}/deny"
        | "/v1/reviews/{id}/items/{item}/decide"
        | "/v1/reviews/{id}/decisions"
        | "/v1/reviews/{id}/items/{item}/delegate"
        | "/v1/reviews/{id}/delegations" => APPROVE,
        _ => ADMIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verb_needs_its_scope_and_unknown_routes_fail_closed() {
        let post = Method::POST;
        for (path, scope) in [
            ("/v1/requests", REQUEST),
            ("/v1/requests/{id}/cancel", REQUEST),
            ("/v1/grants/{id}/extend", REQUEST),
            ("/v1/grants/{id}/revoke", REQUEST),
            ("/v1/requests/{id}/approve", APPROVE),
            ("/v1/requests/{id}/deny", APPROVE),
            ("/v1/reviews/{id}/decisions", APPROVE),
            ("/v1/grants", ADMIN),
            ("/v1/outbox/{id}/retry", ADMIN),
            ("/v1/events/{uuid}/retry", ADMIN),
            ("/v1/reviews", ADMIN),
            ("/v1/reviews/{id}/close", ADMIN),
            ("/v1/something-new", ADMIN),
        ] {
            assert_eq!(required(&post, path), scope, "{path}");
        }
        assert_eq!(required(&Method::GET, "/v1/audit"), READ);
        assert_eq!(required(&Method::DELETE, "/v1/requests"), ADMIN);
    }
}
