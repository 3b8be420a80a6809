//! The `[session]` and `[etiquette]` sections: keeping the session alive
//! and across restarts, and treating the wiki as API:Etiquette asks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::check::problem;
use super::{ConfigProblem, EtiquetteSettings, SessionSettings};

/// Below half of MediaWiki's default session lifetime (3600 s), so an idle
/// session is always renewed in time.
const DEFAULT_KEEPALIVE_SECS: u64 = 900;
/// API:Etiquette's recommendation for bots.
const DEFAULT_MAXLAG: u64 = 5;
/// Requests at the wiki at once unless configured. A wiki answers no
/// faster for more (its PHP workers are the limit; API:Etiquette asks for
/// little parallelism), while each request at the wiki costs a connection
/// and its buffers on both sides. Beyond it, requests wait in the proxy.
/// It is also the number of idle connections kept, so those in use are
/// reused and never reopened.
const DEFAULT_MAX_CONCURRENT_UPSTREAM: usize = 64;

#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawSession {
    keepalive_secs: Option<u64>,
    state_file: Option<PathBuf>,
    heal_stale_csrf: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawEtiquette {
    maxlag: Option<u64>,
    max_concurrent_upstream: Option<usize>,
    min_write_interval_ms: Option<u64>,
}

impl RawSession {
    /// These keys, with those `own` sets taking precedence.
    pub(super) fn overlaid_by(self, own: Self) -> Self {
        Self {
            keepalive_secs: own.keepalive_secs.or(self.keepalive_secs),
            state_file: own.state_file.or(self.state_file),
            heal_stale_csrf: own.heal_stale_csrf.or(self.heal_stale_csrf),
        }
    }
}

impl RawEtiquette {
    /// These keys, with those `own` sets taking precedence.
    pub(super) fn overlaid_by(self, own: Self) -> Self {
        Self {
            maxlag: own.maxlag.or(self.maxlag),
            max_concurrent_upstream: own.max_concurrent_upstream.or(self.max_concurrent_upstream),
            min_write_interval_ms: own.min_write_interval_ms.or(self.min_write_interval_ms),
        }
    }
}

pub(super) fn session(
    raw: RawSession,
    base_dir: &Path,
    problems: &mut Vec<ConfigProblem>,
) -> Option<SessionSettings> {
    let state_file = raw.state_file.map(|path| base_dir.join(path));
    if let Some(path) = &state_file {
        let parent = path.parent().filter(|dir| !dir.as_os_str().is_empty());
        if parent.is_some_and(|dir| !dir.is_dir()) {
            problem(
                problems,
                "session.state_file",
                format!(
                    "the directory of {} does not exist; create it (writable by the proxy only)",
                    path.display()
                ),
            );
            return None;
        }
    }
    Some(SessionSettings {
        keepalive: match raw.keepalive_secs.unwrap_or(DEFAULT_KEEPALIVE_SECS) {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        },
        state_file,
        heal_stale_csrf: raw.heal_stale_csrf.unwrap_or(true),
    })
}

pub(super) fn etiquette(
    raw: RawEtiquette,
    problems: &mut Vec<ConfigProblem>,
) -> Option<EtiquetteSettings> {
    let maxlag = raw.maxlag.unwrap_or(DEFAULT_MAXLAG);
    if maxlag > 3600 {
        problem(problems, "etiquette.maxlag", "seconds of lag; at most 3600");
        return None;
    }
    Some(EtiquetteSettings {
        maxlag: (maxlag > 0).then_some(maxlag),
        max_concurrent_upstream: Some(
            raw.max_concurrent_upstream
                .unwrap_or(DEFAULT_MAX_CONCURRENT_UPSTREAM),
        )
        .filter(|limit| *limit > 0),
        min_write_interval: Duration::from_millis(raw.min_write_interval_ms.unwrap_or(0)),
    })
}
