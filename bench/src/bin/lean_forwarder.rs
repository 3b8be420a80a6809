//! A reference point, not a product: the least a Rust forwarder on the same
//! stack (tokio, hyper, hyper-util's pooled client) must do per request for
//! mw-auth-proxy's job, to tell the cost of the design from the cost of the
//! machine. It adds a fixed session cookie and `assertuser`, drops
//! hop-by-hop and credential headers both ways, reads the
//! `MediaWiki-API-Error` header, checks `action` without allocating, and
//! streams bodies. No login, no replay, no per-request log line.
//!
//! Usage: lean-forwarder --listen PORT --upstream PORT --cookie VALUE
//!   [--threads N] [--user NAME] [--exit-after SECS]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONNECTION, COOKIE, HOST, HeaderName, HeaderValue, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, SET_COOKIE, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Out = UnsyncBoxBody<Bytes, BoxError>;

struct State {
    client: Client<HttpConnector, Incoming>,
    /// `http://127.0.0.1:PORT/api.php?`
    prefix: String,
    /// `assertuser=NAME`
    assert: String,
    cookie: HeaderValue,
    lost: AtomicU64,
}

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

fn hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == KEEP_ALIVE
        || name == PROXY_AUTHENTICATE
        || name == PROXY_AUTHORIZATION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || name == UPGRADE
}

fn reply(status: StatusCode, text: &'static str) -> Response<Out> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Out>, Infallible> {
    let (mut parts, body) = request.into_parts();
    let query = parts.uri.query().unwrap_or("");
    // The guard's question, answered without allocating.
    let mut has_assert = false;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "action"
                if matches!(
                    &*value,
                    "logout" | "login" | "clientlogin" | "createaccount"
                ) =>
            {
                return Ok(reply(
                    StatusCode::FORBIDDEN,
                    "{\"error\":{\"code\":\"refused\"}}",
                ));
            }
            "callback" | "origin" | "crossorigin" => {
                return Ok(reply(
                    StatusCode::BAD_REQUEST,
                    "{\"error\":{\"code\":\"refused\"}}",
                ));
            }
            "assert" | "assertuser" => has_assert = true,
            _ => {}
        }
    }
    let mut target =
        String::with_capacity(state.prefix.len() + query.len() + state.assert.len() + 1);
    target.push_str(&state.prefix);
    target.push_str(query);
    if !has_assert {
        if !query.is_empty() {
            target.push('&');
        }
        target.push_str(&state.assert);
    }
    let Ok(uri) = target.parse::<Uri>() else {
        return Ok(reply(StatusCode::BAD_REQUEST, "{}"));
    };
    // Drop what must not cross, in place.
    let named: Vec<HeaderName> = parts
        .headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        parts.headers.remove(name);
    }
    parts.headers.retain_hop_by_hop();
    parts.headers.remove(HOST);
    parts.headers.remove(AUTHORIZATION);
    parts.headers.insert(COOKIE, state.cookie.clone());
    parts.uri = uri;
    let upstream = Request::from_parts(parts, body);
    let response =
        match tokio::time::timeout(Duration::from_secs(60), state.client.request(upstream)).await {
            Ok(Ok(response)) => response,
            _ => {
                return Ok(reply(
                    StatusCode::BAD_GATEWAY,
                    "{\"error\":{\"code\":\"unreachable\"}}",
                ));
            }
        };
    let (mut parts, body) = response.into_parts();
    if let Some(codes) = parts
        .headers
        .get("mediawiki-api-error")
        .and_then(|v| v.to_str().ok())
        && codes.split(',').any(|c| {
            matches!(
                c.trim(),
                "assertuserfailed" | "assertnameduserfailed" | "notloggedin"
            )
        })
    {
        // The real proxy would re-login and replay here.
        state.lost.fetch_add(1, Relaxed);
    }
    parts.headers.retain_hop_by_hop();
    parts.headers.remove(SET_COOKIE);
    Ok(Response::from_parts(
        parts,
        body.map_err(BoxError::from).boxed_unsync(),
    ))
}

trait RetainHopByHop {
    fn retain_hop_by_hop(&mut self);
}

impl RetainHopByHop for http::HeaderMap {
    fn retain_hop_by_hop(&mut self) {
        if self.keys().any(hop_by_hop) {
            let names: Vec<HeaderName> = self.keys().filter(|n| hop_by_hop(n)).cloned().collect();
            for name in names {
                self.remove(name);
            }
        }
    }
}

fn main() {
    let mut listen = 0u16;
    let mut upstream = 0u16;
    let mut cookie = String::new();
    let mut threads = 2usize;
    let mut user = "Bench".to_owned();
    let mut exit_after = 3600u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--listen" => listen = value.parse().unwrap_or(0),
            "--upstream" => upstream = value.parse().unwrap_or(0),
            "--cookie" => cookie = value,
            "--threads" => threads = value.parse().unwrap_or(2),
            "--user" => user = value,
            "--exit-after" => exit_after = value.parse().unwrap_or(3600),
            _ => {
                eprintln!("lean-forwarder: unknown argument {flag}");
                std::process::exit(64);
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let state = Arc::new(State {
            client,
            prefix: format!("http://127.0.0.1:{upstream}/api.php?"),
            assert: form_urlencoded::Serializer::new(String::new())
                .append_pair("assertuser", &user)
                .finish(),
            cookie: HeaderValue::from_str(&cookie).expect("cookie header"),
            lost: AtomicU64::new(0),
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], listen));
        let listener = TcpListener::bind(addr).await.expect("listen");
        println!("listening on {}", listener.local_addr().expect("address"));
        let deadline = tokio::time::sleep(Duration::from_secs(exit_after));
        tokio::pin!(deadline);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => { tokio::time::sleep(Duration::from_millis(10)).await; continue; }
                },
                () = &mut deadline => std::process::exit(0),
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| handle(request, state.clone()));
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
