//! The `[login]` section: how the proxy logs in. Three methods: a bot
//! password (`action=login`, the default), the main account through
//! `action=clientlogin` (with a TOTP second factor when configured), and an
//! owner-only OAuth 2 access token (no login at all: a header on every
//! request).

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::check::problem;
use super::{ConfigProblem, Environment, LoginMethod, LoginSettings, PASSWORD_ENV, PasswordSource};
use crate::secret::Secret;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawLogin {
    method: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    totp_secret: Option<String>,
    totp_secret_file: Option<PathBuf>,
    access_token: Option<String>,
    access_token_file: Option<PathBuf>,
}

pub(super) fn login(
    raw: RawLogin,
    base_dir: &Path,
    env: &dyn Environment,
    problems: &mut Vec<ConfigProblem>,
) -> Option<LoginSettings> {
    let method = match raw.method.as_deref() {
        None | Some("botpassword") => LoginMethod::BotPassword,
        Some("clientlogin") => LoginMethod::ClientLogin,
        Some("oauth2") => LoginMethod::OAuth2,
        Some(other) => {
            problem(
                problems,
                "login.method",
                format!(
                    "`{other}` is not a login method: use \"botpassword\", \"clientlogin\" or \"oauth2\""
                ),
            );
            return None;
        }
    };
    let misplaced = |key: &str, set: bool, problems: &mut Vec<ConfigProblem>| {
        if set {
            problem(
                problems,
                key,
                format!("does not apply to login.method = {:?}", method.name()),
            );
        }
    };
    match method {
        LoginMethod::BotPassword | LoginMethod::ClientLogin => {
            misplaced("login.access_token", raw.access_token.is_some(), problems);
            misplaced(
                "login.access_token_file",
                raw.access_token_file.is_some(),
                problems,
            );
        }
        LoginMethod::OAuth2 => {
            misplaced("login.password", raw.password.is_some(), problems);
            misplaced("login.password_file", raw.password_file.is_some(), problems);
        }
    }
    if method != LoginMethod::ClientLogin {
        misplaced("login.totp_secret", raw.totp_secret.is_some(), problems);
        misplaced(
            "login.totp_secret_file",
            raw.totp_secret_file.is_some(),
            problems,
        );
    }
    let username = username(method, raw.username, problems);
    let (secret, source) = match method {
        LoginMethod::OAuth2 => {
            access_token(raw.access_token, raw.access_token_file, base_dir, problems)?
        }
        _ => check_password(raw.password, raw.password_file, base_dir, env, problems)?,
    };
    let totp_secret = match (raw.totp_secret, raw.totp_secret_file) {
        (Some(_), Some(_)) => {
            problem(
                problems,
                "login.totp_secret_file",
                "set either `login.totp_secret` or `login.totp_secret_file`, not both",
            );
            return None;
        }
        (Some(secret), None) => Some(totp(secret, "login.totp_secret", problems)?),
        (None, Some(path)) => {
            let path = base_dir.join(path);
            let secret = read_one_line(&path, "login.totp_secret_file", problems)?;
            Some(totp(secret, "login.totp_secret_file", problems)?)
        }
        (None, None) => None,
    };
    Some(LoginSettings {
        method,
        username: username?,
        password: secret,
        password_source: source,
        totp_secret,
    })
}

fn username(
    method: LoginMethod,
    name: Option<String>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<String> {
    let key = "login.username";
    match (method, name) {
        // The token names its user; the name is only a check when given.
        (LoginMethod::OAuth2, name) => Some(name.unwrap_or_default()),
        (LoginMethod::BotPassword, None) => {
            problem(
                problems,
                key,
                "missing: set it to the bot-password login name, e.g. \"Example@mybot\"",
            );
            None
        }
        (LoginMethod::ClientLogin, None) => {
            problem(problems, key, "missing: set it to the account's user name");
            None
        }
        (LoginMethod::BotPassword, Some(name)) => match name.split_once('@') {
            Some((user, bot)) if !user.trim().is_empty() && !bot.trim().is_empty() => Some(name),
            _ => {
                problem(
                    problems,
                    key,
                    format!(
                        "`{name}` is not a bot-password login name of the form User@BotName (see Special:BotPasswords)"
                    ),
                );
                None
            }
        },
        (LoginMethod::ClientLogin, Some(name)) if name.contains('@') => {
            problem(
                problems,
                key,
                format!(
                    "`{name}` looks like a bot-password name: use login.method = \"botpassword\" for it"
                ),
            );
            None
        }
        (LoginMethod::ClientLogin, Some(name)) => Some(name),
    }
}

/// A base32 TOTP secret, checked now rather than at the first login.
fn totp(secret: String, key: &str, problems: &mut Vec<ConfigProblem>) -> Option<Secret> {
    let cleaned: String = secret
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase();
    match totp_rs::Secret::try_from_base32(&cleaned) {
        Ok(bytes) if !bytes.as_bytes().is_empty() => Some(Secret::new(cleaned)),
        _ => {
            problem(problems, key, "is not a base32 TOTP secret");
            None
        }
    }
}

fn access_token(
    inline: Option<String>,
    file: Option<PathBuf>,
    base_dir: &Path,
    problems: &mut Vec<ConfigProblem>,
) -> Option<(Secret, PasswordSource)> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            problem(
                problems,
                "login.access_token_file",
                "set either `login.access_token` or `login.access_token_file`, not both",
            );
            None
        }
        (Some(token), None) if !token.trim().is_empty() => {
            Some((Secret::new(token.trim()), PasswordSource::Inline))
        }
        (None, Some(path)) => {
            let path = base_dir.join(path);
            let token = read_one_line(&path, "login.access_token_file", problems)?;
            Some((Secret::new(token), PasswordSource::File(path)))
        }
        _ => {
            problem(
                problems,
                "login.access_token",
                "missing: set `login.access_token` or `login.access_token_file` (an owner-only OAuth 2 consumer's access token)",
            );
            None
        }
    }
}

fn check_password(
    inline: Option<String>,
    file: Option<PathBuf>,
    base_dir: &Path,
    env: &dyn Environment,
    problems: &mut Vec<ConfigProblem>,
) -> Option<(Secret, PasswordSource)> {
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
        Some(path) => {
            let path = base_dir.join(path);
            let password = read_password_file(&path, problems)?;
            Some((password, PasswordSource::File(path)))
        }
        None => None,
    };
    let from_env = env
        .var(PASSWORD_ENV)
        .filter(|value| !value.is_empty())
        .map(|password| (password, PasswordSource::Environment));
    let inline = inline.map(|password| (password, PasswordSource::Inline));
    match from_env.or(from_file).or(inline) {
        Some((password, _)) if password.is_empty() => {
            problem(problems, "login.password", "must not be empty");
            None
        }
        Some((password, source)) => Some((Secret::new(password), source)),
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
    read_one_line(path, "login.password_file", problems)
}

/// A secret file: one line, a trailing newline ignored.
fn read_one_line(path: &Path, key: &str, problems: &mut Vec<ConfigProblem>) -> Option<String> {
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
