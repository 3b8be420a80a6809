//! The proxy in front of the in-process mock MediaWiki: forwarding, guards,
//! single-flight re-login and replay, errors, streaming, shutdown.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;
use support::in_process::{TestProxy, client, settings};
use support::mock_wiki::{LoginFailure, MockWiki};

async fn start_pair() -> (MockWiki, TestProxy) {
    start_pair_with("").await
}

async fn start_pair_with(extra_settings: &str) -> (MockWiki, TestProxy) {
    let wiki = MockWiki::builder().api_path("/w/api.php").start().await;
    let proxy = TestProxy::start(settings(
        &wiki.api_url(),
        wiki.lgname(),
        wiki.password(),
        extra_settings,
    ))
    .await;
    proxy.wait_ready().await;
    (wiki, proxy)
}

async fn get_json(url: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body)));
    (status, headers, json)
}

async fn post_form(url: &str, pairs: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let response = client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let json = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    (status, headers, json)
}

fn userinfo_url(proxy: &TestProxy) -> String {
    format!("{}?action=query&meta=userinfo&format=json", proxy.api_url())
}

async fn csrf_token(proxy: &TestProxy) -> String {
    let url = format!("{}?action=query&meta=tokens&format=json", proxy.api_url());
    let (_, _, json) = get_json(&url).await;
    json["query"]["tokens"]["csrftoken"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn requests_run_as_the_bot_and_client_credentials_stay_behind() {
    let (wiki, proxy) = start_pair().await;
    let response = client()
        .get(userinfo_url(&proxy))
        .header("cookie", "mockwiki_session=client-own-cookie")
        .header("authorization", "Bearer client-token")
        .header("user-agent", "SomeTool/2.0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("set-cookie").is_none());
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["query"]["userinfo"]["name"], "Admin");

    let seen = wiki
        .requests()
        .into_iter()
        .rfind(|request| request.param("meta") == Some("userinfo"))
        .unwrap();
    assert_eq!(seen.param("assertuser"), Some("Admin"));
    let cookies = seen.header("cookie").unwrap();
    assert!(cookies.contains("mockwiki_BPsession="), "{cookies}");
    assert!(!cookies.contains("client-own-cookie"), "{cookies}");
    assert!(seen.header("authorization").is_none());
    let agent = seen.header("user-agent").unwrap();
    assert!(agent.starts_with("mw-auth-proxy/"), "{agent}");
    assert!(agent.ends_with(" SomeTool/2.0"), "{agent}");
    assert_eq!(wiki.forbidden_login_params(), 0);
}

#[tokio::test]
async fn the_wikis_own_path_is_served_and_other_paths_are_not() {
    let (_wiki, proxy) = start_pair().await;
    let url = format!(
        "{}/w/api.php?action=query&meta=userinfo&format=json",
        proxy.base_url
    );
    let (status, _, json) = get_json(&url).await;
    assert_eq!(status, 200);
    assert_eq!(json["query"]["userinfo"]["name"], "Admin");

    let (status, headers, json) = get_json(&format!("{}/w/index.php", proxy.base_url)).await;
    assert_eq!(status, 404);
    assert_eq!(headers["mediawiki-api-error"], "mw-auth-proxy-unknown-path");
    assert_eq!(json["error"]["code"], "mw-auth-proxy-unknown-path");
    assert!(
        json["error"]["info"]
            .as_str()
            .unwrap()
            .contains("/w/api.php")
    );
}

#[tokio::test]
async fn a_client_assertion_is_kept_as_sent() {
    let (wiki, proxy) = start_pair().await;
    let url = format!("{}&assert=user", userinfo_url(&proxy));
    let (status, _, _) = get_json(&url).await;
    assert_eq!(status, 200);
    let seen = wiki.requests().pop().unwrap();
    assert_eq!(seen.param("assert"), Some("user"));
    assert_eq!(seen.param("assertuser"), None);
}

#[tokio::test]
async fn a_hundred_requests_after_expiry_get_answers_and_one_login() {
    let (wiki, proxy) = start_pair().await;
    assert_eq!(wiki.successful_logins(), 1);
    wiki.kill_sessions();
    let url = userinfo_url(&proxy);
    let answers = join_all((0..100).map(|_| get_json(&url))).await;
    for (status, headers, json) in answers {
        assert_eq!(status, 200);
        assert!(headers.get("set-cookie").is_none());
        assert_eq!(json["query"]["userinfo"]["name"], "Admin", "{json}");
    }
    assert_eq!(wiki.successful_logins(), 2);
    assert_eq!(
        proxy
            .metric("mw_auth_proxy_logins_total{result=\"success\"}")
            .await,
        2.0
    );
    assert_eq!(proxy.metric("mw_auth_proxy_relogins_total").await, 1.0);
    let replays = proxy.metric("mw_auth_proxy_replays_total").await;
    assert!(replays >= 1.0);
    assert_eq!(
        proxy
            .metric("mw_auth_proxy_replays_by_code_total{code=\"assertnameduserfailed\"}")
            .await,
        replays
    );
    assert_eq!(proxy.metric("mw_auth_proxy_logged_in").await, 1.0);
    assert_eq!(proxy.metric("mw_auth_proxy_requests_in_flight").await, 0.0);
    assert!(
        proxy
            .metric("mw_auth_proxy_upstream_duration_seconds_count")
            .await
            >= 100.0
    );
    assert_eq!(wiki.forbidden_login_params(), 0);
}

#[tokio::test]
async fn an_edit_that_hit_an_expired_session_is_applied_once() {
    let (wiki, proxy) = start_pair().await;
    let token = csrf_token(&proxy).await;
    wiki.kill_sessions();
    let (status, headers, json) = post_form(
        &proxy.api_url(),
        &[
            ("action", "edit"),
            ("title", "Replayed"),
            ("text", "written once"),
            ("token", &token),
            ("format", "json"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json["edit"]["result"], "Success", "{json}");
    assert_eq!(
        headers["x-mw-auth-proxy-replayed"],
        "assertnameduserfailed, badtoken"
    );
    let edits = wiki.edits();
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0].user, "Admin");
    assert_eq!(edits[0].text, "written once");
    assert_eq!(wiki.successful_logins(), 2);
}

#[tokio::test]
async fn logout_never_reaches_the_wiki() {
    let (wiki, proxy) = start_pair().await;
    let api = proxy.api_url();
    let multipart = "--B0undary\r\n\
        Content-Disposition: form-data; name=\"action\"\r\n\r\nquery\r\n\
        --B0undary\r\n\
        Content-Disposition: form-data; name=\"action\"\r\n\r\nlogout\r\n\
        --B0undary--\r\n";
    let requests = [
        client().get(format!("{api}?action=logout&format=json")),
        client().get(format!("{api}?action=query&action=logout")),
        client().get(format!("{api}?%61ction=logout")),
        client()
            .post(format!("{api}?action=query"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("action=logout&token=%2B%5C"),
        client()
            .post(api.clone())
            .header("content-type", "multipart/form-data; boundary=B0undary")
            .body(multipart),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "{}");
    }
    assert_eq!(wiki.logouts(), 0);
    assert!(wiki.requests().iter().all(|r| r.action() != Some("logout")));
    // The session lives on.
    let (_, _, json) = get_json(&userinfo_url(&proxy)).await;
    assert_eq!(json["query"]["userinfo"]["name"], "Admin");
    assert_eq!(wiki.successful_logins(), 1);
}

#[tokio::test]
async fn login_requests_and_cookie_suppressing_requests_are_refused() {
    let (wiki, proxy) = start_pair().await;
    let api = proxy.api_url();
    for (query, status, code) in [
        ("action=login&lgname=x", 403, "mw-auth-proxy-login-managed"),
        ("action=clientlogin", 403, "mw-auth-proxy-login-managed"),
        ("action=createaccount", 403, "mw-auth-proxy-login-managed"),
        (
            "action=query&meta=tokens&type=login",
            403,
            "mw-auth-proxy-login-managed",
        ),
        (
            "action=query&meta=userinfo&callback=f",
            400,
            "mw-auth-proxy-cookies-ignored",
        ),
        (
            "action=query&meta=userinfo&origin=*",
            400,
            "mw-auth-proxy-cookies-ignored",
        ),
        (
            "action=query&crossorigin=1",
            400,
            "mw-auth-proxy-cookies-ignored",
        ),
    ] {
        let (got, headers, json) = get_json(&format!("{api}?{query}")).await;
        assert_eq!(got, status, "{query}");
        assert_eq!(headers["mediawiki-api-error"], code, "{query}");
        assert_eq!(json["error"]["code"], code, "{query}");
    }
    let response = client()
        .get(userinfo_url(&proxy))
        .header("treat-as-untrusted", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // None of them reached the wiki: the only login is the proxy's own.
    assert_eq!(wiki.login_attempts(), 1);
    assert!(wiki.requests().iter().all(|r| {
        !matches!(r.action(), Some("clientlogin" | "createaccount"))
            && ["callback", "origin", "crossorigin"]
                .iter()
                .all(|name| r.param(name).is_none())
            && r.header("treat-as-untrusted").is_none()
    }));
}

#[tokio::test]
async fn a_wrong_password_reports_not_ready_and_does_not_hammer() {
    let wiki = MockWiki::builder().start().await;
    wiki.set_login_failure(Some(LoginFailure::WrongPassword));
    let proxy = TestProxy::start(settings(&wiki.api_url(), wiki.lgname(), "wrong", "")).await;
    let readyz = format!("{}/readyz", proxy.base_url);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let reason = loop {
        let (status, _, json) = get_json(&readyz).await;
        if status == 503 && json["reason"] != "logging in" {
            break json["reason"].as_str().unwrap().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        reason.contains("Incorrect username or password"),
        "{reason}"
    );

    // API requests fail fast with a MediaWiki-shaped 503.
    let (status, headers, json) = get_json(&userinfo_url(&proxy)).await;
    assert_eq!(status, 503);
    assert_eq!(
        headers["mediawiki-api-error"],
        "mw-auth-proxy-not-logged-in"
    );
    assert!(
        json["error"]["info"]
            .as_str()
            .unwrap()
            .contains("Incorrect")
    );

    // Backoff: 1 s then 2 s, so at most 3 attempts in 3.5 s, whatever the
    // clients do meanwhile.
    for _ in 0..35 {
        let _ = get_json(&userinfo_url(&proxy)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attempts = wiki.login_attempts();
    assert!((2..=3).contains(&attempts), "{attempts} login attempts");
    assert_eq!(
        proxy
            .metric("mw_auth_proxy_login_failures_total{reason=\"rejected\"}")
            .await,
        attempts as f64
    );
    assert_eq!(proxy.metric("mw_auth_proxy_logged_in").await, 0.0);

    // Once the password works again, the proxy recovers by itself.
    wiki.set_login_failure(None);
}

#[tokio::test]
async fn a_login_token_refused_once_is_fetched_again() {
    let wiki = MockWiki::builder().start().await;
    wiki.set_login_failure(Some(LoginFailure::SessionTimedOutOnce));
    let proxy = TestProxy::start(settings(
        &wiki.api_url(),
        wiki.lgname(),
        wiki.password(),
        "",
    ))
    .await;
    proxy.wait_ready().await;
    assert_eq!(wiki.login_attempts(), 2);
    assert_eq!(wiki.successful_logins(), 1);
    assert_eq!(wiki.login_token_requests(), 2);
}

#[tokio::test]
async fn wiki_failures_become_mediawiki_shaped_errors() {
    let (wiki, proxy) = start_pair().await;
    wiki.delay_next_responses(1, Duration::from_secs(8));
    let (status, headers, json) = get_json(&userinfo_url(&proxy)).await;
    assert_eq!(status, 504);
    assert_eq!(headers["mediawiki-api-error"], "mw-auth-proxy-wiki-timeout");
    assert_eq!(json["error"]["code"], "mw-auth-proxy-wiki-timeout");

    let url = userinfo_url(&proxy);
    wiki.shutdown().await;
    let (status, headers, json) = get_json(&url).await;
    assert_eq!(status, 502);
    assert_eq!(
        headers["mediawiki-api-error"],
        "mw-auth-proxy-wiki-unreachable"
    );
    let info = json["error"]["info"].as_str().unwrap();
    assert!(info.contains("cannot reach the wiki"), "{info}");
}

#[tokio::test]
async fn cookies_the_wiki_sets_stay_in_the_proxy() {
    let (wiki, proxy) = start_pair().await;
    wiki.set_renew_session_cookies(true);
    let token = csrf_token(&proxy).await;
    let (status, headers, json) = post_form(
        &proxy.api_url(),
        &[
            ("action", "edit"),
            ("title", "Cookies"),
            ("text", "a write sets UseDC"),
            ("token", &token),
            ("format", "json"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert!(headers.get("set-cookie").is_none());
    // The next request carries the cookie the write set.
    get_json(&userinfo_url(&proxy)).await;
    let cookies = wiki.requests().pop().unwrap().cookie("UseDC");
    assert_eq!(cookies.as_deref(), Some("master"));
}

#[tokio::test]
async fn big_bodies_stream_both_ways() {
    let (wiki, proxy) = start_pair_with("[server]\nmax_replay_body_bytes = 65536\n").await;
    let size = 64 * 1024 * 1024;
    let url = format!(
        "{}?action=mockbig&bytes={size}&format=json",
        proxy.api_url()
    );
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0;
    let mut stream = response.bytes_stream();
    use futures_util::StreamExt;
    while let Some(chunk) = stream.next().await {
        received += chunk.unwrap().len();
    }
    assert_eq!(received, size);

    // An upload beyond the replay limit streams through.
    let upload = vec![b'x'; 16 * 1024 * 1024];
    let (status, _, json) = {
        let response = client()
            .post(format!("{}?action=mockcount&format=json", proxy.api_url()))
            .header("content-type", "application/octet-stream")
            .body(upload)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, (), response.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(json["received"], 16 * 1024 * 1024);
    assert_eq!(wiki.successful_logins(), 1);
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    let (wiki, proxy) = start_pair().await;
    wiki.delay_next_responses(1, Duration::from_millis(500));
    let url = userinfo_url(&proxy);
    let in_flight = tokio::spawn(async move { get_json(&url).await });
    // Wait until the request is at the wiki, then stop the proxy.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !wiki
        .requests()
        .iter()
        .any(|r| r.param("meta") == Some("userinfo") && r.param("assertuser").is_some())
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let base = proxy.base_url.clone();
    proxy.stop().await;
    let (status, _, json) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(json["query"]["userinfo"]["name"], "Admin");
    assert!(
        client()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
}

fn multipart_upload(file_bytes: usize, trailing_field: Option<(&str, &str)>) -> Vec<u8> {
    let mut body = Vec::with_capacity(file_bytes + 512);
    body.extend_from_slice(
        b"--Upl0ad\r\nContent-Disposition: form-data; name=\"filename\"\r\n\r\nBig.bin\r\n\
          --Upl0ad\r\nContent-Disposition: form-data; name=\"file\"; filename=\"Big.bin\"\r\n\
          Content-Type: application/octet-stream\r\n\r\n",
    );
    body.resize(body.len() + file_bytes, b'z');
    body.extend_from_slice(b"\r\n");
    if let Some((name, value)) = trailing_field {
        body.extend_from_slice(
            format!(
                "--Upl0ad\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(b"--Upl0ad--\r\n");
    body
}

#[tokio::test]
async fn a_big_multipart_upload_streams_through_and_is_still_checked() {
    let (wiki, proxy) = start_pair_with("[server]\nmax_replay_body_bytes = 65536\n").await;
    let url = format!("{}?action=mockcount&format=json", proxy.api_url());
    let upload = multipart_upload(12 * 1024 * 1024, Some(("comment", "fine")));
    let length = upload.len();
    let response = client()
        .post(&url)
        .header("content-type", "multipart/form-data; boundary=Upl0ad")
        .body(upload)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["received"], length, "{json}");

    // `action=logout` after the file part: the wiki never gets the whole
    // request, and the client gets what a logout answers.
    let upload = multipart_upload(12 * 1024 * 1024, Some(("action", "logout")));
    let length = upload.len() as u64;
    let response = client()
        .post(&url)
        .header("content-type", "multipart/form-data; boundary=Upl0ad")
        .body(upload)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "{}");
    assert_eq!(wiki.logouts(), 0);
    assert!(
        wiki.requests()
            .iter()
            .filter(|r| r.body_len == length)
            .count()
            == 0,
        "the wiki received the whole refused upload"
    );
    // The session is untouched.
    let (_, _, json) = get_json(&userinfo_url(&proxy)).await;
    assert_eq!(json["query"]["userinfo"]["name"], "Admin");
}

#[tokio::test]
async fn a_big_urlencoded_form_is_refused_rather_than_passed_unchecked() {
    let (wiki, proxy) = start_pair_with("[server]\nmax_replay_body_bytes = 1024\n").await;
    let form = format!("text={}&action=logout", "a".repeat(4096));
    let response = client()
        .post(proxy.api_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["mediawiki-api-error"],
        "mw-auth-proxy-body-too-large"
    );
    assert_eq!(wiki.logouts(), 0);
}

#[tokio::test]
async fn a_token_from_a_replaced_session_is_renewed_and_a_wrong_one_is_not() {
    let (wiki, proxy) = start_pair().await;
    let token = csrf_token(&proxy).await;
    // Another request notices the session loss and the proxy logs in again.
    wiki.kill_sessions();
    let (_, _, json) = get_json(&userinfo_url(&proxy)).await;
    assert_eq!(json["query"]["userinfo"]["name"], "Admin");
    assert_eq!(wiki.successful_logins(), 2);

    // This edit runs in the new session with the old token.
    let api = proxy.api_url();
    let edit = |token: String| {
        let api = api.clone();
        async move {
            post_form(
                &api,
                &[
                    ("action", "edit"),
                    ("title", "Renewed"),
                    ("text", &format!("with {}", &token[..8])),
                    ("token", &token),
                    ("format", "json"),
                ],
            )
            .await
        }
    };
    let (_, headers, json) = edit(token.clone()).await;
    assert_eq!(json["edit"]["result"], "Success", "{json}");
    assert!(headers.get("mediawiki-api-error").is_none());
    assert_eq!(wiki.edits().len(), 1);

    // A token the wiki never issued, dated after the login: the client's
    // own mistake, passed back untouched.
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let forged = format!("{}{future:x}+\\", "0".repeat(32));
    let (_, headers, json) = edit(forged).await;
    assert_eq!(headers["mediawiki-api-error"], "badtoken");
    assert_eq!(json["error"]["code"], "badtoken");
    assert_eq!(wiki.edits().len(), 1);
    assert_eq!(wiki.successful_logins(), 2);
}

#[tokio::test]
async fn the_healthcheck_command_reports_readiness() {
    let healthcheck = |base: String| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mw-auth-proxy"))
            .args(["healthcheck", "--url", &format!("{base}/readyz")])
            .output()
            .await
            .unwrap()
    };
    let (_wiki, proxy) = start_pair().await;
    let ready = healthcheck(proxy.base_url.clone()).await;
    assert!(ready.status.success(), "{ready:?}");
    assert!(String::from_utf8_lossy(&ready.stdout).contains("Admin"));

    let wiki = MockWiki::builder().start().await;
    wiki.set_login_failure(Some(LoginFailure::WrongPassword));
    let unready = TestProxy::start(settings(&wiki.api_url(), wiki.lgname(), "wrong", "")).await;
    let output = healthcheck(unready.base_url.clone()).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let base = unready.base_url.clone();
    unready.stop().await;
    let output = healthcheck(base).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
}
