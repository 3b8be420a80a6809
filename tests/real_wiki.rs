//! End-to-end proof against a real MediaWiki 1.39 (`scripts/wiki`) and the
//! real proxy binary. Every test has its own wiki and proxy, so tests are
//! independent and run in parallel. No client request carries a cookie: the
//! proxy alone holds the session.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::real_wiki::{
    ApiClient, ProxyConfig, ProxyProcess, RealWiki, WikiOptions, free_listen_addr, metric_value,
    poll_until, run_check, shell_unquote, strip_ansi,
};

const LOGINS_OK: &str = "mw_auth_proxy_logins_total{result=\"success\"}";
const LOGINS_FAILED: &str = "mw_auth_proxy_logins_total{result=\"failure\"}";
const RELOGINS: &str = "mw_auth_proxy_relogins_total";
const REPLAYS: &str = "mw_auth_proxy_replays_total";

/// A bot password of the right shape (`^[0-9a-w]{32,}$`) that is not the
/// wiki's, so MediaWiki checks it as a bot password and refuses it.
const WRONG_PASSWORD: &str = "0123456789abcdefghijklmnopqrstuvw0123456";

/// Fails when the proxy's debug log holds the bot password, a session
/// cookie, a live session id of the wiki, or any of `extra`.
fn assert_no_secrets_logged(proxy: &ProxyProcess, wiki: &RealWiki, extra: &[String]) {
    let log = proxy.log();
    assert!(
        log.contains("DEBUG"),
        "the proxy should log at debug level here, or this check proves little:\n{log}"
    );
    assert!(
        !log.contains(wiki.bot_password()),
        "the bot password is in the proxy's log"
    );
    for marker in ["_BPsession=", "_session="] {
        assert!(
            !log.contains(marker),
            "a session cookie ({marker}...) is in the proxy's log"
        );
    }
    let session_ids = wiki.session_ids();
    // The proxy's own session at least is live, so the check below is real.
    assert!(!session_ids.is_empty(), "the wiki has no live session");
    for (what, secret) in session_ids
        .iter()
        .map(|id| ("a session id", id))
        .chain(extra.iter().map(|value| ("a secret", value)))
    {
        assert!(
            secret.is_empty() || !log.contains(secret.as_str()),
            "{what} of the wiki is in the proxy's log"
        );
    }
}

/// The secret part of a CSRF token (the `+\` suffix is the same for all).
fn token_secret(token: &str) -> String {
    token.trim_end_matches("+\\").to_owned()
}

/// Writes `password` to a file of its own, for a configuration to point at.
fn password_file(password: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{password}\n")).unwrap();
    file
}

/// An edit through `client`, asserted successful; returns the new revision id.
async fn edit(client: &ApiClient, title: &str, text: &str, token: &str) -> u64 {
    let reply = client
        .post_form(&[
            ("action", "edit"),
            ("title", title),
            ("text", text),
            ("summary", "end-to-end test"),
            ("token", token),
        ])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json["edit"]["result"], "Success", "{}", reply.body);
    reply.json["edit"]["newrevid"].as_u64().unwrap()
}

/// Reads the latest revision of `title` straight from the wiki, anonymously:
/// (revision id, user, content).
async fn latest_revision(wiki: &RealWiki, title: &str) -> (u64, String, String) {
    let reply = ApiClient::direct(wiki.api_url())
        .get(&[
            ("action", "query"),
            ("prop", "revisions"),
            ("titles", title),
            ("rvprop", "ids|user|content"),
            ("rvslots", "main"),
            ("formatversion", "2"),
        ])
        .await;
    let revision = &reply.json["query"]["pages"][0]["revisions"][0];
    let field = |value: &serde_json::Value| {
        value
            .as_str()
            .unwrap_or_else(|| panic!("no revision in {}", reply.body))
            .to_owned()
    };
    (
        revision["revid"].as_u64().unwrap(),
        field(&revision["user"]),
        field(&revision["slots"]["main"]["content"]),
    )
}

#[test]
fn harness_reads_env_files_metrics_and_logs_correctly() {
    assert_eq!(shell_unquote("/tmp/plain-path_1.x"), "/tmp/plain-path_1.x");
    assert_eq!(shell_unquote(r"a\ b\'c"), "a b'c");
    assert_eq!(shell_unquote("''"), "");
    let metrics =
        "# HELP x\nmw_a_total{result=\"success\"} 2\nmw_a_total{result=\"failure\"} 0\nmw_b 1.5\n";
    assert_eq!(
        metric_value(metrics, "mw_a_total{result=\"success\"}"),
        Some(2.0)
    );
    assert_eq!(metric_value(metrics, "mw_b"), Some(1.5));
    assert_eq!(metric_value(metrics, "mw_a_total"), None);
    // tracing colours field names and `=` separately; a leak check must
    // see `name=value` whole.
    assert_eq!(
        strip_ansi("\u{1b}[3mcookie\u{1b}[0m\u{1b}[2m=\u{1b}[0mv"),
        "cookie=v"
    );
}

#[tokio::test]
async fn userinfo_through_the_proxy_names_the_bot_and_sets_no_cookie() {
    let wiki = RealWiki::start(WikiOptions::default());
    let proxy = ProxyProcess::start_for(&wiki).await;

    // The same cookie-less client is anonymous on the wiki itself...
    let (name, anonymous) = ApiClient::direct(wiki.api_url()).user_info().await;
    assert!(anonymous, "direct request was not anonymous: {name}");

    // ...and the bot through the proxy.
    let reply = proxy
        .client()
        .get(&[("action", "query"), ("meta", "userinfo")])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let info = &reply.json["query"]["userinfo"];
    assert_eq!(info["name"], wiki.admin_user(), "{}", reply.body);
    assert!(info.get("anon").is_none(), "{}", reply.body);
    assert_eq!(reply.set_cookies(), Vec::<String>::new());

    let (status, ready) = proxy.readyz().await;
    assert_eq!(status, 200);
    assert_eq!(ready["user"], wiki.admin_user());
    assert_no_secrets_logged(&proxy, &wiki, &[]);
}

#[tokio::test]
async fn edit_through_the_proxy_is_made_by_the_bot() {
    let wiki = RealWiki::start(WikiOptions::default());
    let proxy = ProxyProcess::start_for(&wiki).await;
    let client = proxy.client();

    let token = client.token("csrf").await;
    assert_ne!(token, "+\\", "the proxy handed out the anonymous token");
    let title = "Proxy end-to-end edit";
    let text = format!("Written through mw-auth-proxy on port {}.", wiki.port());
    let revision = edit(&client, title, &text, &token).await;

    // Read back past the proxy: anonymous reads are allowed on this wiki,
    // anonymous edits are not, so the author proves the session was used.
    let (read_revision, user, content) = latest_revision(&wiki, title).await;
    assert_eq!(read_revision, revision);
    assert_eq!(user, wiki.admin_user());
    assert_eq!(content, text);
    assert_no_secrets_logged(&proxy, &wiki, &[token_secret(&token)]);
}

#[tokio::test]
async fn watch_through_the_proxy_succeeds() {
    let wiki = RealWiki::start(WikiOptions::default());
    let proxy = ProxyProcess::start_for(&wiki).await;
    let client = proxy.client();

    let title = "Proxy end-to-end watch";
    let token = client.token("watch").await;
    assert_ne!(token, "+\\", "the proxy handed out the anonymous token");
    let reply = client
        .post_form(&[
            ("action", "watch"),
            ("titles", title),
            ("token", &token),
            ("formatversion", "2"),
        ])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.error_header(), None, "{}", reply.body);
    assert_eq!(reply.json["watch"][0]["watched"], true, "{}", reply.body);

    // The watchlist belongs to the bot's account, so read it back as the bot.
    let reply = client
        .get(&[
            ("action", "query"),
            ("prop", "info"),
            ("inprop", "watched"),
            ("titles", title),
            ("formatversion", "2"),
        ])
        .await;
    assert_eq!(
        reply.json["query"]["pages"][0]["watched"], true,
        "{}",
        reply.body
    );
    assert_no_secrets_logged(&proxy, &wiki, &[token_secret(&token)]);
}

#[tokio::test]
async fn killed_sessions_are_replaced_by_one_login_and_requests_replayed() {
    let wiki = RealWiki::start(WikiOptions::default());
    let proxy = ProxyProcess::start_for(&wiki).await;
    let client = proxy.client();
    assert_eq!(
        client.user_info().await,
        (wiki.admin_user().to_owned(), false)
    );

    // Killed right after the first login: a wiki may drop a fresh session,
    // and the request must still be replayed rather than failed.
    let old_sessions = wiki.session_ids();
    let logins = proxy.metric(LOGINS_OK).await;
    let replays = proxy.metric(REPLAYS).await;
    let killed = wiki.kill_sessions();
    assert!(killed > 0, "kill-sessions deleted no session");

    // The first request after the kill is a POST, so the replay of a
    // buffered form body is what is proven.
    let reply = client
        .post_form(&[("action", "query"), ("meta", "tokens")])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let token = reply.json["query"]["tokens"]["csrftoken"]
        .as_str()
        .unwrap_or_else(|| panic!("no token after the kill: {}", reply.body))
        .to_owned();
    assert_ne!(token, "+\\", "the proxy went on as an anonymous user");

    let title = "Proxy edit after killed sessions";
    let text = format!("Written after every session died, port {}.", wiki.port());
    let revision = edit(&client, title, &text, &token).await;
    let (read_revision, user, content) = latest_revision(&wiki, title).await;
    assert_eq!(
        (read_revision, user.as_str()),
        (revision, wiki.admin_user())
    );
    assert_eq!(content, text);
    assert_eq!(
        client.user_info().await,
        (wiki.admin_user().to_owned(), false)
    );

    assert_eq!(proxy.metric(LOGINS_OK).await, logins + 1.0);
    assert!(
        proxy.metric(REPLAYS).await > replays,
        "no replay was counted"
    );
    assert_eq!(proxy.metric(LOGINS_FAILED).await, 0.0);

    let mut secrets = old_sessions;
    secrets.push(token_secret(&token));
    assert_no_secrets_logged(&proxy, &wiki, &secrets);
}

#[tokio::test]
async fn edit_with_a_token_from_the_killed_session_is_applied_once() {
    let wiki = RealWiki::start(WikiOptions::default());
    let proxy = ProxyProcess::start_for(&wiki).await;
    let client = proxy.client();
    let stale_token = client.token("csrf").await;
    let logins = proxy.metric(LOGINS_OK).await;
    let old_sessions = wiki.session_ids();
    assert!(wiki.kill_sessions() > 0, "kill-sessions deleted no session");

    // The token belongs to the dead session: the proxy must log in again,
    // get a token of the new session and apply the edit, once.
    let title = "Proxy edit with a stale token";
    let text = format!(
        "Written with a token of a dead session, port {}.",
        wiki.port()
    );
    let revision = edit(&client, title, &text, &stale_token).await;
    let (read_revision, user, content) = latest_revision(&wiki, title).await;
    assert_eq!(
        (read_revision, user.as_str()),
        (revision, wiki.admin_user())
    );
    assert_eq!(content, text);
    let history = ApiClient::direct(wiki.api_url())
        .get(&[
            ("action", "query"),
            ("prop", "revisions"),
            ("titles", title),
            ("rvprop", "ids"),
            ("rvlimit", "max"),
            ("formatversion", "2"),
        ])
        .await;
    let revisions = history.json["query"]["pages"][0]["revisions"]
        .as_array()
        .unwrap_or_else(|| panic!("no history: {}", history.body))
        .len();
    assert_eq!(revisions, 1, "{}", history.body);
    assert_eq!(proxy.metric(LOGINS_OK).await, logins + 1.0);

    let mut secrets = old_sessions;
    secrets.push(token_secret(&stale_token));
    assert_no_secrets_logged(&proxy, &wiki, &secrets);
}

#[tokio::test]
async fn logout_is_answered_and_the_shared_session_lives_on() {
    let wiki = RealWiki::start(WikiOptions::default());
    let proxy = ProxyProcess::start_for(&wiki).await;
    let client = proxy.client();
    let logins = proxy.metric(LOGINS_OK).await;

    let token = client.token("csrf").await;
    let reply = client
        .post_form(&[("action", "logout"), ("token", &token)])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json, json!({}), "{}", reply.body);

    assert_eq!(
        client.user_info().await,
        (wiki.admin_user().to_owned(), false)
    );
    assert_eq!(
        proxy.metric(LOGINS_OK).await,
        logins,
        "a new login was made"
    );
    assert_eq!(proxy.metric(RELOGINS).await, 0.0);
    // The token still works: the session it belongs to was not ended.
    edit(&client, "Proxy edit after logout", "Still the bot.", &token).await;
    let (_, user, _) = latest_revision(&wiki, "Proxy edit after logout").await;
    assert_eq!(user, wiki.admin_user());
    assert_no_secrets_logged(&proxy, &wiki, &[token_secret(&token)]);
}

#[tokio::test]
async fn check_logs_in_and_names_the_user() {
    let wiki = RealWiki::start(WikiOptions::default());
    let config = wiki.proxy_config(free_listen_addr()).to_toml();
    let run = run_check(&config).await;
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert!(
        run.stdout.contains(&format!(" as {} ", wiki.admin_user())),
        "{run:?}"
    );
    assert!(!run.stdout.contains(wiki.bot_password()));
    assert!(!run.stderr.contains(wiki.bot_password()));
}

#[tokio::test]
async fn check_with_a_wrong_password_exits_1_and_says_why() {
    let wiki = RealWiki::start(WikiOptions::default());
    let wrong = password_file(WRONG_PASSWORD);
    let config = ProxyConfig {
        password_file: wrong.path().to_owned(),
        ..wiki.proxy_config(free_listen_addr())
    };
    let run = run_check(&config.to_toml()).await;
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(run.stderr.contains("refused the login"), "{run:?}");
    assert!(
        run.stderr.contains("Incorrect username or password"),
        "{run:?}"
    );
    assert!(!run.stderr.contains(WRONG_PASSWORD), "{run:?}");
}

#[tokio::test]
async fn check_without_api_url_exits_64_and_names_the_key() {
    // The file is refused before any login, so no wiki is needed.
    let password = password_file(WRONG_PASSWORD);
    let config = ProxyConfig {
        listen: free_listen_addr(),
        api_url: None,
        username: "Admin@proxybot".to_owned(),
        password_file: password.path().to_owned(),
    };
    let run = run_check(&config.to_toml()).await;
    assert_eq!(run.status.code(), Some(64), "{run:?}");
    assert!(run.stderr.contains("wiki.api_url"), "{run:?}");
}

#[tokio::test]
async fn wrong_password_keeps_the_proxy_up_unready_and_backing_off() {
    let wiki = RealWiki::start(WikiOptions::default());
    let wrong = password_file(WRONG_PASSWORD);
    let launched = Instant::now();
    let mut proxy = ProxyProcess::spawn_with(|listen| {
        ProxyConfig {
            password_file: wrong.path().to_owned(),
            ..wiki.proxy_config(listen)
        }
        .to_toml()
    })
    .await;

    let reason = poll_until(
        "/readyz reports the failed login",
        Duration::from_secs(10),
        async || {
            let (status, body) = proxy.readyz().await;
            let reason = body["reason"].as_str().unwrap_or_default().to_owned();
            (status == 503 && reason != "logging in").then_some(reason)
        },
    )
    .await;
    assert!(
        reason.contains("Incorrect username or password"),
        "readyz reason: {reason}"
    );

    // Watch for about four seconds: the proxy must stay up and back off
    // (1 s, then 2 s...), never hammer the wiki with logins.
    let window = launched + Duration::from_secs(4);
    while Instant::now() < window {
        assert!(proxy.is_running(), "the proxy exited:\n{}", proxy.log());
        let failures = proxy.metric(LOGINS_FAILED).await;
        assert!(failures <= 3.0, "{failures} login attempts within 4 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failures = proxy.metric(LOGINS_FAILED).await;
    assert!(
        (2.0..=3.0).contains(&failures),
        "{failures} login attempts within about 4 s (expected a retry, and at most 3)"
    );
    assert_eq!(proxy.metric(LOGINS_OK).await, 0.0);
    let (status, body) = proxy.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert!(proxy.is_running(), "the proxy exited:\n{}", proxy.log());
    assert!(!proxy.log().contains(WRONG_PASSWORD));
}

#[tokio::test]
async fn sigterm_stops_the_proxy_promptly_with_status_0() {
    let wiki = RealWiki::start(WikiOptions::default());
    let mut proxy = ProxyProcess::start_for(&wiki).await;
    // A request first, so the client holds an idle keep-alive connection to
    // the proxy: it must not hold up the shutdown.
    let client = proxy.client();
    assert_eq!(
        client.user_info().await,
        (wiki.admin_user().to_owned(), false)
    );

    let signalled = Instant::now();
    let status = proxy.terminate().await;
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{status}:\n{}", proxy.log());
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?}:\n{}",
        proxy.log()
    );
    assert!(proxy.log().contains("SIGTERM received"));
    drop(client);
    assert_no_secrets_logged(&proxy, &wiki, &[]);
}
