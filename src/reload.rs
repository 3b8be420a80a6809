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
    pub need_restart: Vec<String>,
}

pub fn apply(app: &App, new: Settings) -> Reloaded {
    let mut running = app.running.0.lock().unwrap_or_else(PoisonError::into_inner);
    let mut need_restart: Vec<String> = Vec::new();
    let mut bound = |key: String, changed: bool| {
        if changed {
            need_restart.push(key);
        }
    };
    bound(
        "server.listen".into(),
        running.server.listen != new.server.listen,
    );
    bound(
        "server.max_replay_body_bytes".into(),
        running.server.max_replay_body_bytes != new.server.max_replay_body_bytes,
    );
    let shape = |settings: &Settings| -> Vec<(String, String, Option<std::net::SocketAddr>)> {
        settings
            .sites
            .iter()
            .map(|site| (site.name.clone(), site.path_prefix.clone(), site.listen))
            .collect()
    };
    bound("wikis".into(), shape(&running) != shape(&new));
    for (index, (old_site, new_site)) in running.sites.iter().zip(&new.sites).enumerate() {
        let prefix = if new.named_sites {
            format!("wikis[{index}].")
        } else {
            String::new()
        };
        let (old_wiki, new_wiki) = (&old_site.wiki, &new_site.wiki);
        bound(
            format!("{prefix}wiki.api_url"),
            old_wiki.api_url != new_wiki.api_url,
        );
        bound(
            format!("{prefix}wiki.user_agent"),
            old_wiki.user_agent != new_wiki.user_agent,
        );
        bound(
            format!("{prefix}wiki.timeout_secs"),
            old_wiki.timeout != new_wiki.timeout,
        );
        let (old_policy, new_policy) = (&old_site.policy, &new_site.policy);
        bound(
            format!("{prefix}policy"),
            old_policy.read_only != new_policy.read_only
                || old_policy.allow_actions != new_policy.allow_actions
                || old_policy.deny_actions != new_policy.deny_actions,
        );
    }
    for key in &need_restart {
        tracing::warn!(
            key,
            "changing this takes a restart; the running value is kept"
        );
    }
    // Tokens, addresses and names apply to the next request.
    *app.access.write().unwrap_or_else(PoisonError::into_inner) =
        Arc::new(Access::new(new.access.clone(), running.listen_addresses()));
    // New credentials apply to the wiki of the same name; wikis added or
    // removed wait for the restart named above.
    let mut credentials_changed = false;
    for new_site in &new.sites {
        let Some(site) = app.site(&new_site.name) else {
            continue;
        };
        let Some(running_site) = running
            .sites
            .iter_mut()
            .find(|running| running.name == new_site.name)
        else {
            continue;
        };
        let _entered = site.span.enter();
        if site.login.set_credentials(new_site.login.clone()) {
            credentials_changed = true;
            tracing::info!(user = %new_site.login.username, "configuration reloaded with new credentials; logging in again");
            site.sessions.log_in_again();
        }
        running_site.login = new_site.login.clone();
    }
    if !credentials_changed {
        tracing::info!("configuration reloaded; the credentials are unchanged");
    }
    running.access = new.access;
    Reloaded {
        credentials_changed,
        need_restart,
    }
}
