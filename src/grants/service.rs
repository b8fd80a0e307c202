//! Creating, extending and revoking grants (flow 4).
//!
//! Why it exists: the order of steps is the safety argument. A grant row with its provisional
//! expiry is committed and scheduled in the expiry index *before* Okta is asked to add access
//! (I2); the look-at-Okta/decide/call/record sequence runs under the per-(user, access) lock so
//! overlapping grants are counted correctly (I5); every state change commits with its audit entry
//! (I6) as a compare-and-set on the row's version.
//!
//! What it must never do: hold a SQL transaction across an Okta call, call Okta before the grant
//! is durable and scheduled, or change anything when the input is invalid.

use serde_json::json;

use super::error::GrantError;
use super::input::{self, MAX_REASON};
use super::lock::AccessLock;
use super::model::{Grant, GrantState};
use super::provision::{self, Holding};
use super::repo::{self, Bind};
use super::GrantService;
use crate::audit::{self, NewEntry};
use crate::okta::{OktaError, Priority};
use crate::policy::parse_duration;

/// Whose grants [`GrantService::live_of_user`] reads: by Okta user id (indexed), or by login
/// (what a Slack user is known by).
#[derive(Debug, Clone, Copy)]
pub enum Holder<'a> {
    Id(&'a str),
    Login(&'a str),
}

/// A direct grant (admin API, or an approved request).
#[derive(Debug, Clone)]
pub struct CreateGrant {
    /// Okta user id or login.
    pub user: String,
    pub resource: String,
    /// `1h`, `90m`; `None` → the resource's default.
    pub duration: Option<String>,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    /// Who asked for the access: an approved request's requester. `None`: the actor, who then
    /// both asked and made it (the admin API). The actor stays the audit entry's actor.
    pub requested_by: Option<String>,
}

impl GrantService {
    /// Commits `set` on `g` (compare-and-set on its version) with one audit entry. Returns whether
    /// this caller won the race.
    pub(crate) async fn transition(
        &self,
        g: &Grant,
        set: &str,
        binds: Vec<Bind>,
        actor: &str,
        action: &str,
        details: serde_json::Value,
    ) -> Result<bool, GrantError> {
        let mut tx = self.store().begin().await?;
        let won = repo::cas(tx.conn(), &g.id, g.version, set, binds).await?;
        if !won {
            tx.rollback().await?;
            return Ok(false);
        }
        audit::append(
            &mut tx,
            self.clock(),
            NewEntry::new(actor, action, g.subject(), details),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn get(&self, id: &str) -> Result<Grant, GrantError> {
        repo::get(self.store(), id)
            .await?
            .ok_or_else(|| GrantError::NotFound(id.to_string()))
    }

    pub async fn list(&self, f: &repo::ListFilter) -> Result<Vec<Grant>, GrantError> {
        Ok(repo::list(self.store(), f).await?)
    }

    /// The grants `who` holds now (`provisioning`, `active`), on `resource` when given, oldest
    /// first; with `ending`, also those whose access is being removed (`revoking`, `failed`).
    /// What a departure revokes, what makes a new request redundant, and what "my access"
    /// shows, from one query.
    pub async fn live_of_user(
        &self,
        who: Holder<'_>,
        resource: Option<&str>,
        ending: bool,
    ) -> Result<Vec<Grant>, GrantError> {
        Ok(repo::live_of(self.store(), who, resource, ending).await?)
    }

    /// Validates, records, schedules, then provisions. Invalid input changes nothing.
    pub async fn create(&self, actor: &str, req: CreateGrant) -> Result<Grant, GrantError> {
        let res = input::resource(&self.policy().current(), &req.resource)?;
        let duration = input::duration(&res, req.duration.as_deref())?;
        let reason = input::reason(&res, req.reason.as_deref(), res.require_reason)?;
        let u = input::user_ref(&req.user)?;
        let user = self
            .okta()
            .get_user(u, Priority::Grant)
            .await?
            .ok_or_else(|| GrantError::UnknownUser(u.to_string()))?;
        input::user_status(&user, u)?;
        let now = self.clock().now_ms();
        let duration_ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        let g = Grant {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user.id.clone(),
            user_login: user.login.clone(),
            resource: res.name.clone(),
            kind: res.kind,
            okta_id: res.okta_id.clone(),
            resource_set: res.resource_set.clone(),
            state: GrantState::Provisioning,
            standing: None,
            duration_ms,
            reason: reason.clone(),
            requested_by: req
                .requested_by
                .clone()
                .unwrap_or_else(|| actor.to_string()),
            request_id: req.request_id.clone(),
            end_sessions: res.end_sessions_on_expiry,
            created_at: now,
            activated_at: None,
            // Provisional: if we crash before activation, the grant is still expired (I2).
            expires_at: now.saturating_add(duration_ms),
            ended_at: None,
            role_assignment_id: None,
            last_error: None,
            next_retry_at: None,
            attempts: 0,
            ended_by: None,
            end_reason: None,
            version: 0,
        };
        let mut tx = self.store().begin().await?;
        repo::insert(&mut tx, &g).await?;
        audit::append(
            &mut tx,
            self.clock(),
            NewEntry::new(
                actor,
                "grant.provisioning",
                g.subject(),
                json!({
                    "user_id": g.user_id, "user_login": g.user_login, "resource": g.resource,
                    "kind": g.kind.as_str(), "okta_id": g.okta_id, "duration_ms": duration_ms,
                    "reason": reason, "request_id": g.request_id,
                    "provisional_expires_at": g.expires_at,
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        self.count("provisioning");
        // Indexed at its resume time, not its provisional expiry: if this replica dies before
        // activation, the scheduler hands the grant to `resume_provisioning` within seconds.
        let due = super::resume::resume_due(g.created_at, g.expires_at);
        if let Err(e) = self.index().schedule(&g.id, due).await {
            self.abort(&g, "the expiry could not be scheduled").await;
            return Err(e.into());
        }
        let Some(tasks) = self.tasks() else {
            return self.activate(&g.id, actor).await;
        };
        // Detached but tracked: if this caller is dropped, provisioning still completes (or
        // fails and records it), and shutdown waits for it.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (svc, id, actor) = (self.clone(), g.id.clone(), actor.to_string());
        tasks.spawn("grant-provisioning", async move {
            let _ = tx.send(svc.activate(&id, &actor).await);
        });
        match rx.await {
            Ok(r) => r,
            // The task was dropped (runtime shutting down): report the grant as it stands.
            Err(_) => self.get(&g.id).await,
        }
    }

    /// Ends a grant that never reached Okta (nothing was written there).
    async fn abort(&self, g: &Grant, why: &str) {
        let now = self.clock().now_ms();
        let r = self
            .transition(
                g,
                "state = 'revoked', ended_at = $3, end_reason = $4",
                vec![Bind::I(now), Bind::S(why.to_string())],
                "system:broker",
                "grant.aborted",
                json!({ "reason": why }),
            )
            .await;
        if let Err(e) = r {
            // The sweep still finds it (provisioning, standing unknown) and ends it.
            tracing::error!(grant = %g.id, error = %crate::error::chain(&e), "cannot abort grant");
        }
        let _ = self.index().unschedule(&g.id).await;
    }

    /// Provisioning: under the access lock, look at Okta, record the standing decision, add the
    /// access if needed, then mark the grant active with expiry counted from now.
    async fn activate(&self, id: &str, actor: &str) -> Result<Grant, GrantError> {
        let g = self.get(id).await?;
        let lock = match AccessLock::acquire(self.redis(), &g.access_key(), self.clock()).await {
            Ok(l) => l,
            Err(e) => {
                self.abort(&g, "the access lock could not be taken").await;
                return Err(e.into());
            }
        };
        let r = lock.hold(self.activate_locked(id, actor)).await;
        lock.release().await;
        let g = r?;
        if g.state == GrantState::Active {
            // The provisional entry is earlier and would only be rescheduled, so a failure here
            // is safe; the periodic rebuild repairs the index.
            if let Err(e) = self.index().schedule(&g.id, g.expires_at).await {
                tracing::warn!(grant = %g.id, error = %e, "cannot reschedule after activation");
            }
        }
        Ok(g)
    }

    async fn activate_locked(&self, id: &str, actor: &str) -> Result<Grant, GrantError> {
        let g = self.get(id).await?;
        if g.state != GrantState::Provisioning {
            return Ok(g);
        }
        let holding =
            match provision::current(self.okta(), &g.access(), None, Priority::Grant).await {
                Ok(h) => h,
                Err(e) => {
                    self.abort(&g, &format!("cannot read the access in Okta: {e}"))
                        .await;
                    return Err(e.into());
                }
            };
        self.provision_locked(g, holding, actor).await
    }

    /// Under the access lock, with what Okta holds now: decide standing (or keep the decision a
    /// previous attempt recorded), add the access if needed, mark the grant active.
    pub(super) async fn provision_locked(
        &self,
        g: Grant,
        holding: Holding,
        actor: &str,
    ) -> Result<Grant, GrantError> {
        let id = g.id.as_str();
        // A decision recorded by an attempt that died (`resume`): with the access present it
        // stands (standing = false means that attempt's add landed). Absent, decide again.
        let resumed = g.standing;
        if let (Some(standing), true) = (g.standing, holding.holds()) {
            let change = if standing {
                "already_present_standing"
            } else {
                "added"
            };
            let role_id = match &holding {
                Holding::Yes {
                    role_assignment_id, ..
                } => role_assignment_id.clone(),
                Holding::No => None,
            };
            return self
                .finish_activation(&g, standing, change, role_id, actor, resumed.is_some())
                .await;
        }
        let mut conn = self.store().reads().acquire().await?;
        let ours = repo::count_ours(
            &mut conn,
            &g,
            &[
                GrantState::Provisioning,
                GrantState::Active,
                GrantState::Revoking,
                GrantState::Failed,
            ],
        )
        .await?;
        drop(conn);
        // Access inherited through a group assignment cannot be removed per user: whatever our
        // other grants did, it is standing for this one (nothing to take at expiry).
        let inherited = matches!(
            holding,
            Holding::Yes {
                inherited: true,
                ..
            }
        );
        let standing = holding.holds() && (ours == 0 || inherited);
        // Record the decision before writing to Okta: a crash after the add must still know
        // whether the access was ours to remove.
        let won = repo::cas(
            &mut *self.store().pool().acquire().await?,
            &g.id,
            g.version,
            "standing = $3",
            vec![Bind::I(i64::from(standing))],
        )
        .await?;
        if !won {
            return self.get(id).await;
        }
        let g = self.get(id).await?;
        let (change, role_id) = match &holding {
            Holding::No => {
                crate::crash::point(crate::crash::BEFORE_OKTA_ADD);
                match provision::add(self.okta(), &g).await {
                    Ok(role_id) => {
                        crate::crash::point(crate::crash::AFTER_OKTA_ADD);
                        ("added", role_id)
                    }
                    Err(e) => {
                        self.fail_provisioning(&g, &e).await?;
                        return Err(e.into());
                    }
                }
            }
            Holding::Yes {
                role_assignment_id,
                inherited,
            } => {
                let change = match (standing, inherited) {
                    (true, true) => "already_present_inherited",
                    (true, false) => "already_present_standing",
                    (false, _) => "already_present_shared",
                };
                (change, role_assignment_id.clone())
            }
        };
        self.finish_activation(&g, standing, change, role_id, actor, resumed.is_some())
            .await
    }

    /// `provisioning` → `active`, expiry counted from now, with what was done in Okta.
    async fn finish_activation(
        &self,
        g: &Grant,
        standing: bool,
        change: &'static str,
        role_id: Option<String>,
        actor: &str,
        resumed: bool,
    ) -> Result<Grant, GrantError> {
        let id = g.id.as_str();
        let now = self.clock().now_ms();
        let expires_at = now.saturating_add(g.duration_ms);
        metrics::counter!("jit_grant_okta_changes_total", "kind" => g.kind.as_str(), "change" => change)
            .increment(1);
        let won = self
            .transition(
                g,
                "state = 'active', activated_at = $3, expires_at = $4, role_assignment_id = $5",
                vec![Bind::I(now), Bind::I(expires_at), Bind::OS(role_id.clone())],
                actor,
                "grant.activated",
                json!({
                    "standing": standing, "okta_change": change,
                    "role_assignment_id": role_id, "expires_at": expires_at,
                    "resumed": resumed,
                }),
            )
            .await?;
        if won {
            self.count("active");
        }
        // Lost: an early revoke or expiry moved it meanwhile; it removes what we added once it
        // gets the lock we still hold.
        self.get(id).await
    }

    /// The add failed. A definite refusal (4xx: Okta did not apply it) ends the grant `failed`
    /// with nothing to clean up; an ambiguous failure (timeout, 5xx: it may have been applied)
    /// ends `failed` with a retry due now, so the expiry path removes whatever was added.
    async fn fail_provisioning(&self, g: &Grant, e: &OktaError) -> Result<(), GrantError> {
        let now = self.clock().now_ms();
        let msg = crate::error::chain(e);
        let ambiguous = e.is_retryable();
        let next_retry = ambiguous.then_some(now);
        let won = self
            .transition(
                g,
                "state = 'failed', last_error = $3, next_retry_at = $4, ended_at = $5",
                vec![
                    Bind::S(msg.clone()),
                    Bind::OI(next_retry),
                    Bind::OI((!ambiguous).then_some(now)),
                ],
                "system:broker",
                "grant.failed",
                json!({
                    "phase": "provisioning", "error": msg, "error_code": e.error_code(),
                    "cleanup": if ambiguous { "scheduled" } else { "none: Okta refused the add" },
                }),
            )
            .await?;
        if won {
            self.alert_failed(&g.id, &msg);
            if ambiguous {
                if let Err(se) = self.index().schedule(&g.id, now).await {
                    tracing::warn!(grant = %g.id, error = %se, "cannot schedule cleanup");
                }
            } else {
                let _ = self.index().unschedule(&g.id).await;
            }
        }
        Ok(())
    }

    /// Extends an active grant by `duration`. One compare-and-set; access is never touched.
    /// The new expiry may not pass now + the resource's `max_duration`.
    pub async fn extend(&self, actor: &str, id: &str, duration: &str) -> Result<Grant, GrantError> {
        let d = parse_duration(duration).map_err(GrantError::InvalidDuration)?;
        let g = self.get(id).await?;
        if g.state != GrantState::Active {
            return Err(GrantError::NotActive(g.state.as_str()));
        }
        let res = input::resource(&self.policy().current(), &g.resource)?;
        let d_ms = input::ms(d);
        let new_expiry = input::extension(&res, g.expires_at, d, self.clock().now_ms())?;
        let won = self
            .transition(
                &g,
                "expires_at = $3, duration_ms = duration_ms + $4",
                vec![Bind::I(new_expiry), Bind::I(d_ms)],
                actor,
                "grant.extended",
                json!({ "from": g.expires_at, "to": new_expiry, "by_ms": d_ms }),
            )
            .await?;
        if !won {
            return Err(GrantError::Conflict);
        }
        // The old entry is earlier; if this fails the handler answers Reschedule when it fires.
        if let Err(e) = self.index().schedule(&g.id, new_expiry).await {
            tracing::warn!(grant = %g.id, error = %e, "cannot reschedule after extension");
        }
        self.get(id).await
    }

    /// Early revoke: marks the grant `revoking` (durably, scheduled now), then removes the
    /// access through the same path as expiry. Revoking a revoked grant is a no-op.
    pub async fn revoke(&self, actor: &str, id: &str, reason: &str) -> Result<Grant, GrantError> {
        if reason.len() > MAX_REASON {
            return Err(GrantError::InvalidInput(format!(
                "reason must be at most {MAX_REASON} bytes of text"
            )));
        }
        for _ in 0..5 {
            let g = self.get(id).await?;
            let now = self.clock().now_ms();
            let won = match g.state {
                GrantState::Revoked | GrantState::RemovedExternally => return Ok(g),
                GrantState::Revoking | GrantState::Failed => true,
                GrantState::Requested => {
                    let won = self
                        .transition(
                            &g,
                            "state = 'revoked', ended_at = $3, ended_by = $4, end_reason = $5",
                            vec![Bind::I(now), Bind::S(actor.into()), Bind::S(reason.into())],
                            actor,
                            "grant.revoked",
                            json!({ "reason": reason, "okta_change": "none" }),
                        )
                        .await?;
                    if won {
                        return self.get(id).await;
                    }
                    false
                }
                GrantState::Provisioning | GrantState::Active => {
                    self.transition(
                        &g,
                        "state = 'revoking', expires_at = $3, ended_by = $4, end_reason = $5",
                        vec![
                            Bind::I(now.min(g.expires_at)),
                            Bind::S(actor.into()),
                            Bind::S(reason.into()),
                        ],
                        actor,
                        "grant.revoking",
                        json!({ "reason": reason, "was": g.state.as_str(), "expires_at": g.expires_at }),
                    )
                    .await?
                }
            };
            if !won {
                continue;
            }
            // A crash here leaves the grant `revoking` with the index at its old expiry: the
            // sweep moves it to now (`scheduler::maintenance`), a departure re-run includes it.
            crate::crash::point(crate::crash::REVOKING_COMMITTED);
            // Durable and indexed before Okta is called: a crash here is finished by the worker.
            if let Err(e) = self.index().schedule(id, now).await {
                tracing::warn!(grant = %id, error = %e, "cannot schedule revocation");
            }
            let outcome = self.end_access(id, actor, 0).await;
            if matches!(outcome, crate::scheduler::ExpiryOutcome::Done) {
                let _ = self.index().unschedule(id).await;
            }
            return self.get(id).await;
        }
        Err(GrantError::Conflict)
    }
}
