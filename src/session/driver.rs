//! The background task that performs every login: the first one, one after
//! each reported loss, and retries with a backoff after failures. Being
//! the only task that logs in is what makes re-login single-flight.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::login::{Established, LoginError};
use super::{Authenticator, Session, SessionManager, SessionStatus, persist};
use crate::telemetry::Metrics;

/// The first retry after a failed login waits this long, doubling up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The wiki may ask for a long wait when throttling; never sleep longer.
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(3600);
/// A session lost sooner than this after its login counts as suspicious: a
/// wiki that drops every session at once (or a bot refused what it asks
/// for, which looks the same) must not get one login per request.
pub(super) const SHORT_SESSION: Duration = Duration::from_secs(1);
/// Short sessions in a row tolerated before logins slow down; a wiki may
/// legitimately drop a fresh session now and then.
const SHORT_SESSIONS_TOLERATED: u32 = 2;
/// Requests wait through a slow-down pause up to this long rather than
/// failing; past it they get "not logged in" at once.
const MAX_HELD_PAUSE: Duration = Duration::from_secs(4);

/// The background task that performs every login.
pub(super) struct Driver {
    /// Weak, so dropping the manager ends the driver.
    pub(super) manager: std::sync::Weak<SessionManager>,
    pub(super) status: watch::Receiver<SessionStatus>,
    pub(super) authenticator: Arc<dyn Authenticator>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) wake: Arc<Notify>,
    /// A session from the state file, tried once before the first login.
    pub(super) saved: Option<persist::Saved>,
}

impl Driver {
    /// The saved session if it still works, else a fresh login. The flag
    /// says whether a login was made.
    async fn establish(&mut self) -> (Result<Established, LoginError>, bool) {
        if let Some(saved) = self.saved.take() {
            match self.authenticator.resume(saved.jar, saved.user).await {
                Ok(mut established) => {
                    tracing::info!(user = %established.user, "resumed the saved session; no login needed");
                    established.wiki_time =
                        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(saved.wiki_login_time));
                    return (Ok(established), false);
                }
                Err(err) => {
                    tracing::info!(error = %err, "the saved session no longer works; logging in");
                }
            }
        }
        (self.authenticator.log_in().await, true)
    }

    /// Sleeps `delay`, or less if woken for new credentials.
    async fn pause(&self, delay: Duration) {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.wake.notified() => tracing::info!("pause cut short: logging in now"),
        }
    }

    pub(super) async fn run(mut self) {
        let mut generation = 0;
        let mut failures = 0u32;
        let mut short_sessions = 0u32;
        loop {
            let started = Instant::now();
            let (outcome, logged_in) = self.establish().await;
            let Some(manager) = self.manager.upgrade() else {
                return;
            };
            match outcome {
                Ok(established) => {
                    failures = 0;
                    generation += 1;
                    if logged_in {
                        self.metrics.login_succeeded();
                    }
                    tracing::info!(user = %established.user, generation, "logged in");
                    let now = SystemTime::now();
                    // Without a `Date` from the wiki, the proxy's clock must do.
                    let wiki_login_time = established
                        .wiki_time
                        .unwrap_or(now)
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |since| since.as_secs());
                    let session = Session::new(
                        generation,
                        established.user,
                        now,
                        wiki_login_time,
                        established.jar,
                        established.authorization,
                    );
                    manager
                        .status
                        .send_replace(SessionStatus::Ready(Arc::new(session)));
                }
                Err(err) => {
                    failures += 1;
                    self.metrics.login_failed(err.kind());
                    let delay = failure_delay(&err, failures);
                    tracing::warn!(error = %err, retry_in_secs = delay.as_secs(), "login failed");
                    manager.status.send_replace(SessionStatus::NotReady {
                        reason: err.to_string(),
                    });
                    drop(manager);
                    self.pause(delay).await;
                    if !self.set_logging_in() {
                        return;
                    }
                    continue;
                }
            }
            drop(manager);
            // Wait until a request reports the session lost.
            if self
                .status
                .wait_for(|status| matches!(status, SessionStatus::LoggingIn))
                .await
                .is_err()
            {
                return;
            }
            if started.elapsed() >= SHORT_SESSION {
                short_sessions = 0;
            } else if short_sessions < SHORT_SESSIONS_TOLERATED {
                short_sessions += 1;
            } else {
                short_sessions += 1;
                let delay = backoff(short_sessions - SHORT_SESSIONS_TOLERATED);
                tracing::warn!(
                    retry_in_secs = delay.as_secs(),
                    "the session was lost right after logging in; slowing down"
                );
                // A short pause is waited out by the requests (they stay in
                // `LoggingIn`); a long one fails them fast instead.
                if delay > MAX_HELD_PAUSE
                    && !self.set_not_ready(format!(
                        "the wiki dropped {short_sessions} sessions within {}s of logging in; next login in {}s",
                        SHORT_SESSION.as_secs(),
                        delay.as_secs()
                    ))
                {
                    return;
                }
                self.pause(delay).await;
                if !self.set_logging_in() {
                    return;
                }
            }
        }
    }

    /// Returns false once the manager is gone.
    fn set_logging_in(&self) -> bool {
        self.set(SessionStatus::LoggingIn)
    }

    fn set_not_ready(&self, reason: String) -> bool {
        self.set(SessionStatus::NotReady { reason })
    }

    fn set(&self, status: SessionStatus) -> bool {
        match self.manager.upgrade() {
            Some(manager) => {
                manager.status.send_replace(status);
                true
            }
            None => false,
        }
    }
}

fn failure_delay(err: &LoginError, failures: u32) -> Duration {
    match err.wait_asked() {
        Some(wait) => wait.clamp(FIRST_BACKOFF, MAX_THROTTLE_WAIT),
        None => backoff(failures),
    }
}

/// 1 s, 2 s, 4 s ... capped at five minutes.
fn backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}
