//! An in-process mock of the MediaWiki 1.39 Action API (`api.php`).
//!
//! It answers as a real MediaWiki 1.39 with a bot password does (see
//! `shared/MEDIAWIKI.md`; the answers were compared with a real 1.39.17), and
//! adds what a real wiki cannot easily do on demand: kill every session at
//! once, force login failures, delay answers, and stream bodies of any size.
//! It records every request and counts what matters, so tests assert
//! behaviour rather than log lines.
//!
//! ```ignore
//! let wiki = MockWiki::builder()
//!     .api_path("/w/api.php")                                 // default "/api.php"
//!     .bot_password("Admin@proxybot", "secret-bot-password")  // user "Admin", id 1
//!     .start()
//!     .await;
//! let url = wiki.api_url();        // "http://127.0.0.1:PORT/w/api.php"
//! wiki.kill_sessions();            // like deleting the objectcache rows
//! wiki.set_login_failure(Some(LoginFailure::Throttled));
//! assert_eq!(wiki.successful_logins(), 1);
//! assert!(wiki.requests().iter().all(|r| !r.has_forbidden_login_param()));
//! ```
//!
//! # What it implements
//! - Parameters are read like PHP does: query string and form body
//!   (urlencoded or multipart), the last of a repeated name wins, the body
//!   wins over the query string. Answers are JSON; `formatversion=2` and
//!   `errorformat=plaintext` change the shapes as they do on a real wiki.
//! - Sessions: cookie `<prefix>_session` (anonymous or login in progress) and
//!   `<prefix>_BPsession` (bot password). A cookie naming a dead session gets
//!   the real wiki's answer: `_BPsession=deleted; ...Max-Age=0`, and a fresh
//!   `_session` in place of a well-formed dead one.
//! - Checks in MediaWiki's order: `assert`, `assertuser`, the token
//!   (`missingparam`, `mustpostparams`, `badtoken`), read rights
//!   (`readapidenied` when private), POST (`mustbeposted`), then the module.
//!   Every error is HTTP 200 with a `MediaWiki-API-Error` header.
//! - Modules: `login` (every result of the seed flow), `query` with
//!   `meta=tokens|userinfo` and `prop=revisions&titles=`, `edit`, `watch`,
//!   `logout`; writes set `UseDC` and `UseCDNCache` cookies.
//! - Test helpers: `action=mockbig&bytes=N` streams N filler bytes in 64 KiB
//!   chunks; `action=mockcount` counts a (streamed) request body without
//!   keeping it and answers `{"received":N}`; any other action echoes
//!   `{"batchcomplete":..,"params":{..}}`.
//!
//! # Decisions
//! - Like the real wiki, `assertuser=NAME` fails with `assertnameduserfailed`
//!   for an anonymous request too; only `assert=user` gives `assertuserfailed`
//!   (and `assert` is checked first).
//! - Tokens are per session and per type, as on the real wiki: a `watch`
//!   token is not a `csrf` token. Anonymous tokens are `+\`.
//! - A response delay is applied after the request was handled, so a client
//!   that times out still had its write applied: the worst case for replays.
//! - An edit that changes nothing answers `nochange` and is not recorded.
//! - Write cookies carry `Max-Age=10` but no `expires` date.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The anonymous token MediaWiki hands out and accepts for every type.
pub const ANON_TOKEN: &str = "+\\";
/// Size of the chunks `action=mockbig` streams.
pub const MOCKBIG_CHUNK: usize = 64 * 1024;

const DEFAULT_API_PATH: &str = "/api.php";
const DEFAULT_LGNAME: &str = "Admin@proxybot";
const DEFAULT_PASSWORD: &str = "secret-bot-password";
const DEFAULT_COOKIE_PREFIX: &str = "mockwiki";
const USER_ID: u64 = 1;
/// What `meta=userinfo` calls an anonymous user: its address.
const ANON_NAME: &str = "127.0.0.1";

const WRONG_PASSWORD: &str = "Incorrect username or password entered. Please try again.";
const THROTTLED: &str =
    "You have made too many recent login attempts. Please wait 5 minutes before trying again.";
const SESSION_LOST: &str = "Unable to continue login. Your session most likely timed out.";
const LOCKED: &str = "You cannot login with a bot password as your account is locked.";
const ABORTED: &str =
    "Cannot log in when using MediaWiki\\Session\\BotPasswordSessionProvider sessions.";

type Body = UnsyncBoxBody<Bytes, Infallible>;
type Pairs = Vec<(String, String)>;

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// A login outcome forced on `action=login` once the request passed the
/// session and token checks, i.e. where the password would be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// `Failed`, "Incorrect username or password entered...": a revoked or
    /// changed bot password. Stays until cleared.
    WrongPassword,
    /// `Failed`, "You have made too many recent login attempts...".
    Throttled,
    /// `Failed` with reason code `botpasswords-needs-reset`.
    NeedsReset,
    /// `Failed` with reason code `botpasswords-locked`.
    Locked,
    /// `WrongToken` for the next login only.
    WrongTokenOnce,
    /// `Failed`, "Unable to continue login...", for the next login only.
    SessionTimedOutOnce,
}

impl LoginFailure {
    fn fires_once(self) -> bool {
        matches!(self, Self::WrongTokenOnce | Self::SessionTimedOutOnce)
    }
}

/// An answer given instead of running a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `maxlag` with `Retry-After`, as MediaWiki answers when lagged.
    Maxlag { retry_after: u64 },
    /// `readonly`, without `Retry-After`.
    Readonly,
    /// A bare HTTP status from an edge server (429, 503), HTML body.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
}

impl Fault {
    fn response(self) -> Response<Body> {
        let json = |code: &str, info: &str| {
            json!({"error": {"code": code, "info": info, "*": "See URL for API usage."}})
                .to_string()
        };
        let (status, body, code, retry_after) = match self {
            Fault::Maxlag { retry_after } => (
                200,
                json("maxlag", "Waiting for 127.0.0.1: 7 seconds lagged."),
                Some("maxlag"),
                Some(retry_after),
            ),
            Fault::Readonly => (
                200,
                json("readonly", "The wiki is currently in read-only mode."),
                Some("readonly"),
                None,
            ),
            Fault::Status {
                status,
                retry_after,
            } => (
                status,
                "<html><body>Too many requests</body></html>".to_owned(),
                None,
                retry_after,
            ),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
        *response.status_mut() = StatusCode::from_u16(status).expect("a status code");
        let headers = response.headers_mut();
        if let Some(code) = code {
            headers.insert("mediawiki-api-error", HeaderValue::from_static(code));
            headers.insert("x-database-lag", HeaderValue::from_static("7"));
        }
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    pub version: Version,
    pub path: String,
    /// Query-string pairs in order, repeats kept.
    pub query: Vec<(String, String)>,
    /// Form-body pairs (urlencoded or multipart) in order, repeats kept.
    /// Empty for `action=mockcount`, whose body is only counted.
    pub body: Vec<(String, String)>,
    /// Bytes of request body received.
    pub body_len: u64,
    pub headers: HeaderMap,
}

impl RecordedRequest {
    /// A parameter as MediaWiki reads it: body over query string, last wins.
    pub fn param(&self, name: &str) -> Option<&str> {
        last_value(&self.body, name).or_else(|| last_value(&self.query, name))
    }

    pub fn action(&self) -> Option<&str> {
        self.param("action")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of cookie `name` across every `Cookie` header (first wins,
    /// as PHP reads it).
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == name)
            .map(|c| c.value().to_owned())
    }

    /// A request of the login flow: `action=login`/`clientlogin` or a
    /// login-token fetch.
    pub fn is_login_flow(&self) -> bool {
        match self.action() {
            Some("login" | "clientlogin") => true,
            Some("query") => self.is_login_token_request(),
            _ => false,
        }
    }

    /// Whether this login-flow request carries `assert`, `assertuser` or
    /// `maxlag`, which make a login loop forever (mwn #86).
    pub fn has_forbidden_login_param(&self) -> bool {
        self.is_login_flow()
            && ["assert", "assertuser", "maxlag"]
                .iter()
                .any(|name| self.param(name).is_some())
    }

    fn is_login_token_request(&self) -> bool {
        self.action() == Some("query")
            && split_list(self.param("meta")).any(|m| m == "tokens")
            && split_list(self.param("type")).any(|t| t == "login")
    }
}

/// An edit the mock applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub title: String,
    pub text: String,
    pub user: String,
    pub rev_id: u64,
}

/// Builds and starts a [`MockWiki`].
#[derive(Debug, Clone)]
pub struct MockWikiBuilder {
    api_path: String,
    lgname: String,
    password: String,
    cookie_prefix: String,
    private: bool,
    bot_right: bool,
}

impl Default for MockWikiBuilder {
    fn default() -> Self {
        Self {
            api_path: DEFAULT_API_PATH.to_owned(),
            lgname: DEFAULT_LGNAME.to_owned(),
            password: DEFAULT_PASSWORD.to_owned(),
            cookie_prefix: DEFAULT_COOKIE_PREFIX.to_owned(),
            private: false,
            bot_right: false,
        }
    }
}

impl MockWikiBuilder {
    /// Path of `api.php` on the mock (default `/api.php`).
    pub fn api_path(mut self, path: impl Into<String>) -> Self {
        self.api_path = path.into();
        self
    }

    /// The one bot password that logs in: `User@appid` and its password.
    pub fn bot_password(mut self, lgname: impl Into<String>, password: impl Into<String>) -> Self {
        self.lgname = lgname.into();
        self.password = password.into();
        self
    }

    /// Cookie names are `<prefix>_session` and `<prefix>_BPsession`.
    pub fn cookie_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.cookie_prefix = prefix.into();
        self
    }

    /// Start as a private wiki (anonymous reads get `readapidenied`).
    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// Give the bot user the `bot` right, so `assert=bot` passes.
    pub fn bot_right(mut self, bot_right: bool) -> Self {
        self.bot_right = bot_right;
        self
    }

    pub async fn start(self) -> MockWiki {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the mock wiki to an ephemeral port");
        let addr = listener
            .local_addr()
            .expect("local address of the mock wiki");
        let (user_name, app_id) = self
            .lgname
            .split_once('@')
            .map(|(user, app)| (user.to_owned(), app.to_owned()))
            .expect("a bot password login name looks like User@appid");
        let config = Config {
            api_url: format!("http://{addr}{}", self.api_path),
            api_path: self.api_path,
            lgname: self.lgname,
            password: self.password,
            user_name,
            app_id,
            cookie_prefix: self.cookie_prefix,
            bot_right: self.bot_right,
        };
        let shared = Arc::new(Shared {
            config,
            counters: Counters::default(),
            state: Mutex::new(State::new(self.private)),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        MockWiki { addr, shared, task }
    }
}

/// A running mock wiki. Stops when dropped or on [`MockWiki::shutdown`].
#[derive(Debug)]
pub struct MockWiki {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for MockWiki {
    fn drop(&mut self) {
        // Dropping the accept task drops the listener and every open
        // connection with it.
        self.task.abort();
    }
}

impl MockWiki {
    pub fn builder() -> MockWikiBuilder {
        MockWikiBuilder::default()
    }

    /// A mock with every default (`/api.php`, `Admin@proxybot`).
    pub async fn start() -> MockWiki {
        Self::builder().start().await
    }

    /// Stop serving and wait until the port is closed.
    pub async fn shutdown(mut self) {
        self.task.abort();
        // The task ends as cancelled: that is the expected outcome.
        let _ = (&mut self.task).await;
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/api.php` (or the configured path).
    pub fn api_url(&self) -> String {
        self.shared.config.api_url.clone()
    }

    pub fn cookie_prefix(&self) -> &str {
        &self.shared.config.cookie_prefix
    }

    /// `<prefix>_session`
    pub fn session_cookie_name(&self) -> String {
        self.shared.config.session_cookie()
    }

    /// `<prefix>_BPsession`
    pub fn bp_session_cookie_name(&self) -> String {
        self.shared.config.bp_cookie()
    }

    /// The bot password's login name, e.g. `Admin@proxybot`.
    pub fn lgname(&self) -> &str {
        &self.shared.config.lgname
    }

    pub fn password(&self) -> &str {
        &self.shared.config.password
    }

    /// The user the bot password logs in as, e.g. `Admin`.
    pub fn user_name(&self) -> &str {
        &self.shared.config.user_name
    }

    /// Every session dies at once, like deleting the `objectcache` rows.
    pub fn kill_sessions(&self) {
        self.shared.state().sessions.clear();
    }

    /// Live sessions, anonymous ones included.
    pub fn session_count(&self) -> usize {
        self.shared.state().sessions.len()
    }

    /// Force (or with `None`, stop forcing) a login failure.
    pub fn set_login_failure(&self, failure: Option<LoginFailure>) {
        self.shared.state().login_failure = failure;
    }

    /// Anonymous reads get `readapidenied` while `true`.
    pub fn set_private(&self, private: bool) {
        self.shared.state().private = private;
    }

    /// Accept `Authorization: Bearer <token>` as the user (an owner-only
    /// OAuth 2 consumer); any other bearer token gets
    /// `mwoauth-invalid-authorization`.
    pub fn set_oauth_token(&self, token: Option<&str>) {
        let mut state = self.shared.state();
        state.oauth_token = token.map(str::to_owned);
        state.oauth_session = None;
    }

    /// Answer the next requests outside the login flow with these faults,
    /// one each, without running them (as MediaWiki's maxlag and read-only
    /// checks, and an edge rate limiter, do).
    pub fn inject_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.state().faults.extend(faults);
    }

    /// Delay every response by `delay` (zero to stop).
    pub fn set_response_delay(&self, delay: Duration) {
        self.shared.state().delays.every = delay;
    }

    /// Delay only the next `count` responses by `delay`; takes precedence
    /// over [`MockWiki::set_response_delay`].
    pub fn delay_next_responses(&self, count: usize, delay: Duration) {
        let mut state = self.shared.state();
        state.delays.next_count = count;
        state.delays.next_delay = delay;
    }

    /// When `true`, every response to a request with a live session re-sends
    /// its cookie with the same value, as MediaWiki does when it renews a
    /// session past half its lifetime.
    pub fn set_renew_session_cookies(&self, renew: bool) {
        self.shared.state().renew_cookies = renew;
    }

    /// The most requests the wiki was answering at once.
    pub fn most_concurrent_requests(&self) -> usize {
        self.shared.counters.most_in_flight.load(Ordering::SeqCst)
    }

    /// `action=login` requests received, whatever their outcome.
    pub fn login_attempts(&self) -> usize {
        self.shared.counters.login_attempts.load(Ordering::SeqCst)
    }

    /// `action=login` requests answered `Success`.
    pub fn successful_logins(&self) -> usize {
        self.shared
            .counters
            .successful_logins
            .load(Ordering::SeqCst)
    }

    /// `meta=tokens&type=login` requests received.
    pub fn login_token_requests(&self) -> usize {
        self.shared
            .counters
            .login_token_requests
            .load(Ordering::SeqCst)
    }

    /// Login-flow requests that carried `assert`, `assertuser` or `maxlag`.
    pub fn forbidden_login_params(&self) -> usize {
        self.shared
            .counters
            .forbidden_login_params
            .load(Ordering::SeqCst)
    }

    /// `action=logout` requests received, whatever their outcome.
    pub fn logouts(&self) -> usize {
        self.shared.counters.logouts.load(Ordering::SeqCst)
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state().requests.clone()
    }

    /// Forget the recorded requests (counters are kept).
    pub fn clear_requests(&self) {
        self.shared.state().requests.clear();
    }

    /// Applied edits, in order.
    pub fn edits(&self) -> Vec<Edit> {
        self.shared.state().edits.clone()
    }

    /// The current text of a page, if it has been edited.
    pub fn page_text(&self, title: &str) -> Option<String> {
        let state = self.shared.state();
        state
            .pages
            .get(&normalize_title(title))
            .map(|p| p.text.clone())
    }
}

// ---------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Config {
    api_url: String,
    api_path: String,
    lgname: String,
    password: String,
    user_name: String,
    app_id: String,
    cookie_prefix: String,
    bot_right: bool,
}

impl Config {
    fn session_cookie(&self) -> String {
        format!("{}_session", self.cookie_prefix)
    }

    fn bp_cookie(&self) -> String {
        format!("{}_BPsession", self.cookie_prefix)
    }
}

#[derive(Debug, Default)]
struct Counters {
    login_attempts: AtomicUsize,
    successful_logins: AtomicUsize,
    login_token_requests: AtomicUsize,
    forbidden_login_params: AtomicUsize,
    logouts: AtomicUsize,
    /// Requests being answered now, and the most there were at once.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

/// Counts one request in `in_flight` while it lives.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(counters: &'a Counters) -> Self {
        let now = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        counters.most_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Counters {
    fn bump(counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::SeqCst);
    }

    fn count(&self, request: &RecordedRequest) {
        match request.action() {
            Some("login") => Self::bump(&self.login_attempts),
            Some("logout") => Self::bump(&self.logouts),
            _ if request.is_login_token_request() => Self::bump(&self.login_token_requests),
            _ => {}
        }
        if request.has_forbidden_login_param() {
            Self::bump(&self.forbidden_login_params);
        }
    }
}

#[derive(Debug)]
struct Shared {
    config: Config,
    counters: Counters,
    state: Mutex<State>,
}

impl Shared {
    /// Never held across an `.await`. A test that panicked while holding it
    /// must not turn every later assertion into a poison error.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionKind {
    Anonymous,
    BotPassword,
}

#[derive(Debug)]
struct Session {
    kind: SessionKind,
    /// Token secrets by type (`login`, `csrf`, `watch`...).
    token_secrets: HashMap<String, String>,
}

#[derive(Debug)]
struct Page {
    id: u64,
    text: String,
    user: String,
    rev_id: u64,
    parent_rev_id: u64,
}

#[derive(Debug, Default)]
struct Delays {
    every: Duration,
    next_count: usize,
    next_delay: Duration,
}

impl Delays {
    fn take(&mut self) -> Duration {
        if self.next_count > 0 {
            self.next_count -= 1;
            self.next_delay
        } else {
            self.every
        }
    }
}

#[derive(Debug)]
struct State {
    faults: std::collections::VecDeque<Fault>,
    /// An OAuth 2 access token accepted as the user, and the session it
    /// maps to (tokens need one).
    oauth_token: Option<String>,
    oauth_session: Option<String>,
    sessions: HashMap<String, Session>,
    login_failure: Option<LoginFailure>,
    private: bool,
    renew_cookies: bool,
    delays: Delays,
    requests: Vec<RecordedRequest>,
    edits: Vec<Edit>,
    pages: BTreeMap<String, Page>,
    last_rev_id: u64,
    last_page_id: u64,
}

impl State {
    fn new(private: bool) -> Self {
        Self {
            faults: std::collections::VecDeque::new(),
            oauth_token: None,
            oauth_session: None,
            sessions: HashMap::new(),
            login_failure: None,
            private,
            renew_cookies: false,
            delays: Delays::default(),
            requests: Vec::new(),
            edits: Vec::new(),
            pages: BTreeMap::new(),
            // Page 1 revision 1 is the Main Page of a fresh install.
            last_rev_id: 1,
            last_page_id: 1,
        }
    }

    fn new_session(&mut self, kind: SessionKind) -> String {
        let id = random_string(32, b"0123456789abcdefghijklmnopqrstuv");
        let session = Session {
            kind,
            token_secrets: HashMap::new(),
        };
        self.sessions.insert(id.clone(), session);
        id
    }

    fn is_session(&self, id: &str, kind: SessionKind) -> bool {
        self.sessions.get(id).is_some_and(|s| s.kind == kind)
    }

    fn has_token(&self, id: &str, kind: &str) -> bool {
        self.sessions
            .get(id)
            .is_some_and(|s| s.token_secrets.contains_key(kind))
    }

    /// The session's token of `kind`, created on first use as MediaWiki does.
    fn token(&mut self, id: &str, kind: &str) -> String {
        let Some(session) = self.sessions.get_mut(id) else {
            return ANON_TOKEN.to_owned();
        };
        let secret = session
            .token_secrets
            .entry(kind.to_owned())
            .or_insert_with(|| random_string(32, b"0123456789abcdef"));
        // The real token is an HMAC, then the time it was made, then `+\`;
        // only the HMAC part has to match.
        format!("{secret}{:08x}{ANON_TOKEN}", unix_time())
    }

    fn token_matches(&self, id: &str, kind: &str, token: &str) -> bool {
        let secret = self
            .sessions
            .get(id)
            .and_then(|s| s.token_secrets.get(kind));
        match secret {
            Some(secret) => {
                token.len() == secret.len() + 8 + ANON_TOKEN.len()
                    && token.starts_with(secret.as_str())
                    && token.ends_with(ANON_TOKEN)
            }
            None => false,
        }
    }

    fn take_login_failure(&mut self) -> Option<LoginFailure> {
        let failure = self.login_failure;
        if failure.is_some_and(LoginFailure::fires_once) {
            self.login_failure = None;
        }
        failure
    }
}

// ---------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Owning the connections here means aborting this task closes them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let service = service_fn(move |request| handle(Arc::clone(&shared), request));
    // Clients hanging up mid-answer is what timeout tests do: not an error.
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let _in_flight = InFlight::enter(&shared.counters);
    let (parts, body) = request.into_parts();
    let query = parse_query(parts.uri.query());
    let counting_only = parts.uri.path() == shared.config.api_path
        && last_value(&query, "action") == Some("mockcount");
    let (body_pairs, body_len) = if counting_only {
        (Vec::new(), count_body(body).await)
    } else {
        read_form(&parts.headers, body).await
    };
    let recorded = RecordedRequest {
        method: parts.method,
        version: parts.version,
        path: parts.uri.path().to_owned(),
        query,
        body: body_pairs,
        body_len,
        headers: parts.headers,
    };
    if !recorded.is_login_flow() {
        let mut state = shared.state();
        if let Some(fault) = state.faults.pop_front() {
            state.requests.push(recorded);
            return Ok(fault.response());
        }
    }
    let answer = answer(&shared, recorded);
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    Ok(answer.into_response())
}

fn parse_query(query: Option<&str>) -> Pairs {
    query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Reads the body through without keeping it.
async fn count_body(mut body: Incoming) -> u64 {
    let mut received = 0;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            received += data.len() as u64;
        }
    }
    received
}

/// Reads a form body as PHP fills `$_POST`: only for the two form types.
async fn read_form(headers: &HeaderMap, body: Incoming) -> (Pairs, u64) {
    let bytes = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let len = bytes.len() as u64;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let pairs = if content_type.starts_with("application/x-www-form-urlencoded") {
        form_urlencoded::parse(&bytes).into_owned().collect()
    } else if let Ok(boundary) = multer::parse_boundary(content_type) {
        read_multipart(bytes, boundary).await
    } else {
        Vec::new()
    };
    (pairs, len)
}

async fn read_multipart(bytes: Bytes, boundary: String) -> Pairs {
    let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(bytes) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut pairs = Vec::new();
    while let Ok(Some(field)) = multipart.next_field().await {
        let name = field.name().unwrap_or_default().to_owned();
        let value = field.text().await.unwrap_or_default();
        pairs.push((name, value));
    }
    pairs
}

/// What the mock answers, decided under the lock and sent after it.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: AnswerBody,
    error_codes: Vec<String>,
    set_cookies: Vec<String>,
    delay: Duration,
}

#[derive(Debug)]
enum AnswerBody {
    Json(Value),
    Text(&'static str),
    /// `action=mockbig`: this many filler bytes, streamed.
    Filler(u64),
}

impl Answer {
    fn into_response(self) -> Response<Body> {
        let (content_type, body) = match self.body {
            AnswerBody::Json(value) => ("application/json; charset=utf-8", full(value.to_string())),
            AnswerBody::Text(text) => ("text/plain; charset=utf-8", full(text.to_owned())),
            AnswerBody::Filler(len) => ("application/json; charset=utf-8", filler(len)),
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, must-revalidate, max-age=0"),
        );
        if let Some(codes) = error_header(self.error_codes) {
            headers.insert("mediawiki-api-error", codes);
        }
        for cookie in self.set_cookies {
            let value = HeaderValue::from_str(&cookie).expect("cookies are visible ASCII");
            headers.append(header::SET_COOKIE, value);
        }
        response
    }
}

/// `MediaWiki-API-Error: code1, code2`, sorted as MediaWiki sends it.
fn error_header(mut codes: Vec<String>) -> Option<HeaderValue> {
    if codes.is_empty() {
        return None;
    }
    codes.sort();
    codes.dedup();
    HeaderValue::from_str(&codes.join(", ")).ok()
}

fn full(text: String) -> Body {
    Full::new(Bytes::from(text)).boxed_unsync()
}

/// A body of `len` bytes made of one static chunk, so even gigabytes cost
/// no memory.
fn filler(len: u64) -> Body {
    static CHUNK: [u8; MOCKBIG_CHUNK] = [b'x'; MOCKBIG_CHUNK];
    let chunks = futures_util::stream::unfold(len, |left| async move {
        if left == 0 {
            return None;
        }
        let size = usize::try_from(left).map_or(MOCKBIG_CHUNK, |l| l.min(MOCKBIG_CHUNK));
        let frame = Frame::data(Bytes::from_static(&CHUNK[..size]));
        Some((Ok::<_, Infallible>(frame), left - size as u64))
    });
    StreamBody::new(chunks).boxed_unsync()
}

// ---------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------

fn answer(shared: &Shared, request: RecordedRequest) -> Answer {
    let mut state = shared.state();
    state.requests.push(request.clone());
    let delay = state.delays.take();
    if request.path != shared.config.api_path {
        return Answer {
            status: StatusCode::NOT_FOUND,
            body: AnswerBody::Text("Not Found"),
            error_codes: Vec::new(),
            set_cookies: Vec::new(),
            delay,
        };
    }
    shared.counters.count(&request);
    let mut call = Call::new(&shared.config, &shared.counters, &request);
    let bearer = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned);
    let outcome = match bearer {
        Some(token) if state.oauth_token.as_deref() == Some(token.as_str()) => {
            let id = match state.oauth_session.clone() {
                Some(id) => id,
                None => {
                    let id = state.new_session(SessionKind::BotPassword);
                    state.oauth_session = Some(id.clone());
                    id
                }
            };
            call.session = Some(id);
            call.logged_in = true;
            run(&mut state, &mut call)
        }
        Some(_) => Err(ApiError::new(
            "mwoauth-invalid-authorization",
            "The authorization headers in your request are not valid: Invalid access token",
        )),
        None => {
            call.resolve_session(&mut state);
            run(&mut state, &mut call)
        }
    };
    call.renew_cookie(&state);
    let (body, error_codes) = match outcome {
        Ok(Output::Json(value)) => (AnswerBody::Json(value), Vec::new()),
        Ok(Output::Filler(len)) => (AnswerBody::Filler(len), Vec::new()),
        Err(error) => (AnswerBody::Json(call.error_body(&error)), vec![error.code]),
    };
    Answer {
        status: StatusCode::OK,
        body,
        error_codes,
        set_cookies: call.set_cookies,
        delay,
    }
}

#[derive(Debug)]
enum Output {
    Json(Value),
    Filler(u64),
}

#[derive(Debug)]
struct ApiError {
    code: String,
    info: String,
}

impl ApiError {
    fn new(code: &str, info: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            info: info.into(),
        }
    }
}

type Outcome = Result<Output, ApiError>;

fn run(state: &mut State, call: &mut Call<'_>) -> Outcome {
    call.check_asserts()?;
    match call.param("action") {
        Some("login") => login(state, call),
        Some("logout") => logout(state, call),
        Some("query") => query(state, call),
        Some("edit") => edit(state, call),
        Some("watch") => watch(state, call),
        Some("mockbig") => mockbig(state, call),
        Some("mockcount") => mockcount(state, call),
        _ => echo(state, call),
    }
}

/// One API request being answered: its parameters, its session and the
/// cookies the answer will set.
#[derive(Debug)]
struct Call<'a> {
    config: &'a Config,
    counters: &'a Counters,
    request: &'a RecordedRequest,
    session: Option<String>,
    logged_in: bool,
    /// The session came from a live cookie (so a renewal may re-send it).
    from_cookie: bool,
    set_cookies: Vec<String>,
}

impl<'a> Call<'a> {
    fn new(config: &'a Config, counters: &'a Counters, request: &'a RecordedRequest) -> Self {
        Self {
            config,
            counters,
            request,
            session: None,
            logged_in: false,
            from_cookie: false,
            set_cookies: Vec::new(),
        }
    }

    fn param(&self, name: &str) -> Option<&'a str> {
        self.request.param(name)
    }

    fn fv2(&self) -> bool {
        matches!(self.param("formatversion"), Some("2" | "latest"))
    }

    /// Boolean `true` as the format version writes it (`""` in version 1).
    fn flag(&self) -> Value {
        if self.fv2() {
            Value::Bool(true)
        } else {
            Value::String(String::new())
        }
    }

    fn user_name(&self) -> Option<&'a str> {
        self.logged_in.then_some(self.config.user_name.as_str())
    }

    /// Finds the session the cookies name, answering dead ones as the real
    /// wiki does: delete a dead `_BPsession`, replace a dead `_session`.
    fn resolve_session(&mut self, state: &mut State) {
        let bp_cookie = self.config.bp_cookie();
        if let Some(id) = self.request.cookie(&bp_cookie) {
            if state.is_session(&id, SessionKind::BotPassword) {
                self.session = Some(id);
                self.logged_in = true;
                self.from_cookie = true;
                return;
            }
            self.set_cookies.push(deleted_cookie(&bp_cookie));
        }
        let anon_cookie = self.config.session_cookie();
        if let Some(id) = self.request.cookie(&anon_cookie) {
            if state.is_session(&id, SessionKind::Anonymous) {
                self.session = Some(id);
                self.from_cookie = true;
            } else if is_well_formed_session_id(&id) {
                self.ensure_session(state);
            } else {
                self.set_cookies.push(deleted_cookie(&anon_cookie));
            }
        }
    }

    /// The request's session, started (and its cookie set) if it has none,
    /// as MediaWiki persists a session for login tokens.
    fn ensure_session(&mut self, state: &mut State) -> String {
        if let Some(id) = &self.session {
            return id.clone();
        }
        let id = state.new_session(SessionKind::Anonymous);
        self.set_cookies
            .push(session_cookie(&self.config.session_cookie(), &id));
        self.session = Some(id.clone());
        id
    }

    fn renew_cookie(&mut self, state: &State) {
        if !state.renew_cookies || !self.from_cookie {
            return;
        }
        let Some(id) = self.session.as_deref() else {
            return;
        };
        // A session the request itself ended (logout) is not renewed.
        let name = match state.sessions.get(id).map(|s| s.kind) {
            Some(SessionKind::BotPassword) => self.config.bp_cookie(),
            Some(SessionKind::Anonymous) => self.config.session_cookie(),
            None => return,
        };
        self.set_cookies.push(session_cookie(&name, id));
    }

    /// `UseDC` and `UseCDNCache`, set by every write.
    fn set_write_cookies(&mut self) {
        self.set_cookies
            .push("UseDC=master; Max-Age=10; path=/; HttpOnly".to_owned());
        self.set_cookies
            .push("UseCDNCache=false; Max-Age=10; path=/; HttpOnly".to_owned());
    }

    /// `assert` first, then `assertuser`, before anything else.
    fn check_asserts(&self) -> Result<(), ApiError> {
        match self.param("assert") {
            None => {}
            Some("user") if !self.logged_in => {
                return Err(ApiError::new(
                    "assertuserfailed",
                    "You are no longer logged in, so the action could not be completed.",
                ));
            }
            Some("bot") if !(self.logged_in && self.config.bot_right) => {
                return Err(ApiError::new(
                    "assertbotfailed",
                    "You do not have the \"bot\" right, so the action could not be completed.",
                ));
            }
            Some("anon") if self.logged_in => {
                return Err(ApiError::new(
                    "assertanonfailed",
                    "You are no longer logged out, so the action could not be completed.",
                ));
            }
            Some("user" | "bot" | "anon") => {}
            Some(other) => {
                return Err(ApiError::new(
                    "badvalue",
                    format!("Unrecognized value for parameter \"assert\": {other}."),
                ));
            }
        }
        match self.param("assertuser") {
            Some(name) if self.user_name() != Some(normalize_title(name).as_str()) => {
                Err(ApiError::new(
                    "assertnameduserfailed",
                    format!(
                        "You are no longer logged in as \"{name}\", so the action could not be completed."
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The token check MediaWiki makes before anything module-specific.
    fn require_token(&self, state: &State, kind: &str) -> Result<(), ApiError> {
        let Some(token) = self.param("token") else {
            return Err(ApiError::new(
                "missingparam",
                "The \"token\" parameter must be set.",
            ));
        };
        self.require_posted_params(&["token"])?;
        let valid = match (&self.session, self.logged_in) {
            (Some(id), true) => state.token_matches(id, kind, token),
            _ => token == ANON_TOKEN,
        };
        if valid {
            Ok(())
        } else {
            Err(ApiError::new("badtoken", "Invalid CSRF token."))
        }
    }

    fn require_read(&self, state: &State) -> Result<(), ApiError> {
        if state.private && !self.logged_in {
            return Err(ApiError::new(
                "readapidenied",
                "You need read permission to use this module.",
            ));
        }
        Ok(())
    }

    fn require_post(&self, module: &str) -> Result<(), ApiError> {
        if self.request.method == Method::POST {
            return Ok(());
        }
        Err(ApiError::new(
            "mustbeposted",
            format!("The \"{module}\" module requires a POST request."),
        ))
    }

    fn require_posted_params(&self, names: &[&str]) -> Result<(), ApiError> {
        let in_query: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| self.request.query.iter().any(|(k, _)| k == name))
            .collect();
        let what = match in_query.len() {
            0 => return Ok(()),
            1 => "parameter was",
            _ => "parameters were",
        };
        Err(ApiError::new(
            "mustpostparams",
            format!(
                "The following {what} found in the query string, but must be in the POST body: {}.",
                in_query.join(", ")
            ),
        ))
    }

    /// A message inside a result (a login `reason`): plain text by default,
    /// `{code, text}` with a modern `errorformat`.
    fn message(&self, code: &str, text: &str) -> Value {
        if self.bc_errors() {
            Value::String(text.to_owned())
        } else if self.fv2() {
            json!({ "code": code, "text": text })
        } else {
            json!({ "code": code, "*": text })
        }
    }

    fn bc_errors(&self) -> bool {
        matches!(self.param("errorformat"), None | Some("bc"))
    }

    fn error_body(&self, error: &ApiError) -> Value {
        let docref = format!("See {} for API usage.", self.config.api_url);
        match (self.bc_errors(), self.fv2()) {
            (true, false) => {
                json!({ "error": { "code": error.code, "info": error.info, "*": docref } })
            }
            (true, true) => {
                json!({ "error": { "code": error.code, "info": error.info, "docref": docref } })
            }
            (false, false) => json!({
                "errors": [{ "code": error.code, "module": "main", "*": error.info }],
                "*": docref,
            }),
            (false, true) => json!({
                "errors": [{ "code": error.code, "text": error.info, "module": "main" }],
                "docref": docref,
            }),
        }
    }
}

// ---------------------------------------------------------------------------
// Modules
// ---------------------------------------------------------------------------

/// `action=login` in ApiLogin's order: POST, posted secrets, a session that
/// can log in, the login token, then the password.
fn login(state: &mut State, call: &mut Call<'_>) -> Outcome {
    call.require_post("login")?;
    call.require_posted_params(&["lgpassword", "lgtoken"])?;
    if call.logged_in {
        let reason = call.message("api-login-fail-badsessionprovider", ABORTED);
        return Ok(login_result(
            json!({ "result": "Aborted", "reason": reason }),
        ));
    }
    let session = call.ensure_session(state);
    let had_token = state.has_token(&session, "login");
    let token = state.token(&session, "login");
    let Some(sent) = call.param("lgtoken").filter(|t| !t.is_empty()) else {
        return Ok(login_result(
            json!({ "result": "NeedToken", "token": token }),
        ));
    };
    if !had_token {
        return Ok(login_failed(call, "sessionlost", SESSION_LOST));
    }
    if !state.token_matches(&session, "login", sent) {
        return Ok(login_result(json!({ "result": "WrongToken" })));
    }
    if let Some(failure) = state.take_login_failure() {
        return Ok(forced_login_failure(call, failure));
    }
    let good = call.param("lgname") == Some(call.config.lgname.as_str())
        && call.param("lgpassword") == Some(call.config.password.as_str());
    if !good {
        return Ok(login_failed(call, "wrongpassword", WRONG_PASSWORD));
    }
    let id = state.new_session(SessionKind::BotPassword);
    call.set_cookies
        .push(session_cookie(&call.config.bp_cookie(), &id));
    Counters::bump(&call.counters.successful_logins);
    Ok(login_result(json!({
        "result": "Success",
        "lguserid": USER_ID,
        "lgusername": call.config.user_name,
    })))
}

fn forced_login_failure(call: &Call<'_>, failure: LoginFailure) -> Output {
    match failure {
        LoginFailure::WrongPassword => login_failed(call, "wrongpassword", WRONG_PASSWORD),
        LoginFailure::Throttled => login_failed(call, "login-throttled", THROTTLED),
        LoginFailure::NeedsReset => {
            let text = format!(
                "The bot password for bot name \"{}\" of user \"{}\" must be reset.",
                call.config.app_id, call.config.user_name
            );
            login_failed(call, "botpasswords-needs-reset", &text)
        }
        LoginFailure::Locked => login_failed(call, "botpasswords-locked", LOCKED),
        LoginFailure::WrongTokenOnce => login_result(json!({ "result": "WrongToken" })),
        LoginFailure::SessionTimedOutOnce => login_failed(call, "sessionlost", SESSION_LOST),
    }
}

fn login_failed(call: &Call<'_>, code: &str, text: &str) -> Output {
    let reason = call.message(code, text);
    login_result(json!({ "result": "Failed", "reason": reason }))
}

fn login_result(result: Value) -> Output {
    Output::Json(json!({ "login": result }))
}

/// `action=logout`: POST with a csrf token; ends the session for everyone.
fn logout(state: &mut State, call: &mut Call<'_>) -> Outcome {
    call.require_token(state, "csrf")?;
    call.require_post("logout")?;
    if let Some(id) = call.session.take().filter(|_| call.logged_in) {
        state.sessions.remove(&id);
        call.set_cookies
            .push(deleted_cookie(&call.config.bp_cookie()));
    }
    Ok(Output::Json(json!({})))
}

fn query(state: &mut State, call: &mut Call<'_>) -> Outcome {
    if query_needs_read(call) {
        call.require_read(state)?;
    }
    let mut query = Map::new();
    for meta in split_list(call.param("meta")) {
        match meta {
            "tokens" => {
                query.insert("tokens".to_owned(), tokens(state, call));
            }
            "userinfo" => {
                query.insert("userinfo".to_owned(), userinfo(call));
            }
            _ => {}
        }
    }
    if let Some(titles) = call.param("titles") {
        query.insert("pages".to_owned(), pages(state, call, titles));
    }
    let mut result = Map::new();
    result.insert("batchcomplete".to_owned(), call.flag());
    if !query.is_empty() {
        result.insert("query".to_owned(), Value::Object(query));
    }
    Ok(Output::Json(Value::Object(result)))
}

/// ApiQuery lets anyone fetch tokens (so private wikis can log in), and
/// nothing else.
fn query_needs_read(call: &Call<'_>) -> bool {
    let page_params = ["prop", "list", "titles", "pageids", "revids", "generator"];
    page_params.iter().any(|p| call.param(p).is_some())
        || split_list(call.param("meta")).any(|m| m != "tokens")
}

fn tokens(state: &mut State, call: &mut Call<'_>) -> Value {
    let mut tokens = Map::new();
    for kind in split_list(Some(call.param("type").unwrap_or("csrf"))) {
        let token = if kind == "login" {
            let session = call.ensure_session(state);
            state.token(&session, "login")
        } else {
            match (&call.session, call.logged_in) {
                (Some(id), true) => state.token(id, kind),
                _ => ANON_TOKEN.to_owned(),
            }
        };
        tokens.insert(format!("{kind}token"), Value::String(token));
    }
    Value::Object(tokens)
}

fn userinfo(call: &Call<'_>) -> Value {
    match call.user_name() {
        Some(name) => json!({ "id": USER_ID, "name": name }),
        None => json!({ "id": 0, "name": ANON_NAME, "anon": call.flag() }),
    }
}

/// `titles=` with optional `prop=revisions&rvprop=ids|user|content`.
fn pages(state: &State, call: &Call<'_>, titles: &str) -> Value {
    let revisions = split_list(call.param("prop")).any(|p| p == "revisions");
    let rvprop: Vec<&str> = split_list(Some(
        call.param("rvprop")
            .unwrap_or("ids|timestamp|flags|comment|user"),
    ))
    .collect();
    let mut entries = Vec::new();
    let mut missing = 0_i64;
    for title in split_list(Some(titles)).map(normalize_title) {
        let entry = match state.pages.get(&title) {
            Some(page) => {
                let mut entry = json!({ "pageid": page.id, "ns": 0, "title": title });
                if revisions {
                    entry["revisions"] = json!([revision(call, page, &rvprop)]);
                }
                (page.id.to_string(), entry)
            }
            None => {
                missing -= 1;
                let entry = json!({ "ns": 0, "title": title, "missing": call.flag() });
                (missing.to_string(), entry)
            }
        };
        entries.push(entry);
    }
    if call.fv2() {
        Value::Array(entries.into_iter().map(|(_, entry)| entry).collect())
    } else {
        Value::Object(entries.into_iter().collect())
    }
}

fn revision(call: &Call<'_>, page: &Page, rvprop: &[&str]) -> Value {
    let mut rev = Map::new();
    if rvprop.contains(&"ids") {
        rev.insert("revid".to_owned(), json!(page.rev_id));
        rev.insert("parentid".to_owned(), json!(page.parent_rev_id));
    }
    if rvprop.contains(&"user") {
        rev.insert("user".to_owned(), json!(page.user));
    }
    if rvprop.contains(&"content") {
        let content_key = if call.fv2() { "content" } else { "*" };
        let mut content = Map::new();
        content.insert("contentmodel".to_owned(), json!("wikitext"));
        content.insert("contentformat".to_owned(), json!("text/x-wiki"));
        content.insert(content_key.to_owned(), json!(page.text));
        if call.param("rvslots").is_some() {
            rev.insert("slots".to_owned(), json!({ "main": content }));
        } else {
            rev.extend(content);
        }
    }
    Value::Object(rev)
}

fn edit(state: &mut State, call: &mut Call<'_>) -> Outcome {
    call.require_token(state, "csrf")?;
    call.require_read(state)?;
    call.require_post("edit")?;
    let title = call.param("title").map(normalize_title).ok_or_else(|| {
        ApiError::new(
            "missingparam",
            "One of the parameters \"title\" and \"pageid\" is required.",
        )
    })?;
    let Some(user) = call.user_name() else {
        return Err(ApiError::new(
            "permissiondenied",
            "The action you have requested is limited to users in the group: [[Mock Wiki:Users|Users]].",
        ));
    };
    let text = call.param("text").ok_or_else(|| {
        ApiError::new(
            "missingparam",
            "One of the parameters \"text\", \"appendtext\" and \"undo\" is required.",
        )
    })?;
    if let Some(page) = state.pages.get(&title).filter(|p| p.text == text) {
        return Ok(Output::Json(json!({ "edit": {
            "result": "Success",
            "pageid": page.id,
            "title": title,
            "contentmodel": "wikitext",
            "nochange": call.flag(),
        }})));
    }
    let edit = apply_edit(state, &title, text, user);
    call.set_write_cookies();
    Ok(Output::Json(json!({ "edit": edit })))
}

/// Saves a revision and answers the `edit` object of the result.
fn apply_edit(state: &mut State, title: &str, text: &str, user: &str) -> Value {
    state.last_rev_id += 1;
    let rev_id = state.last_rev_id;
    let (page_id, old_rev_id) = match state.pages.get(title) {
        Some(page) => (page.id, page.rev_id),
        None => {
            state.last_page_id += 1;
            (state.last_page_id, 0)
        }
    };
    let page = Page {
        id: page_id,
        text: text.to_owned(),
        user: user.to_owned(),
        rev_id,
        parent_rev_id: old_rev_id,
    };
    state.pages.insert(title.to_owned(), page);
    state.edits.push(Edit {
        title: title.to_owned(),
        text: text.to_owned(),
        user: user.to_owned(),
        rev_id,
    });
    let mut result = json!({
        "result": "Success",
        "pageid": page_id,
        "title": title,
        "contentmodel": "wikitext",
        "oldrevid": old_rev_id,
        "newrevid": rev_id,
    });
    if old_rev_id == 0 {
        result["new"] = json!("");
    }
    result
}

fn watch(state: &mut State, call: &mut Call<'_>) -> Outcome {
    call.require_token(state, "watch")?;
    call.require_read(state)?;
    call.require_post("watch")?;
    if !call.logged_in {
        return Err(ApiError::new(
            "notloggedin",
            "Please log in to view or edit items on your watchlist.",
        ));
    }
    let titles = call.param("titles").or_else(|| call.param("title"));
    let what = if call.param("unwatch").is_some() {
        "unwatched"
    } else {
        "watched"
    };
    let watched: Vec<Value> = split_list(titles)
        .map(normalize_title)
        .map(|title| json!({ "title": title, "ns": 0, what: call.flag() }))
        .collect();
    call.set_write_cookies();
    Ok(Output::Json(
        json!({ "batchcomplete": call.flag(), "watch": watched }),
    ))
}

fn mockbig(state: &mut State, call: &mut Call<'_>) -> Outcome {
    call.require_read(state)?;
    let len = call
        .param("bytes")
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    Ok(Output::Filler(len))
}

fn mockcount(state: &mut State, call: &mut Call<'_>) -> Outcome {
    call.require_read(state)?;
    Ok(Output::Json(json!({ "received": call.request.body_len })))
}

/// Any other action: show what arrived, as MediaWiki would read it.
fn echo(state: &mut State, call: &mut Call<'_>) -> Outcome {
    call.require_read(state)?;
    let mut params = Map::new();
    for (name, value) in call.request.query.iter().chain(&call.request.body) {
        params.insert(name.clone(), Value::String(value.clone()));
    }
    Ok(Output::Json(
        json!({ "batchcomplete": call.flag(), "params": params }),
    ))
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

fn last_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A `|`-separated MediaWiki list; empty items dropped.
fn split_list(value: Option<&str>) -> impl Iterator<Item = &str> {
    value
        .unwrap_or_default()
        .split('|')
        .filter(|item| !item.is_empty())
}

/// Titles and user names as MediaWiki stores them: spaces, first letter up.
fn normalize_title(raw: &str) -> String {
    let spaced = raw.replace('_', " ");
    let mut chars = spaced.trim().chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// MediaWiki's SessionManager rejects ids that do not look like its own.
fn is_well_formed_session_id(id: &str) -> bool {
    id.len() >= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn session_cookie(name: &str, value: &str) -> String {
    format!("{name}={value}; path=/; HttpOnly")
}

fn deleted_cookie(name: &str) -> String {
    format!("{name}=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/; HttpOnly")
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unpredictable enough for ids and tokens, without a `rand` dependency:
/// std's randomly keyed SipHash over a counter.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| {
            let index = usize::try_from(random_u64() % alphabet.len() as u64).unwrap_or(0);
            char::from(alphabet[index])
        })
        .collect()
}
