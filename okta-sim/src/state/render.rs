//! JSON renderings of org objects, field for field as Okta's recordings show them.
//!
//! Why it exists: clients deserialise these bodies; field names and nesting must match the
//! cassettes (`id, status, created, activated, …, profile{…}, credentials{…}, _links`).
//!
//! What it must never do: leak simulator internals (assignment bookkeeping) into bodies.

use serde_json::{json, Value};

use super::{App, Assignment, Group, Org, RoleAssignment, User};
use crate::ids::fmt_ms;

fn opt_ms(v: Option<i64>) -> Value {
    v.map(|m| Value::String(fmt_ms(m))).unwrap_or(Value::Null)
}

/// A user as lists show it (`GET /api/v1/users`, group members): `_links` carries only `self`,
/// as recorded.
pub fn user(base: &str, u: &User) -> Value {
    let mut v = user_base(base, u);
    // Okta leaves unset profile attributes out; only a user given a manager shows them.
    if let Some(m) = &u.manager {
        v["profile"]["manager"] = json!(m);
    }
    if let Some(m) = &u.manager_id {
        v["profile"]["managerId"] = json!(m);
    }
    v
}

/// The user type and profile schema every simulated user has (ids in Okta's format).
pub const USER_TYPE_ID: &str = "oty1simdefaulttype01";
pub const USER_SCHEMA_ID: &str = "osc1simdefaultschema";

/// A single user (`GET /api/v1/users/{id}`, create): `_links` adds `schema`, `type` and the
/// lifecycle operations the status allows, as Okta does. Recorded: STAGED → `activate`;
/// ACTIVE → `suspend`, `deactivate`, `resetPassword`, `expirePassword`,
/// `changeRecoveryQuestion`, `changePassword`. The other statuses follow Okta's lifecycle
/// (which operation each status accepts) and are unverified as link sets.
pub fn user_full(base: &str, u: &User) -> Value {
    let mut v = user(base, u);
    let href = format!("{base}/api/v1/users/{}", u.id);
    let mut links = serde_json::Map::new();
    links.insert("self".into(), json!({ "href": href }));
    links.insert(
        "schema".into(),
        json!({ "href": format!("{base}/api/v1/meta/schemas/user/{USER_SCHEMA_ID}") }),
    );
    links.insert(
        "type".into(),
        json!({ "href": format!("{base}/api/v1/meta/types/user/{USER_TYPE_ID}") }),
    );
    let ops: &[(&str, &str)] = match u.status.as_str() {
        "STAGED" => &[("activate", "lifecycle/activate")],
        "PROVISIONED" => &[
            ("reactivate", "lifecycle/reactivate"),
            ("deactivate", "lifecycle/deactivate"),
        ],
        "ACTIVE" | "PASSWORD_EXPIRED" | "RECOVERY" => &[
            ("suspend", "lifecycle/suspend"),
            ("deactivate", "lifecycle/deactivate"),
            ("resetPassword", "lifecycle/reset_password"),
            ("expirePassword", "lifecycle/expire_password"),
            (
                "changeRecoveryQuestion",
                "credentials/change_recovery_question",
            ),
            ("changePassword", "credentials/change_password"),
        ],
        "SUSPENDED" => &[
            ("unsuspend", "lifecycle/unsuspend"),
            ("deactivate", "lifecycle/deactivate"),
        ],
        "LOCKED_OUT" => &[
            ("unlock", "lifecycle/unlock"),
            ("deactivate", "lifecycle/deactivate"),
        ],
        "DEPROVISIONED" => &[("activate", "lifecycle/activate")],
        _ => &[],
    };
    for (rel, path) in ops {
        links.insert(
            (*rel).into(),
            json!({ "href": format!("{href}/{path}"), "method": "POST" }),
        );
    }
    v["_links"] = Value::Object(links);
    v
}

fn user_base(base: &str, u: &User) -> Value {
    json!({
        "id": u.id,
        "status": u.status,
        "created": fmt_ms(u.created),
        "activated": opt_ms(u.activated),
        "statusChanged": opt_ms(u.status_changed),
        "lastLogin": null,
        "lastUpdated": fmt_ms(u.last_updated),
        "passwordChanged": opt_ms(u.password_changed),
        "type": { "id": USER_TYPE_ID },
        "profile": {
            "firstName": u.first_name,
            "lastName": u.last_name,
            "mobilePhone": null,
            "secondEmail": null,
            "login": u.login,
            "email": u.email,
        },
        "credentials": {
            "password": {},
            "emails": [{ "value": u.email, "status": "VERIFIED", "type": "PRIMARY" }],
            "provider": { "type": "OKTA", "name": "OKTA" },
        },
        "_links": { "self": { "href": format!("{base}/api/v1/users/{}", u.id) } },
    })
}

const GROUP_LOGO_MEDIUM: &str = "https://ok11static.oktacdn.com/assets/img/logos/groups/okta-medium.d7fb831bc4e7e1a5d8bd35dfaf405d9e.png";
const GROUP_LOGO_LARGE: &str = "https://ok11static.oktacdn.com/assets/img/logos/groups/okta-large.511fcb0de9da185b52589cb14d581c2c.png";

pub fn group(base: &str, org: &Org, g: &Group, stats: bool) -> Value {
    let mut v = json!({
        "id": g.id,
        "created": fmt_ms(g.created),
        "lastUpdated": fmt_ms(g.last_updated),
        "lastMembershipUpdated": fmt_ms(g.last_membership_updated),
        "objectClass": ["okta:user_group"],
        "type": g.kind,
        "profile": { "name": g.name, "description": g.description },
        "_links": {
            // Okta's default group logos, as recorded (every OKTA_GROUP has them).
            "logo": [
                { "name": "medium", "href": GROUP_LOGO_MEDIUM, "type": "image/png" },
                { "name": "large", "href": GROUP_LOGO_LARGE, "type": "image/png" },
            ],
            "users": { "href": format!("{base}/api/v1/groups/{}/users", g.id) },
            "apps": { "href": format!("{base}/api/v1/groups/{}/apps", g.id) },
        },
    });
    if stats {
        let users = org.members.get(&g.id).map_or(0, |m| m.len());
        let apps = org.group_apps.get(&g.id).map_or(0, |a| a.len());
        v["_embedded"] = json!({
            "stats": {
                "usersCount": users,
                "appsCount": apps,
                "groupPushMappingsCount": 0,
                "hasAdminPrivilege": false,
                "_links": { "self": { "href": format!("{base}/api/v1/groups/{}/stats", g.id) } },
            }
        });
    }
    v
}

pub fn app(base: &str, a: &App) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "label": a.label,
        "status": a.status,
        "lastUpdated": fmt_ms(a.last_updated),
        "created": fmt_ms(a.created),
        "accessibility": { "selfService": false, "errorRedirectUrl": null, "loginRedirectUrl": null },
        "visibility": {
            "autoSubmitToolbar": false,
            "hide": { "iOS": false, "web": false },
            "appLinks": { "login": true },
        },
        "features": [],
        "signOnMode": "BOOKMARK",
        "credentials": { "userNameTemplate": { "template": "${source.login}", "type": "BUILT_IN" }, "signing": {} },
        "settings": {
            // A bookmark app's settings as recorded; the simulator keeps no bookmark URL, so a
            // stable one stands in (typed clients, e.g. Okta's Python SDK, require `url`).
            "app": { "requestIntegration": false, "url": format!("https://example.com/bookmark/{}", a.id) },
            "notifications": {},
            "manualProvisioning": false,
            "extendedProperties": {},
        },
        "_links": {
            "users": { "href": format!("{base}/api/v1/apps/{}/users", a.id) },
            "groups": { "href": format!("{base}/api/v1/apps/{}/groups", a.id) },
            "self": { "href": format!("{base}/api/v1/apps/{}", a.id) },
        },
    })
}

/// An AppUser: `id` is the user's id (as in the recordings), not the `0ua` assignment id.
pub fn app_user(base: &str, app_id: &str, u: &User, a: &Assignment) -> Value {
    json!({
        "id": u.id,
        "externalId": null,
        "created": fmt_ms(a.created),
        "lastUpdated": fmt_ms(a.last_updated),
        "scope": a.scope(),
        "status": "ACTIVE",
        "statusChanged": fmt_ms(a.created),
        "passwordChanged": null,
        "syncState": "DISABLED",
        "credentials": { "userName": u.login },
        "profile": {},
        "_links": {
            "app": { "href": format!("{base}/api/v1/apps/{app_id}") },
            "user": { "href": format!("{base}/api/v1/users/{}", u.id) },
        },
    })
}

pub fn role(base: &str, user_id: &str, r: &RoleAssignment) -> Value {
    let mut v = json!({
        "id": r.id,
        "label": r.label,
        "type": r.kind,
        "status": "ACTIVE",
        "created": fmt_ms(r.created),
        "lastUpdated": fmt_ms(r.last_updated),
        "assignmentType": "USER",
        "_links": {
            "assignee": { "href": format!("{base}/api/v1/users/{user_id}") },
        },
    });
    if let (Some(role), Some(rs)) = (&r.role, &r.resource_set) {
        v["role"] = Value::String(role.clone());
        v["resource-set"] = Value::String(rs.clone());
        v["_links"]["role"] = json!({ "href": format!("{base}/api/v1/iam/roles/{role}") });
        v["_links"]["resource-set"] =
            json!({ "href": format!("{base}/api/v1/iam/resource-sets/{rs}") });
    }
    v
}
