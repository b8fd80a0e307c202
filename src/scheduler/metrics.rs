//! The scheduler's metric names, in one place so dashboards and alerts have one reference.
//!
//! What it must never do: label a metric with a grant id or user (unbounded cardinality);
//! per-grant detail belongs in logs and the audit log.

/// Histogram: seconds from a grant's original due time to the moment its expiry completed.
pub const LATENESS: &str = "jit_expiry_lateness_seconds";
/// Gauge: members in the Redis index (ZCARD), refreshed at every claim.
pub const SCHEDULED: &str = "jit_expiry_scheduled";
/// Gauge: grants SQL says are overdue (past due by more than the sweep grace), per sweep.
pub const OVERDUE: &str = "jit_expiry_overdue";
/// Counter: grants moved to `failed` (permanent error or exhausted retries). Alert on increase.
pub const FAILED: &str = "jit_expiry_failed_total";
/// Counter: grants claimed (one per handler call).
pub const CLAIMS: &str = "jit_expiry_claims_total";
/// Counter: retryable failures that were re-scheduled with back-off.
pub const RETRIES: &str = "jit_expiry_retries_total";
/// Counter: index rebuilds from SQL, by `reason` (`start`, `periodic`, `data_loss`).
pub const REBUILDS: &str = "jit_expiry_rebuilds_total";
/// Counter: grants the SQL sweep found missing from the index and put back.
pub const SWEEP_REPAIRED: &str = "jit_expiry_sweep_repaired_total";
/// Counter: lease renewal rounds (one script call each, for a chunk still running).
pub const RENEWALS: &str = "jit_expiry_lease_renewals_total";
/// Gauge: how many grants this replica lets itself hold claimed at once (the adaptive window,
/// at most `scheduler.concurrency`; low while Okta throttles removals).
pub const WINDOW: &str = "jit_expiry_claim_window";

pub(crate) fn describe() {
    metrics::describe_histogram!(
        LATENESS,
        metrics::Unit::Seconds,
        "Expiry completed-at minus the grant's original due time"
    );
    metrics::describe_gauge!(SCHEDULED, "Grants in the Redis expiry index");
    metrics::describe_gauge!(OVERDUE, "Grants overdue according to SQL");
    metrics::describe_counter!(FAILED, "Grants moved to failed by the scheduler");
    metrics::describe_counter!(CLAIMS, "Due grants claimed by this replica");
    metrics::describe_counter!(RETRIES, "Retryable expiry failures re-scheduled");
    metrics::describe_counter!(REBUILDS, "Expiry index rebuilds from SQL");
    metrics::describe_counter!(SWEEP_REPAIRED, "Grants the SQL sweep put back in the index");
    metrics::describe_counter!(RENEWALS, "Lease renewal rounds for expiries still running");
    metrics::describe_gauge!(WINDOW, "Grants this replica may hold claimed at once");
    // Counters the alerts and dashboard watch for increases are exported at 0 from the start:
    // a series that first appears at 1 shows no increase.
    for name in [FAILED, RETRIES, RENEWALS, CLAIMS] {
        metrics::counter!(name).increment(0);
    }
}
