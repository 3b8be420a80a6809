//! The wikis a proxy serves: the single-wiki form (`[wiki]` and `[login]`
//! at the top) or one `[[wikis]]` table per wiki, each with its own
//! `path_prefix` or `listen` address, `[wikis.wiki]` and `[wikis.login]`.
//! A wiki's `[wikis.policy]`, `[wikis.session]` and `[wikis.etiquette]`
//! override, key by key, the top-level sections of the same names.

use std::net::SocketAddr;
use std::path::Path;

use super::check::{self, RawWiki, problem, section, unknown_key};
use super::login::{self, RawLogin};
use super::resilience::{self, RawEtiquette, RawSession};
use super::security::{self, RawPolicy};
use super::{ConfigProblem, Environment, PASSWORD_ENV, SiteSettings};

/// A `[[wikis]]` table as written.
#[derive(Debug, Default)]
pub(super) struct RawSite {
    name: Option<String>,
    path_prefix: Option<String>,
    listen: Option<String>,
    wiki: RawWiki,
    login: RawLogin,
    policy: RawPolicy,
    session: RawSession,
    etiquette: RawEtiquette,
}

/// The top-level sections a wiki's own tables override.
#[derive(Debug, Default, Clone)]
pub(super) struct SharedSections {
    pub(super) policy: RawPolicy,
    pub(super) session: RawSession,
    pub(super) etiquette: RawEtiquette,
}

/// Reads the `wikis` array of tables, recording unknown keys and values of
/// the wrong type under `wikis[N]`.
pub(super) fn parse_wikis(value: toml::Value, problems: &mut Vec<ConfigProblem>) -> Vec<RawSite> {
    let toml::Value::Array(entries) = value else {
        problem(problems, "wikis", "must be [[wikis]] tables, one per wiki");
        return Vec::new();
    };
    let mut sites = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let toml::Value::Table(table) = entry else {
            problem(problems, &format!("wikis[{index}]"), "must be a table");
            continue;
        };
        let mut site = RawSite::default();
        for (key, value) in table {
            let full = format!("wikis[{index}].{key}");
            match key.as_str() {
                "name" => site.name = text(&full, value, problems),
                "path_prefix" => site.path_prefix = text(&full, value, problems),
                "listen" => site.listen = text(&full, value, problems),
                "wiki" => section(&full, value, &mut site.wiki, problems),
                "login" => section(&full, value, &mut site.login, problems),
                "policy" => section(&full, value, &mut site.policy, problems),
                "session" => section(&full, value, &mut site.session, problems),
                "etiquette" => section(&full, value, &mut site.etiquette, problems),
                _ => problems.push(unknown_key(full)),
            }
        }
        sites.push(site);
    }
    if sites.is_empty() && problems.is_empty() {
        problem(problems, "wikis", "holds no wiki");
    }
    sites
}

fn text(key: &str, value: toml::Value, problems: &mut Vec<ConfigProblem>) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text),
        other => {
            problem(
                problems,
                key,
                format!("must be a string, not {}", other.type_str()),
            );
            None
        }
    }
}

/// The single wiki of `[wiki]`, `[login]` and the top-level sections.
#[allow(clippy::too_many_arguments)]
pub(super) fn single(
    wiki: RawWiki,
    login: RawLogin,
    shared: SharedSections,
    base_dir: &Path,
    env: &dyn Environment,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<String>,
) -> Option<SiteSettings> {
    if wiki.lacks_user_agent_for_wikimedia() {
        warnings.push(wikimedia_user_agent_warning(""));
    }
    let wiki = check::wiki(wiki, base_dir, problems);
    let login = login::login(login, base_dir, env, problems);
    let policy = security::policy(shared.policy, problems);
    let session = resilience::session(shared.session, base_dir, problems);
    let etiquette = resilience::etiquette(shared.etiquette, problems);
    let wiki = wiki?;
    Some(SiteSettings {
        name: wiki.api_url.host_str().unwrap_or("wiki").to_owned(),
        path_prefix: String::new(),
        listen: None,
        wiki,
        login: login?,
        policy: policy?,
        session: session?,
        etiquette: etiquette?,
    })
}

/// Every `[[wikis]]` table, checked on its own and against the others.
pub(super) fn several(
    raw_sites: Vec<RawSite>,
    shared: &SharedSections,
    base_dir: &Path,
    env: &dyn Environment,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<String>,
) -> Option<Vec<SiteSettings>> {
    if env.var(PASSWORD_ENV).is_some() {
        warnings.push(format!(
            "{PASSWORD_ENV} is ignored with [[wikis]]: give each wiki its own login.password_file"
        ));
    }
    let mut sites = Vec::new();
    let mut complete = true;
    for (index, raw) in raw_sites.into_iter().enumerate() {
        let mut own_problems = Vec::new();
        let site = site(index, raw, shared, base_dir, &mut own_problems, warnings);
        // The inherited top-level sections were checked on their own: their
        // problems are not repeated for every wiki.
        let prefix = format!("wikis[{index}].");
        for mut found in own_problems {
            let inherited = problems
                .iter()
                .any(|known| known.key == found.key && known.message == found.message);
            if !inherited {
                found.key.insert_str(0, &prefix);
                problems.push(found);
            }
        }
        match site {
            Some(site) => sites.push(site),
            None => complete = false,
        }
    }
    if !complete {
        return None;
    }
    check_distinct(&sites, problems);
    Some(sites)
}

/// One `[[wikis]]` table; problems are keyed as in the single-wiki form
/// and prefixed by the caller.
fn site(
    index: usize,
    raw: RawSite,
    shared: &SharedSections,
    base_dir: &Path,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<String>,
) -> Option<SiteSettings> {
    let listen = match raw.listen.as_deref().map(str::parse::<SocketAddr>) {
        None => Some(None),
        Some(Ok(addr)) => Some(Some(addr)),
        Some(Err(_)) => {
            problem(
                problems,
                "listen",
                "not an address and port such as \"127.0.0.1:8081\"",
            );
            None
        }
    };
    let path_prefix = match (raw.path_prefix, &raw.listen) {
        (Some(prefix), _) => check_path_prefix(prefix, problems),
        (None, Some(_)) => Some(String::new()),
        (None, None) => {
            problem(
                problems,
                "path_prefix",
                "missing: set a prefix such as \"/commons\" (clients then use /commons/w/api.php), \
                 or a listen address of this wiki's own",
            );
            None
        }
    };
    if raw.wiki.lacks_user_agent_for_wikimedia() {
        warnings.push(wikimedia_user_agent_warning(&format!("wikis[{index}].")));
    }
    let wiki = check::wiki(raw.wiki, base_dir, problems);
    // The environment's password cannot tell which wiki it is for.
    let login = login::login(raw.login, base_dir, &NoEnvironment, problems);
    let policy = security::policy(shared.policy.clone().overlaid_by(raw.policy), problems);
    let session = resilience::session(
        shared.session.clone().overlaid_by(raw.session),
        base_dir,
        problems,
    );
    let etiquette = resilience::etiquette(
        shared.etiquette.clone().overlaid_by(raw.etiquette),
        problems,
    );
    let (wiki, path_prefix) = (wiki?, path_prefix?);
    let name = match raw.name {
        Some(name) if is_valid_name(&name) => name,
        Some(name) => {
            problem(
                problems,
                "name",
                format!("`{name}` is not a name of letters, digits, `-`, `_` and `.`"),
            );
            return None;
        }
        None if !path_prefix.is_empty() => path_prefix.trim_start_matches('/').replace('/', "-"),
        None => wiki.api_url.host_str().unwrap_or("wiki").to_owned(),
    };
    Some(SiteSettings {
        name,
        path_prefix,
        listen: listen?,
        wiki,
        login: login?,
        policy: policy?,
        session: session?,
        etiquette: etiquette?,
    })
}

struct NoEnvironment;

impl Environment for NoEnvironment {
    fn var(&self, _name: &str) -> Option<String> {
        None
    }
}

fn wikimedia_user_agent_warning(key_prefix: &str) -> String {
    format!(
        "Wikimedia's User-Agent policy asks bots to identify themselves: set \
         {key_prefix}wiki.user_agent to something like \"MyBot/1.0 (https://example.org/bot; me@example.org)\""
    )
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// `/commons` or `/wikis/commons`: segments of URL-safe characters, no
/// trailing slash; empty for the root.
fn check_path_prefix(prefix: String, problems: &mut Vec<ConfigProblem>) -> Option<String> {
    if prefix.is_empty() {
        return Some(prefix);
    }
    let valid = prefix.starts_with('/')
        && prefix[1..].split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        });
    if valid {
        Some(prefix)
    } else {
        problem(
            problems,
            "path_prefix",
            format!(
                "`{prefix}` is not a path prefix such as \"/commons\": a leading `/`, no trailing one, \
                 letters, digits, `-`, `_`, `.` and `~`"
            ),
        );
        None
    }
}

/// Names, the paths clients use on each listen address, and state files
/// must each belong to one wiki.
fn check_distinct(sites: &[SiteSettings], problems: &mut Vec<ConfigProblem>) {
    for (later, site) in sites.iter().enumerate() {
        let earlier = &sites[..later];
        if let Some(other) = earlier.iter().position(|other| other.name == site.name) {
            problem(
                problems,
                &format!("wikis[{later}].name"),
                format!(
                    "`{}` is also the name of wikis[{other}]; give each wiki a name of its own",
                    site.name
                ),
            );
        }
        let taken = earlier.iter().enumerate().find_map(|(other, earlier)| {
            (earlier.listen == site.listen)
                .then(|| {
                    site.entry_paths()
                        .into_iter()
                        .find(|path| earlier.entry_paths().contains(path))
                })
                .flatten()
                .map(|path| (other, path))
        });
        if let Some((other, path)) = taken {
            problem(
                problems,
                &format!("wikis[{later}].path_prefix"),
                format!("clients would reach both this wiki and wikis[{other}] at {path}"),
            );
        }
        let shares_state_file = site.session.state_file.as_ref().and_then(|file| {
            earlier
                .iter()
                .position(|other| other.session.state_file.as_ref() == Some(file))
        });
        if let Some(other) = shares_state_file {
            problem(
                problems,
                &format!("wikis[{later}].session.state_file"),
                format!(
                    "wikis[{other}] keeps its session in the same file; give each wiki a state_file of its own"
                ),
            );
        }
    }
}
