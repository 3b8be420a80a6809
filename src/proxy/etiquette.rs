//! Treating the wiki as API:Etiquette asks. `maxlag` on every request that
//! lacks it; when the wiki says it is lagged, read-only or overloaded
//! (`maxlag`, `readonly`, HTTP 429 or 503), every client pauses together
//! for as long as it asks (bounded) instead of each retrying on its own;
//! optional limits on concurrent requests and on the pace of writes.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::StatusCode;
use http::header::RETRY_AFTER;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::EtiquetteSettings;
use crate::mediawiki::answers::{self, API_ERROR_HEADER};

/// The longest pause taken for one answer, whatever the wiki asks.
const MAX_PAUSE: Duration = Duration::from_secs(120);
/// The pause when the wiki does not say (`readonly` has no Retry-After).
const DEFAULT_PAUSE: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(super) struct Etiquette {
    maxlag_param: Option<String>,
    /// Every request waits until this moment.
    paused_until: Mutex<Option<Instant>>,
    concurrency: Option<std::sync::Arc<Semaphore>>,
    min_write_interval: Duration,
    /// When the last write was sent; held while a write is under way, so
    /// writes go one at a time.
    last_write: tokio::sync::Mutex<Option<Instant>>,
}

/// The wiki asking to slow down.
#[derive(Debug, Clone, Copy)]
pub(super) struct SlowDown {
    pub(super) cause: &'static str,
    pub(super) wait: Duration,
    /// MediaWiki refused before running the module: replaying is safe.
    pub(super) before_execution: bool,
}

impl Etiquette {
    pub(super) fn new(settings: &EtiquetteSettings) -> Self {
        Self {
            maxlag_param: settings.maxlag.map(|lag| format!("maxlag={lag}")),
            paused_until: Mutex::new(None),
            concurrency: settings
                .max_concurrent_upstream
                .map(|limit| std::sync::Arc::new(Semaphore::new(limit))),
            min_write_interval: settings.min_write_interval,
            last_write: tokio::sync::Mutex::new(None),
        }
    }

    /// `maxlag=N` to append to a request's query string, unless off.
    pub(super) fn maxlag_param(&self) -> Option<&str> {
        self.maxlag_param.as_deref()
    }

    /// Waits out a pause, then for a free slot; a write also waits for the
    /// previous write and the configured spacing.
    pub(super) async fn take_turn(&self, is_write: bool) -> TurnGuard<'_> {
        loop {
            let until = *self
                .paused_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => break,
            }
        }
        let permit = match &self.concurrency {
            Some(slots) => slots.clone().acquire_owned().await.ok(),
            None => None,
        };
        let write = if is_write && !self.min_write_interval.is_zero() {
            let mut last = self.last_write.lock().await;
            if let Some(last) = *last {
                tokio::time::sleep_until(last + self.min_write_interval).await;
            }
            *last = Some(Instant::now());
            Some(last)
        } else {
            None
        };
        TurnGuard {
            _permit: permit,
            _write: write,
        }
    }

    /// Pauses every client for `wait`, or longer if already paused longer.
    pub(super) fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }
}

/// Held while a request is at the wiki: a concurrency slot and, for a
/// paced write, the write lock.
#[derive(Debug)]
pub(super) struct TurnGuard<'a> {
    _permit: Option<OwnedSemaphorePermit>,
    _write: Option<tokio::sync::MutexGuard<'a, Option<Instant>>>,
}

/// Whether an answer asks to slow down, and for how long.
pub(super) fn slow_down(upstream: &reqwest::Response) -> Option<SlowDown> {
    let code = upstream
        .headers()
        .get(API_ERROR_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|codes| {
            answers::error_codes(codes).find_map(|code| match code {
                "maxlag" => Some("maxlag"),
                "readonly" => Some("readonly"),
                _ => None,
            })
        });
    let (cause, before_execution) = match (code, upstream.status()) {
        // MediaWiki checks both before it runs the module.
        (Some(code), _) => (code, true),
        // A rate limiter refuses without passing the request on.
        (None, StatusCode::TOO_MANY_REQUESTS) => ("http-429", true),
        // An overloaded server may have failed half-way.
        (None, StatusCode::SERVICE_UNAVAILABLE) => ("http-503", false),
        _ => return None,
    };
    let wait = upstream
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(retry_after)
        .unwrap_or(DEFAULT_PAUSE)
        .min(MAX_PAUSE);
    Some(SlowDown {
        cause,
        wait,
        before_execution,
    })
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(retry_after("5"), Some(Duration::from_secs(5)));
        assert_eq!(retry_after(" 120 "), Some(Duration::from_secs(120)));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let wait = retry_after(&soon).unwrap_or_default();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        assert_eq!(retry_after("soon"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_client_and_writes_are_paced() {
        let etiquette = Etiquette::new(&EtiquetteSettings {
            maxlag: Some(5),
            max_concurrent_upstream: Some(1),
            min_write_interval: Duration::from_secs(1),
        });
        assert_eq!(etiquette.maxlag_param(), Some("maxlag=5"));
        let started = Instant::now();
        etiquette.pause(Duration::from_secs(5));
        etiquette.pause(Duration::from_secs(1)); // a shorter one does not cut it
        drop(etiquette.take_turn(false).await);
        assert!(started.elapsed() >= Duration::from_secs(5));

        let started = Instant::now();
        drop(etiquette.take_turn(true).await);
        drop(etiquette.take_turn(true).await);
        drop(etiquette.take_turn(true).await);
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
