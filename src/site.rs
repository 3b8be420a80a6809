//! One wiki behind the proxy, at run time: its login, session, request
//! pipeline and metrics, and the paths clients reach it at. Wikis share
//! nothing but the listener, so one wiki's failing login never touches
//! another's requests.

use std::net::SocketAddr;
use std::sync::Arc;

use time::format_description::well_known::Rfc3339;
use tracing::Instrument as _;

use crate::config::{ServerSettings, SiteSettings};
use crate::proxy::Proxy;
use crate::session::login::WikiLogin;
use crate::session::{self, SessionManager, SessionStatus};
use crate::telemetry::Metrics;
use crate::upstream;

#[derive(Debug)]
pub struct Site {
    pub name: String,
    pub path_prefix: String,
    /// Served on this address of its own; `None`: on `server.listen`.
    pub listen: Option<SocketAddr>,
    pub proxy: Proxy,
    pub sessions: Arc<SessionManager>,
    pub metrics: Arc<Metrics>,
    /// The login flow, whose credentials a reload may replace.
    pub login: Arc<WikiLogin>,
    /// [`SiteSettings::api_paths`], matched per request.
    api_paths: Vec<String>,
    /// [`SiteSettings::page_paths`]: empty when pages are not served.
    page_scripts: Vec<(String, &'static str)>,
    /// Names the wiki on its log lines when the file has `[[wikis]]`.
    pub span: tracing::Span,
}

/// What a path asks of a wiki.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Its `api.php`.
    Api,
    /// `{prefix}/readyz`: this wiki's readiness alone.
    Readiness,
    /// `index.php` or `rest.php`: `script` and what follows it in the path
    /// (`/v1/page/Main_Page` for `rest.php`).
    Page {
        script: &'static str,
        path_info: String,
    },
}

impl Site {
    /// Starts the wiki's login driver, keepalive and state-file saver.
    pub fn start(
        settings: &SiteSettings,
        server: &ServerSettings,
        named: bool,
    ) -> Result<Self, upstream::ClientError> {
        let span = if named {
            tracing::info_span!("wiki", name = %settings.name)
        } else {
            tracing::Span::none()
        };
        let http = upstream::client(&settings.wiki, &settings.etiquette)?;
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
        let sessions = span.in_scope(|| {
            let saved = state_file.as_ref().and_then(session::persist::load);
            SessionManager::start_resuming(login.clone(), metrics.clone(), saved)
        });
        if let Some(state_file) = state_file {
            tokio::spawn(
                session::persist::keep_saved(Arc::downgrade(&sessions), state_file)
                    .instrument(span.clone()),
            );
        }
        if let Some(interval) = settings.session.keepalive {
            tokio::spawn(
                session::keepalive::run(
                    Arc::downgrade(&sessions),
                    http.clone(),
                    settings.wiki.api_url.clone(),
                    interval,
                )
                .instrument(span.clone()),
            );
        }
        let proxy = Proxy::new(settings, server, http, sessions.clone(), metrics.clone());
        Ok(Self {
            name: settings.name.clone(),
            path_prefix: settings.path_prefix.clone(),
            listen: settings.listen,
            proxy,
            sessions,
            metrics,
            login,
            api_paths: settings.api_paths(),
            page_scripts: settings.page_paths(),
            span,
        })
    }

    /// What `path` asks of this wiki, if it is one of its paths.
    pub fn entry(&self, path: &str) -> Option<Entry> {
        if self.api_paths.iter().any(|api| api == path) {
            return Some(Entry::Api);
        }
        if !self.path_prefix.is_empty()
            && path.strip_prefix(self.path_prefix.as_str()) == Some("/readyz")
        {
            return Some(Entry::Readiness);
        }
        self.page_scripts.iter().find_map(|(script_path, script)| {
            let rest = path.strip_prefix(script_path.as_str())?;
            // `rest.php/v1/...` carries its route in the path; `index.php`
            // may carry the title there (`index.php/Main_Page`).
            (rest.is_empty() || rest.starts_with('/')).then(|| Entry::Page {
                script,
                path_info: rest.to_owned(),
            })
        })
    }

    /// The paths clients reach this wiki at, for error messages.
    pub fn served_paths(&self) -> impl Iterator<Item = &str> {
        self.api_paths
            .iter()
            .chain(self.page_scripts.iter().map(|(path, _)| path))
            .map(String::as_str)
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.sessions.status(), SessionStatus::Ready(_))
    }

    /// `{"user", "logged_in_since"}` when logged in, else `{"reason"}`.
    pub fn readiness(&self) -> serde_json::Value {
        match self.sessions.status() {
            SessionStatus::Ready(session) => {
                let since = time::OffsetDateTime::from(session.logged_in_since)
                    .format(&Rfc3339)
                    .unwrap_or_default();
                serde_json::json!({ "user": session.user, "logged_in_since": since })
            }
            SessionStatus::LoggingIn => serde_json::json!({ "reason": "logging in" }),
            SessionStatus::NotReady { reason } => serde_json::json!({ "reason": reason }),
        }
    }

    /// Sets the gauges read from the session's state, before rendering.
    pub fn update_session_gauges(&self) {
        let (logged_in, age) = match self.sessions.status() {
            SessionStatus::Ready(session) => (
                1,
                session
                    .logged_in_since
                    .elapsed()
                    .map_or(0.0, |age| age.as_secs_f64()),
            ),
            SessionStatus::LoggingIn | SessionStatus::NotReady { .. } => (0, 0.0),
        };
        self.metrics.logged_in.set(logged_in);
        self.metrics.session_age.set(age);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const BOT_PASSWORD: &str = "username = \"U@b\"\npassword = \"p\"";

    async fn site(login: &str) -> Site {
        let text = format!(
            "[[wikis]]\npath_prefix = \"/commons\"\n\
             [wikis.wiki]\napi_url = \"http://127.0.0.1:9/w/api.php\"\n\
             [wikis.login]\n{login}\n"
        );
        let settings = crate::config::Settings::from_toml(
            &text,
            std::path::Path::new("."),
            &crate::config::ProcessEnvironment,
        )
        .unwrap();
        Site::start(&settings.sites[0], &settings.server, true).unwrap()
    }

    #[tokio::test]
    async fn api_paths_carry_the_prefix() {
        let site = site(BOT_PASSWORD).await;
        assert_eq!(site.entry("/commons/api.php"), Some(Entry::Api));
        assert_eq!(site.entry("/commons/w/api.php"), Some(Entry::Api));
        assert_eq!(site.entry("/commons/readyz"), Some(Entry::Readiness));
        for other in [
            "/api.php",
            "/w/api.php",
            "/commonsx/api.php",
            "/commons/w/index.php",
        ] {
            assert_eq!(site.entry(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn main_account_sessions_also_serve_pages() {
        let site = site("method = \"clientlogin\"\nusername = \"U\"\npassword = \"p\"").await;
        assert_eq!(
            site.entry("/commons/w/index.php"),
            Some(Entry::Page {
                script: "index.php",
                path_info: String::new()
            })
        );
        assert_eq!(
            site.entry("/commons/w/rest.php/v1/page/Main_Page"),
            Some(Entry::Page {
                script: "rest.php",
                path_info: "/v1/page/Main_Page".into()
            })
        );
        assert_eq!(site.entry("/commons/w/rest.phpx"), None);
        assert_eq!(site.entry("/commons/w/load.php"), None);
    }
}
