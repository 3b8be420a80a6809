//! Login methods besides bot passwords, against the mock wiki: an
//! owner-only OAuth 2 token sent as a header instead of any login.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::in_process::{TestProxy, client};
use support::mock_wiki::MockWiki;

const TOKEN: &str = "owner-only-access-token-0123456789";

fn oauth_settings(api_url: &str, token: &str) -> mw_auth_proxy::config::Settings {
    struct NoEnvironment;
    impl mw_auth_proxy::config::Environment for NoEnvironment {
        fn var(&self, _name: &str) -> Option<String> {
            None
        }
    }
    let text = format!(
        "[wiki]\napi_url = {api_url:?}\ntimeout_secs = 5\n\
         [login]\nmethod = \"oauth2\"\naccess_token = {token:?}\n"
    );
    mw_auth_proxy::config::Settings::from_toml(&text, std::path::Path::new("."), &NoEnvironment)
        .unwrap()
}

#[tokio::test]
async fn an_oauth2_token_is_sent_as_a_header_and_no_login_is_made() {
    let wiki = MockWiki::builder().start().await;
    wiki.set_oauth_token(Some(TOKEN));
    let proxy = TestProxy::start(oauth_settings(&wiki.api_url(), TOKEN)).await;
    proxy.wait_ready().await;

    let response = client()
        .get(format!(
            "{}?action=query&meta=userinfo&format=json",
            proxy.api_url()
        ))
        .header("authorization", "Bearer the-clients-own")
        .send()
        .await
        .unwrap();
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["query"]["userinfo"]["name"], "Admin");
    let seen = wiki.requests().pop().unwrap();
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(seen.param("assertuser"), Some("Admin"));
    assert_eq!(wiki.login_attempts(), 0);
    assert_eq!(wiki.login_token_requests(), 0);

    // A write works with a token fetched through the proxy.
    let tokens: Value = client()
        .get(format!(
            "{}?action=query&meta=tokens&format=json",
            proxy.api_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tokens["query"]["tokens"]["csrftoken"].as_str().unwrap();
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("action", "edit"),
            ("title", "OAuth"),
            ("text", "by header"),
            ("token", token),
            ("format", "json"),
        ])
        .finish();
    let json: Value = client()
        .post(proxy.api_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["edit"]["result"], "Success", "{json}");
    assert_eq!(wiki.edits()[0].user, "Admin");
}

#[tokio::test]
async fn a_refused_oauth2_token_means_not_ready_with_the_reason() {
    let wiki = MockWiki::builder().start().await;
    wiki.set_oauth_token(Some(TOKEN));
    let proxy = TestProxy::start(oauth_settings(&wiki.api_url(), "a-revoked-token-000000")).await;
    let readyz = format!("{}/readyz", proxy.base_url);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let response = client().get(&readyz).send().await.unwrap();
        let status = response.status();
        let json: Value = response.json().await.unwrap();
        let reason = json["reason"].as_str().unwrap_or("").to_owned();
        if reason.contains("mwoauth-invalid-authorization") {
            assert_eq!(status, 503);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{json}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
