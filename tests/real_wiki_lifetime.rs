//! Sessions ending the ways a real MediaWiki ends them: a short
//! `$wgObjectCacheSessionExpiry` running out while the proxy idles, and a
//! private wiki (anonymous reads refused) whose sessions are wiped.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::real_wiki::{ApiClient, ProxyProcess, RealWiki, WikiOptions};

const LOGINS_OK: &str = "mw_auth_proxy_logins_total{result=\"success\"}";

#[tokio::test]
async fn a_session_that_timed_out_while_idle_is_renewed_with_one_login() {
    let wiki = RealWiki::start(WikiOptions {
        session_expiry: Some(3),
        ..WikiOptions::default()
    });
    let proxy = ProxyProcess::start_for(&wiki).await;
    let client = ApiClient::through_proxy(&proxy.api_url());
    assert_eq!(client.user_info().await, ("Admin".to_owned(), false));
    assert_eq!(proxy.metric(LOGINS_OK).await, 1.0);

    // Idle well past the lifetime: the wiki forgets the session by itself.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let direct_check = ApiClient::direct(wiki.api_url());
    assert!(
        direct_check.user_info().await.1,
        "direct reads are anonymous"
    );

    let token = client.token("csrf").await;
    let reply = client
        .post_form(&[
            ("action", "edit"),
            ("title", "After idling"),
            ("text", "the session had expired"),
            ("token", &token),
        ])
        .await;
    assert_eq!(reply.json["edit"]["result"], "Success", "{}", reply.body);
    assert_eq!(client.user_info().await, ("Admin".to_owned(), false));
    assert_eq!(proxy.metric(LOGINS_OK).await, 2.0, "exactly one new login");
}

#[tokio::test]
async fn a_private_wiki_is_readable_through_the_proxy_across_a_session_wipe() {
    let wiki = RealWiki::start(WikiOptions {
        private: true,
        ..WikiOptions::default()
    });
    let proxy = ProxyProcess::start_for(&wiki).await;
    let read = [
        ("action", "query"),
        ("prop", "info"),
        ("titles", "Main Page"),
    ];
    let anonymous = ApiClient::direct(wiki.api_url()).get(&read).await;
    assert_eq!(anonymous.error_header(), Some("readapidenied"));

    let client = ApiClient::through_proxy(&proxy.api_url());
    let reply = client.get(&read).await;
    assert_eq!(reply.error_header(), None, "{}", reply.body);
    assert!(reply.json["query"]["pages"].is_object(), "{}", reply.body);

    assert!(wiki.kill_sessions() > 0);
    let reply = client.get(&read).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.error_header(), None, "{}", reply.body);
    assert!(reply.json["query"]["pages"].is_object(), "{}", reply.body);
    assert_eq!(proxy.metric(LOGINS_OK).await, 2.0);

    // Another module, another wipe: the same.
    assert!(wiki.kill_sessions() > 0);
    let reply = client
        .get(&[
            ("action", "parse"),
            ("page", "Main Page"),
            ("prop", "wikitext"),
        ])
        .await;
    assert_eq!(reply.error_header(), None, "{}", reply.body);
    assert_eq!(proxy.metric(LOGINS_OK).await, 3.0);
}
