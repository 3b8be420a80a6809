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
    pub wiki: WikiSettings,
    pub login: LoginSettings,
    pub log: LogSettings,
    pub access: AccessSettings,
    pub policy: PolicySettings,
    pub session: SessionSettings,
    pub etiquette: EtiquetteSettings,
    /// Things that work but deserve the operator's attention, logged at
    /// start and on reload.
    pub warnings: Vec<String>,
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
        if settings.login.password_source == PasswordSource::Inline && readable_by_others(path) {
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
        let anonymous_on_wikimedia = raw.wiki.lacks_user_agent_for_wikimedia();
        let server = check::server(raw.server, &mut problems);
        let wiki = check::wiki(raw.wiki, base_dir, &mut problems);
        let login = login::login(raw.login, base_dir, env, &mut problems);
        let log = check::log(raw.log, &mut problems);
        let listen = server.as_ref().map(|server| server.listen);
        let access = security::access(raw.access, base_dir, listen, &mut problems);
        let policy = security::policy(raw.policy, &mut problems);
        let session = resilience::session(raw.session, base_dir, &mut problems);
        let etiquette = resilience::etiquette(raw.etiquette, &mut problems);
        let (
            Some(server),
            Some(wiki),
            Some(login),
            Some(log),
            Some(access),
            Some(policy),
            Some(session),
            Some(etiquette),
        ) = (server, wiki, login, log, access, policy, session, etiquette)
        else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut warnings = Vec::new();
        if anonymous_on_wikimedia {
            warnings.push(
                "Wikimedia's User-Agent policy asks bots to identify themselves: set \
                 wiki.user_agent to something like \"MyBot/1.0 (https://example.org/bot; me@example.org)\""
                    .to_owned(),
            );
        }
        if access.allow_unauthenticated_remote && !server.listen.ip().is_loopback() {
            warnings.push(format!(
                "listening on {} without inbound authentication (access.allow_unauthenticated_remote): \
                 whoever reaches this port acts as the bot",
                server.listen
            ));
        }
        Ok(Settings {
            server,
            wiki,
            login,
            log,
            access,
            policy,
            session,
            etiquette,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests;
