//! What a person may ask for: the resources they may request. (Whether they may read a
//! request is [`crate::authz`]'s answer, asked by `RequestService::get_as`.)
//!
//! Why it exists: Slack, the console and the API each showed these with their own filter; the
//! answers now come from here, the same for every channel (I9). The channels authenticate and
//! say who the person is; they never filter the policy themselves.
//!
//! What it must never do: write anything, or answer from a cache older than the directory's
//! group cache (eligibility) or fresher reads' (who may decide).

use super::directory::is_named;
use super::error::RequestError;
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
}
