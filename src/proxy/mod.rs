//! The forwarding pipeline for one `api.php` request: read the parameters
//! as MediaWiki will, refuse what must not pass, attach the session and
//! `assertuser`, send, and on a lost session log in again (once, shared) and
//! replay. Responses stream back untouched but for their headers: the
//! decision needs only the `MediaWiki-API-Error` header, never the body.

mod body;
mod etiquette;
mod guard;
mod headers;
mod inspect;
mod pages;
mod policy;
mod renew;
mod token;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, SET_COOKIE, USER_AGENT};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;
use url::Url;

use crate::config::{PolicySettings, ServerSettings, SiteSettings};
use crate::error::{ProxyError, ResponseBody, json_response};
use crate::mediawiki::answers::{self, API_ERROR_HEADER};
use crate::mediawiki::params::{BodyKind, Params};
use crate::session::{Session, SessionManager};
use crate::telemetry::{Metrics, StatusLabels};
use body::RequestBody;
use guard::Refusal;
use inspect::Stopped;
use renew::TokenRenewal;

/// Tells the client (and whoever debugs it) that its request was replayed,
/// and why: the error codes that caused each replay.
const REPLAYED_HEADER: &str = "x-mw-auth-proxy-replayed";

/// Longest `action` value written to the request log; it is client input.
const MAX_LOGGED_ACTION: usize = 40;
/// How often one request may be replayed for a lost session. Each replay
/// follows a failure that proves the request did nothing, and runs on a
/// session newer than the one before; it fails again only if the wiki
/// dropped that newer session too, which is rare but real on a wiki that
/// loses sessions in bursts. The bound keeps a broken wiki from looping a
/// request. A stale token is renewed at most once per session on top.
const MAX_SESSION_REPLAYS: u32 = 3;
/// How often one request may be replayed after the wiki asked everyone to
/// slow down; after that the client gets the answer, with `Retry-After`.
const MAX_ETIQUETTE_REPLAYS: u32 = 3;

#[derive(Debug)]
pub struct Proxy {
    http: reqwest::Client,
    api_url: Url,
    sessions: Arc<SessionManager>,
    metrics: Arc<Metrics>,
    max_replay_body_bytes: usize,
    timeout: Duration,
    /// Appended to the client's own User-Agent so the wiki always sees the
    /// operator's contact details.
    user_agent: String,
    policy: PolicySettings,
    max_body_bytes: u64,
    heal_stale_tokens: bool,
    etiquette: etiquette::Etiquette,
    /// Where clients reach this wiki, for redirects to come back through
    /// the proxy.
    path_prefix: String,
    /// `/w` for `/w/api.php`: where `index.php` and `rest.php` are.
    script_dir: String,
    /// The wiki's names of the pages `index.php` must not reach, read at
    /// the first page request.
    special_pages: tokio::sync::OnceCell<crate::mediawiki::titles::SpecialPages>,
}

/// What the proxy adds to one client request, decided once.
#[derive(Debug, Clone, Copy)]
struct Plan {
    add_assert: bool,
    add_maxlag: bool,
    is_write: bool,
}

/// What a forwarded request came to, for the request log.
struct Outcome {
    response: Response<ResponseBody>,
    action: String,
    replayed: bool,
}

impl Proxy {
    pub fn new(
        site: &SiteSettings,
        server: &ServerSettings,
        http: reqwest::Client,
        sessions: Arc<SessionManager>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            http,
            api_url: site.wiki.api_url.clone(),
            sessions,
            metrics,
            max_replay_body_bytes: server.max_replay_body_bytes,
            timeout: site.wiki.timeout,
            user_agent: site.wiki.user_agent.clone(),
            policy: site.policy.clone(),
            max_body_bytes: server.max_body_bytes,
            heal_stale_tokens: site.session.heal_stale_csrf,
            etiquette: etiquette::Etiquette::new(&site.etiquette),
            path_prefix: site.path_prefix.clone(),
            script_dir: site.script_dir().to_owned(),
            special_pages: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<ResponseBody> {
        let started = Instant::now();
        // A guard: the request may be dropped mid-way when its client goes.
        let _in_flight = InFlight::enter(&self.metrics);
        let method = request.method().clone();
        let (response, action, replayed) = match self.forward(request).await {
            Ok(outcome) => (outcome.response, outcome.action, outcome.replayed),
            Err((err, action)) => (err.into_response(), action, false),
        };
        self.record(started, &method, &action, &response, replayed);
        response
    }

    /// Counts and logs one answered request.
    fn record(
        &self,
        started: Instant,
        method: &Method,
        action: &str,
        response: &Response<ResponseBody>,
        replayed: bool,
    ) {
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        self.metrics
            .requests
            .get_or_create(&StatusLabels { status })
            .inc();
        self.metrics.request_duration.observe(elapsed.as_secs_f64());
        tracing::info!(
            target: "mw_auth_proxy::request",
            %method,
            action = %action,
            status,
            duration_ms = elapsed.as_millis() as u64,
            replayed,
        );
    }

    async fn forward(&self, request: Request<Incoming>) -> Result<Outcome, (ProxyError, String)> {
        let (parts, body) = request.into_parts();
        let unknown_action = || "?".to_owned();
        if body
            .size_hint()
            .exact()
            .is_some_and(|length| length > self.max_body_bytes)
        {
            return Err((
                ProxyError::RequestTooLarge(self.max_body_bytes),
                unknown_action(),
            ));
        }
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        let kind = BodyKind::of(&parts.method, content_type);
        let too_large = Arc::new(AtomicBool::new(false));
        let limit = body::BodyLimit {
            max: self.max_body_bytes,
            exceeded: too_large.clone(),
        };
        let mut body = RequestBody::read(body, self.max_replay_body_bytes, limit)
            .await
            .map_err(|err| (ProxyError::BadRequest(err.to_string()), unknown_action()))?;
        let params = self
            .read_params(parts.uri.query(), &kind, &body)
            .await
            .map_err(|err| (err, unknown_action()))?;
        let action = loggable(params.action());
        if let Some(refusal) = guard::check(&params, &parts.headers) {
            return refuse(refusal, action);
        }
        if let Some(denied) = policy::check(&self.policy, &params) {
            return Err((denied.into(), action));
        }
        // A client that asserts on its own keeps its choice; everyone else
        // gets `assertuser`, so a lost session fails loudly instead of
        // quietly running as an anonymous user.
        let plan = Plan {
            add_assert: !params.contains("assert") && !params.contains("assertuser"),
            add_maxlag: !params.contains("maxlag"),
            is_write: policy::is_write(&params),
        };
        let mut etiquette_replays = 0;

        let mut session = self
            .sessions
            .current()
            .await
            .map_err(|err| (err.into(), action.clone()))?;
        let mut stopped = match &kind {
            BodyKind::Multipart { boundary } if !body.is_replayable() => body.inspect(
                boundary.clone(),
                params.clone(),
                parts.headers.clone(),
                self.policy.clone(),
            ),
            _ => None,
        };
        let mut query = parts.uri.query().map(Cow::Borrowed);
        let mut session_replays = 0;
        // What made the proxy replay, for the client's diagnostic header.
        let mut replay_causes: Vec<&'static str> = Vec::new();
        // The session generation a token was last renewed for: once per
        // session is enough, and a wrong token is not fetched forever.
        let mut token_renewed_for = None;
        loop {
            let (upstream, lost) = match self
                .send(&parts, query.as_deref(), &mut body, &mut session, &plan)
                .await
            {
                Ok(answered) => answered,
                // An upload stopped by its inspection fails on the way out;
                // the reason is the inspection's, not the wiki's.
                Err(err) => {
                    return match stopped.as_mut().and_then(|stopped| stopped.try_recv().ok()) {
                        Some(Stopped::Refused(refusal)) => refuse(refusal, action),
                        Some(Stopped::Denied(denied)) => Err((denied.into(), action)),
                        Some(Stopped::Malformed(why)) => Err((ProxyError::BadRequest(why), action)),
                        None if too_large.load(Ordering::SeqCst) => {
                            Err((ProxyError::RequestTooLarge(self.max_body_bytes), action))
                        }
                        None => Err((err, action)),
                    };
                }
            };
            // Lagged, read-only or overloaded: everyone pauses; this request
            // is replayed after the pause if that is safe.
            if let Some(slow_down) = etiquette::slow_down(&upstream) {
                self.etiquette.pause(slow_down.wait);
                self.metrics.paused(slow_down.cause);
                let safe = slow_down.before_execution || !plan.is_write;
                if safe && body.is_replayable() && etiquette_replays < MAX_ETIQUETTE_REPLAYS {
                    etiquette_replays += 1;
                    self.metrics.replayed(slow_down.cause);
                    replay_causes.push(slow_down.cause);
                    continue;
                }
                let mut response = client_response(upstream);
                mark_replayed(&mut response, &replay_causes);
                if !response.headers().contains_key(http::header::RETRY_AFTER) {
                    response.headers_mut().insert(
                        http::header::RETRY_AFTER,
                        HeaderValue::from(slow_down.wait.as_secs().max(1)),
                    );
                }
                return Ok(Outcome {
                    response,
                    action,
                    replayed: !replay_causes.is_empty(),
                });
            }
            if let Some(code) = lost.filter(|_| body.is_replayable())
                && session_replays < MAX_SESSION_REPLAYS
            {
                session = self
                    .sessions
                    .replace(session.generation)
                    .await
                    .map_err(|err| (err.into(), action.clone()))?;
                self.metrics.replayed(code);
                session_replays += 1;
                replay_causes.push(code);
                continue;
            }
            // A token from a session the proxy has since replaced.
            if self.heal_stale_tokens
                && body.is_replayable()
                && token_renewed_for != Some(session.generation)
                && has_error(&upstream, "badtoken")
            {
                token_renewed_for = Some(session.generation);
                match self
                    .renew_token(&params, query.as_deref(), &kind, &body, &session)
                    .await
                {
                    TokenRenewal::Renewed(renewed) => {
                        query = renewed.query.map(Cow::Owned).or(query);
                        if let Some(new_body) = renewed.body {
                            body = RequestBody::Buffered(new_body);
                        }
                        self.metrics.replayed("badtoken");
                        self.metrics.tokens_renewed.inc();
                        replay_causes.push("badtoken");
                        continue;
                    }
                    // Replay in the next session, where the token is renewed.
                    TokenRenewal::SessionLost if session_replays < MAX_SESSION_REPLAYS => {
                        session = self
                            .sessions
                            .replace(session.generation)
                            .await
                            .map_err(|err| (err.into(), action.clone()))?;
                        session_replays += 1;
                        continue;
                    }
                    TokenRenewal::SessionLost | TokenRenewal::NotPossible => {}
                }
            }
            let mut response = client_response(upstream);
            mark_replayed(&mut response, &replay_causes);
            return Ok(Outcome {
                response,
                action,
                replayed: !replay_causes.is_empty(),
            });
        }
    }

    async fn read_params(
        &self,
        query: Option<&str>,
        kind: &BodyKind,
        body: &RequestBody,
    ) -> Result<Params, ProxyError> {
        match (body.buffered(), kind) {
            (Some(bytes), _) => Params::from_request(query, kind, bytes)
                .await
                .map_err(|err| ProxyError::BadRequest(err.to_string())),
            // A large multipart body (an upload) is checked as it streams.
            (None, BodyKind::Opaque | BodyKind::Multipart { .. }) => Ok(Params::from_query(query)),
            // Parameters the proxy cannot read could hide `action=logout`;
            // a form this large is no API request anyway.
            (None, BodyKind::UrlEncoded) => {
                Err(ProxyError::BodyTooLarge(self.max_replay_body_bytes))
            }
        }
    }

    /// Sends one attempt, in the newest session there is when its turn
    /// comes: a request that waited for a free slot while the session was
    /// lost goes out in the new one instead of failing at the wiki first.
    /// Returns the answer and, if it failed for want of the session, the
    /// error code; the loss is reported before the turn passes on, so the
    /// next request in line already waits for the new session.
    async fn send(
        &self,
        parts: &http::request::Parts,
        query: Option<&str>,
        body: &mut RequestBody,
        session: &mut Arc<Session>,
        plan: &Plan,
    ) -> Result<(reqwest::Response, Option<&'static str>), ProxyError> {
        let turn = self.etiquette.take_turn(plan.is_write).await;
        *session = self.sessions.newest(session).await?;
        let mut url = self.api_url.clone();
        let additions = [
            plan.add_assert.then(|| session.assert_param()),
            self.etiquette.maxlag_param().filter(|_| plan.add_maxlag),
        ];
        let mut full_query = query.unwrap_or("").to_owned();
        for addition in additions.into_iter().flatten() {
            if !full_query.is_empty() {
                full_query.push('&');
            }
            full_query.push_str(addition);
        }
        url.set_query((!full_query.is_empty()).then_some(full_query.as_str()));

        let mut headers = headers::upstream_request_headers(&parts.headers);
        session.authenticate(&mut headers);
        headers.insert(USER_AGENT, self.user_agent_for(&parts.headers));
        if self.policy.read_only {
            // MediaWiki then refuses every write module itself.
            headers.insert(policy::PROMISE_NON_WRITE, HeaderValue::from_static("true"));
        }
        let (upstream_body, length) = body.take_for_upstream();
        // A bodiless GET needs no `Content-Length: 0`.
        if let Some(length) = length.filter(|length| *length > 0 || parts.method != Method::GET) {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
        let upstream = self
            .send_upstream(parts.method.clone(), url, headers, upstream_body)
            .await?;
        let lost = self.failed_for_want_of_session(&upstream, session);
        drop(turn);
        Ok((upstream, lost))
    }

    /// Sends one request to the wiki and times it. The caller holds its
    /// turn from the etiquette.
    async fn send_upstream(
        &self,
        method: Method,
        url: Url,
        headers: http::HeaderMap,
        body: reqwest::Body,
    ) -> Result<reqwest::Response, ProxyError> {
        let request = self
            .http
            .request(method, url)
            .headers(headers)
            .body(body)
            .send();
        let sent = Instant::now();
        let answer = tokio::time::timeout(self.timeout, request).await;
        self.metrics
            .upstream_duration
            .observe(sent.elapsed().as_secs_f64());
        match answer {
            Err(_) => Err(ProxyError::WikiTimeout(self.timeout.as_secs())),
            Ok(Err(err)) if err.is_timeout() => {
                Err(ProxyError::WikiTimeout(self.timeout.as_secs()))
            }
            Ok(Err(err)) => Err(ProxyError::WikiUnreachable(crate::error::chain(
                &err.without_url(),
            ))),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// The operator's agent first (it names who runs the bot), the client's
    /// own after it when there is one.
    fn user_agent_for(&self, client: &http::HeaderMap) -> HeaderValue {
        let combined = client
            .get(USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
            .filter(|agent| !agent.is_empty())
            .map(|agent| format!("{} {agent}", self.user_agent));
        combined
            .and_then(|agent| HeaderValue::from_str(&agent).ok())
            .or_else(|| HeaderValue::from_str(&self.user_agent).ok())
            .unwrap_or_else(|| HeaderValue::from_static("mw-auth-proxy"))
    }

    /// Reads what the answer says about the session, from headers alone,
    /// keeps any cookies it sets, and reports a lost session to the manager.
    /// True when the request failed for want of the session before it ran,
    /// so replaying it is safe; a deleted session cookie alone ends the
    /// session but says nothing about whether the request ran.
    fn failed_for_want_of_session(
        &self,
        upstream: &reqwest::Response,
        session: &Session,
    ) -> Option<&'static str> {
        self.sessions.absorb_cookies(
            session.generation,
            upstream.headers().get_all(SET_COOKIE).iter(),
        );
        let code = upstream
            .headers()
            .get(API_ERROR_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|codes| answers::session_loss_code(codes, true));
        if code.is_some() {
            self.sessions.report_lost(session.generation);
        }
        code
    }
}

/// Counts a request in `requests_in_flight` while it lives.
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn enter(metrics: &'a Metrics) -> Self {
        metrics.in_flight.inc();
        Self(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

impl From<policy::Denied> for ProxyError {
    fn from(denied: policy::Denied) -> Self {
        ProxyError::ActionDenied {
            action: denied.action,
            because: denied.because,
        }
    }
}

fn has_error(upstream: &reqwest::Response, wanted: &str) -> bool {
    upstream
        .headers()
        .get(API_ERROR_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|codes| answers::error_codes(codes).any(|code| code == wanted))
}

fn refuse(refusal: Refusal, action: String) -> Result<Outcome, (ProxyError, String)> {
    match refusal {
        Refusal::Logout => Ok(Outcome {
            // What MediaWiki answers to a logout; the shared session lives on.
            response: json_response(StatusCode::OK, "{}".to_owned()),
            action,
            replayed: false,
        }),
        Refusal::LoginManaged(what) => Err((ProxyError::LoginManaged(what), action)),
        Refusal::CookiesIgnored(what) => Err((ProxyError::CookiesIgnored(what), action)),
    }
}

/// The wiki's answer as the client gets it: same status, headers less the
/// hop-by-hop ones and every cookie, body streamed.
fn client_response(upstream: reqwest::Response) -> Response<ResponseBody> {
    let (mut parts, body) = http::Response::from(upstream).into_parts();
    headers::strip_response_headers(&mut parts.headers);
    // The client's connection has its own protocol version.
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();
    Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
}

/// Names what made the proxy replay the request, if anything did.
fn mark_replayed(response: &mut Response<ResponseBody>, causes: &[&str]) {
    if causes.is_empty() {
        return;
    }
    if let Ok(causes) = HeaderValue::from_str(&causes.join(", ")) {
        response.headers_mut().insert(REPLAYED_HEADER, causes);
    }
}

fn loggable(action: &str) -> String {
    action
        .chars()
        .take(MAX_LOGGED_ACTION)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
