//! Reading MediaWiki's answers: the error header that tells a lost session
//! without reading the body, and the login flow's JSON.

use std::time::Duration;

use serde_json::Value;

/// The response header listing the error codes of an API answer, sorted and
/// comma-separated. It is set whatever the body's format.
pub const API_ERROR_HEADER: &str = "mediawiki-api-error";

/// The error codes in a `MediaWiki-API-Error` header value.
pub fn error_codes(header: &str) -> impl Iterator<Item = &str> {
    header
        .split(',')
        .map(str::trim)
        .filter(|code| !code.is_empty())
}

/// The first code in a `MediaWiki-API-Error` header that means the request
/// ran without the session, as a static label. All of these are raised
/// before the module runs, so the request did nothing and replaying it (even
/// a write) cannot apply it twice.
///
/// `readapidenied` means a lost session only on a wiki the proxy can read
/// while logged in; the caller says whether it believes it is.
pub fn session_loss_code(header: &str, believed_logged_in: bool) -> Option<&'static str> {
    error_codes(header).find_map(|code| match code {
        "assertuserfailed" => Some("assertuserfailed"),
        "assertnameduserfailed" => Some("assertnameduserfailed"),
        "notloggedin" => Some("notloggedin"),
        "readapidenied" if believed_logged_in => Some("readapidenied"),
        _ => None,
    })
}

/// An answer that is not what the login flow expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the wiki answered with API error `{code}`: {info}")]
    Api { code: String, info: String },
    #[error("the wiki's answer is not the expected JSON ({0}); is api_url really api.php?")]
    Unexpected(String),
}

/// What `action=login` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginAnswer {
    Success {
        user: String,
    },
    /// The token was missing, wrong or from another session: start over with
    /// a fresh token and an empty cookie jar.
    FreshTokenNeeded {
        reason: String,
    },
    /// Too many recent attempts; MediaWiki says how long to wait.
    Throttled {
        wait: Duration,
        reason: String,
    },
    /// Wrong password, unknown user, locked or expired bot password,
    /// aborted: trying again soon will not help.
    Rejected {
        reason: String,
    },
}

/// How long to wait when the throttle message cannot be read.
const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(300);

fn parse_json(body: &[u8]) -> Result<Value, AnswerError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| AnswerError::Unexpected(format!("not JSON: {err}")))?;
    if let Some(error) = value.get("error") {
        return Err(api_error(error));
    }
    // `errorformat=plaintext` and friends put errors in a list.
    if let Some(error) = value.get("errors").and_then(|errors| errors.get(0)) {
        return Err(api_error(error));
    }
    Ok(value)
}

fn api_error(error: &Value) -> AnswerError {
    let text = |key: &str| {
        error
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let info = match text("info") {
        info if info.is_empty() => text("text"),
        info => info,
    };
    AnswerError::Api {
        code: text("code"),
        info,
    }
}

/// The token from `action=query&meta=tokens&type=login`.
pub fn login_token(body: &[u8]) -> Result<String, AnswerError> {
    let value = parse_json(body)?;
    value
        .pointer("/query/tokens/logintoken")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| AnswerError::Unexpected("no query.tokens.logintoken".into()))
}

/// The outcome of `action=login`.
pub fn login_answer(body: &[u8]) -> Result<LoginAnswer, AnswerError> {
    let value = parse_json(body)?;
    let login = value
        .get("login")
        .ok_or_else(|| AnswerError::Unexpected("no `login` object".into()))?;
    let result = login.get("result").and_then(Value::as_str).unwrap_or("");
    let (code, text) = reason(login.get("reason"));
    let reason = if text.is_empty() {
        format!("login result `{result}`")
    } else {
        text.clone()
    };
    Ok(match result {
        "Success" => LoginAnswer::Success {
            user: login
                .get("lgusername")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        "NeedToken" | "WrongToken" => LoginAnswer::FreshTokenNeeded { reason },
        "Failed" if is_throttle(&code, &text) => LoginAnswer::Throttled {
            wait: throttle_wait(&text).unwrap_or(DEFAULT_THROTTLE_WAIT),
            reason,
        },
        "Failed" if is_session_timeout(&code, &text) => LoginAnswer::FreshTokenNeeded { reason },
        // Locked or expired bot passwords: name the code, it is what to look up.
        _ if code.starts_with("botpasswords-") => LoginAnswer::Rejected {
            reason: format!("{reason} ({code})"),
        },
        _ => LoginAnswer::Rejected { reason },
    })
}

/// `reason` is a plain string, or `{code, text}` with `errorformat` set.
fn reason(reason: Option<&Value>) -> (String, String) {
    match reason {
        Some(Value::String(text)) => (String::new(), text.clone()),
        Some(object @ Value::Object(_)) => {
            let field = |key: &str| {
                object
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            (field("code"), field("text"))
        }
        _ => (String::new(), String::new()),
    }
}

fn is_throttle(code: &str, text: &str) -> bool {
    code.contains("throttled") || text.contains("too many recent login attempts")
}

fn is_session_timeout(code: &str, text: &str) -> bool {
    code == "sessionfailure" || text.contains("session most likely timed out")
}

/// Reads "Please wait 5 minutes before trying again." (MediaWiki formats the
/// duration in words: seconds, minutes, hours).
pub fn throttle_wait(text: &str) -> Option<Duration> {
    let after = &text[text.find("wait ")? + "wait ".len()..];
    let mut words = after.split_whitespace();
    let amount: u64 = words.next()?.parse().ok()?;
    let unit = words.next()?.trim_end_matches(['.', ',']);
    let seconds_per_unit = match unit {
        "second" | "seconds" => 1,
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(amount.saturating_mul(seconds_per_unit)))
}

/// What `action=clientlogin` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientLoginAnswer {
    Pass {
        user: String,
    },
    /// Refused; `code` is the message key (`wrongpassword`,
    /// `login-throttled`...).
    Fail {
        code: String,
        message: String,
    },
    /// More input wanted. `totp` tells a TOTP second-factor prompt
    /// (OATHAuth) from others.
    Ui {
        code: String,
        message: String,
        totp: bool,
    },
    /// A third-party login that wants a browser.
    Redirect,
    /// An account to link or create: nothing a proxy can answer.
    Restart {
        message: String,
    },
}

/// The outcome of `action=clientlogin` (or its continuation).
pub fn client_login_answer(body: &[u8]) -> Result<ClientLoginAnswer, AnswerError> {
    let value = parse_json(body)?;
    let answer = value
        .get("clientlogin")
        .ok_or_else(|| AnswerError::Unexpected("no `clientlogin` object".into()))?;
    let text = |key: &str| {
        answer
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Ok(match text("status").as_str() {
        "PASS" => ClientLoginAnswer::Pass {
            user: text("username"),
        },
        "FAIL" => ClientLoginAnswer::Fail {
            code: text("messagecode"),
            message: text("message"),
        },
        "UI" => ClientLoginAnswer::Ui {
            code: text("messagecode"),
            message: text("message"),
            totp: answer
                .get("requests")
                .and_then(Value::as_array)
                .is_some_and(|requests| {
                    requests.iter().any(|request| {
                        request
                            .get("fields")
                            .and_then(|fields| fields.get("OATHToken"))
                            .is_some()
                    })
                }),
        },
        "REDIRECT" => ClientLoginAnswer::Redirect,
        "RESTART" => ClientLoginAnswer::Restart {
            message: text("message"),
        },
        other => {
            return Err(AnswerError::Unexpected(format!(
                "clientlogin status `{other}`"
            )));
        }
    })
}

/// Who the wiki thinks is making requests, from `meta=userinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub id: u64,
    pub name: String,
}

impl UserInfo {
    pub fn is_anonymous(&self) -> bool {
        self.id == 0
    }
}

pub fn user_info(body: &[u8]) -> Result<UserInfo, AnswerError> {
    let value = parse_json(body)?;
    let info = value
        .pointer("/query/userinfo")
        .ok_or_else(|| AnswerError::Unexpected("no query.userinfo".into()))?;
    Ok(UserInfo {
        id: info.get("id").and_then(Value::as_u64).unwrap_or(0),
        name: info
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn error_header_is_a_comma_list() {
        let codes: Vec<_> = error_codes("assertuserfailed, badtoken").collect();
        assert_eq!(codes, ["assertuserfailed", "badtoken"]);
        assert_eq!(
            session_loss_code("assertuserfailed", false),
            Some("assertuserfailed")
        );
        assert_eq!(
            session_loss_code("assertnameduserfailed", true),
            Some("assertnameduserfailed")
        );
        assert_eq!(session_loss_code("badtoken", true), None);
        assert_eq!(
            session_loss_code("readapidenied", true),
            Some("readapidenied")
        );
        assert_eq!(
            session_loss_code("badtoken, notloggedin", true),
            Some("notloggedin")
        );
        assert_eq!(session_loss_code("readapidenied", false), None);
    }

    #[test]
    fn login_token_is_read() {
        let body = br#"{"batchcomplete":"","query":{"tokens":{"logintoken":"abc+\\"}}}"#;
        assert_eq!(login_token(body).unwrap(), "abc+\\");
    }

    #[test]
    fn api_errors_are_reported_in_both_formats() {
        let body = br#"{"error":{"code":"readapidenied","info":"You need read permission."}}"#;
        assert!(
            matches!(login_token(body), Err(AnswerError::Api { code, .. }) if code == "readapidenied")
        );
        let body =
            br#"{"errors":[{"code":"mustpostparams","text":"The following parameters..."}]}"#;
        assert!(
            matches!(login_token(body), Err(AnswerError::Api { code, .. }) if code == "mustpostparams")
        );
        assert!(matches!(
            login_token(b"<html>"),
            Err(AnswerError::Unexpected(_))
        ));
    }

    #[test]
    fn login_answers_are_classified() {
        let answer = |json: &str| login_answer(json.as_bytes()).unwrap();
        assert_eq!(
            answer(r#"{"login":{"result":"Success","lguserid":1,"lgusername":"Admin"}}"#),
            LoginAnswer::Success {
                user: "Admin".into()
            }
        );
        assert!(matches!(
            answer(r#"{"login":{"result":"WrongToken"}}"#),
            LoginAnswer::FreshTokenNeeded { .. }
        ));
        assert!(matches!(
            answer(r#"{"login":{"result":"NeedToken","token":"x"}}"#),
            LoginAnswer::FreshTokenNeeded { .. }
        ));
        assert!(matches!(
            answer(
                r#"{"login":{"result":"Failed","reason":"Unable to continue login. Your session most likely timed out."}}"#
            ),
            LoginAnswer::FreshTokenNeeded { .. }
        ));
        assert_eq!(
            answer(r#"{"login":{"result":"Failed","reason":"You have made too many recent login attempts. Please wait 5 minutes before trying again."}}"#),
            LoginAnswer::Throttled {
                wait: Duration::from_secs(300),
                reason: "You have made too many recent login attempts. Please wait 5 minutes before trying again.".into()
            }
        );
        assert!(matches!(
            answer(r#"{"login":{"result":"Failed","reason":{"code":"wrongpassword","text":"Incorrect username or password entered. Please try again."}}}"#),
            LoginAnswer::Rejected { reason } if reason.starts_with("Incorrect username")
        ));
        assert!(matches!(
            answer(r#"{"login":{"result":"Failed","reason":{"code":"botpasswords-locked","text":"The bot password is locked."}}}"#),
            LoginAnswer::Rejected { reason } if reason.contains("botpasswords-locked")
        ));
        assert!(matches!(
            answer(
                r#"{"login":{"result":"Aborted","reason":"Cannot log in when using MediaWiki\\Session\\BotPasswordSessionProvider sessions."}}"#
            ),
            LoginAnswer::Rejected { .. }
        ));
    }

    #[test]
    fn client_login_answers_are_classified() {
        let answer = |json: &str| client_login_answer(json.as_bytes()).unwrap();
        assert_eq!(
            answer(r#"{"clientlogin":{"status":"PASS","username":"Admin"}}"#),
            ClientLoginAnswer::Pass {
                user: "Admin".into()
            }
        );
        assert_eq!(
            answer(
                r#"{"clientlogin":{"status":"UI","message":"Enter a code","messagecode":"oathauth-auth-ui","requests":[{"id":"MediaWiki\\Extension\\OATHAuth\\Auth\\TOTPAuthenticationRequest","fields":{"OATHToken":{"type":"string"}}}]}}"#
            ),
            ClientLoginAnswer::Ui {
                code: "oathauth-auth-ui".into(),
                message: "Enter a code".into(),
                totp: true
            }
        );
        assert!(matches!(
            answer(r#"{"clientlogin":{"status":"FAIL","message":"Incorrect password","messagecode":"wrongpassword"}}"#),
            ClientLoginAnswer::Fail { code, .. } if code == "wrongpassword"
        ));
        assert_eq!(
            answer(r#"{"clientlogin":{"status":"REDIRECT"}}"#),
            ClientLoginAnswer::Redirect
        );
        assert!(client_login_answer(br#"{"clientlogin":{"status":"ODD"}}"#).is_err());
    }

    #[test]
    fn throttle_wait_reads_words() {
        assert_eq!(
            throttle_wait("Please wait 30 seconds."),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            throttle_wait("Please wait 1 hour before"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(throttle_wait("Please wait a bit"), None);
    }

    #[test]
    fn user_info_tells_anonymous_from_logged_in() {
        let info = user_info(br#"{"query":{"userinfo":{"id":1,"name":"Admin"}}}"#).unwrap();
        assert_eq!(
            info,
            UserInfo {
                id: 1,
                name: "Admin".into()
            }
        );
        let anon = user_info(br#"{"query":{"userinfo":{"id":0,"name":"127.0.0.1","anon":true}}}"#)
            .unwrap();
        assert!(anon.is_anonymous());
    }
}
