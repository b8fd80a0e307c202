//! The PDF evidence report, from a report value built here: it is a PDF, its pages grow with
//! the items (a table continues on new pages, never drops a row), the title page carries the
//! audit range and head hash, and over-long cells are cut with an ellipsis.

use jit_broker::reviews::pdf::to_pdf;
use jit_broker::reviews::report::{self, Report};
use jit_broker::reviews::{Campaign, DefaultAction, Item, ReviewerRule};

fn sample(n: usize) -> Report {
    let campaign = Campaign {
        id: "0190-test".into(),
        name: "Q4 review".into(),
        owner: "owner@example.com".into(),
        resources: vec!["db-owners".into(), "payroll".into()],
        include_unmanaged: false,
        standing_only: false,
        allow_self_review: false,
        reviewer: ReviewerRule::Approvers,
        fallback: "dave@example.com".into(),
        default: DefaultAction::Keep,
        due_at: 1_800_000_000_000,
        state: "closed".into(),
        created_at: 1_790_000_000_000,
        closed_at: Some(1_800_000_000_000),
        audit_seq_start: 10,
        recur: None,
        next_run_at: None,
        parent_id: None,
        run_at: None,
    };
    let items = (0..n)
        .map(|k| Item {
            item_id: k as i64,
            user_id: format!("00u{k}"),
            user_login: format!("user{k}@example.com"),
            resource: if k % 2 == 0 { "db-owners" } else { "payroll" }.into(),
            kind: "group".into(),
            okta_id: "00g1".into(),
            resource_set: "managed".into(),
            scope: None,
            why: "standing".into(),
            grant_id: None,
            grants_90d: 0,
            last_granted_at: None,
            reviewer: "carol@example.com".into(),
            decision: Some("revoke".into()),
            comment: Some("no longer on the team ".repeat(10)),
            decided_by: Some("carol@example.com".into()),
            decided_at: Some(1_795_000_000_000),
            remediation: Some("flagged".into()),
            remediation_detail: Some("inherited from group Everyone".into()),
            remediated_at: Some(1_800_000_100_000),
            read_back: Some("present".into()),
            read_back_at: Some(1_800_000_200_000),
            delegated_from: None,
        })
        .collect();
    Report {
        campaign,
        counts: report::Counts::default(),
        items,
        audit: report::Evidence {
            seq_start: 10,
            seq_end: 99,
            head_seq: 120,
            head_hash: "ab12cd34".into(),
        },
        checkpoint: None,
        decision_proofs: Vec::new(),
    }
}

/// The page tree's `/Count`.
fn page_count(pdf: &[u8]) -> usize {
    let at = pdf.windows(7).position(|w| w == b"/Count ").unwrap() + 7;
    let digits: String = pdf[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    digits.parse().unwrap()
}

fn contains(pdf: &[u8], s: &str) -> bool {
    pdf.windows(s.len()).any(|w| w == s.as_bytes())
}

#[test]
fn pages_grow_with_items_and_every_row_is_there() {
    let empty = to_pdf(&sample(0));
    assert!(empty.starts_with(b"%PDF-"));
    assert_eq!(page_count(&empty), 1, "the title page alone");
    let small = to_pdf(&sample(4));
    assert_eq!(page_count(&small), 2);
    assert!(contains(&small, "Q4 review"));
    assert!(contains(&small, "ab12cd34"));
    assert!(contains(&small, "sequence 10 to 99"));
    let big = to_pdf(&sample(400));
    // 200 rows per resource at 36 or so a page: several pages each, never one.
    assert!(page_count(&big) > 10, "{}", page_count(&big));
    for k in [0, 1, 199, 398, 399] {
        assert!(contains(&big, &format!("user{k}@example.com")), "row {k}");
    }
    assert!(contains(&big, "payroll (group, 200 items), continued"));
    // The long comment is cut, with WinAnsi's ellipsis (a hex string of its own).
    assert!(contains(&big, "(no longer on the team no longer"));
    assert!(contains(&big, "<85>"));
}
