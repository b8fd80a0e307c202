//! Okta → inventory: users (delta by `lastUpdated`), groups (members re-listed only when
//! `lastMembershipUpdated` moved), managed apps' assignments, and admin role assignments of the
//! users the roles reconcile needs.
//!
//! Every call is on `Priority::Read`. Each object's listing is written in one fenced
//! transaction with its new delta key, so an interrupted run leaves objects either old (listed
//! again next time: their stored key did not move) or new.
//!
//! What it must never do: store a partial member list as complete (a listing that fails is
//! skipped with a warning and keeps its old rows and key), or fail the run over a part the
//! credential may not read (warn and go on).

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};

use super::lock::{fenced, SyncLock};
use super::{Counts, Progress, SyncError, SyncOptions, Syncer};
use crate::inventory::{repo, Why};
use crate::okta::{OktaError, Priority};
use crate::policy::ResourceKind;

/// Managed objects whose inventory rows are current, and as of when (Unix ms): grants activated
/// later may not show in them yet.
pub(crate) type Seen = HashMap<(ResourceKind, String, String), i64>;

/// Groups listed at once; the admission queue and the read share bound what reaches Okta.
const PARALLEL_LISTINGS: usize = 4;
/// Users written per transaction.
const USER_BATCH: usize = 200;

fn is_forbidden(e: &OktaError) -> bool {
    matches!(e.status(), Some(401) | Some(403))
}

pub(crate) async fn read_all(
    s: &Syncer,
    lock: &SyncLock,
    full: bool,
    users_since: i64,
    opts: &SyncOptions,
    counts: &mut Counts,
    warnings: &mut Vec<String>,
) -> Result<Seen, SyncError> {
    let progress = |phase: &'static str, objects: u64| {
        if let Some(p) = &opts.progress {
            p(&Progress {
                phase,
                objects,
                okta_calls: s.okta.dispatched(Priority::Read).values().sum(),
            });
        }
    };
    let policy = s.policy.current();
    let mut seen = Seen::new();

    // Users.
    let since = (!full && users_since > 0).then(|| crate::clock::ms_to_datetime(users_since));
    let mut users = s.okta.list_user_records(since, Priority::Read);
    let mut batch = Vec::with_capacity(USER_BATCH);
    loop {
        let next = users.try_next().await;
        let done = match next {
            Ok(Some(u)) => {
                batch.push(u);
                false
            }
            Ok(None) => true,
            Err(e) if is_forbidden(&e) => {
                warnings.push(format!(
                    "users not read: the credential may not list users ({e})"
                ));
                true
            }
            Err(e) => return Err(e.into()),
        };
        if batch.len() >= USER_BATCH || (done && !batch.is_empty()) {
            lock.check()?;
            let mut tx = fenced(&s.store, lock.fence()).await?;
            repo::upsert_users(&mut tx, &batch, s.clock.now_ms()).await?;
            tx.commit().await?;
            counts.users_read += batch.len() as u64;
            batch.clear();
            progress("users", counts.users_read);
        }
        if done {
            break;
        }
    }
    drop(users);

    // Groups: one list call per 10,000 groups, then members only where they moved.
    let groups_at = s.clock.now_ms();
    let groups: Vec<_> = match s.okta.list_all_groups(Priority::Read).try_collect().await {
        Ok(g) => g,
        Err(e) if is_forbidden(&e) => {
            warnings.push(format!(
                "groups not read: the credential may not list groups ({e})"
            ));
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    counts.groups_read = groups.len() as u64;
    {
        lock.check()?;
        let mut tx = fenced(&s.store, lock.fence()).await?;
        let rows: Vec<_> = groups
            .iter()
            .map(|g| (g.id.clone(), g.name.clone(), g.group_type.clone()))
            .collect();
        repo::upsert_objects(&mut tx, "okta_group", &rows, groups_at).await?;
        tx.commit().await?;
    }
    progress("groups", counts.groups_read);
    let managed_groups: HashSet<&str> = policy
        .resources
        .iter()
        .filter(|r| r.kind == ResourceKind::OktaGroup)
        .map(|r| r.okta_id.as_str())
        .collect();
    for id in &managed_groups {
        if !groups.iter().any(|g| g.id == *id) && !groups.is_empty() {
            warnings.push(format!("managed group {id} does not exist in Okta"));
        }
    }
    let stored = {
        let mut conn = s.store.reads().acquire().await?;
        repo::objects(&mut conn, "okta_group").await?
    };
    let mut to_list = Vec::new();
    for g in &groups {
        let managed = managed_groups.contains(g.id.as_str());
        // BUILT_IN (Everyone) holds every user and explains nothing: never listed.
        if !(managed || (s.cfg.all_groups && g.group_type != "BUILT_IN")) {
            continue;
        }
        let lmu = g.last_membership_updated.map(|t| t.timestamp_millis());
        let st = stored.get(&g.id);
        let unchanged = !full
            && lmu.is_some()
            && st
                .is_some_and(|o| o.members_listed_at.is_some() && o.last_membership_updated == lmu);
        if unchanged {
            counts.objects_unchanged += 1;
            if managed {
                seen.insert(
                    (ResourceKind::OktaGroup, g.id.clone(), String::new()),
                    groups_at,
                );
            }
        } else {
            to_list.push((g.id.clone(), lmu, managed));
        }
    }
    let okta = &s.okta;
    let mut listings =
        futures::stream::iter(to_list.into_iter().map(|(id, lmu, managed)| async move {
            let at = s.clock.now_ms();
            let members: Result<Vec<_>, _> = okta
                .list_all_group_members(&id, Priority::Read)
                .map_ok(|u| (u.id, None::<String>))
                .try_collect()
                .await;
            (id, lmu, managed, at, members)
        }))
        .buffer_unordered(PARALLEL_LISTINGS);
    while let Some((id, lmu, managed, at, members)) = listings.next().await {
        let members = match members {
            Ok(m) => m,
            Err(e) if is_forbidden(&e) || e.status() == Some(404) => {
                warnings.push(format!("members of group {id} not read: {e}"));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        lock.check()?;
        let mut tx = fenced(&s.store, lock.fence()).await?;
        let initial = if managed {
            Why::Unexplained
        } else {
            Why::Standing
        };
        repo::replace_holders(
            &mut tx,
            "okta_group",
            &id,
            "",
            &members,
            lmu,
            initial,
            s.clock.now_ms(),
        )
        .await?;
        tx.commit().await?;
        counts.objects_listed += 1;
        counts.memberships_seen += members.len() as u64;
        if managed {
            seen.insert((ResourceKind::OktaGroup, id, String::new()), at);
        }
        progress("group members", counts.objects_listed);
    }
    drop(listings);

    // Apps: Okta has no membership-changed stamp on apps, so they are listed each run.
    let mut apps: HashMap<String, (String, bool)> = policy
        .resources
        .iter()
        .filter(|r| r.kind == ResourceKind::OktaApp)
        .map(|r| (r.okta_id.clone(), (r.name.clone(), true)))
        .collect();
    if s.cfg.all_apps {
        match s
            .okta
            .list_apps(Priority::Read)
            .try_collect::<Vec<_>>()
            .await
        {
            Ok(all) => {
                for a in all {
                    apps.entry(a.id).or_insert((a.label, false));
                }
            }
            Err(e) if is_forbidden(&e) => warnings.push(format!(
                "apps not listed: the credential may not list apps ({e})"
            )),
            Err(e) => return Err(e.into()),
        }
    }
    for (app, (name, managed)) in &apps {
        let (app, name, managed) = (app.as_str(), name.as_str(), *managed);
        let at = s.clock.now_ms();
        let users: Result<Vec<_>, _> = s
            .okta
            .list_app_users(app, Priority::Read)
            .map_ok(|u| (u.id, Some(u.scope)))
            .try_collect()
            .await;
        let users = match users {
            Ok(u) => u,
            Err(e) if is_forbidden(&e) || e.status() == Some(404) => {
                warnings.push(format!("assignments of app {app} not read: {e}"));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        lock.check()?;
        let mut tx = fenced(&s.store, lock.fence()).await?;
        repo::upsert_objects(
            &mut tx,
            "okta_app",
            &[(app.to_string(), name.to_string(), "APP".to_string())],
            at,
        )
        .await?;
        repo::replace_holders(
            &mut tx,
            "okta_app",
            app,
            "",
            &users,
            None,
            if managed {
                Why::Unexplained
            } else {
                Why::Standing
            },
            s.clock.now_ms(),
        )
        .await?;
        tx.commit().await?;
        counts.objects_listed += 1;
        counts.memberships_seen += users.len() as u64;
        if managed {
            seen.insert((ResourceKind::OktaApp, app.to_string(), String::new()), at);
        }
        progress("app assignments", counts.objects_listed);
    }

    read_roles(s, lock, &policy, &mut seen, counts, warnings).await?;
    Ok(seen)
}

/// Okta lists a user's admin roles per user. The users read are those who hold or held a grant
/// of a managed role, the role resources' `allow_standing` users, the users the inventory
/// already shows holding a managed role, and every user Okta lists as holding any admin role
/// (`/api/v1/iam/assignees/users`), which finds roles given by hand.
async fn read_roles(
    s: &Syncer,
    lock: &SyncLock,
    policy: &crate::policy::Policy,
    seen: &mut Seen,
    counts: &mut Counts,
    warnings: &mut Vec<String>,
) -> Result<(), SyncError> {
    let roles: Vec<_> = policy
        .resources
        .iter()
        .filter(|r| r.kind == ResourceKind::OktaRole)
        .collect();
    if roles.is_empty() {
        return Ok(());
    }
    if s.okta.capabilities().is_some_and(|c| !c.manage_roles) {
        warnings.push(
            "admin role assignments not read: the credential is not a super admin".to_string(),
        );
        return Ok(());
    }
    let at = s.clock.now_ms();
    let mut users: Vec<String> = {
        let mut conn = s.store.reads().acquire().await?;
        let mut out = Vec::new();
        for r in &roles {
            let rows = sqlx::query(
                "SELECT DISTINCT user_id FROM grants WHERE kind = 'okta_role' AND okta_id = $1 \
                 UNION SELECT DISTINCT user_id FROM inventory_access WHERE kind = 'okta_role' \
                 AND okta_id = $1",
            )
            .bind(&r.okta_id)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                out.push(sqlx::Row::try_get::<String, _>(&row, 0)?);
            }
            for a in &r.allow_standing {
                if let Some(u) = repo::find_user(&mut conn, a).await? {
                    out.push(u.user_id);
                }
            }
        }
        out
    };
    // Everyone Okta says holds some admin role, so a role given by hand to someone the broker
    // never granted anything is found too. Without the right to list them, the users above are
    // still read (and the run says what it could not see).
    match s.okta.list_role_assignees(Priority::Read).await {
        Ok(ids) => users.extend(ids),
        Err(e) if is_forbidden(&e) => {
            warnings.push(format!(
                "users with admin roles not listed (only known holders read): {e}"
            ));
        }
        Err(e) => return Err(e.into()),
    }
    users.sort();
    users.dedup();
    for u in users {
        let assignments = match s.okta.list_user_roles(&u, Priority::Read).await {
            Ok(a) => a,
            Err(e) if is_forbidden(&e) => {
                warnings.push(format!("admin role assignments not read: {e}"));
                return Ok(());
            }
            Err(e) if e.status() == Some(404) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let rows: Vec<_> = assignments
            .into_iter()
            .map(|a| match a.role_id {
                Some(role) => (role, a.resource_set.unwrap_or_default(), a.id),
                None => (a.role_type, String::new(), a.id),
            })
            .collect();
        lock.check()?;
        let mut tx = fenced(&s.store, lock.fence()).await?;
        repo::replace_user_roles(&mut tx, &u, &rows, s.clock.now_ms()).await?;
        tx.commit().await?;
        counts.role_users_read += 1;
    }
    for r in roles {
        seen.insert(
            (
                ResourceKind::OktaRole,
                r.okta_id.clone(),
                r.resource_set.clone().unwrap_or_default(),
            ),
            at,
        );
    }
    Ok(())
}
