//! Proves the mock MediaWiki answers as `shared/MEDIAWIKI.md` says a real
//! MediaWiki 1.39 does, talking to it directly (no proxy in between).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::HeaderMap;
use serde_json::{Value, json};
use support::mock_wiki::{ANON_TOKEN, LoginFailure, MOCKBIG_CHUNK, MockWiki};

/// A bare API client with the cookie jar a careful client keeps.
struct Client {
    http: reqwest::Client,
    api: String,
    jar: BTreeMap<String, String>,
}

/// One answer: the headers that matter and the JSON body.
struct Reply {
    headers: HeaderMap,
    json: Value,
}

impl Reply {
    fn error_header(&self) -> Option<&str> {
        self.headers
            .get("mediawiki-api-error")
            .map(|v| v.to_str().unwrap())
    }

    fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    fn error_code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or_default()
    }
}

impl Client {
    fn new(wiki: &MockWiki) -> Self {
        Self {
            http: http_client().build().unwrap(),
            api: wiki.api_url(),
            jar: BTreeMap::new(),
        }
    }

    fn url(&self, query: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&self.api).unwrap();
        url.query_pairs_mut().extend_pairs(query);
        url.into()
    }

    async fn get(&mut self, query: &[(&str, &str)]) -> Reply {
        let request = self.http.get(self.url(query));
        self.send(request).await
    }

    async fn post(&mut self, body: &[(&str, &str)]) -> Reply {
        self.post_to(&[], body).await
    }

    /// A urlencoded POST, with `query` in the URL.
    async fn post_to(&mut self, query: &[(&str, &str)], body: &[(&str, &str)]) -> Reply {
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(body)
            .finish();
        let request = self
            .http
            .post(self.url(query))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        self.send(request).await
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Reply {
        let request = match self.cookie_header() {
            Some(cookies) => request.header("cookie", cookies),
            None => request,
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "MediaWiki answers errors with 200");
        let headers = response.headers().clone();
        self.store_cookies(&headers);
        let json = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        Reply { headers, json }
    }

    fn cookie_header(&self) -> Option<String> {
        let pairs: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    fn store_cookies(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(http::header::SET_COOKIE) {
            let cookie = cookie::Cookie::parse(value.to_str().unwrap().to_owned()).unwrap();
            if cookie.max_age() == Some(cookie::time::Duration::ZERO) {
                self.jar.remove(cookie.name());
            } else {
                self.jar
                    .insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
        }
    }

    async fn login_token(&mut self) -> String {
        let reply = self
            .get(&[
                ("action", "query"),
                ("meta", "tokens"),
                ("type", "login"),
                ("format", "json"),
            ])
            .await;
        reply.json["query"]["tokens"]["logintoken"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn login_with(&mut self, lgname: &str, password: &str) -> Reply {
        let token = self.login_token().await;
        self.post(&[
            ("action", "login"),
            ("lgname", lgname),
            ("lgpassword", password),
            ("lgtoken", &token),
            ("format", "json"),
        ])
        .await
    }

    /// The seed flow, as the proxy must do it: empty jar, token, login.
    async fn login(&mut self, wiki: &MockWiki) {
        self.jar.clear();
        let reply = self.login_with(wiki.lgname(), wiki.password()).await;
        assert_eq!(reply.json["login"]["result"], "Success", "{}", reply.json);
    }

    async fn token(&mut self, kind: &str) -> String {
        let reply = self
            .get(&[
                ("action", "query"),
                ("meta", "tokens"),
                ("type", kind),
                ("format", "json"),
            ])
            .await;
        reply.json["query"]["tokens"][format!("{kind}token")]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn edit(&mut self, title: &str, text: &str, token: &str) -> Reply {
        self.post(&[
            ("action", "edit"),
            ("title", title),
            ("text", text),
            ("token", token),
            ("assertuser", "Admin"),
            ("format", "json"),
        ])
        .await
    }

    async fn userinfo(&mut self, extra: &[(&str, &str)]) -> Reply {
        let mut query = vec![
            ("action", "query"),
            ("meta", "userinfo"),
            ("format", "json"),
        ];
        query.extend_from_slice(extra);
        self.get(&query).await
    }
}

/// reqwest is built with `rustls-no-provider`: even a plain-http client
/// needs a process-wide crypto provider before it can be built.
fn http_client() -> reqwest::ClientBuilder {
    // Err only means another test installed it first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

fn is_hex_token(token: &str) -> bool {
    token.len() == 42
        && token.ends_with(ANON_TOKEN)
        && token[..40].bytes().all(|b| b.is_ascii_hexdigit())
}

fn watch_form(token: &str) -> [(&str, &str); 4] {
    [
        ("action", "watch"),
        ("titles", "Sandbox"),
        ("token", token),
        ("format", "json"),
    ]
}

async fn wiki() -> MockWiki {
    MockWiki::builder()
        .api_path("/w/api.php")
        .bot_password("Admin@proxybot", "secret-bot-password")
        .start()
        .await
}

#[tokio::test]
async fn login_flow_sets_session_cookies_and_logs_the_user_in() {
    let wiki = wiki().await;
    assert!(wiki.api_url().ends_with("/w/api.php"));
    let mut client = Client::new(&wiki);

    let reply = client
        .get(&[
            ("action", "query"),
            ("meta", "tokens"),
            ("type", "login"),
            ("format", "json"),
        ])
        .await;
    assert_eq!(reply.json["batchcomplete"], "");
    let token = reply.json["query"]["tokens"]["logintoken"]
        .as_str()
        .unwrap();
    assert!(is_hex_token(token), "{token}");
    let [set_cookie] = reply.set_cookies()[..] else {
        panic!("one cookie expected: {:?}", reply.set_cookies());
    };
    assert!(set_cookie.starts_with("mockwiki_session="), "{set_cookie}");
    assert!(set_cookie.ends_with("; path=/; HttpOnly"), "{set_cookie}");

    let token = token.to_owned();
    let reply = client
        .post(&[
            ("action", "login"),
            ("lgname", "Admin@proxybot"),
            ("lgpassword", "secret-bot-password"),
            ("lgtoken", &token),
            ("format", "json"),
        ])
        .await;
    assert_eq!(
        reply.json,
        json!({"login": {"result": "Success", "lguserid": 1, "lgusername": "Admin"}})
    );
    assert!(reply.error_header().is_none());
    let [set_cookie] = reply.set_cookies()[..] else {
        panic!("one cookie expected: {:?}", reply.set_cookies());
    };
    assert!(
        set_cookie.starts_with("mockwiki_BPsession="),
        "{set_cookie}"
    );
    assert!(set_cookie.ends_with("; path=/; HttpOnly"), "{set_cookie}");

    let reply = client.userinfo(&[("assertuser", "Admin")]).await;
    assert_eq!(
        reply.json,
        json!({"batchcomplete": "", "query": {"userinfo": {"id": 1, "name": "Admin"}}})
    );
    assert!(
        reply.set_cookies().is_empty(),
        "ordinary answers set no cookie"
    );

    let anon = Client::new(&wiki).userinfo(&[("formatversion", "2")]).await;
    assert_eq!(
        anon.json,
        json!({"batchcomplete": true, "query": {"userinfo": {"id": 0, "name": "127.0.0.1", "anon": true}}})
    );

    assert_eq!(wiki.login_attempts(), 1);
    assert_eq!(wiki.successful_logins(), 1);
    assert_eq!(wiki.login_token_requests(), 1);
    assert_eq!(wiki.forbidden_login_params(), 0);
}

#[tokio::test]
async fn wrong_password_fails_with_the_real_reason() {
    let wiki = wiki().await;
    let mut client = Client::new(&wiki);

    let reply = client.login_with("Admin@proxybot", "wrong").await;
    assert_eq!(
        reply.json,
        json!({"login": {"result": "Failed", "reason": "Incorrect username or password entered. Please try again."}})
    );
    assert!(
        reply.error_header().is_none(),
        "login failures are no API errors"
    );

    let token = client.login_token().await;
    let reply = client
        .post(&[
            ("action", "login"),
            ("lgname", "Admin@proxybot"),
            ("lgpassword", "wrong"),
            ("lgtoken", &token),
            ("format", "json"),
            ("formatversion", "2"),
            ("errorformat", "plaintext"),
        ])
        .await;
    assert_eq!(reply.json["login"]["reason"]["code"], "wrongpassword");
    assert_eq!(wiki.successful_logins(), 0);
}

#[tokio::test]
async fn token_problems_give_need_token_wrong_token_and_session_lost() {
    let wiki = wiki().await;
    let mut client = Client::new(&wiki);
    let token = client.login_token().await;
    let login = |token: &'static str| {
        [
            ("action", "login"),
            ("lgname", "Admin@proxybot"),
            ("lgpassword", "secret-bot-password"),
            ("lgtoken", token),
            ("format", "json"),
        ]
    };

    let reply = client
        .post(&login("0123456789abcdef0123456789abcdef01234567+\\"))
        .await;
    assert_eq!(reply.json, json!({"login": {"result": "WrongToken"}}));

    let reply = client.post(&login("")).await;
    assert_eq!(reply.json["login"]["result"], "NeedToken");
    assert!(is_hex_token(reply.json["login"]["token"].as_str().unwrap()));

    // The token is good, but the cookie that binds it was not kept.
    let mut forgetful = Client::new(&wiki);
    let form = [
        ("action", "login"),
        ("lgname", "Admin@proxybot"),
        ("lgpassword", "secret-bot-password"),
        ("lgtoken", token.as_str()),
        ("format", "json"),
    ];
    let reply = forgetful.post(&form).await;
    assert_eq!(
        reply.json,
        json!({"login": {"result": "Failed", "reason": "Unable to continue login. Your session most likely timed out."}})
    );
    assert!(reply.set_cookies()[0].starts_with("mockwiki_session="));
    assert_eq!(wiki.successful_logins(), 0);
    assert_eq!(wiki.login_attempts(), 3);
}

#[tokio::test]
async fn login_secrets_must_be_posted() {
    let wiki = wiki().await;
    let mut client = Client::new(&wiki);
    let token = client.login_token().await;

    let query = [
        ("action", "login"),
        ("lgpassword", "secret-bot-password"),
        ("lgtoken", token.as_str()),
        ("format", "json"),
    ];
    let reply = client
        .post_to(&query, &[("lgname", "Admin@proxybot")])
        .await;
    assert_eq!(reply.error_header(), Some("mustpostparams"));
    assert_eq!(
        reply.json["error"]["info"],
        "The following parameters were found in the query string, but must be in the POST body: lgpassword, lgtoken."
    );

    let reply = client.get(&query).await;
    assert_eq!(reply.error_header(), Some("mustbeposted"));
    assert_eq!(
        reply.json["error"]["info"],
        "The \"login\" module requires a POST request."
    );
    assert!(
        reply.json["error"]["*"]
            .as_str()
            .unwrap()
            .contains("/w/api.php")
    );
    assert_eq!(wiki.successful_logins(), 0);
}

#[tokio::test]
async fn login_with_a_live_bot_session_is_aborted() {
    let wiki = wiki().await;
    let mut client = Client::new(&wiki);
    client.login(&wiki).await;

    let reply = client
        .login_with("Admin@proxybot", "secret-bot-password")
        .await;
    assert_eq!(
        reply.json,
        json!({"login": {"result": "Aborted", "reason": "Cannot log in when using MediaWiki\\Session\\BotPasswordSessionProvider sessions."}})
    );
    assert_eq!(wiki.successful_logins(), 1);
}

#[tokio::test]
async fn killed_sessions_fail_asserts_and_delete_the_cookie() {
    let wiki = wiki().await;
    let mut client = Client::new(&wiki);
    client.login(&wiki).await;
    wiki.kill_sessions();
    assert_eq!(wiki.session_count(), 0);

    let jar_before = client.jar.clone();
    let reply = client
        .userinfo(&[("assert", "user"), ("assertuser", "Admin")])
        .await;
    assert_eq!(reply.error_header(), Some("assertuserfailed"));
    assert_eq!(reply.error_code(), "assertuserfailed");
    assert_eq!(
        reply.json["error"]["info"],
        "You are no longer logged in, so the action could not be completed."
    );
    let cookies = reply.set_cookies();
    assert_eq!(
        cookies[0],
        "mockwiki_BPsession=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/; HttpOnly"
    );
    assert!(cookies[1].starts_with("mockwiki_session="), "{cookies:?}");
    assert_ne!(
        client.jar.get("mockwiki_session"),
        jar_before.get("mockwiki_session")
    );
    assert!(!client.jar.contains_key("mockwiki_BPsession"));

    // assertuser alone fails as on the real wiki: by name.
    let reply = client.userinfo(&[("assertuser", "Admin")]).await;
    assert_eq!(reply.error_header(), Some("assertnameduserfailed"));
    assert_eq!(
        reply.json["error"]["info"],
        "You are no longer logged in as \"Admin\", so the action could not be completed."
    );

    // Logged in again, assertuser for someone else still fails by name.
    client.login(&wiki).await;
    let reply = client.userinfo(&[("assertuser", "Bob")]).await;
    assert_eq!(reply.error_header(), Some("assertnameduserfailed"));
    let reply = client.userinfo(&[("assert", "bot")]).await;
    assert_eq!(reply.error_header(), Some("assertbotfailed"));
}

#[tokio::test]
async fn errors_follow_formatversion_and_errorformat() {
    let wiki = wiki().await;
    let mut client = Client::new(&wiki);
    let assert_user = [("assert", "user"), ("formatversion", "2")];
    let reply = client.userinfo(&assert_user).await;
    assert_eq!(reply.error_code(), "assertuserfailed");
    assert!(reply.json["error"]["docref"].is_string());

    let reply = client
        .userinfo(&[
            ("assert", "user"),
            ("formatversion", "2"),
            ("errorformat", "plaintext"),
        ])
        .await;
    assert_eq!(reply.error_header(), Some("assertuserfailed"));
    assert_eq!(reply.json["errors"][0]["code"], "assertuserfailed");
    assert_eq!(reply.json["errors"][0]["module"], "main");
}

#[tokio::test]
async fn edits_need_the_session_csrf_token_and_are_recorded() {
    let wiki = wiki().await;
    let mut client = Client::new(&wiki);

    assert_eq!(client.token("csrf").await, ANON_TOKEN);
    let reply = client.edit("Sandbox", "anonymous", ANON_TOKEN).await;
    assert_eq!(reply.error_header(), Some("assertnameduserfailed"));
    let reply = client
        .post(&[
            ("action", "edit"),
            ("title", "Sandbox"),
            ("text", "anonymous"),
            ("token", ANON_TOKEN),
            ("format", "json"),
        ])
        .await;
    assert_eq!(reply.error_header(), Some("permissiondenied"));

    client.login(&wiki).await;
    let token = client.token("csrf").await;
    assert!(is_hex_token(&token), "{token}");
    let reply = client.edit("sandbox", "hello", &token).await;
    assert_eq!(reply.json["edit"]["result"], "Success");
    assert_eq!(reply.json["edit"]["title"], "Sandbox");
    let newrevid = reply.json["edit"]["newrevid"].as_u64().unwrap();
    assert!(
        reply
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("UseDC=master; Max-Age=10"))
    );

    let edits = wiki.edits();
    assert_eq!(edits.len(), 1);
    assert_eq!(
        (
            edits[0].title.as_str(),
            edits[0].text.as_str(),
            edits[0].user.as_str()
        ),
        ("Sandbox", "hello", "Admin")
    );
    assert_eq!(edits[0].rev_id, newrevid);

    let reply = client
        .get(&[
            ("action", "query"),
            ("prop", "revisions"),
            ("titles", "Sandbox"),
            ("rvprop", "content|user"),
            ("format", "json"),
            ("formatversion", "2"),
        ])
        .await;
    let revision = &reply.json["query"]["pages"][0]["revisions"][0];
    assert_eq!(revision["content"], "hello");
    assert_eq!(revision["user"], "Admin");

    let reply = client.edit("Sandbox", "hello", &token).await;
    assert_eq!(reply.json["edit"]["nochange"], "");
    assert_eq!(wiki.edits().len(), 1, "a no-op edit is not a revision");
}

#[tokio::test]
async fn an_old_csrf_token_is_refused_after_a_relogin() {
    let wiki = wiki().await;
    let mut client = Client::new(&wiki);
    client.login(&wiki).await;
    let old_token = client.token("csrf").await;

    wiki.kill_sessions();
    client.login(&wiki).await;
    let reply = client.edit("Sandbox", "hello", &old_token).await;
    assert_eq!(reply.error_header(), Some("badtoken"));
    assert_eq!(reply.json["error"]["info"], "Invalid CSRF token.");
    assert!(wiki.edits().is_empty());

    // The watch token is a token of its own, as on the real wiki.
    let csrf = client.token("csrf").await;
    let watch = client.token("watch").await;
    assert_ne!(csrf, watch);
    let reply = client.post(&watch_form(&csrf)).await;
    assert_eq!(reply.error_header(), Some("badtoken"));
    let reply = client.post(&watch_form(&watch)).await;
    assert_eq!(reply.json["watch"][0]["watched"], "");
}

#[tokio::test]
async fn multipart_and_urlencoded_bodies_are_read_like_php() {
    let wiki = wiki().await;
    let mut client = Client::new(&wiki);
    let boundary = "mockwikiboundary";
    let part = |name: &str, value: &str| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
    };
    let body = [
        part("action", "mockecho"),
        part("a", "first"),
        part("a", "last"),
        part("b", "body"),
        format!("--{boundary}--\r\n"),
    ]
    .concat();
    let request = client
        .http
        .post(client.url(&[("b", "query"), ("c", "query"), ("c", "query-last")]))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body);
    let reply = client.send(request).await;
    assert_eq!(reply.json["batchcomplete"], "");
    let params = &reply.json["params"];
    assert_eq!(params["a"], "last", "the last repeat wins");
    assert_eq!(params["b"], "body", "the body wins over the query string");
    assert_eq!(params["c"], "query-last");

    let recorded = wiki.requests().pop().unwrap();
    assert_eq!(recorded.body.len(), 4);
    assert_eq!(recorded.param("a"), Some("last"));

    let reply = client
        .post(&[("action", "mockecho"), ("x", "1"), ("x", "2")])
        .await;
    assert_eq!(reply.json["params"]["x"], "2");
}

#[tokio::test]
async fn mockbig_streams_the_requested_size() {
    let wiki = wiki().await;
    let len = 5 * MOCKBIG_CHUNK + 123;
    let url = format!("{}?action=mockbig&bytes={len}", wiki.api_url());
    let response = http_client()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    assert!(response.content_length().is_none(), "streamed, not sized");
    let mut stream = response.bytes_stream();
    let mut received = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= MOCKBIG_CHUNK);
        received += chunk.len();
    }
    assert_eq!(received, len);
}

#[tokio::test]
async fn mockcount_counts_a_streamed_upload() {
    let wiki = wiki().await;
    let chunk = Bytes::from(vec![b'y'; 1 << 20]);
    let chunks =
        futures_util::stream::iter((0..8).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let url = format!("{}?action=mockcount", wiki.api_url());
    let response = http_client()
        .build()
        .unwrap()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(json, json!({"received": 8 << 20}));

    let recorded = wiki.requests().pop().unwrap();
    assert!(recorded.body.is_empty(), "the body was counted, not parsed");
    assert_eq!(recorded.body_len, 8 << 20);
}

#[tokio::test]
async fn forced_login_failures_answer_with_the_real_reasons() {
    let wiki = wiki().await;
    let mut client = Client::new(&wiki);
    let cases = [
        (LoginFailure::Throttled, "login-throttled"),
        (LoginFailure::NeedsReset, "botpasswords-needs-reset"),
        (LoginFailure::Locked, "botpasswords-locked"),
        (LoginFailure::WrongPassword, "wrongpassword"),
    ];
    for (failure, code) in cases {
        wiki.set_login_failure(Some(failure));
        client.jar.clear();
        let token = client.login_token().await;
        let reply = client
            .post(&[
                ("action", "login"),
                ("lgname", "Admin@proxybot"),
                ("lgpassword", "secret-bot-password"),
                ("lgtoken", &token),
                ("format", "json"),
                ("errorformat", "plaintext"),
                ("formatversion", "2"),
            ])
            .await;
        assert_eq!(reply.json["login"]["result"], "Failed");
        assert_eq!(reply.json["login"]["reason"]["code"], code);
    }

    wiki.set_login_failure(Some(LoginFailure::Throttled));
    client.jar.clear();
    let reply = client
        .login_with("Admin@proxybot", "secret-bot-password")
        .await;
    assert_eq!(
        reply.json["login"]["reason"],
        "You have made too many recent login attempts. Please wait 5 minutes before trying again."
    );

    wiki.set_login_failure(Some(LoginFailure::WrongTokenOnce));
    client.jar.clear();
    let reply = client
        .login_with("Admin@proxybot", "secret-bot-password")
        .await;
    assert_eq!(reply.json["login"]["result"], "WrongToken");
    wiki.set_login_failure(Some(LoginFailure::SessionTimedOutOnce));
    client.jar.clear();
    let reply = client
        .login_with("Admin@proxybot", "secret-bot-password")
        .await;
    assert_eq!(reply.json["login"]["result"], "Failed");
    client.login(&wiki).await;
    assert_eq!(wiki.successful_logins(), 1);
}

#[tokio::test]
async fn asserts_on_the_login_flow_are_counted() {
    let wiki = wiki().await;
    let mut client = Client::new(&wiki);
    let reply = client
        .get(&[
            ("action", "query"),
            ("meta", "tokens"),
            ("type", "login"),
            ("assertuser", "Admin"),
            ("format", "json"),
        ])
        .await;
    assert_eq!(reply.error_header(), Some("assertnameduserfailed"));
    assert_eq!(wiki.forbidden_login_params(), 1);
    assert!(wiki.requests()[0].has_forbidden_login_param());
}

#[tokio::test]
async fn a_private_wiki_refuses_anonymous_reads_but_not_the_login() {
    let wiki = MockWiki::builder().private(true).start().await;
    let mut client = Client::new(&wiki);
    let reply = client.userinfo(&[]).await;
    assert_eq!(reply.error_header(), Some("readapidenied"));
    client.login(&wiki).await;
    let reply = client.userinfo(&[]).await;
    assert_eq!(reply.json["query"]["userinfo"]["name"], "Admin");
}

#[tokio::test]
async fn logout_ends_the_session_and_is_counted() {
    let wiki = wiki().await;
    let mut client = Client::new(&wiki);
    client.login(&wiki).await;
    let token = client.token("csrf").await;
    let reply = client
        .post(&[("action", "logout"), ("token", &token), ("format", "json")])
        .await;
    assert_eq!(reply.json, json!({}));
    assert_eq!(wiki.logouts(), 1);
    let reply = client.userinfo(&[("assert", "user")]).await;
    assert_eq!(reply.error_header(), Some("assertuserfailed"));
}

#[tokio::test]
async fn renewal_resends_the_same_session_cookie() {
    let wiki = wiki().await;
    let mut client = Client::new(&wiki);
    client.login(&wiki).await;
    let session = client.jar["mockwiki_BPsession"].clone();
    wiki.set_renew_session_cookies(true);
    let reply = client.userinfo(&[]).await;
    assert_eq!(
        reply.set_cookies(),
        [format!("mockwiki_BPsession={session}; path=/; HttpOnly")]
    );
}

#[tokio::test]
async fn delayed_responses_make_clients_time_out() {
    let wiki = wiki().await;
    wiki.delay_next_responses(1, Duration::from_secs(5));
    let http = http_client()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let url = format!("{}?action=query&meta=userinfo&format=json", wiki.api_url());
    let error = http.get(&url).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(wiki.requests().len(), 2, "the slow request still arrived");
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let wiki = wiki().await;
    let url = wiki.api_url();
    wiki.shutdown().await;
    let http = http_client().build().unwrap();
    assert!(http.get(url).send().await.is_err());
}
