//! Reconcile: explain every inventory row of a managed resource (grant, standing, unexplained),
//! plan what the drift calls for, and act.
//!
//! Findings, per managed resource:
//! - `ended_grant_present`: access still there after its grant ended (a lost removal) and not
//!   seen absent since: removed by the grants service's `remove_unexplained` (which re-checks
//!   under the access lock that no grant explains it).
//! - `overdue_grant`: a live grant well past its expiry (the scheduler missed it): expired
//!   through the grants service's expiry path.
//! - `grant_missing`: an active grant whose access is gone from Okta: `end` (the grants service's
//!   `end_removed_externally`) or `restore` (the grants service's `restore`: re-added only
//!   before its expiry, audited, scheduled), per the resource's `on_external_removal`.
//! - `unexplained`: a `jit_only` resource's member with neither a live grant nor
//!   `allow_standing`: handed to the drift reaction (`crate::drift`, shared with the event
//!   hooks), which reports it or removes it per the resource's `drift`.
//!
//! What it must never do: act in a dry run, act on an object whose listing is not current
//! (`Seen`), remove access a live grant explains at the time of the removal (re-checked under
//! the access lock), or re-add access whose grant has expired.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;

use super::lock::{fenced, SyncLock};
use super::read::Seen;
use super::{Counts, SyncError, Syncer};
use crate::audit::{self, NewEntry};
use crate::grants::{Access, AuditNote, GrantState, Restored, Settled, Unexplained};
use crate::inventory::{repo, Why};
use crate::policy::{Drift, ExternalRemoval, ResourceKind};
use crate::scheduler::{ExpiryHandler, ExpiryOutcome};

/// The actor of every sync action in the audit log.
pub const SYNC_ACTOR: &str = "system:sync";

/// One drift finding and what was (or, in a dry run, would be) done about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `ended_grant_present`, `overdue_grant`, `grant_missing` or `unexplained`.
    pub finding: String,
    /// The policy resource.
    pub resource: String,
    pub kind: ResourceKind,
    pub okta_id: String,
    pub resource_set: String,
    pub user_id: String,
    pub login: Option<String>,
    pub grant_id: Option<String>,
    /// App assignment scope or role assignment id, as listed.
    pub scope: Option<String>,
    /// `remove`, `expire`, `end_grant`, `restore` or `report`.
    pub action: String,
    /// After the run acted: `removed`, `already_gone`, `ended`, `restored`, `reported`,
    /// `skipped: …` or `error: …`. `None` in a dry run.
    pub outcome: Option<String>,
}

struct GrantLite {
    id: String,
    user_id: String,
    state: GrantState,
    standing: Option<bool>,
    expires_at: i64,
    activated_at: Option<i64>,
    ended_at: Option<i64>,
}

async fn grants_of(
    conn: &mut sqlx::AnyConnection,
    kind: ResourceKind,
    okta_id: &str,
    rs: &str,
) -> Result<Vec<GrantLite>, SyncError> {
    let rows = sqlx::query(
        "SELECT id, user_id, state, standing, expires_at, activated_at, ended_at FROM grants \
         WHERE kind = $1 AND okta_id = $2 AND COALESCE(resource_set, '') = $3",
    )
    .bind(kind.as_str())
    .bind(okta_id)
    .bind(rs)
    .fetch_all(conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let state: String = r.try_get("state")?;
        let standing: Option<i64> = r.try_get("standing")?;
        out.push(GrantLite {
            id: r.try_get("id")?,
            user_id: r.try_get("user_id")?,
            state: GrantState::parse(&state).ok_or_else(|| {
                SyncError::Store(crate::store::StoreError::Corrupt(format!(
                    "grant state `{state}`"
                )))
            })?,
            standing: standing.map(|v| v != 0),
            expires_at: r.try_get("expires_at")?,
            activated_at: r.try_get("activated_at")?,
            ended_at: r.try_get("ended_at")?,
        });
    }
    Ok(out)
}

/// Explains the rows of every managed, current object and lists the findings.
pub(crate) async fn plan(
    s: &Syncer,
    lock: &SyncLock,
    seen: &Seen,
    _warnings: &mut Vec<String>,
) -> Result<Vec<Finding>, SyncError> {
    let policy = s.policy.current();
    let now = s.clock.now_ms();
    let grace = super::ms(s.cfg.overdue_grace);
    let mut findings = Vec::new();
    let mut done: HashSet<(ResourceKind, String, String)> = HashSet::new();
    for r in &policy.resources {
        let rs = r.resource_set.clone().unwrap_or_default();
        let key = (r.kind, r.okta_id.clone(), rs.clone());
        // Two policy names on one Okta object: the first one's rules decide.
        if !done.insert(key.clone()) {
            continue;
        }
        let Some(&as_of) = seen.get(&key) else {
            continue;
        };
        let mut conn = s.store.reads().acquire().await?;
        let rows = repo::holders(&mut conn, r.kind.as_str(), &r.okta_id, &rs, "", i64::MAX).await?;
        let grants = grants_of(&mut conn, r.kind, &r.okta_id, &rs).await?;
        drop(conn);
        let mut by_user: HashMap<&str, Vec<&GrantLite>> = HashMap::new();
        for g in &grants {
            by_user.entry(g.user_id.as_str()).or_default().push(g);
        }
        let mut present = HashSet::new();
        let mut whys = Vec::new();
        for (row, login) in &rows {
            present.insert(row.user_id.as_str());
            let gs = by_user
                .get(row.user_id.as_str())
                .cloned()
                .unwrap_or_default();
            let live = gs
                .iter()
                .find(|g| matches!(g.state, GrantState::Provisioning | GrantState::Active));
            let winding = gs
                .iter()
                .find(|g| matches!(g.state, GrantState::Revoking | GrantState::Failed));
            let allowed = r.allows_standing(&row.user_id, login.as_deref());
            let inherited = row.scope.as_deref() == Some("GROUP");
            let (why, gid) = match (live, winding) {
                (Some(g), _) if g.standing == Some(true) => (Why::Standing, Some(g.id.clone())),
                (Some(g), _) | (None, Some(g)) => (Why::Grant, Some(g.id.clone())),
                (None, None) if inherited || allowed || !r.jit_only => (Why::Standing, None),
                (None, None) => (Why::Unexplained, None),
            };
            if row.why != why || row.grant_id != gid {
                whys.push((
                    row.user_id.clone(),
                    row.kind.clone(),
                    row.okta_id.clone(),
                    row.resource_set.clone(),
                    why,
                    gid,
                ));
            }
            let finding = |name: &str, action: &str, grant: Option<&str>| Finding {
                finding: name.to_string(),
                resource: r.name.clone(),
                kind: r.kind,
                okta_id: r.okta_id.clone(),
                resource_set: rs.clone(),
                user_id: row.user_id.clone(),
                login: login.clone(),
                grant_id: grant.map(str::to_string),
                scope: row.scope.clone(),
                action: action.to_string(),
                outcome: None,
            };
            if let Some(g) = live {
                if g.state == GrantState::Active && g.expires_at.saturating_add(grace) < now {
                    findings.push(finding("overdue_grant", "expire", Some(&g.id)));
                }
                continue;
            }
            if winding.is_some() || inherited || allowed {
                continue;
            }
            // The grant that ended last, if its access came from us, and the access was not
            // seen absent after it ended: what is there is what the grant left behind.
            let last_ended = gs
                .iter()
                .filter(|g| g.state == GrantState::Revoked && g.standing == Some(false))
                .filter_map(|g| g.ended_at.map(|e| (e, g)))
                .max_by_key(|(e, _)| *e);
            match last_ended {
                // Ended after the listing began: the row may show the access as it was before
                // the grant's own removal. The next run decides on a listing that is later.
                Some((ended, _)) if ended >= as_of => {}
                Some((ended, g)) if ended > row.prev_listed_at.unwrap_or(i64::MIN) => {
                    findings.push(finding("ended_grant_present", "remove", Some(&g.id)));
                }
                _ if why == Why::Unexplained => {
                    let action = match r.drift {
                        Drift::Enforce => "remove",
                        Drift::Report => "report",
                    };
                    findings.push(finding("unexplained", action, None));
                }
                _ => {}
            }
        }
        for g in &grants {
            let missing = g.state == GrantState::Active
                && g.standing == Some(false)
                && !present.contains(g.user_id.as_str())
                && g.activated_at.is_some_and(|a| a < as_of)
                && g.expires_at > now;
            if !missing {
                continue;
            }
            let action = match r.on_external_removal {
                ExternalRemoval::End => "end_grant",
                ExternalRemoval::Restore => "restore",
            };
            findings.push(Finding {
                finding: "grant_missing".into(),
                resource: r.name.clone(),
                kind: r.kind,
                okta_id: r.okta_id.clone(),
                resource_set: rs.clone(),
                user_id: g.user_id.clone(),
                login: None,
                grant_id: Some(g.id.clone()),
                scope: None,
                action: action.into(),
                outcome: None,
            });
        }
        if !whys.is_empty() {
            lock.check()?;
            let mut tx = fenced(&s.store, lock.fence()).await?;
            repo::set_why(&mut tx, &whys).await?;
            tx.commit().await?;
        }
    }
    Ok(findings)
}

/// Carries out the findings' actions, recording each outcome on its finding.
pub(crate) async fn apply(
    s: &Syncer,
    lock: &SyncLock,
    run_id: &str,
    findings: &mut [Finding],
    counts: &mut Counts,
    warnings: &mut Vec<String>,
) -> Result<(), SyncError> {
    let caps = s.okta.capabilities();
    let mut refused: HashSet<ResourceKind> = HashSet::new();
    for f in findings.iter_mut() {
        lock.check()?;
        let permitted = caps.as_ref().is_none_or(|c| match f.kind {
            ResourceKind::OktaGroup => c.provision_groups,
            ResourceKind::OktaApp => c.provision_apps,
            ResourceKind::OktaRole => c.manage_roles,
        });
        if !permitted && f.action != "report" {
            if refused.insert(f.kind) {
                warnings.push(format!(
                    "the credential may not change {} access: drift there is reported only",
                    f.kind.as_str()
                ));
            }
            f.outcome = Some("skipped: the credential may not change this access".into());
            continue;
        }
        let r = match f.action.as_str() {
            "report" | "remove" if f.finding == "unexplained" => drift(s, lock, run_id, f).await,
            "remove" => remove_left_over(s, lock, run_id, f).await,
            "expire" => expire(s, lock, run_id, f).await,
            "end_grant" => end_grant(s, lock, run_id, f).await,
            "restore" => restore(s, lock, run_id, f).await,
            other => Ok(format!("skipped: unknown action {other}")),
        };
        match r {
            Ok(outcome) => {
                if !outcome.starts_with("skipped") && outcome != "reported" {
                    counts.changed += 1;
                }
                f.outcome = Some(outcome);
            }
            Err(SyncError::LostLock) => return Err(SyncError::LostLock),
            Err(e) => {
                counts.action_errors += 1;
                f.outcome = Some(format!("error: {}", crate::error::chain(&e)));
            }
        }
    }
    Ok(())
}

/// The subject of a finding's audit entries: its grant, or the user.
fn subject(f: &Finding) -> String {
    match &f.grant_id {
        Some(g) => format!("grant:{g}"),
        None => format!("user:{}", f.user_id),
    }
}

/// The details of a finding's audit entries, with this run's id and, when known before acting,
/// the outcome (the grants service adds `okta_change` to the entries of what it did).
fn details(run_id: &str, f: &Finding, outcome: Option<&str>) -> serde_json::Value {
    let mut d = json!({
        "run_id": run_id, "finding": f.finding, "resource": f.resource,
        "kind": f.kind.as_str(), "okta_id": f.okta_id, "user_id": f.user_id,
        "login": f.login, "grant_id": f.grant_id,
    });
    if let (Some(o), Some(m)) = (outcome, d.as_object_mut()) {
        m.insert("outcome".into(), json!(o));
    }
    d
}

/// A sync action of its own (not an access change), audited in a fenced transaction.
async fn audit_action(
    s: &Syncer,
    lock: &SyncLock,
    run_id: &str,
    f: &Finding,
    action: &str,
    outcome: &str,
) -> Result<(), SyncError> {
    let mut tx = fenced(&s.store, lock.fence()).await?;
    audit::append(
        &mut tx,
        &s.clock,
        NewEntry::new(
            SYNC_ACTOR,
            action,
            subject(f),
            details(run_id, f, Some(outcome)),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The drift reaction, shared with the event hooks: it re-judges the finding under the access
/// lock (a grant made since the listing explains it), then reports or removes and audits it
/// (`drift.detected` / `drift.reverted`, with this run's id). The inventory row of reverted
/// access is forgotten in a fenced transaction.
async fn drift(
    s: &Syncer,
    lock: &SyncLock,
    run_id: &str,
    f: &Finding,
) -> Result<String, SyncError> {
    let finding = crate::drift::Finding {
        resource: f.resource.clone(),
        user_id: f.user_id.clone(),
        user_login: f.login.clone(),
        detected: crate::drift::Detection::Sync {
            run_id: run_id.to_string(),
        },
        actor: None,
        changed_at: None,
    };
    let outcome = crate::drift::DriftReactor::new(s.grants.clone())
        .react(&finding)
        .await?;
    if matches!(outcome, crate::drift::Outcome::Reverted { .. }) {
        forget(s, lock, f).await?;
    }
    Ok(match outcome {
        crate::drift::Outcome::Reverted { okta_change } => match okta_change {
            "already_gone" => "already_gone".into(),
            _ => "removed".into(),
        },
        crate::drift::Outcome::Reported => "reported".into(),
        crate::drift::Outcome::RevertFailed { error } => format!("error: {error}"),
        other => format!("skipped: {}", other.as_str()),
    })
}

/// Access an ended grant of ours left behind: the grants service re-checks under the access
/// lock that no grant (or allowance) explains it, removes it on the revocation lane (gone counts
/// as done, I4) and audits it with the run id; the inventory row is then forgotten.
async fn remove_left_over(
    s: &Syncer,
    lock: &SyncLock,
    run_id: &str,
    f: &Finding,
) -> Result<String, SyncError> {
    lock.check()?;
    let rs = (!f.resource_set.is_empty()).then_some(f.resource_set.as_str());
    let u = Unexplained {
        access: Access::new(&f.user_id, f.kind, &f.okta_id, rs),
        user_login: f.login.clone(),
        resource: Some(f.resource.clone()),
        ended_since: None,
        role_assignment: f.scope.clone().filter(|_| f.kind == ResourceKind::OktaRole),
        note: AuditNote {
            actor: SYNC_ACTOR.into(),
            action: "sync.access_removed".into(),
            subject: subject(f),
            details: details(run_id, f, None),
        },
    };
    let outcome = match s.grants.remove_unexplained(&u).await? {
        Settled::Explained { .. } => return Ok("skipped: a grant explains the access now".into()),
        Settled::AllowedStanding => return Ok("skipped: allow_standing names the user now".into()),
        Settled::Reported => return Ok("reported".into()),
        Settled::NotPresent => "already_gone",
        Settled::Removed(r) => r.as_str(),
    };
    forget(s, lock, f).await?;
    Ok(outcome.into())
}

/// Forgets the inventory row of access that is gone (fenced: only while the run holds its lock).
async fn forget(s: &Syncer, lock: &SyncLock, f: &Finding) -> Result<(), SyncError> {
    let mut tx = fenced(&s.store, lock.fence()).await?;
    repo::delete_access(
        &mut tx,
        &f.user_id,
        f.kind.as_str(),
        &f.okta_id,
        &f.resource_set,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A live grant the scheduler missed: the grants service's own expiry path ends it.
async fn expire(
    s: &Syncer,
    lock: &SyncLock,
    run_id: &str,
    f: &Finding,
) -> Result<String, SyncError> {
    let Some(id) = &f.grant_id else {
        return Ok("skipped: no grant".into());
    };
    audit_action(s, lock, run_id, f, "sync.overdue_expiry", "started").await?;
    Ok(match s.grants.expire(id, 1).await {
        ExpiryOutcome::Done => "expired".into(),
        ExpiryOutcome::Reschedule { .. } => "skipped: the grant was extended".into(),
        o => format!("error: {o:?}"),
    })
}

/// An active grant whose access someone removed in Okta: ended `removed_externally` by the
/// grants service (shared with the event hooks; nothing is called in Okta).
async fn end_grant(
    s: &Syncer,
    lock: &SyncLock,
    run_id: &str,
    f: &Finding,
) -> Result<String, SyncError> {
    let Some(id) = &f.grant_id else {
        return Ok("skipped: no grant".into());
    };
    lock.check()?;
    let g = s
        .grants
        .end_removed_externally(
            id,
            SYNC_ACTOR,
            json!({ "source": "sync", "sync_run_id": run_id }),
        )
        .await?;
    Ok(match g.state {
        GrantState::RemovedExternally => "ended".into(),
        other => format!("skipped: the grant is {}", other.as_str()),
    })
}

/// Re-adds an active grant's access through the grants service's `restore`: only while the
/// grant is active and unexpired (re-checked under the access lock: a sync never re-adds
/// expired access), scheduled like any grant, audited once with the run id. Roles are not
/// restored: a new role assignment would not be the one the grant records.
async fn restore(
    s: &Syncer,
    lock: &SyncLock,
    run_id: &str,
    f: &Finding,
) -> Result<String, SyncError> {
    let Some(id) = &f.grant_id else {
        return Ok("skipped: no grant".into());
    };
    lock.check()?;
    let note = AuditNote {
        actor: SYNC_ACTOR.into(),
        action: "sync.access_restored".into(),
        subject: subject(f),
        details: details(run_id, f, Some("restored")),
    };
    Ok(match s.grants.restore(id, &note).await? {
        Restored::Restored => "restored".into(),
        Restored::NotActive => "skipped: the grant is no longer active".into(),
        Restored::RoleNotRestored => {
            "skipped: admin roles are not restored; end or re-request the grant".into()
        }
    })
}
