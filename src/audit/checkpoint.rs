//! Signed checkpoints of the audit log's Merkle tree: C2SP `tlog-checkpoint` bodies (origin,
//! tree size, base64 root) in C2SP `signed-note`s signed with Ed25519.
//!
//! Why it exists: a root the database's operators cannot forge, published outside the database,
//! is what makes a rewritten history detectable. The signing key is a secret given to the broker
//! (`audit.signing_key` or `audit.signing_key_file`), never stored in the database; auditors
//! verify with the public keys in `audit.verification_keys`, which may list retired keys so that
//! older checkpoints stay verifiable after a rotation. Without a signing key the broker still
//! writes checkpoints, unsigned and marked so (`key_name` empty, `signed: false`), and warns once.
//!
//! What it must never do: print or store the signing key, accept a note signed only by keys it
//! was not given, or hold the appenders' head lock while taking a checkpoint (it reads the head
//! without locking; a checkpoint never blocks an append).

use std::path::PathBuf;
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use signed_note::{Note, StandardSigner, StandardVerifier, Verifier, VerifierList};
use sqlx::Row;
use tlog_tiles::{Checkpoint as Body, Hash};

use super::merkle::{self, Frontier};
use super::AuditError;
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::error::ErrorCode;
use crate::store::{Store, Tx};

/// The `[audit]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The checkpoints' origin line: names this log, so a checkpoint of one deployment is never
    /// taken for another's (a schema-less URL by convention, e.g. `jit.example.com/audit`).
    pub origin: String,
    /// How often a checkpoint is taken when the log grew (also on a clean shutdown).
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// The Ed25519 signing key in signed-note form (`PRIVATE+KEY+name+hash+base64`), from
    /// `jit-broker audit keygen`.
    pub signing_key: Option<SecretString>,
    pub signing_key_file: Option<PathBuf>,
    /// Public keys (`name+hash+base64`) whose signatures are accepted: the current key's and
    /// retired ones. The signing key's own public key is always accepted.
    pub verification_keys: Vec<String>,
    /// HTTP endpoints every checkpoint note is POSTed to (a witness, a second party's store).
    pub witness_urls: Vec<String>,
}

impl AuditConfig {
    pub fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        crate::config::resolve_secret(
            "audit.signing_key",
            &mut self.signing_key,
            &self.signing_key_file,
        )?;
        self.signing_key_file = None;
        Ok(())
    }

    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.origin.trim().is_empty() || self.origin.chars().any(char::is_control) {
            errors.push(ConfigError::invalid(
                "audit.origin",
                "must be one non-empty line",
            ));
        }
        if self.checkpoint_interval < Duration::from_secs(1) {
            errors.push(ConfigError::invalid(
                "audit.checkpoint_interval",
                "must be at least 1s",
            ));
        }
        if let Some(k) = &self.signing_key {
            if let Err(e) = Signer::parse(k) {
                errors.push(ConfigError::invalid("audit.signing_key", e.to_string()));
            }
        }
        for (i, k) in self.verification_keys.iter().enumerate() {
            if StandardVerifier::new(k.trim()).is_err() {
                errors.push(ConfigError::invalid(
                    format!("audit.verification_keys[{i}]"),
                    "expected a signed-note verifier key `name+hash+base64` (from `jit-broker audit keygen`)",
                ));
            }
        }
        for (i, u) in self.witness_urls.iter().enumerate() {
            let ok = url::Url::parse(u)
                .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .unwrap_or(false);
            if !ok {
                errors.push(ConfigError::invalid(
                    format!("audit.witness_urls[{i}]"),
                    "expected an http:// or https:// URL",
                ));
            }
        }
        errors
    }

    /// The public keys checkpoints are verified with: the configured ones plus the signing
    /// key's own.
    pub fn verifier_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .verification_keys
            .iter()
            .map(|k| k.trim().to_string())
            .collect();
        if let Some(Ok(s)) = self.signing_key.as_ref().map(Signer::parse) {
            if !keys.contains(&s.public) {
                keys.push(s.public);
            }
        }
        keys
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Never quotes the key: only what is wrong with it.
    #[error("the signing key is not a signed-note Ed25519 key (`PRIVATE+KEY+name+hash+base64`)")]
    BadSigningKey,
    /// Names the key's place in the list, never the key: a signing key pasted where a verifier
    /// key belongs would otherwise be printed.
    #[error(
        "verifier key {0} (counting from 1) is not a signed-note verifier key (`name+hash+base64`)"
    )]
    BadVerifierKey(usize),
    #[error("`{0}` is not a valid key name (letters, digits and punctuation, no `+` or spaces)")]
    BadKeyName(String),
    #[error("the checkpoint is not a C2SP tlog-checkpoint")]
    Malformed,
    #[error("the checkpoint is unsigned")]
    Unsigned,
    #[error("the checkpoint's signature does not verify with any of the given keys ({0})")]
    NotVerified(String),
    #[error("the checkpoint is for `{found}`, not this log (`{expected}`)")]
    WrongOrigin { expected: String, found: String },
    #[error("signing the checkpoint failed")]
    Sign,
    #[error("no checkpoint has been taken yet")]
    NoneYet,
}

impl ErrorCode for CheckpointError {
    fn status(&self) -> StatusCode {
        match self {
            CheckpointError::NoneYet => StatusCode::NOT_FOUND,
            CheckpointError::Sign | CheckpointError::BadSigningKey => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            CheckpointError::NoneYet => "no_checkpoint",
            CheckpointError::NotVerified(_) => "checkpoint_not_verified",
            CheckpointError::WrongOrigin { .. } => "checkpoint_wrong_origin",
            CheckpointError::Unsigned => "checkpoint_unsigned",
            _ => "checkpoint_invalid",
        }
    }
}

/// The broker's signing key, with its public half.
pub struct Signer {
    inner: StandardSigner,
    /// The verifier key (`name+hash+base64`) for `audit.verification_keys`.
    pub public: String,
    pub name: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("public", &self.public)
            .finish()
    }
}

impl Signer {
    pub fn parse(key: &SecretString) -> Result<Signer, CheckpointError> {
        let text = key.expose_secret().trim();
        let inner = StandardSigner::new(text).map_err(|_| CheckpointError::BadSigningKey)?;
        // signed_note derives the public key only internally: derive it again for the verifier
        // key (`PRIVATE+KEY+name+hash+base64(0x01 || seed)`).
        let mut parts = text.splitn(5, '+');
        let name = parts
            .nth(2)
            .ok_or(CheckpointError::BadSigningKey)?
            .to_string();
        let b64 = parts.nth(1).ok_or(CheckpointError::BadSigningKey)?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| CheckpointError::BadSigningKey)?;
        let seed: [u8; 32] = raw
            .get(1..)
            .and_then(|s| s.try_into().ok())
            .ok_or(CheckpointError::BadSigningKey)?;
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = signed_note::new_ed25519_verifier_key(&name, &sk.verifying_key());
        Ok(Signer {
            inner,
            public,
            name,
        })
    }
}

/// A new key pair for `name`: (signing key, verifier key).
pub fn generate_key(name: &str) -> Result<(SecretString, String), CheckpointError> {
    if !signed_note::is_key_name_valid(name) {
        return Err(CheckpointError::BadKeyName(name.to_string()));
    }
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, name);
    Ok((SecretString::from(skey), vkey))
}

/// A verifier list from public keys.
pub fn verifiers(keys: &[String]) -> Result<VerifierList, CheckpointError> {
    let mut list: Vec<Box<dyn Verifier>> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let v =
            StandardVerifier::new(k.trim()).map_err(|_| CheckpointError::BadVerifierKey(i + 1))?;
        list.push(Box::new(v));
    }
    Ok(VerifierList::new(list))
}

/// A checkpoint as stored and published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCheckpoint {
    pub tree_size: u64,
    /// The root hash, base64 as in the note.
    pub root_hash: String,
    /// The signed note's text (or the bare checkpoint body when unsigned).
    pub note: String,
    pub signed: bool,
    pub key_name: Option<String>,
    pub created_at: i64,
}

/// The checkpoint body for `size` and `root`.
pub fn body(origin: &str, size: u64, root: Hash) -> Result<Vec<u8>, CheckpointError> {
    Ok(Body::new(origin, size, root, "")
        .map_err(|_| CheckpointError::Malformed)?
        .to_bytes())
}

/// Signs a checkpoint body; without a signer the body is returned as it is (unsigned).
pub fn sign(body: &[u8], signer: Option<&Signer>) -> Result<String, CheckpointError> {
    let text = match signer {
        Some(s) => {
            let mut note = Note::new(body, &[]).map_err(|_| CheckpointError::Malformed)?;
            note.add_sigs(&[&s.inner])
                .map_err(|_| CheckpointError::Sign)?;
            note.to_bytes()
        }
        None => body.to_vec(),
    };
    String::from_utf8(text).map_err(|_| CheckpointError::Malformed)
}

/// A checkpoint whose signature has been checked (or that was accepted unsigned).
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The names of the keys whose signatures verified; empty when unsigned was allowed.
    pub signed_by: Vec<String>,
}

/// Parses a checkpoint note and checks its signature with `keys`. An unsigned body is refused
/// unless `allow_unsigned`. `origin`, when given, must match.
pub fn verify(
    text: &str,
    keys: &[String],
    origin: Option<&str>,
    allow_unsigned: bool,
) -> Result<Verified, CheckpointError> {
    let (body_bytes, signed_by) = if text.contains("\n\n") {
        let note = Note::from_bytes(text.as_bytes()).map_err(|_| CheckpointError::Malformed)?;
        let list = verifiers(keys)?;
        let (ok, _) = note
            .verify(&list)
            .map_err(|e| CheckpointError::NotVerified(e.to_string()))?;
        (
            note.text().to_vec(),
            ok.iter().map(|s| s.name().to_string()).collect(),
        )
    } else if allow_unsigned {
        (text.as_bytes().to_vec(), Vec::new())
    } else {
        return Err(CheckpointError::Unsigned);
    };
    let body = Body::from_bytes(&body_bytes).map_err(|_| CheckpointError::Malformed)?;
    if let Some(expected) = origin {
        if body.origin() != expected {
            return Err(CheckpointError::WrongOrigin {
                expected: expected.to_string(),
                found: body.origin().to_string(),
            });
        }
    }
    Ok(Verified {
        origin: body.origin().to_string(),
        size: body.size(),
        root: *body.hash(),
        signed_by,
    })
}

/// The size and root of a checkpoint, signature NOT checked (to pick which tree to prove
/// against; whoever checks the proof checks the signature).
pub fn parse_unverified(text: &str) -> Result<(u64, Hash), CheckpointError> {
    let body = text.split_once("\n\n").map(|(b, _)| format!("{b}\n"));
    let body = body.as_deref().unwrap_or(text);
    let c = Body::from_bytes(body.as_bytes()).map_err(|_| CheckpointError::Malformed)?;
    Ok((c.size(), *c.hash()))
}

/// The base64 form of a hash, as in checkpoint bodies.
pub fn b64(h: &Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(h.0)
}

/// Takes a checkpoint of the tree as it stands, unless the newest stored one already has this
/// size (the log did not grow). Reads the head without locking it. Returns the checkpoint and
/// whether it is new; a new one must be stored with [`store_in`] (with its publication, in the
/// same transaction).
pub async fn prepare(
    store: &Store,
    clock: &Clock,
    origin: &str,
    signer: Option<&Signer>,
) -> Result<Option<StoredCheckpoint>, AuditError> {
    // A read connection: on SQLite the writer's one connection stays free for appends.
    let head = sqlx::query("SELECT tree_size, tree_frontier FROM audit_head WHERE id = 1")
        .fetch_one(store.reads())
        .await?;
    let size: i64 = head.try_get(0)?;
    let frontier = Frontier::decode(size as u64, &head.try_get::<String, _>(1)?)?;
    if let Some(last) = latest(store).await? {
        if last.tree_size >= size as u64 {
            return Ok(None);
        }
    }
    if size == 0 {
        return Ok(None);
    }
    let root = frontier.root()?;
    let note = sign(&body(origin, size as u64, root)?, signer)?;
    Ok(Some(StoredCheckpoint {
        tree_size: size as u64,
        root_hash: b64(&root),
        note,
        signed: signer.is_some(),
        key_name: signer.map(|s| s.name.clone()),
        created_at: clock.now_ms(),
    }))
}

/// Stores a checkpoint in the caller's transaction. Another replica may have stored the same
/// size: then nothing is written and `false` returned (publish nothing twice).
pub async fn store_in(tx: &mut Tx, c: &StoredCheckpoint) -> Result<bool, AuditError> {
    let r = sqlx::query(
        "INSERT INTO audit_checkpoints (tree_size, root_hash, note, key_name, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tree_size) DO NOTHING",
    )
    .bind(c.tree_size as i64)
    .bind(&c.root_hash)
    .bind(&c.note)
    .bind(&c.key_name)
    .bind(c.created_at)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<StoredCheckpoint, sqlx::Error> {
    let key_name: Option<String> = r.try_get(3)?;
    Ok(StoredCheckpoint {
        tree_size: r.try_get::<i64, _>(0)? as u64,
        root_hash: r.try_get(1)?,
        note: r.try_get(2)?,
        signed: key_name.is_some(),
        key_name,
        created_at: r.try_get(4)?,
    })
}

/// The newest stored checkpoint.
pub async fn latest(store: &Store) -> Result<Option<StoredCheckpoint>, AuditError> {
    let row = sqlx::query(
        "SELECT tree_size, root_hash, note, key_name, created_at FROM audit_checkpoints \
         ORDER BY tree_size DESC LIMIT 1",
    )
    .fetch_optional(store.reads())
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The stored checkpoint of exactly `size` entries.
pub async fn at_size(store: &Store, size: u64) -> Result<Option<StoredCheckpoint>, AuditError> {
    let row = sqlx::query(
        "SELECT tree_size, root_hash, note, key_name, created_at FROM audit_checkpoints \
         WHERE tree_size = $1",
    )
    .bind(size as i64)
    .fetch_optional(store.reads())
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The oldest stored checkpoint that covers entry `seq`.
pub async fn covering(store: &Store, seq: i64) -> Result<Option<StoredCheckpoint>, AuditError> {
    let row = sqlx::query(
        "SELECT tree_size, root_hash, note, key_name, created_at FROM audit_checkpoints \
         WHERE tree_size >= $1 ORDER BY tree_size LIMIT 1",
    )
    .bind(seq)
    .fetch_optional(store.reads())
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Entries that no stored checkpoint covers yet.
pub async fn uncovered(store: &Store) -> Result<u64, AuditError> {
    let row = sqlx::query(
        "SELECT (SELECT seq FROM audit_head WHERE id = 1), \
                (SELECT COALESCE(MAX(tree_size), 0) FROM audit_checkpoints)",
    )
    .fetch_one(store.reads())
    .await?;
    let seq: i64 = row.try_get(0)?;
    let covered: i64 = row.try_get(1)?;
    Ok((seq - covered).max(0) as u64)
}

/// Stored roots must agree with the tree: a check for tests and `audit verify`.
pub async fn stored_root_b64(store: &Store, size: u64) -> Result<String, AuditError> {
    Ok(b64(&merkle::stored_root(store, size).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_signs_and_verifies_and_refuses_other_keys() {
        let (sk, vk) = generate_key("jit-test").unwrap();
        let signer = Signer::parse(&sk).unwrap();
        assert_eq!(signer.public, vk);
        let root = tlog_tiles::tlog::record_hash(b"x");
        let note = sign(&body("example/audit", 1, root).unwrap(), Some(&signer)).unwrap();
        let v = verify(
            &note,
            std::slice::from_ref(&vk),
            Some("example/audit"),
            false,
        )
        .unwrap();
        assert_eq!((v.size, v.root), (1, root));
        assert_eq!(v.signed_by, vec!["jit-test".to_string()]);

        let (_, other) = generate_key("jit-test").unwrap();
        assert!(matches!(
            verify(&note, &[other], None, false),
            Err(CheckpointError::NotVerified(_))
        ));
        assert!(matches!(
            verify(&note, std::slice::from_ref(&vk), Some("elsewhere"), false),
            Err(CheckpointError::WrongOrigin { .. })
        ));
        // A changed size under the same signature fails.
        let forged = note.replacen("\n1\n", "\n2\n", 1);
        assert!(verify(&forged, &[vk], None, false).is_err());
    }

    /// The note checked by hand from the C2SP specs, not through `signed_note`: body lines,
    /// blank line, `— name base64(key hash ‖ signature)`, key hash = SHA-256(name ‖ "\n" ‖ 0x01 ‖
    /// public key)[..4], Ed25519 over the body; the verifier key `name+hex(key hash)+base64(0x01 ‖
    /// public key)`.
    #[test]
    fn a_written_checkpoint_follows_the_specs_byte_for_byte() {
        use base64::engine::general_purpose::STANDARD;
        use ed25519_dalek::Verifier as _;
        use sha2::{Digest, Sha256};
        let (sk, vk) = generate_key("log.example-1").unwrap();
        let signer = Signer::parse(&sk).unwrap();
        let root = tlog_tiles::tlog::record_hash(b"entry");
        let note = sign(&body("example.com/audit", 42, root).unwrap(), Some(&signer)).unwrap();

        let (text, sigs) = note.split_once("\n\n").unwrap();
        let text = format!("{text}\n");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "example.com/audit");
        assert_eq!(lines[1], "42");
        assert_eq!(lines[2], STANDARD.encode(root.0));
        assert_eq!(lines.len(), 3);

        let mut vparts = vk.splitn(3, '+'); // base64 may hold '+'
        let (vname, vhash, vkey) = (
            vparts.next().unwrap(),
            vparts.next().unwrap(),
            STANDARD.decode(vparts.next().unwrap()).unwrap(),
        );
        assert_eq!(vname, "log.example-1");
        assert_eq!(vkey[0], 0x01, "Ed25519 algorithm byte");
        let mut h = Sha256::new();
        h.update(b"log.example-1\n");
        h.update(&vkey);
        let key_hash = h.finalize()[..4].to_vec();
        assert_eq!(vhash, hex::encode(&key_hash));

        let line = sigs.strip_suffix('\n').unwrap();
        assert_eq!(line.lines().count(), 1);
        let rest = line.strip_prefix("\u{2014} log.example-1 ").unwrap();
        let blob = STANDARD.decode(rest).unwrap();
        assert_eq!(
            &blob[..4],
            key_hash.as_slice(),
            "signature line carries the key hash"
        );
        let pk = ed25519_dalek::VerifyingKey::from_bytes(&vkey[1..].try_into().unwrap()).unwrap();
        let sig = ed25519_dalek::Signature::from_bytes(&blob[4..].try_into().unwrap());
        pk.verify(text.as_bytes(), &sig).unwrap();
        assert!(pk.verify(b"example.com/audit\n43\n", &sig).is_err());
    }

    #[test]
    fn unsigned_checkpoints_are_refused_unless_allowed() {
        let root = tlog_tiles::tlog::record_hash(b"x");
        let note = sign(&body("o", 3, root).unwrap(), None).unwrap();
        assert!(matches!(
            verify(&note, &[], None, false),
            Err(CheckpointError::Unsigned)
        ));
        assert_eq!(verify(&note, &[], None, true).unwrap().size, 3);
    }

    #[test]
    fn a_bad_signing_key_error_never_quotes_it() {
        let k = SecretString::from("PRIVATE+KEY+n+00000000+c2VjcmV0LXZhbHVl");
        let e = Signer::parse(&k).unwrap_err().to_string();
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }
}
