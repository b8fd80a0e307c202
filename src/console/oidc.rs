//! Okta sign-in for the console: the authorization code flow with PKCE, state and nonce.
//!
//! Why it exists: the console's identity is the person's Okta login, proven by an ID token that
//! a maintained OIDC library checks (signature against the issuer's JWKS, issuer, audience,
//! expiry, nonce). Discovery is fetched lazily and kept for an hour, so a broker starts while
//! Okta is unreachable and picks up rotated signing keys.
//!
//! What it must never do: check a token by hand, follow redirects from the token endpoint, or
//! let the browser read or change the nonce or PKCE verifier (they travel only sealed in the
//! `jit_login` cookie, see `pending`).

use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use super::error::ConsoleError;
use super::ConsoleConfig;
use crate::clock::Clock;

/// Discovery (and with it the JWKS) is refreshed this often.
const METADATA_TTL_MS: i64 = 3_600_000;

/// What the start of a sign-in hands back: where to send the browser, and what to remember.
pub struct Started {
    pub url: url::Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Who signed in, from a verified ID token.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    pub login: String,
    pub name: String,
    /// When the person last authenticated to Okta (Unix ms).
    pub auth_time_ms: i64,
}

#[derive(Clone)]
pub struct Oidc {
    cfg: Arc<ConsoleConfig>,
    redirect: String,
    http: reqwest::Client,
    clock: Clock,
    metadata: Arc<Mutex<Option<(i64, CoreProviderMetadata)>>>,
}

impl Oidc {
    pub fn new(
        cfg: Arc<ConsoleConfig>,
        redirect: String,
        clock: Clock,
    ) -> Result<Oidc, ConsoleError> {
        let http = reqwest::Client::builder()
            // The token endpoint answering with a redirect is an attack, not a hint (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ConsoleError::Okta(e.to_string()))?;
        Ok(Oidc {
            cfg,
            redirect,
            http,
            clock,
            metadata: Arc::new(Mutex::new(None)),
        })
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, ConsoleError> {
        let mut guard = self.metadata.lock().await;
        let now = self.clock.now_ms();
        if let Some((at, m)) = guard.as_ref() {
            if now - at < METADATA_TTL_MS {
                return Ok(m.clone());
            }
        }
        let issuer = IssuerUrl::new(self.cfg.issuer.clone())
            .map_err(|e| ConsoleError::Okta(format!("issuer: {e}")))?;
        // The library checks that the document's issuer is exactly the configured one.
        let m = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| ConsoleError::Okta(format!("discovery: {}", crate::error::chain(&e))))?;
        *guard = Some((now, m.clone()));
        Ok(m)
    }

    fn secret(&self) -> Option<ClientSecret> {
        self.cfg
            .client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose_secret().to_string()))
    }

    fn redirect_url(&self) -> Result<RedirectUrl, ConsoleError> {
        RedirectUrl::new(self.redirect.clone())
            .map_err(|e| ConsoleError::Okta(format!("redirect url: {e}")))
    }

    /// Builds the authorization request; `max_age` asks Okta for a sign-in at most that old.
    pub async fn start(&self, max_age: Option<Duration>) -> Result<Started, ConsoleError> {
        let m = self.metadata().await?;
        let client = CoreClient::from_provider_metadata(
            m,
            ClientId::new(self.cfg.client_id.clone()),
            self.secret(),
        )
        .set_redirect_uri(self.redirect_url()?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge);
        if let Some(age) = max_age {
            req = req.set_max_age(age);
        }
        let (url, state, nonce) = req.url();
        Ok(Started {
            url,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Redeems `code` and verifies the ID token against `nonce`.
    pub async fn finish(
        &self,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<Identity, ConsoleError> {
        let m = self.metadata().await?;
        let client = CoreClient::from_provider_metadata(
            m,
            ClientId::new(self.cfg.client_id.clone()),
            self.secret(),
        )
        .set_redirect_uri(self.redirect_url()?);
        let resp = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| ConsoleError::Okta(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| {
                ConsoleError::SignInRejected(format!("code exchange: {}", crate::error::chain(&e)))
            })?;
        let id_token = resp
            .id_token()
            .ok_or_else(|| ConsoleError::SignInRejected("no ID token in the answer".into()))?;
        let clock = self.clock.clone();
        let verifier = client.id_token_verifier().set_time_fn(move || clock.now());
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce.to_string()))
            .map_err(|e| ConsoleError::SignInRejected(format!("ID token: {e}")))?;
        let auth_time_ms = claims
            .auth_time()
            .map(|t| t.timestamp_millis())
            .ok_or_else(|| ConsoleError::SignInRejected("ID token has no auth_time".into()))?;
        let login = claims
            .preferred_username()
            .map(|u| u.as_str().to_string())
            .ok_or_else(|| {
                ConsoleError::SignInRejected("ID token has no preferred_username".into())
            })?;
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_string())
            .unwrap_or_else(|| login.clone());
        Ok(Identity {
            subject: claims.subject().as_str().to_string(),
            login,
            name,
            auth_time_ms,
        })
    }
}
