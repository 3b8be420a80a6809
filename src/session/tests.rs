//! The session manager against a scripted authenticator, on paused time:
//! single flight, generations, backoff, throttling.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::Duration;

use super::driver::SHORT_SESSION;
use super::*;

/// Answers logins from a script; when the script runs out, repeats the last
/// entry. Counts calls.
struct Scripted {
    script: Mutex<VecDeque<Result<&'static str, &'static str>>>,
    last: Mutex<Result<&'static str, &'static str>>,
    calls: AtomicUsize,
    /// Time each login takes.
    latency: Duration,
}

impl Scripted {
    fn new(script: &[Result<&'static str, &'static str>]) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(script.iter().copied().collect()),
            last: Mutex::new(script[script.len() - 1]),
            calls: AtomicUsize::new(0),
            latency: Duration::from_millis(50),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Authenticator for Scripted {
    fn resume(
        &self,
        _jar: CookieJar,
        _user: String,
    ) -> BoxFuture<'_, Result<Established, LoginError>> {
        Box::pin(async { Err(LoginError::SessionNotKept("scripted".into())) })
    }

    fn log_in(&self) -> BoxFuture<'_, Result<Established, LoginError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.latency).await;
            let next = self.script.lock().unwrap().pop_front();
            let step = next.unwrap_or(*self.last.lock().unwrap());
            match step {
                Ok(cookie) => {
                    let mut jar = CookieJar::default();
                    jar.apply(format!("w_BPsession={cookie}").as_bytes(), Instant::now());
                    Ok(Established {
                        user: "Admin".into(),
                        jar,
                        wiki_time: None,
                        authorization: None,
                    })
                }
                Err("throttled") => Err(LoginError::Throttled {
                    wait: Duration::from_secs(300),
                    reason: "Please wait 5 minutes before trying again.".into(),
                }),
                Err(reason) => Err(LoginError::Rejected(reason.into())),
            }
        })
    }
}

fn manager(script: &Arc<Scripted>) -> Arc<SessionManager> {
    SessionManager::start(script.clone(), Arc::new(Metrics::new()))
}

fn cookie_of(session: &Session) -> String {
    session
        .cookie_header()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(start_paused = true)]
async fn requests_wait_for_the_first_login() {
    let script = Scripted::new(&[Ok("one")]);
    let sessions = manager(&script);
    let session = sessions.current().await.unwrap();
    assert_eq!(session.generation, 1);
    assert_eq!(session.user, "Admin");
    assert_eq!(cookie_of(&session), "w_BPsession=one");
    assert_eq!(session.assert_param(), "assertuser=Admin");
    assert_eq!(script.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn many_reports_of_one_lost_generation_make_one_login() {
    let script = Scripted::new(&[Ok("one"), Ok("two"), Ok("three")]);
    let sessions = manager(&script);
    let first = sessions.current().await.unwrap().generation;
    // Sessions must last a while, or the manager deliberately slows down.
    tokio::time::sleep(SHORT_SESSION).await;

    let waiters: Vec<_> = (0..100)
        .map(|_| {
            let sessions = sessions.clone();
            tokio::spawn(async move { sessions.replace(first).await })
        })
        .collect();
    for waiter in waiters {
        let session = waiter.await.unwrap().unwrap();
        assert_eq!(session.generation, 2);
        assert_eq!(cookie_of(&session), "w_BPsession=two");
    }
    assert_eq!(script.calls(), 2);

    // A late report about generation 1 does not start another login.
    let again = sessions.replace(first).await.unwrap();
    assert_eq!(again.generation, 2);
    assert_eq!(script.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn failing_logins_back_off_up_to_five_minutes() {
    let script = Scripted::new(&[Err("Incorrect username or password entered.")]);
    let sessions = manager(&script);
    let err = sessions.current().await.unwrap_err();
    assert!(
        err.reason.contains("Incorrect username or password"),
        "{err}"
    );
    assert!(matches!(sessions.status(), SessionStatus::NotReady { .. }));

    // Requests fail fast while backing off: they never trigger a login.
    for _ in 0..50 {
        assert!(sessions.current().await.is_err());
    }
    tokio::time::sleep(Duration::from_secs(3600)).await;
    // 1+2+4+...+256 s = 511 s for the first ten retries, then one every
    // 300 s: about 21 attempts in an hour, never a burst.
    let calls = script.calls();
    assert!(
        (15..=25).contains(&calls),
        "{calls} login attempts in an hour"
    );
}

#[tokio::test(start_paused = true)]
async fn a_throttled_login_waits_as_long_as_the_wiki_asks() {
    let script = Scripted::new(&[Err("throttled"), Ok("one")]);
    let sessions = manager(&script);
    let err = sessions.current().await.unwrap_err();
    assert!(err.reason.contains("throttled"), "{err}");
    tokio::time::sleep(Duration::from_secs(299)).await;
    assert_eq!(script.calls(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let session = sessions.current().await.unwrap();
    assert_eq!(script.calls(), 2);
    assert_eq!(session.generation, 1);
}

#[tokio::test(start_paused = true)]
async fn recovers_after_failures() {
    let script = Scripted::new(&[Err("down"), Err("down"), Ok("one")]);
    let sessions = manager(&script);
    assert!(sessions.current().await.is_err());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let session = sessions.current().await.unwrap();
    assert_eq!(script.calls(), 3);
    assert_eq!(cookie_of(&session), "w_BPsession=one");
}

#[tokio::test(start_paused = true)]
async fn sessions_lost_right_after_login_slow_the_logins_down() {
    let script = Scripted::new(&[Ok("again")]);
    let sessions = manager(&script);
    // A wiki that drops every session immediately: report each one lost.
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        match sessions.current().await {
            Ok(session) => sessions.report_lost(session.generation),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let calls = script.calls();
    assert!(calls <= 15, "{calls} logins in 10 minutes");
}

#[tokio::test(start_paused = true)]
async fn cookies_from_responses_update_only_the_current_session() {
    let script = Scripted::new(&[Ok("one"), Ok("two")]);
    let sessions = manager(&script);
    let first = sessions.current().await.unwrap();
    let renewal = HeaderValue::from_static("cpPosIndex=1; Max-Age=10; path=/");
    assert!(!sessions.absorb_cookies(first.generation, [&renewal].into_iter()));
    let updated = sessions.current().await.unwrap();
    assert_eq!(updated.generation, 1);
    assert_eq!(cookie_of(&updated), "cpPosIndex=1; w_BPsession=one");

    // The short-lived cookie is gone from the prepared header once expired.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let expired = sessions.current().await.unwrap();
    assert_eq!(cookie_of(&expired), "w_BPsession=one");

    // A response that deletes the session cookie ends the session.
    let deletion = HeaderValue::from_static(
        "w_BPsession=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/",
    );
    assert!(sessions.absorb_cookies(1, [&deletion].into_iter()));
    let second = sessions.current().await.unwrap();
    assert_eq!(second.generation, 2);
    assert_eq!(cookie_of(&second), "w_BPsession=two");

    // A late answer from the old session changes nothing.
    assert!(!sessions.absorb_cookies(1, [&deletion].into_iter()));
    let still = sessions.current().await.unwrap();
    assert_eq!(still.generation, 2);
    assert!(still.jar().values().any(|value| value.expose() == "two"));
    assert_eq!(script.calls(), 2);
}
