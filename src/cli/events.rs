//! `jit-broker okta event-hook register|status`: set up and inspect the Okta event hook.
//!
//! Why it exists: the hook must subscribe exactly the event types the broker reacts to and
//! carry the header secret the broker checks (`events.auth_header`, `events.secret`); doing it
//! from the broker's own configuration keeps the two from drifting apart.
//!
//! What it must never do: print the secret, or create a second hook for a URL that already has
//! one (registering again activates and verifies the existing hook).

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::Settings;
use crate::events::reactions::SUBSCRIBED;
use crate::okta::event_hooks::{EventHook, NewEventHook};
use crate::okta::OktaClient;

#[derive(Debug, Subcommand)]
pub enum OktaCommand {
    /// The Okta event hook the broker listens on.
    #[command(subcommand)]
    EventHook(EventHookCommand),
}

#[derive(Debug, Subcommand)]
pub enum EventHookCommand {
    /// Create (or reuse), activate and verify the hook: Okta then delivers to `--url`.
    Register {
        /// The broker's public hook URL, `https://broker.example.com/hooks/okta`.
        #[arg(long)]
        url: String,
        /// The hook's name in the Admin Console.
        #[arg(long, default_value = "jit-broker")]
        name: String,
    },
    /// Show the hooks registered in Okta and whether each is active and verified.
    Status,
}

/// `https://` anywhere; `http://` only to loopback (a local broker against okta-sim).
fn check_url(raw: &str) -> anyhow::Result<url::Url> {
    let u = url::Url::parse(raw.trim()).with_context(|| format!("--url `{raw}` is not a URL"))?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    match u.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => anyhow::bail!("--url must be https:// (http:// only for loopback)"),
    }
    if u.query().is_some() || u.fragment().is_some() {
        anyhow::bail!("--url must not have a query or fragment");
    }
    Ok(u)
}

fn print(h: &EventHook) {
    println!(
        "{} {} status={} verification={} uri={} header={} events={}",
        h.id,
        h.name,
        h.status,
        h.verification_status,
        h.uri,
        h.auth_header.as_deref().unwrap_or("-"),
        h.events.join(",")
    );
}

pub async fn run(config: Settings, cmd: OktaCommand) -> anyhow::Result<ExitCode> {
    let OktaCommand::EventHook(cmd) = cmd;
    // Check the arguments before anything reaches Okta.
    let url = match &cmd {
        EventHookCommand::Register { url, name } => {
            if name.trim().is_empty() || name.len() > 255 {
                anyhow::bail!("--name must be 1 to 255 characters");
            }
            Some(check_url(url)?)
        }
        EventHookCommand::Status => None,
    };
    if !config.okta.is_configured() {
        anyhow::bail!("okta.base_url is not set: there is no Okta to register the hook in");
    }
    let okta = OktaClient::new(&config.okta, crate::clock::Clock::system())?;
    match cmd {
        EventHookCommand::Status => {
            let hooks = okta.list_event_hooks().await?;
            if hooks.is_empty() {
                println!("no event hooks registered");
                return Ok(ExitCode::from(1));
            }
            for h in &hooks {
                print(h);
            }
            let ok = hooks
                .iter()
                .any(|h| h.status == "ACTIVE" && h.verification_status == "VERIFIED");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        EventHookCommand::Register { name, .. } => {
            let Some(secret) = config.events.secret.as_ref() else {
                anyhow::bail!(
                    "events.secret is not set (JIT_EVENTS__SECRET or events.secret_file): \
                     the hook needs the secret the broker checks"
                );
            };
            let url = url.map(|u| u.to_string()).unwrap_or_default();
            let existing = okta
                .list_event_hooks()
                .await?
                .into_iter()
                .find(|h| h.uri == url);
            let hook = match existing {
                Some(h) => {
                    eprintln!("reusing event hook {} for {url}", h.id);
                    h
                }
                None => {
                    okta.create_event_hook(&NewEventHook {
                        name: &name,
                        uri: &url,
                        events: &SUBSCRIBED,
                        auth_header: &config.events.auth_header,
                        secret,
                    })
                    .await?
                }
            };
            okta.activate_event_hook(&hook.id).await?;
            let verified = okta.verify_event_hook(&hook.id).await.context(
                "Okta could not verify the hook: is the broker serving GET /hooks/okta at --url?",
            )?;
            print(&verified);
            Ok(ExitCode::SUCCESS)
        }
    }
}
