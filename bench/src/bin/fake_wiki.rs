//! A fast fake MediaWiki `api.php` for benchmarking mw-auth-proxy.
//!
//! It implements just enough of the Action API for the proxy's login flow
//! (login token, `action=login`, `meta=userinfo|tokens`) and answers every
//! other request with one fixed JSON body of configurable size. HTTP/1.1
//! keep-alive, multi-threaded, nothing is logged per request.
//!
//! Sessions: a login issues a fresh `x_BPsession` value. A request carrying a
//! value that is neither the current login's nor the static one given with
//! `--static-session` (the cookie nginx and direct clients send) is answered
//! with `MediaWiki-API-Error: assertnameduserfailed`, as is a request with
//! `assertuser` and no session at all.
//!
//! Bench parameters on api.php requests:
//! - `bench_big=N`: a body of N bytes, streamed from one shared chunk.
//! - `bench_hold=1`: while the gate is armed (`/control/arm`), the request
//!   waits until `/control/kill` opens it (at most 60 s), then is answered
//!   as usual, so a burst of requests can be in flight when the session dies.
//!
//! A POST that is not a small urlencoded form (an upload) is read to the end
//! and discarded, its bytes counted; the answer gives the count.
//!
//! Control endpoints (GET): `/control/stats` (JSON counters),
//! `/control/arm` (close the gate), `/control/kill` (drop the current login
//! session and open the gate).
//!
//! Usage: fake-wiki [--port N] [--threads N] [--body-bytes N]
//!   [--static-session HEX] [--lgname NAME] [--password PW] [--user NAME]
//!   [--exit-after SECS]
//! Prints `listening on 127.0.0.1:PORT` once ready. Only binds 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HeaderValue, SET_COOKIE};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Form bodies up to this size are read as parameters; larger POSTs are
/// uploads, counted and discarded.
const MAX_FORM_BYTES: u64 = 64 * 1024;
/// The chunk a big response is streamed from.
const BIG_CHUNK_BYTES: usize = 64 * 1024;
/// A held request waits at most this long for the gate.
const MAX_HOLD: Duration = Duration::from_secs(60);
const SESSION_COOKIE: &str = "x_BPsession";
const JSON: &str = "application/json; charset=utf-8";

struct Options {
    port: u16,
    threads: usize,
    body_bytes: usize,
    static_session: u64,
    lgname: String,
    password: String,
    user: String,
    exit_after: Duration,
}

impl Options {
    fn parse() -> Result<Self, String> {
        let mut options = Options {
            port: 0,
            threads: 2,
            body_bytes: 1024,
            static_session: 0x5eed_5eed_5eed_5eed,
            lgname: "Bench@bench".into(),
            password: "bench-password".into(),
            user: "Bench".into(),
            exit_after: Duration::from_secs(3600),
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value"));
            let number = |text: String| text.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--port" => options.port = number(value()?)? as u16,
                "--threads" => options.threads = number(value()?)?.max(1) as usize,
                "--body-bytes" => options.body_bytes = number(value()?)? as usize,
                "--static-session" => {
                    options.static_session =
                        u64::from_str_radix(&value()?, 16).map_err(|e| format!("{flag}: {e}"))?
                }
                "--lgname" => options.lgname = value()?,
                "--password" => options.password = value()?,
                "--user" => options.user = value()?,
                "--exit-after" => options.exit_after = Duration::from_secs(number(value()?)?),
                "--help" | "-h" => {
                    println!("see the comment at the top of bench/src/bin/fake_wiki.rs");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(options)
    }
}

struct Shared {
    body: Bytes,
    big_chunk: Bytes,
    /// The current login's session value; 0 when none (killed).
    session: AtomicU64,
    static_session: u64,
    sequence: AtomicU64,
    lgname: String,
    password: String,
    user: String,
    /// True while armed: `bench_hold` requests wait.
    gate: watch::Sender<bool>,
    held: AtomicU64,
    requests: AtomicU64,
    logins: AtomicU64,
    failed_logins: AtomicU64,
    login_tokens: AtomicU64,
    last_login_ns: AtomicU64,
    kills: AtomicU64,
    killed_at_ns: AtomicU64,
    session_errors: AtomicU64,
    uploads: AtomicU64,
    upload_bytes: AtomicU64,
    big_bytes: AtomicU64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The fixed answer to ordinary requests: a plausible `prop=info` answer,
/// padded to `size` bytes (or the skeleton alone when that is larger).
fn fixed_body(size: usize) -> Bytes {
    let head = r#"{"batchcomplete":true,"query":{"pages":[{"pageid":1,"ns":0,"title":"Main Page","contentmodel":"wikitext","pagelanguage":"en","touched":"2024-01-01T00:00:00Z","lastrevid":1,"length":42,"extract":""#;
    let tail = r#""}]}}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut body = String::with_capacity(head.len() + pad + tail.len());
    body.push_str(head);
    let words = "lorem ipsum dolor sit amet ";
    while body.len() < head.len() + pad {
        let left = head.len() + pad - body.len();
        body.push_str(&words[..left.min(words.len())]);
    }
    body.push_str(tail);
    Bytes::from(body)
}

/// A token in MediaWiki's shape: 32 hex digits, the issue time in hex, `+\`.
fn token(seed: u64) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{seed:016x}{:016x}{secs:x}+\\",
        seed.rotate_left(17) ^ 0xa5a5_a5a5
    )
}

/// Response bodies: one fixed buffer, or a long stream of one shared chunk.
enum Out {
    Full(Option<Bytes>),
    Big {
        remaining: u64,
        chunk: Bytes,
        shared: Arc<Shared>,
    },
}

impl Body for Out {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Out::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Out::Big {
                remaining,
                chunk,
                shared,
            } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let n = (*remaining).min(chunk.len() as u64);
                *remaining -= n;
                shared.big_bytes.fetch_add(n, Relaxed);
                Poll::Ready(Some(Ok(Frame::data(chunk.slice(..n as usize)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Out::Full(bytes) => bytes.is_none(),
            Out::Big { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Out::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Out::Big { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Out> {
    let mut response = Response::new(Out::Full(Some(body.into())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("private, must-revalidate, max-age=0"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    response
}

fn api_error(code: &'static str, info: &str) -> Response<Out> {
    let body = serde_json::json!({ "error": { "code": code, "info": info } }).to_string();
    let mut response = respond(StatusCode::OK, body);
    response
        .headers_mut()
        .insert("mediawiki-api-error", HeaderValue::from_static(code));
    response
}

/// The parameters this fake cares about.
#[derive(Default)]
struct Params {
    action: String,
    meta: String,
    kind: String,
    assertuser: bool,
    big: Option<u64>,
    hold: bool,
    lgname: String,
    lgpassword: String,
    lgtoken: String,
}

impl Params {
    fn add(&mut self, encoded: &[u8]) {
        for (name, value) in form_urlencoded::parse(encoded) {
            match &*name {
                "action" => self.action = value.into_owned(),
                "meta" => self.meta = value.into_owned(),
                "type" => self.kind = value.into_owned(),
                "assertuser" => self.assertuser = true,
                "bench_big" => self.big = value.parse().ok(),
                "bench_hold" => self.hold = value == "1",
                "lgname" => self.lgname = value.into_owned(),
                "lgpassword" => self.lgpassword = value.into_owned(),
                "lgtoken" => self.lgtoken = value.into_owned(),
                _ => {}
            }
        }
    }

    fn wants_meta(&self, module: &str) -> bool {
        self.meta.split('|').any(|m| m == module)
    }
}

/// What the `x_BPsession` cookie says.
#[derive(PartialEq, Eq)]
enum SessionState {
    None,
    Valid,
    Stale,
}

/// The `x_BPsession` value the request carries (the last one if several);
/// 0 for a value that does not parse.
fn session_cookie(request: &Request<Incoming>) -> Option<u64> {
    let mut found = None;
    for header in request.headers().get_all(COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((SESSION_COOKIE, value)) = pair.trim().split_once('=') {
                found = Some(u64::from_str_radix(value, 16).unwrap_or(0));
            }
        }
    }
    found
}

fn session_state(cookie: Option<u64>, shared: &Shared) -> SessionState {
    match cookie {
        None => SessionState::None,
        Some(value)
            if value != 0
                && (value == shared.session.load(Relaxed) || value == shared.static_session) =>
        {
            SessionState::Valid
        }
        Some(_) => SessionState::Stale,
    }
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Out>, Infallible> {
    let path = request.uri().path();
    if path.starts_with("/control/") {
        return Ok(control(path, &shared));
    }
    if !path.ends_with("api.php") {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            "{\"error\":\"not api.php\"}",
        ));
    }
    shared.requests.fetch_add(1, Relaxed);
    let mut params = Params::default();
    if let Some(query) = request.uri().query() {
        params.add(query.as_bytes());
    }
    let cookie = session_cookie(&request);
    if request.method() == Method::POST {
        let form = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let length = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut body = request.into_body();
        if form && length.is_some_and(|l| l <= MAX_FORM_BYTES) {
            match body.collect().await {
                Ok(collected) => params.add(&collected.to_bytes()),
                Err(_) => return Ok(respond(StatusCode::BAD_REQUEST, "{}")),
            }
        } else {
            // An upload: count and drop every byte, hold none.
            let mut received = 0u64;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            received += data.len() as u64;
                        }
                    }
                    Err(_) => return Ok(respond(StatusCode::BAD_REQUEST, "{}")),
                }
            }
            shared.uploads.fetch_add(1, Relaxed);
            shared.upload_bytes.fetch_add(received, Relaxed);
            let state = session_state(cookie, &shared);
            if state == SessionState::Stale || (state == SessionState::None && params.assertuser) {
                shared.session_errors.fetch_add(1, Relaxed);
                return Ok(api_error(
                    "assertnameduserfailed",
                    "You are no longer logged in.",
                ));
            }
            let answer = format!("{{\"upload\":{{\"result\":\"Success\",\"bytes\":{received}}}}}");
            return Ok(respond(StatusCode::OK, answer));
        }
    }
    if params.hold {
        let mut gate = shared.gate.subscribe();
        if *gate.borrow_and_update() {
            shared.held.fetch_add(1, Relaxed);
            let _ = tokio::time::timeout(MAX_HOLD, gate.wait_for(|armed| !armed)).await;
            shared.held.fetch_sub(1, Relaxed);
        }
    }
    // Judged after a hold: a kill during the hold counts.
    let state = session_state(cookie, &shared);

    if params.action == "query" && params.wants_meta("tokens") && params.kind == "login" {
        shared.login_tokens.fetch_add(1, Relaxed);
        let seq = shared.sequence.fetch_add(1, Relaxed);
        let body = serde_json::json!({
            "batchcomplete": true,
            "query": { "tokens": { "logintoken": token(seq) } }
        })
        .to_string();
        let mut response = respond(StatusCode::OK, body);
        let cookie = format!("x_session={:016x}; path=/; HttpOnly", seq | 1 << 63);
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(SET_COOKIE, value);
        }
        return Ok(response);
    }
    if params.action == "login" {
        return Ok(login(&params, &shared));
    }
    if state == SessionState::Stale || (state == SessionState::None && params.assertuser) {
        shared.session_errors.fetch_add(1, Relaxed);
        return Ok(api_error(
            "assertnameduserfailed",
            "You are no longer logged in, so the action could not be completed.",
        ));
    }
    if params.action == "query" && params.wants_meta("userinfo") {
        let logged_in = state == SessionState::Valid;
        let mut query = serde_json::Map::new();
        query.insert(
            "userinfo".into(),
            if logged_in {
                serde_json::json!({ "id": 1, "name": shared.user })
            } else {
                serde_json::json!({ "id": 0, "name": "127.0.0.1", "anon": true })
            },
        );
        if params.wants_meta("tokens") {
            let csrf = if logged_in {
                token(shared.sequence.fetch_add(1, Relaxed))
            } else {
                "+\\".to_owned()
            };
            query.insert("tokens".into(), serde_json::json!({ "csrftoken": csrf }));
        }
        let body = serde_json::json!({ "batchcomplete": true, "query": query }).to_string();
        return Ok(respond(StatusCode::OK, body));
    }
    if let Some(size) = params.big {
        let mut response = respond(StatusCode::OK, Bytes::new());
        *response.body_mut() = Out::Big {
            remaining: size,
            chunk: shared.big_chunk.clone(),
            shared: shared.clone(),
        };
        return Ok(response);
    }
    Ok(respond(StatusCode::OK, shared.body.clone()))
}

fn login(params: &Params, shared: &Shared) -> Response<Out> {
    if params.lgtoken.is_empty() {
        return respond(
            StatusCode::OK,
            r#"{"login":{"result":"NeedToken","token":"x+\\"}}"#,
        );
    }
    if params.lgname != shared.lgname || params.lgpassword != shared.password {
        shared.failed_logins.fetch_add(1, Relaxed);
        return respond(
            StatusCode::OK,
            r#"{"login":{"result":"Failed","reason":"Incorrect username or password entered. Please try again."}}"#,
        );
    }
    let seq = shared.sequence.fetch_add(1, Relaxed);
    // Distinct from 0, from the static value and from earlier logins.
    let value = (now_ns() ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1 << 62;
    let value = if value == shared.static_session {
        value ^ 2
    } else {
        value
    };
    shared.session.store(value, Relaxed);
    shared.logins.fetch_add(1, Relaxed);
    let body = serde_json::json!({
        "login": { "result": "Success", "lguserid": 1, "lgusername": shared.user }
    })
    .to_string();
    let mut response = respond(StatusCode::OK, body);
    let cookie = format!("{SESSION_COOKIE}={value:016x}; path=/; HttpOnly");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    shared.last_login_ns.store(now_ns(), Relaxed);
    response
}

fn stats(shared: &Shared) -> String {
    serde_json::json!({
        "requests": shared.requests.load(Relaxed),
        "logins": shared.logins.load(Relaxed),
        "failed_logins": shared.failed_logins.load(Relaxed),
        "login_tokens": shared.login_tokens.load(Relaxed),
        "last_login_ns": shared.last_login_ns.load(Relaxed),
        "kills": shared.kills.load(Relaxed),
        "killed_at_ns": shared.killed_at_ns.load(Relaxed),
        "session_errors": shared.session_errors.load(Relaxed),
        "held": shared.held.load(Relaxed),
        "armed": *shared.gate.borrow(),
        "uploads": shared.uploads.load(Relaxed),
        "upload_bytes": shared.upload_bytes.load(Relaxed),
        "big_bytes": shared.big_bytes.load(Relaxed),
        "logged_in": shared.session.load(Relaxed) != 0,
    })
    .to_string()
}

fn control(path: &str, shared: &Shared) -> Response<Out> {
    match path {
        "/control/stats" => {}
        "/control/arm" => {
            shared.gate.send_replace(true);
        }
        "/control/kill" => {
            // Drop the session first, then let held requests go: they see
            // the session gone.
            shared.session.store(0, Relaxed);
            shared.kills.fetch_add(1, Relaxed);
            shared.killed_at_ns.store(now_ns(), Relaxed);
            shared.gate.send_replace(false);
        }
        _ => return respond(StatusCode::NOT_FOUND, "{\"error\":\"unknown control\"}"),
    }
    respond(StatusCode::OK, stats(shared))
}

fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("fake-wiki: {err}");
            std::process::exit(64);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(serve(options));
}

async fn serve(options: Options) {
    let addr = SocketAddr::from(([127, 0, 0, 1], options.port));
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("fake-wiki: cannot listen on {addr}: {err}");
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().expect("local address");
    let shared = Arc::new(Shared {
        body: fixed_body(options.body_bytes),
        big_chunk: Bytes::from(vec![b' '; BIG_CHUNK_BYTES]),
        session: AtomicU64::new(0),
        static_session: options.static_session,
        sequence: AtomicU64::new(1),
        lgname: options.lgname,
        password: options.password,
        user: options.user,
        gate: watch::Sender::new(false),
        held: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        logins: AtomicU64::new(0),
        failed_logins: AtomicU64::new(0),
        login_tokens: AtomicU64::new(0),
        last_login_ns: AtomicU64::new(0),
        kills: AtomicU64::new(0),
        killed_at_ns: AtomicU64::new(0),
        session_errors: AtomicU64::new(0),
        uploads: AtomicU64::new(0),
        upload_bytes: AtomicU64::new(0),
        big_bytes: AtomicU64::new(0),
    });
    println!("listening on {local}");
    // Bounded life: an orphaned fake stops by itself.
    let deadline = tokio::time::sleep(options.exit_after);
    tokio::pin!(deadline);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut deadline => {
                eprintln!("fake-wiki: --exit-after reached, exiting");
                std::process::exit(0);
            }
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, shared.clone()));
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
