//! mw-auth-proxy: an authenticating reverse proxy for the MediaWiki Action
//! API. It logs in once (bot password, clientlogin or OAuth 2), keeps the
//! session to itself,
//! and sends every `api.php` request it receives on to the wiki as the bot.
//! When the wiki drops the session it logs in again, once for all waiting
//! requests, and replays what failed.
//!
//! # Layout
//! - [`config`]: the TOML file, checked into [`config::Settings`].
//! - [`access`]: who may use the proxy (address, token, Host, Origin).
//! - [`server`]: accept loop, graceful shutdown, `/healthz` `/readyz` `/metrics`.
//! - [`proxy`]: the forwarding pipeline for one request: guards and policy,
//!   replayable bodies, upload inspection, token renewal, etiquette.
//! - [`session`]: the login methods (bot password, clientlogin, OAuth 2),
//!   the cookie jar, the login driver (single-flight re-login), keepalive,
//!   the state file.
//! - [`mediawiki`]: pure rules of MediaWiki: parameters, answers, error codes.
//! - [`error`]: the one place errors become client responses.
//! - [`telemetry`]: metrics and logs. [`upstream`]: the HTTP client.
//! - [`reload`]: applying a configuration reloaded on SIGHUP.
//! - [`secret`]: values that must never be shown.

pub mod access;
pub mod config;
pub mod error;
pub mod mediawiki;
pub mod proxy;
pub mod reload;
pub mod secret;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod upstream;

use std::sync::Arc;

use config::Settings;
use server::App;
use session::SessionManager;
use session::login::WikiLogin;
use telemetry::Metrics;

/// The application state, with its login driver started.
pub fn build(settings: &Settings) -> Result<Arc<App>, upstream::ClientError> {
    let http = upstream::client(&settings.wiki)?;
    let metrics = Arc::new(Metrics::new());
    let login = Arc::new(WikiLogin::new(
        http.clone(),
        settings.wiki.api_url.clone(),
        settings.login.clone(),
    ));
    let state_file =
        settings
            .session
            .state_file
            .clone()
            .map(|path| session::persist::StateFileSettings {
                path,
                api_url: settings.wiki.api_url.to_string(),
                username: settings.login.username.clone(),
            });
    let saved = state_file.as_ref().and_then(session::persist::load);
    let sessions = SessionManager::start_resuming(login.clone(), metrics.clone(), saved);
    if let Some(state_file) = state_file {
        tokio::spawn(session::persist::keep_saved(
            Arc::downgrade(&sessions),
            state_file,
        ));
    }
    if let Some(interval) = settings.session.keepalive {
        tokio::spawn(session::keepalive::run(
            Arc::downgrade(&sessions),
            http.clone(),
            settings.wiki.api_url.clone(),
            interval,
        ));
    }
    let proxy = proxy::Proxy::new(settings, http, sessions.clone(), metrics.clone());
    Ok(Arc::new(App {
        proxy,
        sessions,
        metrics,
        api_path: settings.wiki.api_url.path().to_owned(),
        login,
        running: reload::Running::new(settings.clone()),
        access: std::sync::RwLock::new(Arc::new(access::Access::new(
            settings.access.clone(),
            settings.server.listen,
        ))),
    }))
}
