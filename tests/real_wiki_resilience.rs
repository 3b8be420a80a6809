//! A session that never lapses and survives restarts, on a real MediaWiki:
//! the keepalive renews MediaWiki's sliding session window while the proxy
//! idles, and the state file lets a restarted proxy go on without a login.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::real_wiki::{ApiClient, ProxyProcess, RealWiki, WikiOptions};

const LOGINS_OK: &str = "mw_auth_proxy_logins_total{result=\"success\"}";

fn short_lived_wiki() -> RealWiki {
    RealWiki::start(WikiOptions {
        session_expiry: Some(4),
        ..WikiOptions::default()
    })
}

async fn proxy_with(wiki: &RealWiki, extra: &str) -> ProxyProcess {
    ProxyProcess::start_with(|listen| format!("{}\n{extra}\n", wiki.proxy_config(listen).to_toml()))
        .await
}

#[tokio::test]
async fn the_keepalive_keeps_an_idle_session_alive() {
    let wiki = short_lived_wiki();
    // 4 s sessions, renewed when less than half is left: a touch every
    // second keeps them alive.
    let proxy = proxy_with(&wiki, "[session]\nkeepalive_secs = 1\n").await;
    let client = ApiClient::through_proxy(&proxy.api_url());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(client.user_info().await, ("Admin".to_owned(), false));
    assert_eq!(proxy.metric(LOGINS_OK).await, 1.0, "no re-login while idle");
    assert!(
        proxy
            .metric("mw_auth_proxy_keepalives_total{result=\"ok\"}")
            .await
            >= 5.0
    );
}

#[tokio::test]
async fn without_the_keepalive_an_idle_session_lapses() {
    let wiki = short_lived_wiki();
    let proxy = proxy_with(&wiki, "[session]\nkeepalive_secs = 0\n").await;
    let client = ApiClient::through_proxy(&proxy.api_url());
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(client.user_info().await, ("Admin".to_owned(), false));
    assert_eq!(
        proxy.metric(LOGINS_OK).await,
        2.0,
        "the lapsed session was replaced"
    );
}

#[tokio::test]
async fn a_restarted_proxy_resumes_its_session_without_logging_in() {
    let wiki = RealWiki::start(WikiOptions::default());
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("session.json");
    let extra = format!(
        "[session]\nstate_file = {:?}\n",
        state_file.display().to_string()
    );

    let mut first = proxy_with(&wiki, &extra).await;
    assert_eq!(first.metric(LOGINS_OK).await, 1.0);
    let client = ApiClient::through_proxy(&first.api_url());
    assert_eq!(client.user_info().await, ("Admin".to_owned(), false));
    // Written after the login, for the owner only.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !state_file.exists() {
        assert!(std::time::Instant::now() < deadline, "no state file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mode = std::fs::metadata(&state_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(first.terminate().await.success());

    let second = proxy_with(&wiki, &extra).await;
    let client = ApiClient::through_proxy(&second.api_url());
    assert_eq!(client.user_info().await, ("Admin".to_owned(), false));
    let token = client.token("csrf").await;
    let reply = client
        .post_form(&[
            ("action", "edit"),
            ("title", "Resumed"),
            ("text", "after a restart"),
            ("token", &token),
        ])
        .await;
    assert_eq!(reply.json["edit"]["result"], "Success", "{}", reply.body);
    assert_eq!(
        second.metric(LOGINS_OK).await,
        0.0,
        "no login after the restart"
    );
    assert!(second.log().contains("resumed the saved session"));

    // A corrupt file is ignored, logged and replaced.
    drop(second);
    std::fs::write(&state_file, "{ not json").unwrap();
    let third = proxy_with(&wiki, &extra).await;
    assert_eq!(third.metric(LOGINS_OK).await, 1.0);
    assert!(third.log().contains("corrupt"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&state_file)
        .unwrap()
        .contains("not json")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the file was not replaced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
