//! Read-only mode against a real MediaWiki: the proxy refuses writes
//! itself, and the `Promise-Non-Write-API-Action` header it adds makes
//! MediaWiki refuse any write module on its own.
#![allow(clippy::unwrap_used)]

mod support;

use support::real_wiki::{ApiClient, ProxyProcess, RealWiki, WikiOptions};

#[tokio::test]
async fn read_only_mode_refuses_writes_at_the_proxy_and_at_the_wiki() {
    let wiki = RealWiki::start(WikiOptions::default());
    let proxy = ProxyProcess::start_with(|listen| {
        format!(
            "{}\n[policy]\nread_only = true\n",
            wiki.proxy_config(listen).to_toml()
        )
    })
    .await;
    let client = ApiClient::through_proxy(&proxy.api_url());
    assert_eq!(client.user_info().await, ("Admin".to_owned(), false));
    let token = client.token("csrf").await;
    let edit = [
        ("action", "edit"),
        ("title", "Read only"),
        ("text", "must not be written"),
        ("token", token.as_str()),
    ];
    let reply = client.post_form(&edit).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.error_header(), Some("mw-auth-proxy-action-denied"));

    // What the promise does on the real wiki: the bot's own session, the
    // header, and MediaWiki refuses the write module by itself.
    support::in_process::install_crypto();
    let direct = reqwest::Client::new();
    let login = wiki_session(&wiki).await;
    let token: serde_json::Value = direct
        .get(format!(
            "{}?action=query&meta=tokens&format=json",
            wiki.api_url()
        ))
        .header("cookie", &login)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["query"]["tokens"]["csrftoken"].as_str().unwrap();
    let refused = direct
        .post(wiki.api_url())
        .header("cookie", &login)
        .header("promise-non-write-api-action", "true")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("action", "edit"),
            ("title", "Read only"),
            ("text", "must not be written"),
            ("token", token),
            ("format", "json"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused
            .headers()
            .get("mediawiki-api-error")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("promised-nonwrite-api".to_owned())
    );
    let history = ApiClient::direct(wiki.api_url())
        .get(&[
            ("action", "query"),
            ("prop", "revisions"),
            ("titles", "Read only"),
        ])
        .await;
    assert!(history.body.contains("\"missing\""), "{}", history.body);
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Logs in with the bot password directly and returns the Cookie header.
async fn wiki_session(wiki: &RealWiki) -> String {
    let client = reqwest::Client::new();
    let answer = client
        .get(format!(
            "{}?action=query&meta=tokens&type=login&format=json",
            wiki.api_url()
        ))
        .send()
        .await
        .unwrap();
    let mut cookies: Vec<String> = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| {
            value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let json: serde_json::Value = answer.json().await.unwrap();
    let token = json["query"]["tokens"]["logintoken"].as_str().unwrap();
    let answer = client
        .post(wiki.api_url())
        .header("cookie", cookies.join("; "))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("action", "login"),
            ("lgname", wiki.bot_user()),
            ("lgpassword", wiki.bot_password()),
            ("lgtoken", token),
            ("format", "json"),
        ]))
        .send()
        .await
        .unwrap();
    cookies.extend(answer.headers().get_all("set-cookie").iter().map(|value| {
        value
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }));
    let json: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(json["login"]["result"], "Success", "{json}");
    cookies.join("; ")
}
