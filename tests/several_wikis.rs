//! Several wikis behind one proxy (`[[wikis]]`), against mock wikis: each
//! has its own path prefix or address, session and readiness, and one
//! wiki's failure leaves the others serving.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::in_process::{TestProxy, client, settings_from};
use support::mock_wiki::MockWiki;

/// A `[[wikis]]` table for `wiki` under `prefix`, logging in with
/// `password`, plus `extra` lines at the table's top.
fn wiki_table(wiki: &MockWiki, prefix: &str, password: &str, extra: &str) -> String {
    format!(
        "[[wikis]]\npath_prefix = {prefix:?}\n{extra}\n\
         [wikis.wiki]\napi_url = {:?}\ntimeout_secs = 5\n\
         [wikis.login]\nusername = {:?}\npassword = {password:?}\n",
        wiki.api_url(),
        wiki.lgname(),
    )
}

async fn get_json(url: &str) -> (u16, Value) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}")),
    )
}

async fn user_at(proxy: &TestProxy, prefix: &str) -> (u16, Value) {
    get_json(&format!(
        "{}{prefix}/api.php?action=query&meta=userinfo&format=json",
        proxy.base_url
    ))
    .await
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn each_wiki_has_its_own_prefix_session_and_readiness() {
    let commons = MockWiki::builder()
        .bot_password("Commons@bot", "commons-password-000000000000000")
        .start()
        .await;
    let wikidata = MockWiki::builder()
        .bot_password("Data@bot", "data-password-00000000000000000000")
        .start()
        .await;
    let text = format!(
        "{}{}",
        wiki_table(&commons, "/commons", commons.password(), ""),
        wiki_table(&wikidata, "/wikidata", "a-wrong-password", ""),
    );
    let proxy = TestProxy::start(settings_from(&text)).await;
    wait_until("commons ready", async || {
        get_json(&format!("{}/commons/readyz", proxy.base_url))
            .await
            .0
            == 200
    })
    .await;

    // Each prefix reaches its own wiki, as its own bot, at the proxy's
    // short path and at the wiki's own path.
    let (status, answer) = user_at(&proxy, "/commons").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["query"]["userinfo"]["name"], commons.user_name());
    let (status, answer) = get_json(&format!(
        "{}/commons/api.php?action=query&meta=userinfo&format=json",
        proxy.base_url
    ))
    .await;
    assert_eq!(
        (status, &answer["query"]["userinfo"]["name"]),
        (200, &Value::from(commons.user_name()))
    );

    // The other wiki's wrong password leaves it not ready, alone.
    let (status, answer) = user_at(&proxy, "/wikidata").await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "mw-auth-proxy-not-logged-in");
    assert_eq!(wikidata.successful_logins(), 0);
    assert_eq!(commons.successful_logins(), 1);

    let (status, ready) = get_json(&format!("{}/readyz", proxy.base_url)).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], false);
    assert_eq!(ready["wikis"]["commons"]["ready"], true, "{ready}");
    assert_eq!(ready["wikis"]["commons"]["user"], commons.user_name());
    assert_eq!(ready["wikis"]["wikidata"]["ready"], false, "{ready}");
    assert!(
        ready["wikis"]["wikidata"]["reason"]
            .as_str()
            .unwrap()
            .contains("password"),
        "{ready}"
    );
    let (status, _) = get_json(&format!("{}/wikidata/readyz", proxy.base_url)).await;
    assert_eq!(status, 503);

    // A lost session on one wiki is healed there; the other is untouched.
    commons.kill_sessions();
    let (status, answer) = user_at(&proxy, "/commons").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["query"]["userinfo"]["name"], commons.user_name());
    assert_eq!(commons.successful_logins(), 2);
    assert_eq!(wikidata.successful_logins(), 0);

    // Metrics name each wiki.
    let metrics = client()
        .get(format!("{}/metrics", proxy.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "mw_auth_proxy_logins_total{wiki=\"commons\",result=\"success\"} 2",
        "mw_auth_proxy_logged_in{wiki=\"commons\"} 1",
        "mw_auth_proxy_logged_in{wiki=\"wikidata\"} 0",
        "mw_auth_proxy_login_failures_total{wiki=\"wikidata\",reason=\"rejected\"}",
    ] {
        assert!(metrics.contains(series), "no {series} in:\n{metrics}");
    }

    // Paths without a wiki's prefix reach no wiki, and say which do.
    let before = (commons.requests().len(), wikidata.requests().len());
    let (status, answer) = get_json(&format!("{}/api.php?action=query", proxy.base_url)).await;
    assert_eq!(status, 404);
    let info = answer["error"]["info"].as_str().unwrap();
    assert!(
        info.contains("/commons/api.php") && info.contains("/wikidata/api.php"),
        "{info}"
    );
    assert_eq!(
        (commons.requests().len(), wikidata.requests().len()),
        before
    );
}

#[tokio::test]
async fn a_wiki_may_have_a_listen_address_of_its_own() {
    let main_wiki = MockWiki::start().await;
    let own_wiki = MockWiki::builder()
        .bot_password("Own@bot", "own-password-0000000000000000000000")
        .start()
        .await;
    let own_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own_address = own_listener.local_addr().unwrap();
    let text = format!(
        "{}{}",
        wiki_table(&main_wiki, "/main", main_wiki.password(), ""),
        wiki_table(
            &own_wiki,
            "",
            own_wiki.password(),
            &format!("name = \"own\"\nlisten = \"{own_address}\"")
        ),
    );
    let settings = settings_from(&text);
    assert_eq!(settings.sites[1].listen, Some(own_address));
    let proxy = TestProxy::start(settings.clone()).await;
    let app = proxy.app.clone();
    let server = tokio::spawn(async move {
        mw_auth_proxy::server::serve_address(
            own_listener,
            Some(own_address),
            app,
            std::future::pending(),
            &settings.server,
        )
        .await;
    });
    let own_base = format!("http://{own_address}");
    wait_until("both ready", async || {
        get_json(&format!("{}/readyz", proxy.base_url)).await.0 == 200
    })
    .await;

    let (status, answer) = get_json(&format!(
        "{own_base}/api.php?action=query&meta=userinfo&format=json"
    ))
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["query"]["userinfo"]["name"], own_wiki.user_name());
    let (status, answer) = user_at(&proxy, "/main").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["query"]["userinfo"]["name"], main_wiki.user_name());

    // Each address serves its own wikis only.
    assert_eq!(user_at(&proxy, "").await.0, 404);
    assert_eq!(
        get_json(&format!("{own_base}/main/api.php?action=query"))
            .await
            .0,
        404
    );
    // Its `/readyz` answers for its own wiki.
    let (status, ready) = get_json(&format!("{own_base}/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(
        ready["wikis"]["own"]["user"],
        own_wiki.user_name(),
        "{ready}"
    );
    assert!(ready["wikis"].get("main").is_none(), "{ready}");
    server.abort();
}

#[test]
fn wikis_tables_are_checked_one_by_one_and_together() {
    let check = |text: &str| {
        mw_auth_proxy::config::Settings::from_toml(
            text,
            std::path::Path::new("."),
            &mw_auth_proxy::config::ProcessEnvironment,
        )
    };
    let table = |prefix: &str, extra: &str| {
        format!(
            "[[wikis]]\npath_prefix = {prefix:?}\n{extra}\n[wikis.wiki]\napi_url = \"http://127.0.0.1:9/w/api.php\"\n\
             [wikis.login]\nusername = \"U@b\"\npassword = \"p\"\n"
        )
    };
    let keys = |text: &str| -> Vec<String> {
        check(text)
            .unwrap_err()
            .into_iter()
            .map(|problem| problem.key)
            .collect()
    };
    assert_eq!(
        keys(&format!("{}{}", table("/a", ""), table("/a", ""))),
        ["wikis[1].name", "wikis[1].path_prefix"]
    );
    assert_eq!(keys(&table("a/", "")), ["wikis[0].path_prefix"]);
    assert_eq!(keys(&table("/a/../b", "")), ["wikis[0].path_prefix"]);
    assert_eq!(
        keys(&format!(
            "{}[wikis.session]\nkeepalive_secs = \"x\"\n",
            table("/a", "frob = 1")
        )),
        ["wikis[0].frob", "wikis[0].session"]
    );
    assert_eq!(
        keys(&format!(
            "[wiki]\napi_url = \"http://127.0.0.1:9/api.php\"\n{}",
            table("/a", "")
        )),
        ["wiki"]
    );
    // An inherited problem is named once, at the top.
    assert_eq!(
        keys(&format!(
            "[etiquette]\nmaxlag = 99999\n{}{}",
            table("/a", ""),
            table("/b", "")
        )),
        ["etiquette.maxlag"]
    );
    let shared_state = format!(
        "[session]\nstate_file = \"/tmp/state.json\"\n{}{}",
        table("/a", ""),
        table("/b", "")
    );
    assert_eq!(keys(&shared_state), ["wikis[1].session.state_file"]);

    // The top-level sections are each wiki's defaults, key by key.
    let settings = check(&format!(
        "[etiquette]\nmaxlag = 7\nmin_write_interval_ms = 500\n{}[wikis.etiquette]\nmaxlag = 2\n{}",
        table("/a", ""),
        table("/b", "")
    ))
    .unwrap();
    let (a, b) = (&settings.sites[0], &settings.sites[1]);
    assert_eq!((a.name.as_str(), b.name.as_str()), ("a", "b"));
    assert_eq!(a.etiquette.maxlag, Some(2));
    assert_eq!(a.etiquette.min_write_interval, Duration::from_millis(500));
    assert_eq!(b.etiquette.maxlag, Some(7));
    assert!(settings.named_sites);
}

#[tokio::test]
async fn a_reload_gives_each_wiki_its_own_new_credentials() {
    let one = MockWiki::start().await;
    let two = MockWiki::builder()
        .bot_password("Two@bot", "two-password-0000000000000000000000")
        .start()
        .await;
    let text = |two_password: &str| {
        format!(
            "{}{}",
            wiki_table(&one, "/one", one.password(), ""),
            wiki_table(&two, "/two", two_password, "")
        )
    };
    let proxy = TestProxy::start(settings_from(&text("wrong"))).await;
    wait_until("one ready", async || user_at(&proxy, "/one").await.0 == 200).await;
    assert_eq!(user_at(&proxy, "/two").await.0, 503);

    let reloaded = mw_auth_proxy::reload::apply(&proxy.app, settings_from(&text(two.password())));
    assert!(reloaded.credentials_changed);
    assert!(
        reloaded.need_restart.is_empty(),
        "{:?}",
        reloaded.need_restart
    );
    wait_until("two ready", async || user_at(&proxy, "/two").await.0 == 200).await;
    // The wiki whose credentials stayed keeps its session.
    assert_eq!(one.successful_logins(), 1);
    assert_eq!(two.successful_logins(), 1);

    // Another wiki takes a restart, and says so.
    let three = format!(
        "{}{}",
        text(two.password()),
        wiki_table(&one, "/three", one.password(), "")
    );
    let reloaded = mw_auth_proxy::reload::apply(&proxy.app, settings_from(&three));
    assert_eq!(reloaded.need_restart, ["wikis"]);
    assert!(!reloaded.credentials_changed);
    assert_eq!(user_at(&proxy, "/three").await.0, 404);
}
