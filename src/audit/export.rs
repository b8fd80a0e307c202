//! Streaming export of the audit log for auditors: JSON Lines or CSV.
//!
//! Rows are read one at a time from a database cursor and written through a buffer, so memory
//! stays flat for millions of entries. Each exported row carries `prev_hash` and `hash`, so an
//! auditor can re-verify the chain from the export alone: from the JSON Lines, which carry every
//! value unchanged. CSV cells that a spreadsheet would run as a formula are neutralised
//! ([`crate::csv_safe`]), so re-verifying from a CSV means removing that leading `'` first.

use std::io::Write;

use futures::StreamExt;
use serde::Serialize;

use super::{stream_raw, AuditError};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

/// The CSV header: the fields of [`ExportRow`], in order.
pub const CSV_HEADER: [&str; 9] = [
    "seq",
    "time",
    "at_ms",
    "actor",
    "action",
    "subject",
    "details",
    "prev_hash",
    "hash",
];

/// One exported row. `time` is RFC 3339 for people; `at_ms` is what the hash covers.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct ExportRow {
    pub seq: i64,
    pub time: String,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// The stored canonical JSON text, exactly as hashed.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Writes every entry with `since_ms <= at_ms < until_ms` to `out`; returns how many.
pub async fn export<W: Write>(
    store: &Store,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    format: ExportFormat,
    out: W,
) -> Result<u64, AuditError> {
    let mut rows = std::pin::pin!(stream_raw(store, since_ms, until_ms));
    let mut count = 0_u64;
    match format {
        ExportFormat::Jsonl => {
            let mut out = std::io::BufWriter::new(out);
            while let Some(r) = rows.next().await {
                let row = to_row(r?);
                serde_json::to_writer(&mut out, &row).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
                count += 1;
            }
            out.flush()?;
        }
        ExportFormat::Csv => {
            // Every cell through `csv_safe`: actors, subjects and details carry outsiders' text.
            let mut w = crate::csv_safe::Writer::new(out);
            w.row(CSV_HEADER)?;
            while let Some(r) = rows.next().await {
                let row = to_row(r?);
                w.row([
                    row.seq.to_string(),
                    row.time,
                    row.at_ms.to_string(),
                    row.actor,
                    row.action,
                    row.subject,
                    row.details,
                    row.prev_hash,
                    row.hash,
                ])?;
                count += 1;
            }
            w.flush()?;
        }
    }
    Ok(count)
}

fn to_row(e: super::RawEntry) -> ExportRow {
    ExportRow {
        seq: e.seq,
        time: crate::clock::ms_to_datetime(e.at_ms)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        at_ms: e.at_ms,
        actor: e.actor,
        action: e.action,
        subject: e.subject,
        details: e.details,
        prev_hash: e.prev_hash,
        hash: e.hash,
    }
}
