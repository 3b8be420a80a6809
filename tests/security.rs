//! Who may use the proxy and what they may do: bearer tokens, address
//! allowlists, Host and Origin checks, the action policy, size limits, and
//! malformed HTTP sent over raw sockets.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::in_process::{TestProxy, client, start_with_mock, userinfo_url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "a-bearer-token-long-enough";

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let json: Value = response.json().await.unwrap();
    (
        status,
        json["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn bearer_tokens_guard_the_api_and_metrics_but_not_the_probes() {
    let (wiki, proxy) = start_with_mock(&format!("[access]\nbearer_tokens = [{TOKEN:?}]\n")).await;
    let (status, code) = error_code(client().get(userinfo_url(&proxy)).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "mw-auth-proxy-unauthorized"));
    let wrong = client()
        .get(userinfo_url(&proxy))
        .bearer_auth("a-bearer-token-long-enougH")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));

    let right = client()
        .get(userinfo_url(&proxy))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    // The token is the proxy's business, never the wiki's.
    let seen = wiki.requests().pop().unwrap();
    assert_eq!(seen.param("meta"), Some("userinfo"));
    assert!(seen.header("authorization").is_none());

    for probe in ["/healthz", "/readyz"] {
        let response = client()
            .get(format!("{}{probe}", proxy.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{probe}");
    }
    let metrics = client()
        .get(format!("{}/metrics", proxy.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 401);
}

#[tokio::test]
async fn an_address_outside_the_allowlist_is_refused() {
    let (_wiki, proxy) = start_with_mock("[access]\nallow_cidrs = [\"10.0.0.0/8\"]\n").await;
    let (status, code) = error_code(client().get(userinfo_url(&proxy)).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (403, "mw-auth-proxy-forbidden"));
}

#[tokio::test]
async fn web_pages_cannot_drive_the_bot() {
    let (wiki, proxy) = start_with_mock("").await;
    // DNS rebinding: the page's own name in Host.
    let rebound = client()
        .get(userinfo_url(&proxy))
        .header("host", "attacker.example:8080")
        .send()
        .await
        .unwrap();
    let (status, code) = error_code(rebound).await;
    assert_eq!((status, code.as_str()), (403, "mw-auth-proxy-forbidden"));
    // A cross-site form post from a page in the operator's browser.
    let posted = client()
        .post(proxy.api_url())
        .header("origin", "https://attacker.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("action=edit&title=X&text=pwned&token=%2B%5C")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 403);
    assert!(wiki.edits().is_empty());
    assert!(
        wiki.requests()
            .iter()
            .all(|r| r.param("title") != Some("X"))
    );
}

#[tokio::test]
async fn read_only_refuses_writes_here_and_promises_the_wiki_no_writes() {
    let (wiki, proxy) = start_with_mock("[policy]\nread_only = true\n").await;
    let response = client().get(userinfo_url(&proxy)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = wiki.requests().pop().unwrap();
    assert_eq!(seen.header("promise-non-write-api-action"), Some("true"));

    let multipart = "--B\r\nContent-Disposition: form-data; name=\"action\"\r\n\r\nquery\r\n\
        --B\r\nContent-Disposition: form-data; name=\"action\"\r\n\r\nedit\r\n--B--\r\n";
    let attempts = [
        client().post(format!("{}?action=edit", proxy.api_url())),
        client()
            .post(proxy.api_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body("action=query&action=edit&title=X&text=y"),
        client()
            .post(format!("{}?action=query", proxy.api_url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("%61ction=edit"),
        client()
            .post(proxy.api_url())
            .header("content-type", "multipart/form-data; boundary=B")
            .body(multipart),
    ];
    for attempt in attempts {
        let (status, code) = error_code(attempt.send().await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (403, "mw-auth-proxy-action-denied")
        );
    }
    assert!(wiki.requests().iter().all(|r| r.action() != Some("edit")));
}

#[tokio::test]
async fn allow_and_deny_lists_apply_to_every_spelling() {
    let (wiki, proxy) = start_with_mock(
        "[policy]\nallow_actions = [\"query\", \"parse\"]\ndeny_actions = [\"parse\"]\n",
    )
    .await;
    assert_eq!(
        client()
            .get(userinfo_url(&proxy))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for query in [
        "action=parse&page=X",
        "action=query&action=edit",
        "format=json",
        "+action=delete",
    ] {
        let response = client()
            .get(format!("{}?{query}", proxy.api_url()))
            .send()
            .await
            .unwrap();
        let (status, code) = error_code(response).await;
        assert_eq!(
            (status, code.as_str()),
            (403, "mw-auth-proxy-action-denied"),
            "{query}"
        );
    }
    assert!(wiki.requests().iter().all(|r| r.action() != Some("parse")));
}

#[tokio::test]
async fn a_declared_body_beyond_the_limit_is_refused() {
    let (_wiki, proxy) = start_with_mock("[server]\nmax_body_bytes = 1000\n").await;
    let response = client()
        .post(format!("{}?action=mockcount", proxy.api_url()))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8; 2000])
        .send()
        .await
        .unwrap();
    let (status, code) = error_code(response).await;
    assert_eq!(
        (status, code.as_str()),
        (413, "mw-auth-proxy-request-too-large")
    );
}

/// Sends raw bytes and returns the status line of the answer, if any.
async fn raw(proxy: &TestProxy, request: &str) -> String {
    let address = proxy.base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn smuggling_and_malformed_requests_are_refused() {
    let (wiki, proxy) = start_with_mock("").await;
    // Both framings, the classic smuggling set-up: the body is framed by
    // Transfer-Encoding and the connection closed after the answer, so the
    // request hidden behind it is never read.
    let address = proxy.base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            b"POST /api.php HTTP/1.1\r\nHost: localhost\r\nContent-Length: 40\r\n\
              Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
              GET /api.php?action=query&list=smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the connection was closed after the first answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert!(
        wiki.requests()
            .iter()
            .all(|r| r.param("list") != Some("smuggled"))
    );

    let before = wiki.requests().len();
    for request in [
        // Two different lengths.
        "POST /api.php HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        // Malformed chunk size.
        "POST /api.php HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
        // Not HTTP at all.
        "HELLO\r\n\r\n",
    ] {
        let status = raw(&proxy, request).await;
        assert!(
            status.is_empty() || status.contains(" 400 "),
            "{request:?} got {status:?}"
        );
    }
    assert_eq!(wiki.requests().len(), before, "nothing reached the wiki");
    assert_eq!(wiki.logouts(), 0);
}

#[tokio::test]
async fn too_many_headers_are_refused() {
    let (_wiki, proxy) = start_with_mock("[server]\nmax_headers = 20\n").await;
    let mut request = String::from("GET /api.php?action=query HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..30 {
        request.push_str(&format!("X-Filler-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let status = raw(&proxy, &request).await;
    assert!(status.contains(" 431 "), "{status:?}");
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_headers_is_cut_off() {
    let (_wiki, proxy) = start_with_mock("[server]\nheader_read_timeout_secs = 1\n").await;
    let address = proxy.base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /api.php HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the proxy kept the slow connection open")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn odd_input_gets_a_clear_answer_never_a_crash() {
    let (wiki, proxy) = start_with_mock("").await;
    let thousands: String = (0..5000).map(|i| format!("p{i}=v&")).collect();
    let huge_value = format!("action=query&meta=userinfo&x={}", "y".repeat(2_000_000));
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "invalid UTF-8, percent-encoded",
            client().get(format!(
                "{}?action=query&meta=%FF%FE&title=%C3%28",
                proxy.api_url()
            )),
        ),
        (
            "thousands of parameters",
            client().get(format!("{}?{thousands}action=query", proxy.api_url())),
        ),
        (
            "an empty form body",
            client()
                .post(proxy.api_url())
                .header("content-type", "application/x-www-form-urlencoded"),
        ),
        (
            "an empty multipart body",
            client()
                .post(proxy.api_url())
                .header("content-type", "multipart/form-data; boundary=X"),
        ),
        (
            "a multipart type without boundary",
            client()
                .post(proxy.api_url())
                .header("content-type", "multipart/form-data")
                .body("action=logout"),
        ),
        (
            "a 2 MB parameter in a form",
            client()
                .post(proxy.api_url())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(huge_value),
        ),
    ];
    for (what, request) in cases {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert!(
            status == 200 || status == 400 || status == 413,
            "{what}: {status}"
        );
    }
    // The proxy still serves, and no logout slipped through.
    let response = client().get(userinfo_url(&proxy)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(wiki.logouts(), 0);
}

#[tokio::test]
async fn a_chunked_body_beyond_the_limit_is_cut_off() {
    let (_wiki, proxy) =
        start_with_mock("[server]\nmax_body_bytes = 100000\nmax_replay_body_bytes = 1000\n").await;
    // A stream: no Content-Length, so only counting can stop it.
    let chunks = futures_util::stream::iter(
        (0..50).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'z'; 10_000]))),
    );
    let response = client()
        .post(format!("{}?action=mockcount&format=json", proxy.api_url()))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let (status, code) = error_code(response).await;
    assert_eq!(
        (status, code.as_str()),
        (413, "mw-auth-proxy-request-too-large")
    );
}
