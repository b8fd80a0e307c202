//! The evidence report of a campaign (JSON or CSV): every item with its reviewer, decision,
//! comment, decision time, remediation outcome and Okta read-back, plus the audit chain's head
//! hash and the sequence range covering the campaign, so an auditor can run `jit-broker audit
//! verify` and know nothing in that range was edited.
//!
//! The JSON report also carries the newest signed checkpoint of the audit log and, for every
//! decision it covers, the decision's audit entry with its inclusion proof: an auditor checks
//! one decision in isolation with `jit-broker audit verify-proof` (docs/audit.md). A decision
//! newer than the newest checkpoint has no proof yet (ask again after the next one).
//!
//! What it must never do: compute anything the service did not record (the report reads the
//! stored items as they are), or call Okta.

use serde::{Deserialize, Serialize};

use super::{repo, Campaign, Item, ReviewError, ReviewService};
use crate::audit::checkpoint::{self, StoredCheckpoint};
use crate::audit::proof::{self, InclusionProof};

/// The audit range of a campaign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evidence {
    /// The seq of the campaign's `review.created` entry.
    pub seq_start: i64,
    /// The highest seq of an entry about the campaign (`subject = review:<id>`).
    pub seq_end: i64,
    /// The chain's head when the report was made: verifying up to it covers the range.
    pub head_seq: i64,
    pub head_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub campaign: Campaign,
    pub counts: Counts,
    pub items: Vec<Item>,
    pub audit: Evidence,
    /// The newest audit checkpoint when the report was made (`None` before the first).
    #[serde(default)]
    pub checkpoint: Option<StoredCheckpoint>,
    /// The latest `review.decided` entry of each decided item, with its inclusion proof in
    /// `checkpoint`, for the decisions that checkpoint covers.
    #[serde(default)]
    pub decision_proofs: Vec<DecisionProof>,
}

/// One decision's audit entry, provable against the report's checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DecisionProof {
    pub item_id: i64,
    pub proof: InclusionProof,
}

/// Items by decision and remediation outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub items: usize,
    pub keep: usize,
    pub revoke: usize,
    pub undecided: usize,
    pub remediation_done: usize,
    pub remediation_flagged: usize,
    pub remediation_failed: usize,
    pub remediation_pending: usize,
    pub read_back_gone: usize,
    pub read_back_present: usize,
    /// Revoked items not yet settled: neither confirmed gone by the read-back nor flagged for
    /// manual action (pending, failed, or read back as still present).
    pub revokes_unsettled: usize,
    /// The campaign is closed and every revoke is confirmed gone or flagged: what an auditor
    /// signs off on.
    pub complete: bool,
}

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 19] = [
    "item",
    "user_login",
    "user_id",
    "resource",
    "kind",
    "why",
    "grant_id",
    "reviewer",
    "delegated_from",
    "decision",
    "comment",
    "decided_by",
    "decided_at",
    "remediation",
    "remediation_detail",
    "read_back",
    "read_back_at",
    "audit_seq_range",
    "audit_head_hash",
];

impl ReviewService {
    pub async fn report(&self, id: &str) -> Result<Report, ReviewError> {
        let (campaign, items) = self.items(id, None).await?;
        let mut conn = self
            .grants()
            .store()
            .reads()
            .acquire()
            .await
            .map_err(crate::store::StoreError::Query)?;
        let (seq_end, head_seq, head_hash) = repo::audit_range(&mut conn, id).await?;
        let mut c = Counts {
            items: items.len(),
            ..Counts::default()
        };
        for i in &items {
            match i.decision.as_deref() {
                Some("keep") => c.keep += 1,
                Some("revoke") => c.revoke += 1,
                _ => c.undecided += 1,
            }
            match i.remediation.as_deref() {
                Some("done") => c.remediation_done += 1,
                Some("flagged") => c.remediation_flagged += 1,
                Some("failed") => c.remediation_failed += 1,
                Some("pending") => c.remediation_pending += 1,
                _ => {}
            }
            match i.read_back.as_deref() {
                Some("gone") => c.read_back_gone += 1,
                Some("present") => c.read_back_present += 1,
                _ => {}
            }
            let settled = i.remediation.as_deref() == Some("flagged")
                || (i.remediation.as_deref() == Some("done")
                    && i.read_back.as_deref() == Some("gone"));
            if i.decision.as_deref() == Some("revoke") && !settled {
                c.revokes_unsettled += 1;
            }
        }
        c.complete = campaign.state == "closed" && c.revokes_unsettled == 0;
        drop(conn);
        let store = self.grants().store();
        let checkpoint = checkpoint::latest(store).await?;
        let mut decision_proofs = Vec::new();
        if let Some(cp) = &checkpoint {
            for (item_id, seq) in repo::decision_entries(store, id).await? {
                if seq as u64 <= cp.tree_size {
                    let proof = proof::prove(store, seq, &cp.note, cp.tree_size).await?;
                    decision_proofs.push(DecisionProof { item_id, proof });
                }
            }
        }
        Ok(Report {
            checkpoint,
            decision_proofs,
            audit: Evidence {
                seq_start: campaign.audit_seq_start,
                seq_end,
                head_seq,
                head_hash,
            },
            campaign,
            counts: c,
            items,
        })
    }
}

fn time(ms: Option<i64>) -> String {
    ms.map(|t| crate::clock::ms_to_datetime(t).to_rfc3339())
        .unwrap_or_default()
}

/// The report as CSV: one row per item; the audit range and head hash repeat on every row so
/// each row stands on its own in a spreadsheet.
pub fn to_csv(r: &Report) -> Result<Vec<u8>, csv::Error> {
    // Every cell through `csv_safe`: logins, reasons and comments are outsiders' text.
    let mut w = crate::csv_safe::Writer::new(Vec::new());
    w.row(CSV_HEADER)?;
    let range = format!("{}-{}", r.audit.seq_start, r.audit.seq_end);
    for i in &r.items {
        w.row([
            i.item_id.to_string(),
            i.user_login.clone(),
            i.user_id.clone(),
            i.resource.clone(),
            i.kind.clone(),
            i.why.clone(),
            i.grant_id.clone().unwrap_or_default(),
            i.reviewer.clone(),
            i.delegated_from.clone().unwrap_or_default(),
            i.decision.clone().unwrap_or_else(|| "undecided".into()),
            i.comment.clone().unwrap_or_default(),
            i.decided_by.clone().unwrap_or_default(),
            time(i.decided_at),
            i.remediation.clone().unwrap_or_default(),
            i.remediation_detail.clone().unwrap_or_default(),
            i.read_back.clone().unwrap_or_default(),
            time(i.read_back_at),
            range.clone(),
            r.audit.head_hash.clone(),
        ])?;
    }
    w.into_inner()
}
