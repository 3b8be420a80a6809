//! The bot-password login flow: login token, `action=login`, then a check
//! with `meta=userinfo` that the wiki really sees the session. Every request
//! starts from an empty cookie jar and carries no `assert`, `assertuser` or
//! `maxlag`: those make a login fail or loop.

use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use http::HeaderValue;
use http::header::{CONTENT_TYPE, COOKIE, DATE, SET_COOKIE};
use tokio::time::Instant;
use url::Url;

use super::jar::CookieJar;
use crate::config::{LoginMethod, LoginSettings};
use crate::mediawiki::answers::{self, AnswerError, LoginAnswer};

/// Login answers are small; anything bigger is not api.php.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A session the wiki has confirmed.
#[derive(Debug, Clone)]
pub struct Established {
    /// The user name as the wiki spells it, for `assertuser`.
    pub user: String,
    pub jar: CookieJar,
    /// When the wiki accepted the login, by the wiki's own clock (its `Date`
    /// header), to tell tokens of earlier sessions by their timestamp.
    pub wiki_time: Option<SystemTime>,
    /// `Authorization: Bearer ...` for OAuth 2, instead of cookies.
    pub authorization: Option<HeaderValue>,
}

/// Why a login did not give a session. Messages are shown to operators
/// (`/readyz`, logs) and never carry the password or a cookie.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    // The causes are in the message: reqwest's own says only "error
    // sending request", and operators read this in /readyz.
    #[error("the wiki is unreachable: {}", crate::error::chain(.0))]
    Unreachable(reqwest::Error),
    #[error("the wiki answered HTTP {status} to the {step} request")]
    HttpStatus { step: &'static str, status: u16 },
    #[error("unexpected answer to the {step} request: {source}")]
    Answer {
        step: &'static str,
        #[source]
        source: AnswerError,
    },
    #[error("the wiki refused the login: {0}")]
    Rejected(String),
    #[error("the wiki throttled the login: {reason}")]
    Throttled { wait: Duration, reason: String },
    #[error("the wiki refused the login token twice: {0}")]
    TokenRefused(String),
    #[error(
        "the login succeeded but the wiki does not see the session (it says the user is `{0}`); check its cookie settings, e.g. $wgCookieSecure on a plain-http wiki"
    )]
    SessionNotKept(String),
}

impl LoginError {
    /// A short label for metrics and alerts.
    pub fn kind(&self) -> &'static str {
        match self {
            LoginError::Unreachable(_) => "unreachable",
            LoginError::HttpStatus { .. } => "http_status",
            LoginError::Answer { .. } => "unexpected_answer",
            LoginError::Rejected(_) => "rejected",
            LoginError::Throttled { .. } => "throttled",
            LoginError::TokenRefused(_) => "token_refused",
            LoginError::SessionNotKept(_) => "session_not_kept",
        }
    }

    /// What the operator can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            LoginError::Unreachable(_) => {
                "check wiki.api_url and that the wiki can be reached from here (DNS, firewall, proxy)"
            }
            LoginError::HttpStatus { .. } | LoginError::Answer { .. } => {
                "check that wiki.api_url points at the wiki's api.php (open it in a browser: it shows the API help)"
            }
            LoginError::Rejected(_) => {
                "check login.username (User@BotName, as Special:BotPasswords shows it) and the bot password; \
                 a locked or expired bot password must be reset on Special:BotPasswords"
            }
            LoginError::Throttled { .. } => {
                "too many failed logins: the proxy waits as long as the wiki asks; fix the credentials meanwhile"
            }
            LoginError::TokenRefused(_) => {
                "the wiki does not keep the session cookie between requests: check its cookie and session settings"
            }
            LoginError::SessionNotKept(_) => {
                "the wiki does not accept the session cookie: on a plain-http wiki, check $wgCookieSecure and $wgForceHTTPS"
            }
        }
    }

    /// How long the wiki asked us to wait, when it said.
    pub fn wait_asked(&self) -> Option<Duration> {
        match self {
            LoginError::Throttled { wait, .. } => Some(*wait),
            _ => None,
        }
    }
}

/// Logs in to one wiki with a bot password.
#[derive(Debug)]
pub struct WikiLogin {
    pub(super) http: reqwest::Client,
    pub(super) api_url: Url,
    /// Replaced when the configuration is reloaded; read (and copied) once
    /// per login, never held across an await.
    credentials: RwLock<LoginSettings>,
    /// The last TOTP window a code was sent for (clientlogin with 2FA).
    pub(super) last_totp_window: std::sync::Mutex<Option<u64>>,
}

impl WikiLogin {
    pub fn new(http: reqwest::Client, api_url: Url, credentials: LoginSettings) -> Self {
        Self {
            http,
            api_url,
            credentials: RwLock::new(credentials),
            last_totp_window: std::sync::Mutex::new(None),
        }
    }

    /// Uses `credentials` from the next login on; returns whether they
    /// differ from the ones in use.
    pub fn set_credentials(&self, credentials: LoginSettings) -> bool {
        let mut current = self
            .credentials
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let changed = current.method != credentials.method
            || current.username != credentials.username
            || current.password != credentials.password
            || current.totp_secret != credentials.totp_secret;
        *current = credentials;
        changed
    }

    pub(super) fn credentials(&self) -> LoginSettings {
        self.credentials
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One full login. A refused token is retried once from scratch, as
    /// MediaWiki asks; every other failure is returned for the caller to
    /// back off on.
    pub async fn log_in(&self) -> Result<Established, LoginError> {
        match self.credentials().method {
            LoginMethod::BotPassword => self.bot_password_login().await,
            LoginMethod::ClientLogin => self.client_login().await,
            LoginMethod::OAuth2 => self.oauth2_check().await,
        }
    }

    async fn bot_password_login(&self) -> Result<Established, LoginError> {
        let mut retried = false;
        loop {
            let mut jar = CookieJar::default();
            let token = self.login_token(&mut jar).await?;
            let (answer, wiki_time) = self.submit(&mut jar, &token).await?;
            match answer {
                LoginAnswer::Success { user } => {
                    self.confirm(&mut jar, &user).await?;
                    return Ok(Established {
                        user,
                        jar,
                        wiki_time,
                        authorization: None,
                    });
                }
                LoginAnswer::FreshTokenNeeded { reason } if !retried => {
                    tracing::info!(%reason, "login token refused; starting over once");
                    retried = true;
                }
                LoginAnswer::FreshTokenNeeded { reason } => {
                    return Err(LoginError::TokenRefused(reason));
                }
                LoginAnswer::Throttled { wait, reason } => {
                    return Err(LoginError::Throttled { wait, reason });
                }
                LoginAnswer::Rejected { reason } => return Err(LoginError::Rejected(reason)),
            }
        }
    }

    /// Checks that a saved session still works as `user`.
    pub async fn resume(
        &self,
        mut jar: CookieJar,
        user: String,
    ) -> Result<Established, LoginError> {
        self.confirm(&mut jar, &user).await?;
        Ok(Established {
            user,
            jar,
            wiki_time: None,
            authorization: None,
        })
    }

    pub(super) async fn login_token(&self, jar: &mut CookieJar) -> Result<String, LoginError> {
        let step = "login token";
        let url = self.url(&[("action", "query"), ("meta", "tokens"), ("type", "login")]);
        let (body, _) = self.send(step, self.http.get(url), jar).await?;
        answers::login_token(&body).map_err(|source| LoginError::Answer { step, source })
    }

    async fn submit(
        &self,
        jar: &mut CookieJar,
        token: &str,
    ) -> Result<(LoginAnswer, Option<SystemTime>), LoginError> {
        let step = "login";
        let credentials = self.credentials();
        let fields = [
            ("lgname", credentials.username.as_str()),
            ("lgpassword", credentials.password.expose()),
            ("lgtoken", token),
        ];
        let (body, wiki_time) = self.post(step, jar, &fields).await?;
        let answer =
            answers::login_answer(&body).map_err(|source| LoginError::Answer { step, source })?;
        Ok((answer, wiki_time))
    }

    /// POSTs `action=<step>` with `fields` as a form. Credentials only ever
    /// travel in a POST body: MediaWiki refuses them in the query string
    /// (`mustpostparams`), and URLs end up in logs.
    pub(super) async fn post(
        &self,
        step: &'static str,
        jar: &mut CookieJar,
        fields: &[(&str, &str)],
    ) -> Result<(Bytes, Option<SystemTime>), LoginError> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("action", step)
            .extend_pairs(fields)
            .append_pair("format", "json")
            .append_pair("formatversion", "2")
            .append_pair("errorformat", "plaintext")
            .finish();
        let request = self
            .http
            .post(self.api_url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form);
        self.send(step, request, jar).await
    }

    /// Checks that the wiki sees the session as `user`. The same request
    /// asks for a csrf token: MediaWiki creates the session's token secret
    /// on the first token request, and if many client requests raced to do
    /// that on a fresh session, the last to save would invalidate the tokens
    /// the others handed out.
    pub(super) async fn confirm(&self, jar: &mut CookieJar, user: &str) -> Result<(), LoginError> {
        let step = "userinfo";
        let url = self.url(&[("action", "query"), ("meta", "userinfo|tokens")]);
        let (body, _) = self.send(step, self.http.get(url), jar).await?;
        let info =
            answers::user_info(&body).map_err(|source| LoginError::Answer { step, source })?;
        if info.is_anonymous() || info.name != user {
            return Err(LoginError::SessionNotKept(info.name));
        }
        Ok(())
    }

    pub(super) fn url(&self, params: &[(&str, &str)]) -> Url {
        let mut url = self.api_url.clone();
        url.query_pairs_mut()
            .extend_pairs(params)
            .append_pair("format", "json")
            .append_pair("formatversion", "2")
            .append_pair("errorformat", "plaintext");
        url
    }

    /// Sends one login-flow request with the jar's cookies, keeps the cookies
    /// it sets, and returns its (bounded) body and the wiki's `Date`.
    pub(super) async fn send(
        &self,
        step: &'static str,
        request: reqwest::RequestBuilder,
        jar: &mut CookieJar,
    ) -> Result<(Bytes, Option<SystemTime>), LoginError> {
        let request = match jar.header() {
            Some(cookies) => request.header(COOKIE, cookies),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|err| LoginError::Unreachable(err.without_url()))?;
        let now = Instant::now();
        for set_cookie in response.headers().get_all(SET_COOKIE) {
            jar.apply(set_cookie.as_bytes(), now);
        }
        let status = response.status();
        if !status.is_success() {
            return Err(LoginError::HttpStatus {
                step,
                status: status.as_u16(),
            });
        }
        let wiki_time = response
            .headers()
            .get(DATE)
            .and_then(|date| date.to_str().ok())
            .and_then(|date| httpdate::parse_http_date(date).ok());
        Ok((read_bounded(response, step).await?, wiki_time))
    }
}

async fn read_bounded(
    response: reqwest::Response,
    step: &'static str,
) -> Result<Bytes, LoginError> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| LoginError::Unreachable(err.without_url()))?;
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(LoginError::Answer {
                step,
                source: AnswerError::Unexpected("answer larger than 1 MiB".into()),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}
