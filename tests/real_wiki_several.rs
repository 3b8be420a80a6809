//! Two real MediaWikis behind one proxy process (`[[wikis]]`): each path
//! prefix reaches its own wiki as its own bot, a lost session is healed on
//! its wiki alone, and one wiki going down leaves the other serving.
#![allow(clippy::unwrap_used)]

mod support;

use support::real_wiki::{ApiClient, ProxyProcess, RealWiki, WikiOptions};

fn wiki_table(wiki: &RealWiki, prefix: &str) -> String {
    format!(
        "[[wikis]]\npath_prefix = {prefix:?}\n\
         [wikis.wiki]\napi_url = {:?}\n\
         [wikis.login]\nusername = {:?}\npassword_file = {:?}\n",
        wiki.api_url(),
        wiki.bot_user(),
        wiki.bot_password_path().display().to_string(),
    )
}

/// The page's text and last author, read from the wiki itself.
async fn page_on(wiki: &RealWiki, title: &str) -> (String, String) {
    let reply = ApiClient::direct(wiki.api_url())
        .get(&[
            ("action", "query"),
            ("prop", "revisions"),
            ("titles", title),
            ("rvprop", "content|user"),
            ("rvslots", "main"),
            ("formatversion", "2"),
        ])
        .await;
    let revision = &reply.json["query"]["pages"][0]["revisions"][0];
    (
        revision["slots"]["main"]["content"]
            .as_str()
            .unwrap_or_else(|| panic!("no {title} on the wiki: {}", reply.body))
            .to_owned(),
        revision["user"].as_str().unwrap().to_owned(),
    )
}

async fn edit(client: &ApiClient, title: &str, text: &str) {
    let token = client.token("csrf").await;
    let reply = client
        .post_form(&[
            ("action", "edit"),
            ("title", title),
            ("text", text),
            ("token", &token),
        ])
        .await;
    assert_eq!(reply.json["edit"]["result"], "Success", "{}", reply.body);
}

#[tokio::test]
async fn two_real_wikis_behind_one_proxy() {
    let one = RealWiki::start(WikiOptions::default());
    let mut two = RealWiki::start(WikiOptions::default());
    let proxy = ProxyProcess::start_with(|listen| {
        format!(
            "[server]\nlisten = \"{listen}\"\n{}{}",
            wiki_table(&one, "/one"),
            wiki_table(&two, "/two")
        )
    })
    .await;
    let (status, ready) = proxy.readyz().await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["wikis"]["one"]["ready"], true, "{ready}");
    assert_eq!(ready["wikis"]["two"]["ready"], true, "{ready}");

    let via_one = ApiClient::through_proxy(&format!("{}/one/api.php", proxy.base_url()));
    let via_two = ApiClient::through_proxy(&format!("{}/two/api.php", proxy.base_url()));
    edit(&via_one, "Several wikis", "written through /one").await;
    edit(&via_two, "Several wikis", "written through /two").await;
    let bot = one.bot_user().split('@').next().unwrap().to_owned();
    assert_eq!(
        page_on(&one, "Several wikis").await,
        ("written through /one".to_owned(), bot.clone())
    );
    assert_eq!(
        page_on(&two, "Several wikis").await,
        ("written through /two".to_owned(), bot.clone())
    );

    // A session lost on one wiki is healed there, without touching the
    // other's.
    assert!(one.kill_sessions() > 0);
    edit(&via_one, "Several wikis", "after the session kill").await;
    const ONE_LOGINS: &str = "mw_auth_proxy_logins_total{wiki=\"one\",result=\"success\"}";
    const TWO_LOGINS: &str = "mw_auth_proxy_logins_total{wiki=\"two\",result=\"success\"}";
    assert_eq!(proxy.metric(ONE_LOGINS).await, 2.0);
    assert_eq!(proxy.metric(TWO_LOGINS).await, 1.0);
    assert_eq!(via_two.user_info().await, (bot.clone(), false));

    // One wiki down: its clients get a MediaWiki-shaped error, the other
    // wiki's clients notice nothing.
    two.stop();
    let reply = via_two
        .get(&[("action", "query"), ("meta", "userinfo")])
        .await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert_eq!(
        reply.json["error"]["code"],
        "mw-auth-proxy-wiki-unreachable"
    );
    assert_eq!(reply.error_header(), Some("mw-auth-proxy-wiki-unreachable"));
    assert!(one.kill_sessions() > 0);
    assert_eq!(via_one.user_info().await, (bot, false));
    assert_eq!(proxy.metric(ONE_LOGINS).await, 3.0);
    assert!(!proxy.log().contains(one.bot_password()));
}
