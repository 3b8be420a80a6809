//! The file as written (`Raw*`, every key optional) and the checks that
//! turn it into typed settings, recording each problem with its key.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::*;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) wiki: RawWiki,
    #[serde(default)]
    pub(super) login: super::login::RawLogin,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) access: super::security::RawAccess,
    #[serde(default)]
    pub(super) policy: super::security::RawPolicy,
    #[serde(default)]
    pub(super) session: super::resilience::RawSession,
    #[serde(default)]
    pub(super) etiquette: super::resilience::RawEtiquette,
    /// `[[wikis]]`, when the file serves several wikis.
    #[serde(skip)]
    pub(super) wikis: Option<Vec<super::sites::RawSite>>,
    /// The sections the file has, by name.
    #[serde(skip)]
    pub(super) present: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawLog {
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawServer {
    listen: Option<String>,
    max_replay_body_bytes: Option<u64>,
    max_body_bytes: Option<u64>,
    max_connections: Option<usize>,
    max_headers: Option<usize>,
    header_read_timeout_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawWiki {
    api_url: Option<String>,
    user_agent: Option<String>,
    timeout_secs: Option<u64>,
    allow_insecure_http: Option<bool>,
    ca_file: Option<PathBuf>,
}

/// Parses the TOML, recording unknown keys as problems rather than stopping
/// at the first one (what `deny_unknown_fields` would do).
pub(super) fn parse_raw(text: &str, problems: &mut Vec<ConfigProblem>) -> Option<RawConfig> {
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(err) => {
            problems.push(toml_problem(&err));
            return None;
        }
    };
    // Section by section, so that a value of the wrong type in one section
    // does not hide the problems of the others.
    let mut raw = RawConfig::default();
    let before = problems.len();
    for (name, value) in table {
        raw.present.push(name.clone());
        match name.as_str() {
            "server" => section(&name, value, &mut raw.server, problems),
            "wiki" => section(&name, value, &mut raw.wiki, problems),
            "login" => section(&name, value, &mut raw.login, problems),
            "log" => section(&name, value, &mut raw.log, problems),
            "access" => section(&name, value, &mut raw.access, problems),
            "policy" => section(&name, value, &mut raw.policy, problems),
            "session" => section(&name, value, &mut raw.session, problems),
            "etiquette" => section(&name, value, &mut raw.etiquette, problems),
            "wikis" => raw.wikis = Some(super::sites::parse_wikis(value, problems)),
            _ => problems.push(unknown_key(name)),
        }
    }
    // Unknown keys alone still let the known ones be checked.
    let typed = problems[before..]
        .iter()
        .all(|problem| problem.message == UNKNOWN_KEY);
    typed.then_some(raw)
}

const UNKNOWN_KEY: &str = "unknown key (see config/mw-auth-proxy.example.toml for every key)";

pub(super) fn unknown_key(key: String) -> ConfigProblem {
    ConfigProblem {
        key,
        message: UNKNOWN_KEY.into(),
    }
}

/// Reads one `[name]` table into `slot`, recording its unknown keys and a
/// value of the wrong type as problems of that section.
pub(super) fn section<T: serde::de::DeserializeOwned>(
    name: &str,
    value: toml::Value,
    slot: &mut T,
    problems: &mut Vec<ConfigProblem>,
) {
    let mut unknown = Vec::new();
    let parsed = serde_ignored::deserialize(value, |path| unknown.push(path.to_string()));
    problems.extend(
        unknown
            .into_iter()
            .map(|key| unknown_key(format!("{name}.{key}"))),
    );
    match parsed {
        Ok(parsed) => *slot = parsed,
        Err(err) => problems.push(ConfigProblem {
            key: name.to_owned(),
            message: err.to_string().trim_end().replace('\n', "\n    "),
        }),
    }
}

fn toml_problem(err: &toml::de::Error) -> ConfigProblem {
    // toml's own message names the offending key and shows the line.
    ConfigProblem {
        key: "(syntax)".into(),
        message: err.to_string().trim_end().replace('\n', "\n    "),
    }
}

pub(super) fn problem(problems: &mut Vec<ConfigProblem>, key: &str, message: impl Into<String>) {
    problems.push(ConfigProblem {
        key: key.into(),
        message: message.into(),
    });
}

pub(super) fn server(raw: RawServer, problems: &mut Vec<ConfigProblem>) -> Option<ServerSettings> {
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
    let at_least_one =
        |key: &str, value: Option<u64>, default: u64, problems: &mut Vec<_>| match value
            .unwrap_or(default)
        {
            0 => {
                problem(problems, key, "must be at least 1");
                None
            }
            value => Some(value),
        };
    let max_body_bytes = at_least_one(
        "server.max_body_bytes",
        raw.max_body_bytes,
        DEFAULT_MAX_BODY_BYTES,
        problems,
    );
    let max_connections = at_least_one(
        "server.max_connections",
        raw.max_connections.map(|n| n as u64),
        DEFAULT_MAX_CONNECTIONS,
        problems,
    );
    let max_headers = at_least_one(
        "server.max_headers",
        raw.max_headers.map(|n| n as u64),
        DEFAULT_MAX_HEADERS,
        problems,
    );
    let header_read_timeout = at_least_one(
        "server.header_read_timeout_secs",
        raw.header_read_timeout_secs,
        DEFAULT_HEADER_READ_TIMEOUT_SECS,
        problems,
    );
    Some(ServerSettings {
        listen: listen?,
        max_replay_body_bytes: max_replay_body_bytes?,
        max_body_bytes: max_body_bytes?,
        max_connections: max_connections? as usize,
        max_headers: max_headers? as usize,
        header_read_timeout: Duration::from_secs(header_read_timeout?),
        shutdown_grace,
    })
}

impl RawWiki {
    /// A Wikimedia wiki reached with no User-Agent of the operator's own:
    /// Wikimedia's policy asks for one with contact information.
    pub(super) fn lacks_user_agent_for_wikimedia(&self) -> bool {
        const WIKIMEDIA: [&str; 12] = [
            "wikipedia.org",
            "wikimedia.org",
            "wikidata.org",
            "wiktionary.org",
            "wikibooks.org",
            "wikinews.org",
            "wikiquote.org",
            "wikisource.org",
            "wikiversity.org",
            "wikivoyage.org",
            "mediawiki.org",
            "wikifunctions.org",
        ];
        let host = self
            .api_url
            .as_deref()
            .and_then(|url| Url::parse(url).ok())
            .and_then(|url| url.host_str().map(str::to_ascii_lowercase));
        self.user_agent.is_none()
            && host.is_some_and(|host| {
                WIKIMEDIA
                    .iter()
                    .any(|domain| host == *domain || host.ends_with(&format!(".{domain}")))
            })
    }
}

pub(super) fn wiki(
    raw: RawWiki,
    base_dir: &Path,
    problems: &mut Vec<ConfigProblem>,
) -> Option<WikiSettings> {
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
    let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
    if let Some(url) = &api_url
        && url.scheme() == "http"
        && !allow_insecure_http
        && !is_loopback_host(url)
    {
        problem(
            problems,
            "wiki.api_url",
            "a plain http:// wiki beyond this machine would see the bot password and session \
             cross the network in clear: use https://, or set wiki.allow_insecure_http = true",
        );
    }
    let ca_certificates = match raw.ca_file {
        None => Some(Vec::new()),
        Some(path) => read_ca_file(&base_dir.join(path), problems),
    };
    Some(WikiSettings {
        api_url: api_url?,
        user_agent: user_agent?,
        timeout: timeout?,
        allow_insecure_http,
        ca_certificates: ca_certificates?,
    })
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// PEM certificates to trust besides the system's, for a wiki with a
/// private CA.
fn read_ca_file(
    path: &Path,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Vec<reqwest::Certificate>> {
    let key = "wiki.ca_file";
    let pem = match fs::read(path) {
        Ok(pem) => pem,
        Err(err) => {
            problem(
                problems,
                key,
                format!("cannot read {}: {err}", path.display()),
            );
            return None;
        }
    };
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certificates) if !certificates.is_empty() => Some(certificates),
        Ok(_) | Err(_) => {
            problem(
                problems,
                key,
                format!("{} holds no PEM certificate", path.display()),
            );
            None
        }
    }
}

/// The User-Agent sent when the operator configured none.
pub(super) fn default_user_agent() -> String {
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

pub(super) fn log(raw: RawLog, problems: &mut Vec<ConfigProblem>) -> Option<LogSettings> {
    let format = match raw.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            problem(
                problems,
                "log.format",
                format!("`{other}` is not a log format: use \"text\" or \"json\""),
            );
            return None;
        }
    };
    Some(LogSettings { format })
}
