//! Renewing a stale token in a request: fetching a token of the same type
//! for the current session and putting it in place of the old one (the
//! pure rewriting is in `token`).

use bytes::Bytes;

use super::body::RequestBody;
use super::{Proxy, token};
use crate::mediawiki::params::{BodyKind, Params};
use crate::session::Session;

pub(super) struct RenewedToken {
    pub(super) query: Option<String>,
    pub(super) body: Option<Bytes>,
}

pub(super) enum TokenRenewal {
    Renewed(RenewedToken),
    /// The session died while the token was fetched.
    SessionLost,
    /// Not a token of an earlier session, or no new one to be had.
    NotPossible,
}

pub(super) enum TokenFetch {
    Token(String),
    SessionLost,
    Failed,
}

impl Proxy {
    /// A request rewritten with a token valid for `session`, if the request
    /// carried a token issued before `session` began and a new one could be
    /// had.
    pub(super) async fn renew_token(
        &self,
        params: &Params,
        query: Option<&str>,
        kind: &BodyKind,
        body: &RequestBody,
        session: &Session,
    ) -> TokenRenewal {
        let issued = params.get("token").and_then(token::issue_time);
        if issued.is_none_or(|issued| issued > session.wiki_login_time) {
            return TokenRenewal::NotPossible;
        }
        let token_type = token::token_type(params.action());
        let new_token = match self.fetch_token(session, token_type).await {
            TokenFetch::Token(token) => token,
            TokenFetch::SessionLost => return TokenRenewal::SessionLost,
            TokenFetch::Failed => return TokenRenewal::NotPossible,
        };
        let new_query = query.and_then(|query| token::replace_in_urlencoded(query, &new_token));
        let new_body = match (kind, body.buffered()) {
            (BodyKind::UrlEncoded, Some(bytes)) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|form| token::replace_in_urlencoded(form, &new_token))
                .map(Bytes::from),
            (BodyKind::Multipart { boundary }, Some(bytes)) => {
                token::replace_in_multipart(bytes, boundary, &new_token)
            }
            _ => None,
        };
        if new_query.is_none() && new_body.is_none() {
            return TokenRenewal::NotPossible;
        }
        tracing::debug!(token_type, "replaying with a token of the new session");
        TokenRenewal::Renewed(RenewedToken {
            query: new_query,
            body: new_body,
        })
    }

    /// A token of `token_type` for `session`. It asserts the user like any
    /// forwarded request: a session that died meanwhile would otherwise
    /// hand out the anonymous token.
    async fn fetch_token(&self, session: &Session, token_type: &str) -> TokenFetch {
        let mut url = self.api_url.clone();
        url.query_pairs_mut()
            .append_pair("action", "query")
            .append_pair("meta", "tokens")
            .append_pair("type", token_type)
            .append_pair("format", "json");
        let query = format!("{}&{}", url.query().unwrap_or(""), session.assert_param());
        url.set_query(Some(&query));
        let mut headers = http::HeaderMap::new();
        session.authenticate(&mut headers);
        let request = self.http.get(url).headers(headers);
        let response = match tokio::time::timeout(self.timeout, request.send()).await {
            Ok(Ok(response)) => response,
            _ => return TokenFetch::Failed,
        };
        if self
            .failed_for_want_of_session(&response, session)
            .is_some()
        {
            return TokenFetch::SessionLost;
        }
        let Ok(json) = response.json::<serde_json::Value>().await else {
            return TokenFetch::Failed;
        };
        match json
            .pointer(&format!("/query/tokens/{token_type}token"))
            .and_then(serde_json::Value::as_str)
        {
            Some(token) if token::issue_time(token).is_some() => {
                TokenFetch::Token(token.to_owned())
            }
            _ => TokenFetch::Failed,
        }
    }
}
