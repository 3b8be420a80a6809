//! Keeping an idle session alive. MediaWiki renews a session when a request
//! arrives with less than half of its lifetime left, so a cheap request at
//! an interval below half the lifetime keeps it alive however long the
//! proxy idles. The same request, asserting the user, finds a session the
//! wiki dropped, so a re-login happens before a client needs it.

use std::sync::Weak;
use std::time::Duration;

use http::header::SET_COOKIE;
use url::Url;

use super::{SessionManager, SessionStatus};
use crate::mediawiki::answers::{self, API_ERROR_HEADER};

pub async fn run(
    manager: Weak<SessionManager>,
    http: reqwest::Client,
    api_url: Url,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the session was just made.
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(manager) = manager.upgrade() else {
            return;
        };
        if let SessionStatus::Ready(session) = manager.status() {
            let outcome = touch(&manager, &http, &api_url, &session).await;
            manager.metrics.keepalive(outcome);
        }
    }
}

/// One keepalive request; returns its outcome as a metric label.
async fn touch(
    manager: &SessionManager,
    http: &reqwest::Client,
    api_url: &Url,
    session: &super::Session,
) -> &'static str {
    let mut url = api_url.clone();
    url.query_pairs_mut()
        .append_pair("action", "query")
        .append_pair("meta", "userinfo")
        .append_pair("format", "json");
    let query = format!("{}&{}", url.query().unwrap_or(""), session.assert_param());
    url.set_query(Some(&query));
    let mut headers = http::HeaderMap::new();
    session.authenticate(&mut headers);
    let request = http.get(url).headers(headers);
    let response = match request.send().await {
        Ok(response) => response,
        Err(err) => {
            tracing::warn!(error = %err.without_url(), "keepalive request failed");
            return "error";
        }
    };
    let ended = manager.absorb_cookies(
        session.generation,
        response.headers().get_all(SET_COOKIE).iter(),
    );
    let lost = response
        .headers()
        .get(API_ERROR_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|codes| answers::session_loss_code(codes, true))
        .is_some();
    if lost {
        manager.report_lost(session.generation);
    }
    if lost || ended {
        tracing::info!("keepalive found the session gone");
        "lost"
    } else {
        "ok"
    }
}
