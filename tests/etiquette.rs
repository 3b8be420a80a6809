//! API:Etiquette: maxlag on every request, one pause for every client when
//! the wiki is lagged, read-only or overloaded, replays where safe, and
//! answers passed on with Retry-After where not.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::in_process::{TestProxy, client, start_with_mock, userinfo_url};
use support::mock_wiki::Fault;

async fn csrf_token(proxy: &TestProxy) -> String {
    let url = format!("{}?action=query&meta=tokens&format=json", proxy.api_url());
    let json: Value = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    json["query"]["tokens"]["csrftoken"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn edit(proxy: &TestProxy, token: &str) -> reqwest::Response {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("action", "edit"),
            ("title", "Etiquette"),
            ("text", "written once"),
            ("token", token),
            ("format", "json"),
        ])
        .finish();
    client()
        .post(proxy.api_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn maxlag_is_added_to_requests_that_lack_it_but_never_to_logins() {
    let (wiki, proxy) = start_with_mock("").await;
    client().get(userinfo_url(&proxy)).send().await.unwrap();
    assert_eq!(wiki.requests().pop().unwrap().param("maxlag"), Some("5"));
    let own = format!("{}&maxlag=1", userinfo_url(&proxy));
    client().get(own).send().await.unwrap();
    assert_eq!(wiki.requests().pop().unwrap().param("maxlag"), Some("1"));
    assert_eq!(wiki.forbidden_login_params(), 0);

    let (wiki, proxy) = start_with_mock("[etiquette]\nmaxlag = 0\n").await;
    client().get(userinfo_url(&proxy)).send().await.unwrap();
    assert_eq!(wiki.requests().pop().unwrap().param("maxlag"), None);
}

#[tokio::test]
async fn a_lagged_wiki_pauses_every_client_then_replays() {
    let (wiki, proxy) = start_with_mock("").await;
    wiki.inject_faults([Fault::Maxlag { retry_after: 1 }]);
    let started = Instant::now();
    let first = tokio::spawn(client().get(userinfo_url(&proxy)).send());
    // A second client arriving during the pause waits for it too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = client().get(userinfo_url(&proxy)).send().await.unwrap();
    let second_done = started.elapsed();
    let first = first.await.unwrap().unwrap();
    assert!(second_done >= Duration::from_millis(900), "{second_done:?}");
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-mw-auth-proxy-replayed"], "maxlag");
    let json: Value = first.json().await.unwrap();
    assert_eq!(json["query"]["userinfo"]["name"], "Admin");
    assert_eq!(second.status(), 200);
    assert_eq!(
        proxy
            .metric("mw_auth_proxy_pauses_total{code=\"maxlag\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_rate_limited_read_is_replayed() {
    let (wiki, proxy) = start_with_mock("").await;
    wiki.inject_faults([Fault::Status {
        status: 429,
        retry_after: Some(1),
    }]);
    let response = client().get(userinfo_url(&proxy)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-mw-auth-proxy-replayed"], "http-429");
}

#[tokio::test]
async fn a_write_refused_before_running_is_replayed_once_applied() {
    let (wiki, proxy) = start_with_mock("").await;
    let token = csrf_token(&proxy).await;
    wiki.inject_faults([Fault::Readonly]);
    let response = edit(&proxy, &token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-mw-auth-proxy-replayed"], "readonly");
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["edit"]["result"], "Success", "{json}");
    assert_eq!(wiki.edits().len(), 1);
}

#[tokio::test]
async fn a_write_that_may_have_run_is_passed_on_with_retry_after() {
    let (wiki, proxy) = start_with_mock("").await;
    let token = csrf_token(&proxy).await;
    wiki.inject_faults([Fault::Status {
        status: 503,
        retry_after: None,
    }]);
    let response = edit(&proxy, &token).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    assert!(response.headers().get("x-mw-auth-proxy-replayed").is_none());
    assert!(wiki.edits().is_empty());
}

#[tokio::test]
async fn replays_after_slow_downs_are_bounded() {
    let (wiki, proxy) = start_with_mock("").await;
    wiki.inject_faults([Fault::Maxlag { retry_after: 0 }; 4]);
    let response = client().get(userinfo_url(&proxy)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["mediawiki-api-error"], "maxlag");
    assert_eq!(
        response.headers()["x-mw-auth-proxy-replayed"],
        "maxlag, maxlag, maxlag"
    );
    assert!(response.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn writes_are_paced() {
    let (wiki, proxy) = start_with_mock("[etiquette]\nmin_write_interval_ms = 400\n").await;
    let token = csrf_token(&proxy).await;
    let started = Instant::now();
    let edits = (0..3).map(|i| {
        let api = proxy.api_url();
        let token = token.clone();
        async move {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("action", "edit"),
                    ("title", &format!("Paced {i}")),
                    ("text", "x"),
                    ("token", &token),
                    ("format", "json"),
                ])
                .finish();
            client()
                .post(api)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses = futures_util::future::join_all(edits).await;
    assert!(statuses.iter().all(|status| *status == 200));
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(wiki.edits().len(), 3);
}

/// Sends `count` reads at once and checks that every one succeeded.
async fn read_at_once(proxy: &TestProxy, count: usize) {
    let client = client();
    let reads: Vec<_> = (0..count)
        .map(|_| tokio::spawn(client.get(userinfo_url(proxy)).send()))
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap().unwrap().status(), 200);
    }
}

#[tokio::test]
async fn at_most_64_requests_are_at_the_wiki_at_once_unless_configured() {
    let (wiki, proxy) = start_with_mock("").await;
    wiki.set_response_delay(Duration::from_millis(300));
    read_at_once(&proxy, 100).await;
    assert_eq!(wiki.most_concurrent_requests(), 64);

    let (wiki, proxy) = start_with_mock("[etiquette]\nmax_concurrent_upstream = 0\n").await;
    wiki.set_response_delay(Duration::from_millis(300));
    read_at_once(&proxy, 100).await;
    assert!(wiki.most_concurrent_requests() > 64);
}

#[tokio::test]
async fn a_request_waiting_for_its_turn_goes_out_in_the_new_session() {
    let (wiki, proxy) = start_with_mock("[etiquette]\nmax_concurrent_upstream = 1\n").await;
    let logins_before = wiki.successful_logins();
    // The first request meets the lost session, slowly; the second waits
    // for its turn meanwhile.
    wiki.kill_sessions();
    wiki.delay_next_responses(1, Duration::from_millis(300));
    wiki.clear_requests();
    let first = tokio::spawn(client().get(userinfo_url(&proxy)).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = client().get(userinfo_url(&proxy)).send().await.unwrap();
    let first = first.await.unwrap().unwrap();

    assert!(first.headers().contains_key("x-mw-auth-proxy-replayed"));
    // Sent only once its turn came, in the session that replaced the lost
    // one: never failed, never replayed.
    assert_eq!(second.headers().get("x-mw-auth-proxy-replayed"), None);
    for answer in [first, second] {
        let json: Value = answer.json().await.unwrap();
        assert_eq!(json["query"]["userinfo"]["name"], "Admin");
    }
    assert_eq!(wiki.successful_logins(), logins_before + 1);
    // The clients' reads (the login's own check carries no assertuser).
    let reads = wiki
        .requests()
        .iter()
        .filter(|request| request.param("assertuser").is_some())
        .count();
    assert_eq!(reads, 3, "the failed first, its replay, the second");
}
