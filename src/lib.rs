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
//! - [`server`]: accept loop, graceful shutdown, routing to each wiki,
//!   `/healthz` `/readyz` `/metrics`.
//! - [`site`]: one wiki behind the proxy: its session, pipeline, metrics and
//!   paths (several with `[[wikis]]`).
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
pub mod site;
pub mod telemetry;
pub mod upstream;

use std::sync::Arc;

use config::Settings;
use server::App;
use site::Site;

/// The application state, with each wiki's login driver started.
pub fn build(settings: &Settings) -> Result<Arc<App>, upstream::ClientError> {
    let sites = settings
        .sites
        .iter()
        .map(|site| Site::start(site, &settings.server, settings.named_sites).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(App::new(sites, settings)))
}
