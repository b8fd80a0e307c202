//! Where `jit` keeps a person's sign-in: one JSON file, mode 0600, in the user's config directory
//! (`$JIT_CONFIG_DIR`, else `<config dir>/jit`, e.g. `~/.config/jit/credentials.json`).
//!
//! Why it exists: the device login yields a refresh token that lasts days; asking the person to
//! sign in for every command would be unusable. The OS keyring is not used: on Linux it needs a
//! running Secret Service and system libraries, and a 0600 file in the home directory is what
//! `gh`, `aws` and `gcloud` fall back to.
//!
//! What it must never do: create the file readable by others (it is written to a 0600 temporary
//! file in the same directory and renamed over, so no moment exists where it is wider), or print
//! its tokens.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// A signed-in session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// The broker's base URL.
    pub broker: String,
    /// The Okta authorization server's issuer and token endpoint.
    pub issuer: String,
    pub token_endpoint: String,
    pub client_id: String,
    pub refresh_token: String,
    pub access_token: String,
    /// When the access token expires (Unix seconds).
    pub access_expires_at: i64,
    /// The person's Okta login, for display.
    pub login: String,
}

pub fn dir() -> Result<PathBuf, CliError> {
    if let Some(d) = std::env::var_os("JIT_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    dirs::config_dir()
        .map(|d| d.join("jit"))
        .ok_or_else(|| CliError::Other("no config directory: set JIT_CONFIG_DIR".into()))
}

pub fn path() -> Result<PathBuf, CliError> {
    Ok(dir()?.join("credentials.json"))
}

/// The stored sign-in, `None` when there is none.
pub fn load() -> Result<Option<Credentials>, CliError> {
    let p = path()?;
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|_| {
            CliError::Auth(format!(
                "{} is not a jit sign-in; run `jit login` again",
                p.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::Other(format!("cannot read {}: {e}", p.display()))),
    }
}

pub fn save(c: &Credentials) -> Result<(), CliError> {
    let dir = dir()?;
    let fail = |what: &str, e: std::io::Error| CliError::Other(format!("cannot {what}: {e}"));
    std::fs::create_dir_all(&dir).map_err(|e| fail("create the config directory", e))?;
    let body = serde_json::to_vec_pretty(c).map_err(|e| CliError::Other(e.to_string()))?;
    let tmp = dir.join(format!(".credentials.{}.tmp", std::process::id()));
    write_private(&tmp, &body).map_err(|e| fail("write the sign-in", e))?;
    std::fs::rename(&tmp, dir.join("credentials.json")).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail("store the sign-in", e)
    })
}

pub fn remove() -> Result<bool, CliError> {
    match std::fs::remove_file(path()?) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CliError::Other(format!("cannot remove the sign-in: {e}"))),
    }
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(body)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, body: &[u8]) -> std::io::Result<()> {
    // The user's profile directory is private to them on Windows.
    std::fs::write(path, body)
}
