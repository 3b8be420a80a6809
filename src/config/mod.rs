//! Configuration: the TOML file as written by the operator (`Raw*`), checked
//! into typed [`Settings`]. Every problem is collected before failing, so an
//! operator fixes a file in one round instead of one key per restart.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use std::{fmt, fs};

use url::Url;

use crate::secret::Secret;

mod check;
mod login;
mod resilience;
mod security;
mod sites;

/// The environment variable that overrides the password from the file.
pub const PASSWORD_ENV: &str = "MW_AUTH_PROXY_PASSWORD";

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_REPLAY_BODY_BYTES: u64 = 8 * 1024 * 1024;
const DEFAULT_TIMEOUT_SECS: u64 = 60;
const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;
/// Uploads to MediaWiki are limited far below this by PHP itself.
const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024 * 1024;
const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
const DEFAULT_MAX_HEADERS: u64 = 100;
/// Also how long an idle keep-alive connection is kept.
const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 30;

/// Everything the proxy needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub log: LogSettings,
    pub access: AccessSettings,
    /// The wikis served: the one of `[wiki]` and `[login]`, or one per
    /// `[[wikis]]` table. Never empty.
    pub sites: Vec<SiteSettings>,
    /// The file used `[[wikis]]`: logs, metrics and `/readyz` name each
    /// wiki.
    pub named_sites: bool,
    /// Things that work but deserve the operator's attention, logged at
    /// start and on reload.
    pub warnings: Vec<String>,
}

/// One wiki behind the proxy: where clients reach it, and its own
/// connection, credentials and session.
#[derive(Debug, Clone)]
pub struct SiteSettings {
    /// Names the wiki in logs, metrics and `/readyz`.
    pub name: String,
    /// Put before the wiki's paths (`/commons` serves
    /// `/commons/w/api.php`); empty for the single-wiki form.
    pub path_prefix: String,
    /// Served on this address of its own instead of `server.listen`.
    pub listen: Option<SocketAddr>,
    pub wiki: WikiSettings,
    pub login: LoginSettings,
    pub policy: PolicySettings,
    pub session: SessionSettings,
    pub etiquette: EtiquetteSettings,
}

impl Settings {
    /// Every address the proxy listens on: `server.listen` first.
    pub fn listen_addresses(&self) -> Vec<SocketAddr> {
        let mut addresses = vec![self.server.listen];
        for listen in self.sites.iter().filter_map(|site| site.listen) {
            if !addresses.contains(&listen) {
                addresses.push(listen);
            }
        }
        addresses
    }
}

/// Where the password came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    Inline,
    File(std::path::PathBuf),
    Environment,
}

/// Whether users other than the owner may read the file.
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o044 != 0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Who may use the proxy.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    /// The operator accepts a non-loopback listen address without inbound
    /// authentication (something else guards the port).
    pub allow_unauthenticated_remote: bool,
    /// From `bearer_tokens` and `bearer_tokens_file` together; empty: no
    /// token needed.
    pub bearer_tokens: Vec<Secret>,
    pub bearer_tokens_file: Option<std::path::PathBuf>,
    /// Client addresses allowed; empty: any (loopback by default listen).
    pub allow_cidrs: Vec<ipnet::IpNet>,
    /// `Host` names accepted besides the listen address and localhost.
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted; a request with any other `Origin` header
    /// is refused.
    pub allowed_origins: Vec<String>,
    /// `/metrics` without inbound authentication.
    pub public_metrics: bool,
}

/// Keeping the session alive, and across restarts.
#[derive(Debug, Clone, Default)]
pub struct SessionSettings {
    /// How often an idle session is touched; `None`: never.
    pub keepalive: Option<Duration>,
    /// Where the session is kept across restarts.
    pub state_file: Option<std::path::PathBuf>,
    /// Renew tokens issued before the current session on `badtoken`.
    pub heal_stale_csrf: bool,
}

/// How the proxy treats the wiki (API:Etiquette).
#[derive(Debug, Clone, Default)]
pub struct EtiquetteSettings {
    /// `maxlag` added to requests that lack it; `None`: off.
    pub maxlag: Option<u64>,
    /// At most this many requests to the wiki at once; `None`: unlimited.
    pub max_concurrent_upstream: Option<usize>,
    /// Writes are sent one at a time, this far apart at least.
    pub min_write_interval: Duration,
}

/// What clients may do with the bot's rights.
#[derive(Debug, Clone, Default)]
pub struct PolicySettings {
    /// Refuse write modules, and have MediaWiki refuse them too.
    pub read_only: bool,
    /// When not empty, the only modules allowed.
    pub allow_actions: Vec<String>,
    /// Modules refused, besides the built-in session guards.
    pub deny_actions: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Request bodies up to this size are kept so a request can be replayed
    /// after a re-login; larger ones stream through and are not replayed.
    pub max_replay_body_bytes: usize,
    /// Larger request bodies are refused (413).
    pub max_body_bytes: u64,
    /// Connections beyond this wait to be accepted.
    pub max_connections: usize,
    /// Requests with more header lines are refused (431).
    pub max_headers: usize,
    /// Time a client has to send a request's headers, also the idle time
    /// of a keep-alive connection before it is closed.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run on after a shutdown signal.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct WikiSettings {
    pub api_url: Url,
    pub user_agent: String,
    /// How long to wait for the wiki to start answering a request.
    pub timeout: Duration,
    /// A plain-http wiki beyond loopback was accepted explicitly.
    pub allow_insecure_http: bool,
    /// Trusted besides the system's roots (`ca_file`).
    pub ca_certificates: Vec<reqwest::Certificate>,
}

#[derive(Debug, Clone)]
pub struct LoginSettings {
    pub method: LoginMethod,
    /// The bot-password login name (`User@BotName`), the account's name
    /// (clientlogin), or for OAuth 2 the expected user or nothing.
    pub username: String,
    /// The bot password, the account's password, or the OAuth 2 token.
    pub password: Secret,
    pub password_source: PasswordSource,
    /// Base32, for a TOTP second factor (clientlogin only).
    pub totp_secret: Option<Secret>,
}

/// How the proxy gets a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    BotPassword,
    ClientLogin,
    OAuth2,
}

impl LoginMethod {
    pub fn name(self) -> &'static str {
        match self {
            LoginMethod::BotPassword => "botpassword",
            LoginMethod::ClientLogin => "clientlogin",
            LoginMethod::OAuth2 => "oauth2",
        }
    }
}

impl LoginSettings {
    /// The account part of `User@BotName`, as the operator wrote it.
    pub fn account(&self) -> &str {
        self.username
            .split_once('@')
            .map_or(self.username.as_str(), |(user, _)| user)
    }
}

/// One problem in the configuration, tied to the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

/// Every problem found in one configuration file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration in {}:", self.source_name)?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// Where settings come from besides the file itself, so tests can fake the
/// environment instead of mutating the process's own.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Settings {
    /// Reads and checks a configuration file. Relative paths inside it
    /// (`login.password_file`) are taken relative to the file's directory.
    pub fn load(path: &Path, env: &dyn Environment) -> Result<Self, ConfigError> {
        let source_name = path.display().to_string();
        let text = fs::read_to_string(path).map_err(|err| ConfigError {
            source_name: source_name.clone(),
            problems: vec![ConfigProblem {
                key: "(file)".into(),
                message: format!("cannot read the configuration file: {err}"),
            }],
        })?;
        let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
        let mut settings =
            Self::from_toml(&text, base_dir, env).map_err(|problems| ConfigError {
                source_name: source_name.clone(),
                problems,
            })?;
        let inline_password = settings
            .sites
            .iter()
            .any(|site| site.login.password_source == PasswordSource::Inline);
        if inline_password && readable_by_others(path) {
            settings.warnings.push(format!(
                "{source_name} holds the bot password in plain text and other users can read it: \
                 use login.password_file (or chmod 600 {source_name})"
            ));
        }
        Ok(settings)
    }

    /// Checks configuration text; `base_dir` anchors relative paths.
    pub fn from_toml(
        text: &str,
        base_dir: &Path,
        env: &dyn Environment,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let raw = match check::parse_raw(text, &mut problems) {
            Some(raw) => raw,
            None => return Err(problems),
        };
        let mut warnings = Vec::new();
        let server = check::server(raw.server, &mut problems);
        let log = check::log(raw.log, &mut problems);
        let shared = sites::SharedSections {
            policy: raw.policy,
            session: raw.session,
            etiquette: raw.etiquette,
        };
        let named_sites = raw.wikis.is_some();
        let sites = match raw.wikis {
            None => sites::single(
                raw.wiki,
                raw.login,
                shared,
                base_dir,
                env,
                &mut problems,
                &mut warnings,
            )
            .map(|site| vec![site]),
            Some(raw_sites) => {
                for single_only in ["wiki", "login"] {
                    if raw.present.iter().any(|name| name == single_only) {
                        check::problem(
                            &mut problems,
                            single_only,
                            format!(
                                "with [[wikis]], each wiki has its own [wikis.{single_only}]; \
                                 move this section into the wiki it is for"
                            ),
                        );
                    }
                }
                // The shared sections on their own, so that their problems
                // are named once, not once per wiki.
                let _ = security::policy(shared.policy.clone(), &mut problems);
                let _ = resilience::session(shared.session.clone(), base_dir, &mut problems);
                let _ = resilience::etiquette(shared.etiquette.clone(), &mut problems);
                sites::several(
                    raw_sites,
                    &shared,
                    base_dir,
                    env,
                    &mut problems,
                    &mut warnings,
                )
            }
        };
        let mut listen: Vec<(String, SocketAddr)> = Vec::new();
        if let Some(server) = &server {
            listen.push(("server.listen".to_owned(), server.listen));
        }
        for (index, site) in sites.iter().flatten().enumerate() {
            if let Some(addr) = site.listen {
                listen.push((format!("wikis[{index}].listen"), addr));
            }
        }
        let access = security::access(raw.access, base_dir, &listen, &mut problems);
        let (Some(server), Some(log), Some(mut sites), Some(access)) = (server, log, sites, access)
        else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        // A wiki given the main address is simply served there.
        for site in &mut sites {
            site.listen = site.listen.filter(|listen| *listen != server.listen);
        }
        if access.allow_unauthenticated_remote
            && let Some((_, remote)) = listen.iter().find(|(_, addr)| !addr.ip().is_loopback())
        {
            warnings.push(format!(
                "listening on {remote} without inbound authentication (access.allow_unauthenticated_remote): \
                 whoever reaches this port acts as the bot"
            ));
        }
        Ok(Settings {
            server,
            log,
            access,
            sites,
            named_sites,
            warnings,
        })
    }
}

impl SiteSettings {
    /// The directory of the wiki's scripts as the wiki has it: `/w` for
    /// `/w/api.php`, empty for `/api.php`.
    pub fn script_dir(&self) -> &str {
        let path = self.wiki.api_url.path();
        path.rsplit_once('/').map_or("", |(dir, _)| dir)
    }

    /// Whether `index.php` and `rest.php` are forwarded too: only a main
    /// account's session works there (a bot password's does not).
    pub fn serves_pages(&self) -> bool {
        self.login.method == LoginMethod::ClientLogin
    }

    /// Where clients reach this wiki's `api.php`: `{prefix}/api.php` and
    /// `{prefix}` + the wiki's own path.
    pub fn api_paths(&self) -> Vec<String> {
        let prefix = &self.path_prefix;
        let mut paths = vec![
            format!("{prefix}/api.php"),
            format!("{prefix}{}", self.wiki.api_url.path()),
        ];
        paths.dedup();
        paths
    }

    /// Where clients reach `index.php` and `rest.php` (likewise), with the
    /// script each path is for; none unless [`Self::serves_pages`].
    pub fn page_paths(&self) -> Vec<(String, &'static str)> {
        if !self.serves_pages() {
            return Vec::new();
        }
        let (prefix, dir) = (&self.path_prefix, self.script_dir());
        let mut paths: Vec<(String, &'static str)> = ["index.php", "rest.php"]
            .into_iter()
            .flat_map(|script| {
                [
                    (format!("{prefix}/{script}"), script),
                    (format!("{prefix}{dir}/{script}"), script),
                ]
            })
            .collect();
        paths.dedup();
        paths
    }

    /// Every path clients reach this wiki at.
    pub fn entry_paths(&self) -> Vec<String> {
        let pages = self.page_paths().into_iter().map(|(path, _)| path);
        self.api_paths().into_iter().chain(pages).collect()
    }
}

#[cfg(test)]
mod tests;
