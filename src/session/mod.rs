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
mod driver;
pub mod jar;
pub mod keepalive;
pub mod login;
mod oauth;
pub mod persist;

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use http::HeaderValue;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::telemetry::Metrics;
use jar::{CookieChange, CookieJar};
use login::{Established, LoginError, WikiLogin};

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
        let driver = driver::Driver {
            manager: Arc::downgrade(&manager),
            status: manager.status.subscribe(),
            authenticator,
            metrics: manager.metrics.clone(),
            wake,
            saved,
        };
        // Logged under the caller's span: the wiki's name, with several.
        tokio::spawn(tracing::Instrument::in_current_span(driver.run()));
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

    /// The newest session: `held` itself or a newer state of it while it is
    /// current, else the one that replaced it, waiting for a login under
    /// way. For a request about to go out that was given `held` earlier.
    pub async fn newest(&self, held: &Arc<Session>) -> Result<Arc<Session>, NotReady> {
        if let SessionStatus::Ready(current) = &*self.status.borrow()
            && current.generation == held.generation
        {
            return Ok(current.clone());
        }
        self.wait_for(|session| session.generation > held.generation)
            .await
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
        // Most answers set no cookie: leave the shared state untouched
        // rather than take its write lock on every response.
        let mut set_cookies = set_cookies.peekable();
        if set_cookies.peek().is_none() {
            return false;
        }
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

#[cfg(test)]
mod tests;
