//! `index.php` and `rest.php`, forwarded for a main account's session
//! (clientlogin), which works there; a bot password's does not. The same
//! rules hold as for `api.php`: the client's own cookies and credentials
//! never reach the wiki, the wiki's cookies never reach the client, nothing
//! may end or replace the session (the logout, login and credential
//! special pages are refused by their names on this wiki), and the
//! operator's policy applies. A page answer carries no error code; the wiki
//! shows a lost session by deleting its cookie, and then a read is replayed
//! in a new session (a write is not: it may have run as anonymous).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, SET_COOKIE, USER_AGENT};
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::{BodyLimit, RequestBody};
use super::{InFlight, MAX_SESSION_REPLAYS, Proxy, client_response, headers, mark_replayed};
use crate::error::{ProxyError, ResponseBody};
use crate::mediawiki::params::{BodyKind, Params};
use crate::mediawiki::titles::{SITEINFO_QUERY, SpecialPages};
use crate::session::Session;

/// Why a page request was replayed: the wiki deleted the session cookie.
const SESSION_ENDED: &str = "session-ended";

/// `index.php` actions that only read; the rest are refused in read-only
/// mode.
const READING_ACTIONS: [&str; 7] = ["", "view", "raw", "history", "info", "render", "credits"];

impl Proxy {
    /// Forwards a request for `script` (`index.php` or `rest.php`), with
    /// `path_info` the part of the path after it.
    pub async fn handle_page(
        &self,
        request: Request<Incoming>,
        script: &'static str,
        path_info: &str,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        let _in_flight = InFlight::enter(&self.metrics);
        let method = request.method().clone();
        let response = match self.forward_page(request, script, path_info).await {
            Ok(response) => response,
            Err(err) => err.into_response(),
        };
        let replayed = response.headers().contains_key(super::REPLAYED_HEADER);
        self.record(started, &method, script, &response, replayed);
        response
    }

    async fn forward_page(
        &self,
        request: Request<Incoming>,
        script: &'static str,
        path_info: &str,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let (parts, body) = request.into_parts();
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        let kind = BodyKind::of(&parts.method, content_type);
        let limit = BodyLimit {
            max: self.max_body_bytes,
            exceeded: Arc::new(AtomicBool::new(false)),
        };
        let mut body = RequestBody::read(body, self.max_replay_body_bytes, limit)
            .await
            .map_err(|err| ProxyError::BadRequest(err.to_string()))?;
        // The title may come in the query, a form body or the path.
        let params = match (body.buffered(), &kind) {
            (Some(bytes), BodyKind::UrlEncoded) => {
                Params::from_request(parts.uri.query(), &kind, bytes)
                    .await
                    .map_err(|err| ProxyError::BadRequest(err.to_string()))?
            }
            (None, BodyKind::UrlEncoded) => {
                return Err(ProxyError::BodyTooLarge(self.max_replay_body_bytes));
            }
            _ => Params::from_query(parts.uri.query()),
        };
        self.check_page_policy(&parts.method, script, &params)?;
        let mut session = self.sessions.current().await?;
        if script == "index.php" {
            self.refuse_session_pages(&params, path_info, &session)
                .await?;
        }

        let mut url = self.api_url.clone();
        url.set_path(&format!("{}/{script}{path_info}", self.script_dir));
        url.set_query(parts.uri.query());
        let reads = matches!(parts.method, Method::GET | Method::HEAD);
        let mut replays = 0;
        loop {
            // As for the API: the newest session when the turn comes.
            let turn = self.etiquette.take_turn(!reads).await;
            session = self.sessions.newest(&session).await?;
            let mut upstream_headers = headers::upstream_request_headers(&parts.headers);
            session.authenticate(&mut upstream_headers);
            upstream_headers.insert(USER_AGENT, self.user_agent_for(&parts.headers));
            let (upstream_body, length) = body.take_for_upstream();
            if let Some(length) = length.filter(|length| *length > 0 || !reads) {
                upstream_headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
            }
            let upstream = self
                .send_upstream(
                    parts.method.clone(),
                    url.clone(),
                    upstream_headers,
                    upstream_body,
                )
                .await?;
            // The wiki deletes the cookie of a session it no longer has, and
            // answered as if to an anonymous user: a read is asked again in
            // a new session. A write may have run, so its answer stands.
            let ended = self.sessions.absorb_cookies(
                session.generation,
                upstream.headers().get_all(SET_COOKIE).iter(),
            );
            drop(turn);
            if ended && reads && body.is_replayable() && replays < MAX_SESSION_REPLAYS {
                session = self.sessions.replace(session.generation).await?;
                self.metrics.replayed(SESSION_ENDED);
                replays += 1;
                continue;
            }
            let mut response = client_response(upstream);
            if let Some(location) = response.headers().get(LOCATION)
                && let Some(rewritten) = self.proxied_location(location)
            {
                response.headers_mut().insert(LOCATION, rewritten);
            }
            mark_replayed(&mut response, &vec![SESSION_ENDED; replays as usize]);
            return Ok(response);
        }
    }

    /// The operator's policy lists API modules, so an allow-list leaves no
    /// page open; read-only mode lets reading through, and a denied module
    /// denies the `index.php` action of the same name.
    fn check_page_policy(
        &self,
        method: &Method,
        script: &'static str,
        params: &Params,
    ) -> Result<(), ProxyError> {
        let denied = |because| {
            Err(ProxyError::PageDenied {
                what: script.to_owned(),
                because,
            })
        };
        if !self.policy.allow_actions.is_empty() {
            return denied("policy.allow_actions names API modules only");
        }
        let actions = || {
            params
                .every("action")
                .map(|action| if action == "submit" { "edit" } else { action })
        };
        if self.policy.read_only {
            let reads = matches!(*method, Method::GET | Method::HEAD)
                && (script != "index.php"
                    || actions().all(|action| READING_ACTIONS.contains(&action)));
            if !reads {
                return denied("policy.read_only");
            }
        }
        if script == "index.php"
            && let Some(action) = actions().find(|action| {
                self.policy
                    .deny_actions
                    .iter()
                    .any(|denied| denied == action)
            })
        {
            return Err(ProxyError::PageDenied {
                what: format!("index.php?action={action}"),
                because: "policy.deny_actions",
            });
        }
        Ok(())
    }

    /// Refuses the special pages that would end or replace the session,
    /// named in `title` or in the path (`index.php/Special:UserLogout`).
    async fn refuse_session_pages(
        &self,
        params: &Params,
        path_info: &str,
        session: &Session,
    ) -> Result<(), ProxyError> {
        let special_pages = self
            .special_pages
            .get_or_try_init(|| self.fetch_special_pages(session))
            .await?;
        let from_path = path_info
            .strip_prefix('/')
            .map(|title| percent_encoding::percent_decode_str(title).decode_utf8_lossy());
        let refused = params
            .every("title")
            .chain(from_path.as_deref())
            .find_map(|title| special_pages.refused(title));
        match refused {
            Some(page) => Err(ProxyError::LoginManaged(format!("Special:{page}"))),
            None => Ok(()),
        }
    }

    /// The wiki's names for the special namespace and pages, read once.
    async fn fetch_special_pages(&self, session: &Session) -> Result<SpecialPages, ProxyError> {
        let mut url = self.api_url.clone();
        url.set_query(Some(SITEINFO_QUERY));
        let mut request_headers = http::HeaderMap::new();
        // A private wiki shows its names to members only.
        session.authenticate(&mut request_headers);
        request_headers.insert(
            USER_AGENT,
            HeaderValue::from_str(&self.user_agent)
                .unwrap_or_else(|_| HeaderValue::from_static("mw-auth-proxy")),
        );
        let turn = self.etiquette.take_turn(false).await;
        let upstream = self
            .send_upstream(Method::GET, url, request_headers, reqwest::Body::from(""))
            .await?;
        drop(turn);
        let unreadable = |why: String| {
            ProxyError::WikiUnreachable(format!("cannot read the wiki's special page names: {why}"))
        };
        let answer = upstream
            .bytes()
            .await
            .map_err(|err| unreadable(crate::error::chain(&err.without_url())))?;
        SpecialPages::from_siteinfo(&answer).map_err(|err| unreadable(err.to_string()))
    }

    /// A redirect to the wiki's own scripts, made to come back through the
    /// proxy: the same path under this wiki's prefix, relative to the
    /// proxy. Redirects elsewhere are left as they are.
    fn proxied_location(&self, location: &HeaderValue) -> Option<HeaderValue> {
        let location = location.to_str().ok()?;
        let target = self.api_url.join(location).ok()?;
        if target.origin() != self.api_url.origin() {
            return None;
        }
        let script = target.path().strip_prefix(self.script_dir.as_str())?;
        let known = ["/index.php", "/rest.php", "/api.php"]
            .iter()
            .any(|name| script == *name || script.starts_with(&format!("{name}/")));
        if !known {
            return None;
        }
        let mut proxied = format!("{}{}", self.path_prefix, target.path());
        if let Some(query) = target.query() {
            proxied.push('?');
            proxied.push_str(query);
        }
        HeaderValue::from_str(&proxied).ok()
    }
}
