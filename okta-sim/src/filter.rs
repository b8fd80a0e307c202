//! The `filter` / `search` expression language of Okta list calls (a SCIM subset).
//!
//! Why it exists: delta sync lists groups with `lastMembershipUpdated gt "<time>"` and
//! `type eq "OKTA_GROUP"`; users are searched by `status` and `profile.login`. Supported:
//! `attr op value` with `eq ne gt ge lt le sw co`, `attr pr`, `and`, `or`, parentheses.
//! Time attributes compare as instants, everything else as case-insensitive strings.
//!
//! What it must never do: treat an unparseable expression as "match everything" (400 E0000031).

use crate::error::OktaError;

#[derive(Debug, Clone)]
pub enum Expr {
    Cmp(String, String, String),
    Present(String),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// A field value as seen by a filter.
pub enum Field {
    Str(String),
    Time(i64),
    Missing,
}

pub fn parse(input: &str) -> Result<Expr, OktaError> {
    let toks = tokenize(input)?;
    let mut pos = 0;
    let e = parse_or(&toks, &mut pos)?;
    if pos != toks.len() {
        return Err(OktaError::invalid_search());
    }
    Ok(e)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Open,
    Close,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, OktaError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Tok::Open);
            }
            ')' => {
                chars.next();
                out.push(Tok::Close);
            }
            '"' => {
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => v.extend(chars.next()),
                        Some('"') => break,
                        Some(ch) => v.push(ch),
                        None => return Err(OktaError::invalid_search()),
                    }
                }
                out.push(Tok::Quoted(v));
            }
            _ => {
                let mut w = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch == ' ' || ch == '(' || ch == ')' || ch == '"' {
                        break;
                    }
                    w.push(ch);
                    chars.next();
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Ok(out)
}

fn is_kw(t: Option<&Tok>, kw: &str) -> bool {
    matches!(t, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
}

fn parse_or(t: &[Tok], pos: &mut usize) -> Result<Expr, OktaError> {
    let mut left = parse_and(t, pos)?;
    while is_kw(t.get(*pos), "or") {
        *pos += 1;
        let right = parse_and(t, pos)?;
        left = Expr::Or(Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn parse_and(t: &[Tok], pos: &mut usize) -> Result<Expr, OktaError> {
    let mut left = parse_term(t, pos)?;
    while is_kw(t.get(*pos), "and") {
        *pos += 1;
        let right = parse_term(t, pos)?;
        left = Expr::And(Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn parse_term(t: &[Tok], pos: &mut usize) -> Result<Expr, OktaError> {
    match t.get(*pos) {
        Some(Tok::Open) => {
            *pos += 1;
            let e = parse_or(t, pos)?;
            if t.get(*pos) != Some(&Tok::Close) {
                return Err(OktaError::invalid_search());
            }
            *pos += 1;
            Ok(e)
        }
        Some(Tok::Word(attr)) => {
            let attr = attr.clone();
            *pos += 1;
            let Some(Tok::Word(op)) = t.get(*pos) else {
                return Err(OktaError::invalid_search());
            };
            let op = op.to_ascii_lowercase();
            *pos += 1;
            if op == "pr" {
                return Ok(Expr::Present(attr));
            }
            if !["eq", "ne", "gt", "ge", "lt", "le", "sw", "co"].contains(&op.as_str()) {
                return Err(OktaError::invalid_search());
            }
            let value = match t.get(*pos) {
                Some(Tok::Quoted(v)) | Some(Tok::Word(v)) => v.clone(),
                _ => return Err(OktaError::invalid_search()),
            };
            *pos += 1;
            Ok(Expr::Cmp(attr, op, value))
        }
        _ => Err(OktaError::invalid_search()),
    }
}

impl Expr {
    /// Checks that every attribute is one `known` accepts (unknown attributes are a 400).
    pub fn check_attrs(&self, known: &dyn Fn(&str) -> bool) -> Result<(), OktaError> {
        match self {
            Expr::Cmp(a, _, _) | Expr::Present(a) => {
                if known(a) {
                    Ok(())
                } else {
                    Err(OktaError::invalid_search())
                }
            }
            Expr::And(l, r) | Expr::Or(l, r) => {
                l.check_attrs(known)?;
                r.check_attrs(known)
            }
        }
    }

    pub fn eval(&self, get: &dyn Fn(&str) -> Field) -> bool {
        match self {
            Expr::And(l, r) => l.eval(get) && r.eval(get),
            Expr::Or(l, r) => l.eval(get) || r.eval(get),
            Expr::Present(a) => !matches!(get(a), Field::Missing),
            Expr::Cmp(a, op, v) => match get(a) {
                Field::Missing => op == "ne",
                Field::Time(t) => {
                    let Some(x) = crate::ids::parse_time(v) else {
                        return false;
                    };
                    cmp(op, t.cmp(&x))
                }
                Field::Str(s) => {
                    let (s, v) = (s.to_lowercase(), v.to_lowercase());
                    match op.as_str() {
                        "sw" => s.starts_with(&v),
                        "co" => s.contains(&v),
                        _ => cmp(op, s.cmp(&v)),
                    }
                }
            },
        }
    }
}

fn cmp(op: &str, o: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        "eq" => o == Equal,
        "ne" => o != Equal,
        "gt" => o == Greater,
        "ge" => o != Less,
        "lt" => o == Less,
        "le" => o != Greater,
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn eval(expr: &str, fields: &[(&str, Field)]) -> bool {
        let e = parse(expr).unwrap();
        e.eval(
            &|a| match fields.iter().find(|(k, _)| *k == a).map(|(_, v)| v) {
                Some(Field::Str(s)) => Field::Str(s.clone()),
                Some(Field::Time(t)) => Field::Time(*t),
                _ => Field::Missing,
            },
        )
    }

    #[test]
    fn and_binds_tighter_than_or_and_parentheses_override() {
        let f = [
            ("type", Field::Str("APP_GROUP".into())),
            ("profile.name", Field::Str("aws-users".into())),
        ];
        assert!(eval(
            r#"type eq "OKTA_GROUP" or type eq "APP_GROUP" and profile.name sw "aws""#,
            &f
        ));
        assert!(!eval(
            r#"(type eq "OKTA_GROUP" or type eq "APP_GROUP") and profile.name sw "gcp""#,
            &f
        ));
        assert!(eval(r#"profile.name co "USERS""#, &f));
        assert!(eval("profile.name pr", &f));
        assert!(!eval("profile.description pr", &f));
    }

    #[test]
    fn times_compare_as_instants() {
        let f = [(
            "lastMembershipUpdated",
            Field::Time(crate::ids::parse_time("2024-01-01T00:00:01.000Z").unwrap()),
        )];
        assert!(eval(
            r#"lastMembershipUpdated gt "2024-01-01T00:00:00.999Z""#,
            &f
        ));
        assert!(eval(
            r#"lastMembershipUpdated le "2024-01-01T01:00:01+01:00""#,
            &f
        ));
        assert!(!eval(r#"lastMembershipUpdated gt "not a time""#, &f));
    }

    #[test]
    fn malformed_expressions_are_errors() {
        for bad in [
            "",
            "type",
            "type eq",
            "type xx \"a\"",
            "(type eq \"a\"",
            "type eq \"a\" and",
            "type eq \"unterminated",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
