//! The bot's session: who holds it, when it is replaced, and how everyone
//! waiting for a new one gets the same one.
//!
//! One background task (the driver) does every login, so at most one login
//! is ever in flight and parallel logins cannot invalidate each other's
//! tokens. Requests read the current [`Session`] from a `watch` channel.
//! Each session carries a generation number: a request that failed with
//! generation `n` reports "`n` is lost", which starts a login only if `n` is
//! still current, then waits for any generation above `n` (the
//! single-flight refresh of smithy-rs's expiring cache and oauth2-proxy).

mod clientlogin;
pub mod jar;
pub mod keepalive;
pub mod login;
mod oauth;
pub mod persist;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use http::HeaderValue;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::telemetry::Metrics;
use jar::{CookieChange, CookieJar};
use login::{Established, LoginError, WikiLogin};

/// The first retry after a failed login waits this long, doubling up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The wiki may ask for a long wait when throttling; never sleep longer.
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(3600);
/// A session lost sooner than this after its login counts as suspicious: a
/// wiki that drops every session at once (or a bot refused what it asks
/// for, which looks the same) must not get one login per request.
const SHORT_SESSION: Duration = Duration::from_secs(1);
/// Short sessions in a row tolerated before logins slow down; a wiki may
/// legitimately drop a fresh session now and then.
const SHORT_SESSIONS_TOLERATED: u32 = 2;
/// Requests wait through a slow-down pause up to this long rather than
/// failing; past it they get "not logged in" at once.
const MAX_HELD_PAUSE: Duration = Duration::from_secs(4);

/// Something that can produce a fresh session; the bot-password flow in
/// production, a script in tests.
pub trait Authenticator: Send + Sync + 'static {
    fn log_in(&self) -> BoxFuture<'_, Result<Established, LoginError>>;

    /// Confirms that a saved session still works, as `user`.
    fn resume(
        &self,
        jar: CookieJar,
        user: String,
    ) -> BoxFuture<'_, Result<Established, LoginError>>;
}

impl Authenticator for WikiLogin {
    fn log_in(&self) -> BoxFuture<'_, Result<Established, LoginError>> {
        Box::pin(WikiLogin::log_in(self))
    }

    fn resume(
        &self,
        jar: CookieJar,
        user: String,
    ) -> BoxFuture<'_, Result<Established, LoginError>> {
        Box::pin(WikiLogin::resume(self, jar, user))
    }
}

/// A logged-in session, immutable: cookie updates make a new value with the
/// same generation.
#[derive(Debug)]
pub struct Session {
    pub generation: u64,
    /// The user name as the wiki spells it.
    pub user: String,
    pub logged_in_since: SystemTime,
    /// The login time by the wiki's clock, in Unix seconds: tokens issued
    /// at or before it belong to an earlier session.
    pub wiki_login_time: u64,
    jar: CookieJar,
    /// Prepared once: the jar's `Cookie` header, valid until `header_expires`.
    cookie_header: Option<HeaderValue>,
    header_expires: Option<Instant>,
    /// Prepared once: `assertuser=<user>`, urlencoded.
    assert_param: String,
    /// OAuth 2: `Bearer <token>`, sent instead of cookies.
    authorization: Option<HeaderValue>,
}

impl Session {
    fn new(
        generation: u64,
        user: String,
        logged_in_since: SystemTime,
        wiki_login_time: u64,
        mut jar: CookieJar,
        authorization: Option<HeaderValue>,
    ) -> Self {
        jar.remove_expired(Instant::now());
        let assert_param = form_urlencoded::Serializer::new(String::new())
            .append_pair("assertuser", &user)
            .finish();
        Self {
            generation,
            cookie_header: jar.header(),
            header_expires: jar.next_expiry(),
            jar,
            user,
            logged_in_since,
            wiki_login_time,
            assert_param,
            authorization,
        }
    }

    fn with_jar(&self, jar: CookieJar) -> Self {
        Self::new(
            self.generation,
            self.user.clone(),
            self.logged_in_since,
            self.wiki_login_time,
            jar,
            self.authorization.clone(),
        )
    }

    /// The `Cookie` header to send upstream.
    pub fn cookie_header(&self) -> Option<&HeaderValue> {
        self.cookie_header.as_ref()
    }

    /// Puts the session's credentials on a request to the wiki: its cookies,
    /// or for OAuth 2 its `Authorization` header.
    pub fn authenticate(&self, headers: &mut http::HeaderMap) {
        if let Some(cookies) = &self.cookie_header {
            headers.insert(http::header::COOKIE, cookies.clone());
        }
        if let Some(authorization) = &self.authorization {
            headers.insert(http::header::AUTHORIZATION, authorization.clone());
        }
    }

    /// `assertuser=<user>`, ready to append to a query string.
    pub fn assert_param(&self) -> &str {
        &self.assert_param
    }

    fn header_is_stale(&self, now: Instant) -> bool {
        self.header_expires.is_some_and(|expires| expires <= now)
    }

    #[cfg(test)]
    pub(crate) fn jar(&self) -> &CookieJar {
        &self.jar
    }
}

/// Where the session stands, as requests and `/readyz` see it.
#[derive(Debug, Clone)]
pub enum SessionStatus {
    /// A login is under way; requests wait for it.
    LoggingIn,
    Ready(Arc<Session>),
    /// The last login failed; the next is scheduled. Requests fail fast.
    NotReady {
        reason: String,
    },
}

/// Why a request cannot have a session now.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not logged in: {reason}")]
pub struct NotReady {
    pub reason: String,
}

#[derive(Debug)]
pub struct SessionManager {
    status: watch::Sender<SessionStatus>,
    metrics: Arc<Metrics>,
    /// Cuts the driver's pause between logins short (new credentials).
    wake: Arc<Notify>,
}

impl SessionManager {
    /// Starts the login driver. It runs until the manager is dropped.
    pub fn start(authenticator: Arc<dyn Authenticator>, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::start_resuming(authenticator, metrics, None)
    }

    /// Starts the driver, trying a saved session before logging in.
    pub fn start_resuming(
        authenticator: Arc<dyn Authenticator>,
        metrics: Arc<Metrics>,
        saved: Option<persist::Saved>,
    ) -> Arc<Self> {
        let (status, _) = watch::channel(SessionStatus::LoggingIn);
        let wake = Arc::new(Notify::new());
        let manager = Arc::new(Self {
            status,
            metrics,
            wake: wake.clone(),
        });
        let driver = Driver {
            manager: Arc::downgrade(&manager),
            status: manager.status.subscribe(),
            authenticator,
            metrics: manager.metrics.clone(),
            wake,
            saved,
        };
        tokio::spawn(driver.run());
        manager
    }

    pub fn status(&self) -> SessionStatus {
        self.status.borrow().clone()
    }

    /// The session to use now, waiting for a login under way; fails at once
    /// while logins are failing.
    pub async fn current(&self) -> Result<Arc<Session>, NotReady> {
        let session = self.wait_for(|_| true).await?;
        if !session.header_is_stale(Instant::now()) {
            return Ok(session);
        }
        // A cookie such as `UseDC` ran out: prepare a new header once, for
        // everyone, instead of filtering on every request.
        self.refresh_expired(session.generation);
        self.wait_for(|_| true).await
    }

    /// Reports that `generation` no longer works and waits for a newer one.
    /// However many requests report the same generation, one login runs.
    pub async fn replace(&self, generation: u64) -> Result<Arc<Session>, NotReady> {
        self.report_lost(generation);
        self.wait_for(|session| session.generation > generation)
            .await
    }

    /// Logs in afresh now, e.g. with new credentials: the current session is
    /// dropped, and a pause after failed logins is cut short.
    pub fn log_in_again(&self) {
        if let SessionStatus::Ready(session) = self.status() {
            self.report_lost(session.generation);
        }
        self.wake.notify_waiters();
    }

    /// Marks `generation` lost if it is still the current one.
    pub fn report_lost(&self, generation: u64) {
        let lost = self.status.send_if_modified(|status| match status {
            SessionStatus::Ready(session) if session.generation == generation => {
                *status = SessionStatus::LoggingIn;
                true
            }
            _ => false,
        });
        if lost {
            self.metrics.relogins.inc();
            tracing::info!(generation, "session lost; logging in again");
        }
    }

    /// Applies `Set-Cookie` headers from a response made with `generation`.
    /// Cookies from an older session are ignored: they must not overwrite
    /// the new one. Returns whether the response ended the session.
    pub fn absorb_cookies<'a>(
        &self,
        generation: u64,
        set_cookies: impl Iterator<Item = &'a HeaderValue>,
    ) -> bool {
        let mut ended = false;
        let now = Instant::now();
        self.status.send_if_modified(|status| {
            let SessionStatus::Ready(session) = status else {
                return false;
            };
            if session.generation != generation {
                return false;
            }
            let mut jar = session.jar.clone();
            let mut changed = false;
            for value in set_cookies {
                match jar.apply(value.as_bytes(), now) {
                    CookieChange::Unchanged => {}
                    CookieChange::Set | CookieChange::Removed => changed = true,
                    CookieChange::SessionEnded => ended = true,
                }
            }
            if changed && !ended {
                *status = SessionStatus::Ready(Arc::new(session.with_jar(jar)));
            }
            changed && !ended
        });
        if ended {
            self.report_lost(generation);
        }
        ended
    }

    fn refresh_expired(&self, generation: u64) {
        self.status.send_if_modified(|status| match status {
            SessionStatus::Ready(session)
                if session.generation == generation && session.header_is_stale(Instant::now()) =>
            {
                *status = SessionStatus::Ready(Arc::new(session.with_jar(session.jar.clone())));
                true
            }
            _ => false,
        });
    }

    async fn wait_for(
        &self,
        mut accept: impl FnMut(&Session) -> bool,
    ) -> Result<Arc<Session>, NotReady> {
        let mut status = self.status.subscribe();
        loop {
            match &*status.borrow_and_update() {
                SessionStatus::Ready(session) if accept(session) => return Ok(session.clone()),
                SessionStatus::NotReady { reason } => {
                    return Err(NotReady {
                        reason: reason.clone(),
                    });
                }
                _ => {}
            }
            if status.changed().await.is_err() {
                return Err(NotReady {
                    reason: "shutting down".into(),
                });
            }
        }
    }
}

/// The background task that performs every login.
struct Driver {
    /// Weak, so dropping the manager ends the driver.
    manager: std::sync::Weak<SessionManager>,
    status: watch::Receiver<SessionStatus>,
    authenticator: Arc<dyn Authenticator>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    /// A session from the state file, tried once before the first login.
    saved: Option<persist::Saved>,
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

    async fn run(mut self) {
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

#[cfg(test)]
mod tests;
