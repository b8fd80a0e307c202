//! Access in Okta that is not (or not only) one grant's: who holds what, removing access no
//! grant explains, and restoring a live grant's access someone removed.
//!
//! Why it exists: the drift reaction, the sync and the access reviews all find access in Okta
//! that they may have to take away, and the sync puts back access an active grant lost. Each of
//! them used to lock, re-check and call Okta on its own, and one of them (reviews) skipped the
//! re-check. Here it is written once: [`GrantService::remove_unexplained`] takes the
//! per-(user, access) lock, re-checks under it that no grant (live, or ended after the change
//! that was seen) and no `allow_standing` explains the access, removes it on the revocation lane
//! and audits it (once: a removal that finds the access gone for a finding already audited, as
//! when an event is processed again after a crash, is that revert seen again and is not audited
//! twice); [`GrantService::restore`] re-adds an active grant's access under the same lock,
//! audited once and scheduled like any grant. [`GrantService::holds`] and
//! [`GrantService::find_role_assignment`] are the only Okta reads of one user's access.
//!
//! What it must never do: remove access a grant or an allowance explains at the time of the
//! removal (the check runs under the lock every grant activation also takes), re-add access of a
//! grant that is not active or has expired, or call Okta for access outside the lock.

use serde_json::json;

use super::error::GrantError;
use super::lock::AccessLock;
use super::model::{access_key, Grant, GrantState};
use super::provision::{self, Holding, Removed};
use super::{repo, GrantService};
use crate::audit::{self, NewEntry};
use crate::okta::{OktaError, Priority};
use crate::policy::{Resource, ResourceKind, RoleTarget};

/// One user's access to one Okta object (group, app or role), whoever gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Okta user id (`00u…`).
    pub user_id: String,
    pub kind: ResourceKind,
    /// Group id, app id, or role type / custom role id.
    pub okta_id: String,
    /// A custom role's resource set; `None` otherwise (an empty string is read as `None`).
    pub resource_set: Option<String>,
}

impl Access {
    pub fn new(
        user_id: impl Into<String>,
        kind: ResourceKind,
        okta_id: impl Into<String>,
        resource_set: Option<&str>,
    ) -> Self {
        Access {
            user_id: user_id.into(),
            kind,
            okta_id: okta_id.into(),
            resource_set: resource_set.filter(|s| !s.is_empty()).map(str::to_string),
        }
    }

    /// The access a policy resource gives `user_id`.
    pub fn of_resource(user_id: impl Into<String>, res: &Resource) -> Self {
        Access::new(user_id, res.kind, &res.okta_id, res.resource_set.as_deref())
    }

    /// The name of its per-(user, access) lock ([`Grant::access_key`] for a grant's access).
    pub fn key(&self) -> String {
        access_key(
            &self.user_id,
            self.kind,
            &self.okta_id,
            self.resource_set.as_deref(),
        )
    }

    pub fn role_target(&self) -> Option<RoleTarget> {
        RoleTarget::of(self.kind, &self.okta_id, self.resource_set.as_deref())
    }
}

/// The audit entry a caller wants for what it asked: who asks, the action name its readers and
/// the notification layer know (`drift.reverted`, `sync.access_removed`, …), the subject and
/// the details. The grants service adds what happened in Okta (`okta_change`) when it acted.
#[derive(Debug, Clone)]
pub struct AuditNote {
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: serde_json::Value,
}

/// Access found in Okta that the caller believes no grant explains.
#[derive(Debug, Clone)]
pub struct Unexplained {
    pub access: Access,
    pub user_login: Option<String>,
    /// The policy resource whose `allow_standing` is re-read under the lock. `None` when the
    /// caller's own decision overrides allowances (a reviewer who rejected exactly this access).
    pub resource: Option<String>,
    /// A grant that ended at or after this time (Unix ms) still explains the access: it was live
    /// when the change was made (a late event of the broker's own add).
    pub ended_since: Option<i64>,
    /// A role assignment id the caller saw (the inventory's), preferred when it is still there.
    pub role_assignment: Option<String>,
    /// Written when the access is removed (or found already gone), or reported.
    pub note: AuditNote,
}

/// What [`GrantService::remove_unexplained`] (or `report_unexplained`) found under the lock,
/// and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// A grant explains the access now: left alone, nothing written.
    Explained { grant_id: String },
    /// The user is in the resource's `allow_standing` (as the policy now reads): left alone.
    AllowedStanding,
    /// A role the user does not hold (any more): nothing to remove, nothing written.
    NotPresent,
    /// Report only: the caller's note was written, Okta left alone.
    Reported,
    /// Removed (or already gone, I4), and the note written with `okta_change`.
    Removed(Removed),
}

/// What [`GrantService::restore`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// Re-added, audited and scheduled.
    Restored,
    /// The grant is no longer active, or has expired: nothing was re-added.
    NotActive,
    /// Admin roles are not restored: a new assignment would not be the one the grant records.
    RoleNotRestored,
}

impl GrantService {
    /// Whether the user holds the access in Okta right now (on lane `p`). A 404 is an error
    /// here: callers decide what an unknown user means for them ([`is_not_found`]).
    pub async fn holds(&self, access: &Access, p: Priority) -> Result<Holding, OktaError> {
        provision::current(self.okta(), access, None, p).await
    }

    /// The id of the user's assignment of the access's role: `hint` (an assignment id seen
    /// before) when the user still has it, otherwise the assignment of the same role type (or
    /// custom role and resource set). `None` for other kinds, or when the user holds none.
    pub async fn find_role_assignment(
        &self,
        access: &Access,
        hint: Option<&str>,
        p: Priority,
    ) -> Result<Option<String>, OktaError> {
        provision::find_role(self.okta(), access, hint, p).await
    }

    /// The grants that explain `access` being in Okta: every grant still in play
    /// (`provisioning`, `active`, `revoking`, `failed` with a retry due) and, with
    /// `ended_since`, those that ended at or after it. Read from the writer pool.
    pub async fn explaining(
        &self,
        access: &Access,
        ended_since: Option<i64>,
    ) -> Result<Vec<Grant>, GrantError> {
        Ok(repo::explaining(
            self.store(),
            &access.user_id,
            access.kind,
            &access.okta_id,
            access.resource_set.as_deref(),
            ended_since,
        )
        .await?)
    }

    /// Removes access no grant explains, idempotently: under the access lock, re-checks the
    /// grants and the resource's `allow_standing`, removes the access on the revocation lane
    /// (already gone counts as done) and writes `u.note` with the Okta change. A permanent Okta
    /// refusal is returned as [`GrantError::Okta`] with nothing written.
    pub async fn remove_unexplained(&self, u: &Unexplained) -> Result<Settled, GrantError> {
        self.settle_unexplained(u, true).await
    }

    /// [`GrantService::remove_unexplained`]'s judgement without the removal: under the lock,
    /// the same re-checks, then `u.note` is written and Okta left alone (`drift = "report"`).
    pub async fn report_unexplained(&self, u: &Unexplained) -> Result<Settled, GrantError> {
        self.settle_unexplained(u, false).await
    }

    async fn settle_unexplained(
        &self,
        u: &Unexplained,
        remove: bool,
    ) -> Result<Settled, GrantError> {
        let key = u.access.key();
        #[cfg(feature = "test-hooks")]
        self.before_access_lock(&key).await;
        let lock = AccessLock::acquire(self.redis(), &key, self.clock()).await?;
        let r = lock.hold(self.settle_locked(u, remove)).await;
        lock.release().await;
        r
    }

    /// Under the access lock: no grant can be activating this access meanwhile, so what the
    /// checks below find stays true until the removal is done.
    async fn settle_locked(&self, u: &Unexplained, remove: bool) -> Result<Settled, GrantError> {
        let a = &u.access;
        if let Some(g) = self.explaining(a, u.ended_since).await?.first() {
            return Ok(Settled::Explained {
                grant_id: g.id.clone(),
            });
        }
        if let Some(name) = &u.resource {
            let policy = self.policy().current();
            if policy
                .get(name)
                .is_some_and(|r| r.allows_standing(&a.user_id, u.user_login.as_deref()))
            {
                return Ok(Settled::AllowedStanding);
            }
        }
        let lane = if remove {
            Priority::Revoke
        } else {
            Priority::Read
        };
        // A role is removed by its assignment id: look at which one is there.
        let role = match a.kind {
            ResourceKind::OktaRole => {
                match self
                    .find_role_assignment(a, u.role_assignment.as_deref(), lane)
                    .await
                {
                    Ok(Some(id)) => Some(id),
                    Ok(None) => return Ok(Settled::NotPresent),
                    Err(e) if is_not_found(&e) => return Ok(Settled::NotPresent),
                    Err(e) => return Err(e.into()),
                }
            }
            _ => None,
        };
        if !remove {
            self.write_note(&u.note, None).await?;
            return Ok(Settled::Reported);
        }
        let removed =
            provision::remove_access(self.okta(), &a.user_id, a.kind, &a.okta_id, role.as_deref())
                .await?;
        if self.noted_before(&u.note).await? {
            // The same finding (same detection, same resource) was reverted and audited by an
            // earlier attempt that died before its event was recorded done: this is that revert,
            // seen again (Okta answers a removal of a non-member with 204 or 404 alike), not a
            // second one.
            return Ok(Settled::Removed(Removed::AlreadyGone));
        }
        self.write_note(&u.note, Some(removed.as_str())).await?;
        metrics::counter!("jit_grant_okta_changes_total", "kind" => a.kind.as_str(),
            "change" => "removed_unexplained")
        .increment(1);
        Ok(Settled::Removed(removed))
    }

    /// Whether the log already holds `note` for the same detection and resource (written within
    /// the last hour: a re-run after a crash comes within leases and retries, not days). One
    /// newest-first read of the last hour's entries per revert; reverts are rare.
    async fn noted_before(&self, note: &AuditNote) -> Result<bool, GrantError> {
        let since = self.clock().now_ms().saturating_sub(3_600_000);
        let found = crate::audit::query::search(
            self.store(),
            &crate::audit::query::Search {
                since_ms: Some(since),
                action_prefix: Some(note.action.clone()),
                subject: Some(note.subject.clone()),
                limit: 50,
                ..Default::default()
            },
        )
        .await?;
        let same = |d: &serde_json::Value| {
            d.get("detected") == note.details.get("detected")
                && d.get("resource") == note.details.get("resource")
                && note.details.get("detected").is_some()
        };
        Ok(found.iter().any(|e| {
            e.action == note.action
                && serde_json::from_str::<serde_json::Value>(&e.details).is_ok_and(|d| same(&d))
        }))
    }

    /// Appends `note` (with `okta_change` when given) in its own transaction.
    async fn write_note(&self, note: &AuditNote, change: Option<&str>) -> Result<(), GrantError> {
        let mut details = note.details.clone();
        if let (Some(c), Some(d)) = (change, details.as_object_mut()) {
            d.insert("okta_change".into(), json!(c));
        }
        let mut tx = self.store().begin().await?;
        audit::append(
            &mut tx,
            self.clock(),
            NewEntry::new(&note.actor, &note.action, &note.subject, details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Re-adds the access of an active grant that someone removed in Okta, while the grant is
    /// active and unexpired (re-read under the access lock: expired access is never re-added).
    /// The grant is (re)scheduled at its expiry before Okta is called, as any grant (I2), and
    /// `note` is written once the access is back.
    pub async fn restore(&self, id: &str, note: &AuditNote) -> Result<Restored, GrantError> {
        let g = self.get(id).await?;
        if g.kind == ResourceKind::OktaRole {
            return Ok(Restored::RoleNotRestored);
        }
        let lock = AccessLock::acquire(self.redis(), &g.access_key(), self.clock()).await?;
        let r = lock.hold(self.restore_locked(id, note)).await;
        lock.release().await;
        r
    }

    async fn restore_locked(&self, id: &str, note: &AuditNote) -> Result<Restored, GrantError> {
        let g = self.get(id).await?;
        if g.state != GrantState::Active || g.expires_at <= self.clock().now_ms() {
            return Ok(Restored::NotActive);
        }
        self.index().schedule(&g.id, g.expires_at).await?;
        provision::add(self.okta(), &g).await?;
        self.write_note(note, Some("restored")).await?;
        metrics::counter!("jit_grant_okta_changes_total", "kind" => g.kind.as_str(),
            "change" => "restored")
        .increment(1);
        Ok(Restored::Restored)
    }
}

/// Whether Okta answered 404 (the user or the object is gone).
pub fn is_not_found(e: &OktaError) -> bool {
    provision::is_not_found(e)
}

/// A pause injected before [`GrantService::remove_unexplained`] takes the access lock, so a
/// test can make a grant appear between a detector's read and the removal. Compiled only with
/// the `test-hooks` feature: production builds have no hook and no field for one.
#[cfg(feature = "test-hooks")]
pub type BeforeLockHook =
    std::sync::Arc<dyn Fn(String) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

#[cfg(feature = "test-hooks")]
impl GrantService {
    /// Installs `hook`, called with the access key before every unexplained-access lock.
    pub fn set_before_access_lock(&self, hook: BeforeLockHook) {
        *self
            .inner
            .before_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    async fn before_access_lock(&self, key: &str) {
        let hook = self
            .inner
            .before_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(h) = hook {
            h(key.to_string()).await;
        }
    }
}
