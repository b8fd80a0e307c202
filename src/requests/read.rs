//! What a person may see and ask for: the resources they may request, and whether they may
//! read a given request.
//!
//! Why it exists: Slack, the console and the API each showed these with their own filter; the
//! answers now come from here, the same for every channel (I9). The channels authenticate and
//! say what the person is (an [`Actor`], with `reads_all` for auditors and admins); they never
//! filter the policy or compare logins themselves.
//!
//! What it must never do: write anything, or answer from a cache older than the directory's
//! group cache (eligibility) or fresher reads' (who may decide).

use super::directory::is_named;
use super::error::RequestError;
use super::model::{same_person, Actor, RequestView};
use super::RequestService;
use crate::policy::Resource;

impl RequestService {
    /// The resources `login` may request (the policy's `requesters`, with their groups read
    /// through the directory's cache): what Slack's `/jit resources` and request form and the
    /// console's request page offer.
    pub async fn requestable(&self, login: &str) -> Result<Vec<Resource>, RequestError> {
        let policy = self.policy().current();
        let user = self.directory().user(login).await?;
        let needs_groups = policy.resources.iter().any(|r| {
            r.requesters
                .as_ref()
                .is_some_and(|p| !p.okta_groups.is_empty())
        });
        let groups = if needs_groups {
            self.directory().groups_cached(&user.id).await?
        } else {
            Default::default()
        };
        Ok(policy
            .resources
            .iter()
            .filter(|r| {
                r.requesters
                    .as_ref()
                    .is_none_or(|p| is_named(p, &user, &groups))
            })
            .cloned()
            .collect())
    }

    /// Whether `actor` may read the request in `view`: anyone who reads everything, the person
    /// the access is for, whoever submitted it, anyone who decided on it, and anyone who may
    /// decide it now. `may_decide` is the caller's answer when it already has one (the console
    /// shows its buttons from it); otherwise it is asked (with fresh groups) only when nothing
    /// else allows.
    pub async fn may_read(
        &self,
        view: &RequestView,
        actor: &Actor,
        may_decide: Option<bool>,
    ) -> Result<bool, RequestError> {
        let r = &view.request;
        let related = actor.reads_all
            || same_person(&actor.login, &r.user_login)
            || actor.login == r.user_id
            || same_person(&actor.login, &r.requested_by)
            || view
                .decisions
                .iter()
                .any(|d| same_person(&d.approver, &actor.login));
        if related {
            return Ok(true);
        }
        match may_decide {
            Some(m) => Ok(m),
            None => self.may_decide(r, &actor.login).await,
        }
    }
}
