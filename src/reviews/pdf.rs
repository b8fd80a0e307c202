//! The evidence report as a PDF a person can read: a title page (campaign, scope, dates, counts
//! by decision and by remediation outcome, the audit chain's head hash and the sequence range
//! to verify), then one table per resource (user, reviewer, decision, comment, decided at,
//! outcome, read-back time), continued on as many pages as it needs.
//!
//! Built from the same [`Report`] as the JSON and CSV, so the three cannot disagree. Written
//! with `pdf-writer` and the standard Helvetica fonts every PDF reader has, so no font file is
//! embedded. Streams are left uncompressed: the files stay searchable with plain tools (an
//! auditor can `grep` a login), and the largest report (20,000 items) is a few MiB.
//!
//! What it must never do: show a value the report does not hold, or drop a row (an over-long
//! cell is cut with an ellipsis, never the row).

use std::collections::BTreeMap;

use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str, TextStr};

use super::report::Report;
use super::Item;

/// A4 landscape, in points: the table has seven columns.
const PAGE_W: f32 = 842.0;
const PAGE_H: f32 = 595.0;
const MARGIN: f32 = 36.0;
const ROW_H: f32 = 12.0;
const BODY_SIZE: f32 = 8.0;
/// Where the last row may sit: above the footer line.
const BOTTOM: f32 = MARGIN + 20.0;

const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

/// Table columns: heading and width in points (they add up to the page width less margins).
const COLUMNS: [(&str, f32); 7] = [
    ("User", 140.0),
    ("Reviewer", 120.0),
    ("Decision", 50.0),
    ("Comment", 150.0),
    ("Decided at", 92.0),
    ("Outcome", 126.0),
    ("Read back at", 92.0),
];

/// The report as PDF bytes.
pub fn to_pdf(r: &Report) -> Vec<u8> {
    let mut pages = vec![title_page(r)];
    tables(r, &mut pages);
    assemble(r, pages)
}

/// One page's drawing, filled top-down.
struct Page {
    content: Content,
    y: f32,
}

impl Page {
    fn new() -> Self {
        Page {
            content: Content::new(),
            y: PAGE_H - MARGIN,
        }
    }

    fn text(&mut self, font: Name, size: f32, x: f32, y: f32, s: &str) {
        let bytes = win_ansi(s);
        self.content
            .begin_text()
            .set_font(font, size)
            .next_line(x, y);
        // pdf-writer writes a string with any byte above ASCII wholly in hex; shown in runs,
        // the ASCII (logins, hashes, comments) stays literal and searchable in the file.
        for run in bytes.chunk_by(|a, b| a.is_ascii() == b.is_ascii()) {
            self.content.show(Str(run));
        }
        self.content.end_text();
    }

    /// A line of text at the cursor, then the cursor moves down by `size * 1.5`.
    fn line(&mut self, font: Name, size: f32, s: &str) {
        let y = self.y - size;
        let max = PAGE_W - 2.0 * MARGIN;
        self.text(font, size, MARGIN, y, &fit(s, size, max));
        self.y -= size * 1.5;
    }

    /// A "label: value" line of the title page.
    fn field(&mut self, label: &str, value: &str) {
        let y = self.y - 10.0;
        self.text(BOLD, 10.0, MARGIN, y, label);
        let x = MARGIN + 150.0;
        self.text(REGULAR, 10.0, x, y, &fit(value, 10.0, PAGE_W - MARGIN - x));
        self.y -= 15.0;
    }

    fn rule(&mut self, y: f32) {
        self.content
            .set_line_width(0.5)
            .move_to(MARGIN, y)
            .line_to(PAGE_W - MARGIN, y)
            .stroke();
    }

    /// A table row at the cursor; the cursor moves down one row.
    fn row(&mut self, font: Name, cells: &[String; 7]) {
        let y = self.y - BODY_SIZE - 2.0;
        let mut x = MARGIN;
        for ((_, w), cell) in COLUMNS.iter().zip(cells) {
            // Two points of padding on the right keep neighbouring cells apart.
            self.text(font, BODY_SIZE, x, y, &fit(cell, BODY_SIZE, w - 4.0));
            x += w;
        }
        self.y -= ROW_H;
    }
}

fn date(ms: i64) -> String {
    crate::clock::ms_to_datetime(ms)
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

fn opt_date(ms: Option<i64>) -> String {
    ms.map(date).unwrap_or_default()
}

fn title_page(r: &Report) -> Page {
    let c = &r.campaign;
    let n = &r.counts;
    let mut p = Page::new();
    p.line(BOLD, 20.0, "Access review evidence");
    p.line(BOLD, 14.0, &c.name);
    p.y -= 6.0;
    p.field("Campaign", &c.id);
    p.field("Owner", &c.owner);
    p.field("State", &c.state);
    p.field("Resources", &c.resources.join(", "));
    let mut scope = Vec::new();
    if c.include_unmanaged {
        scope.push("with unmanaged Okta groups and apps");
    }
    scope.push(if c.standing_only {
        "standing access only"
    } else {
        "standing and granted access"
    });
    p.field("Scope", &scope.join("; "));
    p.field(
        "Self-review",
        if c.allow_self_review {
            "allowed"
        } else {
            "never (own access goes to the fallback)"
        },
    );
    let rule = match &c.reviewer {
        super::ReviewerRule::Approvers => "the resource's approvers".to_string(),
        super::ReviewerRule::Person { login } => login.clone(),
        super::ReviewerRule::Manager {} => "the holder's manager (Okta profile)".to_string(),
    };
    p.field("Reviewers", &rule);
    p.field("Fallback reviewer", &c.fallback);
    p.field("Undecided at due date", c.default.as_str());
    p.field("Created", &date(c.created_at));
    p.field("Due", &date(c.due_at));
    p.field("Closed", &opt_date(c.closed_at));
    p.y -= 8.0;
    p.line(BOLD, 12.0, "Decisions");
    p.field("Items", &n.items.to_string());
    p.field("Keep", &n.keep.to_string());
    p.field("Revoke", &n.revoke.to_string());
    p.field("Undecided", &n.undecided.to_string());
    p.y -= 8.0;
    p.line(BOLD, 12.0, "Remediation of revokes");
    p.field("Done", &n.remediation_done.to_string());
    p.field(
        "Flagged for manual action",
        &n.remediation_flagged.to_string(),
    );
    p.field("Failed", &n.remediation_failed.to_string());
    p.field("Pending", &n.remediation_pending.to_string());
    p.field("Read back: gone", &n.read_back_gone.to_string());
    p.field("Read back: present", &n.read_back_present.to_string());
    p.field(
        "Complete",
        &if n.complete {
            "yes: closed, every revoke confirmed gone or flagged".to_string()
        } else if c.state == "closed" {
            format!(
                "no: {} revokes not yet confirmed or flagged",
                n.revokes_unsettled
            )
        } else {
            "no: the campaign is still open".to_string()
        },
    );
    p.y -= 8.0;
    p.line(BOLD, 12.0, "Audit chain");
    let a = &r.audit;
    p.field(
        "Campaign entries",
        &format!("sequence {} to {}", a.seq_start, a.seq_end),
    );
    p.field("Chain head", &format!("sequence {}", a.head_seq));
    p.field("Head hash", &a.head_hash);
    p.y -= 4.0;
    p.line(
        REGULAR,
        9.0,
        "`jit-broker audit verify` checks every entry up to the head: if it passes, nothing in the range above was edited.",
    );
    p
}

/// What became of an item's revoke: remediation outcome, its reason when flagged or failed, and
/// what reading Okta back found.
fn outcome(i: &Item) -> String {
    let Some(rem) = i.remediation.as_deref() else {
        return String::new();
    };
    let mut s = rem.to_string();
    if let Some(rb) = i.read_back.as_deref() {
        s.push_str(", ");
        s.push_str(rb);
    }
    if matches!(rem, "flagged" | "failed") {
        if let Some(d) = i.remediation_detail.as_deref() {
            s.push_str(": ");
            s.push_str(d);
        }
    }
    s
}

fn cells(i: &Item) -> [String; 7] {
    [
        i.user_login.clone(),
        // A delegated item names both: who decides it now, and who handed it over.
        match &i.delegated_from {
            Some(from) => format!("{} (from {from})", i.reviewer),
            None => i.reviewer.clone(),
        },
        i.decision.clone().unwrap_or_else(|| "undecided".into()),
        i.comment.clone().unwrap_or_default(),
        opt_date(i.decided_at),
        outcome(i),
        opt_date(i.read_back_at),
    ]
}

fn header() -> [String; 7] {
    COLUMNS.map(|(h, _)| h.to_string())
}

/// One table per resource, in name order; a table that does not fit continues on the next page
/// under its heading (marked "continued") and column headers.
fn tables(r: &Report, pages: &mut Vec<Page>) {
    let mut by_resource: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
    for i in &r.items {
        by_resource.entry(i.resource.as_str()).or_default().push(i);
    }
    let mut page = Page::new();
    let mut first = true;
    for (resource, items) in by_resource {
        let kind = items.first().map(|i| i.kind.as_str()).unwrap_or_default();
        // A table starts where the last ended if its heading, headers and one row fit.
        if !first && page.y - (30.0 + 2.0 * ROW_H) < BOTTOM {
            pages.push(std::mem::replace(&mut page, Page::new()));
        }
        first = false;
        let heading = format!("{resource} ({kind}, {} items)", items.len());
        table_head(&mut page, &heading);
        for i in items {
            if page.y - ROW_H < BOTTOM {
                pages.push(std::mem::replace(&mut page, Page::new()));
                table_head(&mut page, &format!("{heading}, continued"));
            }
            page.row(REGULAR, &cells(i));
        }
        page.y -= 10.0;
    }
    if !first {
        pages.push(page);
    }
}

fn table_head(page: &mut Page, heading: &str) {
    page.line(BOLD, 12.0, heading);
    page.row(BOLD, &header());
    page.rule(page.y + 1.0);
}

/// Writes the document: catalog, page tree, the two fonts, and every page with a footer naming
/// the campaign and "page n of m".
fn assemble(r: &Report, pages: Vec<Page>) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    // Each page takes two ids: the page and its content stream.
    let page_ref = |n: usize| Ref::new(6 + 2 * n as i32);
    let content_ref = |n: usize| Ref::new(7 + 2 * n as i32);

    pdf.catalog(catalog).pages(tree);
    let total = pages.len();
    pdf.pages(tree)
        .kids((0..total).map(page_ref))
        .count(total as i32);
    // WinAnsi so Latin-1 letters and the ellipsis show as themselves (see `win_ansi`).
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info)
        .title(TextStr(&format!(
            "Access review evidence: {}",
            r.campaign.name
        )))
        .producer(TextStr("jit-broker"));

    for (n, mut page) in pages.into_iter().enumerate() {
        let footer = format!(
            "Campaign {} ({})  -  page {} of {}",
            r.campaign.name,
            r.campaign.id,
            n + 1,
            total
        );
        page.rule(MARGIN + 12.0);
        page.text(
            REGULAR,
            7.0,
            MARGIN,
            MARGIN,
            &fit(&footer, 7.0, PAGE_W - 2.0 * MARGIN),
        );
        let mut p = pdf.page(page_ref(n));
        p.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        p.parent(tree);
        p.contents(content_ref(n));
        let mut res = p.resources();
        res.fonts().pair(REGULAR, regular).pair(BOLD, bold);
        drop(res);
        drop(p);
        pdf.stream(content_ref(n), &page.content.finish());
    }
    pdf.finish()
}

/// The approximate advance of a character in Helvetica, in thousandths of the font size. The
/// standard fonts are not embedded, so their metrics are not at hand; these classes follow
/// Helvetica's widths closely enough, erring wide, that a cut cell never runs into the next.
fn advance(c: char) -> f32 {
    match c {
        'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' | ' ' => 278.0,
        'f' | 't' | 'r' | 'I' | '(' | ')' | '[' | ']' | '-' | '/' => 333.0,
        'm' | 'M' | 'W' | 'w' | '@' | '%' => 944.0,
        'A'..='Z' => 722.0,
        _ => 556.0,
    }
}

fn width(s: &str, size: f32) -> f32 {
    s.chars().map(advance).sum::<f32>() * size / 1000.0
}

/// `s` as is if it fits in `max` points, else cut to fit with an ellipsis.
fn fit(s: &str, size: f32, max: f32) -> String {
    // Line breaks in a cell would draw over the next row.
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if width(&s, size) <= max {
        return s;
    }
    let room = max - width("\u{2026}", size);
    let mut out = String::new();
    let mut used = 0.0;
    for c in s.chars() {
        let w = advance(c) * size / 1000.0;
        if used + w > room {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('\u{2026}');
    out
}

/// Text in WinAnsiEncoding, the encoding the fonts are declared with: ASCII and Latin-1 map to
/// themselves, the ellipsis to 0x85, and anything else (which Helvetica cannot draw) to `?`.
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            '\u{2026}' => 0x85,
            ' '..='~' | '\u{a0}'..='\u{ff}' => c as u32 as u8,
            _ => b'?',
        })
        .collect()
}
