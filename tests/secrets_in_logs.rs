//! Every log line of a full session life (login, requests, session loss,
//! re-login, replay with a renewed token, a failing login), at the most
//! verbose level of every crate, holds neither the password nor a cookie
//! value nor a token. One test in its own binary: the log collector is
//! process-wide.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::in_process::{TestProxy, client, settings};
use support::mock_wiki::{LoginFailure, MockWiki};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const PASSWORD: &str = "q7m2k9v4t1s8r3p6n5l0j2h4g6f8d0b1";

#[tokio::test]
async fn no_secret_reaches_the_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let wiki = MockWiki::builder()
        .bot_password("Admin@proxybot", PASSWORD)
        .start()
        .await;
    let proxy = TestProxy::start(settings(&wiki.api_url(), wiki.lgname(), PASSWORD, "")).await;
    proxy.wait_ready().await;
    let api = proxy.api_url();

    let tokens_url = format!("{api}?action=query&meta=tokens&format=json");
    let json: Value = client()
        .get(&tokens_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = json["query"]["tokens"]["csrftoken"]
        .as_str()
        .unwrap()
        .to_owned();
    wiki.kill_sessions();
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("action", "edit")
        .append_pair("title", "Logged")
        .append_pair("text", "x")
        .append_pair("token", &token)
        .append_pair("format", "json")
        .finish();
    let response = client()
        .post(&api)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["edit"]["result"], "Success", "{json}");
    let json: Value = client()
        .get(&tokens_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_token = json["query"]["tokens"]["csrftoken"]
        .as_str()
        .unwrap()
        .to_owned();

    // A login that fails after a session loss logs its reason.
    wiki.set_login_failure(Some(LoginFailure::WrongPassword));
    wiki.kill_sessions();
    let status = client().get(&tokens_url).send().await.unwrap().status();
    assert_eq!(status, 503);
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.stop().await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("logged in"), "the log was captured:\n{log}");
    assert!(log.contains("login failed"), "{log}");
    let mut secrets = vec![PASSWORD.to_owned(), token.clone(), new_token];
    for request in wiki.requests() {
        if let Some(cookies) = request.header("cookie") {
            for pair in cookies.split("; ") {
                let (name, value) = pair.split_once('=').unwrap();
                if name.ends_with("session") {
                    secrets.push(value.to_owned());
                }
            }
        }
    }
    assert!(
        secrets.len() > 4,
        "session cookies were seen: {}",
        secrets.len()
    );
    for secret in secrets {
        assert!(!log.contains(&secret), "a secret is in the log:\n{log}");
        let encoded: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        assert!(!log.contains(&encoded), "a secret is in the log:\n{log}");
    }
}
