//! The audit verbs for auditors: `audit verify --checkpoint`, `audit prove`, `audit
//! verify-proof` (no database), `audit keygen`.
//!
//! Why it exists: an auditor who trusts nobody at the company checks the log against a
//! checkpoint they kept, and single entries against their proofs, with the same code the broker
//! uses and formats other transparency-log tools read.
//!
//! What it must never do: call a log intact when a check could not run, print a signing key
//! anywhere but the file or terminal the operator asked for, or touch a database in
//! `verify-proof`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use secrecy::ExposeSecret;

use crate::audit::checkpoint::{self, AuditConfig};
use crate::audit::proof::{self, InclusionProof};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A checkpoint (signed note) kept outside the database: the log must contain exactly the
    /// history it signs, and the current log must extend it.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// A verifier key (`name+hash+base64`) to check the checkpoint with, instead of
    /// `audit.verification_keys`. Repeat for several.
    #[arg(long = "key", value_name = "PUBKEY")]
    pub keys: Vec<String>,
    /// Accept a checkpoint without a signature (taken while no signing key was configured).
    #[arg(long)]
    pub allow_unsigned: bool,
}

#[derive(Debug, Args)]
pub struct ProveArgs {
    /// The entry's sequence number.
    pub seq: i64,
    /// Prove against this checkpoint (its tree size) instead of the newest stored one.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Write the proof here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyProofArgs {
    /// A proof from `audit prove` or `GET /v1/audit/{seq}/proof`.
    pub file: PathBuf,
    /// A verifier key (`name+hash+base64`), instead of `audit.verification_keys`. Repeatable.
    #[arg(long = "key", value_name = "PUBKEY")]
    pub keys: Vec<String>,
    #[arg(long)]
    pub allow_unsigned: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The key's name, shown in every signature line (letters, digits, `.`, `-`; no spaces or
    /// `+`), e.g. `jit.example.com-2026`.
    pub name: String,
    /// Write the signing key to this new file (mode 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

fn keys_or_config(given: &[String], cfg: &AuditConfig) -> Vec<String> {
    if given.is_empty() {
        cfg.verifier_keys()
    } else {
        given.to_vec()
    }
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `audit verify --checkpoint FILE`: the chain, then the log against the checkpoint.
pub async fn verify_checkpoint(
    store: &Store,
    cfg: &AuditConfig,
    args: &VerifyArgs,
    file: &Path,
) -> anyhow::Result<ExitCode> {
    let keys = keys_or_config(&args.keys, cfg);
    let text = read_text(file)?;
    let cp = match checkpoint::verify(&text, &keys, Some(&cfg.origin), args.allow_unsigned) {
        Ok(cp) => cp,
        Err(e) => {
            println!("checkpoint REFUSED: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let signed = if cp.signed_by.is_empty() {
        "UNSIGNED".to_string()
    } else {
        format!("signed by {}", cp.signed_by.join(", "))
    };
    println!(
        "checkpoint: {} entries, root {}, {signed}",
        cp.size,
        checkpoint::b64(&cp.root)
    );
    let check = proof::check_log(store, &cp, &keys).await?;
    match &check.first_difference {
        None => {
            println!(
                "audit log matches the checkpoint: the tree at {} entries has its root, and the current {} entries are consistent with it",
                check.checkpoint_size, check.current_size
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(d) => {
            match d.seq {
                Some(seq) => println!(
                    "audit log DIFFERS from the checkpoint at entry {seq}: {}",
                    d.reason
                ),
                None => println!(
                    "audit log DIFFERS from the checkpoint between entries {} and {}: {}",
                    d.from, d.to, d.reason
                ),
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// `audit prove SEQ`: the inclusion proof as JSON.
pub async fn prove(store: &Store, args: &ProveArgs) -> anyhow::Result<ExitCode> {
    if args.seq < 1 {
        anyhow::bail!("SEQ must be a positive entry number");
    }
    let (note, size) = match &args.checkpoint {
        Some(path) => {
            let text = read_text(path)?;
            // Only its size is needed here: whoever checks the proof checks the signature.
            let (size, _) = checkpoint::parse_unverified(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            (text, size)
        }
        None => {
            let c = checkpoint::latest(store)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no checkpoint has been taken yet"))?;
            (c.note, c.tree_size)
        }
    };
    if args.seq as u64 > size {
        anyhow::bail!(
            "entry {} is not in the checkpoint's tree of {size} entries",
            args.seq
        );
    }
    let p = proof::prove(store, args.seq, &note, size).await?;
    let json = serde_json::to_string_pretty(&p)?;
    match &args.output {
        Some(path) => std::fs::write(path, json + "\n")
            .with_context(|| format!("writing {}", path.display()))?,
        None => println!("{json}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit verify-proof FILE`: offline.
pub fn verify_proof(keys: &[String], args: &VerifyProofArgs) -> anyhow::Result<ExitCode> {
    let text = read_text(&args.file)?;
    let p: InclusionProof = match serde_json::from_str(&text) {
        Ok(p) => p,
        Err(e) => {
            println!("proof REFUSED: not an inclusion proof ({e})");
            return Ok(ExitCode::from(1));
        }
    };
    match proof::verify_offline(&p, keys, args.allow_unsigned) {
        Ok(v) => {
            let signed = if v.signed_by.is_empty() {
                "UNSIGNED checkpoint".to_string()
            } else {
                format!("checkpoint signed by {}", v.signed_by.join(", "))
            };
            println!(
                "proof verified: entry {} ({} {} by {}) is in the tree of {} entries with root {} ({signed})",
                p.entry.seq,
                p.entry.action,
                p.entry.subject,
                p.entry.actor,
                v.size,
                checkpoint::b64(&v.root)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("proof REFUSED: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `audit keygen NAME`: a new Ed25519 key pair in signed-note form.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let (skey, vkey) = checkpoint::generate_key(&args.name)
        .map_err(|_| anyhow::anyhow!("the key name must be non-empty, without spaces or `+`"))?;
    match &args.output {
        Some(path) => {
            write_private(path, skey.expose_secret())?;
            eprintln!("signing key written to {}", path.display());
        }
        None => println!("signing key (audit.signing_key): {}", skey.expose_secret()),
    }
    println!("verifier key (audit.verification_keys): {vkey}");
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` (never overwriting) readable by its owner only, and writes `text` to it.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(format!("{text}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
