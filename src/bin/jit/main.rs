//! `jit`: the terminal client for people. Sign in with Okta (device grant), list what you may
//! request, ask for access and wait for it, see and extend or end your grants, and decide on the
//! requests waiting for you.
//!
//! Why it exists: engineers live in a terminal; the broker's API is the one place that answers
//! (who may request, approve, extend). This binary only talks HTTP to it and to Okta, and shares
//! no code with the broker's domain (a test reads this directory and fails on any
//! `jit_broker::` path), so it can never hold policy logic of its own.
//!
//! What it must never do: decide what the API decides, print a token, or exit 0 when the thing
//! asked for did not happen (exit codes in `error::code`, documented in docs/cli.md).

mod client;
mod error;
mod oauth;
mod output;
mod store;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser, Subcommand};
use serde_json::{json, Value};

use client::{seg, Api};
use error::{code, CliError};

#[derive(Debug, Parser)]
#[command(
    name = "jit",
    version,
    about = "Just-in-time access from your terminal"
)]
struct Cli {
    /// The broker's URL (stored at `jit login`; this overrides it).
    #[arg(long, global = true, env = "JIT_BROKER_URL")]
    broker: Option<String>,
    /// Print JSON on stdout (errors too, as `{"error": {...}}`), for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Sign in with Okta (device authorization): shows a URL and a code to approve in a browser.
    Login {
        /// The Okta authorization server's issuer; default: the one the broker names.
        #[arg(long, env = "JIT_ISSUER")]
        issuer: Option<String>,
        /// The Okta app (native, device grant) `jit` signs in as.
        #[arg(long, env = "JIT_CLIENT_ID", default_value = "jit-cli")]
        client_id: String,
    },
    /// Forget the stored sign-in.
    Logout,
    /// The resources you may request, and what each asks of you.
    Resources,
    /// Ask for access; waits for the decision and prints the grant once active.
    Request {
        resource: String,
        /// How long, e.g. `1h`, `30m`.
        duration: String,
        #[arg(long)]
        reason: Option<String>,
        /// A ticket reference, when the resource asks for one.
        #[arg(long)]
        ticket: Option<String>,
        /// Return as soon as the request is made.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this long (the request stays pending), e.g. `10m`.
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// How often to ask while waiting.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, hide = true)]
        poll_interval: Duration,
    },
    /// Your grants, with the time left on each.
    Access {
        /// Include ended grants.
        #[arg(long)]
        all: bool,
    },
    /// Ask for more time on a grant.
    Extend {
        grant: String,
        duration: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// End a grant now.
    End {
        grant: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Requests waiting for your decision.
    Approvals,
    /// Approve a request.
    Approve {
        request: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a request.
    Deny {
        request: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                code::USAGE
            } else {
                code::OK
            });
        }
    };
    let json = cli.json;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jit: cannot start: {e}");
            return ExitCode::from(code::ERROR);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::from(code::OK),
        Err(e) => {
            if json {
                output::json(&json!({"error": {
                    "code": e.kind(),
                    "message": e.to_string(),
                    "exit_code": e.exit_code(),
                }}));
            }
            eprintln!("jit: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn http() -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .user_agent(concat!("jit/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| CliError::Other(format!("cannot build the HTTP client: {e}")))
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let json = cli.json;
    let broker = cli.broker.as_deref().map(|b| b.trim_end_matches('/'));
    let out = output::Out { json };
    match cli.verb {
        Verb::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "jit", &mut std::io::stdout());
            Ok(())
        }
        Verb::Login { issuer, client_id } => {
            let broker = broker.ok_or_else(|| {
                CliError::Other("which broker? pass --broker URL or set JIT_BROKER_URL".into())
            })?;
            let http = http()?;
            let server = oauth::discover(&http, broker, issuer.as_deref()).await?;
            let creds = oauth::device_login(&http, broker, &server, &client_id).await?;
            store::save(&creds)?;
            out.signed_in(&creds.login, broker);
            Ok(())
        }
        Verb::Logout => {
            let was = store::remove()?;
            out.done(
                &json!({"signed_out": was}),
                if was { "Signed out." } else { "Not signed in." },
            );
            Ok(())
        }
        verb => {
            let mut api = Api::signed_in(http()?, broker)?;
            signed_in_verb(&mut api, out, verb).await
        }
    }
}

async fn signed_in_verb(api: &mut Api, out: output::Out, verb: Verb) -> Result<(), CliError> {
    match verb {
        Verb::Resources => {
            let v = api.get("/v1/resources").await?;
            out.resources(&v);
        }
        Verb::Request {
            resource,
            duration,
            reason,
            ticket,
            no_wait,
            timeout,
            poll_interval,
        } => {
            let body = json!({
                "resource": resource,
                "duration": duration,
                "reason": reason,
                "ticket": ticket,
            });
            let (_, created) = api.post("/v1/requests", &body).await?;
            let id = created["request"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if no_wait || created["grant"]["state"] == "active" {
                out.request(&created_view(&created));
                return Ok(());
            }
            let view = wait(api, &id, timeout, poll_interval, out.json).await?;
            out.request(&view);
            let granted = view["grant"]["state"] == "active";
            if !granted {
                return Err(CliError::NotGranted(format!(
                    "request {id} ended {} without access",
                    view["state"].as_str().unwrap_or("?")
                )));
            }
        }
        Verb::Access { all } => {
            let me = api.login().to_string();
            let q = if all {
                String::new()
            } else {
                "&state=active".to_string()
            };
            let v = api
                .get(&format!(
                    "/v1/grants?user={}{q}",
                    url::form_urlencoded::byte_serialize(me.as_bytes()).collect::<String>()
                ))
                .await?;
            out.grants(&v);
        }
        Verb::Extend {
            grant,
            duration,
            reason,
        } => {
            let (status, v) = api
                .post(
                    &format!("/v1/grants/{}/extend", seg(&grant)?),
                    &json!({"duration": duration, "reason": reason}),
                )
                .await?;
            out.extended(status, &v);
        }
        Verb::End { grant, reason } => {
            let (_, v) = api
                .post(
                    &format!("/v1/grants/{}/revoke", seg(&grant)?),
                    &json!({ "reason": reason }),
                )
                .await?;
            out.grant(&v, "Ended");
        }
        Verb::Approvals => {
            let v = api.get("/v1/requests?mine_to_approve=true").await?;
            out.requests(&v);
        }
        Verb::Approve { request, comment } => {
            let (_, v) = api
                .post(
                    &format!("/v1/requests/{}/approve", seg(&request)?),
                    &json!({ "comment": comment }),
                )
                .await?;
            out.decided(&v);
        }
        Verb::Deny { request, comment } => {
            let (_, v) = api
                .post(
                    &format!("/v1/requests/{}/deny", seg(&request)?),
                    &json!({ "comment": comment }),
                )
                .await?;
            out.decided(&v);
        }
        Verb::Login { .. } | Verb::Logout | Verb::Completions { .. } => {}
    }
    Ok(())
}

/// The `POST /v1/requests` answer as `GET /v1/requests/{id}` shows it: the request's fields
/// with its grant beside them.
fn created_view(created: &Value) -> Value {
    let mut v = created["request"].clone();
    if let Some(m) = v.as_object_mut() {
        m.insert("grant".into(), created["grant"].clone());
    }
    v
}

/// Polls the request until it is decided and, if approved, its grant is active or failed.
async fn wait(
    api: &mut Api,
    id: &str,
    timeout: Duration,
    every: Duration,
    json: bool,
) -> Result<Value, CliError> {
    let id = seg(id)?.to_string();
    let spin = !json && std::io::stderr().is_terminal();
    let frames = ['|', '/', '-', '\\'];
    let started = Instant::now();
    let mut i = 0usize;
    loop {
        let v = api.get(&format!("/v1/requests/{id}")).await?;
        let state = v["state"].as_str().unwrap_or_default();
        let grant = v["grant"]["state"].as_str().unwrap_or_default();
        let settled = match state {
            "pending" => false,
            "approved" => matches!(
                grant,
                "active" | "failed" | "revoked" | "removed_externally"
            ),
            _ => true,
        };
        if settled {
            if spin {
                eprint!("\r\x1b[K");
            }
            return Ok(v);
        }
        if started.elapsed() >= timeout {
            if spin {
                eprintln!();
            }
            return Err(CliError::Timeout(format!(
                "request {id} is still {state} after {}; `jit access` shows it once granted",
                humantime::format_duration(timeout)
            )));
        }
        if spin {
            eprint!(
                "\r{} waiting for approval of {id} ({}s)",
                frames[i % frames.len()],
                started.elapsed().as_secs()
            );
            i += 1;
        }
        tokio::time::sleep(every).await;
    }
}
