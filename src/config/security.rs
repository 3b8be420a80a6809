//! The `[access]` and `[policy]` sections: who may use the proxy, and what
//! they may do with the bot's rights.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use super::check::problem;
use super::{AccessSettings, ConfigProblem, PolicySettings};
use crate::secret::Secret;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAccess {
    allow_unauthenticated_remote: Option<bool>,
    bearer_tokens: Option<Vec<String>>,
    bearer_tokens_file: Option<PathBuf>,
    allow_cidrs: Option<Vec<String>>,
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Option<Vec<String>>,
    public_metrics: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawPolicy {
    read_only: Option<bool>,
    allow_actions: Option<Vec<String>>,
    deny_actions: Option<Vec<String>>,
}

impl RawPolicy {
    /// These keys, with those `own` sets taking precedence.
    pub(super) fn overlaid_by(self, own: Self) -> Self {
        Self {
            read_only: own.read_only.or(self.read_only),
            allow_actions: own.allow_actions.or(self.allow_actions),
            deny_actions: own.deny_actions.or(self.deny_actions),
        }
    }
}

/// Bearer tokens shorter than this are too easy to guess.
const MIN_TOKEN_LENGTH: usize = 16;

pub(super) fn access(
    raw: RawAccess,
    base_dir: &Path,
    listen: &[(String, SocketAddr)],
    problems: &mut Vec<ConfigProblem>,
) -> Option<AccessSettings> {
    let mut tokens: Vec<Secret> = raw
        .bearer_tokens
        .unwrap_or_default()
        .into_iter()
        .map(Secret::new)
        .collect();
    let tokens_file = raw.bearer_tokens_file.map(|path| base_dir.join(path));
    if let Some(path) = &tokens_file {
        tokens.extend(read_tokens_file(path, problems)?);
    }
    if tokens
        .iter()
        .any(|token| token.expose().len() < MIN_TOKEN_LENGTH)
    {
        problem(
            problems,
            "access.bearer_tokens",
            format!("every bearer token must be at least {MIN_TOKEN_LENGTH} characters long"),
        );
        return None;
    }
    let mut allow_cidrs = Vec::new();
    for text in raw.allow_cidrs.unwrap_or_default() {
        match parse_cidr(&text) {
            Some(net) => allow_cidrs.push(net),
            None => {
                problem(
                    problems,
                    "access.allow_cidrs",
                    format!(
                        "`{text}` is not an address range such as \"10.0.0.0/8\" or \"::1/128\""
                    ),
                );
                return None;
            }
        }
    }
    let allow_unauthenticated_remote = raw.allow_unauthenticated_remote.unwrap_or(false);
    let remote = listen.iter().find(|(_, addr)| !addr.ip().is_loopback());
    if let Some((key, _)) = remote
        && tokens.is_empty()
        && allow_cidrs.is_empty()
        && !allow_unauthenticated_remote
    {
        problem(
            problems,
            key,
            "listening beyond loopback lets anyone who reaches the port act as the bot: \
             set access.bearer_tokens(_file) or access.allow_cidrs, \
             or access.allow_unauthenticated_remote = true if something else guards the port",
        );
        return None;
    }
    let lowercase = |values: Option<Vec<String>>| -> Vec<String> {
        values
            .unwrap_or_default()
            .into_iter()
            .map(|value| value.trim().to_ascii_lowercase())
            .collect()
    };
    Some(AccessSettings {
        allow_unauthenticated_remote,
        bearer_tokens: tokens,
        bearer_tokens_file: tokens_file,
        allow_cidrs,
        allowed_hosts: lowercase(raw.allowed_hosts),
        allowed_origins: lowercase(raw.allowed_origins)
            .into_iter()
            .map(|origin| origin.trim_end_matches('/').to_owned())
            .collect(),
        public_metrics: raw.public_metrics.unwrap_or(false),
    })
}

/// `10.0.0.0/8`, or a bare address for a single host.
fn parse_cidr(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// One token per line; blank lines and `#` comments are skipped.
fn read_tokens_file(path: &Path, problems: &mut Vec<ConfigProblem>) -> Option<Vec<Secret>> {
    match fs::read_to_string(path) {
        Ok(text) => Some(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(Secret::new)
                .collect(),
        ),
        Err(err) => {
            problem(
                problems,
                "access.bearer_tokens_file",
                format!("cannot read {}: {err}", path.display()),
            );
            None
        }
    }
}

pub(super) fn policy(raw: RawPolicy, problems: &mut Vec<ConfigProblem>) -> Option<PolicySettings> {
    let clean = |key: &str, values: Option<Vec<String>>, problems: &mut Vec<ConfigProblem>| {
        let values: Vec<String> = values.unwrap_or_default();
        if let Some(bad) = values
            .iter()
            .find(|value| value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()))
        {
            problem(
                problems,
                key,
                format!("`{bad}` is not an API module name such as \"edit\""),
            );
            return None;
        }
        Some(values)
    };
    let allow_actions = clean("policy.allow_actions", raw.allow_actions, problems);
    let deny_actions = clean("policy.deny_actions", raw.deny_actions, problems);
    Some(PolicySettings {
        read_only: raw.read_only.unwrap_or(false),
        allow_actions: allow_actions?,
        deny_actions: deny_actions?,
    })
}
