//! Every way a `jit` command fails, and the exit code each one gives (docs/cli.md lists them).
//!
//! Why it exists: scripts act on the exit code, people on the message. One enum maps both once,
//! so a verb never picks its own number.
//!
//! What it must never do: put a token (access or refresh) in a message.

use std::fmt;

/// Exit codes: stable once released.
pub mod code {
    pub const OK: u8 = 0;
    /// Anything not listed below (a local file that cannot be written, a bad answer).
    pub const ERROR: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// Not signed in, or the sign-in is over: run `jit login`.
    pub const AUTH: u8 = 3;
    /// The broker refused: the person may not do this (403).
    pub const FORBIDDEN: u8 = 4;
    /// No such request, grant or resource (404).
    pub const NOT_FOUND: u8 = 5;
    /// The broker refused the input or the state (400, 409, 422).
    pub const REFUSED: u8 = 6;
    /// The broker or Okta cannot be reached, or answered 5xx.
    pub const UNAVAILABLE: u8 = 7;
    /// The request ended without access: denied, expired, cancelled, or the grant failed.
    pub const NOT_GRANTED: u8 = 8;
    /// Still undecided when `--timeout` passed (the request stays pending).
    pub const TIMEOUT: u8 = 9;
}

#[derive(Debug)]
pub enum CliError {
    /// Not signed in / sign-in over.
    Auth(String),
    /// The broker answered with an error body.
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// Cannot reach a server.
    Unreachable {
        what: String,
        detail: String,
    },
    NotGranted(String),
    Timeout(String),
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Auth(_) => code::AUTH,
            CliError::Api { status, .. } => match *status {
                401 => code::AUTH,
                403 => code::FORBIDDEN,
                404 => code::NOT_FOUND,
                400 | 409 | 422 => code::REFUSED,
                s if s >= 500 => code::UNAVAILABLE,
                _ => code::ERROR,
            },
            CliError::Unreachable { .. } => code::UNAVAILABLE,
            CliError::NotGranted(_) => code::NOT_GRANTED,
            CliError::Timeout(_) => code::TIMEOUT,
            CliError::Other(_) => code::ERROR,
        }
    }

    /// The machine-readable code printed with `--json`.
    pub fn kind(&self) -> String {
        match self {
            CliError::Auth(_) => "not_signed_in".into(),
            CliError::Api { code, .. } => code.clone(),
            CliError::Unreachable { .. } => "unreachable".into(),
            CliError::NotGranted(_) => "not_granted".into(),
            CliError::Timeout(_) => "timeout".into(),
            CliError::Other(_) => "error".into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Auth(m) => write!(f, "{m}"),
            CliError::Api {
                status,
                code,
                message,
            } => write!(f, "the broker refused ({status} {code}): {message}"),
            CliError::Unreachable { what, detail } => {
                write!(f, "cannot reach {what}: {detail}")
            }
            CliError::NotGranted(m) | CliError::Timeout(m) | CliError::Other(m) => {
                write!(f, "{m}")
            }
        }
    }
}

/// A reqwest failure to reach `what`, without the URL's query (never carries a token: tokens go
/// in headers and form bodies, which reqwest's errors do not print).
pub fn unreachable(what: &str, e: reqwest::Error) -> CliError {
    let detail = if e.is_connect() {
        "connection refused or no route (is it running, is the URL right?)".to_string()
    } else if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.without_url().to_string()
    };
    CliError::Unreachable {
        what: what.to_string(),
        detail,
    }
}
