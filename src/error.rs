//! The proxy's own failures and the one place they become client responses.
//! They take MediaWiki's shape (`{"error":{"code","info"}}` plus the
//! `MediaWiki-API-Error` header) so every API client already understands
//! them, with an HTTP status that says what kind of failure it is.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::access::Denied;
use crate::mediawiki::answers::API_ERROR_HEADER;
use crate::session::NotReady;

/// Any body the proxy sends to a client.
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no API here: this proxy serves {0}")]
    UnknownPath(String),
    #[error("the proxy is not logged in to the wiki: {}", .0.reason)]
    NotLoggedIn(#[from] NotReady),
    #[error("cannot reach the wiki: {0}")]
    WikiUnreachable(String),
    #[error("the wiki did not answer within {0} s")]
    WikiTimeout(u64),
    #[error(
        "this proxy logs in to the wiki itself; `{0}` is not available through it (send requests without logging in)"
    )]
    LoginManaged(String),
    #[error(
        "`{0}` makes MediaWiki ignore the session cookies, so the request would not run as the bot; send it without `{0}`"
    )]
    CookiesIgnored(String),
    #[error("cannot read the request: {0}")]
    BadRequest(String),
    #[error("`action={action}` is not allowed through this proxy ({because})")]
    ActionDenied {
        action: String,
        because: &'static str,
    },
    #[error("`{what}` is not allowed through this proxy ({because})")]
    PageDenied { what: String, because: &'static str },
    #[error("the request body is larger than {0} bytes (server.max_body_bytes)")]
    RequestTooLarge(u64),
    #[error("access denied: {0}")]
    AccessDenied(#[from] Denied),
    #[error(
        "a form body larger than {0} bytes cannot be checked by the proxy; raise server.max_replay_body_bytes or send it as multipart/form-data"
    )]
    BodyTooLarge(usize),
}

impl ProxyError {
    /// The MediaWiki-style error code and the HTTP status, decided here and
    /// nowhere else.
    fn code_and_status(&self) -> (&'static str, StatusCode) {
        match self {
            ProxyError::UnknownPath(_) => ("mw-auth-proxy-unknown-path", StatusCode::NOT_FOUND),
            ProxyError::NotLoggedIn(_) => (
                "mw-auth-proxy-not-logged-in",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            ProxyError::WikiUnreachable(_) => {
                ("mw-auth-proxy-wiki-unreachable", StatusCode::BAD_GATEWAY)
            }
            ProxyError::WikiTimeout(_) => {
                ("mw-auth-proxy-wiki-timeout", StatusCode::GATEWAY_TIMEOUT)
            }
            ProxyError::LoginManaged(_) => ("mw-auth-proxy-login-managed", StatusCode::FORBIDDEN),
            ProxyError::CookiesIgnored(_) => {
                ("mw-auth-proxy-cookies-ignored", StatusCode::BAD_REQUEST)
            }
            ProxyError::BadRequest(_) => ("mw-auth-proxy-bad-request", StatusCode::BAD_REQUEST),
            ProxyError::RequestTooLarge(_) => (
                "mw-auth-proxy-request-too-large",
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            ProxyError::ActionDenied { .. } | ProxyError::PageDenied { .. } => {
                ("mw-auth-proxy-action-denied", StatusCode::FORBIDDEN)
            }
            ProxyError::AccessDenied(Denied::Token) => {
                ("mw-auth-proxy-unauthorized", StatusCode::UNAUTHORIZED)
            }
            ProxyError::AccessDenied(Denied::Address | Denied::Host(_) | Denied::Origin(_)) => {
                ("mw-auth-proxy-forbidden", StatusCode::FORBIDDEN)
            }
            ProxyError::BodyTooLarge(_) => (
                "mw-auth-proxy-body-too-large",
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        }
    }

    pub fn code(&self) -> &'static str {
        self.code_and_status().0
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        let (code, status) = self.code_and_status();
        let body = serde_json::json!({
            "error": { "code": code, "info": self.to_string() }
        });
        let mut response = json_response(status, body.to_string());
        response
            .headers_mut()
            .insert(API_ERROR_HEADER, HeaderValue::from_static(code));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mw-auth-proxy\""),
            );
        }
        response
    }
}

/// An error with its causes, for a message that says what really failed
/// (reqwest's top-level message is only "error sending request").
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// A small JSON response made by the proxy itself.
pub fn json_response(status: StatusCode, json: String) -> Response<ResponseBody> {
    let mut response = Response::new(full_body(json));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

pub fn full_body(content: impl Into<Bytes>) -> ResponseBody {
    Full::new(content.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn errors_are_mediawiki_shaped() {
        let response = ProxyError::WikiTimeout(60).into_response();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            response.headers()[API_ERROR_HEADER],
            "mw-auth-proxy-wiki-timeout"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "mw-auth-proxy-wiki-timeout");
        assert!(json["error"]["info"].as_str().unwrap().contains("60 s"));
    }
}
