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

/// A clientlogin config for the admin, with `extra` lines after `[login]`.
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

/// An urlencoded form body.
fn form(request: reqwest::RequestBuilder, fields: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
}

/// `"wgUserName":"Admin"` in a page: who MediaWiki thinks is reading.
fn page_user(html: &str) -> Option<String> {
    let start = html.find("\"wgUserName\":")? + "\"wgUserName\":".len();
    let value = &html[start..];
    let end = value.find([',', '}'])?;
    serde_json::from_str::<Option<String>>(&value[..end]).ok()?
}

#[tokio::test]
async fn clientlogin_sessions_reach_index_php_and_rest_php() {
    let wiki = RealWiki::start(WikiOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let proxy = clientlogin_proxy(&wiki, dir.path(), "").await;
    let http = support::real_wiki::http_client();
    let base = proxy.base_url();
    let get = async |url: String| {
        let response = http.get(&url).send().await.unwrap();
        assert!(
            response.headers().get("set-cookie").is_none(),
            "a cookie reached the client from {url}"
        );
        response
    };
    let wiki_root = wiki.api_url().trim_end_matches("/api.php").to_owned();

    // index.php reads as the main account; straight from the wiki, nobody.
    let page = get(format!("{base}/index.php?title=Main_Page")).await;
    assert_eq!(page_user(&page.text().await.unwrap()), Some("Admin".into()));
    let direct = get(format!("{wiki_root}/index.php?title=Main_Page")).await;
    assert_eq!(page_user(&direct.text().await.unwrap()), None);

    // A session the wiki dropped: it deletes the cookie, and the read is
    // asked again in a new session.
    assert!(wiki.kill_sessions() > 0);
    let page = get(format!("{base}/index.php/Main_Page")).await;
    assert_eq!(
        page.headers()["x-mw-auth-proxy-replayed"],
        "session-ended",
        "{:?}",
        page.headers()
    );
    assert_eq!(page_user(&page.text().await.unwrap()), Some("Admin".into()));
    assert_eq!(proxy.metric(LOGINS_OK).await, 2.0);

    // rest.php writes with the session and an API token.
    let token = ApiClient::through_proxy(&proxy.api_url())
        .token("csrf")
        .await;
    let created = http
        .post(format!("{base}/rest.php/v1/page"))
        .json(&serde_json::json!({
            "title": "Through rest.php",
            "source": "written through rest.php",
            "comment": "rest.php through the proxy",
            "token": token,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let history: serde_json::Value = get(format!(
        "{wiki_root}/rest.php/v1/page/Through_rest.php/history"
    ))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        history["revisions"][0]["user"]["name"], "Admin",
        "{history}"
    );

    // The pages that would end or replace the session are refused, however
    // they are named.
    let refused = [
        http.get(format!("{base}/index.php?title=Special:UserLogout")),
        http.get(format!("{base}/index.php/special:userlogout")),
        http.get(format!("{base}/index.php/Special%3AUserLogout")),
        http.get(format!("{base}/index.php?title=Special:ChangePassword")),
        form(
            http.post(format!("{base}/index.php")),
            &[("title", "Special:UserLogout"), ("wpEditToken", "x")],
        ),
    ];
    for request in refused {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403);
        assert_eq!(
            response.headers()["mediawiki-api-error"],
            "mw-auth-proxy-login-managed"
        );
    }
    let page = get(format!("{base}/index.php?title=Main_Page")).await;
    assert_eq!(page_user(&page.text().await.unwrap()), Some("Admin".into()));
    assert_eq!(proxy.metric(LOGINS_OK).await, 2.0);

    // A redirect to the wiki's scripts comes back through the proxy.
    let random = get(format!("{base}/index.php?title=Special:Random")).await;
    assert_eq!(random.status(), 302);
    let location = random.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("/index.php"), "{location}");
}

#[tokio::test]
async fn pages_follow_the_operator_policy() {
    let wiki = RealWiki::start(WikiOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let proxy = clientlogin_proxy(&wiki, dir.path(), "[policy]\nread_only = true").await;
    let http = support::real_wiki::http_client();
    let base = proxy.base_url();
    let read = http
        .get(format!("{base}/rest.php/v1/page/Main_Page"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    for request in [
        http.post(format!("{base}/rest.php/v1/page"))
            .json(&serde_json::json!({"title": "X", "source": "x", "comment": "", "token": "+\\"})),
        http.get(format!("{base}/index.php?title=Main_Page&action=edit")),
        form(
            http.post(format!("{base}/index.php?title=Main_Page&action=submit")),
            &[("wpTextbox1", "x")],
        ),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403);
        assert_eq!(
            response.headers()["mediawiki-api-error"],
            "mw-auth-proxy-action-denied"
        );
    }
    let absent = ApiClient::direct(wiki.api_url())
        .get(&[("action", "query"), ("titles", "X"), ("formatversion", "2")])
        .await;
    assert_eq!(
        absent.json["query"]["pages"][0]["missing"], true,
        "{}",
        absent.body
    );
}
