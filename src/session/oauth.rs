//! An owner-only OAuth 2 consumer: no login at all. The access token goes
//! in `Authorization: Bearer` on every request; "logging in" is checking
//! that the wiki accepts it, and for whom.

use http::HeaderValue;
use http::header::AUTHORIZATION;

use super::jar::CookieJar;
use super::login::{Established, LoginError, WikiLogin};
use crate::mediawiki::answers::{self, AnswerError};

impl WikiLogin {
    pub(super) async fn oauth2_check(&self) -> Result<Established, LoginError> {
        let credentials = self.credentials();
        let step = "userinfo";
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", credentials.password.expose())).map_err(
                |_| LoginError::Rejected("the access token is not one line of text".into()),
            )?;
        authorization.set_sensitive(true);
        let url = self.url(&[("action", "query"), ("meta", "userinfo")]);
        let request = self
            .http
            .get(url)
            .header(AUTHORIZATION, authorization.clone());
        let mut jar = CookieJar::default();
        let (body, wiki_time) = match self.send(step, request, &mut jar).await {
            Err(LoginError::HttpStatus { status: 401, .. }) => {
                return Err(LoginError::Rejected(
                    "the wiki refused the OAuth 2 access token (HTTP 401)".into(),
                ));
            }
            other => other?,
        };
        let info = match answers::user_info(&body) {
            Ok(info) => info,
            Err(AnswerError::Api { code, info }) if code.starts_with("mwoauth") => {
                return Err(LoginError::Rejected(format!(
                    "the wiki refused the OAuth 2 access token: {info} ({code})"
                )));
            }
            Err(source) => return Err(LoginError::Answer { step, source }),
        };
        if info.is_anonymous() {
            return Err(LoginError::Rejected(
                "the wiki ignored the OAuth 2 access token (is the OAuth extension installed?)"
                    .into(),
            ));
        }
        if !credentials.username.is_empty() && credentials.username != info.name {
            return Err(LoginError::Rejected(format!(
                "the access token is for `{}`, not login.username `{}`",
                info.name, credentials.username
            )));
        }
        Ok(Established {
            user: info.name,
            // No cookies: the wiki's own may come and go, the token stays.
            jar: CookieJar::default(),
            wiki_time,
            authorization: Some(authorization),
        })
    }
}
