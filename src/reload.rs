//! Applying a reloaded configuration (SIGHUP) to a running proxy. New
//! credentials (a changed password file, say) take effect at once with a
//! fresh login; keys bound at start (the listen address, the wiki) are kept
//! with a warning that they need a restart. A file that does not load is
//! refused by the caller before it gets here, so a typo never stops a
//! running proxy.

use std::sync::{Arc, Mutex, PoisonError};

use crate::access::Access;

use crate::config::Settings;
use crate::server::App;

/// The settings a running proxy was started or last reloaded with.
#[derive(Debug)]
pub struct Running(Mutex<Settings>);

impl Running {
    pub fn new(settings: Settings) -> Self {
        Self(Mutex::new(settings))
    }
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub credentials_changed: bool,
    /// Keys whose new values wait for a restart.
    pub need_restart: Vec<&'static str>,
}

pub fn apply(app: &App, new: Settings) -> Reloaded {
    let mut running = app.running.0.lock().unwrap_or_else(PoisonError::into_inner);
    let bound_at_start = [
        ("server.listen", running.server.listen != new.server.listen),
        (
            "server.max_replay_body_bytes",
            running.server.max_replay_body_bytes != new.server.max_replay_body_bytes,
        ),
        ("wiki.api_url", running.wiki.api_url != new.wiki.api_url),
        (
            "wiki.user_agent",
            running.wiki.user_agent != new.wiki.user_agent,
        ),
        (
            "wiki.timeout_secs",
            running.wiki.timeout != new.wiki.timeout,
        ),
    ];
    let need_restart: Vec<&'static str> = bound_at_start
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect();
    for key in &need_restart {
        tracing::warn!(
            key,
            "changing this key takes a restart; the running value is kept"
        );
    }
    // Tokens, addresses and names apply to the next request.
    *app.access.write().unwrap_or_else(PoisonError::into_inner) =
        Arc::new(Access::new(new.access.clone(), running.server.listen));
    if running.policy.read_only != new.policy.read_only
        || running.policy.allow_actions != new.policy.allow_actions
        || running.policy.deny_actions != new.policy.deny_actions
    {
        tracing::warn!(
            key = "policy",
            "changing the action policy takes a restart; the running policy is kept"
        );
    }
    let credentials_changed = app.login.set_credentials(new.login.clone());
    if credentials_changed {
        tracing::info!(user = %new.login.username, "configuration reloaded with new credentials; logging in again");
        app.sessions.log_in_again();
    } else {
        tracing::info!("configuration reloaded; the credentials are unchanged");
    }
    running.login = new.login;
    running.access = new.access;
    Reloaded {
        credentials_changed,
        need_restart,
    }
}
