//! Configuration: the TOML file as written by the operator (`Raw*`), checked
//! into typed [`Settings`]. Every problem is collected before failing, so an
//! operator fixes a file in one round instead of one key per restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use std::{fmt, fs};

use serde::Deserialize;
use url::Url;

use crate::secret::Secret;

/// The environment variable that overrides the password from the file.
pub const PASSWORD_ENV: &str = "MW_AUTH_PROXY_PASSWORD";

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_REPLAY_BODY_BYTES: u64 = 8 * 1024 * 1024;
const DEFAULT_TIMEOUT_SECS: u64 = 60;
const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;

/// Everything the proxy needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub wiki: WikiSettings,
    pub login: LoginSettings,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Request bodies up to this size are kept so a request can be replayed
    /// after a re-login; larger ones stream through and are not replayed.
    pub max_replay_body_bytes: usize,
    /// How long in-flight requests may run on after a shutdown signal.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct WikiSettings {
    pub api_url: Url,
    pub user_agent: String,
    /// How long to wait for the wiki to start answering a request.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// The bot-password login name, `User@BotName`.
    pub username: String,
    pub password: Secret,
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
        Self::from_toml(&text, base_dir, env).map_err(|problems| ConfigError {
            source_name,
            problems,
        })
    }

    /// Checks configuration text; `base_dir` anchors relative paths.
    pub fn from_toml(
        text: &str,
        base_dir: &Path,
        env: &dyn Environment,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let raw = match parse_raw(text, &mut problems) {
            Some(raw) => raw,
            None => return Err(problems),
        };
        let server = check_server(raw.server, &mut problems);
        let wiki = check_wiki(raw.wiki, &mut problems);
        let login = check_login(raw.login, base_dir, env, &mut problems);
        match (server, wiki, login) {
            (Some(server), Some(wiki), Some(login)) if problems.is_empty() => Ok(Settings {
                server,
                wiki,
                login,
            }),
            _ => Err(problems),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    wiki: RawWiki,
    #[serde(default)]
    login: RawLogin,
}

#[derive(Debug, Default, Deserialize)]
struct RawServer {
    listen: Option<String>,
    max_replay_body_bytes: Option<u64>,
    shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawWiki {
    api_url: Option<String>,
    user_agent: Option<String>,
    timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawLogin {
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
}

/// Parses the TOML, recording unknown keys as problems rather than stopping
/// at the first one (what `deny_unknown_fields` would do).
fn parse_raw(text: &str, problems: &mut Vec<ConfigProblem>) -> Option<RawConfig> {
    let deserializer = match toml::de::Deserializer::parse(text) {
        Ok(deserializer) => deserializer,
        Err(err) => {
            problems.push(toml_problem(&err));
            return None;
        }
    };
    let mut unknown = Vec::new();
    let parsed = serde_ignored::deserialize(deserializer, |path| unknown.push(path.to_string()));
    for key in unknown {
        problems.push(ConfigProblem {
            key,
            message: "unknown key (see config/mw-auth-proxy.example.toml for every key)".into(),
        });
    }
    match parsed {
        Ok(raw) => Some(raw),
        Err(err) => {
            problems.push(toml_problem(&err));
            None
        }
    }
}

fn toml_problem(err: &toml::de::Error) -> ConfigProblem {
    // toml's own message names the offending key and shows the line.
    ConfigProblem {
        key: "(syntax)".into(),
        message: err.to_string().trim_end().replace('\n', "\n    "),
    }
}

fn problem(problems: &mut Vec<ConfigProblem>, key: &str, message: impl Into<String>) {
    problems.push(ConfigProblem {
        key: key.into(),
        message: message.into(),
    });
}

fn check_server(raw: RawServer, problems: &mut Vec<ConfigProblem>) -> Option<ServerSettings> {
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = match listen_text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problem(
                problems,
                "server.listen",
                format!("`{listen_text}` is not an address and port such as \"127.0.0.1:8080\""),
            );
            None
        }
    };
    let max_replay_body_bytes = raw
        .max_replay_body_bytes
        .unwrap_or(DEFAULT_MAX_REPLAY_BODY_BYTES);
    let max_replay_body_bytes = match usize::try_from(max_replay_body_bytes) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            problem(problems, "server.max_replay_body_bytes", "too large");
            None
        }
    };
    let shutdown_grace = Duration::from_secs(
        raw.shutdown_grace_secs
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS),
    );
    Some(ServerSettings {
        listen: listen?,
        max_replay_body_bytes: max_replay_body_bytes?,
        shutdown_grace,
    })
}

fn check_wiki(raw: RawWiki, problems: &mut Vec<ConfigProblem>) -> Option<WikiSettings> {
    let api_url = match raw.api_url.as_deref() {
        None => {
            problem(
                problems,
                "wiki.api_url",
                "missing: set it to the wiki's api.php URL, e.g. \"https://wiki.example.org/w/api.php\"",
            );
            None
        }
        Some(text) => check_api_url(text, problems),
    };
    let user_agent = match raw.user_agent {
        Some(agent) if agent.trim().is_empty() => {
            problem(problems, "wiki.user_agent", "must not be empty");
            None
        }
        Some(agent) if http::HeaderValue::from_str(&agent).is_err() => {
            problem(
                problems,
                "wiki.user_agent",
                "must be printable ASCII on one line",
            );
            None
        }
        Some(agent) => Some(agent),
        None => Some(default_user_agent()),
    };
    let timeout = match raw.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS) {
        0 => {
            problem(problems, "wiki.timeout_secs", "must be at least 1");
            None
        }
        secs => Some(Duration::from_secs(secs)),
    };
    Some(WikiSettings {
        api_url: api_url?,
        user_agent: user_agent?,
        timeout: timeout?,
    })
}

/// The User-Agent sent when the operator configured none.
pub fn default_user_agent() -> String {
    format!("mw-auth-proxy/{}", env!("CARGO_PKG_VERSION"))
}

fn check_api_url(text: &str, problems: &mut Vec<ConfigProblem>) -> Option<Url> {
    let key = "wiki.api_url";
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(err) => {
            problem(problems, key, format!("`{text}` is not a URL: {err}"));
            return None;
        }
    };
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        problem(
            problems,
            key,
            format!("`{text}` must be an http:// or https:// URL with a host"),
        );
        return None;
    }
    if url.query().is_some() || url.fragment().is_some() {
        problem(
            problems,
            key,
            format!("`{text}` must not carry a query string or fragment"),
        );
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        problem(
            problems,
            key,
            "must not carry credentials; use [login] instead",
        );
        return None;
    }
    if !url.path().ends_with(".php") {
        problem(
            problems,
            key,
            format!(
                "`{text}` must point at the wiki's api.php, e.g. \"https://wiki.example.org/w/api.php\""
            ),
        );
        return None;
    }
    Some(url)
}

fn check_login(
    raw: RawLogin,
    base_dir: &Path,
    env: &dyn Environment,
    problems: &mut Vec<ConfigProblem>,
) -> Option<LoginSettings> {
    let username = match raw.username {
        None => {
            problem(
                problems,
                "login.username",
                "missing: set it to the bot-password login name, e.g. \"Example@mybot\"",
            );
            None
        }
        Some(name) => match name.split_once('@') {
            Some((user, bot)) if !user.trim().is_empty() && !bot.trim().is_empty() => Some(name),
            _ => {
                problem(
                    problems,
                    "login.username",
                    format!(
                        "`{name}` is not a bot-password login name of the form User@BotName (see Special:BotPasswords)"
                    ),
                );
                None
            }
        },
    };
    let password = check_password(raw.password, raw.password_file, base_dir, env, problems);
    Some(LoginSettings {
        username: username?,
        password: password?,
    })
}

fn check_password(
    inline: Option<String>,
    file: Option<PathBuf>,
    base_dir: &Path,
    env: &dyn Environment,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Secret> {
    if inline.is_some() && file.is_some() {
        problem(
            problems,
            "login.password_file",
            "set either `login.password` or `login.password_file`, not both",
        );
        return None;
    }
    // The file is read (and so checked) even when the environment overrides
    // it, so a broken secret mount is noticed before it matters.
    let from_file = match file {
        Some(path) => Some(read_password_file(&base_dir.join(path), problems)?),
        None => None,
    };
    let from_env = env.var(PASSWORD_ENV).filter(|value| !value.is_empty());
    match from_env.or(from_file).or(inline) {
        Some(password) if password.is_empty() => {
            problem(problems, "login.password", "must not be empty");
            None
        }
        Some(password) => Some(Secret::new(password)),
        None => {
            problem(
                problems,
                "login.password",
                format!(
                    "missing: set `login.password`, `login.password_file` or the environment variable {PASSWORD_ENV}"
                ),
            );
            None
        }
    }
}

fn read_password_file(path: &Path, problems: &mut Vec<ConfigProblem>) -> Option<String> {
    let key = "login.password_file";
    match fs::read_to_string(path) {
        Ok(text) => {
            let password = text.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                problem(problems, key, format!("{} is empty", path.display()));
                None
            } else if password.contains('\n') {
                problem(
                    problems,
                    key,
                    format!("{} must hold the password on one line", path.display()),
                );
                None
            } else {
                Some(password.to_owned())
            }
        }
        Err(err) => {
            problem(
                problems,
                key,
                format!("cannot read {}: {err}", path.display()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct FakeEnv(HashMap<String, String>);

    impl Environment for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    const MINIMAL: &str = r#"
        [wiki]
        api_url = "https://wiki.example.org/w/api.php"
        [login]
        username = "Example@mybot"
        password = "pw-from-file"
    "#;

    fn parse(text: &str) -> Result<Settings, Vec<ConfigProblem>> {
        Settings::from_toml(text, Path::new("."), &FakeEnv::default())
    }

    fn keys(problems: &[ConfigProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let settings = parse(MINIMAL).unwrap();
        assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.server.max_replay_body_bytes, 8 * 1024 * 1024);
        assert_eq!(settings.wiki.api_url.path(), "/w/api.php");
        assert!(settings.wiki.user_agent.starts_with("mw-auth-proxy/"));
        assert_eq!(settings.login.password.expose(), "pw-from-file");
        assert_eq!(settings.login.account(), "Example");
    }

    #[test]
    fn every_unknown_key_is_reported_at_once() {
        let text = format!("{MINIMAL}\n[extra]\nfoo = 1\n")
            .replace("[wiki]", "[wiki]\napi_ur = \"x\"\nlisten = \"y\"");
        let problems = parse(&text).unwrap_err();
        let keys = keys(&problems);
        assert!(keys.contains(&"wiki.api_ur"), "{keys:?}");
        assert!(keys.contains(&"wiki.listen"), "{keys:?}");
        assert!(keys.contains(&"extra"), "{keys:?}");
    }

    #[test]
    fn missing_keys_are_all_named() {
        let problems = parse("").unwrap_err();
        assert_eq!(
            keys(&problems),
            ["wiki.api_url", "login.username", "login.password"]
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in [
            "not a url",
            "ftp://wiki.example.org/api.php",
            "https://wiki.example.org/w/",
            "https://wiki.example.org/w/api.php?action=query",
            "https://user:pw@wiki.example.org/w/api.php",
        ] {
            let text = MINIMAL.replace("https://wiki.example.org/w/api.php", bad);
            let problems = parse(&text).unwrap_err();
            assert_eq!(keys(&problems), ["wiki.api_url"], "{bad}: {problems:?}");
        }
    }

    #[test]
    fn password_and_password_file_together_are_refused() {
        let text = MINIMAL.replace(
            "password = \"pw-from-file\"",
            "password = \"a\"\npassword_file = \"/dev/null\"",
        );
        let problems = parse(&text).unwrap_err();
        assert_eq!(keys(&problems), ["login.password_file"]);
    }

    #[test]
    fn unreadable_password_file_names_the_key_and_path() {
        let text = MINIMAL.replace(
            "password = \"pw-from-file\"",
            "password_file = \"/nonexistent/secret\"",
        );
        let problems = parse(&text).unwrap_err();
        assert_eq!(keys(&problems), ["login.password_file"]);
        assert!(problems[0].message.contains("/nonexistent/secret"));
    }

    #[test]
    fn password_file_is_one_line_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("pw"), "from-file-secret\n").unwrap();
        let text = MINIMAL.replace("password = \"pw-from-file\"", "password_file = \"pw\"");
        let settings = Settings::from_toml(&text, dir.path(), &FakeEnv::default()).unwrap();
        assert_eq!(settings.login.password.expose(), "from-file-secret");
    }

    #[test]
    fn environment_overrides_the_password() {
        let mut env = FakeEnv::default();
        env.0.insert(PASSWORD_ENV.into(), "from-env".into());
        let settings = Settings::from_toml(MINIMAL, Path::new("."), &env).unwrap();
        assert_eq!(settings.login.password.expose(), "from-env");
        let no_password = MINIMAL.replace("password = \"pw-from-file\"", "");
        let settings = Settings::from_toml(&no_password, Path::new("."), &env).unwrap();
        assert_eq!(settings.login.password.expose(), "from-env");
    }

    #[test]
    fn username_must_be_a_bot_password_name() {
        let text = MINIMAL.replace("Example@mybot", "Example");
        assert_eq!(keys(&parse(&text).unwrap_err()), ["login.username"]);
    }

    #[test]
    fn wrong_types_and_bad_listen_are_reported() {
        let text = format!("{MINIMAL}\n[server]\nlisten = \"localhost\"\n");
        assert_eq!(keys(&parse(&text).unwrap_err()), ["server.listen"]);
        let text = format!("{MINIMAL}\n[server]\nlisten = 8080\n");
        let problems = parse(&text).unwrap_err();
        assert!(problems[0].message.contains("listen"), "{problems:?}");
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let text = fs::read_to_string(dir.join("mw-auth-proxy.example.toml")).unwrap();
        let settings = Settings::from_toml(&text, &dir, &FakeEnv::default()).unwrap();
        assert_eq!(settings.login.username, "Example@mybot");
        // The commented-out alternative must be valid too.
        let secret = tempfile::NamedTempFile::new().unwrap();
        fs::write(secret.path(), "from-file\n").unwrap();
        let text = text.replace("password = \"change-me\"", "").replace(
            "# password_file = \"/run/secrets/mw_bot_password\"",
            &format!("password_file = {:?}", secret.path()),
        );
        let settings = Settings::from_toml(&text, &dir, &FakeEnv::default()).unwrap();
        assert_eq!(settings.login.password.expose(), "from-file");
    }
}
