//! Which Slack workspace a verified request comes from, and whether this broker serves it.
//!
//! Why it exists: a valid signature proves only that Slack sent the request for *some* install
//! of the app. An app installed in a second workspace (or distributed), or a Slack Connect user
//! of a partner organisation, produces requests Slack signs with the same secret; their users'
//! emails may match Okta logins of ours. So every command and interaction names its origin
//! (`team_id`, `enterprise_id`, `api_app_id`, and for interactions the clicking user's own
//! `team_id`), and this module refuses any origin the configuration does not name:
//!
//! - `slack.app_id` set: `api_app_id` must equal it (missing counts as different).
//! - `slack.enterprise_id` set: the request's enterprise must equal it (missing: different).
//! - `slack.team_ids` set: the request's workspace, and the clicking user's own workspace when
//!   the payload names it, must be in the list.
//! - Nothing set: any workspace, but a user whose own workspace differs from the request's (a
//!   Slack Connect user in a shared channel) is refused. `check-config` and `serve` warn.
//!
//! The user behind each request is checked again from `users.info` by [`super::identity`].
//!
//! What it must never do: accept an origin it cannot read when a check is configured, or let
//! a refused request reach the domain or record anything.

use serde_json::Value;

use super::config::SlackConfig;

/// Where a request says it comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The workspace the request was made in (`T…`); `None` for org-wide installs.
    pub team_id: Option<String>,
    /// The clicking user's own workspace (interactions only).
    pub user_team_id: Option<String>,
    pub enterprise_id: Option<String>,
    pub app_id: Option<String>,
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl Origin {
    /// From a slash command's form fields.
    pub fn of_command(form: &[(String, String)]) -> Origin {
        let f = |name: &str| {
            non_empty(
                form.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str()),
            )
        };
        Origin {
            team_id: f("team_id"),
            user_team_id: None,
            enterprise_id: f("enterprise_id"),
            app_id: f("api_app_id"),
        }
    }

    /// From an interaction payload (`block_actions`, `view_submission`).
    pub fn of_interaction(p: &Value) -> Origin {
        let s = |ptr: &str| non_empty(p.pointer(ptr).and_then(Value::as_str));
        Origin {
            team_id: s("/team/id"),
            user_team_id: s("/user/team_id"),
            enterprise_id: s("/enterprise/id").or_else(|| s("/team/enterprise_id")),
            app_id: s("/api_app_id"),
        }
    }

    /// The workspace the request is made in: the team, or the user's for org-wide installs.
    pub fn workspace(&self) -> Option<&str> {
        self.team_id.as_deref().or(self.user_team_id.as_deref())
    }
}

/// Why an origin is refused; shown in the 403 answer (no secret in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Foreign {
    #[error("the request is for another Slack app")]
    App,
    #[error("the request comes from another Slack organisation")]
    Enterprise,
    #[error("the request comes from a Slack workspace this broker does not serve")]
    Workspace,
    #[error("the user belongs to another Slack workspace")]
    User,
}

/// Whether this broker serves `o` (see the module doc for the rules).
pub fn check(cfg: &SlackConfig, o: &Origin) -> Result<(), Foreign> {
    if !cfg.app_id.is_empty() && o.app_id.as_deref() != Some(cfg.app_id.as_str()) {
        return Err(Foreign::App);
    }
    if !cfg.enterprise_id.is_empty()
        && o.enterprise_id.as_deref() != Some(cfg.enterprise_id.as_str())
    {
        return Err(Foreign::Enterprise);
    }
    if !cfg.team_ids.is_empty() {
        let listed = |t: &str| cfg.team_ids.iter().any(|x| x == t);
        if !o.workspace().is_some_and(listed) {
            return Err(Foreign::Workspace);
        }
        if o.user_team_id.as_deref().is_some_and(|t| !listed(t)) {
            return Err(Foreign::User);
        }
    } else if let (Some(team), Some(user_team)) = (&o.team_id, &o.user_team_id) {
        if team != user_team && cfg.enterprise_id.is_empty() {
            return Err(Foreign::User);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(teams: &[&str], enterprise: &str, app: &str) -> SlackConfig {
        let mut c: SlackConfig = toml::from_str(
            "api_base_url = \"https://slack.com/api\"\ndefault_channel = \"\"\nconsole_url = \"\"\n\
             identity_cache_ttl = \"10m\"\nchannel_interval = \"1s\"\nrequest_timeout = \"10s\"\n\
             max_retries = 3\nteam_ids = []\nenterprise_id = \"\"\napp_id = \"\"\nallow_guests = false\n",
        )
        .unwrap();
        c.team_ids = teams.iter().map(|t| t.to_string()).collect();
        c.enterprise_id = enterprise.into();
        c.app_id = app.into();
        c
    }

    fn origin(team: &str, user_team: Option<&str>, ent: Option<&str>, app: &str) -> Origin {
        Origin {
            team_id: Some(team.into()),
            user_team_id: user_team.map(str::to_string),
            enterprise_id: ent.map(str::to_string),
            app_id: Some(app.into()),
        }
    }

    #[test]
    fn configured_origins_only() {
        let c = cfg(&["T1"], "", "A1");
        assert_eq!(check(&c, &origin("T1", Some("T1"), None, "A1")), Ok(()));
        assert_eq!(
            check(&c, &origin("T2", None, None, "A1")),
            Err(Foreign::Workspace)
        );
        assert_eq!(
            check(&c, &origin("T1", Some("T9"), None, "A1")),
            Err(Foreign::User)
        );
        assert_eq!(
            check(&c, &origin("T1", None, None, "A2")),
            Err(Foreign::App)
        );
        assert_eq!(check(&c, &Origin::default()), Err(Foreign::App));
        let c = cfg(&[], "E1", "");
        assert_eq!(
            check(&c, &origin("T5", Some("T6"), Some("E1"), "A")),
            Ok(())
        );
        assert_eq!(
            check(&c, &origin("T5", None, Some("E2"), "A")),
            Err(Foreign::Enterprise)
        );
        assert_eq!(
            check(&c, &origin("T5", None, None, "A")),
            Err(Foreign::Enterprise)
        );
    }

    #[test]
    fn unconfigured_still_refuses_a_user_of_another_workspace() {
        let c = cfg(&[], "", "");
        assert_eq!(check(&c, &origin("T1", Some("T1"), None, "A")), Ok(()));
        assert_eq!(check(&c, &origin("T1", None, None, "A")), Ok(()));
        assert_eq!(
            check(&c, &origin("T1", Some("T2"), None, "A")),
            Err(Foreign::User)
        );
    }
}
