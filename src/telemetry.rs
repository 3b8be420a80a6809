//! Metrics (Prometheus text format at `/metrics`) and log set-up. Metric
//! handles are cheap atomics, so the request path only increments.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::config::LogFormat;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub logins: Family<LoginLabels, Counter>,
    pub relogins: Counter,
    pub replays: Counter,
    pub requests: Family<StatusLabels, Counter>,
    pub request_duration: Histogram,
    pub login_failures: Family<ReasonLabels, Counter>,
    pub replays_by_code: Family<CodeLabels, Counter>,
    pub upstream_duration: Histogram,
    pub in_flight: Gauge,
    /// Set when `/metrics` is rendered, from the session's state.
    pub session_age: Gauge<f64, AtomicU64>,
    pub logged_in: Gauge,
    pub keepalives: Family<ResultLabels, Counter>,
    pub tokens_renewed: Counter,
    pub pauses: Family<CodeLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mw_auth_proxy");
        let logins = Family::<LoginLabels, Counter>::default();
        // Both series exist from the start so alerts can use rate() at once.
        let _ = logins.get_or_create(&LoginLabels { result: "success" });
        let _ = logins.get_or_create(&LoginLabels { result: "failure" });
        registry.register(
            "logins",
            "Login attempts against the wiki, by result",
            logins.clone(),
        );
        let relogins = Counter::default();
        registry.register(
            "relogins",
            "Times the session was found lost and a new login was started",
            relogins.clone(),
        );
        let replays = Counter::default();
        registry.register(
            "replays",
            "Client requests replayed after a re-login",
            replays.clone(),
        );
        let requests = Family::<StatusLabels, Counter>::default();
        registry.register(
            "requests",
            "Forwarded API requests, by HTTP status returned to the client",
            requests.clone(),
        );
        let request_duration = Histogram::new(exponential_buckets(0.002, 2.0, 14));
        registry.register(
            "request_duration_seconds",
            "Time from a client request to its response headers",
            request_duration.clone(),
        );
        let login_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "login_failures",
            "Failed logins, by reason (rejected, throttled, unreachable, http_status, unexpected_answer, token_refused, session_not_kept)",
            login_failures.clone(),
        );
        let replays_by_code = Family::<CodeLabels, Counter>::default();
        registry.register(
            "replays_by_code",
            "Client requests replayed, by the error code that caused the replay",
            replays_by_code.clone(),
        );
        let upstream_duration = Histogram::new(exponential_buckets(0.002, 2.0, 14));
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request to the wiki to its response headers",
            upstream_duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "API requests being handled now",
            in_flight.clone(),
        );
        let session_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "session_age_seconds",
            "Seconds since the current session was established (0 when logged out)",
            session_age.clone(),
        );
        let logged_in = Gauge::default();
        registry.register(
            "logged_in",
            "1 while the proxy holds a confirmed session, else 0",
            logged_in.clone(),
        );
        let keepalives = Family::<ResultLabels, Counter>::default();
        registry.register(
            "keepalives",
            "Keepalive requests, by result (ok, lost, error)",
            keepalives.clone(),
        );
        let tokens_renewed = Counter::default();
        registry.register(
            "tokens_renewed",
            "Tokens of an earlier session replaced by fresh ones",
            tokens_renewed.clone(),
        );
        let pauses = Family::<CodeLabels, Counter>::default();
        registry.register(
            "pauses",
            "Times the wiki asked every client to wait, by cause (maxlag, readonly, http-429, http-503)",
            pauses.clone(),
        );
        Self {
            pauses,
            keepalives,
            tokens_renewed,
            registry,
            logins,
            relogins,
            replays,
            requests,
            request_duration,
            login_failures,
            replays_by_code,
            upstream_duration,
            in_flight,
            session_age,
            logged_in,
        }
    }

    pub fn login_succeeded(&self) {
        self.logins
            .get_or_create(&LoginLabels { result: "success" })
            .inc();
    }

    pub fn login_failed(&self, reason: &'static str) {
        self.logins
            .get_or_create(&LoginLabels { result: "failure" })
            .inc();
        self.login_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn paused(&self, code: &'static str) {
        self.pauses.get_or_create(&CodeLabels { code }).inc();
    }

    pub fn keepalive(&self, result: &'static str) {
        self.keepalives
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn replayed(&self, code: &'static str) {
        self.replays.inc();
        self.replays_by_code
            .get_or_create(&CodeLabels { code })
            .inc();
    }

    /// The whole registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The metrics of several wikis as one exposition, each sample labelled
/// `wiki="<name>"`. Every family is described once, as the format
/// requires, with every wiki's samples under it; registering each wiki in
/// a labelled sub-registry would describe each family once per wiki.
pub fn render_labelled(sites: &[(&str, &Metrics)]) -> String {
    // Families in the order the first wiki renders them: (name, the
    // description lines, the samples of every wiki).
    let mut families: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for (index, (wiki, metrics)) in sites.iter().enumerate() {
        let label = format!("wiki=\"{wiki}\"");
        let mut current = None;
        for line in metrics.render().lines() {
            if line == "# EOF" {
                continue;
            }
            if let Some(described) = line.strip_prefix("# ") {
                // `# HELP name ...`, `# TYPE name ...`, `# UNIT name ...`
                let name = described.split(' ').nth(1).unwrap_or_default();
                let position = match families.iter().position(|family| family.0 == name) {
                    Some(position) => position,
                    None => {
                        families.push((name.to_owned(), Vec::new(), Vec::new()));
                        families.len() - 1
                    }
                };
                if index == 0 {
                    families[position].1.push(line.to_owned());
                }
                current = Some(position);
            } else if let Some(position) = current {
                families[position].2.push(with_label(line, &label));
            }
        }
    }
    let mut text = String::new();
    for (_, descriptions, samples) in families {
        for line in descriptions.iter().chain(&samples) {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.push_str("# EOF\n");
    text
}

/// `name{a="1"} 2` becomes `name{wiki="x",a="1"} 2`; `name 2` becomes
/// `name{wiki="x"} 2`. Label values here are the proxy's own words, never
/// holding a brace or a space.
fn with_label(sample: &str, label: &str) -> String {
    let name_end = sample.find(['{', ' ']).unwrap_or(sample.len());
    let (name, rest) = sample.split_at(name_end);
    match rest.strip_prefix('{') {
        Some(labels) if labels.starts_with('}') => format!("{name}{{{label}{labels}"),
        Some(labels) => format!("{name}{{{label},{labels}"),
        None => format!("{name}{{{label}}}{rest}"),
    }
}

/// Log lines waiting for the writer thread. The queue is allocated whole
/// at start (its slots are about 32 bytes), and a few thousand lines are
/// more than a burst of requests produces before the writer catches up.
const LOG_QUEUE_LINES: usize = 4096;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
///
/// Lines are written by a thread of their own through a buffer that is
/// flushed whenever no line is waiting: under load many lines leave in one
/// `write`, and no request thread ever waits for the stderr lock or for a
/// slow log reader. No line is dropped: a full queue (a reader that stopped
/// reading) holds the writers back, as writing stderr directly would. The
/// returned guard flushes what is left when it is dropped, at exit.
pub fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("mw-auth-proxy-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().init(),
        // Colour codes only for a terminal, not for log files.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    guard
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn renders_the_documented_names() {
        let metrics = Metrics::new();
        metrics.login_succeeded();
        metrics
            .requests
            .get_or_create(&StatusLabels { status: 200 })
            .inc();
        metrics.request_duration.observe(0.01);
        let text = metrics.render();
        for expected in [
            "mw_auth_proxy_logins_total{result=\"success\"} 1",
            "mw_auth_proxy_logins_total{result=\"failure\"} 0",
            "mw_auth_proxy_relogins_total 0",
            "mw_auth_proxy_replays_total 0",
            "mw_auth_proxy_requests_total{status=\"200\"} 1",
            "mw_auth_proxy_request_duration_seconds_count 1",
            "mw_auth_proxy_upstream_duration_seconds_count 0",
            "mw_auth_proxy_requests_in_flight 0",
            "mw_auth_proxy_session_age_seconds 0",
            "mw_auth_proxy_logged_in 0",
        ] {
            assert!(text.contains(expected), "missing {expected} in:\n{text}");
        }
    }

    #[test]
    fn several_wikis_share_one_description_per_family() {
        let (commons, wikidata) = (Metrics::new(), Metrics::new());
        commons.login_succeeded();
        wikidata.login_failed("rejected");
        wikidata.relogins.inc();
        let text = render_labelled(&[("commons", &commons), ("wikidata", &wikidata)]);
        for expected in [
            "mw_auth_proxy_logins_total{wiki=\"commons\",result=\"success\"} 1",
            "mw_auth_proxy_logins_total{wiki=\"wikidata\",result=\"failure\"} 1",
            "mw_auth_proxy_relogins_total{wiki=\"commons\"} 0",
            "mw_auth_proxy_relogins_total{wiki=\"wikidata\"} 1",
            "mw_auth_proxy_login_failures_total{wiki=\"wikidata\",reason=\"rejected\"} 1",
            "mw_auth_proxy_request_duration_seconds_bucket{wiki=\"wikidata\",le=\"0.002\"} 0",
        ] {
            assert!(text.contains(expected), "missing {expected} in:\n{text}");
        }
        let helps: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("# HELP"))
            .collect();
        let mut unique = helps.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(helps.len(), unique.len(), "{text}");
        assert_eq!(helps.len(), commons.render().matches("# HELP").count());
        // Samples sit under their own family's description.
        let relogins_help = text.find("# HELP mw_auth_proxy_relogins").unwrap();
        let next_help = text[relogins_help + 1..].find("# HELP").unwrap() + relogins_help + 1;
        let samples = &text[relogins_help..next_help];
        assert_eq!(
            samples.matches("mw_auth_proxy_relogins_total{").count(),
            2,
            "{samples}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
