//! CSV that a spreadsheet opens as text: every cell the broker writes to a CSV passes through
//! [`cell`], which neutralises formula injection (OWASP "CSV Injection", CWE-1236).
//!
//! Why it exists: an exported cell holds what outsiders typed (a request's reason, a review
//! comment, a login, an Okta display name). A cell starting with `=`, `+`, `-` or `@` is a formula
//! to Excel, LibreOffice and Google Sheets (`=HYPERLINK(…)`, `=WEBSERVICE(…)`, DDE), so an export
//! could run code or leak data on the auditor's machine. OWASP's advice is to prefix such a cell
//! with a single quote, which spreadsheets take as "this is text"; tab and carriage return are
//! on OWASP's list too, and NUL and line feed on ASVS 5's (1.2.10). Beyond that advice, a cell whose
//! first non-blank character is one of these is neutralised as well, because LibreOffice's import
//! can trim leading spaces before it evaluates. Separators and quotes inside a cell cannot start
//! a new cell: the `csv` crate quotes them (RFC 4180).
//!
//! The quote is visible to a program that reads the CSV as data; the JSON (and JSON Lines)
//! exports and the PDF carry every value unchanged, and are what to verify hashes against.
//!
//! What it must never do: be bypassed by a CSV writer of its own (every CSV goes through
//! [`Writer`]), or change a cell that does not need it.

use std::borrow::Cow;
use std::io::Write;

/// First characters that make a spreadsheet read a cell as a formula or a command.
const TRIGGERS: [char; 7] = ['=', '+', '-', '@', '\t', '\r', '\n'];

/// `value`, prefixed with `'` if a spreadsheet would take it for a formula.
pub fn cell(value: &str) -> Cow<'_, str> {
    let first_significant = value.trim_start_matches(' ').chars().next();
    let risky = value.starts_with('\0')
        || value.starts_with(TRIGGERS)
        || first_significant.is_some_and(|c| TRIGGERS.contains(&c));
    if risky {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// A `csv::Writer` whose every cell goes through [`cell`].
pub struct Writer<W: Write> {
    inner: csv::Writer<W>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer {
            inner: csv::Writer::from_writer(out),
        }
    }

    /// Writes one row, each cell neutralised.
    pub fn row<I, S>(&mut self, cells: I) -> Result<(), csv::Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.inner
            .write_record(cells.into_iter().map(|c| cell(c.as_ref()).into_owned()))
    }

    pub fn flush(&mut self) -> Result<(), csv::Error> {
        self.inner.flush().map_err(csv::Error::from)
    }

    pub fn into_inner(self) -> Result<W, csv::Error> {
        self.inner
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starts_are_quoted_and_the_rest_is_untouched() {
        for risky in [
            "=1+1",
            "+1",
            "-2",
            "@SUM(A1)",
            "\t=x",
            "\r=x",
            "\n=x",
            "\0x",
            "  =HYPERLINK(\"http://evil\")",
        ] {
            assert_eq!(cell(risky), format!("'{risky}"), "{risky:?}");
        }
        for plain in [
            "",
            "alice@example.com",
            "a=b",
            "deploy - hotfix",
            "'=already",
            "{\"a\":1}",
            "  ",
        ] {
            assert_eq!(cell(plain), plain, "{plain:?}");
        }
    }

    #[test]
    fn separators_and_quotes_stay_inside_their_cell() {
        let mut w = Writer::new(Vec::new());
        w.row(["x,=1+1", "\"=2\"", "=3"]).unwrap();
        let out = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(out.as_bytes());
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(&rec[0], "x,=1+1");
        assert_eq!(&rec[1], "\"=2\"");
        assert_eq!(&rec[2], "'=3");
    }
}
