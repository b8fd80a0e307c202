//! `jit-broker okta event-hook register|status`: set up and inspect the Okta event hook.
//!
//! Why it exists: the hook must subscribe exactly the event types the broker reacts to and
//! carry the header secret the broker checks (`events.auth_header`, `events.secret`); doing it
//! from the broker's own configuration keeps the two from drifting apart.
//!
//! Registration is reported only when the running broker accepts the secret: Okta's
//! verification request carries the hook's auth header and the broker answers it only when the
//! secret matches, and the command then sends the broker a test delivery (no events) with its
//! own secret. Otherwise it exits 1 saying what to fix. `status` also reads the broker's count
//! of refused hook requests (`event_hook_refusals`) and warns when deliveries are being refused.
//!
//! What it must never do: print the secret, or create a second hook for a URL that already has
//! one (registering again activates and verifies the existing hook).

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::Settings;
use crate::events::reactions::SUBSCRIBED;
use crate::events::refusals::{self, Refusal};
use crate::okta::event_hooks::{EventHook, NewEventHook};
use crate::okta::OktaClient;
use crate::store::Store;

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
            }
            for h in &hooks {
                print(h);
            }
            let mut ok = hooks
                .iter()
                .any(|h| h.status == "ACTIVE" && h.verification_status == "VERIFIED");
            if !refusals_report(&config, crate::clock::Clock::system()).await {
                ok = false;
            }
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
            let header = &config.events.auth_header;
            let fix = format!(
                "the broker at {url} must be running with the same events.secret \
                 (JIT_EVENTS__SECRET or events.secret_file) as this command, and events.auth_header \
                 `{header}`; `jit-broker okta event-hook status` shows the requests it refused"
            );
            // Okta's verification request carries the hook's auth header, and the broker
            // answers the challenge only when the secret matches: VERIFIED means the broker
            // accepts the secret Okta holds.
            let verified = match okta.verify_event_hook(&hook.id).await {
                Ok(h) if h.verification_status == "VERIFIED" => h,
                Ok(h) => {
                    print(&h);
                    eprintln!("error: Okta did not verify the hook: {fix}");
                    return Ok(ExitCode::from(1));
                }
                Err(e) => {
                    eprintln!("error: Okta could not verify the hook ({e}): {fix}");
                    return Ok(ExitCode::from(1));
                }
            };
            // And a delivery with this command's secret: a reused hook may hold an older one.
            if let Err(why) = test_delivery(&url, header, secret).await {
                eprintln!(
                    "error: the hook is verified in Okta, but the broker refused a test delivery \
                     carrying this command's secret ({why}): {fix}"
                );
                return Ok(ExitCode::from(1));
            }
            print(&verified);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// POSTs an empty delivery (no events) with the secret; `Ok` when the broker answers 2xx.
async fn test_delivery(
    url: &str,
    header: &str,
    secret: &secrecy::SecretString,
) -> Result<(), String> {
    use secrecy::ExposeSecret;
    // No redirects: reqwest drops only `Authorization` on a cross-origin redirect, and the hook
    // secret travels in a header of the operator's choosing; a 3xx is a failed check here.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let body = serde_json::json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": "jit-broker okta event-hook register",
        "eventId": uuid::Uuid::new_v4().to_string(),
        "data": { "events": [] },
    });
    let resp = client
        .post(url)
        .header(header, secret.expose_secret())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", resp.status().as_u16()))
    }
}

/// Refusals within this long before now make `status` warn that deliveries are being refused.
const RECENT_MS: i64 = 24 * 3600 * 1000;

/// Prints the hook requests the broker refused (from its database). Returns `false` when the
/// broker is refusing because it has no secret at all (a configuration error, never an
/// attacker's doing); other recent refusals warn but may be strangers probing the URL.
async fn refusals_report(config: &Settings, clock: crate::clock::Clock) -> bool {
    let rows = match Store::open(&config.database).await {
        Ok(store) => refusals::list(&store).await.map_err(anyhow::Error::from),
        Err(e) => Err(anyhow::Error::from(e)),
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("note: cannot read the broker's refused hook requests: {e:#}");
            return true;
        }
    };
    let now = clock.now_ms();
    let at = |ms: i64| {
        crate::clock::ms_to_datetime(ms).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let recent: Vec<_> = rows
        .iter()
        .filter(|r| now.saturating_sub(r.last_at) <= RECENT_MS)
        .collect();
    if rows.is_empty() {
        println!("broker: no hook requests refused");
    }
    if !recent.is_empty() {
        let n: i64 = recent.iter().map(|r| r.count).sum();
        println!(
            "WARNING: the broker is refusing hook requests ({n} refused, last in the past 24 h)"
        );
    }
    for r in &rows {
        println!(
            "broker refused {} hook request(s): reason={} first={} last={} ({})",
            r.count,
            r.reason,
            at(r.first_at),
            at(r.last_at),
            Refusal::explain(&r.reason)
        );
    }
    !recent
        .iter()
        .any(|r| r.reason == Refusal::NotConfigured.code())
}
