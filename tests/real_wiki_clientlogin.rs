//! Main-account login with `action=clientlogin` on a real MediaWiki: plain,
//! and with a TOTP second factor from the OATHAuth extension that Debian's
//! package ships.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::real_wiki::{ApiClient, ProxyProcess, RealWiki, WikiOptions};

const LOGINS_OK: &str = "mw_auth_proxy_logins_total{result=\"success\"}";
const LOGINS_FAILED: &str = "mw_auth_proxy_logins_total{result=\"failure\"}";
/// RFC 4648 base32 of "12345678901234567890" (RFC 6238's test key).
const TOTP_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// A clientlogin config for the admin, with `extra` lines in `[login]`.
async fn clientlogin_proxy(wiki: &RealWiki, dir: &std::path::Path, extra: &str) -> ProxyProcess {
    let password_file = dir.join("admin-password");
    std::fs::write(&password_file, wiki.admin_password()).unwrap();
    let config = |listen: std::net::SocketAddr| {
        format!(
            "[server]\nlisten = \"{listen}\"\n[wiki]\napi_url = {:?}\n\
             [login]\nmethod = \"clientlogin\"\nusername = \"Admin\"\npassword_file = {:?}\n{extra}\n",
            wiki.api_url(),
            password_file.display().to_string(),
        )
    };
    ProxyProcess::start_with(config).await
}

#[tokio::test]
async fn clientlogin_acts_as_the_main_account_across_a_session_kill() {
    let wiki = RealWiki::start(WikiOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let proxy = clientlogin_proxy(&wiki, dir.path(), "").await;
    let client = ApiClient::through_proxy(&proxy.api_url());
    assert_eq!(client.user_info().await, ("Admin".to_owned(), false));
    let token = client.token("csrf").await;
    let reply = client
        .post_form(&[
            ("action", "edit"),
            ("title", "Client login"),
            ("text", "by the main account"),
            ("token", &token),
        ])
        .await;
    assert_eq!(reply.json["edit"]["result"], "Success", "{}", reply.body);

    assert!(wiki.kill_sessions() > 0);
    assert_eq!(client.user_info().await, ("Admin".to_owned(), false));
    assert_eq!(proxy.metric(LOGINS_OK).await, 2.0);
    assert!(!proxy.log().contains(wiki.admin_password()));
}

#[tokio::test]
async fn clientlogin_answers_the_two_factor_prompt() {
    let mut wiki = RealWiki::start(WikiOptions {
        oathauth: true,
        ..WikiOptions::default()
    });
    let secret_file = wiki.enrol_totp(TOTP_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let proxy = clientlogin_proxy(
        &wiki,
        dir.path(),
        &format!("totp_secret_file = {:?}", secret_file.display().to_string()),
    )
    .await;
    let client = ApiClient::through_proxy(&proxy.api_url());
    assert_eq!(client.user_info().await, ("Admin".to_owned(), false));

    // A re-login right away needs a code of a later window; the proxy waits
    // for it rather than failing.
    assert!(wiki.kill_sessions() > 0);
    assert_eq!(client.user_info().await, ("Admin".to_owned(), false));
    assert_eq!(proxy.metric(LOGINS_OK).await, 2.0);
    assert_eq!(proxy.metric(LOGINS_FAILED).await, 0.0);
}

#[tokio::test]
async fn a_wrong_two_factor_secret_means_not_ready_without_hammering() {
    let mut wiki = RealWiki::start(WikiOptions {
        oathauth: true,
        ..WikiOptions::default()
    });
    wiki.enrol_totp(TOTP_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::spawn_with(|listen| {
        let password_file = dir.path().join("admin-password");
        std::fs::write(&password_file, wiki.admin_password()).unwrap();
        format!(
            "[server]\nlisten = \"{listen}\"\n[wiki]\napi_url = {:?}\n\
             [login]\nmethod = \"clientlogin\"\nusername = \"Admin\"\npassword_file = {:?}\n\
             totp_secret = \"JBSWY3DPEHPK3PXP\"\n",
            wiki.api_url(),
            password_file.display().to_string(),
        )
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, json) = proxy.readyz().await;
        let reason = json["reason"].as_str().unwrap_or_default().to_owned();
        if reason.contains("two-factor code was refused") {
            assert_eq!(status.as_u16(), 503);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{json}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let failures = proxy.metric(LOGINS_FAILED).await;
    assert!(failures <= 4.0, "{failures} failed logins in about 5 s");
}
